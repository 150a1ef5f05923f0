//! The topology model: roles derived from facts, the merge of an agent
//! report and a manager probe into one status row (freshness, which facts
//! win, what is known about mysqld and the host), and the cluster snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use myha_core::flavor::{ReplicationStatus, ThreadState};
use myha_core::report::{AgentReport, DownKind, MasterView, MysqldStatus, ServerFacts};
use myha_core::topology::{
    build_snapshot, role_of, server_view, Freshness, HostObservation, ProbeResult, Role,
};

// ------------------------------------------------------------------ builders

const FRESH: Freshness = Freshness {
    agent_stale_after_ms: 5_000,
    probe_stale_after_ms: 3_000,
};

/// A healthy writable MariaDB server that replicates from nobody.
fn facts(server_id: u32) -> ServerFacts {
    ServerFacts {
        gtid_executed: format!("0-1-{}", 100 + server_id),
        ..common::facts(server_id)
    }
}

/// A running GTID replication connection to `host:3306`.
fn repl(host: &str) -> ReplicationStatus {
    common::repl(host)
}

/// A read-only server replicating from `host`.
fn replica(server_id: u32, host: &str) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication: Some(repl(host)),
        ..facts(server_id)
    }
}

fn up(f: ServerFacts) -> MysqldStatus {
    MysqldStatus::Up { facts: Box::new(f) }
}

fn down(kind: DownKind, error: &str) -> MysqldStatus {
    MysqldStatus::Down {
        kind,
        error: error.into(),
    }
}

fn report(host: &str, mysqld: MysqldStatus) -> AgentReport {
    AgentReport {
        cluster: "main".into(),
        host: host.into(),
        agent_version: myha_core::topology::MYHA_VERSION.into(),
        instance: 42,
        seq: 7,
        sampled_at_ms: 1_700_000_000_000,
        sample_ms: 3,
        mysqld,
        mysqld_process: Some(true),
        master_view: None,
        epoch_seen: 9,
    }
}

fn probe(mysqld: MysqldStatus) -> ProbeResult {
    ProbeResult {
        mysqld,
        latency_ms: Some(1.5),
    }
}

fn obs<'a>(
    name: &'a str,
    agent: Option<(&'a AgentReport, u64)>,
    probe: Option<(&'a ProbeResult, u64)>,
) -> HostObservation<'a> {
    HostObservation {
        name,
        address: format!("{name}:3306"),
        agent,
        probe,
        probe_failing_for_ms: None,
    }
}

// ------------------------------------------------------------------ role_of

#[test]
fn role_writable_not_replicating_is_master() {
    assert_eq!(role_of(&facts(1)), Role::Master);
}

#[test]
fn role_read_only_not_replicating_is_unknown() {
    let f = ServerFacts {
        read_only: true,
        ..facts(1)
    };
    assert_eq!(role_of(&f), Role::Unknown);
}

#[test]
fn role_replicating_read_only_is_replica() {
    assert_eq!(role_of(&replica(2, "db1")), Role::Replica);
}

#[test]
fn role_replicating_writable_is_still_replica() {
    let f = ServerFacts {
        read_only: false,
        ..replica(2, "db1")
    };
    assert_eq!(role_of(&f), Role::Replica);
}

#[test]
fn role_connection_without_source_host_is_not_replicating() {
    let mut r = repl("db1");
    r.source_host = String::new();
    let writable = ServerFacts {
        replication: Some(r.clone()),
        ..facts(1)
    };
    assert!(!writable.is_replicating());
    assert_eq!(role_of(&writable), Role::Master);
    let read_only = ServerFacts {
        read_only: true,
        replication: Some(r),
        ..facts(1)
    };
    assert_eq!(role_of(&read_only), Role::Unknown);
}

#[test]
fn role_display() {
    assert_eq!(Role::Master.to_string(), "master");
    assert_eq!(Role::Replica.to_string(), "replica");
    assert_eq!(Role::Unknown.to_string(), "unknown");
}

// ------------------------------------------------------------------ server_view: sources

