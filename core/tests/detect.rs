//! The detection loop's decision: adopt a master, rejoin, upkeep, journal
//! each verdict once, ensure the VIP, fail over a dead master unless
//! anti-flapping or the settings forbid it (said once, not every tick).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::view;

use myha_core::analysis::{DetectionPolicy, Verdict};
use myha_core::detect::{
    next_actions, Action, Clock, DetectorConfig, DetectorState, EntryStatus, EntryStep,
    REJOIN_RETRY_MS, RETRY_AFTER_MS, VIP_RETRY_MS,
};
use myha_core::durable::DurableView;
use myha_core::report::ServerFacts;
use myha_core::topology::{ClusterSnapshot, Role};

fn replica_facts(id: u32) -> ServerFacts {
    ServerFacts {
        read_only: true,
        replication: Some(common::repl("db1")),
        ..common::facts(id)
    }
}

/// db1 the healthy master, db2 and db3 its replicas.
fn healthy() -> ClusterSnapshot {
    ClusterSnapshot {
        cluster: "c".into(),
        epoch: 1,
        generated_at_ms: 0,
        master: Some("db1".into()),
        servers: vec![
            view("db1", Role::Master, common::facts(1)),
            view("db2", Role::Replica, replica_facts(2)),
            view("db3", Role::Replica, replica_facts(3)),
        ],
        problems: Vec::new(),
    }
}

/// db1's mysqld is gone while its host's agent answers: a dead master.
fn dead_master() -> ClusterSnapshot {
    let mut s = healthy();
    s.master = None;
    let m = &mut s.servers[0];
    m.role = Role::Unknown;
    m.mysqld_up = Some(false);
    m.read_only = None;
    m.source = None;
    m.facts = None;
    m.manager_probe.ok = false;
    m.manager_probe.failing_for_ms = Some(5_000);
    m.manager_probe.error = Some("connection refused".into());
    m.agent.mysqld_process = Some(false);
    s
}

fn durable() -> DurableView {
    DurableView {
        epoch: 1,
        master: Some("db1".into()),
        ..DurableView::default()
    }
}

fn config() -> DetectorConfig {
    DetectorConfig {
        auto_failover: true,
        auto_rejoin: true,
        vip: false,
        policy: DetectionPolicy {
            master_down_after_ms: 1_000,
        },
        semi_sync_degrade_after_ms: 10_000,
        warmup_ms: 2_000,
    }
}

fn at(mono_ms: u64) -> Clock {
    Clock {
        mono_ms,
        unix_ms: 1_700_000_000_000 + mono_ms,
    }
}

fn journaled(actions: &[Action], step: EntryStep) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Journal(e) if e.step == step => Some(e.text.clone()),
            _ => None,
        })
        .collect()
}

fn fails_over(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::StartFailover(_)))
}

/// Run `ticks` ticks from `state`, 50 ms apart from `from`, over the same
/// inputs; every action, in order.
fn run(
    state: &mut DetectorState,
    snapshot: &ClusterSnapshot,
    durable: &DurableView,
    config: &DetectorConfig,
    from: u64,
    ticks: u64,
) -> Vec<Action> {
    let mut all = Vec::new();
    for i in 0..ticks {
        let (next, actions) = next_actions(state, snapshot, durable, config, at(from + i * 50));
        *state = next;
        all.extend(actions);
    }
    all
}

#[test]
fn dead_master_with_auto_failover_fails_over() {
    let (state, actions) = next_actions(
        &DetectorState::default(),
        &dead_master(),
        &durable(),
        &config(),
        at(10_000),
    );
    let Some(Action::StartFailover(a)) = actions.last() else {
        panic!("no failover: {actions:?}");
    };
    assert_eq!(a.verdict, Verdict::MysqldDownHostUp);
    assert_eq!(state.last_verdict, Some(Verdict::MysqldDownHostUp));
    let verdicts: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Journal(e) if e.step == EntryStep::Verdict => Some(e.status),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts, vec![EntryStatus::Failed]);
    assert!(actions.iter().any(|a| matches!(a, Action::Publish(_))));
}

