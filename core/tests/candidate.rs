//! Candidate choice: the most advanced healthy replica wins, ties broken by
//! configuration; each exclusion rule, alone, excludes with its reason;
//! errant transactions are those only the replica itself has; the GTID
//! sets a choice is taken over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use myha_core::candidate::{
    choose, errant_gtids, executed_set, final_set, received_set, CandidateChoice, CandidateInput,
    CandidateServer, Exclusion,
};
use myha_core::flavor::{Flavor, GtidMode, ReplicationStatus, ThreadState};
use myha_core::report::ServerFacts;
use myha_core::topology::{role_of, Role, ServerView};

// ------------------------------------------------------------------ builders

const UUID1: &str = "11111111-1111-1111-1111-111111111111";
const UUID2: &str = "22222222-2222-2222-2222-222222222222";
const UUID3: &str = "33333333-3333-3333-3333-333333333333";
const UUID4: &str = "44444444-4444-4444-4444-444444444444";

/// A healthy writable MariaDB server that replicates from nobody, having
/// executed `0-1-1..0-1-100` (all written by server 1).
fn facts(server_id: u32) -> ServerFacts {
    common::facts(server_id)
}

/// A running GTID replication connection to `host:3306`, server_id 1.
fn repl(host: &str) -> ReplicationStatus {
    ReplicationStatus {
        io_thread: ThreadState::Connecting,
        io_state: "Reconnecting after a failed master event read".into(),
        last_io_errno: 2003,
        last_io_error: "error reconnecting to master".into(),
        ..common::repl(host)
    }
}

/// A read-only replica of db1 (now dead) that has executed and received
/// everything up to `0-1-seq`.
fn replica(server_id: u32, seq: u64) -> ServerFacts {
    let mut f = ServerFacts {
        read_only: true,
        replication: Some(repl("db1")),
        ..facts(server_id)
    };
    at(&mut f, seq);
    f
}

/// Executed and received everything up to `0-1-seq`.
fn at(f: &mut ServerFacts, seq: u64) {
    let pos = format!("0-1-{seq}");
    f.gtid_executed = pos.clone();
    f.gtid_binlog_state = pos.clone();
    f.gtid_slave_pos = pos.clone();
    if let Some(r) = f.replication.as_mut() {
        r.retrieved_gtids = pos.clone();
        r.executed_gtids = Some(pos);
    }
}

fn repl_mut(f: &mut ServerFacts) -> &mut ReplicationStatus {
    f.replication.as_mut().expect("not a replica")
}

/// A status row for a server whose agent reads mysqld.
fn view(name: &str, f: Option<ServerFacts>) -> ServerView {
    let repl = f.as_ref().and_then(|f| f.replication.clone());
    ServerView {
        name: name.into(),
        address: format!("{name}:3306"),
        role: f.as_ref().map_or(Role::Unknown, role_of),
        mysqld_up: Some(true),
        host_reachable: true,
        read_only: f.as_ref().map(|f| f.read_only),
        gtid_position: f.as_ref().map(|f| f.gtid_executed.clone()),
        io_running: repl.as_ref().map(|r| r.io_thread),
        sql_running: repl.as_ref().map(|r| r.sql_thread),
        last_error: f.as_ref().and_then(ServerFacts::last_error),
        lag_seconds: f.as_ref().and_then(ServerFacts::lag_seconds),
        age_ms: Some(200),
        source: Some("agent".into()),
        replicates_from: repl.map(|r| format!("{}:{}", r.source_host, r.source_port)),
        server_id: f.as_ref().map(|f| f.server_id),
        errant: Vec::new(),
        diverged_gtids: Vec::new(),
        disagreements: Vec::new(),
        agent: common::agent_ok(),
        manager_probe: common::probe_ok(),
        facts: f,
    }
}

fn cand(name: &str, f: ServerFacts) -> CandidateServer {
    CandidateServer {
        view: view(name, Some(f)),
        candidate_master: false,
        no_master: false,
        priority: 0,
    }
}

/// The old master db1 (dead) and its last known facts; the given replicas.
fn input(servers: Vec<CandidateServer>) -> CandidateInput {
    CandidateInput {
        old_master: "db1".into(),
        servers,
        known_facts: vec![("db1".into(), facts(1))],
        max_lag_seconds: 30.0,
        forced: None,
    }
}

fn srv<'a>(input: &'a mut CandidateInput, name: &str) -> &'a mut CandidateServer {
    input
        .servers
        .iter_mut()
        .find(|s| s.view.name == name)
        .expect("no such server")
}

