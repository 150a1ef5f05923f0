//! Rejoin guards: a server that already replicates from the master is left
//! alone; a moving applier is stopped before its position is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use myha_core::flavor::{Flavor, GtidMode, ReplicationFilters, ReplicationStatus, ThreadState};
use myha_core::rejoin::{already_replicates_from, replication_moving};
use myha_core::report::ServerFacts;

fn facts(replication: Option<ReplicationStatus>) -> ServerFacts {
    ServerFacts {
        flavor: Flavor::Mariadb,
        server_id: 2,
        version: "10.11.6-MariaDB-log".into(),
        hostname: "db2".into(),
        read_only: true,
        super_read_only: false,
        log_bin: true,
        log_slave_updates: true,
        binlog_format: "ROW".into(),
        gtid_strict: true,
        gtid_executed: "0-3-187".into(),
        gtid_binlog_state: "0-3-187".into(),
        gtid_slave_pos: "0-3-187".into(),
        server_uuid: String::new(),
        replication,
        heartbeat_lag_ms: None,
        clock_unix_us: 1_700_000_000_000_000,
        semi_sync_master: false,
        semi_sync_slave: false,
    }
}

fn repl(host: &str, port: u16, io: ThreadState, sql: ThreadState) -> ReplicationStatus {
    ReplicationStatus {
        connection_name: String::new(),
        source_host: host.into(),
        source_port: port,
        source_user: "repl".into(),
        source_server_id: Some(3),
        io_thread: io,
        sql_thread: sql,
        io_state: String::new(),
        sql_state: String::new(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(0),
        gtid_mode: GtidMode::SlavePos,
        retrieved_gtids: "0-3-187".into(),
        executed_gtids: Some("0-3-187".into()),
        source_log_file: "mysql-bin.000001".into(),
        read_source_log_pos: 400,
        relay_source_log_file: "mysql-bin.000001".into(),
        exec_source_log_pos: 400,
        relay_log_space: 1_000,
        sql_delay: 0,
        filters: ReplicationFilters::default(),
    }
}

use ThreadState::{Connecting, Running, Stopped};

#[test]
fn a_server_applying_from_the_master_needs_no_rejoin() {
    let f = facts(Some(repl("10.0.0.13", 3306, Running, Running)));
    assert!(already_replicates_from(&f, "10.0.0.13", 3306));
    // Receiver reconnecting: still that master's replica.
    let f = facts(Some(repl("10.0.0.13", 3306, Connecting, Running)));
    assert!(already_replicates_from(&f, "10.0.0.13", 3306));
}

#[test]
fn anything_else_is_rejoined() {
    for (r, why) in [
        (None, "replicates from nobody"),
        (
            Some(repl("10.0.0.11", 3306, Running, Running)),
            "another source",
        ),
        (
            Some(repl("10.0.0.13", 3307, Running, Running)),
            "another port",
        ),
        (
            Some(repl("10.0.0.13", 3306, Running, Stopped)),
            "applier stopped (an error)",
        ),
        (
            Some(repl("10.0.0.13", 3306, Stopped, Running)),
            "receiver stopped",
        ),
    ] {
        assert!(
            !already_replicates_from(&facts(r), "10.0.0.13", 3306),
            "{why}"
        );
    }
}

#[test]
fn a_moving_replica_is_stopped_before_its_position_is_read() {
    assert!(!replication_moving(&facts(None)));
    assert!(!replication_moving(&facts(Some(repl(
        "h", 3306, Stopped, Stopped
    )))));
    for (io, sql) in [
        (Running, Stopped),
        (Stopped, Running),
        (Connecting, Stopped),
    ] {
        assert!(replication_moving(&facts(Some(repl("h", 3306, io, sql)))));
    }
}
