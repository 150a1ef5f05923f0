//! Candidate choice for a failover: which replica becomes the master, and
//! whether it must first catch up from a more advanced one. A pure
//! function over the servers' reported facts.
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::flavor::{Flavor, ThreadState};
use crate::gtid::{GtidError, GtidKey, GtidSet, MariaBinlogState, MariaGtidPos, MysqlGtidSet};
use crate::report::{is_heartbeat_domain, ServerFacts};
use crate::topology::{Role, ServerView};

/// The GTIDs a server has executed, flavor-neutral.
pub fn executed_set(f: &ServerFacts) -> Result<GtidSet, GtidError> {
    match f.flavor {
        // A position set deliberately (a rejoin after RESET MASTER) lives
        // in gtid_slave_pos until the domain's next event reaches the
        // binlog: the server has executed both.
        Flavor::Mariadb => {
            let binlog = MariaGtidPos::from_str(&f.gtid_executed)?.to_set();
            let slave = crate::flavor::normalize_gtid_text(&f.gtid_slave_pos);
            Ok(binlog.union(&MariaGtidPos::from_str(&slave)?.to_set()))
        }
        Flavor::Mysql => Ok(GtidSet::from(&MysqlGtidSet::from_str(&f.gtid_executed)?)),
    }
}

/// Whether `a`'s executed transactions are a subset of `b`'s, and whether
/// `b`'s are of `a`'s: the same answers as comparing [`executed_set`]s.
/// For two MariaDB servers the sets are not built: each domain's set is
/// `1..=n` for the highest seq in either position, so comparing those
/// highest seqs per domain is enough (the manager compares a probe with a
/// report of every server on every look).
pub fn executed_subsets(a: &ServerFacts, b: &ServerFacts) -> Result<(bool, bool), GtidError> {
    if a.flavor == Flavor::Mariadb && b.flavor == Flavor::Mariadb {
        let (x, y) = (mariadb_highest(a)?, mariadb_highest(b)?);
        let within = |x: &[(u32, u64)], y: &[(u32, u64)]| {
            x.iter()
                .all(|(domain, seq)| y.iter().any(|(other, top)| other == domain && top >= seq))
        };
        return Ok((within(&x, &y), within(&y, &x)));
    }
    let (x, y) = (executed_set(a)?, executed_set(b)?);
    Ok((x.is_subset(&y), y.is_subset(&x)))
}

/// A MariaDB server's highest executed seq per domain (binlog position and
/// slave position together; domains at seq 0 hold nothing and are left
/// out).
fn mariadb_highest(f: &ServerFacts) -> Result<Vec<(u32, u64)>, GtidError> {
    let slave = crate::flavor::normalize_gtid_text(&f.gtid_slave_pos);
    let mut out: Vec<(u32, u64)> = Vec::new();
    for pos in [
        MariaGtidPos::from_str(&f.gtid_executed)?,
        MariaGtidPos::from_str(&slave)?,
    ] {
        for g in pos.iter().filter(|g| g.seq > 0) {
            match out.iter_mut().find(|(domain, _)| *domain == g.domain) {
                Some((_, top)) => *top = (*top).max(g.seq),
                None => out.push((g.domain, g.seq)),
            }
        }
    }
    Ok(out)
}

/// The GTIDs a replica has received into its relay log (executed or not).
pub fn received_set(f: &ServerFacts) -> Result<GtidSet, GtidError> {
    let Some(r) = f.replication.as_ref() else {
        return Ok(GtidSet::new());
    };
    let text = crate::flavor::normalize_gtid_text(&r.retrieved_gtids);
    match f.flavor {
        Flavor::Mariadb => Ok(MariaGtidPos::from_str(&text)?.to_set()),
        Flavor::Mysql => Ok(GtidSet::from(&MysqlGtidSet::from_str(&text)?)),
    }
}

/// What a replica will have once it has applied its relay log.
pub fn final_set(f: &ServerFacts) -> Result<GtidSet, GtidError> {
    Ok(executed_set(f)?.union(&received_set(f)?))
}

