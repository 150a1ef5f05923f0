//! `bench/router`: sysbench through myha's router, through HAProxy (TCP
//! mode, equivalent configuration) and direct to the server, side by side
//! and alternating, on one bed. All three reach the master (the writer
//! path): the comparison is the proxies' own cost. Prints throughput,
//! p95/p99 latency (from sysbench's histogram), the proxy's CPU seconds
//! per 1,000 queries, the whole host's busy CPU seconds and context
//! switches per query (with `relay: nat` the forwarding is done by the
//! kernel, in softirq time that no proxy process is charged for: the host
//! columns count it), and the ratios. Targets: `direct`, `myha` (user-space
//! relay), `myha-n` (`relay: nat`, a second router process: the kernel
//! forwards by NAT, so the router process is charged almost nothing and
//! only the host columns tell its cost), `haproxy`. Each cell ends with
//! whether `myha-n` meets the target against HAProxy.
//!
//! `myha-bench-router --myha-bin PATH [--seconds N] [--rounds N]
//! [--paths writer,reader] [--tests oltp_point_select,oltp_read_only]
//! [--threads 8,64]` (the filters default to every cell)
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use myha_testbed::{Bed, BedError, BedOptions, Result};

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// CPU seconds (user + system) used so far by a process.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, tail)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = tail.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after ')'.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The host's busy CPU seconds (all CPUs: user, nice, system, irq,
/// softirq, steal) and context switches so far.
fn host_counters() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let mut busy = 0.0;
    let mut ctxt = 0.0;
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<f64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal
                busy = [0, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|i| v.get(*i))
                    .sum::<f64>()
                    / 100.0;
            }
            Some("ctxt") => ctxt = f.next().and_then(|x| x.parse().ok()).unwrap_or(0.0),
            _ => {}
        }
    }
    (busy, ctxt)
}

#[derive(Debug, Default, Clone)]
struct Run {
    qps: f64,
    p95_ms: f64,
    p99_ms: f64,
    queries: f64,
    cpu_s: f64,
    host_cpu_s: f64,
    ctxt: f64,
}

fn sysbench(
    test: &str,
    host: &str,
    port: u16,
    threads: u32,
    seconds: u32,
    prepare: bool,
) -> Result<String> {
    let mut cmd = Command::new("sysbench");
    cmd.args([
        test,
        &format!("--mysql-host={host}"),
        &format!("--mysql-port={port}"),
        "--mysql-user=app",
        "--mysql-password=myha-app-pw",
        "--mysql-db=sbtest",
        "--tables=4",
        "--table-size=10000",
        &format!("--threads={threads}"),
        &format!("--time={seconds}"),
        "--histogram=on",
        "--percentile=99",
        "--db-ps-mode=disable",
    ]);
    cmd.arg(if prepare { "prepare" } else { "run" });
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BedError::Other(format!("sysbench: {e}")))?;
    if !out.status.success() {
        return Err(BedError::Other(format!(
            "sysbench failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Throughput and percentiles from sysbench's report and histogram.
fn parse(out: &str) -> Run {
    let mut run = Run::default();
    let mut hist: Vec<(f64, f64)> = Vec::new();
    for line in out.lines() {
        let l = line.trim();
        if l.starts_with("queries:") {
            // queries:   123456 (12345.67 per sec.)
            let mut it = l.split_whitespace();
            run.queries = it.nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            run.qps = l
                .split('(')
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
        }
        // histogram lines: "   0.250 |****   123"
        if let Some((value, rest)) = l.split_once('|') {
            if let (Ok(v), Some(Ok(c))) = (
                value.trim().parse::<f64>(),
                rest.split_whitespace().last().map(str::parse::<f64>),
            ) {
                hist.push((v, c));
            }
        }
    }
    let total: f64 = hist.iter().map(|h| h.1).sum();
    let pct = |p: f64| {
        let mut acc = 0.0;
        for (v, c) in &hist {
            acc += c;
            if acc >= total * p {
                return *v;
            }
        }
        0.0
    };
    run.p95_ms = pct(0.95);
    run.p99_ms = pct(0.99);
    run
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!("usage: myha-bench-router --myha-bin PATH [--seconds N] [--rounds N]");
        return std::process::ExitCode::from(2);
    };
    let seconds: u32 = arg(&args, "--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rounds: u32 = arg(&args, "--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let list = |flag: &str, all: &[&str]| -> Vec<String> {
        arg(&args, flag).map_or_else(
            || all.iter().map(|s| s.to_string()).collect(),
            |v| v.split(',').map(str::to_string).collect(),
        )
    };
    let cells = Cells {
        paths: list("--paths", &["writer", "reader"]),
        tests: list("--tests", &["oltp_point_select", "oltp_read_only"]),
        threads: list("--threads", &["8", "64"])
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect(),
    };
    match bench(&bin, seconds, rounds, &cells) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Which cells of the table to run.
struct Cells {
    paths: Vec<String>,
    tests: Vec<String>,
    threads: Vec<u32>,
}

/// A proxy process of the benchmark, killed when dropped.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        myha_testbed::terminate(&mut self.0);
    }
}

/// Another router process, the bed's configuration with `relay` and its
/// ports moved up by `offset` (6033 + offset, ...); waits until it serves
/// and relays as asked.
fn spawn_router(bin: &str, bed: &Bed, relay: &str, offset: u16) -> Result<Proxy> {
    let gw = &bed.gateway;
    let yaml =
        std::fs::read_to_string(&bed.config_path).map_err(|e| BedError::Other(e.to_string()))?;
    let [w, r, h] = [6033, 6034, 6035].map(|p: u16| p + offset);
    let derived = yaml
        .replace(":6033", &format!(":{w}"))
        .replace(":6034", &format!(":{r}"))
        .replace(":6035", &format!(":{h}"))
        .replacen(
            "writer_hold_timeout: 10s",
            &format!("writer_hold_timeout: 10s, relay: {relay}"),
            1,
        );
    if !derived.contains(&format!("relay: {relay}")) {
        return Err(BedError::Other(format!(
            "cannot derive the {relay}-relay router's config"
        )));
    }
    let cfg = bed.dir.join(format!("myha-{relay}.yaml"));
    std::fs::write(&cfg, derived).map_err(|e| BedError::Other(e.to_string()))?;
    let log = std::fs::File::create(bed.dir.join(format!("router-{relay}.log")))
        .map_err(|e| BedError::Other(e.to_string()))?;
    let err = log
        .try_clone()
        .map_err(|e| BedError::Other(e.to_string()))?;
    let router = Proxy(
        Command::new(bin)
            .args(["router", "--config"])
            .arg(&cfg)
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| BedError::Other(format!("myha router: {e}")))?,
    );
    let curl = |path: &str| -> Result<String> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "2"])
            .arg(format!("http://{gw}:{h}{path}"))
            .output()
            .map_err(|e| BedError::Other(e.to_string()))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let nat_on = |body: String| {
        myha_testbed::parse_metrics(&body)
            .ok()
            .and_then(|m| myha_testbed::metric_value(&m, "myha_router_nat", &[]))
            == Some(1.0)
    };
    myha_testbed::wait_until(
        Duration::from_secs(20),
        &format!(
            "the {relay}-relay router has a writer and relays as asked (see router-{relay}.log)"
        ),
        || {
            Ok(
                curl(&format!("/v1/clusters/{}/endpoints", myha_testbed::CLUSTER))?
                    .contains("\"writer\":{")
                    && nat_on(curl("/metrics")?),
            )
        },
    )?;
    Ok(router)
}

