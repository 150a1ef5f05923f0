//! Who a request comes from, and what it may do: the credentials of
//! `access:` resolved from a bearer token, and the scopes of each role.

use std::fmt;

use crate::{AccessRole, Config};

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

impl Config {
    /// The principal whose token an `Authorization: Bearer …` header
    /// carries, if any. Every known hash is compared (in constant time),
    /// so the answer's timing does not tell which role almost matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?;
        if token.is_empty() {
            return None;
        }
        let given = crate::TokenHash::of(token);
        let mut found = None;
        for entry in &self.access {
            if entry.token_sha256.matches_hash(&given) && found.is_none() {
                found = Some(match entry.role {
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
                });
            }
        }
        found
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
