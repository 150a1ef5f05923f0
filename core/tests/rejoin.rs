//! Rejoin guards: a server that already replicates from the master is left
//! alone; a moving applier is stopped before its position is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use myha_core::flavor::{ReplicationStatus, ThreadState};
use myha_core::rejoin::{already_replicates_from, replication_moving};
use myha_core::report::ServerFacts;

fn facts(replication: Option<ReplicationStatus>) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication,
        ..common::facts(2)
    }
}

fn repl(host: &str, port: u16, io: ThreadState, sql: ThreadState) -> ReplicationStatus {
    ReplicationStatus {
        source_port: port,
        io_thread: io,
        sql_thread: sql,
        ..common::repl(host)
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

#[test]
fn reinstated_binlog_state_keeps_the_shared_history_without_the_extras() {
    // db1, the former master, holds 0-1-119 that db2 (the master) lacks;
    // both share 0-1-118 and db2's own 0-2-40 is not on db1 yet.
    let server = ServerFacts {
        gtid_binlog_state: "0-2-30,0-1-119,1000000001-1-77".into(),
        ..facts(None)
    };
    let master = ServerFacts {
        gtid_binlog_state: "0-1-118,0-2-40,1000000001-1-70,1000000002-2-9".into(),
        ..facts(None)
    };
    let state = myha_core::rejoin::common_binlog_state(&server, &master).unwrap();
    // The domain's newest entry last; its heartbeats as far as the master
    // has them.
    assert_eq!(state, "0-2-30,0-1-118,1000000001-1-70");
    // Nothing extra is left against the master.
    let after = ServerFacts {
        gtid_binlog_state: state,
        ..facts(None)
    };
    assert!(myha_core::rejoin::extra_gtids(&after, &master)
        .unwrap()
        .is_empty());
}

#[test]
fn catch_up_never_asks_the_source_for_what_it_lacks() {
    let cand = ServerFacts {
        gtid_executed: "0-2-100,1000000002-2-50".into(),
        ..facts(None)
    };
    let source = ServerFacts {
        gtid_executed: "0-2-120,1000000002-2-48".into(),
        ..facts(None)
    };
    assert_eq!(
        myha_core::rejoin::catch_up_position(&cand, &source).unwrap(),
        "0-2-100,1000000002-2-48"
    );
}
