//! Rejoin of a returning old master, the diverged guard, errant
//! transactions on replicas: against real MariaDB hosts in Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use myha_testbed::wait_until;
use serde_json::Value;

#[test]
fn restarted_old_master_rejoins_as_a_replica_when_it_is_a_subset() {
    let bed = healthy_bed();
    bed.sql("db1", "CREATE TABLE app.t (id INT PRIMARY KEY)")
        .unwrap();
    bed.sql("db1", "INSERT INTO app.t VALUES (1),(2),(3)")
        .unwrap();
    bed.kill_mysqld("db1").unwrap();
    let new_master = wait_master_not(&bed, "db1");
    bed.sql(&new_master, "INSERT INTO app.t VALUES (4)")
        .unwrap();
    bed.start_mysqld("db1").unwrap();
    wait_replicating_from(&bed, "db1", &new_master, Duration::from_secs(30));
    wait_until(Duration::from_secs(10), "db1 caught up", || {
        Ok(bed.sql("db1", "SELECT COUNT(*) FROM app.t")? == "4")
    })
    .unwrap();
    let st = bed.status().unwrap();
    assert_eq!(
        st["needs_rejoin"].as_array().map(Vec::len),
        Some(0),
        "{st:#}"
    );
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(
        hist.contains("db1 replicates from") && hist.contains("rejoin"),
        "{hist}"
    );
}

#[test]
fn old_master_with_a_local_write_is_diverged_and_kept_out_until_forced() {
    let bed = healthy_bed();
    bed.sql("db1", "CREATE TABLE app.t (id INT PRIMARY KEY)")
        .unwrap();
    bed.partition("db1").unwrap();
    let new_master = wait_master_not(&bed, "db1");
    // Written on the cut-off old master (root bypasses read_only; without
    // semi-sync, which would hold the commit for a replica's
    // acknowledgement that cannot come).
    bed.sql(
        "db1",
        "SET GLOBAL rpl_semi_sync_master_enabled = OFF; INSERT INTO app.t VALUES (99)",
    )
    .unwrap();
    let local = bed.sql("db1", "SELECT @@gtid_binlog_pos").unwrap();
    bed.heal("db1").unwrap();
    let db1 = wait_server(
        &bed,
        "db1",
        Duration::from_secs(30),
        "db1 reported diverged",
        |s| s["role"] == "diverged",
    );
    let extra = db1["diverged_gtids"].to_string();
    assert!(
        extra.contains("0-1-"),
        "extra GTIDs named: {db1:#} (db1 at {local})"
    );
    // It stays out, read-only.
    std::thread::sleep(Duration::from_secs(3));
    let db1 = bed.server_status("db1").unwrap();
    assert_eq!(db1["role"], "diverged", "{db1:#}");
    assert_eq!(bed.sql("db1", "SELECT @@read_only").unwrap(), "1");
    let text = String::from_utf8_lossy(&bed.myha(&["status"]).unwrap().stdout).into_owned();
    assert!(
        text.contains("diverged") && text.contains("--force"),
        "{text}"
    );
    // A plain rejoin refuses and says why.
    let out = bed.myha(&["rejoin", "db1"]).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("diverged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --force discards them and rejoins.
    myha_ok(&bed, &["rejoin", "db1", "--force"]);
    let ip = bed.host(&new_master).unwrap().ip.clone();
    wait_server(
        &bed,
        "db1",
        Duration::from_secs(20),
        "db1 replicating after --force",
        |s| {
            s["role"] == "replica"
                && s["sql_running"] == "running"
                && s["replicates_from"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&ip))
        },
    );
}

#[test]
fn errant_transaction_on_a_replica_is_shown_and_blocks_its_promotion() {
    let bed = healthy_bed();
    // A local write on db3 (root bypasses read_only): server_id 3's GTID.
    bed.sql("db3", "CREATE DATABASE errant_here").unwrap();
    let st = {
        let mut last = Value::Null;
        wait_until(Duration::from_secs(10), "db3 errant shown", || {
            last = bed.status()?;
            Ok(last["servers"][2]["errant"]
                .as_array()
                .is_some_and(|a| !a.is_empty()))
        })
        .unwrap_or_else(|e| panic!("{e}: {last:#}"));
        last
    };
    assert!(
        st["servers"][2]["errant"][0]
            .as_str()
            .unwrap()
            .starts_with("0-3-"),
        "{st:#}"
    );
    assert!(st["problems"].to_string().contains("errant"), "{st:#}");
    let excluded = st["readiness"]["excluded"].to_string();
    assert!(
        excluded.contains("db3") && excluded.contains("errant"),
        "{st:#}"
    );
    let out = bed.myha(&["switchover", "--to", "db3"]).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("errant"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
