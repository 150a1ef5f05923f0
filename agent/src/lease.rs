//! The master's lease, held in the kernel: mysqld's replies leave this host
//! only while the agent keeps renewing a deadline in an iptables rule (in
//! the `mangle` table, ahead of any firewall's `filter` rules).
//!
//! A frozen host (VM pause, `docker pause`) resumes all its processes at
//! once: mysqld may send OKs for commits it held before the freeze in the
//! same instant the agent wakes up, before any fence can run, while a new
//! master was promoted meanwhile. The kernel is not frozen: an `xt_time`
//! rule whose `--datestop` the agent pushes forward every second drops
//! every TCP segment mysqld sends from its port to another host once the
//! deadline has passed. The agent renews it only while it is not frozen,
//! its server is the writable master of the newest epoch it knows of, and
//! it is not fencing; a failover promotes only after the lease has run
//! out (see `ClusterConfig::self_fenced_by`).
//!
//! A fence then closes the server's client sockets in the kernel (`ss
//! -K`), so that nothing it queued while the lease was out (an OK for a
//! commit no replica has) is retransmitted later (the resets pass: they
//! carry nothing), and a server that is no longer the master gets no rule
//! at all (replicas serve reads).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::process::Command;

/// The chain holding the lease rules, jumped to from OUTPUT.
const CHAIN: &str = "MYHA_LEASE";
/// Upper bound of one iptables or ss run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an `iptables` or `ss` run (or the lease's clock) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    /// It ran and exited with an error.
    #[error("{tool} {args}: {stderr}")]
    Failed {
        tool: String,
        /// Its arguments, joined by spaces.
        args: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// It could not be started (or waited for).
    #[error("{tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} timed out after {timeout:?}")]
    TimedOut { tool: String, timeout: Duration },
    /// The system clock is before 1970: no deadline can be computed.
    #[error(transparent)]
    Clock(#[from] std::time::SystemTimeError),
}

impl ToolError {}

/// Why a fence of the local mysqld failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FenceError {
    /// The SQL fence (read_only ON, sessions killed).
    #[error(transparent)]
    Db(#[from] myha_mysql::DbError),
    /// Closing the killed sessions' sockets.
    #[error(transparent)]
    Tool(#[from] ToolError),
}

async fn run(tool: &str, args: &[&str]) -> Result<String, ToolError> {
    let mut cmd = Command::new(tool);
    cmd.args(args).kill_on_drop(true);
    match tokio::time::timeout(TOOL_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(ToolError::Failed {
            tool: tool.to_string(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Ok(Err(source)) => Err(ToolError::Spawn {
            tool: tool.to_string(),
            source,
        }),
        Err(_) => Err(ToolError::TimedOut {
            tool: tool.to_string(),
            timeout: TOOL_TIMEOUT,
        }),
    }
}

/// iptables on the `mangle` table: its OUTPUT chain is traversed before
/// `filter`'s, so that no ACCEPT rule of a firewall (inserted before ours)
/// lets mysqld's replies bypass the lease, and a flush of `filter` leaves
/// it in place.
async fn ipt(args: &[&str]) -> Result<String, ToolError> {
    let mut all = vec!["-t", "mangle"];
    all.extend_from_slice(args);
    run("iptables", &all).await
}

/// `secs` (Unix) as xt_time's `--datestop` (UTC).
pub(crate) fn datestop(secs: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The lease of this host's mysqld port.
#[derive(Debug)]
pub(crate) struct Lease {
    port: String,
    /// The `--datestop` second in force, when the rules are in place.
    until: Option<u64>,
    /// Whether the DROP rule is in place (this server is the master).
    enforcing: bool,
    ttl: Duration,
}

impl Lease {
    pub(crate) fn new(port: u16, ttl: Duration) -> Lease {
        Lease {
            port: port.to_string(),
            until: None,
            enforcing: false,
            ttl,
        }
    }

    /// Segments mysqld sends from its port to another host, then `tail`.
    fn rule(&self, tail: &[&str]) -> Vec<String> {
        ["!", "-o", "lo", "-p", "tcp", "--sport", &self.port]
            .iter()
            .chain(tail)
            .map(|s| s.to_string())
            .collect()
    }

    fn allow_rule(&self, until: u64) -> Vec<String> {
        self.rule(&["-m", "time", "--datestop", &datestop(until), "-j", "RETURN"])
    }

    fn drop_rule(&self) -> Vec<String> {
        // Resets pass: they carry nothing, and tell clients at once that
        // the connection is gone (the fence closes them).
        self.rule(&["!", "--tcp-flags", "RST", "RST", "-j", "DROP"])
    }

    /// The chain, empty, jumped to from OUTPUT (put back after a flush of
    /// the filter table by someone else, too).
    async fn empty_chain() -> Result<(), ToolError> {
        let _ = ipt(&["-N", CHAIN]).await;
        ipt(&["-F", CHAIN]).await?;
        if ipt(&["-C", "OUTPUT", "-j", CHAIN]).await.is_err() {
            ipt(&["-I", "OUTPUT", "1", "-j", CHAIN]).await?;
        }
        Ok(())
    }

    async fn append(rule: &[String]) -> Result<(), ToolError> {
        let mut args = vec!["-A", CHAIN];
        args.extend(rule.iter().map(String::as_str));
        ipt(&args).await.map(|_| ())
    }

    /// Both rules in place, the deadline at `until` (`None`: passed).
    async fn install(&mut self, until: Option<u64>) -> Result<(), ToolError> {
        Lease::empty_chain().await?;
        if let Some(u) = until {
            Lease::append(&self.allow_rule(u)).await?;
        }
        Lease::append(&self.drop_rule()).await?;
        self.enforcing = true;
        self.until = until;
        Ok(())
    }

    /// Push the deadline to `ttl` from now (rounded up to the second:
    /// the lease runs between `ttl` and `ttl + 1 s`). Only runs iptables
    /// when the second changes.
    pub(crate) async fn renew(&mut self) -> Result<(), ToolError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let until = now.saturating_add(self.ttl).as_secs().saturating_add(1);
        if self.enforcing && self.until == Some(until) {
            return Ok(());
        }
        if self.enforcing {
            let allow = self.allow_rule(until);
            let mut args = vec!["-R", CHAIN, "1"];
            args.extend(allow.iter().map(String::as_str));
            // The chain may have been flushed meanwhile: put it back whole.
            if ipt(&args).await.is_ok() && ipt(&["-C", "OUTPUT", "-j", CHAIN]).await.is_ok() {
                self.until = Some(until);
                return Ok(());
            }
        }
        self.install(Some(until)).await
    }

    /// End the lease now: only resets leave mysqld's port for other hosts
    /// until the next renewal.
    pub(crate) async fn expire_now(&mut self) -> Result<(), ToolError> {
        // In force: deleting the allow rule is one quick step (a fence
        // after a freeze races the server's own replies).
        if self.enforcing && self.until.is_some() && ipt(&["-D", CHAIN, "1"]).await.is_ok() {
            self.until = None;
            return Ok(());
        }
        self.install(None).await
    }

    /// Stop enforcing: this server is not the master (replicas serve
    /// reads). Call after [`close_client_sockets`] when it was fenced.
    pub(crate) async fn release(&mut self) {
        if !self.enforcing {
            return;
        }
        match ipt(&["-F", CHAIN]).await {
            Ok(_) => {
                self.enforcing = false;
                self.until = None;
            }
            Err(e) => tracing::warn!(error = %e, "releasing the lease"),
        }
    }
}

/// The peers (`ip:port`) of mysqld's sockets to other hosts that still
/// hold data to send, from `ss -Htn state connected` output: what the
/// lease held back (an OK for a commit no replica has).
pub(crate) fn pending_peers(ss: &str, port: u16, own: &str) -> Vec<String> {
    let local_suffix = format!(":{port}");
    ss.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (send_q, local, peer) = match f.as_slice() {
                [_state, _recv, send, local, peer, ..] => (*send, *local, *peer),
                _ => return None,
            };
            let pending = send_q.parse::<u64>().is_ok_and(|n| n > 0);
            let ip = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let local_host = ip == own || ip.starts_with("127.") || ip == "::1";
            (pending && local.ends_with(&local_suffix) && !local_host).then(|| peer.to_string())
        })
        .collect()
}

/// Close, in the kernel, mysqld's sockets to other hosts that still hold
/// data to send: what mysqld queued while the lease was out (an OK for a
/// commit no replica has) is discarded, never retransmitted once the rule
/// goes. Sockets with nothing pending are left to close normally, so that
/// their clients hear of it (a reset sent while the host is cut off would
/// be lost, and the client would wait for its own timeout).
pub(crate) async fn close_client_sockets(port: u16, own: &str) -> Result<(), ToolError> {
    let filter = format!("( sport = :{port} )");
    let listing = run("ss", &["-H", "-t", "-n", "state", "connected", &filter]).await?;
    for peer in pending_peers(&listing, port, own) {
        let Some((ip, pport)) = peer.rsplit_once(':') else {
            continue;
        };
        let kill = format!("( sport = :{port} and dport = :{pport} and dst {ip} )");
        run("ss", &["-K", "-t", "-n", "state", "connected", &kill]).await?;
    }
    Ok(())
}

/// What the sampler wants of the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Not known yet: leave things as they are.
    Unknown,
    /// The writable master of the newest epoch, not fencing: renew.
    Serve,
    /// A master that must not serve (fencing, or another is master):
    /// let the lease run out.
    Hold,
    /// Not the master: no rule.
    Release,
}

/// Renew the lease every `every` while the sampler's latest word (with its
/// sample number) is `Serve`. A wait far longer than `every` is a freeze
/// of this host: the lease is held until the sampler, told through
/// `frozen`, has fenced and speaks again with a newer sample.
pub(crate) async fn keep(
    lease: std::sync::Arc<tokio::sync::Mutex<Lease>>,
    want: tokio::sync::watch::Receiver<(Want, u64)>,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    every: Duration,
    freeze_after: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    let mut last = tokio::time::Instant::now();
    let mut held_until_after: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let (w, seq) = *want.borrow();
        let overslept = last.elapsed().saturating_sub(every);
        last = tokio::time::Instant::now();
        if overslept >= freeze_after {
            tracing::warn!(
                overslept_ms = overslept.as_millis() as u64,
                "lease keeper resumed after a freeze: the lease is held until the agent has fenced"
            );
            frozen.store(true, Ordering::SeqCst);
            held_until_after = Some(seq);
            continue;
        }
        if held_until_after.is_some_and(|s| seq <= s) {
            continue;
        }
        held_until_after = None;
        match w {
            Want::Serve => match lease.lock().await.renew().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(100) {
                        tracing::error!(error = %e, "renewing the lease failed: this master's replies stop when it runs out");
                    }
                }
            },
            Want::Release => lease.lock().await.release().await,
            Want::Hold | Want::Unknown => {}
        }
    }
}

