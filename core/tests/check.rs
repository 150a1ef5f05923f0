//! `myha check`: a healthy cluster passes; each rule, broken alone, fails
//! with its own check id, the server at fault and a fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use myha_core::check::{check, AgentCheck, CheckInput, CheckServer, Finding, HookCheck};
mod common;

use common::{facts, repl};
use myha_core::flavor::{Flavor, GtidMode, ReplicationStatus, ThreadState};
use myha_core::report::ServerFacts;

// ------------------------------------------------------------------ builders

const MARIADB_REPL_GRANT: &str =
    "GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION SLAVE ADMIN \
     ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*9AF1B5E2D2F5E9F4C3A0B1D7E6F8A9B0C1D2E3F4'";

/// A read-only server replicating from `host`.
fn replica(server_id: u32, host: &str) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication: Some(repl(host)),
        semi_sync_slave: true,
        ..facts(server_id)
    }
}

/// The master: writable, semi-sync on without a fallback timer.
fn master(server_id: u32) -> ServerFacts {
    ServerFacts {
        semi_sync_master: true,
        semi_sync_slave: true,
        semi_sync_timeout_ms: Some(myha_core::report::SEMI_SYNC_NO_FALLBACK_MS),
        ..facts(server_id)
    }
}

fn server(name: &str, facts: ServerFacts) -> CheckServer {
    CheckServer {
        name: name.into(),
        address: format!("{name}:3306"),
        aliases: Vec::new(),
        no_master: false,
        facts: Ok(facts),
        replication_grants: Some(vec![MARIADB_REPL_GRANT.into()]),
        clock_offset_ms: Some(3),
        slave_net_timeout_s: Some(60),
        admin_grants: Some(vec!["GRANT ALL PRIVILEGES ON *.* TO `myha`@`%`".into()]),
        replication_login: Some(Ok(())),
        agent: Some(AgentCheck {
            reachable: Ok(()),
            version: Some("1.0.0".into()),
            vip_interface: Some(true),
            arping: Some(true),
            report_age_ms: Some(300),
        }),
    }
}

/// db1 the master, db2 and db3 its replicas: everything right.
fn healthy() -> CheckInput {
    CheckInput {
        cluster: "main".into(),
        flavor: Flavor::Mariadb,
        replication_user: "repl".into(),
        max_clock_skew_ms: 500,
        servers: vec![
            server("db1", master(1)),
            server("db2", replica(2, "db1")),
            server("db3", replica(3, "db1")),
        ],
        behind_router: false,
        manager: None,
        version: "1.0.0".into(),
        vip_interface: Some("eth0".into()),
        hooks: Vec::new(),
        manager_listen: Some(("10.0.0.1:7070".into(), true)),
    }
}

#[test]
fn semi_sync_with_a_fallback_timer_fails() {
    let mut input = healthy();
    facts_of(&mut input, "db1").semi_sync_timeout_ms = Some(5000);
    let f = failures(&input);
    assert!(
        f.iter().any(|f| f.check == "semi_sync_timeout"
            && f.server.as_deref() == Some("db1")
            && f.message.contains("5000 ms")),
        "{f:?}"
    );
}

#[test]
fn semi_sync_off_on_the_master_fails_and_names_a_degrade() {
    let mut input = healthy();
    facts_of(&mut input, "db1").semi_sync_master = false;
    let f = failures(&input);
    assert!(
        f.iter()
            .any(|f| f.check == "semi_sync" && f.message.contains("OFF")),
        "{f:?}"
    );
    input.manager = Some(myha_core::check::ManagerView {
        semi_sync_degraded: Some("no replica could acknowledge".into()),
        ..Default::default()
    });
    let f = failures(&input);
    assert!(
        f.iter().any(|f| f.check == "semi_sync"
            && f.message.contains("degraded")
            && f.message.contains("no replica could acknowledge")),
        "{f:?}"
    );
}

#[test]
fn a_replica_without_semi_sync_fails() {
    let mut input = healthy();
    facts_of(&mut input, "db3").semi_sync_slave = false;
    let f = failures(&input);
    assert!(
        f.iter()
            .any(|f| f.check == "semi_sync_replica" && f.server.as_deref() == Some("db3")),
        "{f:?}"
    );
}

