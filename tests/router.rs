//! Acceptance of the router against real MariaDB hosts in Docker: the
//! `mariadb` client through both ports, reads spread and lag-aware,
//! writers following a failover and a switchover, a manager restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use myha_testbed::{open_greeted, raise_fd_limit, wait_until, Bed, BedOptions};

fn router_bed(extra: &str) -> Bed {
    let mut opts = options();
    opts.cluster_yaml = extra.to_string();
    router_bed_with(opts)
}

fn router_bed_with(mut opts: BedOptions) -> Bed {
    opts.router = true;
    let bed = Bed::start(opts).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    wait_until(
        Duration::from_secs(15),
        "router follows the topology",
        || {
            let e = bed.router_endpoints()?;
            Ok(e["writer"]["name"] == "db1"
                && e["readers"]
                    .as_array()
                    .is_some_and(|r| r.iter().filter(|x| x["in_pool"] == true).count() == 2))
        },
    )
    .unwrap();
    bed
}

/// Run SQL as the application through a router port with the real client.
fn through(bed: &Bed, port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "-h",
            &bed.gateway,
            "-P",
            &port.to_string(),
            "-uapp",
            "-pmyha-app-pw",
            "-N",
            "-B",
            "--connect-timeout=5",
            "-e",
            sql,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn spread(bed: &Bed, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let h = through(bed, 6034, "SELECT @@hostname").unwrap();
        *m.entry(h).or_insert(0) += 1;
    }
    m
}

/// Wait until a server other than `old` is master and no failover or
/// switchover is in progress; its name.
fn wait_new_master(bed: &Bed, old: &str, limit: Duration) -> String {
    let mut new_master = String::new();
    wait_until(limit, "failover", || {
        let st = bed.status()?;
        new_master = st["master"].as_str().unwrap_or("").to_string();
        Ok(!new_master.is_empty() && new_master != old && st["in_progress"].is_null())
    })
    .unwrap();
    new_master
}

/// Whether the router lists `name` as a reader in its pool.
fn in_pool(bed: &Bed, name: &str) -> myha_testbed::Result<bool> {
    let e = bed.router_endpoints()?;
    Ok(e["readers"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["name"] == name && x["in_pool"] == true)))
}

#[test]
fn writer_reaches_the_master_and_reads_spread_over_replicas() {
    let bed = router_bed("");
    assert_eq!(through(&bed, 6033, "SELECT @@hostname").unwrap(), "db1");
    through(
        &bed,
        6033,
        "CREATE TABLE app.r (id INT PRIMARY KEY); INSERT INTO app.r VALUES (1)",
    )
    .unwrap();
    let m = spread(&bed, 12);
    assert_eq!(
        m.get("db2"),
        Some(&6),
        "round-robin over the replicas: {m:?}"
    );
    assert_eq!(m.get("db3"), Some(&6), "{m:?}");
    // Writes through the reader port fail on read-only replicas.
    let err = through(&bed, 6034, "INSERT INTO app.r VALUES (2)").unwrap_err();
    assert!(
        err.contains("read-only") || err.contains("read_only"),
        "{err}"
    );
    let e = bed.router_endpoints().unwrap();
    assert_eq!(e["manager_reachable"], true, "{e:#}");
}