fn facts_of<'a>(input: &'a mut CandidateInput, name: &str) -> &'a mut ServerFacts {
    srv(input, name).view.facts.as_mut().expect("no facts")
}

fn reason_of<'a>(choice: &'a CandidateChoice, name: &str) -> &'a str {
    choice
        .excluded
        .iter()
        .find(|e| e.server == name)
        .map(|e| e.reason.as_str())
        .unwrap_or_else(|| panic!("{name} not excluded: {choice:#?}"))
}

fn not_excluded(choice: &CandidateChoice, name: &str) -> bool {
    choice.excluded.iter().all(|e| e.server != name)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn gtids(s: &str) -> myha_core::gtid::GtidSet {
    s.parse().unwrap()
}

// ------------------------------------------------------------------ ranking

#[test]
fn executed_includes_a_position_set_after_reset_master() {
    // After `rejoin --force` (RESET MASTER, gtid_slave_pos set): the
    // heartbeat domain is only in gtid_slave_pos until its next event.
    let mut f = replica(2, 100);
    f.gtid_executed = "0-1-100".into();
    f.gtid_slave_pos = "0-1-90,1000000001-1-40".into();
    let exec = myha_core::candidate::executed_set(&f).unwrap();
    assert!(gtids("0:1-100,1000000001:1-40").is_subset(&exec), "{exec}");
    assert!(!gtids("0:101").is_subset(&exec));
}

#[test]
fn most_advanced_wins() {
    let choice = choose(&input(vec![
        cand("db2", replica(2, 98)),
        cand("db3", replica(3, 100)),
        cand("db4", replica(4, 99)),
    ]));
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.ranking, names(&["db3", "db4", "db2"]));
    assert_eq!(choice.catch_up_from, None);
    assert_eq!(choice.catch_up_gtids, None);
    assert_eq!(choice.excluded, Vec::<Exclusion>::new());
    assert_eq!(choice.blocker, None);
}

#[test]
fn more_advanced_beats_candidate_master_and_priority() {
    let mut inp = input(vec![
        cand("db2", replica(2, 99)),
        cand("db3", replica(3, 100)),
    ]);
    srv(&mut inp, "db2").candidate_master = true;
    srv(&mut inp, "db2").priority = 100;
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.ranking, names(&["db3", "db2"]));
}

#[test]
fn tie_broken_by_candidate_master() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    srv(&mut inp, "db2").priority = 10;
    srv(&mut inp, "db3").candidate_master = true;
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.ranking, names(&["db3", "db2"]));
    assert_eq!(
        choice.catch_up_from, None,
        "equal sets: nothing to catch up"
    );
}

#[test]
fn tie_broken_by_priority() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
        cand("db4", replica(4, 100)),
    ]);
    for n in ["db2", "db3", "db4"] {
        srv(&mut inp, n).candidate_master = true;
    }
    srv(&mut inp, "db3").priority = 5;
    srv(&mut inp, "db4").priority = 7;
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db4"));
    assert_eq!(choice.ranking, names(&["db4", "db3", "db2"]));
}

#[test]
fn tie_broken_by_configuration_order() {
    let choice = choose(&input(vec![
        cand("db4", replica(4, 100)),
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]));
    assert_eq!(choice.chosen.as_deref(), Some("db4"));
    assert_eq!(choice.most_advanced.as_deref(), Some("db4"));
    assert_eq!(choice.ranking, names(&["db4", "db2", "db3"]));
}

/// A replica that has also received the dead master's heartbeats up to
/// `1000000001-1-hb` (myha's heartbeat domain of server 1).
fn replica_hb(server_id: u32, seq: u64, hb: u64) -> ServerFacts {
    let mut f = replica(server_id, seq);
    let pos = format!("0-1-{seq},1000000001-1-{hb}");
    f.gtid_executed = pos.clone();
    f.gtid_binlog_state = pos.clone();
    f.gtid_slave_pos = pos.clone();
    let r = repl_mut(&mut f);
    r.retrieved_gtids = pos.clone();
    r.executed_gtids = Some(pos);
    f
}

#[test]
fn a_lead_in_heartbeats_only_does_not_change_the_choice() {
    // db3 has received one heartbeat more than db2: the same data. The
    // choice stays with configuration order, and db2 catches up the
    // heartbeat from db3 so that db3 can replicate from it afterwards.
    let choice = choose(&input(vec![
        cand("db2", replica_hb(2, 100, 6)),
        cand("db3", replica_hb(3, 100, 7)),
    ]));
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    assert_eq!(choice.ranking, names(&["db2", "db3"]));
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_gtids.as_deref(), Some("1000000001:7"));
}

