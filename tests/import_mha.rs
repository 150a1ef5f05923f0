//! `myha import-mha`: real-world MHA configurations (tests/mha/, from
//! MHA's samples and documented parameters, and common setups) become a
//! myha.yaml that myha's own loader accepts once the secrets exist; what
//! cannot be mapped is listed with its line; no password from the MHA
//! files is ever written; malformed input is an error with its place.
//! No Docker needed: only the `myha` binary runs (it needs no daemon, so
//! `myhad` is not built here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mha")
        .join(name)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn import(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_myha"))
        .arg("import-mha")
        .args(args)
        .env_remove("MYHA_CONFIG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Imports `app` (over `global`) and asserts it converted.
fn convert(app: &str, global: Option<&str>, extra: &[&str]) -> Run {
    let app = fixture(app);
    let global = global.map(fixture);
    let mut args: Vec<&str> = vec![app.to_str().unwrap()];
    if let Some(g) = &global {
        args.extend(["--global", g.to_str().unwrap()]);
    }
    args.extend(extra);
    let run = import(&args);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    run
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("myha-import-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file readable by its owner only, as every secret file must be.
fn write_secret(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Loads `yaml` with myha's own loader (as the manager would), from a
/// directory holding the secret files it names.
fn load(tag: &str, yaml: &str, cluster: &str) -> myha_config::Config {
    let dir = temp_dir(tag);
    let path = dir.join("myha.yaml");
    std::fs::write(&path, yaml).unwrap();
    // Without the secrets the file is refused, naming them.
    let err = myha_config::load_str(yaml, &path, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{cluster}-admin.pw")), "{err}");
    let secrets = dir.join("secrets");
    write_secret(&secrets.join("manager.token"), "manager-token-value");
    write_secret(&secrets.join(format!("{cluster}-admin.pw")), "admin-pw");
    write_secret(&secrets.join(format!("{cluster}-repl.pw")), "repl-pw");
    let config = myha_config::load_str(yaml, &path, &|_| None)
        .unwrap_or_else(|e| panic!("generated YAML refused:\n{e}\n---\n{yaml}"));
    let _ = std::fs::remove_dir_all(&dir);
    config
}

/// The 1-based line of the first line of a fixture containing `what`.
fn line_of(name: &str, what: &str) -> usize {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    text.lines()
        .position(|l| l.contains(what))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{what:?} not in {name}"))
}

/// The report names `file:line: key...` for the line of `what` in `name`.
fn reported(run: &Run, name: &str, what: &str, key: &str) {
    let at = format!("{name}:{}: {key}", line_of(name, what));
    assert!(
        run.stderr.lines().any(|l| l.contains(&at)),
        "{at:?} not reported:\n{}",
        run.stderr
    );
}

/// No password of the MHA files, in any output.
fn no_password(run: &Run, passwords: &[&str]) {
    for p in passwords {
        assert!(!run.stdout.contains(p), "{p} in the YAML:\n{}", run.stdout);
        assert!(!run.stderr.contains(p), "{p} on stderr:\n{}", run.stderr);
    }
}

fn host<'a>(config: &'a myha_config::Config, name: &str) -> &'a myha_config::HostConfig {
    config
        .find_host(name)
        .unwrap_or_else(|| panic!("no host {name}"))
        .1
}

#[test]
fn mha_sample_with_global_defaults() {
    let run = convert("app1.cnf", Some("masterha_default.cnf"), &[]);
    let config = load("sample", &run.stdout, "app1");
    assert_eq!(config.clusters.len(), 1);
    let c = &config.clusters[0];
    assert_eq!(c.name, "app1");
    let names: Vec<&str> = c.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["host1", "host2", "host3", "host4"]);
    for h in &c.hosts {
        assert_eq!(h.address, h.name);
        assert_eq!(h.port, 3306);
    }
    assert!(host(&config, "host1").candidate_master && host(&config, "host2").candidate_master);
    assert!(!host(&config, "host3").candidate_master && !host(&config, "host3").no_master);
    assert!(host(&config, "host4").no_master);
    assert_eq!(c.admin.user, "root");
    // No ping_interval: myha's own detection timings.
    assert_eq!(config.manager.probe_interval.as_millis(), 500);
    // Every manager-side unmapped setting, with its line.
    reported(&run, "app1.cnf", "manager_workdir", "manager_workdir=");
    reported(&run, "app1.cnf", "manager_log", "manager_log=");
    let g = "masterha_default.cnf";
    reported(&run, g, "ssh_user", "ssh_user=root: myha needs no SSH");
    reported(&run, g, "master_binlog_dir", "master_binlog_dir=");
    reported(&run, g, "remote_workdir", "remote_workdir=");
    reported(&run, g, "secondary_check_script", "secondary_check_script=");
    reported(
        &run,
        g,
        "heartbeat_interval",
        "heartbeat_interval=3: not an MHA parameter",
    );
    // Mapped ones are not listed; the password is never shown.
    assert!(!run.stderr.contains(": user="), "{}", run.stderr);
    assert!(!run.stderr.contains("password="), "{}", run.stderr);
    no_password(&run, &["rootpass"]);
    assert!(run.stdout.contains("password_file: secrets/app1-admin.pw"));
}

#[test]
fn blog_setup_with_scripts_and_ping_interval() {
    let run = convert("blog_3node.cnf", None, &["--cluster", "shop"]);
    let config = load("blog", &run.stdout, "shop");
    let c = &config.clusters[0];
    assert_eq!(c.name, "shop");
    let addresses: Vec<&str> = c.hosts.iter().map(|h| h.address.as_str()).collect();
    assert_eq!(
        addresses,
        ["192.168.80.10", "192.168.80.11", "192.168.80.12"]
    );
    assert!(host(&config, "192.168.80.11").candidate_master);
    assert_eq!(c.admin.user, "mha");
    assert_eq!(c.replication.user, "myslave");
    // ping_interval=1: probes every second, dead after 3.
    assert_eq!(config.manager.probe_interval.as_secs(), 1);
    assert_eq!(c.master_down_after.as_secs(), 3);
    let h = &c.hooks;
    assert_eq!(
        h.master_ip_failover_script.as_deref(),
        Some("/usr/local/bin/master_ip_failover")
    );
    let pre = h.pre_switchover.as_deref().unwrap();
    assert!(
        pre.starts_with("/usr/local/bin/master_ip_online_change --command=stop ")
            && pre.contains("--orig_master_host=\"$MYHA_OLD_MASTER\"")
            && pre.contains("--new_master_port=\"$MYHA_NEW_MASTER_PORT\""),
        "{pre}"
    );
    assert!(h
        .post_switchover
        .as_deref()
        .unwrap()
        .starts_with("/usr/local/bin/master_ip_online_change --command=start "));
    assert!(h
        .post_failover
        .as_deref()
        .unwrap()
        .starts_with("/usr/local/send_report --orig_master_host="));
    assert!(h
        .on_failure
        .as_deref()
        .unwrap()
        .contains("--body=\"$MYHA_DETAIL\""));
    // shutdown_script="" is no script.
    assert_eq!(h.pre_failover, None);
    let f = "blog_3node.cnf";
    reported(&run, f, "check_repl_delay", "check_repl_delay=0: ");
    reported(&run, f, "secondary_check_script", "secondary_check_script=");
    reported(&run, f, "ssh_user", "ssh_user=root");
    no_password(&run, &["Mh4-Manager-2023", "R3pl-Slave-2023"]);
}

#[test]
fn every_script_and_per_server_settings() {
    let run = convert(
        "scripts.cnf",
        Some("scripts_default.cnf"),
        &["--flavor", "mariadb"],
    );
    let config = load("scripts", &run.stdout, "scripts");
    let c = &config.clusters[0];
    assert_eq!(c.flavor, myha_config::Flavor::Mariadb);
    // Named by hostname, reached at `ip`.
    let db1 = host(&config, "db1.example.com");
    assert_eq!(db1.address, "10.20.0.11");
    assert!(db1.candidate_master);
    assert!(host(&config, "db3.example.com").no_master);
    assert_eq!(c.admin.user, "mha_admin");
    assert_eq!(c.replication.user, "repl");
    // ping_interval=3: 3 s probes, 9 s to declare the master dead, and
    // semi-sync outlasting self-fencing.
    assert_eq!(config.manager.probe_interval.as_secs(), 3);
    assert_eq!(c.master_down_after.as_secs(), 9);
    assert!(c.semi_sync_degrade_after.as_secs() > 9);
    let h = &c.hooks;
    assert_eq!(
        h.master_ip_failover_script.as_deref(),
        Some("/usr/local/bin/master_ip_failover --vip=10.20.0.100/24 --dev=eth0")
    );
    let pre = h.pre_failover.as_deref().unwrap();
    assert!(
        pre.starts_with("/usr/local/bin/power_manager --command=stop --host=\"$MYHA_OLD_MASTER\"")
            && pre.contains("--pid_file=/var/run/mysqld/mysqld.pid")
            && pre.ends_with("[ \"$rc\" -eq 0 ] || [ \"$rc\" -eq 10 ]"),
        "{pre}"
    );
    assert!(h.post_failover.is_some() && h.on_failure.is_some());
    assert!(h.pre_switchover.is_some() && h.post_switchover.is_some());
    let (a, g) = ("scripts.cnf", "scripts_default.cnf");
    reported(
        &run,
        a,
        "latest_priority",
        "latest_priority=0: no equivalent",
    );
    reported(&run, a, "multi_tier_slave", "multi_tier_slave=1: ");
    reported(
        &run,
        a,
        "check_repl_filter",
        "check_repl_filter=1: always on",
    );
    reported(&run, a, "init_conf_load_script", "init_conf_load_script=");
    reported(&run, a, "ignore_fail", "ignore_fail=1: not needed");
    reported(&run, a, "check_repl_delay", "check_repl_delay=0");
    for key in [
        "ssh_user",
        "ssh_port",
        "ssh_options",
        "remote_workdir",
        "master_binlog_dir",
        "log_level",
        "client_bindir",
        "client_libdir",
        "ping_type",
        "secondary_check_script",
    ] {
        reported(&run, g, &format!("{key}="), &format!("{key}="));
    }
    // master_pid_file went to the shutdown hook.
    assert!(!run.stderr.contains("master_pid_file="), "{}", run.stderr);
    no_password(&run, &["Adm1n-Global-pw", "Repl-Global-pw"]);
}

#[test]
fn odd_file_comments_spaces_crlf_and_repeats() {
    let run = convert("odd.cnf", None, &[]);
    let config = load("odd", &run.stdout, "odd");
    let c = &config.clusters[0];
    // MHA's order: server2, server_3, server10; one machine with two
    // mysqld gets a name and an agent port per instance.
    let hosts: Vec<(&str, &str, u16, u16)> = c
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str(), h.port, h.agent_port))
        .collect();
    assert_eq!(
        hosts,
        [
            ("dbhost-3306", "dbhost", 3306, 7071),
            ("10.1.1.3", "10.1.1.3", 3306, 7071),
            ("dbhost-3307", "dbhost", 3307, 7072),
        ]
    );
    // candidate_master and no_master both: no_master wins, reported.
    let h2 = host(&config, "dbhost-3306");
    assert!(h2.no_master && !h2.candidate_master);
    assert!(!host(&config, "10.1.1.3").candidate_master);
    assert_eq!(c.admin.user, "dba");
    // The last ping_interval (12) counts; probes are capped at 10 s.
    assert_eq!(config.manager.probe_interval.as_secs(), 10);
    assert_eq!(c.master_down_after.as_secs(), 36);
    assert_eq!(
        c.hooks
            .post_failover
            .as_deref()
            .map(|s| s.split(" --").next()),
        Some(Some("/opt/mha/bin/notify"))
    );
    let f = "odd.cnf";
    reported(
        &run,
        f,
        "ping_interval = 2",
        "ping_interval=2: set again at line 9",
    );
    reported(
        &run,
        f,
        "candidate_master = 1",
        "candidate_master=1: conflicts with no_master=1",
    );
    reported(&run, f, "node_label", "node_label=old-primary");
    reported(
        &run,
        f,
        "use_gtid_auto_pos",
        "use_gtid_auto_pos=1: always on",
    );
    reported(
        &run,
        f,
        "heartbeat_interval",
        "heartbeat_interval=3: not an MHA parameter",
    );
    reported(&run, f, "[binlog1]", "[binlog1]: MHA binlog servers");
    no_password(&run, &["Odd-Pa55word", "Odd-Repl-pw"]);
}

#[test]
fn out_file_is_written_once_and_never_overwritten() {
    let dir = temp_dir("out");
    let out = dir.join("myha.yaml");
    let run = convert("app1.cnf", None, &["--out", out.to_str().unwrap()]);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(first.contains("  - name: host1"));
    let app = fixture("blog_3node.cnf");
    let again = import(&[app.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("exists: not overwritten"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_input_is_located() {
    let dir = temp_dir("bad");
    let cases: [(&str, &str, &str); 6] = [
        (
            "[server default]\nuser=root\npassword Secret-In-Bad-Line\n[server1]\nhostname=a\n",
            ":3: not `key=value`",
            "Secret-In-Bad-Line",
        ),
        (
            "[server1]\nhostname=a\n\n[server2]\nport=3307\ncandidate_master=1\n",
            ":4: [server2] has no `hostname`",
            "",
        ),
        (
            "[server1]\nhostname=a\n[server2]\nhostname=b\n[server3]\nhostname=a\n",
            ":6: [server3] is a:3306 again (first at ",
            "",
        ),
        (
            "[server default]\nping_interval=fast\n[server1]\nhostname=a\n",
            ":2: ping_interval `fast`",
            "",
        ),
        (
            "[server1]\nhostname=a\nport=99999\n",
            ":3: port `99999`",
            "",
        ),
        (
            "[mysqld]\nhostname=a\n",
            ":1: [mysqld]: MHA accepts only",
            "",
        ),
    ];
    for (i, (text, error, secret)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.cnf"));
        std::fs::write(&path, text).unwrap();
        let run = import(&[path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{text}\n{}", run.stderr);
        let want = format!("{}{error}", path.display());
        assert!(
            run.stderr.starts_with(&want),
            "want {want:?}, got:\n{}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
        if !secret.is_empty() {
            assert!(!run.stderr.contains(secret), "{}", run.stderr);
        }
    }
    // Unreadable: the file named, no line.
    let missing = dir.join("missing.cnf");
    let run = import(&[missing.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with(&format!("{}: cannot read", missing.display())),
        "{}",
        run.stderr
    );
    let app = fixture("app1.cnf");
    let run = import(&[app.to_str().unwrap(), "--global", missing.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("missing.cnf: cannot read"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
