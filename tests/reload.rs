//! Clusters are added, changed and removed without a restart (`myha
//! reload`, which is `POST /v1/reload` to every manager, and `SIGHUP`); a
//! file that does not validate changes nothing and says where it is wrong.
//! No Docker needed: the clusters' servers do not answer, which changes
//! nothing to what is configured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use myha_config::TokenHash;

mod common;

const MANAGER_TOKEN: &str = "m4nager-t0ken-reload";
const CLI_TOKEN: &str = "0perator-t0ken-reload";
const MONITOR_TOKEN: &str = "m0nitor-t0ken-reload";
const PASSWORD: &str = "secret-pw";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Server ports nothing listens on: the probes fail, as for dead servers.
fn dead_port() -> u16 {
    free_port()
}

struct Setup {
    dir: PathBuf,
    port: u16,
    /// One per host (db1, db2): two hosts cannot share an address.
    db_ports: [u16; 2],
}

impl Setup {
    /// A configuration with `clusters` (name, its one host, `max_lag`),
    /// a probe interval, and a monitor's credential if `monitor`.
    fn config(&self, clusters: &[(&str, &str, &str)], probe: &str, monitor: bool) -> String {
        let h = |t: &str| TokenHash::of(t).to_hex();
        let mut text = format!(
            "manager:\n  listen: 127.0.0.1:{port}\n  token_file: manager.token\n  state_dir: {state}\n  probe_interval: {probe}\n\
             agent:\n  token_file: manager.token\n\
             cli:\n  token_file: cli.token\n\
             clusters:\n",
            port = self.port,
            state = self.dir.join("state").display(),
        );
        for (name, _, lag) in clusters {
            text.push_str(&format!(
                "  - name: {name}\n    user: myha\n    password_file: pw\n    replication_user: repl\n    replication_password_file: pw\n    max_lag: {lag}\n"
            ));
        }
        text.push_str("hosts:\n");
        for (name, host, _) in clusters {
            text.push_str(&format!(
                "  - name: {host}\n    cluster: {name}\n    address: 127.0.0.1\n    port: {}\n",
                self.db_ports[usize::from(*host == "db2")]
            ));
        }
        text.push_str(&format!(
            "access:\n  - {{ name: manager, role: manager, token_sha256: {} }}\n  - {{ name: ops, role: operator, token_sha256: {} }}\n",
            h(MANAGER_TOKEN),
            h(CLI_TOKEN)
        ));
        for (_, host, _) in clusters {
            text.push_str(&format!(
                "  - {{ name: agent-{host}, role: agent, host: {host}, token_sha256: {} }}\n",
                h(&format!("agent-{host}-token"))
            ));
        }
        if monitor {
            text.push_str(&format!(
                "  - {{ name: watcher, role: monitor, token_sha256: {} }}\n",
                h(MONITOR_TOKEN)
            ));
        }
        text
    }

    fn path(&self) -> PathBuf {
        self.dir.join("myha.yaml")
    }

    fn write(&self, text: &str) {
        std::fs::write(self.path(), text).unwrap();
    }