#[test]
fn a_lead_in_data_wins_over_a_lead_in_heartbeats() {
    let choice = choose(&input(vec![
        cand("db2", replica_hb(2, 100, 9)),
        cand("db3", replica_hb(3, 101, 9)),
        cand("db4", replica_hb(4, 99, 12)),
    ]));
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.ranking, names(&["db3", "db2", "db4"]));
}

#[test]
fn equal_heartbeats_and_data_need_no_catch_up() {
    let mut inp = input(vec![
        cand("db2", replica_hb(2, 100, 7)),
        cand("db3", replica_hb(3, 100, 7)),
    ]);
    srv(&mut inp, "db3").priority = 1;
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from, None);
}

// ------------------------------------------------------------------ exclusions

#[test]
fn lagging_replica_excluded_with_reason() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    repl_mut(facts_of(&mut inp, "db2")).seconds_behind_source = Some(120);
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(reason_of(&choice, "db2"), "lagging 120 s > max_lag 30 s");
    assert_eq!(choice.ranking, names(&["db3"]));
}

#[test]
fn lag_equal_to_max_lag_is_allowed() {
    let mut inp = input(vec![cand("db2", replica(2, 100))]);
    repl_mut(facts_of(&mut inp, "db2")).seconds_behind_source = Some(30);
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    assert!(choice.excluded.is_empty(), "{choice:#?}");
}

#[test]
fn lagging_but_most_advanced_replica_is_the_catch_up_source() {
    let mut inp = input(vec![
        cand("db2", replica(2, 97)),
        cand("db3", replica(3, 100)),
    ]);
    repl_mut(facts_of(&mut inp, "db3")).seconds_behind_source = Some(3_600);
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_gtids.as_deref(), Some("0:98-100"));
}

#[test]
fn sql_thread_stopped_with_unapplied_relay_log_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 99)),
        cand("db3", replica(3, 100)),
    ]);
    let f = facts_of(&mut inp, "db3");
    f.gtid_executed = "0-1-95".into();
    f.gtid_binlog_state = "0-1-95".into();
    f.gtid_slave_pos = "0-1-95".into();
    let r = repl_mut(f);
    r.sql_thread = ThreadState::Stopped;
    r.seconds_behind_source = None;
    let choice = choose(&inp);
    assert_eq!(
        reason_of(&choice, "db3"),
        "SQL thread not running with unapplied relay log (lagging)"
    );
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    // What it received still counts: it is the one to catch up from.
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_gtids.as_deref(), Some("0:100"));
}

#[test]
fn sql_thread_stopped_without_unapplied_relay_log_allowed() {
    let mut inp = input(vec![
        cand("db2", replica(2, 99)),
        cand("db3", replica(3, 100)),
    ]);
    let r = repl_mut(facts_of(&mut inp, "db3"));
    r.sql_thread = ThreadState::Stopped;
    r.seconds_behind_source = None;
    let choice = choose(&inp);
    assert!(not_excluded(&choice, "db3"), "{choice:#?}");
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

#[test]
fn no_master_excluded_but_used_to_catch_up_when_more_advanced() {
    let mut inp = input(vec![
        cand("db2", replica(2, 97)),
        cand("db3", replica(3, 100)),
    ]);
    srv(&mut inp, "db3").no_master = true;
    srv(&mut inp, "db3").candidate_master = true;
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db3"), "no_master is set");
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    assert_eq!(choice.ranking, names(&["db2"]));
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_gtids.as_deref(), Some("0:98-100"));
}

#[test]
fn no_master_not_more_advanced_is_no_catch_up_source() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    srv(&mut inp, "db2").no_master = true;
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from, None);
    assert_eq!(choice.catch_up_gtids, None);
}

#[test]
fn log_bin_off_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    facts_of(&mut inp, "db2").log_bin = false;
    let choice = choose(&inp);
    assert_eq!(
        reason_of(&choice, "db2"),
        "log_bin or log_slave_updates is OFF"
    );
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

#[test]
fn log_slave_updates_off_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    facts_of(&mut inp, "db2").log_slave_updates = false;
    let choice = choose(&inp);
    assert_eq!(
        reason_of(&choice, "db2"),
        "log_bin or log_slave_updates is OFF"
    );
    assert_eq!(choice.ranking, names(&["db3"]));
}

