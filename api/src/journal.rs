//! The operation journal: operations, their phases, and each step as an
//! event (`myha history`, the manager's state file, the event stream).
use serde::{Deserialize, Serialize};

/// A multi-step operation under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub kind: OpKind,
    pub old_master: String,
    pub new_master: Option<String>,
    /// The last step completed.
    pub phase: Phase,
    pub started_ms: u64,
}

/// What kind of operation an [`Operation`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Failover,
    Switchover,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Failover => "failover",
            OpKind::Switchover => "switchover",
        }
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A journaled step's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Detect,
    Choose,
    CatchUp,
    ApplyRelayLog,
    Fence,
    FenceWait,
    Promote,
    SemiSync,
    VipRemove,
    VipAdd,
    VipEnsure,
    Repoint,
    Detach,
    Lost,
    Finish,
    Journal,
    Abort,
    Rollback,
    PreFailover,
    PostFailover,
    PreSwitchover,
    PostSwitchover,
    OnFailure,
    MasterIpFailoverScript,
    Precheck,
    ReadOnly,
    FinalPosition,
    WaitTarget,
    Rejoin,
    Rejoined,
    AdoptMaster,
    Verdict,
    NoFailover,
    Resume,
    Reinstate,
    Unfence,
    Ack,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Detect => "detect",
            Step::Choose => "choose",
            Step::CatchUp => "catch_up",
            Step::ApplyRelayLog => "apply_relay_log",
            Step::Fence => "fence",
            Step::FenceWait => "fence_wait",
            Step::Promote => "promote",
            Step::SemiSync => "semi_sync",
            Step::VipRemove => "vip_remove",
            Step::VipAdd => "vip_add",
            Step::VipEnsure => "vip_ensure",
            Step::Repoint => "repoint",
            Step::Detach => "detach",
            Step::Lost => "lost",
            Step::Finish => "finish",
            Step::Journal => "journal",
            Step::Abort => "abort",
            Step::Rollback => "rollback",
            Step::PreFailover => "pre_failover",
            Step::PostFailover => "post_failover",
            Step::PreSwitchover => "pre_switchover",
            Step::PostSwitchover => "post_switchover",
            Step::OnFailure => "on_failure",
            Step::MasterIpFailoverScript => "master_ip_failover_script",
            Step::Precheck => "precheck",
            Step::ReadOnly => "read_only",
            Step::FinalPosition => "final_position",
            Step::WaitTarget => "wait_target",
            Step::Rejoin => "rejoin",
            Step::Rejoined => "rejoined",
            Step::AdoptMaster => "adopt_master",
            Step::Verdict => "verdict",
            Step::NoFailover => "no_failover",
            Step::Resume => "resume",
            Step::Reinstate => "reinstate",
            Step::Unfence => "unfence",
            Step::Ack => "ack",
        }
    }
}

/// As the journal shows it (padding honoured, for the CLI's columns).
impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a journaled step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
    Info,
    Refused,
    /// Semi-sync degraded to asynchronous.
    Degraded,
    /// Reinstatement: started, its transactions saved, undone, resumed.
    Started,
    Saved,
    Undone,
    Resumed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Info => "info",
            StepStatus::Refused => "refused",
            StepStatus::Degraded => "degraded",
            StepStatus::Started => "started",
            StepStatus::Saved => "saved",
            StepStatus::Undone => "undone",
            StepStatus::Resumed => "resumed",
        }
    }
}

/// As the journal shows it (padding honoured, for the CLI's columns).
impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Steps of a failover, in order. Past `Promoted` there is no going back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Started,
    CandidateChosen,
    Fenced,
    Promoted,
    /// The new master is writable: routers send writes to it from now on,
    /// before the VIP moves and the replicas are repointed.
    Writable,
    Repointed,
    Done,
}

/// One step of an operation, as shown by `myha history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub cluster: String,
    /// The operation it belongs to (a failover id), or empty for events
    /// outside one (a blocked failover, a detection).
    pub operation: String,
    pub step: Step,
    pub status: StepStatus,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// `GET /v1/clusters/{name}/history?since_ms=&before_ms=&limit=`: a page of
/// the journal, oldest first: the latest `limit` events at or after
/// `since_ms` and before `before_ms`. The next page back passes the first
/// event's `at_ms` as `before_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    pub since_ms: Option<u64>,
    #[serde(default)]
    pub before_ms: Option<u64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl HistoryQuery {
    /// Events in one page without `limit`.
    pub const DEFAULT_LIMIT: usize = 1000;
    /// The most one page holds.
    pub const MAX_LIMIT: usize = 10_000;

    /// The page of `events` (oldest first) this query asks for.
    pub fn page(&self, events: Vec<Event>) -> Vec<Event> {
        let limit = self
            .limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT);
        let mut kept: Vec<Event> = events
            .into_iter()
            .filter(|e| self.since_ms.is_none_or(|s| e.at_ms >= s))
            .filter(|e| self.before_ms.is_none_or(|b| e.at_ms < b))
            .collect();
        let skip = kept.len().saturating_sub(limit);
        kept.drain(..skip);
        kept
    }
}
