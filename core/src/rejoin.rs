//! May a returning server (a former master, or any server not replicating)
//! be repointed to the current master? Only if everything it executed is
//! on the master: otherwise it has diverged and must never rejoin silently.
use serde::{Deserialize, Serialize};

use crate::candidate::executed_set;
use crate::gtid::GtidError;
use crate::report::ServerFacts;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RejoinDecision {
    /// Its GTIDs are a subset of the master's: repoint it.
    Rejoin,
    /// It executed transactions the master lacks: keep it out.
    Diverged { extra: String },
}

/// Compare a server's executed GTIDs with the master's.
pub fn rejoin_decision(
    server: &ServerFacts,
    master: &ServerFacts,
) -> Result<RejoinDecision, GtidError> {
    let extra = executed_set(server)?.difference(&executed_set(master)?);
    Ok(if extra.is_empty() {
        RejoinDecision::Rejoin
    } else {
        RejoinDecision::Diverged {
            extra: extra.to_string(),
        }
    })
}
