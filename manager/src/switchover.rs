//! Planned switchover, in phases:
//!
//! 1. pre-checks, all at once; claim the cluster; the pre-switchover hook;
//! 2. the old master read-only, its sessions killed;
//! 3. the target exactly at the old master's final position;
//! 4. promote the target (the new epoch persisted, then writable);
//! 5. publish, beside each other: VIP ‖ repoint the replicas ‖ the old
//!    master rejoins as a replica; conclude.
//!
//! Any failure before the target is writable rolls back to the old master
//! writable.
use std::time::{Duration, Instant};

use myha_config::ClusterConfig;
use myha_core::switchover::{precheck, SwitchoverInput, SwitchoverPlan};

use crate::actions::Server;
use crate::detector::analyse_now;
use crate::failover::candidate_choice;
use crate::hooks::HookEvent;
use crate::operation::{new_op_id, Context, FailoverReport, Journal, OpStatus, Outcome};
use crate::steps::{move_vip, promote, repoint_all, Promotion};
use crate::store::{Event, OpKind, Phase, Step, StepStatus};

/// Longer than an agent interval plus a report, and than a probe that
/// starts at once ([`crate::state::Topology::probe_now`]): facts newer
/// than this wait postdate the request.
const FRESH_FACTS_WAIT: Duration = Duration::from_millis(800);

/// Transactions open longer than this on the master are listed.
const LONG_TRX_SECS: u64 = 1;

/// Bound for the target to stop replicating when it is promoted.
const DETACH_BOUND: Duration = Duration::from_secs(10);

pub struct SwitchoverRequest<'a> {
    pub to: Option<&'a str>,
    pub dry_run: bool,
    /// Bound for the target to reach the old master's final position.
    pub timeout: Duration,
}

pub async fn switchover(
    ctx: &Context,
    cluster: &ClusterConfig,
    req: &SwitchoverRequest<'_>,
    sink: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
) -> FailoverReport {
    let durable = ctx.topology.durable(&cluster.name).unwrap_or_default();
    let op = match req.dry_run {
        true => crate::operation::DRY_RUN.to_string(),
        false => new_op_id(OpKind::Switchover),
    };
    let old_master = durable.master.clone().unwrap_or_default();
    let mut run = Journal::new(ctx, cluster, op, old_master, sink);
    let refused = Outcome::new(OpStatus::Refused, durable.epoch);
    let target = match prechecks(&mut run, req).await {
        Ok(target) => target,
        Err(planned) => return run.finish(refused.to(planned)),
    };
    if req.dry_run {
        return run.finish(Outcome::new(OpStatus::DryRun, durable.epoch).to(Some(target)));
    }
    let phase = Phase::CandidateChosen;
    if run
        .claim(OpKind::Switchover, Some(target.clone()), phase)
        .is_err()
    {
        let detail = "another operation started meanwhile".to_string();
        run.record(Step::Precheck, StepStatus::Failed, detail, None);
        return run.finish(refused);
    }
    let mut so = Switchover {
        run,
        target,
        epoch: durable.epoch,
        semi_sync_wanted: durable.semi_sync_wanted,
        semi_sync: false,
        fenced: false,
    };
    match so.up_to_promotion(req.timeout).await {
        Ok((_, _, epoch)) if !so.run.leads() => so.run.handed_over(epoch, Some(so.target)),
        Ok((old, final_pos, epoch)) => so.publish(old, &final_pos, epoch).await,
        Err(_) if !so.run.leads() => so.run.handed_over(so.epoch, None),
        Err(why) => so.rollback(&why).await,
    }
}

