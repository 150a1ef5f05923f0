//! Rejoin of a returning server (a former master, or any read-only server
//! that replicates from nobody): repointed to the current master when its
//! GTIDs are a subset of the master's, kept out as "diverged" otherwise.
use myha_config::ClusterConfig;
use myha_core::flavor::Flavor;
use myha_core::rejoin::{
    already_replicates_from, rejoin_decision, replication_moving, RejoinDecision,
};

use crate::actions::Server;
use crate::operation::{journal, Context};
use crate::store::{Step, StepStatus};

/// Rejoin `host` to the master of the current epoch. `force` reinstates,
/// on MariaDB, a diverged server: the GTIDs it has that the master lacks
/// are saved to a file and undone by binlog flashback (refused when
/// flashback cannot undo them), then it rejoins (`crate::reinstate`).
/// Returns what was done.
/// A refusal is kept for `myha status` and `myha check`, and journaled
/// when its reason changes (not at every attempt).
pub(crate) async fn rejoin(
    ctx: &Context,
    cluster: &ClusterConfig,
    host: &str,
    force: bool,
) -> Result<String, String> {
    let res = attempt(ctx, cluster, host, force).await;
    match &res {
        Ok(_) => {
            ctx.topology.set_rejoin_refused(&cluster.name, host, None);
        }
        Err(why) => {
            if ctx
                .topology
                .set_rejoin_refused(&cluster.name, host, Some(why.clone()))
            {
                tracing::warn!(%host, reason = %why, "not rejoined");
                journal(
                    ctx,
                    &cluster.name,
                    Step::Rejoin,
                    StepStatus::Refused,
                    format!("{host}: {why}"),
                );
            }
        }
    }
    res
}

async fn attempt(
    ctx: &Context,
    cluster: &ClusterConfig,
    host: &str,
    force: bool,
) -> Result<String, String> {
    let topo = &ctx.topology;
    let durable = topo.durable(&cluster.name).ok_or("unknown cluster")?;
    let master = durable.master.clone().ok_or("no master is known")?;
    if master == host {
        return Err(format!("{host} is the master"));
    }
    let host_cfg = cluster
        .host(host)
        .ok_or_else(|| format!("{host} is not a host of {}", cluster.name))?;
    let master_cfg = cluster.host(&master).ok_or("master not configured")?;
    let mut server = Server::new(cluster, host_cfg, &ctx.manager);
    let mut master_srv = Server::new(cluster, master_cfg, &ctx.manager);
    let mut facts = server.facts().await.map_err(|e| format!("{host}: {e}"))?;
    if already_replicates_from(&facts, &master_cfg.address, master_cfg.port) {
        return Ok(format!(
            "{host} already replicates from {master}: nothing to do"
        ));
    }
    // Its position is read once nothing moves it any more.
    if replication_moving(&facts) {
        server
            .stop_replica()
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        facts = server.facts().await.map_err(|e| format!("{host}: {e}"))?;
    }
    let master_facts = master_srv
        .facts()
        .await
        .map_err(|e| format!("{master}: {e}"))?;
    // A reinstatement an earlier attempt left half done is finished first
    // (its flashback is never applied twice).
    if let Some(done) =
        crate::reinstate::resume(ctx, cluster, host, &mut server, master_cfg, &facts).await
    {
        return done;
    }
    let decision = rejoin_decision(&facts, &master_facts).map_err(|e| e.to_string())?;
    match decision {
        RejoinDecision::Rejoin => {
            let position = myha_core::rejoin::rejoin_position(&facts, &master_facts)
                .map_err(|e| e.to_string())?;
            server
                .rejoin_as_replica(master_cfg, cluster, &position)
                .await
                .map_err(|e| format!("{host}: {e}"))?;
            let _ = topo.update_durable(&cluster.name, |s| {
                s.diverged.remove(host);
            });
            let what = format!(
                "{host} replicates from {master} again (its GTIDs {} are all on the master)",
                facts.gtid_executed
            );
            journal(
                ctx,
                &cluster.name,
                Step::Rejoin,
                StepStatus::Ok,
                what.clone(),
            );
            Ok(what)
        }
        RejoinDecision::Diverged { extra } if !force => {
            // auto_reinstate: a former master (one the manager knows left
            // the master's role) is reinstated as `--force` would.
            let former_master = durable.needs_rejoin.iter().any(|n| n == host)
                || durable.diverged.contains_key(host);
            let mut not_reinstated = String::new();
            if cluster.auto_reinstate && former_master && cluster.flavor == Flavor::Mariadb {
                match crate::reinstate::reinstate(
                    ctx,
                    cluster,
                    host_cfg,
                    &mut server,
                    master_cfg,
                    &facts,
                    &master_facts,
                    "auto_reinstate",
                )
                .await
                {
                    Ok(done) => return Ok(done),
                    // Changed midway: not marked diverged, so that the
                    // next automatic attempt finishes it.
                    Err(f) if f.changed => return Err(f.message),
                    Err(f) => not_reinstated = format!(" auto_reinstate: {}.", f.message),
                }
            }
            // Kept out; the refusal (with this reason) is journaled once by
            // `rejoin()` when it changes.
            if topo
                .durable(&cluster.name)
                .is_none_or(|d| d.diverged.get(host) != Some(&extra))
            {
                let _ = topo.update_durable(&cluster.name, |s| {
                    s.diverged.insert(host.to_string(), extra.clone());
                });
            }
            Err(format!(
                "{host} has diverged: it executed {} that the master {master} lacks. It stays read-only.{not_reinstated} \
                 `myha rejoin {host} --force` reinstates it (those transactions saved to a file, undone by binlog \
                 flashback, then it rejoins), or rebuild it from a backup",
                extra.join(",")
            ))
        }
        RejoinDecision::Diverged { extra } => {
            if cluster.flavor != Flavor::Mariadb {
                return Err("rejoin --force is supported for MariaDB only: rebuild the MySQL server from a backup of the master".into());
            }
            // Reinstatement: its extra transactions ({extra}) saved to a
            // file, undone by flashback, then it rejoins at the common
            // position. Refused, with the reason, when flashback cannot
            // undo them (DDL, statement-format DML).
            tracing::info!(%host, extra = %extra.join(","), "reinstating");
            crate::reinstate::reinstate(
                ctx,
                cluster,
                host_cfg,
                &mut server,
                master_cfg,
                &facts,
                &master_facts,
                "rejoin --force",
            )
            .await
            .map_err(|f| f.message)
        }
    }
}
