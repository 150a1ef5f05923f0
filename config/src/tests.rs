//! Unit tests: one per validation rule, each checking the exact position and
//! a part of the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{load_str, Config, ConfigError, ConfigErrors, Flavor, HostConfig, Strategy};

/// Secret values the test environment hands out; no error may contain them.
const TOKEN: &str = "tok-7f3a9c";
const DB_PASSWORD: &str = "db-pw-51be02";
const REPL_PASSWORD: &str = "repl-pw-c0ffee";

fn env(name: &str) -> Option<String> {
    match name {
        "MYHA_TOKEN" => Some(TOKEN.to_owned()),
        "DB_PW" => Some(DB_PASSWORD.to_owned()),
        "REPL_PW" => Some(REPL_PASSWORD.to_owned()),
        "AGENT_TOKEN" => Some("agent-tok".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// A valid file. Line numbers matter: tests insert lines after
/// [`MANAGER_END`], [`CLUSTER_END`] or [`HOST1_END`].
const BASE: &str = "\
manager:
  token_env: MYHA_TOKEN
clusters:
  - name: shop
    user: myha
    password_env: DB_PW
    replication_user: repl
    replication_password_env: REPL_PW
hosts:
  - name: db1
    cluster: shop
    address: 10.0.0.11
  - name: db2
    cluster: shop
    address: 10.0.0.12
access:
  - { name: manager, role: manager, token_sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa }
  - { name: db1, role: agent, host: db1, token_sha256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb }
  - { name: db2, role: agent, host: db2, token_sha256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc }
agent:
  token_env: AGENT_TOKEN
";
const AGENT: &str = "agent:\n  token_env: AGENT_TOKEN\n";
const MANAGER_END: usize = 2;
const CLUSTER_END: usize = 8;
const HOST1_END: usize = 12;

/// `BASE` with `extra` inserted after line `after` (so it starts on line `after + 1`).
fn with(after: usize, extra: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    let tail = lines.split_off(after);
    let mut text = lines.join("\n");
    text.push('\n');
    text.push_str(extra);
    if !extra.ends_with('\n') {
        text.push('\n');
    }
    for line in tail {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// `BASE` with the first line containing `from` replaced by `to`.
fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_str(yaml, Path::new("myha.yaml"), &env)
}

fn ok(yaml: &str) -> Config {
    match load(yaml) {
        Ok(config) => config,
        Err(errors) => panic!("expected success, got:\n{errors}\n--- yaml:\n{yaml}"),
    }
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    match load(yaml) {
        Ok(_) => panic!("expected errors, the file loaded:\n{yaml}"),
        Err(errors) => {
            assert_no_secret(&errors.to_string());
            errors.0
        }
    }
}

/// Asserts that loading `yaml` fails with exactly one error, at
/// `line:column`, whose message contains `needle`.
fn assert_error(yaml: &str, line: u32, column: u32, needle: &str) {
    let errors = errors(yaml);
    assert_eq!(
        errors.len(),
        1,
        "expected one error, got:\n{}",
        ConfigErrors(errors.clone())
    );
    assert_has(&errors, line, column, needle);
}

/// Asserts that `errors` has one at `line:column` containing `needle`.
fn assert_has(errors: &[ConfigError], line: u32, column: u32, needle: &str) {
    let found = errors
        .iter()
        .any(|e| e.line == line && e.column == column && e.message.contains(needle));
    assert!(
        found,
        "no error at {line}:{column} containing {needle:?}; got:\n{}",
        ConfigErrors(errors.to_vec())
    );
}

fn assert_no_secret(text: &str) {
    for secret in [TOKEN, DB_PASSWORD, REPL_PASSWORD, "hunter2", "file-secret"] {
        assert!(
            !text.contains(secret),
            "secret {secret:?} leaked in: {text}"
        );
    }
}

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("myha-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- a valid file and its defaults -------------------------------------

#[test]
fn base_loads_with_documented_defaults() {
    let config = ok(BASE);
    assert_eq!(config.path, Path::new("myha.yaml"));

    let m = &config.manager;
    assert_eq!(m.listen, "127.0.0.1:7070".parse::<SocketAddr>().unwrap());
    assert_eq!(m.url, "http://127.0.0.1:7070");
    assert_eq!(config.token.expose(), TOKEN);
    assert_eq!(m.state_dir, Path::new("/var/lib/myha"));
    assert_eq!(m.probe_interval, Duration::from_millis(500));
    assert_eq!(m.connect_timeout, Duration::from_millis(500));
    assert_eq!(m.query_timeout, Duration::from_secs(2));

    assert_eq!(config.agent, crate::AgentConfig::default());
    assert_eq!(config.agent.port, 7071);
    assert_eq!(config.agent.interval, Duration::from_millis(250));
    assert_eq!(config.agent.connect_timeout, Duration::from_millis(300));
    assert_eq!(config.agent.query_timeout, Duration::from_secs(1));
    assert_eq!(config.agent.report_timeout, Duration::from_secs(1));

    let c = config.cluster("shop").unwrap();
    assert_eq!(c.flavor, Flavor::Mariadb);
    assert_eq!(c.admin.user, "myha");
    assert_eq!(c.admin.password.expose(), DB_PASSWORD);
    assert_eq!(c.replication.user, "repl");
    assert_eq!(c.replication.password.expose(), REPL_PASSWORD);
    assert_eq!(c.max_lag, Duration::from_secs(10));
    assert_eq!(c.heartbeat_table, "myha.heartbeat");
    assert!(c.auto_failover && c.auto_rejoin);
    assert_eq!(c.failover_block_period, Duration::from_secs(600));
    assert_eq!(c.master_down_after, Duration::from_secs(1));
    assert!(c.vip.is_none() && c.router.is_none());
    assert_eq!(c.hooks, crate::HooksConfig::default());
    assert_eq!(c.hooks.timeout, Duration::from_secs(30));

    let expected = HostConfig {
        name: "db1".into(),
        address: "10.0.0.11".into(),
        port: 3306,
        agent_port: 7071,
        candidate_master: false,
        no_master: false,
        priority: 0,
        weight: 1,
        token_sha256: crate::TokenHash([0xbb; 32]),
        tls: false,
    };
    assert_eq!(c.hosts[0], expected);
    assert_eq!(c.hosts.len(), 2);
}

#[test]
fn every_key_is_read() {
    let yaml = "\
manager:
  listen: 0.0.0.0:9000
  url: http://10.1.1.1:9000/
  token_env: MYHA_TOKEN
  state_dir: /tmp/state
  probe_interval: 1s
  connect_timeout: 2s
  query_timeout: 3s
agent:
  port: 8000
  interval: 10ms
  connect_timeout: 4s
  query_timeout: 5s
  report_timeout: 6s
  token_env: MYHA_TOKEN
clusters:
  - name: c-1.x_y
    flavor: mysql
    user: admin
    password_env: DB_PW
    replication_user: r
    replication_password_env: REPL_PW
    max_lag: 1m
    heartbeat_table: ops.hb_$1
    auto_failover: false
    auto_rejoin: false
    failover_block_period: 1h
    master_down_after: 3s
    vip: { address: 10.0.0.100/24, interface: eth0, arp_count: 5 }
    hooks:
      pre_failover: /bin/pre
      post_failover: /bin/post
      on_failure: /bin/fail
      master_ip_failover_script: /bin/mha
      timeout: 1m
    router:
      writer_listen: 127.0.0.1:1
      reader_listen: 127.0.0.1:2
      http_listen: 127.0.0.1:3
      strategy: address_hash
      fallback_to_master: false
      writer_hold_timeout: 2s
hosts:
  - name: h1
    cluster: c-1.x_y
    address: db.example.com
    port: 3307
    agent_port: 8001
    candidate_master: true
    no_master: false
    priority: -5
access:
  - { name: m, role: manager, token_sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa }
  - { name: h1, role: agent, host: h1, token_sha256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb }
  - { name: ops, role: operator, token_sha256: sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc }
cli:
  token_env: MYHA_TOKEN
";
    let config = ok(yaml);
    assert_eq!(config.access.len(), 3);
    assert_eq!(config.access[2].role, crate::AccessRole::Operator);
    assert_eq!(
        config.manager.url, "http://10.1.1.1:9000",
        "trailing / removed"
    );
    assert_eq!(config.manager.state_dir, Path::new("/tmp/state"));
    assert_eq!(config.agent.interval, Duration::from_millis(10));
    assert_eq!(config.agent.report_timeout, Duration::from_secs(6));
    let c = &config.clusters[0];
    assert_eq!(c.flavor, Flavor::Mysql);
    assert_eq!(c.heartbeat_table, "ops.hb_$1");
    assert!(!c.auto_failover && !c.auto_rejoin);
    assert_eq!(c.failover_block_period, Duration::from_secs(3600));
    let vip = c.vip.as_ref().unwrap();
    assert_eq!(vip.address, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!((vip.prefix_len, vip.arp_count), (24, 5));
    assert_eq!(
        c.hooks.master_ip_failover_script.as_deref(),
        Some("/bin/mha")
    );
    assert_eq!(c.hooks.timeout, Duration::from_secs(60));
    let router = c.router.as_ref().unwrap();
    assert_eq!(router.strategy, Strategy::AddressHash);
    assert!(!router.fallback_to_master);
    assert_eq!(router.http_listen.port(), 3);
    let h = &c.hosts[0];
    assert_eq!((h.port, h.agent_port, h.priority), (3307, 8001, -5));
    assert!(h.candidate_master);
}

#[test]
fn agent_port_defaults_to_agent_section() {
    let config = ok(&format!("{BASE}  port: 9100\n"));
    assert_eq!(config.clusters[0].hosts[0].agent_port, 9100);
    assert_eq!(
        config.clusters[0].hosts[0].agent_url(),
        "http://10.0.0.11:9100"
    );
}

#[test]
fn empty_router_and_vip_arp_count_take_defaults() {
    let yaml = with(
        CLUSTER_END,
        "    router: {}\n    vip: { address: 10.0.0.1/32, interface: eth1 }",
    );
    let c = &ok(&yaml).clusters[0];
    assert_eq!(c.router, Some(crate::RouterConfig::default()));
    let router = c.router.as_ref().unwrap();
    assert_eq!(router.writer_listen.to_string(), "0.0.0.0:6033");
    assert_eq!(router.reader_listen.to_string(), "0.0.0.0:6034");
    assert_eq!(router.http_listen.to_string(), "127.0.0.1:6035");
    assert_eq!(router.strategy, Strategy::RoundRobin);
    assert!(router.fallback_to_master);
    assert_eq!(router.writer_hold_timeout, Duration::from_secs(5));
    assert_eq!(router.busy_poll, Duration::ZERO);
    assert_eq!(router.relay, crate::Relay::Userspace);
    assert_eq!(c.vip.as_ref().unwrap().arp_count, 3);
}

#[test]
fn router_busy_poll_is_bounded_and_zero_turns_it_off() {
    let get = |v: &str| {
        ok(&with(
            CLUSTER_END,
            &format!("    router: {{ busy_poll: {v} }}"),
        ))
        .clusters[0]
            .router
            .as_ref()
            .map(|r| r.busy_poll)
    };
    assert_eq!(get("200us"), Some(Duration::from_micros(200)));
    assert_eq!(get("0s"), Some(Duration::ZERO));
    assert_eq!(get("10ms"), Some(Duration::from_millis(10)));
    assert_error(
        &with(CLUSTER_END, "    router: { busy_poll: 50ms }"),
        9,
        26,
        "`busy_poll` 50ms is too long: at most 10ms",
    );
    assert_error(
        &with(CLUSTER_END, "    router: { busy_poll: often }"),
        9,
        26,
        "`busy_poll`: invalid duration `often`",
    );
}

#[test]
fn hosts_keep_file_order_per_cluster() {
    let yaml = "\
manager: { token_env: MYHA_TOKEN }
agent: { token_env: MYHA_TOKEN }
clusters:
  - { name: a, user: u, password_env: DB_PW, replication_user: r, replication_password_env: REPL_PW }
  - { name: b, user: u, password_env: DB_PW, replication_user: r, replication_password_env: REPL_PW }
hosts:
  - { name: b2, cluster: b, address: 10.0.0.4 }
  - { name: a1, cluster: a, address: 10.0.0.1 }
  - { name: b1, cluster: b, address: 10.0.0.3 }
  - { name: a2, cluster: a, address: 10.0.0.2 }
access:
  - { name: m, role: manager, token_sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa }
  - { name: a1, role: agent, host: a1, token_sha256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb }
  - { name: a2, role: agent, host: a2, token_sha256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc }
  - { name: b1, role: agent, host: b1, token_sha256: dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd }
  - { name: b2, role: agent, host: b2, token_sha256: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee }
";
    let config = ok(yaml);
    let names = |c: &str| -> Vec<String> {
        let cluster = config.cluster(c).unwrap();
        cluster.hosts.iter().map(|h| h.name.clone()).collect()
    };
    assert_eq!(names("a"), ["a1", "a2"]);
    assert_eq!(names("b"), ["b2", "b1"]);
    assert!(config.cluster("c").is_none());
}

#[test]
fn find_host_by_name_then_address() {
    let config = ok(BASE);
    let (cluster, host) = config.find_host("db2").unwrap();
    assert_eq!((cluster.name.as_str(), host.name.as_str()), ("shop", "db2"));
    assert_eq!(config.find_host("10.0.0.11:3306").unwrap().1.name, "db1");
    assert_eq!(config.find_host("10.0.0.12").unwrap().1.name, "db2");
    assert!(config.find_host("db9").is_none());
    assert_eq!(
        config.clusters[0].host("db1").unwrap().mysql_addr(),
        "10.0.0.11:3306"
    );
}

#[test]
fn ipv6_addresses_are_bracketed_in_urls() {
    let config = ok(&replace("address: 10.0.0.11", "address: \"fd00::11\""));
    let host = &config.clusters[0].hosts[0];
    assert_eq!(host.mysql_addr(), "[fd00::11]:3306");
    assert_eq!(host.agent_url(), "http://[fd00::11]:7071");
}

// ---- parse errors: reported alone, with position -----------------------

#[test]
fn typo_in_key_is_located() {
    // Acceptance: `max_lagg:` names file:line:column.
    let errors = errors(&with(CLUSTER_END, "    max_lagg: 10s"));
    assert_eq!(errors.len(), 1);
    assert_has(&errors, 9, 5, "unknown field `max_lagg`");
    assert_eq!(
        errors[0].to_string().split(": ").next(),
        Some("myha.yaml:9:5")
    );
}

#[test]
fn unknown_keys_in_every_section() {
    assert_error(
        &with(MANAGER_END, "  lisen: 1.2.3.4:5"),
        3,
        3,
        "unknown field `lisen`",
    );
    assert_error(
        &format!("{BASE}  intervall: 1s\n"),
        22,
        3,
        "unknown field `intervall`",
    );
    assert_error(
        &with(HOST1_END, "    prio: 1"),
        13,
        5,
        "unknown field `prio`",
    );
    assert_error(&format!("{BASE}extra: 1\n"), 22, 1, "unknown field `extra`");
    assert_error(
        &with(CLUSTER_END, "    vip: { address: 10.0.0.1/8, iface: eth0 }"),
        9,
        33,
        "unknown field `iface`",
    );
    assert_error(
        &with(CLUSTER_END, "    hooks:\n      pre: /bin/true"),
        10,
        7,
        "unknown field `pre`",
    );
    assert_error(
        &with(CLUSTER_END, "    router:\n      strat: weighted"),
        10,
        7,
        "unknown field `strat`",
    );
}

#[test]
fn wrong_types_are_located() {
    assert_error(&with(HOST1_END, "    port: abc"), 13, 11, "");
    assert_error(
        &with(CLUSTER_END, "    auto_failover: maybe"),
        9,
        20,
        "boolean",
    );
    assert_error(
        &with(CLUSTER_END, "    flavor: postgres"),
        9,
        13,
        "unknown variant `postgres`",
    );
    assert_error(
        &with(CLUSTER_END, "    router: { strategy: random }"),
        9,
        25,
        "unknown variant `random`",
    );
    assert_error(
        &with(CLUSTER_END, "    router: { relay: splice }"),
        9,
        22,
        "unknown variant `splice`",
    );
    assert_error(&with(HOST1_END, "    priority: [1]"), 13, 15, "");
}

#[test]
fn router_relay_kernel_is_refused_as_retired() {
    let yaml = with(CLUSTER_END, "    router: { relay: kernel }");
    assert_error(&yaml, 9, 22, "`relay: kernel` was retired");
    let message = errors(&yaml)
        .into_iter()
        .map(|e| e.message)
        .collect::<String>();
    assert!(message.contains("`relay: nat`"), "{message}");
    assert!(message.contains("`relay: userspace`"), "{message}");
    // The other values are still read.
    let c = &ok(&with(CLUSTER_END, "    router: { relay: userspace }")).clusters[0];
    assert_eq!(
        c.router.as_ref().map(|r| r.relay),
        Some(crate::Relay::Userspace)
    );
}

#[test]
fn router_relay_nat_is_read_and_refuses_loopback_and_ipv6_listeners() {
    let c = &ok(&with(
        CLUSTER_END,
        "    router: { relay: nat, writer_listen: 10.0.0.1:6033, reader_listen: 0.0.0.0:6034 }",
    ))
    .clusters[0];
    assert_eq!(c.router.as_ref().map(|r| r.relay), Some(crate::Relay::Nat));
    // The kernel would not forward connections made to loopback.
    assert_error(
        &with(
            CLUSTER_END,
            "    router: { relay: nat, reader_listen: 127.0.0.1:6034 }",
        ),
        9,
        22,
        "`relay: nat` cannot forward connections made to a loopback address \
         (listen on an address the backends can reach): `reader_listen` is 127.0.0.1:6034",
    );
    assert_error(
        &with(
            CLUSTER_END,
            "    router: { relay: nat, writer_listen: \"[::1]:6033\", reader_listen: 10.0.0.1:6034 }",
        ),
        9,
        22,
        "`relay: nat` forwards IPv4 only: `writer_listen` is [::1]:6033",
    );
}

#[test]
fn syntax_error_is_located() {
    assert_error(
        &with(CLUSTER_END, "    max_lag: \"unclosed"),
        9,
        14,
        "quote",
    );
}

#[test]
fn empty_file_reports_what_is_missing() {
    let errs = errors("");
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    assert_has(
        &errs,
        1,
        1,
        "`manager` is missing `token_env` or `token_file`",
    );
    assert_has(&errs, 1, 1, "at least one cluster must be defined");
}

// ---- validation: every problem, each at its node ------------------------

#[test]
fn missing_manager_section() {
    let yaml = BASE.replacen("manager:\n  token_env: MYHA_TOKEN\n", "", 1);
    assert_error(&yaml, 1, 1, "missing `token_env` or `token_file`");
}

#[test]
fn at_least_one_cluster() {
    let no_clusters = "manager:\n  token_env: MYHA_TOKEN\nclusters: []\n";
    assert_error(no_clusters, 3, 11, "at least one cluster");
    let no_key = "manager:\n  token_env: MYHA_TOKEN\n";
    assert_error(no_key, 1, 1, "at least one cluster");
}

#[test]
fn cluster_name_rules() {
    assert_error(
        &replace("name: shop", "name: \"\""),
        4,
        11,
        "`name` must not be empty",
    );
    assert_has(
        &errors(&replace("name: shop", "name: sh op")),
        4,
        11,
        "cluster name `sh op` is invalid",
    );
    // Missing name: reported at the cluster entry (its first key).
    let errs = errors(&replace("  - name: shop\n    user", "  - user"));
    assert_has(&errs, 4, 5, "cluster is missing required key `name`");
}

#[test]
fn cluster_names_are_unique() {
    let yaml = with(
        CLUSTER_END,
        "  - name: shop\n    user: u\n    password_env: DB_PW\n    \
         replication_user: r\n    replication_password_env: REPL_PW",
    );
    assert_error(
        &yaml,
        9,
        11,
        "duplicate cluster name `shop` (first defined at line 4)",
    );
}

#[test]
fn duplicate_host_is_located_at_second_occurrence() {
    // Acceptance: a duplicate host gives file:line:column of the second one.
    let yaml = replace("name: db2", "name: db1");
    assert_error(
        &yaml,
        13,
        11,
        "duplicate host name `db1` (first defined at line 10)",
    );
    assert!(errors(&yaml)[0]
        .to_string()
        .starts_with("myha.yaml:13:11: "));
}

#[test]
fn host_name_rules() {
    assert_error(
        &replace("name: db1", "name: \"db 1\""),
        10,
        11,
        "host name `db 1` is invalid",
    );
    let yaml = replace("  - name: db1\n    cluster", "  - cluster");
    assert_error(&yaml, 10, 5, "host is missing required key `name`");
}

#[test]
fn unknown_cluster_in_host() {
    // Acceptance: an unknown cluster in a host names file:line:column.
    let yaml = replace(
        "cluster: shop\n    address: 10.0.0.12",
        "cluster: shpo\n    address: 10.0.0.12",
    );
    assert_error(
        &yaml,
        14,
        14,
        "host `db2` refers to undefined cluster `shpo`; defined clusters: shop",
    );
}

#[test]
fn host_requires_cluster_and_address() {
    let yaml = replace("    cluster: shop\n    address: 10.0.0.11\n", "");
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    assert_has(&errs, 10, 5, "host `db1` is missing required key `cluster`");
    assert_has(&errs, 10, 5, "host `db1` is missing required key `address`");
}

#[test]
fn host_address_must_be_ip_or_name() {
    assert_error(
        &replace("address: 10.0.0.11", "address: \"db 1\""),
        12,
        14,
        "neither an IP address nor a host name",
    );
    ok(&replace("address: 10.0.0.11", "address: db1.example.com"));
}

#[test]
fn every_cluster_needs_a_host() {
    let yaml = replace(
        "cluster: shop\n    address: 10.0.0.11",
        "cluster: shop\n    address: 10.0.0.11",
    )
    .replace("hosts:\n", "hosts: []\n")
    .lines()
    .take(9)
    .collect::<Vec<_>>()
    .join("\n");
    assert_error(&yaml, 4, 11, "cluster `shop` has no hosts");
}

#[test]
fn address_and_port_are_unique() {
    let yaml = replace("address: 10.0.0.12", "address: 10.0.0.11");
    assert_error(
        &yaml,
        15,
        14,
        "host `db2` has the same address and port (10.0.0.11:3306) as host `db1` (line 10)",
    );
    // Same address, other port: fine.
    ok(&replace(
        "address: 10.0.0.12",
        "address: 10.0.0.11\n    port: 3307",
    ));
}

#[test]
fn ports_are_non_zero_and_in_range() {
    assert_error(
        &with(HOST1_END, "    port: 0"),
        13,
        11,
        "`port` must be a port number from 1 to 65535, got 0",
    );
    assert_error(
        &with(HOST1_END, "    agent_port: 70000"),
        13,
        17,
        "got 70000",
    );
    assert_error(
        &format!("{BASE}  port: 0\n"),
        22,
        9,
        "`port` must be a port number",
    );
    assert_error(
        &with(MANAGER_END, "  listen: 127.0.0.1:0"),
        3,
        11,
        "`listen`: port must not be 0",
    );
    assert_error(
        &with(CLUSTER_END, "    router: { reader_listen: \"0.0.0.0:0\" }"),
        9,
        30,
        "`reader_listen`: port must not be 0",
    );
}

#[test]
fn listen_addresses_must_parse() {
    assert_error(
        &with(MANAGER_END, "  listen: localhost:7070"),
        3,
        11,
        "`listen` `localhost:7070` is not an IP address and port",
    );
}

#[test]
fn router_listeners_must_differ() {
    let yaml = with(
        CLUSTER_END,
        "    router:\n      reader_listen: 0.0.0.0:6033",
    );
    assert_error(
        &yaml,
        10,
        22,
        "`reader_listen` 0.0.0.0:6033 conflicts with `writer_listen` 0.0.0.0:6033",
    );
    // The wildcard address overlaps every address on the same port.
    let yaml = with(
        CLUSTER_END,
        "    router:\n      http_listen: 127.0.0.1:6034",
    );
    assert_error(
        &yaml,
        10,
        20,
        "`http_listen` 127.0.0.1:6034 conflicts with `reader_listen`",
    );
}

// ---- secrets ------------------------------------------------------------

#[test]
fn missing_password_reference() {
    // Acceptance: a missing password reference names file:line:column.
    let yaml = replace("    password_env: DB_PW\n", "");
    assert_error(
        &yaml,
        4,
        5,
        "cluster `shop` is missing `password_env` or `password_file` (exactly one is required)",
    );
    let yaml = replace("    replication_password_env: REPL_PW\n", "");
    assert_error(
        &yaml,
        4,
        5,
        "missing `replication_password_env` or `replication_password_file`",
    );
    let yaml = replace("  token_env: MYHA_TOKEN", "  state_dir: /x");
    assert_error(
        &yaml,
        2,
        3,
        "`manager` is missing `token_env` or `token_file`",
    );
}

#[test]
fn both_secret_references_is_an_error() {
    let yaml = with(CLUSTER_END, "    password_file: /etc/pw");
    assert_error(
        &yaml,
        9,
        20,
        "`password_env` and `password_file` are both set: use exactly one",
    );
    let yaml = with(MANAGER_END, "  token_file: /etc/token");
    assert_error(&yaml, 3, 15, "`token_env` and `token_file` are both set");
}

#[test]
fn inline_password_is_rejected_without_echoing_it() {
    let yaml = replace("    password_env: DB_PW\n", "    password: hunter2\n");
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
    assert_has(
        &errs,
        6,
        15,
        "inline `password` is not allowed: use `password_env`",
    );
    assert_has(&errs, 6, 15, "or `password_file`");

    let yaml = with(CLUSTER_END, "    replication_password: hunter2");
    assert_error(&yaml, 9, 27, "inline `replication_password` is not allowed");
    let yaml = replace("  token_env: MYHA_TOKEN", "  token: hunter2");
    assert_error(
        &yaml,
        2,
        10,
        "inline `token` is not allowed: use `token_env`",
    );
}

#[test]
fn env_secret_must_be_set_and_non_empty() {
    assert_error(
        &replace("password_env: DB_PW", "password_env: NOPE"),
        6,
        19,
        "environment variable `NOPE` (from `password_env`) is not set",
    );
    assert_error(
        &replace("password_env: DB_PW", "password_env: EMPTY"),
        6,
        19,
        "environment variable `EMPTY` (from `password_env`) is empty",
    );
    assert_error(
        &replace("password_env: DB_PW", "password_env: \"\""),
        6,
        19,
        "`password_env` must name an environment variable",
    );
    // Something that is no variable name may be a pasted secret: not echoed.
    let errs = errors(&replace(
        "password_env: DB_PW",
        "password_env: \"hunter2!x\"",
    ));
    assert_has(
        &errs,
        6,
        19,
        "`password_env` must name an environment variable",
    );
    assert!(!ConfigErrors(errs).to_string().contains("hunter2"));
}

#[test]
fn file_secret_resolves_relative_to_config_and_trims_newline() {
    let dir = TempDir::new("file-secret");
    dir.write("secrets/db.pw", "file-secret\n");
    let absolute = dir.write("token", "file-secret-token\r\n");
    let yaml = replace("password_env: DB_PW", "password_file: secrets/db.pw").replace(
        "token_env: MYHA_TOKEN",
        &format!("token_file: {}", absolute.display()),
    );
    let config = load_str(&yaml, &dir.0.join("myha.yaml"), &env).unwrap();
    assert_eq!(config.clusters[0].admin.password.expose(), "file-secret");
    assert_eq!(config.token.expose(), "file-secret-token");
}

#[test]
fn file_secret_must_be_readable_and_non_empty() {
    let dir = TempDir::new("file-errors");
    dir.write("empty.pw", "\n");
    let config_path = dir.0.join("myha.yaml");
    let yaml = replace("password_env: DB_PW", "password_file: empty.pw").replace(
        "replication_password_env: REPL_PW",
        "replication_password_file: missing.pw",
    );
    let errs = load_str(&yaml, &config_path, &env).unwrap_err().0;
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    assert_has(&errs, 6, 20, "empty.pw` (from `password_file`) is empty");
    assert_has(&errs, 8, 32, "cannot read secret file `");
    assert_has(
        &errs,
        8,
        32,
        "missing.pw` (from `replication_password_file`)",
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = ok(BASE);
    let debug = format!("{config:?}");
    assert_no_secret(&debug);
    assert!(debug.contains("<redacted>"));
    assert_no_secret(&format!("{:#?}", config.clusters[0].admin));
}

#[test]
fn secrets_never_appear_in_errors() {
    // Secrets resolve fine here, and many other things are wrong; `errors()`
    // checks that none of the resolved values (nor the inline one) shows up.
    let yaml = format!(
        "{}  interval: 1ms\n",
        with(
            CLUSTER_END,
            "    max_lag: 0s\n    replication_password: hunter2"
        )
    );
    let errs = errors(&yaml);
    assert!(errs.len() >= 3, "{}", ConfigErrors(errs.clone()));
}

// ---- values -------------------------------------------------------------

#[test]
fn bad_durations() {
    assert_error(
        &with(CLUSTER_END, "    max_lag: 10 seconds please"),
        9,
        14,
        "`max_lag`: invalid duration `10 seconds please`",
    );
    assert_error(
        &with(CLUSTER_END, "    max_lag: 10"),
        9,
        14,
        "write a number with a unit",
    );
    assert_error(
        &with(CLUSTER_END, "    master_down_after: 0s"),
        9,
        24,
        "`master_down_after` must be greater than 0",
    );
    assert_error(
        &with(MANAGER_END, "  probe_interval: 0ms"),
        3,
        19,
        "must be greater than 0",
    );
    assert_error(
        &with(CLUSTER_END, "    hooks: { timeout: soon }"),
        9,
        23,
        "`timeout`: invalid duration `soon`",
    );
    assert_error(
        &with(CLUSTER_END, "    router: { writer_hold_timeout: 0s }"),
        9,
        36,
        "`writer_hold_timeout` must be greater than 0",
    );
    assert_error(
        &format!("{BASE}  report_timeout: x\n"),
        22,
        19,
        "invalid duration",
    );
}

#[test]
fn agent_interval_at_least_10ms() {
    assert_error(
        &format!("{BASE}  interval: 9ms\n"),
        22,
        13,
        "`interval` 9ms is too short: it must be from 10ms to 10s",
    );
    // interval may exceed query_timeout.
    let config = ok(&format!("{BASE}  interval: 5s\n  query_timeout: 1s\n"));
    assert_eq!(config.agent.interval, Duration::from_secs(5));
}

#[test]
fn heartbeat_table_is_db_dot_table() {
    for bad in ["heartbeat", "a.b.c", ".t", "d.", "my-db.t", "d.t;drop"] {
        assert_error(
            &with(CLUSTER_END, &format!("    heartbeat_table: \"{bad}\"")),
            9,
            22,
            "`heartbeat_table` must be `database.table`",
        );
    }
}

#[test]
fn vip_rules() {
    let vip = |v: &str| {
        with(
            CLUSTER_END,
            &format!("    vip: {{ address: {v}, interface: eth0 }}"),
        )
    };
    for bad in [
        "10.0.0.1",
        "10.0.0.1/0",
        "10.0.0.1/33",
        "10.0.0/24",
        "fd00::1/64",
    ] {
        assert_error(
            &vip(&format!("\"{bad}\"")),
            9,
            21,
            "vip `address` must be an IPv4 address with a prefix length",
        );
    }
    assert_error(
        &with(CLUSTER_END, "    vip: { address: 10.0.0.1/24 }"),
        9,
        10,
        "`vip` is missing required key `interface`",
    );
    assert_error(
        &with(
            CLUSTER_END,
            "    vip: { address: 10.0.0.1/24, interface: \"\" }",
        ),
        9,
        45,
        "`interface` must not be empty",
    );
    assert_error(
        &with(
            CLUSTER_END,
            "    vip: { address: 10.0.0.1/24, interface: \"eth 0\" }",
        ),
        9,
        45,
        "not a network interface name",
    );
    assert_error(
        &with(CLUSTER_END, "    vip: { interface: eth0 }"),
        9,
        10,
        "`vip` is missing required key `address`",
    );
}

#[test]
fn hook_commands_must_not_be_empty() {
    assert_error(
        &with(CLUSTER_END, "    hooks:\n      post_failover: \"\""),
        10,
        22,
        "`post_failover` must not be empty",
    );
}

#[test]
fn candidate_master_and_no_master_conflict() {
    let yaml = with(HOST1_END, "    candidate_master: true\n    no_master: true");
    assert_error(
        &yaml,
        14,
        16,
        "host `db1` sets both `candidate_master` and `no_master`",
    );
}

#[test]
fn manager_url_rules() {
    assert_error(
        &with(MANAGER_END, "  url: https://x:7070"),
        3,
        8,
        "`url` must start with `http://`",
    );
    assert_error(
        &with(MANAGER_END, "  listen: 0.0.0.0:7070"),
        3,
        11,
        "`url` is required when `listen` is an unspecified address (0.0.0.0)",
    );
    let config = ok(&with(
        MANAGER_END,
        "  listen: 0.0.0.0:7070\n  url: http://10.0.0.5:7070",
    ));
    assert_eq!(config.manager.url, "http://10.0.0.5:7070");
    let config = ok(&with(MANAGER_END, "  listen: 10.0.0.5:7000"));
    assert_eq!(config.manager.url, "http://10.0.0.5:7000");
}

#[test]
fn relative_state_dir_resolves_against_config_dir() {
    let yaml = with(MANAGER_END, "  state_dir: state");
    let config = load_str(&yaml, Path::new("/etc/myha/myha.yaml"), &env).unwrap();
    assert_eq!(config.manager.state_dir, Path::new("/etc/myha/state"));
}

// ---- collecting everything ----------------------------------------------

#[test]
fn all_problems_are_reported_at_once_in_file_order() {
    let yaml = "\
manager:
  listen: 0.0.0.0:7070
  token_env: NOT_SET
clusters:
  - name: shop
    user: myha
    replication_user: repl
    replication_password_env: REPL_PW
    password_env: DB_PW
    password_file: x.pw
    heartbeat_table: nodot
    max_lag: 0s
  - name: empty
    user: u
    password_env: DB_PW
    replication_user: r
    replication_password_env: REPL_PW
hosts:
  - name: db1
    cluster: shop
    address: 10.0.0.1
    port: 0
  - name: db1
    cluster: nowhere
    address: 10.0.0.2
    candidate_master: true
    no_master: true
";
    let errs = errors(yaml);
    let positions: Vec<(u32, u32)> = errs.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        positions,
        [
            (2, 11),
            (3, 14),
            (10, 20),
            (11, 22),
            (12, 14),
            (13, 11),
            (19, 5),
            (22, 11),
            (23, 5),
            (23, 11),
            (24, 14),
            (27, 16),
        ],
        "{}",
        ConfigErrors(errs.clone())
    );
    assert_has(&errs, 13, 11, "cluster `empty` has no hosts");
    assert_has(&errs, 24, 14, "defined clusters: shop, empty");
}

// ---- error formatting and loading from disk --------------------------------

#[test]
fn error_display_format() {
    let located = ConfigError::new(Path::new("/etc/myha.yaml"), 3, 7, "bad");
    assert_eq!(located.to_string(), "/etc/myha.yaml:3:7: bad");
    let whole = ConfigError::whole_file(Path::new("/etc/myha.yaml"), "cannot read");
    assert_eq!(whole.to_string(), "/etc/myha.yaml: cannot read");
    let all = ConfigErrors(vec![located, whole]);
    assert_eq!(
        all.to_string(),
        "/etc/myha.yaml:3:7: bad\n/etc/myha.yaml: cannot read"
    );
    let _: &dyn std::error::Error = &all;
}

#[test]
fn load_reports_unreadable_file() {
    let dir = TempDir::new("unreadable");
    let path = dir.0.join("absent.yaml");
    let errs = crate::load(&path).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.0[0].line, 0);
    assert!(errs
        .to_string()
        .contains("absent.yaml: cannot read configuration file"));
}

#[test]
fn load_reads_file_and_resolves_secret_files() {
    let dir = TempDir::new("load");
    dir.write("pw/admin", "file-secret\n");
    dir.write("pw/repl", "file-secret-2\n");
    dir.write("pw/token", "file-secret-3\n");
    let yaml = BASE
        .replace("token_env: MYHA_TOKEN", "token_file: pw/token")
        .replace("password_env: DB_PW", "password_file: pw/admin")
        .replace(
            "replication_password_env: REPL_PW",
            "replication_password_file: pw/repl",
        );
    let path = dir.write("myha.yaml", &yaml);
    let config = crate::load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(
        config.clusters[0].replication.password.expose(),
        "file-secret-2"
    );
}

#[test]
fn docs_mention_every_key() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    let keys: Vec<&str> = include_str!("raw.rs")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub "))
        .filter_map(|field| field.split_once(':').map(|(name, _)| name))
        .filter(|name| !name.contains(' '))
        .collect();
    assert!(keys.len() > 40, "parsed only {keys:?}");
    for key in keys {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/config.md does not document `{key}`"
        );
    }
}

// ---- identities, secrets, bounds (security) ----------------------------

fn load_file(path: &Path, role: &crate::Role) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).unwrap();
    crate::load_str_as(&text, path, &env, role)
}

fn load_as(yaml: &str, role: &crate::Role) -> Result<Config, ConfigErrors> {
    crate::load_str_as(yaml, Path::new("myha.yaml"), &env, role)
}

#[test]
fn each_role_resolves_only_its_secrets() {
    let yaml = format!("{BASE}cli:\n  token_env: CLI_TOKEN\n").replace(
        "address: 10.0.0.11\n",
        "address: 10.0.0.11\n    token_env: DB1_TOKEN\n",
    );
    let env = |name: &str| match name {
        "CLI_TOKEN" => Some("cli-tok".to_owned()),
        "DB1_TOKEN" => Some("db1-tok".to_owned()),
        other => env(other),
    };
    let load =
        |role: crate::Role| crate::load_str_as(&yaml, Path::new("myha.yaml"), &env, &role).unwrap();
    let m = load(crate::Role::Manager);
    assert_eq!(m.token.expose(), TOKEN);
    assert_eq!(m.clusters[0].admin.password.expose(), DB_PASSWORD);
    assert_eq!(m.clusters[0].replication.password.expose(), REPL_PASSWORD);

    let a = load(crate::Role::Agent("db1".into()));
    assert_eq!(a.token.expose(), "db1-tok");
    assert_eq!(a.clusters[0].admin.password.expose(), DB_PASSWORD);
    assert!(!a.clusters[0].replication.password.is_loaded());

    let c = load(crate::Role::Cli { database: false });
    assert_eq!(c.token.expose(), "cli-tok");
    assert!(!c.clusters[0].admin.password.is_loaded());
    assert!(!c.clusters[0].replication.password.is_loaded());

    let check = load(crate::Role::Cli { database: true });
    assert_eq!(check.clusters[0].admin.password.expose(), DB_PASSWORD);

    // db2 has no token of its own: the `agent:` default (a path each host
    // holds its own token at) is its.
    let db2 = load(crate::Role::Agent("db2".into()));
    assert_eq!(db2.token.expose(), "agent-tok");
}

#[test]
fn a_router_needs_no_database_password() {
    // No password reference at all: the router does not care, the manager does.
    let yaml = BASE
        .to_string()
        .replace(
            "    password_env: DB_PW\n",
            "    password_file: /nonexistent/pw\n",
        )
        .replace(
            "    replication_password_env: REPL_PW\n",
            "    replication_password_env: REPL_PW\n    router: { token_env: ROUTER_TOKEN }\n",
        );
    let env = |name: &str| (name == "ROUTER_TOKEN").then(|| "r-tok".to_owned());
    let r = crate::load_str_as(
        &yaml,
        Path::new("myha.yaml"),
        &env,
        &crate::Role::Router("shop".into()),
    )
    .unwrap();
    assert_eq!(r.token.expose(), "r-tok");
    assert!(load_as(&yaml, &crate::Role::Manager).is_err());
}

#[test]
fn credentials_are_hashes_bound_to_hosts() {
    let config = ok(BASE);
    assert_eq!(config.manager.token_sha256, crate::TokenHash([0xaa; 32]));
    assert_eq!(
        config.clusters[0].hosts[1].token_sha256,
        crate::TokenHash([0xcc; 32])
    );
    let t = crate::TokenHash::of("hello");
    assert!(t.matches("hello") && !t.matches("hellp"));
    assert_eq!(
        t.to_hex(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );

    // A host without an agent credential; a credential for no host; a token
    // pasted where its hash belongs (not echoed).
    let yaml = BASE
        .replace(
            &format!(
                "  - {{ name: db2, role: agent, host: db2, token_sha256: {} }}\n",
                "c".repeat(64)
            ),
            "",
        )
        .replace(AGENT, "")
        + "  - { name: x, role: agent, host: db9, token_sha256: hunter2 }\n";
    let errs = load(&yaml).unwrap_err().to_string();
    assert!(
        errs.contains("no agent credential for host(s) db2"),
        "{errs}"
    );
    assert!(
        errs.contains("`token_sha256` must be 64 hexadecimal digits"),
        "{errs}"
    );
    assert!(!errs.contains("hunter2"), "{errs}");
    // Two managers; a host with two credentials; role agent without host.
    let yaml = format!(
        "{}  - {{ name: m2, role: manager, token_sha256: {d} }}\n  - {{ name: y, role: agent, host: db1, token_sha256: {e} }}\n  - {{ name: z, role: agent, token_sha256: {f} }}\n{AGENT}",
        BASE.strip_suffix(AGENT).unwrap(),
        d = "d".repeat(64),
        e = "e".repeat(64),
        f = "f".repeat(64)
    );
    let errs = load(&yaml).unwrap_err().to_string();
    // Two managers, two credentials for db1: allowed (a rotation).
    assert!(!errs.contains("role `manager`"), "{errs}");
    assert!(!errs.contains("db1"), "{errs}");
    assert!(errs.contains("role `agent` but no `host`"), "{errs}");
}

#[test]
fn absurd_durations_are_refused_with_their_location() {
    for (key, section, value) in [
        ("interval", "agent", "500000000000y"),
        ("probe_interval", "manager", "100y"),
        ("report_timeout", "agent", "1ns"),
        ("connect_timeout", "manager", "1ns"),
    ] {
        let yaml = if section == "manager" {
            with(MANAGER_END, &format!("  {key}: {value}"))
        } else {
            format!("{BASE}  {key}: {value}\n")
        };
        let errs = load(&yaml).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{key}: {errs}");
        let message = &errs.0[0].message;
        assert!(
            message.contains(&format!("`{key}` {value} is too")),
            "{message}"
        );
    }
    for key in [
        "master_down_after",
        "semi_sync_degrade_after",
        "max_lag",
        "failover_block_period",
    ] {
        let errs = load(&with(CLUSTER_END, &format!("    {key}: 500000000000y"))).unwrap_err();
        assert_eq!(
            (errs.0[0].line, errs.0[0].column),
            (9, 7 + key.len() as u32),
            "{errs}"
        );
        assert!(errs.0[0].message.contains("is too long"), "{errs}");
    }
    let errs = load(&with(
        CLUSTER_END,
        "    router: { writer_hold_timeout: 500000000000y, handshake_timeout: 1ns }",
    ))
    .unwrap_err();
    assert_eq!(errs.0.len(), 2, "{errs}");
}

#[test]
fn secret_files_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("perm");
    let token = dir.write("token", "t0k\n");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let yaml = replace("token_env: MYHA_TOKEN", "token_file: token");
    let path = dir.write("myha.yaml", &yaml);
    let errs = load_file(&path, &crate::Role::Manager)
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("is accessible to group or others (mode 0640)"),
        "{errs}"
    );
    assert!(errs.contains(":2:15:"), "{errs}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        load_file(&path, &crate::Role::Manager)
            .unwrap()
            .token
            .expose(),
        "t0k"
    );
}