#[test]
fn sql_error_excluded_and_not_a_catch_up_source() {
    let mut inp = input(vec![
        cand("db2", replica(2, 97)),
        cand("db3", replica(3, 100)),
    ]);
    let r = repl_mut(facts_of(&mut inp, "db3"));
    r.sql_thread = ThreadState::Stopped;
    r.last_sql_errno = 1062;
    r.last_sql_error = "Duplicate entry '7' for key 'PRIMARY'".into();
    let choice = choose(&inp);
    let reason = reason_of(&choice, "db3");
    assert!(
        reason.starts_with("replication broken: SQL error 1062"),
        "{reason}"
    );
    assert!(reason.contains("Duplicate entry"), "{reason}");
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    assert_eq!(choice.most_advanced.as_deref(), Some("db2"));
    assert_eq!(choice.catch_up_from, None);
}

#[test]
fn io_error_from_the_dead_master_does_not_exclude() {
    // Every replica of a dead master has an IO error: that is expected.
    let choice = choose(&input(vec![cand("db2", replica(2, 100))]));
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
}

#[test]
fn mysqld_down_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    let v = &mut srv(&mut inp, "db2").view;
    v.mysqld_up = Some(false);
    v.facts = None;
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db2"), "mysqld is down");
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
}

#[test]
fn host_unreachable_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    let v = &mut srv(&mut inp, "db2").view;
    v.mysqld_up = None;
    v.host_reachable = false;
    v.facts = None;
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db2"), "host unreachable");
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

#[test]
fn stale_facts_of_an_unreachable_host_do_not_count() {
    // Facts kept in the row, but the host is unreachable: excluded.
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    let v = &mut srv(&mut inp, "db2").view;
    v.mysqld_up = None;
    v.host_reachable = false;
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db2"), "host unreachable");
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from, None);
}

