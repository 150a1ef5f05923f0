//! How a manager coordinates with its peers: alone (embedded, the
//! default) or on etcd with one leader. Shown by `/v1/health`, in every
//! cluster's status, and by `myha status`.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinationMode {
    /// One manager, its state in `state_dir`: it always leads.
    Embedded,
    /// Several managers on etcd: only the leader acts.
    Etcd,
}

/// One manager's view of the coordination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordination {
    pub mode: CoordinationMode,
    /// This manager's own URL (`manager.url` of its configuration).
    pub this: String,
    /// The leader's URL, when one is known.
    pub leader: Option<String>,
    /// This manager leads: it alone runs failovers, switchovers, rejoins,
    /// VIP moves and hooks.
    pub is_leader: bool,
    /// This manager reaches the coordination service now.
    pub available: bool,
    /// Why no failover is possible now, when none is: the sentence
    /// `myha status` and `myha check` show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The last error talking to the coordination service, if the last
    /// attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The sentence shown when no manager can act because etcd is unreachable.
pub const UNAVAILABLE: &str = "no failover possible: coordination unavailable";