#[test]
fn fresh_agent_only() {
    let a = report("db2", up(replica(2, "db1")));
    let v = server_view(&obs("db2", Some((&a, 1_000)), None), FRESH);
    assert_eq!(v.name, "db2");
    assert_eq!(v.address, "db2:3306");
    assert_eq!(v.role, Role::Replica);
    assert_eq!(v.mysqld_up, Some(true));
    assert!(v.host_reachable);
    assert_eq!(v.source.as_deref(), Some("agent"));
    assert_eq!(v.age_ms, Some(1_000));
    assert_eq!(v.read_only, Some(true));
    assert_eq!(v.server_id, Some(2));
    assert_eq!(v.gtid_position.as_deref(), Some("0-1-102"));
    assert_eq!(v.io_running, Some(ThreadState::Running));
    assert_eq!(v.sql_running, Some(ThreadState::Running));
    assert_eq!(v.replicates_from.as_deref(), Some("db1:3306"));
    assert_eq!(v.lag_seconds, Some(0.0));
    assert_eq!(v.last_error, None);
    assert_eq!(v.facts.as_ref(), Some(&replica(2, "db1")));

    assert!(v.agent.reachable);
    assert_eq!(v.agent.last_report_age_ms, Some(1_000));
    assert_eq!(v.agent.mysqld_process, Some(true));
    assert_eq!(v.agent.down_kind, None);
    assert_eq!(v.agent.down_error, None);
    assert_eq!(v.agent.epoch_seen, Some(9));

    assert!(!v.manager_probe.ok);
    assert_eq!(v.manager_probe.age_ms, None);
    assert_eq!(v.manager_probe.latency_ms, None);
    assert_eq!(v.manager_probe.error, None);
}

#[test]
fn fresh_probe_only() {
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", None, Some((&p, 500))), FRESH);
    assert_eq!(v.role, Role::Master);
    assert_eq!(v.mysqld_up, Some(true));
    assert!(!v.host_reachable, "no agent: host not reachable");
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(500));
    assert_eq!(v.replicates_from, None);
    assert_eq!(v.io_running, None);
    assert_eq!(v.sql_running, None);
    assert_eq!(v.lag_seconds, None);

    assert!(!v.agent.reachable);
    assert_eq!(v.agent.last_report_age_ms, None);
    assert_eq!(v.agent.mysqld_process, None);
    assert_eq!(v.agent.epoch_seen, None);

    assert!(v.manager_probe.ok);
    assert_eq!(v.manager_probe.age_ms, Some(500));
    assert_eq!(v.manager_probe.latency_ms, Some(1.5));
    assert_eq!(v.manager_probe.error, None);
}

#[test]
fn both_fresh_probe_newer_wins() {
    let a = report("db1", up(facts(1)));
    let newer = ServerFacts {
        gtid_executed: "0-1-200".into(),
        ..facts(1)
    };
    let p = probe(up(newer));
    let v = server_view(&obs("db1", Some((&a, 2_000)), Some((&p, 100))), FRESH);
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(100));
    assert_eq!(v.gtid_position.as_deref(), Some("0-1-200"));
    assert!(v.host_reachable);
    assert!(v.agent.reachable);
    assert!(v.manager_probe.ok);
}

#[test]
fn both_fresh_probe_wins_even_when_the_agent_is_newer() {
    // An agent's report never outranks the manager's own fresh reading:
    // the position moved on between the two reads, which is no
    // disagreement.
    let newer = ServerFacts {
        gtid_executed: "0-1-300".into(),
        ..facts(1)
    };
    let a = report("db1", up(newer));
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", Some((&a, 200)), Some((&p, 2_500))), FRESH);
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(2_500));
    assert_eq!(v.gtid_position.as_deref(), Some("0-1-101"));
    assert!(v.disagreements.is_empty());
}

#[test]
fn both_fresh_same_age_probe_wins() {
    let a = report("db1", up(facts(1)));
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", Some((&a, 700)), Some((&p, 700))), FRESH);
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(700));
    assert!(v.disagreements.is_empty());
}

