//! The per-cluster detection loop: build the snapshot, analyse the master,
//! explain every change of verdict in the journal, and fail over when the
//! verdict is a dead master, automatic failover is on, and no anti-flapping
//! block stands. Also resumes an operation a previous manager left.
use std::sync::Arc;
use std::time::Duration;

use myha_config::ClusterConfig;
use myha_core::analysis::{adoption, analyze, Adoption, Analysis, DetectionPolicy, Verdict};
use myha_core::topology::Role;
use tokio::sync::watch;

use crate::agents::VipOp;
use crate::failover::{self, OpStatus};
use crate::operation::{journal, Context};
use crate::state::unix_ms;
use crate::store::{Phase, Step, StepStatus};

const TICK: Duration = Duration::from_millis(50);
/// Pause between two attempts when a failover aborted (no candidate, hook).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Pause between two automatic rejoin attempts of one server.
const REJOIN_RETRY: Duration = Duration::from_secs(3);
/// How long the master of the current epoch must look needlessly fenced
/// before the manager makes it writable again.
const UNFENCE_AFTER: Duration = Duration::from_millis(1000);

pub(crate) fn policy(cluster: &ClusterConfig) -> DetectionPolicy {
    DetectionPolicy {
        master_down_after_ms: cluster.master_down_after.as_millis() as u64,
    }
}

/// The analysis of a cluster now, against the master of its epoch.
pub(crate) fn analyse_now(ctx: &Context, cluster: &ClusterConfig) -> Option<Analysis> {
    let snapshot = ctx.topology.snapshot(&cluster.name)?;
    let durable = ctx.topology.durable(&cluster.name)?;
    Some(analyze(
        &snapshot,
        durable.master.as_deref(),
        policy(cluster),
    ))
}