#[test]
fn lagging_replica_leaves_the_pool_and_returns_and_master_takes_reads_when_none_fit() {
    let bed = router_bed("max_lag: 1s");
    through(
        &bed,
        6033,
        "CREATE TABLE app.l (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .unwrap();
    bed.sql("db3", "STOP SLAVE SQL_THREAD").unwrap();
    wait_until(Duration::from_secs(10), "db3 out of the pool", || {
        let e = bed.router_endpoints()?;
        Ok(e["readers"].as_array().is_some_and(|r| {
            r.iter()
                .any(|x| x["name"] == "db3" && x["in_pool"] == false)
        }))
    })
    .unwrap();
    let m = spread(&bed, 6);
    assert_eq!(m.get("db2"), Some(&6), "{m:?}");
    bed.sql("db3", "START SLAVE SQL_THREAD").unwrap();
    wait_until(Duration::from_secs(15), "db3 back in the pool", || {
        in_pool(&bed, "db3")
    })
    .unwrap();
    let m = spread(&bed, 6);
    assert!(m.get("db3").is_some_and(|n| *n >= 2), "{m:?}");
    // No replica fits: reads go to the master.
    bed.sql("db2", "STOP SLAVE SQL_THREAD").unwrap();
    bed.sql("db3", "STOP SLAVE SQL_THREAD").unwrap();
    wait_until(
        Duration::from_secs(10),
        "reads fall back to the master",
        || Ok(through(&bed, 6034, "SELECT @@hostname").is_ok_and(|h| h == "db1")),
    )
    .unwrap();
}

#[test]
fn writers_through_the_router_follow_a_failover_and_a_switchover() {
    // This router busy-polls (docs/router.md): the same guarantees hold.
    writers_follow_a_failover_and_a_switchover(", busy_poll: 200us");
}

#[test]
fn writers_through_nat_follow_a_failover_and_a_switchover() {
    writers_follow_a_failover_and_a_switchover(", relay: nat");
}

fn writers_follow_a_failover_and_a_switchover(router_extra: &str) {
    let mut opts = options();
    opts.router_extra = router_extra.to_string();
    let bed = router_bed_with(opts);
    if router_extra.contains("nat") {
        assert_forwarded_by_the_kernel(&bed);
    }
    let writer = bed.start_writer_with(&bed.gateway, 6033, 2000).unwrap();
    writer.wait_acks(50, Duration::from_secs(20)).unwrap();
    bed.kill_mysqld("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(30));
    writer.wait_acks(30, Duration::from_secs(20)).unwrap();
    let target = if new_master == "db2" { "db3" } else { "db2" };
    let master_ip = bed.host(&new_master).unwrap().ip.clone();
    wait_server(
        &bed,
        target,
        Duration::from_secs(10),
        "target replicates from the new master",
        |s| {
            s["replicates_from"]
                .as_str()
                .is_some_and(|r| r.starts_with(&master_ip))
                && s["io_running"] == "running"
        },
    );
    let out = bed.myha(&["switchover", "--to", target]).unwrap();
    assert!(
        out.status.success(),
        "{}\nhistory:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout)
    );
    writer.wait_acks(30, Duration::from_secs(20)).unwrap();
    let log = writer.stop();
    let present: std::collections::BTreeSet<u64> = bed
        .sql(target, "SELECT id FROM app.seq")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let missing: Vec<u64> = log
        .acks
        .iter()
        .map(|a| a.0)
        .filter(|i| !present.contains(i))
        .collect();
    assert!(missing.is_empty(), "acknowledged rows missing: {missing:?}");
    // After the switchover the former master (now a replica) holds exactly
    // what the new master had: no write went to it after the epoch changed.
    let caught_up = wait_until(Duration::from_secs(30), "old master caught up", || {
        Ok(bed.sql(&new_master, "SELECT @@gtid_binlog_state")?
            == bed.sql(target, "SELECT @@gtid_binlog_state")?)
    });
    if let Err(e) = caught_up {
        let state = |h: &str| bed.sql(h, "SELECT @@gtid_binlog_state").unwrap_or_default();
        panic!(
            "{e}\n{new_master} (former master): {}\n{target} (master): {}\n\
             {new_master} status: {}\nhistory:\n{}\nmanager log:\n{}",
            state(&new_master),
            state(target),
            bed.server_status(&new_master).unwrap_or_default(),
            String::from_utf8_lossy(&bed.myha(&["history"]).unwrap().stdout),
            bed.manager_log()
        );
    }
    let (gap, _) = log.longest_gap();
    eprintln!("longest write gap through the router ({router_extra}): {gap} ms");
}

#[test]
fn stalled_replica_leaves_the_pool_without_its_connections_being_cut() {
    stalled_replica_drains(router_bed(""));
}

/// A replica whose mysqld stops answering but lives (SIGSTOP: what an
/// overloaded or hung server looks like) leaves the reader pool, but a
/// query already running on it through the router is not cut: it
/// completes once the server answers again. Only a mysqld known gone has
/// its connections cut (then the client sees the close at once).
fn stalled_replica_drains(bed: Bed) {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Stdio};
    let open_on = |want: &str| -> Option<(Child, BufReader<std::process::ChildStdout>)> {
        for _ in 0..20 {
            // On a loaded host a replica can leave the pool for a moment
            // (its lag sampled late): only a try while it is in counts.
            wait_until(Duration::from_secs(20), "the replica in the pool", || {
                in_pool(&bed, want)
            })
            .unwrap();
            let mut child = Command::new("mariadb")
                .args(["-h", &bed.gateway, "-P", "6034", "-uapp", "-pmyha-app-pw"])
                .args(["-N", "-B", "--unbuffered", "--connect-timeout=5", "-e"])
                .arg("SELECT @@hostname; SELECT SLEEP(3); SELECT @@hostname")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if line.trim() == want {
                return Some((child, out));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    };
    let (mut child, mut out) = open_on("db3").expect("a reader connection on db3");
    bed.stall_mysqld("db3").unwrap();
    let stalled = std::time::Instant::now();
    // The agent's sample times out: the status says mysqld is not up and
    // why (the situation that used to cut every reader connection).
    wait_until(Duration::from_secs(15), "db3 reported not up", || {
        let s = bed.server_status("db3")?;
        Ok(s["mysqld_up"] == false && s["agent"]["mysqld_process"] == true)
    })
    .unwrap();
    // Its role unknown while it answers nothing, it is listed as a reader
    // no more, or listed out of the pool.
    wait_until(Duration::from_secs(10), "db3 out of the pool", || {
        Ok(!in_pool(&bed, "db3")?)
    })
    .unwrap();
    let m = spread(&bed, 4);
    assert_eq!(m.get("db2"), Some(&4), "reads avoid the stalled db3: {m:?}");
    // Past the point where the old rule cut connections, still stalled.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        panic!(
            "client ended ({status}) while db3 was stalled: {err:?}, output {rest:?}, after {:?}; endpoints {}",
            stalled.elapsed(),
            bed.router_endpoints().unwrap_or_default()
        );
    }
    bed.resume_mysqld("db3").unwrap();
    let held = stalled.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "the query on db3 was cut after {held:?}: {err}"
    );
    assert_eq!(
        rest.split_whitespace().collect::<Vec<_>>(),
        ["0", "db3"],
        "{err}"
    );
    wait_until(Duration::from_secs(20), "db3 back in the pool", || {
        in_pool(&bed, "db3")
    })
    .unwrap();
    // A mysqld that is gone: the client hears of it at once.
    let (mut child, _out) = open_on("db3").expect("a reader connection on db3");
    bed.kill_mysqld("db3").unwrap();
    wait_until(
        Duration::from_secs(5),
        "the client hears db3 is gone",
        || {
            Ok(child
                .try_wait()
                .map_err(|e| myha_testbed::BedError::Other(e.to_string()))?
                .is_some())
        },
    )
    .unwrap();
}

