//! Failure analysis: one test per verdict, the edges between them (who
//! testifies, for how long), and the safety property that a master anyone
//! still reads is never declared dead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;

use myha_core::analysis::{analyze, Analysis, DetectionPolicy, Verdict};
use myha_core::flavor::ThreadState;
use myha_core::report::{DownKind, MasterView};
use myha_core::topology::{AgentView, ClusterSnapshot, Role, ServerView};

// ------------------------------------------------------------------ builders

const WINDOW: u64 = 1_000;
const POLICY: DetectionPolicy = DetectionPolicy {
    master_down_after_ms: WINDOW,
};

/// A server the manager reads and whose agent reports on time.
fn server(name: &str, role: Role) -> ServerView {
    ServerView {
        name: name.into(),
        address: format!("{name}:3306"),
        role,
        mysqld_up: Some(true),
        host_reachable: true,
        read_only: Some(role != Role::Master),
        gtid_position: Some("0-1-100".into()),
        io_running: None,
        sql_running: None,
        last_error: None,
        lag_seconds: None,
        age_ms: Some(200),
        source: Some("agent".into()),
        replicates_from: None,
        server_id: None,
        errant: Vec::new(),
        diverged_gtids: Vec::new(),
        disagreements: Vec::new(),
        agent: common::agent_ok(),
        manager_probe: common::probe_ok(),
        facts: None,
    }
}

/// How a replica sees `db1:3306`: still reaching it.
fn sees_db1() -> MasterView {
    MasterView {
        master_address: "db1:3306".into(),
        probe_ok: true,
        probe_error: None,
        probe_latency_ms: Some(0.7),
        io_thread: ThreadState::Running,
        io_idle_ms: Some(100),
    }
}

/// How a replica sees `db1:3306` once the master is gone: direct probe
/// failing, IO thread reconnecting.
fn lost_db1() -> MasterView {
    MasterView {
        probe_ok: false,
        probe_error: Some("connect timed out".into()),
        probe_latency_ms: None,
        io_thread: ThreadState::Connecting,
        io_idle_ms: None,
        ..sees_db1()
    }
}

fn replica(name: &str, view: MasterView) -> ServerView {
    let mut s = server(name, Role::Replica);
    s.replicates_from = Some(view.master_address.clone());
    s.agent.master_view = Some(view);
    s
}

/// db1 the master, db2 and db3 replicas that reach it: all healthy.
fn healthy() -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: "main".into(),
        epoch: 1,
        generated_at_ms: 1_700_000_000_000,
        master: Some("db1".into()),
        servers: vec![
            server("db1", Role::Master),
            replica("db2", sees_db1()),
            replica("db3", sees_db1()),
        ],
        problems: Vec::new(),
    }
}

fn srv<'a>(snap: &'a mut ClusterSnapshot, name: &str) -> &'a mut ServerView {
    snap.servers
        .iter_mut()
        .find(|s| s.name == name)
        .expect("no such server")
}

/// The manager's probe of `name` has failed for `ms`.
fn manager_lost(snap: &mut ClusterSnapshot, name: &str, ms: u64) {
    let s = srv(snap, name);
    s.manager_probe.ok = false;
    s.manager_probe.failing_for_ms = Some(ms);
    s.manager_probe.latency_ms = None;
    s.manager_probe.error = Some("connect timed out".into());
}

/// `name`'s agent stopped reporting.
fn agent_silent(snap: &mut ClusterSnapshot, name: &str) {
    let s = srv(snap, name);
    s.host_reachable = false;
    s.mysqld_up = None;
    s.agent = AgentView {
        reachable: false,
        version: None,
        last_report_age_ms: Some(9_000),
        mysqld_process: None,
        down_kind: None,
        down_error: None,
        master_view: None,
        epoch_seen: Some(1),
    };
}

