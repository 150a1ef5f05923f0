//! The steps failover and switchover share: fencing the old master,
//! bringing the candidate up to date, promoting it, moving the VIP,
//! repointing the replicas. Each returns or journals what it did.
use std::time::{Duration, Instant};

use myha_config::HostConfig;
use myha_core::flavor::GtidMode;
use myha_core::topology::ClusterSnapshot;

use crate::actions::{ActionError, Server};
use crate::agents::VipOp;
use crate::operation::{Journal, StepRecord};
use crate::store::{OpKind, Phase, Step, StepStatus};

/// Bounds of the steps that wait on servers.
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);
const RELAY_APPLY_BOUND: Duration = Duration::from_secs(30);
const REPOINT_BOUND: Duration = Duration::from_secs(10);

/// The replicas that will replicate from `new_master` once repointed
/// (configured, not the old master, not waiting for rejoin or diverged,
/// mysqld up): those that can acknowledge its commits.
pub(crate) fn ackers_after_repoint(
    run: &Journal<'_>,
    snapshot: &ClusterSnapshot,
    new_master: &str,
) -> Vec<String> {
    let durable = run
        .ctx
        .topology
        .durable(&run.cluster.name)
        .unwrap_or_default();
    run.cluster
        .hosts
        .iter()
        .filter(|h| h.name != run.old_master && h.name != new_master)
        .filter(|h| {
            !durable.needs_rejoin.contains(&h.name) && !durable.diverged.contains_key(&h.name)
        })
        .filter(|h| {
            snapshot
                .server(&h.name)
                .is_some_and(|v| v.mysqld_up == Some(true))
        })
        .map(|h| h.name.clone())
        .collect()
}

/// Stop the IO thread of every replica but the candidate, in the
/// background: one stuck connecting to the dead master makes STOP SLAVE
/// wait up to slave_net_timeout, and that wait must not come after the
/// promotion. Their SQL threads keep applying relay logs. (The candidate's
/// own IO thread is stopped after its promotion: a STOP SLAVE IO_THREAD in
/// progress would block the STOP SLAVE SQL_THREAD of the promotion.)
pub(crate) fn stop_io_threads(run: &Journal<'_>, candidate: &str) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for h in run
        .cluster
        .hosts
        .iter()
        .filter(|h| h.name != run.old_master && h.name != candidate)
    {
        let mut s = Server::new(run.cluster, h, &run.ctx.manager);
        set.spawn(async move {
            if let Err(e) = s.stop_io_thread().await {
                tracing::debug!(host = %s.name, error = %e, "early STOP SLAVE IO_THREAD");
            }
        });
    }
    set
}

/// Fence the old master wherever it can still be reached: through its
/// agent first (it ends the master's lease and closes the client sockets
/// in the kernel before it kills sessions: a session killed while it waits
/// for a semi-sync acknowledgement can otherwise still be answered OK),
/// else directly. Runs beside the candidate's preparation.
pub(crate) async fn fence_old_master(
    run: &Journal<'_>,
    epoch: u64,
    agent_reachable: bool,
) -> Vec<StepRecord> {
    let old_master = run.old_master.as_str();
    let mut steps = Vec::new();
    if agent_reachable {
        if let Some(h) = run.host(old_master) {
            let t = Instant::now();
            match run.ctx.agents.fence(h, epoch + 1, "").await {
                Ok(v) => {
                    let detail = format!("{old_master} fenced by its agent: {v}");
                    steps.push(StepRecord::new(
                        Step::Fence,
                        StepStatus::Ok,
                        detail,
                        Some(t),
                    ));
                    return steps;
                }
                Err(e) => steps.push(StepRecord::new(
                    Step::Fence,
                    StepStatus::Skipped,
                    format!("{old_master}'s agent could not fence it ({e}); trying directly"),
                    Some(t),
                )),
            }
        }
    }
    let t = Instant::now();
    if let Some(mut old) = run.server(old_master) {
        steps.push(match old.fence().await {
            Ok(killed) => StepRecord::new(
                Step::Fence,
                StepStatus::Ok,
                format!("{old_master}: read_only ON, {killed} session(s) killed (by the manager)"),
                Some(t),
            ),
            Err(e) => StepRecord::new(
                Step::Fence,
                StepStatus::Skipped,
                format!(
                    "{old_master} not reachable from the manager either: {e}; {}",
                    if agent_reachable {
                        "its agent fences it as soon as it learns the new epoch"
                    } else {
                        "its agent is silent: it fences itself when isolated, and on resuming from a freeze"
                    }
                ),
                Some(t),
            ),
        });
    }
    steps
}

