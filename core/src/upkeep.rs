//! Upkeep of a healthy master between operations: pure decisions over a
//! snapshot, executed by the manager's detection loop.
//!
//! - **Unfence.** An agent fences its master whenever it cannot be sure it
//!   still is the master (it resumed from a freeze, or it was isolated).
//!   When the manager, holding the current epoch, reads that server
//!   read-only, replicating from nobody, with no other writable server, it
//!   makes it writable again.
//! - **Semi-sync without a timer.** The master's commits wait for a
//!   replica's acknowledgement, never for a timeout. Only the manager
//!   degrades semi-sync, explicitly, when no replica has been able to
//!   acknowledge for `semi_sync_degrade_after`, and restores it as soon as
//!   one replicates again.
use serde::{Deserialize, Serialize};

use crate::flavor::ThreadState;
use crate::report::SEMI_SYNC_NO_FALLBACK_MS;
use crate::topology::{ClusterSnapshot, Role, ServerView};

/// What the manager should do for the master of the current epoch now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Upkeep {
    /// Make the master writable again (it was fenced needlessly).
    Unfence { reason: String },
    /// Semi-sync is on with a fallback timer: remove the timer.
    RemoveSemiSyncTimer { timeout_ms: u64 },
    /// Turn semi-sync back on: a replica acknowledges again.
    RestoreSemiSync { replicas: Vec<String> },
    /// No replica could acknowledge for the whole window: degrade.
    DegradeSemiSync { reason: String },
}

/// Inputs besides the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct UpkeepInput<'a> {
    /// The master of the current epoch.
    pub master: &'a str,
    /// The cluster wants semi-sync but the manager degraded it.
    pub semi_sync_degraded: bool,
    /// The cluster's masters run semi-sync (seen on before).
    pub semi_sync_wanted: bool,
    /// Since how long (ms) no replica could acknowledge, counted by the
    /// caller from successive snapshots; `None` while one can.
    pub no_acker_for_ms: Option<u64>,
    pub degrade_after_ms: u64,
    /// Since how long (ms) the master has looked needlessly fenced (see
    /// [`looks_fenced`]), counted by the caller.
    pub fenced_for_ms: Option<u64>,
    /// How long it must look so before the manager unfences it.
    pub unfence_after_ms: u64,
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// Replicas that can acknowledge `master`'s commits now: mysqld up, IO
/// thread running, replicating from the master's address, semi-sync
/// replica side on.
pub fn acknowledging_replicas(snapshot: &ClusterSnapshot, master: &str) -> Vec<String> {
    let Some(m) = snapshot.server(master) else {
        return Vec::new();
    };
    snapshot
        .servers
        .iter()
        .filter(|s| s.name != master && s.mysqld_up == Some(true))
        .filter(|s| s.io_running == Some(ThreadState::Running))
        .filter(|s| {
            s.replicates_from
                .as_deref()
                .is_some_and(|src| src == m.address || host_of(src) == host_of(&m.address))
        })
        .filter(|s| s.facts.as_ref().is_none_or(|f| f.semi_sync_slave))
        .map(|s| s.name.clone())
        .collect()
}

/// The master of the current epoch is read-only, replicates from nobody,
/// the manager's own probe reads it, and no other server is writable: it
/// was fenced (by its agent, after a freeze or an isolation) while it still
/// is the master.
pub fn looks_fenced(snapshot: &ClusterSnapshot, master: &str) -> bool {
    let Some(m) = snapshot.server(master) else {
        return false;
    };
    let others_writable = snapshot
        .servers
        .iter()
        .any(|s| s.name != master && (s.role == Role::Master || s.read_only == Some(false)));
    m.mysqld_up == Some(true)
        && m.manager_probe.ok
        && m.read_only == Some(true)
        && m.replicates_from.is_none()
        && m.role != Role::Replica
        && !others_writable
}

/// Semi-sync state of a MariaDB master (myha leaves MySQL's to its
/// configuration).
fn semi_sync_on(m: &ServerView) -> Option<(bool, Option<u64>)> {
    m.facts
        .as_ref()
        .filter(|f| f.flavor == crate::flavor::Flavor::Mariadb)
        .map(|f| (f.semi_sync_master, f.semi_sync_timeout_ms))
}