/// `name`'s agent (alive) cannot read mysqld.
fn agent_reads_down(
    snap: &mut ClusterSnapshot,
    name: &str,
    kind: DownKind,
    error: &str,
    process: Option<bool>,
) {
    let s = srv(snap, name);
    s.mysqld_up = Some(false);
    s.agent.mysqld_process = process;
    s.agent.down_kind = Some(kind);
    s.agent.down_error = Some(error.into());
}

fn set_view(snap: &mut ClusterSnapshot, name: &str, view: MasterView) {
    srv(snap, name).agent.master_view = Some(view);
}

/// The master's host lost: the manager failing for `ms`, db1's agent
/// silent, both replicas unable to reach db1.
fn host_lost(ms: u64) -> ClusterSnapshot {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", ms);
    agent_silent(&mut snap, "db1");
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    snap
}

fn run(snap: &ClusterSnapshot) -> Analysis {
    analyze(snap, Some("db1"), POLICY)
}

fn evidence_mentions(a: &Analysis, needle: &str) -> bool {
    a.evidence.iter().any(|e| e.contains(needle))
}

#[track_caller]
fn assert_evidence(a: &Analysis, needle: &str) {
    assert!(
        evidence_mentions(a, needle),
        "evidence lacks {needle:?}: {:#?}",
        a.evidence
    );
}

// ------------------------------------------------------------------ Healthy

#[test]
fn healthy_when_manager_reads_master() {
    let a = run(&healthy());
    assert_eq!(a.verdict, Verdict::Healthy);
    assert_eq!(a.master.as_deref(), Some("db1"));
    assert_evidence(&a, "manager reads db1");
}

#[test]
fn healthy_when_manager_probe_ok_while_master_agent_silent() {
    let mut snap = healthy();
    agent_silent(&mut snap, "db1");
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::Healthy);
    assert_evidence(&a, "db1");
}

#[test]
fn healthy_when_manager_probe_ok_even_if_agent_reads_mysqld_down() {
    let mut snap = healthy();
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Refused,
        "connection refused",
        Some(false),
    );
    assert_eq!(run(&snap).verdict, Verdict::Healthy);
}

// ------------------------------------------------------------------ NoMasterKnown

#[test]
fn no_master_known_when_none_given_and_none_in_snapshot() {
    let mut snap = healthy();
    snap.master = None;
    let a = analyze(&snap, None, POLICY);
    assert_eq!(a.verdict, Verdict::NoMasterKnown);
    assert_eq!(a.master, None);
    assert_evidence(&a, "no master is known");
}

#[test]
fn no_master_known_when_master_not_configured() {
    let a = analyze(&healthy(), Some("db9"), POLICY);
    assert_eq!(a.verdict, Verdict::NoMasterKnown);
    assert_eq!(a.master.as_deref(), Some("db9"));
    assert_evidence(&a, "master db9 is not a configured server");
}

#[test]
fn snapshot_master_is_used_when_none_given() {
    let mut snap = host_lost(WINDOW);
    let a = analyze(&snap, None, POLICY);
    assert_eq!(a.master.as_deref(), Some("db1"));
    assert_eq!(a.verdict, Verdict::DeadMaster);
    // Neither given nor in the snapshot: none known.
    snap.master = None;
    assert_eq!(analyze(&snap, None, POLICY).verdict, Verdict::NoMasterKnown);
}

#[test]
fn given_master_wins_over_snapshot_master() {
    let mut snap = host_lost(WINDOW);
    snap.master = Some("db2".into());
    let a = analyze(&snap, Some("db1"), POLICY);
    assert_eq!(a.master.as_deref(), Some("db1"));
    assert_eq!(a.verdict, Verdict::DeadMaster);
}

// ------------------------------------------------------------------ the master's agent

#[test]
fn unreachable_from_manager_only_when_master_agent_reads_mysqld() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 60_000);
    // Even with replicas that lost it: the agent on the host reads mysqld.
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::UnreachableFromManagerOnly);
    assert!(!a.verdict.is_dead());
    assert_evidence(&a, "manager probe of db1 failing for 60000 ms");
    assert_evidence(&a, "db1's agent reads mysqld");
}

