//! Reading a server's state into [`ServerFacts`], and the heartbeat row.
use std::time::Duration;

use myha_core::flavor::{default_connection_row, parse_bool_var, sql_string_literal, Flavor, Row};
use myha_core::report::ServerFacts;

use crate::{Db, DbError, Timeouts};

/// What to read besides the fixed set of variables.
#[derive(Debug, Clone)]
pub struct FactsOptions {
    pub flavor: Flavor,
    /// `db.table` of the heartbeat, read on replicas for lag.
    pub heartbeat_table: String,
}

impl FactsOptions {
    /// What a cluster's servers are read with: its flavor and its
    /// heartbeat table.
    pub fn for_cluster(cluster: &myha_config::ClusterConfig) -> FactsOptions {
        FactsOptions {
            flavor: cluster.flavor,
            heartbeat_table: cluster.heartbeat_table.clone(),
        }
    }
}

fn text(row: &Row, col: &str) -> String {
    row.get(col).cloned().flatten().unwrap_or_default()
}

fn flag(row: &Row, col: &str) -> bool {
    row.get(col)
        .and_then(|v| v.as_deref())
        .and_then(parse_bool_var)
        .unwrap_or(false)
}

fn protocol(db: &Db, message: String) -> DbError {
    DbError::Protocol {
        addr: db.endpoint().to_string(),
        message,
    }
}

/// The probe's statements, sent as one batch (one round trip): the
/// heartbeat rows first (the table may not exist yet: the server then
/// stops at once, with a clean error), then server variables, GTID state
/// and replication status ([`facts_batch`]).
pub fn probe_batch(opts: &FactsOptions) -> String {
    format!(
        "{}; {}",
        heartbeat_lag_query(&opts.heartbeat_table),
        facts_batch(opts.flavor)
    )
}

/// Server variables, GTID state and replication status, as one batch.
pub fn facts_batch(flavor: Flavor) -> String {
    format!(
        "{}; {}; {}",
        flavor.server_variables_query(),
        flavor.gtid_variables_query(),
        flavor.show_replica_status(),
    )
}

/// Every heartbeat row's age on this server's UTC clock (one row per
/// server that has been a master): a replica's lag is its source's row.
pub fn heartbeat_lag_query(table: &str) -> String {
    format!(
        "SELECT server_id, TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) AS lag_us FROM {table}"
    )
}

