//! Bad configurations stop every subcommand before anything starts, with
//! errors naming file:line:column. No Docker needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "manager:\n  listen: 127.0.0.1:17070\n  token_file: token\n  state_dir: STATE\nclusters:\n  - name: c1\n    user: myha\n    password_file: pw\n    replication_user: repl\n    replication_password_file: pw\nhosts:\n  - name: db1\n    cluster: c1\n    address: 127.0.0.1\n";

fn run(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_myha"))
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

#[test]
fn bad_configs_name_file_line_column_and_start_nothing() {
    let dir = std::env::temp_dir().join(format!("myha-cfgcli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, "token", "t0ken");
    write(&dir, "pw", "secret-pw");
    let good = GOOD.replace("STATE", &dir.join("state").display().to_string());
    let cases = [
        (
            "typo.yaml",
            good.replace("    user: myha\n", "    user: myha\n    max_lagg: 5s\n"),
            "typo.yaml:8:5:",
        ),
        (
            "nopw.yaml",
            good.replace("    password_file: pw\n", ""),
            "nopw.yaml:",
        ),
        (
            "unknown.yaml",
            good.replace("    cluster: c1\n", "    cluster: c9\n"),
            "unknown.yaml:13:",
        ),
        (
            "dup.yaml",
            format!("{good}  - name: db1\n    cluster: c1\n    address: 127.0.0.2\n"),
            "dup.yaml:15:",
        ),
    ];
    for (name, text, location) in cases {
        let path = write(&dir, name, &text);
        for cmd in [&["manager"][..], &["status"][..], &["check"][..]] {
            let (code, err) = run(&path, cmd);
            assert_eq!(code, 2, "{name} {cmd:?}: {err}");
            assert!(
                err.contains(location),
                "{name} {cmd:?}: expected {location} in:\n{err}"
            );
            assert!(err.contains("nothing was started"), "{err}");
            assert!(
                !err.contains("secret-pw") && !err.contains("t0ken"),
                "secret leaked: {err}"
            );
        }
    }
    // The manager really did not start: its port is free.
    assert!(std::net::TcpListener::bind("127.0.0.1:17070").is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