#[test]
fn mysqld_down_host_up_when_agent_says_refused() {
    let mut snap = healthy();
    // No waiting: the probe has failed for no time at all.
    manager_lost(&mut snap, "db1", 0);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Refused,
        "Connection refused (os error 111)",
        Some(true),
    );
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::MysqldDownHostUp);
    assert!(a.verdict.is_dead());
    assert_evidence(&a, "db1's agent: mysqld down (Connection refused");
    assert_evidence(&a, "process present");
}

#[test]
fn mysqld_down_host_up_when_agent_says_process_gone() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 0);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Timeout,
        "connect timed out",
        Some(false),
    );
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::MysqldDownHostUp);
    assert_evidence(&a, "process gone");
}

#[test]
fn mysqld_down_host_up_does_not_wait_for_replica_io_threads() {
    // Right after a crash the replicas' IO threads were receiving a moment
    // ago; the agent's word on its own host is enough.
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 0);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Refused,
        "connection refused",
        None,
    );
    let receiving = MasterView {
        probe_ok: false,
        io_thread: ThreadState::Running,
        io_idle_ms: Some(10),
        ..lost_db1()
    };
    set_view(&mut snap, "db2", receiving.clone());
    set_view(&mut snap, "db3", receiving);
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::MysqldDownHostUp);
    assert_evidence(&a, "process unknown");
}

#[test]
fn mysqld_down_by_agent_but_replica_probe_reaches_master_is_not_dead() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 10 * WINDOW);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Refused,
        "connection refused",
        Some(false),
    );
    set_view(&mut snap, "db3", lost_db1());
    // db2 keeps the default view: its direct probe of db1 succeeds.
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::Suspect);
    assert!(!a.verdict.is_dead());
    assert_evidence(&a, "db2 still reaches db1");
}

#[test]
fn hung_mysqld_needs_replica_confirmation_before_the_window() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", WINDOW - 1);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Timeout,
        "query timed out",
        Some(true),
    );
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::Suspect);
    assert_evidence(&a, "db1's agent: mysqld not answering (query timed out)");
    assert_evidence(&a, "db2 confirms db1 unreachable");
    assert_evidence(&a, "db3 confirms db1 unreachable");
}

#[test]
fn hung_mysqld_confirmed_by_replicas_after_the_window_is_dead() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", WINDOW);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Timeout,
        "query timed out",
        Some(true),
    );
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert!(a.verdict.is_dead());
}

#[test]
fn hung_mysqld_with_unknown_process_needs_confirmation_too() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 10 * WINDOW);
    agent_reads_down(&mut snap, "db1", DownKind::Timeout, "timed out", None);
    // A replica still reaches it: no failover at all.
    set_view(&mut snap, "db3", lost_db1());
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::UnreachableFromManagerOnly);
    assert_evidence(&a, "db2 still reaches db1");
}

#[test]
fn hung_mysqld_with_rejected_connection_is_not_down_at_once() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 0);
    agent_reads_down(
        &mut snap,
        "db1",
        DownKind::Rejected,
        "Too many connections",
        Some(true),
    );
    set_view(&mut snap, "db2", lost_db1());
    set_view(&mut snap, "db3", lost_db1());
    assert_eq!(run(&snap).verdict, Verdict::Suspect);
}

// ------------------------------------------------------------------ the replicas' testimony

#[test]
fn agent_silent_and_replica_probe_ok_is_unreachable_from_manager_only() {
    let mut snap = host_lost(10 * WINDOW);
    set_view(
        &mut snap,
        "db3",
        MasterView {
            probe_ok: true,
            ..lost_db1()
        },
    );
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::UnreachableFromManagerOnly);
    assert_evidence(&a, "db1's agent silent for 9000 ms");
    assert_evidence(&a, "db3 still reaches db1");
}

