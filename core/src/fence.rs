//! The agent's self-fencing decision, as a pure function: whether the
//! writable server on this host must make itself read-only now.
//!
//! The agent executes it: it gathers the inputs (its last contact with the
//! manager, how long the server has been writable, whether its host woke
//! from a freeze), asks [`must_fence`], and only when told
//! [`FenceCheck::IfIsolated`] probes the cluster's other hosts (I/O) before
//! fencing with [`FenceReason::Isolated`].
use std::fmt;
use std::time::Duration;

/// The manager's latest word to this agent, as the fence needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerWord {
    /// The newest epoch the manager answered with.
    pub epoch: u64,
    /// The master of that epoch, if any.
    pub master: Option<String>,
    /// The report sequence number the answer acknowledged.
    pub seq: u64,
}

/// What [`must_fence`] looks at.
#[derive(Debug, Clone)]
pub struct FenceInput<'a> {
    /// This host's name.
    pub me: &'a str,
    /// The manager's latest answer, if any arrived.
    pub word: Option<&'a ManagerWord>,
    /// The first report sequence that found the local server writable: the
    /// manager's word counts only if it answers a report no older, since a
    /// promotion records the new epoch before making its master writable.
    pub writable_since_seq: u64,
    /// How long since the manager last answered (or since the agent
    /// started, when it never did).
    pub silent_for: Duration,
    /// Silence after which an isolated master fences itself
    /// (`ClusterConfig::self_fence_after`).
    pub self_fence_after: Duration,
    /// The agent's clock jumped: the host was frozen this long.
    pub resumed_after: Option<Duration>,
}

/// Why a writable server fences itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceReason {
    /// The manager's newest epoch names another master.
    OtherMaster { epoch: u64, master: String },
    /// No answer from the manager for this long and no other host of the
    /// cluster reachable.
    Isolated { silent_for: Duration },
    /// The host woke from a freeze: another master may have been promoted
    /// meanwhile.
    Resumed { frozen_for: Duration },
}

impl fmt::Display for FenceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceReason::OtherMaster { epoch, master } => {
                write!(f, "the manager's epoch {epoch} names {master} master")
            }
            FenceReason::Isolated { silent_for } => write!(
                f,
                "isolated: no answer from the manager for {} ms and no other host of the cluster reachable",
                silent_for.as_millis()
            ),
            FenceReason::Resumed { frozen_for } => write!(
                f,
                "resumed after {} ms frozen: another master may have been promoted meanwhile; the manager makes this one writable again if it is still the master",
                frozen_for.as_millis()
            ),
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceCheck {
    /// Keep serving.
    Stay,
    /// Fence now.
    Fence(FenceReason),
    /// Silent past the bound: fence unless another host of the cluster
    /// answers (the caller probes them).
    IfIsolated(FenceReason),
}

/// Whether the writable server on `input.me`'s host must fence itself.
/// A freeze outranks everything; then the manager's word for a newer
/// promotion; then silence, which needs the caller's peer probe.
pub fn must_fence(input: &FenceInput<'_>) -> FenceCheck {
    if let Some(frozen_for) = input.resumed_after {
        return FenceCheck::Fence(FenceReason::Resumed { frozen_for });
    }
    if let Some(w) = input.word {
        if let Some(m) = w.master.as_deref().filter(|m| *m != input.me) {
            if w.seq >= input.writable_since_seq {
                return FenceCheck::Fence(FenceReason::OtherMaster {
                    epoch: w.epoch,
                    master: m.to_string(),
                });
            }
        }
    }
    if input.silent_for >= input.self_fence_after {
        return FenceCheck::IfIsolated(FenceReason::Isolated {
            silent_for: input.silent_for,
        });
    }
    FenceCheck::Stay
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(word: Option<&'a ManagerWord>) -> FenceInput<'a> {
        FenceInput {
            me: "db1",
            word,
            writable_since_seq: 10,
            silent_for: Duration::from_millis(100),
            self_fence_after: Duration::from_secs(3),
            resumed_after: None,
        }
    }

    fn word(master: &str, seq: u64) -> ManagerWord {
        ManagerWord {
            epoch: 7,
            master: Some(master.to_string()),
            seq,
        }
    }

    #[test]
    fn the_master_of_the_newest_epoch_stays() {
        let w = word("db1", 12);
        assert_eq!(must_fence(&input(Some(&w))), FenceCheck::Stay);
        assert_eq!(must_fence(&input(None)), FenceCheck::Stay);
    }

    #[test]
    fn another_master_in_an_answer_to_a_writable_sample_fences() {
        let w = word("db2", 10);
        let got = must_fence(&input(Some(&w)));
        assert_eq!(
            got,
            FenceCheck::Fence(FenceReason::OtherMaster {
                epoch: 7,
                master: "db2".into()
            })
        );
        if let FenceCheck::Fence(r) = got {
            assert_eq!(r.to_string(), "the manager's epoch 7 names db2 master");
        }
    }

    #[test]
    fn an_answer_older_than_the_writable_sample_does_not_count() {
        // It may predate the promotion that made this server writable.
        let w = word("db2", 9);
        assert_eq!(must_fence(&input(Some(&w))), FenceCheck::Stay);
    }

    #[test]
    fn silence_past_the_bound_asks_for_the_peer_probe() {
        let mut i = input(None);
        i.silent_for = Duration::from_secs(3);
        assert_eq!(
            must_fence(&i),
            FenceCheck::IfIsolated(FenceReason::Isolated {
                silent_for: Duration::from_secs(3)
            })
        );
        i.silent_for = Duration::from_millis(2999);
        assert_eq!(must_fence(&i), FenceCheck::Stay);
    }

    #[test]
    fn a_freeze_fences_even_the_master_of_the_newest_epoch() {
        let w = word("db1", 12);
        let mut i = input(Some(&w));
        i.resumed_after = Some(Duration::from_millis(4200));
        let got = must_fence(&i);
        assert!(matches!(
            got,
            FenceCheck::Fence(FenceReason::Resumed { .. })
        ));
    }
}
