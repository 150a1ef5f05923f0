//! One cluster as `GET /v1/clusters/{name}` answers it (`myha status`).
use myha_core::analysis::Analysis;
use myha_core::candidate::CandidateChoice;
use myha_core::topology::ClusterSnapshot;
use serde::{Deserialize, Serialize};

use crate::journal::Operation;

/// A cluster as `myha status` shows it: the snapshot, the verdict on the
/// master, what a failover would do now, and the safety rails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    #[serde(flatten)]
    pub snapshot: ClusterSnapshot,
    /// The master of the current epoch, on record.
    pub epoch_master: Option<String>,
    pub analysis: Option<Analysis>,
    /// If the master died now: the candidate, what is excluded and why.
    pub readiness: Option<CandidateChoice>,
    pub failover_blocked_until_ms: Option<u64>,
    pub last_failover_ms: Option<u64>,
    pub in_progress: Option<Operation>,
    pub needs_rejoin: Vec<String>,
    /// Why each server that should rejoin has not: the last attempt's
    /// refusal, and what would fix it.
    #[serde(default)]
    pub rejoin_refused: std::collections::BTreeMap<String, String>,
    /// Semi-sync degraded to asynchronous by the manager, and why.
    #[serde(default)]
    pub semi_sync_degraded: Option<String>,
    /// Which manager answered, who leads, and why no failover is possible
    /// now when none is.
    #[serde(default)]
    pub coordination: Option<crate::coordination::Coordination>,
}

/// How much a cluster needs an operator, as `myha status` exits (the
/// Nagios convention): 0 healthy, 1 degraded, 2 critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Nothing to do.
    Healthy,
    /// It works, and a failover would work, but something is not as it
    /// should be (a replica down or lagging, a server to rejoin, semi-sync
    /// degraded, an operation under way, failover blocked, a suspect
    /// verdict).
    Degraded,
    /// No writable master, or no failover possible now.
    Critical,
}

impl Attention {
    /// The exit code: 0, 1 or 2.
    pub fn code(self) -> u8 {
        match self {
            Attention::Healthy => 0,
            Attention::Degraded => 1,
            Attention::Critical => 2,
        }
    }
}

impl ClusterStatus {
    /// How much this cluster needs an operator, and why (pure: over what
    /// the manager answered, at `now_ms`).
    pub fn attention(&self, now_ms: u64) -> (Attention, Vec<String>) {
        use myha_core::analysis::Verdict;
        use myha_core::flavor::ThreadState;
        use myha_core::topology::Role;
        let mut critical = Vec::new();
        let mut degraded = Vec::new();
        let s = &self.snapshot;
        match (&self.epoch_master, &s.master) {
            (None, _) => critical.push("no master on record".to_string()),
            (Some(m), None) => critical.push(format!("no writable master ({m} on record)")),
            (Some(m), Some(w)) if m != w => {
                critical.push(format!("{w} is writable but {m} is the master on record"))
            }
            _ => {}
        }
        if let Some(c) = &self.coordination {
            if let Some(why) = &c.blocked {
                critical.push(why.clone());
            }
        }
        match &self.readiness {
            None => critical.push("no failover possible: no candidate is known".to_string()),
            Some(r) if r.chosen.is_none() => critical.push(format!(
                "no failover possible: {}",
                r.blocker.as_deref().unwrap_or("no eligible replica")
            )),
            Some(_) => {}
        }
        if let Some(a) = &self.analysis {
            if a.verdict != Verdict::Healthy {
                degraded.push(format!("verdict {:?}", a.verdict));
            }
        }
        degraded.extend(s.problems.iter().cloned());
        for v in &s.servers {
            let is_master = self.epoch_master.as_deref() == Some(v.name.as_str());
            if !is_master && v.role == Role::Replica {
                let running = |t: Option<ThreadState>| t == Some(ThreadState::Running);
                if !running(v.io_running) || !running(v.sql_running) {
                    degraded.push(format!("{}: replication threads not running", v.name));
                }
            } else if !is_master && v.mysqld_up != Some(true) {
                degraded.push(format!(
                    "{}: not replicating (mysqld down or unknown)",
                    v.name
                ));
            }
            if !v.diverged_gtids.is_empty() {
                degraded.push(format!("{}: diverged", v.name));
            }
        }
        for n in &self.needs_rejoin {
            degraded.push(format!("{n} needs a rejoin"));
        }
        if self.semi_sync_degraded.is_some() {
            degraded.push("semi-sync degraded to asynchronous".to_string());
        }
        if let Some(op) = &self.in_progress {
            degraded.push(format!("operation {} in progress", op.id));
        }
        if self.failover_blocked_until_ms.is_some_and(|u| u > now_ms) {
            degraded.push(
                "automatic failover blocked after the last one (acknowledge with `myha failover --ack`)"
                    .to_string(),
            );
        }
        degraded.dedup();
        if !critical.is_empty() {
            critical.extend(degraded);
            (Attention::Critical, critical)
        } else if !degraded.is_empty() {
            (Attention::Degraded, degraded)
        } else {
            (Attention::Healthy, Vec::new())
        }
    }
}
