//! Failover of a dead master: fence, choose, catch up, promote, repoint,
//! move the VIP, record every step. The choices are myha-core's pure
//! functions; this module executes them and journals what happened.
use std::sync::Arc;
use std::time::{Duration, Instant};

use myha_config::{ClusterConfig, HostConfig, ManagerConfig};
use myha_core::analysis::Analysis;
use myha_core::candidate::{choose, CandidateChoice, CandidateInput, CandidateServer};
use myha_core::flavor::GtidMode;
use myha_core::topology::ClusterSnapshot;
use serde::{Deserialize, Serialize};

use crate::actions::Server;
use crate::agents::AgentClient;
use crate::hooks::{self, HookContext};
use crate::state::{unix_ms, Topology};
use crate::store::{Event, Operation, Phase};

/// Bounds of the steps that wait on servers.
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);
const RELAY_APPLY_BOUND: Duration = Duration::from_secs(30);
const REPOINT_BOUND: Duration = Duration::from_secs(10);
use crate::actions::STOP_REPLICA_BOUND as DETACH_BOUND;

/// The outcome of a failover, as the API and the CLI show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverReport {
    pub operation: String,
    pub cluster: String,
    /// `completed`, `completed_with_errors`, `aborted`, `dry_run`.
    pub status: String,
    pub old_master: String,
    pub new_master: Option<String>,
    pub epoch: u64,
    pub choice: Option<CandidateChoice>,
    /// The GTIDs the old master had that the new master lacks, or
    /// `unknown: ...` with what is known.
    pub lost: String,
    pub problems: Vec<String>,
    pub steps: Vec<Event>,
    pub duration_ms: u64,
}

/// Everything a failover needs, shared with the detector and the API.
pub struct Context {
    pub topology: Arc<Topology>,
    pub manager: ManagerConfig,
    /// The agents' sampling interval (`agent.interval`).
    pub agent_interval: Duration,
    pub(crate) agents: AgentClient,
}

pub(crate) struct Run<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) cluster: &'a ClusterConfig,
    pub(crate) op: String,
    pub(crate) steps: Vec<Event>,
    pub(crate) problems: Vec<String>,
    /// Where each step also goes as it is journaled (the CLI's stream).
    pub(crate) sink: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
}