#[test]
fn agent_silent_and_replica_io_receiving_is_unreachable_from_manager_only() {
    let mut snap = host_lost(10 * WINDOW);
    set_view(
        &mut snap,
        "db2",
        MasterView {
            probe_ok: false,
            io_thread: ThreadState::Running,
            io_idle_ms: Some(WINDOW - 1),
            ..lost_db1()
        },
    );
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::UnreachableFromManagerOnly);
    assert_evidence(&a, "db2 still reaches db1");
}

#[test]
fn replica_io_thread_idle_for_the_window_confirms() {
    let mut snap = host_lost(WINDOW);
    let idle = MasterView {
        io_thread: ThreadState::Running,
        io_idle_ms: Some(WINDOW),
        ..lost_db1()
    };
    set_view(&mut snap, "db2", idle.clone());
    set_view(&mut snap, "db3", idle);
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert_evidence(&a, "db2 confirms db1 unreachable");
}

#[test]
fn replica_io_thread_running_with_unknown_idle_confirms() {
    let mut snap = host_lost(WINDOW);
    set_view(
        &mut snap,
        "db2",
        MasterView {
            io_thread: ThreadState::Running,
            io_idle_ms: None,
            ..lost_db1()
        },
    );
    assert_eq!(run(&snap).verdict, Verdict::DeadMaster);
}

#[test]
fn replica_io_thread_stopped_confirms() {
    let mut snap = host_lost(WINDOW);
    set_view(
        &mut snap,
        "db2",
        MasterView {
            io_thread: ThreadState::Stopped,
            ..lost_db1()
        },
    );
    assert_eq!(run(&snap).verdict, Verdict::DeadMaster);
}

#[test]
fn all_replicas_confirm_but_manager_failing_less_than_window_is_suspect() {
    let a = run(&host_lost(WINDOW - 1));
    assert_eq!(a.verdict, Verdict::Suspect);
    assert!(!a.verdict.is_dead());
    assert_evidence(&a, "manager probe of db1 failing for 999 ms");
    assert_evidence(&a, "db2 confirms db1 unreachable");
    assert_evidence(&a, "db3 confirms db1 unreachable");
}

#[test]
fn all_replicas_confirm_exactly_at_the_window_is_dead_master() {
    let a = run(&host_lost(WINDOW));
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert_eq!(a.master.as_deref(), Some("db1"));
    assert_evidence(
        &a,
        "manager probe of db1 failing for 1000 ms: connect timed out",
    );
    assert_evidence(&a, "db1's agent silent for 9000 ms");
    assert_evidence(&a, "db2 confirms db1 unreachable");
    assert_evidence(&a, "db3 confirms db1 unreachable");
}

#[test]
fn all_replicas_confirm_well_after_the_window_is_dead_master() {
    assert_eq!(run(&host_lost(100 * WINDOW)).verdict, Verdict::DeadMaster);
}

#[test]
fn unknown_failing_duration_counts_as_zero() {
    let mut snap = host_lost(WINDOW);
    srv(&mut snap, "db1").manager_probe.failing_for_ms = None;
    assert_eq!(run(&snap).verdict, Verdict::Suspect);
}

#[test]
fn master_agent_that_never_reported_is_silent() {
    let mut snap = host_lost(WINDOW);
    srv(&mut snap, "db1").agent.last_report_age_ms = None;
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert_evidence(&a, "db1's agent silent: never reported");
}

#[test]
fn silent_replica_does_not_block_the_others_confirmation() {
    let mut snap = host_lost(WINDOW);
    agent_silent(&mut snap, "db3");
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert_evidence(&a, "db3: agent silent, cannot testify");
    assert_evidence(&a, "db2 confirms db1 unreachable");
}

#[test]
fn agent_silent_and_every_replica_agent_silent_is_unconfirmable() {
    let mut snap = host_lost(100 * WINDOW);
    agent_silent(&mut snap, "db2");
    agent_silent(&mut snap, "db3");
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::Unconfirmable);
    assert!(!a.verdict.is_dead());
    assert_evidence(&a, "db2: agent silent, cannot testify");
    assert_evidence(&a, "db3: agent silent, cannot testify");
    assert_evidence(&a, "no replica can confirm");
}

