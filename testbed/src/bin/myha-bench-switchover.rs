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

use myha_testbed::{router_path, wait_until, Bed, BedOptions};

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