#[test]
fn no_failover_during_warmup_or_while_an_operation_runs() {
    let (_, actions) = next_actions(
        &DetectorState::default(),
        &dead_master(),
        &durable(),
        &config(),
        at(1_000),
    );
    assert!(!fails_over(&actions), "{actions:?}");
    let busy = DurableView {
        in_progress: true,
        ..durable()
    };
    let (_, actions) = next_actions(
        &DetectorState::default(),
        &dead_master(),
        &busy,
        &config(),
        at(10_000),
    );
    assert!(!fails_over(&actions), "{actions:?}");
}

#[test]
fn healthy_master_is_not_failed_over() {
    let mut state = DetectorState::default();
    let actions = run(&mut state, &healthy(), &durable(), &config(), 10_000, 20);
    assert!(!fails_over(&actions));
    assert_eq!(state.last_verdict, Some(Verdict::Healthy));
}

#[test]
fn anti_flapping_blocks_and_says_so_once() {
    let now = at(10_000).unix_ms;
    let blocked = DurableView {
        last_failover_ms: Some(now - 60_000),
        blocked_until_ms: Some(now + 600_000),
        ..durable()
    };
    let mut state = DetectorState::default();
    let actions = run(&mut state, &dead_master(), &blocked, &config(), 10_000, 40);
    assert!(!fails_over(&actions), "{actions:?}");
    let said = journaled(&actions, EntryStep::NoFailover);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("anti-flapping: a failover happened 60 s ago"),
        "{}",
        said[0]
    );
    assert_eq!(journaled(&actions, EntryStep::Verdict).len(), 1);

    // Said again after the verdict changed and came back.
    let actions = run(&mut state, &healthy(), &blocked, &config(), 20_000, 2);
    assert_eq!(journaled(&actions, EntryStep::Verdict).len(), 1);
    let actions = run(&mut state, &dead_master(), &blocked, &config(), 30_000, 5);
    assert_eq!(journaled(&actions, EntryStep::NoFailover).len(), 1);

    // Once the block has passed, the failover starts.
    let expired = DurableView {
        blocked_until_ms: Some(now - 1),
        ..blocked
    };
    let actions = run(&mut state, &dead_master(), &expired, &config(), 10_000, 1);
    assert!(fails_over(&actions), "{actions:?}");
}

#[test]
fn auto_failover_off_says_so_once() {
    let off = DetectorConfig {
        auto_failover: false,
        ..config()
    };
    let mut state = DetectorState::default();
    let actions = run(&mut state, &dead_master(), &durable(), &off, 10_000, 40);
    assert!(!fails_over(&actions));
    let said = journaled(&actions, EntryStep::NoFailover);
    assert_eq!(
        said,
        vec!["auto_failover is off: run `myha failover` to fail over".to_string()]
    );
}

#[test]
fn verdict_change_is_journaled_once() {
    let mut state = DetectorState::default();
    let actions = run(&mut state, &healthy(), &durable(), &config(), 10_000, 10);
    let said = journaled(&actions, EntryStep::Verdict);
    assert_eq!(said, vec!["Healthy: manager reads db1".to_string()]);
    let (_, actions) = next_actions(&state, &dead_master(), &durable(), &config(), at(20_000));
    assert_eq!(journaled(&actions, EntryStep::Verdict).len(), 1);
}

