//! The web console in a real browser (Debian's `chromium` driven by
//! `chromedriver` over WebDriver): against a manager on loopback alone,
//! and against the Docker bed (the topology, live updates, actions with
//! both kinds of token, the history timeline, and the screenshots of
//! docs/console.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use myha_testbed::{wait_until, Bed};
use serde_json::Value;
use webdriver::Browser;

const LONG: Duration = Duration::from_secs(60);

fn browser() -> Browser {
    Browser::start(1400, 1000).unwrap_or_else(|e| panic!("{e}"))
}

/// The rows of the servers table: (name, role).
const ROLES: &str = "return [...document.querySelectorAll('#servers tbody tr')]
    .map(r => [r.dataset.server, r.querySelector('.role').textContent]);";
const MASTER: &str =
    "const m = document.getElementById('cluster-master'); return m && m.textContent;";

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join("console")
}

/// A PNG of the whole page.
fn save_screenshot(b: &Browser, name: &str) {
    let height = b
        .eval("return document.documentElement.scrollHeight;")
        .unwrap()
        .as_u64()
        .unwrap_or(1000)
        .clamp(600, 4000);
    let png = b.full_page_screenshot(1400, height as u32).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::create_dir_all(docs_dir()).unwrap();
    std::fs::write(docs_dir().join(name), png).unwrap();
}

/// A manager alone on loopback (its servers do not exist): enough for the
/// page, the credential checks and the feed.
struct LoneManager {
    child: Child,
    url: String,
    operator: String,
    monitor: String,
    _dir: PathBuf,
}