#[test]
fn a_rejoin_refusal_from_the_manager_fails_with_its_reason() {
    let mut input = healthy();
    let mut m = myha_core::check::ManagerView::default();
    m.rejoin_refused
        .insert("db1".into(), "db1 has diverged: it executed 0-1-9".into());
    input.manager = Some(m);
    let f = failures(&input);
    assert!(
        f.iter().any(|f| f.check == "rejoin"
            && f.server.as_deref() == Some("db1")
            && f.message.contains("0-1-9")),
        "{f:?}"
    );
}

fn srv<'a>(input: &'a mut CheckInput, name: &str) -> &'a mut CheckServer {
    input
        .servers
        .iter_mut()
        .find(|s| s.name == name)
        .expect("no such server")
}

fn facts_of<'a>(input: &'a mut CheckInput, name: &str) -> &'a mut ServerFacts {
    srv(input, name).facts.as_mut().expect("server is down")
}

fn repl_of<'a>(input: &'a mut CheckInput, name: &str) -> &'a mut ReplicationStatus {
    facts_of(input, name)
        .replication
        .as_mut()
        .expect("not a replica")
}

fn failures(input: &CheckInput) -> Vec<Finding> {
    check(input).into_iter().filter(|f| !f.ok).collect()
}

/// `(check, server)` of each failure, in order.
fn failed(input: &CheckInput) -> Vec<(String, Option<String>)> {
    failures(input)
        .into_iter()
        .map(|f| (f.check, f.server))
        .collect()
}

fn id(check: &str, server: Option<&str>) -> (String, Option<String>) {
    (check.to_string(), server.map(str::to_string))
}

/// A failure reads as one line: status, check id, server, message, fix.
fn assert_failure_line(f: &Finding) {
    let line = f.to_string();
    assert!(!line.contains('\n'), "one line: {line:?}");
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains(&format!("[{}]", f.check)), "{line}");
    if let Some(server) = &f.server {
        assert!(line.contains(&format!("{server}: ")), "{line}");
    }
    assert!(line.contains(&f.message), "{line}");
    assert!(line.contains(" -- fix: "), "{line}");
}

/// The one failure `check` finds, with the given id and server, and a fix.
fn only_failure(input: &CheckInput, check_id: &str, server: Option<&str>) -> Finding {
    let mut fails = failures(input);
    assert_eq!(
        fails.len(),
        1,
        "expected exactly one failure, got: {:#?}",
        fails
    );
    let f = fails.remove(0);
    assert_eq!(f.check, check_id, "{f}");
    assert_eq!(f.server.as_deref(), server, "{f}");
    assert!(!f.ok);
    assert!(f.fix.as_deref().is_some_and(|x| !x.is_empty()), "{f}");
    assert_failure_line(&f);
    f
}

// ------------------------------------------------------------------ healthy

#[test]
fn healthy_cluster_passes_every_check() {
    let findings = check(&healthy());
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(ToString::to_string)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(findings.iter().all(|f| f.fix.is_none()));
}

#[test]
fn healthy_findings_in_stable_order() {
    let got: Vec<(String, Option<String>)> = check(&healthy())
        .into_iter()
        .map(|f| (f.check, f.server))
        .collect();
    let want = [
        id("reachable", Some("db1")),
        id("reachable", Some("db2")),
        id("reachable", Some("db3")),
        id("one_master", Some("db1")),
        id("replicates", Some("db2")),
        id("gtid", Some("db2")),
        id("read_only", Some("db2")),
        id("replicates", Some("db3")),
        id("gtid", Some("db3")),
        id("read_only", Some("db3")),
        id("binlog", Some("db1")),
        id("binlog_format", Some("db1")),
        id("binlog", Some("db2")),
        id("binlog_format", Some("db2")),
        id("binlog", Some("db3")),
        id("binlog_format", Some("db3")),
        id("server_id", None),
        id("replication_user", Some("db1")),
        id("replication_user", Some("db2")),
        id("replication_user", Some("db3")),
        id("semi_sync", Some("db1")),
        id("semi_sync_replica", Some("db2")),
        id("semi_sync_replica", Some("db3")),
    ];
    // Then what runs beside the servers, per server, then the whole.
    let mut want = want.to_vec();
    for db in ["db1", "db2", "db3"] {
        for c in [
            "admin_privileges",
            "replication_login",
            "slave_net_timeout",
            "agent",
            "vip_interface",
            "arping",
        ] {
            want.push(id(c, Some(db)));
        }
    }
    want.push(id("manager_listen", None));
    assert_eq!(got, want);
}

