//! The myha agent: one per database host. It samples the local mysqld every
//! `agent.interval`, probes the master from this host when the server is a
//! replica, writes the heartbeat row when it is the master, pushes a report
//! to the manager after every sample, and serves its last report over HTTP.
#![forbid(unsafe_code)]

mod api;
mod lease;
mod metrics;
mod sampler;
pub mod vip;

use std::sync::Arc;

use myha_config::{ClusterConfig, Config, HostConfig};
use myha_core::report::AgentReport;
use tokio::sync::{watch, Mutex};

pub use sampler::mysqld_process_running;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("host {0:?} is not in the configuration")]
    UnknownHost(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Http(#[from] myha_http::HttpError),
    #[error("the agent's {0} task stopped unexpectedly: {1}")]
    Task(&'static str, String),
}

/// Shared between the sampler, the reporter and the HTTP API.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cluster: ClusterConfig,
    pub(crate) host: HostConfig,
    pub(crate) token: String,
    /// Who may call the API (the `access:` hashes and the TLS settings).
    pub(crate) access: Config,
    /// The newest epoch the manager has answered this agent with: orders
    /// for an older one are refused.
    pub(crate) acked_epoch: std::sync::atomic::AtomicU64,
    pub(crate) agent: myha_config::AgentConfig,
    pub(crate) last: Mutex<Option<AgentReport>>,
    /// The master's lease on this host (see `lease`).
    pub(crate) lease: Arc<Mutex<lease::Lease>>,
    /// A fence waiting for a hung mysqld to answer is in flight.
    pub(crate) queued_fence: Arc<std::sync::atomic::AtomicBool>,
    /// Prometheus metrics (`GET /metrics`).
    pub(crate) metrics: metrics::AgentMetrics,
}

impl Shared {
    /// A fresh connection to the local mysqld.
    pub(crate) fn local_db(&self) -> myha_mysql::Db {
        myha_mysql::Db::new(
            myha_mysql::Endpoint::of_host(&self.cluster, &self.host),
            myha_mysql::Timeouts {
                connect: self.agent.connect_timeout,
                query: self.agent.query_timeout,
            },
        )
    }
}

/// Run the agent for `host` until `shutdown` turns true.
pub async fn run(
    config: Config,
    host: &str,
    listen_override: Option<std::net::SocketAddr>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let (cluster, host_cfg) = config
        .find_host(host)
        .map(|(c, h)| (c.clone(), h.clone()))
        .ok_or_else(|| AgentError::UnknownHost(host.to_string()))?;
    let fence_ttl = cluster.self_fence_after();
    let cluster_name = cluster.name.clone();
    let shared = Arc::new(Shared {
        cluster,
        host: host_cfg.clone(),
        token: config.token.expose().to_string(),
        access: config.clone(),
        acked_epoch: std::sync::atomic::AtomicU64::new(0),
        agent: config.agent.clone(),
        last: Mutex::new(None),
        lease: Arc::new(Mutex::new(lease::Lease::new(host_cfg.port, fence_ttl))),
        queued_fence: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        metrics: metrics::AgentMetrics::new(&cluster_name, &host_cfg.name),
    });
    // The host's configured address, not every interface.
    let addr = match listen_override {
        Some(a) => a,
        None => {
            let ip = tokio::net::lookup_host((host_cfg.address.as_str(), host_cfg.agent_port))
                .await
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| AgentError::Listen {
                    addr: format!("{}:{}", host_cfg.address, host_cfg.agent_port),
                    source: std::io::Error::other("the host's address does not resolve"),
                })?;
            ip
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let tls = myha_http::server_tls_for(&config)?;
    let http = myha_http::client_for(
        &config,
        config.agent.report_timeout,
        config.agent.report_timeout,
    )?;
    tracing::info!(host = %host_cfg.name, %addr, managers = ?config.manager.urls, "agent started");

    let (report_tx, report_rx) = watch::channel::<Option<AgentReport>>(None);
    let (epoch_tx, epoch_rx) = watch::channel::<sampler::LastAck>(None);
    let sampler = tokio::spawn(sampler::run(
        Arc::clone(&shared),
        config.agent.clone(),
        report_tx,
        epoch_rx,
        shutdown.clone(),
    ));
    let reporter = tokio::spawn(sampler::report_loop(
        config.manager.urls.clone(),
        shared.token.clone(),
        http,
        Arc::clone(&shared),
        report_rx,
        epoch_tx,
        shutdown.clone(),
    ));
    let mut api = tokio::spawn(api::serve(
        listener,
        Arc::clone(&shared),
        tls,
        shutdown.clone(),
    ));
    // Every task lives as long as the agent: one that ends early (a panic)
    // ends the agent with an error, never a zombie that answers health.
    let mut sampler = sampler;
    let mut reporter = reporter;
    let mut stop = shutdown.clone();
    let mut served = None;
    // A finished JoinHandle is never polled again (tokio panics): the
    // loops may end on the shutdown signal in the turn that wins here.
    let (mut sampler_done, mut reporter_done) = (false, false);
    let early = tokio::select! {
        r = &mut sampler => {
            sampler_done = true;
            Some(("sampler", r.map_err(|e| e.to_string())))
        }
        r = &mut reporter => {
            reporter_done = true;
            Some(("reporter", r.map_err(|e| e.to_string())))
        }
        r = &mut api => match r {
            Ok(result) => {
                let stopping = *shutdown.borrow();
                served = Some(result);
                (!stopping).then_some(("HTTP API", Ok(())))
            }
            Err(e) => {
                served = Some(Err(AgentError::Task("HTTP API", e.to_string())));
                Some(("HTTP API", Err(e.to_string())))
            }
        },
        _ = stop.wait_for(|s| *s) => None,
    };
    let early = early.filter(|(_, r)| r.is_err() || !*shutdown.borrow());
    if let Some((task, result)) = early {
        if let Some(Err(e)) = served {
            return Err(e);
        }
        let why = match result {
            Err(e) => e,
            Ok(()) => "it returned".to_string(),
        };
        tracing::error!(task, why, "agent task ended early: exiting");
        return Err(AgentError::Task(task, why));
    }
    // Shutdown: the API (bounded) and the loops see the same signal.
    let served = match served {
        Some(r) => r,
        None => api
            .await
            .unwrap_or_else(|e| Err(AgentError::Task("HTTP API", e.to_string()))),
    };
    if !sampler_done {
        let _ = sampler.await;
    }
    if !reporter_done {
        let _ = reporter.await;
    }
    tracing::info!("agent stopped");
    served
}
