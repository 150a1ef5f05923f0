//! The web console's live feed: `GET /v1/clusters/{name}/stream`, a
//! `text/event-stream` whose every `frame` event is one [`ConsoleFrame`].
use myha_core::routing::RouterView;
use myha_core::topology::Role;
use serde::{Deserialize, Serialize};

use crate::status::ClusterStatus;

/// Everything the console's cluster page draws, at one instant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleFrame {
    /// What `GET /v1/clusters/{name}` answers.
    pub status: ClusterStatus,
    /// What routers are told now (`/watch`).
    pub routing: Option<RouterView>,
    /// The routers' pools: every server, in or out, and why.
    #[serde(default)]
    pub pools: Vec<PoolMember>,
    /// The cluster's virtual IP, when it has one.
    #[serde(default)]
    pub vip: Option<VipView>,
}

/// Which pool of the routers a server is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Takes the writes.
    Writer,
    /// In the reader pool.
    Reader,
    /// In no pool.
    Out,
}

/// One server as the routers use it, with the reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolMember {
    pub name: String,
    pub role: Role,
    pub pool: Pool,
    pub reason: String,
}

/// The virtual IP and the server that should hold it: the master on
/// record (the manager moves the address with the master).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipView {
    /// `address/prefix on interface`.
    pub address: String,
    pub holder: Option<String>,
}
