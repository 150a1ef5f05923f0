//! The CLI's requests to the manager, and their answers.
use serde::{Deserialize, Serialize};

use crate::journal::Event;
use crate::operation::FailoverReport;

/// `POST /v1/clusters/{name}/failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// The candidate to promote; none: the best one.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/clusters/{name}/switchover`. The answer is a stream of
/// [`SwitchoverLine`]s, one JSON object per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverRequest {
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// How long the old master may take to drain (default 10 s).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// One line of a switchover's answer: each step as it happens, then the
/// report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SwitchoverLine {
    Event { event: Event },
    Report { report: Box<FailoverReport> },
}

/// `POST /v1/clusters/{name}/rejoin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinRequest {
    pub host: String,
    /// Reinstate a diverged server (undo its unacknowledged transactions).
    #[serde(default)]
    pub force: bool,
}

/// The answer to a rejoin: what was done, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinAnswer {
    pub rejoined: bool,
    pub detail: String,
}

/// The answer to `POST /v1/clusters/{name}/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckAnswer {
    pub acknowledged: bool,
}

/// The answer to `POST /v1/reload` (and what a `SIGHUP` logs): what the
/// new configuration changed. A refused reload (invalid file, a cluster
/// with an operation in progress) changes nothing and answers an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// The file read.
    pub path: String,
    /// Clusters new in the file: now probed, detected and served.
    pub added: Vec<String>,
    /// Clusters gone from the file: no longer probed or acted on; their
    /// durable state is kept (a cluster added back resumes from it).
    pub removed: Vec<String>,
    /// Clusters whose settings changed: restarted with the new ones,
    /// their epoch, master and journal kept.
    pub changed: Vec<String>,
    /// Clusters left as they were.
    pub unchanged: Vec<String>,
    /// Whether the access list (tokens, roles) changed: applied.
    pub access_changed: bool,
    /// Sections that differ but take effect only at the next restart
    /// (`manager`, `agent`, `tls`), by name.
    pub restart_needed: Vec<String>,
}

/// `GET /v1/health` of the manager and the agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub version: String,
    /// The manager's coordination (agents answer without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<crate::coordination::Coordination>,
}
