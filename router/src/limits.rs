//! Connection caps: at most `max_connections` open client connections per
//! listener and `max_connections_per_source` per source address and
//! listener. A connection over a cap is refused at accept, before any
//! backend connection is opened: the router writes a MySQL error packet
//! (1040, as a server over `max_connections` does) and closes it. Every
//! refusal is counted; the log says so at most every [`LOG_EVERY`].
//!
//! A connection counts from its accept until both its sides are closed,
//! including while it is held (writer port during a change) or shaking
//! hands.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myha_config::RouterConfig;

/// Index of the writer listener in the per-endpoint arrays.
pub(crate) const WRITER: usize = 0;
/// Index of the reader listener.
pub(crate) const READER: usize = 1;
/// Endpoint names, by index (metrics labels, JSON keys).
pub(crate) const ENDPOINTS: [&str; 2] = ["writer", "reader"];
/// At most one log line per kind of event this often.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);
/// MySQL's "Too many connections".
pub(crate) const ER_CON_COUNT_ERROR: u16 = 1040;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener holds `max_connections` already.
    ListenerCap,
    /// The source address holds `max_connections_per_source` already.
    SourceCap,
}

impl Refusal {
    /// The error message the client reads.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ListenerCap => "Too many connections (myha router: max_connections)",
            Refusal::SourceCap => {
                "Too many connections from this address (myha router: max_connections_per_source)"
            }
        }
    }
}

/// The open connections of one listener.
#[derive(Debug, Default)]
struct Open {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

impl Open {
    /// Takes a place for `source`, or says which cap refuses it.
    fn take(&mut self, source: IpAddr, max: u32, max_per_source: u32) -> Result<(), Refusal> {
        if self.total >= max {
            return Err(Refusal::ListenerCap);
        }
        let n = self.per_source.entry(source).or_insert(0);
        if *n >= max_per_source {
            return Err(Refusal::SourceCap);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// Logs an event at most every [`LOG_EVERY`]; counts what it did not log.
#[derive(Debug, Default)]
struct RateLog(Mutex<(Option<Instant>, u64)>);

impl RateLog {
    /// `Some(n)`: log now, `n` more of the same since the last line.
    fn due(&self) -> Option<u64> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (last, unlogged) = &mut *g;
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            *unlogged += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(unlogged))
    }
}

/// The caps of one router and what they refused.
#[derive(Debug)]
pub(crate) struct Limits {
    pub max_connections: u32,
    pub max_per_source: u32,
    pub handshake_timeout: Duration,
    open: [Mutex<Open>; 2],
    /// Refused at accept, by endpoint.
    pub refused_listener_cap: [AtomicU64; 2],
    pub refused_source_cap: [AtomicU64; 2],
    /// Closed for not completing the MySQL handshake in time.
    pub handshake_timeouts: [AtomicU64; 2],
    /// `relay: nat`: what the kernel's rules refused, as last read.
    pub nat_refused_listener_cap: [AtomicU64; 2],
    pub nat_refused_source_cap: [AtomicU64; 2],
    refusal_log: RateLog,
    timeout_log: RateLog,
}

/// A place taken under the caps; given back when dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    limits: Arc<Limits>,
    endpoint: usize,
    source: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limits.open(self.endpoint).release(self.source);
    }
}

impl Limits {
    pub fn new(router: &RouterConfig) -> Arc<Self> {
        Arc::new(Self {
            max_connections: router.max_connections,
            max_per_source: router.max_connections_per_source,
            handshake_timeout: router.handshake_timeout,
            open: Default::default(),
            refused_listener_cap: Default::default(),
            refused_source_cap: Default::default(),
            handshake_timeouts: Default::default(),
            nat_refused_listener_cap: Default::default(),
            nat_refused_source_cap: Default::default(),
            refusal_log: RateLog::default(),
            timeout_log: RateLog::default(),
        })
    }

    fn open(&self, endpoint: usize) -> std::sync::MutexGuard<'_, Open> {
        self.open[endpoint]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `source` on `endpoint`, or the
    /// cap that refuses it (counted and, at most every [`LOG_EVERY`],
    /// logged).
    pub fn admit(self: &Arc<Self>, endpoint: usize, source: IpAddr) -> Result<Admitted, Refusal> {
        let source = source.to_canonical();
        let taken = self
            .open(endpoint)
            .take(source, self.max_connections, self.max_per_source);
        match taken {
            Ok(()) => Ok(Admitted {
                limits: Arc::clone(self),
                endpoint,
                source,
            }),
            Err(refusal) => {
                self.refused(endpoint, refusal, source);
                Err(refusal)
            }
        }
    }

