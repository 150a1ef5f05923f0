//! What an agent reports about its host, and what the manager's own probe
//! learns: the raw facts every decision is taken over.
use serde::{Deserialize, Serialize};

use crate::flavor::{Flavor, ReplicationStatus, ThreadState};

/// MariaDB: the GTID domain of the heartbeat rows a master's agent writes,
/// one per server. Kept apart from the application's domains so that the
/// heartbeats an old master wrote just before it died never make it look
/// diverged: they touch only its own heartbeat row.
pub fn heartbeat_domain(server_id: u32) -> u32 {
    HEARTBEAT_DOMAIN_BASE.saturating_add(server_id)
}

/// Domains from this value up are myha's heartbeat domains.
pub const HEARTBEAT_DOMAIN_BASE: u32 = 1_000_000_000;

/// Whether a MariaDB GTID domain is one of myha's heartbeat domains.
pub fn is_heartbeat_domain(domain: u32) -> bool {
    domain >= HEARTBEAT_DOMAIN_BASE
}

/// Facts read from a running mysqld in one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFacts {
    pub flavor: Flavor,
    pub server_id: u32,
    pub version: String,
    pub hostname: String,
    pub read_only: bool,
    pub super_read_only: bool,
    pub log_bin: bool,
    pub log_slave_updates: bool,
    pub binlog_format: String,
    /// MariaDB `gtid_strict_mode`, MySQL `gtid_mode = ON`.
    pub gtid_strict: bool,
    /// What the server has executed, in the flavor's own text: MariaDB
    /// `gtid_binlog_pos` (or `gtid_current_pos` without a binlog), MySQL
    /// `gtid_executed`.
    pub gtid_executed: String,
    /// MariaDB `gtid_binlog_state` (one GTID per domain and server), where
    /// errant local writes show; MySQL: same as `gtid_executed`.
    pub gtid_binlog_state: String,
    /// MariaDB `gtid_slave_pos`; empty for MySQL.
    pub gtid_slave_pos: String,
    /// MySQL `server_uuid`; empty for MariaDB.
    pub server_uuid: String,
    /// The default replication connection, if any is configured.
    pub replication: Option<ReplicationStatus>,
    /// Lag measured from the heartbeat row the master's agent writes, in
    /// milliseconds, when this server replicates and the row exists.
    pub heartbeat_lag_ms: Option<u64>,
    /// Server clock (`NOW(6)` as Unix microseconds) when sampled.
    pub clock_unix_us: i64,
    pub semi_sync_master: bool,
    pub semi_sync_slave: bool,
    /// `rpl_semi_sync_master_timeout` (MySQL `rpl_semi_sync_source_timeout`)
    /// in ms: after it, a master waiting for a semi-sync acknowledgement
    /// falls back to asynchronous replication. myha sets it to
    /// [`SEMI_SYNC_NO_FALLBACK_MS`] on the master; `None` when unknown.
    #[serde(default)]
    pub semi_sync_timeout_ms: Option<u64>,
    /// `skip_name_resolve`: with it OFF, connections a router aborts
    /// before they authenticate count against the router's address
    /// (`max_connect_errors`) and can get it blocked for everyone.
    #[serde(default)]
    pub skip_name_resolve: Option<bool>,
}

/// The semi-sync timeout myha sets on a master: about 49 days, i.e. never.
/// A master must not fall back to asynchronous replication on a timer (a
/// master frozen or cut off would then acknowledge commits no replica
/// has); only the manager degrades it, explicitly, under the current epoch.
pub const SEMI_SYNC_NO_FALLBACK_MS: u64 = 4_294_967_295;

/// Below this, `myha check` calls a master's semi-sync timeout a timer
/// that may fall back while the master is frozen or cut off (one hour).
pub const SEMI_SYNC_MIN_TIMEOUT_MS: u64 = 3_600_000;

impl ServerFacts {
    /// See [`MysqldStatus::differs_materially`].
    pub fn differs_materially(&self, before: &ServerFacts) -> bool {
        fn repl(f: &ServerFacts) -> Option<(&str, &str, u16, ThreadState, ThreadState, u32, u32)> {
            f.replication.as_ref().map(|r| {
                (
                    r.connection_name.as_str(),
                    r.source_host.as_str(),
                    r.source_port,
                    r.io_thread,
                    r.sql_thread,
                    r.last_io_errno,
                    r.last_sql_errno,
                )
            })
        }
        self.flavor != before.flavor
            || self.server_id != before.server_id
            || self.read_only != before.read_only
            || self.super_read_only != before.super_read_only
            || self.semi_sync_master != before.semi_sync_master
            || self.semi_sync_slave != before.semi_sync_slave
            || self.semi_sync_timeout_ms != before.semi_sync_timeout_ms
            || self.gtid_strict != before.gtid_strict
            || repl(self) != repl(before)
    }

