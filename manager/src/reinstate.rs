//! Reinstatement of a diverged former master (MariaDB), as pg_rewind does
//! for PostgreSQL: its extra transactions (in its binary log, never
//! received by a replica, never acknowledged under lossless semi-sync) are
//! read with `mariadb-binlog --read-from-remote-server`, saved under the
//! manager's `state_dir`, checked (flashback undoes ROW events only: no
//! DDL, no statement-format DML), undone by `mariadb-binlog --flashback`
//! applied as one transaction without binary logging, and the server
//! rejoins as `rejoin --force` did (RESET MASTER, `gtid_slave_pos` at the
//! last common GTID, repointed). The server stays read-only throughout.
//!
//! A marker file beside the saved transactions records a flashback that
//! was applied (or may have been) so that it is never applied twice: a
//! later `myha rejoin HOST --force` finishes the rejoin instead.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::http::StatusCode;
use myha_config::{ClusterConfig, HostConfig};
use myha_core::reinstate::{
    atomic_flashback, extra_ranges, gtid_list, parse_decoded, refusals, tables, verify_read,
    ExtraRange,
};
use myha_core::report::ServerFacts;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::actions::Server;
use crate::operation::{journal, Context};
use crate::state::unix_ms;
use crate::store::{Step, StepStatus};

/// Bound of one `mariadb-binlog` read of the server's binary log.
const READ_BOUND: Duration = Duration::from_secs(120);
/// Bound of applying the flashback (one transaction).
const APPLY_BOUND: Duration = Duration::from_secs(300);
/// Bound of RESET MASTER.
const RESET_BOUND: Duration = Duration::from_secs(30);
/// How long the rejoined server may take to replicate again.
const VERIFY_BOUND: Duration = Duration::from_secs(20);

/// Why a reinstatement did not complete, and whether the server was
/// changed (its extra transactions undone, or possibly undone).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReinstateError {
    /// Refused, or failed, before anything changed on the server.
    #[error("{host} not reinstated, nothing changed on it (still diverged, read-only): {why}")]
    Unchanged { host: String, why: String },
    /// The flashback was applied (or may have been) and the rejoin is not
    /// done: `message` says what, and what to do.
    #[error("{message}")]
    Changed { message: String },
    /// A flashback an earlier attempt interrupted, that may or may not
    /// have committed: refused until an operator has looked.
    #[error("{message}")]
    Interrupted { message: String },
}

impl ReinstateError {
    fn unchanged(host: &str, why: impl std::fmt::Display) -> ReinstateError {
        ReinstateError::Unchanged {
            host: host.to_string(),
            why: why.to_string(),
        }
    }

    /// The server was changed (its extra transactions undone, or
    /// possibly undone): the next attempt must finish, not start over.
    pub(crate) fn changed(&self) -> bool {
        matches!(self, ReinstateError::Changed { .. })
    }

    /// The status an HTTP API answers with: refused, the server left as it
    /// was (still diverged) or an interrupted flashback to look at → 409;
    /// stopped midway → 500.
    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            ReinstateError::Unchanged { .. } | ReinstateError::Interrupted { .. } => {
                StatusCode::CONFLICT
            }
            ReinstateError::Changed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Why a client program (`mariadb-binlog`, `mariadb`) did not do its work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {secs} s (killed)")]
    TimedOut { program: String, secs: u64 },
    #[error("{program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    /// It ran and exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        /// The last lines of its stderr.
        stderr: String,
    },
    #[error("{program} printed invalid UTF-8")]
    NotUtf8 { program: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// The flashback is being applied: if the manager stopped or the
    /// client timed out, whether it committed is unknown.
    Applying,
    /// The flashback committed; the rejoin is left to do.
    Applied,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    phase: Phase,
    /// The GTIDs undone.
    gtids: String,
    /// `gtid_slave_pos` to rejoin at.
    common: String,
    /// The server's `gtid_binlog_state` before the flashback (unchanged by
    /// it: applied without binary logging).
    binlog_state: String,
    /// The files the transactions were saved to.
    saved: Vec<String>,
    at_ms: u64,
    /// `gtid_binlog_state` set after RESET MASTER: the history the server
    /// shares with the master (see `common_binlog_state`).
    #[serde(default)]
    common_state: String,
}