#[test]
fn an_aborted_failover_is_retried_after_a_pause() {
    let mut state = DetectorState::default();
    let actions = run(&mut state, &dead_master(), &durable(), &config(), 10_000, 1);
    assert!(fails_over(&actions));
    let said = state.failover_ended(true, None, 10_100).unwrap();
    assert_eq!(said.step, EntryStep::NoFailover);
    assert_eq!(state.last_verdict, None, "journaled again after a failover");
    let actions = run(
        &mut state,
        &dead_master(),
        &durable(),
        &config(),
        10_150,
        10,
    );
    assert!(!fails_over(&actions));
    assert_eq!(journaled(&actions, EntryStep::Verdict).len(), 1);
    let actions = run(
        &mut state,
        &dead_master(),
        &durable(),
        &config(),
        10_100 + RETRY_AFTER_MS,
        1,
    );
    assert!(fails_over(&actions));
    // A failover that did something is not paused after.
    assert!(state.failover_ended(false, Some(2), 20_000).is_none());
    assert_eq!(state.retry_at_ms, None);
    assert_eq!(state.vip_epoch, Some(2));
}

fn no_master_on_record() -> DurableView {
    DurableView {
        master: None,
        ..durable()
    }
}

#[test]
fn adopts_only_a_master_the_manager_confirms() {
    let (_, actions) = next_actions(
        &DetectorState::default(),
        &healthy(),
        &no_master_on_record(),
        &config(),
        at(10_000),
    );
    assert_eq!(
        actions,
        vec![Action::AdoptMaster {
            master: "db1".into(),
            epoch: 1
        }]
    );

    // Known only from its agent's reports: deferred, said once.
    let mut snap = healthy();
    snap.servers[0].source = Some("agent".into());
    snap.servers[0].manager_probe.ok = false;
    let mut state = DetectorState::default();
    let actions = run(
        &mut state,
        &snap,
        &no_master_on_record(),
        &config(),
        10_000,
        10,
    );
    let said = journaled(&actions, EntryStep::AdoptMaster);
    assert_eq!(said.len(), 1, "{actions:?}");
    assert!(said[0].contains("db1 looks like the master only in its agent's reports"));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::AdoptMaster { .. })));
    state.adopted();
    assert!(state.adoption_deferred.is_empty());

    // Before the manager's first probe answered: wait silently.
    snap.servers[0].manager_probe.age_ms = None;
    let (_, actions) = next_actions(
        &DetectorState::default(),
        &snap,
        &no_master_on_record(),
        &config(),
        at(10_000),
    );
    assert!(actions.is_empty(), "{actions:?}");

    // Nothing else happens without a master on record.
    let (_, actions) = next_actions(
        &DetectorState::default(),
        &dead_master(),
        &no_master_on_record(),
        &config(),
        at(10_000),
    );
    assert!(actions.is_empty(), "{actions:?}");
}

/// db3 is db1's former master, back read-only and replicating from nobody.
fn former_master_back() -> (ClusterSnapshot, DurableView) {
    let mut snap = healthy();
    let s = &mut snap.servers[2];
    s.role = Role::NeedsRejoin;
    s.replicates_from = None;
    s.io_running = None;
    s.sql_running = None;
    s.facts = Some(ServerFacts {
        read_only: true,
        ..common::facts(3)
    });
    let durable = DurableView {
        needs_rejoin: vec!["db3".into()],
        ..durable()
    };
    (snap, durable)
}