impl Run<'_> {
    pub(crate) fn record(
        &mut self,
        step: &str,
        status: &str,
        detail: String,
        started: Option<Instant>,
    ) {
        let duration_ms = started.map(|s| s.elapsed().as_millis() as u64);
        self.record_at(unix_ms(), step, status, detail, duration_ms);
    }

    /// Journal a step that finished at `at_ms`.
    pub(crate) fn record_at(
        &mut self,
        at_ms: u64,
        step: &str,
        status: &str,
        detail: String,
        duration_ms: Option<u64>,
    ) {
        let ev = Event {
            at_ms,
            cluster: self.cluster.name.clone(),
            operation: self.op.clone(),
            step: step.to_string(),
            status: status.to_string(),
            detail,
            duration_ms,
        };
        tracing::info!(cluster = %ev.cluster, op = %ev.operation, step = %ev.step, status = %ev.status, detail = %ev.detail, "failover step");
        if let Some(sink) = &self.sink {
            let _ = sink.send(ev.clone());
        }
        if let Err(e) = self.ctx.topology.store().append(&ev) {
            tracing::error!(error = %e, "cannot journal a failover step");
        }
        if status == "failed" {
            self.problems.push(format!("{step}: {}", ev.detail));
        }
        self.steps.push(ev);
    }

    pub(crate) fn host(&self, name: &str) -> Option<&HostConfig> {
        self.cluster.hosts.iter().find(|h| h.name == name)
    }

    pub(crate) fn server(&self, name: &str) -> Option<Server> {
        self.host(name)
            .map(|h| Server::new(self.cluster, h, &self.ctx.manager))
    }

    pub(crate) fn set_phase(&mut self, phase: Phase, new_master: Option<&str>) {
        let res = self.ctx.topology.update_durable(&self.cluster.name, |s| {
            if let Some(op) = s.in_progress.as_mut() {
                op.phase = phase;
                if let Some(m) = new_master {
                    op.new_master = Some(m.to_string());
                }
            }
        });
        if let Err(e) = res {
            self.record(
                "journal",
                "failed",
                format!("cannot persist phase {phase:?}: {e}"),
                None,
            );
        }
    }

    pub(crate) async fn hook(
        &mut self,
        event: &str,
        old: Option<&str>,
        new: Option<&str>,
        epoch: u64,
        detail: &str,
    ) -> bool {
        let hooks = &self.cluster.hooks;
        let command = match event {
            "pre_failover" => hooks.pre_failover.clone(),
            "post_failover" => hooks.post_failover.clone(),
            "pre_switchover" => hooks.pre_switchover.clone(),
            "post_switchover" => hooks.post_switchover.clone(),
            _ => hooks.on_failure.clone(),
        };
        let old_h = old.and_then(|n| self.host(n)).cloned();
        let new_h = new.and_then(|n| self.host(n)).cloned();
        let op = self.op.clone();
        let ctx = HookContext {
            cluster: &self.cluster.name,
            operation: &op,
            old_master: old_h.as_ref(),
            new_master: new_h.as_ref(),
            epoch,
            detail,
        };
        let mut ok = true;
        let started = Instant::now();
        match hooks::run(command.as_deref(), event, &ctx, hooks.timeout).await {
            Ok(None) => {}
            Ok(Some(out)) => self.record(event, "ok", out, Some(started)),
            Err(e) => {
                ok = false;
                self.record(event, "failed", e, Some(started));
            }
        }
        if let Some(script) = hooks.master_ip_failover_script.clone() {
            let phase = match event {
                "pre_failover" => Some(false),
                "post_failover" => Some(true),
                _ => None,
            };
            if let Some(start) = phase {
                let started = Instant::now();
                let cmd = hooks::mha_command(&script, start, &ctx);
                match hooks::run(Some(&cmd), event, &ctx, hooks.timeout).await {
                    Ok(out) => self.record(
                        "master_ip_failover_script",
                        "ok",
                        out.unwrap_or_default(),
                        Some(started),
                    ),
                    Err(e) => {
                        ok = false;
                        self.record("master_ip_failover_script", "failed", e, Some(started));
                    }
                }
            }
        }
        ok
    }
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

