//! Planned switchover: make the old master read-only, drain it, wait for
//! the target to reach exactly its final position, promote the target,
//! repoint everyone (the old master included), move the VIP. Any failure
//! before the target is writable rolls back to the old master writable.
use std::time::{Duration, Instant};

use myha_config::ClusterConfig;
use myha_core::switchover::{precheck, SwitchoverInput};

use crate::detector::analyse_now;
use crate::failover::{
    candidate_choice, move_vip, new_op_id, repoint_all, Context, FailoverReport, Run,
};
use crate::state::unix_ms;
use crate::store::{Event, Operation, Phase};

/// Longer than an agent interval plus a report: facts newer than this wait
/// postdate the request.
const FRESH_FACTS_WAIT: Duration = Duration::from_millis(800);

/// Transactions open longer than this on the master are listed.
const LONG_TRX_SECS: u64 = 1;

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
    let started = Instant::now();
    let topo = &ctx.topology;
    let durable = topo.durable(&cluster.name).unwrap_or_default();
    let op = if req.dry_run {
        "dry-run".to_string()
    } else {
        new_op_id("switchover")
    };
    let mut run = Run {
        ctx,
        cluster,
        op,
        steps: Vec::new(),
        problems: Vec::new(),
        sink,
    };
    let old_master = durable.master.clone().unwrap_or_default();
    let finish =
        |run: Run<'_>, status: &str, new_master: Option<String>, epoch: u64| FailoverReport {
            operation: run.op.clone(),
            cluster: cluster.name.clone(),
            status: status.to_string(),
            old_master: old_master.clone(),
            new_master,
            epoch,
            choice: None,
            lost: "none".into(),
            problems: run.problems,
            steps: run.steps,
            duration_ms: started.elapsed().as_millis() as u64,
        };

    // Pre-checks, all at once. Facts may be one agent interval old: right
    // after a topology change (a failover just repointed the target), a
    // failing pre-check is run once more on facts newer than the request.
    let t = Instant::now();
    let mut attempt = 0;
    let plan = loop {
        let Some(snapshot) = topo.snapshot(&cluster.name) else {
            run.problems.push("unknown cluster".into());
            return finish(run, "refused", None, durable.epoch);
        };
        let durable = topo.durable(&cluster.name).unwrap_or_default();
        let analysis = analyse_now(ctx, cluster);
        let choice = candidate_choice(topo, cluster, &snapshot, &old_master, req.to);
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
            break plan;
        }
        tokio::time::sleep(FRESH_FACTS_WAIT).await;
    };
    let mut long_trx = Vec::new();
    if let Some(mut old) = run.server(&old_master) {
        long_trx = old
            .long_transactions(LONG_TRX_SECS)
            .await
            .unwrap_or_default();
    }
    if !plan.problems.is_empty() {
        for p in &plan.problems {
            run.record("precheck", "failed", p.clone(), None);
        }
        return finish(run, "refused", plan.target, durable.epoch);
    }
    let Some(target) = plan.target.clone() else {
        run.record("precheck", "failed", "no target".into(), None);
        return finish(run, "refused", None, durable.epoch);
    };
    let long = if long_trx.is_empty() {
        "no long-running transactions".to_string()
    } else {
        format!(
            "long-running transactions on {old_master} (will be killed): {}",
            long_trx.join("; ")
        )
    };
    run.record(
        "precheck",
        "ok",
        format!("{old_master} -> {target}; {long}"),
        Some(t),
    );
    if req.dry_run {
        return finish(run, "dry_run", Some(target), durable.epoch);
    }

    // Claim the cluster.
    let op_id = run.op.clone();
    let claimed = topo.update_durable(&cluster.name, |s| {
        if s.in_progress.is_none() {
            s.in_progress = Some(Operation {
                id: op_id.clone(),
                kind: "switchover".into(),
                old_master: old_master.clone(),
                new_master: Some(target.clone()),
                phase: Phase::CandidateChosen,
                started_ms: unix_ms(),
            });
        }
    });
    if !claimed.is_ok_and(|s| s.in_progress.is_some_and(|o| o.id == op_id)) {
        run.record(
            "precheck",
            "failed",
            "another operation started meanwhile".into(),
            None,
        );
        return finish(run, "refused", None, durable.epoch);
    }
    if !run
        .hook(
            "pre_switchover",
            Some(&old_master),
            Some(&target),
            durable.epoch,
            "",
        )
        .await
    {
        return rollback(
            run,
            &old_master,
            &target,
            false,
            "pre_switchover hook failed",
            finish,
        )
        .await;
    }
    let (Some(mut old), Some(mut cand)) = (run.server(&old_master), run.server(&target)) else {
        return rollback(
            run,
            &old_master,
            &target,
            false,
            "servers not configured",
            finish,
        )
        .await;
    };
    let old_semi_sync = topo
        .last_known_facts(&cluster.name, &old_master)
        .is_some_and(|(f, _)| f.semi_sync_master)
        || durable.semi_sync_wanted;

    // 1. Old master read-only, its sessions killed.
    let t = Instant::now();
    match old.fence().await {
        Ok(killed) => run.record(
            "read_only",
            "ok",
            format!("{old_master} read-only, {killed} session(s) killed"),
            Some(t),
        ),
        Err(e) => {
            run.record("read_only", "failed", format!("{old_master}: {e}"), Some(t));
            return rollback(run, &old_master, &target, true, &e.to_string(), finish).await;
        }
    }

    // 2. Its final position, and the target exactly there. The position is
    // read again after the wait: nothing may have moved it meanwhile.
    let t = Instant::now();
    let mut final_pos = String::new();
    for _ in 0..3 {
        let pos = match old.facts().await {
            Ok(f) => f.gtid_executed,
            Err(e) => {
                run.record("final_position", "failed", e.to_string(), Some(t));
                return rollback(run, &old_master, &target, true, &e.to_string(), finish).await;
            }
        };
        if pos == final_pos {
            break;
        }
        if let Err(e) = cand.wait_for_gtids(&pos, req.timeout).await {
            run.record("wait_target", "failed", e.to_string(), Some(t));
            return rollback(run, &old_master, &target, true, &e.to_string(), finish).await;
        }
        final_pos = pos;
    }
    run.record(
        "wait_target",
        "ok",
        format!("{target} reached {old_master}'s final position {final_pos}"),
        Some(t),
    );

    // 3. Promote: stop replication, record the new epoch, writable.
    let t = Instant::now();
    if let Err(e) = cand.detach(Duration::from_secs(10)).await {
        run.record("promote", "failed", format!("{target}: {e}"), Some(t));
        return rollback(run, &old_master, &target, true, &e.to_string(), finish).await;
    }
    let epoch = match topo.update_durable(&cluster.name, |s| {
        s.epoch += 1;
        s.master = Some(target.clone());
        s.needs_rejoin.retain(|n| n != &target);
        if let Some(op) = s.in_progress.as_mut() {
            op.phase = Phase::Promoted;
        }
    }) {
        Ok(s) => s.epoch,
        Err(e) => {
            run.record(
                "promote",
                "failed",
                format!("cannot persist the new epoch: {e}"),
                Some(t),
            );
            return rollback(run, &old_master, &target, true, &e.to_string(), finish).await;
        }
    };
    // Semi-sync on before the first write (the old master, rejoining,
    // and the other replicas acknowledge).
    match cand.make_writable(old_semi_sync).await {
        Ok(()) => {
            run.record(
                "promote",
                "ok",
                format!("{target} is the master of epoch {epoch}, writable"),
                Some(t),
            );
            // Routers send writes to it from now on.
            run.set_phase(Phase::Writable, None);
        }
        Err(e) => run.record(
            "promote",
            "failed",
            format!("{target}: read_only OFF: {e}"),
            Some(t),
        ),
    }

    // 4. Beside each other: VIP, the other replicas, the old master.
    let Some(new_host) = run.host(&target).cloned() else {
        return finish(run, "completed_with_errors", Some(target), epoch);
    };
    let rejoin_old = async {
        let t = Instant::now();
        let res = old.rejoin_as_replica(&new_host, cluster, &final_pos).await;
        (res, t)
    };
    let (vip, repointed, (rejoined, t_rejoin)) = tokio::join!(
        move_vip(&run, &old_master, &target, true),
        repoint_all(&run, &old_master, &new_host, &final_pos, old_semi_sync),
        rejoin_old
    );
    run.record_all(vip.into_iter().chain(repointed));
    match rejoined {
        Ok(()) => run.record(
            "rejoin",
            "ok",
            format!("{old_master} replicates from {target} from {final_pos}"),
            Some(t_rejoin),
        ),
        Err(e) => {
            run.record(
                "rejoin",
                "failed",
                format!("{old_master}: {e}; it stays read-only, marked needs rejoin"),
                Some(t_rejoin),
            );
            let _ = topo.update_durable(&cluster.name, |s| {
                if !s.needs_rejoin.contains(&old_master) {
                    s.needs_rejoin.push(old_master.clone());
                }
            });
        }
    }
    let _ = topo.update_durable(&cluster.name, |s| s.in_progress = None);
    let status = run
        .conclude("post_switchover", &old_master, &target, epoch, started)
        .await;
    finish(run, status, Some(target), epoch)
}

