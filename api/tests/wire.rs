//! The JSON on the wire keeps its shape: these are the bodies the daemons
//! exchanged before the types moved here.
use myha_api::agent::{FenceRequest, VipOp, VipRequest};
use myha_api::requests::{RejoinAnswer, SwitchoverLine, SwitchoverRequest};
use myha_api::router::{EndpointLimits, Limits};
use serde_json::json;

#[test]
fn agent_orders_keep_their_shape() {
    let vip = VipRequest {
        op: VipOp::Add,
        epoch: Some(7),
    };
    assert_eq!(
        serde_json::to_value(&vip).unwrap(),
        json!({"op": "add", "epoch": 7})
    );
    // An order without an epoch is still read (older managers).
    let old: VipRequest = serde_json::from_value(json!({"op": "remove"})).unwrap();
    assert_eq!(old.op, VipOp::Remove);
    assert_eq!(old.epoch, None);
    let fence = FenceRequest {
        epoch: 3,
        master: "db1".into(),
    };
    assert_eq!(
        serde_json::to_value(&fence).unwrap(),
        json!({"epoch": 3, "master": "db1"})
    );
}

#[test]
fn switchover_stream_lines_are_told_apart_by_their_key() {
    let line = r#"{"event":{"at_ms":1,"cluster":"c","operation":"o","step":"promote","status":"ok","detail":"d"}}"#;
    match serde_json::from_str::<SwitchoverLine>(line).unwrap() {
        SwitchoverLine::Event { event } => assert_eq!(event.step.as_str(), "promote"),
        SwitchoverLine::Report { .. } => panic!("an event read as a report"),
    }
    let req: SwitchoverRequest = serde_json::from_value(json!({"to": "db2"})).unwrap();
    assert_eq!(req.to.as_deref(), Some("db2"));
    assert!(!req.dry_run);
    assert!(serde_json::from_str::<SwitchoverLine>(r#"{"other":1}"#).is_err());
}

#[test]
fn rejoin_answer_and_router_limits_keep_their_keys() {
    let a = RejoinAnswer {
        rejoined: false,
        detail: "why".into(),
    };
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        json!({"rejoined": false, "detail": "why"})
    );
    let limits = Limits {
        max_connections: 10,
        max_connections_per_source: 2,
        handshake_timeout_ms: 5000,
        endpoints: [("writer".to_string(), EndpointLimits::default())]
            .into_iter()
            .collect(),
    };
    let v = serde_json::to_value(&limits).unwrap();
    assert_eq!(v["writer"]["refused_listener_cap"], 0);
    assert_eq!(v["max_connections"], 10);
}

#[test]
fn attention_is_healthy_degraded_or_critical_with_reasons() {
    use myha_api::status::{Attention, ClusterStatus};
    let healthy: ClusterStatus = serde_json::from_value(serde_json::json!({
        "cluster": "c", "epoch": 3, "generated_at_ms": 1, "master": "db1",
        "servers": [], "problems": [],
        "epoch_master": "db1", "analysis": null,
        "readiness": { "chosen": "db2", "most_advanced": "db2", "catch_up_from": null,
                       "catch_up_gtids": null, "ranking": ["db2"], "excluded": [], "blocker": null },
        "failover_blocked_until_ms": null, "last_failover_ms": null, "in_progress": null,
        "needs_rejoin": []
    }))
    .unwrap();
    assert_eq!(healthy.attention(10), (Attention::Healthy, vec![]));
    let mut blocked = healthy.clone();
    blocked.failover_blocked_until_ms = Some(20);
    assert_eq!(blocked.attention(10).0, Attention::Degraded);
    assert_eq!(
        blocked.attention(30).0,
        Attention::Healthy,
        "the block is over"
    );
    let mut rejoin = healthy.clone();
    rejoin.needs_rejoin = vec!["db3".into()];
    let (level, why) = rejoin.attention(10);
    assert_eq!(level, Attention::Degraded);
    assert!(why.iter().any(|w| w.contains("db3")), "{why:?}");
    let mut dead = rejoin.clone();
    dead.snapshot.master = None;
    let (level, why) = dead.attention(10);
    assert_eq!((level, level.code()), (Attention::Critical, 2));
    assert!(why[0].contains("no writable master"), "{why:?}");
    let mut stuck = healthy.clone();
    if let Some(r) = stuck.readiness.as_mut() {
        r.chosen = None;
        r.blocker = Some("every replica lags".into());
    }
    assert!(stuck.attention(10).1[0].contains("every replica lags"));
}

#[test]
fn history_pages_keep_the_latest_events_in_range() {
    use myha_api::journal::{Event, HistoryQuery, Step, StepStatus};
    let ev = |at_ms| Event {
        at_ms,
        cluster: "c".into(),
        operation: String::new(),
        step: Step::Verdict,
        status: StepStatus::Info,
        detail: String::new(),
        duration_ms: None,
    };
    let all: Vec<Event> = (1..=10).map(ev).collect();
    let at = |v: Vec<Event>| v.iter().map(|e| e.at_ms).collect::<Vec<_>>();
    let q = |since_ms, before_ms, limit| HistoryQuery {
        since_ms,
        before_ms,
        limit,
    };
    assert_eq!(at(q(None, None, Some(3)).page(all.clone())), vec![8, 9, 10]);
    assert_eq!(
        at(q(None, Some(8), Some(3)).page(all.clone())),
        vec![5, 6, 7],
        "the page before"
    );
    assert_eq!(at(q(Some(9), None, None).page(all.clone())), vec![9, 10]);
    assert_eq!(
        at(q(Some(2), Some(5), Some(10)).page(all.clone())),
        vec![2, 3, 4]
    );
    assert_eq!(q(None, None, None).page(all.clone()).len(), 10);
    let many: Vec<Event> = (0..20_000).map(ev).collect();
    assert_eq!(
        q(None, None, Some(1_000_000)).page(many).len(),
        HistoryQuery::MAX_LIMIT
    );
}

#[test]
fn console_pool_members_keep_their_keys() {
    use myha_api::console::{Pool, PoolMember, VipView};
    let m = PoolMember {
        name: "db2".into(),
        role: myha_core::topology::Role::Replica,
        pool: Pool::Reader,
        reason: "healthy replica".into(),
    };
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"name": "db2", "role": "replica", "pool": "reader", "reason": "healthy replica"})
    );
    let v = VipView {
        address: "10.0.0.100/24 on eth0".into(),
        holder: Some("db1".into()),
    };
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        json!({"address": "10.0.0.100/24 on eth0", "holder": "db1"})
    );
}