/// Read everything a report carries about the server, in one round trip
/// ([`probe_batch`]; two while the heartbeat table does not exist).
pub async fn collect_facts(db: &mut Db, opts: &FactsOptions) -> Result<ServerFacts, DbError> {
    let flavor = opts.flavor;
    let bound = db.timeouts.query;
    let (heartbeat_rows, sets) = match db.query_batch(&probe_batch(opts), 4, bound).await {
        Ok(mut sets) => {
            let rest = sets.split_off(1);
            (sets.pop(), rest)
        }
        // ER_NO_SUCH_TABLE / ER_BAD_DB_ERROR: no heartbeat yet;
        // ER_TABLEACCESS_DENIED_ERROR: the account may not read it (`myha
        // check` says so). Either way the lag is unknown, and the server
        // is no less up: the rest is read in a second round trip.
        Err(e) if matches!(e.server_code(), Some(1146 | 1049 | 1142)) => {
            (None, db.query_batch(&facts_batch(flavor), 3, bound).await?)
        }
        Err(e) => return Err(e),
    };
    let mut sets = sets.into_iter();
    let (Some(vars), Some(gtid), Some(status_rows)) = (sets.next(), sets.next(), sets.next())
    else {
        return Err(protocol(
            db,
            "the probe batch returned fewer than three results".into(),
        ));
    };
    let vars = vars
        .into_iter()
        .next()
        .ok_or_else(|| protocol(db, "server variables query returned no row".into()))?;
    let gtid = gtid
        .into_iter()
        .next()
        .ok_or_else(|| protocol(db, "GTID variables query returned no row".into()))?;
    // The default connection only (MariaDB multi-source: connection "").
    let replication = match default_connection_row(&status_rows) {
        Some(row) => Some(
            flavor
                .parse_replication_status(row)
                .map_err(|e| protocol(db, e.to_string()))?,
        ),
        None => None,
    };

    let server_id = text(&vars, "server_id")
        .parse::<u32>()
        .map_err(|_| protocol(db, format!("bad server_id {:?}", text(&vars, "server_id"))))?;
    let log_bin = flag(&vars, "log_bin");
    let (gtid_executed, gtid_binlog_state, gtid_slave_pos, server_uuid) = match flavor {
        Flavor::Mariadb => {
            let pos = if log_bin {
                text(&gtid, "gtid_binlog_pos")
            } else {
                text(&gtid, "gtid_current_pos")
            };
            (
                pos,
                text(&gtid, "gtid_binlog_state"),
                text(&gtid, "gtid_slave_pos"),
                String::new(),
            )
        }
        Flavor::Mysql => {
            let executed = myha_core::flavor::normalize_gtid_text(&text(&gtid, "gtid_executed"));
            (
                executed.clone(),
                executed,
                String::new(),
                text(&gtid, "server_uuid"),
            )
        }
    };

    let heartbeat_lag_ms = match replication.as_ref().and_then(|r| r.source_server_id) {
        Some(source_id) => heartbeat_rows
            .as_deref()
            .and_then(|rows| source_lag_ms(rows, source_id)),
        None => None,
    };

    let clock_unix_us = text(&vars, "now_us")
        .parse::<f64>()
        .map(|s| s as i64)
        .unwrap_or_default();

    Ok(ServerFacts {
        flavor,
        server_id,
        version: text(&vars, "version"),
        hostname: text(&vars, "hostname"),
        read_only: flag(&vars, "read_only"),
        super_read_only: flag(&vars, "super_read_only"),
        log_bin,
        log_slave_updates: flag(&vars, "log_slave_updates"),
        binlog_format: text(&vars, "binlog_format"),
        gtid_strict: flag(&vars, "gtid_strict"),
        gtid_executed: myha_core::flavor::normalize_gtid_text(&gtid_executed),
        gtid_binlog_state: myha_core::flavor::normalize_gtid_text(&gtid_binlog_state),
        gtid_slave_pos: myha_core::flavor::normalize_gtid_text(&gtid_slave_pos),
        server_uuid,
        replication,
        heartbeat_lag_ms,
        clock_unix_us,
        semi_sync_master: flag(&vars, "semi_sync_master"),
        semi_sync_slave: flag(&vars, "semi_sync_slave"),
        semi_sync_timeout_ms: text(&vars, "semi_sync_timeout_ms").trim().parse().ok(),
        skip_name_resolve: Some(flag(&vars, "skip_name_resolve")),
    })
}

/// Lag read from the heartbeat row the master's agent writes: the server's
/// UTC clock minus the row's timestamp, from [`heartbeat_lag_query`]'s
/// rows. `None` when the source has no row yet.
fn source_lag_ms(rows: &[Row], source_id: u32) -> Option<u64> {
    let source = source_id.to_string();
    fn value<'r>(r: &'r Row, col: &str) -> Option<&'r str> {
        r.get(col).and_then(|v| v.as_deref()).map(str::trim)
    }
    rows.iter()
        .find(|r| value(r, "server_id") == Some(source.as_str()))
        .and_then(|r| value(r, "lag_us"))
        .and_then(|us| us.parse::<i64>().ok())
        .map(|us| (us.max(0) / 1000) as u64)
}

/// Write this server's heartbeat row (on the master), creating the table on
/// first use. The row replicates; replicas read their lag from it.
pub async fn heartbeat_write(
    db: &mut Db,
    table: &str,
    flavor: Flavor,
    server_id: u32,
) -> Result<(), DbError> {
    if flavor == Flavor::Mariadb {
        // Heartbeats in a domain of their own (see `heartbeat_domain`).
        db.exec(&format!(
            "SET SESSION gtid_domain_id = {}",
            myha_core::report::heartbeat_domain(server_id)
        ))
        .await?;
    }
    // Only on a writable server, decided inside the statement: the account
    // may write through read_only (READ_ONLY ADMIN), and a heartbeat landing
    // on a just-demoted master would be a transaction the new master lacks.
    // `SET GLOBAL read_only` waits for a statement that saw it OFF, so the
    // demoted master's final position includes every heartbeat it took.
    let upsert = format!(
        "INSERT INTO {table} (server_id, ts) SELECT @@server_id, UTC_TIMESTAMP(6) FROM DUAL \
         WHERE @@global.read_only = 0 ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
    );
    match db.exec(&upsert).await {
        Err(e) if matches!(e.server_code(), Some(1146 | 1049)) => {
            let schema = table.split('.').next().unwrap_or("myha");
            db.exec(&format!("CREATE DATABASE IF NOT EXISTS {schema}"))
                .await?;
            db.exec(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (server_id INT UNSIGNED NOT NULL PRIMARY KEY, \
                 ts DATETIME(6) NOT NULL) ENGINE=InnoDB"
            ))
            .await?;
            db.exec(&upsert).await
        }
        other => other,
    }
}

