//! Builders shared by the core's integration tests: a healthy MariaDB
//! server's facts and a running replication connection.
#![allow(dead_code)]

use myha_core::flavor::{Flavor, GtidMode, ReplicationFilters, ReplicationStatus, ThreadState};
use myha_core::report::ServerFacts;

/// A healthy writable MariaDB server that replicates from nobody.
pub fn facts(server_id: u32) -> ServerFacts {
    ServerFacts {
        flavor: Flavor::Mariadb,
        server_id,
        version: "10.11.6-MariaDB-log".into(),
        hostname: format!("db{server_id}"),
        read_only: false,
        super_read_only: false,
        log_bin: true,
        log_slave_updates: true,
        binlog_format: "ROW".into(),
        gtid_strict: true,
        gtid_executed: "0-1-100".into(),
        gtid_binlog_state: "0-1-100".into(),
        gtid_slave_pos: String::new(),
        server_uuid: String::new(),
        replication: None,
        heartbeat_lag_ms: None,
        clock_unix_us: 1_700_000_000_000_000,
        semi_sync_master: false,
        semi_sync_slave: false,
        semi_sync_timeout_ms: None,
        skip_name_resolve: None,
    }
}

/// A running GTID replication connection to `host:3306`, server_id 1.
pub fn repl(host: &str) -> ReplicationStatus {
    ReplicationStatus {
        connection_name: String::new(),
        source_host: host.into(),
        source_port: 3306,
        source_user: "repl".into(),
        source_server_id: Some(1),
        io_thread: ThreadState::Running,
        sql_thread: ThreadState::Running,
        io_state: "Waiting for master to send event".into(),
        sql_state: "Slave has read all relay log".into(),
        last_io_errno: 0,
        last_io_error: String::new(),
        last_sql_errno: 0,
        last_sql_error: String::new(),
        seconds_behind_source: Some(0),
        gtid_mode: GtidMode::SlavePos,
        retrieved_gtids: "0-1-100".into(),
        executed_gtids: Some("0-1-100".into()),
        source_log_file: "mysql-bin.000001".into(),
        read_source_log_pos: 400,
        relay_source_log_file: "mysql-bin.000001".into(),
        exec_source_log_pos: 400,
        relay_log_space: 1_000,
        sql_delay: 0,
        filters: ReplicationFilters::default(),
    }
}

/// An agent that reports on time and reads its mysqld.
pub fn agent_ok() -> myha_core::topology::AgentView {
    myha_core::topology::AgentView {
        reachable: true,
        version: None,
        last_report_age_ms: Some(200),
        mysqld_process: Some(true),
        down_kind: None,
        down_error: None,
        master_view: None,
        epoch_seen: Some(1),
    }
}

/// The manager's probe reading the server.
pub fn probe_ok() -> myha_core::topology::ProbeView {
    myha_core::topology::ProbeView {
        ok: true,
        age_ms: Some(100),
        failing_for_ms: None,
        latency_ms: Some(0.5),
        error: None,
    }
}

/// A server as the topology shows it, from the manager's fresh probe:
/// a replica of `db1:3306` when `role` is `Replica`.
pub fn view(
    name: &str,
    role: myha_core::topology::Role,
    facts: ServerFacts,
) -> myha_core::topology::ServerView {
    myha_core::topology::ServerView {
        name: name.into(),
        address: format!("{name}:3306"),
        role,
        mysqld_up: Some(true),
        host_reachable: true,
        read_only: Some(facts.read_only),
        gtid_position: None,
        io_running: (role == myha_core::topology::Role::Replica).then_some(ThreadState::Running),
        sql_running: (role == myha_core::topology::Role::Replica).then_some(ThreadState::Running),
        last_error: None,
        lag_seconds: Some(0.0),
        age_ms: Some(100),
        source: Some("manager".into()),
        replicates_from: (role == myha_core::topology::Role::Replica)
            .then(|| "db1:3306".to_string()),
        server_id: Some(facts.server_id),
        errant: Vec::new(),
        diverged_gtids: Vec::new(),
        disagreements: Vec::new(),
        agent: agent_ok(),
        manager_probe: probe_ok(),
        facts: Some(facts),
    }
}
