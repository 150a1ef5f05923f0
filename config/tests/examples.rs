//! Every file under `examples/` loads, with the secrets it references.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use myha_config::{load_str, Config, Flavor, Strategy};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn demo_env(name: &str) -> Option<String> {
    match name {
        "MYHA_TOKEN" => Some("demo-token".to_owned()),
        "MYHA_DB_PASSWORD" | "MYHA_REPL_PASSWORD" => Some("demo-password".to_owned()),
        _ => None,
    }
}

fn load_example(name: &str) -> Config {
    private_secrets();
    let path = example(name);
    let text = std::fs::read_to_string(&path).unwrap();
    match load_str(&text, &path, &demo_env) {
        Ok(config) => config,
        Err(errors) => panic!("{name} does not load:\n{errors}"),
    }
}

/// Git keeps no file modes but the executable bit: make the example
/// secrets private, as myha requires.
fn private_secrets() {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(example("secrets")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn every_example_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(example(""))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    names.sort();
    assert_eq!(names, ["minimal.yaml", "mysql8.yaml", "sandbox.yaml"]);
}

#[test]
fn sandbox() {
    let config = load_example("sandbox.yaml");
    assert_eq!(config.clusters.len(), 1);
    let cluster = config.cluster("sandbox").unwrap();
    assert_eq!(cluster.flavor, Flavor::Mariadb);
    let names: Vec<&str> = cluster.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["db1", "db2", "db3"]);
    // password_file secrets resolve against the example's directory.
    assert_eq!(cluster.admin.password.expose(), "myha-admin-pw");
    assert_eq!(cluster.replication.password.expose(), "myha-repl-pw");
    assert_eq!(config.token.expose(), "sandbox-token");
    assert_eq!(cluster.hosts[0].agent_url(), "http://db1:7071");
    assert_eq!(cluster.hosts[2].mysql_addr(), "db3:3306");
    assert!(cluster.hosts[2].no_master);
}

#[test]
fn minimal() {
    let config = load_example("minimal.yaml");
    assert_eq!(config.token.expose(), "demo-token");
    // The agents are remote: the manager listens where they reach it.
    assert_eq!(config.manager.url, "http://10.0.0.2:7070");
    assert!(config.manager.listen.ip().is_unspecified());
    let cluster = config.cluster("main").unwrap();
    assert_eq!(cluster.admin.user, "myha");
    assert_eq!(cluster.replication.user, "repl");
    assert_eq!(cluster.hosts.len(), 2);
    assert!(cluster.vip.is_none() && cluster.router.is_none());
}

#[test]
fn mysql8() {
    let config = load_example("mysql8.yaml");
    let cluster = config.cluster("orders").unwrap();
    assert_eq!(cluster.flavor, Flavor::Mysql);
    assert_eq!(cluster.admin.password.expose(), "demo-password");
    assert!(!cluster.auto_rejoin);
    let vip = cluster.vip.as_ref().unwrap();
    assert_eq!(vip.address.to_string(), "10.0.0.100");
    assert_eq!((vip.prefix_len, vip.interface.as_str()), (24, "eth0"));
    assert!(cluster.hooks.pre_failover.is_some());
    assert_eq!(cluster.hooks.master_ip_failover_script, None);
    let router = cluster.router.as_ref().unwrap();
    assert_eq!(router.strategy, Strategy::LeastConnections);
    assert_eq!(router.writer_hold_timeout, Duration::from_secs(5));
    let (found, host) = config.find_host("mysql-c").unwrap();
    assert_eq!(found.name, "orders");
    assert_eq!(host.address, "mysql-c.db.example.internal");
}

#[test]
fn load_reads_the_file() {
    // `load` uses the real environment; the sandbox needs none.
    private_secrets();
    let config = myha_config::load(&example("sandbox.yaml")).unwrap();
    assert_eq!(config.path, example("sandbox.yaml"));
}