impl Drop for LoneManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lone_manager() -> LoneManager {
    let bin = myha_bin();
    let dir = std::env::temp_dir().join(format!("myha-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mut hashes = std::collections::BTreeMap::new();
    let mut tokens = std::collections::BTreeMap::new();
    for n in ["manager", "db1", "db2", "operator", "monitor"] {
        let file = dir.join(format!("{n}.token"));
        let out = Command::new(bin)
            .args(["token", "new", "--out"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let hash = text
            .split("token_sha256: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no hash in {text}"))
            .to_string();
        hashes.insert(n, hash);
        tokens.insert(
            n,
            std::fs::read_to_string(&file).unwrap().trim().to_string(),
        );
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let d = dir.display();
    let yaml = format!(
        "manager:\n  listen: 127.0.0.1:{port}\n  url: {url}\n  token_file: {d}/manager.token\n  state_dir: {d}/state\n\
agent:\n  token_file: {d}/db1.token\ncli:\n  token_file: {d}/operator.token\n\
clusters:\n  - name: lone\n    user: myha\n    password_env: MYHA_TEST_PW\n    replication_user: repl\n    replication_password_env: MYHA_TEST_PW\n\
hosts:\n  - {{ name: db1, cluster: lone, address: 127.0.0.2, port: {p1} }}\n  - {{ name: db2, cluster: lone, address: 127.0.0.3, port: {p2} }}\n\
access:\n  - {{ name: manager, role: manager, token_sha256: {} }}\n  - {{ name: db1, role: agent, host: db1, token_sha256: {} }}\n  - {{ name: db2, role: agent, host: db2, token_sha256: {} }}\n  - {{ name: dba, role: operator, token_sha256: {} }}\n  - {{ name: mon, role: monitor, token_sha256: {} }}\n",
        hashes["manager"], hashes["db1"], hashes["db2"], hashes["operator"], hashes["monitor"],
        p1 = free_port(),
        p2 = free_port(),
    );
    let config = dir.join("myha.yaml");
    std::fs::write(&config, yaml).unwrap();
    let child = Command::new(bin)
        .args(["manager", "--config"])
        .arg(&config)
        .env("MYHA_TEST_PW", "unused")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("manager.log")).unwrap())
        .spawn()
        .unwrap();
    let m = LoneManager {
        child,
        url: url.clone(),
        operator: tokens["operator"].clone(),
        monitor: tokens["monitor"].clone(),
        _dir: dir,
    };
    wait_until(Duration::from_secs(30), "the manager answers", || {
        Ok(curl(&format!("{url}/health"), None).0 == 200)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(m._dir.join("manager.log")).unwrap_or_default()
        )
    });
    m
}

/// `curl` with a time limit: (status, body).
fn curl(url: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "5", "-w", "\n%{http_code}", url]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Without Docker: the page is served without a credential and holds no
/// data; the feed and the API need the token; the page asks for one, takes
/// it from the fragment, and draws the cluster from the live feed.
#[test]
fn the_console_asks_for_a_token_and_draws_the_cluster() {
    let m = lone_manager();
    let (code, page) = curl(&format!("{}/", m.url), None);
    assert_eq!(code, 200);
    assert!(page.contains("/console/app.js") && !page.contains("lone"));
    assert_eq!(curl(&format!("{}/console/app.js", m.url), None).0, 200);
    assert_eq!(curl(&format!("{}/console/app.css", m.url), None).0, 200);
    assert_eq!(
        curl(&format!("{}/v1/clusters/lone/stream", m.url), None).0,
        401
    );

    let b = browser();
    b.goto(&format!("{}/", m.url)).unwrap();
    b.wait_for(
        "the token form",
        LONG,
        "return !!document.getElementById('token-input');",
    )
    .unwrap();
    // The token in the fragment: kept in the tab, taken out of the URL.
    b.goto(&format!("{}/#/cluster/lone?token={}", m.url, m.monitor))
        .unwrap();
    let rows = b
        .wait_for(
            "both servers in the table",
            LONG,
            &format!("const r = (() => {{ {ROLES} }})(); return r.length === 2 ? r : null;"),
        )
        .unwrap();
    assert_eq!(rows[0][0], "db1", "{rows}");
    let url = b.eval("return location.href;").unwrap();
    assert!(
        !url.as_str().unwrap().contains("token"),
        "the token stays in the URL: {url}"
    );
    b.wait_for(
        "two nodes drawn",
        LONG,
        "return document.querySelectorAll('#topology g.node').length === 2;",
    )
    .unwrap();
    // A wrong token: back to the form.
    b.eval("sessionStorage.setItem('myha.token', 'wrong'); location.hash = '#/'; return 1;")
        .unwrap();
    b.wait_for(
        "the token form again",
        LONG,
        "return !!document.getElementById('token-input');",
    )
    .unwrap();
    drop(b);
    // The operator's token reads too.
    assert_eq!(
        curl(&format!("{}/v1/clusters/lone", m.url), Some(&m.operator)).0,
        200
    );
}

fn wait_status(bed: &Bed, what: &str, f: impl Fn(&Value) -> bool) {
    let mut last = Value::Null;
    let r = wait_until(LONG, what, || {
        let st = bed.status()?;
        let ok = f(&st);
        last = st;
        Ok(ok)
    });
    if let Err(e) = r {
        panic!("{e}\n{last:#}\n{}", bed.manager_log());
    }
}

fn page_master(b: &Browser) -> String {
    b.eval(MASTER)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Against the Docker bed: (a) the cluster page shows the master and both
/// replicas with their roles; (b) a switchover from the CLI shows on the
/// page within 2 s without a reload; (c) a switchover from the page is
/// refused with a read-only token and completes with an operator's; (d)
/// the history page shows the switchover's steps; (e) the screenshots of
/// docs/console.md.
#[test]
fn the_console_follows_and_drives_a_switchover_on_the_bed() {
    let mut opts = options();
    opts.vip = true;
    let bed = Bed::start(opts).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    bed.wait_ready(Duration::from_secs(10)).unwrap();
    // The browser once the bed is up: a CI rehearsal saw chromium drop its
    // DevTools connection while it sat idle through the bed's start.
    let b = browser();
    let base = bed.manager_url();

    // (a) With a read-only token.
    b.goto(&format!("{base}/#/cluster/bed?token={}", bed.monitor_token))
        .unwrap();
    let roles = b
        .wait_for(
            "db1 master, db2 and db3 replicas on the page",
            LONG,
            &format!(
                "const r = (() => {{ {ROLES} }})(); const m = Object.fromEntries(r);
                 return m.db1 === 'master' && m.db2 === 'replica' && m.db3 === 'replica' ? r : null;"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.manager_log()));
    assert_eq!(roles.as_array().unwrap().len(), 3, "{roles}");
    assert_eq!(page_master(&b), "db1");
    let drawn = b
        .eval("return [...document.querySelectorAll('#topology g.node')].map(g => g.dataset.server + ':' + g.dataset.role).sort();")
        .unwrap();
    assert_eq!(
        drawn,
        serde_json::json!(["db1:master", "db2:replica", "db3:replica"])
    );
    // Two arrows: db1 -> db2, db1 -> db3; the VIP with db1; a failover
    // would promote someone.
    b.wait_for(
        "two replication arrows, the VIP on db1, a candidate",
        LONG,
        "return document.querySelectorAll('#topology path.edge').length === 2
            && document.querySelector('#servers tr[data-server=db1] td.vip').textContent.includes('holds')
            && !!document.getElementById('ready-chosen');",
    )
    .unwrap();
    // (e) The cluster page, with every replica's lag known.
    b.wait_for(
        "the replicas' lag",
        LONG,
        "return [...document.querySelectorAll('#servers tr[data-role=replica] td.num')]
            .every(td => td.textContent.endsWith(' s'));",
    )
    .unwrap();
    save_screenshot(&b, "cluster.png");

    // (b) A switchover from the CLI, seen without a reload.
    let loaded = b.eval("return performance.timeOrigin;").unwrap();
    myha_ok(&bed, &["switchover", "--to", "db2"]);
    let done = Instant::now();
    let seen = loop {
        if page_master(&b) == "db2" {
            break done.elapsed();
        }
        assert!(
            done.elapsed() < Duration::from_secs(10),
            "the page still shows {:?} 10 s after the switchover",
            page_master(&b)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("the page showed db2 {seen:?} after the CLI returned");
    assert!(
        seen <= Duration::from_secs(2),
        "the page showed the new master after {seen:?}"
    );
    assert_eq!(
        b.eval("return performance.timeOrigin;").unwrap(),
        loaded,
        "the page was reloaded"
    );
    wait_status(&bed, "db2 master, replicas running", |st| {
        st["master"] == "db2"
            && st["in_progress"].is_null()
            && st["servers"].as_array().is_some_and(|a| {
                a.iter()
                    .filter(|s| s["name"] != "db2")
                    .all(|s| s["io_running"] == "running" && s["sql_running"] == "running")
            })
    });

    // (c) From the page, with the read-only token: refused.
    let preview_db3 = |b: &Browser| {
        b.wait_for(
            "db3 offered as a target",
            LONG,
            "return !!document.querySelector('#switchover-to option[value=db3]');",
        )
        .unwrap();
        b.click("#switchover-to option[value=db3]").unwrap();
        b.click("#switchover-preview").unwrap();
    };
    preview_db3(&b);
    let refusal = b
        .wait_for(
            "the refusal",
            LONG,
            "const r = document.getElementById('action-result').textContent;
             return r.includes('refused') ? r : null;",
        )
        .unwrap();
    assert!(refusal.as_str().unwrap().contains("403"), "{refusal}");
    assert_eq!(
        b.eval("return document.getElementById('switchover-run').disabled;")
            .unwrap(),
        true
    );
    assert_eq!(bed.status().unwrap()["master"], "db2");

    // ... and with the operator's: preview, confirm, steps streamed, done.
    b.goto(&format!("{base}/#/cluster/bed?token={}", bed.token))
        .unwrap();
    preview_db3(&b);
    let preview = b
        .wait_for(
            "the dry run",
            LONG,
            "const s = document.querySelector('#action-result [data-status]');
             return s && s.dataset.status;",
        )
        .unwrap();
    assert_eq!(preview, "dry_run");
    b.click("#switchover-run").unwrap();
    b.wait_for(
        "the confirmation",
        LONG,
        "return document.getElementById('confirm').open;",
    )
    .unwrap();
    b.click("#confirm-yes").unwrap();
    let status = b
        .wait_for(
            "the switchover's report",
            Duration::from_secs(120),
            "const s = document.querySelector('#action-result [data-status]');
             return s && s.dataset.status !== 'dry_run' && s.dataset.status;",
        )
        .unwrap();
    let log = b
        .eval("return document.getElementById('action-log').textContent;")
        .unwrap();
    assert_eq!(status, "completed", "{log}");
    let log = log.as_str().unwrap().to_string();
    for step in ["promote", "repoint", "finish"] {
        assert!(log.contains(step), "no {step} streamed:\n{log}");
    }
    b.wait_for(
        "db3 master on the page",
        LONG,
        "return document.getElementById('cluster-master').textContent === 'db3';",
    )
    .unwrap();
    wait_status(&bed, "db3 master", |st| {
        st["master"] == "db3" && st["in_progress"].is_null()
    });

    // (d) The history: both switchovers, with every step of the journal.
    let out = bed.myha(&["history", "--json"]).unwrap();
    let journal: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let last_op = journal
        .iter()
        .rev()
        .find_map(|e| {
            e["operation"]
                .as_str()
                .filter(|o| o.starts_with("switchover-"))
        })
        .unwrap()
        .to_string();
    let steps: Vec<String> = journal
        .iter()
        .filter(|e| e["operation"] == last_op.as_str())
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    b.goto(&format!("{base}/#/history?cluster=bed&since=1h"))
        .unwrap();
    let shown = b
        .wait_for(
            "the switchovers on the timeline",
            LONG,
            &format!(
                "const ops = document.querySelectorAll('section.op[data-op^=switchover-]');
                 const last = document.querySelector('section.op[data-op=\"{last_op}\"]');
                 return ops.length >= 2 && last
                    && [...last.querySelectorAll('.steprow')].map(r => r.dataset.step);"
            ),
        )
        .unwrap();
    // The timeline orders steps by their start; the journal by their end.
    let mut shown: Vec<String> = serde_json::from_value(shown).unwrap();
    let mut steps = steps;
    shown.sort();
    steps.sort();
    assert_eq!(shown, steps, "the timeline's steps differ from the journal");
    let outcome = b
        .eval(&format!(
            "return document.querySelector('section.op[data-op=\"{last_op}\"] [data-outcome]').dataset.outcome;"
        ))
        .unwrap();
    assert_eq!(outcome, "completed");
    save_screenshot(&b, "history.png");
}
