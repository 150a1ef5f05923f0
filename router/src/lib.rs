//! The myha router: a writer port that always reaches the master of the
//! newest epoch, a reader port balanced over healthy, non-lagging replicas,
//! and an HTTP discovery endpoint. It follows the manager's topology by
//! long-polling; when the manager is unreachable it keeps the last view.
//!
//! - `pool`: the reader pool (hysteresis, per-backend state);
//! - `follow`: following the manager's view;
//! - `serve`: the listeners, relaying in user space;
//! - `nat`: `relay: nat`, the kernel forwarding by NAT rules;
//! - `http`: the router's HTTP API and metrics;
//! - `busy_poll`: adaptive busy polling while bytes move.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod busy_poll;
mod follow;
mod handshake;
mod http;
mod limits;
mod nat;
mod pool;
mod serve;

/// The nftables table a `relay: nat` router keeps, named after its writer
/// listener (a bed or a package removes a retired one by this name).
pub use nat::rules::table_name as nat_table_name;

use myha_config::{ClusterConfig, Config, Relay, RouterConfig};
use myha_core::routing::RouterView;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use pool::BackendState;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cluster {0:?} is not in the configuration")]
    UnknownCluster(String),
    #[error("cluster {0:?} has no `router:` section")]
    NotConfigured(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Http(#[from] myha_http::HttpError),
    #[error("{0}")]
    Task(String),
}

/// What the router's tasks share.
struct Shared {
    cluster: ClusterConfig,
    router: RouterConfig,
    view: watch::Sender<Option<RouterView>>,
    backends: Mutex<HashMap<String, BackendState>>,
    manager_ok: AtomicBool,
    last_view: Mutex<Option<Instant>>,
    counter: AtomicU64,
    writer_total: AtomicU64,
    reader_total: AtomicU64,
    refused_total: AtomicU64,
    /// Connections being relayed now: [writer, reader].
    active: [AtomicU64; 2],
    started: Instant,
    /// Bumped on every read that carried bytes: the busy-poll loop keeps
    /// spinning while it moves.
    activity: AtomicU64,
    /// The busy-poll loop is parked: the next read wakes it.
    spin_parked: AtomicBool,
    wake_spinner: Notify,
    /// `relay: nat`: the rules are in place (the last change applied).
    nat_active: AtomicBool,
    nat_applies: AtomicU64,
    /// Rewrites of the rules (a change of plan), a subset of the applies.
    nat_rewrites: AtomicU64,
    nat_errors: AtomicU64,
    /// Connection caps and handshake timeouts, with their counters.
    limits: Arc<limits::Limits>,
    /// Writer connections waiting now for a writable master.
    holding: AtomicU64,
    /// How long writer connections waited for a writable master.
    hold_seconds: prometheus_client::metrics::histogram::Histogram,
    /// The metrics, built on first scrape ([`Shared::registry`]).
    registry: std::sync::OnceLock<prometheus_client::registry::Registry>,
}

impl Shared {
    fn new(cluster: ClusterConfig, router: RouterConfig) -> Self {
        let (view, _) = watch::channel(None);
        Self {
            cluster,
            limits: limits::Limits::new(&router),
            router,
            view,
            backends: Mutex::new(HashMap::new()),
            manager_ok: AtomicBool::new(false),
            last_view: Mutex::new(None),
            counter: AtomicU64::new(0),
            writer_total: AtomicU64::new(0),
            reader_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            active: [AtomicU64::new(0), AtomicU64::new(0)],
            started: Instant::now(),
            activity: AtomicU64::new(0),
            spin_parked: AtomicBool::new(false),
            wake_spinner: Notify::new(),
            nat_active: AtomicBool::new(false),
            nat_applies: AtomicU64::new(0),
            nat_rewrites: AtomicU64::new(0),
            nat_errors: AtomicU64::new(0),
            holding: AtomicU64::new(0),
            hold_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17),
            ),
            registry: std::sync::OnceLock::new(),
        }
    }

    /// The router's metrics: the hold-time histogram and everything read
    /// at each scrape ([`http::Collected`]).
    fn registry(self: &Arc<Self>) -> &prometheus_client::registry::Registry {
        self.registry.get_or_init(|| {
            let mut r = prometheus_client::registry::Registry::default();
            r.register_collector(Box::new(http::Collected(Arc::downgrade(self))));
            r.sub_registry_with_label((
                std::borrow::Cow::Borrowed("cluster"),
                std::borrow::Cow::Owned(self.cluster.name.clone()),
            ))
            .register(
                "myha_router_writer_hold_seconds",
                "How long writer connections waited for a writable master (only those that had to wait).",
                self.hold_seconds.clone(),
            );
            r
        })
    }

    fn backends(&self) -> std::sync::MutexGuard<'_, HashMap<String, BackendState>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Run the router of `cluster` until `shutdown` turns true.