#[test]
fn agent_down_but_probe_reads_it() {
    let a = report("db1", down(DownKind::Rejected, "Too many connections"));
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", Some((&a, 100)), Some((&p, 900))), FRESH);
    assert_eq!(v.mysqld_up, Some(true), "any fresh read means up");
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(900));
    assert_eq!(v.agent.down_kind, Some(DownKind::Rejected));
    assert_eq!(v.agent.down_error.as_deref(), Some("Too many connections"));
}

// ------------------------------------------------------------------ server_view: freshness

#[test]
fn agent_at_threshold_is_fresh_one_past_is_stale() {
    let a = report("db1", up(facts(1)));
    let at = server_view(&obs("db1", Some((&a, 5_000)), None), FRESH);
    assert!(at.host_reachable);
    assert_eq!(at.mysqld_up, Some(true));
    let past = server_view(&obs("db1", Some((&a, 5_001)), None), FRESH);
    assert!(!past.host_reachable);
    assert_eq!(past.mysqld_up, None);
}

#[test]
fn stale_agent_without_probe_knows_nothing() {
    let mut a = report("db2", up(replica(2, "db1")));
    a.master_view = Some(master_view());
    let v = server_view(&obs("db2", Some((&a, 60_000)), None), FRESH);
    assert!(!v.host_reachable);
    assert_eq!(v.mysqld_up, None);
    assert_eq!(v.role, Role::Unknown);
    assert_eq!(v.source, None);
    assert_eq!(v.age_ms, None);
    assert_eq!(v.read_only, None);
    assert_eq!(v.gtid_position, None);
    assert_eq!(v.server_id, None);
    assert_eq!(v.replicates_from, None);
    assert_eq!(v.facts, None);
    // The stale report's own details are not shown as current...
    assert!(!v.agent.reachable);
    assert_eq!(v.agent.mysqld_process, None);
    assert_eq!(v.agent.master_view, None);
    // ...but its age and the epoch it saw are.
    assert_eq!(v.agent.last_report_age_ms, Some(60_000));
    assert_eq!(v.agent.epoch_seen, Some(9));
}

#[test]
fn stale_agent_with_fresh_probe_takes_probe_facts() {
    let a = report("db1", up(facts(1)));
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", Some((&a, 60_000)), Some((&p, 1_000))), FRESH);
    assert!(!v.host_reachable);
    assert_eq!(v.mysqld_up, Some(true));
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(1_000));
    assert_eq!(v.role, Role::Master);
}

#[test]
fn stale_agent_newer_than_fresh_probe_is_still_ignored() {
    // Thresholds differ: an agent report of 4s is fresh, a probe of 4s is not.
    let a = report("db1", up(facts(1)));
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", Some((&a, 4_000)), Some((&p, 3_500))), FRESH);
    assert_eq!(v.source.as_deref(), Some("agent"));
    assert!(!v.manager_probe.ok, "a stale probe is not ok");
    assert_eq!(v.manager_probe.age_ms, Some(3_500));
    assert_eq!(v.manager_probe.latency_ms, None);
}

#[test]
fn stale_probe_only_knows_nothing() {
    let p = probe(up(facts(1)));
    let v = server_view(&obs("db1", None, Some((&p, 3_001))), FRESH);
    assert_eq!(v.mysqld_up, None);
    assert_eq!(v.source, None);
    assert!(!v.manager_probe.ok);
    assert_eq!(v.manager_probe.age_ms, Some(3_001));
}

#[test]
fn nothing_observed() {
    let v = server_view(&obs("db1", None, None), FRESH);
    assert_eq!(v.mysqld_up, None);
    assert!(!v.host_reachable);
    assert_eq!(v.role, Role::Unknown);
    assert_eq!(v.source, None);
    assert_eq!(v.age_ms, None);
}

// ------------------------------------------------------------------ server_view: mysqld down

