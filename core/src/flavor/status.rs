//! Reading replication status and variable rows by column name.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    normalize_gtid_text, parse_bool_var, Flavor, FlavorError, GtidMode, ReplicationFilters,
    ReplicationStatus, Row, ThreadState,
};

/// A status column: its MariaDB name, its MySQL 8.0.22+ name and its name
/// in MySQL before 8.0.22.
struct Col {
    mariadb: &'static str,
    mysql: &'static str,
    mysql_old: &'static str,
}

/// A column every flavor and version names alike.
const fn same(name: &'static str) -> Col {
    Col {
        mariadb: name,
        mysql: name,
        mysql_old: name,
    }
}

/// A column MySQL 8.0.22 renamed (`Master`->`Source`, `Slave`->`Replica`).
const fn renamed(old: &'static str, new: &'static str) -> Col {
    Col {
        mariadb: old,
        mysql: new,
        mysql_old: old,
    }
}

/// A column only MariaDB prints.
const fn mariadb_only(name: &'static str) -> Col {
    Col {
        mariadb: name,
        mysql: "",
        mysql_old: "",
    }
}

/// A column only MySQL prints (same name in every MySQL version).
const fn mysql_only(name: &'static str) -> Col {
    Col {
        mariadb: "",
        mysql: name,
        mysql_old: name,
    }
}

const IO_STATE: Col = renamed("Slave_IO_State", "Replica_IO_State");
const HOST: Col = renamed("Master_Host", "Source_Host");
const USER: Col = renamed("Master_User", "Source_User");
const PORT: Col = renamed("Master_Port", "Source_Port");
const LOG_FILE: Col = renamed("Master_Log_File", "Source_Log_File");
const READ_POS: Col = renamed("Read_Master_Log_Pos", "Read_Source_Log_Pos");
const RELAY_SOURCE_FILE: Col = renamed("Relay_Master_Log_File", "Relay_Source_Log_File");
const IO_RUNNING: Col = renamed("Slave_IO_Running", "Replica_IO_Running");
const SQL_RUNNING: Col = renamed("Slave_SQL_Running", "Replica_SQL_Running");
const DO_DB: Col = same("Replicate_Do_DB");
const IGNORE_DB: Col = same("Replicate_Ignore_DB");
const DO_TABLE: Col = same("Replicate_Do_Table");
const IGNORE_TABLE: Col = same("Replicate_Ignore_Table");
const WILD_DO_TABLE: Col = same("Replicate_Wild_Do_Table");
const WILD_IGNORE_TABLE: Col = same("Replicate_Wild_Ignore_Table");
const EXEC_POS: Col = renamed("Exec_Master_Log_Pos", "Exec_Source_Log_Pos");
const RELAY_LOG_SPACE: Col = same("Relay_Log_Space");
const SECONDS_BEHIND: Col = renamed("Seconds_Behind_Master", "Seconds_Behind_Source");
const LAST_IO_ERRNO: Col = same("Last_IO_Errno");
const LAST_IO_ERROR: Col = same("Last_IO_Error");
const LAST_SQL_ERRNO: Col = same("Last_SQL_Errno");
const LAST_SQL_ERROR: Col = same("Last_SQL_Error");
const IGNORE_SERVER_IDS: Col = same("Replicate_Ignore_Server_Ids");
const SERVER_ID: Col = renamed("Master_Server_Id", "Source_Server_Id");
const SQL_DELAY: Col = same("SQL_Delay");
const SQL_STATE: Col = renamed("Slave_SQL_Running_State", "Replica_SQL_Running_State");
const CONNECTION_NAME: Col = Col {
    mariadb: "Connection_name",
    mysql: "Channel_Name",
    mysql_old: "Channel_Name",
};
const USING_GTID: Col = mariadb_only("Using_Gtid");
const GTID_IO_POS: Col = mariadb_only("Gtid_IO_Pos");
const GTID_SLAVE_POS: Col = mariadb_only("Gtid_Slave_Pos");
const DO_DOMAIN_IDS: Col = mariadb_only("Replicate_Do_Domain_Ids");
const IGNORE_DOMAIN_IDS: Col = mariadb_only("Replicate_Ignore_Domain_Ids");
const AUTO_POSITION: Col = mysql_only("Auto_Position");
const RETRIEVED_GTID_SET: Col = mysql_only("Retrieved_Gtid_Set");
const EXECUTED_GTID_SET: Col = mysql_only("Executed_Gtid_Set");

