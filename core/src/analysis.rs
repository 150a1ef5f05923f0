//! Failure analysis: is the master dead? A pure function from a topology
//! snapshot to a named verdict, with the evidence that led to it.
//!
//! The master is declared dead only when the evidence agrees:
//! - the manager's own probe fails, **and**
//! - either the master's agent (alive, on the master's host) says mysqld is
//!   down, or the master's agent is unreachable too and every reachable
//!   replica confirms, from its own host, that it cannot reach the master
//!   (direct probe failing, IO thread disconnected or idle) for the
//!   configured window.
//!
//! Anything less is not a dead master: if only the manager lost the master
//! while the replicas still see it, that is a network problem between the
//! manager and the master, and failing over would create two masters.
use serde::{Deserialize, Serialize};

use crate::flavor::ThreadState;
use crate::report::MasterView;
use crate::topology::{ClusterSnapshot, ServerView};

/// The verdict on the master of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The manager reads the master.
    Healthy,
    /// No master is known for the cluster (never seen one).
    NoMasterKnown,
    /// The manager cannot reach the master, but its agent or the replicas
    /// can: no failover.
    UnreachableFromManagerOnly,
    /// Failure evidence exists but not yet for long enough or not yet
    /// confirmed by the replicas: wait.
    Suspect,
    /// Nobody who could confirm is reachable (master's agent and every
    /// replica's agent silent): the manager itself is probably cut off.
    Unconfirmable,
    /// mysqld is down on a host whose agent is alive: dead master.
    MysqldDownHostUp,
    /// The master's host is lost or hung and the replicas confirm: dead.
    DeadMaster,
}

impl Verdict {
    /// Whether this verdict calls for a failover.
    pub fn is_dead(self) -> bool {
        matches!(self, Verdict::MysqldDownHostUp | Verdict::DeadMaster)
    }
}

/// Thresholds of the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectionPolicy {
    /// How long the manager's probe must have failed, and the replicas'
    /// IO threads have been idle, before a lost host is declared dead.
    pub master_down_after_ms: u64,
}

/// The verdict and the evidence it rests on, in plain words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub verdict: Verdict,
    pub master: Option<String>,
    pub evidence: Vec<String>,
}

/// How one replica sees the master from its own host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplicaView {
    /// Its agent is silent: it cannot testify.
    Silent,
    /// It does not replicate from the master (so says nothing about it).
    Unrelated,
    /// It still reaches the master (probe ok, or IO thread receiving).
    SeesMaster,
    /// It has not reached the master for the whole window.
    Confirms,
}

/// The view `r` reports of its source, if that source is `master`.
fn view_of_master<'a>(r: &'a ServerView, master: &ServerView) -> Option<&'a MasterView> {
    let view = r.agent.master_view.as_ref()?;
    let master_ip = master.address.rsplit_once(':').map(|(h, _)| h);
    let view_ip = view.master_address.rsplit_once(':').map(|(h, _)| h);
    (view.master_address == master.address || view_ip == master_ip).then_some(view)
}

fn replica_view(r: &ServerView, master: &ServerView, window_ms: u64) -> ReplicaView {
    if !r.host_reachable {
        return ReplicaView::Silent;
    }
    let Some(view) = view_of_master(r, master) else {
        return ReplicaView::Unrelated;
    };
    let io_receiving = view.io_thread == ThreadState::Running
        && view.io_idle_ms.is_some_and(|idle| idle < window_ms);
    if view.probe_ok || io_receiving {
        return ReplicaView::SeesMaster;
    }
    // The direct probe failing and the IO thread not receiving (stopped,
    // connecting, or idle beyond the window): it testifies the master is
    // gone. The window is counted on the manager's side too, below.
    ReplicaView::Confirms
}