    /// A server that replicates (has a source configured).
    pub fn is_replicating(&self) -> bool {
        self.replication
            .as_ref()
            .is_some_and(|r| !r.source_host.is_empty())
    }

    /// Lag in seconds with sub-second precision: the heartbeat when there
    /// is one, else `Seconds_Behind_Master`; `None` when not known (SQL
    /// thread stopped without a heartbeat, or not a replica).
    pub fn lag_seconds(&self) -> Option<f64> {
        let repl = self.replication.as_ref()?;
        if let Some(ms) = self.heartbeat_lag_ms {
            return Some(ms as f64 / 1000.0);
        }
        repl.seconds_behind_source.map(|s| s as f64)
    }

    /// The first replication error, IO then SQL, as one line.
    pub fn last_error(&self) -> Option<String> {
        let r = self.replication.as_ref()?;
        if r.last_io_errno != 0 || !r.last_io_error.is_empty() {
            return Some(format!("IO {}: {}", r.last_io_errno, r.last_io_error));
        }
        if r.last_sql_errno != 0 || !r.last_sql_error.is_empty() {
            return Some(format!("SQL {}: {}", r.last_sql_errno, r.last_sql_error));
        }
        None
    }
}

/// Why mysqld could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownKind {
    /// TCP connection refused: nothing listens (mysqld gone or starting).
    Refused,
    /// Connect or query timed out: hung, overloaded or unreachable.
    Timeout,
    /// Connected but the server refused us (auth, too many connections).
    Rejected,
    /// Any other I/O or protocol error.
    Error,
}

/// The state of mysqld as seen from one vantage point.
///
/// On the wire: `{"state":"up","facts":{..}}` or
/// `{"state":"down","kind":..,"error":..}`. It is read through
/// [`MysqldStatusWire`], a plain struct, rather than serde's internally
/// tagged enum, which first copies the whole object into an intermediate
/// tree: that copy was most of the cost of decoding an agent's report, of
/// which the manager decodes thousands a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "snake_case",
    try_from = "MysqldStatusWire"
)]
pub enum MysqldStatus {
    Up { facts: Box<ServerFacts> },
    Down { kind: DownKind, error: String },
}

/// The tag of [`MysqldStatus`] on the wire.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MysqldState {
    Up,
    Down,
}

/// [`MysqldStatus`] as it is read: every variant's fields, optional, in any
/// order; unknown fields ignored, as the tagged enum did. One difference
/// with serde's tagged enum: a field of the other variant is checked too
/// (`"kind": "bogus"` beside `"state": "up"` is refused, where the tagged
/// enum ignored it), and a `null` where a value is required reads
/// "missing field". No writer of reports sends either.
#[derive(Deserialize)]
struct MysqldStatusWire {
    state: MysqldState,
    facts: Option<Box<ServerFacts>>,
    kind: Option<DownKind>,
    error: Option<String>,
}

impl TryFrom<MysqldStatusWire> for MysqldStatus {
    type Error = String;

    fn try_from(w: MysqldStatusWire) -> Result<Self, String> {
        let missing =
            |field: &str, state: &str| format!("missing field `{field}` (mysqld state `{state}`)");
        match w.state {
            MysqldState::Up => Ok(MysqldStatus::Up {
                facts: w.facts.ok_or_else(|| missing("facts", "up"))?,
            }),
            MysqldState::Down => Ok(MysqldStatus::Down {
                kind: w.kind.ok_or_else(|| missing("kind", "down"))?,
                error: w.error.ok_or_else(|| missing("error", "down"))?,
            }),
        }
    }
}

impl MysqldStatus {
    /// Whether `self` differs from `before` in what detection, routing or
    /// repointing act on: up or down (and why), the server's identity, its
    /// read-only and semi-sync switches, its replication source, threads
    /// and errors. GTID positions, lag and clocks move all the time and are
    /// not material: what depends on them is re-read on the detector's
    /// steady tick. A material change wakes the detector at once.
    pub fn differs_materially(&self, before: &MysqldStatus) -> bool {
        match (self, before) {
            (MysqldStatus::Up { facts: a }, MysqldStatus::Up { facts: b }) => {
                a.differs_materially(b)
            }
            (MysqldStatus::Down { kind: a, .. }, MysqldStatus::Down { kind: b, .. }) => a != b,
            _ => true,
        }
    }

