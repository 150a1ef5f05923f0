//! Upkeep of the master between operations: unfence after a needless
//! self-fence, semi-sync never on a timer, degraded only when no replica
//! can acknowledge, restored as soon as one can.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use myha_core::flavor::ThreadState;

use myha_core::report::{ServerFacts, SEMI_SYNC_NO_FALLBACK_MS};
use myha_core::topology::{ClusterSnapshot, Role, ServerView};
use myha_core::upkeep::{acknowledging_replicas, looks_fenced, upkeep, Upkeep, UpkeepInput};

/// `common::view` as an agent reports it, with no lag known.
fn view(name: &str, role: Role, facts: ServerFacts) -> ServerView {
    ServerView {
        lag_seconds: None,
        source: Some("agent".into()),
        ..common::view(name, role, facts)
    }
}

fn master_facts(semi: bool, timeout: u64) -> ServerFacts {
    ServerFacts {
        semi_sync_master: semi,
        semi_sync_timeout_ms: Some(timeout),
        ..common::facts(1)
    }
}

fn replica_facts(id: u32) -> ServerFacts {
    ServerFacts {
        read_only: true,
        semi_sync_slave: true,
        replication: Some(common::repl("db1")),
        ..common::facts(id)
    }
}

fn cluster(master: ServerFacts) -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: "c".into(),
        epoch: 1,
        generated_at_ms: 0,
        master: Some("db1".into()),
        servers: vec![
            view(
                "db1",
                if master.read_only {
                    Role::Unknown
                } else {
                    Role::Master
                },
                master,
            ),
            view("db2", Role::Replica, replica_facts(2)),
            view("db3", Role::Replica, replica_facts(3)),
        ],
        problems: Vec::new(),
    }
}

fn input() -> UpkeepInput<'static> {
    UpkeepInput {
        master: "db1",
        semi_sync_degraded: false,
        semi_sync_wanted: true,
        no_acker_for_ms: None,
        degrade_after_ms: 10_000,
        fenced_for_ms: None,
        unfence_after_ms: 1_000,
    }
}

#[test]
fn a_healthy_lossless_master_needs_nothing() {
    let snap = cluster(master_facts(true, SEMI_SYNC_NO_FALLBACK_MS));
    assert_eq!(acknowledging_replicas(&snap, "db1"), ["db2", "db3"]);
    assert_eq!(upkeep(&snap, &input()), None);
}

#[test]
fn a_fallback_timer_is_removed() {
    let snap = cluster(master_facts(true, 5000));
    assert_eq!(
        upkeep(&snap, &input()),
        Some(Upkeep::RemoveSemiSyncTimer { timeout_ms: 5000 })
    );
}

#[test]
fn degraded_only_after_the_window_without_any_acknowledging_replica() {
    let mut snap = cluster(master_facts(true, SEMI_SYNC_NO_FALLBACK_MS));
    for s in snap.servers.iter_mut().skip(1) {
        s.io_running = Some(ThreadState::Connecting);
    }
    let mut inp = input();
    inp.no_acker_for_ms = Some(9_000);
    assert_eq!(upkeep(&snap, &inp), None);
    inp.no_acker_for_ms = Some(10_000);
    assert!(
        matches!(upkeep(&snap, &inp), Some(Upkeep::DegradeSemiSync { reason }) if reason.contains("db2: IO thread connecting")),
    );
    // One replica acknowledging is enough: never degraded.
    snap.servers[1].io_running = Some(ThreadState::Running);
    assert_eq!(upkeep(&snap, &inp), None);
}

#[test]
fn restored_when_a_replica_is_back_and_when_a_restart_lost_it() {
    let snap = cluster(master_facts(false, SEMI_SYNC_NO_FALLBACK_MS));
    let mut inp = input();
    inp.semi_sync_degraded = true;
    assert!(
        matches!(upkeep(&snap, &inp), Some(Upkeep::RestoreSemiSync { replicas }) if replicas == ["db2", "db3"])
    );
    // Not degraded by the manager, but wanted: a master restarted off.
    inp.semi_sync_degraded = false;
    assert!(matches!(
        upkeep(&snap, &inp),
        Some(Upkeep::RestoreSemiSync { .. })
    ));
    // A cluster that never ran semi-sync is left alone.
    inp.semi_sync_wanted = false;
    assert_eq!(upkeep(&snap, &inp), None);
}

#[test]
fn a_needlessly_fenced_master_is_unfenced_after_the_window_only() {
    let mut f = master_facts(true, SEMI_SYNC_NO_FALLBACK_MS);
    f.read_only = true;
    let mut snap = cluster(f);
    assert!(looks_fenced(&snap, "db1"));
    let mut inp = input();
    inp.fenced_for_ms = Some(500);
    assert_eq!(upkeep(&snap, &inp), None);
    inp.fenced_for_ms = Some(1_000);
    assert!(matches!(upkeep(&snap, &inp), Some(Upkeep::Unfence { .. })));
    // Another writable server: never.
    snap.servers[2].read_only = Some(false);
    assert!(!looks_fenced(&snap, "db1"));
    assert_eq!(upkeep(&snap, &inp), None);
    // The manager does not read it: never.
    snap.servers[2].read_only = Some(true);
    snap.servers[0].manager_probe.ok = false;
    assert!(!looks_fenced(&snap, "db1"));
}
