//! What is on record applied to a fresh snapshot (errant transactions,
//! former masters, diverged servers, the master chosen again), and the
//! routing view built from both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::view;

use myha_core::durable::{apply_durable, DurableView};
use myha_core::report::ServerFacts;
use myha_core::routing::router_view;
use myha_core::topology::{ClusterSnapshot, Problem, Role, ServerView};

fn replica_facts(id: u32, gtids: &str) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication: Some(common::repl("db1")),
        gtid_executed: gtids.into(),
        gtid_binlog_state: gtids.into(),
        ..common::facts(id)
    }
}

fn snapshot(servers: Vec<ServerView>, master: Option<&str>) -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: "c".into(),
        epoch: 2,
        generated_at_ms: 0,
        master: master.map(Into::into),
        servers,
        problems: Vec::new(),
    }
}

fn durable() -> DurableView {
    DurableView {
        epoch: 2,
        master: Some("db2".into()),
        ..DurableView::default()
    }
}

#[test]
fn nothing_on_record_changes_nothing_but_the_problems() {
    let snap = snapshot(
        vec![
            view("db1", Role::Master, common::facts(1)),
            view("db2", Role::Replica, replica_facts(2, "0-1-100")),
        ],
        Some("db1"),
    );
    let facts: Vec<ServerFacts> = snap
        .servers
        .iter()
        .map(|s| s.facts.clone().unwrap())
        .collect();
    let known = vec![("db1", &facts[0]), ("db2", &facts[1])];
    let out = apply_durable(snap.clone(), vec![Problem::NoMaster], &known, &durable());
    assert_eq!(out.servers, snap.servers);
    assert_eq!(out.master, snap.master);
    assert_eq!(out.problems, vec![Problem::NoMaster.to_string()]);
}

#[test]
fn errant_transactions_of_a_replica_are_shown() {
    let snap = snapshot(
        vec![
            view("db1", Role::Master, common::facts(1)),
            view("db2", Role::Replica, replica_facts(2, "0-1-100,0-2-7")),
        ],
        Some("db1"),
    );
    let facts: Vec<ServerFacts> = snap
        .servers
        .iter()
        .map(|s| s.facts.clone().unwrap())
        .collect();
    let known = vec![("db1", &facts[0]), ("db2", &facts[1])];
    let out = apply_durable(snap, Vec::new(), &known, &durable());
    assert!(!out.servers[1].errant.is_empty(), "{:?}", out.servers[1]);
    assert!(
        out.problems[0].starts_with("db2: errant transactions"),
        "{:?}",
        out.problems
    );
    assert!(out.servers[0].errant.is_empty());
}

#[test]
fn a_writable_former_master_is_not_the_master() {
    // db1 was failed away from and came back writable; db2 is the master.
    let snap = snapshot(
        vec![
            view("db1", Role::Master, common::facts(1)),
            view("db2", Role::Master, common::facts(2)),
        ],
        None,
    );
    let problems = vec![Problem::SeveralWritable {
        servers: vec!["db1".into(), "db2".into()],
    }];
    let on_record = DurableView {
        needs_rejoin: vec!["db1".into()],
        ..durable()
    };
    let out = apply_durable(snap, problems, &[], &on_record);
    assert_eq!(out.servers[0].role, Role::NeedsRejoin);
    assert_eq!(out.master.as_deref(), Some("db2"));
    assert_eq!(
        out.problems,
        vec!["db1: former master is WRITABLE: being fenced by its agent".to_string()]
    );
}

#[test]
fn a_diverged_server_is_kept_out_but_a_replica_is_left_alone() {
    let snap = snapshot(
        vec![
            view("db1", Role::Master, common::facts(1)),
            view("db2", Role::Master, common::facts(2)),
            view("db3", Role::Replica, replica_facts(3, "0-1-100")),
        ],
        None,
    );
    let mut on_record = durable();
    on_record
        .diverged
        .insert("db1".into(), vec!["0-1-101".into()]);
    on_record
        .diverged
        .insert("db3".into(), vec!["0-3-1".into()]);
    let out = apply_durable(snap, Vec::new(), &[], &on_record);
    assert_eq!(out.servers[0].role, Role::Diverged);
    assert_eq!(out.servers[0].diverged_gtids, vec!["0-1-101".to_string()]);
    assert_eq!(
        out.servers[2].role,
        Role::Replica,
        "a replica is not diverged"
    );
    assert_eq!(out.master.as_deref(), Some("db2"));
    assert_eq!(out.problems.len(), 1);
    assert!(out.problems[0].starts_with("db1: diverged"));
}

#[test]
fn router_view_writer_is_the_healthy_master_of_the_epoch() {
    let snap = snapshot(
        vec![
            view("db1", Role::Replica, replica_facts(1, "0-1-100")),
            view("db2", Role::Master, common::facts(2)),
        ],
        Some("db2"),
    );
    let v = router_view(&snap, &durable(), |n| if n == "db1" { 3 } else { 1 }, 10.0);
    assert_eq!(v.cluster, "c");
    assert_eq!(v.epoch, 2);
    assert_eq!(v.writer.as_ref().map(|w| w.name.as_str()), Some("db2"));
    assert!(!v.changing);
    assert_eq!(v.servers[0].weight, 3);
    assert_eq!(v.max_lag_seconds, 10.0);

    // A master that is not the epoch's is no writer.
    let other = DurableView {
        master: Some("db1".into()),
        ..durable()
    };
    assert!(router_view(&snap, &other, |_| 1, 10.0).writer.is_none());
}

#[test]
fn router_view_during_an_operation() {
    // The new master db2 is still read-only in the snapshot.
    let snap = snapshot(
        vec![
            view("db1", Role::Unknown, common::facts(1)),
            view("db2", Role::Replica, replica_facts(2, "0-1-100")),
        ],
        None,
    );
    let running = DurableView {
        in_progress: true,
        ..durable()
    };
    let v = router_view(&snap, &running, |_| 1, 10.0);
    assert!(v.changing);
    assert!(v.writer.is_none());

    // Published once writable: the writer before the next report.
    let published = DurableView {
        published_master: Some("db2".into()),
        ..running.clone()
    };
    let v = router_view(&snap, &published, |_| 1, 10.0);
    assert!(!v.changing);
    let w = v.writer.unwrap();
    assert_eq!(
        (w.name.as_str(), w.role, w.healthy),
        ("db2", Role::Master, true)
    );
    // Only if it is the master on record.
    let stale = DurableView {
        published_master: Some("db1".into()),
        ..running
    };
    let v = router_view(&snap, &stale, |_| 1, 10.0);
    assert!(v.changing && v.writer.is_none());
}
