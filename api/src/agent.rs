//! The agent's API, as the manager calls it.
use serde::{Deserialize, Serialize};

/// What the agent is asked to do with the VIP (`op` of [`VipRequest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VipOp {
    Add,
    Remove,
}

impl VipOp {
    pub fn as_str(self) -> &'static str {
        match self {
            VipOp::Add => "add",
            VipOp::Remove => "remove",
        }
    }
}

impl std::fmt::Display for VipOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `POST /v1/vip`. Only what to do: the address and the interface are the
/// agent's own configuration (a request cannot make it claim another
/// address). `epoch` is the manager's current one: an agent refuses an add
/// for an epoch older than the newest it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipRequest {
    pub op: VipOp,
    #[serde(default)]
    pub epoch: Option<u64>,
}

/// `POST /v1/fence`: make the local mysqld read-only and end its client
/// sessions, for the master of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRequest {
    pub epoch: u64,
    pub master: String,
}

/// The answer to a fence: done (`fenced`, with the sessions killed), or
/// queued until a hung mysqld answers again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceAnswer {
    pub fenced: bool,
    #[serde(default)]
    pub queued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /v1/health` of an agent: which host, and how fresh its sample is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub host: String,
    pub cluster: String,
    pub last_sample_at_ms: Option<u64>,
    pub mysqld_up: Option<bool>,
    /// The agent's myha version.
    #[serde(default)]
    pub version: Option<String>,
    /// The agent's clock when it answered (unix ms).
    #[serde(default)]
    pub unix_ms: Option<u64>,
    /// The cluster's VIP interface exists on the host (`None`: no VIP).
    #[serde(default)]
    pub vip_interface: Option<bool>,
    /// `arping` is installed (`None`: no VIP, not needed).
    #[serde(default)]
    pub arping: Option<bool>,
}