    pub fn facts(&self) -> Option<&ServerFacts> {
        match self {
            MysqldStatus::Up { facts } => Some(facts),
            MysqldStatus::Down { .. } => None,
        }
    }
}

/// A replica's view of its master, probed from the replica's host: the
/// evidence failure detection weighs against the manager's own probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterView {
    /// The source this replica is configured to replicate from.
    pub master_address: String,
    /// A direct TCP+SQL probe of the master from this host succeeded.
    pub probe_ok: bool,
    pub probe_error: Option<String>,
    pub probe_latency_ms: Option<f64>,
    pub io_thread: ThreadState,
    /// Milliseconds since the IO thread last received anything (an event
    /// or a heartbeat), as measured by the agent watching its counters.
    pub io_idle_ms: Option<u64>,
}

/// One report from an agent to the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub cluster: String,
    pub host: String,
    pub agent_version: String,
    /// Random per agent process (and per restart of its numbering, see
    /// [`AckStatus::Stale`]): a change means a new series of reports.
    pub instance: u64,
    /// Increases with every report of this instance; at most [`MAX_SEQ`].
    pub seq: u64,
    /// Agent clock, Unix milliseconds, when the sample was taken.
    pub sampled_at_ms: u64,
    /// How long the sample took, for diagnosis.
    pub sample_ms: u64,
    pub mysqld: MysqldStatus,
    /// Whether a mysqld/mariadbd process exists on the host (`None` if the
    /// agent cannot tell): separates "crashed" from "hung".
    pub mysqld_process: Option<bool>,
    pub master_view: Option<MasterView>,
    /// The newest topology epoch this agent has seen.
    pub epoch_seen: u64,
}

/// The largest `seq` a report may carry (2^53, exact in every JSON
/// number): a report beyond is invalid and refused, so that no single
/// report can put an agent's series out of reach of its later reports.
pub const MAX_SEQ: u64 = 1 << 53;

/// Whether the manager took a report in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// The report is the newest the manager holds from its agent.
    #[default]
    Accepted,
    /// The manager holds a report of the same instance with this `seq` or
    /// a higher one: this one was dropped. The agent starts a new instance
    /// (a new random id, `seq` from 1), and does not count this answer as
    /// contact with the manager.
    Stale,
}

/// The manager's answer to a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The cluster's current topology epoch.
    pub epoch: u64,
    /// The host the manager holds for master in that epoch, if any.
    pub master: Option<String>,
    /// The `seq` of the report this answers: an agent acts on an answer
    /// only if it post-dates the facts it acts against.
    #[serde(default)]
    pub seq: u64,
    /// Whether the report was taken in (a manager that predates this field
    /// took every report in).
    #[serde(default)]
    pub status: AckStatus,
    /// The answering manager leads (always, with one manager). An agent
    /// takes a master's name only from the leader; a follower's answer
    /// that agrees with the leader's last one counts as contact.
    #[serde(default = "leader_by_default")]
    pub leader: bool,
}

fn leader_by_default() -> bool {
    true
}

impl AgentReport {
    /// Whether this report, following `before` from the same host, says
    /// something detection must weigh at once (see
    /// [`MysqldStatus::differs_materially`]): another agent instance or
    /// epoch, mysqld's process appearing or going, the server's material
    /// state, or the replica's view of its master (reachable, source, IO
    /// thread).
    pub fn differs_materially(&self, before: &AgentReport) -> bool {
        fn view(r: &AgentReport) -> Option<(&str, bool, ThreadState)> {
            r.master_view
                .as_ref()
                .map(|v| (v.master_address.as_str(), v.probe_ok, v.io_thread))
        }
        self.instance != before.instance
            || self.epoch_seen != before.epoch_seen
            || self.mysqld_process != before.mysqld_process
            || view(self) != view(before)
            || self.mysqld.differs_materially(&before.mysqld)
    }
}

impl ReportAck {
    /// The manager took the report in.
    pub fn accepted(&self) -> bool {
        self.status == AckStatus::Accepted
    }
}
