//! Who a request comes from, and what it may do: the credentials of
//! `access:` resolved from a bearer token, and the scopes of each role.

use std::collections::HashMap;
use std::fmt;

use crate::{AccessEntry, AccessRole, Config};

/// The holder of a credential, as the manager or an agent identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The manager (the one `access:` entry with role `manager`).
    Manager,
    /// The agent of `host`.
    Agent {
        host: String,
    },
    Operator {
        name: String,
    },
    Monitor {
        name: String,
    },
    Router {
        name: String,
    },
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An agent's report about its own host.
    Report,
    /// The routing view of a cluster.
    View,
    /// Status, history, an agent's sample.
    Read,
    /// Switchover, failover, rejoin, acknowledging a failover.
    Act,
    /// Fencing a server or moving the VIP (agents take it from the manager only).
    Steer,
}

impl Principal {
    /// Whether this principal may do `scope` at all (a report is further
    /// bound to the agent's own host by the caller).
    pub fn may(&self, scope: Scope) -> bool {
        matches!(
            (self, scope),
            (Self::Manager, Scope::Steer | Scope::Read | Scope::View)
                | (Self::Agent { .. }, Scope::Report)
                | (
                    Self::Operator { .. },
                    Scope::Read | Scope::View | Scope::Act
                )
                | (Self::Monitor { .. }, Scope::Read | Scope::View)
                | (Self::Router { .. }, Scope::View)
        )
    }

    /// The role's name, as in `access:`.
    pub fn role(&self) -> AccessRole {
        match self {
            Self::Manager => AccessRole::Manager,
            Self::Agent { .. } => AccessRole::Agent,
            Self::Operator { .. } => AccessRole::Operator,
            Self::Monitor { .. } => AccessRole::Monitor,
            Self::Router { .. } => AccessRole::Router,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manager => f.write_str("the manager"),
            Self::Agent { host } => write!(f, "the agent of {host}"),
            Self::Operator { name } => write!(f, "operator `{name}`"),
            Self::Monitor { name } => write!(f, "monitor `{name}`"),
            Self::Router { name } => write!(f, "router `{name}`"),
        }
    }
}

/// The entries of `access:`, in file order, with an index by token hash:
/// a request is authenticated by one lookup, not a scan of every entry
/// (with hundreds of clusters there are thousands, and every agent report
/// is authenticated).
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    entries: Vec<AccessEntry>,
    by_hash: HashMap<[u8; 32], usize>,
}

impl AccessList {
    pub fn new(entries: Vec<AccessEntry>) -> AccessList {
        let mut by_hash = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            // The first entry of a hash wins, as it always did.
            by_hash.entry(e.token_sha256.0).or_insert(i);
        }
        AccessList { entries, by_hash }
    }

    /// The entry whose token hashes to `hash`.
    fn find(&self, hash: &crate::TokenHash) -> Option<&AccessEntry> {
        let entry = self.entries.get(*self.by_hash.get(&hash.0)?)?;
        // The map found it by the hash; the entry's own bytes confirm it.
        entry.token_sha256.matches_hash(hash).then_some(entry)
    }
}

impl std::ops::Deref for AccessList {
    type Target = [AccessEntry];
    fn deref(&self) -> &[AccessEntry] {
        &self.entries
    }
}

impl PartialEq for AccessList {
    fn eq(&self, other: &AccessList) -> bool {
        self.entries == other.entries
    }
}

impl Eq for AccessList {}

impl Config {
    /// The principal whose token an `Authorization: Bearer …` header
    /// carries, if any. The token is hashed (SHA-256) and the hash looked
    /// up: the lookup's timing depends only on the hash of what the caller
    /// sent, which tells it nothing about any stored token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?;
        if token.is_empty() {
            return None;
        }
        let given = crate::TokenHash::of(token);
        let entry = self.access.find(&given)?;
        Some(match entry.role {
            AccessRole::Manager => Principal::Manager,
            AccessRole::Agent => Principal::Agent {
                host: entry.host.clone().unwrap_or_default(),
            },
            AccessRole::Operator => Principal::Operator {
                name: entry.name.clone(),
            },
            AccessRole::Monitor => Principal::Monitor {
                name: entry.name.clone(),
            },
            AccessRole::Router => Principal::Router {
                name: entry.name.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let op = Principal::Operator { name: "o".into() };
        let mon = Principal::Monitor { name: "m".into() };
        let router = Principal::Router { name: "r".into() };
        let agent = Principal::Agent { host: "db1".into() };
        assert!(op.may(Scope::Act) && op.may(Scope::Read) && !op.may(Scope::Steer));
        assert!(!op.may(Scope::Report));
        assert!(mon.may(Scope::Read) && !mon.may(Scope::Act));
        assert!(router.may(Scope::View) && !router.may(Scope::Read));
        assert!(agent.may(Scope::Report) && !agent.may(Scope::Act) && !agent.may(Scope::Steer));
        assert!(!agent.may(Scope::Read));
        assert!(Principal::Manager.may(Scope::Steer) && !Principal::Manager.may(Scope::Act));
    }
}