fn bench(bin: &str, seconds: u32, rounds: u32, cells: &Cells) -> Result<()> {
    let mut opts = BedOptions::new(bin);
    opts.router = true;
    // sysbench's threads all come from this machine: one source.
    opts.router_extra = ", max_connections_per_source: 1000".to_string();
    let mut bed = Bed::start(opts)?;
    bed.wait_ready(Duration::from_secs(30))?;
    let master = bed.host("db1")?.ip.clone();
    let r2 = bed.host("db2")?.ip.clone();
    let r3 = bed.host("db3")?.ip.clone();
    let gw = bed.gateway.clone();
    // HAProxy in TCP mode, the equivalent of the router's writer port.
    let cfg = bed.dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\
             listen writer\n  bind {gw}:6043\n  option tcp-check\n  server db1 {master}:3306 check inter 1s\n\
             listen reader\n  bind {gw}:6044\n  balance roundrobin\n  option tcp-check\n  server db2 {r2}:3306 check inter 1s\n  server db3 {r3}:3306 check inter 1s\n"
        ),
    )
    .map_err(|e| BedError::Other(e.to_string()))?;
    let haproxy = Proxy(
        Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BedError::Other(format!("haproxy: {e}")))?,
    );
    let router_pid = bed
        .router_pid()
        .ok_or_else(|| BedError::Other("no router".into()))?;
    // Another router, same configuration: `relay: nat` on ports
    // 6233/6234/6235.
    let nat_router = spawn_router(bin, &bed, "nat", 200)?;
    std::thread::sleep(Duration::from_secs(2));
    sysbench("oltp_read_only", &master, 3306, 4, 1, true)?;
    let writer_path: [(&str, &str, u16, Option<u32>); 4] = [
        ("direct", master.as_str(), 3306, None),
        ("myha", gw.as_str(), 6033, Some(router_pid)),
        ("myha-n", gw.as_str(), 6233, Some(nat_router.0.id())),
        ("haproxy", gw.as_str(), 6043, Some(haproxy.0.id())),
    ];
    // Reads: direct to one replica; both proxies balance over two.
    let reader_path: [(&str, &str, u16, Option<u32>); 4] = [
        ("direct", r2.as_str(), 3306, None),
        ("myha", gw.as_str(), 6034, Some(router_pid)),
        ("myha-n", gw.as_str(), 6234, Some(nat_router.0.id())),
        ("haproxy", gw.as_str(), 6044, Some(haproxy.0.id())),
    ];
    println!("# myha router benchmark: sysbench 1.0 through the writer path, {seconds} s per run, {rounds} round(s), alternating");
    println!(
        "{:<18} {:>4} {:<8} {:>10} {:>9} {:>9} {:>14} {:>14} {:>8}",
        "workload",
        "thr",
        "target",
        "qps",
        "p95 ms",
        "p99 ms",
        "cpu s/1k q",
        "host s/1k q",
        "ctxt/q"
    );
    for (path, targets) in [("writer", &writer_path), ("reader", &reader_path)] {
        if !cells.paths.iter().any(|p| p == path) {
            continue;
        }
        println!("## {path} path");
        for test in cells.tests.iter().map(String::as_str) {
            for &threads in &cells.threads {
                let mut acc: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
                for _ in 0..rounds {
                    for (name, host, port, pid) in targets.iter() {
                        let before = pid.map_or(0.0, cpu_seconds);
                        let (host0, ctxt0) = host_counters();
                        let out =
                            sysbench(test, host, *port, threads, seconds, false).map_err(|e| {
                                BedError::Other(format!(
                                    "{path} path, {test}, {threads} threads, through {name}: {e}"
                                ))
                            })?;
                        let (host1, ctxt1) = host_counters();
                        let mut r = parse(&out);
                        r.cpu_s = pid.map_or(0.0, |p| cpu_seconds(p) - before);
                        r.host_cpu_s = host1 - host0;
                        r.ctxt = ctxt1 - ctxt0;
                        acc.entry(name).or_default().push(r);
                    }
                }
                let avg = |v: &[Run], f: fn(&Run) -> f64| {
                    v.iter().map(f).sum::<f64>() / v.len().max(1) as f64
                };
                let mut qps = BTreeMap::new();
                let mut p99 = BTreeMap::new();
                let mut host_k = BTreeMap::new();
                for (name, runs) in &acc {
                    let q = avg(runs, |r| r.qps);
                    let cpu_per_k = avg(runs, |r| {
                        if r.queries > 0.0 {
                            r.cpu_s / r.queries * 1000.0
                        } else {
                            0.0
                        }
                    });
                    let per_k = |f: fn(&Run) -> f64| {
                        runs.iter()
                            .map(|r| {
                                if r.queries > 0.0 {
                                    f(r) / r.queries
                                } else {
                                    0.0
                                }
                            })
                            .sum::<f64>()
                            / runs.len().max(1) as f64
                    };
                    let host_per_k = per_k(|r| r.host_cpu_s) * 1000.0;
                    let ctxt_per_q = per_k(|r| r.ctxt);
                    qps.insert(*name, q);
                    p99.insert(*name, avg(runs, |r| r.p99_ms));
                    host_k.insert(*name, host_per_k);
                    println!(
                        "{:<18} {:>4} {:<8} {:>10.0} {:>9.2} {:>9.2} {:>14} {:>14.4} {:>8.2}",
                        test,
                        threads,
                        name,
                        q,
                        avg(runs, |r| r.p95_ms),
                        avg(runs, |r| r.p99_ms),
                        if *name == "direct" {
                            "-".to_string()
                        } else {
                            format!("{cpu_per_k:.4}")
                        },
                        host_per_k,
                        ctxt_per_q
                    );
                }
                let get = |n: &str| qps.get(n).copied().unwrap_or(0.0);
                let mut line = format!("{test:<18} {threads:>4} ratios to haproxy:");
                for n in ["myha", "myha-n"] {
                    line.push_str(&format!(" {n} {:.2}x", get(n) / get("haproxy").max(1.0)));
                }
                line.push_str("; to direct:");
                for n in ["myha", "myha-n", "haproxy"] {
                    line.push_str(&format!(" {n} {:.2}x", get(n) / get("direct").max(1.0)));
                }
                println!("{line}");
                // The target against HAProxy: throughput at least
                // 1.2x, host CPU per query lower, p99 no worse.
                let of = |m: &BTreeMap<&str, f64>, n: &str| m.get(n).copied().unwrap_or(f64::NAN);
                let n = "myha-n";
                let t = get(n) >= 1.2 * get("haproxy");
                let c = of(&host_k, n) < of(&host_k, "haproxy");
                let l = of(&p99, n) <= of(&p99, "haproxy");
                println!(
                    "{test:<18} {threads:>4} target {n}: throughput>=1.2x {}, host cpu/q lower {}, p99 no worse {} => {}",
                    yes(t), yes(c), yes(l), if t && c && l { "MET" } else { "NOT MET" }
                );
            }
        }
    }
    drop(haproxy);
    drop(nat_router);
    bed.stop_manager();
    Ok(())
}