#[test]
fn healthy_mysql_cluster_passes() {
    let mut input = healthy();
    input.flavor = Flavor::Mysql;
    for s in &mut input.servers {
        let f = s.facts.as_mut().unwrap();
        f.flavor = Flavor::Mysql;
        f.version = "8.4.0".into();
        if let Some(r) = f.replication.as_mut() {
            r.gtid_mode = GtidMode::AutoPosition;
        }
        s.replication_grants = Some(vec!["GRANT REPLICATION SLAVE ON *.* TO `repl`@`%`".into()]);
    }
    assert_eq!(failed(&input), []);
}

#[test]
fn current_pos_counts_as_gtid() {
    let mut input = healthy();
    repl_of(&mut input, "db2").gtid_mode = GtidMode::CurrentPos;
    assert_eq!(failed(&input), []);
}

// ------------------------------------------------------------------ reachable

#[test]
fn unreachable_server() {
    let mut input = healthy();
    let db3 = srv(&mut input, "db3");
    db3.facts = Err("connect to db3:3306 timed out".into());
    db3.clock_offset_ms = None;
    let f = only_failure(&input, "reachable", Some("db3"));
    assert!(f.message.contains("db3:3306"), "{f}");
    assert!(f.message.contains("timed out"), "{f}");
}

#[test]
fn unreachable_master_leaves_no_master() {
    let mut input = healthy();
    srv(&mut input, "db1").facts = Err("Connection refused".into());
    assert_eq!(
        failed(&input),
        [id("reachable", Some("db1")), id("one_master", None)]
    );
    // Without a master, where replicas replicate from is not judged.
    assert!(!check(&input).iter().any(|f| f.check == "replicates"));
}

// ------------------------------------------------------------------ one_master

#[test]
fn no_master() {
    let mut input = healthy();
    facts_of(&mut input, "db1").read_only = true;
    // The read-only ex-master also replicates from nobody.
    assert_eq!(
        failed(&input),
        [id("one_master", None), id("replicates", Some("db1"))]
    );
    let f = &failures(&input)[0];
    assert_failure_line(f);
    assert!(f.message.contains("no writable server"), "{f}");
    assert!(f.fix.as_deref().unwrap().contains("read_only=OFF"), "{f}");
}

#[test]
fn two_masters() {
    let mut input = healthy();
    let db2 = facts_of(&mut input, "db2");
    db2.read_only = false;
    db2.replication = None;
    let f = only_failure(&input, "one_master", None);
    assert_eq!(f.message, "2 writable masters: db1, db2");
    assert!(f.fix.as_deref().unwrap().contains("read_only=ON"), "{f}");
}

#[test]
fn writable_replica_is_not_a_second_master() {
    let mut input = healthy();
    facts_of(&mut input, "db2").read_only = false;
    only_failure(&input, "read_only", Some("db2"));
}

// ------------------------------------------------------------------ replicates

#[test]
fn replica_replicating_from_elsewhere() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db3");
    r.source_host = "db9".into();
    r.source_server_id = Some(9);
    let f = only_failure(&input, "replicates", Some("db3"));
    assert!(f.message.contains("db9:3306"), "{f}");
    assert!(f.message.contains("db1 (db1:3306)"), "{f}");
    assert!(f.fix.as_deref().unwrap().contains("db1"), "{f}");
}

#[test]
fn replica_of_a_replica_is_not_from_the_master() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db3");
    r.source_host = "db2".into();
    r.source_server_id = Some(2);
    only_failure(&input, "replicates", Some("db3"));
}

#[test]
fn replica_on_the_master_port_elsewhere_is_not_from_the_master() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db3");
    r.source_port = 3307;
    r.source_server_id = None;
    only_failure(&input, "replicates", Some("db3"));
}

#[test]
fn replica_source_matched_by_alias() {
    let mut input = healthy();
    srv(&mut input, "db1").aliases = vec!["10.0.0.1:3306".into()];
    let r = repl_of(&mut input, "db3");
    r.source_host = "10.0.0.1".into();
    r.source_server_id = None;
    assert_eq!(failed(&input), []);
}

#[test]
fn replica_source_matched_by_server_id() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db3");
    r.source_host = "10.0.0.1".into();
    r.source_server_id = Some(1);
    assert_eq!(failed(&input), []);
}

