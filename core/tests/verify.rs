//! What the manager reads itself outranks what an agent reports: a
//! compromised database host, forging its agent's reports, can delay a
//! decision but never cause a wrong one. The view of a server takes the
//! manager's own fresh probe over any agent report, flags where they
//! disagree, and a master is adopted only on the manager's own reading.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use myha_core::analysis::{adoption, Adoption};
use myha_core::report::{
    AckStatus, AgentReport, DownKind, MysqldStatus, ReportAck, ServerFacts, MAX_SEQ,
};
use myha_core::topology::{
    build_snapshot, server_view, Disagreement, Freshness, HostObservation, ProbeResult, Role,
};

const FRESH: Freshness = Freshness {
    agent_stale_after_ms: 1_000,
    probe_stale_after_ms: 1_000,
};

fn master(server_id: u32) -> ServerFacts {
    common::facts(server_id)
}

fn replica(server_id: u32, of: &str) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication: Some(common::repl(of)),
        ..common::facts(server_id)
    }
}

/// What a forger says of the real master: read-only, replicating from nobody.
fn read_only(server_id: u32) -> ServerFacts {
    ServerFacts {
        read_only: true,
        ..common::facts(server_id)
    }
}

fn report(host: &str, f: ServerFacts) -> AgentReport {
    AgentReport {
        cluster: "main".into(),
        host: host.into(),
        agent_version: "0.1.0".into(),
        instance: 7,
        seq: 1,
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
        latency_ms: Some(0.5),
    }
}

fn probe_down() -> ProbeResult {
    ProbeResult {
        mysqld: MysqldStatus::Down {
            kind: DownKind::Timeout,
            error: "connect timed out".into(),
        },
        latency_ms: None,
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

// ------------------------------------------------------------------ server_view

#[test]
fn a_fresher_forged_read_only_does_not_override_the_probe() {
    // The probe is 240 ms old, the forged report 1 ms: the probe wins.
    let forged = report("db1", read_only(1));
    let p = probe(master(1));
    let v = server_view(&obs("db1", Some((&forged, 1)), Some((&p, 240))), FRESH);
    assert_eq!(v.role, Role::Master);
    assert_eq!(v.read_only, Some(false));
    assert_eq!(v.source.as_deref(), Some("manager"));
    assert_eq!(v.age_ms, Some(240));
    assert!(v.probe_confirmed());
    assert_eq!(v.facts.as_ref(), Some(&master(1)));
    assert!(v.disagreements.contains(&Disagreement::ReadOnly {
        probe: false,
        agent: true
    }));
    assert!(v.disagreements.contains(&Disagreement::Role {
        probe: Role::Master,
        agent: Role::Unknown
    }));
    // The agent is still heard, as an agent.
    assert!(v.host_reachable);
    assert!(v.agent.reachable);
}

#[test]
fn a_forged_writable_replica_stays_a_replica() {
    let forged = report("db2", master(2));
    let p = probe(replica(2, "db1"));
    let v = server_view(&obs("db2", Some((&forged, 1)), Some((&p, 200))), FRESH);
    assert_eq!(v.role, Role::Replica);
    assert_eq!(v.read_only, Some(true));
    assert_eq!(v.replicates_from.as_deref(), Some("db1:3306"));
    assert!(v.disagreements.contains(&Disagreement::ReadOnly {
        probe: true,
        agent: false
    }));
    assert!(v.disagreements.contains(&Disagreement::ReplicationSource {
        probe: Some("db1:3306".into()),
        agent: None
    }));
}

#[test]
fn a_forged_master_host_is_flagged() {
    let forged = report("db2", replica(2, "db9"));
    let p = probe(replica(2, "db1"));
    let v = server_view(&obs("db2", Some((&forged, 1)), Some((&p, 200))), FRESH);
    assert_eq!(v.replicates_from.as_deref(), Some("db1:3306"));
    assert_eq!(
        v.disagreements,
        vec![Disagreement::ReplicationSource {
            probe: Some("db1:3306".into()),
            agent: Some("db9:3306".into())
        }]
    );
}

#[test]
fn without_a_probe_the_agent_is_used() {
    let a = report("db1", read_only(1));
    let v = server_view(&obs("db1", Some((&a, 1)), None), FRESH);
    assert_eq!(v.source.as_deref(), Some("agent"));
    assert_eq!(v.read_only, Some(true));
    assert!(!v.probe_confirmed());
    assert!(v.disagreements.is_empty());
}

#[test]
fn with_a_failing_or_stale_probe_the_agent_is_used() {
    let a = report("db1", master(1));
    let down = probe_down();
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&down, 100))), FRESH);
    assert_eq!(v.source.as_deref(), Some("agent"));
    assert_eq!(v.role, Role::Master);
    assert!(!v.probe_confirmed());
    assert!(v.disagreements.is_empty());

    let old = probe(read_only(1));
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&old, 1_001))), FRESH);
    assert_eq!(v.source.as_deref(), Some("agent"));
    assert_eq!(v.read_only, Some(false));
    assert!(
        v.disagreements.is_empty(),
        "a stale probe contradicts nothing"
    );
}

