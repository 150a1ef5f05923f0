//! Pre-checks of a planned switchover, all reported at once: a pure
//! function over the snapshot, the verdict and the candidate choice.
use serde::Serialize;

use crate::analysis::Verdict;
use crate::candidate::CandidateChoice;
use crate::flavor::ThreadState;
use crate::topology::ClusterSnapshot;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchoverPlan {
    pub old_master: Option<String>,
    pub target: Option<String>,
    /// Reasons the switchover cannot run; empty when it can.
    pub problems: Vec<PrecheckProblem>,
}

/// Why a switchover cannot run now. Shown (and serialised) as a sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum PrecheckProblem {
    OperationInProgress {
        operation: String,
    },
    NoMaster,
    MasterNotHealthy {
        master: String,
        verdict: Option<Verdict>,
    },
    MasterNotSoleWriter {
        master: String,
    },
    AlreadyMaster {
        host: String,
    },
    UnknownServer {
        host: String,
        cluster: String,
    },
    /// The candidate choice found no target: its blocker, if it named one.
    NoTarget {
        blocker: Option<String>,
    },
    NotReplicating {
        host: String,
        io: Option<ThreadState>,
        sql: Option<ThreadState>,
    },
    ReplicationError {
        host: String,
        error: String,
    },
    Lagging {
        host: String,
        lag: f64,
        max: f64,
    },
    LagUnknown {
        host: String,
    },
    WrongSource {
        host: String,
        source: String,
        master: String,
    },
}

impl std::fmt::Display for PrecheckProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use PrecheckProblem as P;
        match self {
            P::OperationInProgress { operation } => write!(f, "operation {operation} is in progress"),
            P::NoMaster => f.write_str("no master is known"),
            P::MasterNotHealthy { master, verdict } => write!(
                f,
                "master {master} is not healthy ({verdict:?}): use `myha failover` for a dead master"
            ),
            P::MasterNotSoleWriter { master } => {
                write!(f, "master {master} is not the only writable server")
            }
            P::AlreadyMaster { host } => write!(f, "{host} is already the master"),
            P::UnknownServer { host, cluster } => {
                write!(f, "{host} is not a server of cluster {cluster}")
            }
            P::NoTarget { blocker } => {
                f.write_str(blocker.as_deref().unwrap_or("no eligible target"))
            }
            P::NotReplicating { host, io, sql } => {
                write!(f, "{host} is not replicating (IO {io:?}, SQL {sql:?})")
            }
            P::ReplicationError { host, error } => {
                write!(f, "{host} has a replication error: {error}")
            }
            P::Lagging { host, lag, max } => write!(f, "{host} lags {lag:.1} s, more than {max:.1} s"),
            P::LagUnknown { host } => write!(f, "{host}'s lag is unknown"),
            P::WrongSource {
                host,
                source,
                master,
            } => write!(f, "{host} replicates from {source}, not from the master {master}"),
        }
    }
}

impl Serialize for PrecheckProblem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
        problems.push(PrecheckProblem::OperationInProgress {
            operation: op.to_string(),
        });
    }
    let master = input.master.or(snap.master.as_deref());
    match (master, input.verdict) {
        (None, _) => problems.push(PrecheckProblem::NoMaster),
        (Some(m), v) => {
            if v != Some(Verdict::Healthy) {
                problems.push(PrecheckProblem::MasterNotHealthy {
                    master: m.to_string(),
                    verdict: v,
                });
            }
            if snap.master.as_deref() != Some(m) {
                problems.push(PrecheckProblem::MasterNotSoleWriter {
                    master: m.to_string(),
                });
            }
        }
    }
    if let (Some(req), Some(m)) = (input.requested, master) {
        if req == m {
            problems.push(PrecheckProblem::AlreadyMaster {
                host: req.to_string(),
            });
        }
        if snap.server(req).is_none() {
            problems.push(PrecheckProblem::UnknownServer {
                host: req.to_string(),
                cluster: snap.cluster.clone(),
            });
        }
    }
    let target = input.choice.chosen.clone();
    if target.is_none() {
        problems.push(PrecheckProblem::NoTarget {
            blocker: input.choice.blocker.clone(),
        });
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
                    problems.push(PrecheckProblem::NotReplicating {
                        host: t.to_string(),
                        io: v.io_running,
                        sql: v.sql_running,
                    });
                }
                if let Some(e) = &v.last_error {
                    problems.push(PrecheckProblem::ReplicationError {
                        host: t.to_string(),
                        error: e.clone(),
                    });
                }
                match v.lag_seconds {
                    Some(l) if l > input.max_lag_seconds => {
                        problems.push(PrecheckProblem::Lagging {
                            host: t.to_string(),
                            lag: l,
                            max: input.max_lag_seconds,
                        })
                    }
                    None => problems.push(PrecheckProblem::LagUnknown {
                        host: t.to_string(),
                    }),
                    _ => {}
                }
                if let Some(m) = master.and_then(|m| snap.server(m)) {
                    let source = v.replicates_from.as_deref().unwrap_or("");
                    let master_ip = m
                        .address
                        .rsplit_once(':')
                        .map_or(m.address.as_str(), |(h, _)| h);
                    if !source.starts_with(master_ip) {
                        problems.push(PrecheckProblem::WrongSource {
                            host: t.to_string(),
                            source: source.to_string(),
                            master: m.name.clone(),
                        });
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
