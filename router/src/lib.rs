//! The myha router: a writer port that always reaches the master of the
//! newest epoch, a reader port balanced over healthy, non-lagging replicas,
//! and an HTTP discovery endpoint. It follows the manager's topology by
//! long-polling; when the manager is unreachable it keeps the last view.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod handshake;
mod kernel;
mod limits;
mod nat;

use myha_config::{ClusterConfig, Config, Relay, RouterConfig, Strategy};
use myha_core::routing::{fit_for_reads, pick, Candidate, Pick, RouterView};
use tokio::io::{copy_bidirectional_with_sizes, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// A replica returns to the reader pool only after this long healthy.
const RISE: Duration = Duration::from_secs(2);
/// Relay buffer per direction and connection (HAProxy's default bufsize).
const RELAY_BUF: usize = 16 * 1024;
/// Connecting to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Passing the server's last handshake bytes on to the client.
const HANDOVER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// `relay: nat`: how often the kernel's refusal counters are read.
const NAT_COUNTERS_EVERY: Duration = Duration::from_secs(5);

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

/// Per-backend state: hysteresis and live connections.
#[derive(Debug, Default)]
struct BackendState {
    /// Fit for reads since then (None: not fit now).
    fit_since: Option<Instant>,
    /// Live connections through this router.
    connections: Arc<AtomicU64>,
    /// Bumped when the backend's mysqld is known down: connections of an
    /// older generation are cut (a lagging or late-reporting replica's are
    /// only drained).
    generation: u64,
}

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
    /// The kernel relay, when `relay: kernel` and the kernel agreed.
    kernel_relay: Option<kernel::KernelRelay>,
    kernel: kernel::KernelStats,
    /// `relay: nat`: the rules are in place (the last change applied).
    nat_active: AtomicBool,
    nat_applies: AtomicU64,
    /// Rewrites of the rules (a change of plan), a subset of the applies.
    nat_rewrites: AtomicU64,
    nat_errors: AtomicU64,
    /// Connection caps and handshake timeouts, with their counters.
    limits: Arc<limits::Limits>,
}

impl Shared {
    fn backends(&self) -> std::sync::MutexGuard<'_, HashMap<String, BackendState>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a new view: never an older epoch than one seen; update the
    /// pool's hysteresis; cut connections to backends that went down.
    fn accept_view(&self, view: RouterView) {
        let current_epoch = self.view.borrow().as_ref().map_or(0, |v| v.epoch);
        if view.epoch < current_epoch {
            tracing::warn!(
                epoch = view.epoch,
                seen = current_epoch,
                "ignoring a view of an older epoch"
            );
            return;
        }
        let now = Instant::now();
        let first = self.view.borrow().is_none();
        {
            let mut backends = self.backends();
            for b in &view.servers {
                let st = backends.entry(b.name.clone()).or_default();
                if fit_for_reads(b, view.max_lag_seconds) {
                    if st.fit_since.is_none() {
                        // At start-up a fit replica serves at once; later it
                        // must stay fit for RISE first.
                        st.fit_since = Some(if first { now - RISE } else { now });
                    }
                } else {
                    st.fit_since = None;
                    if b.down {
                        st.generation += 1;
                    }
                }
            }
        }
        if let Ok(mut t) = self.last_view.lock() {
            *t = Some(now);
        }
        self.view.send_replace(Some(view));
    }

    /// The reader pool now, in configuration order.
    fn pool(&self) -> Vec<(String, String, u32, Arc<AtomicU64>, u64)> {
        let view = self.view.borrow().clone();
        let Some(view) = view else { return Vec::new() };
        let backends = self.backends();
        view.servers
            .iter()
            .filter(|b| fit_for_reads(b, view.max_lag_seconds))
            .filter_map(|b| {
                let st = backends.get(&b.name)?;
                let since = st.fit_since?;
                (since.elapsed() >= RISE).then(|| {
                    (
                        b.name.clone(),
                        b.address.clone(),
                        b.weight,
                        Arc::clone(&st.connections),
                        st.generation,
                    )
                })
            })
            .collect()
    }
}

