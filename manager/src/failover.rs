//! Failover of a dead master, in phases:
//!
//! 1. claim the cluster (one operation at a time, persisted first);
//! 2. the pre-failover hook; choose the candidate on fresh facts;
//! 3. prepare, beside each other: fence the old master ‖ bring the
//!    candidate up to date (catch up, apply its relay log);
//! 4. promote (the new epoch persisted, then writable);
//! 5. publish: VIP ‖ repoint the replicas, the candidate detached;
//! 6. conclude: lost GTIDs, anti-flapping block, post hook, report.
//!
//! Any failure before promotion aborts: the cluster is left as it was.
//! The choices are myha-core's pure functions; this module executes them
//! and journals what happened.
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use myha_config::ClusterConfig;
use myha_core::analysis::Analysis;
use myha_core::candidate::{choose, CandidateChoice, CandidateInput, CandidateServer};
use myha_core::topology::ClusterSnapshot;

use crate::actions::Server;
use crate::actions::STOP_REPLICA_BOUND as DETACH_BOUND;
use crate::hooks::HookEvent;
use crate::operation::{new_op_id, Journal, Outcome};
pub use crate::operation::{Context, FailoverReport, OpStatus};
use crate::state::{unix_ms, Topology};
use crate::steps::{
    ackers_after_repoint, bring_up_to_date, fence_old_master, move_vip, promote, repoint_all,
    stop_io_threads, wait_for_self_fence, Promotion,
};
use crate::store::{OpKind, Operation, Phase, Step, StepStatus};

/// Run a failover of `cluster` away from its master.
///
/// `analysis` is the verdict that triggered it (or the operator's request);
/// `forced` the `--to` host; `dry_run` only plans.
pub async fn failover(
    ctx: &Context,
    cluster: &ClusterConfig,
    analysis: &Analysis,
    forced: Option<&str>,
    dry_run: bool,
) -> FailoverReport {
    let mut fo = match Failover::claim(ctx, cluster, analysis, forced, dry_run) {
        ControlFlow::Continue(fo) => fo,
        ControlFlow::Break(report) => return report,
    };
    let (mut cand, executed, epoch) = match fo.up_to_promotion().await {
        Ok(promoted) => promoted,
        Err(_) if !fo.run.leads() => return fo.run.handed_over(fo.epoch, None),
        Err(why) => return fo.abort(&why).await,
    };
    if !fo.run.leads() {
        return fo.run.handed_over(epoch, Some(cand.name));
    }
    // Past this point there is no going back: finish and report.
    fo.publish(&cand.name, &executed).await;
    let lost = fo.lost(&mut cand).await;
    fo.conclude(cand.name, epoch, lost).await
}

/// A failover under way.
struct Failover<'a> {
    run: Journal<'a>,
    /// The epoch it started in.
    epoch: u64,
    forced: Option<&'a str>,
    /// Semi-sync was wanted or degraded when it started.
    semi_sync_before: bool,
    /// The cluster as last seen, and the choice made on it.
    snapshot: ClusterSnapshot,
    choice: CandidateChoice,
    /// The old master's agent answered in that snapshot.
    agent_reachable: bool,
    /// The other replicas' IO threads being stopped.
    io_stops: Option<tokio::task::JoinSet<()>>,
    /// The new master runs semi-sync.
    semi_sync: bool,
}