/// Errant transactions of `f`: local writes on a replica. They carry the
/// server's own origin (MariaDB server_id, MySQL server_uuid), since
/// anything replicated keeps the origin of the server that wrote it; they
/// are errant when no other server has them (a former master's own writes
/// are in the others' state). MariaDB reads `gtid_binlog_state` (one entry
/// per origin), MySQL `gtid_executed`. Another server whose state cannot
/// be read vouches for nothing (one unreadable state must not make every
/// candidate unreadable); only `f`'s own unreadable state is an error.
pub fn errant_gtids(f: &ServerFacts, others: &[&ServerFacts]) -> Result<Vec<String>, GtidError> {
    match f.flavor {
        Flavor::Mariadb => {
            let mine = MariaBinlogState::from_str(&f.gtid_binlog_state)?;
            let mut union = MariaBinlogState::new();
            for o in others {
                let Ok(state) = MariaBinlogState::from_str(&o.gtid_binlog_state) else {
                    continue;
                };
                for g in state.iter() {
                    let keep = union
                        .get(g.domain, g.server_id)
                        .is_none_or(|seq| seq < g.seq);
                    if keep {
                        union.insert(*g);
                    }
                }
            }
            Ok(mine
                .errant_against(&union)
                .into_iter()
                .filter(|g| {
                    g.server_id == f.server_id
                        && g.domain != crate::report::heartbeat_domain(g.server_id)
                })
                .map(|g| g.to_string())
                .collect())
        }
        Flavor::Mysql => {
            let mine = MysqlGtidSet::from_str(&f.gtid_executed)?;
            let mut union = MysqlGtidSet::new();
            for o in others {
                if let Ok(theirs) = MysqlGtidSet::from_str(&o.gtid_executed) {
                    union = union.union(&theirs);
                }
            }
            let own = f.server_uuid.to_ascii_lowercase();
            let extra = GtidSet::from(&mine.difference(&union));
            Ok(extra
                .iter()
                .filter(|(k, _)| match k {
                    GtidKey::Sid(sid) => {
                        !own.is_empty() && sid.to_string().starts_with(own.as_str())
                    }
                    GtidKey::Domain(_) => false,
                })
                .map(|(k, set)| format!("{k}:{set}"))
                .collect())
        }
    }
}

/// A server that could take over, with its configuration.
#[derive(Debug, Clone)]
pub struct CandidateServer {
    pub view: ServerView,
    pub candidate_master: bool,
    pub no_master: bool,
    pub priority: i32,
}

#[derive(Debug, Clone)]
pub struct CandidateInput {
    pub old_master: String,
    /// Every other configured server, in configuration order.
    pub servers: Vec<CandidateServer>,
    /// The last facts known of every configured server, the old master
    /// and servers now down included: what "the others have" for errant
    /// transaction detection.
    pub known_facts: Vec<(String, ServerFacts)>,
    pub max_lag_seconds: f64,
    /// `--to HOST`: only this one may be chosen.
    pub forced: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub server: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateChoice {
    pub chosen: Option<String>,
    /// The most advanced reachable, healthy replica (eligible or not).
    pub most_advanced: Option<String>,
    /// Set when `chosen` lacks GTIDs `most_advanced` has: catch up first.
    pub catch_up_from: Option<String>,
    /// What `chosen` lacks against `most_advanced`, as text.
    pub catch_up_gtids: Option<String>,
    /// The eligible servers, best first.
    pub ranking: Vec<String>,
    pub excluded: Vec<Exclusion>,
    /// Why nothing was chosen, when nothing was.
    pub blocker: Option<String>,
}

struct Scored<'a> {
    server: &'a CandidateServer,
    order: usize,
    set: GtidSet,
    /// GTIDs outside myha's heartbeat domains: the application's data.
    data: u64,
}

/// How many of `set`'s GTIDs are the application's, leaving out myha's
/// own heartbeat domains (MariaDB). The master writes a heartbeat several
/// times a second, so which replica has received the latest one changes
/// from one sample to the next: ranking on it would make the choice flip
/// between replicas holding the same data.
fn data_count(set: &GtidSet) -> u64 {
    set.iter()
        .filter(|(k, _)| !matches!(k, GtidKey::Domain(d) if is_heartbeat_domain(*d)))
        .map(|(_, s)| s.count())
        .sum()
}

/// Why a replica cannot serve even as a source of missing events, if so.
fn unusable(s: &CandidateServer) -> Option<String> {
    let v = &s.view;
    if v.mysqld_up != Some(true) {
        return Some(if v.host_reachable {
            "mysqld is down".into()
        } else {
            "host unreachable".into()
        });
    }
    let f = v.facts.as_ref()?;
    if v.role != Role::Replica {
        return Some(format!("not a replica (role {})", v.role));
    }
    let r = f.replication.as_ref()?;
    if r.last_sql_errno != 0 {
        return Some(format!(
            "replication broken: SQL error {}: {}",
            r.last_sql_errno, r.last_sql_error
        ));
    }
    None
}

