//! Switchover pre-checks: every reason at once, typed, each shown as the
//! sentence an operator reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::view;

use myha_core::analysis::Verdict;
use myha_core::candidate::CandidateChoice;
use myha_core::report::ServerFacts;
use myha_core::switchover::{precheck, PrecheckProblem, SwitchoverInput};
use myha_core::topology::{ClusterSnapshot, Role};

fn snapshot(lag: Option<f64>) -> ClusterSnapshot {
    let replica = |name: &str, id| {
        let mut v = view(
            name,
            Role::Replica,
            ServerFacts {
                read_only: true,
                ..common::facts(id)
            },
        );
        v.lag_seconds = lag;
        v
    };
    ClusterSnapshot {
        cluster: "c".into(),
        epoch: 1,
        generated_at_ms: 0,
        master: Some("db1".into()),
        servers: vec![
            view("db1", Role::Master, common::facts(1)),
            replica("db2", 2),
            replica("db3", 3),
        ],
        problems: Vec::new(),
    }
}

fn choice(chosen: Option<&str>) -> CandidateChoice {
    CandidateChoice {
        chosen: chosen.map(Into::into),
        most_advanced: chosen.map(Into::into),
        catch_up_from: None,
        catch_up_gtids: None,
        ranking: chosen.into_iter().map(Into::into).collect(),
        excluded: Vec::new(),
        blocker: None,
    }
}

fn input<'a>(
    snap: &'a ClusterSnapshot,
    choice: &'a CandidateChoice,
    requested: Option<&'a str>,
    verdict: Verdict,
) -> SwitchoverInput<'a> {
    SwitchoverInput {
        snapshot: snap,
        master: Some("db1"),
        verdict: Some(verdict),
        operation_in_progress: None,
        requested,
        choice,
        max_lag_seconds: 5.0,
    }
}

#[test]
fn a_healthy_cluster_switches_to_the_chosen_replica() {
    let snap = snapshot(Some(0.0));
    let c = choice(Some("db2"));
    let plan = precheck(&input(&snap, &c, None, Verdict::Healthy));
    assert_eq!(plan.problems, Vec::new());
    assert_eq!(plan.old_master.as_deref(), Some("db1"));
    assert_eq!(plan.target.as_deref(), Some("db2"));
}

#[test]
fn every_reason_is_reported_at_once_and_typed() {
    let snap = snapshot(Some(30.0));
    let c = choice(None);
    let plan = precheck(&input(&snap, &c, Some("db1"), Verdict::DeadMaster));
    assert!(plan
        .problems
        .contains(&PrecheckProblem::AlreadyMaster { host: "db1".into() }));
    assert!(plan
        .problems
        .contains(&PrecheckProblem::NoTarget { blocker: None }));
    assert!(
        matches!(&plan.problems[0], PrecheckProblem::MasterNotHealthy { master, verdict: Some(Verdict::DeadMaster) } if master == "db1"),
        "{:?}",
        plan.problems
    );
    // Sentences for the journal and the CLI; JSON carries the same text.
    let text: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
    assert!(
        text.contains(&"db1 is already the master".to_string()),
        "{text:?}"
    );
    assert!(text.contains(&"no eligible target".to_string()), "{text:?}");
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["problems"][0], text[0].as_str());
}

#[test]
fn a_lagging_requested_target_is_refused_with_its_lag() {
    let snap = snapshot(Some(30.0));
    let c = choice(Some("db3"));
    let plan = precheck(&input(&snap, &c, Some("db3"), Verdict::Healthy));
    assert_eq!(
        plan.problems,
        vec![PrecheckProblem::Lagging {
            host: "db3".into(),
            lag: 30.0,
            max: 5.0
        }]
    );
    assert_eq!(
        plan.problems[0].to_string(),
        "db3 lags 30.0 s, more than 5.0 s"
    );
    let snap = snapshot(None);
    let plan = precheck(&input(&snap, &c, None, Verdict::Healthy));
    assert_eq!(
        plan.problems,
        vec![PrecheckProblem::LagUnknown { host: "db3".into() }]
    );
}
