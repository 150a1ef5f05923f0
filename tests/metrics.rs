//! Every daemon's `/metrics` parses with a Prometheus text parser, needs a
//! read credential where the daemon's API does, and counts a failover
//! (outcome and durations) once one happens; `/health` answers without a
//! credential and says nothing but `ok`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use myha_testbed::{metric_value, parse_metrics, wait_until, Bed, CLUSTER};

/// A scrape of `url` with `token`, parsed.
fn scrape(bed: &Bed, url: &str, token: Option<&str>) -> myha_testbed::prometheus_parse::Scrape {
    let (code, body) = bed.http("GET", url, token, None).unwrap();
    assert_eq!(code, 200, "GET {url}: {body}");
    parse_metrics(&body).unwrap_or_else(|e| panic!("{url}: {e}\n{body}"))
}

/// Scrape `url` (the monitor's credential) until `ready` holds, 20 s at
/// most; the last scrape.
fn scrape_until(
    bed: &Bed,
    url: &str,
    what: &str,
    ready: impl Fn(&myha_testbed::prometheus_parse::Scrape) -> bool,
) -> myha_testbed::prometheus_parse::Scrape {
    let mut last = None;
    let waited = wait_until(Duration::from_secs(20), what, || {
        let m = scrape(bed, url, Some(&bed.monitor_token));
        let ok = ready(&m);
        last = Some(m);
        Ok(ok)
    });
    match (waited, last) {
        (Ok(()), Some(m)) => m,
        (e, _) => panic!("{what}: {e:?}\n{}", bed.diagnostics()),
    }
}

/// A webhook receiver on loopback: each request's `Authorization` header
/// and JSON body; the first request is answered 500 (the manager must
/// retry it), the others 200.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&got);
        std::thread::spawn(move || {
            let mut first = true;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let (mut length, mut auth) = (0usize, String::new());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let l = line.trim_end().to_string();
                    line.clear();
                    if l.is_empty() {
                        break;
                    }
                    let lower = l.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = l["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = if first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                first = false;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push((auth, v));
                }
            }
        });
        Receiver { port, got }
    }

    fn events(&self) -> Vec<(String, serde_json::Value)> {
        self.got.lock().unwrap().clone()
    }
}

