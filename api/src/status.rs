//! One cluster as `GET /v1/clusters/{name}` answers it (`myha status`).
use myha_core::analysis::Analysis;
use myha_core::candidate::CandidateChoice;
use myha_core::topology::ClusterSnapshot;
use serde::{Deserialize, Serialize};

use crate::journal::Operation;

/// A cluster as `myha status` shows it: the snapshot, the verdict on the
/// master, what a failover would do now, and the safety rails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    #[serde(flatten)]
    pub snapshot: ClusterSnapshot,
    /// The master of the current epoch, on record.
    pub epoch_master: Option<String>,
    pub analysis: Option<Analysis>,
    /// If the master died now: the candidate, what is excluded and why.
    pub readiness: Option<CandidateChoice>,
    pub failover_blocked_until_ms: Option<u64>,
    pub last_failover_ms: Option<u64>,
    pub in_progress: Option<Operation>,
    pub needs_rejoin: Vec<String>,
    /// Why each server that should rejoin has not: the last attempt's
    /// refusal, and what would fix it.
    #[serde(default)]
    pub rejoin_refused: std::collections::BTreeMap<String, String>,
    /// Semi-sync degraded to asynchronous by the manager, and why.
    #[serde(default)]
    pub semi_sync_degraded: Option<String>,
    /// Which manager answered, who leads, and why no failover is possible
    /// now when none is.
    #[serde(default)]
    pub coordination: Option<crate::coordination::Coordination>,
}