impl<'a> Failover<'a> {
    /// Claim the cluster, or end here: unknown cluster, dry run (the plan),
    /// another operation under way.
    fn claim(
        ctx: &'a Context,
        cluster: &'a ClusterConfig,
        analysis: &Analysis,
        forced: Option<&'a str>,
        dry_run: bool,
    ) -> ControlFlow<FailoverReport, Failover<'a>> {
        let topo = &ctx.topology;
        let durable = topo.durable(&cluster.name).unwrap_or_default();
        let old_master = analysis.master.clone().or(durable.master.clone());
        let op = match dry_run {
            true => crate::operation::DRY_RUN.to_string(),
            false => new_op_id(OpKind::Failover),
        };
        let mut run = Journal::new(ctx, cluster, op, old_master.unwrap_or_default(), None);
        let aborted = Outcome::new(OpStatus::Aborted, durable.epoch);
        let Some(snapshot) = topo.snapshot(&cluster.name) else {
            run.problems.push("unknown cluster".into());
            return ControlFlow::Break(run.finish(aborted));
        };
        let choice = candidate_choice(topo, cluster, &snapshot, &run.old_master, forced);
        if dry_run {
            return ControlFlow::Break(plan(run, &snapshot, choice, durable.epoch));
        }
        if let Err(why) = run.claim(OpKind::Failover, None, Phase::Started) {
            run.problems.push(why);
            return ControlFlow::Break(run.finish(aborted));
        }
        let evidence = analysis.evidence.join("; ");
        let detail = format!("{:?}: {evidence}", analysis.verdict);
        run.record(Step::Detect, StepStatus::Info, detail, None);
        ControlFlow::Continue(Failover {
            run,
            epoch: durable.epoch,
            forced,
            semi_sync_before: durable.semi_sync_degraded.is_some() || durable.semi_sync_wanted,
            snapshot,
            choice,
            agent_reachable: false,
            io_stops: None,
            semi_sync: false,
        })
    }

    /// Everything that can still be given up: Err is why.
    async fn up_to_promotion(&mut self) -> Result<(Server, String, u64), String> {
        self.run.checkpoint(Phase::Started).await;
        self.pre_hook().await?;
        let mut cand = self.choose()?;
        self.run.checkpoint(Phase::CandidateChosen).await;
        self.io_stops = Some(stop_io_threads(&self.run, &cand.name));
        let executed = self.prepare(&mut cand).await?;
        self.run.checkpoint(Phase::Fenced).await;
        let epoch = self.promote(&mut cand).await?;
        Ok((cand, executed, epoch))
    }

    /// The pre-failover hook: a non-zero exit aborts.
    async fn pre_hook(&mut self) -> Result<(), String> {
        let old = self.run.old_master.clone();
        let event = HookEvent::PreFailover;
        match self.run.hook(event, Some(&old), None, self.epoch, "").await {
            true => Ok(()),
            false => Err("pre_failover hook failed".into()),
        }
    }

    /// Choose the candidate, on fresh facts.
    fn choose(&mut self) -> Result<Server, String> {
        let (ctx, cluster) = (self.run.ctx, self.run.cluster);
        if let Some(fresh) = ctx.topology.snapshot(&cluster.name) {
            self.snapshot = fresh;
        }
        let old = self.run.old_master.as_str();
        self.choice = candidate_choice(&ctx.topology, cluster, &self.snapshot, old, self.forced);
        let choice = &self.choice;
        let Some(candidate) = choice.chosen.clone() else {
            let why = choice
                .blocker
                .clone()
                .unwrap_or_else(|| "no candidate".into());
            let detail = format!("{why}; excluded: {}", exclusions(choice));
            self.run
                .record(Step::Choose, StepStatus::Failed, detail, None);
            return Err(why);
        };
        let detail = format!(
            "{candidate} (ranking {}; most advanced {}; excluded: {})",
            choice.ranking.join(" > "),
            choice.most_advanced.as_deref().unwrap_or("-"),
            exclusions(choice)
        );
        self.run.record(Step::Choose, StepStatus::Ok, detail, None);
        self.run.set_phase(Phase::CandidateChosen, Some(&candidate));
        self.agent_reachable =
            (self.snapshot.server(&self.run.old_master)).is_some_and(|s| s.host_reachable);
        (self.run.server(&candidate)).ok_or_else(|| "candidate not configured".to_string())
    }

    /// Beside each other: fence the old master; bring the candidate to
    /// everything any replica received. Promotion waits for a silent old
    /// master to have fenced itself. Returns the candidate's executed GTIDs.
    async fn prepare(&mut self, cand: &mut Server) -> Result<String, String> {
        let catch_up = (self.choice.catch_up_from.clone()).zip(self.choice.catch_up_gtids.clone());
        let (fenced, (prepared, executed)) = tokio::join!(
            fence_old_master(&self.run, self.epoch, self.agent_reachable),
            bring_up_to_date(&self.run, cand, catch_up)
        );
        let fenced_ok =
            (fenced.iter()).any(|s| s.step == Step::Fence && s.status == StepStatus::Ok);
        self.run.record_all(fenced.into_iter().chain(prepared));
        if !fenced_ok && executed.is_ok() {
            wait_for_self_fence(&mut self.run).await;
        }
        self.run.set_phase(Phase::Fenced, None);
        executed.map_err(|e| e.to_string())
    }

    /// Stop applying, then promote. Semi-sync is on before the first write
    /// (a commit the new master acknowledges is on a replica too), unless
    /// no replica can acknowledge: that is decided here and journaled.
    async fn promote(&mut self, cand: &mut Server) -> Result<u64, String> {
        let t = Instant::now();
        if let Err(e) = cand.stop_applying().await {
            let detail = format!("stopping the SQL thread on {}: {e}", cand.name);
            self.run
                .record(Step::Promote, StepStatus::Failed, detail, Some(t));
            return Err(e.to_string());
        }
        let (ctx, cluster) = (self.run.ctx, self.run.cluster);
        self.semi_sync = (ctx
            .topology
            .last_known_facts(&cluster.name, &self.run.old_master))
        .is_some_and(|(f, _)| f.semi_sync_master)
            || self.semi_sync_before;
        let ackers = ackers_after_repoint(&self.run, &self.snapshot, &cand.name);
        let degraded = (self.semi_sync && ackers.is_empty()).then(|| {
            format!("no replica can acknowledge {}'s commits (the others are down, not rejoined or diverged): semi-sync degraded to asynchronous until one replicates", cand.name)
        });
        let promotion = Promotion {
            kind: OpKind::Failover,
            semi_sync: self.semi_sync && !ackers.is_empty(),
            ackers: &ackers,
            degraded,
            started: t,
        };
        promote(&mut self.run, cand, promotion).await
    }

    /// The VIP follows the master while the other replicas are repointed
    /// (with semi-sync on, the new master's first commits wait for a
    /// replica); the candidate forgets its old source meanwhile.
    async fn publish(&mut self, candidate: &str, executed: &str) {
        let detach = self.run.server(candidate).map(|mut server| {
            tokio::spawn(async move {
                let t = Instant::now();
                (server.detach(DETACH_BOUND).await, t)
            })
        });
        if let Some(new_host) = self.run.host(candidate).cloned() {
            let (vip, repointed) = tokio::join!(
                move_vip(&self.run, candidate, self.agent_reachable),
                repoint_all(&self.run, &new_host, executed, self.semi_sync)
            );
            self.run.record_all(vip.into_iter().chain(repointed));
        }
        self.run.set_phase(Phase::Repointed, None);
        self.run.checkpoint(Phase::Repointed).await;
        drop(self.io_stops.take());
        let old = &self.run.old_master;
        let (status, detail, t) = match detach {
            None => return,
            Some(d) => match d.await {
                Ok((Ok(()), t)) => (StepStatus::Ok, format!("{candidate}: replication from {old} stopped and reset"), Some(t)),
                Ok((Err(e), t)) => (StepStatus::Failed, format!("{candidate}: STOP/RESET SLAVE: {e} (its SQL thread is stopped: nothing from {old} is applied)"), Some(t)),
                Err(e) => (StepStatus::Failed, e.to_string(), None),
            },
        };
        self.run.record(Step::Detach, status, detail, t);
    }

    /// What the old master had that the new master lacks, journaled.
    async fn lost(&mut self, cand: &mut Server) -> String {
        let new_facts = cand.facts().await.ok();
        let old_exact = match self.run.server(&self.run.old_master) {
            Some(mut s) => s.facts().await.ok(),
            None => None,
        };
        let lost = match (&new_facts, old_exact) {
            (Some(n), Some(o)) => lost_gtids(Some((&o, Duration::ZERO, true)), n),
            (Some(n), None) => {
                let (topo, cluster) = (&self.run.ctx.topology, &self.run.cluster.name);
                let last = topo.last_known_facts(cluster, &self.run.old_master);
                lost_gtids(last.as_ref().map(|(f, age)| (f, *age, false)), n)
            }
            _ => "unknown: the new master's state could not be read".into(),
        };
        self.run
            .record(Step::Lost, StepStatus::Info, lost.clone(), None);
        lost
    }

    /// The operation done, automatic failover blocked for a while (anti
    /// flapping), the post hook, the report.
    async fn conclude(mut self, candidate: String, epoch: u64, lost: String) -> FailoverReport {
        let block = self.run.cluster.failover_block_period;
        let finished = self
            .run
            .ctx
            .topology
            .update_durable(&self.run.cluster.name, |s| {
                s.in_progress = None;
                s.last_failover_ms = Some(unix_ms());
                s.blocked_until_ms = Some(unix_ms() + block.as_millis() as u64);
            });
        if let Err(e) = finished {
            self.run
                .record(Step::Finish, StepStatus::Failed, e.to_string(), None);
        }
        let status = self
            .run
            .conclude(HookEvent::PostFailover, &candidate, epoch)
            .await;
        let outcome = Outcome::new(status, epoch).to(Some(candidate));
        (self.run).finish(outcome.choice(Some(self.choice)).lost(lost))
    }

    /// Give up before promotion: nothing irreversible happened. The old
    /// master stays the master of the current epoch; if it is reachable and
    /// was fenced, it is made writable again.
    async fn abort(mut self, why: &str) -> FailoverReport {
        let old_master = self.run.old_master.clone();
        self.reopen_old_master().await;
        // Replicas whose IO thread this failover stopped go back to retrying.
        let run = &mut self.run;
        for h in run.cluster.hosts.iter().filter(|h| h.name != old_master) {
            let mut s = Server::new(run.cluster, h, &run.ctx.manager);
            if let Err(e) = s.start_replica().await {
                tracing::debug!(host = %h.name, error = %e, "START SLAVE after abort");
            }
        }
        let res = (run.ctx.topology).update_durable(&run.cluster.name, |s| s.in_progress = None);
        if let Err(e) = res {
            run.record(Step::Abort, StepStatus::Failed, e.to_string(), None);
        }
        let detail = format!("failover aborted before promotion: {why}; the cluster is as it was");
        run.record(Step::Abort, StepStatus::Failed, detail, None);
        let epoch = self.epoch;
        run.hook(HookEvent::OnFailure, Some(&old_master), None, epoch, why)
            .await;
        let outcome = Outcome::new(OpStatus::Aborted, epoch).choice(Some(self.choice));
        self.run.finish(outcome)
    }

    /// The old master, if reachable and fenced (read-only, replicating
    /// from nobody), writable again.
    async fn reopen_old_master(&mut self) {
        let old_master = self.run.old_master.clone();
        let Some(mut old) = self.run.server(&old_master) else {
            return;
        };
        let Ok(f) = old.facts().await else {
            return;
        };
        if f.read_only && !f.is_replicating() {
            let (status, detail) = match old.make_writable(f.semi_sync_master).await {
                Ok(()) => (
                    StepStatus::Ok,
                    format!("{old_master} reachable again: writable again"),
                ),
                Err(e) => (StepStatus::Failed, format!("{old_master}: {e}")),
            };
            self.run.record(Step::Rollback, status, detail, None);
        }
    }
}