#[test]
fn hung_mysqld_with_every_replica_silent_is_unconfirmable() {
    let mut snap = healthy();
    manager_lost(&mut snap, "db1", 100 * WINDOW);
    agent_reads_down(&mut snap, "db1", DownKind::Timeout, "timed out", Some(true));
    agent_silent(&mut snap, "db2");
    agent_silent(&mut snap, "db3");
    assert_eq!(run(&snap).verdict, Verdict::Unconfirmable);
}

#[test]
fn replica_of_another_server_is_ignored() {
    let mut snap = host_lost(WINDOW);
    // db3 replicates from db9, which it reaches: says nothing about db1.
    set_view(
        &mut snap,
        "db3",
        MasterView {
            master_address: "db9:3306".into(),
            ..sees_db1()
        },
    );
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert!(!evidence_mentions(&a, "db3"), "{:#?}", a.evidence);
    assert_evidence(&a, "db2 confirms db1 unreachable");
}

#[test]
fn replica_without_source_is_ignored() {
    let mut snap = host_lost(WINDOW);
    srv(&mut snap, "db3").agent.master_view = None;
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::DeadMaster);
    assert!(!evidence_mentions(&a, "db3"), "{:#?}", a.evidence);
}

#[test]
fn only_unrelated_replicas_is_unconfirmable() {
    let mut snap = host_lost(100 * WINDOW);
    for name in ["db2", "db3"] {
        set_view(
            &mut snap,
            name,
            MasterView {
                master_address: "db9:3306".into(),
                ..sees_db1()
            },
        );
    }
    let a = run(&snap);
    assert_eq!(a.verdict, Verdict::Unconfirmable);
    assert_evidence(&a, "no replica can confirm");
}

#[test]
fn master_without_replicas_is_unconfirmable() {
    let mut snap = host_lost(100 * WINDOW);
    snap.servers.retain(|s| s.name == "db1");
    assert_eq!(run(&snap).verdict, Verdict::Unconfirmable);
}

// ------------------------------------------------------------------ Verdict

#[test]
fn only_dead_verdicts_call_for_failover() {
    let all = [
        (Verdict::Healthy, false),
        (Verdict::NoMasterKnown, false),
        (Verdict::UnreachableFromManagerOnly, false),
        (Verdict::Suspect, false),
        (Verdict::Unconfirmable, false),
        (Verdict::MysqldDownHostUp, true),
        (Verdict::DeadMaster, true),
    ];
    for (v, dead) in all {
        assert_eq!(v.is_dead(), dead, "{v:?}");
    }
}

#[test]
fn verdict_serializes_in_snake_case() {
    let text = serde_json::to_string(&Verdict::UnreachableFromManagerOnly).unwrap();
    assert_eq!(text, "\"unreachable_from_manager_only\"");
    let back: Verdict = serde_json::from_str("\"mysqld_down_host_up\"").unwrap();
    assert_eq!(back, Verdict::MysqldDownHostUp);
    let a = run(&host_lost(WINDOW));
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["verdict"], "dead_master");
    assert_eq!(json["master"], "db1");
}

// ------------------------------------------------------------------ property

fn thread_state() -> impl Strategy<Value = ThreadState> {
    prop_oneof![
        Just(ThreadState::Running),
        Just(ThreadState::Connecting),
        Just(ThreadState::Stopped),
    ]
}

fn down_kind() -> impl Strategy<Value = DownKind> {
    prop_oneof![
        Just(DownKind::Refused),
        Just(DownKind::Timeout),
        Just(DownKind::Rejected),
        Just(DownKind::Error),
    ]
}

#[derive(Debug, Clone)]
struct ReplicaCase {
    reachable: bool,
    /// 0: replicates from db1 by its address; 1: same host, other port;
    /// 2: from another server; 3: no source.
    source: u8,
    probe_ok: bool,
    io_thread: ThreadState,
    io_idle_ms: Option<u64>,
}

