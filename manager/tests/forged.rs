//! A compromised database host, posting forged agent reports, can delay a
//! decision but never cause a wrong one: the manager's own probe outranks
//! any report, a report's `seq` cannot put an agent out of reach, and no
//! master is adopted on agent reports alone. No Docker: the topology is
//! fed reports and probes directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myha_core::analysis::{adoption, Adoption};
use myha_core::flavor::{Flavor, GtidMode, ReplicationFilters, ReplicationStatus, ThreadState};
use myha_core::report::{AckStatus, AgentReport, MysqldStatus, ServerFacts, MAX_SEQ};
use myha_core::routing::backend;
use myha_core::topology::{Disagreement, ProbeResult, Role};
use myha_manager::state::IngestError;
use myha_manager::store::ClusterState;
use myha_manager::{Event, StateStore, StoreError, Topology};

const CONFIG: &str = "
manager:
  token_env: MYHA_TOKEN
clusters:
  - name: main
    user: myha
    password_env: MYHA_DB_PASSWORD
    replication_user: repl
    replication_password_env: MYHA_REPL_PASSWORD
hosts:
  - name: db1
    cluster: main
    address: 10.0.0.11
  - name: db2
    cluster: main
    address: 10.0.0.12
  - name: db3
    cluster: main
    address: 10.0.0.13
agent:
  token_env: MYHA_TOKEN
access:
  - { name: manager, role: manager, token_sha256: 1111111111111111111111111111111111111111111111111111111111111111 }
  - { name: db1, role: agent, host: db1, token_sha256: 2222222222222222222222222222222222222222222222222222222222222222 }
  - { name: db2, role: agent, host: db2, token_sha256: 3333333333333333333333333333333333333333333333333333333333333333 }
  - { name: db3, role: agent, host: db3, token_sha256: 4444444444444444444444444444444444444444444444444444444444444444 }
";

/// Durable state in memory: a manager started with empty state.
#[derive(Debug, Default)]
struct MemStore {
    states: Mutex<BTreeMap<String, ClusterState>>,
    events: Mutex<Vec<Event>>,
}

impl StateStore for MemStore {
    fn load(&self, cluster: &str) -> Result<Option<ClusterState>, StoreError> {
        Ok(self.states.lock().unwrap().get(cluster).cloned())
    }
    fn save(&self, cluster: &str, state: &ClusterState) -> Result<(), StoreError> {
        self.states
            .lock()
            .unwrap()
            .insert(cluster.to_string(), state.clone());
        Ok(())
    }
    fn append(&self, event: &Event) -> Result<(), StoreError> {
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
    fn history(&self, cluster: &str) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.cluster == cluster)
            .cloned()
            .collect())
    }
}

fn topology() -> Topology {
    let env = |name: &str| -> Option<String> {
        match name {
            "MYHA_TOKEN" => Some("test-token-0123456789".to_owned()),
            _ => Some("test-password".to_owned()),
        }
    };
    let config = match myha_config::load_str(CONFIG, Path::new("/etc/myha/myha.yaml"), &env) {
        Ok(c) => c,
        Err(e) => panic!("test configuration does not load:\n{e}"),
    };
    Topology::new(&config, Arc::new(MemStore::default()), false).unwrap()
}

/// A writable MariaDB server that replicates from nobody.
fn master(server_id: u32) -> ServerFacts {
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

/// A read-only server replicating from `of` (10.0.0.11 is db1).
fn replica(server_id: u32, of: &str) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication: Some(ReplicationStatus {
            connection_name: String::new(),
            source_host: of.into(),
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
        }),
        ..master(server_id)
    }
}

/// The real master's facts as a forger tells them: read-only.
fn read_only(server_id: u32) -> ServerFacts {
    ServerFacts {
        read_only: true,
        ..master(server_id)
    }
}

fn report(host: &str, instance: u64, seq: u64, f: ServerFacts) -> AgentReport {
    AgentReport {
        cluster: "main".into(),
        host: host.into(),
        agent_version: "0.1.0".into(),
        instance,
        seq,
        sampled_at_ms: 1_700_000_000_000,
        sample_ms: 1,
        mysqld: MysqldStatus::Up { facts: Box::new(f) },
        mysqld_process: Some(true),
        master_view: None,
        epoch_seen: 1,
    }
}

fn probe(f: ServerFacts) -> ProbeResult {
    ProbeResult {
        mysqld: MysqldStatus::Up { facts: Box::new(f) },
        latency_ms: Some(0.4),
    }
}