/// A dry run: the candidate that would be chosen, and what would be lost.
fn plan(
    mut run: Journal<'_>,
    snapshot: &ClusterSnapshot,
    choice: CandidateChoice,
    epoch: u64,
) -> FailoverReport {
    let chosen = choice.chosen.clone();
    let new_facts = (chosen.as_ref())
        .and_then(|c| snapshot.server(c))
        .and_then(|v| v.facts.clone());
    let old_facts = (run.ctx.topology).last_known_facts(&run.cluster.name, &run.old_master);
    // A master the manager reads now is not "unreachable": what it has
    // that the candidate lacks is exact (and a failover would first bring
    // the candidate up to it, or wait).
    let readable = snapshot
        .server(&run.old_master)
        .is_some_and(|v| v.manager_probe.ok);
    let lost = match (new_facts, old_facts) {
        (Some(new), Some((old, age))) => lost_gtids(Some((&old, age, readable)), &new),
        _ => "unknown".into(),
    };
    if let Some(b) = &choice.blocker {
        run.problems.push(b.clone());
    }
    let outcome = Outcome::new(OpStatus::DryRun, epoch).to(chosen);
    run.finish(outcome.choice(Some(choice)).lost(lost))
}

/// Candidate choice over a snapshot, with the old master excluded.
pub fn candidate_choice(
    topology: &Topology,
    cluster: &ClusterConfig,
    snapshot: &ClusterSnapshot,
    old_master: &str,
    forced: Option<&str>,
) -> CandidateChoice {
    let known_facts = cluster
        .hosts
        .iter()
        .filter_map(|h| {
            topology
                .last_known_facts(&cluster.name, &h.name)
                .map(|(f, _)| (h.name.clone(), f))
        })
        .collect();
    let servers = cluster
        .hosts
        .iter()
        .filter(|h| h.name != old_master)
        .filter_map(|h| {
            snapshot.server(&h.name).map(|v| CandidateServer {
                view: v.clone(),
                candidate_master: h.candidate_master,
                no_master: h.no_master,
                priority: h.priority,
            })
        })
        .collect();
    choose(&CandidateInput {
        old_master: old_master.to_string(),
        servers,
        known_facts,
        max_lag_seconds: cluster.max_lag.as_secs_f64(),
        forced: forced.map(str::to_string),
    })
}