pub(crate) fn new_op_id(kind: &str) -> String {
    format!("{kind}-{}", unix_ms())
}

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
    let started = Instant::now();
    let topo = &ctx.topology;
    let durable = topo.durable(&cluster.name).unwrap_or_default();
    let old_master = analysis
        .master
        .clone()
        .or(durable.master.clone())
        .unwrap_or_default();
    let op = if dry_run {
        "dry-run".to_string()
    } else {
        new_op_id("failover")
    };
    let mut run = Run {
        ctx,
        cluster,
        op: op.clone(),
        steps: Vec::new(),
        problems: Vec::new(),
        sink: None,
    };
    let report = |run: Run<'_>,
                  status: &str,
                  new_master: Option<String>,
                  epoch: u64,
                  choice: Option<CandidateChoice>,
                  lost: String| FailoverReport {
        operation: run.op.clone(),
        cluster: cluster.name.clone(),
        status: status.to_string(),
        old_master: old_master.clone(),
        new_master,
        epoch,
        choice,
        lost,
        problems: run.problems,
        steps: run.steps,
        duration_ms: started.elapsed().as_millis() as u64,
    };

    let Some(snapshot) = topo.snapshot(&cluster.name) else {
        run.problems.push("unknown cluster".into());
        return report(run, "aborted", None, durable.epoch, None, "none".into());
    };
    let choice = candidate_choice(topo, cluster, &snapshot, &old_master, forced);
    if dry_run {
        let lost = match (
            choice
                .chosen
                .as_ref()
                .and_then(|c| snapshot.server(c))
                .and_then(|v| v.facts.clone()),
            topo.last_known_facts(&cluster.name, &old_master),
        ) {
            (Some(new), Some((old, age))) => lost_gtids(Some((&old, age, false)), &new),
            _ => "unknown".into(),
        };
        if let Some(b) = &choice.blocker {
            run.problems.push(b.clone());
        }
        return report(
            run,
            "dry_run",
            choice.chosen.clone(),
            durable.epoch,
            Some(choice),
            lost,
        );
    }

    // Claim the cluster: one operation at a time, persisted first.
    let claimed = topo.update_durable(&cluster.name, |s| {
        if s.in_progress.is_none() {
            s.in_progress = Some(Operation {
                id: op.clone(),
                kind: "failover".into(),
                old_master: old_master.clone(),
                new_master: None,
                phase: Phase::Started,
                started_ms: unix_ms(),
            });
        }
    });
    match claimed {
        Ok(s) if s.in_progress.as_ref().is_some_and(|o| o.id == op) => {}
        Ok(s) => {
            let other = s.in_progress.map(|o| o.id).unwrap_or_default();
            run.problems
                .push(format!("another operation is in progress: {other}"));
            return report(run, "aborted", None, durable.epoch, None, "none".into());
        }
        Err(e) => {
            run.problems
                .push(format!("cannot persist the operation: {e}"));
            return report(run, "aborted", None, durable.epoch, None, "none".into());
        }
    }
    run.record(
        "detect",
        "info",
        format!("{:?}: {}", analysis.verdict, analysis.evidence.join("; ")),
        None,
    );

    // Pre-failover hook: a non-zero exit aborts.
    if !run
        .hook("pre_failover", Some(&old_master), None, durable.epoch, "")
        .await
    {
        return abort(
            run,
            &old_master,
            durable.epoch,
            Some(choice),
            "pre_failover hook failed",
            report,
        )
        .await;
    }

    // Choose, on fresh facts.
    let snapshot = topo.snapshot(&cluster.name).unwrap_or(snapshot);
    let choice = candidate_choice(topo, cluster, &snapshot, &old_master, forced);
    let Some(candidate) = choice.chosen.clone() else {
        let why = choice
            .blocker
            .clone()
            .unwrap_or_else(|| "no candidate".into());
        run.record(
            "choose",
            "failed",
            format!("{why}; excluded: {}", exclusions(&choice)),
            None,
        );
        return abort(run, &old_master, durable.epoch, Some(choice), &why, report).await;
    };
    run.record(
        "choose",
        "ok",
        format!(
            "{candidate} (ranking {}; most advanced {}; excluded: {})",
            choice.ranking.join(" > "),
            choice.most_advanced.as_deref().unwrap_or("-"),
            exclusions(&choice)
        ),
        None,
    );
    run.set_phase(Phase::CandidateChosen, Some(&candidate));
    let Some(mut cand) = run.server(&candidate) else {
        return abort(
            run,
            &old_master,
            durable.epoch,
            Some(choice),
            "candidate not configured",
            report,
        )
        .await;
    };
    let io_stops = stop_io_threads(&run, &old_master, &candidate);

    // Beside each other: fence the old master; bring the candidate to
    // everything any replica received (catch up from the most advanced one
    // if it is ahead, then apply its own relay log: never promote with
    // unapplied relay log).
    let agent_reachable = snapshot
        .server(&old_master)
        .is_some_and(|s| s.host_reachable);
    let prepare = async {
        let mut steps = Vec::new();
        if let (Some(source), Some(gtids)) =
            (choice.catch_up_from.clone(), choice.catch_up_gtids.clone())
        {
            let t = Instant::now();
            match catch_up(&run, &mut cand, &source).await {
                Ok(pos) => steps.push(step(
                    "catch_up",
                    "ok",
                    format!("{candidate} caught up from {source} (missing {gtids}) to {pos}"),
                    Some(t),
                )),
                Err(e) => {
                    steps.push(step("catch_up", "failed", e.clone(), Some(t)));
                    return (steps, Err(e));
                }
            }
        }
        let t = Instant::now();
        match cand.apply_relay_log(RELAY_APPLY_BOUND).await {
            Ok(pos) => {
                steps.push(step(
                    "apply_relay_log",
                    "ok",
                    format!("{candidate} executed {pos}"),
                    Some(t),
                ));
                (steps, Ok(pos))
            }
            Err(e) => {
                steps.push(step("apply_relay_log", "failed", e.to_string(), Some(t)));
                (steps, Err(e.to_string()))
            }
        }
    };
    let (fenced, (prepared, executed)) = tokio::join!(
        fence_old_master(&run, &old_master, durable.epoch, agent_reachable),
        prepare
    );
    let fenced_ok = fenced.iter().any(|s| s.step == "fence" && s.status == "ok");
    run.record_all(fenced.into_iter().chain(prepared));
    if !fenced_ok && executed.is_ok() {
        wait_for_self_fence(&mut run, &old_master).await;
    }
    run.set_phase(Phase::Fenced, None);
    let executed = match executed {
        Ok(pos) => pos,
        Err(e) => return abort(run, &old_master, durable.epoch, Some(choice), &e, report).await,
    };

    // Promote: stop applying, record the new epoch durably, then make
    // writable. The IO thread is stopped and the source forgotten after.
    let t = Instant::now();
    if let Err(e) = cand.stop_applying().await {
        run.record(
            "promote",
            "failed",
            format!("stopping the SQL thread on {candidate}: {e}"),
            Some(t),
        );
        return abort(
            run,
            &old_master,
            durable.epoch,
            Some(choice),
            &e.to_string(),
            report,
        )
        .await;
    }
    let semi_sync = topo
        .last_known_facts(&cluster.name, &old_master)
        .is_some_and(|(f, _)| f.semi_sync_master)
        || durable.semi_sync_degraded.is_some()
        || durable.semi_sync_wanted;
    // Semi-sync is on before the first write: a commit the new master
    // acknowledges is on a replica too. Unless no replica can acknowledge
    // (then its commits would wait for the manager's degrade decision):
    // that is decided here, explicitly, and journaled.
    let ackers = ackers_after_repoint(&run, &snapshot, &old_master, &candidate);
    let semi_now = semi_sync && !ackers.is_empty();
    let degraded = (semi_sync && ackers.is_empty()).then(|| {
        format!("no replica can acknowledge {candidate}'s commits (the others are down, not rejoined or diverged): semi-sync degraded to asynchronous until one replicates")
    });
    let new_state = topo.update_durable(&cluster.name, |s| {
        s.semi_sync_degraded = degraded.clone();
        s.epoch += 1;
        s.master = Some(candidate.clone());
        if let Some(op) = s.in_progress.as_mut() {
            op.phase = Phase::Promoted;
        }
        if !s.needs_rejoin.contains(&old_master) {
            s.needs_rejoin.push(old_master.clone());
        }
        s.needs_rejoin.retain(|n| n != &candidate);
    });
    let epoch = match new_state {
        Ok(s) => s.epoch,
        Err(e) => {
            run.record(
                "promote",
                "failed",
                format!("cannot persist the new epoch: {e}"),
                Some(t),
            );
            return abort(
                run,
                &old_master,
                durable.epoch,
                Some(choice),
                &e.to_string(),
                report,
            )
            .await;
        }
    };
    // Past this point there is no going back: finish and report.
    if let Some(why) = &degraded {
        run.record("semi_sync", "degraded", why.clone(), None);
    }
    match cand.make_writable(semi_now).await {
        Ok(()) => {
            run.record(
                "promote",
                "ok",
                format!(
                    "{candidate} is the master of epoch {epoch}, writable{}",
                    if semi_now {
                        format!(", semi-sync on (acknowledged by {})", ackers.join(" or "))
                    } else {
                        String::new()
                    }
                ),
                Some(t),
            );
            // Routers send writes to it from now on.
            run.set_phase(Phase::Writable, None);
        }
        Err(e) => run.record(
            "promote",
            "failed",
            format!("{candidate}: read_only OFF failed: {e}; retrying in the background"),
            Some(t),
        ),
    }

    // Forget the old source in the background while the rest proceeds.
    let detach = run.server(&candidate).map(|mut server| {
        tokio::spawn(async move {
            let t = Instant::now();
            (server.detach(DETACH_BOUND).await, t)
        })
    });

    // The VIP follows the master while the other replicas are repointed:
    // with semi-sync on, the new master's first commits wait for a replica.
    if let Some(new_host) = run.host(&candidate).cloned() {
        let (vip, repointed) = tokio::join!(
            move_vip(&run, &old_master, &candidate, agent_reachable),
            repoint_all(&run, &old_master, &new_host, &executed, semi_sync)
        );
        run.record_all(vip.into_iter().chain(repointed));
    }
    run.set_phase(Phase::Repointed, None);
    drop(io_stops);
    if let Some(d) = detach {
        match d.await {
        Ok((Ok(()), t)) => run.record("detach", "ok", format!("{candidate}: replication from {old_master} stopped and reset"), Some(t)),
        Ok((Err(e), t)) => run.record("detach", "failed", format!("{candidate}: STOP/RESET SLAVE: {e} (its SQL thread is stopped: nothing from {old_master} is applied)"), Some(t)),
        Err(e) => run.record("detach", "failed", e.to_string(), None),
        }
    }

    // Lost GTIDs.
    let new_facts = cand.facts().await.ok();
    let old_exact = match run.server(&old_master) {
        Some(mut s) => s.facts().await.ok(),
        None => None,
    };
    let lost = match (&new_facts, old_exact) {
        (Some(n), Some(o)) => lost_gtids(Some((&o, Duration::ZERO, true)), n),
        (Some(n), None) => {
            let last = topo.last_known_facts(&cluster.name, &old_master);
            lost_gtids(last.as_ref().map(|(f, age)| (f, *age, false)), n)
        }
        _ => "unknown: the new master's state could not be read".into(),
    };
    run.record("lost", "info", lost.clone(), None);

    let block = cluster.failover_block_period;
    let finished = topo.update_durable(&cluster.name, |s| {
        s.in_progress = None;
        s.last_failover_ms = Some(unix_ms());
        s.blocked_until_ms = Some(unix_ms() + block.as_millis() as u64);
    });
    if let Err(e) = finished {
        run.record("finish", "failed", e.to_string(), None);
    }
    let status = run
        .conclude("post_failover", &old_master, &candidate, epoch, started)
        .await;
    report(run, status, Some(candidate), epoch, Some(choice), lost)
}

