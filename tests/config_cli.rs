//! Bad configurations stop every subcommand before anything starts, with
//! errors naming file:line:column. No Docker needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use myha_config::TokenHash;

mod common;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const MANAGER_TOKEN: &str = "m4nager-t0ken";
const AGENT_TOKEN: &str = "ag3nt-t0ken";
const CLI_TOKEN: &str = "0perator-t0ken";
const PASSWORD: &str = "secret-pw";

/// A port on loopback that was free when the OS gave it (asked once per
/// test process): the manager of a refused config must not be on it.
fn manager_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    })
}

/// A valid configuration in the new format: every credential in `access:`
/// by its SHA-256, the secrets in files next to it.
fn good(state: &Path) -> String {
    let h = |t: &str| TokenHash::of(t).to_hex();
    format!(
        "manager:\n  listen: 127.0.0.1:{port}\n  token_file: manager.token\n  state_dir: {state}\n\
         agent:\n  token_file: agent.token\n\
         cli:\n  token_file: cli.token\n\
         clusters:\n  - name: c1\n    user: myha\n    password_file: pw\n    replication_user: repl\n    replication_password_file: pw\n\
         hosts:\n  - name: db1\n    cluster: c1\n    address: 127.0.0.1\n\
         access:\n  - {{ name: manager, role: manager, token_sha256: {m} }}\n  - {{ name: agent-db1, role: agent, host: db1, token_sha256: {a} }}\n  - {{ name: ops, role: operator, token_sha256: {o} }}\n",
        state = state.display(),
        port = manager_port(),
        m = h(MANAGER_TOKEN),
        a = h(AGENT_TOKEN),
        o = h(CLI_TOKEN),
    )
}

/// The 1-based line of the `nth` (0-based) line of `text` containing `what`.
fn line_of(text: &str, what: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(what))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{what:?} not in:\n{text}"))
}

fn run(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::myha_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_secret_in(err: &str) {
    for s in [PASSWORD, MANAGER_TOKEN, AGENT_TOKEN, CLI_TOKEN] {
        assert!(!err.contains(s), "secret leaked: {err}");
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("myha-cfgcli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_secrets(dir: &Path) {
    common::write_secret(dir, "manager.token", MANAGER_TOKEN);
    common::write_secret(dir, "agent.token", AGENT_TOKEN);
    common::write_secret(dir, "cli.token", CLI_TOKEN);
    common::write_secret(dir, "pw", PASSWORD);
}

#[test]
fn bad_configs_name_file_line_column_and_start_nothing() {
    let dir = temp_dir("bad");
    write_secrets(&dir);
    let good = good(&dir.join("state"));
    let typo = good.replace("    user: myha\n", "    user: myha\n    max_lagg: 5s\n");
    let unknown = good.replace("    cluster: c1\n", "    cluster: c9\n");
    let dup = good.replace(
        "access:\n",
        "  - name: db1\n    cluster: c1\n    address: 127.0.0.2\naccess:\n",
    );
    let cases = [
        (
            "typo.yaml",
            typo.clone(),
            format!("typo.yaml:{}:5:", line_of(&typo, "max_lagg", 0)),
        ),
        (
            "nopw.yaml",
            good.replace("    password_file: pw\n", ""),
            "nopw.yaml:".to_string(),
        ),
        (
            "unknown.yaml",
            unknown.clone(),
            format!("unknown.yaml:{}:", line_of(&unknown, "cluster: c9", 0)),
        ),
        (
            "dup.yaml",
            dup.clone(),
            format!("dup.yaml:{}:", line_of(&dup, "- name: db1", 1)),
        ),
    ];
    for (name, text, location) in cases {
        let path = write(&dir, name, &text);
        for cmd in [&["manager"][..], &["status"][..], &["check"][..]] {
            let (code, err) = run(&path, cmd);
            assert_eq!(code, 2, "{name} {cmd:?}: {err}");
            assert!(
                err.contains(&location),
                "{name} {cmd:?}: expected {location} in:\n{err}"
            );
            assert!(err.contains("nothing was started"), "{err}");
            no_secret_in(&err);
        }
    }
    // The manager really did not start: its port is free.
    assert!(std::net::TcpListener::bind(("127.0.0.1", manager_port())).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_group_readable_secret_is_refused_naming_the_file() {
    let dir = temp_dir("mode");
    write_secrets(&dir);
    let path = write(&dir, "myha.yaml", &good(&dir.join("state")));
    for (file, cmd) in [("cli.token", "status"), ("manager.token", "manager")] {
        let secret = dir.join(file);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (code, err) = run(&path, &[cmd]);
        assert_eq!(code, 2, "{cmd} with {file} mode 0640: {err}");
        assert!(
            err.contains(&secret.display().to_string())
                && err.contains("accessible to group or others"),
            "{cmd}: expected {} named as accessible to group or others in:\n{err}",
            secret.display()
        );
        assert!(err.contains("nothing was started"), "{err}");
        no_secret_in(&err);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn read_only_cli_needs_no_database_password() {
    let dir = temp_dir("nopwfile");
    write_secrets(&dir);
    std::fs::remove_file(dir.join("pw")).unwrap();
    let path = write(&dir, "myha.yaml", &good(&dir.join("state")));
    // `status` reads the CLI's token only: the configuration loads, and it
    // fails on the manager (nothing listens), not on the configuration.
    let (code, err) = run(&path, &["status"]);
    assert_ne!(code, 0, "no manager runs: {err}");
    assert_ne!(code, 2, "status needs no password file: {err}");
    assert!(
        !err.contains("nothing was started") && !err.contains("is invalid"),
        "status failed on the configuration: {err}"
    );
    no_secret_in(&err);
    // `check` reads the servers itself: the missing file is its error.
    let (code, err) = run(&path, &["check"]);
    assert_eq!(code, 2, "check needs the password file: {err}");
    assert!(
        err.contains(&dir.join("pw").display().to_string()) && err.contains("nothing was started"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
