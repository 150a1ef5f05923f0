//! Manager high availability on etcd: three managers, one leader (an etcd
//! lease), only it acts, every one serves reads. Each test kills, cuts or
//! starves a manager or etcd and samples (every 100 ms) who leads, the
//! CLI's answers, and which servers are writable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use myha_api::coordination::UNAVAILABLE;
use myha_testbed::{
    vip_path_picture, wait_until, AppHost, Bed, PatientOptions, PatientWriter, Sampler,
    HA_LEASE_TTL,
};
use serde_json::Value;

const MANAGERS: usize = 3;
const SAMPLE: Duration = Duration::from_millis(100);

/// One HA bed at a time: each is three database hosts, three managers and
/// three etcd members, and two at once on a 2-core machine starve the
/// timings these tests measure.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn fail(bed: &Bed, what: String) -> ! {
    panic!(
        "{what}\ncoordination: {:#?}\n{}",
        bed.coordinations(),
        bed.diagnostics()
    );
}

/// A healthy bed of three managers on etcd, one of them leading.
fn ha_bed() -> Bed {
    ha_bed_with(false)
}

/// [`ha_bed`], with etcd on TLS and client certificates if `etcd_tls`.
fn ha_bed_with(etcd_tls: bool) -> Bed {
    let mut opts = options();
    opts.ha_managers = MANAGERS;
    opts.vip = true;
    opts.etcd_tls = etcd_tls;
    let bed = Bed::start(opts).expect("start an HA bed");
    if let Err(e) = bed.wait_leader(Duration::from_secs(30)) {
        fail(&bed, format!("no leader after the start: {e}"));
    }
    wait_healthy(&bed, Duration::from_secs(30));
    bed.wait_ready(Duration::from_secs(10)).unwrap();
    bed
}

/// [`ha_bed`] with the patient table, an application host and a warm
/// sampler of writable servers and VIP holders.
fn ha_gray_bed() -> (Bed, AppHost, Sampler) {
    let bed = ha_bed();
    bed.ensure_patient_table("db1").unwrap();
    let app = bed.start_app().unwrap();
    let sampler = Sampler::start(&bed).unwrap();
    sampler.wait_warm(Duration::from_secs(20)).unwrap();
    (bed, app, sampler)
}

/// Two patient clients through the VIP (60 s of patience each).
fn vip_writer(bed: &Bed, app: &AppHost) -> PatientWriter {
    let w = PatientWriter::start(PatientOptions {
        clients: 2,
        persistent: 1,
        netns_container: Some(app.container.clone()),
        tls_ca: app.tls_ca.clone(),
        ..PatientOptions::new("vip", &bed.vip(), 3306)
    })
    .unwrap();
    vip_acks(bed, app, &w, 10);
    w
}

/// Sleep what is left of a 100 ms sample that began at `t`.
fn pace(t: Instant) {
    if let Some(rest) = SAMPLE.checked_sub(t.elapsed()) {
        std::thread::sleep(rest);
    }
}

/// Sample the leaders every 100 ms until `done` holds or `limit` passes.
/// Returns how long it took (`None`: it did not happen) and every sample
/// in which two or more managers claimed to lead.
fn watch_leaders(
    bed: &Bed,
    limit: Duration,
    mut done: impl FnMut(&[usize]) -> bool,
) -> (Option<Duration>, Vec<String>) {
    let start = Instant::now();
    let mut splits = Vec::new();
    while start.elapsed() <= limit {
        let t = Instant::now();
        let leaders = bed.leaders();
        if leaders.len() > 1 {
            splits.push(format!(
                "{} ms: {leaders:?} lead",
                start.elapsed().as_millis()
            ));
        }
        if done(&leaders) {
            return (Some(start.elapsed()), splits);
        }
        pace(t);
    }
    (None, splits)
}

/// For `span`, every 100 ms: exactly `leader` leads. The samples that
/// showed anything else.
fn steady_leader(bed: &Bed, leader: usize, span: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut wrong = Vec::new();
    while start.elapsed() < span {
        let t = Instant::now();
        let l = bed.leaders();
        if l != [leader] {
            wrong.push(format!("{} ms: {l:?} lead", start.elapsed().as_millis()));
        }
        pace(t);
    }
    wrong
}

