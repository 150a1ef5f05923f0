//! `bench/manager-scale` (issue 14): how many clusters one manager runs.
//!
//! One Docker bed (3 MariaDB hosts with their real agents, cluster `bed`)
//! and, beside it, simulated clusters of 3 hosts each: every simulated
//! host is a MariaDB endpoint of its own on 127.0.0.1 (`fakemysql`:
//! answers recorded from the bed's real servers, GTIDs advancing), which
//! the manager probes as it probes any server, and a simulated agent that
//! posts a report for it 4 times a second (the agents' rate), with facts
//! that match what the probe reads, on a connection of its own, with the
//! agent's default report timeout of 1 s.
//!
//! For each N (clusters in all: the bed's plus N - 1 simulated), the real
//! manager (`myha manager`, embedded mode: one manager, the leader) is
//! started on a configuration holding them all, then:
//! - after a warm-up, every simulated cluster's status is checked (a
//!   master adopted, verdict healthy, no problem, no disagreement between
//!   probe and report): proof that the manager handles them as real ones;
//! - over a steady window, the manager's CPU time (utime + stime of
//!   `/proc/<pid>/stat`) as a share of one core, the whole host's busy
//!   share, the reports' latency (p50, p99, max) and errors;
//! - then mysqld of the bed's master is killed (SIGKILL, from this
//!   machine, to the server's process: the instant is exact), `--faults`
//!   times, while every simulated agent goes on reporting: fault to
//!   detection (the failover's `detect` event in the journal) and fault to
//!   promotion; the old master's mysqld is restarted and rejoins before
//!   the next fault.
//!
//! `myha-bench-scale --myha-bin PATH [--clusters 1,10,100,500,1000]
//!   [--window 30] [--warmup 10] [--faults 3] [--perf-at 500] [--perf-seconds 10]
//!   [--harness-nice -10] [--manager-nice -5] [--probe-interval 250ms]`
//!
//! Everything shares this machine. The simulated servers and agents, and
//! the bed's hosts (mysqld, the real agents), stand for other machines, so
//! they run at nice -10 (`--harness-nice`: this process and every thread
//! of the bed's containers) and the manager at -5 (`--manager-nice`: above
//! whatever else runs here, such as a build): the load is offered as real
//! agents would offer it, and the manager gets the CPU that is left. `perf record` (DWARF
//! call graphs) of the manager at `--perf-at` clusters, after the window,
//! tells where its CPU goes.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use myha_api::{AgentReport, MasterView, ReportAck, ServerFacts};
use myha_core::report::MysqldStatus;
use myha_testbed::fakemysql::{self, Fleet, RealServer, Recording, SimHost};
use myha_testbed::{Bed, BedError, BedOptions, Result as BedResult};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// What a simulated agent waits for an answer: the agents' default
/// `report_timeout`.
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);
/// The agents' rate (`agent.interval` 250 ms, the bed's and the default).
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// Simulated clusters are named `s0001`, ...
const SIM_PREFIX: &str = "s";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn other(e: impl std::fmt::Display) -> BedError {
    BedError::Other(e.to_string())
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Options {
    bin: PathBuf,
    clusters: Vec<usize>,
    window: Duration,
    warmup: Duration,
    faults: usize,
    perf_at: Option<usize>,
    perf_seconds: u64,
    /// Nice value of this process (the simulated servers and agents);
    /// the manager runs at 0.
    harness_nice: i32,
    /// Nice value of the manager.
    manager_nice: i32,
    /// The manager's `probe_interval` (the bed's 250ms unless given; the
    /// product's default is 500ms).
    probe_interval: String,
}

// ---- measuring processes ----

/// utime + stime of a process, in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    proc_times(pid).map(|(u, s)| u + s)
}