#[test]
fn read_only_server_replicating_from_nobody() {
    let mut input = healthy();
    facts_of(&mut input, "db3").replication = None;
    let f = only_failure(&input, "replicates", Some("db3"));
    assert!(f.message.contains("replicates from nobody"), "{f}");
}

#[test]
fn replication_without_source_host_is_replicating_from_nobody() {
    let mut input = healthy();
    repl_of(&mut input, "db3").source_host = String::new();
    only_failure(&input, "replicates", Some("db3"));
}

// ------------------------------------------------------------------ gtid

#[test]
fn non_gtid_replica_mariadb() {
    let mut input = healthy();
    repl_of(&mut input, "db2").gtid_mode = GtidMode::None;
    let f = only_failure(&input, "gtid", Some("db2"));
    assert!(f.message.contains("file/position"), "{f}");
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("MASTER_USE_GTID=slave_pos"),
        "{f}"
    );
}

#[test]
fn non_gtid_replica_mysql() {
    let mut input = healthy();
    input.flavor = Flavor::Mysql;
    repl_of(&mut input, "db2").gtid_mode = GtidMode::None;
    let f = only_failure(&input, "gtid", Some("db2"));
    assert!(
        f.fix.as_deref().unwrap().contains("SOURCE_AUTO_POSITION=1"),
        "{f}"
    );
}

// ------------------------------------------------------------------ threads

#[test]
fn stopped_io_thread_with_error() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db2");
    r.io_thread = ThreadState::Stopped;
    r.last_io_errno = 1236;
    r.last_io_error = "Could not find GTID state requested by slave".into();
    let f = only_failure(&input, "threads", Some("db2"));
    assert!(f.message.contains("IO=Stopped SQL=Running"), "{f}");
    assert!(
        f.message
            .contains("IO 1236: Could not find GTID state requested by slave"),
        "{f}"
    );
}

#[test]
fn stopped_sql_thread_with_error() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db3");
    r.sql_thread = ThreadState::Stopped;
    r.last_sql_errno = 1062;
    r.last_sql_error = "Duplicate entry '7' for key 'PRIMARY'".into();
    let f = only_failure(&input, "threads", Some("db3"));
    assert!(f.message.contains("IO=Running SQL=Stopped"), "{f}");
    assert!(f.message.contains("SQL 1062"), "{f}");
}

#[test]
fn stopped_threads_without_error() {
    let mut input = healthy();
    let r = repl_of(&mut input, "db2");
    r.io_thread = ThreadState::Stopped;
    r.sql_thread = ThreadState::Stopped;
    let f = only_failure(&input, "threads", Some("db2"));
    assert!(f.message.contains("no error recorded"), "{f}");
}

#[test]
fn connecting_io_thread_is_not_running() {
    let mut input = healthy();
    repl_of(&mut input, "db2").io_thread = ThreadState::Connecting;
    let f = only_failure(&input, "threads", Some("db2"));
    assert!(f.message.contains("IO=Connecting"), "{f}");
}

// ------------------------------------------------------------------ read_only

#[test]
fn read_only_off_on_replica() {
    let mut input = healthy();
    facts_of(&mut input, "db3").read_only = false;
    let f = only_failure(&input, "read_only", Some("db3"));
    assert!(f.message.contains("errant"), "{f}");
    assert!(f.fix.as_deref().unwrap().contains("read_only=ON"), "{f}");
}

// ------------------------------------------------------------------ binlog

#[test]
fn log_bin_off_on_promotable() {
    let mut input = healthy();
    facts_of(&mut input, "db2").log_bin = false;
    let f = only_failure(&input, "binlog", Some("db2"));
    assert_eq!(f.message, "log_bin OFF on a promotable server");
    assert_eq!(
        f.fix.as_deref(),
        Some("set log_bin=ON in its my.cnf and restart, or mark it no_master")
    );
}

#[test]
fn log_slave_updates_off_on_promotable() {
    let mut input = healthy();
    facts_of(&mut input, "db3").log_slave_updates = false;
    let f = only_failure(&input, "binlog", Some("db3"));
    assert_eq!(f.message, "log_slave_updates OFF on a promotable server");
    assert_eq!(
        f.fix.as_deref(),
        Some("set log_slave_updates=ON in its my.cnf and restart, or mark it no_master")
    );
}

