//! Serving an axum router over TCP or TLS with limits against hostile
//! clients.
//!
//! Every accepted connection runs in its own task. The task owns the TLS
//! handshake (under `tls_handshake_timeout`), the hyper HTTP/1.1 connection and
//! a watchdog that closes the connection when
//! * the first request's headers are not complete `header_read_timeout` after
//!   the connection was accepted (or after the TLS handshake): this covers a
//!   client that sends nothing, half a request line or one byte a second;
//! * on a keep-alive connection, nothing of the next request arrives within
//!   `idle_timeout`, or its headers are not complete `header_read_timeout`
//!   after its first byte;
//! * a write to the client has been blocked for `idle_timeout` (a client that
//!   does not read its response).
//!
//! The watchdog is ours rather than hyper's `header_read_timeout`, because
//! hyper starts that timer again when it waits for the next request on a
//! keep-alive connection, so it cannot tell an idle keep-alive connection
//! (`idle_timeout`) from a slow request (`header_read_timeout`). Hyper's timer
//! is still set, as a backstop, to `idle_timeout + header_read_timeout + 1 s`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{watch, Notify};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::HttpError;

/// Limits applied by [`serve`] to every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// At most this many open connections. When full, a new connection evicts
    /// the connection that has been waiting longest for request headers; when
    /// every connection is busy in a handler, the new one is closed at once.
    /// 0 is taken as 1.
    pub max_connections: usize,
    /// A request's headers must be complete within this: from the accept (or
    /// the end of the TLS handshake) for the first request, from its first
    /// byte for the next requests on a keep-alive connection.
    pub header_read_timeout: Duration,
    /// A handler running longer is dropped and the client gets 503.
    pub request_timeout: Duration,
    /// A keep-alive connection with no new request for this long is closed;
    /// so is a connection whose writes have been blocked this long.
    pub idle_timeout: Duration,
    /// The TLS handshake must complete within this.
    pub tls_handshake_timeout: Duration,
    /// After shutdown is asked for, in-flight requests have this long to
    /// finish; then every remaining connection is aborted.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Counters of a server, updated live by [`serve_with_stats`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections returned by `accept` (including evicting and refused ones).
    pub accepted: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
    /// Connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// New connections closed at once because all others were busy.
    pub refused: AtomicU64,
    /// Connections closed because request headers did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Keep-alive connections closed after `idle_timeout` without a request.
    pub idle_timeouts: AtomicU64,
    /// Connections closed because the client did not read for `idle_timeout`.
    pub write_timeouts: AtomicU64,
    /// Requests answered 503 because the handler exceeded `request_timeout`.
    pub request_timeouts: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Errors returned by `accept` (EMFILE...).
    pub accept_errors: AtomicU64,
}

/// A copy of [`Stats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub active: u64,
    pub evicted: u64,
    pub refused: u64,
    pub header_timeouts: u64,
    pub idle_timeouts: u64,
    pub write_timeouts: u64,
    pub request_timeouts: u64,
    pub tls_failures: u64,
    pub accept_errors: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: r(&self.accepted),
            active: r(&self.active),
            evicted: r(&self.evicted),
            refused: r(&self.refused),
            header_timeouts: r(&self.header_timeouts),
            idle_timeouts: r(&self.idle_timeouts),
            write_timeouts: r(&self.write_timeouts),
            request_timeouts: r(&self.request_timeouts),
            tls_failures: r(&self.tls_failures),
            accept_errors: r(&self.accept_errors),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The certificate a client presented (TLS with client authentication),
/// available to handlers as a request extension:
/// `Extension(peer): Extension<PeerCertificate>` or
/// `req.extensions().get::<PeerCertificate>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    der: Arc<CertificateDer<'static>>,
    common_name: Option<String>,
    dns_names: Vec<String>,
}

impl PeerCertificate {
    /// Parses what is cheap to parse (subject CN, DNS SANs) from a leaf DER.
    pub fn new(der: CertificateDer<'static>) -> Self {
        let (common_name, dns_names) = match webpki::EndEntityCert::try_from(&der) {
            Ok(cert) => (
                common_name(cert.subject()),
                cert.valid_dns_names().map(str::to_string).collect(),
            ),
            Err(_) => (None, Vec::new()),
        };
        PeerCertificate {
            der: Arc::new(der),
            common_name,
            dns_names,
        }
    }
    /// The leaf certificate, DER.
    pub fn der(&self) -> &[u8] {
        self.der.as_ref()
    }
    /// The subject's common name, when it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }
    /// The DNS names of the subject alternative names.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }
}

