//! The fault campaign of issue 11 (a benchmark, not a test; `bench/chaos`
//! runs it): random faults with a printed seed on one Docker bed, writers
//! through the VIP and the router (and on the master's own address) from
//! an application host with 60 s client timeouts; each fault healed, then
//! checked (acknowledged writes on the final master, split-brain samples
//! every 100 ms, every server back within 30 s, no failover in the control
//! cases). Prints a table per fault kind; exits non-zero if anything was
//! lost, split, stranded or falsely failed over.
//!
//! `myha-chaos --myha-bin PATH [--seed N] [--faults N] [--kinds a,b|all]
//!  [--pause-max-s N] [--relay nat|userspace]`
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use myha_testbed::chaos::{self, Kind};

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "myha-chaos --myha-bin PATH [--seed N] [--faults N] [--kinds a,b|all] [--pause-max-s N] [--relay nat|userspace]\nkinds: {}",
            Kind::ALL.map(Kind::name).join(",")
        );
        return ExitCode::SUCCESS;
    }
    let Some(bin) = arg(&args, "--myha-bin") else {
        eprintln!("--myha-bin PATH is required");
        return ExitCode::from(2);
    };
    let mut opts = chaos::Options::new(bin);
    if let Some(s) = arg(&args, "--seed") {
        match s.parse() {
            Ok(v) => opts.seed = v,
            Err(e) => {
                eprintln!("--seed {s}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(s) = arg(&args, "--faults") {
        match s.parse() {
            Ok(v) => opts.faults = v,
            Err(e) => {
                eprintln!("--faults {s}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(s) = arg(&args, "--kinds") {
        match chaos::parse_kinds(&s) {
            Ok(k) => opts.kinds = k,
            Err(e) => {
                eprintln!("--kinds: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(s) = arg(&args, "--pause-max-s") {
        match s.parse() {
            Ok(v) => opts.pause_max = Duration::from_secs(v),
            Err(e) => {
                eprintln!("--pause-max-s {s}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(r) = arg(&args, "--relay") {
        if r != "nat" && r != "userspace" {
            eprintln!("--relay {r}: one of nat, userspace");
            return ExitCode::from(2);
        }
        opts.router_extra = format!(", relay: {r}");
    }
    println!(
        "myha-chaos: seed {} ({} faults of {})",
        opts.seed,
        opts.faults,
        opts.kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    let report = match chaos::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("campaign failed to run (seed {}): {e}", opts.seed);
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}", report.table());
    if report.ok() {
        println!("OK: nothing lost, no split, nothing stranded, no false failover");
        ExitCode::SUCCESS
    } else {
        for r in report.results.iter().filter(|r| r.bad()) {
            println!("{}\n  {}", r.line(), r.split);
        }
        println!("\n{}", report.diagnostics);
        println!(
            "FAILED (seed {}): rerun with --seed {}",
            report.seed, report.seed
        );
        ExitCode::FAILURE
    }
}