/// The old master could be fenced neither directly nor through its agent.
/// If its agent is silent (host lost, frozen, or cut off from the manager
/// and its peers while clients may still reach it), promotion waits until
/// that agent has fenced itself: never two writable masters. An agent that
/// answers fences its server as soon as it learns the new epoch (a mysqld
/// that is gone comes back read-only; a hung one gets a fence queued).
pub(crate) async fn wait_for_self_fence(run: &mut Journal<'_>) {
    let old_master = run.old_master.clone();
    let Some(view) = run
        .ctx
        .topology
        .snapshot(&run.cluster.name)
        .and_then(|s| s.server(&old_master).cloned())
    else {
        return;
    };
    if view.agent.reachable {
        let why = if view.agent.says_mysqld_gone() {
            "its mysqld is gone (it restarts read-only)"
        } else {
            "its agent answers and fences it as soon as it learns the new epoch (queued until a hung mysqld answers)"
        };
        let detail = format!("{old_master}: {why}");
        run.record(Step::FenceWait, StepStatus::Skipped, detail, None);
        return;
    }
    let by = run.cluster.self_fenced_by(run.ctx.agent_interval);
    let heard_ms = view.agent.last_report_age_ms.unwrap_or(0);
    let wait = by.saturating_sub(Duration::from_millis(heard_ms));
    let t = Instant::now();
    tokio::time::sleep(wait).await;
    run.record(
        Step::FenceWait,
        StepStatus::Ok,
        format!(
            "{old_master}'s agent last reported {heard_ms} ms before; a master isolated for {} ms fences itself: waited {} ms more before promoting",
            run.cluster.self_fence_after().as_millis(),
            wait.as_millis()
        ),
        Some(t),
    );
}