/// Column lookup over one row, for one flavor and generation of names.
struct Reader<'a> {
    flavor: Flavor,
    row: &'a Row,
    /// MySQL only: the row uses the 8.0.22+ names.
    new_names: bool,
}

impl<'a> Reader<'a> {
    fn new(flavor: Flavor, row: &'a Row) -> Self {
        let new_names = flavor == Flavor::Mysql
            && ["Replica_IO_Running", "Replica_SQL_Running", "Source_Host"]
                .iter()
                .any(|n| lookup(row, n).is_some());
        Reader {
            flavor,
            row,
            new_names,
        }
    }

    /// The names to try, preferred first; the first is the one reported
    /// when the column is missing.
    fn names(&self, col: &Col) -> [&'static str; 2] {
        match (self.flavor, self.new_names) {
            (Flavor::Mariadb, _) => [col.mariadb, ""],
            (Flavor::Mysql, true) => [col.mysql, col.mysql_old],
            (Flavor::Mysql, false) => [col.mysql_old, col.mysql],
        }
    }

    /// `Some((name found, value))` if the row has the column.
    fn get(&self, col: &Col) -> Option<(&'a str, Option<&'a str>)> {
        self.names(col)
            .into_iter()
            .filter(|n| !n.is_empty())
            .find_map(|n| lookup(self.row, n))
    }

    fn missing(&self, col: &Col) -> FlavorError {
        FlavorError::MissingColumn {
            flavor: self.flavor,
            column: self.names(col)[0],
        }
    }

    /// A mandatory column; `NULL` reads as `""`.
    fn text(&self, col: &Col) -> Result<String, FlavorError> {
        let (_, value) = self.get(col).ok_or_else(|| self.missing(col))?;
        Ok(value.unwrap_or_default().to_string())
    }

    /// An optional column; absent and `NULL` read as `None`.
    fn opt_text(&self, col: &Col) -> Option<String> {
        self.get(col)
            .and_then(|(_, v)| v)
            .map(std::string::ToString::to_string)
    }

    /// A mandatory, non-`NULL` number.
    fn num<T: FromStr>(&self, col: &Col) -> Result<T, FlavorError> {
        let (name, value) = self.get(col).ok_or_else(|| self.missing(col))?;
        let value = value.ok_or_else(|| bad(name, "NULL", "expected a number, got NULL"))?;
        parse_num(name, value)
    }

    /// A mandatory column holding a number or `NULL` (or `""`).
    fn nullable_num<T: FromStr>(&self, col: &Col) -> Result<Option<T>, FlavorError> {
        let (name, value) = self.get(col).ok_or_else(|| self.missing(col))?;
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => parse_num(name, v).map(Some),
        }
    }

    /// An optional column holding a number; absent, `NULL` and `""` read as
    /// `None`.
    fn opt_num<T: FromStr>(&self, col: &Col) -> Result<Option<T>, FlavorError> {
        match self.get(col) {
            None => Ok(None),
            Some((name, value)) => match value.map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) => parse_num(name, v).map(Some),
            },
        }
    }

    fn thread(&self, col: &Col) -> Result<ThreadState, FlavorError> {
        let (name, value) = self.get(col).ok_or_else(|| self.missing(col))?;
        let value = value.unwrap_or("NULL");
        match value.trim().to_ascii_lowercase().as_str() {
            "yes" => Ok(ThreadState::Running),
            "connecting" | "preparing" => Ok(ThreadState::Connecting),
            "no" => Ok(ThreadState::Stopped),
            _ => Err(bad(
                name,
                value,
                "expected a thread state: Yes, No, Connecting or Preparing",
            )),
        }
    }

    fn gtid_mode(&self) -> Result<GtidMode, FlavorError> {
        match self.flavor {
            Flavor::Mariadb => {
                let (name, value) = self
                    .get(&USING_GTID)
                    .ok_or_else(|| self.missing(&USING_GTID))?;
                let value = value.unwrap_or("NULL");
                match value.trim().to_ascii_lowercase().as_str() {
                    "no" => Ok(GtidMode::None),
                    "slave_pos" => Ok(GtidMode::SlavePos),
                    "current_pos" => Ok(GtidMode::CurrentPos),
                    _ => Err(bad(
                        name,
                        value,
                        "expected Using_Gtid: No, Slave_Pos or Current_Pos",
                    )),
                }
            }
            Flavor::Mysql => {
                let (name, value) = self
                    .get(&AUTO_POSITION)
                    .ok_or_else(|| self.missing(&AUTO_POSITION))?;
                let value = value.unwrap_or("NULL");
                match value.trim() {
                    "0" => Ok(GtidMode::None),
                    "1" => Ok(GtidMode::AutoPosition),
                    _ => Err(bad(name, value, "expected Auto_Position: 0 or 1")),
                }
            }
        }
    }
}

