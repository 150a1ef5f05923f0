//! `relay: kernel`: the router sets a connection up (it relays the MySQL
//! handshake itself, then pairs the sockets) and the kernel moves its bytes (see `myha-sockmap`). The router still
//! owns both sockets: it sees either end close, passes the close on once
//! the bytes before it have left, and closes both when the master moves or
//! a replica goes down, exactly as with the user-space relay.
//!
//! Once paired, the sockets leave tokio's reactor: the kernel wakes a
//! socket's readers after every segment it redirects, and a reader
//! registered for `EPOLLIN` would be woken for nothing each time. They are
//! watched instead by one epoll set of the router's own, for `EPOLLRDHUP`
//! (and the implied `EPOLLHUP`/`EPOLLERR`) only, edge-triggered: the router
//! hears of a connection when an end closes or fails, and never per query.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myha_sockmap::{tcp_counters, Pairing, Splicer, TcpCounters};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Passing the server's OK on to the client at the handover.
const HANDOVER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a close waits for the bytes before it to leave the other side.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Buffer for the rare bytes the kernel hands to the router itself.
const FALLBACK_BUF: usize = 16 * 1024;
/// Writing those bytes on (the router's sockets are non-blocking here).
const FALLBACK_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The kernel relay of one router: the loaded sockmap and the epoll set
/// that hears of closes.
pub(crate) struct KernelRelay {
    pub splicer: Splicer,
    watcher: Arc<Watcher>,
}

impl KernelRelay {
    /// Wraps a loaded sockmap; starts the close watcher (needs the tokio
    /// runtime).
    pub fn start(splicer: Splicer) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        // Deprecated in tokio 1.54 because a borrowed descriptor could be
        // closed while registered; this one is owned by the AsyncFd, which
        // deregisters it before closing it.
        #[allow(deprecated)]
        let epoll = AsyncFd::with_interest(EpollIo(epoll), Interest::READABLE)?;
        let watcher = Arc::new(Watcher {
            epoll,
            waiters: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        tokio::spawn(Arc::clone(&watcher).run());
        Ok(Self { splicer, watcher })
    }
}

struct EpollIo(Epoll);

impl AsRawFd for EpollIo {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// One epoll set for the closes of every kernel-relayed socket.
struct Watcher {
    epoll: AsyncFd<EpollIo>,
    waiters: Mutex<HashMap<u64, Arc<Notify>>>,
    next: AtomicU64,
}

impl Watcher {
    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Notify>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notify when `fd`'s reading end closes or the socket fails. Closing
    /// the descriptor takes it out of the set.
    fn watch(&self, fd: BorrowedFd<'_>) -> io::Result<(u64, Arc<Notify>)> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.waiters().insert(token, Arc::clone(&notify));
        let flags = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if let Err(e) = self
            .epoll
            .get_ref()
            .0
            .add(fd, EpollEvent::new(flags, token))
        {
            self.waiters().remove(&token);
            return Err(e.into());
        }
        Ok((token, notify))
    }

    async fn run(self: Arc<Self>) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let mut ready = match self.epoll.readable().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "kernel relay: the close watcher failed");
                    return;
                }
            };
            loop {
                let n = match self.epoll.get_ref().0.wait(&mut events, 0u8) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "kernel relay: the close watcher failed");
                        return;
                    }
                };
                if n == 0 {
                    ready.clear_ready();
                    break;
                }
                let waiters = self.waiters();
                for ev in &events[..n] {
                    if let Some(w) = waiters.get(&ev.data()) {
                        w.notify_one();
                    }
                }
            }
        }
    }
}

/// Forgets a connection's waiters when its relay ends.
struct Unwatch<'a>(&'a Watcher, [u64; 2]);

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        let mut w = self.0.waiters();
        for t in self.1 {
            w.remove(&t);
        }
    }
}

/// Kernel-relay counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct KernelStats {
    /// Connections relayed by the kernel.
    pub connections: AtomicU64,
    /// Connections the kernel would not take, relayed in user space.
    pub refused: AtomicU64,
    /// Bytes of kernel-relayed connections that reached the router anyway
    /// (the kernel passes them up when a pair is being torn down).
    pub fallback_bytes: AtomicU64,
    /// Connections left in user space after their handshake: TLS (no
    /// safe point to hand over inside it), a failed login, a client that
    /// pipelined commands behind its login, or one the router could not
    /// follow.
    pub userspace: AtomicU64,
}

/// What [`splice`] did.
pub(crate) enum Prepared {
    /// The kernel relays it: run [`relay`].
    Spliced(Spliced),
    /// The kernel refused the pair; the pending bytes were passed on:
    /// relay in user space.
    Refused,
}

pub(crate) struct Spliced {
    _pairing: Pairing,
    client_base: TcpCounters,
    backend_base: TcpCounters,
    /// Bytes the router wrote to the client itself (the server's OK).
    to_client: u64,
}

/// Neither socket has a byte waiting to be read (a peek that does not
/// wait and consumes nothing; tokio's own readiness may lag behind).
pub(crate) fn quiet(client: &TcpStream, backend: &TcpStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut probe = [0u8; 1];
    [client, backend].iter().all(|s| {
        matches!(
            recv(
                s.as_raw_fd(),
                &mut probe,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
            ),
            Err(nix::errno::Errno::EAGAIN)
        )
    })
}