/// One DER TLV: (tag, value, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let value = input.get(head..head.checked_add(len)?)?;
    let rest = input.get(head + len..)?;
    Some((tag, value, rest))
}

/// The first commonName of a Name's contents (RDNSequence without its tag).
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: [u8; 3] = [0x55, 0x04, 0x03];
    while let Some((_, set, rest)) = tlv(name) {
        name = rest;
        let mut set = set;
        while let Some((_, atv, rest)) = tlv(set) {
            set = rest;
            let Some((0x06, oid, value)) = tlv(atv) else {
                continue;
            };
            if oid != CN {
                continue;
            }
            if let Some((0x0c | 0x13 | 0x16 | 0x14, s, _)) = tlv(value) {
                return Some(String::from_utf8_lossy(s).into_owned());
            }
        }
    }
    None
}

/// Binds a TCP listener, with an error naming the address.
pub async fn bind(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<TcpListener, HttpError> {
    let shown = addr.to_string();
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: shown,
            source,
        })
}

/// Serves `app` on `listener` until `shutdown` becomes true; see
/// [`serve_with_stats`].
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<(), HttpError> {
    serve_with_stats(
        listener,
        app,
        tls,
        limits,
        shutdown,
        Arc::new(Stats::default()),
    )
    .await
}

/// Serves `app` on `listener` (HTTP/1.1, over TLS when `tls` is given) until
/// `shutdown` becomes true, counting into `stats`.
///
/// Handlers can extract `ConnectInfo<SocketAddr>` (the client's address) and,
/// with TLS client authentication, `Extension<PeerCertificate>`.
///
/// On shutdown: stops accepting, closes connections that are not inside a
/// handler, lets in-flight requests finish (their connections close after the
/// response), and aborts whatever remains after `limits.shutdown_grace`, so
/// this returns within the grace period (plus a few milliseconds) whatever the
/// clients do. A dropped `shutdown` sender means "never shut down".
///
/// Accept errors never end the loop (EMFILE/ENFILE: logged, retried after
/// 50 ms). The result is `Ok` today; `Result` leaves room for fatal errors.
pub async fn serve_with_stats(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> Result<(), HttpError> {
    let acceptor = tls.map(TlsAcceptor::from);
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        limits,
        stats,
        base: Instant::now(),
    });
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut watching = true;
    let mut last_warn: Option<Instant> = None;
    let mut stop = *shutdown.borrow_and_update();
    while !stop {
        tokio::select! {
            changed = shutdown.changed(), if watching => match changed {
                Ok(()) => stop = *shutdown.borrow_and_update(),
                Err(_) => watching = false,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    inc(&ctx.stats.accepted);
                    match registry.make_room(ctx.limits.max_connections.max(1)) {
                        Room::Free => {}
                        Room::Evicted => inc(&ctx.stats.evicted),
                        Room::Full => {
                            inc(&ctx.stats.refused);
                            debug!(%peer, "connection refused: every connection is busy");
                            drop(stream);
                            continue;
                        }
                    }
                    next_id = next_id.wrapping_add(1);
                    let id = next_id;
                    let state = Arc::new(ConnState::new(ctx.base));
                    ctx.stats.active.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnGuard {
                        id,
                        state: state.clone(),
                        registry: registry.clone(),
                        stats: ctx.stats.clone(),
                    };
                    let task = connection(
                        stream,
                        peer,
                        acceptor.clone(),
                        app.clone(),
                        ctx.clone(),
                        state.clone(),
                        stop_rx.clone(),
                        guard,
                    );
                    let abort = tasks.spawn(task);
                    registry.insert(id, Entry { state, abort });
                }
                Err(e) => accept_error(e, &ctx.stats, &mut last_warn).await,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        warn!("HTTP connection task panicked: {e}");
                    }
                }
            }
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let grace = tokio::time::sleep(ctx.limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = &mut grace => break,
            joined = tasks.join_next() => if joined.is_none() { break },
        }
    }
    if !tasks.is_empty() {
        info!(
            connections = tasks.len(),
            "shutdown grace elapsed: aborting the remaining HTTP connections"
        );
        tasks.abort_all();
        // Aborted tasks finish at their next poll; don't wait on a handler
        // that blocks its thread.
        let _ = tokio::time::timeout(Duration::from_millis(100), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }
    Ok(())
}

