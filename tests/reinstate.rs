//! Reinstatement of a former master that holds unacknowledged
//! transactions (issue 11): saved to a file, undone by binlog flashback,
//! rejoined; refused with the reason for DDL. Against real MariaDB hosts
//! in Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use myha_testbed::{wait_until, Bed};

fn bed_with(cluster_yaml: &str) -> Bed {
    let mut opts = options();
    opts.cluster_yaml = cluster_yaml.to_string();
    let bed = Bed::start(opts).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    bed
}

/// db1's GTID in domain 0 (its data domain; heartbeats have their own).
fn domain0(bed: &Bed, host: &str) -> String {
    let pos = bed.sql(host, "SELECT @@gtid_binlog_pos").unwrap();
    pos.split(',')
        .map(str::trim)
        .find(|g| g.starts_with("0-"))
        .unwrap_or_default()
        .to_string()
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The master db1 is cut off from everyone while a client commits on it:
/// the commit waits for a semi-sync acknowledgement that cannot come, the
/// fence kills it (the client gets an error, the row stays in db1's binary
/// log and tables). A replica is promoted; the partition heals. Returns
/// the new master and db1's unacknowledged GTID.
fn unacknowledged_write_on_db1(bed: &Bed, table: &str, id: u32) -> (String, String) {
    bed.sql(
        "db1",
        &format!("CREATE TABLE app.{table} (id INT PRIMARY KEY, v VARCHAR(40))"),
    )
    .unwrap();
    bed.sql(
        "db1",
        &format!("INSERT INTO app.{table} VALUES (1, 'acknowledged')"),
    )
    .unwrap();
    let before = domain0(bed, "db1");
    wait_until(Duration::from_secs(10), "replicas caught up", || {
        Ok(domain0(bed, "db2") == before && domain0(bed, "db3") == before)
    })
    .unwrap();
    bed.partition("db1").unwrap();
    // The client talks to db1 over its local socket, which the partition
    // leaves open (an application on the master's own network path).
    let container = bed.host("db1").unwrap().container.clone();
    let sql = format!("INSERT INTO app.{table} VALUES ({id}, 'never acknowledged')");
    let client = std::thread::spawn(move || {
        std::process::Command::new("docker")
            .args([
                "exec", &container, "timeout", "60", "mariadb", "-uroot", "-N", "-B", "-e", &sql,
            ])
            .output()
    });
    let new_master = wait_master_not(bed, "db1");
    let out = client.join().unwrap().unwrap();
    assert!(
        !out.status.success(),
        "the commit was acknowledged: {}",
        out_text(&out)
    );
    let gtid = domain0(bed, "db1");
    assert_ne!(gtid, before, "the commit is in db1's binary log");
    assert_eq!(
        bed.sql("db1", &format!("SELECT v FROM app.{table} WHERE id = {id}"))
            .unwrap(),
        "never acknowledged"
    );
    assert_eq!(
        bed.sql(
            &new_master,
            &format!("SELECT COUNT(*) FROM app.{table} WHERE id = {id}")
        )
        .unwrap(),
        "0"
    );
    bed.heal("db1").unwrap();
    (new_master, gtid)
}

fn saved_files(bed: &Bed) -> Vec<std::path::PathBuf> {
    let dir = bed.dir.join("state").join("reinstate");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// After a reinstatement: the row is saved, gone from db1, and db1's data
/// and GTIDs converge with the master's.
fn assert_reinstated(bed: &Bed, new_master: &str, table: &str, id: u32, gtid: &str) {
    wait_replicating_from(bed, "db1", new_master, Duration::from_secs(30));
    let files = saved_files(bed);
    let decoded = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".decoded.txt"))
        .unwrap_or_else(|| panic!("no decoded file in {files:?}"));
    let text = std::fs::read_to_string(decoded).unwrap();
    assert!(
        text.contains(&format!("GTID {gtid} "))
            && text.contains(&format!("@1={id}"))
            && text.contains("never acknowledged"),
        "{}: {text}",
        decoded.display()
    );
    assert!(
        files.iter().any(|p| p.to_string_lossy().ends_with(".sql")
            && !p.to_string_lossy().ends_with(".flashback.sql")),
        "{files:?}"
    );
    assert!(
        !files
            .iter()
            .any(|p| p.to_string_lossy().contains("pending")),
        "the marker is removed once rejoined: {files:?}"
    );
    // No client credentials left behind.
    assert!(
        !files.iter().any(|p| p.to_string_lossy().ends_with(".cnf")),
        "{files:?}"
    );
    assert_eq!(
        bed.sql(
            "db1",
            &format!("SELECT COUNT(*) FROM app.{table} WHERE id = {id}")
        )
        .unwrap(),
        "0"
    );
    // A write on the new master reaches db1; data and GTIDs converge.
    bed.sql(
        new_master,
        &format!("INSERT INTO app.{table} VALUES (2, 'after')"),
    )
    .unwrap();
    let target = domain0(bed, new_master);
    wait_until(Duration::from_secs(15), "db1 caught up", || {
        let pos = bed.sql("db1", "SELECT @@gtid_current_pos")?;
        Ok(pos.split(',').any(|g| g.trim() == target))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", bed.manager_log()));
    let sum = |h: &str| bed.sql(h, &format!("CHECKSUM TABLE app.{table}")).unwrap();
    assert_eq!(sum("db1"), sum(new_master));
    assert_eq!(bed.sql("db1", "SELECT @@read_only").unwrap(), "1");
    let st = bed.status().unwrap();
    assert!(
        st["diverged"]
            .as_object()
            .is_none_or(|d| !d.contains_key("db1")),
        "{st:#}"
    );
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(
        hist.contains("reinstate")
            && hist.contains(gtid)
            && hist.contains(&decoded.display().to_string()),
        "{hist}"
    );
}

#[test]
fn forced_rejoin_reinstates_an_old_master_with_an_unacknowledged_commit() {
    let bed = bed_with("");
    let (new_master, gtid) = unacknowledged_write_on_db1(&bed, "t", 42);
    let db1 = wait_server(&bed, "db1", Duration::from_secs(30), "db1 diverged", |s| {
        s["role"] == "diverged"
    });
    assert_eq!(
        db1["diverged_gtids"],
        serde_json::json!([gtid]),
        "exactly the unacknowledged GTID: {db1:#}"
    );
    let out = bed.myha(&["rejoin", "db1", "--force"]).unwrap();
    let text = out_text(&out);
    assert!(out.status.success(), "{text}\n{}", bed.manager_log());
    assert!(
        text.contains("reinstated") && text.contains(&gtid),
        "{text}"
    );
    assert_reinstated(&bed, &new_master, "t", 42, &gtid);
}

#[test]
fn auto_reinstate_reinstates_the_old_master_without_a_command() {
    let bed = bed_with("auto_reinstate: true");
    let (new_master, gtid) = unacknowledged_write_on_db1(&bed, "t", 43);
    assert_reinstated(&bed, &new_master, "t", 43, &gtid);
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(hist.contains("auto_reinstate"), "{hist}");
}

#[test]
fn forced_rejoin_refuses_ddl_and_says_why() {
    let bed = bed_with("");
    bed.sql("db1", "CREATE TABLE app.t (id INT PRIMARY KEY)")
        .unwrap();
    bed.partition("db1").unwrap();
    let new_master = wait_master_not(&bed, "db1");
    // DDL written on the cut-off old master (root bypasses read_only;
    // semi-sync off so that it does not wait for an acknowledgement).
    bed.sql("db1", "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
        .unwrap();
    bed.exec(
        "db1",
        &[
            "timeout",
            "30",
            "mariadb",
            "-uroot",
            "-e",
            "CREATE TABLE app.ddl_here (id INT)",
        ],
    )
    .unwrap();
    let gtid = domain0(&bed, "db1");
    bed.heal("db1").unwrap();
    wait_server(&bed, "db1", Duration::from_secs(30), "db1 diverged", |s| {
        s["role"] == "diverged"
    });
    let out = bed.myha(&["rejoin", "db1", "--force"]).unwrap();
    let text = out_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("GTID {gtid} is DDL"))
            && text.contains("CREATE TABLE app.ddl_here")
            && text.contains("nothing changed")
            && text.contains("backup"),
        "{text}"
    );
    // Untouched: still diverged, read-only, the table there; the
    // transactions were saved all the same.
    assert_eq!(bed.sql("db1", "SELECT @@read_only").unwrap(), "1");
    assert_eq!(
        bed.sql("db1", "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'ddl_here'")
            .unwrap(),
        "1"
    );
    assert_eq!(bed.server_status("db1").unwrap()["role"], "diverged");
    assert!(
        saved_files(&bed)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".decoded.txt")),
        "{:?}",
        saved_files(&bed)
    );
    let ip = bed.host(&new_master).unwrap().ip.clone();
    let db1 = bed.server_status("db1").unwrap();
    assert!(
        !db1["replicates_from"]
            .as_str()
            .is_some_and(|r| r.starts_with(&ip)),
        "{db1:#}"
    );
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(
        hist.contains("reinstate") && hist.contains("refused"),
        "{hist}"
    );
}