/// Finish an operation found past promotion at start-up: make sure the
/// new master is writable, the VIP is on it, the others replicate from it.
/// Every step is idempotent.
pub(crate) async fn finish_after_restart(ctx: &Context, cluster: &ClusterConfig, op: &Operation) {
    let Some(new_master) = op.new_master.clone() else {
        let _ = ctx
            .topology
            .update_durable(&cluster.name, |s| s.in_progress = None);
        return;
    };
    let mut run = Run {
        ctx,
        cluster,
        op: op.id.clone(),
        steps: Vec::new(),
        problems: Vec::new(),
        sink: None,
    };
    let Some(mut cand) = run.server(&new_master) else {
        return;
    };
    let t = Instant::now();
    match cand.make_writable(true).await {
        Ok(()) => run.record(
            "promote",
            "ok",
            format!("{new_master} writable (resumed)"),
            Some(t),
        ),
        Err(e) => run.record(
            "promote",
            "failed",
            format!("{new_master}: {e} (resumed)"),
            Some(t),
        ),
    }
    if let Err(e) = cand.detach(DETACH_BOUND).await {
        run.record(
            "detach",
            "failed",
            format!("{new_master}: {e} (resumed)"),
            None,
        );
    }
    let old_reachable = ctx
        .topology
        .snapshot(&cluster.name)
        .and_then(|s| s.server(&op.old_master).map(|v| v.host_reachable))
        .unwrap_or(false);
    let executed = cand
        .facts()
        .await
        .map(|f| f.gtid_executed)
        .unwrap_or_default();
    if let Some(h) = run.host(&new_master).cloned() {
        let (vip, repointed) = tokio::join!(
            move_vip(&run, &op.old_master, &new_master, old_reachable),
            repoint_all(&run, &op.old_master, &h, &executed, true)
        );
        run.record_all(vip.into_iter().chain(repointed));
    }
    let block = cluster.failover_block_period;
    let _ = ctx.topology.update_durable(&cluster.name, |s| {
        s.in_progress = None;
        s.last_failover_ms = Some(unix_ms());
        s.blocked_until_ms = Some(unix_ms() + block.as_millis() as u64);
    });
    run.record(
        "finish",
        "ok",
        format!(
            "{} finished after a manager restart: {} -> {new_master}",
            op.id, op.old_master
        ),
        None,
    );
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

/// Give up before promotion: nothing irreversible happened. The old master
/// stays the master of the current epoch; if it is reachable and was
/// fenced, it is made writable again.
async fn abort<'a>(
    mut run: Run<'a>,
    old_master: &str,
    epoch: u64,
    choice: Option<CandidateChoice>,
    why: &str,
    report: impl Fn(
        Run<'a>,
        &str,
        Option<String>,
        u64,
        Option<CandidateChoice>,
        String,
    ) -> FailoverReport,
) -> FailoverReport {
    if let Some(mut old) = run.server(old_master) {
        if let Ok(f) = old.facts().await {
            if f.read_only && !f.is_replicating() {
                match old.make_writable(f.semi_sync_master).await {
                    Ok(()) => run.record(
                        "rollback",
                        "ok",
                        format!("{old_master} reachable again: writable again"),
                        None,
                    ),
                    Err(e) => run.record("rollback", "failed", format!("{old_master}: {e}"), None),
                }
            }
        }
    }
    // Replicas whose IO thread this failover stopped go back to retrying.
    for h in run.cluster.hosts.iter().filter(|h| h.name != old_master) {
        let mut s = Server::new(run.cluster, h, &run.ctx.manager);
        if let Err(e) = s.start_replica().await {
            tracing::debug!(host = %h.name, error = %e, "START SLAVE after abort");
        }
    }
    let res = run
        .ctx
        .topology
        .update_durable(&run.cluster.name, |s| s.in_progress = None);
    if let Err(e) = res {
        run.record("abort", "failed", e.to_string(), None);
    }
    run.record(
        "abort",
        "failed",
        format!("failover aborted before promotion: {why}; the cluster is as it was"),
        None,
    );
    run.hook("on_failure", Some(old_master), None, epoch, why)
        .await;
    report(run, "aborted", None, epoch, choice, "none".into())
}

