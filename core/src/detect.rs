//! The detection loop's decision, as a pure state machine: from what the
//! loop remembers ([`DetectorState`]), the snapshot, what is on record
//! ([`DurableView`]) and the time, what to do now ([`Action`]s, in order)
//! and what to remember. The manager gathers the inputs, calls
//! [`next_actions`] once per tick, carries the actions out in order, and
//! reports back what only their outcome tells (a VIP held, a failover
//! ended) through the `DetectorState` methods.
//!
//! What it decides, in order:
//! - without a master on record: adopt the one the manager's own probe
//!   confirms (an agent's reports alone never make a master; a deferral
//!   is journaled once per server), and nothing else;
//! - former masters found replicating from the master are rejoined;
//! - returning servers rejoin automatically (every [`REJOIN_RETRY_MS`] at
//!   most per server);
//! - the upkeep of a healthy master (at most one action per
//!   [`crate::upkeep::UPKEEP_EVERY_MS`]);
//! - every change of verdict is journaled once;
//! - the VIP is ensured on the master of the epoch;
//! - a dead master is failed over when automatic failover is on, the
//!   evidence is old enough, and no anti-flapping block stands; a block is
//!   journaled once per verdict, not every tick.
use std::collections::{BTreeMap, BTreeSet};

use crate::analysis::{adoption, analyze, Adoption, Analysis, DetectionPolicy, Verdict};
use crate::durable::DurableView;
use crate::topology::{ClusterSnapshot, Role, ServerView};
use crate::upkeep::{upkeep, Upkeep, UpkeepInput, UpkeepTracker};

/// Pause between two attempts when a failover aborted (no candidate, hook).
pub const RETRY_AFTER_MS: u64 = 5_000;
/// Pause between two automatic rejoin attempts of one server.
pub const REJOIN_RETRY_MS: u64 = 3_000;
/// Pause between two attempts to put the VIP on the master.
pub const VIP_RETRY_MS: u64 = 2_000;
/// How long the master of the current epoch must look needlessly fenced
/// before the manager makes it writable again.
pub const UNFENCE_AFTER_MS: u64 = 1_000;

/// The cluster's settings the decision reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    pub auto_failover: bool,
    pub auto_rejoin: bool,
    /// A VIP is configured.
    pub vip: bool,
    pub policy: DetectionPolicy,
    pub semi_sync_degrade_after_ms: u64,
    /// Evidence younger than this (on [`Clock::mono_ms`], counted from the
    /// manager's start) is incomplete: no automatic failover before.
    pub warmup_ms: u64,
}

/// The time of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Monotonic milliseconds since the manager started.
    pub mono_ms: u64,
    /// Wall-clock Unix milliseconds (anti-flapping is recorded in it).
    pub unix_ms: u64,
}

/// What the loop remembers from one tick to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectorState {
    /// The verdict last journaled.
    pub last_verdict: Option<Verdict>,
    /// Why no failover happens was journaled for this verdict.
    pub said_blocked: bool,
    /// The epoch whose master is known to hold the VIP.
    pub vip_epoch: Option<u64>,
    /// The last attempt to put the VIP on the master.
    pub vip_tried_ms: Option<u64>,
    /// The last automatic rejoin attempt, per server.
    pub rejoin_tried_ms: BTreeMap<String, u64>,
    /// After an aborted failover, no other before this.
    pub retry_at_ms: Option<u64>,
    pub upkeep: UpkeepTracker,
    /// Masters whose adoption was deferred (journaled once each).
    pub adoption_deferred: BTreeSet<String>,
}

/// Which journal step an [`Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStep {
    AdoptMaster,
    Rejoined,
    Verdict,
    NoFailover,
}

/// How an [`Entry`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    Info,
    Skipped,
    Failed,
}

/// A line for the cluster's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub step: EntryStep,
    pub status: EntryStatus,
    pub text: String,
}

fn entry(step: EntryStep, status: EntryStatus, text: String) -> Action {
    Action::Journal(Entry { step, status, text })
}

/// What to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Journal(Entry),
    /// Record `master` as the master of `epoch`; on success, journal it
    /// and call [`DetectorState::adopted`].
    AdoptMaster {
        master: String,
        epoch: u64,
    },
    /// These former masters replicate from the master again: drop them
    /// from `needs_rejoin` (a journal entry follows).
    ClearNeedsRejoin(Vec<String>),
    /// Try to rejoin this server, in the background.
    StartRejoin(String),
    /// The analysis of this tick, for status.
    Publish(Analysis),
    /// Record that this cluster's masters run semi-sync.
    WantSemiSync,
    /// Carry out an upkeep action on the master, then call
    /// [`DetectorState::upkeep_acted`].
    Upkeep {
        master: String,
        action: Upkeep,
    },
    /// Put the VIP on `master`; on success call [`DetectorState::vip_held`].
    EnsureVip {
        master: String,
        epoch: u64,
    },
    /// Fail over; when it ends call [`DetectorState::failover_ended`].
    StartFailover(Analysis),
}

