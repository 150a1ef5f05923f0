//! Every timing of one cluster in one place: the configured values and the
//! ones derived from them (which the code used to compute where it needed
//! them), with the rules between them checked at validation, so a wrong
//! combination is a configuration error with its location.
use std::time::Duration;

use crate::{AgentConfig, ClusterConfig, Config, ManagerConfig};

/// The timings of one cluster, derived from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How often each agent samples its server and reports (`agent.interval`).
    pub agent_interval: Duration,
    /// How often the manager probes every server (`manager.probe_interval`).
    pub probe_interval: Duration,
    /// Bound of one manager query (`manager.query_timeout`).
    pub probe_query_timeout: Duration,
    /// How long evidence of a dead master must persist (`master_down_after`).
    pub master_down_after: Duration,
    /// An agent's report older than this is stale: 4 × `agent.interval`,
    /// at least 1 s (a report or two may be late without the host looking
    /// silent).
    pub agent_stale_after: Duration,
    /// The manager's probe of a server older than this is stale: 3 ×
    /// `probe_interval` + `query_timeout` (a probe may take its whole
    /// timeout, and two may fail to arrive).
    pub probe_stale_after: Duration,
    /// A writable master whose agent has had no answer from the manager for
    /// this long, and reaches no other host, fences itself:
    /// `max(master_down_after, 1 s)` ([`ClusterConfig::self_fence_after`]).
    pub self_fence_after: Duration,
    /// How long after the manager last heard an old master's agent a
    /// failover may promote when it could not fence that master:
    /// [`ClusterConfig::self_fenced_by`].
    pub self_fenced_by: Duration,
    /// When the manager degrades semi-sync (`semi_sync_degrade_after`).
    pub semi_sync_degrade_after: Duration,
    /// Automatic failovers refused after one (`failover_block_period`).
    pub failover_block_period: Duration,
}

/// A configured key a timing rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingKey {
    MasterDownAfter,
    SemiSyncDegradeAfter,
}

impl TimingKey {
    /// The key as written in the file.
    pub fn key(self) -> &'static str {
        match self {
            TimingKey::MasterDownAfter => "master_down_after",
            TimingKey::SemiSyncDegradeAfter => "semi_sync_degrade_after",
        }
    }
}

impl Timings {
    /// The timings of `cluster` under `manager` and `agent`.
    pub fn of(manager: &ManagerConfig, agent: &AgentConfig, cluster: &ClusterConfig) -> Self {
        Timings {
            agent_interval: agent.interval,
            probe_interval: manager.probe_interval,
            probe_query_timeout: manager.query_timeout,
            master_down_after: cluster.master_down_after,
            agent_stale_after: Self::agent_stale_after(agent),
            probe_stale_after: Self::probe_stale_after(manager),
            self_fence_after: cluster.self_fence_after(),
            self_fenced_by: cluster.self_fenced_by(agent.interval),
            semi_sync_degrade_after: cluster.semi_sync_degrade_after,
            failover_block_period: cluster.failover_block_period,
        }
    }

    /// When an agent's report is stale (the same for every cluster).
    pub fn agent_stale_after(agent: &AgentConfig) -> Duration {
        agent.interval.saturating_mul(4).max(Duration::from_secs(1))
    }

    /// When the manager's own probe of a server is stale (the same for
    /// every cluster).
    pub fn probe_stale_after(manager: &ManagerConfig) -> Duration {
        manager
            .probe_interval
            .saturating_mul(3)
            .saturating_add(manager.query_timeout)
    }

    /// The rules between the timings, each broken one with the key to fix
    /// and why.
    pub fn problems(&self) -> Vec<(TimingKey, String)> {
        let mut out = Vec::new();
        if self.master_down_after < self.probe_interval.saturating_mul(2) {
            out.push((
                TimingKey::MasterDownAfter,
                format!(
                    "`master_down_after` ({}) must be at least twice \
                     `manager.probe_interval` ({}): a dead master is declared on the \
                     manager's own evidence from at least two probes, never one late one",
                    fmt(self.master_down_after),
                    fmt(self.probe_interval)
                ),
            ));
        }
        if self.semi_sync_degrade_after <= self.self_fenced_by {
            out.push((
                TimingKey::SemiSyncDegradeAfter,
                format!(
                    "`semi_sync_degrade_after` ({}) must be longer than the time a failover \
                     may wait for an unreachable master to fence itself ({}: \
                     `master_down_after` or 1 s, + `agent.interval` + 1.25 s): semi-sync \
                     must outlast self-fencing, or a master could commit alone while a \
                     failover still waits on it",
                    fmt(self.semi_sync_degrade_after),
                    fmt(self.self_fenced_by)
                ),
            ));
        }
        out
    }
}

impl Config {
    /// The timings of `cluster` under this file's manager and agent keys.
    pub fn timings(&self, cluster: &ClusterConfig) -> Timings {
        Timings::of(&self.manager, &self.agent, cluster)
    }
}

/// A duration as a person writes it: `250ms`, `1.5s`, `10s`.
fn fmt(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if d.subsec_millis() == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