/// The column `name`: exact match first, then ignoring ASCII case (servers
/// and documentation disagree on the case of a few names, e.g.
/// `Get_Source_public_key`). Returns the key as stored in the row.
fn lookup<'a>(row: &'a Row, name: &str) -> Option<(&'a str, Option<&'a str>)> {
    if let Some((k, v)) = row.get_key_value(name) {
        return Some((k.as_str(), v.as_deref()));
    }
    row.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(k, v)| (k.as_str(), v.as_deref()))
}

fn bad(column: &str, value: &str, reason: &str) -> FlavorError {
    FlavorError::BadValue {
        column: column.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_num<T: FromStr>(column: &str, value: &str) -> Result<T, FlavorError> {
    value
        .trim()
        .parse::<T>()
        .map_err(|_| bad(column, value, "expected a non-negative integer in range"))
}

impl Flavor {
    /// Read one row of [`Flavor::show_replica_status`] output.
    ///
    /// Columns are found by name (exact, then ignoring case). MySQL rows may
    /// use the 8.0.22+ names or the older ones. A mandatory column that is
    /// absent gives [`FlavorError::MissingColumn`] naming it; a value that
    /// cannot be read gives [`FlavorError::BadValue`].
    ///
    /// Optional columns (absent -> default): `Connection_name` /
    /// `Channel_Name` (`""`), `Master_Server_Id` / `Source_Server_Id`
    /// (`None`), MariaDB `Gtid_Slave_Pos` (`None`) and the MariaDB domain-id
    /// filters (`""`). Every other field's column is mandatory.
    pub fn parse_replication_status(self, row: &Row) -> Result<ReplicationStatus, FlavorError> {
        let r = Reader::new(self, row);
        let gtid_mode = r.gtid_mode()?;
        let (retrieved_gtids, executed_gtids) = match self {
            Flavor::Mariadb => (
                normalize_gtid_text(&r.text(&GTID_IO_POS)?),
                r.opt_text(&GTID_SLAVE_POS).map(|s| normalize_gtid_text(&s)),
            ),
            Flavor::Mysql => (
                normalize_gtid_text(&r.text(&RETRIEVED_GTID_SET)?),
                Some(normalize_gtid_text(&r.text(&EXECUTED_GTID_SET)?)),
            ),
        };
        let filters = ReplicationFilters {
            do_db: r.text(&DO_DB)?,
            ignore_db: r.text(&IGNORE_DB)?,
            do_table: r.text(&DO_TABLE)?,
            ignore_table: r.text(&IGNORE_TABLE)?,
            wild_do_table: r.text(&WILD_DO_TABLE)?,
            wild_ignore_table: r.text(&WILD_IGNORE_TABLE)?,
            ignore_server_ids: r.text(&IGNORE_SERVER_IDS)?,
            ignore_domain_ids: match self {
                Flavor::Mariadb => r.opt_text(&IGNORE_DOMAIN_IDS).unwrap_or_default(),
                Flavor::Mysql => String::new(),
            },
            do_domain_ids: match self {
                Flavor::Mariadb => r.opt_text(&DO_DOMAIN_IDS).unwrap_or_default(),
                Flavor::Mysql => String::new(),
            },
        };
        Ok(ReplicationStatus {
            connection_name: r.opt_text(&CONNECTION_NAME).unwrap_or_default(),
            source_host: r.text(&HOST)?,
            source_port: r.num(&PORT)?,
            source_user: r.text(&USER)?,
            source_server_id: r.opt_num::<u32>(&SERVER_ID)?.filter(|id| *id != 0),
            io_thread: r.thread(&IO_RUNNING)?,
            sql_thread: r.thread(&SQL_RUNNING)?,
            io_state: r.text(&IO_STATE)?,
            sql_state: r.text(&SQL_STATE)?,
            last_io_errno: r.num(&LAST_IO_ERRNO)?,
            last_io_error: r.text(&LAST_IO_ERROR)?,
            last_sql_errno: r.num(&LAST_SQL_ERRNO)?,
            last_sql_error: r.text(&LAST_SQL_ERROR)?,
            seconds_behind_source: r.nullable_num(&SECONDS_BEHIND)?,
            gtid_mode,
            retrieved_gtids,
            executed_gtids,
            source_log_file: r.text(&LOG_FILE)?,
            read_source_log_pos: r.num(&READ_POS)?,
            relay_source_log_file: r.text(&RELAY_SOURCE_FILE)?,
            exec_source_log_pos: r.num(&EXEC_POS)?,
            relay_log_space: r.num(&RELAY_LOG_SPACE)?,
            sql_delay: r.num(&SQL_DELAY)?,
            filters,
        })
    }

    /// Read every row of [`Flavor::show_replica_status`] output (one per
    /// connection/channel); the first unreadable row is the error.
    pub fn parse_replication_statuses(
        self,
        rows: &[Row],
    ) -> Result<Vec<ReplicationStatus>, FlavorError> {
        rows.iter()
            .map(|row| self.parse_replication_status(row))
            .collect()
    }

    /// Read the row of [`Flavor::server_variables_query`].
    pub fn parse_server_variables(self, row: &Row) -> Result<ServerVariables, FlavorError> {
        let v = VarReader { flavor: self, row };
        Ok(ServerVariables {
            server_id: v.num("server_id")?,
            server_uuid: v.opt_text("server_uuid"),
            version: v.text("version")?,
            hostname: v.text("hostname")?,
            port: v.num("port")?,
            read_only: v.flag("read_only")?,
            super_read_only: v.opt_flag("super_read_only")?,
            log_bin: v.flag("log_bin")?,
            log_slave_updates: v.opt_flag("log_slave_updates")?.unwrap_or(false),
            binlog_format: v.text("binlog_format")?,
            gtid_strict: v.opt_flag("gtid_strict")?.unwrap_or(false),
            gtid_mode: v.opt_text("gtid_mode"),
            gtid_domain_id: v.opt_num("gtid_domain_id")?,
            semi_sync_master: v.opt_flag("semi_sync_master")?.unwrap_or(false),
            semi_sync_slave: v.opt_flag("semi_sync_slave")?.unwrap_or(false),
            now_us: v.opt_num("now_us")?,
        })
    }

    /// Read the row of [`Flavor::gtid_variables_query`]. `NULL` reads as
    /// `""`; all texts are whitespace-normalized.
    pub fn parse_gtid_variables(self, row: &Row) -> Result<GtidVariables, FlavorError> {
        let v = VarReader { flavor: self, row };
        let gtid = |name: &'static str| v.text(name).map(|s| normalize_gtid_text(&s));
        Ok(match self {
            Flavor::Mariadb => GtidVariables::Mariadb {
                binlog_pos: gtid("gtid_binlog_pos")?,
                binlog_state: gtid("gtid_binlog_state")?,
                current_pos: gtid("gtid_current_pos")?,
                slave_pos: gtid("gtid_slave_pos")?,
            },
            Flavor::Mysql => GtidVariables::Mysql {
                executed: gtid("gtid_executed")?,
                purged: gtid("gtid_purged")?,
                server_uuid: v.text("server_uuid")?.trim().to_string(),
            },
        })
    }
}

/// Lookup over the rows of our own variable queries (fixed column names).
struct VarReader<'a> {
    flavor: Flavor,
    row: &'a Row,
}

impl VarReader<'_> {
    fn get(&self, name: &'static str) -> Result<(&str, Option<&str>), FlavorError> {
        lookup(self.row, name).ok_or(FlavorError::MissingColumn {
            flavor: self.flavor,
            column: name,
        })
    }

    fn text(&self, name: &'static str) -> Result<String, FlavorError> {
        Ok(self.get(name)?.1.unwrap_or_default().to_string())
    }

    fn opt_text(&self, name: &'static str) -> Option<String> {
        lookup(self.row, name)
            .and_then(|(_, v)| v)
            .map(|s| s.trim().to_string())
    }

    fn num<T: FromStr>(&self, name: &'static str) -> Result<T, FlavorError> {
        let (col, value) = self.get(name)?;
        let value = value.ok_or_else(|| bad(col, "NULL", "expected a number, got NULL"))?;
        parse_num(col, value)
    }

    fn opt_num<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, FlavorError> {
        match lookup(self.row, name) {
            None | Some((_, None)) => Ok(None),
            Some((col, Some(v))) => parse_num(col, v).map(Some),
        }
    }

    fn flag(&self, name: &'static str) -> Result<bool, FlavorError> {
        let (col, value) = self.get(name)?;
        let value = value.unwrap_or("NULL");
        parse_bool_var(value).ok_or_else(|| bad(col, value, "expected a boolean (ON/OFF, 1/0)"))
    }

    fn opt_flag(&self, name: &'static str) -> Result<Option<bool>, FlavorError> {
        match lookup(self.row, name) {
            None | Some((_, None)) => Ok(None),
            Some((col, Some(v))) => parse_bool_var(v)
                .map(Some)
                .ok_or_else(|| bad(col, v, "expected a boolean (ON/OFF, 1/0)")),
        }
    }
}

