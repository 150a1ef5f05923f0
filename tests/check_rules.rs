//! `myha check`'s rules on what runs beside the servers, each against a
//! bed server misconfigured for it, then put right: `slave_net_timeout`,
//! the admin account's privileges, the replication password, an agent
//! down, `arping` missing, an agent that cannot reach the manager, a hook
//! that cannot run, `manager.listen` on loopback with remote agents,
//! and a VIP interface the host lacks. (The agent version rule is
//! unit-tested in core/tests/check.rs, and the manager's own report of it
//! in core/tests/topology.rs: a bed runs one build.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use myha_testbed::{wait_until, Bed, ADMIN_USER, REPL_PASSWORD, REPL_USER};
use serde_json::Value;

/// `myha check --json` with `config` (default: the bed's), as findings.
fn findings(bed: &Bed, config: Option<&std::path::Path>) -> Vec<Value> {
    let mut cmd = std::process::Command::new(myha_bin());
    cmd.args(["check", "--json", "--config"])
        .arg(config.map_or_else(|| bed.dir.join("myha.yaml"), |p| p.to_path_buf()));
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "myha check --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v[0]["findings"].as_array().cloned().unwrap_or_default()
}

/// The servers (or `-` for the cluster) whose `check` finding failed.
fn failing(all: &[Value], check: &str) -> Vec<String> {
    all.iter()
        .filter(|f| f["check"] == check && f["ok"] == false)
        .map(|f| f["server"].as_str().unwrap_or("-").to_string())
        .collect()
}

fn passing(all: &[Value], check: &str) -> usize {
    all.iter()
        .filter(|f| f["check"] == check && f["ok"] == true)
        .count()
}

/// `check` fails on `server` (and nowhere else), saying it.
fn assert_fails(bed: &Bed, check: &str, server: &str) -> Vec<Value> {
    let all = findings(bed, None);
    let bad = failing(&all, check);
    assert_eq!(
        bad,
        vec![server.to_string()],
        "[{check}] should fail on {server} only: {all:#?}"
    );
    all
}

fn assert_passes(bed: &Bed, check: &str) {
    let all = findings(bed, None);
    assert!(
        failing(&all, check).is_empty() && passing(&all, check) > 0,
        "[{check}] should pass again: {all:#?}"
    );
}

fn stop_agent(bed: &Bed, host: &str) {
    bed.exec(host, &["pkill", "-f", "myhad agent"]).unwrap();
    wait_until(Duration::from_secs(10), "the agent gone", || {
        Ok(bed.exec(host, &["pgrep", "-f", "myhad agent"]).is_err())
    })
    .unwrap();
}

/// The agent started as the host's init starts it, answering again.
fn start_agent(bed: &Bed, host: &str) {
    bed.exec(
        host,
        &[
            "sh",
            "-c",
            "setsid /usr/local/bin/myha agent $MYHA_AGENT_ARGS >>/var/log/myha-agent.log 2>&1 &",
        ],
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "the agent back", || {
        Ok(failing(&findings(bed, None), "agent").is_empty())
    })
    .unwrap();
}