/// The pre-checks, all at once, on facts that may be one agent interval
/// old: right after a topology change (a failover just repointed the
/// target), failing ones are run once more on facts newer than the
/// request. Ok is the target; Err the planned target, if any, when refused.
async fn prechecks(
    run: &mut Journal<'_>,
    req: &SwitchoverRequest<'_>,
) -> Result<String, Option<String>> {
    let t = Instant::now();
    let Some(plan) = fresh_plan(run, req).await else {
        run.problems.push("unknown cluster".into());
        return Err(None);
    };
    let old_master = run.old_master.clone();
    let long_trx = match run.server(&old_master) {
        Some(mut old) => old
            .long_transactions(LONG_TRX_SECS)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if !plan.problems.is_empty() {
        for p in &plan.problems {
            run.record(Step::Precheck, StepStatus::Failed, p.to_string(), None);
        }
        return Err(plan.target);
    }
    let Some(target) = plan.target else {
        run.record(Step::Precheck, StepStatus::Failed, "no target".into(), None);
        return Err(None);
    };
    let long = match long_trx.is_empty() {
        true => "no long-running transactions".to_string(),
        false => format!(
            "long-running transactions on {old_master} (will be killed): {}",
            long_trx.join("; ")
        ),
    };
    let detail = format!("{old_master} -> {target}; {long}");
    run.record(Step::Precheck, StepStatus::Ok, detail, Some(t));
    Ok(target)
}

/// The switchover plan, on facts newer than the request if the first one
/// fails; None if the cluster is unknown.
async fn fresh_plan(run: &Journal<'_>, req: &SwitchoverRequest<'_>) -> Option<SwitchoverPlan> {
    let (ctx, cluster) = (run.ctx, run.cluster);
    let topo = &ctx.topology;
    let mut attempt = 0;
    loop {
        let snapshot = topo.snapshot(&cluster.name)?;
        let durable = topo.durable(&cluster.name).unwrap_or_default();
        let analysis = analyse_now(ctx, cluster);
        let choice = candidate_choice(topo, cluster, &snapshot, &run.old_master, req.to);
        let plan = precheck(&SwitchoverInput {
            snapshot: &snapshot,
            master: durable.master.as_deref(),
            verdict: analysis.as_ref().map(|a| a.verdict),
            operation_in_progress: durable.in_progress.as_ref().map(|o| o.id.as_str()),
            requested: req.to,
            choice: &choice,
            max_lag_seconds: cluster.max_lag.as_secs_f64(),
        });
        attempt += 1;
        if plan.problems.is_empty() || attempt > 1 {
            return Some(plan);
        }
        // The manager's own readings, not only the agents', newer than
        // the first plan: a quiet cluster's replicas may have been probed
        // up to two intervals ago.
        topo.probe_now(&cluster.name);
        tokio::time::sleep(FRESH_FACTS_WAIT).await;
    }
}

/// The old master rejoins as a replica of the new one. Its connection may
/// be reset once by its own agent: when the host stops being the master,
/// the agent ends its lease and closes the sockets on mysqld's port that
/// still hold data. Such a reset is not a refusal: once it is known that
/// the server does not already replicate from the new master (the first
/// attempt may have got that far), the rejoin is tried once more on a new
/// connection.
async fn rejoin_old_master(
    mut old: Server,
    new_host: &myha_config::HostConfig,
    cluster: &ClusterConfig,
    final_pos: &str,
) -> Result<(), crate::actions::ActionError> {
    let first = old.rejoin_as_replica(new_host, cluster, final_pos).await;
    let Err(e) = first else {
        return Ok(());
    };
    let reset = matches!(
        &e,
        crate::actions::ActionError::Db(myha_mysql::DbError::Io { .. })
    );
    if !reset {
        return Err(e);
    }
    tokio::time::sleep(REJOIN_RETRY_AFTER).await;
    if let Ok(f) = old.facts().await {
        let replicating = f.replication.as_ref().is_some_and(|r| {
            r.source_host == new_host.address
                && r.io_thread != myha_core::flavor::ThreadState::Stopped
                && r.sql_thread == myha_core::flavor::ThreadState::Running
        });
        if replicating {
            return Ok(());
        }
    }
    old.rejoin_as_replica(new_host, cluster, final_pos).await
}

/// How long after a reset connection the old master's rejoin is tried again.
const REJOIN_RETRY_AFTER: Duration = Duration::from_millis(300);

/// A switchover under way, the cluster claimed.
struct Switchover<'a> {
    run: Journal<'a>,
    target: String,
    /// The epoch it started in.
    epoch: u64,
    semi_sync_wanted: bool,
    /// The new master runs semi-sync (as the old one did).
    semi_sync: bool,
    /// The old master's fencing was attempted: a rollback makes it
    /// writable again.
    fenced: bool,
}

