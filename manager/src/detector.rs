//! The per-cluster detection loop: every tick it gathers the snapshot and
//! the durable state, asks `myha_core::detect::next_actions` what to do
//! (adopt a master, rejoin, upkeep, journal a verdict, ensure the VIP, fail
//! over), and does it. Also resumes an operation a previous manager left.
use std::sync::Arc;
use std::time::Duration;

use myha_config::ClusterConfig;
use myha_core::analysis::{analyze, Analysis, DetectionPolicy, Verdict};
use myha_core::detect::{
    next_actions, next_look_ms, Action, Clock, DetectorConfig, DetectorState, Entry, EntryStatus,
    EntryStep, FAST_TICK_MS, IDLE_TICK_MS,
};
use tokio::sync::watch;

use crate::agents::VipOp;
use crate::failover::{self, OpStatus};
use crate::metrics::LookCause;
use crate::operation::{journal, journal_for, Context};
use crate::state::unix_ms;
use crate::store::{Phase, Step, StepStatus};

const FAST_TICK: Duration = Duration::from_millis(FAST_TICK_MS);
const IDLE_TICK: Duration = Duration::from_millis(IDLE_TICK_MS);

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
    let config = DetectorConfig {
        auto_failover: cluster.auto_failover,
        auto_rejoin: cluster.auto_rejoin,
        vip: cluster.vip.is_some(),
        policy: policy(&cluster),
        semi_sync_degrade_after_ms: cluster.semi_sync_degrade_after.as_millis() as u64,
        // Evidence younger than a full detection window is incomplete:
        // agents have not all reported yet after a manager (re)start.
        warmup_ms: cluster
            .master_down_after
            .max(Duration::from_secs(2))
            .as_millis() as u64,
    };
    let mut state = DetectorState::default();
    let terms = ctx.coord.terms();
    let shared = ctx.coord.shared().is_some();
    let Some(wake) = ctx.topology.waker(&cluster.name) else {
        return;
    };
    // The leadership term this loop has taken over (resumed) for.
    let mut led = 0u64;
    // Fast until the first look says the cluster is quiet.
    let mut pace = FAST_TICK;
    loop {
        // The next look: after `pace`, or at once when a report or probe
        // changes materially (a failure shows there first).
        let cause = tokio::select! {
            _ = tokio::time::sleep(pace) => LookCause::Timer,
            _ = wake.notified() => LookCause::Change,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        ctx.metrics.look(cause);
        if !ctx.coord.is_leader() {
            pace = follow(&ctx, &cluster, &config);
            ctx.topology.set_quiet(&cluster.name, pace == IDLE_TICK);
            led = 0;
            continue;
        }
        let term = *terms.borrow();
        if term != led {
            // Leading from now on: the shared state as the last leader left
            // it, then what it left half-done.
            if shared {
                if let Err(e) = ctx.topology.reload_durable(&cluster.name, true) {
                    tracing::warn!(cluster = %cluster.name, error = %e, "leading, but the shared state cannot be read: not acting yet");
                    ctx.topology.set_quiet(&cluster.name, false);
                    continue;
                }
            }
            led = term;
            state = DetectorState::default();
            resume(&ctx, &cluster).await;
        }
        let Some(snapshot) = ctx.topology.snapshot(&cluster.name) else {
            return;
        };
        let Some(durable) = ctx.topology.durable(&cluster.name) else {
            return;
        };
        // The routers' view, from this snapshot: what changed since the
        // last look (and what only time changes, a report growing stale)
        // reaches them from here.
        ctx.topology.publish_view(&snapshot);
        let now = clock(&ctx);
        let view = durable.view();
        let (next, actions) = next_actions(&state, &snapshot, &view, &config, now);
        state = next;
        pace = Duration::from_millis(next_look_ms(&state, &view, &config, now));
        // An action that changes the cluster (a failover, the VIP, a
        // rejoin): look again soon. Every look publishes its analysis,
        // which must not keep a quiet cluster at the fast pace.
        if actions.iter().any(|a| a.changes_the_cluster()) {
            pace = FAST_TICK;
        }
        // Set before acting: a cluster that is not quiet has its probes
        // run at every tick, and at once.
        ctx.topology.set_quiet(&cluster.name, pace == IDLE_TICK);
        for action in actions {
            execute(&ctx, &cluster, &mut state, action).await;
        }
    }
}

/// How often a follower reads what changed in the shared state, for every
/// cluster at once ([`follow_shared`]).
const FOLLOWER_SYNC: Duration = Duration::from_millis(250);

/// A follower's one reader of the shared state: every 250 ms, one range
/// read of the states that changed since the last one (nothing in steady
/// state, whatever the number of clusters).
pub(crate) async fn follow_shared(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut revision = 0i64;
    let mut tick = tokio::time::interval(FOLLOWER_SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if ctx.coord.is_leader() {
            continue;
        }
        match ctx.topology.sync_shared(revision) {
            Ok(r) => revision = r,
            Err(e) => tracing::debug!(error = %e, "follower: shared state not read"),
        }
    }
}

/// A follower acts on nothing: it keeps its view of the shared state and
/// the verdict fresh, for `myha status`, routers and a quick takeover.
/// Returns the pace of its next look: fast unless the master is healthy.
fn follow(ctx: &Context, cluster: &ClusterConfig, config: &DetectorConfig) -> Duration {
    let Some(snapshot) = ctx.topology.snapshot(&cluster.name) else {
        return FAST_TICK;
    };
    let Some(durable) = ctx.topology.durable(&cluster.name) else {
        return FAST_TICK;
    };
    ctx.topology.publish_view(&snapshot);
    let a = analyze(&snapshot, durable.master.as_deref(), config.policy);
    let quiet = a.verdict == Verdict::Healthy && durable.in_progress.is_none();
    ctx.topology.set_analysis(&cluster.name, a);
    if quiet {
        Duration::from_millis(IDLE_TICK_MS)
    } else {
        FAST_TICK
    }
}

