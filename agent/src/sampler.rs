//! The sampling loop, the master probe and the reporter.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use myha_config::AgentConfig;
use myha_core::fence::{must_fence, FenceCheck, FenceInput, FenceReason, ManagerWord};
use myha_core::flavor::ThreadState;
use myha_core::report::{AgentReport, MasterView, MysqldStatus, ReportAck, ServerFacts};
use myha_core::topology::{role_of, Role};
use myha_mysql::{collect_facts, heartbeat_write, Db, Endpoint, FactsOptions, Timeouts};
use tokio::sync::watch;
use tokio::time::{interval, MissedTickBehavior};

use crate::Shared;

/// What the reporter learned from the manager's answers (`None`: no
/// answer yet).
pub(crate) type LastAck = Option<Answers>;

/// The manager's answers, as the reporter passes them to the sampler.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answers {
    /// The last answer that took a report in: only such an answer counts as
    /// contact with the manager.
    pub(crate) accepted: Option<Accepted>,
    /// The instance of the last report the manager answered as stale (it
    /// holds a report of that instance with a seq as high or higher, e.g.
    /// forged): the sampler starts a new instance.
    pub(crate) stale_instance: Option<u64>,
}

/// An answer that took a report in.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub(crate) ack: ReportAck,
    /// When it came.
    pub(crate) at: Instant,
    /// The instance of the report it answers: its `seq` says nothing of
    /// another instance's samples.
    pub(crate) instance: u64,
}

/// The manager's last answer that took a report in, and when it came; its
/// `seq` is 0 (post-dates nothing) unless it answers the current instance.
type Contact = Option<(ReportAck, Instant)>;

/// The contact the sampler of `instance` acts on.
fn contact(answers: &LastAck, instance: u64) -> Contact {
    let a = answers.as_ref()?.accepted.as_ref()?;
    let mut ack = a.ack.clone();
    if a.instance != instance {
        ack.seq = 0;
    }
    Some((ack, a.at))
}

/// Take the manager's answer to a report of `instance`, received `at`. An
/// answer that took the report in is contact (never going back to an older
/// epoch: a delayed answer); one that did not is no contact, and marks
/// `instance` stale.
fn record_answer(last: &mut LastAck, ack: ReportAck, instance: u64, at: Instant) {
    let answers = last.get_or_insert_with(Answers::default);
    if !ack.accepted() {
        answers.stale_instance = Some(instance);
        return;
    }
    if !ack.leader {
        // A follower's answer never names a master on its own: it is
        // contact only when it agrees with the leader's last answer (with
        // etcd down, no manager leads, and a master must not fence itself
        // for that alone).
        if let Some(a) = answers.accepted.as_mut() {
            if a.ack.epoch == ack.epoch && a.ack.master == ack.master && at > a.at {
                a.at = at;
                if a.instance == instance {
                    a.ack.seq = a.ack.seq.max(ack.seq);
                }
            }
        }
        return;
    }
    let older = answers
        .accepted
        .as_ref()
        .is_some_and(|a| a.ack.epoch > ack.epoch);
    if !older {
        answers.accepted = Some(Accepted { ack, at, instance });
    }
}

/// Whether the manager refused a report of `instance` as stale: the
/// sampler must start a new instance to be heard again.
fn stale(answers: &LastAck, instance: u64) -> bool {
    answers
        .as_ref()
        .is_some_and(|a| a.stale_instance == Some(instance))
}

pub(crate) use myha_http::unix_ms;

/// Whether a live (non-zombie) mariadbd or mysqld process exists on this
/// host; `None` when /proc cannot be read.
pub fn mysqld_process_running() -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ...": comm may hold spaces, so split at the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let state = tail.trim_start().chars().next();
        if (comm == "mariadbd" || comm == "mysqld") && state != Some('Z') {
            return Some(true);
        }
    }
    Some(false)
}

/// Tracks when the IO thread last received something: any change of the
/// received GTIDs or of the read position counts.
#[derive(Default)]
struct IoActivity {
    last_seen: Option<(String, u64, String)>,
    changed_at: Option<Instant>,
}