fn client_hash(addr: &SocketAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.ip().hash(&mut h);
    h.finish()
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            )
        })??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Wait for a writable master in a view that is not changing, up to the
/// hold timeout: applications see a pause rather than errors.
async fn wait_for_writer(shared: &Shared) -> Option<(u64, String, String)> {
    let mut rx = shared.view.subscribe();
    let deadline = tokio::time::Instant::now() + shared.router.writer_hold_timeout;
    loop {
        if let Some(v) = rx.borrow_and_update().as_ref() {
            if let (false, Some(w)) = (v.changing, v.writer.as_ref()) {
                return Some((v.epoch, w.name.clone(), w.address.clone()));
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return None;
        }
    }
}

async fn serve_writer(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    _admitted: limits::Admitted,
) {
    let Some((epoch, name, addr)) = wait_for_writer(&shared).await else {
        shared.refused_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("no writable master within the hold timeout: closing a writer connection");
        return;
    };
    let backend = match connect(&addr).await {
        Ok(b) => b,
        Err(e) => {
            shared.refused_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(master = %name, error = %e, "cannot reach the master");
            return;
        }
    };
    shared.writer_total.fetch_add(1, Ordering::Relaxed);
    let _active = Active::new(&shared.active[0]);
    let _ = client.set_nodelay(true);
    let mut rx = shared.view.subscribe();
    // The connection lives while its master is the writer of the newest
    // view: a new epoch with another master closes it.
    let moved = async {
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            let still = rx.borrow_and_update().as_ref().is_some_and(|v| {
                v.epoch == epoch || v.writer.as_ref().is_some_and(|w| w.name == name)
            });
            if !still {
                return;
            }
        }
    };
    tokio::select! {
        _ = relay(&shared, limits::WRITER, peer, client, backend) => {}
        _ = moved => tracing::info!(old = %name, "master changed: closing a writer connection"),
    }
}