/// Fence this host's mysqld so that no client hears of a commit from now
/// on: the lease ends at once (only resets leave the port), then the SQL
/// fence (sessions killed, read_only ON; a session killed while it
/// waits for a semi-sync acknowledgement can otherwise still be answered
/// OK), then, once the killed sessions have finished, what they queued is
/// discarded the same way and the rule goes. Returns the sessions killed.
pub(crate) async fn fence_host(
    shared: &crate::Shared,
    db: &mut myha_mysql::Db,
) -> Result<usize, FenceError> {
    let fenced = fence_host_now(shared, db).await;
    shared.metrics.fence(fenced.is_ok());
    fenced
}

async fn fence_host_now(
    shared: &crate::Shared,
    db: &mut myha_mysql::Db,
) -> Result<usize, FenceError> {
    let port = shared.host.port;
    let own = shared.host.address.as_str();
    let mut lease = shared.lease.lock().await;
    if let Err(e) = lease.expire_now().await {
        tracing::error!(error = %e, "ending the lease before fencing");
    }
    let killed = myha_mysql::fence(db, shared.cluster.flavor).await?;
    // Read-only now: nothing new commits. Once the killed sessions'
    // threads have ended, what they queued is discarded, then the rule
    // goes, so that the closes (FIN) of the other sessions reach their
    // clients at once instead of after TCP's backed-off retransmissions.
    // Threads still ending after the bound: the rule stays (the sampler
    // releases it later, with the same check).
    if killed_threads_ended(db, &shared.cluster.replication.user).await {
        close_client_sockets(port, own).await?;
        lease.release().await;
    }
    Ok(killed)
}