#[test]
fn agent_says_refused_means_down_on_a_live_host() {
    let mut a = report(
        "db1",
        down(DownKind::Refused, "Connection refused (os error 111)"),
    );
    a.mysqld_process = Some(false);
    let p = probe(down(DownKind::Refused, "Connection refused"));
    let v = server_view(&obs("db1", Some((&a, 800)), Some((&p, 300))), FRESH);
    assert_eq!(v.mysqld_up, Some(false));
    assert!(v.host_reachable);
    assert_eq!(v.role, Role::Unknown);
    assert_eq!(v.source, None);
    assert_eq!(v.age_ms, None);
    assert_eq!(v.agent.down_kind, Some(DownKind::Refused));
    assert_eq!(
        v.agent.down_error.as_deref(),
        Some("Connection refused (os error 111)")
    );
    assert_eq!(v.agent.mysqld_process, Some(false));
    assert!(!v.manager_probe.ok);
    assert_eq!(v.manager_probe.error.as_deref(), Some("Connection refused"));
}

#[test]
fn agent_says_down_without_probe() {
    let a = report("db1", down(DownKind::Timeout, "query timed out"));
    let v = server_view(&obs("db1", Some((&a, 100)), None), FRESH);
    assert_eq!(v.mysqld_up, Some(false));
    assert!(v.host_reachable);
    assert_eq!(v.agent.down_kind, Some(DownKind::Timeout));
}

#[test]
fn paused_host_is_unknown_not_down() {
    let a = report("db1", up(facts(1)));
    let p = probe(down(DownKind::Timeout, "connect timed out"));
    let v = server_view(&obs("db1", Some((&a, 30_000)), Some((&p, 200))), FRESH);
    assert_eq!(v.mysqld_up, None);
    assert!(!v.host_reachable);
    assert_eq!(v.role, Role::Unknown);
    assert!(!v.manager_probe.ok);
    assert_eq!(v.manager_probe.age_ms, Some(200));
    assert_eq!(v.manager_probe.latency_ms, Some(1.5));
    assert_eq!(v.manager_probe.error.as_deref(), Some("connect timed out"));
    assert_eq!(v.agent.down_kind, None);
}

#[test]
fn probe_refused_alone_does_not_say_down() {
    // Only the host's own agent may declare mysqld down.
    let p = probe(down(DownKind::Refused, "Connection refused"));
    let v = server_view(&obs("db1", None, Some((&p, 200))), FRESH);
    assert_eq!(v.mysqld_up, None);
    assert!(!v.host_reachable);
}

#[test]
fn probe_failing_duration_is_passed_through() {
    let a = report("db1", up(facts(1)));
    let p = probe(down(DownKind::Timeout, "connect timed out"));
    let mut o = obs("db1", Some((&a, 100)), Some((&p, 200)));
    assert_eq!(server_view(&o, FRESH).manager_probe.failing_for_ms, None);
    o.probe_failing_for_ms = Some(12_000);
    let v = server_view(&o, FRESH);
    assert_eq!(v.manager_probe.failing_for_ms, Some(12_000));
    assert_eq!(v.mysqld_up, Some(true), "the fresh agent still reads it");
}

#[test]
fn stale_probe_error_is_still_shown() {
    let a = report("db1", up(facts(1)));
    let p = probe(down(DownKind::Error, "packet out of order"));
    let v = server_view(&obs("db1", Some((&a, 100)), Some((&p, 10_000))), FRESH);
    assert_eq!(v.mysqld_up, Some(true));
    assert!(!v.manager_probe.ok);
    assert_eq!(v.manager_probe.latency_ms, None);
    assert_eq!(
        v.manager_probe.error.as_deref(),
        Some("packet out of order")
    );
}

fn master_view() -> MasterView {
    MasterView {
        master_address: "db1:3306".into(),
        probe_ok: true,
        probe_error: None,
        probe_latency_ms: Some(0.8),
        io_thread: ThreadState::Running,
        io_idle_ms: Some(120),
    }
}

#[test]
fn fresh_agent_master_view_is_passed_through() {
    let mut a = report("db2", up(replica(2, "db1")));
    a.master_view = Some(master_view());
    let v = server_view(&obs("db2", Some((&a, 100)), None), FRESH);
    assert_eq!(v.agent.master_view, Some(master_view()));
}