#[test]
fn writable_server_that_replicates_from_nobody_excluded() {
    let mut inp = input(vec![cand("db2", facts(2)), cand("db3", replica(3, 100))]);
    at(facts_of(&mut inp, "db2"), 100);
    assert_eq!(srv(&mut inp, "db2").view.role, Role::Master);
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db2"), "not a replica (role master)");
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

#[test]
fn server_without_facts_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    srv(&mut inp, "db2").view.facts = None;
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db2"), "no facts reported");
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

#[test]
fn unreadable_gtid_state_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    facts_of(&mut inp, "db2").gtid_binlog_state = "not a gtid".into();
    let choice = choose(&inp);
    assert!(
        reason_of(&choice, "db2").starts_with("unreadable GTID state"),
        "{choice:#?}"
    );
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

#[test]
fn unreadable_state_of_another_server_vouches_for_nothing() {
    // The dead master's last facts are garbage: the replicas stay eligible.
    let mut inp = input(vec![cand("db2", replica(2, 100))]);
    inp.known_facts[0].1.gtid_binlog_state = "garbage".into();
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db2"), "{choice:#?}");

    let bad = ServerFacts {
        gtid_binlog_state: "garbage".into(),
        ..facts(1)
    };
    let mine = ServerFacts {
        gtid_binlog_state: "0-1-100,0-3-101".into(),
        ..replica(3, 100)
    };
    assert_eq!(errant_gtids(&mine, &[&bad]).unwrap(), vec!["0-3-101"]);
    assert!(errant_gtids(&replica(3, 100), &[&bad]).unwrap().is_empty());
    assert!(errant_gtids(&bad, &[&mine]).is_err());

    let bad = mysql_facts(UUID1, "garbage");
    let mine = mysql_replica(
        3,
        UUID3,
        &format!("{UUID1}:1-100,{UUID3}:1-2"),
        &format!("{UUID1}:1-100"),
    );
    assert_eq!(
        errant_gtids(&mine, &[&bad]).unwrap(),
        vec![format!("{UUID3}:1-2")]
    );
    assert!(errant_gtids(&bad, &[&mine]).is_err());
}

#[test]
fn unreadable_gtid_position_excluded() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    repl_mut(facts_of(&mut inp, "db2")).retrieved_gtids = "0-1".into();
    let choice = choose(&inp);
    assert!(
        reason_of(&choice, "db2").starts_with("unreadable GTID position"),
        "{choice:#?}"
    );
}

#[test]
fn each_server_is_excluded_once() {
    let mut inp = input(vec![cand("db2", replica(2, 100))]);
    let f = facts_of(&mut inp, "db2");
    f.log_bin = false;
    repl_mut(f).seconds_behind_source = Some(999);
    srv(&mut inp, "db2").no_master = true;
    let choice = choose(&inp);
    assert_eq!(choice.excluded.len(), 1, "{choice:#?}");
    assert_eq!(reason_of(&choice, "db2"), "no_master is set");
}

// ------------------------------------------------------------------ errant transactions

#[test]
fn replica_with_own_unknown_writes_is_errant() {
    let mut inp = input(vec![
        cand("db2", replica(2, 99)),
        cand("db3", replica(3, 100)),
    ]);
    let f = facts_of(&mut inp, "db3");
    f.gtid_executed = "0-3-101".into();
    f.gtid_binlog_state = "0-1-100,0-3-101".into();
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db3"), "errant transactions: 0-3-101");
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    // An errant replica is no source of events either.
    assert_eq!(choice.most_advanced.as_deref(), Some("db2"));
    assert_eq!(choice.catch_up_from, None);
}

#[test]
fn own_writes_beyond_what_others_have_are_errant() {
    let db2 = ServerFacts {
        gtid_binlog_state: "0-1-100,0-2-40".into(),
        ..replica(2, 100)
    };
    let db3 = ServerFacts {
        gtid_binlog_state: "0-1-100,0-3-12".into(),
        ..replica(3, 100)
    };
    let mine = ServerFacts {
        gtid_binlog_state: "0-1-100,0-3-15".into(),
        ..replica(3, 100)
    };
    assert_eq!(errant_gtids(&mine, &[&db2]).unwrap(), vec!["0-3-15"]);
    assert_eq!(errant_gtids(&mine, &[&db2, &db3]).unwrap(), vec!["0-3-15"]);
    assert!(errant_gtids(&db3, &[&mine]).unwrap().is_empty());
}

#[test]
fn former_master_writes_others_have_are_not_errant() {
    // db3 was master once (server_id 3, wrote 0-3-1..40), then db1.
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    facts_of(&mut inp, "db2").gtid_binlog_state = "0-1-100,0-3-40".into();
    facts_of(&mut inp, "db3").gtid_binlog_state = "0-1-100,0-3-40".into();
    inp.known_facts[0].1.gtid_binlog_state = "0-1-100,0-3-40".into();
    let choice = choose(&inp);
    assert!(choice.excluded.is_empty(), "{choice:#?}");
    assert_eq!(choice.ranking, names(&["db2", "db3"]));
}

#[test]
fn entries_of_other_origins_are_never_errant() {
    // db3 alone has 0-7-5, written by some server 7: replicated, not local.
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    facts_of(&mut inp, "db3").gtid_binlog_state = "0-1-100,0-7-5,1-9-3".into();
    let choice = choose(&inp);
    assert!(not_excluded(&choice, "db3"), "{choice:#?}");
    let f = replica(3, 100);
    let mine = ServerFacts {
        gtid_binlog_state: "0-1-100,0-7-5,1-9-3".into(),
        ..f
    };
    assert!(errant_gtids(&mine, &[]).unwrap().is_empty());
}

#[test]
fn known_facts_of_a_dead_server_count_as_others() {
    // Only the dead db1 still has db3's writes from when db3 was master.
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    facts_of(&mut inp, "db3").gtid_binlog_state = "0-1-100,0-3-40".into();
    inp.known_facts[0].1.gtid_binlog_state = "0-1-100,0-3-40".into();
    let choice = choose(&inp);
    assert!(not_excluded(&choice, "db3"), "{choice:#?}");

    inp.known_facts.clear();
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db3"), "errant transactions: 0-3-40");
}

#[test]
fn own_known_facts_do_not_vouch_for_a_server() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    facts_of(&mut inp, "db3").gtid_binlog_state = "0-1-100,0-3-101".into();
    let own = inp.servers[1].view.facts.clone().unwrap();
    inp.known_facts.push(("db3".into(), own));
    let choice = choose(&inp);
    assert_eq!(reason_of(&choice, "db3"), "errant transactions: 0-3-101");
}

#[test]
fn seq_zero_entries_are_not_errant() {
    let mine = ServerFacts {
        gtid_binlog_state: "0-1-100,0-3-0".into(),
        ..replica(3, 100)
    };
    assert!(errant_gtids(&mine, &[&facts(1)]).unwrap().is_empty());
}