/// The upkeep the master needs now, if any. Call only while no operation
/// is in progress and the verdict on the master is healthy.
pub fn upkeep(snapshot: &ClusterSnapshot, input: &UpkeepInput<'_>) -> Option<Upkeep> {
    let m = snapshot.server(input.master)?;
    if input
        .fenced_for_ms
        .is_some_and(|ms| ms >= input.unfence_after_ms)
        && looks_fenced(snapshot, input.master)
    {
        return Some(Upkeep::Unfence {
            reason: format!(
                "{} is the master of the current epoch but read-only, replicating from nobody, with no other writable server (fenced by its agent after a freeze or an isolation)",
                input.master
            ),
        });
    }
    if m.read_only != Some(false) {
        return None;
    }
    let (on, timeout) = semi_sync_on(m)?;
    let ackers = acknowledging_replicas(snapshot, input.master);
    if on {
        if let Some(t) = timeout.filter(|t| *t < SEMI_SYNC_NO_FALLBACK_MS) {
            return Some(Upkeep::RemoveSemiSyncTimer { timeout_ms: t });
        }
        if ackers.is_empty()
            && input
                .no_acker_for_ms
                .is_some_and(|ms| ms >= input.degrade_after_ms)
        {
            let why: Vec<String> = snapshot
                .servers
                .iter()
                .filter(|s| s.name != input.master)
                .map(|s| format!("{}: {}", s.name, why_not_acking(s)))
                .collect();
            return Some(Upkeep::DegradeSemiSync {
                reason: format!(
                    "no replica could acknowledge {}'s commits for {} ms ({})",
                    input.master,
                    input.no_acker_for_ms.unwrap_or_default(),
                    if why.is_empty() {
                        "no replica configured".to_string()
                    } else {
                        why.join("; ")
                    }
                ),
            });
        }
    } else if (input.semi_sync_degraded || input.semi_sync_wanted) && !ackers.is_empty() {
        // Degraded by the manager, or off on a master that came back
        // without it (restarted: my.cnf has it off): on again.
        return Some(Upkeep::RestoreSemiSync { replicas: ackers });
    } else if input.semi_sync_wanted && !input.semi_sync_degraded {
        // Off, wanted, and no replica to acknowledge: say so (the degrade
        // is recorded, and undone as soon as a replica is back).
        return Some(Upkeep::DegradeSemiSync {
            reason: format!(
                "{} runs without semi-sync (restarted?) and no replica can acknowledge its commits yet",
                input.master
            ),
        });
    }
    None
}

fn why_not_acking(s: &ServerView) -> String {
    if s.mysqld_up != Some(true) {
        return "down or unreachable".into();
    }
    match (&s.replicates_from, s.io_running) {
        (None, _) => "replicates from nobody".into(),
        (Some(src), Some(ThreadState::Running)) => format!("replicates from {src}"),
        (Some(src), io) => format!(
            "IO thread {} (source {src})",
            io.map_or("unknown".to_string(), |t| format!("{t:?}").to_lowercase())
        ),
    }
}

/// At most one upkeep action this often (ms).
pub const UPKEEP_EVERY_MS: u64 = 500;

/// What the detection loop counts across snapshots for the upkeep rules,
/// on a monotonic clock in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpkeepTracker {
    master: Option<String>,
    no_acker_since_ms: Option<u64>,
    fenced_since_ms: Option<u64>,
    last_action_ms: Option<u64>,
}

impl UpkeepTracker {
    /// Take one snapshot of the master `master`, at `now_ms`, into account.
    pub fn observe(&mut self, snapshot: &ClusterSnapshot, master: &str, now_ms: u64) {
        if self.master.as_deref() != Some(master) {
            *self = UpkeepTracker {
                master: Some(master.to_string()),
                last_action_ms: self.last_action_ms,
                ..UpkeepTracker::default()
            };
        }
        let semi_sync_on = snapshot
            .server(master)
            .and_then(|m| m.facts.as_ref())
            .is_some_and(|f| f.semi_sync_master && !f.read_only);
        if semi_sync_on && acknowledging_replicas(snapshot, master).is_empty() {
            self.no_acker_since_ms.get_or_insert(now_ms);
        } else {
            self.no_acker_since_ms = None;
        }
        if looks_fenced(snapshot, master) {
            self.fenced_since_ms.get_or_insert(now_ms);
        } else {
            self.fenced_since_ms = None;
        }
    }

    /// Since how long no replica could acknowledge.
    pub fn no_acker_for_ms(&self, now_ms: u64) -> Option<u64> {
        self.no_acker_since_ms.map(|t| now_ms.saturating_sub(t))
    }

    /// Since how long the master has looked needlessly fenced.
    pub fn fenced_for_ms(&self, now_ms: u64) -> Option<u64> {
        self.fenced_since_ms.map(|t| now_ms.saturating_sub(t))
    }

    /// Whether an action may be taken at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        self.last_action_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= UPKEEP_EVERY_MS)
    }

    /// An action was taken (ended) at `now_ms`.
    pub fn acted(&mut self, now_ms: u64) {
        self.last_action_ms = Some(now_ms);
    }
}