/// Why the candidate could not be brought up to date. The texts are
/// those the `catch_up` and `apply_relay_log` steps journal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatchUpError {
    #[error("catch-up source {source_host} not configured")]
    UnknownSource { source_host: String },
    /// The catch-up source could not apply its own relay log first.
    #[error("{source_host} could not apply its relay log: {error}")]
    SourceRelayLog {
        source_host: String,
        error: ActionError,
    },
    /// The candidate could not be repointed to the source (`start`: the
    /// position it was to start from, on MariaDB).
    #[error(
        "repointing {candidate} to {source_host}{}: {error}",
        from_start(start)
    )]
    Repoint {
        candidate: String,
        source_host: String,
        start: Option<String>,
        error: ActionError,
    },
    /// Reading a server, waiting for the GTIDs, or applying the
    /// candidate's relay log.
    #[error(transparent)]
    Server(#[from] ActionError),
    /// A GTID state that cannot be compared.
    #[error(transparent)]
    Gtid(#[from] myha_core::gtid::GtidError),
}

fn from_start(start: &Option<String>) -> String {
    start
        .as_ref()
        .map(|s| format!(" from {s}"))
        .unwrap_or_default()
}

impl CatchUpError {}

/// Bring the candidate to everything any replica received: catch up from
/// `catch_up` (the most advanced replica, and the GTIDs it has more) if
/// set, then apply its own relay log: never promote with unapplied relay
/// log. Returns the steps, and the candidate's executed GTIDs.
pub(crate) async fn bring_up_to_date(
    run: &Journal<'_>,
    cand: &mut Server,
    catch_up: Option<(String, String)>,
) -> (Vec<StepRecord>, Result<String, CatchUpError>) {
    let candidate = cand.name.clone();
    let mut steps = Vec::new();
    if let Some((source, gtids)) = catch_up {
        let t = Instant::now();
        match catch_up_from(run, cand, &source).await {
            Ok(pos) => steps.push(StepRecord::new(
                Step::CatchUp,
                StepStatus::Ok,
                format!("{candidate} caught up from {source} (missing {gtids}) to {pos}"),
                Some(t),
            )),
            Err(e) => {
                steps.push(StepRecord::new(
                    Step::CatchUp,
                    StepStatus::Failed,
                    e.to_string(),
                    Some(t),
                ));
                return (steps, Err(e));
            }
        }
    }
    let t = Instant::now();
    let step = |status, detail| StepRecord::new(Step::ApplyRelayLog, status, detail, Some(t));
    match cand.apply_relay_log(RELAY_APPLY_BOUND).await {
        Ok(pos) => {
            steps.push(step(StepStatus::Ok, format!("{candidate} executed {pos}")));
            (steps, Ok(pos))
        }
        Err(e) => {
            steps.push(step(StepStatus::Failed, e.to_string()));
            (steps, Err(e.into()))
        }
    }
}

async fn catch_up_from(
    run: &Journal<'_>,
    cand: &mut Server,
    source: &str,
) -> Result<String, CatchUpError> {
    let (Some(mut src), Some(src_host)) = (run.server(source), run.host(source).cloned()) else {
        return Err(CatchUpError::UnknownSource {
            source_host: source.to_string(),
        });
    };
    // The source must first apply what it received, so its binlog has it.
    let pos = src.apply_relay_log(CATCH_UP_BOUND).await.map_err(|error| {
        CatchUpError::SourceRelayLog {
            source_host: source.to_string(),
            error,
        }
    })?;
    let candidate = cand.name.clone();
    let repoint = |start: Option<&str>, error| CatchUpError::Repoint {
        candidate: candidate.clone(),
        source_host: source.to_string(),
        start: start.map(str::to_string),
        error,
    };
    if run.cluster.flavor == myha_core::flavor::Flavor::Mariadb {
        // Its position set deliberately: where it is ahead of the source
        // (a later heartbeat), the source's.
        let mine = cand.facts().await?;
        let theirs = src.facts().await?;
        let start = myha_core::rejoin::catch_up_position(&mine, &theirs)?;
        cand.rejoin_as_replica(&src_host, run.cluster, &start)
            .await
            .map_err(|e| repoint(Some(&start), e))?;
    } else {
        cand.repoint(&src_host, run.cluster, GtidMode::SlavePos)
            .await
            .map_err(|e| repoint(None, e))?;
    }
    cand.wait_for_gtids(&pos, CATCH_UP_BOUND).await?;
    Ok(pos)
}

/// A promotion, once the candidate applies nothing more.
pub(crate) struct Promotion<'x> {
    pub(crate) kind: OpKind,
    /// Semi-sync on before the first write.
    pub(crate) semi_sync: bool,
    /// The replicas that acknowledge (shown after a failover).
    pub(crate) ackers: &'x [String],
    /// Why semi-sync is degraded to asynchronous (a failover with no
    /// replica to acknowledge), if it is.
    pub(crate) degraded: Option<String>,
    /// When the promotion began (the `promote` step's duration).
    pub(crate) started: Instant,
}

/// Promote `cand`: record the new epoch (and its master) durably, then make
/// it writable. Err (nothing promoted) only if the epoch cannot be
/// persisted; past that there is no going back, a failure to make it
/// writable is journaled. Returns the new epoch.
pub(crate) async fn promote(
    run: &mut Journal<'_>,
    cand: &mut Server,
    p: Promotion<'_>,
) -> Result<u64, String> {
    let new = cand.name.clone();
    let failover = p.kind == OpKind::Failover;
    let t = p.started;
    let epoch = match persist_promotion(run, &new, failover, &p.degraded) {
        Ok(epoch) => epoch,
        Err(e) => {
            let detail = format!("cannot persist the new epoch: {e}");
            run.record(Step::Promote, StepStatus::Failed, detail, Some(t));
            return Err(e.to_string());
        }
    };
    run.checkpoint(Phase::Promoted).await;
    if let Some(why) = p.degraded {
        run.record(Step::SemiSync, StepStatus::Degraded, why, None);
    }
    match cand.make_writable(p.semi_sync).await {
        Ok(()) => {
            let acked = if failover && p.semi_sync {
                format!(", semi-sync on (acknowledged by {})", p.ackers.join(" or "))
            } else {
                String::new()
            };
            let detail = format!("{new} is the master of epoch {epoch}, writable{acked}");
            run.record(Step::Promote, StepStatus::Ok, detail, Some(t));
            // Routers send writes to it from now on.
            run.set_phase(Phase::Writable, None);
            run.checkpoint(Phase::Writable).await;
        }
        Err(e) => {
            let detail = if failover {
                format!("{new}: read_only OFF failed: {e}; retrying in the background")
            } else {
                format!("{new}: read_only OFF: {e}")
            };
            run.record(Step::Promote, StepStatus::Failed, detail, Some(t));
        }
    }
    Ok(epoch)
}