/// (utime, stime) of a process, in clock ticks: the time in its own code
/// and the time the kernel spent for it (system calls, and on loopback
/// the receiving side of what it sends).
fn proc_times(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// The whole host: (busy, total) jiffies over every CPU.
fn host_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A `/proc/<pid>/status` line's value (`VmRSS`, `Threads`).
fn proc_status(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

// ---- the manager under test ----

/// `myha manager -c FILE` (which execs `myhad`: the child's pid is the
/// manager's). Stopped (SIGTERM, then SIGKILL) when dropped.
struct Manager {
    child: Child,
    log: PathBuf,
}

impl Manager {
    /// `adjust`: added to this process's nice value, which the manager
    /// inherits (`nice` execs it: same pid).
    fn start(bin: &Path, config: &Path, log: PathBuf, adjust: i32) -> BedResult<Manager> {
        let out = std::fs::File::create(&log).map_err(other)?;
        let err = out.try_clone().map_err(other)?;
        let child = Command::new("nice")
            .args(["-n", &adjust.to_string()])
            .arg(bin)
            .args(["manager", "--config"])
            .arg(config)
            .env("MYHA_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(other)?;
        Ok(Manager { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last warnings and errors, and the last lines about the bed's
    /// cluster.
    fn log_tail(&self) -> String {
        std::fs::read_to_string(&self.log)
            .map(|s| {
                let bed = format!("cluster=\"{}\"", myha_testbed::CLUSTER);
                let lines: Vec<&str> = s
                    .lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains(&bed))
                    .collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        myha_testbed::terminate(&mut self.child);
    }
}

// ---- talking to the manager ----

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    /// The body of `GET path`, which must succeed.
    async fn get_text(&self, path: &str) -> BedResult<String> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(other)?;
        let status = resp.status();
        let body = resp.text().await.map_err(other)?;
        if !status.is_success() {
            return Err(other(format!("GET {path}: {status}: {}", body.trim())));
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> BedResult<serde_json::Value> {
        let body = self.get_text(path).await?;
        serde_json::from_str(&body).map_err(|e| other(format!("GET {path}: {e}")))
    }

    /// `myha_detector_looks_total` by cause (timer, change), from `/metrics`.
    async fn looks(&self) -> Option<(f64, f64)> {
        let text = self.get_text("/metrics").await.ok()?;
        let value = |cause: &str| {
            let key = format!("myha_detector_looks_total{{cause=\"{cause}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some((value("timer")?, value("change")?))
    }
}

// ---- the load generator ----

#[derive(Default)]
struct LoadStats {
    recording: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
    sent: AtomicU64,
    ok: AtomicU64,
    timeouts: AtomicU64,
    http_errors: AtomicU64,
    other_errors: AtomicU64,
    /// A few error texts, by kind.
    samples: Mutex<BTreeMap<String, u64>>,
}

impl LoadStats {
    fn reset(&self) {
        if let Ok(mut l) = self.latencies_us.lock() {
            l.clear();
        }
        for c in [
            &self.sent,
            &self.ok,
            &self.timeouts,
            &self.http_errors,
            &self.other_errors,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn error(&self, counter: &AtomicU64, text: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.samples.lock() {
            if m.len() < 20 || m.contains_key(&text) {
                *m.entry(text).or_default() += 1;
            }
        }
    }
}

struct Templates {
    master: ServerFacts,
    replica: ServerFacts,
}

struct Load {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    hosts: usize,
}

impl Load {
    /// One simulated agent per host of `hosts`, each on a client (a
    /// connection) of its own, their ticks spread over the interval.
    fn start(
        rt: &Runtime,
        url: &str,
        hosts: &[SimHost],
        tokens: &[String],
        templates: &Arc<Templates>,
        stats: &Arc<LoadStats>,
    ) -> BedResult<Load> {
        let (stop, rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let report_url = format!("{url}{}", myha_api::paths::REPORT);
        let n = hosts.len().max(1);
        for (i, (h, token)) in hosts.iter().zip(tokens).enumerate() {
            // As an agent's (`myha_http::client`): HTTP/1.1, no proxy,
            // idle connections dropped after 15 s.
            let client = reqwest::Client::builder()
                .timeout(REPORT_TIMEOUT)
                .connect_timeout(REPORT_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(15))
                .pool_max_idle_per_host(1)
                .http1_only()
                .no_proxy()
                .build()
                .map_err(other)?;
            let phase = REPORT_EVERY.mul_f64(i as f64 / n as f64);
            let agent = SimAgent {
                host: h.clone(),
                cluster: format!("{SIM_PREFIX}{:04}", h.cluster + 1),
                token: token.clone(),
                url: report_url.clone(),
                client,
                templates: Arc::clone(templates),
                stats: Arc::clone(stats),
                instance: instance_id(i),
            };
            tasks.spawn_on(agent.run(phase, rx.clone()), rt.handle());
        }
        Ok(Load {
            stop,
            tasks,
            hosts: hosts.len(),
        })
    }

    fn stop(mut self, rt: &Runtime) {
        let _ = self.stop.send(true);
        rt.block_on(async {
            let deadline = tokio::time::sleep(Duration::from_secs(5));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = self.tasks.join_next() => if r.is_none() { break },
                    _ = &mut deadline => { self.tasks.abort_all(); break }
                }
            }
        });
    }
}

/// A random-looking instance id per simulated agent.
fn instance_id(i: usize) -> u64 {
    let seed = now_ms() ^ ((i as u64) << 20) ^ u64::from(std::process::id());
    // splitmix64
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & ((1 << 53) - 1)
}

struct SimAgent {
    host: SimHost,
    cluster: String,
    token: String,
    url: String,
    client: reqwest::Client,
    templates: Arc<Templates>,
    stats: Arc<LoadStats>,
    instance: u64,
}

impl SimAgent {
    fn report(&self, seq: u64, epoch_seen: u64) -> AgentReport {
        let now = now_ms();
        let template = if self.host.is_replica() {
            &self.templates.replica
        } else {
            &self.templates.master
        };
        let facts = fakemysql::facts_now(&self.host, template, now);
        let master_view = self.host.master.map(|(port, _)| MasterView {
            master_address: format!("127.0.0.1:{port}"),
            probe_ok: true,
            probe_error: None,
            probe_latency_ms: Some(0.4),
            io_thread: facts
                .replication
                .as_ref()
                .map_or(myha_core::flavor::ThreadState::Running, |r| r.io_thread),
            io_idle_ms: Some(now % 250),
        });
        AgentReport {
            cluster: self.cluster.clone(),
            host: self.host.name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            instance: self.instance,
            seq,
            sampled_at_ms: now,
            sample_ms: 1,
            mysqld: MysqldStatus::Up {
                facts: Box::new(facts),
            },
            mysqld_process: Some(true),
            master_view,
            epoch_seen,
        }
    }

    async fn run(self, phase: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, REPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut seq = 0u64;
        let mut epoch_seen = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            seq += 1;
            let report = self.report(seq, epoch_seen);
            let recording = self.stats.recording.load(Ordering::Relaxed);
            let started = Instant::now();
            let sent = self
                .client
                .post(&self.url)
                .bearer_auth(&self.token)
                .json(&report)
                .send()
                .await;
            let outcome = match sent {
                Ok(resp) if resp.status().is_success() => {
                    resp.json::<ReportAck>().await.map_err(|e| (false, e))
                }
                Ok(resp) => {
                    if recording {
                        self.stats.sent.fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .error(&self.stats.http_errors, format!("HTTP {}", resp.status()));
                    }
                    continue;
                }
                Err(e) => Err((true, e)),
            };
            let elapsed = started.elapsed();
            if !recording {
                if let Ok(ack) = outcome {
                    epoch_seen = ack.epoch;
                }
                continue;
            }
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(ack) => {
                    epoch_seen = ack.epoch;
                    self.stats.ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = self.stats.latencies_us.lock() {
                        l.push(elapsed.as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                }
                Err((_, e)) if e.is_timeout() => self
                    .stats
                    .error(&self.stats.timeouts, "timeout (1 s)".into()),
                Err((_, e)) => {
                    let text = if e.is_connect() {
                        "connect error".to_string()
                    } else if e.is_decode() {
                        "bad answer".to_string()
                    } else {
                        format!("{e}")
                    };
                    self.stats.error(&self.stats.other_errors, text)
                }
            }
        }
    }
}

// ---- the configuration ----

/// The bed's configuration with the first `n` simulated clusters added
/// (clusters, hosts and one agent credential per host).
/// The bed's own `probe_interval` (testbed/src/lib.rs).
const BED_PROBE_INTERVAL: &str = "250ms";

fn scale_config(
    base: &str,
    hosts: &[SimHost],
    tokens: &[String],
    probe_interval: &str,
) -> BedResult<String> {
    let bed_line = format!("\n  probe_interval: {BED_PROBE_INTERVAL}\n");
    if !base.contains(&bed_line) {
        return Err(other(
            "the bed's configuration has no `probe_interval` line to set",
        ));
    }
    let base = base.replacen(
        &bed_line,
        &format!("\n  probe_interval: {probe_interval}\n"),
        1,
    );
    let (head, rest) = base
        .split_once("\nhosts:\n")
        .ok_or_else(|| other("the bed's configuration has no `hosts:` section"))?;
    let (bed_hosts, access) = rest
        .split_once("\naccess:\n")
        .ok_or_else(|| other("the bed's configuration has no `access:` section after `hosts:`"))?;
    let mut yaml = String::with_capacity(base.len() + hosts.len() * 300);
    yaml.push_str(head);
    yaml.push('\n');
    for h in hosts.iter().filter(|h| !h.is_replica()) {
        yaml.push_str(&format!(
            "  - name: {SIM_PREFIX}{:04}\n    flavor: mariadb\n    user: {}\n    password_file: admin.pw\n    replication_user: {}\n    replication_password_file: repl.pw\n    auto_failover: false\n    auto_rejoin: false\n",
            h.cluster + 1,
            myha_testbed::ADMIN_USER,
            myha_testbed::REPL_USER,
        ));
    }
    yaml.push_str("hosts:\n");
    yaml.push_str(bed_hosts);
    yaml.push('\n');
    for h in hosts {
        yaml.push_str(&format!(
            "  - {{ name: {}, cluster: {SIM_PREFIX}{:04}, address: 127.0.0.1, port: {} }}\n",
            h.name,
            h.cluster + 1,
            h.port
        ));
    }
    yaml.push_str("access:\n");
    yaml.push_str(access);
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    for (h, t) in hosts.iter().zip(tokens) {
        yaml.push_str(&format!(
            "  - {{ name: agent-{}, role: agent, host: {}, token_sha256: {} }}\n",
            h.name,
            h.name,
            myha_config::TokenHash::of(t).to_hex()
        ));
    }
    Ok(yaml)
}

// ---- figures ----

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|us| f64::from(*us) / 1000.0)
}

fn median(v: &[u64]) -> Option<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied()
}

#[derive(Default)]
struct Row {
    clusters: usize,
    sim_healthy: String,
    target_rate: f64,
    rate: f64,
    manager_cpu: f64,
    host_busy: f64,
    bench_cpu: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    errors: u64,
    rss_mb: f64,
    threads: String,
    /// New connections to the simulated servers per second (the
    /// manager's probes reconnect after a failed or timed-out call).
    connects: f64,
    detect_ms: Vec<u64>,
    promote_ms: Vec<u64>,
    notes: Vec<String>,
}

// ---- one round ----

struct Setup<'a> {
    rt: &'a Runtime,
    bed: &'a Bed,
    opts: &'a Options,
    base_config: String,
    fleet: &'a Fleet,
    tokens: &'a [String],
    templates: Arc<Templates>,
    api: Arc<Api>,
    stats: Arc<LoadStats>,
    ticks_per_s: u64,
}

/// The host pid of mysqld in a bed host (from this machine: the kill
/// is then one system call, at an exact instant).
fn mysqld_host_pid(bed: &Bed, host: &str) -> Option<i32> {
    let container = &bed.host(host).ok()?.container;
    let out = Command::new("docker")
        .args(["top", container, "-eo", "pid,comm"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        (it.next()? == "mariadbd").then_some(pid)
    })
}

/// Give every thread of every process of the bed's hosts (mysqld, the
/// agents: other machines in production) the nice value `nice`. Threads
/// they start later inherit it from their creator.
fn renice_bed(bed: &Bed, nice: i32) {
    if nice == 0 {
        return;
    }
    for h in &bed.hosts {
        let Ok(out) = Command::new("docker")
            .args(["top", &h.container, "-eo", "pid"])
            .output()
        else {
            continue;
        };
        let tids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .flat_map(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|t| t.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        if !tids.is_empty() {
            let _ = Command::new("renice")
                .args(["-n", &nice.to_string(), "-p"])
                .args(&tids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn kill_mysqld(bed: &Bed, host: &str) -> BedResult<u64> {
    match mysqld_host_pid(bed, host) {
        Some(pid) => {
            let t = now_ms();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .map_err(|e| other(format!("kill -9 {pid} (mysqld of {host}): {e}")))?;
            Ok(t)
        }
        None => {
            let t = now_ms();
            bed.kill_mysqld(host)?;
            Ok(t)
        }
    }
}

impl Setup<'_> {
    fn get(&self, path: &str) -> BedResult<serde_json::Value> {
        self.rt.block_on(self.api.get(path))
    }

    /// The manager answers and finds the bed's cluster healthy with its
    /// master of record.
    fn wait_manager_ready(&self, limit: Duration) -> BedResult<String> {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.get(&myha_api::paths::cluster(myha_testbed::CLUSTER)) {
                Ok(st) => {
                    if let Some(m) = st["epoch_master"]
                        .as_str()
                        .filter(|_| st["analysis"]["verdict"] == "healthy")
                    {
                        return Ok(m.to_string());
                    }
                    format!(
                        "verdict {}, master {}",
                        st["analysis"]["verdict"], st["epoch_master"]
                    )
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(BedError::Timeout(
                    limit,
                    format!("the manager to find the bed's cluster healthy (last: {last})"),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The bed's cluster at full strength, read from the servers and the
    /// manager's state file (not its API, which an overloaded manager may
    /// answer late): the master of record answers, nothing is under way
    /// or waiting to rejoin, and both other servers replicate from it.
    fn bed_full_strength(&self) -> Result<String, String> {
        let state: serde_json::Value = std::fs::read(
            self.state_dir()
                .join(format!("cluster-{}.json", myha_testbed::CLUSTER)),
        )
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
        let master = state["master"]
            .as_str()
            .ok_or("no master of record")?
            .to_string();
        if !state["in_progress"].is_null() {
            return Err(format!(
                "an operation is under way: {}",
                state["in_progress"]
            ));
        }
        if state["needs_rejoin"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return Err(format!("to rejoin: {}", state["needs_rejoin"]));
        }
        let ip = self
            .bed
            .host(&master)
            .map_err(|e| e.to_string())?
            .ip
            .clone();
        self.bed
            .exec(&master, &["mariadb-admin", "ping"])
            .map_err(|e| format!("{master} does not answer: {e}"))?;
        for h in self.bed.hosts.iter().filter(|h| h.name != master) {
            let out = self
                .bed
                .exec(
                    &h.name,
                    &["mariadb", "-uroot", "-e", "SHOW SLAVE STATUS\\G"],
                )
                .map_err(|e| format!("{}: {e}", h.name))?;
            let ok = out.contains("Slave_IO_Running: Yes")
                && out.contains("Slave_SQL_Running: Yes")
                && out.contains(&format!("Master_Host: {ip}"));
            if !ok {
                return Err(format!("{} does not replicate from {master}", h.name));
            }
        }
        Ok(master)
    }

    fn wait_bed_full_strength(&self, limit: Duration) -> BedResult<String> {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.bed_full_strength() {
                Ok(m) => return Ok(m),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(BedError::Timeout(
                    limit,
                    format!("the bed's cluster at full strength (last: {last})"),
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Every simulated cluster's status: how many are healthy with their
    /// master adopted, and the problems seen (first few).
    fn check_simulated(&self, n: usize) -> String {
        if n == 0 {
            return "-".into();
        }
        let names: Vec<String> = (1..=n).map(|c| format!("{SIM_PREFIX}{c:04}")).collect();
        let results: Vec<BedResult<serde_json::Value>> = self.rt.block_on(async {
            let mut out = Vec::with_capacity(names.len());
            for chunk in names.chunks(16) {
                let mut set = tokio::task::JoinSet::new();
                for (i, name) in chunk.iter().enumerate() {
                    let api = Arc::clone(&self.api);
                    let path = myha_api::paths::cluster(name);
                    set.spawn(async move { (i, api.get(&path).await) });
                }
                let mut got: Vec<(usize, BedResult<serde_json::Value>)> =
                    Vec::with_capacity(chunk.len());
                while let Some(r) = set.join_next().await {
                    got.push(r.unwrap_or_else(|e| (usize::MAX, Err(other(e)))));
                }
                got.sort_by_key(|(i, _)| *i);
                out.extend(got.into_iter().map(|(_, r)| r));
            }
            out
        });
        let mut healthy = 0;
        let mut issues: BTreeMap<String, u64> = BTreeMap::new();
        for (name, r) in names.iter().zip(results) {
            let st = match r {
                Ok(st) => st,
                Err(e) => {
                    *issues.entry(e.to_string()).or_default() += 1;
                    continue;
                }
            };
            let mut ok = st["analysis"]["verdict"] == "healthy"
                && st["epoch_master"] == format!("{name}-db1").as_str();
            if !ok {
                *issues
                    .entry(format!(
                        "verdict {} master {}",
                        st["analysis"]["verdict"], st["epoch_master"]
                    ))
                    .or_default() += 1;
            }
            for p in st["problems"].as_array().into_iter().flatten() {
                ok = false;
                *issues.entry(format!("problem: {p}")).or_default() += 1;
            }
            for s in st["servers"].as_array().into_iter().flatten() {
                for d in s["disagreements"].as_array().into_iter().flatten() {
                    ok = false;
                    *issues.entry(format!("disagreement: {d}")).or_default() += 1;
                }
                if s["source"] != "manager" || s["agent"]["reachable"] == false {
                    ok = false;
                    let what = if s["source"] != "manager" {
                        format!("facts from {} (no fresh probe)", s["source"])
                    } else {
                        "agent not reporting on time".to_string()
                    };
                    *issues.entry(what).or_default() += 1;
                }
            }
            if ok {
                healthy += 1;
            }
        }
        let mut issues: Vec<(String, u64)> = issues.into_iter().collect();
        issues.sort_by_key(|b| std::cmp::Reverse(b.1));
        for (what, count) in issues.iter().take(6) {
            println!("    simulated clusters: {count} x {what}");
        }
        format!("{healthy}/{n}")
    }

    fn round(&self, n: usize, perf: bool) -> BedResult<Row> {
        let sim = n.saturating_sub(1);
        let hosts = self.fleet.cluster_hosts(sim);
        let tokens = &self.tokens[..hosts.len()];
        let config = self.bed.dir.join(format!("scale-{n}.yaml"));
        std::fs::write(
            &config,
            scale_config(&self.base_config, hosts, tokens, &self.opts.probe_interval)?,
        )
        .map_err(other)?;
        let started = Instant::now();
        let mut manager = Manager::start(
            &self.opts.bin,
            &config,
            self.bed.dir.join(format!("manager-scale-{n}.log")),
            self.opts.manager_nice - self.opts.harness_nice,
        )?;
        let pid = manager.pid();
        let mut row = Row {
            clusters: n,
            target_rate: hosts.len() as f64 * 4.0,
            ..Row::default()
        };
        // The manager answers, and the bed's cluster is whole.
        let master = match self
            .wait_manager_ready(Duration::from_secs(120))
            .and_then(|_| self.wait_bed_full_strength(Duration::from_secs(90)))
        {
            Ok(m) => m,
            Err(e) => {
                return Err(other(format!(
                    "N={n}: {e}\n--- manager log (warnings and the bed's cluster) ---\n{}",
                    manager.log_tail()
                )))
            }
        };
        let ready_s = started.elapsed().as_secs_f64();
        let load = Load::start(
            self.rt,
            &self.api.base,
            hosts,
            tokens,
            &self.templates,
            &self.stats,
        )?;
        std::thread::sleep(self.opts.warmup);
        row.sim_healthy = self.check_simulated(sim);
        println!(
            "  N={n}: manager ready in {ready_s:.1} s, {} simulated agents, simulated clusters healthy: {}",
            load.hosts, row.sim_healthy
        );

        // The steady window.
        self.stats.reset();
        let bench_pid = std::process::id();
        let (m0, b0, h0) = (proc_ticks(pid), proc_ticks(bench_pid), host_ticks());
        let ms0 = proc_times(pid);
        let c0 = self.fleet.stats.connections.load(Ordering::Relaxed);
        let q0 = self.fleet.stats.queries.load(Ordering::Relaxed);
        let looks0 = self.rt.block_on(self.api.looks());
        let t0 = Instant::now();
        self.stats.recording.store(true, Ordering::Relaxed);
        std::thread::sleep(self.opts.window);
        self.stats.recording.store(false, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let (m1, b1, h1) = (proc_ticks(pid), proc_ticks(bench_pid), host_ticks());
        let ms1 = proc_times(pid);
        row.connects = (self.fleet.stats.connections.load(Ordering::Relaxed) - c0) as f64 / secs;
        let probes = (self.fleet.stats.queries.load(Ordering::Relaxed) - q0) as f64 / secs;
        if let (Some((t0, c0)), Some((t1, c1))) = (looks0, self.rt.block_on(self.api.looks())) {
            println!(
                "  N={n}: detector looks per second: {:.0} on its pace, {:.0} woken by a change ({:.2} per cluster)",
                (t1 - t0) / secs,
                (c1 - c0) / secs,
                (t1 - t0 + c1 - c0) / secs / n as f64
            );
        }
        if !manager.alive() {
            return Err(other(format!(
                "N={n}: the manager died during the window\n{}",
                manager.log_tail()
            )));
        }
        let tps = self.ticks_per_s as f64;
        if let (Some(a), Some(b)) = (m0, m1) {
            row.manager_cpu = (b - a) as f64 / tps / secs * 100.0;
        }
        if let (Some(a), Some(b)) = (b0, b1) {
            row.bench_cpu = (b - a) as f64 / tps / secs * 100.0;
        }
        if let (Some((u0, s0)), Some((u1, s1))) = (ms0, ms1) {
            println!(
                "  N={n}: manager CPU split: {:.1}% of a core in its own code, {:.1}% in the kernel for it; {probes:.0} probes/s (one query each) answered by the simulated servers, {:.2} per server",
                (u1 - u0) as f64 / tps / secs * 100.0,
                (s1 - s0) as f64 / tps / secs * 100.0,
                probes / (3 * n.saturating_sub(1)).max(1) as f64
            );
        }
        if let (Some((ba, ta)), Some((bb, tb))) = (h0, h1) {
            row.host_busy = (bb - ba) as f64 / (tb - ta).max(1) as f64 * 100.0;
        }
        let mut lat = self
            .stats
            .latencies_us
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        lat.sort_unstable();
        row.p50 = percentile(&lat, 0.50);
        row.p99 = percentile(&lat, 0.99);
        row.max = lat.last().map(|us| f64::from(*us) / 1000.0);
        row.rate = self.stats.sent.load(Ordering::Relaxed) as f64 / secs;
        row.errors = self.stats.timeouts.load(Ordering::Relaxed)
            + self.stats.http_errors.load(Ordering::Relaxed)
            + self.stats.other_errors.load(Ordering::Relaxed);
        row.rss_mb = proc_status(pid, "VmRSS")
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0);
        row.threads = proc_status(pid, "Threads").unwrap_or_default();
        println!(
            "  N={n}: manager CPU {:.1}% of a core, host busy {:.1}%, bench {:.1}%, reports {:.0}/s of {:.0}, p50 {} p99 {} max {} ms, errors {}, probe reconnects {:.0}/s, RSS {:.0} MB",
            row.manager_cpu,
            row.host_busy,
            row.bench_cpu,
            row.rate,
            row.target_rate,
            fmt_ms(row.p50),
            fmt_ms(row.p99),
            fmt_ms(row.max),
            row.errors,
            row.connects,
            row.rss_mb
        );
        if row.errors > 0 {
            if let Ok(s) = self.stats.samples.lock() {
                for (what, c) in s.iter() {
                    println!("    errors: {c} x {what}");
                }
            }
        }

        let perf_data = self.bed.dir.join(format!("perf-{n}.data"));
        let perf_recorded = perf
            && match perf_record(pid, self.opts.perf_seconds, &perf_data) {
                Ok(()) => true,
                Err(e) => {
                    println!("  N={n}: no perf profile: {e}");
                    false
                }
            };

        // Faults on the bed's master while everything reports.
        let mut master = master;
        for k in 0..self.opts.faults {
            let t_fault = kill_mysqld(self.bed, &master)?;
            let waited = self.wait_new_master(&master, t_fault, Duration::from_secs(60));
            // The journal as the manager wrote it (embedded mode: a file),
            // whether or not its API answers.
            let journal = self.journal();
            let events: Vec<&serde_json::Value> = journal
                .iter()
                .filter(|e| e["at_ms"].as_u64().is_some_and(|t| t >= t_fault))
                .collect();
            let after = |step: &str, ok_only: bool| {
                events
                    .iter()
                    .find(|e| e["step"] == step && (!ok_only || e["status"] == "ok"))
                    .and_then(|e| e["at_ms"].as_u64())
                    .map(|t| t - t_fault)
            };
            let promote = after("promote", true);
            let detect = after("detect", false);
            println!(
                "  N={n}: fault {}: mysqld of {master} killed, detected after {} ms, {} promoted after {} ms",
                k + 1,
                detect.map_or("-".into(), |d| d.to_string()),
                waited.as_deref().unwrap_or("nobody"),
                promote.map_or("-".into(), |d| d.to_string()),
            );
            // The failover's steps, ms after the fault.
            let steps: Vec<String> = events
                .iter()
                .take(40)
                .map(|e| {
                    format!(
                        "{}{}+{}",
                        e["step"].as_str().unwrap_or("?"),
                        match e["status"].as_str() {
                            Some("ok") | Some("info") | None => String::new(),
                            Some(other) => format!("({other})"),
                        },
                        e["at_ms"].as_u64().unwrap_or(t_fault) - t_fault
                    )
                })
                .collect();
            println!("    journal: {}", steps.join(" "));
            row.detect_ms.extend(detect);
            row.promote_ms.extend(promote);
            if let Err(e) = waited {
                row.notes.push(format!("fault {}: {e}", k + 1));
            }
            // The old master back, rejoined, before the next fault.
            if let Err(e) = self.bed.start_mysqld(&master) {
                row.notes
                    .push(format!("restarting mysqld of {master}: {e}"));
                break;
            }
            match self.wait_bed_full_strength(Duration::from_secs(90)) {
                Ok(m) => master = m,
                Err(e) => {
                    row.notes.push(e.to_string());
                    break;
                }
            }
        }
        load.stop(self.rt);
        drop(manager);
        if perf_recorded {
            // Read once nothing else runs (DWARF unwinding takes a while).
            match perf_summary(&perf_data) {
                Ok(text) => {
                    println!(
                        "  N={n}: perf profile of the manager ({} s under load, after the window; share of its CPU time):",
                        self.opts.perf_seconds
                    );
                    print!("{text}");
                }
                Err(e) => println!("  N={n}: perf report failed: {e}"),
            }
            let _ = std::fs::remove_file(&perf_data);
        }
        Ok(row)
    }

    fn state_dir(&self) -> PathBuf {
        self.bed.dir.join("state")
    }

    /// The bed cluster's journal, from the manager's state directory.
    fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(
            self.state_dir()
                .join(format!("journal-{}.jsonl", myha_testbed::CLUSTER)),
        )
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
    }

    /// A failover away from `old` finished after `t_fault`: the durable
    /// state names another master, with no operation under way, and the
    /// journal has the operation's `finish`. Read from the manager's
    /// state files, not its API (which an overloaded manager may not
    /// answer in time).
    fn wait_new_master(&self, old: &str, t_fault: u64, limit: Duration) -> BedResult<String> {
        let deadline = Instant::now() + limit;
        let state_file = self
            .state_dir()
            .join(format!("cluster-{}.json", myha_testbed::CLUSTER));
        loop {
            let state: serde_json::Value = std::fs::read(&state_file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if let Some(m) = state["master"].as_str().filter(|m| *m != old) {
                let finished = self.journal().iter().any(|e| {
                    e["step"] == "finish" && e["at_ms"].as_u64().is_some_and(|t| t >= t_fault)
                });
                if state["in_progress"].is_null() && finished {
                    return Ok(m.to_string());
                }
            }
            if Instant::now() > deadline {
                return Err(BedError::Timeout(
                    limit,
                    format!("a new master after {old}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `perf record` of `pid` for `seconds`, with call graphs (DWARF: a
/// release build has no frame pointers), into `data`.
fn perf_record(pid: u32, seconds: u64, data: &Path) -> BedResult<()> {
    let rec = Command::new("perf")
        .args(["record", "-F", "99", "--call-graph", "dwarf,8192", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| other(format!("perf: {e}")))?;
    if rec.success() {
        Ok(())
    } else {
        Err(other(format!("perf record: {rec}")))
    }
}

/// The manager's own functions (and what they call that costs) by
/// inclusive share of its CPU time, then the top symbols by self time.
fn perf_summary(data: &Path) -> BedResult<String> {
    let report = |children: bool| -> BedResult<String> {
        let out = Command::new("perf")
            .args(["report", "--stdio", "--sort", "symbol", "-g", "none"])
            .arg(if children {
                "--children"
            } else {
                "--no-children"
            })
            .args(["--percent-limit", "0.5", "-i"])
            .arg(data)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| other(format!("perf report: {e}")))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // "  12.34%  1.23%  [.] symbol" (with children) / "  1.23%  [.] symbol".
    let rows = |text: &str| -> Vec<(Vec<String>, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (nums, sym) = l.split_once('[')?;
                let sym = sym
                    .split_once("] ")?
                    .1
                    .trim_end_matches(|c: char| c == '-' || c.is_whitespace())
                    .trim()
                    .to_string();
                let nums: Vec<String> = nums.split_whitespace().map(str::to_string).collect();
                (!nums.is_empty()).then_some((nums, sym))
            })
            .collect()
    };
    const WATCH: [&str; 26] = [
        "myha_manager::state::Topology::refresh_view",
        "myha_manager::state::Topology::router_view",
        "myha_manager::state::Topology::snapshot_of",
        "myha_manager::state::Topology::snapshot",
        "myha_manager::state::Topology::ingest",
        "myha_manager::state::Topology::record_probe",
        "myha_core::topology::build_snapshot_with_problems",
        "myha_core::topology::server_view",
        "myha_core::topology::disagreements",
        "myha_core::candidate::executed_set",
        "myha_core::durable::apply_durable",
        "myha_core::routing::router_view",
        "myha_manager::detector::run",
        "myha_core::detect::next_actions",
        "myha_core::analysis::analyze",
        "myha_manager::probe::run",
        "myha_mysql::facts::collect_facts",
        "read_column_defs",
        "myha_manager::api::report",
        "myha_manager::api::require_token",
        "authenticate",
        "axum::json::Json<T>::from_bytes",
        "hyper::proto::h1::dispatch::Dispatcher",
        "myha_http::server::connection",
        "do_syscall_64",
        "finish_task_switch",
    ];
    let mut out = String::from("    inclusive (self)  function\n");
    let children = rows(&report(true)?);
    let mut seen = std::collections::BTreeSet::new();
    for (nums, sym) in &children {
        let Some(w) = WATCH.iter().find(|w| sym.contains(**w)) else {
            continue;
        };
        // The first (largest) line of each watched name.
        if !seen.insert(*w) {
            continue;
        }
        out.push_str(&format!(
            "    {:>8} ({:>6})  {}\n",
            nums.first().map_or("", String::as_str),
            nums.get(1).map_or("", String::as_str),
            sym.chars().take(110).collect::<String>()
        ));
    }
    out.push_str("    top self time:\n");
    for (nums, sym) in rows(&report(false)?).iter().take(15) {
        out.push_str(&format!(
            "    {:>8}  {}\n",
            nums.first().map_or("", String::as_str),
            sym.chars().take(110).collect::<String>()
        ));
    }
    Ok(out)
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}"))
}

/// Other test beds or daemons on this machine (they take CPU from the
/// measurement): the containers of beds and `myhad` processes that are
/// not this run's.
fn others_running(own_prefix: Option<&str>) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "--filter",
            "label=org.myha.testbed",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .ok()?;
    let containers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| own_prefix.is_none_or(|p| !n.starts_with(p)))
        .count();
    let daemons = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            let own = own_prefix.is_some_and(|p| {
                args.iter()
                    .any(|a| String::from_utf8_lossy(a).contains(&format!("/{p}/")))
            });
            args.first().is_some_and(|a| a.ends_with(b"/myhad")) && !own
        })
        .count();
    (containers + daemons > 0).then(|| {
        format!("{containers} container(s) of other test beds and {daemons} other myhad process(es) running")
    })
}

fn header(opts: &Options) {
    // MYHA_COMMIT names the commit of a tree that is not a git checkout
    // (an export of one).
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(myha_testbed::repo_root())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let (commit, dirty) = match std::env::var("MYHA_COMMIT") {
        Ok(c) if !c.is_empty() => (c, false),
        _ => (
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()),
        ),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if let Some(o) = others_running(None) {
        println!("# WARNING: {o}: the figures below share the CPU with them");
    }
    println!(
        "# myha manager scale benchmark: commit {commit}{}, {cores} cores ({cpu}), Linux {}",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        kernel.trim()
    );
    println!(
        "# one manager (embedded mode: the leader, nice {}), probe_interval {}; N clusters = the bed's (3 MariaDB + real agents) \
         + N-1 simulated (3 fake MariaDB endpoints each on 127.0.0.1, probed by the manager, and 3 simulated agents \
         reporting 4/s, 1 s timeout; they and the bed's hosts stand for other machines: nice {}); warm-up {} s, \
         window {} s, {} fault(s) per N (SIGKILL of the bed master's mysqld)",
        opts.manager_nice,
        opts.probe_interval,
        opts.harness_nice,
        opts.warmup.as_secs(),
        opts.window.as_secs(),
        opts.faults
    );
}

fn run(opts: &Options) -> BedResult<Vec<Row>> {
    // reqwest's rustls without a provider of its own, as in the daemons.
    myha_http::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(other)?;
    let fds = myha_testbed::raise_fd_limit();
    let max_n = opts.clusters.iter().copied().max().unwrap_or(1);
    if fds < (max_n as u64) * 9 + 200 {
        return Err(other(format!(
            "open-file limit {fds} is too low for {max_n} clusters (about 9 descriptors per cluster)"
        )));
    }
    let mut bed_opts = BedOptions::new(&opts.bin);
    // Consecutive failovers in one run (the default blocks for 10 min).
    bed_opts.cluster_yaml = "failover_block_period: 1s".into();
    let mut bed = Bed::start(bed_opts)?;
    if bed.tls {
        return Err(other("run it without MYHA_BED_TLS"));
    }
    bed.wait_ready(Duration::from_secs(60))?;
    renice_bed(&bed, opts.harness_nice);
    let master_ip = bed.host("db1")?.ip.clone();
    let replica_ip = bed.host("db2")?.ip.clone();
    let server = |host: String| RealServer {
        host,
        port: 3306,
        user: myha_testbed::ADMIN_USER.into(),
        password: myha_testbed::ADMIN_PASSWORD.into(),
    };
    let recording = rt
        .block_on(Recording::record(
            &server(master_ip),
            &server(replica_ip),
            "myha.heartbeat",
            1,
        ))
        .map_err(|e| other(format!("recording the bed's answers: {e}")))?;
    println!(
        "# recorded from the bed: MariaDB {}, SHOW ALL SLAVES STATUS {} columns, variables {} columns",
        recording.version,
        recording.replica_status.columns.len(),
        recording.master_vars.columns.len()
    );
    // A real agent's report, for its size.
    let real_report = bed
        .http(
            "GET",
            &format!("{}{}", bed.agent_url("db2")?, myha_api::paths::AGENT_STATUS),
            Some(&bed.monitor_token),
            None,
        )
        .map(|(_, body)| body.len())
        .unwrap_or(0);
    // From here on the manager is ours.
    bed.stop_manager();

    let sim_max = max_n.saturating_sub(1);
    let fleet = rt
        // At least one cluster: the templates of the reports are read from it.
        .block_on(Fleet::start(recording, sim_max.max(1), SIM_PREFIX))
        .map_err(|e| other(format!("simulated endpoints: {e}")))?;
    // What the probe reads from a simulated master and replica: the
    // simulated agents report the same (made each host's own).
    let opts_facts = myha_mysql::FactsOptions {
        flavor: myha_core::flavor::Flavor::Mariadb,
        heartbeat_table: "myha.heartbeat".into(),
    };
    let read = |h: &SimHost| {
        let mut db = myha_mysql::Db::new(
            myha_mysql::Endpoint {
                host: "127.0.0.1".into(),
                port: h.port,
                user: myha_testbed::ADMIN_USER.into(),
                password: myha_testbed::ADMIN_PASSWORD.into(),
                tls: None,
            },
            myha_mysql::Timeouts {
                connect: Duration::from_secs(2),
                query: Duration::from_secs(2),
            },
        );
        let opts = opts_facts.clone();
        rt.block_on(async move { myha_mysql::collect_facts(&mut db, &opts).await })
            .map_err(|e| other(format!("reading simulated {}: {e}", h.name)))
    };
    let (Some(m), Some(r)) = (fleet.hosts.first(), fleet.hosts.get(1)) else {
        return Err(other("no simulated host"));
    };
    let templates = Templates {
        master: read(m)?,
        replica: read(r)?,
    };
    let tokens: Vec<String> = (0..fleet.hosts.len())
        .map(|_| myha_testbed::new_token())
        .collect::<BedResult<_>>()?;
    if let Some(h) = fleet.hosts.get(1) {
        let sample = SimAgent {
            host: h.clone(),
            cluster: format!("{SIM_PREFIX}0001"),
            token: String::new(),
            url: String::new(),
            client: reqwest::Client::new(),
            templates: Arc::new(Templates {
                master: templates.master.clone(),
                replica: templates.replica.clone(),
            }),
            stats: Arc::new(LoadStats::default()),
            instance: 1,
        }
        .report(1, 1);
        let size = serde_json::to_string(&sample).map_or(0, |s| s.len());
        println!(
            "# a replica's report: {size} bytes of JSON simulated, {real_report} bytes from the bed's real agent of db2"
        );
    }
    let base_config = std::fs::read_to_string(&bed.config_path).map_err(other)?;
    let api = Api {
        base: bed.manager_url(),
        token: bed.token.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(other)?,
    };
    let setup = Setup {
        rt: &rt,
        bed: &bed,
        opts,
        base_config,
        fleet: &fleet,
        tokens: &tokens,
        templates: Arc::new(templates),
        api: Arc::new(api),
        stats: Arc::new(LoadStats::default()),
        ticks_per_s: clock_ticks_per_second(),
    };
    let mut rows = Vec::new();
    for &n in &opts.clusters {
        let perf = opts.perf_at == Some(n);
        match setup.round(n, perf) {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("N={n}: {e}");
                rows.push(Row {
                    clusters: n,
                    notes: vec![format!("failed: {e}")],
                    ..Row::default()
                });
                // The bed's cluster whole again for the next N, if it can be.
                if let Ok(Some(m)) = bed.epoch_master().map(|(_, m)| m) {
                    let _ = bed.start_mysqld(&m);
                }
                for h in ["db1", "db2", "db3"] {
                    let _ = bed.start_mysqld(h);
                }
            }
        }
    }
    if let Some(o) = others_running(Some(&bed.prefix)) {
        println!("# WARNING at the end: {o}");
    }
    let other_queries = fleet.stats.other_queries();
    println!(
        "# simulated endpoints: {} connections, {} queries answered",
        fleet.stats.connections.load(Ordering::Relaxed),
        fleet.stats.queries.load(Ordering::Relaxed)
    );
    for (q, c) in &other_queries {
        println!("#   not a probe query (answered OK): {c} x {q}");
    }
    drop(setup);
    drop(fleet);
    drop(rt);
    Ok(rows)
}

fn print_table(rows: &[Row]) -> bool {
    println!(
        "{:>6} {:>9} {:>11} {:>9} {:>8} {:>7} {:>7} {:>8} {:>8} {:>6} {:>7} {:>5} {:>15} {:>15}",
        "N",
        "sim ok",
        "reports/s",
        "mgr CPU%",
        "host %",
        "bench%",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "RSS MB",
        "thr",
        "detect ms",
        "promote ms"
    );
    let span = |v: &[u64]| match (median(v), v.iter().min(), v.iter().max()) {
        (Some(m), Some(lo), Some(hi)) if v.len() > 1 => format!("{m} ({lo}-{hi})"),
        (Some(m), _, _) => m.to_string(),
        _ => "-".into(),
    };
    for r in rows {
        println!(
            "{:>6} {:>9} {:>11} {:>9.1} {:>8.1} {:>7.1} {:>7} {:>8} {:>8} {:>6} {:>7.0} {:>5} {:>15} {:>15}",
            r.clusters,
            r.sim_healthy,
            format!("{:.0}/{:.0}", r.rate, r.target_rate),
            r.manager_cpu,
            r.host_busy,
            r.bench_cpu,
            fmt_ms(r.p50),
            fmt_ms(r.p99),
            fmt_ms(r.max),
            r.errors,
            r.rss_mb,
            r.threads,
            span(&r.detect_ms),
            span(&r.promote_ms),
        );
        for n in &r.notes {
            println!("       {n}");
        }
    }
    // The issue's target: 500 clusters under 25% of one core, detection
    // unchanged against N = 1 (within 100 ms of its median).
    let base = rows
        .iter()
        .find(|r| r.clusters == 1)
        .and_then(|r| median(&r.detect_ms));
    let mut met = true;
    if let Some(r) = rows.iter().find(|r| r.clusters == 500) {
        // A CPU share counts only if the manager kept up with the load:
        // every report answered in time (a starved manager burns less).
        let kept_up = r.rate >= 0.95 * r.target_rate && r.errors == 0;
        let cpu_ok = r.notes.is_empty() && kept_up && r.manager_cpu < 25.0;
        let det = median(&r.detect_ms);
        let det_ok = matches!((det, base), (Some(d), Some(b)) if d <= b + 100);
        met = cpu_ok && det_ok;
        println!(
            "target (500 clusters: manager under 25% of one core, detection within 100 ms of N=1's): {} \
             (CPU {:.1}%{}, detection {} ms against {} ms)",
            if met { "MET" } else { "NOT MET" },
            r.manager_cpu,
            if kept_up {
                ""
            } else {
                " while not keeping up: reports late or lost"
            },
            det.map_or("-".into(), |d| d.to_string()),
            base.map_or("-".into(), |d| d.to_string()),
        );
    }
    met
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!(
            "usage: myha-bench-scale --myha-bin PATH [--clusters 1,10,100,500,1000] [--window 30] \
             [--warmup 10] [--faults 3] [--perf-at 500|none] [--perf-seconds 10] [--harness-nice -10] \
             [--manager-nice -5] [--probe-interval 250ms]"
        );
        return std::process::ExitCode::from(2);
    };
    let secs = |flag: &str, default: u64| {
        Duration::from_secs(
            arg(&args, flag)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    };
    let clusters: Vec<usize> = arg(&args, "--clusters")
        .unwrap_or_else(|| "1,10,100,500,1000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c >= 1)
        .collect();
    let perf_at = match arg(&args, "--perf-at").as_deref() {
        Some("none") => None,
        Some(v) => v.parse().ok(),
        None => Some(500),
    };
    let perf_at = perf_at.filter(|_| {
        Command::new("perf")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let opts = Options {
        bin: PathBuf::from(bin),
        clusters,
        window: secs("--window", 30),
        warmup: secs("--warmup", 10),
        faults: arg(&args, "--faults")
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
        perf_at,
        perf_seconds: arg(&args, "--perf-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
        harness_nice: arg(&args, "--harness-nice")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-10),
        manager_nice: arg(&args, "--manager-nice")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-5),
        probe_interval: arg(&args, "--probe-interval").unwrap_or_else(|| BED_PROBE_INTERVAL.into()),
    };
    let unit = opts
        .probe_interval
        .trim_end_matches("ms")
        .trim_end_matches('s');
    if unit.is_empty()
        || unit.len() == opts.probe_interval.len()
        || !unit.bytes().all(|b| b.is_ascii_digit())
    {
        eprintln!(
            "--probe-interval {:?}: give milliseconds or seconds (250ms, 500ms, 1s)",
            opts.probe_interval
        );
        return std::process::ExitCode::from(2);
    }
    // Before any thread exists: every thread of this process (the
    // simulated servers and agents, which stand for other machines)
    // inherits it.
    if opts.harness_nice != 0 {
        let ok = Command::new("renice")
            .args(["-n", &opts.harness_nice.to_string(), "-p"])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "renice {} failed: the harness runs at the manager's priority",
                opts.harness_nice
            );
        }
    }
    header(&opts);
    let started = Instant::now();
    match run(&opts) {
        Ok(rows) => {
            let met = print_table(&rows);
            println!("# took {:.0} s", started.elapsed().as_secs_f64());
            let failed = rows.iter().any(|r| !r.notes.is_empty());
            if failed || !met {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("myha-bench-scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
