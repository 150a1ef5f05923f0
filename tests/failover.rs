//! Acceptance of automatic failover against real MariaDB hosts in Docker:
//! every fault, no acknowledged row lost, no false failover, no second
//! writable master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use myha_testbed::{wait_until, Bed, Writer, WriterLog};
use serde_json::Value;

fn failover_bed(extra_cluster_yaml: &str) -> Bed {
    let mut opts = options();
    opts.vip = true;
    opts.cluster_yaml = extra_cluster_yaml.to_string();
    let bed = Bed::start(opts).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    bed.wait_ready(Duration::from_secs(10)).unwrap();
    bed
}

fn master_of(st: &Value) -> Option<String> {
    st["master"].as_str().map(str::to_string)
}

/// Wait for a failover away from `old`: a new writable master, the other
/// replica replicating from it. Returns the new master's name.
fn wait_new_master(bed: &Bed, old: &str, limit: Duration) -> String {
    let mut last = Value::Null;
    let r = wait_until(limit, "a new master", || {
        let st = bed.status()?;
        let ok = master_of(&st).is_some_and(|m| m != old) && st["in_progress"].is_null();
        last = st;
        Ok(ok)
    });
    if let Err(e) = r {
        let hist = bed
            .myha(&["history"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "{e}\nstatus: {last:#}\nhistory:\n{hist}\nmanager log:\n{}",
            bed.manager_log()
        );
    }
    master_of(&last).unwrap()
}

/// Every acknowledged id is on `host`.
fn assert_no_ack_lost(bed: &Bed, host: &str, log: &WriterLog) {
    assert!(!log.acks.is_empty(), "the writer acknowledged nothing");
    let present = bed.sql(host, "SELECT id FROM app.seq ORDER BY id").unwrap();
    let present: std::collections::BTreeSet<u64> = present
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let missing: Vec<u64> = log
        .acks
        .iter()
        .map(|a| a.0)
        .filter(|id| !present.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged rows missing on {host}: {missing:?}"
    );
}

fn assert_vip_on(bed: &Bed, host: &str) {
    wait_until(Duration::from_secs(10), &format!("VIP on {host}"), || {
        Ok(bed
            .exec(host, &["ip", "-4", "addr", "show", "dev", "eth0"])?
            .contains(&format!("{}/24", bed.vip())))
    })
    .unwrap();
}

fn other_replica(new_master: &str) -> &'static str {
    if new_master == "db2" {
        "db3"
    } else {
        "db2"
    }
}

fn check_after_failover(bed: &Bed, writer: Writer, new_master: &str) {
    // Writes resume through the VIP on the new master.
    writer.wait_acks(20, Duration::from_secs(20)).unwrap();
    let log = writer.stop();
    assert_vip_on(bed, new_master);
    let other = other_replica(new_master);
    wait_server(
        bed,
        other,
        Duration::from_secs(15),
        "other replica replicates from the new master",
        |s| {
            s["role"] == "replica"
                && s["io_running"] == "running"
                && s["sql_running"] == "running"
                && s["replicates_from"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&bed.host(new_master).unwrap().ip))
        },
    );
    assert_no_ack_lost(bed, new_master, &log);
    // The new master is writable; the other replica is read-only.
    assert_eq!(bed.sql(new_master, "SELECT @@read_only").unwrap(), "0");
    assert_eq!(bed.sql(other, "SELECT @@read_only").unwrap(), "1");
    // The journal tells the story.
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    for step in [
        "detect", "choose", "promote", "repoint", "vip_add", "finish",
    ] {
        assert!(hist.contains(step), "history lacks {step}:\n{hist}");
    }
    let (gap, _) = log.longest_gap();
    eprintln!("write unavailability: {gap} ms; {} acks", log.acks.len());
}