// ------------------------------------------------------------------ lag

fn lag_of(f: ServerFacts) -> Option<f64> {
    let a = report("db2", up(f.clone()));
    let v = server_view(&obs("db2", Some((&a, 0)), None), FRESH);
    assert_eq!(v.lag_seconds, f.lag_seconds());
    v.lag_seconds
}

#[test]
fn lag_prefers_heartbeat_with_subsecond_precision() {
    let mut f = replica(2, "db1");
    f.heartbeat_lag_ms = Some(1_250);
    f.replication.as_mut().unwrap().seconds_behind_source = Some(7);
    assert_eq!(lag_of(f), Some(1.25));
}

#[test]
fn lag_falls_back_to_seconds_behind_master() {
    let mut f = replica(2, "db1");
    f.replication.as_mut().unwrap().seconds_behind_source = Some(7);
    assert_eq!(lag_of(f), Some(7.0));
}

#[test]
fn lag_heartbeat_when_seconds_behind_master_is_null() {
    let mut f = replica(2, "db1");
    f.heartbeat_lag_ms = Some(40);
    f.replication.as_mut().unwrap().seconds_behind_source = None;
    assert_eq!(lag_of(f), Some(0.04));
}

#[test]
fn lag_unknown_without_heartbeat_and_null_seconds_behind() {
    let mut f = replica(2, "db1");
    f.replication.as_mut().unwrap().sql_thread = ThreadState::Stopped;
    f.replication.as_mut().unwrap().seconds_behind_source = None;
    assert_eq!(lag_of(f), None);
}

#[test]
fn lag_of_a_non_replica_is_none_even_with_heartbeat() {
    let f = ServerFacts {
        heartbeat_lag_ms: Some(100),
        ..facts(1)
    };
    assert_eq!(lag_of(f), None);
}

// ------------------------------------------------------------------ last_error

fn error_of(f: ServerFacts) -> Option<String> {
    let a = report("db2", up(f.clone()));
    let v = server_view(&obs("db2", Some((&a, 0)), None), FRESH);
    assert_eq!(v.last_error, f.last_error());
    v.last_error
}

fn with_errors(io: (u32, &str), sql: (u32, &str)) -> ServerFacts {
    let mut f = replica(2, "db1");
    let r = f.replication.as_mut().unwrap();
    r.last_io_errno = io.0;
    r.last_io_error = io.1.into();
    r.last_sql_errno = sql.0;
    r.last_sql_error = sql.1.into();
    f
}

#[test]
fn last_error_none_when_clean_or_not_a_replica() {
    assert_eq!(error_of(replica(2, "db1")), None);
    assert_eq!(error_of(facts(1)), None);
}

#[test]
fn last_error_io() {
    let f = with_errors(
        (2003, "error reconnecting to master 'repl@db1:3306'"),
        (0, ""),
    );
    assert_eq!(
        error_of(f).as_deref(),
        Some("IO 2003: error reconnecting to master 'repl@db1:3306'")
    );
}

#[test]
fn last_error_sql() {
    let f = with_errors((0, ""), (1062, "Duplicate entry '1' for key 'PRIMARY'"));
    assert_eq!(
        error_of(f).as_deref(),
        Some("SQL 1062: Duplicate entry '1' for key 'PRIMARY'")
    );
}

#[test]
fn last_error_io_comes_before_sql() {
    let f = with_errors((1236, "binlog purged"), (1146, "no such table"));
    assert_eq!(error_of(f).as_deref(), Some("IO 1236: binlog purged"));
}

#[test]
fn last_error_errno_or_message_alone_counts() {
    assert_eq!(
        error_of(with_errors((2013, ""), (0, ""))).as_deref(),
        Some("IO 2013: ")
    );
    assert_eq!(
        error_of(with_errors((0, ""), (0, "worker failed"))).as_deref(),
        Some("SQL 0: worker failed")
    );
}

