//! Executes the upkeep decisions of `myha_core::upkeep` for the master of
//! the current epoch: unfence, semi-sync timer removal, degrade, restore.
//! Every action is journaled. When to act is decided (and counted) by
//! `myha_core::detect`.
use myha_config::ClusterConfig;
use myha_core::upkeep::Upkeep;

use crate::actions::Server;
use crate::operation::{journal, Context};
use crate::store::{Step, StepStatus};

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
