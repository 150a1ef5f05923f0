//! `bench/failover`: repeated failovers under each fault, with writers
//! inserting side by side through two paths: the VIP (from a client
//! container on the bed's network) and the router's writer port (from this
//! machine, where the router runs, as an application next to its router
//! would). Prints, per trial, the write silence of each path (the longest
//! gap between acknowledged inserts from just before the fault on); per
//! fault, the median and max of each path, the router's difference to the
//! VIP with the target (router median <= VIP median + 50 ms), the
//! fault-to-promotion time from the manager's journal, acknowledged rows
//! lost (every path), and false failovers (control faults that must not
//! fail over: a stall shorter than the detection window, the manager cut
//! off from the master).
//!
//! `myha-bench-failover --myha-bin PATH [--trials N] [--faults a,b,...] [--relays nat,userspace]`
//! The first relay is the bed's router (the demo's `relay: nat` by
//! default); each further one is a second router process of its own, on
//! ports 6043.. (then 6053..), watching the same manager. The router, the
//! manager and the router's writer share this machine: `manager_cutoff`
//! (db1 cut off from this machine) cuts the router's path to db1 as well.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use myha_testbed::{router_path, wait_until, Bed, BedOptions, Result as BedResult};

const FAULTS: [&str; 6] = [
    "mysqld_kill",
    "container_kill",
    "pause",
    "partition",
    "stall_500ms",
    "manager_cutoff",
];

/// The faults that must not fail over.
const CONTROLS: [&str; 2] = ["stall_500ms", "manager_cutoff"];

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
    /// Per relay, the write silence through the router.
    router_ms: Vec<Vec<u64>>,
    promote_ms: Vec<u64>,
    lost: u64,
    /// Per relay, acknowledged rows lost through the router.
    router_lost: Vec<u64>,
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

/// The longest silence between two acknowledged inserts in `acks` from
/// just before the fault on (the writers acknowledge every few ms while
/// the master answers; the fault takes effect a little after the command
/// that inflicts it).
fn silence(acks: &[(u64, u64)], t_fault: u64) -> u64 {
    acks.windows(2)
        .filter(|w| w[1].1 + 1000 >= t_fault)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .max()
        .unwrap_or(0)
}

