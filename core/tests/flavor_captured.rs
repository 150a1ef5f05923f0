//! Status rows captured from real MariaDB 10.11.18 servers of the test bed
//! (Debian's package), parsed by name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use myha_core::flavor::{default_connection_row, parse_status_text, Flavor, GtidMode, ThreadState};

const HEALTHY: &str = include_str!("fixtures/captured-mariadb-10.11-replica.txt");
const SQL_ERROR: &str = include_str!("fixtures/captured-mariadb-10.11-replica-sql-error.txt");

#[test]
fn captured_healthy_replica() {
    let rows = parse_status_text(HEALTHY);
    let row = default_connection_row(&rows).expect("default connection");
    let r = Flavor::Mariadb.parse_replication_status(row).unwrap();
    assert_eq!(r.connection_name, "");
    assert_eq!(r.source_host, "10.213.84.11");
    assert_eq!(r.source_port, 3306);
    assert_eq!(r.source_user, "repl");
    assert_eq!(r.source_server_id, Some(1));
    assert_eq!(r.io_thread, ThreadState::Running);
    assert_eq!(r.sql_thread, ThreadState::Running);
    assert_eq!(r.gtid_mode, GtidMode::SlavePos);
    assert_eq!(r.seconds_behind_source, Some(0));
    assert_eq!(r.last_io_errno, 0);
    assert_eq!(r.last_sql_errno, 0);
    assert_eq!(
        myha_core::flavor::normalize_gtid_text(&r.retrieved_gtids),
        "1000000001-1-11,0-1-2"
    );
}

#[test]
fn captured_replica_stopped_by_an_errant_write() {
    // A local write on the replica (0-3-3), then the master's 0-1-3: strict
    // mode stops the SQL thread with error 1950.
    let rows = parse_status_text(SQL_ERROR);
    let row = default_connection_row(&rows).expect("default connection");
    let r = Flavor::Mariadb.parse_replication_status(row).unwrap();
    assert_eq!(r.io_thread, ThreadState::Running);
    assert_eq!(r.sql_thread, ThreadState::Stopped);
    assert_eq!(r.last_sql_errno, 1950);
    assert!(r.last_sql_error.contains("0-1-3"), "{}", r.last_sql_error);
    assert_eq!(r.seconds_behind_source, None);
    assert_eq!(
        r.executed_gtids
            .as_deref()
            .map(myha_core::flavor::normalize_gtid_text)
            .as_deref(),
        Some("0-3-3,1000000001-1-12")
    );
}