/// `myha history --json`, parsed.
fn history(bed: &Bed) -> Vec<Value> {
    let out = bed
        .myha(&["history", "--json", "--limit", "10000"])
        .unwrap();
    assert!(
        out.status.success(),
        "myha history: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Journal events of operations of `kind` ("failover", "switchover") with
/// `step` and status `ok`, counted per operation id.
fn ok_steps(bed: &Bed, kind: &str, step: &str) -> BTreeMap<String, usize> {
    let mut by_op = BTreeMap::new();
    for e in history(bed) {
        let op = e["operation"].as_str().unwrap_or_default();
        if op.starts_with(kind) && e["step"] == step && e["status"] == "ok" {
            *by_op.entry(op.to_string()).or_insert(0) += 1;
        }
    }
    by_op
}

/// Exactly one completed operation of `kind`, finished once and promoting
/// once.
fn assert_one_operation(bed: &Bed, kind: &str) {
    // The `finish` step comes after the post hook: wait for it.
    let _ = wait_until(
        Duration::from_secs(30),
        "the operation's finish step",
        || Ok(!ok_steps(bed, kind, "finish").is_empty()),
    );
    let finished = ok_steps(bed, kind, "finish");
    let promoted = ok_steps(bed, kind, "promote");
    let once = |m: &BTreeMap<String, usize>| m.len() == 1 && m.values().all(|n| *n == 1);
    if !once(&finished) || !once(&promoted) {
        fail(
            bed,
            format!(
                "expected exactly one {kind}: `finish` events by operation {finished:?}, \
                 `promote` events {promoted:?}"
            ),
        );
    }
}

/// No sample saw two writable servers or two VIP holders since `from`,
/// the sampler watched throughout; every id a writer saw acknowledged is on
/// the master on record, every writer had some; exactly one server is
/// writable now.
fn assert_safe(bed: &Bed, sampler: &Sampler, from: Instant, writers: Vec<PatientWriter>) {
    let settled = Settled {
        every_writer_acked: true,
        one_writable: true,
    };
    let problems = safety_problems(bed, sampler, from, writers, settled);
    if !problems.is_empty() {
        fail(bed, problems.join("\n"));
    }
}

/// Kill the leader (kill -9): a follower leads within the lease plus 3 s,
/// and the CLI answers throughout; the killed one, restarted, follows.
/// On etcd over TLS with client certificates (every other test runs on
/// plain HTTP).
#[test]
fn killing_the_idle_leader_hands_over_within_the_lease() {
    let _one_at_a_time = one_at_a_time();
    let bed = ha_bed_with(true);
    let own = std::fs::read_to_string(bed.manager_config_n(0)).unwrap();
    assert!(
        own.contains("endpoints: [https://") && own.contains("tls: { ca_file:"),
        "the managers reach etcd over TLS:\n{own}"
    );
    let old = bed.wait_leader(Duration::from_secs(10)).unwrap();
    let stop = AtomicBool::new(false);
    let (new, took, splits, statuses, failures) = std::thread::scope(|s| {
        // `myha status --json` every 100 ms, from before the kill to after
        // the handover.
        let sampler = s.spawn(|| {
            let start = Instant::now();
            let mut n = 0usize;
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                n += 1;
                if let Err(e) = bed.status() {
                    failures.push(format!("{} ms: {e}", start.elapsed().as_millis()));
                }
                pace(t);
            }
            (n, failures)
        });
        std::thread::sleep(Duration::from_millis(500));
        bed.kill_manager_n(old);
        let (took, splits) = watch_leaders(&bed, HA_LEASE_TTL + Duration::from_secs(3), |l| {
            l.len() == 1 && l[0] != old
        });
        let new = bed.leader();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        let (n, failures) = sampler.join().unwrap();
        (new, took, splits, n, failures)
    });
    let Some(took) = took else {
        fail(
            &bed,
            format!(
                "no other manager leads within {HA_LEASE_TTL:?} + 3 s of killing manager {old}"
            ),
        );
    };
    let new = new.unwrap_or_else(|| fail(&bed, "the new leader did not stay".into()));
    eprintln!(
        "manager {old} killed: manager {new} leads after {} ms; {statuses} status samples, {} failed",
        took.as_millis(),
        failures.len()
    );
    if !splits.is_empty() || !failures.is_empty() {
        fail(
            &bed,
            format!("two leaders in {splits:?}; `myha status` failed in {failures:?}"),
        );
    }

    // The killed manager comes back as a follower of the new leader.
    bed.start_manager_n(old).unwrap();
    wait_until(
        Duration::from_secs(15),
        "the restarted manager answers",
        || {
            Ok(bed
                .health_n(old, Duration::from_secs(1))?
                .coordination
                .is_some_and(|c| c.leader.is_some()))
        },
    )
    .unwrap_or_else(|e| fail(&bed, e.to_string()));
    let c = bed
        .health_n(old, Duration::from_secs(1))
        .unwrap()
        .coordination
        .unwrap();
    assert!(!c.is_leader, "{c:?}");
    assert_eq!(c.leader.as_deref(), Some(bed.manager_url_n(new).as_str()));
    assert_eq!(c.this, bed.manager_url_n(old));
    let wrong = steady_leader(&bed, new, Duration::from_secs(5));
    if !wrong.is_empty() {
        fail(
            &bed,
            format!("after manager {old} came back, not exactly manager {new} leading: {wrong:?}"),
        );
    }
}

/// The leader dies, then the master's mysqld: the new leader fails over,
/// once, losing no acknowledged write, never two writable servers.
#[test]
fn failover_runs_once_after_the_leader_dies() {
    let _one_at_a_time = one_at_a_time();
    let (bed, app, sampler) = ha_gray_bed();
    let writer = vip_writer(&bed, &app);
    let (epoch, _) = bed.epoch_master().unwrap();
    let leader = bed.wait_leader(Duration::from_secs(10)).unwrap();
    let from = Instant::now();
    bed.kill_manager_n(leader);
    bed.kill_mysqld("db1").unwrap();
    let new = bed
        .wait_failover("db1", epoch, Duration::from_secs(60))
        .unwrap_or_else(|| fail(&bed, "no failover after the leader died".into()));
    eprintln!(
        "manager {leader} and db1's mysqld killed: {new} master after {} ms",
        from.elapsed().as_millis()
    );
    let now_leading = bed.wait_leader(Duration::from_secs(10)).unwrap();
    assert_ne!(now_leading, leader);
    vip_acks(&bed, &app, &writer, 10);
    assert_safe(&bed, &sampler, from, vec![writer]);
    let (after, master) = bed.epoch_master().unwrap();
    assert_eq!(after, epoch + 1, "one new epoch");
    assert_eq!(master.as_deref(), Some(new.as_str()));
    assert_one_operation(&bed, "failover");

    // The dead leader back: it runs nothing again.
    bed.start_manager_n(leader).unwrap();
    std::thread::sleep(HA_LEASE_TTL + Duration::from_secs(2));
    assert_eq!(bed.leader(), Some(now_leading));
    assert_eq!(bed.epoch_master().unwrap().0, epoch + 1);
    assert_one_operation(&bed, "failover");
    heal_old_master(&bed, "db1", "after the failover");
}

/// The leader loses etcd (every connection closed, none accepted): it
/// stops leading, a follower leads within the lease plus 3 s, never two at
/// once; healed, it follows; a failover then runs once.
#[test]
fn a_leader_cut_from_etcd_stops_acting_and_a_follower_takes_over() {
    let _one_at_a_time = one_at_a_time();
    let (bed, app, sampler) = ha_gray_bed();
    let old = bed.wait_leader(Duration::from_secs(10)).unwrap();
    bed.cut_from_etcd(old).unwrap();
    let (took, splits) = watch_leaders(&bed, HA_LEASE_TTL + Duration::from_secs(3), |l| {
        l.len() == 1 && l[0] != old
    });
    let Some(took) = took else {
        fail(
            &bed,
            format!("no other manager leads within {HA_LEASE_TTL:?} + 3 s of cutting manager {old} from etcd"),
        );
    };
    let new = bed
        .leader()
        .unwrap_or_else(|| fail(&bed, "no steady leader".into()));
    eprintln!(
        "manager {old} cut from etcd: manager {new} leads after {} ms",
        took.as_millis()
    );
    if !splits.is_empty() {
        fail(
            &bed,
            format!("two leaders while the leader was cut: {splits:?}"),
        );
    }
    let c = bed
        .health_n(old, Duration::from_secs(2))
        .unwrap_or_else(|e| fail(&bed, format!("the cut manager does not answer: {e}")))
        .coordination
        .unwrap();
    assert!(!c.is_leader, "the cut manager still leads: {c:?}");

    bed.heal_etcd(old).unwrap();
    let wrong = steady_leader(&bed, new, Duration::from_secs(6));
    if !wrong.is_empty() {
        fail(
            &bed,
            format!("after the heal, not exactly manager {new} leading: {wrong:?}"),
        );
    }

    let writer = vip_writer(&bed, &app);
    let (epoch, _) = bed.epoch_master().unwrap();
    let from = Instant::now();
    bed.kill_mysqld("db1").unwrap();
    let master = bed
        .wait_failover("db1", epoch, Duration::from_secs(60))
        .unwrap_or_else(|| fail(&bed, "no failover after the heal".into()));
    eprintln!(
        "failover to {master} after {} ms",
        from.elapsed().as_millis()
    );
    vip_acks(&bed, &app, &writer, 10);
    assert_safe(&bed, &sampler, from, vec![writer]);
    assert_one_operation(&bed, "failover");
    let out = bed.myha(&["history", "--last", "25"]).unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    heal_old_master(&bed, "db1", "after the failover");
}

/// One etcd member down changes nothing (the leader stays and acts); all
/// down: every manager says no failover is possible, and none happens;
/// etcd back: a leader, and the failover.
#[test]
fn etcd_trouble() {
    let _one_at_a_time = one_at_a_time();
    let (bed, app, sampler) = ha_gray_bed();
    let leader = bed.wait_leader(Duration::from_secs(10)).unwrap();

    // One member down, the raft leader if one is known: quorum remains.
    let member = bed.etcd().leader_member().unwrap_or(0);
    bed.etcd().stop_member(member);
    let start = Instant::now();
    let mut wrong = Vec::new();
    while start.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        let l = bed.leaders();
        if l != [leader] {
            wrong.push(format!("{} ms: {l:?} lead", start.elapsed().as_millis()));
        }
        let blocked = bed
            .coordinations()
            .into_iter()
            .flatten()
            .filter_map(|c| c.blocked)
            .collect::<Vec<_>>();
        if !blocked.is_empty() {
            wrong.push(format!(
                "{} ms: blocked {blocked:?}",
                start.elapsed().as_millis()
            ));
        }
        pace(t);
    }
    let st = bed.status().unwrap();
    if !wrong.is_empty() || !st["coordination"]["blocked"].is_null() {
        fail(
            &bed,
            format!(
                "with etcd member {member} down: {wrong:?}; status coordination {}",
                st["coordination"]
            ),
        );
    }
    // The leader still acts: a switchover to db2.
    let out = bed.myha(&["switchover", "--to", "db2"]).unwrap();
    if !out.status.success() {
        fail(
            &bed,
            format!(
                "switchover with one etcd member down: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let s = bed.wait_full_strength(Duration::from_secs(30));
    if !s.full() || s.master.as_deref() != Some("db2") {
        fail(&bed, format!("after the switchover: {s:?}"));
    }
    assert_one_operation(&bed, "switchover");

    // Every member down: within a few seconds nobody may fail over, and
    // every manager and `myha status` say so.
    bed.etcd().stop_all();
    let r = wait_until(
        HA_LEASE_TTL + Duration::from_secs(5),
        "every manager: coordination unavailable",
        || {
            let c = bed.coordinations();
            Ok(c.iter().all(|c| {
                c.as_ref().is_some_and(|c| {
                    !c.is_leader && !c.available && c.blocked.as_deref() == Some(UNAVAILABLE)
                })
            }))
        },
    );
    if let Err(e) = r {
        fail(&bed, e.to_string());
    }
    let st = bed.status().unwrap();
    assert_eq!(
        st["coordination"]["blocked"], UNAVAILABLE,
        "status: {}",
        st["coordination"]
    );
    let text = bed.myha(&["status"]).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(UNAVAILABLE), "myha status:\n{text}");

    // The master's mysqld dies: no failover for 15 s.
    let (epoch, _) = bed.epoch_master().unwrap();
    bed.kill_mysqld("db2").unwrap();
    // The window starts once db2 no longer answers (before, it is the
    // writable master).
    wait_until(Duration::from_secs(10), "db2's mysqld gone", || {
        Ok(bed.sql("db2", "SELECT 1").is_err())
    })
    .unwrap_or_else(|e| fail(&bed, e.to_string()));
    let from = Instant::now();
    while from.elapsed() < Duration::from_secs(15) {
        let t = Instant::now();
        if let Ok((e, m)) = bed.epoch_master() {
            if e != epoch || m.as_deref() != Some("db2") {
                fail(
                    &bed,
                    format!(
                        "{} ms after db2's mysqld died, with etcd down: epoch {e}, master {m:?}",
                        from.elapsed().as_millis()
                    ),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500).saturating_sub(t.elapsed()));
    }
    let quiet = sampler.report_between(from, Instant::now());
    if quiet.max_writable > 0 || quiet.max_vip > 1 {
        fail(
            &bed,
            format!("a server became writable while etcd was down: {quiet}"),
        );
    }
    eprintln!("15 s without etcd: no failover ({quiet})");

    // etcd back: a leader, then the failover (once).
    let writer = vip_writer_later(&bed, &app);
    let back = Instant::now();
    bed.etcd().start_all().unwrap();
    let l = bed
        .wait_leader(Duration::from_secs(20))
        .unwrap_or_else(|e| fail(&bed, e.to_string()));
    eprintln!(
        "etcd back: manager {l} leads after {} ms",
        back.elapsed().as_millis()
    );
    let master = bed
        .wait_failover("db2", epoch, Duration::from_secs(60))
        .unwrap_or_else(|| fail(&bed, "no failover once etcd was back".into()));
    eprintln!(
        "failover to {master} {} ms after etcd came back",
        back.elapsed().as_millis()
    );
    vip_acks(&bed, &app, &writer, 10);
    assert_safe(&bed, &sampler, from, vec![writer]);
    assert_one_operation(&bed, "failover");
    let st = bed.status().unwrap();
    assert!(
        st["coordination"]["blocked"].is_null(),
        "{}",
        st["coordination"]
    );
    heal_old_master(&bed, "db2", "after etcd came back");
}

/// Patient clients through the VIP while no server is writable: they wait
/// (60 s) for the failover instead of needing an acknowledgement now.
/// `n` more writes acknowledged through the VIP within 30 s; else the
/// failure shows where the VIP's packets go.
fn vip_acks(bed: &Bed, app: &AppHost, w: &PatientWriter, n: usize) {
    if let Err(e) = w.wait_acks(n, Duration::from_secs(30)) {
        fail(bed, format!("{e}\n{}", vip_path_picture(bed, app)));
    }
}

fn vip_writer_later(bed: &Bed, app: &AppHost) -> PatientWriter {
    PatientWriter::start(PatientOptions {
        clients: 2,
        persistent: 1,
        netns_container: Some(app.container.clone()),
        tls_ca: app.tls_ca.clone(),
        ..PatientOptions::new("vip", &bed.vip(), 3306)
    })
    .unwrap()
}

/// A switchover asked of a follower (the CLI with the follower first in
/// `manager.urls`, then the follower's API directly) is run by the
/// leader, once each.
#[test]
fn a_switchover_sent_to_a_follower_is_run_by_the_leader() {
    let _one_at_a_time = one_at_a_time();
    let bed = ha_bed();
    let leader = bed.wait_leader(Duration::from_secs(10)).unwrap();
    let follower = (leader + 1) % MANAGERS;

    // The CLI, asking the follower first.
    let config = bed.config_preferring(follower).unwrap();
    let out = Command::new(&bed.myha_bin)
        .args(["switchover", "--to", "db2", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        fail(
            &bed,
            format!("switchover through manager {follower}: {said}"),
        );
    }
    eprintln!("switchover through manager {follower} (a follower):\n{said}");
    let s = bed.wait_full_strength(Duration::from_secs(30));
    if !s.full() || s.master.as_deref() != Some("db2") {
        fail(&bed, format!("after the switchover to db2: {s:?}"));
    }
    assert_one_operation(&bed, "switchover");
    assert_eq!(bed.leader(), Some(leader), "the leader changed");

    // The follower's API directly: the answer streams the steps, then the
    // report.
    let url = format!(
        "{}/v1/clusters/{}/switchover",
        bed.manager_url_n(follower),
        myha_testbed::CLUSTER
    );
    let (code, body) = bed
        .http_within(
            "POST",
            &url,
            Some(&bed.token),
            Some(r#"{"to":"db3"}"#),
            Duration::from_secs(60),
        )
        .unwrap();
    let lines: Vec<Value> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let report = lines.iter().find_map(|l| l.get("report"));
    let events = lines.iter().filter(|l| l.get("event").is_some()).count();
    if code != 200 || report.is_none_or(|r| r["status"] != "completed") || events == 0 {
        fail(
            &bed,
            format!("POST {url}: {code}, {events} events, report {report:?}\n{body}"),
        );
    }
    let s = bed.wait_full_strength(Duration::from_secs(30));
    if !s.full() || s.master.as_deref() != Some("db3") {
        fail(&bed, format!("after the switchover to db3: {s:?}"));
    }
    let finished = ok_steps(&bed, "switchover", "finish");
    let promoted = ok_steps(&bed, "switchover", "promote");
    if finished.len() != 2
        || promoted.len() != 2
        || finished.values().chain(promoted.values()).any(|n| *n != 1)
    {
        fail(
            &bed,
            format!(
                "expected two switchovers, each once: finish {finished:?}, promote {promoted:?}"
            ),
        );
    }
    assert_eq!(writable(&bed), ["db3"]);
}

/// The old master's mysqld back after a failover: it rejoins, reinstated
/// first if it holds what no client was told was committed; the cluster is
/// at full strength again, or the test fails saying why.
fn heal_old_master(bed: &Bed, old: &str, what: &str) {
    bed.start_mysqld(old).unwrap();
    let mut s = bed.wait_full_strength(Duration::from_secs(60));
    if s.diverged.iter().any(|(n, _)| n == old) {
        let out = bed.myha(&["rejoin", old, "--force"]).unwrap();
        eprintln!(
            "{old} diverged: rejoin --force: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        s = bed.wait_full_strength(Duration::from_secs(60));
    }
    if !s.full() {
        fail(bed, format!("{what}: not back to full strength: {s:?}"));
    }
    eprintln!("{what}: full strength after {} ms", s.waited.as_millis());
}

/// Events of `myha history --json` journaled at or after `from_ms`.
fn history_since(bed: &Bed, from_ms: u64) -> Vec<Value> {
    history(bed)
        .into_iter()
        .filter(|e| e["at_ms"].as_u64().is_some_and(|t| t >= from_ms))
        .collect()
}

/// Operation ids (failovers) with a `step` event of one of `statuses`.
fn ops_with(events: &[Value], step: &str, statuses: &[&str]) -> Vec<String> {
    let mut ops: Vec<String> = events
        .iter()
        .filter(|e| {
            e["operation"]
                .as_str()
                .is_some_and(|o| o.starts_with("failover"))
                && e["step"] == step
                && statuses.iter().any(|s| e["status"] == *s)
        })
        .filter_map(|e| e["operation"].as_str().map(str::to_string))
        .collect();
    ops.sort();
    ops.dedup();
    ops
}

/// Kill the leader (kill -9) while a failover is paused right after each
/// of its phases in turn: detection (`started`), fencing, promotion (the
/// new epoch persisted, not yet writable) and repointing. Each time the
/// failover completes exactly once (one new epoch, one finished
/// operation, one promotion), no acknowledged write is lost, no sample
/// sees two writable servers or two VIP holders, and the cluster returns
/// to full strength before the next round.
#[test]
fn killing_the_leader_at_each_failover_step_completes_it_once() {
    let _one_at_a_time = one_at_a_time();
    let (bed, app, sampler) = ha_gray_bed();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    // Before promotion the new leader abandons the operation and detection
    // runs a new one; past it, the new leader finishes it.
    for (phase, abandoned) in [
        ("started", true),
        ("fenced", true),
        ("promoted", false),
        ("repointed", false),
    ] {
        let (epoch, master) = bed.epoch_master().unwrap();
        let master = master.unwrap_or_else(|| fail(&bed, "no master on record".into()));
        let leader = bed.wait_leader(Duration::from_secs(20)).unwrap();
        bed.ensure_patient_table(&master).unwrap();
        let writer = vip_writer(&bed, &app);
        let pauses = bed.failpoint_pauses(leader);
        bed.set_failpoint(Some((phase, Duration::from_secs(8))))
            .unwrap();
        let (from, from_ms) = (Instant::now(), now_ms());
        bed.kill_mysqld(&master).unwrap();
        if wait_until(Duration::from_secs(30), "the leader pausing", || {
            Ok(bed.failpoint_pauses(leader) > pauses)
        })
        .is_err()
        {
            fail(&bed, format!("{phase}: manager {leader} never paused"));
        }
        bed.set_failpoint(None).unwrap();
        bed.kill_manager_n(leader);
        let new = bed
            .wait_failover(&master, epoch, Duration::from_secs(60))
            .unwrap_or_else(|| {
                fail(
                    &bed,
                    format!("{phase}: no failover after the leader died there"),
                )
            });
        let took = from.elapsed();
        let now_leading = bed.wait_leader(Duration::from_secs(20)).unwrap();
        assert_ne!(now_leading, leader);
        vip_acks(&bed, &app, &writer, 10);
        assert_safe(&bed, &sampler, from, vec![writer]);
        // Exactly once: one new epoch, one finished operation, one
        // promotion (by the operation, or resumed by the new leader).
        let _ = wait_until(Duration::from_secs(30), "the finish step", || {
            Ok(!ops_with(&history_since(&bed, from_ms), "finish", &["ok"]).is_empty())
        });
        let events = history_since(&bed, from_ms);
        let finished = ops_with(&events, "finish", &["ok"]);
        let promoted = ops_with(&events, "promote", &["ok", "resumed"]);
        let resumed = ops_with(&events, "resume", &["info"]);
        let (after, on_record) = bed.epoch_master().unwrap();
        eprintln!(
            "{phase}: leader {leader} killed; {new} master after {} ms (epoch {after}); \
             finished {finished:?}, promoted {promoted:?}, resumed {resumed:?}",
            took.as_millis()
        );
        let mut problems = Vec::new();
        if after != epoch + 1 || on_record.as_deref() != Some(new.as_str()) {
            problems.push(format!(
                "epoch {after} master {on_record:?}: expected epoch {} master {new}",
                epoch + 1
            ));
        }
        if finished.len() != 1 || promoted != finished {
            problems.push(format!(
                "expected one failover finished and promoted: finished {finished:?}, promoted {promoted:?}"
            ));
        }
        if resumed.len() != 1 {
            problems.push(format!(
                "the new leader took over {resumed:?}, expected exactly one"
            ));
        }
        // Abandoned before promotion: the finished failover is a new one.
        if abandoned == resumed.iter().any(|r| finished.contains(r)) {
            problems.push(format!(
                "{phase}: expected the interrupted operation {}: resumed {resumed:?}, finished {finished:?}",
                if abandoned { "abandoned and a new one run" } else { "finished by the new leader" }
            ));
        }
        if !problems.is_empty() {
            fail(&bed, format!("{phase}:\n{}", problems.join("\n")));
        }

        // Heal: the old leader back (it follows), the old master back
        // (it rejoins; reinstated if it holds what was never acknowledged).
        bed.start_manager_n(leader).unwrap();
        heal_old_master(&bed, &master, phase);
        // The anti-flapping block would refuse the next round's failover.
        let out = bed.myha(&["failover", "--ack"]).unwrap();
        assert!(
            out.status.success(),
            "failover --ack: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