impl IoActivity {
    fn observe(&mut self, facts: Option<&ServerFacts>) -> Option<u64> {
        let repl = facts.and_then(|f| f.replication.as_ref())?;
        let key = (
            repl.retrieved_gtids.clone(),
            repl.read_source_log_pos,
            repl.source_log_file.clone(),
        );
        let now = Instant::now();
        if self.last_seen.as_ref() != Some(&key) {
            self.last_seen = Some(key);
            self.changed_at = Some(now);
        }
        self.changed_at
            .map(|t| now.duration_since(t).as_millis() as u64)
    }
}

/// The latest direct probe of the master from this host.
#[derive(Debug, Clone)]
struct ProbeOutcome {
    target: String,
    ok: bool,
    error: Option<String>,
    latency_ms: Option<f64>,
    /// When the probe finished. A probe that has not finished for a while
    /// (hung on a frozen master) makes this outcome stale.
    at: Instant,
}

/// Probe the master named in `target` every `every`; the outcome goes out
/// through `out`. The connection is kept and reused; any failure drops it.
async fn master_probe_loop(
    mut target: watch::Receiver<Option<Endpoint>>,
    out: watch::Sender<Option<ProbeOutcome>>,
    timeouts: Timeouts,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut db: Option<Db> = None;
    let mut tick = interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let wanted = target.borrow_and_update().clone();
        let Some(endpoint) = wanted else {
            db = None;
            out.send_replace(None);
            continue;
        };
        let name = endpoint.to_string();
        if db.as_ref().map(|d| d.endpoint().to_string()) != Some(name.clone()) {
            db = Some(Db::new(endpoint, timeouts));
        }
        let Some(conn) = db.as_mut() else { continue };
        let started = Instant::now();
        let outcome = match conn.query("SELECT 1").await {
            Ok(_) => ProbeOutcome {
                target: name,
                ok: true,
                error: None,
                latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                at: Instant::now(),
            },
            Err(e) => ProbeOutcome {
                target: name,
                ok: false,
                error: Some(e.to_string()),
                latency_ms: None,
                at: Instant::now(),
            },
        };
        out.send_replace(Some(outcome));
    }
}

/// Whether any other host of the cluster answers a TCP connect on its
/// mysqld port within `limit`.
async fn any_peer_reachable(shared: &Shared, limit: Duration) -> bool {
    let mut set = tokio::task::JoinSet::new();
    for h in shared
        .cluster
        .hosts
        .iter()
        .filter(|h| h.name != shared.host.name)
    {
        let addr = h.mysql_addr();
        set.spawn(async move {
            matches!(
                tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            )
        });
    }
    while let Some(r) = set.join_next().await {
        if matches!(r, Ok(true)) {
            return true;
        }
    }
    false
}