async fn serve_reader(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    _admitted: limits::Admitted,
) {
    let pool = shared.pool();
    let candidates: Vec<Candidate<'_>> = pool
        .iter()
        .map(|(n, _, w, c, _)| Candidate {
            name: n,
            weight: *w,
            connections: c.load(Ordering::Relaxed),
        })
        .collect();
    let how = match shared.router.strategy {
        Strategy::RoundRobin => Pick::RoundRobin {
            counter: shared.counter.fetch_add(1, Ordering::Relaxed),
        },
        Strategy::Weighted => Pick::Weighted {
            counter: shared.counter.fetch_add(1, Ordering::Relaxed),
        },
        Strategy::LeastConnections => Pick::LeastConnections,
        Strategy::AddressHash => Pick::AddressHash {
            client: client_hash(&peer),
        },
    };
    let chosen = pick(&candidates, how)
        .and_then(|n| pool.iter().find(|p| p.0 == n))
        .cloned();
    let (name, addr, conns, generation) = match chosen {
        Some((n, a, _, c, g)) => (n, a, Some(c), g),
        None if shared.router.fallback_to_master => {
            let w = shared.view.borrow().as_ref().and_then(|v| v.writer.clone());
            match w {
                Some(w) => (w.name, w.address, None, 0),
                None => {
                    shared.refused_total.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        None => {
            shared.refused_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let backend = match connect(&addr).await {
        Ok(b) => b,
        Err(e) => {
            shared.refused_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(backend = %name, error = %e, "cannot reach a reader backend");
            return;
        }
    };
    shared.reader_total.fetch_add(1, Ordering::Relaxed);
    let _active = Active::new(&shared.active[1]);
    let _ = client.set_nodelay(true);
    if let Some(c) = &conns {
        c.fetch_add(1, Ordering::Relaxed);
    }
    // Cut only if the backend goes down (generation bumped); a replica that
    // merely lags is drained: its connections finish on their own.
    let mut rx = shared.view.subscribe();
    let down = async {
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            let gen_now = shared
                .backends()
                .get(&name)
                .map_or(generation, |b| b.generation);
            if conns.is_some() && gen_now != generation {
                return;
            }
        }
    };
    tokio::select! {
        _ = relay(&shared, limits::READER, peer, client, backend) => {}
        _ = down => tracing::info!(backend = %name, "backend down: cutting a reader connection"),
    }
    if let Some(c) = &conns {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    writer: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((client, peer)) => {
                let endpoint = if writer {
                    limits::WRITER
                } else {
                    limits::READER
                };
                // Over a cap: refused before any backend connection.
                let admitted = match shared.limits.admit(endpoint, peer.ip()) {
                    Ok(a) => a,
                    Err(refusal) => {
                        refuse(client, refusal);
                        continue;
                    }
                };
                let shared = Arc::clone(&shared);
                if writer {
                    tokio::spawn(serve_writer(shared, client, peer, admitted));
                } else {
                    tokio::spawn(serve_reader(shared, client, peer, admitted));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Closes a connection over a cap at once, with the error packet a server
/// over `max_connections` sends in place of its greeting (written without
/// waiting: a new socket's buffer takes it; a client that cannot take it
/// gets the close alone).
fn refuse(client: TcpStream, refusal: limits::Refusal) {
    use std::io::Write as _;
    let packet = handshake::error_packet(limits::ER_CON_COUNT_ERROR, refusal.message());
    if let Ok(s) = client.into_std() {
        let _ = (&s).write(&packet);
    }
}

/// Follow the manager's view of the cluster by long-polling.
async fn subscribe(
    shared: Arc<Shared>,
    url: String,
    token: String,
    client: reqwest::Client,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut digest: Option<u64> = None;
    loop {
        let full = match digest {
            Some(d) => format!("{url}?timeout_ms=10000&after={d}"),
            None => format!("{url}?timeout_ms=10000"),
        };
        let req = client.get(&full).bearer_auth(&token);
        let got = tokio::select! {
            r = req.send() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let answer = match got.and_then(reqwest::Response::error_for_status) {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(e) => {
                if shared.manager_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "manager unreachable: keeping the last known topology");
                }
                None
            }
        };
        match answer.and_then(|v| {
            let d = v.get("digest")?.as_u64()?;
            let view = serde_json::from_value::<RouterView>(v.get("view")?.clone()).ok()?;
            Some((d, view))
        }) {
            Some((d, view)) => {
                if !shared.manager_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!(epoch = view.epoch, "following the manager's topology");
                }
                digest = Some(d);
                shared.accept_view(view);
            }
            None => {
                digest = None;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

fn endpoints(shared: &Shared) -> serde_json::Value {
    let view = shared.view.borrow().clone();
    let pool: Vec<String> = shared.pool().into_iter().map(|p| p.0).collect();
    let backends = shared.backends();
    let age = shared
        .last_view
        .lock()
        .ok()
        .and_then(|t| t.map(|t| t.elapsed().as_millis() as u64));
    serde_json::json!({
        "cluster": shared.cluster.name,
        "epoch": view.as_ref().map(|v| v.epoch),
        "writer": view.as_ref().and_then(|v| v.writer.as_ref()).map(|w| serde_json::json!({"name": w.name, "address": w.address})),
        "changing": view.as_ref().is_some_and(|v| v.changing),
        "readers": view.as_ref().map(|v| v.servers.iter().filter(|b| b.role == myha_core::topology::Role::Replica).map(|b| serde_json::json!({
            "name": b.name,
            "address": b.address,
            "lag_seconds": b.lag_seconds,
            "healthy": b.healthy,
            "in_pool": pool.contains(&b.name),
            "connections": backends.get(&b.name).map_or(0, |s| s.connections.load(Ordering::Relaxed)),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "manager_reachable": shared.manager_ok.load(Ordering::Relaxed),
        "view_age_ms": age,
        "relay": relay_in_effect(shared),
        "limits": limits_json(shared),
    })
}

/// The caps and what they refused, per endpoint (the kernel's refusals
/// with `relay: nat` included, as last read).
fn limits_json(shared: &Shared) -> serde_json::Value {
    let l = &shared.limits;
    let mut v = serde_json::json!({
        "max_connections": l.max_connections,
        "max_connections_per_source": l.max_per_source,
        "handshake_timeout_ms": l.handshake_timeout.as_millis() as u64,
    });
    for (i, endpoint) in limits::ENDPOINTS.iter().enumerate() {
        let (open, sources) = l.open_now(i);
        let (listener_cap, source_cap) = l.refusals(i);
        v[*endpoint] = serde_json::json!({
            "open": open,
            "sources": sources,
            "refused_listener_cap": listener_cap,
            "refused_source_cap": source_cap,
            "handshake_timeouts": l.handshake_timeouts[i].load(Ordering::Relaxed),
        });
    }
    v
}

/// Who moves the bytes of new connections now.
fn relay_in_effect(shared: &Shared) -> &'static str {
    if shared.nat_active.load(Ordering::Relaxed) {
        "nat"
    } else if shared.kernel_relay.is_some() {
        "kernel"
    } else {
        "userspace"
    }
}

fn metrics(shared: &Shared) -> String {
    let epoch = shared.view.borrow().as_ref().map_or(0, |v| v.epoch);
    let mut out = String::new();
    out.push_str(&format!(
        "myha_router_epoch{{cluster=\"{}\"}} {epoch}\n",
        shared.cluster.name
    ));
    out.push_str(&format!(
        "myha_router_manager_reachable {}\n",
        u8::from(shared.manager_ok.load(Ordering::Relaxed))
    ));
    out.push_str(&format!(
        "myha_router_connections_total{{endpoint=\"writer\"}} {}\n",
        shared.writer_total.load(Ordering::Relaxed)
    ));
    out.push_str(&format!(
        "myha_router_connections_total{{endpoint=\"reader\"}} {}\n",
        shared.reader_total.load(Ordering::Relaxed)
    ));
    for (endpoint, active) in ["writer", "reader"].iter().zip(&shared.active) {
        out.push_str(&format!(
            "myha_router_active_connections{{endpoint=\"{endpoint}\"}} {}\n",
            active.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_kernel_relay {}\n",
        u8::from(shared.kernel_relay.is_some())
    ));
    for (name, v) in [
        ("connections", &shared.kernel.connections),
        ("refused", &shared.kernel.refused),
        ("fallback_bytes", &shared.kernel.fallback_bytes),
        ("userspace", &shared.kernel.userspace),
    ] {
        out.push_str(&format!(
            "myha_router_kernel_{name}_total {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_nat {}\n",
        u8::from(shared.nat_active.load(Ordering::Relaxed))
    ));
    for (name, v) in [
        ("applies", &shared.nat_applies),
        ("rewrites", &shared.nat_rewrites),
        ("errors", &shared.nat_errors),
    ] {
        out.push_str(&format!(
            "myha_router_nat_{name}_total {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_refused_total {}\n",
        shared.refused_total.load(Ordering::Relaxed)
    ));
    let l = &shared.limits;
    for (i, endpoint) in limits::ENDPOINTS.iter().enumerate() {
        let (open, sources) = l.open_now(i);
        let (listener_cap, source_cap) = l.refusals(i);
        for (name, v) in [
            ("refused_listener_cap_total", listener_cap),
            ("refused_source_cap_total", source_cap),
            (
                "handshake_timeouts_total",
                l.handshake_timeouts[i].load(Ordering::Relaxed),
            ),
            ("open_connections", u64::from(open)),
            ("open_sources", sources as u64),
        ] {
            out.push_str(&format!(
                "myha_router_{name}{{endpoint=\"{endpoint}\"}} {v}\n"
            ));
        }
    }
    for (name, b) in shared.backends().iter() {
        out.push_str(&format!(
            "myha_router_backend_connections{{backend=\"{name}\"}} {}\n",
            b.connections.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_uptime_seconds {}\n",
        shared.started.elapsed().as_secs()
    ));
    out
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
    let (view, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        cluster: cfg.clone(),
        router: router.clone(),
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
        kernel_relay: kernel_relay(&router),
        kernel: kernel::KernelStats::default(),
        nat_active: AtomicBool::new(false),
        nat_applies: AtomicU64::new(0),
        nat_rewrites: AtomicU64::new(0),
        nat_errors: AtomicU64::new(0),
        limits: limits::Limits::new(&router),
    });
    tracing::info!(cluster, writer = %router.writer_listen, reader = %router.reader_listen, http = %router.http_listen, "router started");
    let url = format!(
        "{}/v1/clusters/{cluster}/watch",
        config.manager.url.trim_end_matches('/')
    );
    if let Some(budget) = busy_poll_budget(&router) {
        tokio::spawn(busy_poll(Arc::clone(&shared), budget, shutdown.clone()));
    }
    let nat_task = if router.relay == Relay::Nat {
        match nat::Nat::start(router.writer_listen, router.reader_listen).await {
            Ok(n) => {
                tracing::info!(table = %n.table, "relay: nat (nftables)");
                Some(tokio::spawn(nat_loop(
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
    tasks.spawn(subscribe(
        Arc::clone(&shared),
        url,
        config.token.expose().to_string(),
        client,
        shutdown.clone(),
    ));
    tasks.spawn(accept_loop(
        writer,
        Arc::clone(&shared),
        true,
        shutdown.clone(),
    ));
    tasks.spawn(accept_loop(
        reader,
        Arc::clone(&shared),
        false,
        shutdown.clone(),
    ));
    let s1 = Arc::clone(&shared);
    let s2 = Arc::clone(&shared);
    let s3 = Arc::clone(&shared);
    let app = axum::Router::new()
        .route(
            "/v1/clusters/{name}/endpoints",
            axum::routing::get(move || {
                let s = Arc::clone(&s1);
                async move { axum::Json(endpoints(&s)) }
            }),
        )
        .route(
            "/v1/health",
            axum::routing::get(move || {
                let s = Arc::clone(&s2);
                async move {
                    axum::Json(serde_json::json!({
                        "manager_reachable": s.manager_ok.load(Ordering::Relaxed),
                        "epoch": s.view.borrow().as_ref().map(|v| v.epoch),
                        "view_age_ms": s.last_view.lock().ok().and_then(|t| t.map(|t| t.elapsed().as_millis() as u64)),
                    }))
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let s = Arc::clone(&s3);
                async move { metrics(&s) }
            }),
        );
    let mut api = tokio::spawn(myha_http::serve(
        http,
        app,
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

/// What the kernel should do now (`relay: nat`). `live_writer` carries the
/// master whose forwarded connections live, across views of one epoch
/// that name no writer: as in user space, a connection lives while the
/// view is of its epoch or names its master.
fn nat_plan(shared: &Shared, live_writer: &mut Option<(u64, std::net::SocketAddrV4)>) -> nat::Plan {
    let view = shared.view.borrow().clone();
    let Some(view) = view else {
        return nat::Plan {
            writer: None,
            writer_live: None,
            readers: Vec::new(),
            spread: nat::Spread::Sequence,
            reader_live: Vec::new(),
        };
    };
    let writer_addr = view.writer.as_ref().and_then(|w| nat::literal(&w.address));
    match (writer_addr, *live_writer) {
        (Some(w), _) => *live_writer = Some((view.epoch, w)),
        (None, Some((epoch, _))) if epoch != view.epoch => *live_writer = None,
        _ => {}
    }
    let writer = if view.changing { None } else { writer_addr };
    let pool = shared.pool();
    let entries: Vec<(&str, &str, u32)> = pool
        .iter()
        .map(|(n, a, w, _, _)| (n.as_str(), a.as_str(), *w))
        .collect();
    let (readers, spread) = if entries.is_empty() {
        let fallback = if shared.router.fallback_to_master {
            writer_addr
        } else {
            None
        };
        (fallback.into_iter().collect(), nat::Spread::Sequence)
    } else {
        nat::reader_entries(&entries, shared.router.strategy)
            .unwrap_or((Vec::new(), nat::Spread::Sequence))
    };
    // Reader connections are cut only when their server is known down
    // (the master serves reads as the fallback).
    let reader_live = view
        .servers
        .iter()
        .filter(|b| !b.down)
        .filter_map(|b| nat::literal(&b.address))
        .chain(writer_addr)
        .collect();
    nat::Plan {
        writer,
        writer_live: live_writer.map(|(_, a)| a),
        readers,
        spread,
        reader_live,
    }
}

/// Keeps the kernel's rules in step with the view (`relay: nat`): on every
/// change at once, every [`nat::REFRESH`] anyway (the rules expire), and
/// often enough for a replica's return after its rise time to take effect.
async fn nat_loop(shared: Arc<Shared>, mut nat: nat::Nat, mut shutdown: watch::Receiver<bool>) {
    let mut rx = shared.view.subscribe();
    let mut live_writer = None;
    let mut last: Option<(nat::Plan, Instant)> = None;
    let mut failing = false;
    // The kernel forwards connections the router never sees: the caps go
    // into its rules too.
    nat.caps = Some(nat::Caps {
        per_listener: shared.limits.max_connections,
        per_source: shared.limits.max_per_source,
    });
    let mut limits_failing = false;
    let mut counted: Option<Instant> = None;
    loop {
        // Nothing to write before the first view: a table a dead router
        // left expires on its own, and its forwarded connections to a
        // master still current survive a quick restart.
        if shared.view.borrow().is_none() {
            tokio::select! {
                _ = rx.changed() => continue,
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        let plan = nat_plan(&shared, &mut live_writer);
        let changed = last.as_ref().is_none_or(|(p, _)| *p != plan);
        let due = last
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= nat::REFRESH);
        if changed || due {
            // A change rewrites the table; otherwise only the timeouts are
            // renewed, so the rules keep their spread counters. The
            // timeouts run from before nft starts.
            let started = Instant::now();
            let done = if changed {
                nat.apply(&plan).await
            } else {
                nat.refresh(&plan).await
            };
            match done {
                Ok(()) => {
                    if failing || last.is_none() {
                        tracing::info!(table = %nat.table, "relay: nat rules in place");
                    }
                    failing = false;
                    shared.nat_active.store(true, Ordering::Relaxed);
                    shared.nat_applies.fetch_add(1, Ordering::Relaxed);
                    if changed {
                        shared.nat_rewrites.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(?plan, "relay: nat rules changed");
                    }
                    // The master changed: the reset rules are in place;
                    // close this host's clients of the old one now.
                    let before = last.as_ref().and_then(|(p, _)| p.writer_live);
                    if let Some(old) = before.filter(|o| plan.writer_live != Some(*o)) {
                        match nat.close_local_clients(old).await {
                            Ok(n) => {
                                tracing::info!(old = %old, closed = n, "master changed: closed this host's forwarded writer connections")
                            }
                            Err(e) => {
                                tracing::warn!(old = %old, error = %e, "master changed: cannot close forwarded writer connections here; they are reset at their next packet")
                            }
                        }
                    }
                    last = Some((plan, started));
                    nat_limits(&shared, &nat, &mut limits_failing, &mut counted).await;
                }
                Err(e) => {
                    shared.nat_errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::error!(error = %e, "relay: nat cannot update its rules; they expire \
                            within {:?} and connections are then served in user space", nat::TTL);
                    }
                    failing = true;
                    if changed {
                        // The kernel may still forward by the rules before
                        // this change: empty their sets now if it lets
                        // us, and rewrite the whole table next time.
                        if let Err(e) = nat.disarm().await {
                            tracing::debug!(error = %e, "relay: nat could not empty its sets either");
                        }
                        last = None;
                        shared.nat_active.store(false, Ordering::Relaxed);
                    }
                    // A failed renewal leaves rules that are still right:
                    // retried in 250 ms, they expire only if it keeps
                    // failing for the TTL.
                }
            }
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    let retired = nat.retire().await;
    if retired.is_ok() {
        if let Err(e) = nat.close_all_local_clients().await {
            tracing::warn!(error = %e, "relay: nat cannot close its forwarded connections here; they are reset at their next packet");
        }
    }
    match retired {
        Ok(()) => tracing::info!(
            table = %nat.table,
            "relay: nat retired: the table forwards nothing and resets what it forwarded"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "relay: nat could not retire its rules; they expire on their own")
        }
    }
    shared.nat_active.store(false, Ordering::Relaxed);
}

/// Keeps the kernel's connection caps in place (`relay: nat`) and reads
/// what they refused every [`NAT_COUNTERS_EVERY`]. Without them NAT still
/// works: the router says so once, and retries at each renewal.
async fn nat_limits(
    shared: &Shared,
    nat: &nat::Nat,
    failing: &mut bool,
    counted: &mut Option<Instant>,
) {
    match nat.ensure_limits().await {
        Ok(wrote) => {
            if wrote {
                tracing::info!(
                    table = %nat::limits_table_name(&nat.table),
                    "relay: nat connection caps in place"
                );
            }
            *failing = false;
        }
        Err(e) => {
            if !*failing {
                tracing::warn!(error = %e, "relay: nat cannot apply the connection caps in the kernel; \
                    forwarded connections are not capped (the router's own are)");
            }
            *failing = true;
            return;
        }
    }
    if counted.is_some_and(|t| t.elapsed() < NAT_COUNTERS_EVERY) {
        return;
    }
    *counted = Some(Instant::now());
    match nat.limit_counts().await {
        Ok(counts) => {
            for (cap, endpoint, n) in counts {
                let i = if endpoint == "writer" {
                    limits::WRITER
                } else {
                    limits::READER
                };
                let slot = if cap == "listener" {
                    &shared.limits.nat_refused_listener_cap[i]
                } else {
                    &shared.limits.nat_refused_source_cap[i]
                };
                slot.store(n, Ordering::Relaxed);
            }
        }
        Err(e) => tracing::debug!(error = %e, "relay: nat cannot read the caps' counters"),
    }
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

/// Counts a relayed connection while it lives.
struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Loads the kernel relay if the configuration asks for it; says why not
/// when the kernel refuses (then every connection is relayed in user
/// space).
fn kernel_relay(router: &RouterConfig) -> Option<kernel::KernelRelay> {
    if router.relay != Relay::Kernel {
        return None;
    }
    match myha_sockmap::Splicer::new()
        .map_err(|e| e.to_string())
        .and_then(|s| {
            kernel::KernelRelay::start(s).map_err(|e| format!("cannot watch relayed sockets: {e}"))
        }) {
        Ok(s) => {
            tracing::info!("relay: kernel (BPF sockmap)");
            Some(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "relay: kernel is unavailable here; relaying in user space");
            None
        }
    }
}

/// Relays both directions until both sides have closed (or either fails).
/// First the MySQL handshake, followed, under `handshake_timeout` from
/// the backend's connection: a client that has not logged in by then is
/// closed, both sides. Then the kernel relay takes the connection over
/// if it can, or it is relayed here.
async fn relay(
    shared: &Shared,
    endpoint: usize,
    peer: SocketAddr,
    mut client: TcpStream,
    mut backend: TcpStream,
) {
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    let followed =
        tokio::time::timeout_at(deadline, handshake::follow(&mut client, &mut backend)).await;
    let done = match followed {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection ended during the handshake");
            return;
        }
        Err(_) => {
            shared.limits.handshake_timed_out(endpoint, peer.ip());
            return;
        }
    };
    if let Some(k) = &shared.kernel_relay {
        if done.clean && kernel::quiet(&client, &backend) {
            match kernel::splice(
                &k.splicer,
                &shared.kernel,
                &mut client,
                &mut backend,
                &done.pending,
            )
            .await
            {
                Ok(kernel::Prepared::Spliced(s)) => {
                    if let Err(e) = kernel::relay(k, s, &shared.kernel, client, backend).await {
                        tracing::debug!(error = %e, "kernel-relayed connection ended");
                    }
                    return;
                }
                // The pending bytes went out; user space relays the rest.
                Ok(kernel::Prepared::Refused) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended before the kernel relay began");
                    return;
                }
            }
        } else {
            shared.kernel.userspace.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(outcome = ?done.outcome, clean = done.clean, "kernel relay: this connection stays in user space");
            if !pass_on(&mut client, &done.pending).await {
                return;
            }
        }
    } else if !pass_on(&mut client, &done.pending).await {
        return;
    }
    let mut a = Tracked::new(&mut client, shared);
    let mut b = Tracked::new(&mut backend, shared);
    let _ = copy_bidirectional_with_sizes(&mut a, &mut b, RELAY_BUF, RELAY_BUF).await;
}

/// Writes the server's last handshake bytes to the client, within a bound.
async fn pass_on(client: &mut TcpStream, bytes: &[u8]) -> bool {
    use tokio::io::AsyncWriteExt;
    match tokio::time::timeout(HANDOVER_WRITE_TIMEOUT, client.write_all(bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection ended at the end of its handshake");
            false
        }
        Err(_) => {
            tracing::debug!("the client took no bytes at the end of its handshake: closing");
            false
        }
    }
}

fn busy_poll_budget(router: &RouterConfig) -> Option<Duration> {
    // MYHA_ROUTER_BUSY_POLL_US overrides the configuration (benchmarks).
    let budget = std::env::var("MYHA_ROUTER_BUSY_POLL_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(router.busy_poll, Duration::from_micros);
    (!budget.is_zero()).then_some(budget)
}

/// Adaptive busy polling. While bytes are moving, the router does not
/// sleep in epoll_wait between packets: it yields the CPU to whatever else
/// is runnable (sched_yield) and polls its sockets again without blocking.
/// A sender then never has to wake the router (no wake-up, no
/// cross-CPU interrupt, no context switch back in), which on a busy host
/// is most of what a relay costs. After `budget` without a byte it parks
/// and the next read wakes it, so an idle router uses no CPU.
async fn busy_poll(shared: Arc<Shared>, budget: Duration, shutdown: watch::Receiver<bool>) {
    loop {
        shared.spin_parked.store(true, Ordering::Release);
        shared.wake_spinner.notified().await;
        shared.spin_parked.store(false, Ordering::Release);
        if *shutdown.borrow() {
            return;
        }
        let mut seen = shared.activity.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        loop {
            std::thread::yield_now();
            tokio::task::yield_now().await;
            let now = shared.activity.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= budget {
                break;
            }
        }
    }
}

/// A relayed socket that reports reads to the busy-poll loop.
struct Tracked<'a> {
    io: &'a mut TcpStream,
    shared: &'a Shared,
}

impl<'a> Tracked<'a> {
    fn new(io: &'a mut TcpStream, shared: &'a Shared) -> Self {
        Self { io, shared }
    }
}

impl AsyncRead for Tracked<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.shared.activity.fetch_add(1, Ordering::Relaxed);
            if this.shared.spin_parked.load(Ordering::Acquire) {
                this.shared.wake_spinner.notify_one();
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}