/// Wait (at most 5 s) until no killed client session of the server is
/// still ending: a thread killed while it waited for a semi-sync
/// acknowledgement may still write an OK on its way out.
///
/// Sessions of the replication account (`repl_user`) do not count: they
/// send binary log to replicas, never an answer to a client, and a killed
/// dump thread writing to a replica that is cut off stays in "Writing to
/// net" until `net_write_timeout` (60 s) — it held the rule, and mysqld
/// unreachable, that long.
pub(crate) async fn killed_threads_ended(db: &mut myha_mysql::Db, repl_user: &str) -> bool {
    let started = tokio::time::Instant::now();
    let not_replication = format!(
        "USER <> {}",
        myha_core::flavor::sql_string_literal(repl_user)
    );
    loop {
        let n = db
            .query_i64(
                &format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE (COMMAND = 'Killed' OR STATE LIKE '%semi-sync%ACK%') \
                     AND {not_replication}"
                ),
                Duration::from_secs(2),
            )
            .await;
        match n {
            Ok(Some(0)) => {
                // What they wrote last has reached the socket by now.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return true;
            }
            Ok(_) | Err(_) if started.elapsed() > Duration::from_secs(5) => {
                // Say which sessions keep the rule in place (the sampler
                // retries the release): an operator, and the next look at
                // a stuck fence, can see them.
                let still = db
                    .query_with(
                        &format!(
                            "SELECT ID AS id, USER AS user, COMMAND AS command, \
                             STATE AS state, TIME AS time FROM information_schema.PROCESSLIST \
                             WHERE (COMMAND = 'Killed' OR STATE LIKE '%semi-sync%ACK%') \
                             AND {not_replication}"
                        ),
                        Duration::from_secs(2),
                    )
                    .await
                    .map(|rows| {
                        rows.iter()
                            .map(|r| {
                                let f = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
                                format!(
                                    "{} {} {} {:?} {}s",
                                    f("id"),
                                    f("user"),
                                    f("command"),
                                    f("state"),
                                    f("time")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_else(|e| format!("(cannot list them: {e})"));
                tracing::warn!(
                    sessions = %still,
                    "killed sessions still ending after 5 s: the lease rule stays until they are gone"
                );
                return false;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Take the VIP off this host, after closing in the kernel every socket of
/// mysqld's port on it: their resets must leave with the VIP as source
/// while it is still here (once it is gone, they could not be sent at all,
/// and each client would wait for its own timeout), and nothing mysqld
/// queued on them is ever sent.
pub(crate) async fn drop_vip(
    spec: &crate::vip::VipSpec,
    port: u16,
) -> Result<crate::vip::VipOutcome, crate::vip::VipError> {
    let filter = format!("( sport = :{port} and src {} )", spec.address);
    if let Err(e) = run("ss", &["-K", "-t", "-n", "state", "connected", &filter]).await {
        tracing::warn!(error = %e, "closing the sockets on the VIP before removing it");
    }
    crate::vip::remove(spec).await
}

/// How long a fence queued on a hung mysqld waits for it to answer.
const QUEUED_FENCE_BOUND: Duration = Duration::from_secs(120);

/// Queue a fence on a mysqld that does not answer (SIGSTOP, stalled): it
/// lands the moment mysqld answers again, ahead of anything it would
/// otherwise do; its lease ends at once. Returns false when one is already
/// queued.
pub(crate) fn queue_fence(shared: std::sync::Arc<crate::Shared>) -> bool {
    use std::sync::atomic::Ordering;
    if shared.queued_fence.swap(true, Ordering::SeqCst) {
        return false;
    }
    tokio::spawn(async move {
        let mut slow = myha_mysql::Db::new(
            shared.local_db().endpoint().clone(),
            myha_mysql::Timeouts {
                connect: QUEUED_FENCE_BOUND,
                query: QUEUED_FENCE_BOUND,
            },
        );
        match fence_host(&shared, &mut slow).await {
            Ok(killed) => tracing::warn!(killed, "queued fence landed: read_only ON"),
            Err(e) => tracing::warn!(error = %e, "queued fence did not land"),
        }
        shared.queued_fence.store(false, Ordering::SeqCst);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_with_data_pending_to_other_hosts_are_closed() {
        let ss = "ESTAB 0 0 10.0.0.11:3306 10.0.0.201:40000\n\
                  ESTAB 0 11 10.0.0.11:3306 10.0.0.201:40002\n\
                  FIN-WAIT-1 0 52 10.0.0.100:3306 10.0.0.1:51000\n\
                  ESTAB 0 9 10.0.0.11:3306 10.0.0.11:40100\n\
                  ESTAB 0 9 127.0.0.1:3306 127.0.0.1:40200\n\
                  ESTAB 0 7 10.0.0.11:45000 10.0.0.12:3306\n";
        assert_eq!(
            pending_peers(ss, 3306, "10.0.0.11"),
            ["10.0.0.201:40002", "10.0.0.1:51000"]
        );
    }

    #[test]
    fn datestop_is_utc_civil_time() {
        assert_eq!(datestop(0), "1970-01-01T00:00:00");
        assert_eq!(datestop(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(datestop(1_796_136_499), "2026-12-01T14:48:19");
        assert_eq!(datestop(4_102_444_800), "2100-01-01T00:00:00");
    }

    #[test]
    fn rules_cover_the_port_to_other_hosts_and_let_resets_pass() {
        let l = Lease::new(3307, Duration::from_secs(1));
        assert_eq!(
            l.allow_rule(0).join(" "),
            "! -o lo -p tcp --sport 3307 -m time --datestop 1970-01-01T00:00:00 -j RETURN"
        );
        assert_eq!(
            l.drop_rule().join(" "),
            "! -o lo -p tcp --sport 3307 ! --tcp-flags RST RST -j DROP"
        );
    }
}