async fn accept_error(e: io::Error, stats: &Stats, last_warn: &mut Option<Instant>) {
    use nix::errno::Errno;
    inc(&stats.accept_errors);
    let errno = e.raw_os_error().map(Errno::from_raw);
    match errno {
        // The client gave up before we accepted: nothing to do.
        Some(Errno::ECONNABORTED | Errno::ECONNRESET | Errno::EINTR | Errno::EAGAIN) => {
            debug!("accept: {e}");
        }
        _ => {
            // EMFILE, ENFILE, ENOBUFS, ENOMEM or anything unexpected: log
            // (at most once a second) and back off so the loop does not spin.
            let now = Instant::now();
            if last_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                warn!("accept: {e}; retrying in 50 ms");
                *last_warn = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Ctx {
    limits: Limits,
    stats: Arc<Stats>,
    base: Instant,
}

/// What a connection is doing, shared by its IO wrapper, its requests, its
/// watchdog and the accept loop (for eviction). Times are nanoseconds since
/// `base`, plus one; 0 means "not set".
struct ConnState {
    base: Instant,
    /// Requests inside the service (handler running or response body not yet
    /// fully handed to hyper).
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// When the connection last became idle (accept, TLS handshake done, end
    /// of a response).
    idle_since: AtomicU64,
    /// First byte received since `idle_since`.
    first_byte_at: AtomicU64,
    /// Since when the current write has been blocked.
    write_blocked_since: AtomicU64,
    /// The connection task is finished (or dropped).
    done: AtomicBool,
    /// Wakes the watchdog when a deadline may have moved earlier.
    notify: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
    Write,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ConnState {
    fn new(base: Instant) -> Self {
        let s = ConnState {
            base,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_byte_at: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            done: AtomicBool::new(false),
            notify: Notify::new(),
        };
        s.idle_since.store(s.now(), Ordering::SeqCst);
        s
    }

    fn now(&self) -> u64 {
        nanos(self.base.elapsed()).saturating_add(1)
    }

    fn instant(&self, t: u64) -> Instant {
        self.base + Duration::from_nanos(t.saturating_sub(1))
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// Restarts the header deadline (after the TLS handshake).
    fn reset_idle(&self) {
        self.idle_since.store(self.now(), Ordering::SeqCst);
        self.first_byte_at.store(0, Ordering::SeqCst);
    }

    fn on_bytes_read(&self) {
        if !self.busy() && self.first_byte_at.load(Ordering::SeqCst) == 0 {
            self.first_byte_at.store(self.now(), Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    fn on_write_poll(&self, pending: bool) {
        let blocked = self.write_blocked_since.load(Ordering::SeqCst);
        if pending {
            if blocked == 0 {
                self.write_blocked_since.store(self.now(), Ordering::SeqCst);
                self.notify.notify_one();
            }
        } else if blocked != 0 {
            self.write_blocked_since.store(0, Ordering::SeqCst);
        }
    }

    /// Key for eviction: since when this connection has been waiting for the
    /// client (for request headers, or for it to read); `None` when it is
    /// busy inside a handler.
    fn waiting_since(&self) -> Option<u64> {
        let blocked = self.write_blocked_since.load(Ordering::SeqCst);
        if !self.busy() {
            let idle = self.idle_since.load(Ordering::SeqCst);
            Some(if blocked != 0 {
                idle.min(blocked)
            } else {
                idle
            })
        } else if blocked != 0 {
            Some(blocked)
        } else {
            None
        }
    }

    /// The next deadline of the watchdog and what expires then. A blocked
    /// write means the client is not reading: only the write deadline runs.
    fn deadline(&self, limits: &Limits) -> Option<(u64, Expiry)> {
        let header = nanos(limits.header_read_timeout);
        let idle = nanos(limits.idle_timeout);
        let blocked = self.write_blocked_since.load(Ordering::SeqCst);
        if blocked != 0 {
            return Some((blocked.saturating_add(idle), Expiry::Write));
        }
        if self.busy() {
            return None;
        }
        let since = self.idle_since.load(Ordering::SeqCst);
        let first = self.first_byte_at.load(Ordering::SeqCst);
        Some(if self.requests.load(Ordering::SeqCst) == 0 {
            (since.saturating_add(header), Expiry::Header)
        } else if first != 0 {
            (first.saturating_add(header), Expiry::Header)
        } else {
            (since.saturating_add(idle), Expiry::Idle)
        })
    }
}

/// Marks a request in flight from the moment hyper hands it to the service
/// until its response body is dropped (fully written or abandoned).
struct BusyGuard(Arc<ConnState>);

impl BusyGuard {
    fn new(state: Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        state.requests.fetch_add(1, Ordering::SeqCst);
        BusyGuard(state)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            s.first_byte_at.store(0, Ordering::SeqCst);
            s.idle_since.store(s.now(), Ordering::SeqCst);
        }
        s.notify.notify_one();
    }
}

/// The response body, holding the request's [`BusyGuard`].
struct GuardedBody {
    inner: AxumBody,
    _guard: BusyGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO, reporting reads and blocked writes to its state.
struct Watched<IO> {
    io: IO,
    state: Arc<ConnState>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_bytes_read();
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        this.state.on_write_poll(res.is_pending());
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.state.on_write_poll(res.is_pending());
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_flush(cx);
        this.state.on_write_poll(res.is_pending());
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_shutdown(cx);
        this.state.on_write_poll(res.is_pending());
        res
    }
}

struct Entry {
    state: Arc<ConnState>,
    abort: AbortHandle,
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Entry>>,
}

enum Room {
    Free,
    Evicted,
    Full,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, id: u64, entry: Entry) {
        let mut conns = self.lock();
        // The task may already be over (its guard removed nothing then).
        if !entry.state.done.load(Ordering::SeqCst) {
            conns.insert(id, entry);
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Makes room for one more connection: evicts the connection waiting
    /// longest for its client when the registry is full.
    fn make_room(&self, max: usize) -> Room {
        let mut conns = self.lock();
        if conns.len() < max {
            return Room::Free;
        }
        let victim = conns
            .iter()
            .filter_map(|(id, e)| e.state.waiting_since().map(|t| (t, *id)))
            .min();
        match victim {
            Some((_, id)) => {
                if let Some(e) = conns.remove(&id) {
                    e.abort.abort();
                }
                debug!("connection evicted to make room for a new one");
                Room::Evicted
            }
            None => Room::Full,
        }
    }
}

/// Owned by the connection task: unregisters it however it ends (returned,
/// aborted, or dropped before it ever ran).
struct ConnGuard {
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    stats: Arc<Stats>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::SeqCst);
        self.registry.remove(self.id);
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        // Wake nothing: the task is over.
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    ctx: Arc<Ctx>,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
    _guard: ConnGuard,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        drive(stream, peer, None, app, &ctx, &state, &mut stop).await;
        return;
    };
    let handshake = tokio::time::timeout(ctx.limits.tls_handshake_timeout, acceptor.accept(stream));
    let result = tokio::select! {
        r = handshake => r,
        _ = stop.wait_for(|v| *v) => return,
    };
    match result {
        Ok(Ok(stream)) => {
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| PeerCertificate::new(c.clone().into_owned()));
            state.reset_idle();
            drive(stream, peer, cert, app, &ctx, &state, &mut stop).await;
        }
        Ok(Err(e)) => {
            inc(&ctx.stats.tls_failures);
            debug!(%peer, "TLS handshake failed: {e}");
        }
        Err(_) => {
            inc(&ctx.stats.tls_failures);
            debug!(%peer, "TLS handshake timed out");
        }
    }
}

async fn drive<IO>(
    io: IO,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
    app: axum::Router,
    ctx: &Arc<Ctx>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched {
        io,
        state: state.clone(),
    });
    let svc_state = state.clone();
    let svc_ctx = ctx.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let guard = BusyGuard::new(svc_state.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        let mut router = app.clone();
        let ctx = svc_ctx.clone();
        async move {
            let call = tower_service::Service::call(&mut router, req);
            let response = match tokio::time::timeout(ctx.limits.request_timeout, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    inc(&ctx.stats.request_timeouts);
                    debug!(%peer, "request timed out");
                    let mut r = Response::new(AxumBody::from("request timed out\n"));
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
            };
            Ok::<_, Infallible>(response.map(|inner| GuardedBody {
                inner,
                _guard: guard,
            }))
        }
    });
    let backstop = ctx
        .limits
        .idle_timeout
        .saturating_add(ctx.limits.header_read_timeout)
        .saturating_add(Duration::from_secs(1));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(backstop)
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let mut shutting = false;
    loop {
        let deadline = state.deadline(&ctx.limits);
        let wake = deadline.map(|(t, _)| state.instant(t));
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    if e.is_timeout() {
                        inc(&ctx.stats.header_timeouts);
                    }
                    debug!(%peer, "HTTP connection: {e}");
                }
                return;
            }
            _ = state.notify.notified() => {}
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if let Some((t, what)) = state.deadline(&ctx.limits) {
                    if state.now() >= t {
                        let (counter, why) = match what {
                            Expiry::Header => (&ctx.stats.header_timeouts, "request headers not received in time"),
                            Expiry::Idle => (&ctx.stats.idle_timeouts, "keep-alive connection idle"),
                            Expiry::Write => (&ctx.stats.write_timeouts, "client not reading"),
                        };
                        inc(counter);
                        debug!(%peer, "closing HTTP connection: {why}");
                        return;
                    }
                }
            }
            _ = stop.wait_for(|v| *v), if !shutting => {
                // Idle, half-sent or silent: close now. Inside a handler or
                // writing a response: finish it, then hyper closes (no more
                // keep-alive); the grace period bounds the wait.
                if !state.busy() && state.write_blocked_since.load(Ordering::SeqCst) == 0 {
                    return;
                }
                shutting = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_name_and_dns_names() {
        let mut params = rcgen::CertificateParams::new(vec!["agent1.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "myha");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent-1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pc = PeerCertificate::new(cert.der().clone());
        assert_eq!(pc.common_name(), Some("agent-1"));
        assert_eq!(pc.dns_names(), &["agent1.example".to_string()]);
        assert_eq!(pc.der(), cert.der().as_ref());
    }

    /// What the backstop relies on: hyper 1's own `header_read_timeout`
    /// runs from the first poll of the connection, so it also closes a client
    /// that sends nothing at all.
    #[tokio::test]
    async fn hyper_header_read_timeout_covers_silent_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(AxumBody::empty()))
            });
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(200))
                .serve_connection(TokioIo::new(stream), svc)
                .await
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(&mut client, &mut buf),
        )
        .await
        .expect("hyper closed the silent connection")
        .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(start.elapsed() < Duration::from_millis(900));
        let res = server.await.unwrap();
        assert!(res.is_err_and(|e| e.is_timeout()));
    }

    #[test]
    fn tlv_rejects_truncated_input() {
        assert!(tlv(&[0x30]).is_none());
        assert!(tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert_eq!(common_name(&[0x31, 0x03, 0x30, 0x01]), None);
    }

    #[test]
    fn deadlines() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(10),
            ..Limits::default()
        };
        let s = Arc::new(ConnState::new(Instant::now()));
        let since = s.idle_since.load(Ordering::SeqCst);
        // first request: header deadline from the accept, whatever arrives
        assert_eq!(
            s.deadline(&limits),
            Some((since + 300_000_000, Expiry::Header))
        );
        s.on_bytes_read();
        assert_eq!(
            s.deadline(&limits),
            Some((since + 300_000_000, Expiry::Header))
        );
        assert!(s.waiting_since().is_some());
        // busy: no deadline, not evictable
        let g = BusyGuard::new(s.clone());
        assert_eq!(s.deadline(&limits), None);
        assert_eq!(s.waiting_since(), None);
        // blocked write while busy: write deadline, evictable
        s.on_write_poll(true);
        assert!(matches!(s.deadline(&limits), Some((_, Expiry::Write))));
        assert!(s.waiting_since().is_some());
        s.on_write_poll(false);
        drop(g);
        // keep-alive idle
        let idle = s.idle_since.load(Ordering::SeqCst);
        assert_eq!(
            s.deadline(&limits),
            Some((idle + 10_000_000_000, Expiry::Idle))
        );
        s.on_bytes_read();
        let first = s.first_byte_at.load(Ordering::SeqCst);
        assert_eq!(
            s.deadline(&limits),
            Some((first + 300_000_000, Expiry::Header))
        );
    }
}