#[test]
fn tls_makes_urls_https_and_needs_a_certificate_to_serve() {
    let dir = TempDir::new("tls");
    dir.write("ca.pem", "x");
    dir.write("cert.pem", "x");
    dir.write("key.pem", "x");
    let yaml =
        format!("{BASE}tls: {{ ca_file: ca.pem, cert_file: cert.pem, key_file: key.pem }}\n");
    let path = dir.write("myha.yaml", &yaml);
    let config = load_file(&path, &crate::Role::Manager).unwrap();
    assert_eq!(config.manager.url, "https://127.0.0.1:7070");
    assert_eq!(
        config.clusters[0].hosts[0].agent_url(),
        "https://10.0.0.11:7071"
    );
    // http:// with TLS is refused.
    let yaml2 = with(MANAGER_END, "  url: http://10.0.0.1:7070")
        + "tls: { ca_file: ca.pem, cert_file: cert.pem, key_file: key.pem }\n";
    let path2 = dir.write("b.yaml", &yaml2);
    let errs = load_file(&path2, &crate::Role::Manager)
        .unwrap_err()
        .to_string();
    assert!(errs.contains("must start with `https://`"), "{errs}");
    // The manager without a certificate cannot serve; the CLI can go without.
    let yaml3 = format!("{BASE}tls: {{ ca_file: ca.pem }}\n");
    let path3 = dir.write("c.yaml", &yaml3);
    assert!(load_file(&path3, &crate::Role::Manager)
        .unwrap_err()
        .to_string()
        .contains("missing `cert_file`"));
    let cli = yaml3 + "cli: { token_env: MYHA_TOKEN }\n";
    let path4 = dir.write("d.yaml", &cli);
    load_file(&path4, &crate::Role::Cli { database: false }).unwrap();
}

