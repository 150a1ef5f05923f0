//! What a router needs to know of a cluster, and its pure decisions: which
//! server takes writes, which replicas may take reads, which backend a new
//! reader connection goes to.
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::durable::DurableView;
use crate::flavor::ThreadState;
use crate::topology::{ClusterSnapshot, Role, ServerView};

/// One server as routers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub name: String,
    /// `host:port` of its mysqld.
    pub address: String,
    pub role: Role,
    /// mysqld up, host reachable, and (for replicas) both threads running
    /// without error.
    pub healthy: bool,
    /// mysqld is known down, not merely slow: its agent reports no mysqld
    /// process, or connections to it are refused. Connections to it are
    /// cut. A server merely not known healthy (a late report, or an agent
    /// whose sample timed out because the server is overloaded) leaves the
    /// pool and its connections drain: cutting them would turn a busy
    /// replica's slow queries into errors.
    #[serde(default)]
    pub down: bool,
    pub lag_seconds: Option<f64>,
    pub weight: u32,
}

/// The routing view of one cluster, versioned by the topology epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterView {
    pub cluster: String,
    pub epoch: u64,
    /// The master of `epoch`, when it is writable and healthy.
    pub writer: Option<Backend>,
    /// A failover or switchover is under way: hold new writer connections.
    pub changing: bool,
    pub servers: Vec<Backend>,
    pub max_lag_seconds: f64,
}

impl RouterView {
    /// A stable digest of the view, for long-polling: lag is rounded to
    /// 100 ms so that heartbeat jitter alone does not wake every router.
    pub fn digest(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.epoch.hash(&mut h);
        self.changing.hash(&mut h);
        self.writer.as_ref().map(|w| &w.name).hash(&mut h);
        for s in &self.servers {
            s.name.hash(&mut h);
            s.healthy.hash(&mut h);
            s.down.hash(&mut h);
            s.lag_seconds.map(|l| (l * 10.0) as i64).hash(&mut h);
            (s.role as u8).hash(&mut h);
        }
        h.finish()
    }
}

/// A replica fit for reads right now: healthy and lagging no more than
/// the bound.
pub fn fit_for_reads(b: &Backend, max_lag_seconds: f64) -> bool {
    b.role == Role::Replica
        && b.healthy
        && b.weight > 0
        && b.lag_seconds.is_some_and(|l| l <= max_lag_seconds)
}

/// mysqld is gone, not just slow: the host's agent answers and finds no
/// mysqld process, or nothing listens on its port.
pub fn known_down(v: &ServerView) -> bool {
    v.mysqld_up == Some(false) && v.agent.says_mysqld_gone()
}

/// Build a backend from a status row.
pub fn backend(v: &ServerView, weight: u32) -> Backend {
    let replication_ok = v.role != Role::Replica
        || (v.io_running == Some(ThreadState::Running)
            && v.sql_running == Some(ThreadState::Running)
            && v.last_error.is_none());
    Backend {
        name: v.name.clone(),
        address: v.address.clone(),
        role: v.role,
        healthy: v.mysqld_up == Some(true) && replication_ok,
        down: known_down(v),
        lag_seconds: v.lag_seconds,
        weight,
    }
}

/// The routing view of a cluster: every server as a [`Backend`] (weighted
/// by `weight`), and the writer: the master of the epoch while it is
/// healthy and writable, or, during a failover or switchover, the new
/// master it has made writable already (`durable.published_master`: it was
/// made so ahead of the next report). While an operation runs and has
/// published nothing, new writer connections are held (`changing`).
pub fn router_view(
    snapshot: &ClusterSnapshot,
    durable: &DurableView,
    weight: impl Fn(&str) -> u32,
    max_lag_seconds: f64,
) -> RouterView {
    let servers: Vec<Backend> = snapshot
        .servers
        .iter()
        .map(|v| backend(v, weight(&v.name)))
        .collect();
    let published = durable
        .published_master
        .as_deref()
        .filter(|m| durable.master.as_deref() == Some(*m));
    let writer = match published {
        Some(m) => servers.iter().find(|b| b.name == m).map(|b| Backend {
            role: Role::Master,
            healthy: true,
            down: false,
            ..b.clone()
        }),
        None => durable
            .master
            .as_deref()
            .and_then(|m| servers.iter().find(|b| b.name == m))
            .filter(|b| b.healthy && b.role == Role::Master)
            .cloned(),
    };
    RouterView {
        cluster: snapshot.cluster.clone(),
        epoch: snapshot.epoch,
        writer,
        changing: durable.in_progress && published.is_none(),
        servers,
        max_lag_seconds,
    }
}

/// The reader strategies operators know from nginx and LVS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    RoundRobin { counter: u64 },
    Weighted { counter: u64 },
    LeastConnections,
    AddressHash { client: u64 },
}

/// A candidate for a reader connection with its live connection count.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub weight: u32,
    pub connections: u64,
}