/// The acknowledged ids of `acks` missing from `table` on `host`.
fn lost(bed: &Bed, host: &str, table: &str, acks: &[(u64, u64)]) -> BedResult<u64> {
    let present: BTreeSet<u64> = bed
        .sql(host, &format!("SELECT id FROM {table}"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    Ok(acks.iter().filter(|a| !present.contains(&a.0)).count() as u64)
}

fn one_trial(
    bin: &str,
    fault: &str,
    trial: usize,
    relays: &[String],
    stats: &mut Stats,
) -> BedResult<()> {
    let mut opts = BedOptions::new(bin);
    opts.vip = true;
    router_path::configure(&mut opts, relays);
    let bed = Bed::start(opts)?;
    bed.wait_ready(Duration::from_secs(30))?;
    // Dropped before the bed: the extra routers end first.
    let routers = router_path::Routers::start(&bed, relays)?;
    let before = epoch(&bed)?;
    let writer = bed.start_writer_with(&bed.vip(), 3306, 1000)?;
    writer.wait_acks(100, Duration::from_secs(30))?;
    let port_writers = routers.start_writers(&bed)?;
    for w in &port_writers {
        w.wait_acks(100, Duration::from_secs(30))?;
    }
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
    for w in &port_writers {
        w.wait_acks(30, Duration::from_secs(30))?;
    }
    let log = writer.stop();
    let port_logs: Vec<router_path::PortLog> = port_writers.into_iter().map(|w| w.stop()).collect();
    let gap = silence(&log.acks, t_fault);
    let router_gaps: Vec<u64> = port_logs
        .iter()
        .map(|l| silence(&l.acks, t_fault))
        .collect();
    let vip_lost = lost(&bed, &new_master, "app.seq", &log.acks)?;
    let mut router_lost = Vec::new();
    for (r, l) in relays.iter().zip(&port_logs) {
        router_lost.push(lost(&bed, &new_master, &router_path::table(r), &l.acks)?);
    }
    let mut promote = None;
    if !control {
        let out = bed.myha(&["history", "--json", "--limit", "10000"])?;
        let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        promote = events
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|e| e["step"] == "promote" && e["status"] == "ok")
            })
            .and_then(|e| e["at_ms"].as_u64())
            .map(|at| at.saturating_sub(t_fault));
    }
    let mut line = format!("  {fault} trial {trial}: VIP {gap} ms");
    for (k, r) in relays.iter().enumerate() {
        line.push_str(&format!(
            ", router {r} {} ms ({:+})",
            router_gaps[k],
            router_gaps[k] as i64 - gap as i64
        ));
    }
    if let Some(p) = promote {
        line.push_str(&format!(", fault->promote {p} ms"));
    }
    let trial_lost = vip_lost + router_lost.iter().sum::<u64>();
    if trial_lost > 0 {
        line.push_str(&format!(", LOST {trial_lost}"));
    }
    println!("{line}");
    // Recorded only once the whole trial has been measured, so that every
    // path has a figure for the same trials.
    stats.unavailable_ms.push(gap);
    for (k, g) in router_gaps.into_iter().enumerate() {
        stats.router_ms[k].push(g);
        stats.router_lost[k] += router_lost[k];
    }
    stats.lost += vip_lost;
    stats.promote_ms.extend(promote);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!(
            "usage: myha-bench-failover --myha-bin PATH [--trials N] [--faults a,b] [--relays nat,userspace]"
        );
        return std::process::ExitCode::from(2);
    };
    let trials: usize = arg(&args, "--trials")
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let faults: Vec<String> = arg(&args, "--faults")
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| FAULTS.iter().map(|f| f.to_string()).collect());
    let relays = match router_path::relays(arg(&args, "--relays").as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    println!(
        "# myha failover benchmark: {trials} trial(s) per fault; writers through the VIP (client container) \
         and through the router's writer port (this machine: {}), client timeout 1 s",
        router_path::describe(&relays)
    );
    let mut rows = Vec::new();
    let mut bad = false;
    for fault in &faults {
        let mut stats = Stats {
            router_ms: vec![Vec::new(); relays.len()],
            router_lost: vec![0; relays.len()],
            ..Stats::default()
        };
        for i in 0..trials {
            if let Err(e) = one_trial(&bin, fault, i + 1, &relays, &mut stats) {
                eprintln!("{fault} trial {}: {e}", i + 1);
                stats.failures.push(e.to_string());
            }
        }
        bad |=
            stats.lost > 0 || stats.router_lost.iter().any(|l| *l > 0) || stats.false_failovers > 0;
        rows.push((fault.clone(), stats));
    }
    let fmt = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
    let mut head = format!(
        "{:<16} {:>6} {:>14} {:>11}",
        "fault", "trials", "VIP med ms", "VIP max"
    );
    for r in &relays {
        head.push_str(&format!(" {:>16} {:>11}", format!("router {r} med"), "max"));
    }
    head.push_str(&format!(
        " {:>15} {:>5} {:>6} {:>7}",
        "fault->promote", "lost", "false", "errors"
    ));
    println!("{head}");
    for (fault, stats) in &rows {
        let mut row = format!(
            "{:<16} {:>6} {:>14} {:>11}",
            fault,
            stats.unavailable_ms.len(),
            fmt(median(&stats.unavailable_ms)),
            fmt(stats.unavailable_ms.iter().copied().max()),
        );
        for g in &stats.router_ms {
            row.push_str(&format!(
                " {:>16} {:>11}",
                fmt(median(g)),
                fmt(g.iter().copied().max())
            ));
        }
        row.push_str(&format!(
            " {:>15} {:>5} {:>6} {:>7}",
            fmt(median(&stats.promote_ms)),
            stats.lost + stats.router_lost.iter().sum::<u64>(),
            stats.false_failovers,
            stats.failures.len()
        ));
        println!("{row}");
    }
    for (fault, stats) in &rows {
        for (k, r) in relays.iter().enumerate() {
            if let (Some(router), Some(vip)) =
                (median(&stats.router_ms[k]), median(&stats.unavailable_ms))
            {
                if CONTROLS.contains(&fault.as_str()) {
                    // No failover to publish: the target is not about these.
                    println!(
                        "control {fault} ({r}): router median {router} ms, VIP median {vip} ms \
                         (router - VIP {:+} ms){}",
                        router as i64 - vip as i64,
                        if fault == "manager_cutoff" {
                            "; the router and its writer are on this machine, which the cut separates from db1"
                        } else {
                            ""
                        }
                    );
                } else {
                    println!("{}", router_path::verdict(r, fault, router, vip));
                }
            }
        }
    }
    if bad {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