fn clock(ctx: &Context) -> Clock {
    Clock {
        mono_ms: ctx.topology.uptime().as_millis() as u64,
        unix_ms: unix_ms(),
    }
}

fn say(ctx: &Context, cluster: &ClusterConfig, e: Entry) {
    let step = match e.step {
        EntryStep::AdoptMaster => Step::AdoptMaster,
        EntryStep::Rejoined => Step::Rejoined,
        EntryStep::Verdict => Step::Verdict,
        EntryStep::NoFailover => Step::NoFailover,
    };
    let status = match e.status {
        EntryStatus::Info => StepStatus::Info,
        EntryStatus::Skipped => StepStatus::Skipped,
        EntryStatus::Failed => StepStatus::Failed,
    };
    journal(ctx, &cluster.name, step, status, e.text);
}

/// Carry out one action of [`next_actions`], and tell `state` what only
/// its outcome shows.
async fn execute(
    ctx: &Arc<Context>,
    cluster: &ClusterConfig,
    state: &mut DetectorState,
    action: Action,
) {
    match action {
        Action::Journal(e) => say(ctx, cluster, e),
        Action::AdoptMaster { master, epoch } => {
            if let Err(e) = ctx
                .topology
                .update_durable(&cluster.name, |s| s.master = Some(master.clone()))
            {
                tracing::error!(error = %e, "cannot record the master");
            } else {
                state.adopted();
                journal(
                    ctx,
                    &cluster.name,
                    Step::AdoptMaster,
                    StepStatus::Info,
                    format!("{master} is the master of epoch {epoch}"),
                );
            }
        }
        Action::ClearNeedsRejoin(rejoined) => {
            let _ = ctx.topology.update_durable(&cluster.name, |s| {
                s.needs_rejoin.retain(|n| !rejoined.contains(n))
            });
        }
        Action::StartRejoin(host) => {
            let (ctx, cluster) = (Arc::clone(ctx), cluster.clone());
            // A refusal is recorded (status, check) and logged when its
            // reason changes, by rejoin() itself. Tracked: a shutdown waits
            // for it (never cut between its STOP SLAVE and its CHANGE
            // MASTER).
            let tracker = ctx.background.clone();
            // On the operations thread (see `crate::ops`): its SQL bounds
            // must not run out behind the reports of hundreds of clusters.
            tracker.spawn(async move {
                let c = Arc::clone(&ctx);
                let run = async move { crate::rejoin::rejoin(&c, &cluster, &host, false).await };
                let _ = ctx.ops.run(run).await;
            });
        }
        Action::Publish(analysis) => ctx.topology.set_analysis(&cluster.name, analysis),
        Action::WantSemiSync => {
            let _ = ctx
                .topology
                .update_durable(&cluster.name, |s| s.semi_sync_wanted = true);
        }
        Action::Upkeep { master, action } => {
            crate::upkeep::execute(ctx, cluster, &master, action).await;
            state.upkeep_acted(clock(ctx).mono_ms);
        }
        Action::EnsureVip { master, epoch } => {
            let (Some(vip), Some(m)) = (cluster.vip.as_ref(), cluster.host(&master)) else {
                return;
            };
            match ctx.agents.set_vip(m, vip, VipOp::Add, epoch).await {
                Ok(v) => {
                    state.vip_held(epoch);
                    journal(
                        ctx,
                        &cluster.name,
                        Step::VipEnsure,
                        StepStatus::Ok,
                        format!("{} holds {}: {v}", m.name, vip.address),
                    );
                }
                Err(e) => journal(
                    ctx,
                    &cluster.name,
                    Step::VipEnsure,
                    StepStatus::Failed,
                    e.to_string(),
                ),
            }
        }
        Action::StartFailover(analysis) => {
            let (c, conf) = (Arc::clone(ctx), cluster.clone());
            let run = async move { failover::failover(&c, &conf, &analysis, None, false).await };
            let Some(report) = ctx.ops.run(run).await else {
                // No outcome (it panicked): as an aborted attempt, retried
                // after the usual delay, and whatever it left half-done is
                // in the durable state for the next look to resume.
                if let Some(e) = state.failover_ended(true, None, clock(ctx).mono_ms) {
                    say(ctx, cluster, e);
                }
                return;
            };
            let vip_added = report
                .steps
                .iter()
                .any(|s| s.step == Step::VipAdd && s.status == StepStatus::Ok);
            if let Some(e) = state.failover_ended(
                report.status == OpStatus::Aborted,
                vip_added.then_some(report.epoch),
                clock(ctx).mono_ms,
            ) {
                say(ctx, cluster, e);
            }
            tracing::info!(cluster = %cluster.name, status = %report.status, new_master = ?report.new_master, "failover finished");
        }
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
        journal_for(
            ctx,
            &cluster.name,
            &op.id,
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
        journal_for(
            ctx,
            &cluster.name,
            &op.id,
            Step::Resume,
            StepStatus::Info,
            format!("{} stopped before promotion ({:?}) when the manager stopped: abandoned, nothing was promoted; detection decides again", op.id, op.phase),
        );
    }
}
