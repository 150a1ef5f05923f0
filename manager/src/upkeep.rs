//! Executes the upkeep decisions of `myha_core::upkeep` for the master of
//! the current epoch: unfence, semi-sync timer removal, degrade, restore.
//! Every action is journaled.
use std::time::{Duration, Instant};

use myha_config::ClusterConfig;
use myha_core::topology::ClusterSnapshot;
use myha_core::upkeep::{acknowledging_replicas, looks_fenced, Upkeep};

use crate::actions::Server;
use crate::operation::{journal, Context};
use crate::store::{Step, StepStatus};

/// At most one upkeep action this often.
const EVERY: Duration = Duration::from_millis(500);

/// What the detection loop counts across snapshots for the upkeep rules.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    master: Option<String>,
    no_acker_since: Option<Instant>,
    fenced_since: Option<Instant>,
    last_action: Option<Instant>,
}

impl Tracker {
    /// Take one snapshot of the master `master` into account.
    pub(crate) fn observe(&mut self, snapshot: &ClusterSnapshot, master: &str) {
        if self.master.as_deref() != Some(master) {
            *self = Tracker {
                master: Some(master.to_string()),
                last_action: self.last_action,
                ..Tracker::default()
            };
        }
        let semi_sync_on = snapshot
            .server(master)
            .and_then(|m| m.facts.as_ref())
            .is_some_and(|f| f.semi_sync_master && !f.read_only);
        if semi_sync_on && acknowledging_replicas(snapshot, master).is_empty() {
            self.no_acker_since.get_or_insert_with(Instant::now);
        } else {
            self.no_acker_since = None;
        }
        if looks_fenced(snapshot, master) {
            self.fenced_since.get_or_insert_with(Instant::now);
        } else {
            self.fenced_since = None;
        }
    }

    pub(crate) fn no_acker_for_ms(&self) -> Option<u64> {
        self.no_acker_since.map(|t| t.elapsed().as_millis() as u64)
    }

    pub(crate) fn fenced_for_ms(&self) -> Option<u64> {
        self.fenced_since.map(|t| t.elapsed().as_millis() as u64)
    }

    pub(crate) fn due(&self) -> bool {
        self.last_action.is_none_or(|t| t.elapsed() >= EVERY)
    }

    pub(crate) fn acted(&mut self) {
        self.last_action = Some(Instant::now());
    }
}

/// Carry out one upkeep action on `master` and journal it.
pub(crate) async fn execute(ctx: &Context, cluster: &ClusterConfig, master: &str, action: Upkeep) {
    let Some(host) = cluster.host(master) else {
        return;
    };
    let mut server = Server::new(cluster, host, &ctx.manager);
    let name = &cluster.name;
    match action {
        Upkeep::Unfence { reason } => match server
            .make_writable(
                ctx.topology
                    .durable(name)
                    .is_some_and(|d| d.semi_sync_wanted && d.semi_sync_degraded.is_none()),
            )
            .await
        {
            Ok(()) => journal(
                ctx,
                name,
                Step::Unfence,
                StepStatus::Ok,
                format!("{reason}: made writable again"),
            ),
            Err(e) => journal(
                ctx,
                name,
                Step::Unfence,
                StepStatus::Failed,
                format!("{reason}: read_only OFF failed: {e}"),
            ),
        },
        Upkeep::RemoveSemiSyncTimer { timeout_ms } => match server.semi_sync_on().await {
            Ok(()) => journal(
                ctx,
                name,
                Step::SemiSync,
                StepStatus::Ok,
                format!(
                    "{master}: semi-sync timeout was {timeout_ms} ms, a timer that would acknowledge commits no replica has if the master froze or was cut off; set to {} ms (never): only the manager degrades semi-sync",
                    myha_core::report::SEMI_SYNC_NO_FALLBACK_MS
                ),
            ),
            Err(e) => journal(
                ctx,
                name,
                Step::SemiSync,
                StepStatus::Failed,
                format!("{master}: removing the semi-sync fallback timer: {e}"),
            ),
        },
        Upkeep::RestoreSemiSync { replicas } => match server.semi_sync_on().await {
            Ok(()) => {
                let _ = ctx
                    .topology
                    .update_durable(name, |s| s.semi_sync_degraded = None);
                journal(
                    ctx,
                    name,
                    Step::SemiSync,
                    StepStatus::Ok,
                    format!(
                        "{master}: semi-sync restored: {} replicate(s) from it again",
                        replicas.join(", ")
                    ),
                );
            }
            Err(e) => journal(
                ctx,
                name,
                Step::SemiSync,
                StepStatus::Failed,
                format!("{master}: restoring semi-sync: {e}"),
            ),
        },
        Upkeep::DegradeSemiSync { reason } => {
            // Recorded before it is done: a manager that stops right after
            // still knows semi-sync is wanted back.
            let _ = ctx
                .topology
                .update_durable(name, |s| s.semi_sync_degraded = Some(reason.clone()));
            match server.semi_sync_off().await {
                Ok(()) => journal(
                    ctx,
                    name,
                    Step::SemiSync,
                    StepStatus::Degraded,
                    format!("{master}: semi-sync degraded to asynchronous by the manager under the current epoch: {reason}; commits are acknowledged without a replica until one replicates again"),
                ),
                Err(e) => journal(
                    ctx,
                    name,
                    Step::SemiSync,
                    StepStatus::Failed,
                    format!("{master}: degrading semi-sync ({reason}): {e}"),
                ),
            }
        }
    }
}
