//! Acceptance of planned switchover against real MariaDB hosts in Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use myha_testbed::{wait_until, Bed};

fn bed_with(extra: &str) -> Bed {
    let mut opts = options();
    opts.vip = true;
    opts.cluster_yaml = extra.to_string();
    let bed = Bed::start(opts).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    bed.wait_ready(Duration::from_secs(10)).unwrap();
    bed
}

fn switchover(bed: &Bed, args: &[&str]) -> (bool, String) {
    let mut all = vec!["switchover"];
    all.extend_from_slice(args);
    let out = bed.myha(&all).unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn writable(bed: &Bed) -> Vec<String> {
    ["db1", "db2", "db3"]
        .into_iter()
        .filter(|h| bed.sql(h, "SELECT @@read_only").is_ok_and(|r| r == "0"))
        .map(str::to_string)
        .collect()
}

/// Wait until `master` is the master in status and the others replicate
/// from it with both threads running.
fn wait_topology(bed: &Bed, master: &str) {
    let ip = bed.host(master).unwrap().ip.clone();
    let mut last = serde_json::Value::Null;
    let r = wait_until(
        Duration::from_secs(15),
        &format!("{master} master, others replicating from it"),
        || {
            let st = bed.status()?;
            let ok = st["master"] == master
                && st["servers"].as_array().is_some_and(|a| {
                    a.iter().filter(|s| s["name"] != master).all(|s| {
                        s["io_running"] == "running"
                            && s["sql_running"] == "running"
                            && s["replicates_from"]
                                .as_str()
                                .is_some_and(|r| r.starts_with(&ip))
                    })
                });
            last = st;
            Ok(ok)
        },
    );
    if let Err(e) = r {
        panic!("{e}\n{last:#}\n{}", bed.manager_log());
    }
}

#[test]
fn ten_switchovers_under_writes_lose_nothing_and_leave_one_master() {
    let bed = bed_with("");
    let writer = bed.start_writer_with(&bed.vip(), 3306, 2000).unwrap();
    writer.wait_acks(50, Duration::from_secs(20)).unwrap();
    let order = [
        "db2", "db3", "db1", "db3", "db2", "db1", "db2", "db1", "db3", "db1",
    ];
    for to in order {
        let (ok, text) = switchover(&bed, &["--to", to]);
        assert!(
            ok,
            "switchover to {to} failed:\n{text}\n{}",
            bed.manager_log()
        );
        assert!(
            text.contains("wait_target") && text.contains("promote"),
            "steps not printed:\n{text}"
        );
        assert_eq!(
            writable(&bed),
            vec![to.to_string()],
            "after switchover to {to}"
        );
        wait_topology(&bed, to);
        writer.wait_acks(20, Duration::from_secs(20)).unwrap();
    }
    let log = writer.stop();
    // Every acknowledged row on the final master, and every server equal.
    let present: std::collections::BTreeSet<u64> = bed
        .sql("db1", "SELECT id FROM app.seq")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let missing: Vec<u64> = log
        .acks
        .iter()
        .map(|a| a.0)
        .filter(|id| !present.contains(id))
        .collect();
    assert!(missing.is_empty(), "acknowledged rows missing: {missing:?}");
    let master_pos = bed.sql("db1", "SELECT @@gtid_binlog_pos").unwrap();
    for h in ["db2", "db3"] {
        wait_until(
            Duration::from_secs(10),
            &format!("{h} equal to the master"),
            || {
                Ok(bed.sql(h, "SELECT @@gtid_binlog_pos")?
                    == bed.sql("db1", "SELECT @@gtid_binlog_pos")?)
            },
        )
        .unwrap();
        assert_eq!(
            bed.sql(h, "SELECT COUNT(*) FROM app.seq").unwrap(),
            present.len().to_string()
        );
    }
    // No errant transaction anywhere: the binlog states agree (the
    // master's heartbeat keeps writing, so compare until a moment they do).
    for h in ["db2", "db3"] {
        wait_until(
            Duration::from_secs(10),
            &format!("{h}'s binlog state equal to the master's ({master_pos})"),
            || {
                Ok(bed.sql(h, "SELECT @@gtid_binlog_state")?
                    == bed.sql("db1", "SELECT @@gtid_binlog_state")?)
            },
        )
        .unwrap();
    }
    let (gap, _) = log.longest_gap();
    eprintln!("longest write gap over 10 switchovers: {gap} ms");
}

#[test]
fn switchover_to_a_lagging_or_broken_replica_is_refused_and_dry_run_changes_nothing() {
    let bed = bed_with("max_lag: 2s");
    let (ok, text) = switchover(&bed, &["--to", "db2", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("dry_run") && text.contains("db1 -> db2"),
        "{text}"
    );
    assert_eq!(bed.status().unwrap()["epoch_master"], "db1");
    assert_eq!(writable(&bed), vec!["db1"]);

    bed.sql(
        "db1",
        "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .unwrap();
    bed.sql("db3", "STOP SLAVE SQL_THREAD").unwrap();
    for _ in 0..5 {
        bed.sql("db1", "INSERT INTO app.t VALUES ()").unwrap();
    }
    wait_server(
        &bed,
        "db3",
        Duration::from_secs(10),
        "db3 lagging > 2 s",
        |s| s["lag_seconds"].as_f64().is_some_and(|l| l > 2.5),
    );
    let (ok, text) = switchover(&bed, &["--to", "db3"]);
    assert!(!ok, "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        text.contains("db3 is not replicating") && text.contains("lags"),
        "every reason at once:\n{text}"
    );
    // A broken one: IO error (wrong password).
    bed.sql("db3", "START SLAVE SQL_THREAD").unwrap();
    bed.sql(
        "db2",
        "STOP SLAVE; CHANGE MASTER TO MASTER_PASSWORD='wrong'; START SLAVE",
    )
    .unwrap();
    wait_server(&bed, "db2", Duration::from_secs(10), "db2 broken", |s| {
        s["last_error"].is_string()
    });
    let (ok, text) = switchover(&bed, &["--to", "db2"]);
    assert!(!ok && text.contains("replication error"), "{text}");
    assert_eq!(bed.status().unwrap()["epoch"], 1);
    assert_eq!(writable(&bed), vec!["db1"]);
}

#[test]
fn switchover_whose_target_dies_midway_rolls_back_to_the_old_master() {
    let mut bed = bed_with("");
    // A pre-switchover hook that kills the target's mysqld: the target
    // dies after the pre-checks passed, before it is promoted.
    let c2 = bed.host("db2").unwrap().container.clone();
    let cfg = std::fs::read_to_string(&bed.config_path).unwrap();
    let cfg = cfg.replacen(
        "hosts:\n",
        &format!(
            "    hooks: {{ pre_switchover: \"docker exec {c2} myha-mysqld kill\" }}\nhosts:\n"
        ),
        1,
    );
    std::fs::write(&bed.config_path, cfg).unwrap();
    bed.start_manager().unwrap();
    wait_healthy(&bed, Duration::from_secs(30));
    let (ok, text) = switchover(&bed, &["--to", "db2"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("rolled_back") && text.contains("db1 writable again"),
        "{text}"
    );
    let st = bed.status().unwrap();
    assert_eq!(st["epoch"], 1, "{st:#}");
    assert_eq!(st["epoch_master"], "db1");
    assert_eq!(writable(&bed), vec!["db1"]);
    assert!(bed
        .exec("db1", &["ip", "-4", "addr", "show", "dev", "eth0"])
        .unwrap()
        .contains(&format!("{}/24", bed.vip())));
}