/// The new epoch and its master, durably; after a failover, the old
/// master marked as needing a rejoin and the semi-sync degradation noted.
fn persist_promotion(
    run: &Journal<'_>,
    new: &str,
    failover: bool,
    degraded: &Option<String>,
) -> Result<u64, crate::store::StoreError> {
    let old = &run.old_master;
    let state = run.ctx.topology.update_durable(&run.cluster.name, |s| {
        if failover {
            s.semi_sync_degraded = degraded.clone();
            if !s.needs_rejoin.contains(old) {
                s.needs_rejoin.push(old.clone());
            }
        }
        s.epoch += 1;
        s.master = Some(new.to_string());
        if let Some(op) = s.in_progress.as_mut() {
            op.phase = Phase::Promoted;
        }
        s.needs_rejoin.retain(|n| n != new);
    })?;
    Ok(state.epoch)
}

/// Move the VIP: off the old host first if its agent answers, then onto
/// the new master (address, then gratuitous ARP). Never two holders: an
/// old host whose agent is silent (lost, frozen) drops the address itself
/// when it fences or resumes.
pub(crate) async fn move_vip(
    run: &Journal<'_>,
    new_master: &str,
    old_agent_reachable: bool,
) -> Vec<StepRecord> {
    let mut steps = Vec::new();
    let Some(vip) = run.cluster.vip.as_ref() else {
        return steps;
    };
    let old_master = run.old_master.as_str();
    let epoch = run
        .ctx
        .topology
        .durable(&run.cluster.name)
        .map_or(0, |d| d.epoch);
    if !old_agent_reachable {
        steps.push(StepRecord::new(
            Step::VipRemove,
            StepStatus::Skipped,
            format!("{old_master}'s agent is silent: the new master's gratuitous ARP takes the address over; the old host drops it when it fences itself or resumes"),
            None,
        ));
    } else if let Some(old) = run.host(old_master) {
        let t = Instant::now();
        let (status, detail) = match run.ctx.agents.set_vip(old, vip, VipOp::Remove, epoch).await {
            Ok(v) => (StepStatus::Ok, format!("{old_master}: {v}")),
            Err(e) => (
                StepStatus::Skipped,
                format!("{e} (its agent drops the VIP when it learns the new epoch)"),
            ),
        };
        steps.push(StepRecord::new(Step::VipRemove, status, detail, Some(t)));
    }
    if let Some(new) = run.host(new_master) {
        let t = Instant::now();
        let (status, detail) = match run.ctx.agents.set_vip(new, vip, VipOp::Add, epoch).await {
            Ok(v) => (StepStatus::Ok, format!("{new_master}: {v}")),
            Err(e) => (StepStatus::Failed, e.to_string()),
        };
        steps.push(StepRecord::new(Step::VipAdd, status, detail, Some(t)));
    }
    steps
}

/// Repoint every replica but the old and new masters to the new master,
/// all at once, and verify each replicates and reaches `target`. With
/// `semi_sync`, the new master's semi-sync master side goes on as soon as
/// the first one replicates.
pub(crate) async fn repoint_all(
    run: &Journal<'_>,
    new_master: &HostConfig,
    target: &str,
    semi_sync: bool,
) -> Vec<StepRecord> {
    let (mut steps, mut jobs) = spawn_repoints(run, new_master, target);
    let mut semi_sync_pending = semi_sync;
    while let Some(joined) = jobs.join_next().await {
        if semi_sync_pending && matches!(joined, Ok((_, Ok(()), _))) {
            semi_sync_pending = false;
            steps.push(semi_sync_on(run, new_master).await);
        }
        let (status, detail, t) = match joined {
            Ok((name, Ok(()), t)) => (
                StepStatus::Ok,
                format!(
                    "{name} replicates from {} and reached {target}",
                    new_master.name
                ),
                Some(t),
            ),
            Ok((name, Err(e), t)) => (
                StepStatus::Failed,
                format!("{name}: {e}; it does not block the new master"),
                Some(t),
            ),
            Err(e) => (
                StepStatus::Failed,
                format!("repoint task failed: {e}"),
                None,
            ),
        };
        steps.push(StepRecord::new(Step::Repoint, status, detail, t));
    }
    steps
}