/// Choose among `pool` (non-empty, in a stable order). Weighted
/// round-robin walks a virtual ring where each backend appears `weight`
/// times; least connections uses LVS's weighted rule
/// (connections / weight, ties by order).
pub fn pick<'a>(pool: &[Candidate<'a>], how: Pick) -> Option<&'a str> {
    if pool.is_empty() {
        return None;
    }
    let idx = match how {
        Pick::RoundRobin { counter } => (counter % pool.len() as u64) as usize,
        Pick::AddressHash { client } => (client % pool.len() as u64) as usize,
        Pick::Weighted { counter } => {
            let total: u64 = pool.iter().map(|c| u64::from(c.weight.max(1))).sum();
            let mut slot = counter % total;
            let mut chosen = 0;
            for (i, c) in pool.iter().enumerate() {
                let w = u64::from(c.weight.max(1));
                if slot < w {
                    chosen = i;
                    break;
                }
                slot -= w;
            }
            chosen
        }
        Pick::LeastConnections => pool
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                let la = a.connections as f64 / f64::from(a.weight.max(1));
                let lb = b.connections as f64 / f64::from(b.weight.max(1));
                la.total_cmp(&lb)
            })
            .map_or(0, |(i, _)| i),
    };
    pool.get(idx).map(|c| c.name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::report::DownKind;

    fn cands() -> Vec<Candidate<'static>> {
        vec![
            Candidate {
                name: "db2",
                weight: 1,
                connections: 5,
            },
            Candidate {
                name: "db3",
                weight: 3,
                connections: 6,
            },
        ]
    }

    #[test]
    fn round_robin_alternates() {
        let p = cands();
        let got: Vec<_> = (0..4)
            .map(|c| pick(&p, Pick::RoundRobin { counter: c }).unwrap())
            .collect();
        assert_eq!(got, ["db2", "db3", "db2", "db3"]);
    }

    #[test]
    fn weighted_follows_weights() {
        let p = cands();
        let n3 = (0..400)
            .filter(|c| pick(&p, Pick::Weighted { counter: *c }) == Some("db3"))
            .count();
        assert_eq!(n3, 300);
    }

    #[test]
    fn least_connections_is_weighted_like_lvs() {
        // db2: 5/1 = 5, db3: 6/3 = 2 -> db3.
        assert_eq!(pick(&cands(), Pick::LeastConnections), Some("db3"));
        let p = vec![
            Candidate {
                name: "a",
                weight: 1,
                connections: 1,
            },
            Candidate {
                name: "b",
                weight: 1,
                connections: 4,
            },
        ];
        assert_eq!(pick(&p, Pick::LeastConnections), Some("a"));
    }

    #[test]
    fn address_hash_is_sticky() {
        let p = cands();
        for client in 0..20u64 {
            let first = pick(&p, Pick::AddressHash { client });
            assert_eq!(first, pick(&p, Pick::AddressHash { client }));
        }
        assert_eq!(pick(&[], Pick::LeastConnections), None);
    }

    #[test]
    fn fitness_needs_health_and_lag_bound() {
        let mut b = Backend {
            name: "db2".into(),
            address: "x:3306".into(),
            role: Role::Replica,
            healthy: true,
            down: false,
            lag_seconds: Some(0.2),
            weight: 1,
        };
        assert!(fit_for_reads(&b, 1.0));
        b.lag_seconds = Some(3.0);
        assert!(!fit_for_reads(&b, 1.0));
        b.lag_seconds = None;
        assert!(!fit_for_reads(&b, 1.0));
        b.lag_seconds = Some(0.1);
        b.healthy = false;
        assert!(!fit_for_reads(&b, 1.0));
        b.healthy = true;
        b.role = Role::Master;
        assert!(!fit_for_reads(&b, 1.0));
    }

    fn down_view(agent_fresh: bool, process: Option<bool>, kind: Option<DownKind>) -> ServerView {
        use crate::topology::{AgentView, ProbeView};
        ServerView {
            name: "db3".into(),
            address: "db3:3306".into(),
            role: Role::Unknown,
            mysqld_up: if agent_fresh { Some(false) } else { None },
            host_reachable: agent_fresh,
            read_only: None,
            gtid_position: None,
            io_running: None,
            sql_running: None,
            last_error: None,
            lag_seconds: None,
            age_ms: None,
            source: None,
            replicates_from: None,
            server_id: None,
            errant: Vec::new(),
            diverged_gtids: Vec::new(),
            disagreements: Vec::new(),
            agent: AgentView {
                version: None,
                reachable: agent_fresh,
                last_report_age_ms: Some(if agent_fresh { 100 } else { 9_000 }),
                mysqld_process: process,
                down_kind: kind,
                down_error: kind.map(|k| format!("{k:?}")),
                master_view: None,
                epoch_seen: Some(1),
            },
            manager_probe: ProbeView {
                ok: false,
                age_ms: Some(100),
                failing_for_ms: Some(2_000),
                latency_ms: None,
                error: Some("timed out".into()),
            },
            facts: None,
        }
    }

    #[test]
    fn only_a_gone_mysqld_is_known_down() {
        // Process gone, or nothing listens: down, cut its connections.
        assert!(known_down(&down_view(
            true,
            Some(false),
            Some(DownKind::Refused)
        )));
        assert!(known_down(&down_view(
            true,
            Some(false),
            Some(DownKind::Timeout)
        )));
        assert!(known_down(&down_view(true, None, Some(DownKind::Refused))));
        // Overloaded or stalled (the sample timed out, the process is
        // there), rejecting us, or an unknown process state without a
        // refusal: not down, only unfit; its connections drain.
        for kind in [DownKind::Timeout, DownKind::Rejected, DownKind::Error] {
            assert!(
                !known_down(&down_view(true, Some(true), Some(kind))),
                "{kind:?}"
            );
            assert!(!known_down(&down_view(true, None, Some(kind))), "{kind:?}");
        }
        // Agent silent: nothing is known.
        assert!(!known_down(&down_view(
            false,
            Some(false),
            Some(DownKind::Refused)
        )));
        let b = backend(&down_view(true, Some(true), Some(DownKind::Timeout)), 1);
        assert!(!b.healthy && !b.down, "{b:?}");
        let b = backend(&down_view(true, Some(false), Some(DownKind::Refused)), 1);
        assert!(!b.healthy && b.down, "{b:?}");
    }
}