/// Pairs the two sockets in the kernel once the handshake is complete,
/// then passes on the server's last bytes (its OK to the login), which the
/// router holds. Only there: the client waits for that OK before it sends
/// a command, and the server sends nothing until it gets one, so no byte
/// can arrive before the pair exists (bytes already queued would not be
/// moved by the kernel); the caller has checked both sockets are
/// [`quiet`].
pub(crate) async fn splice(
    splicer: &Splicer,
    stats: &KernelStats,
    client: &mut TcpStream,
    backend: &mut TcpStream,
    pending: &[u8],
) -> io::Result<Prepared> {
    let client_base = tcp_counters(client.as_fd())?;
    let backend_base = tcp_counters(backend.as_fd())?;
    let pairing = match splicer.pair(client.as_fd(), backend.as_fd()) {
        Ok(p) => Some(p),
        Err(e) => {
            if stats.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(error = %e, "kernel relay refused a connection: relaying it in user space");
            }
            None
        }
    };
    tokio::time::timeout(HANDOVER_WRITE_TIMEOUT, client.write_all(pending))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no bytes of the server's OK for 5s",
            )
        })??;
    Ok(match pairing {
        Some(p) => {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            Prepared::Spliced(Spliced {
                _pairing: p,
                client_base,
                backend_base,
                to_client: pending.len() as u64,
            })
        }
        None => Prepared::Refused,
    })
}

/// Waits for either end to close, relays whatever the kernel passes up,
/// and passes each close on after the bytes before it have left.
pub(crate) async fn relay(
    relay: &KernelRelay,
    spliced: Spliced,
    stats: &KernelStats,
    client: TcpStream,
    backend: TcpStream,
) -> io::Result<()> {
    // Out of tokio's reactor (see the module's documentation).
    let client = client.into_std()?;
    let backend = backend.into_std()?;
    let watcher = &*relay.watcher;
    let (tc, client_closed) = watcher.watch(client.as_fd())?;
    let (tb, backend_closed) = match watcher.watch(backend.as_fd()) {
        Ok(w) => w,
        Err(e) => {
            watcher.waiters().remove(&tc);
            return Err(e);
        }
    };
    let _unwatch = Unwatch(watcher, [tc, tb]);
    let up = direction(
        stats,
        (&client, spliced.client_base, &client_closed),
        (&backend, spliced.backend_base),
        0,
    );
    let down = direction(
        stats,
        (&backend, spliced.backend_base, &backend_closed),
        (&client, spliced.client_base),
        spliced.to_client,
    );
    tokio::try_join!(up, down).map(drop)
}

async fn direction(
    stats: &KernelStats,
    (from, from_base, closed): (&std::net::TcpStream, TcpCounters, &Notify),
    (to, to_base): (&std::net::TcpStream, TcpCounters),
    mut written: u64,
) -> io::Result<()> {
    let mut read = 0u64;
    let mut buf = Vec::new();
    loop {
        closed.notified().await;
        // The end closed or failed: take what the kernel passed up (only
        // while a pair is torn down), then the end of the stream.
        loop {
            if buf.is_empty() {
                buf = vec![0u8; FALLBACK_BUF];
            }
            match (&*from).read(&mut buf) {
                Ok(0) => {
                    drain(from, from_base, read, to, to_base, written).await;
                    return to.shutdown(std::net::Shutdown::Write);
                }
                Ok(n) => {
                    read += n as u64;
                    stats.fallback_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    write_all(to, &buf[..n]).await?;
                    written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes on a non-blocking socket out of the reactor: a rare path (bytes
/// the kernel passed up), so it retries every millisecond, within a bound.
async fn write_all(mut to: &std::net::TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let deadline = tokio::time::Instant::now() + FALLBACK_WRITE_TIMEOUT;
    while !bytes.is_empty() {
        match to.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer took no bytes for 5s",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `from` has closed: every byte it received before its FIN, but those
/// the router read itself, went to the kernel's queue for `to`. Wait
/// (bounded) until `to`'s send queue has taken them all, so the close
/// passed on does not overtake them.
async fn drain(
    from: &std::net::TcpStream,
    from_base: TcpCounters,
    read: u64,
    to: &std::net::TcpStream,
    to_base: TcpCounters,
    written: u64,
) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let (Ok(f), Ok(t)) = (tcp_counters(from.as_fd()), tcp_counters(to.as_fd())) else {
            return;
        };
        if drained(from_base, f, read, to_base, t, written) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!("closing a kernel-relayed connection before its last bytes left");
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The arithmetic of [`drain`]: a FIN counts one received byte.
fn drained(
    from_base: TcpCounters,
    from_now: TcpCounters,
    read: u64,
    to_base: TcpCounters,
    to_now: TcpCounters,
    written: u64,
) -> bool {
    let redirected = from_now
        .received
        .saturating_sub(from_base.received)
        .saturating_sub(1 + read);
    let queued = to_now
        .queued
        .saturating_sub(to_base.queued)
        .saturating_sub(written);
    queued >= redirected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(received: u64, queued: u64) -> TcpCounters {
        TcpCounters { received, queued }
    }

    #[test]
    fn drained_counts_the_fin_and_the_bytes_the_router_moved_itself() {
        // 100 bytes + FIN arrived; all 100 queued on the other side.
        assert!(drained(c(5, 0), c(106, 0), 0, c(0, 7), c(0, 107), 0));
        // Only 99 queued yet.
        assert!(!drained(c(5, 0), c(106, 0), 0, c(0, 7), c(0, 106), 0));
        // 10 of them went through the router: 90 left for the kernel.
        assert!(drained(c(5, 0), c(106, 0), 10, c(0, 7), c(0, 107), 10));
        assert!(!drained(c(5, 0), c(106, 0), 10, c(0, 7), c(0, 96), 0));
        // The greeting written by the router does not count as relayed.
        assert!(!drained(c(0, 0), c(51, 0), 0, c(0, 0), c(0, 80), 40));
        assert!(drained(c(0, 0), c(51, 0), 0, c(0, 0), c(0, 90), 40));
        // Nothing but the FIN.
        assert!(drained(c(9, 0), c(10, 0), 0, c(0, 3), c(0, 3), 0));
    }
}
