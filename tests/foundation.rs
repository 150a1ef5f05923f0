//! Acceptance of the foundation: a real MariaDB cluster in Docker, agents
//! reporting, the manager's live topology, `myha check`, tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use common::*;
use myha_core::gtid::MariaGtidPos;
use myha_testbed::wait_until;

#[test]
fn status_shows_master_replicas_and_gtid_positions() {
    let bed = healthy_bed();
    let st = bed.status().unwrap();
    assert_eq!(st["master"], "db1");
    let servers = st["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    for s in servers {
        for key in [
            "name",
            "address",
            "role",
            "mysqld_up",
            "host_reachable",
            "read_only",
            "gtid_position",
            "io_running",
            "sql_running",
            "last_error",
            "lag_seconds",
            "age_ms",
        ] {
            assert!(s.get(key).is_some(), "status lacks {key}: {s}");
        }
    }
    let db1 = bed.server_status("db1").unwrap();
    assert_eq!(db1["role"], "master");
    assert_eq!(db1["read_only"], false);
    for r in ["db2", "db3"] {
        let s = bed.server_status(r).unwrap();
        assert_eq!(s["role"], "replica", "{s}");
        assert_eq!(s["read_only"], true, "{s}");
        assert!(s["age_ms"].as_u64().unwrap() < 2000, "{s}");
    }
    // The positions shown are the servers' own.
    for h in ["db1", "db2", "db3"] {
        let direct = MariaGtidPos::from_str(&binlog_pos(&bed, h)).unwrap();
        let shown = wait_server(&bed, h, Duration::from_secs(5), "status GTID", |s| {
            s["gtid_position"]
                .as_str()
                .and_then(|g| MariaGtidPos::from_str(g).ok())
                .is_some_and(|p| p.covers(&direct))
        });
        assert!(shown["gtid_position"].is_string());
    }
    // The human table names every server and role.
    let out = bed.myha(&["status"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("db1") && text.contains("master") && text.contains("replica"),
        "{text}"
    );
    probe_in_one_batch(&bed);
}

/// The probe's one-round-trip batch on a real replica: with the heartbeat
/// table, without it or without the right to read it (the batch stops at
/// the heartbeat, the facts are read in a second round trip and the
/// connection stays usable), and on the master.
fn probe_in_one_batch(bed: &myha_testbed::Bed) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = |h: &str| {
        myha_mysql::Db::new(
            myha_mysql::Endpoint {
                host: bed.host(h).unwrap().ip.clone(),
                port: 3306,
                user: myha_testbed::ADMIN_USER.into(),
                password: myha_testbed::ADMIN_PASSWORD.into(),
                tls: None,
            },
            myha_mysql::Timeouts {
                connect: Duration::from_secs(5),
                query: Duration::from_secs(5),
            },
        )
    };
    let opts = |table: &str| myha_mysql::FactsOptions {
        flavor: myha_core::flavor::Flavor::Mariadb,
        heartbeat_table: table.into(),
    };
    rt.block_on(async {
        let mut replica = db("db2");
        for (table, lag) in [
            ("myha.heartbeat", true),
            ("myha.no_such_table", false),
            // No privilege there (error 1142): lag unknown, server up.
            ("no_such_schema.heartbeat", false),
            ("myha.heartbeat", true),
        ] {
            let f = myha_mysql::collect_facts(&mut replica, &opts(table))
                .await
                .unwrap_or_else(|e| panic!("probe of db2 with {table}: {e}"));
            assert!(replica.is_connected(), "{table}: connection dropped");
            let repl = f.replication.as_ref().expect("db2 replicates");
            assert_eq!(repl.source_server_id, Some(1), "{f:?}");
            assert!(f.read_only && !f.gtid_executed.is_empty(), "{f:?}");
            assert_eq!(f.heartbeat_lag_ms.is_some(), lag, "{table}: {f:?}");
        }
        let master = myha_mysql::collect_facts(&mut db("db1"), &opts("myha.heartbeat"))
            .await
            .unwrap_or_else(|e| panic!("probe of db1: {e}"));
        assert!(
            master.replication.is_none() && !master.read_only,
            "{master:?}"
        );
        assert_eq!(master.heartbeat_lag_ms, None, "{master:?}");
    });
}