type Repointed = (String, Result<(), crate::actions::ActionError>, Instant);

/// One task per replica to repoint; former masters not rejoined yet, and
/// diverged servers, are skipped (the rejoin logic's: it checks their GTIDs
/// first).
fn spawn_repoints(
    run: &Journal<'_>,
    new_master: &HostConfig,
    target: &str,
) -> (Vec<StepRecord>, tokio::task::JoinSet<Repointed>) {
    let mut skipped = Vec::new();
    let durable = (run.ctx.topology.durable(&run.cluster.name)).unwrap_or_default();
    let mut jobs = tokio::task::JoinSet::new();
    let others = (run.cluster.hosts.iter())
        .filter(|h| h.name != run.old_master && h.name != new_master.name);
    for h in others {
        if durable.needs_rejoin.contains(&h.name) || durable.diverged.contains_key(&h.name) {
            skipped.push(StepRecord::new(
                Step::Repoint,
                StepStatus::Skipped,
                format!("{}: former master not rejoined yet (or diverged): it rejoins once back and checked", h.name),
                None,
            ));
            continue;
        }
        let (cluster, manager) = (run.cluster.clone(), run.ctx.manager.clone());
        let (new_master, target, h) = (new_master.clone(), target.to_string(), h.clone());
        jobs.spawn(async move {
            let t = Instant::now();
            let mut s = Server::new(&cluster, &h, &manager);
            let res = async {
                s.repoint(&new_master, &cluster, GtidMode::SlavePos).await?;
                s.verify_replicating(&target, REPOINT_BOUND).await
            }
            .await;
            (h.name, res, t)
        });
    }
    (skipped, jobs)
}

/// The new master's semi-sync master side on: a replica acknowledges.
async fn semi_sync_on(run: &Journal<'_>, new_master: &HostConfig) -> StepRecord {
    let t = Instant::now();
    let mut m = Server::new(run.cluster, new_master, &run.ctx.manager);
    let (status, detail) = match m.make_writable(true).await {
        Ok(()) => (
            StepStatus::Ok,
            format!(
                "{}: semi-sync master side on, a replica acknowledges",
                new_master.name
            ),
        ),
        Err(e) => (StepStatus::Failed, format!("{}: {e}", new_master.name)),
    };
    StepRecord::new(Step::SemiSync, status, detail, Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_errors_read_as_before() {
        let refused = || {
            ActionError::Db(myha_mysql::DbError::Refused {
                addr: "10.0.0.3:3306".into(),
            })
        };
        let e = CatchUpError::Repoint {
            candidate: "db2".into(),
            source_host: "db3".into(),
            start: Some("0-1-7".into()),
            error: refused(),
        };
        assert_eq!(
            e.to_string(),
            "repointing db2 to db3 from 0-1-7: connection to 10.0.0.3:3306 refused"
        );
        let e = CatchUpError::Repoint {
            candidate: "db2".into(),
            source_host: "db3".into(),
            start: None,
            error: refused(),
        };
        assert_eq!(
            e.to_string(),
            "repointing db2 to db3: connection to 10.0.0.3:3306 refused"
        );
        let e = CatchUpError::SourceRelayLog {
            source_host: "db3".into(),
            error: ActionError::Failed("stuck".into()),
        };
        assert_eq!(e.to_string(), "db3 could not apply its relay log: stuck");
        let e = CatchUpError::UnknownSource {
            source_host: "db9".into(),
        };
        assert_eq!(e.to_string(), "catch-up source db9 not configured");
    }
}
