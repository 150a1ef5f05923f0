//! How a failover or a switchover ended, as the API answers it.
use myha_core::candidate::CandidateChoice;
use serde::{Deserialize, Serialize};

use crate::journal::Event;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    Completed,
    CompletedWithErrors,
    Aborted,
    DryRun,
    /// A switchover refused by its pre-checks.
    Refused,
    /// A switchover undone before its target became writable.
    RolledBack,
    /// This manager lost its leadership during the operation: it stopped
    /// acting, and the new leader finishes (past promotion) or abandons
    /// (before it) what is on record.
    HandedOver,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Completed => "completed",
            OpStatus::CompletedWithErrors => "completed_with_errors",
            OpStatus::Aborted => "aborted",
            OpStatus::DryRun => "dry_run",
            OpStatus::Refused => "refused",
            OpStatus::RolledBack => "rolled_back",
            OpStatus::HandedOver => "handed_over",
        }
    }
}

impl std::fmt::Display for OpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The outcome of a failover (or switchover), as the API and the CLI show
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverReport {
    pub operation: String,
    pub cluster: String,
    pub status: OpStatus,
    pub old_master: String,
    pub new_master: Option<String>,
    pub epoch: u64,
    pub choice: Option<CandidateChoice>,
    /// The GTIDs the old master had that the new master lacks, or
    /// `unknown: ...` with what is known.
    pub lost: String,
    pub problems: Vec<String>,
    pub steps: Vec<Event>,
    pub duration_ms: u64,
}