#[test]
fn mariadb_errant_lists_every_domain() {
    let mine = ServerFacts {
        gtid_binlog_state: "0-1-100,0-3-101,2-3-7".into(),
        ..replica(3, 100)
    };
    assert_eq!(
        errant_gtids(&mine, &[&facts(1)]).unwrap(),
        vec!["0-3-101", "2-3-7"]
    );
}

// ------------------------------------------------------------------ forced target

#[test]
fn forced_target_is_chosen_when_eligible() {
    let mut inp = input(vec![
        cand("db2", replica(2, 97)),
        cand("db3", replica(3, 100)),
    ]);
    inp.forced = Some("db2".into());
    let choice = choose(&inp);
    assert_eq!(choice.chosen.as_deref(), Some("db2"));
    assert_eq!(choice.ranking, names(&["db2"]));
    assert_eq!(reason_of(&choice, "db3"), "not the requested target db2");
    assert_eq!(choice.most_advanced.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_from.as_deref(), Some("db3"));
    assert_eq!(choice.catch_up_gtids.as_deref(), Some("0:98-100"));
    assert_eq!(choice.blocker, None);
}

#[test]
fn forced_target_not_eligible_is_explained() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    repl_mut(facts_of(&mut inp, "db3")).seconds_behind_source = Some(120);
    inp.forced = Some("db3".into());
    let choice = choose(&inp);
    assert_eq!(choice.chosen, None);
    assert!(choice.ranking.is_empty());
    assert_eq!(
        choice.blocker.as_deref(),
        Some("requested target db3 is not eligible: lagging 120 s > max_lag 30 s")
    );
}

#[test]
fn forced_target_down_is_explained() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 100)),
    ]);
    let v = &mut srv(&mut inp, "db3").view;
    v.mysqld_up = Some(false);
    v.facts = None;
    inp.forced = Some("db3".into());
    let choice = choose(&inp);
    assert_eq!(choice.chosen, None);
    assert_eq!(
        choice.blocker.as_deref(),
        Some("requested target db3 is not eligible: mysqld is down")
    );
}

#[test]
fn forced_target_unknown_or_old_master_is_explained() {
    for target in ["db9", "db1"] {
        let mut inp = input(vec![cand("db2", replica(2, 100))]);
        inp.forced = Some(target.into());
        let choice = choose(&inp);
        assert_eq!(choice.chosen, None);
        assert_eq!(
            choice.blocker,
            Some(format!(
                "requested target {target} is not a configured replica"
            ))
        );
    }
}

#[test]
fn no_eligible_replica_blocks() {
    let mut inp = input(vec![
        cand("db2", replica(2, 100)),
        cand("db3", replica(3, 99)),
    ]);
    srv(&mut inp, "db2").no_master = true;
    facts_of(&mut inp, "db3").log_slave_updates = false;
    let choice = choose(&inp);
    assert_eq!(choice.chosen, None);
    assert!(choice.ranking.is_empty());
    assert_eq!(choice.blocker.as_deref(), Some("no eligible replica"));
    assert_eq!(choice.excluded.len(), 2);
    assert_eq!(choice.most_advanced.as_deref(), Some("db2"));
    assert_eq!(choice.catch_up_from, None);
}

#[test]
fn no_replica_at_all_blocks() {
    let choice = choose(&input(Vec::new()));
    assert_eq!(choice.chosen, None);
    assert_eq!(choice.most_advanced, None);
    assert_eq!(choice.blocker.as_deref(), Some("no eligible replica"));
}

// ------------------------------------------------------------------ MySQL

fn mysql_facts(uuid: &str, executed: &str) -> ServerFacts {
    ServerFacts {
        flavor: Flavor::Mysql,
        version: "8.4.0".into(),
        server_uuid: uuid.into(),
        gtid_executed: executed.into(),
        gtid_binlog_state: executed.into(),
        gtid_slave_pos: String::new(),
        ..facts(1)
    }
}

/// A MySQL replica of the dead master (UUID1) with `executed`, having
/// received `retrieved`.
fn mysql_replica(server_id: u32, uuid: &str, executed: &str, retrieved: &str) -> ServerFacts {
    let mut r = repl("db1");
    r.gtid_mode = GtidMode::AutoPosition;
    r.retrieved_gtids = retrieved.into();
    r.executed_gtids = Some(executed.into());
    ServerFacts {
        server_id,
        read_only: true,
        replication: Some(r),
        ..mysql_facts(uuid, executed)
    }
}