impl Action {
    /// Whether carrying this action out changes the cluster or its
    /// durable state, so that the next look comes at the fast pace to see
    /// the outcome. Publishing the analysis and journaling do not: every
    /// look publishes, and a quiet cluster must stay at the quiet pace.
    pub fn changes_the_cluster(&self) -> bool {
        !matches!(self, Action::Publish(_) | Action::Journal(_))
    }
}

impl DetectorState {
    /// A master was adopted.
    pub fn adopted(&mut self) {
        self.adoption_deferred.clear();
    }

    /// The master of `epoch` holds the VIP.
    pub fn vip_held(&mut self, epoch: u64) {
        self.vip_epoch = Some(epoch);
    }

    /// An upkeep action ended at `now_ms`.
    pub fn upkeep_acted(&mut self, now_ms: u64) {
        self.upkeep.acted(now_ms);
    }

    /// A failover ended at `now_ms`: `aborted` if nothing was done, and
    /// `vip_epoch` when it put the VIP on the new master of that epoch.
    /// Returns what to journal.
    pub fn failover_ended(
        &mut self,
        aborted: bool,
        vip_epoch: Option<u64>,
        now_ms: u64,
    ) -> Option<Entry> {
        let said = if aborted {
            self.retry_at_ms = Some(now_ms + RETRY_AFTER_MS);
            Some(Entry {
                step: EntryStep::NoFailover,
                status: EntryStatus::Skipped,
                text: format!(
                    "failover aborted; trying again in {} s if the master is still dead",
                    RETRY_AFTER_MS / 1000
                ),
            })
        } else {
            self.retry_at_ms = None;
            None
        };
        if vip_epoch.is_some() {
            self.vip_epoch = vip_epoch;
        }
        // The verdict is journaled again after any failover.
        self.last_verdict = None;
        said
    }
}

/// The servers that should rejoin the master automatically now: former
/// masters, read-only servers that replicate from nobody, or replicas that
/// came back replicating from a server that is no longer the master (they
/// were down during a failover); up, read-only, and not diverged.
fn returning<'a>(
    snapshot: &'a ClusterSnapshot,
    durable: &'a DurableView,
    master: &'a str,
) -> impl Iterator<Item = &'a ServerView> + 'a {
    let master_addr = snapshot.server(master).map(|m| m.address.as_str());
    let from_old_master = move |s: &ServerView| {
        s.role == Role::Replica
            && s.replicates_from.as_deref().is_some_and(|src| {
                Some(src) != master_addr && snapshot.servers.iter().any(|h| h.address == src)
            })
    };
    snapshot.servers.iter().filter(move |s| {
        (matches!(s.role, Role::NeedsRejoin | Role::Unknown) || from_old_master(s))
            && s.mysqld_up == Some(true)
            && s.read_only == Some(true)
            && !durable.diverged.contains_key(&s.name)
    })
}

/// The detector's pace while something is happening: a suspect master,
/// an operation, a retry, the VIP not yet on the master, the warm-up.
pub const FAST_TICK_MS: u64 = 50;

/// The detector's pace while the cluster is quiet. It does not delay
/// detection: a report or probe that differs materially from the last one
/// (mysqld down, a probe failing, a replica's view of its master failing;
/// see [`crate::report::MysqldStatus::differs_materially`]) wakes the
/// detector at once. This tick only catches what time alone changes: a
/// report growing stale, lag, a timer (rejoin, semi-sync upkeep) running
/// out. At 500 ms (250 ms until issue 14's third round) a quiet cluster
/// costs two snapshots a second; a lagging replica leaves the reader pool
/// at most half a second after its lag crosses the bound.
pub const IDLE_TICK_MS: u64 = 500;

/// How long the detector waits for its next look unless woken by a
/// material change: [`IDLE_TICK_MS`] only while the cluster is quiet
/// (the last verdict healthy, no operation, no failover retry pending,
/// past the warm-up, the VIP known to be on the master of the epoch).
pub fn next_look_ms(
    state: &DetectorState,
    durable: &DurableView,
    config: &DetectorConfig,
    now: Clock,
) -> u64 {
    let quiet = state.last_verdict == Some(Verdict::Healthy)
        && !durable.in_progress
        && state.retry_at_ms.is_none()
        && now.mono_ms >= config.warmup_ms
        && (!config.vip || state.vip_epoch == Some(durable.epoch));
    if quiet {
        IDLE_TICK_MS
    } else {
        FAST_TICK_MS
    }
}