impl Switchover<'_> {
    /// Everything that can still be rolled back: Err is why. Returns the
    /// old master, its final position and the new epoch.
    async fn up_to_promotion(
        &mut self,
        timeout: Duration,
    ) -> Result<(Server, String, u64), String> {
        self.pre_hook().await?;
        let (old_master, target) = (self.run.old_master.clone(), self.target.clone());
        let (Some(mut old), Some(mut cand)) =
            (self.run.server(&old_master), self.run.server(&target))
        else {
            return Err("servers not configured".into());
        };
        let (ctx, cluster) = (self.run.ctx, self.run.cluster);
        self.semi_sync = (ctx.topology.last_known_facts(&cluster.name, &old_master))
            .is_some_and(|(f, _)| f.semi_sync_master)
            || self.semi_sync_wanted;
        self.read_only(&mut old).await?;
        let final_pos = self.wait_target(&mut old, &mut cand, timeout).await?;
        let epoch = self.promote(&mut cand).await?;
        Ok((old, final_pos, epoch))
    }

    async fn pre_hook(&mut self) -> Result<(), String> {
        let (old, new) = (self.run.old_master.clone(), self.target.clone());
        let event = HookEvent::PreSwitchover;
        match self
            .run
            .hook(event, Some(&old), Some(&new), self.epoch, "")
            .await
        {
            true => Ok(()),
            false => Err("pre_switchover hook failed".into()),
        }
    }

    /// The old master read-only, its sessions killed.
    async fn read_only(&mut self, old: &mut Server) -> Result<(), String> {
        self.fenced = true;
        let t = Instant::now();
        match old.fence().await {
            Ok(killed) => {
                let detail = format!("{} read-only, {killed} session(s) killed", old.name);
                self.run
                    .record(Step::ReadOnly, StepStatus::Ok, detail, Some(t));
                Ok(())
            }
            Err(e) => {
                let detail = format!("{}: {e}", old.name);
                self.run
                    .record(Step::ReadOnly, StepStatus::Failed, detail, Some(t));
                Err(e.to_string())
            }
        }
    }

    /// The old master's final position, and the target exactly there. The
    /// position is read again after the wait: nothing may have moved it
    /// meanwhile.
    async fn wait_target(
        &mut self,
        old: &mut Server,
        cand: &mut Server,
        timeout: Duration,
    ) -> Result<String, String> {
        let t = Instant::now();
        let mut final_pos = String::new();
        for _ in 0..3 {
            let pos = match old.facts().await {
                Ok(f) => f.gtid_executed,
                Err(e) => {
                    self.run.record(
                        Step::FinalPosition,
                        StepStatus::Failed,
                        e.to_string(),
                        Some(t),
                    );
                    return Err(e.to_string());
                }
            };
            if pos == final_pos {
                break;
            }
            if let Err(e) = cand.wait_for_gtids(&pos, timeout).await {
                self.run
                    .record(Step::WaitTarget, StepStatus::Failed, e.to_string(), Some(t));
                return Err(e.to_string());
            }
            final_pos = pos;
        }
        let detail = format!(
            "{} reached {}'s final position {final_pos}",
            self.target, old.name
        );
        self.run
            .record(Step::WaitTarget, StepStatus::Ok, detail, Some(t));
        Ok(final_pos)
    }

    /// Stop replication on the target, then promote it; semi-sync on
    /// before the first write (the old master, rejoining, and the other
    /// replicas acknowledge).
    async fn promote(&mut self, cand: &mut Server) -> Result<u64, String> {
        let t = Instant::now();
        if let Err(e) = cand.detach(DETACH_BOUND).await {
            let detail = format!("{}: {e}", self.target);
            self.run
                .record(Step::Promote, StepStatus::Failed, detail, Some(t));
            return Err(e.to_string());
        }
        let promotion = Promotion {
            kind: OpKind::Switchover,
            semi_sync: self.semi_sync,
            ackers: &[],
            degraded: None,
            started: t,
        };
        promote(&mut self.run, cand, promotion).await
    }

    /// Beside each other: VIP, the other replicas, the old master; then
    /// the post hook and the report.
    async fn publish(mut self, old: Server, final_pos: &str, epoch: u64) -> FailoverReport {
        let target = self.target.clone();
        let done = Outcome::new(OpStatus::CompletedWithErrors, epoch).to(Some(target.clone()));
        let Some(new_host) = self.run.host(&target).cloned() else {
            return self.run.finish(done);
        };
        let cluster = self.run.cluster;
        let rejoin_old = async {
            let t = Instant::now();
            (
                rejoin_old_master(old, &new_host, cluster, final_pos).await,
                t,
            )
        };
        let (vip, repointed, (rejoined, t_rejoin)) = tokio::join!(
            move_vip(&self.run, &target, true),
            repoint_all(&self.run, &new_host, final_pos, self.semi_sync),
            rejoin_old
        );
        self.run.record_all(vip.into_iter().chain(repointed));
        self.record_rejoin(rejoined, final_pos, t_rejoin);
        let topo = &self.run.ctx.topology;
        let _ = topo.update_durable(&cluster.name, |s| s.in_progress = None);
        let status = (self.run)
            .conclude(HookEvent::PostSwitchover, &target, epoch)
            .await;
        self.run.finish(Outcome { status, ..done })
    }

    /// The old master's rejoin as a replica; if it failed, it stays
    /// read-only, marked as needing a rejoin.
    fn record_rejoin(
        &mut self,
        rejoined: Result<(), crate::actions::ActionError>,
        final_pos: &str,
        t: Instant,
    ) {
        let (old_master, target) = (self.run.old_master.clone(), &self.target);
        let Err(e) = rejoined else {
            let detail = format!("{old_master} replicates from {target} from {final_pos}");
            self.run
                .record(Step::Rejoin, StepStatus::Ok, detail, Some(t));
            return;
        };
        let detail = format!("{old_master}: {e}; it stays read-only, marked needs rejoin");
        self.run
            .record(Step::Rejoin, StepStatus::Failed, detail, Some(t));
        let _ = self
            .run
            .ctx
            .topology
            .update_durable(&self.run.cluster.name, |s| {
                if !s.needs_rejoin.contains(&old_master) {
                    s.needs_rejoin.push(old_master.clone());
                }
            });
    }

    /// Undo a switchover that failed before the target became writable:
    /// the old master writable again, the target a replica again, the VIP
    /// where it was.
    async fn rollback(mut self, why: &str) -> FailoverReport {
        let (ctx, cluster) = (self.run.ctx, self.run.cluster);
        let epoch = ctx.topology.durable(&cluster.name).map_or(0, |d| d.epoch);
        let (old_master, target) = (self.run.old_master.clone(), self.target.clone());
        if self.fenced {
            self.reopen_old_master().await;
        }
        if let Some(mut cand) = self.run.server(&target) {
            if let Err(e) = cand.start_replica().await {
                let detail = format!("{target}: START SLAVE: {e}");
                self.run
                    .record(Step::Rollback, StepStatus::Skipped, detail, None);
            }
        }
        let _ = ctx
            .topology
            .update_durable(&cluster.name, |s| s.in_progress = None);
        let detail = format!(
            "switchover rolled back: {why}; {old_master} is still the master of epoch {epoch}"
        );
        self.run
            .record(Step::Abort, StepStatus::Failed, detail, None);
        let event = HookEvent::OnFailure;
        (self.run)
            .hook(event, Some(&old_master), Some(&target), epoch, why)
            .await;
        self.run.finish(Outcome::new(OpStatus::RolledBack, epoch))
    }

    /// The old master writable again (the VIP stayed on it).
    async fn reopen_old_master(&mut self) {
        let t = Instant::now();
        let (ctx, cluster) = (self.run.ctx, self.run.cluster);
        let old_master = self.run.old_master.clone();
        let semi = (ctx.topology.last_known_facts(&cluster.name, &old_master))
            .is_some_and(|(f, _)| f.semi_sync_master);
        let (status, detail) = match self.run.server(&old_master) {
            Some(mut old) => match old.make_writable(semi).await {
                Ok(()) => (
                    StepStatus::Ok,
                    format!("{old_master} writable again; the VIP stayed on it"),
                ),
                Err(e) => (
                    StepStatus::Failed,
                    format!("{old_master}: could not make it writable again: {e}"),
                ),
            },
            None => (StepStatus::Failed, format!("{old_master} not configured")),
        };
        self.run.record(Step::Rollback, status, detail, Some(t));
    }
}