fn rejoins(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartRejoin(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_needs_rejoin_host_rejoins_when_eligible_every_few_seconds() {
    let (snap, durable) = former_master_back();
    let mut state = DetectorState::default();
    let actions = run(&mut state, &snap, &durable, &config(), 10_000, 10);
    assert_eq!(rejoins(&actions), vec!["db3".to_string()]);
    let actions = run(
        &mut state,
        &snap,
        &durable,
        &config(),
        10_000 + REJOIN_RETRY_MS + 1,
        1,
    );
    assert_eq!(rejoins(&actions), vec!["db3".to_string()]);

    // Not while auto_rejoin is off, an operation runs, or it is diverged,
    // writable, or down.
    let off = DetectorConfig {
        auto_rejoin: false,
        ..config()
    };
    let fresh = DetectorState::default;
    let (_, a) = next_actions(&fresh(), &snap, &durable, &off, at(10_000));
    assert!(rejoins(&a).is_empty());
    let busy = DurableView {
        in_progress: true,
        ..durable.clone()
    };
    let (_, a) = next_actions(&fresh(), &snap, &busy, &config(), at(10_000));
    assert!(rejoins(&a).is_empty());
    let mut diverged = durable.clone();
    diverged.diverged.insert("db3".into(), vec!["0-3-5".into()]);
    let (_, a) = next_actions(&fresh(), &snap, &diverged, &config(), at(10_000));
    assert!(rejoins(&a).is_empty());
    let mut writable = snap.clone();
    writable.servers[2].read_only = Some(false);
    let (_, a) = next_actions(&fresh(), &writable, &durable, &config(), at(10_000));
    assert!(rejoins(&a).is_empty());
    let mut down = snap.clone();
    down.servers[2].mysqld_up = None;
    let (_, a) = next_actions(&fresh(), &down, &durable, &config(), at(10_000));
    assert!(rejoins(&a).is_empty());
    // Nor while the snapshot's master is not the one on record.
    let mut other = snap.clone();
    other.master = None;
    let (_, a) = next_actions(&fresh(), &other, &durable, &config(), at(10_000));
    assert!(rejoins(&a).is_empty());
}

#[test]
fn a_replica_left_on_an_old_master_rejoins() {
    let mut snap = healthy();
    snap.servers[2].replicates_from = Some("db2:3306".into());
    let (_, a) = next_actions(
        &DetectorState::default(),
        &snap,
        &durable(),
        &config(),
        at(10_000),
    );
    assert_eq!(rejoins(&a), vec!["db3".to_string()]);
    // Replicating from outside the cluster: left alone.
    snap.servers[2].replicates_from = Some("elsewhere:3306".into());
    let (_, a) = next_actions(
        &DetectorState::default(),
        &snap,
        &durable(),
        &config(),
        at(10_000),
    );
    assert!(rejoins(&a).is_empty());
}

#[test]
fn a_former_master_replicating_from_the_master_is_cleared_on_the_managers_reading() {
    let snap = healthy();
    let durable = DurableView {
        needs_rejoin: vec!["db3".into()],
        ..durable()
    };
    let (_, a) = next_actions(
        &DetectorState::default(),
        &snap,
        &durable,
        &config(),
        at(10_000),
    );
    assert_eq!(a[0], Action::ClearNeedsRejoin(vec!["db3".into()]));
    assert_eq!(
        journaled(&a, EntryStep::Rejoined),
        vec!["db3 replicate(s) from the master again".to_string()]
    );
    // Its agent's word alone does not clear it.
    let mut agent_only = snap.clone();
    agent_only.servers[2].source = Some("agent".into());
    let (_, a) = next_actions(
        &DetectorState::default(),
        &agent_only,
        &durable,
        &config(),
        at(10_000),
    );
    assert!(!a.iter().any(|a| matches!(a, Action::ClearNeedsRejoin(_))));
}

#[test]
fn the_vip_is_ensured_on_a_healthy_master_and_retried() {
    let with_vip = DetectorConfig {
        vip: true,
        ..config()
    };
    let ensures = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::EnsureVip { .. }))
            .count()
    };
    let mut state = DetectorState::default();
    let a = run(&mut state, &healthy(), &durable(), &with_vip, 10_000, 10);
    assert_eq!(ensures(&a), 1);
    // Failed (not held): tried again after the pause.
    let a = run(
        &mut state,
        &healthy(),
        &durable(),
        &with_vip,
        10_000 + VIP_RETRY_MS + 1,
        1,
    );
    assert_eq!(ensures(&a), 1);
    state.vip_held(1);
    let a = run(&mut state, &healthy(), &durable(), &with_vip, 20_000, 10);
    assert_eq!(ensures(&a), 0);
    // A new epoch needs it again.
    let next = DurableView {
        epoch: 2,
        ..durable()
    };
    let a = run(&mut state, &healthy(), &next, &with_vip, 30_000, 1);
    assert_eq!(
        a.iter()
            .find(|a| matches!(a, Action::EnsureVip { .. }))
            .cloned(),
        Some(Action::EnsureVip {
            master: "db1".into(),
            epoch: 2
        })
    );
    // Without a VIP configured, never.
    let mut state = DetectorState::default();
    let a = run(&mut state, &healthy(), &durable(), &config(), 10_000, 10);
    assert_eq!(ensures(&a), 0);
}