/// `SHOW GRANTS` lines of `user` on this server (every host it is defined
/// for), or `None` when no such user exists.
pub async fn replication_grants(db: &mut Db, user: &str) -> Result<Option<Vec<String>>, DbError> {
    let hosts = db
        .query(&format!(
            "SELECT Host AS host FROM mysql.user WHERE User = {}",
            sql_string_literal(user)
        ))
        .await?;
    if hosts.is_empty() {
        return Ok(None);
    }
    let mut grants = Vec::new();
    for h in hosts {
        let host = h.get("host").cloned().flatten().unwrap_or_default();
        let rows = db
            .query_with(
                &format!(
                    "SHOW GRANTS FOR {}@{}",
                    sql_string_literal(user),
                    sql_string_literal(&host)
                ),
                Duration::from_secs(5),
            )
            .await?;
        grants.extend(
            rows.into_iter()
                .filter_map(|r| r.into_values().next().flatten()),
        );
    }
    Ok(Some(grants))
}

/// How long a fence may take: the `read_only` statement waits for the
/// commits in flight, which the fence kills meanwhile.
const FENCE_BOUND: Duration = Duration::from_secs(10);
/// How often the fence kills client sessions while `read_only` waits.
const FENCE_KILL_EVERY: Duration = Duration::from_millis(50);

/// Kill every client session but this connection and `spare` (an id).
async fn kill_clients(db: &mut Db, flavor: Flavor, spare: Option<i64>) -> Result<usize, DbError> {
    let sessions = db.query(flavor.kill_connections_query()).await?;
    let mut killed = 0;
    for row in sessions {
        let Some(Some(id)) = row.get("id") else {
            continue;
        };
        let Ok(n) = id.parse::<i64>() else { continue };
        if Some(n) == spare {
            continue;
        }
        // A session that ended meanwhile is not an error.
        if db.exec(&format!("KILL CONNECTION {n}")).await.is_ok() {
            killed += 1;
        }
    }
    Ok(killed)
}

/// Fence a server so that it acknowledges no commit from now on: read_only
/// ON (super_read_only on MySQL) and every client session killed. Returns
/// how many sessions were killed.
///
/// `SET GLOBAL read_only` waits for the commits in flight, and a commit
/// waiting for a semi-sync acknowledgement that no replica will send (a
/// master frozen or cut off while a new one was promoted) would hold it
/// until the semi-sync timeout, after which the server acknowledges that
/// commit without any replica having it. So the client sessions are killed
/// first, and again every 50 ms on this connection while a second
/// connection sets read_only, until it lands: a killed session's client
/// gets an error, never an OK (its transaction may stay in this server's
/// binary log, unacknowledged: see rejoin and reinstatement).
pub async fn fence(db: &mut Db, flavor: Flavor) -> Result<usize, DbError> {
    let mut ro = Db::new(
        db.endpoint().clone(),
        Timeouts {
            connect: db.timeouts.connect,
            query: FENCE_BOUND,
        },
    );
    let ro_id = ro
        .query_i64("SELECT CONNECTION_ID()", db.timeouts.query)
        .await?;
    let mut killed = kill_clients(db, flavor, ro_id).await?;
    let statements = flavor.set_read_only(true);
    let set = async move {
        for s in &statements {
            ro.exec(s).await?;
        }
        Ok::<(), DbError>(())
    };
    tokio::pin!(set);
    loop {
        tokio::select! {
            res = &mut set => {
                res?;
                break;
            }
            () = tokio::time::sleep(FENCE_KILL_EVERY) => {
                killed += kill_clients(db, flavor, ro_id).await?;
            }
        }
    }
    // Sessions that connected while read_only was waiting.
    killed += kill_clients(db, flavor, None).await?;
    Ok(killed)
}