fn mysql_input(servers: Vec<CandidateServer>) -> CandidateInput {
    CandidateInput {
        known_facts: vec![("db1".into(), mysql_facts(UUID1, &format!("{UUID1}:1-100")))],
        ..input(servers)
    }
}

#[test]
fn mysql_most_advanced_wins() {
    let choice = choose(&mysql_input(vec![
        cand(
            "db2",
            mysql_replica(2, UUID2, &format!("{UUID1}:1-90"), &format!("{UUID1}:1-90")),
        ),
        cand(
            "db3",
            mysql_replica(
                3,
                UUID3,
                &format!("{UUID1}:1-100"),
                &format!("{UUID1}:1-100"),
            ),
        ),
    ]));
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert!(choice.excluded.is_empty(), "{choice:#?}");
}

#[test]
fn mysql_errant_by_own_server_uuid() {
    let mut inp = mysql_input(vec![
        cand(
            "db2",
            mysql_replica(2, UUID2, &format!("{UUID1}:1-90"), &format!("{UUID1}:1-90")),
        ),
        cand(
            "db3",
            mysql_replica(
                3,
                UUID3,
                &format!("{UUID1}:1-100,{UUID3}:1-2"),
                &format!("{UUID1}:1-100"),
            ),
        ),
    ]);
    let choice = choose(&inp);
    assert_eq!(
        reason_of(&choice, "db3"),
        format!("errant transactions: {UUID3}:1-2")
    );
    assert_eq!(choice.chosen.as_deref(), Some("db2"));

    // Upper-case server_uuid, as some tools print it: same answer.
    facts_of(&mut inp, "db3").server_uuid = UUID3.to_uppercase();
    assert_eq!(
        reason_of(&choose(&inp), "db3"),
        format!("errant transactions: {UUID3}:1-2")
    );
}

#[test]
fn mysql_only_the_part_others_lack_is_errant() {
    let db2 = mysql_replica(
        2,
        UUID2,
        &format!("{UUID1}:1-100,{UUID3}:1-5"),
        &format!("{UUID1}:1-100"),
    );
    let db3 = mysql_replica(
        3,
        UUID3,
        &format!("{UUID1}:1-100,{UUID3}:1-8"),
        &format!("{UUID1}:1-100"),
    );
    assert_eq!(
        errant_gtids(&db3, &[&db2]).unwrap(),
        vec![format!("{UUID3}:6-8")]
    );
}

#[test]
fn mysql_former_master_and_other_origins_are_not_errant() {
    // db3 was master (UUID3:1-40, which the others have); db3 alone has
    // UUID4:1-3 from some other server: replicated, not local.
    let mut inp = mysql_input(vec![
        cand(
            "db2",
            mysql_replica(
                2,
                UUID2,
                &format!("{UUID1}:1-100,{UUID3}:1-40"),
                &format!("{UUID1}:1-100"),
            ),
        ),
        cand(
            "db3",
            mysql_replica(
                3,
                UUID3,
                &format!("{UUID1}:1-100,{UUID3}:1-40,{UUID4}:1-3"),
                &format!("{UUID1}:1-100"),
            ),
        ),
    ]);
    let choice = choose(&inp);
    assert!(choice.excluded.is_empty(), "{choice:#?}");
    // Ahead by the UUID4 transactions.
    assert_eq!(choice.chosen.as_deref(), Some("db3"));

    // Without a server_uuid nothing can be attributed to the server.
    facts_of(&mut inp, "db3").gtid_executed = format!("{UUID1}:1-100,{UUID3}:1-50");
    facts_of(&mut inp, "db3").server_uuid = String::new();
    assert!(choose(&inp).excluded.is_empty());
}

#[test]
fn mysql_received_beyond_executed_counts_for_the_final_position() {
    let choice = choose(&mysql_input(vec![
        cand(
            "db2",
            mysql_replica(2, UUID2, &format!("{UUID1}:1-98"), &format!("{UUID1}:1-98")),
        ),
        cand(
            "db3",
            mysql_replica(
                3,
                UUID3,
                &format!("{UUID1}:1-95"),
                &format!("{UUID1}:1-100"),
            ),
        ),
    ]));
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
}

// ------------------------------------------------------------------ GTID sets

