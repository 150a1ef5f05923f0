//! The manager's picture of a cluster: per server, the facts from the
//! manager's own probe and from the server's agent, merged by a pure
//! function. What the manager reads itself wins: an agent's report (which
//! a compromised host can forge) fills in only where the manager has no
//! fresh reading, and is otherwise evidence for detection.
use serde::{Deserialize, Serialize};

use crate::flavor::ThreadState;
use crate::report::{AgentReport, DownKind, MasterView, MysqldStatus, ServerFacts};

/// The myha version this code is (every crate of the workspace shares it):
/// an agent reporting another one is named in the snapshot's problems.
pub const MYHA_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A server's role as derived from what it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Replica,
    /// A former master failed away from and not rejoined yet: it must stay
    /// read-only until it is repointed (or proven diverged).
    NeedsRejoin,
    /// Holds transactions the master lacks: kept read-only and out.
    Diverged,
    Unknown,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Replica => "replica",
            Role::NeedsRejoin => "old master, needs rejoin",
            Role::Diverged => "diverged",
            Role::Unknown => "unknown",
        })
    }
}

/// The manager's own probe of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub mysqld: MysqldStatus,
    pub latency_ms: Option<f64>,
}

/// Everything the manager holds about one configured host, with ages
/// relative to the moment the snapshot is built.
#[derive(Debug, Clone)]
pub struct HostObservation<'a> {
    pub name: &'a str,
    pub address: String,
    pub agent: Option<(&'a AgentReport, u64)>,
    pub probe: Option<(&'a ProbeResult, u64)>,
    /// Milliseconds since the manager's probe last succeeded, while it fails.
    pub probe_failing_for_ms: Option<u64>,
}

/// Thresholds the snapshot is built with.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// An agent silent for longer is "unreachable".
    pub agent_stale_after_ms: u64,
    /// A manager probe older than this is ignored.
    pub probe_stale_after_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub reachable: bool,
    /// The myha version the agent runs (from its last report).
    #[serde(default)]
    pub version: Option<String>,
    pub last_report_age_ms: Option<u64>,
    pub mysqld_process: Option<bool>,
    pub down_kind: Option<DownKind>,
    pub down_error: Option<String>,
    pub master_view: Option<MasterView>,
    pub epoch_seen: Option<u64>,
}

impl AgentView {
    /// The host's agent finds mysqld gone, not just slow: no mysqld
    /// process, or nothing listens on its port. (A timed-out sample means
    /// overloaded or hung, and says nothing of the kind.)
    pub fn says_mysqld_gone(&self) -> bool {
        self.mysqld_process == Some(false) || self.down_kind == Some(DownKind::Refused)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    pub ok: bool,
    pub age_ms: Option<u64>,
    /// How long the probe has failed without a success in between.
    pub failing_for_ms: Option<u64>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// A field on which a server's fresh agent report contradicts the
/// manager's fresh probe of the same server. The probe's value is the one
/// the view shows and every decision uses. Briefly during a change (a
/// promotion, a fence, a restart) the two reads may straddle it; a
/// disagreement that persists means a broken agent or forged reports.
/// GTID positions that merely moved between the two reads are not one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum Disagreement {
    /// The agent says mysqld is gone (no process, or connection refused)
    /// while the manager reads it.
    MysqldUp {
        probe: bool,
        agent: bool,
    },
    /// Not even the same server (`server_id`).
    ServerId {
        probe: u32,
        agent: u32,
    },
    ReadOnly {
        probe: bool,
        agent: bool,
    },
    Role {
        probe: Role,
        agent: Role,
    },
    /// The configured replication source (`host:port`; `None`: none).
    ReplicationSource {
        probe: Option<String>,
        agent: Option<String>,
    },
    /// Executed GTIDs neither of which contains the other: no time
    /// between two reads of one server explains that.
    Gtids {
        probe: String,
        agent: String,
    },
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn on_off(v: bool) -> &'static str {
            if v {
                "ON"
            } else {
                "OFF"
            }
        }
        fn source(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("none")
        }
        match self {
            Disagreement::MysqldUp { probe, agent } => write!(
                f,
                "mysqld: the manager reads it {}, its agent reports it {}",
                if *probe { "up" } else { "down" },
                if *agent { "up" } else { "gone" }
            ),
            Disagreement::ServerId { probe, agent } => write!(
                f,
                "server_id: the manager reads {probe}, its agent reports {agent}"
            ),
            Disagreement::ReadOnly { probe, agent } => write!(
                f,
                "read_only: the manager reads {}, its agent reports {}",
                on_off(*probe),
                on_off(*agent)
            ),
            Disagreement::Role { probe, agent } => write!(
                f,
                "role: the manager reads {probe}, its agent reports {agent}"
            ),
            Disagreement::ReplicationSource { probe, agent } => write!(
                f,
                "replication source: the manager reads {}, its agent reports {}",
                source(probe),
                source(agent)
            ),
            Disagreement::Gtids { probe, agent } => write!(
                f,
                "GTIDs: the manager reads {probe}, its agent reports {agent} (neither contains the other)"
            ),
        }
    }
}