/// The real cluster, as the manager's probes read it: db1 the master, db2
/// and db3 its replicas.
fn probe_all(t: &Topology) {
    t.record_probe("main", "db1", probe(master(1)));
    t.record_probe("main", "db2", probe(replica(2, "10.0.0.11")));
    t.record_probe("main", "db3", probe(replica(3, "10.0.0.11")));
}

// ------------------------------------------------------------------ forged facts vs the probe

/// A forger posts "db1 read-only, db2 writable master" every 5 ms while
/// the manager probes every 250 ms: every snapshot still shows db1 as the
/// writable master (the router's writer), with the disagreement flagged.
#[test]
fn forged_reports_every_few_ms_never_outrank_the_probe() {
    let t = topology();
    probe_all(&t);
    let mut seq = 0;
    let mut probed = std::time::Instant::now();
    for _ in 0..60 {
        seq += 1;
        let ack = t.ingest(report("db1", 77, seq, read_only(1))).unwrap();
        assert_eq!(ack.status, AckStatus::Accepted);
        t.ingest(report("db2", 78, seq, master(2))).unwrap();
        if probed.elapsed() >= Duration::from_millis(250) {
            probe_all(&t);
            probed = std::time::Instant::now();
        }
        let s = t.snapshot("main").unwrap();
        assert_eq!(s.master.as_deref(), Some("db1"), "{:?}", s.problems);
        let db1 = s.server("db1").unwrap();
        assert_eq!(db1.role, Role::Master);
        assert_eq!(db1.read_only, Some(false));
        assert_eq!(db1.source.as_deref(), Some("manager"));
        assert!(db1.disagreements.contains(&Disagreement::ReadOnly {
            probe: false,
            agent: true
        }));
        // What the router is given for db1: a healthy master.
        let b = backend(db1, 1);
        assert!(b.healthy);
        assert_eq!(b.role, Role::Master);
        let db2 = s.server("db2").unwrap();
        assert_eq!(db2.role, Role::Replica);
        assert_eq!(db2.read_only, Some(true));
        assert!(!db2.disagreements.is_empty());
        assert_eq!(
            adoption(&s),
            Adoption::Adopt {
                master: "db1".into()
            }
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn forged_facts_do_not_replace_what_the_manager_last_read() {
    let t = topology();
    probe_all(&t);
    t.ingest(report("db1", 77, 1, read_only(1))).unwrap();
    let (f, _) = t.last_known_facts("main", "db1").unwrap();
    assert!(!f.read_only, "the probe's facts are kept");
}

// ------------------------------------------------------------------ seq

#[test]
fn a_seq_beyond_the_bound_is_refused() {
    let t = topology();
    let e = t
        .ingest(report("db2", 5, u64::MAX, replica(2, "10.0.0.11")))
        .unwrap_err();
    assert_eq!(
        e,
        IngestError::SeqOutOfRange {
            host: "db2".into(),
            seq: u64::MAX
        }
    );
    let e = t
        .ingest(report("db2", 5, MAX_SEQ + 1, replica(2, "10.0.0.11")))
        .unwrap_err();
    assert!(matches!(e, IngestError::SeqOutOfRange { .. }));
    // Nothing of it was kept: the real agent's next reports are taken in.
    let ack = t
        .ingest(report("db2", 5, 1, replica(2, "10.0.0.11")))
        .unwrap();
    assert_eq!(ack.status, AckStatus::Accepted);
    assert!(ack.accepted());
    assert_eq!(ack.seq, 1);
    let ack = t
        .ingest(report("db2", 5, 2, replica(2, "10.0.0.11")))
        .unwrap();
    assert_eq!(ack.status, AckStatus::Accepted);
}

#[test]
fn a_stale_report_is_answered_not_accepted_and_a_new_instance_is_heard() {
    let t = topology();
    // A forger took the real agent's instance (5) with the largest valid seq.
    let ack = t
        .ingest(report("db2", 5, MAX_SEQ, replica(2, "10.0.0.11")))
        .unwrap();
    assert_eq!(ack.status, AckStatus::Accepted);
    // The real agent's next report of instance 5 is not taken in, and the
    // answer says so (it used to be acked as if it had been).
    let ack = t.ingest(report("db2", 5, 41, master(2))).unwrap();
    assert_eq!(ack.status, AckStatus::Stale);
    assert!(!ack.accepted());
    assert_eq!(ack.seq, 41);
    // The same seq again is stale too.
    let ack = t
        .ingest(report("db2", 5, MAX_SEQ, replica(2, "10.0.0.11")))
        .unwrap();
    assert_eq!(ack.status, AckStatus::Stale);
    // The agent starts a new instance: its first report is taken in.
    let ack = t.ingest(report("db2", 6, 1, master(2))).unwrap();
    assert_eq!(ack.status, AckStatus::Accepted);
    let s = t.snapshot("main").unwrap();
    let db2 = s.server("db2").unwrap();
    assert_eq!(db2.source.as_deref(), Some("agent"));
    assert_eq!(
        db2.read_only,
        Some(false),
        "the new instance's report is used"
    );
}

#[test]
fn reports_of_unknown_hosts_are_refused() {
    let t = topology();
    let e = t.ingest(report("db9", 1, 1, master(9))).unwrap_err();
    assert!(matches!(e, IngestError::UnknownHost { .. }));
}

// ------------------------------------------------------------------ adoption

/// A manager started with empty state, before its probes answered, or
/// unable to reach the server named: forged reports ("db2 writable, db1
/// read-only") never make it adopt a master.
#[test]
fn forged_reports_alone_do_not_make_a_master() {
    let t = topology();
    assert_eq!(t.durable("main").unwrap().master, None);
    for seq in 1..=20 {
        t.ingest(report("db1", 77, seq, read_only(1))).unwrap();
        t.ingest(report("db2", 78, seq, master(2))).unwrap();
        t.ingest(report("db3", 79, seq, replica(3, "10.0.0.12")))
            .unwrap();
    }
    let s = t.snapshot("main").unwrap();
    assert_eq!(s.master.as_deref(), Some("db2"), "as the agents tell it");
    assert_eq!(
        adoption(&s),
        Adoption::Unconfirmed {
            master: "db2".into()
        }
    );

    // The manager cannot reach db2 (its probe fails): still not adopted.
    t.record_probe(
        "main",
        "db2",
        ProbeResult {
            mysqld: MysqldStatus::Down {
                kind: myha_core::report::DownKind::Timeout,
                error: "connect timed out".into(),
            },
            latency_ms: None,
        },
    );
    let s = t.snapshot("main").unwrap();
    assert_eq!(
        adoption(&s),
        Adoption::Unconfirmed {
            master: "db2".into()
        }
    );

    // Once the manager reads the servers itself, the real master is the
    // one adopted.
    probe_all(&t);
    let s = t.snapshot("main").unwrap();
    assert_eq!(
        adoption(&s),
        Adoption::Adopt {
            master: "db1".into()
        }
    );
    assert_eq!(t.durable("main").unwrap().master, None);
}

// ------------------------------------------------------------------ waking the detector

/// Whether the detector of `main` has been woken since the last call (the
/// permit is taken).
fn woken(t: &Topology) -> bool {
    use futures_util::FutureExt;
    let wake = t.waker("main").unwrap();
    let woke = wake.notified().now_or_never().is_some();
    woke
}

/// Reports and probes that say nothing new (positions, lag, clocks move)
/// do not wake the detector, however many arrive; one that differs
/// materially (mysqld down, read_only flipped, a thread stopped) wakes it
/// at once. A flood of reports costs the manager no detector work.
#[test]
fn only_material_changes_wake_the_detector() {
    let t = topology();
    probe_all(&t);
    t.ingest(report("db2", 7, 1, replica(2, "10.0.0.11")))
        .unwrap();
    assert!(woken(&t), "the first probe and report of a host are news");
    assert!(!woken(&t), "one wake-up stored, not one per input");

    // 1,000 reports and probes whose positions, lag and clocks move.
    for seq in 2..1_000u64 {
        let mut f = replica(2, "10.0.0.11");
        f.gtid_executed = format!("0-1-{}", 100 + seq);
        f.clock_unix_us += seq as i64 * 250_000;
        if let Some(r) = f.replication.as_mut() {
            r.seconds_behind_source = Some(seq % 3);
            r.read_source_log_pos += seq;
        }
        t.ingest(report("db2", 7, seq, f.clone())).unwrap();
        t.record_probe("main", "db2", probe(f));
    }
    assert!(!woken(&t), "nothing material changed");

    // The replica's SQL thread stops: its next report wakes the detector.
    let mut stopped = replica(2, "10.0.0.11");
    if let Some(r) = stopped.replication.as_mut() {
        r.sql_thread = ThreadState::Stopped;
        r.last_sql_errno = 1062;
    }
    t.ingest(report("db2", 7, 1_000, stopped)).unwrap();
    assert!(woken(&t), "a stopped SQL thread is material");

    // The master's mysqld goes: the manager's probe wakes it.
    t.record_probe(
        "main",
        "db1",
        ProbeResult {
            mysqld: MysqldStatus::Down {
                kind: myha_core::report::DownKind::Refused,
                error: "connection refused".into(),
            },
            latency_ms: None,
        },
    );
    assert!(woken(&t), "mysqld down is material");
}
