//! Reinstating a diverged former master, as pg_rewind does for PostgreSQL:
//! the transactions it holds that the master lacks (written while it was
//! frozen or cut off, never acknowledged) are read from its binary log,
//! saved, and undone by MariaDB's binlog flashback, then it rejoins.
//!
//! Pure functions here: which GTID ranges to read, whether what
//! `mariadb-binlog` printed can be undone by flashback (ROW events only:
//! no DDL, no statement-format DML), and the single transaction the
//! flashback output is applied as. The manager runs the commands.
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::gtid::{GtidError, MariaBinlogState, MariaGtid};
use crate::report::{heartbeat_domain, ServerFacts};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReinstateError {
    #[error(transparent)]
    Gtid(#[from] GtidError),
    /// A domain with extra GTIDs has no GTID in common with the master:
    /// there is no position to read from (nor to rejoin at).
    #[error("domain {domain} has no GTID in common with the master: no position to read its extra transactions from")]
    NoCommonPosition { domain: u32 },
    /// What `mariadb-binlog` printed is not what was asked for.
    #[error("unexpected binary log contents: {0}")]
    Unexpected(String),
}

/// The extra transactions of one domain: every GTID the server logged in
/// `domain` after `after` (the last GTID it has in common with the master
/// there, exclusive) up to `last` (inclusive), as `mariadb-binlog
/// --start-position` / `--stop-position` take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraRange {
    pub domain: u32,
    pub after: MariaGtid,
    pub last: MariaGtid,
}

impl ExtraRange {
    /// `--start-position` (exclusive).
    pub fn start_position(&self) -> String {
        self.after.to_string()
    }

    /// `--start-position` with every other domain at `initial`, the state
    /// the server's first binary log starts from (`BINLOG_GTID_POS(first,
    /// 4)`): a binary log that does not start at the beginning of every
    /// domain (after RESET MASTER and a `gtid_binlog_state` set, or purged
    /// logs) refuses a start position that leaves a domain out, and one
    /// past the domain's events is never reached. Their events are left
    /// out with `--do-domain-ids`.
    pub fn start_position_beside(&self, initial: &str) -> String {
        let mut out = vec![self.after.to_string()];
        out.extend(
            initial
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .filter(|g| {
                    g.split('-')
                        .next()
                        .and_then(|d| d.parse::<u32>().ok())
                        .is_some_and(|d| d != self.domain)
                })
                .map(str::to_string),
        );
        out.join(",")
    }

    /// `--stop-position` (inclusive).
    pub fn stop_position(&self) -> String {
        self.last.to_string()
    }

    /// Whether `g` lies in the range.
    pub fn contains(&self, g: &MariaGtid) -> bool {
        g.domain == self.domain && g.seq > self.after.seq && g.seq <= self.last.seq
    }
}

impl fmt::Display for ExtraRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "after {} up to {}", self.after, self.last)
    }
}

/// The ranges of a MariaDB server's binary log that hold what the master
/// lacks: one per domain with extra GTIDs (myha's heartbeat domains
/// excluded, as in [`crate::rejoin::extra_gtids`]). Each starts after the
/// newest GTID the server and the master share in that domain (GTID
/// sequence numbers grow within a domain under strict mode) and ends at
/// the server's last GTID there.
pub fn extra_ranges(
    server: &ServerFacts,
    master: &ServerFacts,
) -> Result<Vec<ExtraRange>, ReinstateError> {
    let mine = MariaBinlogState::from_str(&server.gtid_binlog_state)?;
    let theirs = MariaBinlogState::from_str(&master.gtid_binlog_state)?;
    let domains: std::collections::BTreeSet<u32> = mine
        .errant_against(&theirs)
        .into_iter()
        .filter(|g| g.domain != heartbeat_domain(g.server_id))
        .map(|g| g.domain)
        .collect();
    let mut out = Vec::new();
    for domain in domains {
        let after = mine
            .iter()
            .filter(|g| g.domain == domain)
            .filter_map(|g| {
                theirs
                    .get(domain, g.server_id)
                    .map(|seq| MariaGtid::new(domain, g.server_id, seq.min(g.seq)))
            })
            .filter(|g| g.seq > 0)
            .max_by_key(|g| g.seq)
            .ok_or(ReinstateError::NoCommonPosition { domain })?;
        let last = mine
            .iter()
            .filter(|g| g.domain == domain)
            .max_by_key(|g| g.seq)
            .copied()
            .ok_or(ReinstateError::NoCommonPosition { domain })?;
        out.push(ExtraRange {
            domain,
            after,
            last,
        });
    }
    Ok(out)
}

