//! The writer and reader listeners: admitting connections under the caps,
//! choosing their backend, and relaying their bytes in user space.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::copy_bidirectional_with_sizes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::busy_poll::Tracked;
use crate::{handshake, limits, Shared};

/// Relay buffer per direction and connection (HAProxy's default bufsize).
const RELAY_BUF: usize = 16 * 1024;
/// Connecting to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Passing the server's last handshake bytes on to the client.
const HANDOVER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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
    let writer = |rx: &mut watch::Receiver<Option<myha_core::routing::RouterView>>| {
        rx.borrow_and_update()
            .as_ref()
            .and_then(|v| match (v.changing, v.writer.as_ref()) {
                (false, Some(w)) => Some((v.epoch, w.name.clone(), w.address.clone())),
                _ => None,
            })
    };
    if let Some(w) = writer(&mut rx) {
        return Some(w);
    }
    // Held: counted while it waits, its wait measured.
    let started = tokio::time::Instant::now();
    shared.holding.fetch_add(1, Ordering::Relaxed);
    let deadline = started + shared.router.writer_hold_timeout;
    let found = loop {
        if !matches!(
            tokio::time::timeout_at(deadline, rx.changed()).await,
            Ok(Ok(()))
        ) {
            break None;
        }
        if let Some(w) = writer(&mut rx) {
            break Some(w);
        }
    };
    shared.holding.fetch_sub(1, Ordering::Relaxed);
    shared.hold_seconds.observe(started.elapsed().as_secs_f64());
    found
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
    let (name, addr, conns, generation) = match shared.pick_reader(&peer) {
        Some(m) => (m.name, m.address, Some(m.connections), m.generation),
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

/// Accepts the connections of one listener (the writer's or the
/// reader's) until shutdown.
pub(crate) async fn accept_loop(
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

/// Relays both directions until both sides have closed (or either fails).
/// First the MySQL handshake, followed, under `handshake_timeout` from
/// the backend's connection: a client that has not logged in by then is
/// closed, both sides. Then the bytes are relayed here.
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
    if !pass_on(&mut client, &done.pending).await {
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