/// What the pace of the manager's own probe of one server depends on
/// ([`probe_due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePaceInput {
    /// The detector's last look found the cluster quiet (its pace is
    /// [`IDLE_TICK_MS`]: see [`next_look_ms`]).
    pub cluster_quiet: bool,
    /// The server is the master of the epoch, or the cluster has no master
    /// on record.
    pub master: bool,
    /// The manager's last probe of the server read mysqld.
    pub probe_read: bool,
    /// The server's agent's last report is fresh and read mysqld.
    pub agent_reads: bool,
    /// What the agent read does not differ materially from what the
    /// manager's probe read ([`crate::report::ServerFacts::differs_materially`]):
    /// a replica whose agent reports a change (a thread stopped,
    /// `read_only` off) is probed at the next tick.
    pub agrees: bool,
    /// How long ago the manager's last probe of the server started, if
    /// ever.
    pub since_probe_ms: Option<u64>,
}

/// While its cluster is quiet, a replica is probed every this many probe
/// intervals instead of every one ([`probe_due`]).
pub const RELAXED_PROBE_EVERY: u64 = 2;

/// Whether the manager probes a server at this tick of its probe
/// interval. Every tick, except for a replica of a quiet cluster that the
/// last probe read and whose agent reports it up and agrees with that
/// probe: that one every [`RELAXED_PROBE_EVERY`] ticks. The master is
/// always probed at every tick (it is what detection watches), and so is
/// every server of a cluster that is not quiet, one the manager could not
/// read last time, and one whose agent is silent, cannot read it or reads
/// something else. The manager also probes every server of a cluster at
/// once when it stops being quiet (a failover is decided on a look that
/// is not quiet, so its choice of candidate never rests on a relaxed
/// reading), and when an operation asks for fresh readings (a switchover
/// whose first plan failed).
///
/// Counted from the start of the last probe, a relaxed reading is at most
/// `RELAXED_PROBE_EVERY` intervals plus the next probe's duration old,
/// below the staleness bound of a probe (3 intervals plus the query
/// timeout): the manager's reading of a quiet replica stays fresh, and the
/// facts it shows for it stay its own.
pub fn probe_due(input: ProbePaceInput, probe_interval_ms: u64) -> bool {
    let relaxed = input.cluster_quiet
        && !input.master
        && input.probe_read
        && input.agent_reads
        && input.agrees;
    match (relaxed, input.since_probe_ms) {
        // Half an interval of slack: the ticks are an interval apart and
        // do not fire exactly on time.
        (true, Some(since)) => {
            since + probe_interval_ms / 2 >= RELAXED_PROBE_EVERY * probe_interval_ms
        }
        _ => true,
    }
}