/// One row of `myha status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub name: String,
    pub address: String,
    pub role: Role,
    /// `None` when no fresh source can tell (host unreachable, probe failing).
    pub mysqld_up: Option<bool>,
    /// Whether the host's agent reports on time.
    pub host_reachable: bool,
    pub read_only: Option<bool>,
    pub gtid_position: Option<String>,
    pub io_running: Option<ThreadState>,
    pub sql_running: Option<ThreadState>,
    pub last_error: Option<String>,
    pub lag_seconds: Option<f64>,
    /// Age of the facts shown, in milliseconds.
    pub age_ms: Option<u64>,
    /// Where the facts came from: `manager` (its own probe, whenever it
    /// has a fresh reading) or `agent` (only when it has none).
    pub source: Option<String>,
    pub replicates_from: Option<String>,
    pub server_id: Option<u32>,
    /// Errant transactions (local writes no other server has); they block
    /// this server's promotion.
    #[serde(default)]
    pub errant: Vec<String>,
    /// For a diverged server, the GTIDs it has that the master lacks.
    #[serde(default)]
    pub diverged_gtids: Vec<String>,
    /// Where the server's fresh agent report contradicts the manager's
    /// fresh probe (the probe's values are shown and used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<Disagreement>,
    pub agent: AgentView,
    pub manager_probe: ProbeView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<ServerFacts>,
}

impl ServerView {
    /// The manager's own fresh probe reads this server (so the role,
    /// `read_only` and GTIDs shown are the manager's own reading).
    pub fn probe_confirmed(&self) -> bool {
        self.manager_probe.ok && self.source.as_deref() == Some(SOURCE_MANAGER)
    }
}

const SOURCE_MANAGER: &str = "manager";
const SOURCE_AGENT: &str = "agent";

/// A cluster as the manager sees it at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub cluster: String,
    pub epoch: u64,
    pub generated_at_ms: u64,
    pub master: Option<String>,
    pub servers: Vec<ServerView>,
    /// Plain-language anomalies seen in the snapshot (two writable
    /// servers, no master, ...).
    pub problems: Vec<String>,
}