#[test]
fn replicates_from_ignores_connection_without_host() {
    let mut f = replica(2, "db1");
    f.replication.as_mut().unwrap().source_host = String::new();
    let a = report("db2", up(f));
    let v = server_view(&obs("db2", Some((&a, 0)), None), FRESH);
    assert_eq!(v.replicates_from, None);
    assert_eq!(v.io_running, Some(ThreadState::Running));
}

// ------------------------------------------------------------------ build_snapshot

#[test]
fn snapshot_one_master_two_replicas() {
    let m = report("db1", up(facts(1)));
    let r2 = report("db2", up(replica(2, "db1")));
    let p3 = probe(up(replica(3, "db1")));
    let hosts = [
        obs("db1", Some((&m, 1_000)), None),
        obs("db2", Some((&r2, 1_500)), None),
        obs("db3", None, Some((&p3, 250))),
    ];
    let s = build_snapshot("main", 4, 1_700_000_000_000, &hosts, FRESH);
    assert_eq!(s.cluster, "main");
    assert_eq!(s.epoch, 4);
    assert_eq!(s.generated_at_ms, 1_700_000_000_000);
    assert_eq!(s.master.as_deref(), Some("db1"));
    let names: Vec<&str> = s.servers.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["db1", "db2", "db3"], "configured order kept");
    assert_eq!(s.server("db1").unwrap().role, Role::Master);
    assert_eq!(s.server("db2").unwrap().role, Role::Replica);
    assert_eq!(s.server("db1").unwrap().age_ms, Some(1_000));
    assert_eq!(s.server("db2").unwrap().age_ms, Some(1_500));
    assert_eq!(s.server("db3").unwrap().age_ms, Some(250));
    assert_eq!(s.server("db3").unwrap().source.as_deref(), Some("manager"));
    assert!(s.server("db4").is_none());
    // db3 has no agent: the only problem.
    assert_eq!(s.problems, ["db3: agent not reporting"]);
}

#[test]
fn snapshot_healthy_has_no_problems() {
    let m = report("db1", up(facts(1)));
    let r2 = report("db2", up(replica(2, "db1")));
    let hosts = [
        obs("db1", Some((&m, 0)), None),
        obs("db2", Some((&r2, 0)), None),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master.as_deref(), Some("db1"));
    assert!(s.problems.is_empty(), "{:?}", s.problems);
}

#[test]
fn snapshot_no_master() {
    let m = report(
        "db1",
        up(ServerFacts {
            read_only: true,
            ..facts(1)
        }),
    );
    let r2 = report("db2", up(replica(2, "db1")));
    let hosts = [
        obs("db1", Some((&m, 0)), None),
        obs("db2", Some((&r2, 0)), None),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master, None);
    assert_eq!(s.server("db1").unwrap().role, Role::Unknown);
    assert_eq!(s.problems, ["no writable master is visible"]);
}

#[test]
fn snapshot_unreachable_master_is_no_master() {
    let m = report("db1", up(facts(1)));
    let r2 = report("db2", up(replica(2, "db1")));
    let hosts = [
        obs("db1", Some((&m, 99_000)), None),
        obs("db2", Some((&r2, 0)), None),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master, None);
    assert_eq!(
        s.problems,
        ["no writable master is visible", "db1: agent not reporting"]
    );
}

#[test]
fn snapshot_two_writable_masters() {
    let m1 = report("db1", up(facts(1)));
    let m2 = report("db2", up(facts(2)));
    let r3 = report("db3", up(replica(3, "db1")));
    let hosts = [
        obs("db1", Some((&m1, 0)), None),
        obs("db2", Some((&m2, 0)), None),
        obs("db3", Some((&r3, 0)), None),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master, None);
    assert_eq!(
        s.problems,
        ["2 writable servers that replicate from nobody: db1, db2"]
    );
}