#[test]
fn both_binlog_settings_off_on_promotable() {
    let mut input = healthy();
    let db2 = facts_of(&mut input, "db2");
    db2.log_bin = false;
    db2.log_slave_updates = false;
    let f = only_failure(&input, "binlog", Some("db2"));
    assert_eq!(
        f.message,
        "log_bin and log_slave_updates OFF on a promotable server"
    );
    assert_eq!(
        f.fix.as_deref(),
        Some(
            "set log_bin=ON, log_slave_updates=ON in its my.cnf and restart, or mark it no_master"
        )
    );
}

#[test]
fn log_bin_off_on_the_master() {
    let mut input = healthy();
    facts_of(&mut input, "db1").log_bin = false;
    only_failure(&input, "binlog", Some("db1"));
}

#[test]
fn binlog_off_on_no_master_server_is_fine() {
    let mut input = healthy();
    srv(&mut input, "db3").no_master = true;
    let db3 = facts_of(&mut input, "db3");
    db3.log_bin = false;
    db3.log_slave_updates = false;
    assert_eq!(failed(&input), []);
    assert!(!check(&input)
        .iter()
        .any(|f| f.check == "binlog" && f.server.as_deref() == Some("db3")));
}

// ------------------------------------------------------------------ binlog_format

#[test]
fn binlog_format_statement() {
    let mut input = healthy();
    facts_of(&mut input, "db2").binlog_format = "STATEMENT".into();
    let f = only_failure(&input, "binlog_format", Some("db2"));
    assert_eq!(f.message, "binlog_format is STATEMENT");
    assert!(
        f.fix.as_deref().unwrap().contains("binlog_format=ROW"),
        "{f}"
    );
}

#[test]
fn binlog_format_mixed() {
    let mut input = healthy();
    facts_of(&mut input, "db1").binlog_format = "MIXED".into();
    only_failure(&input, "binlog_format", Some("db1"));
}

#[test]
fn binlog_format_row_any_case_on_no_master_too() {
    let mut input = healthy();
    facts_of(&mut input, "db2").binlog_format = "row".into();
    assert_eq!(failed(&input), []);
    // binlog_format is checked on no_master servers as well.
    srv(&mut input, "db3").no_master = true;
    facts_of(&mut input, "db3").binlog_format = "STATEMENT".into();
    only_failure(&input, "binlog_format", Some("db3"));
}

// ------------------------------------------------------------------ gtid_strict

#[test]
fn gtid_strict_off_mariadb() {
    let mut input = healthy();
    facts_of(&mut input, "db2").gtid_strict = false;
    let f = only_failure(&input, "gtid_strict", Some("db2"));
    assert_eq!(f.message, "gtid_strict_mode is OFF");
    assert!(
        f.fix.as_deref().unwrap().contains("gtid_strict_mode=ON"),
        "{f}"
    );
}

#[test]
fn gtid_mode_off_mysql() {
    let mut input = healthy();
    input.flavor = Flavor::Mysql;
    facts_of(&mut input, "db1").gtid_strict = false;
    let f = only_failure(&input, "gtid_strict", Some("db1"));
    assert_eq!(f.message, "gtid_mode is not ON");
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("enforce_gtid_consistency"),
        "{f}"
    );
}

// ------------------------------------------------------------------ server_id

#[test]
fn server_id_collision_names_the_first_holder() {
    let mut input = healthy();
    facts_of(&mut input, "db3").server_id = 2;
    let f = only_failure(&input, "server_id", Some("db3"));
    assert_eq!(f.message, "server_id 2 is also used by db2");
    // No "unique" finding alongside the failure.
    assert_eq!(
        check(&input)
            .iter()
            .filter(|f| f.check == "server_id")
            .count(),
        1
    );
}