pub async fn run(
    config: Config,
    cluster: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RouterError> {
    let cfg = config
        .cluster(cluster)
        .cloned()
        .ok_or_else(|| RouterError::UnknownCluster(cluster.to_string()))?;
    let router = cfg
        .router
        .clone()
        .ok_or_else(|| RouterError::NotConfigured(cluster.to_string()))?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| RouterError::Listen { addr, source })
    };
    let (soft, hard) = raise_fd_limit();
    if soft < 4096 {
        tracing::warn!(
            soft,
            hard,
            "the open-files limit allows fewer than 2,000 relayed connections \
             (two descriptors each): raise LimitNOFILE / ulimit -n"
        );
    }
    let writer = bind(router.writer_listen).await?;
    let reader = bind(router.reader_listen).await?;
    let http = bind(router.http_listen).await?;
    let shared = Arc::new(Shared::new(cfg, router.clone()));
    tracing::info!(cluster, writer = %router.writer_listen, reader = %router.reader_listen, http = %router.http_listen, "router started");
    let managers = config.manager.urls.clone();
    if let Some(budget) = busy_poll::budget(&router) {
        tokio::spawn(busy_poll::busy_poll(
            Arc::clone(&shared),
            budget,
            shutdown.clone(),
        ));
    }
    let nat_task = if router.relay == Relay::Nat {
        match nat::Nat::start(router.writer_listen, router.reader_listen).await {
            Ok(n) => {
                tracing::info!(table = %n.table, "relay: nat (nftables)");
                Some(tokio::spawn(nat::driver::nat_loop(
                    Arc::clone(&shared),
                    n,
                    shutdown.clone(),
                )))
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay: nat is unavailable here; relaying in user space");
                None
            }
        }
    } else {
        None
    };
    // The manager's view over its TLS (the router's own token: role router).
    let client = myha_http::client_for(&config, Duration::from_secs(2), Duration::from_secs(15))?;
    let tls = myha_http::server_tls_for(&config)?;
    // Every task lives as long as the router: one that ends early (a
    // panic) ends the router with an error, never a zombie that answers.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow::subscribe(
        Arc::clone(&shared),
        managers,
        cluster.to_string(),
        config.token.expose().to_string(),
        client,
        shutdown.clone(),
    ));
    tasks.spawn(serve::accept_loop(
        writer,
        Arc::clone(&shared),
        true,
        shutdown.clone(),
    ));
    tasks.spawn(serve::accept_loop(
        reader,
        Arc::clone(&shared),
        false,
        shutdown.clone(),
    ));
    let mut api = tokio::spawn(myha_http::serve(
        http,
        http::app(&shared),
        tls,
        myha_http::Limits::default(),
        shutdown.clone(),
    ));
    let mut stop = shutdown.clone();
    // A finished JoinHandle must not be polled again: the API may end (on
    // the shutdown signal) in the same turn that wins the select below.
    let mut api_done = false;
    let early: Option<String> = tokio::select! {
        Some(r) = tasks.join_next() => Some(match r {
            Err(e) if e.is_panic() => "a relay task panicked".to_string(),
            Err(e) => format!("a relay task failed: {e}"),
            Ok(()) => "a relay task returned".to_string(),
        }),
        r = &mut api => {
            api_done = true;
            match r {
                Ok(Err(e)) => Some(format!("the HTTP API failed: {e}")),
                Ok(Ok(())) => (!*shutdown.borrow()).then(|| "the HTTP API stopped".to_string()),
                Err(e) => Some(format!("the HTTP API task failed: {e}")),
            }
        }
        _ = stop.wait_for(|s| *s) => None,
    };
    if let Some(why) = early.filter(|_| !*shutdown.borrow()) {
        tracing::error!(why, "router task ended early: exiting");
        return Err(RouterError::Task(why));
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if !api_done {
            let _ = (&mut api).await;
        }
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if let Some(task) = nat_task {
        // It retires its table on shutdown; the rules expire anyway.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one (each relayed
/// connection holds two descriptors; the usual soft default of 1,024 would
/// cap the router near 500 connections). Returns the limits now in force.
pub fn raise_fd_limit() -> (u64, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (0, 0);
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    (soft, hard)
}
