//! May a returning server (a former master, or any server not replicating)
//! be repointed to the current master? Only if everything it executed is
//! on the master: otherwise it has diverged and must never rejoin silently.
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::flavor::{Flavor, ThreadState};
use crate::gtid::MariaGtidPos;
use crate::gtid::{GtidError, MariaBinlogState, MysqlGtidSet};
use crate::report::{heartbeat_domain, ServerFacts};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RejoinDecision {
    /// Its GTIDs are a subset of the master's: repoint it.
    Rejoin,
    /// It executed transactions the master lacks: keep it out.
    Diverged { extra: Vec<String> },
}

/// The GTIDs `a` executed that `b` lacks. MariaDB compares
/// `gtid_binlog_state` (per domain and origin server): positions alone
/// cannot tell `0-1-105` written on a cut-off old master from the new
/// master's `0-2-105`. MySQL compares `gtid_executed` sets.
pub fn extra_gtids(a: &ServerFacts, b: &ServerFacts) -> Result<Vec<String>, GtidError> {
    match a.flavor {
        Flavor::Mariadb => {
            let sa = MariaBinlogState::from_str(&a.gtid_binlog_state)?;
            let sb = MariaBinlogState::from_str(&b.gtid_binlog_state)?;
            Ok(sa
                .errant_against(&sb)
                .into_iter()
                .filter(|g| g.domain != heartbeat_domain(g.server_id))
                .map(|g| g.to_string())
                .collect())
        }
        Flavor::Mysql => {
            let diff = MysqlGtidSet::from_str(&a.gtid_executed)?
                .difference(&MysqlGtidSet::from_str(&b.gtid_executed)?);
            Ok(if diff.is_empty() {
                Vec::new()
            } else {
                vec![diff.to_string()]
            })
        }
    }
}

/// Whether `server` already replicates from the master at `host:port` and
/// applies what it receives. A rejoin decided on an older report (one
/// taken while a switchover had the server read-only and detached) then
/// has nothing to do, and must not set its position: one read before its
/// applier stopped would be stale, and under GTID strict mode the
/// transactions applied since would be fetched again and refused.
pub fn already_replicates_from(server: &ServerFacts, host: &str, port: u16) -> bool {
    server.replication.as_ref().is_some_and(|r| {
        r.source_host == host
            && r.source_port == port
            && r.sql_thread == ThreadState::Running
            && r.io_thread != ThreadState::Stopped
    })
}

/// Whether `server`'s applier or receiver runs: its executed GTIDs are
/// still moving.
pub fn replication_moving(server: &ServerFacts) -> bool {
    server.replication.as_ref().is_some_and(|r| {
        r.sql_thread != ThreadState::Stopped || r.io_thread != ThreadState::Stopped
    })
}

/// Compare a returning server with the current master.
pub fn rejoin_decision(
    server: &ServerFacts,
    master: &ServerFacts,
) -> Result<RejoinDecision, GtidError> {
    let extra = extra_gtids(server, master)?;
    Ok(if extra.is_empty() {
        RejoinDecision::Rejoin
    } else {
        RejoinDecision::Diverged { extra }
    })
}

/// For `rejoin --force` on MariaDB: the last GTID the server and the master
/// have in common in each domain, as a `gtid_slave_pos` value; `None` when
/// a domain has no common GTID the master's binlog state can name.
pub fn common_position(
    server: &ServerFacts,
    master: &ServerFacts,
) -> Result<Option<String>, GtidError> {
    let mine = MariaBinlogState::from_str(&server.gtid_binlog_state)?;
    let theirs = MariaBinlogState::from_str(&master.gtid_binlog_state)?;
    let mut out = Vec::new();
    let domains: std::collections::BTreeSet<u32> = mine.iter().map(|g| g.domain).collect();
    for d in domains {
        // The newest of the server's entries (per origin) the master has
        // too, up to the master's own sequence for that origin.
        let best = mine
            .iter()
            .filter(|g| g.domain == d)
            .filter_map(|g| {
                theirs
                    .get(d, g.server_id)
                    .map(|seq| (g.server_id, seq.min(g.seq)))
            })
            .max_by_key(|(_, seq)| *seq);
        match best {
            Some((server_id, seq)) => out.push(format!("{d}-{server_id}-{seq}")),
            None => return Ok(None),
        }
    }
    Ok(Some(out.join(",")))
}

/// The `gtid_binlog_state` of a server reinstated after RESET MASTER: its
/// own state with the GTIDs the master lacks taken out (each domain and
/// origin capped at the master's sequence, origins the master lacks
/// dropped, myha's heartbeat domains too). Set right after
/// RESET MASTER, it keeps the server's history comparable: without it,
/// the transactions of every other origin would later look like
/// something the server lacks, and any server that has them like it
/// diverged. Each domain's newest entry comes last.
pub fn common_binlog_state(
    server: &ServerFacts,
    master: &ServerFacts,
) -> Result<String, GtidError> {
    let mine = MariaBinlogState::from_str(&server.gtid_binlog_state)?;
    let theirs = MariaBinlogState::from_str(&master.gtid_binlog_state)?;
    let mut kept: Vec<(u32, u64, u32)> = mine
        .iter()
        .filter_map(|g| {
            theirs
                .get(g.domain, g.server_id)
                .map(|seq| (g.domain, seq.min(g.seq), g.server_id))
        })
        .collect();
    kept.sort_unstable();
    Ok(kept
        .iter()
        .map(|(d, seq, s)| format!("{d}-{s}-{seq}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// Where a MariaDB candidate starts replicating from `source` to catch up
/// with it: per domain, its own position, or the source's where the
/// candidate is ahead (a heartbeat the source never received; asking the
/// source for a GTID it lacks stops replication with error 1236). What
/// the candidate lacks is fetched, nothing is fetched twice.
pub fn catch_up_position(
    candidate: &ServerFacts,
    source: &ServerFacts,
) -> Result<String, GtidError> {
    let mine = MariaGtidPos::from_str(&candidate.gtid_executed)?;
    let theirs = MariaGtidPos::from_str(&source.gtid_executed)?;
    let pos: MariaGtidPos = mine
        .iter()
        .map(|g| match theirs.get(g.domain) {
            Some(t) if t.seq < g.seq => *t,
            _ => *g,
        })
        .collect();
    Ok(pos.to_string())
}

/// The replication position a returning MariaDB server resumes from: what
/// it executed, except in its own heartbeat domain, where it takes the
/// master's position (its last heartbeats may never have left it).
pub fn rejoin_position(server: &ServerFacts, master: &ServerFacts) -> Result<String, GtidError> {
    if server.flavor != Flavor::Mariadb {
        return Ok(server.gtid_executed.clone());
    }
    let mine = MariaGtidPos::from_str(&server.gtid_executed)?;
    let theirs = MariaGtidPos::from_str(&master.gtid_executed)?;
    let own = heartbeat_domain(server.server_id);
    let pos: MariaGtidPos = mine
        .iter()
        .filter_map(|g| {
            if g.domain == own {
                theirs.get(own).copied()
            } else {
                Some(*g)
            }
        })
        .collect();
    Ok(pos.to_string())
}