/// Analyse the master named `master` (the master of the current epoch).
pub fn analyze(
    snapshot: &ClusterSnapshot,
    master: Option<&str>,
    policy: DetectionPolicy,
) -> Analysis {
    let mut evidence = Vec::new();
    let Some(name) = master.or(snapshot.master.as_deref()) else {
        return Analysis {
            verdict: Verdict::NoMasterKnown,
            master: None,
            evidence: vec!["no master is known for this cluster".into()],
        };
    };
    let Some(m) = snapshot.server(name) else {
        return Analysis {
            verdict: Verdict::NoMasterKnown,
            master: Some(name.to_string()),
            evidence: vec![format!("master {name} is not a configured server")],
        };
    };
    let done = |verdict, evidence| Analysis {
        verdict,
        master: Some(name.to_string()),
        evidence,
    };
    if m.manager_probe.ok {
        return done(Verdict::Healthy, vec![format!("manager reads {name}")]);
    }
    let failing_for = m.manager_probe.failing_for_ms.unwrap_or(0);
    evidence.push(format!(
        "manager probe of {name} failing for {failing_for} ms: {}",
        m.manager_probe.error.as_deref().unwrap_or("no answer")
    ));

    // The master's own agent, when alive, is the best witness.
    if m.host_reachable {
        if m.mysqld_up == Some(true) {
            evidence.push(format!(
                "{name}'s agent reads mysqld: only the manager lost it"
            ));
            return done(Verdict::UnreachableFromManagerOnly, evidence);
        }
        if m.agent.says_mysqld_gone() {
            evidence.push(format!(
                "{name}'s agent: mysqld down ({}; process {})",
                m.agent.down_error.as_deref().unwrap_or("no detail"),
                match m.agent.mysqld_process {
                    Some(true) => "present",
                    Some(false) => "gone",
                    None => "unknown",
                }
            ));
            // A replica that still probes mysqld from its own host contradicts
            // the agent (stale sample, agent misconfigured): do not fail over.
            let seen_by = snapshot.servers.iter().find(|r| {
                r.name != name
                    && r.host_reachable
                    && view_of_master(r, m).is_some_and(|v| v.probe_ok)
            });
            if let Some(r) = seen_by {
                evidence.push(format!(
                    "{} still reaches {name}: evidence disagrees, waiting",
                    r.name
                ));
                return done(Verdict::Suspect, evidence);
            }
            return done(Verdict::MysqldDownHostUp, evidence);
        }
        // mysqld present but not answering its own host: hung. Needs the
        // replicas' confirmation, like a lost host.
        evidence.push(format!(
            "{name}'s agent: mysqld not answering ({})",
            m.agent.down_error.as_deref().unwrap_or("no detail")
        ));
    } else {
        evidence.push(match m.agent.last_report_age_ms {
            Some(age) => format!("{name}'s agent silent for {age} ms"),
            None => format!("{name}'s agent silent: never reported"),
        });
    }

    // The replicas' testimony.
    let window = policy.master_down_after_ms;
    let mut witnesses = 0;
    for r in snapshot.servers.iter().filter(|s| s.name != name) {
        let v = replica_view(r, m, window);
        match v {
            ReplicaView::Silent => {
                evidence.push(format!("{}: agent silent, cannot testify", r.name))
            }
            ReplicaView::Unrelated => {}
            ReplicaView::SeesMaster => {
                evidence.push(format!("{} still reaches {name}", r.name));
                return done(Verdict::UnreachableFromManagerOnly, evidence);
            }
            ReplicaView::Confirms => {
                witnesses += 1;
                evidence.push(format!("{} confirms {name} unreachable", r.name));
            }
        }
    }
    if witnesses == 0 {
        evidence.push("no replica can confirm".into());
        return done(Verdict::Unconfirmable, evidence);
    }
    // Every reachable replica confirmed (one that still sees the master
    // returned above); the manager's own probe must have failed for the
    // whole window.
    if failing_for >= window {
        return done(Verdict::DeadMaster, evidence);
    }
    done(Verdict::Suspect, evidence)
}

/// Whether the manager may adopt a master for a cluster that has none on
/// record (a manager started with empty state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Adoption {
    /// The one writable server that replicates from nobody, as the
    /// manager's own fresh probe reads it: adopt it.
    Adopt { master: String },
    /// One server looks like the master, but only through its agent's
    /// reports (the manager's probe does not read it): wait. Agent reports
    /// alone never make a master.
    Unconfirmed { master: String },
    /// No single writable master is visible (none, or several).
    NoMaster,
}

/// Decide [`Adoption`] over a snapshot: a master is adopted only when the
/// manager's own probe confirms it (fresh, writable, the master's role by
/// its own reading).
pub fn adoption(snapshot: &ClusterSnapshot) -> Adoption {
    let Some(name) = snapshot.master.as_deref() else {
        return Adoption::NoMaster;
    };
    let Some(view) = snapshot.server(name) else {
        return Adoption::NoMaster;
    };
    let confirmed = view.probe_confirmed()
        && view.role == crate::topology::Role::Master
        && view.read_only == Some(false)
        && view.facts.as_ref().is_some_and(|f| {
            !f.read_only && crate::topology::role_of(f) == crate::topology::Role::Master
        });
    if confirmed {
        Adoption::Adopt {
            master: name.to_string(),
        }
    } else {
        Adoption::Unconfirmed {
            master: name.to_string(),
        }
    }
}