    fn myha(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(common::myha_bin())
            .args(args)
            .arg("--config")
            .arg(self.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The clusters `myha status --json` lists, with their `max_lag`
    /// unknown to it: names only.
    fn clusters(&self) -> Vec<String> {
        let (code, out, err) = self.myha(&["status", "--json"]);
        // The clusters' servers are down: critical (2), answered.
        assert!((0..=2).contains(&code), "myha status --json: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cluster"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// `myha reload --json`: its exit code and the first manager's entry.
    fn reload(&self) -> (i32, serde_json::Value) {
        let (code, out, err) = self.myha(&["reload", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("myha reload --json: {e}: {out} {err}"));
        (code, v[0].clone())
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

struct Manager(Child);

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A raw HTTP POST without a body: the status and the body.
fn post(addr: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {buf:?}"));
    let body = buf
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn clusters_come_and_go_without_a_restart_and_a_bad_file_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("myha-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    common::write_secret(&dir, "manager.token", MANAGER_TOKEN);
    common::write_secret(&dir, "cli.token", CLI_TOKEN);
    common::write_secret(&dir, "pw", PASSWORD);
    let s = Setup {
        dir: dir.clone(),
        port: free_port(),
        db_ports: [dead_port(), dead_port()],
    };
    s.write(&s.config(&[("c1", "db1", "5s")], "500ms", false));
    let log = std::fs::File::create(dir.join("manager.log")).unwrap();
    let mut manager = Manager(
        Command::new(common::myha_bin())
            .args(["manager", "--config"])
            .arg(s.path())
            .env("MYHA_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let pid = manager.0.id();
    wait_for("the manager answers", Duration::from_secs(30), || {
        (0..=2).contains(&s.myha(&["status", "--json"]).0)
    });
    assert_eq!(s.clusters(), names(&["c1"]));

    // Added: c2 (and c1 unchanged).
    s.write(&s.config(&[("c1", "db1", "5s"), ("c2", "db2", "5s")], "500ms", false));
    let (code, a) = s.reload();
    assert_eq!(code, 0, "{a}");
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["answer"]["added"], serde_json::json!(["c2"]), "{a}");
    assert_eq!(a["answer"]["unchanged"], serde_json::json!(["c1"]), "{a}");
    assert_eq!(s.clusters(), names(&["c1", "c2"]));
    // The new cluster has its first epoch, and its server is probed
    // (found down: nothing listens).
    let mut last = String::new();
    let start = Instant::now();
    while !serde_json::from_str::<serde_json::Value>(&last)
        .is_ok_and(|v| v[0]["epoch"] == 1 && v[0]["servers"][0]["manager_probe"]["ok"] == false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "c2 not probed within 20 s: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
        last = s.myha(&["status", "--cluster", "c2", "--json"]).1;
    }

    // A typo: refused with its location, nothing changes.
    let good = s.config(&[("c1", "db1", "5s"), ("c2", "db2", "5s")], "500ms", false);
    let typo = good.replacen("    max_lag: 5s\n", "    max_lagg: 5s\n", 1);
    let line = typo
        .lines()
        .position(|l| l.contains("max_lagg"))
        .map(|i| i + 1)
        .unwrap();
    s.write(&typo);
    let at = format!("myha.yaml:{line}:5:");
    // The CLI reads the file first and sends nothing.
    let (code, out, err) = s.myha(&["reload"]);
    assert_eq!(code, 2, "a bad file is refused: {out} {err}");
    assert!(err.contains(&at), "expected {at} in: {err}");
    // The manager checks it too (SIGHUP, or another client's POST).
    let (status, body) = post(&s.addr(), "/v1/reload", CLI_TOKEN);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&at), "expected {at} in: {body}");
    assert!(body.contains("reload refused"), "{body}");
    assert!(!body.contains(PASSWORD) && !body.contains(MANAGER_TOKEN));
    s.write(&good);
    assert_eq!(s.clusters(), names(&["c1", "c2"]), "nothing changed");

    // The access list is applied: a monitor's new credential reads.
    assert_eq!(
        common::http_status(&s.addr(), "/v1/clusters", Some(MONITOR_TOKEN)),
        401
    );
    s.write(&s.config(&[("c1", "db1", "5s"), ("c2", "db2", "5s")], "500ms", true));
    let (code, a) = s.reload();
    assert_eq!(code, 0, "{a}");
    assert_eq!(a["answer"]["access_changed"], true, "{a}");
    assert_eq!(
        common::http_status(&s.addr(), "/v1/clusters", Some(MONITOR_TOKEN)),
        200
    );

    // SIGHUP: c1 removed, c2 changed.
    s.write(&s.config(&[("c2", "db2", "9s")], "500ms", true));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("SIGHUP applied", Duration::from_secs(20), || {
        s.clusters() == names(&["c2"])
    });
    assert_eq!(
        common::http_status(&s.addr(), "/v1/clusters/c1", Some(CLI_TOKEN)),
        404
    );
    // Sections read only at start are named, and not applied.
    s.write(&s.config(&[("c2", "db2", "9s")], "400ms", true));
    let (code, a) = s.reload();
    assert_eq!(code, 0, "{a}");
    assert_eq!(
        a["answer"]["restart_needed"],
        serde_json::json!(["manager"])
    );
    assert_eq!(a["answer"]["unchanged"], serde_json::json!(["c2"]), "{a}");

    // Still the same process, serving.
    assert!(manager.0.try_wait().unwrap().is_none(), "manager exited");
    // The removed cluster's state is kept: added back, it resumes its epoch.
    s.write(&s.config(&[("c1", "db1", "5s"), ("c2", "db2", "9s")], "400ms", true));
    let (code, a) = s.reload();
    assert_eq!(code, 0, "{a}");
    assert_eq!(a["answer"]["added"], serde_json::json!(["c1"]), "{a}");
    let log = std::fs::read_to_string(dir.join("manager.log")).unwrap();
    assert!(log.contains("SIGHUP: reloading"), "{log}");
    // MYHA_LOG_FORMAT=json: one JSON object per line, no escape codes.
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(!log.contains('\u{1b}'), "escape codes in the log");
    drop(manager);
    std::fs::remove_dir_all(&dir).unwrap();
}