/// Why the local writable server must fence itself now, if it must: the
/// decision is core's [`must_fence`]; this runs the one I/O it may ask for
/// (whether any other host of the cluster answers).
async fn fence_reason(
    shared: &Shared,
    ack: &Contact,
    conflict_seq: u64,
    started: Instant,
    self_fence_after: Duration,
    resumed_after: Option<Duration>,
) -> Option<FenceReason> {
    let word = ack.as_ref().map(|(a, _)| ManagerWord {
        epoch: a.epoch,
        master: a.master.clone(),
        seq: a.seq,
    });
    let silent_for = ack
        .as_ref()
        .map_or(started.elapsed(), |(_, at)| at.elapsed());
    let input = FenceInput {
        me: &shared.host.name,
        word: word.as_ref(),
        writable_since_seq: conflict_seq,
        silent_for,
        self_fence_after,
        resumed_after,
    };
    match must_fence(&input) {
        FenceCheck::Stay => None,
        FenceCheck::Fence(reason) => Some(reason),
        FenceCheck::IfIsolated(reason) => {
            (!any_peer_reachable(shared, Duration::from_millis(300)).await).then_some(reason)
        }
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    cfg: AgentConfig,
    reports: watch::Sender<Option<AgentReport>>,
    epoch: watch::Receiver<LastAck>,
    mut shutdown: watch::Receiver<bool>,
) {
    let started_at = Instant::now();
    // An isolated master fences itself after this: well before the failover
    // the others run has promoted a new master and moved the VIP... plus the
    // time clients need to notice. Semi-sync must outlast it (see docs).
    let self_fence_after = shared.cluster.self_fence_after();
    let cluster = &shared.cluster;
    let timeouts = Timeouts {
        connect: cfg.connect_timeout,
        query: cfg.query_timeout,
    };
    let mut db = shared.local_db();
    let opts = FactsOptions::for_cluster(cluster);
    let (target_tx, target_rx) = watch::channel::<Option<Endpoint>>(None);
    let (probe_tx, probe_rx) = watch::channel::<Option<ProbeOutcome>>(None);
    tokio::spawn(master_probe_loop(
        target_rx,
        probe_tx,
        timeouts,
        cfg.interval,
        shutdown.clone(),
    ));

    let (heartbeat_tx, heartbeat_rx) = watch::channel::<Option<u32>>(None);
    tokio::spawn(heartbeat_loop(
        Arc::clone(&shared),
        heartbeat_rx,
        cfg.interval,
        shutdown.clone(),
    ));

    // Oversleeping this long means this host was frozen (VM pause, SIGSTOP,
    // `docker pause`): long enough for the others to have promoted a new
    // master meanwhile.
    let freeze_after = cluster.master_down_after.max(Duration::from_millis(500));
    // The server was writable at its last successful sample, and a fence
    // waiting for a hung mysqld is in flight.
    let mut was_writable = false;
    // Its client sockets were closed since it was last writable.
    let mut sockets_closed = true;
    let (want_tx, want_rx) = watch::channel((crate::lease::Want::Unknown, 0u64));
    let lease_frozen = Arc::new(AtomicBool::new(false));
    tokio::spawn(crate::lease::keep(
        Arc::clone(&shared.lease),
        want_rx,
        Arc::clone(&lease_frozen),
        cfg.interval.min(Duration::from_millis(250)),
        freeze_after,
        shutdown.clone(),
    ));
    let queued_fence = Arc::clone(&shared.queued_fence);
    let mut instance = rand_u64();
    let mut seq = 0u64;
    // Added to `seq` for the lease's sample numbers, which must keep
    // increasing when a new instance starts `seq` again from 1.
    let mut lease_base = 0u64;
    let mut io = IoActivity::default();
    // The seq of the first report that found the server writable.
    let mut writable_since_seq: Option<u64> = None;
    let mut vip_since_seq: Option<u64> = None;
    let vip_spec = cluster.vip.as_ref().map(|v| crate::vip::VipSpec {
        address: v.address,
        prefix_len: v.prefix_len,
        interface: v.interface.clone(),
        arp_count: v.arp_count,
    });
    let mut idle_since: Option<Instant> = None;
    let mut tick = interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let started = Instant::now();
        // The monotonic clock runs on while the host is frozen: a wait far
        // longer than the interval is a freeze this agent wakes up from.
        let overslept = idle_since
            .map(|t| t.elapsed().saturating_sub(cfg.interval))
            .unwrap_or_default();
        let resumed = overslept >= freeze_after || lease_frozen.swap(false, Ordering::SeqCst);
        if resumed {
            tracing::warn!(
                overslept_ms = overslept.as_millis() as u64,
                "resumed after a freeze: fencing first, asking the manager after"
            );
        }
        let sampled_at_ms = unix_ms();
        let mysqld = match collect_facts(&mut db, &opts).await {
            Ok(facts) => MysqldStatus::Up {
                facts: Box::new(facts),
            },
            Err(e) => MysqldStatus::Down {
                kind: e.down_kind(),
                error: e.to_string(),
            },
        };
        let facts = mysqld.facts();
        // Waking up from a freeze: the VIP goes first, before the fence
        // (which waits for killed sessions): another host may hold it now.
        if resumed {
            if let Some(spec) = vip_spec.as_ref() {
                if crate::vip::is_present(spec).await.unwrap_or(false) {
                    match crate::lease::drop_vip(spec, shared.host.port).await {
                        Ok(o) => {
                            tracing::warn!(detail = %o.detail, "resumed after a freeze: removed the VIP")
                        }
                        Err(e) => tracing::error!(error = %e, "removing the VIP failed"),
                    }
                }
            }
        }
        let answers = epoch.borrow().clone();
        // The manager holds a report of this instance with a seq as high as
        // ours or higher (a forged one, or a report from before a restart
        // of its numbering): start a new instance, heard from its first
        // report. Its answers' seqs say nothing of the old instance's
        // samples, so the facts the agent acts against are seen again.
        if stale(&answers, instance) {
            let old = instance;
            instance = rand_u64();
            lease_base += seq;
            seq = 0;
            writable_since_seq = None;
            vip_since_seq = None;
            tracing::warn!(
                old_instance = old,
                instance,
                "the manager holds a newer report of this agent's instance than it sent: starting a new instance"
            );
        }
        let ack = contact(&answers, instance);

        // A writable server that is not the master of the newest epoch, or
        // that finds itself cut off from everyone, fences itself.
        let mut fenced = false;
        if facts.is_some_and(|f| role_of(f) == Role::Master) {
            let since = *writable_since_seq.get_or_insert(seq + 1);
            let reason = fence_reason(
                &shared,
                &ack,
                since,
                started_at,
                self_fence_after,
                resumed.then_some(overslept),
            )
            .await;
            if let Some(reason) = reason {
                // The lease is not renewed from now on.
                want_tx.send_replace((crate::lease::Want::Hold, lease_base + seq));
                // Its clients' sockets are closed in the kernel while the
                // VIP is still here: their resets reach the clients at
                // once, and nothing mysqld queued is ever sent.
                match crate::lease::fence_host(&shared, &mut db).await {
                    Ok(killed) => {
                        sockets_closed = false;
                        tracing::warn!(%reason, killed, "fenced the local mysqld: read_only ON")
                    }
                    Err(e) => {
                        tracing::error!(%reason, error = %e, "fencing the local mysqld failed")
                    }
                }
                fenced = true;
            }
        } else if facts.is_none() && was_writable && !queued_fence.load(Ordering::SeqCst) {
            // A hung mysqld (SIGSTOP, stalled) that was the master, while
            // the manager names another: queue a fence on it now, so that
            // it lands the moment mysqld answers again, ahead of anything
            // it would otherwise acknowledge. A freeze of the whole host
            // is handled on resume, above.
            let other = ack
                .as_ref()
                .and_then(|(a, _)| a.master.clone())
                .filter(|m| *m != shared.host.name);
            if let Some(m) = other {
                if mysqld_process_running() == Some(true) {
                    tracing::warn!(master = %m, "local mysqld not answering while {m} is the master: fence queued until it answers");
                    crate::lease::queue_fence(Arc::clone(&shared));
                }
            }
        } else if facts.is_some() {
            writable_since_seq = None;
        }
        if let Some(f) = facts {
            was_writable = role_of(f) == Role::Master;
        }

        // The lease: renewed while this is the writable master of the
        // newest epoch; once it is read-only again, its client sockets are
        // closed in the kernel (nothing it held back is sent later), then
        // the rule goes (replicas serve reads).
        // The manager's latest answer names this server master (or there
        // is none yet).
        let me_master_now = ack
            .as_ref()
            .is_none_or(|(a, _)| a.master.as_deref().is_none_or(|m| m == shared.host.name));
        let want = match facts {
            Some(f) if role_of(f) == Role::Master => {
                if !fenced {
                    sockets_closed = false;
                }
                if !fenced && !resumed && me_master_now {
                    crate::lease::Want::Serve
                } else {
                    crate::lease::Want::Hold
                }
            }
            Some(f) if f.read_only && !queued_fence.load(Ordering::SeqCst) => {
                // Released only once nothing mysqld queued while the
                // lease was out can still leave (checked right before).
                if sockets_closed {
                    crate::lease::Want::Release
                } else if !crate::lease::killed_threads_ended(
                    &mut db,
                    &shared.cluster.replication.user,
                )
                .await
                {
                    crate::lease::Want::Hold
                } else {
                    match crate::lease::close_client_sockets(shared.host.port, &shared.host.address)
                        .await
                    {
                        Ok(()) => {
                            sockets_closed = true;
                            crate::lease::Want::Release
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "closing the former master's client sockets");
                            crate::lease::Want::Hold
                        }
                    }
                }
            }
            Some(_) => crate::lease::Want::Hold,
            None if was_writable => crate::lease::Want::Hold,
            None => crate::lease::Want::Unknown,
        };
        want_tx.send_replace((want, lease_base + seq + 1));
        // The VIP belongs to the master of the newest epoch only. Same rule
        // as above: act on an answer that post-dates seeing the VIP here.
        if let Some(spec) = vip_spec.as_ref() {
            let present = crate::vip::is_present(spec).await.unwrap_or(false);
            if present {
                let since = *vip_since_seq.get_or_insert(seq + 1);
                let other_master = ack.as_ref().is_some_and(|(a, _)| {
                    a.seq >= since && a.master.as_deref().is_some_and(|m| m != shared.host.name)
                });
                if fenced || resumed || other_master {
                    match crate::lease::drop_vip(spec, shared.host.port).await {
                        Ok(o) => {
                            tracing::warn!(detail = %o.detail, "removed the VIP: this host is not the master")
                        }
                        Err(e) => tracing::error!(error = %e, "removing the VIP failed"),
                    }
                }
            } else {
                vip_since_seq = None;
            }
        }

        // The master's agent writes the heartbeat replicas measure lag by,
        // beside the sampling: a heartbeat waiting for a semi-sync
        // acknowledgement must not delay the reports.
        let writer = (!fenced && !resumed && me_master_now)
            .then(|| {
                facts
                    .filter(|f| role_of(f) == Role::Master)
                    .map(|f| f.server_id)
            })
            .flatten();
        heartbeat_tx.send_if_modified(|cur| {
            let changed = *cur != writer;
            *cur = writer;
            changed
        });

        // Point the master probe at this replica's source.
        let source = facts
            .and_then(|f| f.replication.as_ref())
            .filter(|r| !r.source_host.is_empty())
            .map(|r| Endpoint::admin(cluster, r.source_host.clone(), r.source_port));
        let source_name = source.as_ref().map(ToString::to_string);
        target_tx.send_if_modified(|cur| {
            if cur.as_ref().map(ToString::to_string) != source_name {
                *cur = source.clone();
                true
            } else {
                false
            }
        });
        let io_idle_ms = io.observe(facts);
        let master_view = facts
            .and_then(|f| f.replication.as_ref())
            .filter(|r| !r.source_host.is_empty())
            .map(|r| {
                let target = format!("{}:{}", r.source_host, r.source_port);
                let probe = probe_rx.borrow().clone().filter(|p| p.target == target);
                // Probes run every interval: an outcome older than three
                // intervals means the current probe is hanging.
                let stale = probe
                    .as_ref()
                    .is_some_and(|p| p.at.elapsed() > cfg.interval.saturating_mul(3));
                MasterView {
                    master_address: target,
                    probe_ok: probe.as_ref().is_some_and(|p| p.ok) && !stale,
                    probe_error: if stale {
                        Some(format!(
                            "probe not answered for {} ms",
                            probe.as_ref().map_or(0, |p| p.at.elapsed().as_millis())
                        ))
                    } else {
                        probe.as_ref().and_then(|p| p.error.clone())
                    },
                    probe_latency_ms: probe.as_ref().and_then(|p| p.latency_ms),
                    io_thread: r.io_thread,
                    io_idle_ms: if r.io_thread == ThreadState::Running {
                        io_idle_ms
                    } else {
                        None
                    },
                }
            });

        seq += 1;
        let report = AgentReport {
            cluster: cluster.name.clone(),
            host: shared.host.name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            instance,
            seq,
            sampled_at_ms,
            sample_ms: started.elapsed().as_millis() as u64,
            mysqld,
            mysqld_process: mysqld_process_running(),
            master_view,
            epoch_seen: ack.as_ref().map_or(0, |(a, _)| a.epoch),
        };
        *shared.last.lock().await = Some(report.clone());
        reports.send_replace(Some(report));
        idle_since = Some(Instant::now());
    }
}

