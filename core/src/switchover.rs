//! Pre-checks of a planned switchover, all reported at once: a pure
//! function over the snapshot, the verdict and the candidate choice.
use serde::{Deserialize, Serialize};

use crate::analysis::Verdict;
use crate::candidate::CandidateChoice;
use crate::flavor::ThreadState;
use crate::topology::ClusterSnapshot;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchoverPlan {
    pub old_master: Option<String>,
    pub target: Option<String>,
    /// Reasons the switchover cannot run; empty when it can.
    pub problems: Vec<String>,
}

pub struct SwitchoverInput<'a> {
    pub snapshot: &'a ClusterSnapshot,
    /// The master of the current epoch.
    pub master: Option<&'a str>,
    pub verdict: Option<Verdict>,
    pub operation_in_progress: Option<&'a str>,
    /// `--to`, if given.
    pub requested: Option<&'a str>,
    /// Candidate choice with the master as the one to replace (and the
    /// requested target forced, if any).
    pub choice: &'a CandidateChoice,
    /// Lag bound for the target, seconds (heartbeat lag).
    pub max_lag_seconds: f64,
}

pub fn precheck(input: &SwitchoverInput<'_>) -> SwitchoverPlan {
    let mut problems = Vec::new();
    let snap = input.snapshot;
    if let Some(op) = input.operation_in_progress {
        problems.push(format!("operation {op} is in progress"));
    }
    let master = input.master.or(snap.master.as_deref());
    match (master, input.verdict) {
        (None, _) => problems.push("no master is known".into()),
        (Some(m), v) => {
            if v != Some(Verdict::Healthy) {
                problems.push(format!(
                    "master {m} is not healthy ({v:?}): use `myha failover` for a dead master"
                ));
            }
            if snap.master.as_deref() != Some(m) {
                problems.push(format!("master {m} is not the only writable server"));
            }
        }
    }
    if let (Some(req), Some(m)) = (input.requested, master) {
        if req == m {
            problems.push(format!("{req} is already the master"));
        }
        if snap.server(req).is_none() {
            problems.push(format!("{req} is not a server of cluster {}", snap.cluster));
        }
    }
    let target = input.choice.chosen.clone();
    if target.is_none() {
        problems.push(
            input
                .choice
                .blocker
                .clone()
                .unwrap_or_else(|| "no eligible target".into()),
        );
    }
    // The target's own checks, also for a requested target the choice
    // excluded: every reason is reported at once.
    match target.as_deref().or(input.requested) {
        None => {}
        Some(t) => {
            if let Some(v) = snap.server(t) {
                if v.io_running != Some(ThreadState::Running)
                    || v.sql_running != Some(ThreadState::Running)
                {
                    problems.push(format!(
                        "{t} is not replicating (IO {:?}, SQL {:?})",
                        v.io_running, v.sql_running
                    ));
                }
                if let Some(e) = &v.last_error {
                    problems.push(format!("{t} has a replication error: {e}"));
                }
                match v.lag_seconds {
                    Some(l) if l > input.max_lag_seconds => problems.push(format!(
                        "{t} lags {l:.1} s, more than {:.1} s",
                        input.max_lag_seconds
                    )),
                    None => problems.push(format!("{t}'s lag is unknown")),
                    _ => {}
                }
                if let Some(m) = master.and_then(|m| snap.server(m)) {
                    let source = v.replicates_from.as_deref().unwrap_or("");
                    let master_ip = m
                        .address
                        .rsplit_once(':')
                        .map_or(m.address.as_str(), |(h, _)| h);
                    if !source.starts_with(master_ip) {
                        problems.push(format!(
                            "{t} replicates from {source}, not from the master {}",
                            m.name
                        ));
                    }
                }
            }
        }
    }
    SwitchoverPlan {
        old_master: master.map(str::to_string),
        target,
        problems,
    }
}