#[test]
fn replicas_positions_match_master_within_2s_after_100_writes() {
    let bed = healthy_bed();
    bed.sql(
        "db1",
        "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))",
    )
    .unwrap();
    let inserts: String = (1..=100)
        .map(|i| format!("INSERT INTO app.t VALUES ({i}, 'row{i}');"))
        .collect();
    bed.sql("db1", &inserts).unwrap();
    let after_writes = Instant::now();
    let master_pos = MariaGtidPos::from_str(&binlog_pos(&bed, "db1")).unwrap();
    for r in ["db2", "db3"] {
        wait_server(
            &bed,
            r,
            Duration::from_secs(2).saturating_sub(after_writes.elapsed()),
            "replica reaches the master's position",
            |s| {
                s["gtid_position"]
                    .as_str()
                    .and_then(|g| MariaGtidPos::from_str(g).ok())
                    .is_some_and(|p| p.covers(&master_pos))
            },
        );
    }
    assert!(after_writes.elapsed() < Duration::from_secs(2));
    for r in ["db2", "db3"] {
        assert_eq!(bed.sql(r, "SELECT COUNT(*) FROM app.t").unwrap(), "100");
    }
}

#[test]
fn stopped_sql_thread_shows_and_lag_grows() {
    let bed = healthy_bed();
    bed.sql(
        "db1",
        "CREATE TABLE app.w (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .unwrap();
    bed.sql("db3", "STOP SLAVE SQL_THREAD").unwrap();
    let stopped_at = Instant::now();
    wait_server(
        &bed,
        "db3",
        Duration::from_secs(2),
        "db3 SQL thread shown stopped",
        |s| s["sql_running"] == "stopped" && s["io_running"] == "running",
    );
    assert!(stopped_at.elapsed() < Duration::from_secs(2));
    for _ in 0..5 {
        bed.sql("db1", "INSERT INTO app.w VALUES ()").unwrap();
    }
    let first = bed.server_status("db3").unwrap()["lag_seconds"]
        .as_f64()
        .expect("lag known");
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..5 {
        bed.sql("db1", "INSERT INTO app.w VALUES ()").unwrap();
    }
    let second = bed.server_status("db3").unwrap()["lag_seconds"]
        .as_f64()
        .expect("lag known");
    assert!(
        second >= first + 1.0,
        "lag did not grow: {first} then {second}"
    );
    // db2 keeps up meanwhile.
    let db2 = bed.server_status("db2").unwrap();
    assert!(db2["lag_seconds"].as_f64().unwrap() < 1.0, "{db2}");
    // And once restarted, db3 catches up.
    bed.sql("db3", "START SLAVE SQL_THREAD").unwrap();
    wait_server(
        &bed,
        "db3",
        Duration::from_secs(10),
        "db3 lag back under 1s",
        |s| s["sql_running"] == "running" && s["lag_seconds"].as_f64().is_some_and(|l| l < 1.0),
    );
}

#[test]
fn mysqld_down_is_not_confused_with_host_unreachable() {
    let bed = healthy_bed();
    bed.kill_mysqld("db2").unwrap();
    let t = Instant::now();
    let db2 = wait_server(
        &bed,
        "db2",
        Duration::from_secs(2),
        "db2 mysqld down, host up",
        |s| s["mysqld_up"] == false && s["host_reachable"] == true,
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{db2}");
    assert_eq!(db2["agent"]["mysqld_process"], false, "{db2}");

    bed.pause("db3").unwrap();
    let t = Instant::now();
    let db3 = wait_server(
        &bed,
        "db3",
        Duration::from_secs(2),
        "db3 host unreachable",
        |s| s["host_reachable"] == false,
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{db3}");
    assert_ne!(
        db3["mysqld_up"], false,
        "a paused host must not be reported as mysqld down: {db3}"
    );
    // db2 is still "mysqld down, host up", not unreachable.
    let db2 = bed.server_status("db2").unwrap();
    assert_eq!(db2["host_reachable"], true, "{db2}");
    assert_eq!(db2["mysqld_up"], false, "{db2}");
    bed.unpause("db3").unwrap();
    bed.start_mysqld("db2").unwrap();
    wait_server(&bed, "db3", Duration::from_secs(5), "db3 back", |s| {
        s["host_reachable"] == true && s["mysqld_up"] == true
    });
    wait_server(&bed, "db2", Duration::from_secs(5), "db2 back", |s| {
        s["mysqld_up"] == true
    });
}

fn check_output(bed: &myha_testbed::Bed) -> (bool, String) {
    let out = bed.myha(&["check"]).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn failing_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with("FAIL"))
        .collect()
}

#[test]
fn check_passes_when_healthy_and_names_each_problem() {
    let bed = healthy_bed();
    let (ok, text) = check_output(&bed);
    assert!(ok, "check should pass on a healthy bed:\n{text}");

    // A replica with read_only OFF.
    bed.sql("db2", "SET GLOBAL read_only = OFF").unwrap();
    let (ok, text) = check_output(&bed);
    assert!(!ok, "{text}");
    let fails = failing_lines(&text);
    assert!(
        fails
            .iter()
            .any(|l| l.contains("[read_only] db2:") && l.contains("fix:")),
        "{text}"
    );
    // ... and db2 now also looks like a second writable server? No: it replicates.
    assert!(!fails.iter().any(|l| l.contains("[one_master]")), "{text}");
    bed.sql("db2", "SET GLOBAL read_only = ON").unwrap();

    // Colliding server_ids.
    bed.sql("db3", "SET GLOBAL server_id = 2").unwrap();
    let (ok, text) = check_output(&bed);
    assert!(!ok, "{text}");
    assert!(
        failing_lines(&text)
            .iter()
            .any(|l| l.contains("[server_id] db3:") && l.contains("also used by db2")),
        "{text}"
    );
    bed.sql("db3", "SET GLOBAL server_id = 3").unwrap();

    // A replica replicating by file/position.
    bed.sql(
        "db3",
        "STOP SLAVE; CHANGE MASTER TO MASTER_USE_GTID=no; START SLAVE",
    )
    .unwrap();
    // Its IO thread reconnects first ("Connecting" fails `threads` for a
    // moment): wait until it runs, then only the GTID problem remains.
    wait_until(Duration::from_secs(20), "db3's IO thread running", || {
        let out = bed.exec("db3", &["mariadb", "-uroot", "-e", "SHOW SLAVE STATUS\\G"])?;
        Ok(out.contains("Slave_IO_Running: Yes"))
    })
    .unwrap();
    let (ok, text) = check_output(&bed);
    assert!(!ok, "{text}");
    let fails = failing_lines(&text);
    assert!(
        fails
            .iter()
            .any(|l| l.contains("[gtid] db3:") && l.contains("not GTID")),
        "{text}"
    );
    assert_eq!(fails.len(), 1, "only the GTID problem should fail:\n{text}");

    bed.sql(
        "db3",
        "STOP SLAVE; CHANGE MASTER TO MASTER_USE_GTID=slave_pos; START SLAVE",
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "check passes again", || {
        Ok(check_output(&bed).0)
    })
    .unwrap();
}

#[test]
fn manager_and_agent_refuse_requests_without_the_token() {
    let bed = healthy_bed();
    // Plain or TLS (MYHA_BED_TLS=1): the bed's curl knows which.
    let get = |url: String, token: Option<&str>| bed.http("GET", &url, token, None).unwrap().0;
    let manager = bed.manager_url();
    assert_eq!(get(format!("{manager}/v1/clusters"), None), 401);
    assert_eq!(
        get(format!("{manager}/v1/clusters"), Some("wrong-token")),
        401
    );
    assert_eq!(get(format!("{manager}/v1/clusters"), Some(&bed.token)), 200);
    // An agent's sample is read by the manager and by monitors.
    let agent = bed.agent_url("db2").unwrap();
    assert_eq!(get(format!("{agent}/v1/status"), None), 401);
    assert_eq!(get(format!("{agent}/v1/health"), Some("wrong-token")), 401);
    assert_eq!(
        get(format!("{agent}/v1/status"), Some(&bed.monitor_token)),
        200
    );
    assert_eq!(
        get(format!("{agent}/v1/status"), Some(&bed.manager_token)),
        200
    );
}
