//! `bench/switchover`: N planned switchovers in a row among the hosts of
//! one bed, with a writer inserting through the VIP. Prints the
//! write-unavailability of each (the longest silence between acknowledged
//! inserts while it ran), their median and max, the switchover durations,
//! acknowledged rows lost, and whether every server ended with the same
//! GTID state (no errant transaction).
//!
//! `myha-bench-switchover --myha-bin PATH [--runs N]`
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

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!("usage: myha-bench-switchover --myha-bin PATH [--runs N]");
        return std::process::ExitCode::from(2);
    };
    let runs: usize = arg(&args, "--runs")
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    match bench(&bin, runs) {
        Ok(ok) if ok => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(bin: &str, runs: usize) -> myha_testbed::Result<bool> {
    let mut opts = BedOptions::new(bin);
    opts.vip = true;
    let bed = Bed::start(opts)?;
    bed.wait_ready(Duration::from_secs(30))?;
    let writer = bed.start_writer_with(&bed.vip(), 3306, 1000)?;
    writer.wait_acks(100, Duration::from_secs(30))?;
    println!("# myha switchover benchmark: {runs} switchovers, writer through the VIP (client timeout 1 s)");
    println!(
        "{:>3} {:>8} {:>14} {:>12}",
        "run", "target", "unavailable ms", "duration ms"
    );
    let hosts = ["db2", "db3", "db1"];
    let mut gaps = Vec::new();
    let mut durations = Vec::new();
    let mut failures = 0;
    for i in 0..runs {
        let target = hosts[i % hosts.len()];
        writer.wait_acks(50, Duration::from_secs(30))?;
        let t0 = now_ms();
        let out = bed.myha(&["switchover", "--to", target, "--json"])?;
        let t1 = now_ms();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !out.status.success() {
            failures += 1;
            eprintln!("run {}: switchover to {target} failed: {report}", i + 1);
        }
        // Let the writer resume, then find the longest silence in the window.
        writer.wait_acks(20, Duration::from_secs(30))?;
        let log = writer.log();
        let gap = log
            .acks
            .windows(2)
            .filter(|w| w[1].1 >= t0 && w[0].1 <= t1 + 5000)
            .map(|w| w[1].1.saturating_sub(w[0].1))
            .max()
            .unwrap_or(0);
        gaps.push(gap);
        durations.push(report["duration_ms"].as_u64().unwrap_or(t1 - t0));
        println!(
            "{:>3} {:>8} {:>14} {:>12}",
            i + 1,
            target,
            gap,
            report["duration_ms"]
        );
    }
    let log = writer.stop();
    let master = bed.status()?["master"]
        .as_str()
        .unwrap_or("db1")
        .to_string();
    let present: BTreeSet<u64> = bed
        .sql(&master, "SELECT id FROM app.seq")?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost = log.acks.iter().filter(|a| !present.contains(&a.0)).count();
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
        "summary: write-unavailability median {} ms, max {} ms; switchover duration median {} ms; \
         lost acknowledged rows {lost}; failed switchovers {failures}; GTID states equal: {equal}",
        median(&gaps),
        gaps.iter().max().copied().unwrap_or(0),
        median(&durations)
    );
    Ok(lost == 0 && failures == 0 && equal)
}