#[test]
fn timings_are_derived_in_one_place_and_their_rules_checked_with_a_location() {
    let config = ok(BASE);
    let t = config.timings(&config.clusters[0]);
    assert_eq!(t.agent_stale_after, Duration::from_secs(1));
    assert_eq!(
        t.probe_stale_after,
        t.probe_interval * 3 + t.probe_query_timeout
    );
    assert_eq!(t.self_fence_after, config.clusters[0].self_fence_after());
    assert!(t.problems().is_empty(), "{:?}", t.problems());

    // A dead master on the evidence of less than two probes (500ms each
    // by default).
    assert_error(
        &with(CLUSTER_END, "    master_down_after: 600ms"),
        9,
        24,
        "`master_down_after` (600ms) must be at least twice `manager.probe_interval` (500ms)",
    );
    // Semi-sync degraded before an isolated master has fenced itself.
    assert_error(
        &with(CLUSTER_END, "    semi_sync_degrade_after: 2s"),
        9,
        30,
        "`semi_sync_degrade_after` (2s) must be longer than the time a failover may wait",
    );
}

#[test]
fn coordination_on_etcd_loads_with_its_defaults() {
    let c = ok(&with(
        MANAGER_END,
        "  urls: [http://10.0.0.1:7070, http://10.0.0.2:7070/]\n  coordination:\n    etcd:\n      endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]\n",
    ));
    assert_eq!(
        c.manager.urls,
        vec!["http://10.0.0.1:7070", "http://10.0.0.2:7070"]
    );
    let crate::Coordination::Etcd(etcd) = &c.manager.coordination else {
        panic!("{:?}", c.manager.coordination)
    };
    assert_eq!(etcd.prefix, "/myha");
    assert_eq!(etcd.lease_ttl, Duration::from_secs(5));
    assert_eq!(etcd.stop_margin(), Duration::from_secs(5) / 3);
    assert!(etcd.request_timeout < etcd.lease_ttl / 3);
    // Without coordination: one manager, `urls` is its `url`.
    let one = ok(BASE);
    assert_eq!(one.manager.urls, vec![one.manager.url.clone()]);
    assert_eq!(one.manager.coordination, crate::Coordination::Embedded);
}