impl ClusterSnapshot {
    pub fn server(&self, name: &str) -> Option<&ServerView> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// The role a server's facts imply. A server with a source configured is
/// a replica while it applies events or is read-only; a writable server
/// that applies nothing (no source, or its SQL thread stopped, as during a
/// promotion whose IO thread is still being stopped) acts as the master.
pub fn role_of(facts: &ServerFacts) -> Role {
    let applying = facts
        .replication
        .as_ref()
        .is_some_and(|r| !r.source_host.is_empty() && r.sql_thread != ThreadState::Stopped);
    if facts.is_replicating() && (applying || facts.read_only) {
        Role::Replica
    } else if !facts.read_only {
        Role::Master
    } else {
        Role::Unknown
    }
}

fn error_of(status: &MysqldStatus) -> Option<(DownKind, String)> {
    match status {
        MysqldStatus::Up { .. } => None,
        MysqldStatus::Down { kind, error } => Some((*kind, error.clone())),
    }
}

fn source_of(f: &ServerFacts) -> Option<String> {
    f.replication
        .as_ref()
        .filter(|r| !r.source_host.is_empty())
        .map(|r| format!("{}:{}", r.source_host, r.source_port))
}

/// Where an agent's facts contradict the manager's own reading of the
/// same server, field by field. GTIDs count only when neither set
/// contains the other (a position that moved on between the two reads is
/// no contradiction; an unreadable one proves nothing).
pub fn disagreements(probe: &ServerFacts, agent: &ServerFacts) -> Vec<Disagreement> {
    let mut out = Vec::new();
    if probe.server_id != agent.server_id {
        out.push(Disagreement::ServerId {
            probe: probe.server_id,
            agent: agent.server_id,
        });
    }
    if probe.read_only != agent.read_only {
        out.push(Disagreement::ReadOnly {
            probe: probe.read_only,
            agent: agent.read_only,
        });
    }
    let (probe_role, agent_role) = (role_of(probe), role_of(agent));
    if probe_role != agent_role {
        out.push(Disagreement::Role {
            probe: probe_role,
            agent: agent_role,
        });
    }
    let (probe_source, agent_source) = (source_of(probe), source_of(agent));
    if probe_source != agent_source {
        out.push(Disagreement::ReplicationSource {
            probe: probe_source,
            agent: agent_source,
        });
    }
    // Equal texts are equal sets: no need to parse them (the common case,
    // on every snapshot of a quiet server).
    let same_text =
        probe.gtid_executed == agent.gtid_executed && probe.gtid_slave_pos == agent.gtid_slave_pos;
    if probe.flavor == agent.flavor && !same_text {
        if let Ok((probe_within, agent_within)) = crate::candidate::executed_subsets(probe, agent) {
            if !probe_within && !agent_within {
                out.push(Disagreement::Gtids {
                    probe: probe.gtid_executed.clone(),
                    agent: agent.gtid_executed.clone(),
                });
            }
        }
    }
    out
}

/// Merge one host's observations into its status row.
///
/// The manager's own fresh probe, when it reads mysqld, supplies the facts
/// (role, `read_only`, GTIDs, replication), however much fresher the
/// agent's report is: an agent's report can be forged by whoever holds
/// the host. A fresh report that contradicts the probe is flagged
/// ([`ServerView::disagreements`]). Only when the manager has no fresh
/// reading (it cannot reach the server) are the agent's facts shown. The
/// agent's own observations (mysqld's process, why it cannot connect, its
/// view of its master) are kept apart, in [`AgentView`], as evidence.
pub fn server_view(obs: &HostObservation<'_>, fresh: Freshness) -> ServerView {
    let agent = obs
        .agent
        .filter(|(_, age)| *age <= fresh.agent_stale_after_ms);
    let probe = obs
        .probe
        .filter(|(_, age)| *age <= fresh.probe_stale_after_ms);

    let agent_facts = agent.and_then(|(r, age)| r.mysqld.facts().map(|f| (f, age, SOURCE_AGENT)));
    let probe_facts = probe.and_then(|(p, age)| p.mysqld.facts().map(|f| (f, age, SOURCE_MANAGER)));
    let chosen = probe_facts.or(agent_facts);

    let mut disagreements = match (probe_facts, agent_facts) {
        (Some((p, _, _)), Some((a, _, _))) => self::disagreements(p, a),
        _ => Vec::new(),
    };
    if probe_facts.is_some()
        && agent.is_some_and(|(r, _)| {
            r.mysqld_process == Some(false)
                || error_of(&r.mysqld).is_some_and(|(k, _)| k == DownKind::Refused)
        })
    {
        disagreements.insert(
            0,
            Disagreement::MysqldUp {
                probe: true,
                agent: false,
            },
        );
    }

    // mysqld is up if any fresh source reads it; down if the host's own
    // agent (which sees the local process) says so; otherwise unknown.
    let mysqld_up = if chosen.is_some() {
        Some(true)
    } else if agent.is_some() {
        Some(false)
    } else {
        None
    };

    let agent_down = agent.and_then(|(r, _)| error_of(&r.mysqld));
    let agent_view = AgentView {
        reachable: agent.is_some(),
        version: obs.agent.map(|(r, _)| r.agent_version.clone()),
        last_report_age_ms: obs.agent.map(|(_, age)| age),
        mysqld_process: agent.and_then(|(r, _)| r.mysqld_process),
        down_kind: agent_down.as_ref().map(|(k, _)| *k),
        down_error: agent_down.map(|(_, e)| e),
        master_view: agent.and_then(|(r, _)| r.master_view.clone()),
        epoch_seen: obs.agent.map(|(r, _)| r.epoch_seen),
    };
    let probe_view = ProbeView {
        ok: probe.is_some_and(|(p, _)| p.mysqld.facts().is_some()),
        age_ms: obs.probe.map(|(_, age)| age),
        failing_for_ms: obs.probe_failing_for_ms,
        latency_ms: probe.and_then(|(p, _)| p.latency_ms),
        error: obs
            .probe
            .and_then(|(p, _)| error_of(&p.mysqld))
            .map(|(_, e)| e),
    };

    let facts = chosen.map(|(f, _, _)| f);
    let repl = facts.and_then(|f| f.replication.as_ref());
    ServerView {
        name: obs.name.to_string(),
        address: obs.address.clone(),
        role: facts.map_or(Role::Unknown, role_of),
        mysqld_up,
        host_reachable: agent.is_some(),
        read_only: facts.map(|f| f.read_only),
        gtid_position: facts.map(|f| f.gtid_executed.clone()),
        io_running: repl.map(|r| r.io_thread),
        sql_running: repl.map(|r| r.sql_thread),
        last_error: facts.and_then(ServerFacts::last_error),
        lag_seconds: facts.and_then(ServerFacts::lag_seconds),
        age_ms: chosen.map(|(_, age, _)| age),
        source: chosen.map(|(_, _, s)| s.to_string()),
        replicates_from: facts.and_then(source_of),
        server_id: facts.map(|f| f.server_id),
        errant: Vec::new(),
        diverged_gtids: Vec::new(),
        disagreements,
        agent: agent_view,
        manager_probe: probe_view,
        facts: facts.cloned(),
    }
}

/// An anomaly seen in a cluster's snapshot. Shown (and serialized) as the
/// plain-language sentence of its `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No server is a writable master that replicates from nobody.
    NoMaster,
    /// Several servers are writable and replicate from nobody.
    SeveralWritable {
        servers: Vec<String>,
    },
    AgentNotReporting {
        server: String,
    },
    /// mysqld is down while its host answers.
    MysqldDown {
        server: String,
    },
    ReplicationError {
        server: String,
        error: String,
    },
    /// Transactions written on a replica itself.
    Errant {
        server: String,
        gtids: Vec<String>,
    },
    /// A server with transactions the master lacks, kept out.
    Diverged {
        server: String,
        gtids: Vec<String>,
    },
    /// A former master not rejoined yet, found writable.
    FormerMasterWritable {
        server: String,
    },
    /// The server's agent runs another myha version than the manager
    /// (an upgrade under way: agents first, then the managers).
    AgentVersion {
        server: String,
        agent: String,
        manager: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoMaster => f.write_str("no writable master is visible"),
            Problem::SeveralWritable { servers } => write!(
                f,
                "{} writable servers that replicate from nobody: {}",
                servers.len(),
                servers.join(", ")
            ),
            Problem::AgentNotReporting { server } => write!(f, "{server}: agent not reporting"),
            Problem::MysqldDown { server } => write!(f, "{server}: mysqld is down (host up)"),
            Problem::ReplicationError { server, error } => {
                write!(f, "{server}: replication error: {error}")
            }
            Problem::Errant { server, gtids } => write!(
                f,
                "{server}: errant transactions {} (written on the replica itself): it cannot be promoted until they are resolved",
                gtids.join(",")
            ),
            Problem::Diverged { server, gtids } => write!(
                f,
                "{server}: diverged, it has {} the master lacks: kept read-only and out; `myha rejoin {server} --force` discards them (see docs/failover.md, section Rejoin)",
                gtids.join(",")
            ),
            Problem::FormerMasterWritable { server } => write!(
                f,
                "{server}: former master is WRITABLE: being fenced by its agent"
            ),
            Problem::AgentVersion {
                server,
                agent,
                manager,
            } => write!(
                f,
                "{server}: its agent runs myha {agent}, the manager {manager}: finish the upgrade"
            ),
        }
    }
}

