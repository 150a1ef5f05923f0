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