#[test]
fn coordination_mistakes_are_located() {
    // Several managers without a way to agree.
    assert_error(
        &with(MANAGER_END, "  urls: [http://a:7070, http://b:7070]"),
        3,
        9,
        "need",
    );
    // An endpoint that is not a URL.
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [10.0.0.1:2379]",
        ),
        5,
        19,
        "etcd endpoint `10.0.0.1:2379`",
    );
    // A lease that is not whole seconds, a request bound too long for it.
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [http://e:2379]\n      lease_ttl: 2500ms",
        ),
        6,
        18,
        "whole number of seconds",
    );
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [http://e:2379]\n      lease_ttl: 3s\n      request_timeout: 1s",
        ),
        6,
        18,
        "under a third",
    );
    assert_error(
        &with(MANAGER_END, "  coordination: {}"),
        3,
        17,
        "names no service",
    );
    // https without a CA; a CA with an http endpoint; a certificate
    // without its key; a CA file that is not there.
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [https://e:2379]",
        ),
        5,
        7,
        "need `tls: { ca_file",
    );
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [http://e:2379]\n      tls: { ca_file: /etc/hostname }",
        ),
        6,
        12,
        "every etcd endpoint must be `https://",
    );
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [https://e:2379]\n      tls: { ca_file: /etc/hostname, cert_file: /etc/hostname }",
        ),
        6,
        12,
        "both `cert_file` and `key_file`",
    );
    assert_error(
        &with(
            MANAGER_END,
            "  coordination:\n    etcd:\n      endpoints: [https://e:2379]\n      tls: { ca_file: /nonexistent/ca.pem }",
        ),
        6,
        23,
        "cannot read `ca_file`",
    );
}