#[test]
fn server_id_three_way_collision() {
    let mut input = healthy();
    facts_of(&mut input, "db2").server_id = 1;
    facts_of(&mut input, "db3").server_id = 1;
    let fails = failures(&input);
    let msgs: Vec<(&str, &str)> = fails
        .iter()
        .map(|f| (f.server.as_deref().unwrap(), f.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        [
            ("db2", "server_id 1 is also used by db1"),
            ("db3", "server_id 1 is also used by db1"),
        ]
    );
    assert!(fails.iter().all(|f| f.check == "server_id"));
}

#[test]
fn server_id_of_unreachable_server_is_not_compared() {
    let mut input = healthy();
    let db3 = srv(&mut input, "db3");
    db3.facts = Err("down".into());
    assert_eq!(failed(&input), [id("reachable", Some("db3"))]);
}

#[test]
fn single_server_has_no_server_id_finding() {
    let mut input = healthy();
    input.servers.truncate(1);
    let findings = check(&input);
    assert!(findings.iter().all(|f| f.ok));
    assert!(!findings.iter().any(|f| f.check == "server_id"));
}

// ------------------------------------------------------------------ replication_user

#[test]
fn replication_user_missing() {
    let mut input = healthy();
    srv(&mut input, "db2").replication_grants = None;
    let f = only_failure(&input, "replication_user", Some("db2"));
    assert_eq!(f.message, "replication user 'repl' does not exist");
    assert!(
        f.fix.as_deref().unwrap().contains("CREATE USER 'repl'"),
        "{f}"
    );
}

#[test]
fn replication_user_lacking_grant() {
    let mut input = healthy();
    srv(&mut input, "db3").replication_grants = Some(vec![
        "GRANT USAGE ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*9AF1'".into(),
    ]);
    let f = only_failure(&input, "replication_user", Some("db3"));
    assert_eq!(f.message, "replication user 'repl' lacks REPLICATION SLAVE");
    assert_eq!(
        f.fix.as_deref(),
        Some("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'")
    );
}

#[test]
fn replication_user_not_required_on_no_master_server() {
    let mut input = healthy();
    let db3 = srv(&mut input, "db3");
    db3.no_master = true;
    db3.replication_grants = None;
    assert_eq!(failed(&input), []);
}

/// Whether `check` accepts these `SHOW GRANTS` lines for the replication user.
fn grants_ok(lines: &[&str]) -> bool {
    let mut input = healthy();
    srv(&mut input, "db1").replication_grants = Some(lines.iter().map(|l| l.to_string()).collect());
    let fails = failed(&input);
    match fails.as_slice() {
        [] => true,
        [one] if *one == id("replication_user", Some("db1")) => false,
        other => panic!("unexpected failures: {other:?}"),
    }
}

#[test]
fn grant_parsing() {
    let cases: &[(&[&str], bool)] = &[
        (&[MARIADB_REPL_GRANT], true),
        (
            &["GRANT REPLICATION SLAVE ADMIN ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*9AF1'"],
            false,
        ),
        (
            &["GRANT ALL PRIVILEGES ON *.* TO `repl`@`%` WITH GRANT OPTION"],
            true,
        ),
        (&["GRANT REPLICATION SLAVE ON `db`.* TO `repl`@`%`"], false),
        (&["GRANT ALL PRIVILEGES ON `app`.* TO `repl`@`%`"], false),
        (&["GRANT REPLICATION SLAVE ON *.* TO `repl`@`%`"], true),
        (&["GRANT REPLICATION REPLICA ON *.* TO `repl`@`%`"], true),
        (&["grant replication slave on *.* to 'repl'@'%'"], true),
        (
            &["GRANT SELECT, RELOAD, REPLICATION CLIENT ON *.* TO `repl`@`%`"],
            false,
        ),
        (&["GRANT BINLOG MONITOR ON *.* TO `repl`@`%`"], false),
        (
            &[
                "GRANT USAGE ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*9AF1'",
                "GRANT REPLICATION SLAVE ON *.* TO `repl`@`%`",
            ],
            true,
        ),
        (
            &[
                "GRANT USAGE ON *.* TO `repl`@`%`",
                "GRANT REPLICATION SLAVE ON `mysql`.* TO `repl`@`%`",
            ],
            false,
        ),
        (&["GRANT `replication_role`@`%` TO `repl`@`%`"], false),
        (&[], false),
    ];
    for (lines, want) in cases {
        assert_eq!(grants_ok(lines), *want, "grants {lines:?}");
    }
}

// ------------------------------------------------------------------ filters

#[test]
fn filters_differ() {
    let mut input = healthy();
    repl_of(&mut input, "db3").filters.do_db = "app".into();
    let f = only_failure(&input, "filters", Some("db3"));
    assert!(f.message.contains("differ from db2's"), "{f}");
    assert!(f.message.contains("app"), "{f}");
}

#[test]
fn identical_filters_pass() {
    let mut input = healthy();
    repl_of(&mut input, "db2").filters.ignore_db = "scratch".into();
    repl_of(&mut input, "db3").filters.ignore_db = "scratch".into();
    assert_eq!(failed(&input), []);
}

// ------------------------------------------------------------------ clock

#[test]
fn clock_skew_beyond_bound() {
    let mut input = healthy();
    srv(&mut input, "db2").clock_offset_ms = Some(750);
    let f = only_failure(&input, "clock", Some("db2"));
    assert_eq!(f.message, "clock is 750 ms off the checker's");
    assert!(f.fix.as_deref().unwrap().contains("NTP"), "{f}");
}

#[test]
fn clock_skew_behind_beyond_bound() {
    let mut input = healthy();
    srv(&mut input, "db3").clock_offset_ms = Some(-501);
    only_failure(&input, "clock", Some("db3"));
}

#[test]
fn clock_skew_within_bound() {
    let mut input = healthy();
    srv(&mut input, "db1").clock_offset_ms = Some(500);
    srv(&mut input, "db2").clock_offset_ms = Some(-500);
    srv(&mut input, "db3").clock_offset_ms = None;
    assert_eq!(failed(&input), []);
}

// ------------------------------------------------------------------ Display

#[test]
fn display_of_failing_finding() {
    let mut input = healthy();
    facts_of(&mut input, "db3").read_only = false;
    let f = only_failure(&input, "read_only", Some("db3"));
    assert_eq!(
        f.to_string(),
        "FAIL [read_only] db3: read_only is OFF on a replica: writes there become \
         errant transactions -- fix: SET GLOBAL read_only=ON (and read_only=ON in its my.cnf)"
    );
}

#[test]
fn display_of_failing_finding_without_server() {
    let f = Finding {
        check: "one_master".into(),
        server: None,
        ok: false,
        message: "no writable server that replicates from nobody".into(),
        fix: Some("do it".into()),
    };
    assert_eq!(
        f.to_string(),
        "FAIL [one_master] no writable server that replicates from nobody -- fix: do it"
    );
}

#[test]
fn display_of_passing_finding() {
    let f = check(&healthy())
        .into_iter()
        .find(|f| f.check == "one_master")
        .unwrap();
    assert_eq!(
        f.to_string(),
        "ok   [one_master] db1: the only writable master"
    );
}

#[test]
fn skip_name_resolve_off_behind_a_router_fails() {
    let mut input = healthy();
    for s in &mut input.servers {
        if let Ok(f) = &mut s.facts {
            f.skip_name_resolve = Some(false);
        }
    }
    // Without a router, nobody shares an address: nothing to say.
    let r = check(&input);
    assert!(!r.iter().any(|f| f.check == "skip_name_resolve"));
    input.behind_router = true;
    let r = check(&input);
    let bad: Vec<_> = r
        .iter()
        .filter(|f| f.check == "skip_name_resolve" && !f.ok)
        .collect();
    assert_eq!(bad.len(), 3, "{r:?}");
    assert!(bad[0].message.contains("max_connect_errors"));
    assert!(bad[0]
        .fix
        .as_deref()
        .unwrap_or("")
        .contains("skip_name_resolve = ON"));
}

#[test]
fn no_leader_is_a_failed_coordination_check() {
    let mut input = healthy();
    input.manager = Some(myha_core::check::ManagerView {
        failover_blocked: Some("no failover possible: coordination unavailable".into()),
        ..Default::default()
    });
    let f = failures(&input);
    assert!(
        f.iter().any(|f| f.check == "coordination"
            && f.message == "no failover possible: coordination unavailable"),
        "{f:?}"
    );
    input.manager = Some(myha_core::check::ManagerView::default());
    assert!(failures(&input).iter().all(|f| f.check != "coordination"));
}

fn failing(input: &CheckInput, check_name: &str) -> Vec<Finding> {
    check(input)
        .into_iter()
        .filter(|f| !f.ok && f.check == check_name)
        .collect()
}

#[test]
fn the_operational_checks_pass_on_a_healthy_cluster() {
    let all = check(&healthy());
    let bad: Vec<&Finding> = all.iter().filter(|f| !f.ok).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    for c in [
        "admin_privileges",
        "replication_login",
        "slave_net_timeout",
        "agent",
        "vip_interface",
        "arping",
        "manager_listen",
    ] {
        assert!(all.iter().any(|f| f.ok && f.check == c), "no passing {c}");
    }
}

#[test]
fn missing_admin_privileges_are_named() {
    use myha_core::check::missing_admin_privileges;
    let least = "GRANT PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN, SLAVE MONITOR, REPLICATION SLAVE ADMIN, RELOAD, REPLICATION MASTER ADMIN, BINLOG MONITOR, REPLICATION SLAVE, BINLOG REPLAY, BINLOG ADMIN ON *.* TO `myha`@`10.0.0.%`";
    assert!(missing_admin_privileges(Flavor::Mariadb, &[least.into()]).is_empty());
    assert!(missing_admin_privileges(
        Flavor::Mariadb,
        &["GRANT ALL PRIVILEGES ON *.* TO `myha`@`%` WITH GRANT OPTION".into()]
    )
    .is_empty());
    let without_ro = least.replace("READ_ONLY ADMIN, ", "");
    assert_eq!(
        missing_admin_privileges(Flavor::Mariadb, &[without_ro]),
        vec!["READ_ONLY ADMIN"]
    );
    // On one database only: not global.
    let on_db = "GRANT ALL PRIVILEGES ON `app`.* TO `myha`@`%`".to_string();
    assert_eq!(missing_admin_privileges(Flavor::Mariadb, &[on_db]).len(), 6);
    let mysql = "GRANT PROCESS, RELOAD, REPLICATION CLIENT ON *.* TO `myha`@`%`".to_string();
    let dynamic = "GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `myha`@`%`".to_string();
    assert!(missing_admin_privileges(Flavor::Mysql, &[mysql.clone(), dynamic]).is_empty());
    assert_eq!(
        missing_admin_privileges(Flavor::Mysql, &[mysql]),
        vec![
            "CONNECTION_ADMIN",
            "SYSTEM_VARIABLES_ADMIN",
            "REPLICATION_SLAVE_ADMIN"
        ]
    );
    let mut input = healthy();
    srv(&mut input, "db2").admin_grants = Some(vec![least.replace("PROCESS, ", "")]);
    let f = failing(&input, "admin_privileges");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].server.as_deref(), Some("db2"));
    assert!(f[0].message.contains("PROCESS"), "{f:?}");
}

