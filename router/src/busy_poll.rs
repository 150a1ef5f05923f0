//! Adaptive busy polling while bytes move through the router.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use myha_config::RouterConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Shared;

/// The busy-poll budget, `None`: no busy polling.
pub(crate) fn budget(router: &RouterConfig) -> Option<Duration> {
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
pub(crate) async fn busy_poll(
    shared: Arc<Shared>,
    budget: Duration,
    shutdown: watch::Receiver<bool>,
) {
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
pub(crate) struct Tracked<'a> {
    io: &'a mut TcpStream,
    shared: &'a Shared,
}

impl<'a> Tracked<'a> {
    pub(crate) fn new(io: &'a mut TcpStream, shared: &'a Shared) -> Self {
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
