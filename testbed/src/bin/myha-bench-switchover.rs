//! `bench/switchover`: N planned switchovers in a row among the hosts of
//! one bed, with writers inserting side by side through two paths: the VIP
//! (from a client container on the bed's network) and the router's writer
//! port (from this machine, where the router runs, as an application next
//! to its router would). Prints the write silence of each path for each
//! switchover (the longest gap between acknowledged inserts while it ran),
//! their median and max, the router's difference to the VIP with the
//! issue's target (router median <= VIP median + 50 ms), the switchover
//! durations, acknowledged rows lost, and whether every server ended with
//! the same GTID state (no errant transaction).
//!
//! `myha-bench-switchover --myha-bin PATH [--runs N] [--relays nat,userspace]`
//! The first relay is the bed's router (the demo's `relay: nat` by
//! default); each further one is a second router process of its own, on
//! ports 6043.. (then 6053..), watching the same manager.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use myha_testbed::{wait_until, Bed, BedOptions};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

/// The longest silence between two acknowledged inserts in `acks` that
/// ends at or after `from` and starts at or before `to` (unix ms).
fn silence(acks: &[(u64, u64)], from: u64, to: u64) -> u64 {
    acks.windows(2)
        .filter(|w| w[1].1 >= from && w[0].1 <= to)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .max()
        .unwrap_or(0)
}