#[test]
fn each_operational_misconfiguration_fails_its_check() {
    let mut input = healthy();
    srv(&mut input, "db3").slave_net_timeout_s = Some(3600);
    srv(&mut input, "db2").replication_login = Some(Err("Access denied".into()));
    if let Some(a) = srv(&mut input, "db1").agent.as_mut() {
        a.version = Some("0.9.0".into());
        a.arping = Some(false);
        a.vip_interface = Some(false);
    }
    input.manager = Some(Default::default());
    if let Some(a) = srv(&mut input, "db2").agent.as_mut() {
        a.report_age_ms = None;
    }
    srv(&mut input, "db3").agent = Some(AgentCheck {
        reachable: Err("connection refused".into()),
        version: None,
        vip_interface: None,
        arping: None,
        report_age_ms: None,
    });
    input.hooks = vec![HookCheck {
        name: "pre_failover".into(),
        path: "/nonexistent".into(),
        runnable: Err("no such file".into()),
    }];
    input.manager_listen = Some(("127.0.0.1:7070".into(), true));
    let on = |input: &CheckInput, c: &str| -> Vec<Option<String>> {
        failing(input, c).into_iter().map(|f| f.server).collect()
    };
    assert_eq!(
        on(&input, "slave_net_timeout"),
        vec![Some("db3".to_string())]
    );
    assert_eq!(
        on(&input, "replication_login"),
        vec![Some("db2".to_string())]
    );
    assert_eq!(on(&input, "agent_version"), vec![Some("db1".to_string())]);
    assert_eq!(on(&input, "arping"), vec![Some("db1".to_string())]);
    assert_eq!(on(&input, "vip_interface"), vec![Some("db1".to_string())]);
    assert_eq!(
        on(&input, "manager_reachable"),
        vec![Some("db2".to_string())]
    );
    assert_eq!(on(&input, "agent"), vec![Some("db3".to_string())]);
    assert_eq!(on(&input, "hooks"), vec![None]);
    assert_eq!(on(&input, "manager_listen"), vec![None]);
    // A loopback listen is fine when every host is local.
    input.manager_listen = Some(("127.0.0.1:7070".into(), false));
    assert!(on(&input, "manager_listen").is_empty());
}