#[test]
fn snapshot_reports_down_mysqld_and_replication_error() {
    let m = report("db1", up(facts(1)));
    let r2 = report("db2", down(DownKind::Refused, "Connection refused"));
    let r3 = report("db3", up(with_errors((0, ""), (1062, "Duplicate entry"))));
    let hosts = [
        obs("db1", Some((&m, 0)), None),
        obs("db2", Some((&r2, 0)), None),
        obs("db3", Some((&r3, 0)), None),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master.as_deref(), Some("db1"));
    assert_eq!(
        s.problems,
        [
            "db2: mysqld is down (host up)",
            "db3: replication error: SQL 1062: Duplicate entry",
        ]
    );
}

#[test]
fn snapshot_of_nothing() {
    let s = build_snapshot("empty", 0, 5, &[], FRESH);
    assert!(s.servers.is_empty());
    assert_eq!(s.master, None);
    assert_eq!(s.problems, ["no writable master is visible"]);
}

#[test]
fn problems_are_values_shown_and_serialized_as_sentences() {
    use myha_core::topology::{build_snapshot_with_problems, Problem};
    let m1 = report("db1", up(facts(1)));
    let m2 = report("db2", up(facts(2)));
    let hosts = [
        obs("db1", Some((&m1, 0)), None),
        obs("db2", Some((&m2, 0)), None),
    ];
    let (s, problems) = build_snapshot_with_problems("main", 1, 0, &hosts, FRESH);
    assert_eq!(
        problems,
        [Problem::SeveralWritable {
            servers: vec!["db1".into(), "db2".into()]
        }]
    );
    assert_eq!(
        s.problems,
        ["2 writable servers that replicate from nobody: db1, db2"]
    );
    let p = Problem::Diverged {
        server: "db3".into(),
        gtids: vec!["0-3-5".into(), "0-3-6".into()],
    };
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        "\"db3: diverged, it has 0-3-5,0-3-6 the master lacks: kept read-only and out; `myha rejoin db3 --force` discards them (see docs/failover.md, section Rejoin)\""
    );
    assert_eq!(
        Problem::Errant {
            server: "db2".into(),
            gtids: vec!["0-2-1".into()]
        }
        .to_string(),
        "db2: errant transactions 0-2-1 (written on the replica itself): it cannot be promoted until they are resolved"
    );
    assert_eq!(
        Problem::FormerMasterWritable {
            server: "db1".into()
        }
        .to_string(),
        "db1: former master is WRITABLE: being fenced by its agent"
    );
    let mut s = s;
    s.set_problems(&[Problem::NoMaster]);
    assert_eq!(s.problems, ["no writable master is visible"]);
}

#[test]
fn an_agent_of_another_version_is_a_problem() {
    let m = report("db1", up(facts(1)));
    let mut r2 = report("db2", up(replica(2, "db1")));
    r2.agent_version = "0.0.9".into();
    let hosts = [
        obs("db1", Some((&m, 100)), None),
        obs("db2", Some((&r2, 100)), None),
    ];
    let s = build_snapshot("main", 4, 1_700_000_000_000, &hosts, FRESH);
    assert_eq!(
        s.server("db2").unwrap().agent.version.as_deref(),
        Some("0.0.9")
    );
    assert_eq!(
        s.problems,
        [format!(
            "db2: its agent runs myha 0.0.9, the manager {}: finish the upgrade",
            myha_core::topology::MYHA_VERSION
        )]
    );
}

// ------------------------------------------------------ material changes

#[test]
fn positions_lag_and_clocks_are_not_material() {
    let a = replica(2, "db1");
    let mut b = a.clone();
    b.gtid_executed = "0-1-999".into();
    b.gtid_binlog_state = "0-1-999".into();
    b.heartbeat_lag_ms = Some(12_000);
    b.clock_unix_us += 1_000_000;
    if let Some(r) = b.replication.as_mut() {
        r.seconds_behind_source = Some(40);
        r.retrieved_gtids = "0-1-1000".into();
        r.read_source_log_pos += 1;
    }
    assert!(!b.differs_materially(&a));
    assert!(!up(b.clone()).differs_materially(&up(a.clone())));
    let mut r = report("db2", up(b));
    r.seq += 1;
    r.sampled_at_ms += 250;
    assert!(!r.differs_materially(&report("db2", up(a))));
}