/// On the wire a problem is its sentence.
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl PartialEq<&str> for Problem {
    fn eq(&self, other: &&str) -> bool {
        let sentence = self.to_string();
        sentence == *other
    }
}

impl ClusterSnapshot {
    /// Set the snapshot's problems (their sentences) from `problems`.
    pub fn set_problems(&mut self, problems: &[Problem]) {
        self.problems = problems.iter().map(ToString::to_string).collect();
    }
}

/// Build the snapshot of one cluster from its hosts' observations.
pub fn build_snapshot(
    cluster: &str,
    epoch: u64,
    now_ms: u64,
    hosts: &[HostObservation<'_>],
    fresh: Freshness,
) -> ClusterSnapshot {
    build_snapshot_with_problems(cluster, epoch, now_ms, hosts, fresh).0
}

/// [`build_snapshot`], with its problems as values too (the snapshot holds
/// their sentences), for a caller that adds or drops some.
pub fn build_snapshot_with_problems(
    cluster: &str,
    epoch: u64,
    now_ms: u64,
    hosts: &[HostObservation<'_>],
    fresh: Freshness,
) -> (ClusterSnapshot, Vec<Problem>) {
    let servers: Vec<ServerView> = hosts.iter().map(|h| server_view(h, fresh)).collect();
    let masters: Vec<&str> = servers
        .iter()
        .filter(|s| s.role == Role::Master)
        .map(|s| s.name.as_str())
        .collect();
    let mut problems = Vec::new();
    let master = match masters.as_slice() {
        [one] => Some(one.to_string()),
        [] => {
            problems.push(Problem::NoMaster);
            None
        }
        many => {
            problems.push(Problem::SeveralWritable {
                servers: many.iter().map(|m| m.to_string()).collect(),
            });
            None
        }
    };
    for s in &servers {
        let server = || s.name.clone();
        if !s.host_reachable {
            problems.push(Problem::AgentNotReporting { server: server() });
        }
        if let Some(v) = s.agent.version.as_deref() {
            if v != MYHA_VERSION {
                problems.push(Problem::AgentVersion {
                    server: server(),
                    agent: v.to_string(),
                    manager: MYHA_VERSION.to_string(),
                });
            }
        }
        if s.mysqld_up == Some(false) {
            problems.push(Problem::MysqldDown { server: server() });
        }
        if let Some(e) = &s.last_error {
            problems.push(Problem::ReplicationError {
                server: server(),
                error: e.to_string(),
            });
        }
    }
    let mut snap = ClusterSnapshot {
        cluster: cluster.to_string(),
        epoch,
        generated_at_ms: now_ms,
        master,
        servers,
        problems: Vec::new(),
    };
    snap.set_problems(&problems);
    (snap, problems)
}