pub(crate) async fn run(
    ctx: Arc<Context>,
    cluster: ClusterConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    resume(&ctx, &cluster).await;
    // Evidence younger than a full detection window is incomplete: agents
    // have not all reported yet after a manager (re)start.
    let warmup = cluster.master_down_after.max(Duration::from_secs(2));
    let mut last_verdict: Option<Verdict> = None;
    let mut said_blocked = false;
    // The epoch whose master is known to hold the VIP, and the last try.
    let mut vip_epoch: Option<u64> = None;
    let mut vip_tried: Option<std::time::Instant> = None;
    // Last automatic rejoin attempt per server.
    let mut rejoin_tried: std::collections::HashMap<String, std::time::Instant> =
        Default::default();
    // After an aborted failover, wait before trying again.
    let mut retry_at: Option<std::time::Instant> = None;
    let mut upkeep = crate::upkeep::Tracker::default();
    // Masters whose adoption was deferred (journaled once each).
    let mut adoption_deferred: std::collections::BTreeSet<String> = Default::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(snapshot) = ctx.topology.snapshot(&cluster.name) else {
            return;
        };
        let Some(durable) = ctx.topology.durable(&cluster.name) else {
            return;
        };

        // Adopt the observed master when the cluster has none on record:
        // the one writable server that replicates from nobody, as the
        // manager's own probe reads it. Agent reports alone never make a
        // master (a forged one would otherwise get the real master fenced).
        if durable.master.is_none() {
            match adoption(&snapshot) {
                Adoption::Adopt { master: m } => {
                    if let Err(e) = ctx
                        .topology
                        .update_durable(&cluster.name, |s| s.master = Some(m.clone()))
                    {
                        tracing::error!(error = %e, "cannot record the master");
                    } else {
                        adoption_deferred.clear();
                        journal(
                            &ctx,
                            &cluster.name,
                            Step::AdoptMaster,
                            StepStatus::Info,
                            format!("{m} is the master of epoch {}", durable.epoch),
                        );
                    }
                }
                Adoption::Unconfirmed { master: m } => {
                    // Before the first probe has answered, simply wait.
                    let probed = snapshot
                        .server(&m)
                        .is_some_and(|v| v.manager_probe.age_ms.is_some());
                    if probed && adoption_deferred.insert(m.clone()) {
                        journal(
                            &ctx,
                            &cluster.name,
                            Step::AdoptMaster,
                            StepStatus::Skipped,
                            format!(
                                "adopt_master deferred: not confirmed by the manager's probe: {m} looks like the master only in its agent's reports"
                            ),
                        );
                    }
                }
                Adoption::NoMaster => {}
            }
            continue;
        }
        // A former master found replicating from the current master has
        // been rejoined.
        let rejoined: Vec<String> = durable
            .needs_rejoin
            .iter()
            .filter(|n| {
                // On the manager's own reading only: an agent's report
                // never clears a former master.
                snapshot.server(n).is_some_and(|s| {
                    s.probe_confirmed()
                        && s.role == Role::Replica
                        && s.replicates_from.as_deref().is_some_and(|src| {
                            durable
                                .master
                                .as_deref()
                                .and_then(|m| cluster.host(m))
                                .is_some_and(|m| src == m.mysql_addr())
                        })
                })
            })
            .cloned()
            .collect();
        if !rejoined.is_empty() {
            let _ = ctx.topology.update_durable(&cluster.name, |s| {
                s.needs_rejoin.retain(|n| !rejoined.contains(n))
            });
            journal(
                &ctx,
                &cluster.name,
                Step::Rejoined,
                StepStatus::Info,
                format!("{} replicate(s) from the master again", rejoined.join(", ")),
            );
        }

        // Returning servers: former masters, or read-only servers that
        // replicate from nobody, rejoin automatically when they are a
        // subset of the master (in the background; every 10 s at most).
        if cluster.auto_rejoin && durable.in_progress.is_none() && snapshot.master == durable.master
        {
            // Also a replica that came back replicating from a server that
            // is no longer the master (it was down during a failover).
            let master_addr = durable
                .master
                .as_deref()
                .and_then(|m| cluster.host(m))
                .map(|m| m.mysql_addr());
            let from_old_master = |s: &myha_core::topology::ServerView| {
                s.role == Role::Replica
                    && s.replicates_from.as_deref().is_some_and(|src| {
                        Some(src) != master_addr.as_deref()
                            && cluster.hosts.iter().any(|h| h.mysql_addr() == src)
                    })
            };
            for s in snapshot.servers.iter().filter(|s| {
                (matches!(s.role, Role::NeedsRejoin | Role::Unknown) || from_old_master(s))
                    && s.mysqld_up == Some(true)
                    && s.read_only == Some(true)
                    && !durable.diverged.contains_key(&s.name)
            }) {
                let due = rejoin_tried
                    .get(&s.name)
                    .is_none_or(|t| t.elapsed() > REJOIN_RETRY);
                if due {
                    rejoin_tried.insert(s.name.clone(), std::time::Instant::now());
                    let (ctx, cluster, host) = (Arc::clone(&ctx), cluster.clone(), s.name.clone());
                    // A refusal is recorded (status, check) and logged
                    // when its reason changes, by rejoin() itself.
                    // Tracked: a shutdown waits for it (never cut between
                    // its STOP SLAVE and its CHANGE MASTER).
                    let tracker = ctx.background.clone();
                    tracker.spawn(async move {
                        let _ = crate::rejoin::rejoin(&ctx, &cluster, &host, false).await;
                    });
                }
            }
        }

        let analysis = analyze(&snapshot, durable.master.as_deref(), policy(&cluster));
        ctx.topology.set_analysis(&cluster.name, analysis.clone());

        // Upkeep of a healthy master between operations.
        if let Some(m) = durable.master.as_deref() {
            let seen_on = snapshot
                .server(m)
                .and_then(|v| v.facts.as_ref())
                .is_some_and(|f| f.semi_sync_master);
            if seen_on && !durable.semi_sync_wanted {
                let _ = ctx
                    .topology
                    .update_durable(&cluster.name, |s| s.semi_sync_wanted = true);
            }
            upkeep.observe(&snapshot, m);
            if analysis.verdict == Verdict::Healthy && durable.in_progress.is_none() && upkeep.due()
            {
                let input = myha_core::upkeep::UpkeepInput {
                    master: m,
                    semi_sync_degraded: durable.semi_sync_degraded.is_some(),
                    semi_sync_wanted: durable.semi_sync_wanted,
                    no_acker_for_ms: upkeep.no_acker_for_ms(),
                    degrade_after_ms: cluster.semi_sync_degrade_after.as_millis() as u64,
                    fenced_for_ms: upkeep.fenced_for_ms(),
                    unfence_after_ms: UNFENCE_AFTER.as_millis() as u64,
                };
                if let Some(action) = myha_core::upkeep::upkeep(&snapshot, &input) {
                    let unfenced = matches!(action, myha_core::upkeep::Upkeep::Unfence { .. });
                    crate::upkeep::execute(&ctx, &cluster, m, action).await;
                    upkeep.acted();
                    if unfenced {
                        // The VIP goes back with it (its agent dropped it
                        // when it fenced).
                        vip_epoch = None;
                        vip_tried = None;
                    }
                }
            }
        }
        if last_verdict != Some(analysis.verdict) {
            let status = if analysis.verdict.is_dead() {
                StepStatus::Failed
            } else {
                StepStatus::Info
            };
            journal(
                &ctx,
                &cluster.name,
                Step::Verdict,
                status,
                format!("{:?}: {}", analysis.verdict, analysis.evidence.join("; ")),
            );
            last_verdict = Some(analysis.verdict);
            said_blocked = false;
        }
        if analysis.verdict == Verdict::Healthy
            && durable.in_progress.is_none()
            && vip_epoch != Some(durable.epoch)
            && vip_tried.is_none_or(|t| t.elapsed() > Duration::from_secs(2))
        {
            if let (Some(vip), Some(m)) = (
                cluster.vip.as_ref(),
                durable.master.as_deref().and_then(|m| cluster.host(m)),
            ) {
                vip_tried = Some(std::time::Instant::now());
                match ctx.agents.vip(m, vip, VipOp::Add, durable.epoch).await {
                    Ok(v) => {
                        vip_epoch = Some(durable.epoch);
                        journal(
                            &ctx,
                            &cluster.name,
                            Step::VipEnsure,
                            StepStatus::Ok,
                            format!("{} holds {}: {v}", m.name, vip.address),
                        );
                    }
                    Err(e) => journal(&ctx, &cluster.name, Step::VipEnsure, StepStatus::Failed, e),
                }
            }
        }
        if !analysis.verdict.is_dead() || durable.in_progress.is_some() {
            continue;
        }
        if ctx.topology.uptime() < warmup {
            continue;
        }
        if !cluster.auto_failover {
            if !said_blocked {
                journal(
                    &ctx,
                    &cluster.name,
                    Step::NoFailover,
                    StepStatus::Skipped,
                    "auto_failover is off: run `myha failover` to fail over".into(),
                );
                said_blocked = true;
            }
            continue;
        }
        if let Some(until) = durable.blocked_until_ms.filter(|u| *u > unix_ms()) {
            if !said_blocked {
                journal(
                    &ctx,
                    &cluster.name,
                    Step::NoFailover,
                    StepStatus::Skipped,
                    format!(
                        "anti-flapping: a failover happened {} s ago; automatic failover blocked for {} s more. Acknowledge with `myha failover --ack` or fail over by hand with `myha failover`",
                        durable.last_failover_ms.map_or(0, |t| unix_ms().saturating_sub(t) / 1000),
                        (until - unix_ms()) / 1000
                    ),
                );
                said_blocked = true;
            }
            continue;
        }
        if retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            continue;
        }
        let report = failover::failover(&ctx, &cluster, &analysis, None, false).await;
        retry_at = (report.status == OpStatus::Aborted).then(|| {
            journal(
                &ctx,
                &cluster.name,
                Step::NoFailover,
                StepStatus::Skipped,
                format!(
                    "failover aborted; trying again in {} s if the master is still dead",
                    RETRY_AFTER.as_secs()
                ),
            );
            std::time::Instant::now() + RETRY_AFTER
        });
        tracing::info!(cluster = %cluster.name, status = %report.status, new_master = ?report.new_master, "failover finished");
        if report
            .steps
            .iter()
            .any(|s| s.step == Step::VipAdd && s.status == StepStatus::Ok)
        {
            vip_epoch = Some(report.epoch);
        }
        last_verdict = None;
    }
}

/// Finish or undo what a previous manager left half-done. Past promotion
/// the operation is finished (idempotently); before it, it is abandoned
/// and detection decides again.
async fn resume(ctx: &Context, cluster: &ClusterConfig) {
    let Some(op) = ctx
        .topology
        .durable(&cluster.name)
        .and_then(|d| d.in_progress)
    else {
        return;
    };
    if op.phase >= Phase::Promoted {
        journal(
            ctx,
            &cluster.name,
            Step::Resume,
            StepStatus::Info,
            format!(
                "{} was past promotion when the manager stopped: finishing it",
                op.id
            ),
        );
        failover::finish_after_restart(ctx, cluster, &op).await;
    } else {
        let _ = ctx
            .topology
            .update_durable(&cluster.name, |s| s.in_progress = None);
        journal(
            ctx,
            &cluster.name,
            Step::Resume,
            StepStatus::Info,
            format!("{} stopped before promotion ({:?}) when the manager stopped: abandoned, nothing was promoted; detection decides again", op.id, op.phase),
        );
    }
}
