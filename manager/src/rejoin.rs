//! Rejoin of a returning server (a former master, or any read-only server
//! that replicates from nobody): repointed to the current master when its
//! GTIDs are a subset of the master's, kept out as "diverged" otherwise.
use axum::http::StatusCode;
use myha_config::ClusterConfig;
use myha_core::flavor::Flavor;
use myha_core::gtid::GtidError;
use myha_core::rejoin::{
    already_replicates_from, rejoin_decision, replication_moving, RejoinDecision,
};
use myha_mysql::DbError;

use crate::actions::{ActionError, Server};
use crate::operation::{journal, Context};
use crate::reinstate::ReinstateError;
use crate::store::{Step, StepStatus};

/// Why a server was not rejoined. The texts are those `myha status`,
/// `myha check`, the journal and the API show.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RejoinError {
    #[error("unknown cluster")]
    UnknownCluster,
    #[error("{host} is not a host of {cluster}")]
    UnknownHost { host: String, cluster: String },
    #[error("master not configured")]
    MasterNotConfigured,
    #[error("no master is known")]
    NoMaster,
    #[error("{host} is the master")]
    IsMaster { host: String },
    /// It executed transactions the master lacks: kept out, read-only.
    #[error(
        "{host} has diverged: it executed {} that the master {master} lacks. It stays read-only.{} \
         `myha rejoin {host} --force` reinstates it (those transactions saved to a file, undone by binlog \
         flashback, then it rejoins), or rebuild it from a backup",
        gtids.join(","),
        not_reinstated(auto_reinstate)
    )]
    Diverged {
        host: String,
        master: String,
        gtids: Vec<String>,
        /// Why `auto_reinstate` did not reinstate it, if it tried.
        auto_reinstate: Option<Box<ReinstateError>>,
    },
    #[error("rejoin --force is supported for MariaDB only: rebuild the MySQL server from a backup of the master")]
    ForceUnsupported,
    /// A server (`host`: the rejoining one or the master) did not answer.
    #[error("{host}: {source}")]
    Unreachable { host: String, source: ActionError },
    /// A server answered with an error.
    #[error("{host}: {source}")]
    Sql { host: String, source: ActionError },
    /// A GTID state that cannot be compared.
    #[error(transparent)]
    Gtid(#[from] GtidError),
    /// A reinstatement (`--force`, `auto_reinstate`, or one left pending)
    /// did not complete.
    #[error(transparent)]
    Reinstate(#[from] ReinstateError),
}

fn not_reinstated(auto_reinstate: &Option<Box<ReinstateError>>) -> String {
    auto_reinstate
        .as_ref()
        .map(|e| format!(" auto_reinstate: {e}."))
        .unwrap_or_default()
}

impl RejoinError {
    fn server(host: &str, source: ActionError) -> RejoinError {
        let host = host.to_string();
        match &source {
            ActionError::Db(
                DbError::Refused { .. } | DbError::Timeout { .. } | DbError::Io { .. },
            ) => RejoinError::Unreachable { host, source },
            _ => RejoinError::Sql { host, source },
        }
    }

    /// The status the manager's API answers a refused rejoin with: an
    /// unknown cluster or host → 404; a refusal because of the cluster's
    /// state (diverged, is the master, no master known, a reinstatement
    /// that stopped or is pending) → 409; a server that did not answer →
    /// 503 (504 when it timed out); anything else → 500.
    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            RejoinError::UnknownCluster | RejoinError::UnknownHost { .. } => StatusCode::NOT_FOUND,
            RejoinError::NoMaster
            | RejoinError::IsMaster { .. }
            | RejoinError::Diverged { .. }
            | RejoinError::ForceUnsupported => StatusCode::CONFLICT,
            RejoinError::Reinstate(e) => e.http_status(),
            RejoinError::Unreachable {
                source: ActionError::Db(DbError::Timeout { .. }),
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            RejoinError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RejoinError::MasterNotConfigured | RejoinError::Sql { .. } | RejoinError::Gtid(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// On the wire (the API's `detail`) a refusal is its text, as before.
impl serde::Serialize for RejoinError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

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
) -> Result<String, RejoinError> {
    let res = attempt(ctx, cluster, host, force).await;
    match &res {
        Ok(_) => {
            ctx.topology.set_rejoin_refused(&cluster.name, host, None);
        }
        Err(why) => {
            if ctx
                .topology
                .set_rejoin_refused(&cluster.name, host, Some(why.to_string()))
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
) -> Result<String, RejoinError> {
    let topo = &ctx.topology;
    let durable = topo
        .durable(&cluster.name)
        .ok_or(RejoinError::UnknownCluster)?;
    let master = durable.master.clone().ok_or(RejoinError::NoMaster)?;
    if master == host {
        return Err(RejoinError::IsMaster {
            host: host.to_string(),
        });
    }
    let host_cfg = cluster.host(host).ok_or_else(|| RejoinError::UnknownHost {
        host: host.to_string(),
        cluster: cluster.name.clone(),
    })?;
    let master_cfg = cluster
        .host(&master)
        .ok_or(RejoinError::MasterNotConfigured)?;
    let mut server = Server::new(cluster, host_cfg, &ctx.manager);
    let mut master_srv = Server::new(cluster, master_cfg, &ctx.manager);
    let on_host = |e| RejoinError::server(host, e);
    let mut facts = server.facts().await.map_err(on_host)?;
    if already_replicates_from(&facts, &master_cfg.address, master_cfg.port) {
        return Ok(format!(
            "{host} already replicates from {master}: nothing to do"
        ));
    }
    // Its position is read once nothing moves it any more.
    if replication_moving(&facts) {
        server.stop_replica().await.map_err(on_host)?;
        facts = server.facts().await.map_err(on_host)?;
    }
    let master_facts = master_srv
        .facts()
        .await
        .map_err(|e| RejoinError::server(&master, e))?;
    // A reinstatement an earlier attempt left half done is finished first
    // (its flashback is never applied twice).
    if let Some(done) =
        crate::reinstate::resume(ctx, cluster, host, &mut server, master_cfg, &facts).await
    {
        return done.map_err(RejoinError::from);
    }
    let decision = rejoin_decision(&facts, &master_facts)?;
    match decision {
        RejoinDecision::Rejoin => {
            let position = myha_core::rejoin::rejoin_position(&facts, &master_facts)?;
            server
                .rejoin_as_replica(master_cfg, cluster, &position)
                .await
                .map_err(on_host)?;
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
            let mut auto_reinstate = None;
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
                    Err(f) if f.changed() => return Err(f.into()),
                    Err(f) => auto_reinstate = Some(Box::new(f)),
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
            Err(RejoinError::Diverged {
                host: host.to_string(),
                master,
                gtids: extra,
                auto_reinstate,
            })
        }
        RejoinDecision::Diverged { extra } => {
            if cluster.flavor != Flavor::Mariadb {
                return Err(RejoinError::ForceUnsupported);
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
            .map_err(RejoinError::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverged_reads_as_before() {
        let plain = RejoinError::Diverged {
            host: "db1".into(),
            master: "db2".into(),
            gtids: vec!["0-1-5".into(), "0-1-6".into()],
            auto_reinstate: None,
        };
        assert_eq!(
            plain.to_string(),
            "db1 has diverged: it executed 0-1-5,0-1-6 that the master db2 lacks. It stays read-only. \
             `myha rejoin db1 --force` reinstates it (those transactions saved to a file, undone by binlog \
             flashback, then it rejoins), or rebuild it from a backup"
        );
        assert_eq!(plain.http_status(), StatusCode::CONFLICT);
        let tried = RejoinError::Diverged {
            host: "db1".into(),
            master: "db2".into(),
            gtids: vec!["0-1-5".into()],
            auto_reinstate: Some(Box::new(ReinstateError::Unchanged {
                host: "db1".into(),
                why: "no extra transaction to undo".into(),
            })),
        };
        assert!(tried.to_string().contains(
            "It stays read-only. auto_reinstate: db1 not reinstated, nothing changed on it \
             (still diverged, read-only): no extra transaction to undo. `myha rejoin db1 --force`"
        ));
    }

    #[test]
    fn one_status_per_kind_of_refusal() {
        let unknown = RejoinError::UnknownHost {
            host: "db9".into(),
            cluster: "main".into(),
        };
        assert_eq!(unknown.to_string(), "db9 is not a host of main");
        assert_eq!(unknown.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(
            RejoinError::UnknownCluster.http_status(),
            StatusCode::NOT_FOUND
        );
        let master = RejoinError::IsMaster { host: "db1".into() };
        assert_eq!(master.to_string(), "db1 is the master");
        assert_eq!(master.http_status(), StatusCode::CONFLICT);
        let timeout = RejoinError::server(
            "db1",
            ActionError::Db(DbError::Timeout {
                addr: "10.0.0.1:3306".into(),
                what: "connect",
                ms: 500,
            }),
        );
        assert_eq!(
            timeout.to_string(),
            "db1: connect to 10.0.0.1:3306 timed out after 500 ms"
        );
        assert_eq!(timeout.http_status(), StatusCode::GATEWAY_TIMEOUT);
        let refused = RejoinError::server(
            "db1",
            ActionError::Db(DbError::Refused {
                addr: "10.0.0.1:3306".into(),
            }),
        );
        assert_eq!(refused.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        let sql = RejoinError::server(
            "db1",
            ActionError::Db(DbError::Server {
                addr: "10.0.0.1:3306".into(),
                code: 1045,
                message: "denied".into(),
            }),
        );
        assert_eq!(sql.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        // On the wire, the text.
        assert_eq!(
            serde_json::json!({ "detail": master }),
            serde_json::json!({ "detail": "db1 is the master" })
        );
    }
}