#[test]
fn each_operational_rule_fails_on_its_misconfigured_server() {
    let mut opts = options();
    opts.vip = true;
    opts.cluster_yaml = "hooks: { post_failover: /usr/local/lib/myha/notify-pager --loud }".into();
    let bed = Bed::start(opts).expect("start a bed");
    wait_healthy(&bed, Duration::from_secs(60));

    // A healthy bed: every new rule passes, but the missing hook.
    let all = findings(&bed, None);
    for c in [
        "admin_privileges",
        "replication_login",
        "slave_net_timeout",
        "agent",
        "arping",
        "vip_interface",
        "manager_listen",
        "agent_version",
    ] {
        assert!(
            failing(&all, c).is_empty(),
            "[{c}] fails on a healthy bed: {all:#?}"
        );
    }
    assert_eq!(failing(&all, "hooks"), vec!["-".to_string()], "{all:#?}");
    assert!(
        all.iter().any(|f| f["check"] == "hooks"
            && f["message"]
                .as_str()
                .is_some_and(|m| m.contains("notify-pager"))),
        "the hook's path is named: {all:#?}"
    );

    // slave_net_timeout: an hour on db3.
    let before = bed.sql("db3", "SELECT @@slave_net_timeout").unwrap();
    bed.sql("db3", "SET GLOBAL slave_net_timeout = 3600")
        .unwrap();
    let all = assert_fails(&bed, "slave_net_timeout", "db3");
    assert!(
        all.iter().any(|f| f["check"] == "slave_net_timeout"
            && f["message"].as_str().is_some_and(|m| m.contains("3600"))),
        "{all:#?}"
    );
    bed.sql(
        "db3",
        &format!("SET GLOBAL slave_net_timeout = {}", before.trim()),
    )
    .unwrap();
    assert_passes(&bed, "slave_net_timeout");

    // The admin account without READ_ONLY ADMIN on db2 (not replicated).
    let account = format!("'{ADMIN_USER}'@'%'");
    bed.sql(
        "db2",
        &format!("SET SESSION sql_log_bin = 0; REVOKE READ_ONLY ADMIN ON *.* FROM {account}"),
    )
    .unwrap();
    let all = assert_fails(&bed, "admin_privileges", "db2");
    assert!(
        all.iter().any(|f| f["check"] == "admin_privileges"
            && f["message"]
                .as_str()
                .is_some_and(|m| m.contains("READ_ONLY ADMIN"))),
        "{all:#?}"
    );
    bed.sql(
        "db2",
        &format!("SET SESSION sql_log_bin = 0; GRANT READ_ONLY ADMIN ON *.* TO {account}"),
    )
    .unwrap();
    assert_passes(&bed, "admin_privileges");

    // The replication password changed on db2 only.
    let repl = format!("'{REPL_USER}'@'%'");
    bed.sql(
        "db2",
        &format!("SET SESSION sql_log_bin = 0; SET PASSWORD FOR {repl} = PASSWORD('not-the-configured-one')"),
    )
    .unwrap();
    assert_fails(&bed, "replication_login", "db2");
    bed.sql(
        "db2",
        &format!(
            "SET SESSION sql_log_bin = 0; SET PASSWORD FOR {repl} = PASSWORD('{REPL_PASSWORD}')"
        ),
    )
    .unwrap();
    assert_passes(&bed, "replication_login");

    // db3's agent stopped.
    stop_agent(&bed, "db3");
    assert_fails(&bed, "agent", "db3");
    start_agent(&bed, "db3");

    // db3's agent configured with a VIP interface its host lacks.
    let own = bed.host_dir("db3").join("myha.yaml");
    let text = std::fs::read_to_string(&own).unwrap();
    let wrong = text.replace("interface: eth0", "interface: eth9");
    assert_ne!(wrong, text, "the bed's VIP is on eth0");
    std::fs::write(&own, wrong).unwrap();
    stop_agent(&bed, "db3");
    start_agent(&bed, "db3");
    let all = assert_fails(&bed, "vip_interface", "db3");
    assert!(
        all.iter().any(|f| f["check"] == "vip_interface"
            && f["message"].as_str().is_some_and(|m| m.contains("eth0"))),
        "{all:#?}"
    );
    std::fs::write(&own, text).unwrap();
    stop_agent(&bed, "db3");
    start_agent(&bed, "db3");
    assert_passes(&bed, "vip_interface");

    // arping missing on db1 (the master: the VIP's first home).
    let arping = bed.exec("db1", &["sh", "-c", "command -v arping"]).unwrap();
    let arping = arping.trim().to_string();
    bed.exec("db1", &["mv", &arping, "/root/arping.off"])
        .unwrap();
    assert_fails(&bed, "arping", "db1");
    bed.exec("db1", &["mv", "/root/arping.off", &arping])
        .unwrap();
    assert_passes(&bed, "arping");

    // db3's agent answers but cannot reach the manager's port.
    let port = "7070";
    bed.exec(
        "db3",
        &[
            "iptables", "-I", "OUTPUT", "-p", "tcp", "--dport", port, "-j", "DROP",
        ],
    )
    .unwrap();
    wait_until(
        Duration::from_secs(20),
        "db3's reports stale at the manager",
        || Ok(failing(&findings(&bed, None), "manager_reachable") == ["db3"]),
    )
    .unwrap_or_else(|e| panic!("{e}: {:#?}", findings(&bed, None)));
    bed.exec(
        "db3",
        &[
            "iptables", "-D", "OUTPUT", "-p", "tcp", "--dport", port, "-j", "DROP",
        ],
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "db3 reporting again", || {
        Ok(failing(&findings(&bed, None), "manager_reachable").is_empty())
    })
    .unwrap();

    // The configuration trap: the manager on loopback, the agents remote.
    let text = std::fs::read_to_string(bed.dir.join("myha.yaml")).unwrap();
    let trap = text
        .replace(
            &format!("listen: {}:7070", bed.gateway),
            "listen: 127.0.0.1:7070",
        )
        .replace(
            &format!("url: {}://{}:7070", bed.scheme(), bed.gateway),
            &format!("url: {}://127.0.0.1:7070", bed.scheme()),
        );
    assert_ne!(trap, text, "the bed's manager block changed shape");
    let path = bed.dir.join("loopback.yaml");
    std::fs::write(&path, trap).unwrap();
    let all = findings(&bed, Some(&path));
    assert_eq!(
        failing(&all, "manager_listen"),
        vec!["-".to_string()],
        "{all:#?}"
    );
}