/// What the old master had that the new master lacks (`exact` when the
/// old master was read now, else from its last report `age` ago).
fn lost_gtids(
    old: Option<(&myha_core::report::ServerFacts, Duration, bool)>,
    new_master: &myha_core::report::ServerFacts,
) -> String {
    let Some((old, age, exact)) = old else {
        return "unknown: the old master's state was never read".into();
    };
    let what = match myha_core::rejoin::extra_gtids(old, new_master) {
        Ok(extra) if extra.is_empty() => "none".to_string(),
        Ok(extra) => extra.join(","),
        Err(e) => return format!("unknown: {e}"),
    };
    if exact {
        what
    } else {
        format!(
            "unknown: the old master is unreachable; at its last report {} ms ago it had {}, of which the new master lacks: {what}",
            age.as_millis(),
            old.gtid_executed
        )
    }
}

pub(crate) fn exclusions(choice: &CandidateChoice) -> String {
    if choice.excluded.is_empty() {
        return "none".into();
    }
    choice
        .excluded
        .iter()
        .map(|e| format!("{}: {}", e.server, e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Finish an operation found past promotion at start-up: make sure the
/// new master is writable, the VIP is on it, the others replicate from it.
/// Every step is idempotent.
pub(crate) async fn finish_after_restart(ctx: &Context, cluster: &ClusterConfig, op: &Operation) {
    let topo = &ctx.topology;
    let Some(new_master) = op.new_master.clone() else {
        let _ = topo.update_durable(&cluster.name, |s| s.in_progress = None);
        return;
    };
    let mut run = Journal::new(ctx, cluster, op.id.clone(), op.old_master.clone(), None);
    let Some(mut cand) = run.server(&new_master) else {
        return;
    };
    let t = Instant::now();
    let (status, detail) = match cand.make_writable(true).await {
        Ok(()) => (
            StepStatus::Resumed,
            format!("{new_master} writable (resumed)"),
        ),
        Err(e) => (StepStatus::Failed, format!("{new_master}: {e} (resumed)")),
    };
    run.record(Step::Promote, status, detail, Some(t));
    if let Err(e) = cand.detach(DETACH_BOUND).await {
        let detail = format!("{new_master}: {e} (resumed)");
        run.record(Step::Detach, StepStatus::Failed, detail, None);
    }
    let old_reachable = (topo.snapshot(&cluster.name))
        .and_then(|s| s.server(&op.old_master).map(|v| v.host_reachable))
        .unwrap_or(false);
    let executed = (cand.facts().await)
        .map(|f| f.gtid_executed)
        .unwrap_or_default();
    if let Some(h) = run.host(&new_master).cloned() {
        let (vip, repointed) = tokio::join!(
            move_vip(&run, &new_master, old_reachable),
            repoint_all(&run, &h, &executed, true)
        );
        run.record_all(vip.into_iter().chain(repointed));
    }
    let block = cluster.failover_block_period;
    let _ = topo.update_durable(&cluster.name, |s| {
        s.in_progress = None;
        s.last_failover_ms = Some(unix_ms());
        s.blocked_until_ms = Some(unix_ms() + block.as_millis() as u64);
    });
    let detail = format!(
        "{} finished after a manager restart: {} -> {new_master}",
        op.id, op.old_master
    );
    run.record(Step::Finish, StepStatus::Ok, detail, None);
}