#[test]
fn gtids_that_moved_on_are_no_disagreement() {
    let ahead = ServerFacts {
        gtid_executed: "0-1-150".into(),
        ..master(1)
    };
    let a = report("db1", ahead);
    let p = probe(master(1));
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&p, 200))), FRESH);
    assert!(v.disagreements.is_empty());
    assert_eq!(v.gtid_position.as_deref(), Some("0-1-100"));

    // ...and the probe ahead of an older report neither.
    let behind = ServerFacts {
        gtid_executed: "0-1-50".into(),
        ..master(1)
    };
    let a = report("db1", behind);
    let v = server_view(&obs("db1", Some((&a, 900)), Some((&p, 10))), FRESH);
    assert!(v.disagreements.is_empty());
}

#[test]
fn gtids_neither_of_which_contains_the_other_are_flagged() {
    let p = probe(ServerFacts {
        gtid_executed: "0-1-100,1-1-5".into(),
        ..master(1)
    });
    let a = report(
        "db1",
        ServerFacts {
            gtid_executed: "0-1-90,1-1-9".into(),
            ..master(1)
        },
    );
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&p, 200))), FRESH);
    assert_eq!(
        v.disagreements,
        vec![Disagreement::Gtids {
            probe: "0-1-100,1-1-5".into(),
            agent: "0-1-90,1-1-9".into()
        }]
    );
    assert_eq!(v.gtid_position.as_deref(), Some("0-1-100,1-1-5"));
}

#[test]
fn unreadable_gtids_prove_nothing() {
    let p = probe(master(1));
    let a = report(
        "db1",
        ServerFacts {
            gtid_executed: "garbage".into(),
            ..master(1)
        },
    );
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&p, 200))), FRESH);
    assert!(v.disagreements.is_empty());
}

#[test]
fn an_agent_claiming_mysqld_gone_while_the_manager_reads_it_is_flagged() {
    let mut a = report("db1", master(1));
    a.mysqld = MysqldStatus::Down {
        kind: DownKind::Refused,
        error: "Connection refused".into(),
    };
    a.mysqld_process = Some(false);
    let p = probe(master(1));
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&p, 200))), FRESH);
    assert_eq!(v.mysqld_up, Some(true));
    assert_eq!(v.role, Role::Master);
    assert_eq!(
        v.disagreements,
        vec![Disagreement::MysqldUp {
            probe: true,
            agent: false
        }]
    );
    // An overloaded mysqld refusing the agent's connection is no
    // contradiction.
    a.mysqld = MysqldStatus::Down {
        kind: DownKind::Rejected,
        error: "Too many connections".into(),
    };
    a.mysqld_process = Some(true);
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&p, 200))), FRESH);
    assert!(v.disagreements.is_empty());
}

#[test]
fn another_server_id_is_flagged() {
    let a = report("db1", master(9));
    let p = probe(master(1));
    let v = server_view(&obs("db1", Some((&a, 1)), Some((&p, 200))), FRESH);
    assert_eq!(v.server_id, Some(1));
    assert_eq!(
        v.disagreements,
        vec![Disagreement::ServerId { probe: 1, agent: 9 }]
    );
}

