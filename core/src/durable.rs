//! What the manager has on record for a cluster (its durable state, as the
//! pure decisions need it), and the policy it applies to a freshly built
//! snapshot: errant transactions, former masters and diverged servers
//! shown for what they are and never counted as the master.
use std::collections::BTreeMap;

use crate::candidate::errant_gtids;
use crate::report::ServerFacts;
use crate::topology::{ClusterSnapshot, Problem, Role};

/// The durable state of a cluster, as the decisions read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableView {
    /// Bumped on every change of master.
    pub epoch: u64,
    /// The master of `epoch`, once known.
    pub master: Option<String>,
    /// A failover or switchover is under way.
    pub in_progress: bool,
    /// The new master the operation under way has made writable (and
    /// recorded as the master of `epoch`): routers send writes to it
    /// already.
    pub published_master: Option<String>,
    /// Unix ms of the last completed failover.
    pub last_failover_ms: Option<u64>,
    /// No automatic failover before this Unix ms (anti-flapping).
    pub blocked_until_ms: Option<u64>,
    /// Former masters not rejoined yet.
    pub needs_rejoin: Vec<String>,
    /// Servers kept out, with the GTIDs they have that the master lacks.
    pub diverged: BTreeMap<String, Vec<String>>,
    /// Semi-sync was degraded to asynchronous by the manager.
    pub semi_sync_degraded: bool,
    /// The cluster's masters run semi-sync.
    pub semi_sync_wanted: bool,
}

/// Apply what the manager has on record to a snapshot built from the
/// observations alone (`problems` are its problems as values):
///
/// - a replica with transactions no other server has (against `known`, the
///   last facts read of every server, dead ones included) gets them as
///   `errant`;
/// - a diverged server that is not a replica is shown [`Role::Diverged`];
///   a former master not rejoined yet that is not a replica is shown
///   [`Role::NeedsRejoin`] (and a problem if found writable);
/// - when one of those was counted as a master, the master is chosen again
///   among the others, and "several writable" no longer applies.
pub fn apply_durable(
    mut snap: ClusterSnapshot,
    mut problems: Vec<Problem>,
    known: &[(&str, &ServerFacts)],
    durable: &DurableView,
) -> ClusterSnapshot {
    for s in snap.servers.iter_mut().filter(|s| s.role == Role::Replica) {
        let Some(f) = s.facts.as_ref() else { continue };
        let others: Vec<&ServerFacts> = known
            .iter()
            .filter(|(n, _)| *n != s.name)
            .map(|(_, f)| *f)
            .collect();
        if let Ok(errant) = errant_gtids(f, &others) {
            if !errant.is_empty() {
                problems.push(Problem::Errant {
                    server: s.name.clone(),
                    gtids: errant.clone(),
                });
            }
            s.errant = errant;
        }
    }
    // Former masters not rejoined yet are shown for what they are, and
    // never counted as the master, even if found writable.
    let mut demoted = false;
    for s in snap.servers.iter_mut() {
        if let Some(extra) = durable.diverged.get(&s.name) {
            if s.role != Role::Replica {
                demoted |= s.role == Role::Master;
                s.role = Role::Diverged;
                s.diverged_gtids = extra.clone();
                problems.push(Problem::Diverged {
                    server: s.name.clone(),
                    gtids: extra.clone(),
                });
                continue;
            }
        }
        if durable.needs_rejoin.contains(&s.name) && s.role != Role::Replica {
            if s.read_only == Some(false) {
                problems.push(Problem::FormerMasterWritable {
                    server: s.name.clone(),
                });
            }
            demoted |= s.role == Role::Master;
            s.role = Role::NeedsRejoin;
        }
    }
    if demoted {
        let masters: Vec<&str> = snap
            .servers
            .iter()
            .filter(|s| s.role == Role::Master)
            .map(|s| s.name.as_str())
            .collect();
        snap.master = match masters.as_slice() {
            [one] => Some(one.to_string()),
            _ => None,
        };
        problems.retain(|p| !matches!(p, Problem::SeveralWritable { .. }));
    }
    snap.set_problems(&problems);
    snap
}