    fn refused(&self, endpoint: usize, refusal: Refusal, source: IpAddr) {
        let (counter, cap, limit) = match refusal {
            Refusal::ListenerCap => (
                &self.refused_listener_cap[endpoint],
                "max_connections",
                self.max_connections,
            ),
            Refusal::SourceCap => (
                &self.refused_source_cap[endpoint],
                "max_connections_per_source",
                self.max_per_source,
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = self.refusal_log.due() {
            tracing::warn!(
                endpoint = ENDPOINTS[endpoint],
                %source,
                cap,
                limit,
                unlogged,
                "refusing connections over a cap (one line every {}s at most; \
                 `unlogged`: refusals since the last line; see \
                 myha_router_refused_*_cap_total)",
                LOG_EVERY.as_secs()
            );
        }
    }

    /// A client did not complete the handshake in time: counted, logged at
    /// most every [`LOG_EVERY`].
    pub fn handshake_timed_out(&self, endpoint: usize, source: IpAddr) {
        self.handshake_timeouts[endpoint].fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = self.timeout_log.due() {
            tracing::warn!(
                endpoint = ENDPOINTS[endpoint],
                %source,
                timeout = ?self.handshake_timeout,
                unlogged,
                "closed a client that had not completed the MySQL handshake in time \
                 (one line every {}s at most; see myha_router_handshake_timeouts_total)",
                LOG_EVERY.as_secs()
            );
        }
    }

    /// Open connections on `endpoint` and the source addresses they come
    /// from.
    pub fn open_now(&self, endpoint: usize) -> (u32, usize) {
        let o = self.open(endpoint);
        (o.total, o.per_source.len())
    }

    /// Refusals on `endpoint`, the router's and the kernel's rules':
    /// (listener cap, source cap).
    pub fn refusals(&self, endpoint: usize) -> (u64, u64) {
        let get = |a: &[AtomicU64; 2]| a[endpoint].load(Ordering::Relaxed);
        (
            get(&self.refused_listener_cap) + get(&self.nat_refused_listener_cap),
            get(&self.refused_source_cap) + get(&self.nat_refused_source_cap),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(max: u32, per_source: u32) -> Arc<Limits> {
        Limits::new(&RouterConfig {
            max_connections: max,
            max_connections_per_source: per_source,
            ..RouterConfig::default()
        })
    }

    #[test]
    fn a_source_over_its_cap_is_refused_and_others_still_come_in() {
        let l = limits(10, 3);
        let held: Vec<_> = (0..3)
            .map(|_| l.admit(READER, ip("10.0.0.9")).unwrap())
            .collect();
        assert_eq!(
            l.admit(READER, ip("10.0.0.9")).unwrap_err(),
            Refusal::SourceCap
        );
        // Per listener: the writer port has its own count.
        let _w = l.admit(WRITER, ip("10.0.0.9")).unwrap();
        let _other = l.admit(READER, ip("10.0.0.7")).unwrap();
        assert_eq!(l.open_now(READER), (4, 2));
        assert_eq!(l.refusals(READER), (0, 1));
        drop(held);
        assert_eq!(l.open_now(READER), (1, 1));
        let _again = l.admit(READER, ip("10.0.0.9")).unwrap();
    }

    #[test]
    fn the_listener_cap_holds_across_sources() {
        let l = limits(2, 5);
        let _a = l.admit(WRITER, ip("10.0.0.1")).unwrap();
        let _b = l.admit(WRITER, ip("10.0.0.2")).unwrap();
        assert_eq!(
            l.admit(WRITER, ip("10.0.0.3")).unwrap_err(),
            Refusal::ListenerCap
        );
        assert_eq!(l.refusals(WRITER), (1, 0));
        assert_eq!(l.open_now(WRITER), (2, 2));
    }

    #[test]
    fn mapped_ipv6_addresses_count_as_their_ipv4_source() {
        let l = limits(10, 1);
        let _a = l.admit(READER, ip("10.0.0.1")).unwrap();
        assert!(l.admit(READER, ip("::ffff:10.0.0.1")).is_err());
    }

    #[test]
    fn the_log_speaks_once_per_period_and_counts_the_rest() {
        let r = RateLog::default();
        assert_eq!(r.due(), Some(0));
        assert_eq!(r.due(), None);
        assert_eq!(r.due(), None);
        if let Ok(mut g) = r.0.lock() {
            g.0 = Instant::now().checked_sub(LOG_EVERY);
        }
        assert_eq!(r.due(), Some(2));
    }
}