/// Undo a switchover that failed before the target became writable: the
/// old master writable again, the target a replica again, the VIP where it
/// was.
async fn rollback<'a>(
    mut run: Run<'a>,
    old_master: &str,
    target: &str,
    fenced: bool,
    why: &str,
    finish: impl Fn(Run<'a>, &str, Option<String>, u64) -> FailoverReport,
) -> FailoverReport {
    let epoch = run
        .ctx
        .topology
        .durable(&run.cluster.name)
        .map_or(0, |d| d.epoch);
    if fenced {
        let t = Instant::now();
        let semi = run
            .ctx
            .topology
            .last_known_facts(&run.cluster.name, old_master)
            .is_some_and(|(f, _)| f.semi_sync_master);
        match run.server(old_master) {
            Some(mut old) => match old.make_writable(semi).await {
                Ok(()) => run.record(
                    "rollback",
                    "ok",
                    format!("{old_master} writable again; the VIP stayed on it"),
                    Some(t),
                ),
                Err(e) => run.record(
                    "rollback",
                    "failed",
                    format!("{old_master}: could not make it writable again: {e}"),
                    Some(t),
                ),
            },
            None => run.record(
                "rollback",
                "failed",
                format!("{old_master} not configured"),
                Some(t),
            ),
        }
    }
    if let Some(mut cand) = run.server(target) {
        if let Err(e) = cand.start_replica().await {
            run.record(
                "rollback",
                "skipped",
                format!("{target}: START SLAVE: {e}"),
                None,
            );
        }
    }
    let _ = run
        .ctx
        .topology
        .update_durable(&run.cluster.name, |s| s.in_progress = None);
    run.record(
        "abort",
        "failed",
        format!("switchover rolled back: {why}; {old_master} is still the master of epoch {epoch}"),
        None,
    );
    run.hook("on_failure", Some(old_master), Some(target), epoch, why)
        .await;
    finish(run, "rolled_back", None, epoch)
}
