//! The routers' long poll: `GET /v1/clusters/{name}/watch`.
use myha_core::routing::RouterView;
use serde::{Deserialize, Serialize};

/// The query: answer at once if the view's digest is not `after`, else
/// when it changes, else after `timeout_ms` (the manager caps it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchQuery {
    #[serde(default)]
    pub after: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The answer: the view and its digest, to pass as `after` next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchAnswer {
    pub digest: u64,
    pub view: RouterView,
    /// The leading manager's URL as the answering manager knows it: a
    /// router that asked a follower moves to the leader, whose view is
    /// the first to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}