/// Write the heartbeat every `every` while `writer` names this server's id
/// (it is the master and not fenced), on a connection of its own.
async fn heartbeat_loop(
    shared: Arc<Shared>,
    writer: watch::Receiver<Option<u32>>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let cluster = &shared.cluster;
    let mut db = shared.local_db();
    let mut failures = 0u32;
    let mut tick = interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(server_id) = *writer.borrow() else {
            continue;
        };
        match heartbeat_write(&mut db, &cluster.heartbeat_table, cluster.flavor, server_id).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(error = %e, "heartbeat write failed");
                }
            }
        }
    }
}

/// A random-enough instance id without a dependency: time and pid hashed.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Push every new report to every manager (`manager.urls`): each keeps
/// its own view, so that a follower that takes over knows the cluster. A
/// slow or absent manager never delays sampling nor the others: only the
/// newest report is sent to each.
pub(crate) async fn report_loop(
    manager_urls: Vec<String>,
    token: String,
    client: reqwest::Client,
    shared: Arc<Shared>,
    reports: watch::Receiver<Option<AgentReport>>,
    epoch: watch::Sender<LastAck>,
    shutdown: watch::Receiver<bool>,
) {
    let epoch = Arc::new(epoch);
    let mut loops = tokio::task::JoinSet::new();
    for url in manager_urls {
        loops.spawn(report_to(
            url,
            token.clone(),
            client.clone(),
            Arc::clone(&shared),
            reports.clone(),
            Arc::clone(&epoch),
            shutdown.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

async fn report_to(
    manager_url: String,
    token: String,
    client: reqwest::Client,
    shared: Arc<Shared>,
    mut reports: watch::Receiver<Option<AgentReport>>,
    epoch: Arc<watch::Sender<LastAck>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let url = format!(
        "{}{}",
        manager_url.trim_end_matches('/'),
        myha_api::paths::REPORT
    );
    let mut failures = 0u32;
    loop {
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(report) = reports.borrow_and_update().clone() else {
            continue;
        };
        let sent = client
            .post(&url)
            .bearer_auth(&token)
            .json(&report)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let ack = match sent {
            Ok(resp) => resp.json::<ReportAck>().await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) if !ack.accepted() => {
                // Not taken in: no contact with the manager (the self-fence
                // clock runs on); the sampler starts a new instance.
                shared.metrics.report("stale");
                failures += 1;
                if failures == 1 || failures.is_multiple_of(40) {
                    tracing::warn!(
                        instance = report.instance,
                        seq = report.seq,
                        failures,
                        "the manager did not take the report in (it holds a newer one of this instance)"
                    );
                }
                let instance = report.instance;
                epoch.send_modify(|last| record_answer(last, ack, instance, Instant::now()));
            }
            Ok(ack) => {
                shared.metrics.report("accepted");
                if failures > 0 {
                    tracing::info!(manager = %manager_url, after = failures, "reporting to the manager again");
                }
                failures = 0;
                shared
                    .acked_epoch
                    .fetch_max(ack.epoch, std::sync::atomic::Ordering::SeqCst);
                let instance = report.instance;
                epoch.send_modify(|last| record_answer(last, ack, instance, Instant::now()));
            }
            Err(e) => {
                shared.metrics.report("failed");
                failures += 1;
                if failures == 1 || failures.is_multiple_of(40) {
                    tracing::warn!(manager = %manager_url, error = %e, failures, "report to the manager failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myha_core::report::AckStatus;

    fn ack(epoch: u64, seq: u64, status: AckStatus) -> ReportAck {
        ReportAck {
            leader: true,
            epoch,
            master: Some("db2".into()),
            seq,
            status,
        }
    }

    #[test]
    fn a_stale_answer_is_no_contact_and_marks_the_instance() {
        let t0 = Instant::now();
        let mut last: LastAck = None;
        record_answer(&mut last, ack(3, 5, AckStatus::Accepted), 11, t0);
        let later = t0 + Duration::from_secs(1);
        record_answer(&mut last, ack(4, 6, AckStatus::Stale), 11, later);
        // Contact is still the accepted answer, from t0, epoch 3.
        let (a, at) = contact(&last, 11).unwrap_or_else(|| panic!("contact"));
        assert_eq!((a.epoch, a.seq, at), (3, 5, t0));
        assert!(stale(&last, 11));
        assert!(!stale(&last, 12));
    }

    #[test]
    fn only_a_stale_answer_is_no_contact_at_all() {
        let mut last: LastAck = None;
        record_answer(&mut last, ack(3, 5, AckStatus::Stale), 11, Instant::now());
        assert!(contact(&last, 11).is_none());
        assert!(stale(&last, 11));
    }

    #[test]
    fn an_answer_to_another_instance_post_dates_nothing() {
        let t0 = Instant::now();
        let mut last: LastAck = None;
        record_answer(&mut last, ack(3, 900, AckStatus::Accepted), 11, t0);
        // The sampler restarted as instance 12 (seq from 1): the old
        // instance's seq 900 must not pass for an answer to its samples.
        let (a, at) = contact(&last, 12).unwrap_or_else(|| panic!("contact"));
        assert_eq!((a.seq, a.epoch, at), (0, 3, t0), "still contact, seq 0");
        let (a, _) = contact(&last, 11).unwrap_or_else(|| panic!("contact"));
        assert_eq!(a.seq, 900);
    }

    #[test]
    fn an_older_epoch_is_not_taken_back() {
        let t0 = Instant::now();
        let mut last: LastAck = None;
        record_answer(&mut last, ack(4, 5, AckStatus::Accepted), 11, t0);
        record_answer(&mut last, ack(3, 6, AckStatus::Accepted), 11, t0);
        let (a, _) = contact(&last, 11).unwrap_or_else(|| panic!("contact"));
        assert_eq!((a.epoch, a.seq), (4, 5));
    }

    fn follower(epoch: u64, seq: u64, master: &str) -> ReportAck {
        ReportAck {
            leader: false,
            master: Some(master.into()),
            ..ack(epoch, seq, AckStatus::Accepted)
        }
    }

    #[test]
    fn a_follower_never_names_a_master_on_its_own() {
        let t0 = Instant::now();
        let mut last: LastAck = None;
        // No leader heard yet: a follower's answer is no contact.
        record_answer(&mut last, follower(3, 5, "db2"), 11, t0);
        assert!(contact(&last, 11).is_none());
        // The leader's answer, then a follower naming another master (a
        // stale or wrong view): the leader's word stands, not refreshed.
        record_answer(&mut last, ack(3, 6, AckStatus::Accepted), 11, t0);
        let later = t0 + Duration::from_secs(1);
        record_answer(&mut last, follower(4, 7, "db3"), 11, later);
        let (a, at) = contact(&last, 11).unwrap_or_else(|| panic!("contact"));
        assert_eq!(
            (a.epoch, a.master.as_deref(), a.seq, at),
            (3, Some("db2"), 6, t0)
        );
    }

    #[test]
    fn a_follower_that_agrees_with_the_leader_is_contact() {
        // etcd down: no manager leads, the followers still answer with
        // the epoch and master on record: the master keeps contact and
        // does not fence itself for the managers' trouble alone.
        let t0 = Instant::now();
        let mut last: LastAck = None;
        record_answer(&mut last, ack(3, 6, AckStatus::Accepted), 11, t0);
        let later = t0 + Duration::from_secs(5);
        record_answer(&mut last, follower(3, 9, "db2"), 11, later);
        let (a, at) = contact(&last, 11).unwrap_or_else(|| panic!("contact"));
        assert_eq!((a.epoch, a.seq, at), (3, 9, later));
    }
}