fn replica_case() -> impl Strategy<Value = ReplicaCase> {
    (
        any::<bool>(),
        0u8..4,
        any::<bool>(),
        thread_state(),
        proptest::option::of(0u64..3_000),
    )
        .prop_map(
            |(reachable, source, probe_ok, io_thread, io_idle_ms)| ReplicaCase {
                reachable,
                source,
                probe_ok,
                io_thread,
                io_idle_ms,
            },
        )
}

#[derive(Debug, Clone)]
struct MasterCase {
    probe_ok: bool,
    failing_for_ms: Option<u64>,
    agent_reachable: bool,
    mysqld_up: Option<bool>,
    down_kind: Option<DownKind>,
    process: Option<bool>,
}

fn master_case() -> impl Strategy<Value = MasterCase> {
    (
        any::<bool>(),
        proptest::option::of(0u64..5_000),
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(down_kind()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(probe_ok, failing_for_ms, agent_reachable, mysqld_up, down_kind, process)| {
                MasterCase {
                    probe_ok,
                    failing_for_ms,
                    agent_reachable,
                    mysqld_up,
                    down_kind,
                    process,
                }
            },
        )
}

fn build(master: &MasterCase, replicas: &[ReplicaCase]) -> ClusterSnapshot {
    let mut m = server("db1", Role::Master);
    if !master.probe_ok {
        m.manager_probe.ok = false;
        m.manager_probe.failing_for_ms = master.failing_for_ms;
        m.manager_probe.error = Some("failing".into());
    }
    if master.agent_reachable {
        m.mysqld_up = master.mysqld_up;
        m.agent.mysqld_process = master.process;
        m.agent.down_kind = master.down_kind;
        m.agent.down_error = master.down_kind.map(|k| format!("{k:?}"));
    } else {
        m.host_reachable = false;
        m.mysqld_up = None;
        m.agent.reachable = false;
        m.agent.mysqld_process = None;
        m.agent.down_kind = None;
    }
    let mut servers = vec![m];
    for (i, r) in replicas.iter().enumerate() {
        let mut s = server(&format!("r{i}"), Role::Replica);
        let address = match r.source {
            0 => Some("db1:3306"),
            1 => Some("db1:3307"),
            2 => Some("db9:3306"),
            _ => None,
        };
        if r.reachable {
            s.agent.master_view = address.map(|a| MasterView {
                master_address: a.into(),
                probe_ok: r.probe_ok,
                probe_error: None,
                probe_latency_ms: None,
                io_thread: r.io_thread,
                io_idle_ms: r.io_idle_ms,
            });
        } else {
            s.host_reachable = false;
            s.mysqld_up = None;
            s.agent.reachable = false;
        }
        servers.push(s);
    }
    ClusterSnapshot {
        cluster: "main".into(),
        epoch: 1,
        generated_at_ms: 0,
        master: Some("db1".into()),
        servers,
        problems: Vec::new(),
    }
}

proptest! {
    #[test]
    fn master_someone_reads_is_never_declared_dead(
        master in master_case(),
        replicas in proptest::collection::vec(replica_case(), 0..5),
        window in 0u64..3_000,
    ) {
        let snap = build(&master, &replicas);
        let policy = DetectionPolicy { master_down_after_ms: window };
        let a = analyze(&snap, Some("db1"), policy);
        prop_assert_eq!(a.master.as_deref(), Some("db1"));
        prop_assert!(!a.evidence.is_empty());
        if master.probe_ok {
            prop_assert_eq!(a.verdict, Verdict::Healthy);
        }
        let replica_reaches = snap.servers.iter().skip(1).any(|s| {
            s.host_reachable
                && s.agent
                    .master_view
                    .as_ref()
                    .is_some_and(|v| v.master_address.starts_with("db1:") && v.probe_ok)
        });
        if master.probe_ok || replica_reaches {
            prop_assert!(
                !a.verdict.is_dead(),
                "{:?}: {:#?}",
                a.verdict,
                a.evidence
            );
        }
    }
}
