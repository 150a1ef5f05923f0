//! The router's API: what it routes to now (`GET
//! /v1/clusters/{name}/endpoints`) and its health.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/health` of a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterHealth {
    pub manager_reachable: bool,
    pub epoch: Option<u64>,
    pub view_age_ms: Option<u64>,
}

/// The writer the router sends writes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    pub name: String,
    /// `host:port` of its mysqld.
    pub address: String,
}

/// One replica as the reader endpoint sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reader {
    pub name: String,
    pub address: String,
    pub lag_seconds: Option<f64>,
    pub healthy: bool,
    /// In the reader pool now (healthy, lag under the cluster's bound).
    pub in_pool: bool,
    /// Open client connections relayed to it.
    pub connections: u64,
}

/// One endpoint's connections and what its caps refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointLimits {
    pub open: u64,
    /// Distinct client addresses with an open connection.
    pub sources: u64,
    pub refused_listener_cap: u64,
    pub refused_source_cap: u64,
    pub handshake_timeouts: u64,
}

/// The router's caps, and per endpoint (`writer`, `reader`) their effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_connections: u32,
    pub max_connections_per_source: u32,
    pub handshake_timeout_ms: u64,
    #[serde(flatten)]
    pub endpoints: BTreeMap<String, EndpointLimits>,
}

/// `GET /v1/clusters/{name}/endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoints {
    pub cluster: String,
    pub epoch: Option<u64>,
    pub writer: Option<Writer>,
    /// A failover or switchover is under way: new writer connections wait.
    pub changing: bool,
    pub readers: Vec<Reader>,
    pub manager_reachable: bool,
    pub view_age_ms: Option<u64>,
    /// Who relays new connections now: `nat` or `userspace`.
    pub relay: String,
    pub limits: Limits,
}