/// A `gtid_binlog_state` without myha's heartbeat domains (the agent may
/// write heartbeats meanwhile): what the data changes moved.
fn data_state(state: &str) -> String {
    state
        .split(',')
        .map(str::trim)
        .filter(|g| {
            g.split('-')
                .next()
                .and_then(|d| d.parse::<u32>().ok())
                .is_some_and(|d| d < myha_core::report::HEARTBEAT_DOMAIN_BASE)
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn dir(ctx: &Context) -> PathBuf {
    ctx.manager.state_dir.join("reinstate")
}

fn marker_path(ctx: &Context, cluster: &str, host: &str) -> PathBuf {
    dir(ctx).join(format!("{cluster}-{host}.pending.json"))
}

fn read_marker(path: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "unreadable reinstatement marker");
            None
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn write_marker(path: &Path, m: &Marker) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    write_private(&tmp, &text)?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// A 0600 client option file with the admin credentials, removed on drop:
/// the password is never on a command line nor in a log.
struct Credentials {
    path: PathBuf,
}

impl Credentials {
    fn write(dir: &Path, cluster: &ClusterConfig) -> std::io::Result<Credentials> {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let path = dir.join(format!(".client-{}-{}.cnf", std::process::id(), unix_ms()));
        let mut text = format!(
            "[client]\nuser={}\npassword={}\n",
            quote(&cluster.admin.user),
            quote(cluster.admin.password.expose())
        );
        if let Some(tls) = &cluster.mysql_tls {
            text.push_str(&format!(
                "ssl\nssl-ca={}\n",
                quote(&tls.ca_file.display().to_string())
            ));
            // The client checks the name only when it is the address.
            if tls.server_name.is_none() {
                text.push_str("ssl-verify-server-cert\n");
            }
        }
        write_private(&path, text.as_bytes())?;
        Ok(Credentials { path })
    }

    fn arg(&self) -> String {
        format!("--defaults-extra-file={}", self.path.display())
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The last lines of a command's stderr, for a message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("rror"))
        .collect();
    let picked = if lines.is_empty() {
        text.lines().rev().take(2).collect::<Vec<_>>()
    } else {
        lines.into_iter().rev().take(2).collect()
    };
    picked.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// Run `program args` with `stdin`, under `bound` (killed on timeout).
/// [`ToolError::Failed`]: it ran and failed; any other error: it timed out
/// or could not start.
async fn run(
    program: &str,
    args: &[String],
    stdin: Option<&[u8]>,
    bound: Duration,
) -> Result<Vec<u8>, ToolError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let input = child.stdin.take();
    let fut = async move {
        if let (Some(mut pipe), Some(data)) = (input, stdin) {
            // A client that exits early (an error) closes its end: the
            // write fails, the exit status says why.
            let _ = pipe.write_all(data).await;
            let _ = pipe.shutdown().await;
            drop(pipe);
        }
        child.wait_with_output().await
    };
    let program = program.to_string();
    match tokio::time::timeout(bound, fut).await {
        Err(_) => Err(ToolError::TimedOut {
            program,
            secs: bound.as_secs(),
        }),
        Ok(Err(source)) => Err(ToolError::Wait { program, source }),
        Ok(Ok(out)) if out.status.success() => Ok(out.stdout),
        Ok(Ok(out)) => Err(ToolError::Failed {
            program,
            status: out.status,
            stderr: tail(&out.stderr),
        }),
    }
}

/// `mariadb-binlog` reading `range` from the server, with `extra` options.
async fn read_range(
    creds: &Credentials,
    host: &HostConfig,
    first_log: &str,
    range: &ExtraRange,
    initial: &str,
    extra: &[&str],
) -> Result<String, ToolError> {
    let mut args = vec![
        creds.arg(),
        "--read-from-remote-server".to_string(),
        format!("--host={}", host.address),
        format!("--port={}", host.port),
        format!("--start-position={}", range.start_position_beside(initial)),
        format!("--do-domain-ids={}", range.domain),
        format!("--stop-position={}", range.stop_position()),
        "--to-last-log".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(first_log.to_string());
    let out = run("mariadb-binlog", &args, None, READ_BOUND).await?;
    String::from_utf8(out).map_err(|_| ToolError::NotUtf8 {
        program: "mariadb-binlog".to_string(),
    })
}

/// Finish a reinstatement whose flashback is applied: RESET MASTER,
/// `gtid_slave_pos` at the common position, repointed.
async fn finish(
    ctx: &Context,
    cluster: &ClusterConfig,
    host: &str,
    server: &mut Server,
    master_cfg: &HostConfig,
    marker: &Marker,
    marker_file: &Path,
) -> Result<String, ReinstateError> {
    let pending = |what: String| {
        ReinstateError::Changed {
        message: format!(
            "{host}: flashback applied ({} undone, saved in {}), not rejoined: {what}. {host} is read-only; \
             run `myha rejoin {host} --force` again to finish (the flashback is not applied twice)",
            marker.gtids,
            marker.saved.join(", ")
        ),
    }
    };
    // RESET MASTER deletes its binary logs and may take longer than a
    // query may: once more with a longer bound (it is idempotent).
    if let Err(e) = server.reset_binlog().await {
        tracing::warn!(%host, error = %e, "RESET MASTER: trying again with a longer bound");
        server
            .db
            .query_with("RESET MASTER", RESET_BOUND)
            .await
            .map_err(|e| pending(format!("RESET MASTER: {e}")))?;
    }
    if !marker.common_state.is_empty() {
        server
            .db
            .query_with(
                &format!(
                    "SET GLOBAL gtid_binlog_state = {}",
                    myha_core::flavor::sql_string_literal(&marker.common_state)
                ),
                RESET_BOUND,
            )
            .await
            .map_err(|e| pending(format!("setting gtid_binlog_state after RESET MASTER: {e}")))?;
    }
    server
        .rejoin_as_replica(master_cfg, cluster, &marker.common)
        .await
        .map_err(|e| pending(format!("repointing to {}: {e}", master_cfg.name)))?;
    let _ = ctx.topology.update_durable(&cluster.name, |s| {
        s.diverged.remove(host);
    });
    if let Err(e) = std::fs::remove_file(marker_file) {
        tracing::warn!(path = %marker_file.display(), error = %e, "cannot remove the reinstatement marker");
    }
    let mut master_srv = Server::new(cluster, master_cfg, &ctx.manager);
    let note = match master_srv.facts().await {
        Ok(mf) => match server
            .verify_replicating(&mf.gtid_executed, VERIFY_BOUND)
            .await
        {
            Ok(()) => format!("caught up with {}", master_cfg.name),
            Err(e) => format!("not verified caught up yet: {e}"),
        },
        Err(e) => format!("not verified caught up ({}: {e})", master_cfg.name),
    };
    let what = format!(
        "{host} reinstated: {} undone by flashback (saved in {}), replicates from {} at {} ({note})",
        marker.gtids,
        marker.saved.join(", "),
        master_cfg.name,
        marker.common
    );
    journal(
        ctx,
        &cluster.name,
        Step::Reinstate,
        StepStatus::Ok,
        what.clone(),
    );
    Ok(what)
}

/// A reinstatement left pending by an earlier attempt: finish it (the
/// flashback committed), or refuse (it may have). `None` when there is
/// none, or it no longer matches the server (discarded).
pub(crate) async fn resume(
    ctx: &Context,
    cluster: &ClusterConfig,
    host: &str,
    server: &mut Server,
    master_cfg: &HostConfig,
    facts: &ServerFacts,
) -> Option<Result<String, ReinstateError>> {
    let path = marker_path(ctx, &cluster.name, host);
    let marker = read_marker(&path)?;
    let same = data_state(&facts.gtid_binlog_state) == data_state(&marker.binlog_state);
    match marker.phase {
        Phase::Applied if same || data_state(&facts.gtid_binlog_state).is_empty() || !facts.log_bin => {
            journal(
                ctx,
                &cluster.name,
                Step::Reinstate,
                StepStatus::Resumed,
                format!("{host}: flashback of {} was applied; finishing the rejoin", marker.gtids),
            );
            Some(finish(ctx, cluster, host, server, master_cfg, &marker, &path).await)
        }
        Phase::Applying if same => Some(Err(ReinstateError::Interrupted {
            message: format!(
                "{host}: the flashback of {} was interrupted and may or may not have committed; {host} is read-only and \
                 diverged. Compare its rows with {} (what the flashback reverses), then either remove {} and run \
                 `myha rejoin {host} --force` (if nothing was undone), or rebuild {host} from a backup",
                marker.gtids,
                marker.saved.join(", "),
                path.display()
            ),
        })),
        _ => {
            let _ = std::fs::remove_file(&path);
            journal(
                ctx,
                &cluster.name,
                Step::Reinstate,
                StepStatus::Info,
                format!(
                    "{host}: an old reinstatement record ({:?} of {}) no longer matches its binary log ({}): discarded",
                    marker.phase, marker.gtids, facts.gtid_binlog_state
                ),
            );
            None
        }
    }
}

/// Reinstate `host`, a diverged former master of `cluster` (MariaDB): save
/// its extra transactions, undo them by flashback, rejoin it to
/// `master_cfg`. `facts` and `master_facts` were just read; `why` says who
/// asked (for the journal).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn reinstate(
    ctx: &Context,
    cluster: &ClusterConfig,
    host_cfg: &HostConfig,
    server: &mut Server,
    master_cfg: &HostConfig,
    facts: &ServerFacts,
    master_facts: &ServerFacts,
    why: &str,
) -> Result<String, ReinstateError> {
    let host = host_cfg.name.as_str();
    let master = master_cfg.name.as_str();
    let common = myha_core::rejoin::common_position(facts, master_facts)
        .map_err(|e| ReinstateError::unchanged(host, e))?
        .ok_or_else(|| {
            ReinstateError::unchanged(
                host,
                format!("{host} and {master} have no common GTID position: rebuild {host} from a backup"),
            )
        })?;
    let ranges =
        extra_ranges(facts, master_facts).map_err(|e| ReinstateError::unchanged(host, e))?;
    if ranges.is_empty() {
        return Err(ReinstateError::unchanged(
            host,
            "no extra transaction to undo",
        ));
    }
    let ranges_text = ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    journal(
        ctx,
        &cluster.name,
        Step::Reinstate,
        StepStatus::Started,
        format!(
            "{host} ({why}): reading its extra transactions ({ranges_text}) from its binary log"
        ),
    );
    // Never writable while its data is changed.
    if !facts.read_only {
        server.fence().await.map_err(|e| {
            ReinstateError::unchanged(host, format!("cannot make it read-only: {e}"))
        })?;
    }
    let dir = dir(ctx);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ReinstateError::unchanged(host, format!("{}: {e}", dir.display())))?;
    }
    let logs = server
        .db
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| ReinstateError::unchanged(host, format!("SHOW BINARY LOGS: {e}")))?;
    let first_log = logs
        .first()
        .and_then(|r| r.get("Log_name").cloned().flatten())
        .ok_or_else(|| {
            ReinstateError::unchanged(host, "SHOW BINARY LOGS returned no binary log")
        })?;
    // The GTID state the first binary log starts from (after a RESET
    // MASTER with gtid_binlog_state set, or purged logs, not every domain
    // starts at its beginning): the other domains are read from there and
    // filtered out, or the server refuses the read.
    let initial = server
        .db
        .query_first(&format!(
            "SELECT BINLOG_GTID_POS({}, 4) AS pos",
            myha_core::flavor::sql_string_literal(&first_log)
        ))
        .await
        .map_err(|e| ReinstateError::unchanged(host, format!("BINLOG_GTID_POS: {e}")))?
        .and_then(|r| r.get("pos").cloned().flatten())
        .unwrap_or_default();
    let creds = Credentials::write(&dir, cluster).map_err(|e| {
        ReinstateError::unchanged(
            host,
            format!(
                "cannot write a client option file in {}: {e}",
                dir.display()
            ),
        )
    })?;

    // 1. Read and save, before anything changes.
    let mut replayable = String::new();
    let mut decoded = String::new();
    for r in &ranges {
        let read = |extra: &'static [&'static str]| {
            read_range(&creds, host_cfg, &first_log, r, &initial, extra)
        };
        replayable.push_str(
            &read(&["-v"])
                .await
                .map_err(|e| ReinstateError::unchanged(host, e))?,
        );
        decoded.push_str(
            &read(&["-v", "--base64-output=decode-rows"])
                .await
                .map_err(|e| ReinstateError::unchanged(host, e))?,
        );
    }
    let base = dir.join(format!("{}-{host}-{}", cluster.name, unix_ms()));
    let sql_file = base.with_extension("sql");
    let decoded_file = base.with_extension("decoded.txt");
    for (path, data) in [(&sql_file, &replayable), (&decoded_file, &decoded)] {
        write_private(path, data.as_bytes()).map_err(|e| {
            ReinstateError::unchanged(host, format!("cannot save {}: {e}", path.display()))
        })?;
    }
    let saved = vec![
        sql_file.display().to_string(),
        decoded_file.display().to_string(),
    ];

    // 2. Check: exactly the extra transactions, all undoable.
    let trxs = parse_decoded(&decoded).map_err(|e| ReinstateError::unchanged(host, e))?;
    verify_read(&trxs, &ranges, master_facts).map_err(|e| ReinstateError::unchanged(host, e))?;
    let gtids = gtid_list(&trxs);
    let touched = tables(&decoded)
        .into_iter()
        .map(|(t, n)| format!("{t} ({n})"))
        .collect::<Vec<_>>()
        .join(", ");
    journal(
        ctx,
        &cluster.name,
        Step::Reinstate,
        StepStatus::Saved,
        format!(
            "{host}: {} transaction(s) {gtids} saved to {} (replayable) and {} (decoded rows); tables: {touched}",
            trxs.len(),
            saved[0],
            saved[1]
        ),
    );
    let refused = refusals(&trxs);
    if !refused.is_empty() {
        let more = if refused.len() > 3 {
            format!(" (and {} more)", refused.len() - 3)
        } else {
            String::new()
        };
        let msg = format!(
            "{}{more}. Its extra transactions are saved in {}. Rebuild {host} from a backup of {master}; or, to keep \
             its data as it is and discard {gtids} from its replication history only, run on {host} \
             `RESET MASTER; SET GLOBAL gtid_slave_pos = '{common}'` then `myha rejoin {host}`",
            refused.iter().take(3).cloned().collect::<Vec<_>>().join("; "),
            saved.join(", ")
        );
        journal(
            ctx,
            &cluster.name,
            Step::Reinstate,
            StepStatus::Refused,
            format!("{host}: {msg}"),
        );
        return Err(ReinstateError::unchanged(host, msg));
    }

    // 3. The flashback, one transaction, saved too.
    let mut outputs = Vec::new();
    for r in &ranges {
        outputs.push(
            read_range(&creds, host_cfg, &first_log, r, &initial, &["--flashback"])
                .await
                .map_err(|e| ReinstateError::unchanged(host, e))?,
        );
    }
    let (script, rows) =
        atomic_flashback(&outputs).map_err(|e| ReinstateError::unchanged(host, e))?;
    let flashback_file = base.with_extension("flashback.sql");
    write_private(&flashback_file, script.as_bytes()).map_err(|e| {
        ReinstateError::unchanged(
            host,
            format!("cannot save {}: {e}", flashback_file.display()),
        )
    })?;
    let mut marker = Marker {
        phase: Phase::Applying,
        gtids: gtids.clone(),
        common: common.clone(),
        binlog_state: facts.gtid_binlog_state.clone(),
        saved: saved.clone(),
        at_ms: unix_ms(),
        common_state: myha_core::rejoin::common_binlog_state(facts, master_facts)
            .unwrap_or_default(),
    };
    let marker_file = marker_path(ctx, &cluster.name, host);
    write_marker(&marker_file, &marker).map_err(|e| {
        ReinstateError::unchanged(host, format!("cannot write {}: {e}", marker_file.display()))
    })?;
    let args = vec![
        creds.arg(),
        format!("--host={}", host_cfg.address),
        format!("--port={}", host_cfg.port),
        "--init-command=SET SESSION sql_log_bin=0".to_string(),
        "--batch".to_string(),
    ];
    match run("mariadb", &args, Some(script.as_bytes()), APPLY_BOUND).await {
        Ok(_) => {}
        Err(e @ ToolError::Failed { .. }) => {
            // The client stopped at the error: the transaction rolled back.
            let _ = std::fs::remove_file(&marker_file);
            let msg = format!(
                "the flashback of {gtids} ({}) failed and rolled back: {e}",
                flashback_file.display()
            );
            journal(
                ctx,
                &cluster.name,
                Step::Reinstate,
                StepStatus::Failed,
                format!("{host}: {msg}"),
            );
            return Err(ReinstateError::unchanged(host, msg));
        }
        Err(e) => {
            let msg = format!(
                "{host}: the flashback of {gtids} may or may not have committed ({e}); {host} is read-only and diverged. \
                 Compare its rows with {} and {}, then remove {} and run `myha rejoin {host} --force` if nothing was \
                 undone, or rebuild {host} from a backup",
                saved[1],
                flashback_file.display(),
                marker_file.display()
            );
            journal(
                ctx,
                &cluster.name,
                Step::Reinstate,
                StepStatus::Failed,
                msg.clone(),
            );
            return Err(ReinstateError::Changed { message: msg });
        }
    }
    // The credentials are needed no more: removed before the rejoin, so
    // that nothing is left behind once the server replicates.
    drop(creds);
    marker.phase = Phase::Applied;
    if let Err(e) = write_marker(&marker_file, &marker) {
        tracing::error!(path = %marker_file.display(), error = %e, "cannot record the applied flashback");
    }
    journal(
        ctx,
        &cluster.name,
        Step::Reinstate,
        StepStatus::Undone,
        format!(
            "{host}: {gtids} undone by flashback ({rows} row event(s), one transaction, not binary-logged; script {})",
            flashback_file.display()
        ),
    );
    // 4. Verify: still read-only, and the flashback left no binlog trace.
    let changed = |what: String| ReinstateError::Changed {
        message: format!(
            "{host}: flashback applied ({gtids} undone, saved in {}), not rejoined: {what}. \
             Run `myha rejoin {host} --force` again to finish (the flashback is not applied twice)",
            saved.join(", ")
        ),
    };
    let after = server.facts().await.map_err(|e| changed(e.to_string()))?;
    if !after.read_only {
        let _ = server.fence().await;
        return Err(changed(format!("{host} was found writable (fenced again)")));
    }
    if data_state(&after.gtid_binlog_state) != data_state(&facts.gtid_binlog_state) {
        return Err(changed(format!(
            "its binary log moved during the flashback ({} -> {})",
            facts.gtid_binlog_state, after.gtid_binlog_state
        )));
    }
    // 5. Rejoin.
    finish(
        ctx,
        cluster,
        host,
        server,
        master_cfg,
        &marker,
        &marker_file,
    )
    .await
}
