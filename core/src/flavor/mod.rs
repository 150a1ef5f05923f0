//! The flavor layer: what differs between MariaDB and MySQL.
//!
//! Two jobs, both pure:
//!
//! * **Reading** what a server printed into typed values. Replication status
//!   columns are always looked up **by name**, never by position: MariaDB
//!   keeps the `Slave_*`/`Master_*` names (even under `SHOW REPLICA STATUS`),
//!   MySQL 8.0.22+ prints `Replica_*`/`Source_*`, and MySQL before 8.0.22
//!   printed the old names with a MySQL column set (no `Using_Gtid`, but
//!   `Auto_Position`, `Retrieved_Gtid_Set`, `Executed_Gtid_Set`). The MySQL
//!   reader accepts both generations of names.
//! * **Writing** the flavor's SQL statements. The MySQL statements use the
//!   8.0.23+ syntax (`CHANGE REPLICATION SOURCE TO`, `START REPLICA`), which
//!   is the only one MySQL 8.4 accepts: supported MySQL servers are 8.0.23+
//!   and 8.4. MariaDB statements target 10.11.
//!
//! Values come in as a [`Row`]: column name to text, `None` for SQL `NULL`.
//! The I/O layer builds rows from the driver; tests build them from recorded
//! `\G` output with [`parse_status_text`].

mod sql;
mod status;
mod text;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use sql::{sql_string_literal, ChangeSource};
pub use status::{default_connection_row, GtidVariables, ServerVariables};
pub use text::parse_status_text;

/// The server family. Everything flavor-specific hangs off this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mariadb,
    Mysql,
}

impl Flavor {
    /// The flavor a `@@version` / `VERSION()` string belongs to: MariaDB
    /// versions always contain `MariaDB` (e.g. `10.11.6-MariaDB-log`);
    /// anything else is taken as MySQL (e.g. `8.0.36`, `8.4.0-commercial`).
    pub fn from_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        }
    }

    /// `"mariadb"` or `"mysql"`, as in configuration and serialized form.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb",
            Flavor::Mysql => "mysql",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A result row: column name -> value, `None` for SQL `NULL`, as read from
/// the server. Built by the I/O layer from driver rows, or from recorded
/// text by [`parse_status_text`].
pub type Row = BTreeMap<String, Option<String>>;

/// State of a replication thread, from `Slave_IO_Running` /
/// `Replica_IO_Running` and `Slave_SQL_Running` / `Replica_SQL_Running`.
///
/// Mapping (case-insensitive): `Yes` -> `Running`; `Connecting` ->
/// `Connecting`; MariaDB's `Preparing` (I/O thread started, connected, not
/// yet streaming events) -> `Connecting`; `No` -> `Stopped`. Any other
/// value, or `NULL`, is a [`FlavorError::BadValue`]: a failover manager must
/// not guess what an unknown state means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadState {
    Running,
    Connecting,
    Stopped,
}

/// How a replica positions itself on its source.
///
/// MariaDB `Using_Gtid`: `No` -> `None`, `Slave_Pos` -> `SlavePos`,
/// `Current_Pos` -> `CurrentPos`. MySQL `Auto_Position`: `0` -> `None`,
/// `1` -> `AutoPosition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtidMode {
    None,
    SlavePos,
    CurrentPos,
    AutoPosition,
}

impl GtidMode {
    /// Whether the replica positions itself by GTID (any mode but `None`).
    pub fn uses_gtid(self) -> bool {
        self != GtidMode::None
    }
}