/// The ids of `table` on `host`.
fn ids(bed: &Bed, host: &str, table: &str) -> myha_testbed::Result<BTreeSet<u64>> {
    Ok(bed
        .sql(host, &format!("SELECT id FROM {table}"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!(
            "usage: myha-bench-switchover --myha-bin PATH [--runs N] [--relays nat,userspace]"
        );
        return std::process::ExitCode::from(2);
    };
    let runs: usize = arg(&args, "--runs")
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let relays = match router_path::relays(arg(&args, "--relays").as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match bench(&bin, runs, &relays) {
        Ok(ok) if ok => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(bin: &str, runs: usize, relays: &[String]) -> myha_testbed::Result<bool> {
    let mut opts = BedOptions::new(bin);
    opts.vip = true;
    router_path::configure(&mut opts, relays);
    let bed = Bed::start(opts)?;
    bed.wait_ready(Duration::from_secs(30))?;
    // Dropped before the bed: the extra routers end first.
    let routers = router_path::Routers::start(&bed, relays)?;
    let writer = bed.start_writer_with(&bed.vip(), 3306, 1000)?;
    writer.wait_acks(100, Duration::from_secs(30))?;
    let port_writers = routers.start_writers(&bed)?;
    for w in &port_writers {
        w.wait_acks(100, Duration::from_secs(30))?;
    }
    println!(
        "# myha switchover benchmark: {runs} switchovers; writers through the VIP (client container) \
         and through the router's writer port (this machine: {}), client timeout 1 s",
        router_path::describe(relays)
    );
    let mut head = format!("{:>3} {:>8} {:>9}", "run", "target", "VIP ms");
    for r in relays {
        head.push_str(&format!(
            " {:>13} {:>9}",
            format!("router {r} ms"),
            "-VIP ms"
        ));
    }
    head.push_str(&format!(" {:>12}", "duration ms"));
    println!("{head}");
    let hosts = ["db2", "db3", "db1"];
    let mut gaps = Vec::new();
    let mut router_gaps: Vec<Vec<u64>> = vec![Vec::new(); relays.len()];
    let mut durations = Vec::new();
    let mut failures = 0;
    for i in 0..runs {
        let target = hosts[i % hosts.len()];
        writer.wait_acks(50, Duration::from_secs(30))?;
        for w in &port_writers {
            w.wait_acks(50, Duration::from_secs(30))?;
        }
        let t0 = now_ms();
        let out = bed.myha(&["switchover", "--to", target, "--json"])?;
        let t1 = now_ms();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !out.status.success() {
            failures += 1;
            eprintln!("run {}: switchover to {target} failed: {report}", i + 1);
        }
        // Let the writers resume, then find the longest silence in the window.
        writer.wait_acks(20, Duration::from_secs(30))?;
        for w in &port_writers {
            w.wait_acks(20, Duration::from_secs(30))?;
        }
        let gap = silence(&writer.log().acks, t0, t1 + 5000);
        gaps.push(gap);
        let mut row = format!("{:>3} {:>8} {:>9}", i + 1, target, gap);
        for (k, w) in port_writers.iter().enumerate() {
            let g = silence(&w.acks(), t0, t1 + 5000);
            router_gaps[k].push(g);
            row.push_str(&format!(
                " {:>13} {:>9}",
                g,
                format!("{:+}", g as i64 - gap as i64)
            ));
        }
        let duration = report["duration_ms"].as_u64().unwrap_or(t1 - t0);
        durations.push(duration);
        row.push_str(&format!(" {duration:>12}"));
        println!("{row}");
    }
    let log = writer.stop();
    let port_logs: Vec<router_path::PortLog> = port_writers.into_iter().map(|w| w.stop()).collect();
    let master = bed.status()?["master"]
        .as_str()
        .unwrap_or("db1")
        .to_string();
    let present = ids(&bed, &master, "app.seq")?;
    let lost = log.acks.iter().filter(|a| !present.contains(&a.0)).count();
    let mut router_lost = Vec::new();
    for (r, l) in relays.iter().zip(&port_logs) {
        let present = ids(&bed, &master, &router_path::table(r))?;
        router_lost.push(l.acks.iter().filter(|a| !present.contains(&a.0)).count());
    }
    let equal = wait_until(Duration::from_secs(15), "equal GTID states", || {
        let m = bed.sql(&master, "SELECT @@gtid_binlog_state")?;
        let mut all = true;
        for h in ["db1", "db2", "db3"] {
            all &= bed.sql(h, "SELECT @@gtid_binlog_state")? == m;
        }
        Ok(all)
    })
    .is_ok();
    println!(
        "summary: write-unavailability (VIP) median {} ms, max {} ms; switchover duration median {} ms; \
         lost acknowledged rows {lost}; failed switchovers {failures}; GTID states equal: {equal}",
        median(&gaps),
        gaps.iter().max().copied().unwrap_or(0),
        median(&durations)
    );
    for (k, r) in relays.iter().enumerate() {
        let g = &router_gaps[k];
        println!(
            "router ({r}): write silence median {} ms, max {} ms; lost acknowledged rows {}; {}",
            median(g),
            g.iter().max().copied().unwrap_or(0),
            router_lost[k],
            routers.connections_note(k, &port_logs[k])
        );
        println!(
            "{}",
            router_path::verdict(r, "switchover", median(g), median(&gaps))
        );
    }
    Ok(lost == 0 && router_lost.iter().all(|l| *l == 0) && failures == 0 && equal)
}

/// Writers through the router's writer port, run on this machine, and the
/// routers they go through. (The same module is in
/// `myha-bench-failover.rs`: each bench binary is one file.)
mod router_path {
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use myha_testbed::{
        delete_nat_table, terminate, wait_until, Bed, BedError, BedOptions, Result, APP_PASSWORD,
        APP_USER,
    };
    use mysql_async::prelude::Queryable;
    use mysql_async::{Conn, OptsBuilder};

    /// The target: the router's median silence at most the VIP's
    /// plus this.
    pub const TARGET_MS: u64 = 50;

    const RELAYS: [&str; 3] = ["nat", "userspace", "kernel"];

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
                    "    router: {{ writer_listen: {gw}:{port}, reader_listen: {gw}:{}, http_listen: {gw}:{}, \
                     writer_hold_timeout: 10s, relay: {relay} }}",
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
                            myha_testbed::CLUSTER
                        ))?)
                        .map_err(other)?;
                        let ready = match relay.as_str() {
                            "nat" => routers.metric(k, "myha_router_nat") == Some(1),
                            "kernel" => routers.metric(k, "myha_router_kernel_relay") == Some(1),
                            _ => true,
                        };
                        Ok(e["writer"]["name"] == "db1" && ready)
                    },
                )?;
            }
            Ok(routers)
        }

        /// One series of router `k`'s `/metrics`.
        pub fn metric(&self, k: usize, series: &str) -> Option<u64> {
            http_get(&format!("{}/metrics", self.http(k)))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
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
            let taken = self.metric(k, "myha_router_connections_total{endpoint=\"writer\"}");
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
                match tokio::time::timeout(Duration::from_millis(500), Conn::new(opts.clone()))
                    .await
                {
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
}
