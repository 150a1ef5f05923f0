//! Shared helpers of the integration tests: a bed per test, and waiting on
//! `myha status`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use myha_testbed::{wait_until, Bed, BedOptions};
use serde_json::Value;

/// The CLI under test. `myha agent|manager|router` runs `myhad` from the
/// same directory: a package of its own that `cargo test` does not build
/// for this one, so it is built here (once per test binary; a no-op when
/// it is up to date), never tested stale.
pub fn myha_bin() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-q", "-p", "myhad"]);
        if env!("CARGO_BIN_EXE_myha").contains("/release/") {
            build.arg("--release");
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p myhad");
        assert!(status.success(), "cargo build -p myhad failed");
    });
    env!("CARGO_BIN_EXE_myha")
}

pub fn options() -> BedOptions {
    BedOptions::new(myha_bin())
}

/// A 3-host bed whose status shows db1 master and the others replicas.
pub fn healthy_bed() -> Bed {
    let bed = Bed::start(options()).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    bed
}

pub fn wait_healthy(bed: &Bed, limit: Duration) {
    let r = wait_until(limit, "status: db1 master, replicas healthy", || {
        let st = bed.status()?;
        Ok(st["master"] == "db1"
            && st["epoch_master"] == "db1"
            && st["servers"].as_array().is_some_and(|a| {
                a.iter().all(|s| {
                    s["mysqld_up"] == true
                        && s["host_reachable"] == true
                        && (s["name"] == "db1"
                            || (s["role"] == "replica"
                                && s["io_running"] == "running"
                                && s["sql_running"] == "running"))
                })
            }))
    });
    if let Err(e) = r {
        panic!(
            "{e}\nstatus: {:?}\nmanager log:\n{}",
            bed.status().ok(),
            bed.manager_log()
        );
    }
}

/// Wait until the status shows a master other than `old` and no change
/// in progress; returns the new master.
pub fn wait_master_not(bed: &Bed, old: &str) -> String {
    let mut m = String::new();
    wait_until(Duration::from_secs(30), "a new master", || {
        let st = bed.status()?;
        if let Some(x) = st["master"].as_str().filter(|x| *x != old) {
            if st["in_progress"].is_null() {
                m = x.to_string();
                return Ok(true);
            }
        }
        Ok(false)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", bed.manager_log()));
    m
}

/// Poll one server's status entry until `cond` holds; returns the entry.
pub fn wait_server(
    bed: &Bed,
    host: &str,
    limit: Duration,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let r = wait_until(limit, what, || {
        let s = bed.server_status(host)?;
        let ok = cond(&s);
        last = s;
        Ok(ok)
    });
    if let Err(e) = r {
        panic!(
            "{e}\nlast status of {host}: {last:#}\nmanager log:\n{}",
            bed.manager_log()
        );
    }
    last
}

/// Wait until `host` is a read-only replica of `master` with both replication
/// threads running.
pub fn wait_replicating_from(bed: &Bed, host: &str, master: &str, limit: Duration) {
    let ip = bed.host(master).unwrap().ip.clone();
    wait_server(
        bed,
        host,
        limit,
        &format!("{host} replicating from {master}"),
        |s| {
            s["role"] == "replica"
                && s["read_only"] == true
                && s["io_running"] == "running"
                && s["sql_running"] == "running"
                && s["replicates_from"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&ip))
        },
    );
}

/// The master's `gtid_binlog_pos` read directly.
pub fn binlog_pos(bed: &Bed, host: &str) -> String {
    bed.sql(host, "SELECT @@gtid_binlog_pos")
        .expect("read gtid_binlog_pos")
}

/// A raw HTTP GET (no client library): returns the status code.
pub fn http_status(addr: &str, path: &str, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(3))
            .expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {buf:?}"))
}

/// What [`safety_problems`] also requires.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// Every writer had at least one write acknowledged.
    pub every_writer_acked: bool,
    /// Exactly one server is writable now: the master on record.
    pub one_writable: bool,
}

