//! A continuous writer for failover tests and benchmarks: inserts
//! sequential ids through one address (the VIP or a router port) and logs
//! every acknowledged insert, so that a test can check that no
//! acknowledged row was lost and measure how long writes were unavailable.
//!
//! `myha-writer --host H [--port P] --out FILE --stop-file FILE [--max-seconds N] [--query-timeout-ms N] [--ssl-ca FILE [--ssl-name NAME]]`
//! With `--ssl-ca` it connects with TLS, the server's certificate checked
//! against that CA and for `--ssl-name` (a name every server's certificate
//! carries: the writer goes through the VIP or a router), else for `H`.
//! Output lines: `ack <id> <unix_ms>` for each insert the server confirmed,
//! `err <id> <unix_ms> <message>` for each failed attempt.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(host), Some(out), Some(stop)) = (
        arg(&args, "--host"),
        arg(&args, "--out"),
        arg(&args, "--stop-file"),
    ) else {
        eprintln!(
            "usage: myha-writer --host H [--port P] --out FILE --stop-file FILE [--max-seconds N] \
             [--query-timeout-ms N] [--ssl-ca FILE [--ssl-name NAME]]"
        );
        return std::process::ExitCode::from(2);
    };
    let port: u16 = arg(&args, "--port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(3306);
    let max = Duration::from_secs(
        arg(&args, "--max-seconds")
            .and_then(|p| p.parse().ok())
            .unwrap_or(600),
    );
    // How long one INSERT may take before the writer gives up on the
    // connection (its own client timeout, as an application would have).
    let query_timeout = Duration::from_millis(
        arg(&args, "--query-timeout-ms")
            .and_then(|p| p.parse().ok())
            .unwrap_or(10_000),
    );
    let mut log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{out}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("myha-app-pw"))
        .db_name(Some("app"))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .ssl_opts(arg(&args, "--ssl-ca").map(|ca| {
            mysql_async::SslOpts::default()
                .with_root_certs(vec![std::path::PathBuf::from(ca).into()])
                .with_danger_tls_hostname_override(arg(&args, "--ssl-name"))
        }));
    let started = Instant::now();
    let mut conn: Option<Conn> = None;
    let mut id: u64 = 1;
    while started.elapsed() < max && !std::path::Path::new(&stop).exists() {
        if conn.is_none() {
            match tokio::time::timeout(Duration::from_millis(500), Conn::new(opts.clone())).await {
                Ok(Ok(c)) => conn = Some(c),
                Ok(Err(e)) => {
                    let _ = writeln!(log, "err {id} {} connect: {e}", now_ms());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(_) => {
                    let _ = writeln!(log, "err {id} {} connect timeout", now_ms());
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sql = format!("INSERT INTO app.seq (id) VALUES ({id})");
        match tokio::time::timeout(query_timeout, c.query_drop(sql)).await {
            Ok(Ok(())) => {
                let _ = writeln!(log, "ack {id} {}", now_ms());
                id += 1;
            }
            // Retried with the same id: a duplicate means the earlier
            // attempt did commit, but it was never acknowledged to us.
            Ok(Err(mysql_async::Error::Server(e))) if e.code == 1062 => {
                let _ = writeln!(log, "dup {id} {}", now_ms());
                id += 1;
            }
            Ok(Err(e)) => {
                let _ = writeln!(log, "err {id} {} {e}", now_ms());
                conn = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                let _ = writeln!(log, "err {id} {} query timeout", now_ms());
                conn = None;
            }
        }
    }
    let _ = log.flush();
    std::process::ExitCode::SUCCESS
}