#[test]
fn a_needlessly_fenced_master_is_unfenced_and_gets_the_vip_back() {
    let with_vip = DetectorConfig {
        vip: true,
        ..config()
    };
    let mut state = DetectorState::default();
    run(&mut state, &healthy(), &durable(), &with_vip, 10_000, 1);
    state.vip_held(1);
    // db1 fenced itself: read-only, replicating from nobody.
    let mut fenced = healthy();
    fenced.master = None;
    fenced.servers[0].role = Role::Unknown;
    fenced.servers[0].read_only = Some(true);
    fenced.servers[0].facts = Some(ServerFacts {
        read_only: true,
        ..common::facts(1)
    });
    let a = run(&mut state, &fenced, &durable(), &with_vip, 20_000, 30);
    let upkeep: Vec<_> = a
        .iter()
        .filter(|a| matches!(a, Action::Upkeep { .. }))
        .collect();
    assert_eq!(upkeep.len(), 1, "{a:?}");
    let unfence = a
        .iter()
        .position(|x| matches!(x, Action::Upkeep { .. }))
        .unwrap();
    let vip = a
        .iter()
        .position(|x| matches!(x, Action::EnsureVip { .. }))
        .expect("the VIP goes back");
    assert!(unfence < vip);
}

#[test]
fn semi_sync_seen_on_the_master_is_recorded_as_wanted() {
    let mut snap = healthy();
    snap.servers[0].facts.as_mut().unwrap().semi_sync_master = true;
    let (_, a) = next_actions(
        &DetectorState::default(),
        &snap,
        &durable(),
        &config(),
        at(10_000),
    );
    assert!(a.contains(&Action::WantSemiSync));
    let wanted = DurableView {
        semi_sync_wanted: true,
        ..durable()
    };
    let (_, a) = next_actions(
        &DetectorState::default(),
        &snap,
        &wanted,
        &config(),
        at(10_000),
    );
    assert!(!a.contains(&Action::WantSemiSync));
}

#[test]
fn the_detector_slows_down_only_while_quiet() {
    use myha_core::detect::{next_look_ms, FAST_TICK_MS, IDLE_TICK_MS};
    let cfg = config();
    let d = durable();
    // A healthy cluster, past the warm-up: the idle pace.
    let mut st = DetectorState::default();
    let (next, _) = next_actions(&st, &healthy(), &d, &cfg, at(5_000));
    st = next;
    assert_eq!(next_look_ms(&st, &d, &cfg, at(5_000)), IDLE_TICK_MS);
    // During the warm-up, an operation, a pending retry: fast.
    assert_eq!(next_look_ms(&st, &d, &cfg, at(1_000)), FAST_TICK_MS);
    let busy = DurableView {
        in_progress: true,
        ..durable()
    };
    assert_eq!(next_look_ms(&st, &busy, &cfg, at(5_000)), FAST_TICK_MS);
    let retry = DetectorState {
        retry_at_ms: Some(9_000),
        ..st.clone()
    };
    assert_eq!(next_look_ms(&retry, &d, &cfg, at(5_000)), FAST_TICK_MS);
    // With a VIP, fast until it is known to be on the master of the epoch.
    let vip = DetectorConfig { vip: true, ..cfg };
    assert_eq!(next_look_ms(&st, &d, &vip, at(5_000)), FAST_TICK_MS);
    let held = DetectorState {
        vip_epoch: Some(d.epoch),
        ..st.clone()
    };
    assert_eq!(next_look_ms(&held, &d, &vip, at(5_000)), IDLE_TICK_MS);
    // Any other verdict: fast.
    let (suspect, _) = next_actions(&st, &dead_master(), &d, &cfg, at(5_000));
    assert_ne!(suspect.last_verdict, Some(Verdict::Healthy));
    assert_eq!(next_look_ms(&suspect, &d, &cfg, at(5_000)), FAST_TICK_MS);
}