#[test]
fn stalled_replica_drains_through_nat_too() {
    let bed = nat_bed();
    stalled_replica_drains(bed);
}

fn nat_bed() -> Bed {
    let mut opts = options();
    opts.router_extra = ", relay: nat".to_string();
    let bed = router_bed_with(opts);
    wait_until(Duration::from_secs(10), "nat rules in place", || {
        Ok(router_metric(&bed, "myha_router_nat", &[]) == Some(1))
    })
    .unwrap();
    bed
}

/// The nftables table of the bed's `relay: nat` router, if it exists.
fn nat_table(bed: &Bed) -> Option<String> {
    let name = myha_testbed::nat_table_name(&format!("{}:6033", bed.gateway));
    let out = Command::new("nft")
        .args(["list", "table", "ip", &name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Both ports answer, and the router's own listeners took none of those
/// connections: the kernel forwarded them.
fn assert_forwarded_by_the_kernel(bed: &Bed) {
    let served = |endpoint: &str| {
        router_metric(
            bed,
            "myha_router_connections_total",
            &[("endpoint", endpoint)],
        )
        .unwrap()
    };
    let (w0, r0) = (served("writer"), served("reader"));
    assert_eq!(through(bed, 6033, "SELECT @@hostname").unwrap(), "db1");
    let m = spread(bed, 6);
    assert_eq!(m.values().sum::<usize>(), 6);
    assert_eq!((served("writer"), served("reader")), (w0, r0), "{m:?}");
    assert_eq!(bed.router_endpoints().unwrap()["relay"], "nat");
}

/// Wait until every client socket of this host connected to `port` has
/// had all it sent acknowledged (`ss -i` shows no `unacked`): nothing left
/// to retransmit, so nothing the client sends can meet a reset rule, and
/// only an active close can end a client blocked reading.
fn wait_acked(bed: &Bed, port: u16) {
    wait_until(
        Duration::from_secs(10),
        "the client's bytes acknowledged",
        || {
            let out = Command::new("ss")
                .args(["-tHni", "state", "established", "dst", &bed.gateway])
                .args(["dport", "=", &format!(":{port}")])
                .output()
                .map_err(|e| myha_testbed::BedError::Other(e.to_string()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(!text.trim().is_empty() && !text.contains("unacked"))
        },
    )
    .unwrap();
}

/// A client held open through a port: queries go in on stdin, answers and
/// errors come back. `--skip-reconnect`: a lost connection stays lost.
struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Session {
    fn open(bed: &Bed, port: u16) -> Session {
        use std::process::Stdio;
        // `timeout`: a hung client ends (without the error asserted on).
        let mut child = Command::new("timeout")
            .args(["30", "mariadb", "-h", &bed.gateway, "-P", &port.to_string()])
            .args(["-uapp", "-pmyha-app-pw", "-N", "-B", "--unbuffered"])
            .args(["--skip-reconnect", "--connect-timeout=5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Session { child, stdin, out }
    }

    /// The next statement finds the connection reset (the client says it
    /// lost it), not answered and not hung.
    fn expect_reset(&mut self, what: &str) {
        let asked = std::time::Instant::now();
        match self.query("SELECT @@hostname") {
            Ok(answer) => panic!("{what}: answered {answer:?}, not reset"),
            Err(err) => assert!(
                err.contains("Lost connection")
                    || err.contains("gone away")
                    || err.contains("Connection reset by peer"),
                "{what}: not reset after {:?}: {err:?}",
                asked.elapsed()
            ),
        }
    }

    /// Send a statement without waiting for its answer.
    fn send(&mut self, sql: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{sql};").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Wait up to `limit` for the client to end; its error output.
    fn ended_within(&mut self, limit: Duration) -> Option<String> {
        use std::io::Read;
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Some(err);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// One statement; its first output line, or the client's error.
    fn query(&mut self, sql: &str) -> Result<String, String> {
        use std::io::{BufRead, Read, Write};
        let sent = writeln!(self.stdin, "{sql};").and_then(|()| self.stdin.flush());
        let mut line = String::new();
        match (sent, self.out.read_line(&mut line)) {
            (Ok(()), Ok(n)) if n > 0 => Ok(line.trim().to_string()),
            _ => {
                let _ = self.child.wait();
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                Err(err.trim().to_string())
            }
        }
    }
}

/// `relay: nat`: when the master changes, a connection the kernel
/// forwarded to the old master is reset at its next packet. Here the old
/// master is partitioned away, so the manager cannot kill its sessions and
/// nothing of the network would ever answer: without the reset the client
/// would hang (its statement retransmitted into the void). A client of
/// this host blocked reading an answer (a long query in flight when the
/// partition came) is closed as soon as the router sees the new master,
/// without sending anything. New connections reach the new master,
/// forwarded too.
#[test]
fn nat_resets_connections_to_a_partitioned_old_master_after_failover() {
    let bed = nat_bed();
    assert_forwarded_by_the_kernel(&bed);
    let mut old = Session::open(&bed, 6033);
    assert_eq!(old.query("SELECT @@hostname").unwrap(), "db1");
    let mut blocked = Session::open(&bed, 6033);
    assert_eq!(blocked.query("SELECT @@hostname").unwrap(), "db1");
    blocked.send("SELECT SLEEP(25)");
    // Running on db1 (the statement was delivered) before the partition.
    wait_until(Duration::from_secs(10), "the long query runs on db1", || {
        Ok(bed.sql("db1", "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(25)%'")? == "1")
    })
    .unwrap();
    wait_acked(&bed, 6033);
    bed.partition("db1").unwrap();
    let new_master = wait_new_master(&bed, "db1", Duration::from_secs(40));
    wait_until(Duration::from_secs(10), "router follows", || {
        Ok(bed.router_endpoints()?["writer"]["name"] == new_master.as_str())
    })
    .unwrap();
    let err = blocked
        .ended_within(Duration::from_secs(5))
        .expect("the client blocked on the old master is closed at once");
    assert!(
        err.contains("Lost connection") || err.contains("gone away") || err.contains("abort"),
        "{err}"
    );
    old.expect_reset("the connection to the old master");
    assert_forwarded_by_the_kernel_to(&bed, &new_master);
    bed.heal("db1").unwrap();
}

fn assert_forwarded_by_the_kernel_to(bed: &Bed, master: &str) {
    let before = router_metric(
        bed,
        "myha_router_connections_total",
        &[("endpoint", "writer")],
    );
    assert_eq!(through(bed, 6033, "SELECT @@hostname").unwrap(), master);
    assert_eq!(
        router_metric(
            bed,
            "myha_router_connections_total",
            &[("endpoint", "writer")]
        ),
        before
    );
}

/// `relay: nat`: the rules cannot outlive their router. Killed (no
/// clean-up), its table stays but expires: new connections are refused
/// and forwarded ones reset, as if the router's sockets had closed; a new
/// router replaces the table. Stopped properly, it retires the table at
/// once: nothing forwarded any more, its connections reset.
#[test]
fn nat_rules_expire_when_the_router_dies_and_go_when_it_stops() {
    let mut bed = nat_bed();
    let mut open = Session::open(&bed, 6033);
    assert_eq!(open.query("SELECT @@hostname").unwrap(), "db1");
    bed.kill_router();
    let killed = std::time::Instant::now();
    wait_until(Duration::from_secs(15), "new connections refused", || {
        Ok(through(&bed, 6033, "SELECT 1").is_err())
    })
    .unwrap();
    let refused_after = killed.elapsed();
    assert!(
        nat_table(&bed).is_some(),
        "a killed router cannot remove its table"
    );
    open.expect_reset("a forwarded connection of the killed router");
    eprintln!("rules expired {refused_after:?} after the router was killed");
    bed.start_router().unwrap();
    wait_until(Duration::from_secs(15), "a new router forwards", || {
        Ok(router_metric(&bed, "myha_router_nat", &[]) == Some(1)
            && through(&bed, 6033, "SELECT @@hostname").as_deref() == Ok("db1"))
    })
    .unwrap();
    assert_forwarded_by_the_kernel_to(&bed, "db1");
    let mut open = Session::open(&bed, 6033);
    assert_eq!(open.query("SELECT @@hostname").unwrap(), "db1");
    let mut blocked = Session::open(&bed, 6034);
    assert!(blocked
        .query("SELECT @@hostname")
        .unwrap()
        .starts_with("db"));
    blocked.send("SELECT SLEEP(25)");
    wait_acked(&bed, 6034);
    bed.stop_router();
    // Closed with the router, as the other relays' sockets would be.
    if blocked.ended_within(Duration::from_secs(5)).is_none() {
        let sh = |cmd: &str| {
            Command::new("sh")
                .args(["-c", cmd])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        panic!(
            "a reader in a long query is closed when the router stops\n\
             ==== conntrack\n{}\n==== ss\n{}\n==== router log (tail)\n{}",
            sh("conntrack -L -p tcp --orig-port-dst 6034 2>&1"),
            sh("ss -tnoi dport = :6034 2>&1"),
            sh(&format!("tail -25 {}/router.log", bed.dir.display())),
        );
    }
    let table = nat_table(&bed).expect("a stopped router leaves its retired table");
    assert!(
        !table.contains("dnat to"),
        "a retired table forwards: {table}"
    );
    open.expect_reset("a forwarded connection of the stopped router");
    assert!(through(&bed, 6033, "SELECT 1").is_err(), "nothing listens");
}

#[test]
fn router_survives_the_manager_stopping_and_coming_back() {
    let mut bed = router_bed("");
    bed.stop_manager();
    wait_until(Duration::from_secs(20), "router notices", || {
        Ok(bed.router_endpoints()?["manager_reachable"] == false)
    })
    .unwrap();
    // The last known topology still serves both ports.
    assert_eq!(through(&bed, 6033, "SELECT @@hostname").unwrap(), "db1");
    assert!(through(&bed, 6034, "SELECT @@hostname")
        .unwrap()
        .starts_with("db"));
    bed.start_manager().unwrap();
    wait_until(Duration::from_secs(20), "router follows again", || {
        Ok(bed.router_endpoints()?["manager_reachable"] == true)
    })
    .unwrap();
}

/// `relay: nat` spreads as the user-space path does: weights 3:1 give
/// 12 and 4 of 16 connections (the kernel's counter runs on across the
/// router's refreshes), address hash keeps one client on one replica; the
/// kernel forwarded every one of them.
#[test]
fn nat_spreads_reads_by_weight_and_by_client_address() {
    let mut bed = {
        let mut opts = options();
        opts.router_extra = ", relay: nat, strategy: weighted".to_string();
        opts.router = true;
        let mut bed = Bed::start(opts).expect("start bed");
        let cfg = std::fs::read_to_string(&bed.config_path).unwrap().replacen(
            "  - name: db2\n    cluster: bed\n",
            "  - name: db2\n    cluster: bed\n    weight: 3\n",
            1,
        );
        std::fs::write(&bed.config_path, cfg).unwrap();
        bed.start_manager().unwrap();
        bed.start_router().unwrap();
        wait_healthy(&bed, Duration::from_secs(30));
        bed
    };
    for strategy in ["weighted", "address_hash"] {
        if strategy != "weighted" {
            let cfg = std::fs::read_to_string(&bed.config_path)
                .unwrap()
                .replace("strategy: weighted", &format!("strategy: {strategy}"));
            std::fs::write(&bed.config_path, cfg).unwrap();
            bed.start_router().unwrap();
        }
        wait_until(Duration::from_secs(15), "both replicas in the pool", || {
            Ok(in_pool(&bed, "db2")?
                && in_pool(&bed, "db3")?
                && router_metric(&bed, "myha_router_nat", &[]) == Some(1))
        })
        .unwrap();
        let served = || {
            router_metric(
                &bed,
                "myha_router_connections_total",
                &[("endpoint", "reader")],
            )
        };
        let rewrites = || router_metric(&bed, "myha_router_nat_rewrites_total", &[]);
        // Across more than one refresh of the rules. On a loaded host a
        // replica can leave the pool for a moment, and the rules are then
        // rewritten: such a try does not count.
        let mut m = BTreeMap::new();
        for _ in 0..5 {
            let (before, rules) = (served(), rewrites());
            m = spread(&bed, 8);
            std::thread::sleep(Duration::from_millis(1500));
            for (k, v) in spread(&bed, 8) {
                *m.entry(k).or_insert(0) += v;
            }
            assert_eq!(served(), before, "the router itself took reads: {m:?}");
            if rewrites() == rules {
                break;
            }
            m.clear();
            wait_until(
                Duration::from_secs(15),
                "both replicas back in the pool",
                || Ok(in_pool(&bed, "db2")? && in_pool(&bed, "db3")?),
            )
            .unwrap();
        }
        if strategy == "weighted" {
            assert_eq!(
                (m.get("db2"), m.get("db3")),
                (Some(&12), Some(&4)),
                "weights 3:1 over 16 connections: {m:?}"
            );
        } else {
            assert_eq!(m.len(), 1, "sticky by client address: {m:?}");
        }
    }
}

#[test]
fn weighted_least_connections_and_address_hash_strategies() {
    // Weighted: db2 weight 3, db3 weight 1.
    let bed = {
        let mut opts = options();
        opts.router = true;
        let bed = Bed::start(opts).expect("start bed");
        let cfg = std::fs::read_to_string(&bed.config_path).unwrap();
        let cfg = cfg
            .replace(
                "writer_hold_timeout: 10s }",
                "writer_hold_timeout: 10s, strategy: weighted }",
            )
            .replacen(
                "  - name: db2\n    cluster: bed\n",
                "  - name: db2\n    cluster: bed\n    weight: 3\n",
                1,
            );
        std::fs::write(&bed.config_path, cfg).unwrap();
        let mut bed = bed;
        bed.start_manager().unwrap();
        bed.start_router().unwrap();
        wait_healthy(&bed, Duration::from_secs(30));
        bed
    };
    wait_until(Duration::from_secs(15), "both replicas in the pool", || {
        let e = bed.router_endpoints()?;
        Ok(e["readers"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|x| x["in_pool"] == true).count() == 2))
    })
    .unwrap();
    let m = spread(&bed, 16);
    assert_eq!(
        (m.get("db2"), m.get("db3")),
        (Some(&12), Some(&4)),
        "weights 3:1 over 16 connections: {m:?}"
    );

    // Address hash: one client always lands on the same replica.
    let cfg = std::fs::read_to_string(&bed.config_path)
        .unwrap()
        .replace("strategy: weighted", "strategy: address_hash");
    std::fs::write(&bed.config_path, cfg).unwrap();
    let mut bed = bed;
    bed.start_router().unwrap();
    wait_until(Duration::from_secs(15), "router back", || {
        let e = bed.router_endpoints()?;
        Ok(e["readers"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|x| x["in_pool"] == true).count() == 2))
    })
    .unwrap();
    let m = spread(&bed, 8);
    assert_eq!(m.len(), 1, "sticky by client address: {m:?}");

    // Least connections: with a long query holding db-A, the next goes to db-B.
    let cfg = std::fs::read_to_string(&bed.config_path)
        .unwrap()
        .replace("strategy: address_hash", "strategy: least_connections");
    std::fs::write(&bed.config_path, cfg).unwrap();
    bed.start_router().unwrap();
    wait_until(Duration::from_secs(15), "router back", || {
        let e = bed.router_endpoints()?;
        Ok(e["readers"]
            .as_array()
            .is_some_and(|r| r.iter().filter(|x| x["in_pool"] == true).count() == 2))
    })
    .unwrap();
    let gw = bed.gateway.clone();
    let holder = std::thread::spawn(move || {
        Command::new("mariadb")
            .args([
                "-h",
                &gw,
                "-P",
                "6034",
                "-uapp",
                "-pmyha-app-pw",
                "-N",
                "-B",
                "-e",
                "SELECT @@hostname, SLEEP(3)",
            ])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    });
    wait_until(Duration::from_secs(5), "one reader connection open", || {
        let e = bed.router_endpoints()?;
        Ok(e["readers"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["connections"] == 1)))
    })
    .unwrap();
    let other = through(&bed, 6034, "SELECT @@hostname").unwrap();
    let held = holder.join().unwrap();
    assert!(!held.is_empty());
    assert_ne!(other, held, "least connections must avoid the busy replica");
}

/// The router's metric `name` with `labels`, as a number (the exposition
/// parsed by a Prometheus text parser).
fn router_metric(bed: &Bed, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    // Plain or TLS (MYHA_BED_TLS=1): the bed's curl knows which.
    let url = format!("{}://{}:6035/metrics", bed.scheme(), bed.gateway);
    let (_, body) = bed.http("GET", &url, None, None).ok()?;
    let scrape = myha_testbed::parse_metrics(&body).ok()?;
    myha_testbed::metric_value(&scrape, name, labels).map(|v| v as u64)
}

/// Thousands of concurrent connections on the router's one thread: 2,000
/// clients hold connections through the writer port, each greeted by the
/// master; the router counts them live, a query still goes through beside
/// them, and the count falls back when they close.
#[test]
fn two_thousand_concurrent_connections_through_the_writer_port() {
    const N: usize = 2000;
    assert!(
        raise_fd_limit() >= 2 * N as u64 + 100,
        "this test needs an open-files limit above {}",
        2 * N + 100
    );
    let mut opts = options();
    // The clients stop at the greeting: the server must not drop them as
    // unauthenticated (connect_timeout) while the test looks.
    opts.mysqld_extra = format!("max_connections = {}\nconnect_timeout = 120", N + 200);
    // From one source, well past the default caps (64 per source) and
    // the handshake timeout: this test is about capacity, not limits.
    opts.router_extra =
        ", max_connections: 3000, max_connections_per_source: 3000, handshake_timeout: 300s"
            .to_string();
    let bed = router_bed_with(opts);
    let writer = format!("{}:6033", bed.gateway);
    let (open, version) = open_greeted(&writer, N, Duration::from_secs(10)).unwrap();
    assert_eq!(open.len(), N);
    assert!(version.contains("MariaDB"), "greeting from {version:?}");
    let active = "myha_router_active_connections";
    wait_until(
        Duration::from_secs(10),
        "router counts 2,000 live writer connections",
        || Ok(router_metric(&bed, active, &[("endpoint", "writer")]) == Some(N as u64)),
    )
    .unwrap();
    // The master holds them too, still at the handshake.
    let held: usize = bed
        .sql(
            "db1",
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE USER = 'unauthenticated user'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        held >= N,
        "master holds {held} client connections, expected {N}"
    );
    assert_eq!(through(&bed, 6033, "SELECT @@hostname").unwrap(), "db1");
    drop(open);
    wait_until(
        Duration::from_secs(20),
        "live writer connections drop to 0",
        || Ok(router_metric(&bed, active, &[("endpoint", "writer")]) == Some(0)),
    )
    .unwrap();
}