#[test]
fn mysqld_kill_fails_over_without_losing_acknowledged_rows() {
    let bed = failover_bed("auto_rejoin: false");
    let writer = bed.start_writer(&bed.vip(), 3306).unwrap();
    writer.wait_acks(50, Duration::from_secs(20)).unwrap();
    let t = Instant::now();
    bed.kill_mysqld("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    eprintln!(
        "new master {new_master} after {} ms",
        t.elapsed().as_millis()
    );
    check_after_failover(&bed, writer, &new_master);
    // The old master: mysqld down, shown as a former master.
    let db1 = bed.server_status("db1").unwrap();
    assert_eq!(db1["role"], "needs_rejoin", "{db1}");
}

#[test]
fn killed_master_container_fails_over() {
    let bed = failover_bed("");
    let writer = bed.start_writer(&bed.vip(), 3306).unwrap();
    writer.wait_acks(50, Duration::from_secs(20)).unwrap();
    bed.kill_container("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    check_after_failover(&bed, writer, &new_master);
}

#[test]
fn paused_master_fails_over_and_stays_fenced_when_resumed() {
    let bed = failover_bed("auto_rejoin: false");
    let writer = bed.start_writer(&bed.vip(), 3306).unwrap();
    writer.wait_acks(50, Duration::from_secs(20)).unwrap();
    bed.pause("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    bed.unpause("db1").unwrap();
    check_after_failover(&bed, writer, &new_master);
    // Back, it learns the new epoch and stays (or becomes) read-only.
    wait_server(
        &bed,
        "db1",
        Duration::from_secs(10),
        "db1 back, fenced",
        |s| s["host_reachable"] == true && s["read_only"] == true && s["role"] == "needs_rejoin",
    );
    let writable: Vec<&str> = ["db1", "db2", "db3"]
        .into_iter()
        .filter(|h| bed.sql(h, "SELECT @@read_only").unwrap() == "0")
        .collect();
    assert_eq!(writable, vec![new_master.as_str()]);
}

#[test]
fn partitioned_master_fails_over_without_split_brain() {
    let bed = failover_bed("");
    let writer = bed.start_writer(&bed.vip(), 3306).unwrap();
    writer.wait_acks(50, Duration::from_secs(20)).unwrap();
    bed.partition("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    // Still cut off, the old master fences itself.
    wait_until(
        Duration::from_secs(15),
        "isolated db1 fenced itself",
        || Ok(bed.sql("db1", "SELECT @@read_only")? == "1"),
    )
    .unwrap();
    bed.heal("db1").unwrap();
    check_after_failover(&bed, writer, &new_master);
    wait_server(
        &bed,
        "db1",
        Duration::from_secs(10),
        "db1 back, fenced",
        |s| s["host_reachable"] == true && s["read_only"] == true,
    );
    // Exactly one writable server, and the VIP answers only on it.
    let writable: Vec<&str> = ["db1", "db2", "db3"]
        .into_iter()
        .filter(|h| bed.sql(h, "SELECT @@read_only").unwrap() == "0")
        .collect();
    assert_eq!(writable, vec![new_master.as_str()]);
    let db1_addrs = bed
        .exec("db1", &["ip", "-4", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(
        !db1_addrs.contains(&format!("{}/24", bed.vip())),
        "old master still holds the VIP: {db1_addrs}"
    );
}

#[test]
fn manager_cut_off_from_master_does_not_fail_over() {
    let bed = failover_bed("");
    let epoch = bed.status().unwrap()["epoch"].as_u64().unwrap();
    bed.cut_from_manager("db1").unwrap();
    let st = {
        let mut last = Value::Null;
        wait_until(
            Duration::from_secs(10),
            "verdict unreachable from manager only",
            || {
                last = bed.status()?;
                Ok(last["verdict"] == "unreachable_from_manager_only")
            },
        )
        .unwrap_or_else(|e| panic!("{e}: {last:#}"));
        last
    };
    // Well past the detection window: still no failover.
    std::thread::sleep(Duration::from_secs(4));
    let st2 = bed.status().unwrap();
    assert_eq!(st2["verdict"], "unreachable_from_manager_only", "{st2:#}");
    assert_eq!(st2["epoch"].as_u64().unwrap(), epoch, "{st2:#}");
    assert_eq!(st2["epoch_master"], "db1");
    assert_eq!(
        bed.sql("db1", "SELECT @@read_only").unwrap(),
        "0",
        "db1 must stay writable"
    );
    let text = String::from_utf8_lossy(&bed.myha(&["status"]).unwrap().stdout).into_owned();
    assert!(text.contains("UnreachableFromManagerOnly"), "{text}");
    // First the master's own agent may testify (its last report is still
    // fresh); well past the window, with the agent cut off too, the
    // replicas do.
    assert!(
        st["analysis"]["evidence"]
            .to_string()
            .contains("only the manager lost it")
            || st["analysis"]["evidence"]
                .to_string()
                .contains("still reaches"),
        "{st:#}"
    );
    assert!(
        st2["analysis"]["evidence"]
            .to_string()
            .contains("still reaches"),
        "{st2:#}"
    );
    bed.heal("db1").unwrap();
}

#[test]
fn lagging_replica_is_not_promoted() {
    let bed = failover_bed("");
    bed.sql("db1", "CREATE TABLE app.t (id INT PRIMARY KEY)")
        .unwrap();
    bed.sql("db3", "STOP SLAVE SQL_THREAD").unwrap();
    for i in 0..20 {
        bed.sql("db1", &format!("INSERT INTO app.t VALUES ({i})"))
            .unwrap();
    }
    wait_server(
        &bed,
        "db3",
        Duration::from_secs(5),
        "db3 seen stopped",
        |s| s["sql_running"] == "stopped",
    );
    bed.kill_mysqld("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    assert_eq!(new_master, "db2");
    assert_eq!(bed.sql("db2", "SELECT COUNT(*) FROM app.t").unwrap(), "20");
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(hist.contains("db3: SQL thread not running"), "{hist}");
}

#[test]
fn no_master_replica_serves_to_catch_up_the_candidate() {
    let bed = failover_bed("");
    // Rewrite the config: db2 no_master, then restart the manager.
    let cfg = std::fs::read_to_string(&bed.config_path).unwrap();
    let cfg = cfg.replacen(
        "  - name: db2\n    cluster: bed\n",
        "  - name: db2\n    cluster: bed\n    no_master: true\n",
        1,
    );
    std::fs::write(&bed.config_path, cfg).unwrap();
    let mut bed = bed;
    bed.start_manager().unwrap();
    wait_healthy(&bed, Duration::from_secs(30));
    bed.sql("db1", "CREATE TABLE app.t (id INT PRIMARY KEY)")
        .unwrap();
    wait_until(Duration::from_secs(10), "db3 has the table", || {
        Ok(bed.sql("db3", "SHOW TABLES FROM app LIKE 't'")? == "t")
    })
    .unwrap();
    // db3 stops receiving; db2 gets 20 more rows.
    bed.sql("db3", "STOP SLAVE IO_THREAD").unwrap();
    for i in 0..20 {
        bed.sql("db1", &format!("INSERT INTO app.t VALUES ({i})"))
            .unwrap();
    }
    wait_until(Duration::from_secs(10), "db2 has the rows", || {
        Ok(bed.sql("db2", "SELECT COUNT(*) FROM app.t")? == "20")
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(600)); // let status see it
    bed.kill_mysqld("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    assert_eq!(new_master, "db3");
    assert_eq!(
        bed.sql("db3", "SELECT COUNT(*) FROM app.t").unwrap(),
        "20",
        "db3 did not catch up"
    );
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(
        hist.contains("catch_up") && hist.contains("caught up from db2"),
        "{hist}"
    );
    assert!(hist.contains("db2: no_master is set"), "{hist}");
}

#[test]
fn second_failure_within_block_period_waits_for_acknowledgement() {
    let bed = failover_bed("");
    bed.kill_mysqld("db1").unwrap();
    let first = wait_new_master(&bed, "db1", Duration::from_secs(30));
    let st = bed.status().unwrap();
    assert!(st["failover_blocked_until_ms"].as_u64().is_some(), "{st:#}");
    let text = String::from_utf8_lossy(&bed.myha(&["status"]).unwrap().stdout).into_owned();
    assert!(text.contains("automatic failover BLOCKED"), "{text}");
    // The new master dies too: no automatic failover.
    bed.kill_mysqld(&first).unwrap();
    wait_until(
        Duration::from_secs(10),
        "blocked failover journaled",
        || {
            let h = String::from_utf8_lossy(&bed.myha(&["history"])?.stdout).into_owned();
            Ok(h.contains("anti-flapping"))
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        bed.status().unwrap()["epoch_master"].as_str(),
        Some(first.as_str())
    );
    // Acknowledged, it fails over.
    let out = bed.myha(&["failover", "--ack"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = wait_new_master(&bed, &first, Duration::from_secs(30));
    assert_ne!(second, "db1");
    assert_ne!(second, first);
}

#[test]
fn restarted_old_master_stays_read_only() {
    let bed = failover_bed("auto_rejoin: false");
    bed.kill_mysqld("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    bed.start_mysqld("db1").unwrap();
    wait_server(
        &bed,
        "db1",
        Duration::from_secs(10),
        "db1 back as old master",
        |s| s["mysqld_up"] == true && s["role"] == "needs_rejoin" && s["read_only"] == true,
    );
    // Even made writable by hand, its agent fences it again.
    bed.sql("db1", "SET GLOBAL read_only = OFF").unwrap();
    wait_until(Duration::from_secs(5), "agent re-fences db1", || {
        Ok(bed.sql("db1", "SELECT @@read_only")? == "1")
    })
    .unwrap();
    let text = String::from_utf8_lossy(&bed.myha(&["status"]).unwrap().stdout).into_owned();
    assert!(text.contains("old master, needs rejoin"), "{text}");
    assert_eq!(bed.sql(&new_master, "SELECT @@read_only").unwrap(), "0");
}

#[test]
fn dry_run_and_refusal_on_a_healthy_master() {
    let bed = failover_bed("");
    let out = bed.myha(&["failover", "--dry-run", "--json"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["status"], "dry_run");
    assert_eq!(plan["new_master"], "db2", "{plan:#}");
    // The master answers: the plan does not call it unreachable.
    let lost = plan["lost"].as_str().unwrap_or_default();
    assert!(!lost.contains("unreachable"), "{plan:#}");
    // A dry run enters no journal.
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(!hist.contains("dry-run"), "{hist}");
    let st = bed.status().unwrap();
    assert_eq!(st["readiness"]["chosen"], "db2", "{st:#}");
    let out = bed.myha(&["failover"]).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("healthy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(bed.status().unwrap()["epoch_master"], "db1");
}

fn write_state(bed: &Bed, state: &Value) {
    let path = bed.dir.join("state").join("cluster-bed.json");
    std::fs::write(path, serde_json::to_vec_pretty(state).unwrap()).unwrap();
}

#[test]
fn manager_restarted_after_promotion_finishes_the_failover_once() {
    let mut bed = failover_bed("");
    bed.stop_manager();
    // The state a manager leaves when it dies right after recording the
    // promotion: db2's SQL thread stopped, still read-only; db1 dead.
    bed.kill_mysqld("db1").unwrap();
    bed.sql("db2", "STOP SLAVE SQL_THREAD").unwrap();
    write_state(
        &bed,
        &serde_json::json!({
            "epoch": 2, "master": "db2", "needs_rejoin": ["db1"],
            "in_progress": { "id": "failover-crashed", "kind": "failover", "old_master": "db1",
                             "new_master": "db2", "phase": "promoted", "started_ms": 1 }
        }),
    );
    bed.start_manager().unwrap();
    let db2_ip = bed.host("db2").unwrap().ip.clone();
    wait_until(
        Duration::from_secs(20),
        "db2 writable, db3 replicating from it",
        || {
            let st = bed.status()?;
            let db3 = &st["servers"][2];
            Ok(st["master"] == "db2"
                && st["in_progress"].is_null()
                && db3["replicates_from"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&db2_ip)))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", bed.manager_log()));
    let st = bed.status().unwrap();
    assert_eq!(st["epoch"], 2, "the failover ran again: {st:#}");
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(
        hist.contains("failover-crashed was past promotion"),
        "{hist}"
    );
    assert!(hist.contains("finished after a manager restart"), "{hist}");
    assert!(
        !hist.contains("[failover-1"),
        "a second failover ran:\n{hist}"
    );
    // And the VIP went to db2.
    assert_vip_on(&bed, "db2");
}

#[test]
fn manager_restarted_before_promotion_abandons_and_detection_decides_once() {
    let mut bed = failover_bed("");
    bed.stop_manager();
    bed.kill_mysqld("db1").unwrap();
    write_state(
        &bed,
        &serde_json::json!({
            "epoch": 1, "master": "db1",
            "in_progress": { "id": "failover-crashed", "kind": "failover", "old_master": "db1",
                             "new_master": "db2", "phase": "candidate_chosen", "started_ms": 1 }
        }),
    );
    bed.start_manager().unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    let st = bed.status().unwrap();
    assert_eq!(st["epoch"], 2, "{st:#}");
    let hist = String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout).into_owned();
    assert!(
        hist.contains("failover-crashed stopped before promotion"),
        "{hist}"
    );
    assert_eq!(
        hist.matches("] promote ").count(),
        1,
        "exactly one promotion:\n{hist}"
    );
    assert_eq!(bed.sql(&new_master, "SELECT @@read_only").unwrap(), "0");
}

#[test]
fn hooks_see_the_failover_in_their_environment() {
    let dir = std::env::temp_dir().join(format!("myha-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "hooks: {{ pre_failover: \"env | grep ^MYHA_ | sort > {d}/pre\", post_failover: \"env | grep ^MYHA_ | sort > {d}/post\", master_ip_failover_script: \"echo >> {d}/mha\" }}",
        d = dir.display()
    );
    let ok_bed = failover_bed(&yaml);
    ok_bed.kill_mysqld("db1").unwrap();
    let new_master = wait_new_master(&ok_bed, "db1", Duration::from_secs(30));
    // The shell creates the file before `sort` writes to it: wait for its
    // content, not for the file.
    wait_until(Duration::from_secs(10), "post hook ran", || {
        Ok(std::fs::read_to_string(dir.join("post")).is_ok_and(|t| t.contains("MYHA_EVENT")))
    })
    .unwrap();
    let pre = std::fs::read_to_string(dir.join("pre")).unwrap();
    let post = std::fs::read_to_string(dir.join("post")).unwrap();
    assert!(
        pre.contains("MYHA_EVENT=pre_failover")
            && pre.contains("MYHA_OLD_MASTER=db1")
            && pre.contains("MYHA_EPOCH=1"),
        "{pre}"
    );
    assert!(
        post.contains("MYHA_EVENT=post_failover")
            && post.contains(&format!("MYHA_NEW_MASTER={new_master}"))
            && post.contains("MYHA_EPOCH=2"),
        "{post}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failing_pre_failover_hook_aborts_the_failover() {
    let bed = failover_bed("hooks: { pre_failover: \"echo not now; exit 3\" }");
    bed.kill_mysqld("db1").unwrap();
    wait_until(
        Duration::from_secs(15),
        "aborted failover journaled",
        || {
            let h = String::from_utf8_lossy(&bed.myha(&["history"])?.stdout).into_owned();
            Ok(h.contains("pre_failover hook exited")
                && h.contains("failover aborted before promotion"))
        },
    )
    .unwrap();
    let st = bed.status().unwrap();
    assert_eq!(st["epoch"], 1, "{st:#}");
    assert_eq!(st["epoch_master"], "db1");
    // Replicas were left replicating (IO threads restarted), still read-only.
    assert_eq!(bed.sql("db2", "SELECT @@read_only").unwrap(), "1");
}