#[test]
fn disagreements_read_plainly_and_serialize_tagged() {
    let d = Disagreement::ReadOnly {
        probe: false,
        agent: true,
    };
    assert_eq!(
        d.to_string(),
        "read_only: the manager reads OFF, its agent reports ON"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"field": "read_only", "probe": false, "agent": true})
    );
    let back: Disagreement = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}

// ------------------------------------------------------------------ snapshot and adoption

/// db1 the real master, db2 its replica, both probed by the manager; the
/// agents' reports say the opposite ("db2 writable, db1 read-only").
#[test]
fn forged_reports_do_not_move_the_master_of_a_snapshot() {
    let f1 = report("db1", read_only(1));
    let f2 = report("db2", master(2));
    let p1 = probe(master(1));
    let p2 = probe(replica(2, "db1"));
    let hosts = [
        obs("db1", Some((&f1, 1)), Some((&p1, 240))),
        obs("db2", Some((&f2, 1)), Some((&p2, 240))),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master.as_deref(), Some("db1"));
    assert_eq!(
        adoption(&s),
        Adoption::Adopt {
            master: "db1".into()
        }
    );
    assert!(!s.server("db1").unwrap().disagreements.is_empty());
    assert!(!s.server("db2").unwrap().disagreements.is_empty());
}

#[test]
fn a_master_seen_only_through_its_agent_is_not_adopted() {
    // The manager cannot read db1 at all, reads db2 as a read-only server;
    // db2's agent... and db1's agent claim db1 is the writable master.
    let f1 = report("db1", master(1));
    let f2 = report("db2", read_only(2));
    let p2 = probe(read_only(2));
    let down = probe_down();
    for p1 in [None, Some((&down, 100u64))] {
        let hosts = [
            obs("db1", Some((&f1, 1)), p1),
            obs("db2", Some((&f2, 1)), Some((&p2, 100))),
        ];
        let s = build_snapshot("main", 1, 0, &hosts, FRESH);
        assert_eq!(s.master.as_deref(), Some("db1"), "shown as it is reported");
        assert_eq!(
            adoption(&s),
            Adoption::Unconfirmed {
                master: "db1".into()
            }
        );
    }
}

#[test]
fn a_forged_second_master_blocks_adoption() {
    // db2's probe fails; its forged report says writable master: two
    // masters are visible, neither is adopted (a delay, not a wrong choice).
    let f2 = report("db2", master(2));
    let p1 = probe(master(1));
    let down = probe_down();
    let hosts = [
        obs("db1", None, Some((&p1, 100))),
        obs("db2", Some((&f2, 1)), Some((&down, 100))),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(s.master, None);
    assert_eq!(adoption(&s), Adoption::NoMaster);
}

#[test]
fn no_master_no_adoption() {
    let p1 = probe(read_only(1));
    let hosts = [obs("db1", None, Some((&p1, 100)))];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(adoption(&s), Adoption::NoMaster);
}

#[test]
fn a_probe_confirmed_master_is_adopted() {
    let p1 = probe(master(1));
    let p2 = probe(replica(2, "db1"));
    let a2 = report("db2", replica(2, "db1"));
    let hosts = [
        obs("db1", None, Some((&p1, 100))),
        obs("db2", Some((&a2, 1)), Some((&p2, 100))),
    ];
    let s = build_snapshot("main", 1, 0, &hosts, FRESH);
    assert_eq!(
        adoption(&s),
        Adoption::Adopt {
            master: "db1".into()
        }
    );
}

// ------------------------------------------------------------------ acks and seq

#[test]
fn an_ack_without_status_is_accepted() {
    // From a manager that predates the status.
    let ack: ReportAck = serde_json::from_str(r#"{"epoch":3,"master":"db1","seq":12}"#).unwrap();
    assert_eq!(ack.status, AckStatus::Accepted);
    assert!(ack.accepted());
    let stale: ReportAck =
        serde_json::from_str(r#"{"epoch":3,"master":null,"seq":12,"status":"stale"}"#).unwrap();
    assert_eq!(stale.status, AckStatus::Stale);
    assert!(!stale.accepted());
}

#[test]
fn max_seq_is_exact_in_json() {
    assert_eq!(MAX_SEQ, 9_007_199_254_740_992);
    assert_eq!(MAX_SEQ as f64 as u64, MAX_SEQ);
}