/// One transaction as `mariadb-binlog -v --base64-output=decode-rows`
/// printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogTrx {
    pub gtid: MariaGtid,
    /// The GTID event carries the `ddl` flag.
    pub ddl: bool,
    /// Row events (Write_rows, Update_rows, Delete_rows).
    pub row_events: usize,
    /// Statements of its Query events other than transaction control
    /// (BEGIN, COMMIT, ROLLBACK) and session settings (SET, use): DDL, or
    /// DML logged as a statement.
    pub statements: Vec<String>,
    /// Events flashback cannot reverse, by type (Intvar, User_var, ...).
    pub other_events: Vec<String>,
}

impl BinlogTrx {
    /// Why flashback cannot undo this transaction, if it cannot.
    pub fn refusal(&self) -> Option<String> {
        let first = self
            .statements
            .first()
            .map(|s| shorten(s, 200))
            .unwrap_or_default();
        if self.ddl {
            return Some(format!(
                "GTID {} is DDL, which flashback cannot undo: {first}",
                self.gtid
            ));
        }
        if !self.statements.is_empty() {
            return Some(format!(
                "GTID {} was logged as a statement (binlog_format STATEMENT or MIXED), which flashback cannot undo: {first}",
                self.gtid
            ));
        }
        if let Some(kind) = self.other_events.first() {
            return Some(format!(
                "GTID {} holds a {kind} event (statement-based), which flashback cannot undo",
                self.gtid
            ));
        }
        None
    }
}