#[test]
fn mariadb_received_beyond_executed_counts_for_the_final_position() {
    let mut f = replica(2, 100);
    repl_mut(&mut f).retrieved_gtids = "0-1-105".into();
    assert_eq!(executed_set(&f).unwrap(), gtids("0:1-100"));
    assert_eq!(received_set(&f).unwrap(), gtids("0:1-105"));
    assert_eq!(final_set(&f).unwrap(), gtids("0:1-105"));

    // And so it wins over a replica that executed more but received less.
    let db3 = ServerFacts { server_id: 3, ..f };
    let choice = choose(&input(vec![cand("db2", replica(2, 103)), cand("db3", db3)]));
    assert_eq!(choice.chosen.as_deref(), Some("db3"));
    assert_eq!(choice.ranking, names(&["db3", "db2"]));
}

#[test]
fn final_set_is_the_union_of_executed_and_received() {
    let mut f = replica(2, 100);
    f.gtid_executed = "0-1-100,1-2-7".into();
    repl_mut(&mut f).retrieved_gtids = "0-1-104".into();
    assert_eq!(final_set(&f).unwrap(), gtids("0:1-104,1:1-7"));
}

#[test]
fn received_set_empty_without_replication() {
    let f = facts(1);
    assert!(received_set(&f).unwrap().is_empty());
    assert_eq!(final_set(&f).unwrap(), executed_set(&f).unwrap());
}

#[test]
fn received_set_empty_when_nothing_received() {
    let mut f = replica(2, 100);
    repl_mut(&mut f).retrieved_gtids = String::new();
    assert!(received_set(&f).unwrap().is_empty());
    assert_eq!(final_set(&f).unwrap(), gtids("0:1-100"));
}

#[test]
fn mysql_sets_read_multi_line_text() {
    let f = mysql_replica(
        2,
        UUID2,
        &format!("{UUID1}:1-90"),
        &format!("{UUID1}:1-95,\n{UUID3}:1-2"),
    );
    assert_eq!(
        received_set(&f).unwrap(),
        gtids(&format!("{UUID1}:1-95,{UUID3}:1-2"))
    );
    assert_eq!(
        final_set(&f).unwrap(),
        gtids(&format!("{UUID1}:1-95,{UUID3}:1-2"))
    );
    assert_eq!(executed_set(&f).unwrap(), gtids(&format!("{UUID1}:1-90")));
}

#[test]
fn unreadable_sets_are_errors() {
    let f = ServerFacts {
        gtid_executed: "nonsense".into(),
        ..replica(2, 100)
    };
    assert!(executed_set(&f).is_err());
    assert!(final_set(&f).is_err());
    let mut g = replica(2, 100);
    repl_mut(&mut g).retrieved_gtids = "0-1".into();
    assert!(received_set(&g).is_err());
    let h = mysql_facts(UUID1, "0-1-100");
    assert!(executed_set(&h).is_err());
}

mod executed_subsets {
    use super::common::facts;
    use myha_core::candidate::{executed_set, executed_subsets};
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A MariaDB position over a few domains, seq 0 included ("nothing").
    fn position() -> impl Strategy<Value = String> {
        vec((0u32..4, 1u32..4, 0u64..6), 0..4).prop_map(|gtids| {
            let mut seen = std::collections::BTreeSet::new();
            gtids
                .into_iter()
                .filter(|(d, _, _)| seen.insert(*d))
                .map(|(d, s, n)| format!("{d}-{s}-{n}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    proptest! {
        /// The MariaDB shortcut answers as the sets do.
        #[test]
        fn same_answer_as_the_sets(
            a_exec in position(), a_slave in position(),
            b_exec in position(), b_slave in position(),
        ) {
            let mut a = facts(1);
            a.gtid_executed = a_exec;
            a.gtid_slave_pos = a_slave;
            let mut b = facts(2);
            b.gtid_executed = b_exec;
            b.gtid_slave_pos = b_slave;
            let (x, y) = (executed_set(&a).unwrap(), executed_set(&b).unwrap());
            prop_assert_eq!(
                executed_subsets(&a, &b).unwrap(),
                (x.is_subset(&y), y.is_subset(&x)),
                "{:?} / {:?}", (&a.gtid_executed, &a.gtid_slave_pos), (&b.gtid_executed, &b.gtid_slave_pos)
            );
        }
    }

    #[test]
    fn bad_text_is_an_error() {
        let mut a = facts(1);
        a.gtid_executed = "0-1-x".into();
        assert!(executed_subsets(&a, &facts(2)).is_err());
        assert!(executed_subsets(&facts(2), &a).is_err());
    }
}
