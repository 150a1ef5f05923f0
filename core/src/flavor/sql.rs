//! The flavors' SQL statements and queries.

use super::{normalize_gtid_text, Flavor, GtidMode};

/// Longest wait or heartbeat period we ever put in a statement: one year.
const MAX_SECONDS: f64 = 31_536_000.0;
/// Upper bound of `MASTER_HEARTBEAT_PERIOD` / `SOURCE_HEARTBEAT_PERIOD`.
const MAX_HEARTBEAT_SECONDS: f64 = 4_294_967.0;

/// Where and how a replica connects: the input of [`Flavor::change_source`].
#[derive(Debug, Clone)]
pub struct ChangeSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Translated to the flavor's nearest equivalent: on MariaDB
    /// `AutoPosition` means `slave_pos`; on MySQL any mode but `None` means
    /// `SOURCE_AUTO_POSITION=1`.
    pub gtid_mode: GtidMode,
    pub connect_retry_secs: u32,
    /// `0` disables heartbeats; kept to millisecond resolution and to the
    /// servers' range `[0, 4294967]`.
    pub heartbeat_period_secs: f64,
    /// Replicate over TLS; `Some(ca)`: also verify the source's
    /// certificate with the CA at that path on the replica's host.
    pub ssl: Option<Option<String>>,
}

/// `, X_SSL=1[, X_SSL_CA='…', X_SSL_VERIFY_SERVER_CERT=1]`, or nothing.
fn ssl_clause(ssl: &Option<Option<String>>, prefix: &str) -> String {
    match ssl {
        None => String::new(),
        Some(None) => format!(", {prefix}_SSL=1"),
        Some(Some(ca)) => format!(
            ", {prefix}_SSL=1, {prefix}_SSL_CA={}, {prefix}_SSL_VERIFY_SERVER_CERT=1",
            sql_string_literal(ca)
        ),
    }
}