fn shorten(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// An event header line: `#YYMMDD HH:MM:SS server id N  end_log_pos P
/// ...\t<event>`; returns the event text (after the first tab).
fn event_text(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let digits = rest.get(..6)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !rest.contains(" server id ") {
        return None;
    }
    rest.split_once('\t').map(|(_, ev)| ev.trim())
}

/// The type of an event from its text: `Table_map: ...` is `Table_map`,
/// `GTID 0-1-4 trans` is `GTID`, `Query\tthread_id=...` is `Query`.
fn event_kind(text: &str) -> &str {
    text.split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap_or("")
}

fn is_row_event(kind: &str) -> bool {
    let k = kind.to_ascii_lowercase();
    (k.starts_with("write_") || k.starts_with("update_") || k.starts_with("delete_"))
        && k.contains("rows")
}

/// Transaction control or session setting, as `mariadb-binlog` prints
/// around a Query event's statement.
fn is_control(stmt: &str) -> bool {
    let s = stmt.trim();
    let upper = s.to_ascii_uppercase();
    s.is_empty()
        || s.starts_with("/*")
        || s.starts_with('#')
        || matches!(
            upper.as_str(),
            "BEGIN" | "COMMIT" | "ROLLBACK" | "START TRANSACTION"
        )
        || upper.starts_with("SET ")
        || upper.starts_with("SET@")
        || upper.starts_with("USE ")
}

/// The statements of a Query event's text (the lines after its header),
/// split at mariadb-binlog's `/*!*/;` delimiter.
fn query_statements(body: &str) -> Vec<String> {
    body.split("/*!*/;")
        .map(|chunk| {
            chunk
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parse `mariadb-binlog -v --base64-output=decode-rows` output (MariaDB)
/// into its transactions, in binlog order.
pub fn parse_decoded(text: &str) -> Result<Vec<BinlogTrx>, ReinstateError> {
    let mut out: Vec<BinlogTrx> = Vec::new();
    let mut open = false;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(ev) = event_text(lines[i]) else {
            i += 1;
            continue;
        };
        i += 1;
        let kind = event_kind(ev);
        match kind {
            "GTID" => {
                let mut words = ev.split_whitespace().skip(1);
                let gtid_text = words.next().ok_or_else(|| {
                    ReinstateError::Unexpected(format!("GTID event without a GTID: {ev}"))
                })?;
                let gtid = MariaGtid::from_str(gtid_text)?;
                let ddl = words.any(|w| w == "ddl");
                out.push(BinlogTrx {
                    gtid,
                    ddl,
                    row_events: 0,
                    statements: Vec::new(),
                    other_events: Vec::new(),
                });
                open = true;
            }
            "Query" => {
                // Its text runs until the next event header or `# at`.
                let start = i;
                while i < lines.len()
                    && event_text(lines[i]).is_none()
                    && !lines[i].starts_with("# at ")
                    && !lines[i].starts_with("DELIMITER ")
                {
                    i += 1;
                }
                let body = lines[start..i].join("\n");
                let stmts = query_statements(&body);
                let ends = stmts.iter().any(|s| {
                    let u = s.trim().to_ascii_uppercase();
                    u == "COMMIT" || u == "ROLLBACK"
                });
                let real: Vec<String> = stmts.into_iter().filter(|s| !is_control(s)).collect();
                if open {
                    if let Some(trx) = out.last_mut() {
                        trx.statements.extend(real);
                        if trx.ddl || ends {
                            open = false;
                        }
                    }
                } else if !real.is_empty() {
                    return Err(ReinstateError::Unexpected(format!(
                        "a statement outside any GTID: {}",
                        shorten(&real.join("; "), 200)
                    )));
                }
            }
            "Xid" => {
                open = false;
            }
            "Annotate_rows" | "Table_map" => {}
            k if is_row_event(k) => {
                if let (true, Some(trx)) = (open, out.last_mut()) {
                    trx.row_events += 1;
                } else {
                    return Err(ReinstateError::Unexpected(format!(
                        "a row event outside any transaction: {ev}"
                    )));
                }
            }
            // Outside a transaction: Rotate, Start (format description),
            // Gtid list, Binlog checkpoint, Stop.
            _ if !open => {}
            other => {
                if let Some(trx) = out.last_mut() {
                    trx.other_events.push(other.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Check that what was read is exactly the extra transactions: each lies
/// in one of `ranges` and is not on the master (its `gtid_binlog_state`),
/// and the last GTID of every range was read.
pub fn verify_read(
    trxs: &[BinlogTrx],
    ranges: &[ExtraRange],
    master: &ServerFacts,
) -> Result<(), ReinstateError> {
    let theirs = MariaBinlogState::from_str(&master.gtid_binlog_state)?;
    for t in trxs {
        if !ranges.iter().any(|r| r.contains(&t.gtid)) {
            return Err(ReinstateError::Unexpected(format!(
                "read {} outside the requested ranges",
                t.gtid
            )));
        }
        if theirs
            .get(t.gtid.domain, t.gtid.server_id)
            .is_some_and(|seq| seq >= t.gtid.seq)
        {
            return Err(ReinstateError::Unexpected(format!(
                "{} is on the master too: not an extra transaction",
                t.gtid
            )));
        }
    }
    for r in ranges {
        if !trxs.iter().any(|t| t.gtid == r.last) {
            return Err(ReinstateError::Unexpected(format!(
                "{} (the last of the range {r}) was not read",
                r.last
            )));
        }
    }
    Ok(())
}

/// Why flashback cannot undo these transactions; empty when it can.
pub fn refusals(trxs: &[BinlogTrx]) -> Vec<String> {
    trxs.iter().filter_map(BinlogTrx::refusal).collect()
}

/// The GTIDs of `trxs`, compact: `0-1-4..0-1-6` for a run of consecutive
/// sequence numbers of one origin, comma-separated.
pub fn gtid_list(trxs: &[BinlogTrx]) -> String {
    let mut runs: Vec<(MariaGtid, MariaGtid)> = Vec::new();
    for t in trxs {
        match runs.last_mut() {
            Some((_, last))
                if last.domain == t.gtid.domain
                    && last.server_id == t.gtid.server_id
                    && last.seq + 1 == t.gtid.seq =>
            {
                *last = t.gtid;
            }
            _ => runs.push((t.gtid, t.gtid)),
        }
    }
    runs.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Row events per table, from the decoded output's `Table_map` events
/// (for the journal: what the undo touches).
pub fn tables(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(ev) = event_text(line) {
            if event_kind(ev) == "Table_map" {
                if let Some(name) = ev
                    .strip_prefix("Table_map:")
                    .and_then(|r| r.split_whitespace().next())
                {
                    *out.entry(name.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    out
}

const DELIMITER_ON: &str = "DELIMITER /*!*/;";
const DELIMITER_OFF: &str = "DELIMITER ;";

/// The outputs of `mariadb-binlog --flashback` (one per range) as a single
/// script that applies them all in one transaction: mariadb-binlog
/// brackets every reversed transaction with `START TRANSACTION` and
/// `COMMIT`; these are removed, and one transaction wraps the whole, so
/// an error anywhere (a row no longer as the binlog says) rolls all of it
/// back and the server is left unchanged. Returns the script and the
/// number of row events it applies.
pub fn atomic_flashback(outputs: &[String]) -> Result<(String, usize), ReinstateError> {
    let mut header: Option<(Vec<String>, Vec<String>)> = None;
    let mut body: Vec<String> = Vec::new();
    let mut row_events = 0usize;
    for out in outputs {
        let lines: Vec<&str> = out.lines().collect();
        let on = lines
            .iter()
            .position(|l| *l == DELIMITER_ON)
            .ok_or_else(|| {
                ReinstateError::Unexpected("flashback output without `DELIMITER /*!*/;`".into())
            })?;
        let off = lines
            .iter()
            .rposition(|l| *l == DELIMITER_OFF)
            .filter(|off| *off > on)
            .ok_or_else(|| {
                ReinstateError::Unexpected("flashback output without a final `DELIMITER ;`".into())
            })?;
        if header.is_none() {
            header = Some((
                lines[..on].iter().map(|s| s.to_string()).collect(),
                lines[off..].iter().map(|s| s.to_string()).collect(),
            ));
        }
        // Where the transaction being read began in `body`, and the row
        // events counted before it: a transaction the binary log ends
        // with ROLLBACK (one cut short by a crash) never committed, so
        // there is nothing of it to undo.
        let (mut trx_body, mut trx_rows) = (body.len(), row_events);
        let mut j = on + 1;
        while j < off {
            let l = lines[j];
            let next = lines.get(j + 1).copied();
            match l {
                "START TRANSACTION/*!*/;" | "BEGIN/*!*/;" => {
                    (trx_body, trx_rows) = (body.len(), row_events);
                }
                "COMMIT/*!*/;" => {}
                "BEGIN" | "START TRANSACTION" if next == Some("/*!*/;") => {
                    (trx_body, trx_rows) = (body.len(), row_events);
                    j += 1;
                }
                "COMMIT" if next == Some("/*!*/;") => {
                    j += 1;
                }
                "ROLLBACK/*!*/;" => {
                    body.truncate(trx_body);
                    row_events = trx_rows;
                }
                "ROLLBACK" if next == Some("/*!*/;") => {
                    body.truncate(trx_body);
                    row_events = trx_rows;
                    j += 1;
                }
                _ => {
                    let upper = l.trim().to_ascii_uppercase();
                    if upper.starts_with("ROLLBACK") || upper.starts_with("XA ") {
                        return Err(ReinstateError::Unexpected(format!(
                            "flashback output holds `{}`",
                            shorten(l, 80)
                        )));
                    }
                    if event_text(l).is_some_and(|ev| is_row_event(event_kind(ev))) {
                        row_events += 1;
                    }
                    body.push(l.to_string());
                }
            }
            j += 1;
        }
    }
    let (head, tail) =
        header.ok_or_else(|| ReinstateError::Unexpected("no flashback output".into()))?;
    let mut script = head;
    script.push(DELIMITER_ON.to_string());
    script.push("START TRANSACTION/*!*/;".to_string());
    script.extend(body);
    script.push("COMMIT/*!*/;".to_string());
    script.extend(tail);
    let mut text = script.join("\n");
    text.push('\n');
    Ok((text, row_events))
}
