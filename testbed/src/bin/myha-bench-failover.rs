//! `bench/failover`: repeated failovers under each fault, with a writer
//! inserting through the VIP. Prints, per fault, the write-unavailability
//! (last acknowledged insert before the fault to the first after it),
//! the fault-to-promotion time from the manager's journal, acknowledged
//! rows lost, and false failovers (control faults that must not fail over:
//! a stall shorter than the detection window, the manager cut off from
//! the master).
//!
//! `myha-bench-failover --myha-bin PATH [--trials N] [--faults a,b,...]`
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use myha_testbed::{wait_until, Bed, BedOptions, Result as BedResult};

const FAULTS: [&str; 6] = [
    "mysqld_kill",
    "container_kill",
    "pause",
    "partition",
    "stall_500ms",
    "manager_cutoff",
];

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

#[derive(Default)]
struct Stats {
    unavailable_ms: Vec<u64>,
    promote_ms: Vec<u64>,
    lost: u64,
    false_failovers: u64,
    failures: Vec<String>,
}

fn median(v: &[u64]) -> Option<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied()
}

fn epoch(bed: &Bed) -> BedResult<u64> {
    Ok(bed.status()?["epoch"].as_u64().unwrap_or(0))
}

fn one_trial(bin: &str, fault: &str, stats: &mut Stats) -> BedResult<()> {
    let mut opts = BedOptions::new(bin);
    opts.vip = true;
    let bed = Bed::start(opts)?;
    bed.wait_ready(Duration::from_secs(30))?;
    let before = epoch(&bed)?;
    let writer = bed.start_writer_with(&bed.vip(), 3306, 1000)?;
    writer.wait_acks(100, Duration::from_secs(30))?;
    let t_fault = now_ms();
    let control = match fault {
        "mysqld_kill" => {
            bed.kill_mysqld("db1")?;
            false
        }
        "container_kill" => {
            bed.kill_container("db1")?;
            false
        }
        "pause" => {
            bed.pause("db1")?;
            false
        }
        "partition" => {
            bed.partition("db1")?;
            false
        }
        "stall_500ms" => {
            bed.pause("db1")?;
            std::thread::sleep(Duration::from_millis(500));
            bed.unpause("db1")?;
            true
        }
        "manager_cutoff" => {
            bed.cut_from_manager("db1")?;
            true
        }
        other => {
            return Err(myha_testbed::BedError::Other(format!(
                "unknown fault {other}"
            )))
        }
    };
    let new_master = if control {
        std::thread::sleep(Duration::from_secs(5));
        if epoch(&bed)? != before {
            stats.false_failovers += 1;
        }
        if fault == "manager_cutoff" {
            bed.heal("db1")?;
        }
        "db1".to_string()
    } else {
        let mut m = String::new();
        wait_until(Duration::from_secs(30), "a new master", || {
            let st = bed.status()?;
            if let Some(x) = st["master"].as_str().filter(|x| *x != "db1") {
                if st["in_progress"].is_null() {
                    m = x.to_string();
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        m
    };
    writer.wait_acks(30, Duration::from_secs(30))?;
    let log = writer.stop();
    // The outage is the longest silence between two acknowledged writes
    // from just before the fault on (the writer acknowledges every few ms
    // while the master answers; the fault takes effect a little after the
    // command that inflicts it).
    let gap = log
        .acks
        .windows(2)
        .filter(|w| w[1].1 + 1000 >= t_fault)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .max()
        .unwrap_or(0);
    stats.unavailable_ms.push(gap);
    let present: BTreeSet<u64> = bed
        .sql(&new_master, "SELECT id FROM app.seq")?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    stats.lost += log.acks.iter().filter(|a| !present.contains(&a.0)).count() as u64;
    if !control {
        let out = bed.myha(&["history", "--json"])?;
        let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(at) = events
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|e| e["step"] == "promote" && e["status"] == "ok")
            })
            .and_then(|e| e["at_ms"].as_u64())
        {
            stats.promote_ms.push(at.saturating_sub(t_fault));
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!("usage: myha-bench-failover --myha-bin PATH [--trials N] [--faults a,b]");
        return std::process::ExitCode::from(2);
    };
    let trials: usize = arg(&args, "--trials")
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let faults: Vec<String> = arg(&args, "--faults")
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| FAULTS.iter().map(|f| f.to_string()).collect());
    println!("# myha failover benchmark: {trials} trial(s) per fault, writer through the VIP (client timeout 1 s)");
    println!(
        "{:<16} {:>6} {:>14} {:>11} {:>15} {:>5} {:>6} {:>7}",
        "fault",
        "trials",
        "unavail med ms",
        "unavail max",
        "fault->promote",
        "lost",
        "false",
        "errors"
    );
    let mut bad = false;
    for fault in &faults {
        let mut stats = Stats::default();
        for i in 0..trials {
            if let Err(e) = one_trial(&bin, fault, &mut stats) {
                eprintln!("{fault} trial {}: {e}", i + 1);
                stats.failures.push(e.to_string());
            }
        }
        let fmt = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
        println!(
            "{:<16} {:>6} {:>14} {:>11} {:>15} {:>5} {:>6} {:>7}",
            fault,
            trials,
            fmt(median(&stats.unavailable_ms)),
            fmt(stats.unavailable_ms.iter().copied().max()),
            fmt(median(&stats.promote_ms)),
            stats.lost,
            stats.false_failovers,
            stats.failures.len()
        );
        bad |= stats.lost > 0 || stats.false_failovers > 0;
    }
    if bad {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