/// The row of [`Flavor::server_variables_query`], read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVariables {
    pub server_id: u32,
    /// MySQL `@@server_uuid`; `None` on MariaDB.
    pub server_uuid: Option<String>,
    pub version: String,
    pub hostname: String,
    pub port: u16,
    pub read_only: bool,
    /// MySQL `@@super_read_only`; `None` on MariaDB, which has no such
    /// variable.
    pub super_read_only: Option<bool>,
    pub log_bin: bool,
    /// `log_slave_updates` / `log_replica_updates`.
    pub log_slave_updates: bool,
    pub binlog_format: String,
    /// MariaDB `gtid_strict_mode`; MySQL `gtid_mode = ON`.
    pub gtid_strict: bool,
    /// MySQL `@@gtid_mode` as printed (`ON`, `OFF_PERMISSIVE`, ...); `None`
    /// on MariaDB.
    pub gtid_mode: Option<String>,
    /// MariaDB `@@gtid_domain_id`; `None` on MySQL.
    pub gtid_domain_id: Option<u32>,
    /// Semi-sync source side enabled (`false` when the plugin is absent).
    pub semi_sync_master: bool,
    /// Semi-sync replica side enabled (`false` when the plugin is absent).
    pub semi_sync_slave: bool,
    /// The server's clock, microseconds since the Unix epoch.
    pub now_us: Option<u64>,
}

/// The row of [`Flavor::gtid_variables_query`], read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flavor", rename_all = "lowercase")]
pub enum GtidVariables {
    Mariadb {
        binlog_pos: String,
        binlog_state: String,
        current_pos: String,
        slave_pos: String,
    },
    Mysql {
        executed: String,
        purged: String,
        server_uuid: String,
    },
}

/// The default connection's row among status rows: the one whose
/// `Connection_name` / `Channel_Name` is `""` (or absent). `None` when only
/// named connections/channels exist. MariaDB's `SHOW ALL SLAVES STATUS`
/// sorts rows by name, so the default one, when present, is first; MySQL's
/// `SHOW REPLICA STATUS` makes no such promise.
pub fn default_connection_row(rows: &[Row]) -> Option<&Row> {
    rows.iter().find(|row| {
        ["Connection_name", "Channel_Name"]
            .iter()
            .find_map(|n| lookup(row, n))
            .and_then(|(_, v)| v)
            .is_none_or(|v| v.trim().is_empty())
    })
}
