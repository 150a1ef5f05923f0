//! Reading replication status rows: recorded fixtures of each flavor and
//! version, exact field values; errors for missing and malformed columns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use myha_core::flavor::{
    default_connection_row, parse_status_text, Flavor, FlavorError, GtidMode, ReplicationFilters,
    ReplicationStatus, Row, ThreadState,
};

const MYSQL_80: &str = include_str!("fixtures/mysql-8.0-replica.txt");
const MYSQL_84_IO_ERROR: &str = include_str!("fixtures/mysql-8.4-replica-io-error.txt");
const MYSQL_57: &str = include_str!("fixtures/mysql-5.7-replica.txt");
const MARIADB_1011: &str = include_str!("fixtures/mariadb-10.11-replica.txt");
const MARIADB_1011_SQL_ERROR: &str = include_str!("fixtures/mariadb-10.11-replica-sql-error.txt");

fn one_row(text: &str) -> Row {
    let mut rows = parse_status_text(text);
    assert_eq!(rows.len(), 1, "expected exactly one row");
    rows.remove(0)
}

fn no_filters() -> ReplicationFilters {
    ReplicationFilters::default()
}

// ------------------------------------------------------------------ fixtures

#[test]
fn mysql_80_healthy_replica() {
    let row = one_row(MYSQL_80);
    assert_eq!(row.len(), 60, "every column of 8.0.22+ SHOW REPLICA STATUS");
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    let expected = ReplicationStatus {
        connection_name: String::new(),
        source_host: "db1.example.net".into(),
        source_port: 3306,
        source_user: "repl".into(),
        source_server_id: Some(1),
        io_thread: ThreadState::Running,
        sql_thread: ThreadState::Running,
        io_state: "Waiting for source to send event".into(),
        sql_state: "Replica has read all relay log; waiting for more updates".into(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(0),
        gtid_mode: GtidMode::AutoPosition,
        retrieved_gtids: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1077-1342".into(),
        executed_gtids: Some(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-1342,8a94f357-aab4-11df-86ab-c80aa9429562:1-17"
                .into(),
        ),
        source_log_file: "binlog.000042".into(),
        read_source_log_pos: 91732,
        relay_source_log_file: "binlog.000042".into(),
        exec_source_log_pos: 91732,
        relay_log_space: 45633,
        sql_delay: 0,
        filters: no_filters(),
    };
    assert_eq!(status, expected);
    assert!(status.is_running());
}

#[test]
fn mysql_84_replica_with_io_error() {
    let row = one_row(MYSQL_84_IO_ERROR);
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    let expected = ReplicationStatus {
        connection_name: String::new(),
        source_host: "10.0.0.11".into(),
        source_port: 3306,
        source_user: "repl".into(),
        source_server_id: None,
        io_thread: ThreadState::Connecting,
        sql_thread: ThreadState::Running,
        io_state: "Connecting to source".into(),
        sql_state: "Replica has read all relay log; waiting for more updates".into(),
        last_io_errno: 2061,
        last_io_error: "Error connecting to source 'repl@10.0.0.11:3306'. This was attempt 3/10, \
                        with a delay of 10 seconds between attempts. Message: Authentication \
                        plugin 'caching_sha2_password' reported error: Authentication requires \
                        secure connection."
            .into(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(0),
        gtid_mode: GtidMode::AutoPosition,
        retrieved_gtids: String::new(),
        executed_gtids: Some("5b0c4a1e-2f3d-11ef-a1b2-0242ac120003:1-57".into()),
        source_log_file: "binlog.000003".into(),
        read_source_log_pos: 158,
        relay_source_log_file: "binlog.000003".into(),
        exec_source_log_pos: 158,
        relay_log_space: 584,
        sql_delay: 0,
        filters: no_filters(),
    };
    assert_eq!(status, expected);
    assert!(!status.is_running());
}

#[test]
fn mysql_57_old_names_delayed_file_position_replica() {
    let row = one_row(MYSQL_57);
    assert!(row.contains_key("Master_Host") && !row.contains_key("Source_Host"));
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    let expected = ReplicationStatus {
        connection_name: String::new(),
        source_host: "10.1.2.3".into(),
        source_port: 3306,
        source_user: "repl".into(),
        source_server_id: Some(11),
        io_thread: ThreadState::Running,
        sql_thread: ThreadState::Running,
        io_state: "Waiting for master to send event".into(),
        sql_state: "Waiting until MASTER_DELAY seconds after master executed event".into(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(3612),
        gtid_mode: GtidMode::None,
        retrieved_gtids: String::new(),
        executed_gtids: Some(String::new()),
        source_log_file: "mysql-bin.000214".into(),
        read_source_log_pos: 736152,
        relay_source_log_file: "mysql-bin.000213".into(),
        exec_source_log_pos: 98104,
        relay_log_space: 1910547,
        sql_delay: 3600,
        filters: ReplicationFilters {
            ignore_db: "scratch".into(),
            wild_ignore_table: "mysql.%,sys.%".into(),
            ignore_server_ids: "7".into(),
            ..ReplicationFilters::default()
        },
    };
    assert_eq!(status, expected);
    assert!(!status.filters.is_empty());
}

#[test]
fn mariadb_1011_healthy_replica() {
    let row = one_row(MARIADB_1011);
    assert_eq!(
        row.len(),
        62,
        "every column of 10.11 SHOW ALL SLAVES STATUS"
    );
    let status = Flavor::Mariadb.parse_replication_status(&row).unwrap();
    let expected = ReplicationStatus {
        connection_name: String::new(),
        source_host: "mdb1.example.net".into(),
        source_port: 3306,
        source_user: "repl".into(),
        source_server_id: Some(1),
        io_thread: ThreadState::Running,
        sql_thread: ThreadState::Running,
        io_state: "Waiting for master to send event".into(),
        sql_state: "Slave has read all relay log; waiting for more updates".into(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(0),
        gtid_mode: GtidMode::SlavePos,
        retrieved_gtids: "0-1-4711".into(),
        executed_gtids: Some("0-1-4711".into()),
        source_log_file: "mariadb-bin.000012".into(),
        read_source_log_pos: 5538,
        relay_source_log_file: "mariadb-bin.000012".into(),
        exec_source_log_pos: 5538,
        relay_log_space: 6452,
        sql_delay: 0,
        filters: no_filters(),
    };
    assert_eq!(status, expected);
    assert!(status.filters.is_empty());
}

#[test]
fn mariadb_1011_sql_thread_stopped_with_error_and_named_connection() {
    let rows = parse_status_text(MARIADB_1011_SQL_ERROR);
    assert_eq!(rows.len(), 2);
    let statuses = Flavor::Mariadb.parse_replication_statuses(&rows).unwrap();
    let dup = "Could not execute Write_rows_v1 event on table app.orders; Duplicate entry '42' \
               for key 'PRIMARY', Error_code: 1062; handler error HA_ERR_FOUND_DUPP_KEY; the \
               event's master log mariadb-bin.000013, end_log_pos 20211";
    let broken = ReplicationStatus {
        connection_name: String::new(),
        source_host: "mdb1.example.net".into(),
        source_port: 3306,
        source_user: "repl".into(),
        source_server_id: Some(1),
        io_thread: ThreadState::Running,
        sql_thread: ThreadState::Stopped,
        io_state: "Waiting for master to send event".into(),
        sql_state: String::new(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 1062,
        last_sql_error: dup.into(),
        seconds_behind_source: None,
        gtid_mode: GtidMode::SlavePos,
        retrieved_gtids: "0-1-5210,1-3-88".into(),
        executed_gtids: Some("0-1-5187,1-3-88,2-20-900".into()),
        source_log_file: "mariadb-bin.000013".into(),
        read_source_log_pos: 24876,
        relay_source_log_file: "mariadb-bin.000013".into(),
        exec_source_log_pos: 19844,
        relay_log_space: 25762,
        sql_delay: 0,
        filters: no_filters(),
    };
    let reporting = ReplicationStatus {
        connection_name: "reporting".into(),
        source_host: "etl1.example.net".into(),
        source_port: 3307,
        source_user: "repl".into(),
        source_server_id: Some(20),
        io_thread: ThreadState::Running,
        sql_thread: ThreadState::Running,
        io_state: "Waiting for master to send event".into(),
        sql_state: "Slave has read all relay log; waiting for more updates".into(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(0),
        gtid_mode: GtidMode::CurrentPos,
        retrieved_gtids: "2-20-900".into(),
        executed_gtids: Some("0-1-5187,1-3-88,2-20-900".into()),
        source_log_file: "etl-bin.000002".into(),
        read_source_log_pos: 811204,
        relay_source_log_file: "etl-bin.000002".into(),
        exec_source_log_pos: 811204,
        relay_log_space: 812118,
        sql_delay: 0,
        filters: ReplicationFilters {
            wild_do_table: "reporting.%".into(),
            do_domain_ids: "2".into(),
            ..ReplicationFilters::default()
        },
    };
    assert_eq!(statuses, vec![broken, reporting]);

    let default = default_connection_row(&rows).unwrap();
    assert_eq!(default.get("Connection_name"), Some(&Some(String::new())));
    assert_eq!(default.get("Slave_SQL_Running"), Some(&Some("No".into())));
}

#[test]
fn fixtures_read_with_the_wrong_flavor_fail_on_a_flavor_column() {
    let mysql = one_row(MYSQL_80);
    assert_eq!(
        Flavor::Mariadb
            .parse_replication_status(&mysql)
            .unwrap_err(),
        FlavorError::MissingColumn {
            flavor: Flavor::Mariadb,
            column: "Using_Gtid"
        }
    );
    let mariadb = one_row(MARIADB_1011);
    assert_eq!(
        Flavor::Mysql
            .parse_replication_status(&mariadb)
            .unwrap_err(),
        FlavorError::MissingColumn {
            flavor: Flavor::Mysql,
            column: "Auto_Position"
        }
    );
}

// ------------------------------------------------------------ missing columns

/// Remove `column` from a fixture row and expect `MissingColumn(reported)`.
fn assert_missing(flavor: Flavor, text: &str, column: &str, reported: &'static str) {
    let mut row = one_row(text);
    assert!(row.remove(column).is_some(), "fixture lacks {column}");
    let err = flavor.parse_replication_status(&row).unwrap_err();
    assert_eq!(
        err,
        FlavorError::MissingColumn {
            flavor,
            column: reported
        },
        "removing {column}"
    );
    assert!(err.to_string().contains(reported), "{err}");
}

#[test]
fn missing_mandatory_column_is_named_mysql_new_names() {
    for column in [
        "Replica_IO_State",
        "Source_Host",
        "Source_Port",
        "Source_User",
        "Replica_IO_Running",
        "Replica_SQL_Running",
        "Replica_SQL_Running_State",
        "Last_IO_Errno",
        "Last_IO_Error",
        "Last_SQL_Errno",
        "Last_SQL_Error",
        "Seconds_Behind_Source",
        "Auto_Position",
        "Retrieved_Gtid_Set",
        "Executed_Gtid_Set",
        "Source_Log_File",
        "Read_Source_Log_Pos",
        "Relay_Source_Log_File",
        "Exec_Source_Log_Pos",
        "Relay_Log_Space",
        "SQL_Delay",
        "Replicate_Do_DB",
        "Replicate_Wild_Ignore_Table",
        "Replicate_Ignore_Server_Ids",
    ] {
        assert_missing(Flavor::Mysql, MYSQL_80, column, column);
    }
}

#[test]
fn missing_mandatory_column_is_named_in_the_rows_generation_of_names() {
    // A 5.7 row is reported with the old name, not the 8.0.22 one.
    assert_missing(Flavor::Mysql, MYSQL_57, "Master_Host", "Master_Host");
    assert_missing(
        Flavor::Mysql,
        MYSQL_57,
        "Exec_Master_Log_Pos",
        "Exec_Master_Log_Pos",
    );
    assert_missing(
        Flavor::Mysql,
        MYSQL_57,
        "Seconds_Behind_Master",
        "Seconds_Behind_Master",
    );
    // An 8.0 row with the new name gone.
    assert_missing(Flavor::Mysql, MYSQL_80, "Source_Host", "Source_Host");
}

#[test]
fn missing_mandatory_column_is_named_mariadb() {
    for column in [
        "Slave_IO_State",
        "Master_Host",
        "Master_Port",
        "Master_User",
        "Slave_IO_Running",
        "Slave_SQL_Running",
        "Slave_SQL_Running_State",
        "Seconds_Behind_Master",
        "Using_Gtid",
        "Gtid_IO_Pos",
        "Master_Log_File",
        "Read_Master_Log_Pos",
        "Relay_Master_Log_File",
        "Exec_Master_Log_Pos",
        "Relay_Log_Space",
        "SQL_Delay",
        "Last_SQL_Errno",
        "Replicate_Ignore_Table",
    ] {
        assert_missing(Flavor::Mariadb, MARIADB_1011, column, column);
    }
}

#[test]
fn optional_columns_may_be_absent() {
    // MariaDB's plain SHOW SLAVE STATUS: no Connection_name, no Gtid_Slave_Pos.
    let mut row = one_row(MARIADB_1011);
    for column in [
        "Connection_name",
        "Gtid_Slave_Pos",
        "Master_Server_Id",
        "Replicate_Do_Domain_Ids",
        "Replicate_Ignore_Domain_Ids",
    ] {
        row.remove(column);
    }
    let status = Flavor::Mariadb.parse_replication_status(&row).unwrap();
    assert_eq!(status.connection_name, "");
    assert_eq!(status.executed_gtids, None);
    assert_eq!(status.source_server_id, None);
    assert_eq!(status.filters, ReplicationFilters::default());

    let mut row = one_row(MYSQL_80);
    row.remove("Channel_Name");
    row.remove("Source_Server_Id");
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    assert_eq!(status.connection_name, "");
    assert_eq!(status.source_server_id, None);
}

// ------------------------------------------------------------------- values

fn with(text: &str, column: &str, value: Option<&str>) -> Row {
    let mut row = one_row(text);
    assert!(row.contains_key(column), "fixture lacks {column}");
    row.insert(column.to_string(), value.map(str::to_string));
    row
}

#[test]
fn thread_states() {
    for (value, state) in [
        ("Yes", ThreadState::Running),
        ("yes", ThreadState::Running),
        ("No", ThreadState::Stopped),
        ("Connecting", ThreadState::Connecting),
        ("Preparing", ThreadState::Connecting),
    ] {
        let row = with(MARIADB_1011, "Slave_IO_Running", Some(value));
        let status = Flavor::Mariadb.parse_replication_status(&row).unwrap();
        assert_eq!(status.io_thread, state, "{value}");
        let row = with(MYSQL_80, "Replica_SQL_Running", Some(value));
        let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
        assert_eq!(status.sql_thread, state, "{value}");
    }
}

#[test]
fn unknown_thread_state_is_a_bad_value() {
    let row = with(MYSQL_80, "Replica_IO_Running", Some("Maybe"));
    match Flavor::Mysql.parse_replication_status(&row).unwrap_err() {
        FlavorError::BadValue { column, value, .. } => {
            assert_eq!(column, "Replica_IO_Running");
            assert_eq!(value, "Maybe");
        }
        other => panic!("unexpected {other:?}"),
    }
    let row = with(MARIADB_1011, "Slave_SQL_Running", None);
    assert!(matches!(
        Flavor::Mariadb.parse_replication_status(&row),
        Err(FlavorError::BadValue { column, .. }) if column == "Slave_SQL_Running"
    ));
}

#[test]
fn gtid_modes() {
    for (value, mode) in [
        ("No", GtidMode::None),
        ("Slave_Pos", GtidMode::SlavePos),
        ("Current_Pos", GtidMode::CurrentPos),
        ("current_pos", GtidMode::CurrentPos),
    ] {
        let row = with(MARIADB_1011, "Using_Gtid", Some(value));
        let status = Flavor::Mariadb.parse_replication_status(&row).unwrap();
        assert_eq!(status.gtid_mode, mode, "{value}");
    }
    for (value, mode) in [("0", GtidMode::None), ("1", GtidMode::AutoPosition)] {
        let row = with(MYSQL_80, "Auto_Position", Some(value));
        let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
        assert_eq!(status.gtid_mode, mode, "{value}");
    }
    let row = with(MARIADB_1011, "Using_Gtid", Some("Yes"));
    assert!(matches!(
        Flavor::Mariadb.parse_replication_status(&row),
        Err(FlavorError::BadValue { column, .. }) if column == "Using_Gtid"
    ));
    let row = with(MYSQL_80, "Auto_Position", Some("2"));
    assert!(matches!(
        Flavor::Mysql.parse_replication_status(&row),
        Err(FlavorError::BadValue { column, .. }) if column == "Auto_Position"
    ));
}

#[test]
fn seconds_behind_null_and_numbers() {
    let row = with(MYSQL_80, "Seconds_Behind_Source", None);
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    assert_eq!(status.seconds_behind_source, None);
    let row = with(MYSQL_80, "Seconds_Behind_Source", Some("86401"));
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    assert_eq!(status.seconds_behind_source, Some(86401));
    let row = with(MYSQL_80, "Seconds_Behind_Source", Some("-1"));
    assert!(matches!(
        Flavor::Mysql.parse_replication_status(&row),
        Err(FlavorError::BadValue { column, value, .. })
            if column == "Seconds_Behind_Source" && value == "-1"
    ));
}

#[test]
fn malformed_numbers_are_bad_values() {
    for (column, value) in [
        ("Source_Port", Some("70000")),
        ("Source_Port", Some("")),
        ("Read_Source_Log_Pos", Some("12ab")),
        ("Last_IO_Errno", None),
        ("Source_Server_Id", Some("x")),
    ] {
        let row = with(MYSQL_80, column, value);
        match Flavor::Mysql.parse_replication_status(&row) {
            Err(FlavorError::BadValue { column: c, .. }) => assert_eq!(c, column),
            other => panic!("{column}={value:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn gtid_texts_are_normalized() {
    let row = with(MARIADB_1011, "Gtid_IO_Pos", Some("0-1-10,\n 1-2-3 "));
    let status = Flavor::Mariadb.parse_replication_status(&row).unwrap();
    assert_eq!(status.retrieved_gtids, "0-1-10,1-2-3");
    let row = with(
        MYSQL_80,
        "Retrieved_Gtid_Set",
        Some(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\r\n8a94f357-aab4-11df-86ab-c80aa9429562:1-3",
        ),
    );
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    assert_eq!(
        status.retrieved_gtids,
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,8a94f357-aab4-11df-86ab-c80aa9429562:1-3"
    );
}

#[test]
fn columns_are_found_ignoring_case() {
    let row: Row = one_row(MYSQL_80)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    assert_eq!(status.source_host, "db1.example.net");
    assert_eq!(status.gtid_mode, GtidMode::AutoPosition);
}

#[test]
fn mysql_rows_may_mix_generations() {
    // A row with only the old name of one column still reads (fallback).
    let mut row = one_row(MYSQL_80);
    let v = row.remove("Exec_Source_Log_Pos").unwrap();
    row.insert("Exec_Master_Log_Pos".into(), v);
    let status = Flavor::Mysql.parse_replication_status(&row).unwrap();
    assert_eq!(status.exec_source_log_pos, 91732);
}

#[test]
fn mariadb_does_not_accept_mysql_names() {
    let mut row = one_row(MARIADB_1011);
    let v = row.remove("Master_Host").unwrap();
    row.insert("Source_Host".into(), v);
    assert_eq!(
        Flavor::Mariadb.parse_replication_status(&row).unwrap_err(),
        FlavorError::MissingColumn {
            flavor: Flavor::Mariadb,
            column: "Master_Host"
        }
    );
}

// ------------------------------------------------------- parse_status_text

#[test]
fn status_text_rows_continuations_nulls_and_noise() {
    let text = "\
mysql> SHOW REPLICA STATUS\\G
*************************** 1. row ***************************
      A_Column: first
          Long: x,
y,
   z
     Null_One: NULL
        Empty: 
   Colon_Text: host:3306 is down: retrying
  Looks_Noisy: 3 rows in set (0.00 sec)
*************************** 2. row ***************************
      A_Column: second
2 rows in set (0.00 sec)
";
    let rows = parse_status_text(text);
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.get("A_Column"), Some(&Some("first".into())));
    assert_eq!(first.get("Long"), Some(&Some("x,\ny,\nz".into())));
    assert_eq!(first.get("Null_One"), Some(&None));
    assert_eq!(first.get("Empty"), Some(&Some(String::new())));
    assert_eq!(
        first.get("Colon_Text"),
        Some(&Some("host:3306 is down: retrying".into()))
    );
    assert_eq!(
        first.get("Looks_Noisy"),
        Some(&Some("3 rows in set (0.00 sec)".into()))
    );
    assert_eq!(first.len(), 6);
    assert_eq!(rows[1].len(), 1);
    assert_eq!(rows[1].get("A_Column"), Some(&Some("second".into())));
}

#[test]
fn status_text_without_separator_is_one_row_and_empty_is_none() {
    let rows = parse_status_text("Name: v\r\nOther: w\r\n");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("Other"), Some(&Some("w".into())));
    assert!(parse_status_text("").is_empty());
    assert!(parse_status_text("Empty set (0.00 sec)\n").is_empty());
    assert!(parse_status_text("mysql> SHOW REPLICA STATUS\\G\nEmpty set (0.00 sec)\n").is_empty());
}

#[test]
fn multi_line_gtid_set_keeps_newline_in_row_and_drops_it_in_status() {
    let row = one_row(MYSQL_80);
    assert_eq!(
        row.get("Executed_Gtid_Set"),
        Some(&Some(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-1342,\n8a94f357-aab4-11df-86ab-c80aa9429562:1-17"
                .into()
        ))
    );
}

#[test]
fn default_connection_row_picks_the_unnamed_one() {
    let mut rows = parse_status_text(MARIADB_1011_SQL_ERROR);
    rows.reverse();
    let row = default_connection_row(&rows).unwrap();
    assert_eq!(
        row.get("Master_Host"),
        Some(&Some("mdb1.example.net".into()))
    );
    // Only a named connection: none.
    assert!(default_connection_row(&rows[..1]).is_none());
    // MySQL rows: Channel_Name "".
    let rows = parse_status_text(MYSQL_80);
    assert!(default_connection_row(&rows).is_some());
    assert!(default_connection_row(&[]).is_none());
}

// -------------------------------------------------------------------- serde

#[test]
fn serde_names() {
    assert_eq!(
        serde_json::to_string(&Flavor::Mariadb).unwrap(),
        "\"mariadb\""
    );
    assert_eq!(serde_json::to_string(&Flavor::Mysql).unwrap(), "\"mysql\"");
    assert_eq!(
        serde_json::to_string(&ThreadState::Connecting).unwrap(),
        "\"connecting\""
    );
    assert_eq!(
        serde_json::to_string(&GtidMode::AutoPosition).unwrap(),
        "\"auto_position\""
    );
    assert_eq!(
        serde_json::from_str::<GtidMode>("\"slave_pos\"").unwrap(),
        GtidMode::SlavePos
    );
    let status = Flavor::Mysql
        .parse_replication_status(&one_row(MYSQL_80))
        .unwrap();
    let json = serde_json::to_string(&status).unwrap();
    let back: ReplicationStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back, status);
}

#[test]
fn flavor_from_version_strings() {
    assert_eq!(
        Flavor::from_version("10.11.6-MariaDB-1:10.11.6+maria~ubu2204-log"),
        Flavor::Mariadb
    );
    assert_eq!(Flavor::from_version("8.0.36"), Flavor::Mysql);
    assert_eq!(Flavor::from_version("8.4.0-commercial"), Flavor::Mysql);
    assert_eq!(Flavor::Mariadb.to_string(), "mariadb");
}