#[test]
fn every_metrics_endpoint_parses_and_a_failover_is_counted() {
    let receiver = Receiver::start();
    let secrets = std::env::temp_dir().join(format!("myha-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&secrets).unwrap();
    let token_file = write_secret(&secrets, "webhook.token", "hook-t0ken-0123456789");
    let mut opts = options();
    opts.router = true;
    opts.manager_yaml = format!(
        "  webhooks:\n    - {{ url: http://127.0.0.1:{}/hook, timeout: 1s, retries: 2, token_file: {} }}\n",
        receiver.port,
        token_file.display()
    );
    let bed = Bed::start(opts).expect("start a bed");
    wait_healthy(&bed, Duration::from_secs(60));
    let manager = format!("{}/metrics", bed.manager_url());
    let router = format!("{}://{}:6035/metrics", bed.scheme(), bed.gateway);
    let c = [("cluster", CLUSTER)];

    // Without a credential: the manager's and the agents' metrics are
    // refused, their liveness answers and tells nothing.
    let db1_agent = bed.agent_url("db1").unwrap();
    for base in [bed.manager_url(), db1_agent.clone()] {
        let (code, _) = bed
            .http("GET", &format!("{base}/metrics"), None, None)
            .unwrap();
        assert_eq!(code, 401, "{base}/metrics without a token");
        let (code, body) = bed
            .http("GET", &format!("{base}/health"), None, None)
            .unwrap();
        assert_eq!((code, body.trim()), (200, "ok"), "{base}/health");
    }

    // The monitor's read credential: the manager's metrics, with the
    // cluster's state.
    let m = scrape_until(&bed, &manager, "the manager's verdict", |m| {
        metric_value(
            m,
            "myha_cluster_verdict",
            &[("cluster", CLUSTER), ("verdict", "healthy")],
        )
        .is_some()
    });
    assert_eq!(
        metric_value(&m, "myha_cluster_failover_ready", &c),
        Some(1.0)
    );
    assert_eq!(metric_value(&m, "myha_manager_leader", &[]), Some(1.0));
    assert_eq!(
        metric_value(
            &m,
            "myha_probe_up",
            &[("cluster", CLUSTER), ("host", "db2")]
        ),
        Some(1.0)
    );
    assert!(
        metric_value(&m, "myha_agent_report_age_seconds", &[("host", "db3")])
            .is_some_and(|a| a < 5.0)
    );
    assert!(metric_value(&m, "myha_replica_lag_seconds", &[("host", "db2")]).is_some());
    assert_eq!(
        metric_value(&m, "myha_failovers_total", &c),
        None,
        "no failover yet"
    );
    // Every agent's, labelled with its cluster and host.
    for h in ["db1", "db2", "db3"] {
        let a = scrape(
            &bed,
            &format!("{}/metrics", bed.agent_url(h).unwrap()),
            Some(&bed.monitor_token),
        );
        let me = [("cluster", CLUSTER), ("host", h)];
        assert_eq!(
            metric_value(&a, "myha_agent_mysqld_up", &me),
            Some(1.0),
            "{h}"
        );
        assert!(
            metric_value(
                &a,
                "myha_agent_reports_total",
                &[("host", h), ("outcome", "accepted")]
            )
            .is_some_and(|n| n > 0.0),
            "{h}"
        );
    }
    // The router's, open like its discovery API.
    // A replica joins the reader pool once it has been fit for the
    // pool's rise time: wait for it (then both states are counted).
    let mut r = scrape(&bed, &router, None);
    let in_pool = |r: &myha_testbed::prometheus_parse::Scrape| {
        metric_value(
            r,
            "myha_router_backends",
            &[("cluster", CLUSTER), ("state", "in")],
        )
    };
    let _ = wait_until(
        Duration::from_secs(30),
        "a replica in the reader pool",
        || {
            r = scrape(&bed, &router, None);
            Ok(in_pool(&r).is_some_and(|v| v >= 1.0))
        },
    );
    assert_eq!(
        in_pool(&r).map(|v| v >= 1.0),
        Some(true),
        "the router's pool: {r:?}"
    );
    assert!(metric_value(
        &r,
        "myha_router_backends",
        &[("cluster", CLUSTER), ("state", "out")]
    )
    .is_some());
    assert!(metric_value(&r, "myha_router_held_writers", &c).is_some());

    // A failover: counted, with its duration and its steps' durations.
    let (epoch, _) = bed.epoch_master().unwrap();
    bed.kill_mysqld("db1").unwrap();
    let new = bed
        .wait_failover("db1", epoch, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no failover\n{}", bed.diagnostics()));
    let m = scrape_until(&bed, &manager, "the failover", |m| {
        metric_value(
            m,
            "myha_failovers_total",
            &[("cluster", CLUSTER), ("outcome", "completed")],
        )
        .is_some()
    });
    assert_eq!(
        metric_value(
            &m,
            "myha_failovers_total",
            &[("cluster", CLUSTER), ("outcome", "completed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "myha_operation_duration_seconds_count",
            &[("cluster", CLUSTER), ("kind", "failover")]
        ),
        Some(1.0)
    );
    let took = metric_value(
        &m,
        "myha_operation_duration_seconds_sum",
        &[("kind", "failover")],
    )
    .unwrap();
    assert!(
        took > 0.0 && took < 60.0,
        "failover took {took} s by the metrics"
    );
    assert!(
        metric_value(
            &m,
            "myha_operation_step_duration_seconds_count",
            &[("kind", "failover"), ("step", "promote")]
        )
        .is_some_and(|n| n >= 1.0),
        "promote's duration"
    );
    // The new master's agent learns the epoch from the manager's next
    // answer to one of its reports, a moment after the failover ends.
    scrape_until(
        &bed,
        &format!("{}/metrics", bed.agent_url(&new).unwrap()),
        "the new master's agent at the new epoch",
        |a| metric_value(a, "myha_agent_epoch", &[]).is_some_and(|e| e > epoch as f64),
    );
    eprintln!("failover to {new}: {took:.3} s by the manager's metrics");
    // Every journaled event reached the webhook, with its token; the
    // first attempt, answered 500, was retried.
    wait_until(
        Duration::from_secs(20),
        "the failover's finish at the webhook",
        || Ok(receiver.events().iter().any(|(_, e)| e["step"] == "finish")),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", receiver.events()));
    let events = receiver.events();
    assert!(
        events
            .iter()
            .all(|(auth, _)| auth == "Bearer hook-t0ken-0123456789"),
        "{events:?}"
    );
    for step in ["adopt_master", "detect", "promote", "finish"] {
        assert!(
            events
                .iter()
                .any(|(_, e)| e["step"] == step && e["cluster"] == CLUSTER),
            "no {step} event at the webhook: {events:?}"
        );
    }
    std::fs::remove_dir_all(&secrets).unwrap();
    // The manager's log is a file: text without colour codes.
    let log = bed.manager_log();
    assert!(log.contains("manager started"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the manager's log");
}