/// One replication connection (MariaDB) or channel (MySQL), as read from a
/// row of [`Flavor::show_replica_status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// MariaDB `Connection_name`, MySQL `Channel_Name`; `""` for the default
    /// connection/channel (and when the column is absent, as with MariaDB's
    /// plain `SHOW SLAVE STATUS`).
    pub connection_name: String,
    pub source_host: String,
    pub source_port: u16,
    pub source_user: String,
    /// `Master_Server_Id` / `Source_Server_Id`; `None` when the column is
    /// absent or `0` (the replica has not connected to this source yet).
    pub source_server_id: Option<u32>,
    pub io_thread: ThreadState,
    pub sql_thread: ThreadState,
    /// `Slave_IO_State` / `Replica_IO_State`.
    pub io_state: String,
    /// `Slave_SQL_Running_State` / `Replica_SQL_Running_State`.
    pub sql_state: String,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; `None` for `NULL`
    /// (a thread is stopped or the lag is unknown).
    pub seconds_behind_source: Option<u64>,
    pub gtid_mode: GtidMode,
    /// GTIDs received by the I/O thread: MariaDB `Gtid_IO_Pos`, MySQL
    /// `Retrieved_Gtid_Set`; whitespace and newlines removed.
    pub retrieved_gtids: String,
    /// GTIDs applied: MySQL `Executed_Gtid_Set` (always `Some`); MariaDB
    /// `Gtid_Slave_Pos`, which only `SHOW ALL SLAVES STATUS` prints (that is
    /// what [`Flavor::show_replica_status`] runs), `None` when absent/`NULL`.
    /// Whitespace and newlines removed.
    pub executed_gtids: Option<String>,
    /// `Master_Log_File` / `Source_Log_File`.
    pub source_log_file: String,
    /// `Read_Master_Log_Pos` / `Read_Source_Log_Pos`.
    pub read_source_log_pos: u64,
    /// `Relay_Master_Log_File` / `Relay_Source_Log_File`.
    pub relay_source_log_file: String,
    /// `Exec_Master_Log_Pos` / `Exec_Source_Log_Pos`.
    pub exec_source_log_pos: u64,
    pub relay_log_space: u64,
    /// `SQL_Delay`: configured delay in seconds (`MASTER_DELAY`/`SOURCE_DELAY`).
    pub sql_delay: u64,
    pub filters: ReplicationFilters,
}

impl ReplicationStatus {
    /// Both threads are `Running`.
    pub fn is_running(&self) -> bool {
        self.io_thread == ThreadState::Running && self.sql_thread == ThreadState::Running
    }
}

/// Replication filters as the server reports them (raw text, `""` = none).
/// A replica with filters may lack data its source has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationFilters {
    pub do_db: String,
    pub ignore_db: String,
    pub do_table: String,
    pub ignore_table: String,
    pub wild_do_table: String,
    pub wild_ignore_table: String,
    /// `Replicate_Ignore_Server_Ids`.
    pub ignore_server_ids: String,
    /// MariaDB `Replicate_Ignore_Domain_Ids`; `""` on MySQL.
    pub ignore_domain_ids: String,
    /// MariaDB `Replicate_Do_Domain_Ids`; `""` on MySQL.
    pub do_domain_ids: String,
}

impl ReplicationFilters {
    /// No filter of any kind is set.
    pub fn is_empty(&self) -> bool {
        [
            &self.do_db,
            &self.ignore_db,
            &self.do_table,
            &self.ignore_table,
            &self.wild_do_table,
            &self.wild_ignore_table,
            &self.ignore_server_ids,
            &self.ignore_domain_ids,
            &self.do_domain_ids,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

/// Why a row could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlavorError {
    /// A column the flavor always prints is not in the row. For MySQL the
    /// name is given in the generation of names the row uses (`Source_Host`
    /// for 8.0.22+ rows, `Master_Host` for older ones).
    #[error("{flavor} status row has no column {column}")]
    MissingColumn {
        flavor: Flavor,
        column: &'static str,
    },
    /// A column holds a value that cannot be read as what it should be.
    #[error("column {column} has bad value {value:?}: {reason}")]
    BadValue {
        column: String,
        value: String,
        reason: String,
    },
}

/// GTID text without any whitespace: MySQL prints multi-UUID sets over
/// several lines (`uuid1:1-5,\nuuid2:1-3`); the forms are otherwise equal.
pub fn normalize_gtid_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A boolean system variable as servers print it: `ON`/`OFF`, `1`/`0`,
/// `YES`/`NO`, `TRUE`/`FALSE` (any case, surrounding whitespace ignored).
/// `None` for anything else (e.g. MySQL `gtid_mode=ON_PERMISSIVE`).
pub fn parse_bool_var(v: &str) -> Option<bool> {
    match v.trim().to_ascii_uppercase().as_str() {
        "ON" | "1" | "YES" | "TRUE" => Some(true),
        "OFF" | "0" | "NO" | "FALSE" => Some(false),
        _ => None,
    }
}