/// One tick of the detection loop: see the module documentation.
pub fn next_actions(
    state: &DetectorState,
    snapshot: &ClusterSnapshot,
    durable: &DurableView,
    config: &DetectorConfig,
    now: Clock,
) -> (DetectorState, Vec<Action>) {
    let mut st = state.clone();
    let mut out = Vec::new();
    let at = now.mono_ms;

    // Adopt the observed master when the cluster has none on record: the
    // one writable server that replicates from nobody, as the manager's
    // own probe reads it. Agent reports alone never make a master (a
    // forged one would otherwise get the real master fenced).
    let Some(master) = durable.master.as_deref() else {
        match adoption(snapshot) {
            Adoption::Adopt { master } => out.push(Action::AdoptMaster {
                master,
                epoch: durable.epoch,
            }),
            Adoption::Unconfirmed { master } => {
                // Before the first probe has answered, simply wait.
                let probed = snapshot
                    .server(&master)
                    .is_some_and(|v| v.manager_probe.age_ms.is_some());
                if probed && st.adoption_deferred.insert(master.clone()) {
                    out.push(entry(
                        EntryStep::AdoptMaster,
                        EntryStatus::Skipped,
                        format!(
                            "adopt_master deferred: not confirmed by the manager's probe: {master} looks like the master only in its agent's reports"
                        ),
                    ));
                }
            }
            Adoption::NoMaster => {}
        }
        return (st, out);
    };
    let master_view = snapshot.server(master);

    // A former master found replicating from the current master has been
    // rejoined, on the manager's own reading only: an agent's report never
    // clears a former master.
    let rejoined: Vec<String> = durable
        .needs_rejoin
        .iter()
        .filter(|n| {
            snapshot.server(n).is_some_and(|s| {
                s.probe_confirmed()
                    && s.role == Role::Replica
                    && s.replicates_from
                        .as_deref()
                        .is_some_and(|src| master_view.is_some_and(|m| src == m.address))
            })
        })
        .cloned()
        .collect();
    if !rejoined.is_empty() {
        let text = format!("{} replicate(s) from the master again", rejoined.join(", "));
        out.push(Action::ClearNeedsRejoin(rejoined));
        out.push(entry(EntryStep::Rejoined, EntryStatus::Info, text));
    }

    // Returning servers rejoin automatically when they are a subset of
    // the master (in the background; every REJOIN_RETRY_MS at most).
    if config.auto_rejoin && !durable.in_progress && snapshot.master.as_deref() == Some(master) {
        for s in returning(snapshot, durable, master) {
            let due = st
                .rejoin_tried_ms
                .get(&s.name)
                .is_none_or(|t| at.saturating_sub(*t) > REJOIN_RETRY_MS);
            if due {
                st.rejoin_tried_ms.insert(s.name.clone(), at);
                out.push(Action::StartRejoin(s.name.clone()));
            }
        }
    }

    let analysis = analyze(snapshot, Some(master), config.policy);
    out.push(Action::Publish(analysis.clone()));
    let healthy = analysis.verdict == Verdict::Healthy;

    // Upkeep of a healthy master between operations.
    let seen_on = master_view
        .and_then(|v| v.facts.as_ref())
        .is_some_and(|f| f.semi_sync_master);
    if seen_on && !durable.semi_sync_wanted {
        out.push(Action::WantSemiSync);
    }
    st.upkeep.observe(snapshot, master, at);
    if healthy && !durable.in_progress && st.upkeep.due(at) {
        let input = UpkeepInput {
            master,
            semi_sync_degraded: durable.semi_sync_degraded,
            semi_sync_wanted: durable.semi_sync_wanted,
            no_acker_for_ms: st.upkeep.no_acker_for_ms(at),
            degrade_after_ms: config.semi_sync_degrade_after_ms,
            fenced_for_ms: st.upkeep.fenced_for_ms(at),
            unfence_after_ms: UNFENCE_AFTER_MS,
        };
        if let Some(action) = upkeep(snapshot, &input) {
            if matches!(action, Upkeep::Unfence { .. }) {
                // The VIP goes back with it (its agent dropped it when it
                // fenced).
                st.vip_epoch = None;
                st.vip_tried_ms = None;
            }
            st.upkeep.acted(at);
            out.push(Action::Upkeep {
                master: master.to_string(),
                action,
            });
        }
    }

    if st.last_verdict != Some(analysis.verdict) {
        let status = if analysis.verdict.is_dead() {
            EntryStatus::Failed
        } else {
            EntryStatus::Info
        };
        out.push(entry(
            EntryStep::Verdict,
            status,
            format!("{:?}: {}", analysis.verdict, analysis.evidence.join("; ")),
        ));
        st.last_verdict = Some(analysis.verdict);
        st.said_blocked = false;
    }

    if healthy
        && !durable.in_progress
        && st.vip_epoch != Some(durable.epoch)
        && st
            .vip_tried_ms
            .is_none_or(|t| at.saturating_sub(t) > VIP_RETRY_MS)
        && config.vip
        && master_view.is_some()
    {
        st.vip_tried_ms = Some(at);
        out.push(Action::EnsureVip {
            master: master.to_string(),
            epoch: durable.epoch,
        });
    }

    if !analysis.verdict.is_dead() || durable.in_progress || at < config.warmup_ms {
        return (st, out);
    }
    if !config.auto_failover {
        if !st.said_blocked {
            out.push(entry(
                EntryStep::NoFailover,
                EntryStatus::Skipped,
                "auto_failover is off: run `myha failover` to fail over".into(),
            ));
            st.said_blocked = true;
        }
        return (st, out);
    }
    if let Some(until) = durable.blocked_until_ms.filter(|u| *u > now.unix_ms) {
        if !st.said_blocked {
            out.push(entry(
                EntryStep::NoFailover,
                EntryStatus::Skipped,
                format!(
                    "anti-flapping: a failover happened {} s ago; automatic failover blocked for {} s more. Acknowledge with `myha failover --ack` or fail over by hand with `myha failover`",
                    durable
                        .last_failover_ms
                        .map_or(0, |t| now.unix_ms.saturating_sub(t) / 1000),
                    (until - now.unix_ms) / 1000
                ),
            ));
            st.said_blocked = true;
        }
        return (st, out);
    }
    if st.retry_at_ms.is_some_and(|t| at < t) {
        return (st, out);
    }
    out.push(Action::StartFailover(analysis));
    (st, out)
}