/// A quiet look publishes its analysis and changes nothing: the manager
/// keeps the idle pace (it looks fast after an action that changes the
/// cluster). A failover, a VIP move, a rejoin do change it.
#[test]
fn a_quiet_look_changes_nothing() {
    let cfg = config();
    let d = durable();
    let (st, first) = next_actions(&DetectorState::default(), &healthy(), &d, &cfg, at(5_000));
    // The first look journals the verdict: still no change to the cluster.
    assert!(
        first.iter().any(|a| matches!(a, Action::Journal(_))),
        "{first:?}"
    );
    for later in [5_500, 6_000, 60_000] {
        let (_, actions) = next_actions(&st, &healthy(), &d, &cfg, at(later));
        assert!(
            actions.iter().any(|a| matches!(a, Action::Publish(_))),
            "{actions:?}"
        );
        assert!(
            actions.iter().all(|a| !a.changes_the_cluster()),
            "at {later}: {actions:?}"
        );
    }
    let (_, dead) = next_actions(&st, &dead_master(), &d, &cfg, at(20_000));
    assert!(
        dead.iter()
            .any(|a| matches!(a, Action::StartFailover(_)) && a.changes_the_cluster()),
        "{dead:?}"
    );
    let vip = DetectorConfig { vip: true, ..cfg };
    let (_, ensure) = next_actions(&st, &healthy(), &d, &vip, at(6_000));
    assert!(
        ensure
            .iter()
            .any(|a| matches!(a, Action::EnsureVip { .. }) && a.changes_the_cluster()),
        "{ensure:?}"
    );
}

/// A quiet cluster's replica that the manager and its agent both read is
/// probed every other interval; the master, and every server of a cluster
/// that is not quiet or that someone cannot read, every interval.
#[test]
fn only_a_quiet_clusters_readable_replicas_are_probed_less_often() {
    use myha_core::detect::{probe_due, ProbePaceInput, RELAXED_PROBE_EVERY};
    let interval = 500;
    let relaxed = ProbePaceInput {
        cluster_quiet: true,
        master: false,
        probe_read: true,
        agent_reads: true,
        agrees: true,
        since_probe_ms: Some(interval + 20),
    };
    // One interval after the last probe started (give or take a late
    // tick): skipped; the next tick probes, even if it fires early.
    assert!(!probe_due(relaxed, interval));
    assert!(!probe_due(
        ProbePaceInput {
            since_probe_ms: Some(interval - 20),
            ..relaxed
        },
        interval
    ));
    for since in [2 * interval - 60, 2 * interval, 3 * interval] {
        let input = ProbePaceInput {
            since_probe_ms: Some(since),
            ..relaxed
        };
        assert!(
            probe_due(input, interval),
            "{since} ms after the last probe"
        );
    }
    // Never more than RELAXED_PROBE_EVERY intervals from one start to the
    // next (below a probe's staleness bound of 3 intervals + the timeout).
    assert!(probe_due(
        ProbePaceInput {
            since_probe_ms: Some(RELAXED_PROBE_EVERY * interval),
            ..relaxed
        },
        interval
    ));
    // Any one condition missing: every tick.
    let full = [
        ProbePaceInput {
            cluster_quiet: false,
            ..relaxed
        },
        ProbePaceInput {
            master: true,
            ..relaxed
        },
        ProbePaceInput {
            probe_read: false,
            ..relaxed
        },
        ProbePaceInput {
            agent_reads: false,
            ..relaxed
        },
        ProbePaceInput {
            agrees: false,
            ..relaxed
        },
        ProbePaceInput {
            since_probe_ms: None,
            ..relaxed
        },
    ];
    for input in full {
        assert!(probe_due(input, interval), "{input:?}");
    }
}