/// The old master could be fenced neither directly nor through its agent.
/// If its agent is silent (host lost, frozen, or cut off from the manager
/// and its peers while clients may still reach it), promotion waits until
/// that agent has fenced itself: never two writable masters. An agent that
/// answers fences its server as soon as it learns the new epoch (a mysqld
/// that is gone comes back read-only; a hung one gets a fence queued).
async fn wait_for_self_fence(run: &mut Run<'_>, old_master: &str) {
    let Some(view) = run
        .ctx
        .topology
        .snapshot(&run.cluster.name)
        .and_then(|s| s.server(old_master).cloned())
    else {
        return;
    };
    if view.agent.reachable {
        let why = if view.agent.says_mysqld_gone() {
            "its mysqld is gone (it restarts read-only)"
        } else {
            "its agent answers and fences it as soon as it learns the new epoch (queued until a hung mysqld answers)"
        };
        run.record(
            "fence_wait",
            "skipped",
            format!("{old_master}: {why}"),
            None,
        );
        return;
    }
    let by = run.cluster.self_fenced_by(run.ctx.agent_interval);
    let heard_ms = view.agent.last_report_age_ms.unwrap_or(0);
    let wait = by.saturating_sub(Duration::from_millis(heard_ms));
    let t = Instant::now();
    tokio::time::sleep(wait).await;
    run.record(
        "fence_wait",
        "ok",
        format!(
            "{old_master}'s agent last reported {heard_ms} ms before; a master isolated for {} ms fences itself: waited {} ms more before promoting",
            run.cluster.self_fence_after().as_millis(),
            wait.as_millis()
        ),
        Some(t),
    );
}