/// The servers whose mysqld answers `read_only = 0` now.
pub fn writable(bed: &Bed) -> Vec<String> {
    bed.hosts
        .iter()
        .filter(|h| {
            bed.sql(&h.name, "SELECT @@read_only")
                .is_ok_and(|r| r == "0")
        })
        .map(|h| h.name.clone())
        .collect()
}

/// The end of every fault scenario: what went wrong since `from`, if
/// anything. No sample saw two writable servers or two VIP holders, the
/// sampler watched throughout (no pause over 1 s), and every id a writer
/// saw acknowledged is on the master on record (a missing one is printed
/// with where it is found and when it was sent and acknowledged); the
/// writers are stopped.
pub fn safety_problems(
    bed: &Bed,
    sampler: &myha_testbed::Sampler,
    from: std::time::Instant,
    writers: Vec<myha_testbed::PatientWriter>,
    settled: Settled,
) -> Vec<String> {
    let split = sampler.report_between(from, std::time::Instant::now());
    eprintln!("sampler: {split}");
    let mut problems = Vec::new();
    let master = match bed.epoch_master() {
        Ok((_, Some(m))) => m,
        other => return vec![format!("no master on record: {other:?}")],
    };
    for w in writers {
        let log = w.stop();
        let ids = log.acked_ids();
        let missing = myha_testbed::missing_acked(bed, &master, &ids, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("reading the acknowledged ids on {master}: {e}"));
        eprintln!(
            "writer {}: {} acknowledged, {} errors (last: {:?}), {} missing on {master}",
            log.label,
            ids.len(),
            log.errors,
            log.last_error,
            missing.len()
        );
        if settled.every_writer_acked && ids.is_empty() {
            problems.push(format!("writer {} acknowledged nothing", log.label));
        }
        if missing.is_empty() {
            continue;
        }
        for a in log.acks.iter().filter(|a| missing.contains(&a.id)) {
            let on: Vec<String> = bed
                .hosts
                .iter()
                .map(|h| {
                    let has = bed
                        .sql(
                            &h.name,
                            &format!("SELECT COUNT(*) FROM app.patient WHERE id = {}", a.id),
                        )
                        .map(|o| o.trim().to_string())
                        .unwrap_or_else(|e| format!("? ({e})"));
                    let state = bed
                        .sql(&h.name, "SELECT @@gtid_binlog_state")
                        .map(|o| o.trim().to_string())
                        .unwrap_or_default();
                    format!("{}: has {has}, binlog state {state}", h.name)
                })
                .collect();
            eprintln!(
                "missing id {} (client {}): sent at {:+} ms, acked at {:+} ms after the fault; {}",
                a.id,
                a.client,
                a.sent.saturating_duration_since(from).as_millis() as i64,
                a.acked.saturating_duration_since(from).as_millis() as i64,
                on.join("; ")
            );
        }
        problems.push(format!(
            "{} acknowledged writes through `{}` missing on the final master {master}: {missing:?}",
            missing.len(),
            log.label
        ));
    }
    if split.split_writable > 0 {
        problems.push(format!(
            "{} samples with two writable servers",
            split.split_writable
        ));
    }
    if split.split_vip > 0 {
        problems.push(format!("{} samples with two VIP holders", split.split_vip));
    }
    if split.max_interval_ms > 1000 {
        problems.push(format!(
            "the sampler paused {} ms: it did not watch throughout",
            split.max_interval_ms
        ));
    }
    if settled.one_writable {
        let w = writable(bed);
        if w != [master.clone()] {
            problems.push(format!("writable now: {w:?}, master on record {master}"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("sampler: {split}"));
    }
    problems
}

/// A new file readable by its owner only (mode 0600), as every secret
/// file must be; replaces one of the same name.
pub fn write_secret(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

/// Run `myha ARGS` against the bed and require success; its output on
/// failure. Returns the output for the caller to read.
pub fn myha_ok(bed: &Bed, args: &[&str]) -> std::process::Output {
    let out = bed.myha(args).unwrap();
    assert!(
        out.status.success(),
        "myha {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