#[test]
fn what_detection_weighs_is_material() {
    let a = replica(2, "db1");
    type Change = Box<dyn Fn(&mut ServerFacts)>;
    let changed: Vec<(&str, Change)> = vec![
        ("read_only", Box::new(|f| f.read_only = false)),
        ("server_id", Box::new(|f| f.server_id = 9)),
        (
            "semi_sync_master",
            Box::new(|f| f.semi_sync_master = !f.semi_sync_master),
        ),
        ("replication gone", Box::new(|f| f.replication = None)),
        (
            "io thread",
            Box::new(|f| {
                if let Some(r) = f.replication.as_mut() {
                    r.io_thread = ThreadState::Connecting;
                }
            }),
        ),
        (
            "sql error",
            Box::new(|f| {
                if let Some(r) = f.replication.as_mut() {
                    r.last_sql_errno = 1062;
                }
            }),
        ),
        (
            "source",
            Box::new(|f| {
                if let Some(r) = f.replication.as_mut() {
                    r.source_host = "db3".into();
                }
            }),
        ),
    ];
    for (what, change) in changed {
        let mut b = a.clone();
        change(&mut b);
        assert!(b.differs_materially(&a), "{what}");
    }
    // Up against down, and the kind of down.
    let d = down(DownKind::Refused, "refused");
    assert!(d.differs_materially(&up(a.clone())));
    assert!(up(a.clone()).differs_materially(&d));
    assert!(!down(DownKind::Refused, "other text").differs_materially(&d));
    assert!(down(DownKind::Timeout, "t").differs_materially(&d));
    // The agent's own fields.
    let base = report("db2", up(a.clone()));
    let mut r = base.clone();
    r.instance += 1;
    assert!(r.differs_materially(&base), "instance");
    let mut r = base.clone();
    r.epoch_seen += 1;
    assert!(r.differs_materially(&base), "epoch");
    let mut r = base.clone();
    r.mysqld_process = Some(false);
    assert!(r.differs_materially(&base), "process");
    let view = |ok| MasterView {
        master_address: "db1:3306".into(),
        probe_ok: ok,
        probe_error: None,
        probe_latency_ms: Some(0.5),
        io_thread: ThreadState::Running,
        io_idle_ms: Some(10),
    };
    let mut with = base.clone();
    with.master_view = Some(view(true));
    assert!(with.differs_materially(&base), "master view appears");
    let mut failing = with.clone();
    failing.master_view = Some(view(false));
    assert!(failing.differs_materially(&with), "master probe fails");
    let mut idle = with.clone();
    if let Some(v) = idle.master_view.as_mut() {
        v.io_idle_ms = Some(900);
        v.probe_latency_ms = Some(3.0);
    }
    assert!(!idle.differs_materially(&with), "latency and idle time");
}

// ------------------------------------------------------------ wire format

/// A report's `mysqld` is read as the tagged object it is written as,
/// whatever the order of its fields, ignoring fields it does not know, and
/// a missing field is an error naming it.
#[test]
fn mysqld_status_reads_what_it_writes() {
    for status in [
        up(replica(2, "db1")),
        down(DownKind::Refused, "connection refused"),
    ] {
        let r = report("db2", status);
        let text = serde_json::to_string(&r).unwrap();
        let back: AgentReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
    let tagged_last: MysqldStatus =
        serde_json::from_str(r#"{"kind":"timeout","error":"x","later":1,"state":"down"}"#).unwrap();
    assert_eq!(tagged_last, down(DownKind::Timeout, "x"));
    let missing = serde_json::from_str::<MysqldStatus>(r#"{"state":"up"}"#)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing field `facts`"), "{missing}");
    let missing = serde_json::from_str::<MysqldStatus>(r#"{"state":"down","kind":"refused"}"#)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing field `error`"), "{missing}");
    let unknown = serde_json::from_str::<MysqldStatus>(r#"{"state":"sleeping"}"#)
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("sleeping"), "{unknown}");
}