/// The replicas that will replicate from `new_master` once repointed
/// (configured, not the old master, not waiting for rejoin or diverged,
/// mysqld up): those that can acknowledge its commits.
pub(crate) fn ackers_after_repoint(
    run: &Run<'_>,
    snapshot: &ClusterSnapshot,
    old_master: &str,
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
        .filter(|h| h.name != old_master && h.name != new_master)
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
pub(crate) fn stop_io_threads(
    run: &Run<'_>,
    old_master: &str,
    candidate: &str,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for h in run
        .cluster
        .hosts
        .iter()
        .filter(|h| h.name != old_master && h.name != candidate)
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

/// A step done in a branch that ran beside another, journaled after.
pub(crate) struct Step {
    step: &'static str,
    status: &'static str,
    detail: String,
    at_ms: u64,
    duration_ms: Option<u64>,
}

pub(crate) fn step(
    step: &'static str,
    status: &'static str,
    detail: String,
    started: Option<Instant>,
) -> Step {
    Step {
        step,
        status,
        detail,
        at_ms: unix_ms(),
        duration_ms: started.map(|s| s.elapsed().as_millis() as u64),
    }
}

/// Fence the old master wherever it can still be reached: through its
/// agent first (it ends the master's lease and closes the client sockets
/// in the kernel before it kills sessions: a session killed while it waits
/// for a semi-sync acknowledgement can otherwise still be answered OK),
/// else directly. Runs beside the candidate's preparation.
async fn fence_old_master(
    run: &Run<'_>,
    old_master: &str,
    epoch: u64,
    agent_reachable: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if agent_reachable {
        if let Some(h) = run.host(old_master) {
            let t = Instant::now();
            match run.ctx.agents.fence(h, epoch + 1, "").await {
                Ok(v) => {
                    steps.push(step(
                        "fence",
                        "ok",
                        format!("{old_master} fenced by its agent: {v}"),
                        Some(t),
                    ));
                    return steps;
                }
                Err(e) => steps.push(step(
                    "fence",
                    "skipped",
                    format!("{old_master}'s agent could not fence it ({e}); trying directly"),
                    Some(t),
                )),
            }
        }
    }
    let t = Instant::now();
    if let Some(mut old) = run.server(old_master) {
        match old.fence().await {
            Ok(killed) => steps.push(step(
                "fence",
                "ok",
                format!("{old_master}: read_only ON, {killed} session(s) killed (by the manager)"),
                Some(t),
            )),
            Err(e) => steps.push(step(
                "fence",
                "skipped",
                format!(
                    "{old_master} not reachable from the manager either: {e}; {}",
                    if agent_reachable {
                        "its agent fences it as soon as it learns the new epoch"
                    } else {
                        "its agent is silent: it fences itself when isolated, and on resuming from a freeze"
                    }
                ),
                Some(t),
            )),
        }
    }
    steps
}

async fn catch_up(run: &Run<'_>, cand: &mut Server, source: &str) -> Result<String, String> {
    let Some(mut src) = run.server(source) else {
        return Err(format!("catch-up source {source} not configured"));
    };
    let Some(src_host) = run.host(source).cloned() else {
        return Err(format!("catch-up source {source} not configured"));
    };
    // The source must first apply what it received, so its binlog has it.
    let pos = src
        .apply_relay_log(CATCH_UP_BOUND)
        .await
        .map_err(|e| format!("{source} could not apply its relay log: {e}"))?;
    if run.cluster.flavor == myha_core::flavor::Flavor::Mariadb {
        // Its position set deliberately: where it is ahead of the source
        // (a later heartbeat), the source's.
        let mine = cand.facts().await.map_err(|e| e.to_string())?;
        let theirs = src.facts().await.map_err(|e| e.to_string())?;
        let start =
            myha_core::rejoin::catch_up_position(&mine, &theirs).map_err(|e| e.to_string())?;
        cand.rejoin_as_replica(&src_host, run.cluster, &start)
            .await
            .map_err(|e| format!("repointing {} to {source} from {start}: {e}", cand.name))?;
    } else {
        cand.repoint(&src_host, run.cluster, GtidMode::SlavePos)
            .await
            .map_err(|e| format!("repointing {} to {source}: {e}", cand.name))?;
    }
    cand.wait_for_gtids(&pos, CATCH_UP_BOUND)
        .await
        .map_err(|e| e.to_string())?;
    Ok(pos)
}

/// Move the VIP: off the old host first if its agent answers, then onto
/// the new master (address, then gratuitous ARP). Never two holders: an
/// old host whose agent is silent (lost, frozen) drops the address itself
/// when it fences or resumes.
pub(crate) async fn move_vip(
    run: &Run<'_>,
    old_master: &str,
    new_master: &str,
    old_agent_reachable: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let Some(vip) = run.cluster.vip.as_ref() else {
        return steps;
    };
    let epoch = run
        .ctx
        .topology
        .durable(&run.cluster.name)
        .map_or(0, |d| d.epoch);
    if !old_agent_reachable {
        steps.push(step(
            "vip_remove",
            "skipped",
            format!("{old_master}'s agent is silent: the new master's gratuitous ARP takes the address over; the old host drops it when it fences itself or resumes"),
            None,
        ));
    } else if let Some(old) = run.host(old_master) {
        let t = Instant::now();
        match run.ctx.agents.vip(old, vip, false, epoch).await {
            Ok(v) => steps.push(step(
                "vip_remove",
                "ok",
                format!("{old_master}: {v}"),
                Some(t),
            )),
            Err(e) => steps.push(step(
                "vip_remove",
                "skipped",
                format!("{e} (its agent drops the VIP when it learns the new epoch)"),
                Some(t),
            )),
        }
    }
    if let Some(new) = run.host(new_master) {
        let t = Instant::now();
        match run.ctx.agents.vip(new, vip, true, epoch).await {
            Ok(v) => steps.push(step("vip_add", "ok", format!("{new_master}: {v}"), Some(t))),
            Err(e) => steps.push(step("vip_add", "failed", e, Some(t))),
        }
    }
    steps
}

/// Repoint every replica but the old and new masters to the new master,
/// all at once, and verify each replicates and reaches `target`.
pub(crate) async fn repoint_all(
    run: &Run<'_>,
    old_master: &str,
    new_master: &HostConfig,
    target: &str,
    semi_sync: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let durable = run
        .ctx
        .topology
        .durable(&run.cluster.name)
        .unwrap_or_default();
    let mut jobs = tokio::task::JoinSet::new();
    for h in run
        .cluster
        .hosts
        .iter()
        .filter(|h| h.name != old_master && h.name != new_master.name)
    {
        // Former masters not rejoined yet, and diverged servers, are the
        // rejoin logic's: it checks their GTIDs first.
        if durable.needs_rejoin.contains(&h.name) || durable.diverged.contains_key(&h.name) {
            steps.push(step(
                "repoint",
                "skipped",
                format!("{}: former master not rejoined yet (or diverged): it rejoins once back and checked", h.name),
                None,
            ));
            continue;
        }
        let cluster = run.cluster.clone();
        let manager = run.ctx.manager.clone();
        let new_master = new_master.clone();
        let target = target.to_string();
        let h = h.clone();
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
    let mut semi_sync_pending = semi_sync;
    while let Some(joined) = jobs.join_next().await {
        if semi_sync_pending && matches!(joined, Ok((_, Ok(()), _))) {
            semi_sync_pending = false;
            let t = Instant::now();
            let mut m = Server::new(run.cluster, new_master, &run.ctx.manager);
            steps.push(match m.make_writable(true).await {
                Ok(()) => step(
                    "semi_sync",
                    "ok",
                    format!(
                        "{}: semi-sync master side on, a replica acknowledges",
                        new_master.name
                    ),
                    Some(t),
                ),
                Err(e) => step(
                    "semi_sync",
                    "failed",
                    format!("{}: {e}", new_master.name),
                    Some(t),
                ),
            });
        }
        steps.push(match joined {
            Ok((name, Ok(()), t)) => step(
                "repoint",
                "ok",
                format!(
                    "{name} replicates from {} and reached {target}",
                    new_master.name
                ),
                Some(t),
            ),
            Ok((name, Err(e), t)) => step(
                "repoint",
                "failed",
                format!("{name}: {e}; it does not block the new master"),
                Some(t),
            ),
            Err(e) => step(
                "repoint",
                "failed",
                format!("repoint task failed: {e}"),
                None,
            ),
        });
    }
    steps
}

impl Run<'_> {
    /// The end of a completed operation: the post hook, then the `finish`
    /// step; returns `completed` or `completed_with_errors`.
    pub(crate) async fn conclude(
        &mut self,
        post_hook: &str,
        old: &str,
        new: &str,
        epoch: u64,
        started: Instant,
    ) -> &'static str {
        self.hook(post_hook, Some(old), Some(new), epoch, "").await;
        let status = if self.problems.is_empty() {
            "completed"
        } else {
            "completed_with_errors"
        };
        self.record(
            "finish",
            "ok",
            format!(
                "{status} in {} ms: {old} -> {new}, epoch {epoch}",
                started.elapsed().as_millis()
            ),
            Some(started),
        );
        status
    }

    pub(crate) fn record_all(&mut self, steps: impl IntoIterator<Item = Step>) {
        for st in steps {
            self.record_at(st.at_ms, st.step, st.status, st.detail, st.duration_ms);
        }
    }
}
