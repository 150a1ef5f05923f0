//! The myha manager: ingests agent reports, probes every server itself,
//! keeps one topology snapshot per cluster with the age of every fact, and
//! serves it over HTTP. Decisions are pure functions in `myha-core` over
//! these snapshots; this crate only gathers facts and executes.
#![forbid(unsafe_code)]

mod actions;
mod agents;
mod api;
mod console;
pub mod coord;
mod detector;
pub mod failover;
mod failpoint;
mod hooks;
mod metrics;
mod notify;
mod operation;
mod ops;
mod probe;
mod reinstate;
mod rejoin;
mod reload;
pub mod state;
mod steps;
pub mod store;
pub mod switchover;
#[cfg(test)]
mod testing;
mod tracker;
mod upkeep;

use std::sync::Arc;

use myha_config::Config;
use tokio::sync::watch;

pub use api::ClusterStatus;
pub use failover::{FailoverReport, OpStatus};
pub use hooks::HookEvent;
pub use reload::ReloadError;
pub use state::Topology;
pub use store::{EtcdStore, FileStore, StateStore, StoreError};
pub use store::{Event, OpKind, Operation, Step, StepStatus};

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Http(#[from] myha_http::HttpError),
    #[error("{0}")]
    Task(String),
}

/// How long a shutdown waits for background work (rejoins, switchovers)
/// to finish.
const BACKGROUND_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

fn log_reload(result: &Result<myha_api::requests::ReloadAnswer, ReloadError>) {
    match result {
        Ok(a) => tracing::info!(
            path = %a.path,
            added = ?a.added,
            removed = ?a.removed,
            changed = ?a.changed,
            unchanged = a.unchanged.len(),
            access_changed = a.access_changed,
            restart_needed = ?a.restart_needed,
            "configuration reloaded"
        ),
        Err(e) => tracing::error!(error = %e, "configuration reload refused"),
    }
}

/// Run the manager until `shutdown` turns true. Each message on `hangup`
/// (the daemon's `SIGHUP`) reloads the configuration file, as
/// `POST /v1/reload` does; the outcome is logged.
pub async fn run(
    config: Config,
    shutdown: watch::Receiver<bool>,
    mut hangup: tokio::sync::mpsc::Receiver<()>,
) -> Result<(), ManagerError> {
    let coord = match &config.manager.coordination {
        myha_config::Coordination::Embedded => coord::Coordinator::embedded(&config.manager.url),
        myha_config::Coordination::Etcd(etcd) => {
            coord::Coordinator::etcd(&config.manager.url, etcd)
                .map_err(|e| ManagerError::Task(format!("cannot start the etcd client: {e}")))?
        }
    };
    let store: Arc<dyn StateStore> = match coord.shared() {
        None => Arc::new(FileStore::open(&config.manager.state_dir)?),
        Some(etcd) => {
            // Local files too: reinstatement saves its transactions there.
            std::fs::create_dir_all(&config.manager.state_dir).map_err(|source| {
                StoreError::Io {
                    path: config.manager.state_dir.clone(),
                    source,
                }
            })?;
            Arc::new(EtcdStore::new(etcd, &config.manager.url))
        }
    };
    let shared = coord.shared().is_some();
    let topology = Arc::new(Topology::new(&config, Arc::clone(&store), shared)?);
    let agents = agents::AgentClient::new(
        &config,
        config
            .manager
            .query_timeout
            .max(std::time::Duration::from_secs(3)),
    )
    .map_err(ManagerError::Client)?;
    let tls = myha_http::server_tls_for(&config)?;
    let (live, mut reloads) = reload::Live::new(config.clone());
    let live = Arc::new(live);
    let metrics = metrics::Metrics::new().with_live(metrics::LiveState {
        topology: Arc::clone(&topology),
        coord: coord.clone(),
        configs: Arc::clone(&live),
    });
    let ctx = Arc::new(failover::Context {
        topology: Arc::clone(&topology),
        manager: config.manager.clone(),
        agent_interval: config.agent.interval,
        agents,
        background: tracker::Tracker::default(),
        coord: coord.clone(),
        live,
        metrics: Arc::new(metrics),
        notify: notify::Notifier::start(&config.manager.webhooks)?,
        ops: ops::OpsRuntime::new()
            .map_err(|e| ManagerError::Task(format!("cannot start the operations thread: {e}")))?,
    });
    let listener = tokio::net::TcpListener::bind(config.manager.listen)
        .await
        .map_err(|source| ManagerError::Listen {
            addr: config.manager.listen.to_string(),
            source,
        })?;
    tracing::info!(listen = %config.manager.listen, clusters = config.clusters.len(), "manager started");
    let mut tasks = tokio::task::JoinSet::new();
    if shared {
        let (coord, stop) = (coord.clone(), shutdown.clone());
        tasks.spawn(async move { coord.run(stop).await });
        tasks.spawn(detector::follow_shared(Arc::clone(&ctx), shutdown.clone()));
    }
    let (mut fleet, mut ended) = reload::Fleet::new(Arc::clone(&ctx));
    for cluster in &config.clusters {
        fleet.start(cluster);
    }
    let mut api = tokio::spawn(api::serve(
        listener,
        Arc::clone(&ctx),
        config.clone(),
        tls,
        shutdown.clone(),
    ));
    // Every task lives as long as the manager: one that ends early (a
    // panic) ends the manager with an error, never a zombie that answers.
    let mut stop = shutdown.clone();
    let mut served = None;
    let early: Option<String> = loop {
        tokio::select! {
            Some(r) = tasks.join_next() => break Some(match r {
                Err(e) if e.is_panic() => "a coordination task panicked".to_string(),
                Err(e) => format!("a coordination task failed: {e}"),
                Ok(()) => "a coordination task returned".to_string(),
            }),
            Some(why) = ended.recv() => break Some(why),
            r = &mut api => break match r {
                Ok(result) => {
                    let stopping = *shutdown.borrow();
                    served = Some(result);
                    (!stopping).then(|| "the HTTP API stopped".to_string())
                }
                Err(e) => {
                    // Never polled again below.
                    served = Some(Err(ManagerError::Task(format!("the HTTP API task failed: {e}"))));
                    Some(format!("the HTTP API task failed: {e}"))
                }
            },
            Some(reply) = reloads.recv() => {
                let result = fleet.reload().await;
                log_reload(&result);
                let _ = reply.send(result);
            }
            Some(()) = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                log_reload(&fleet.reload().await);
            }
            _ = stop.wait_for(|s| *s) => break None,
        }
    };
    if let Some(why) = early {
        if !*shutdown.borrow() {
            if let Some(Err(e)) = served {
                return Err(e);
            }
            tracing::error!(why, "manager task ended early: exiting");
            return Err(ManagerError::Task(why));
        }
    }
    let served = match served {
        Some(r) => r,
        None => api
            .await
            .unwrap_or_else(|e| Err(ManagerError::Task(e.to_string()))),
    };
    fleet.stop_all().await;
    while tasks.join_next().await.is_some() {}
    // The detectors and the API are done: no more background work starts.
    // What runs (an automatic rejoin, a switchover) finishes, within a
    // bound.
    let running = ctx.background.running();
    if running > 0 {
        tracing::info!(
            running,
            "waiting for background work (rejoins, switchovers) to finish"
        );
        if !ctx.background.wait(BACKGROUND_BOUND).await {
            tracing::warn!(
                running = ctx.background.running(),
                bound_s = BACKGROUND_BOUND.as_secs(),
                "background work still running at shutdown: abandoned"
            );
        }
    }
    tracing::info!("manager stopped");
    served
}
