//! Writers through the router's writer port, run on this machine, and the
//! routers they go through: the second path of the bench binaries
//! (`myha-bench-failover`, `myha-bench-switchover`), next to the writer
//! through the VIP.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    delete_nat_table, terminate, wait_until, Bed, BedError, BedOptions, Result, APP_PASSWORD,
    APP_USER,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

/// The target: the router's median silence at most the VIP's
/// plus this.
pub const TARGET_MS: u64 = 50;

const RELAYS: [&str; 2] = ["nat", "userspace"];

/// `--relays a,b`: the demo's `nat` and `userspace` by default.
pub fn relays(arg: Option<&str>) -> std::result::Result<Vec<String>, String> {
    let list: Vec<String> = arg
        .unwrap_or("nat,userspace")
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = list.iter().find(|r| !RELAYS.contains(&r.as_str())) {
        return Err(format!(
            "unknown relay {bad} (one of {})",
            RELAYS.join(", ")
        ));
    }
    if list.is_empty() {
        return Err("--relays names no relay".into());
    }
    let mut seen = list.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != list.len() {
        return Err("--relays names a relay twice".into());
    }
    Ok(list)
}

pub fn describe(relays: &[String]) -> String {
    relays
        .iter()
        .map(|r| format!("relay: {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bed's own router (writer port 6033) runs the first relay.
pub fn configure(opts: &mut BedOptions, relays: &[String]) {
    opts.router = true;
    if let Some(first) = relays.first() {
        opts.router_extra = format!(", relay: {first}");
    }
}

/// The table the writer through `relay`'s router inserts into.
pub fn table(relay: &str) -> String {
    format!("app.seq_{relay}")
}

/// The MET / NOT MET line for one path.
pub fn verdict(relay: &str, what: &str, router_median: u64, vip_median: u64) -> String {
    let diff = router_median as i64 - vip_median as i64;
    format!(
        "target {what} ({relay}): router median {router_median} ms <= VIP median {vip_median} ms + {TARGET_MS} ms \
         (router - VIP {diff:+} ms): {}",
        if router_median <= vip_median + TARGET_MS {
            "MET"
        } else {
            "NOT MET"
        }
    )
}

fn other(e: impl std::fmt::Display) -> BedError {
    BedError::Other(e.to_string())
}

fn http_get(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "3", url])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BedError::Spawn {
            cmd: format!("curl {url}"),
            source,
        })?;
    if !out.status.success() {
        return Err(BedError::Other(format!("curl {url}: {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The routers of one bed: the bed's own (index 0, ports 6033-6035) and
/// one process per further relay (index k: ports 6033 + 10k ..).
pub struct Routers {
    gateway: String,
    relays: Vec<String>,
    extra: Vec<Child>,
}

impl Routers {
    pub fn writer_port(k: usize) -> u16 {
        6033 + 10 * k as u16
    }

    fn http(&self, k: usize) -> String {
        format!("http://{}:{}", self.gateway, Self::writer_port(k) + 2)
    }

    /// Start the further routers, then wait until every router sends
    /// writes to db1 (and `relay: nat` has its rules in place).
    pub fn start(bed: &Bed, relays: &[String]) -> Result<Routers> {
        let mut routers = Routers {
            gateway: bed.gateway.clone(),
            relays: relays.to_vec(),
            extra: Vec::new(),
        };
        let config = std::fs::read_to_string(&bed.config_path).map_err(other)?;
        for (k, relay) in relays.iter().enumerate().skip(1) {
            let port = Self::writer_port(k);
            let line = format!(
                "    router: {{ token_file: router.token, writer_listen: {gw}:{port}, reader_listen: {gw}:{}, \
                 http_listen: {gw}:{}, writer_hold_timeout: 10s, relay: {relay}, \
                 max_connections_per_source: 1000 }}",
                port + 1,
                port + 2,
                gw = bed.gateway
            );
            let mut replaced = 0;
            let text: Vec<String> = config
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("router:") {
                        replaced += 1;
                        line.clone()
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            if replaced != 1 {
                return Err(BedError::Other(format!(
                    "{}: expected one router section, found {replaced}",
                    bed.config_path.display()
                )));
            }
            let path = bed.dir.join(format!("myha-router-{relay}.yaml"));
            std::fs::write(&path, text.join("\n") + "\n").map_err(other)?;
            let log = std::fs::File::create(bed.dir.join(format!("router-{relay}.log")))
                .map_err(other)?;
            let err = log.try_clone().map_err(other)?;
            let child = Command::new(&bed.myha_bin)
                .args(["router", "--config"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|source| BedError::Spawn {
                    cmd: format!("myha router ({relay})"),
                    source,
                })?;
            routers.extra.push(child);
        }
        for (k, relay) in relays.iter().enumerate() {
            let url = routers.http(k);
            wait_until(
                Duration::from_secs(20),
                &format!("the {relay} router sends writes to db1"),
                || {
                    let e: serde_json::Value = serde_json::from_str(&http_get(&format!(
                        "{url}/v1/clusters/{}/endpoints",
                        crate::CLUSTER
                    ))?)
                    .map_err(other)?;
                    let ready = match relay.as_str() {
                        "nat" => routers.metric(k, "myha_router_nat", &[]) == Some(1),
                        _ => true,
                    };
                    Ok(e["writer"]["name"] == "db1" && ready)
                },
            )?;
        }
        Ok(routers)
    }

    /// The sample `name` with `labels` of router `k`'s `/metrics`.
    pub fn metric(&self, k: usize, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let body = http_get(&format!("{}/metrics", self.http(k))).ok()?;
        let scrape = crate::parse_metrics(&body).ok()?;
        crate::metric_value(&scrape, name, labels).map(|v| v as u64)
    }

    /// One writer per router, on this machine, each into a table of
    /// its own (created on db1 first).
    pub fn start_writers(&self, bed: &Bed) -> Result<Vec<PortWriter>> {
        let mut writers = Vec::new();
        for (k, relay) in self.relays.iter().enumerate() {
            bed.sql(
                "db1",
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
                    table(relay)
                ),
            )?;
            writers.push(PortWriter::start(
                &self.gateway,
                Self::writer_port(k),
                &table(relay),
                Duration::from_secs(1),
            )?);
        }
        Ok(writers)
    }

    /// How the writer's connections went through router `k`: the ones
    /// its own socket took (held during a change, or relayed in user
    /// space) against the writer's attempts; with `relay: nat` the
    /// kernel forwarded the rest.
    pub fn connections_note(&self, k: usize, log: &PortLog) -> String {
        let taken = self.metric(
            k,
            "myha_router_connections_total",
            &[("endpoint", "writer")],
        );
        format!(
            "writer connect attempts {} ({} established), taken by the router's own socket {}{}",
            log.attempts,
            log.connects,
            taken.map_or("?".to_string(), |n| n.to_string()),
            match (self.relays.get(k).map(String::as_str), taken) {
                (Some("nat"), Some(n)) => format!(
                    ", forwarded by the kernel {}",
                    log.attempts.saturating_sub(n)
                ),
                _ => String::new(),
            }
        )
    }
}

impl Drop for Routers {
    fn drop(&mut self) {
        for (k, child) in self.extra.iter_mut().enumerate() {
            terminate(child);
            if self.relays.get(k + 1).is_some_and(|r| r == "nat") {
                delete_nat_table(&format!("{}:{}", self.gateway, Self::writer_port(k + 1)));
            }
        }
    }
}

/// What a writer through a router port did.
#[derive(Debug, Default, Clone)]
pub struct PortLog {
    /// (id, unix ms) of every acknowledged insert, in order.
    pub acks: Vec<(u64, u64)>,
    /// Connection attempts (a held one is given up after 500 ms).
    pub attempts: u64,
    /// Connections established.
    pub connects: u64,
}

/// A continuous writer on this machine: the loop of `myha-writer`
/// (sequential ids, a duplicate key means the unacknowledged earlier
/// attempt committed, 500 ms connect timeout, its own query timeout,
/// 20 ms pause after an error) on a thread of its own.
pub struct PortWriter {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<PortLog>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn lock(log: &Mutex<PortLog>) -> MutexGuard<'_, PortLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl PortWriter {
    pub fn start(
        host: &str,
        port: u16,
        table: &str,
        query_timeout: Duration,
    ) -> Result<PortWriter> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(other)?;
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some("app"))
            .prefer_socket(false)
            .tcp_nodelay(true);
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(PortLog::default()));
        let (s, l, t) = (stop.clone(), log.clone(), table.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("writer {host}:{port}"))
            .spawn(move || rt.block_on(write_loop(opts, t, s, l, query_timeout)))
            .map_err(other)?;
        Ok(PortWriter {
            stop,
            log,
            thread: Some(thread),
        })
    }

    pub fn acks(&self) -> Vec<(u64, u64)> {
        lock(&self.log).acks.clone()
    }

    /// Wait until the writer has at least `n` more acknowledgements.
    pub fn wait_acks(&self, n: usize, limit: Duration) -> Result<()> {
        let base = lock(&self.log).acks.len();
        wait_until(limit, &format!("{n} more writes acknowledged"), || {
            Ok(lock(&self.log).acks.len() >= base + n)
        })
    }

    pub fn stop(mut self) -> PortLog {
        self.halt();
        lock(&self.log).clone()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PortWriter {
    fn drop(&mut self) {
        self.halt();
    }
}

async fn write_loop(
    opts: OptsBuilder,
    table: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<PortLog>>,
    query_timeout: Duration,
) {
    let mut conn: Option<Conn> = None;
    let mut id: u64 = 1;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            lock(&log).attempts += 1;
            match tokio::time::timeout(Duration::from_millis(500), Conn::new(opts.clone())).await {
                Ok(Ok(c)) => {
                    conn = Some(c);
                    lock(&log).connects += 1;
                }
                Ok(Err(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sql = format!("INSERT INTO {table} (id) VALUES ({id})");
        match tokio::time::timeout(query_timeout, c.query_drop(sql)).await {
            Ok(Ok(())) => {
                let at = now_ms();
                lock(&log).acks.push((id, at));
                id += 1;
            }
            Ok(Err(mysql_async::Error::Server(e))) if e.code == 1062 => id += 1,
            Ok(Err(_)) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => conn = None,
        }
    }
}