/// `s` as a single-quoted SQL string literal.
///
/// `'` is doubled (`''`, valid in every `sql_mode`), `\` becomes `\\` and
/// NUL becomes `\0`; every other character, newlines included, is kept as
/// is. The literal reads back exactly as `s` in the default `sql_mode`.
/// Under `NO_BACKSLASH_ESCAPES` it still ends exactly where it should (no
/// injection), but a backslash would read back doubled: connections that
/// send these statements must not set that mode. Meant for utf8/utf8mb4
/// connections (multi-byte sets like GBK/SJIS can hide a `\` in a
/// character).
pub fn sql_string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `x` clamped to `[min, max]` (`NaN` -> `min`) and printed with at most
/// `scale` decimals, trailing zeros dropped: `2.5`, `1`, `0.001`.
fn sql_decimal(x: f64, min: f64, max: f64, scale: usize) -> String {
    let v = if x.is_nan() { min } else { x.clamp(min, max) } + 0.0;
    let s = format!("{v:.scale$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl Flavor {
    /// The replication status query; rows are read with
    /// [`Flavor::parse_replication_status`].
    ///
    /// MariaDB: `SHOW ALL SLAVES STATUS`, which adds `Connection_name` and
    /// `Gtid_Slave_Pos` (applied GTIDs) to `SHOW SLAVE STATUS`' columns and,
    /// like MySQL's `SHOW REPLICA STATUS`, gives one row per connection
    /// (sorted by name, so the default connection `""` comes first). See
    /// [`super::default_connection_row`]. MySQL: `SHOW REPLICA STATUS`
    /// (8.0.22+; 8.4 removed `SHOW SLAVE STATUS`).
    pub fn show_replica_status(self) -> &'static str {
        match self {
            Flavor::Mariadb => "SHOW ALL SLAVES STATUS",
            Flavor::Mysql => "SHOW REPLICA STATUS",
        }
    }

    /// Stop both replication threads (MariaDB: of the default connection).
    pub fn stop_replica(self) -> &'static str {
        match self {
            Flavor::Mariadb => "STOP SLAVE",
            Flavor::Mysql => "STOP REPLICA",
        }
    }

    /// Start both replication threads.
    pub fn start_replica(self) -> &'static str {
        match self {
            Flavor::Mariadb => "START SLAVE",
            Flavor::Mysql => "START REPLICA",
        }
    }

    /// Stop the I/O (receiver) thread only, leaving the applier to drain the
    /// relay log.
    pub fn stop_replica_io(self) -> &'static str {
        match self {
            Flavor::Mariadb => "STOP SLAVE IO_THREAD",
            Flavor::Mysql => "STOP REPLICA IO_THREAD",
        }
    }

    /// Start the SQL (applier) thread only.
    pub fn start_replica_sql(self) -> &'static str {
        match self {
            Flavor::Mariadb => "START SLAVE SQL_THREAD",
            Flavor::Mysql => "START REPLICA SQL_THREAD",
        }
    }

    /// Stop the SQL (applier) thread only.
    pub fn stop_replica_sql(self) -> &'static str {
        match self {
            Flavor::Mariadb => "STOP SLAVE SQL_THREAD",
            Flavor::Mysql => "STOP REPLICA SQL_THREAD",
        }
    }

    /// Forget the replication configuration entirely (threads must be
    /// stopped first).
    pub fn reset_replica_all(self) -> &'static str {
        match self {
            Flavor::Mariadb => "RESET SLAVE ALL",
            Flavor::Mysql => "RESET REPLICA ALL",
        }
    }

    /// Point the replica at a source. MariaDB: `CHANGE MASTER TO ...
    /// MASTER_USE_GTID=...`; MySQL (8.0.23+): `CHANGE REPLICATION SOURCE TO
    /// ... SOURCE_AUTO_POSITION=..., GET_SOURCE_PUBLIC_KEY=1` (the last so
    /// that `caching_sha2_password` accounts work without TLS).
    ///
    /// With `GtidMode::None` on MySQL this sets `SOURCE_AUTO_POSITION=0`
    /// without coordinates; the caller must then add them.
    pub fn change_source(self, opts: &ChangeSource) -> String {
        let host = sql_string_literal(&opts.host);
        let user = sql_string_literal(&opts.user);
        let password = sql_string_literal(&opts.password);
        let heartbeat = sql_decimal(opts.heartbeat_period_secs, 0.0, MAX_HEARTBEAT_SECONDS, 3);
        let port = opts.port;
        let retry = opts.connect_retry_secs;
        match self {
            Flavor::Mariadb => {
                let use_gtid = match opts.gtid_mode {
                    GtidMode::None => "no",
                    GtidMode::SlavePos | GtidMode::AutoPosition => "slave_pos",
                    GtidMode::CurrentPos => "current_pos",
                };
                format!(
                    "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, \
                     MASTER_USER={user}, MASTER_PASSWORD={password}, \
                     MASTER_USE_GTID={use_gtid}, MASTER_CONNECT_RETRY={retry}, \
                     MASTER_HEARTBEAT_PERIOD={heartbeat}{ssl}",
                    ssl = ssl_clause(&opts.ssl, "MASTER")
                )
            }
            Flavor::Mysql => {
                let auto_position = u8::from(opts.gtid_mode.uses_gtid());
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}, \
                     SOURCE_USER={user}, SOURCE_PASSWORD={password}, \
                     SOURCE_AUTO_POSITION={auto_position}, SOURCE_CONNECT_RETRY={retry}, \
                     SOURCE_HEARTBEAT_PERIOD={heartbeat}, GET_SOURCE_PUBLIC_KEY=1{ssl}",
                    ssl = ssl_clause(&opts.ssl, "SOURCE")
                )
            }
        }
    }

    /// A query returning one integer column `wait_result`: wait until this
    /// server has applied `gtid_text` (whitespace is dropped), at most
    /// `timeout_secs`. Judge the result with [`Flavor::wait_result_ok`];
    /// `NULL` (or an error) is a failure.
    ///
    /// MariaDB: `MASTER_GTID_WAIT` (0 reached, -1 timeout); it compares with
    /// `gtid_slave_pos`. The timeout is clamped to `>= 0` (a negative one
    /// would mean "forever"), microsecond resolution.
    ///
    /// MySQL: `WAIT_FOR_EXECUTED_GTID_SET` (0 reached, 1 timeout); it
    /// compares with `gtid_executed`. Its timeout 0 means "forever" and some
    /// versions drop fractions, so the timeout is rounded **up** to whole
    /// seconds, at least 1.
    ///
    /// Both are capped at one year; `NaN` counts as 0.
    pub fn wait_for_gtid(self, gtid_text: &str, timeout_secs: f64) -> String {
        let gtid = sql_string_literal(&normalize_gtid_text(gtid_text));
        match self {
            Flavor::Mariadb => {
                let t = sql_decimal(timeout_secs, 0.0, MAX_SECONDS, 6);
                format!("SELECT MASTER_GTID_WAIT({gtid}, {t}) AS wait_result")
            }
            Flavor::Mysql => {
                let secs = if timeout_secs.is_nan() {
                    1.0
                } else {
                    timeout_secs.ceil().clamp(1.0, MAX_SECONDS)
                };
                let t = sql_decimal(secs, 1.0, MAX_SECONDS, 0);
                format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({gtid}, {t}) AS wait_result")
            }
        }
    }

    /// Whether a [`Flavor::wait_for_gtid`] result means "reached": `0` for
    /// both (MariaDB times out with -1, MySQL with 1).
    pub fn wait_result_ok(self, value: i64) -> bool {
        value == 0
    }

    /// Statements to switch read-only on or off, in order.
    ///
    /// MariaDB: `read_only` (10.11 has no `super_read_only`; `read_only`
    /// binds every account without `READ_ONLY ADMIN`). MySQL: on sets
    /// `super_read_only=ON`, which implies `read_only=ON`; off clears
    /// `super_read_only` first, then `read_only`.
    pub fn set_read_only(self, on: bool) -> Vec<String> {
        match (self, on) {
            (Flavor::Mariadb, true) => vec!["SET GLOBAL read_only=ON".to_string()],
            (Flavor::Mariadb, false) => vec!["SET GLOBAL read_only=OFF".to_string()],
            (Flavor::Mysql, true) => vec!["SET GLOBAL super_read_only=ON".to_string()],
            (Flavor::Mysql, false) => vec![
                "SET GLOBAL super_read_only=OFF".to_string(),
                "SET GLOBAL read_only=OFF".to_string(),
            ],
        }
    }

    /// One row of the server's GTID state, read with
    /// [`Flavor::parse_gtid_variables`].
    ///
    /// MariaDB columns: `gtid_binlog_pos`, `gtid_binlog_state`,
    /// `gtid_current_pos`, `gtid_slave_pos`. MySQL columns: `gtid_executed`,
    /// `gtid_purged`, `server_uuid`.
    pub fn gtid_variables_query(self) -> &'static str {
        match self {
            Flavor::Mariadb => {
                "SELECT @@global.gtid_binlog_pos AS gtid_binlog_pos, \
                 @@global.gtid_binlog_state AS gtid_binlog_state, \
                 @@global.gtid_current_pos AS gtid_current_pos, \
                 @@global.gtid_slave_pos AS gtid_slave_pos"
            }
            Flavor::Mysql => {
                "SELECT @@global.gtid_executed AS gtid_executed, \
                 @@global.gtid_purged AS gtid_purged, \
                 @@server_uuid AS server_uuid"
            }
        }
    }

    /// One row of server facts, read with [`Flavor::parse_server_variables`].
    /// Both flavors return the same columns (`NULL` where one does not
    /// apply):
    ///
    /// `server_id`, `server_uuid` (MySQL), `version`, `hostname`, `port`,
    /// `read_only`, `super_read_only` (MySQL), `log_bin`,
    /// `log_slave_updates`, `binlog_format`, `gtid_strict` (MariaDB
    /// `gtid_strict_mode`; MySQL `gtid_mode = 'ON'`, 1/0), `gtid_mode`
    /// (MySQL), `gtid_domain_id` (MariaDB), `semi_sync_master`,
    /// `semi_sync_slave`, `semi_sync_timeout_ms` (the master side's
    /// fallback timer, `NULL` without the plugin), `now_us` (server clock, integer microseconds
    /// since the epoch).
    ///
    /// MySQL reads `log_replica_updates`/`log_slave_updates` and the
    /// semi-sync variables from `performance_schema.global_variables`, which
    /// has whichever names the version (8.0.22+, 8.4) and its loaded
    /// semi-sync plugin define: absent ones give `NULL`, not an error.
    pub fn server_variables_query(self) -> &'static str {
        match self {
            Flavor::Mariadb => {
                "SELECT @@global.server_id AS server_id, NULL AS server_uuid, \
                 @@version AS version, @@hostname AS hostname, @@port AS port, \
                 @@global.read_only AS read_only, NULL AS super_read_only, \
                 @@global.log_bin AS log_bin, \
                 @@global.log_slave_updates AS log_slave_updates, \
                 @@global.binlog_format AS binlog_format, \
                 @@global.gtid_strict_mode AS gtid_strict, NULL AS gtid_mode, \
                 @@global.gtid_domain_id AS gtid_domain_id, \
                 @@global.rpl_semi_sync_master_enabled AS semi_sync_master, \
                 @@global.rpl_semi_sync_slave_enabled AS semi_sync_slave, \
                 @@global.rpl_semi_sync_master_timeout AS semi_sync_timeout_ms, \
                 @@global.skip_name_resolve AS skip_name_resolve, \
                 CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS UNSIGNED) AS now_us"
            }
            Flavor::Mysql => {
                "SELECT @@global.server_id AS server_id, @@server_uuid AS server_uuid, \
                 @@version AS version, @@hostname AS hostname, @@port AS port, \
                 @@global.read_only AS read_only, \
                 @@global.super_read_only AS super_read_only, \
                 @@global.log_bin AS log_bin, \
                 (SELECT VARIABLE_VALUE FROM performance_schema.global_variables \
                 WHERE VARIABLE_NAME IN ('log_replica_updates', 'log_slave_updates') \
                 ORDER BY VARIABLE_NAME LIMIT 1) AS log_slave_updates, \
                 @@global.binlog_format AS binlog_format, \
                 (@@global.gtid_mode = 'ON') AS gtid_strict, \
                 @@global.gtid_mode AS gtid_mode, NULL AS gtid_domain_id, \
                 (SELECT VARIABLE_VALUE FROM performance_schema.global_variables \
                 WHERE VARIABLE_NAME IN ('rpl_semi_sync_source_enabled', \
                 'rpl_semi_sync_master_enabled') ORDER BY VARIABLE_NAME DESC LIMIT 1) \
                 AS semi_sync_master, \
                 (SELECT VARIABLE_VALUE FROM performance_schema.global_variables \
                 WHERE VARIABLE_NAME IN ('rpl_semi_sync_replica_enabled', \
                 'rpl_semi_sync_slave_enabled') ORDER BY VARIABLE_NAME LIMIT 1) \
                 AS semi_sync_slave, \
                 (SELECT VARIABLE_VALUE FROM performance_schema.global_variables \
                 WHERE VARIABLE_NAME IN ('rpl_semi_sync_source_timeout', \
                 'rpl_semi_sync_master_timeout') ORDER BY VARIABLE_NAME DESC LIMIT 1) \
                 AS semi_sync_timeout_ms, \
                 @@global.skip_name_resolve AS skip_name_resolve, \
                 CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS UNSIGNED) AS now_us"
            }
        }
    }

    /// Client connections to kill when fencing a server: columns `id`,
    /// `user`, `host`, `command` from `information_schema.PROCESSLIST`,
    /// without this connection (`CONNECTION_ID()`), server-internal threads
    /// (`system user`, `event_scheduler`, `Daemon`), replica threads
    /// (`Slave_IO`, `Slave_SQL`, `Slave_worker`), the dump threads of
    /// replicas reading this server's binlog (`Binlog Dump`,
    /// `Binlog Dump GTID`), `Delayed insert` handlers and threads already
    /// `Killed`. Needs the `PROCESS` privilege to see other accounts'
    /// threads.
    pub fn kill_connections_query(self) -> &'static str {
        "SELECT ID AS id, USER AS user, HOST AS host, COMMAND AS command \
         FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() \
         AND USER NOT IN ('system user', 'event_scheduler') \
         AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', \
         'Delayed insert', 'Killed', 'Slave_IO', 'Slave_SQL', 'Slave_worker') \
         ORDER BY ID"
    }
}