/// Choose the replica to promote.
pub fn choose(input: &CandidateInput) -> CandidateChoice {
    let mut excluded = Vec::new();
    let all_facts: Vec<(&str, &ServerFacts)> = input
        .servers
        .iter()
        .filter_map(|s| s.view.facts.as_ref().map(|f| (s.view.name.as_str(), f)))
        .chain(input.known_facts.iter().map(|(n, f)| (n.as_str(), f)))
        .collect();

    // Replicas usable as sources of events (errant-free and healthy).
    let mut usable: Vec<Scored<'_>> = Vec::new();
    let mut eligible: Vec<usize> = Vec::new(); // indexes into `usable`
    for (order, s) in input.servers.iter().enumerate() {
        let name = s.view.name.clone();
        let exclude = |excluded: &mut Vec<Exclusion>, reason: String| {
            excluded.push(Exclusion {
                server: name.clone(),
                reason,
            })
        };
        if let Some(reason) = unusable(s) {
            exclude(&mut excluded, reason);
            continue;
        }
        let Some(f) = s.view.facts.as_ref() else {
            exclude(&mut excluded, "no facts reported".into());
            continue;
        };
        let others: Vec<&ServerFacts> = all_facts
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, f)| *f)
            .collect();
        match errant_gtids(f, &others) {
            Ok(e) if !e.is_empty() => {
                exclude(
                    &mut excluded,
                    format!("errant transactions: {}", e.join(",")),
                );
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                exclude(&mut excluded, format!("unreadable GTID state: {e}"));
                continue;
            }
        }
        let set = match final_set(f) {
            Ok(set) => set,
            Err(e) => {
                exclude(&mut excluded, format!("unreadable GTID position: {e}"));
                continue;
            }
        };
        usable.push(Scored {
            server: s,
            order,
            data: data_count(&set),
            set,
        });
        let idx = usable.len() - 1;

        // Eligibility to be promoted.
        let r = f.replication.as_ref();
        let reason = if s.no_master {
            Some("no_master is set".to_string())
        } else if !f.log_bin || !f.log_slave_updates {
            Some("log_bin or log_slave_updates is OFF".to_string())
        } else if r.is_some_and(|r| r.sql_thread != ThreadState::Running)
            && !received_set(f)
                .is_ok_and(|recv| executed_set(f).is_ok_and(|exec| recv.is_subset(&exec)))
        {
            Some("SQL thread not running with unapplied relay log (lagging)".to_string())
        } else if let Some(lag) = r
            .and_then(|r| r.seconds_behind_source)
            .map(|l| l as f64)
            .filter(|l| *l > input.max_lag_seconds)
        {
            Some(format!(
                "lagging {lag:.0} s > max_lag {:.0} s",
                input.max_lag_seconds
            ))
        } else if input.forced.as_deref().is_some_and(|f| f != name) {
            Some(format!(
                "not the requested target {}",
                input.forced.as_deref().unwrap_or_default()
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => exclude(&mut excluded, reason),
            None => eligible.push(idx),
        }
    }

    // Most application data first; ties: candidate_master, priority,
    // config order. A candidate that lacks only heartbeats another replica
    // has is still preferred by configuration; it catches up from that
    // replica (most advanced over every GTID) before promotion, so the
    // others can replicate from it afterwards.
    let preference = |a: &Scored<'_>, b: &Scored<'_>| {
        b.server
            .candidate_master
            .cmp(&a.server.candidate_master)
            .then(b.server.priority.cmp(&a.server.priority))
            .then(a.order.cmp(&b.order))
    };
    let rank = |a: &Scored<'_>, b: &Scored<'_>| b.data.cmp(&a.data).then(preference(a, b));
    let advanced =
        |a: &Scored<'_>, b: &Scored<'_>| b.set.count().cmp(&a.set.count()).then(preference(a, b));
    eligible.sort_by(|&a, &b| rank(&usable[a], &usable[b]));
    let most_advanced = (0..usable.len()).min_by(|&a, &b| advanced(&usable[a], &usable[b]));

    let ranking: Vec<String> = eligible
        .iter()
        .map(|&i| usable[i].server.view.name.clone())
        .collect();
    let chosen = eligible.first().copied();
    let blocker = if chosen.is_some() {
        None
    } else if let Some(f) = &input.forced {
        Some(match excluded.iter().find(|e| &e.server == f) {
            Some(e) => format!("requested target {f} is not eligible: {}", e.reason),
            None => format!("requested target {f} is not a configured replica"),
        })
    } else {
        Some("no eligible replica".into())
    };
    let (catch_up_from, catch_up_gtids) = match (chosen, most_advanced) {
        (Some(c), Some(m)) if c != m => {
            let missing = usable[m].set.difference(&usable[c].set);
            if missing.is_empty() {
                (None, None)
            } else {
                (
                    Some(usable[m].server.view.name.clone()),
                    Some(missing.to_string()),
                )
            }
        }
        _ => (None, None),
    };
    CandidateChoice {
        chosen: chosen.map(|i| usable[i].server.view.name.clone()),
        most_advanced: most_advanced.map(|i| usable[i].server.view.name.clone()),
        catch_up_from,
        catch_up_gtids,
        ranking,
        excluded,
        blocker,
    }
}
