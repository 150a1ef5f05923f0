//! The reader pool: replicas fit for reads, after a rise time, with the
//! router's own state per backend (live connections, generation).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use myha_config::Strategy;
use myha_core::routing::{fit_for_reads, pick, Candidate, Pick};

use crate::Shared;

/// A replica returns to the reader pool only after this long healthy.
pub(crate) const RISE: Duration = Duration::from_secs(2);

/// Per-backend state: hysteresis and live connections.
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    /// Fit for reads since then (None: not fit now).
    pub fit_since: Option<Instant>,
    /// Live connections through this router.
    pub connections: Arc<AtomicU64>,
    /// Bumped when the backend's mysqld is known down: connections of an
    /// older generation are cut (a lagging or late-reporting replica's are
    /// only drained).
    pub generation: u64,
}

/// A member of the reader pool.
#[derive(Debug, Clone)]
pub(crate) struct PoolMember {
    pub name: String,
    /// `host:port` of its mysqld.
    pub address: String,
    pub weight: u32,
    /// Its live connections through this router.
    pub connections: Arc<AtomicU64>,
    /// Its generation when the pool was read (see [`BackendState`]).
    pub generation: u64,
}

impl Shared {
    /// The reader pool now, in configuration order.
    pub(crate) fn pool(&self) -> Vec<PoolMember> {
        let view = self.view.borrow().clone();
        let Some(view) = view else { return Vec::new() };
        let backends = self.backends();
        view.servers
            .iter()
            .filter(|b| fit_for_reads(b, view.max_lag_seconds))
            .filter_map(|b| {
                let st = backends.get(&b.name)?;
                let since = st.fit_since?;
                (since.elapsed() >= RISE).then(|| PoolMember {
                    name: b.name.clone(),
                    address: b.address.clone(),
                    weight: b.weight,
                    connections: Arc::clone(&st.connections),
                    generation: st.generation,
                })
            })
            .collect()
    }

    /// The pool member a new reader connection from `peer` goes to, by
    /// the configured strategy; `None`: the pool is empty.
    pub(crate) fn pick_reader(&self, peer: &SocketAddr) -> Option<PoolMember> {
        let pool = self.pool();
        let candidates: Vec<Candidate<'_>> = pool
            .iter()
            .map(|p| Candidate {
                name: &p.name,
                weight: p.weight,
                connections: p.connections.load(Ordering::Relaxed),
            })
            .collect();
        let how = match self.router.strategy {
            Strategy::RoundRobin => Pick::RoundRobin {
                counter: self.counter.fetch_add(1, Ordering::Relaxed),
            },
            Strategy::Weighted => Pick::Weighted {
                counter: self.counter.fetch_add(1, Ordering::Relaxed),
            },
            Strategy::LeastConnections => Pick::LeastConnections,
            Strategy::AddressHash => Pick::AddressHash {
                client: client_hash(peer),
            },
        };
        pick(&candidates, how)
            .and_then(|n| pool.iter().find(|p| p.name == n))
            .cloned()
    }
}

fn client_hash(addr: &SocketAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.ip().hash(&mut h);
    h.finish()
}
