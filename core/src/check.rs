//! `myha check`: the cluster's readiness for failover, as a pure function
//! of facts gathered from every server. Each failed check is one finding
//! naming the server and the fix.
use serde::{Deserialize, Serialize};

use crate::flavor::{Flavor, GtidMode, ReplicationFilters, ThreadState};
use crate::report::ServerFacts;
use crate::topology::{role_of, Role};

/// What `check` knows of one configured server.
#[derive(Debug, Clone)]
pub struct CheckServer {
    pub name: String,
    /// `host:port` as configured.
    pub address: String,
    /// Other spellings of the address a replica may use for it (IP, name).
    pub aliases: Vec<String>,
    pub no_master: bool,
    /// `Err` holds why it could not be read.
    pub facts: Result<ServerFacts, String>,
    /// Grants of the replication user on this server; `None` when the user
    /// does not exist there.
    pub replication_grants: Option<Vec<String>>,
    /// Server clock minus the checker's clock, RTT-corrected, milliseconds.
    pub clock_offset_ms: Option<i64>,
    /// `@@slave_net_timeout` (MySQL 8: `replica_net_timeout`), seconds.
    pub slave_net_timeout_s: Option<i64>,
    /// `SHOW GRANTS` of myha's own (admin) account on this server.
    pub admin_grants: Option<Vec<String>>,
    /// Logging in as the replication user with the configured password:
    /// `Err` says why it failed; `None` when not tried.
    pub replication_login: Option<Result<(), String>>,
    /// What this host's agent says, when it was asked.
    pub agent: Option<AgentCheck>,
}

/// The agent of a host as `check` sees it.
#[derive(Debug, Clone)]
pub struct AgentCheck {
    /// `Err`: why the agent did not answer (`/v1/health`).
    pub reachable: Result<(), String>,
    pub version: Option<String>,
    /// The cluster's VIP interface exists on the host (`None`: no VIP).
    pub vip_interface: Option<bool>,
    /// `arping` is installed (for gratuitous ARP after a VIP move).
    pub arping: Option<bool>,
    /// Age of this agent's last report at the manager (`None`: the manager
    /// was not asked or has none).
    pub report_age_ms: Option<u64>,
}

/// A configured hook: its name, path, and whether it can be run here.
#[derive(Debug, Clone)]
pub struct HookCheck {
    pub name: String,
    pub path: String,
    /// `Err`: why it cannot run (missing, not executable).
    pub runnable: Result<(), String>,
}

#[derive(Debug, Clone)]
pub struct CheckInput {
    pub cluster: String,
    pub flavor: Flavor,
    pub replication_user: String,
    pub max_clock_skew_ms: i64,
    pub servers: Vec<CheckServer>,
    /// A router relays this cluster's clients (`router:` is configured).
    pub behind_router: bool,
    /// What the manager says, when it answers: server -> why it was not
    /// rejoined; and why semi-sync was degraded, if it was.
    pub manager: Option<ManagerView>,
    /// This `myha`'s version: every agent must run the same.
    pub version: String,
    /// The cluster's VIP interface, when a VIP is configured.
    pub vip_interface: Option<String>,
    /// The cluster's hooks.
    pub hooks: Vec<HookCheck>,
    /// `manager.listen` and whether any host is remote (not loopback).
    pub manager_listen: Option<(String, bool)>,
}

/// Freshness an agent's report must have at the manager (it reports
/// several times a second).
const REPORT_FRESH_MS: u64 = 5_000;
/// Above this, a replica notices a silent master too late (its IO thread
/// is what the manager asks the replicas about).
const MAX_SLAVE_NET_TIMEOUT_S: i64 = 60;

/// The global privileges myha's own account needs, by flavor (MariaDB
/// 10.11 names; MySQL 8 dynamic privileges), for what failover and
/// switchover run: read status, kill sessions, set read_only, repoint,
/// semi-sync.
fn admin_privileges(flavor: Flavor) -> &'static [&'static [&'static str]] {
    // Each entry: the privilege and the names that grant it too.
    match flavor {
        Flavor::Mariadb => &[
            &["PROCESS"],
            &["CONNECTION ADMIN", "SUPER"],
            &["READ_ONLY ADMIN"],
            &["SLAVE MONITOR", "REPLICA MONITOR", "SUPER"],
            &["REPLICATION SLAVE ADMIN", "SUPER"],
            &["REPLICATION MASTER ADMIN", "SUPER"],
        ],
        Flavor::Mysql => &[
            &["PROCESS"],
            &["CONNECTION_ADMIN", "SUPER"],
            &["SYSTEM_VARIABLES_ADMIN", "SUPER"],
            &["REPLICATION_SLAVE_ADMIN", "SUPER"],
            &["REPLICATION CLIENT"],
        ],
    }
}

/// The privileges `grants` (`SHOW GRANTS` lines) lack among those myha's
/// account needs on `*.*` (pure). `ALL PRIVILEGES ON *.*` has them all.
pub fn missing_admin_privileges(flavor: Flavor, grants: &[String]) -> Vec<String> {
    let mut global: Vec<String> = Vec::new();
    for line in grants {
        let upper = line.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, target)) = rest.split_once(" ON ") else {
            continue;
        };
        if target.trim_start().starts_with("*.*") {
            global.extend(privs.split(',').map(|p| p.trim().to_string()));
        }
    }
    if global.iter().any(|p| p == "ALL PRIVILEGES" || p == "ALL") {
        return Vec::new();
    }
    admin_privileges(flavor)
        .iter()
        .filter(|names| !names.iter().any(|n| global.iter().any(|g| g == n)))
        .map(|names| names[0].to_string())
        .collect()
}

/// The checks of what runs beside the servers: the admin account's
/// privileges, the replication login, `slave_net_timeout`, every agent
/// (reachable, same version, VIP interface, arping, reporting to the
/// manager), the hooks, and `manager.listen` against remote hosts.
fn operational_checks(out: &mut Out, input: &CheckInput) {
    for s in &input.servers {
        let name = Some(s.name.as_str());
        if let Some(grants) = &s.admin_grants {
            let missing = missing_admin_privileges(input.flavor, grants);
            if missing.is_empty() {
                out.ok(
                    "admin_privileges",
                    name,
                    "myha's account has the privileges failover needs".into(),
                );
            } else {
                out.fail(
                    "admin_privileges",
                    name,
                    format!("myha's account lacks {} on *.*: fencing, promotion or repointing would fail with ERROR 1227", missing.join(", ")),
                    format!("GRANT {} ON *.* TO the account myha uses (docs/deploy.md lists every grant)", missing.join(", ")),
                );
            }
        }
        match &s.replication_login {
            Some(Ok(())) => out.ok("replication_login", name, format!("{} logs in with the configured password", input.replication_user)),
            Some(Err(e)) => out.fail(
                "replication_login",
                name,
                format!("the replication user {} cannot log in with the configured password: {e}: replicas repointed to this server after a failover would not connect", input.replication_user),
                "set the account's password to the configured one (with sql_log_bin=0 on each server), and allow it from every DB host and from where `myha check` runs".into(),
            ),
            None => {}
        }
        match s.slave_net_timeout_s {
            Some(t) if t > MAX_SLAVE_NET_TIMEOUT_S => out.fail(
                "slave_net_timeout",
                name,
                format!("slave_net_timeout is {t} s: a replica notices a silent master (frozen, cut off) only that late, and a failover waits for the replicas' word"),
                format!("slave_net_timeout = {MAX_SLAVE_NET_TIMEOUT_S} (or less) in my.cnf of every server, and SET GLOBAL slave_net_timeout = {MAX_SLAVE_NET_TIMEOUT_S}"),
            ),
            Some(t) => out.ok("slave_net_timeout", name, format!("slave_net_timeout is {t} s")),
            None => {}
        }
        let Some(a) = &s.agent else { continue };
        match &a.reachable {
            Err(e) => {
                out.fail(
                    "agent",
                    name,
                    format!("the agent does not answer: {e}"),
                    "start the agent (systemctl start myha-agent@HOST) and open its port to the manager".into(),
                );
                continue;
            }
            Ok(()) => out.ok("agent", name, "the agent answers".into()),
        }
        match &a.version {
            Some(v) if *v == input.version => {}
            Some(v) => out.fail(
                "agent_version",
                name,
                format!("the agent runs myha {v}, this myha is {}", input.version),
                "upgrade every host to the same myha version (docs/deploy.md: agents first, one host at a time)".into(),
            ),
            None => out.fail(
                "agent_version",
                name,
                "the agent does not say its version (older than this myha)".into(),
                "upgrade the agent".into(),
            ),
        }
        if let (Some(iface), Some(present)) = (&input.vip_interface, a.vip_interface) {
            if present {
                out.ok(
                    "vip_interface",
                    name,
                    format!("interface {iface} is present"),
                );
            } else {
                out.fail(
                    "vip_interface",
                    name,
                    format!("the VIP's interface {iface} does not exist on this host: the VIP cannot move here"),
                    "fix `vip.interface` or the host's network configuration".into(),
                );
            }
        }
        if input.vip_interface.is_some() {
            match a.arping {
                Some(false) => out.fail(
                    "arping",
                    name,
                    "arping is not installed: after a VIP move, clients and the gateway keep the old MAC until their ARP entries expire".into(),
                    "apt-get install arping".into(),
                ),
                Some(true) => out.ok("arping", name, "arping is installed".into()),
                None => {}
            }
        }
        if input.manager.is_some() {
            match a.report_age_ms {
                Some(age) if age <= REPORT_FRESH_MS => {}
                other => out.fail(
                    "manager_reachable",
                    name,
                    match other {
                        Some(age) => format!("the agent answers, but its last report reached the manager {age} ms ago"),
                        None => "the agent answers, but the manager has no report from it".into(),
                    },
                    "the agent must reach `manager.urls` (manager.listen must not be a loopback address when agents are remote; open the port)".into(),
                ),
            }
        }
    }
    for h in &input.hooks {
        match &h.runnable {
            Ok(()) => out.ok(
                "hooks",
                None,
                format!("{} ({}) is executable", h.name, h.path),
            ),
            Err(e) => out.fail(
                "hooks",
                None,
                format!("hook {} ({}) cannot run: {e}", h.name, h.path),
                "install the script on the manager's host, executable by the user myha runs as"
                    .into(),
            ),
        }
    }
    if let Some((listen, remote)) = &input.manager_listen {
        let loopback = listen.starts_with("127.")
            || listen.starts_with("[::1]")
            || listen.starts_with("localhost");
        if loopback && *remote {
            out.fail(
                "manager_listen",
                None,
                format!("manager.listen is {listen}, a loopback address, but the agents run on other hosts: they cannot report, and a master fences itself when it cannot reach the manager"),
                "listen on an address the agents reach (e.g. 0.0.0.0:7070 with `url:` set)".into(),
            );
        } else {
            out.ok(
                "manager_listen",
                None,
                format!("manager.listen {listen} is reachable from the hosts' side"),
            );
        }
    }
}

/// The manager's view `check` adds to what it reads from the servers.
#[derive(Debug, Clone, Default)]
pub struct ManagerView {
    pub rejoin_refused: std::collections::BTreeMap<String, String>,
    pub semi_sync_degraded: Option<String>,
    /// Why no manager can fail over now (coordination unavailable, no
    /// leader), if so.
    pub failover_blocked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Short identifier of the check, e.g. `read_only`.
    pub check: String,
    pub server: Option<String>,
    pub ok: bool,
    pub message: String,
    /// How to fix it, for failures.
    pub fix: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{status} [{}] ", self.check)?;
        if let Some(s) = &self.server {
            write!(f, "{s}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " -- fix: {fix}")?;
        }
        Ok(())
    }
}

struct Out(Vec<Finding>);

impl Out {
    fn ok(&mut self, check: &str, server: Option<&str>, message: String) {
        self.0.push(Finding {
            check: check.into(),
            server: server.map(str::to_string),
            ok: true,
            message,
            fix: None,
        });
    }
    fn fail(&mut self, check: &str, server: Option<&str>, message: String, fix: String) {
        self.0.push(Finding {
            check: check.into(),
            server: server.map(str::to_string),
            ok: false,
            message,
            fix: Some(fix),
        });
    }
}

/// Whether `SHOW GRANTS` lines give the right to replicate: a global
/// grant of `REPLICATION SLAVE` (MySQL 8 also prints `REPLICATION REPLICA`
/// nowhere, but MariaDB accepts it as a synonym) or `ALL PRIVILEGES`.
fn has_replication_grant(grants: &[String]) -> bool {
    grants.iter().any(|line| {
        let upper = line.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            return false;
        };
        let Some((privs, target)) = rest.split_once(" ON ") else {
            return false;
        };
        target.trim_start().starts_with("*.*")
            && privs.split(',').map(str::trim).any(|p| {
                p == "REPLICATION SLAVE" || p == "REPLICATION REPLICA" || p == "ALL PRIVILEGES"
            })
    })
}

/// Behind a router every client reaches the servers from the router's
/// address: with name resolution on, connections aborted before they
/// authenticate (a flood, a handshake timeout) count against it
/// (`max_connect_errors`) and get it blocked for every client.
fn name_resolve_checks(out: &mut Out, input: &CheckInput) {
    if !input.behind_router {
        return;
    }
    for s in &input.servers {
        let Ok(f) = &s.facts else { continue };
        match f.skip_name_resolve {
            Some(false) => out.fail(
                "skip_name_resolve",
                Some(&s.name),
                "skip_name_resolve is OFF behind a router: connections the router aborts before they log in count as connect errors against the router's address, and after max_connect_errors every client through the router is refused (\"Host is blocked\")".into(),
                "skip_name_resolve = ON in my.cnf of every server (restart), with grants by IP address".into(),
            ),
            Some(true) => out.ok(
                "skip_name_resolve",
                Some(&s.name),
                "skip_name_resolve is ON: the router's address cannot be blocked by aborted connections".into(),
            ),
            None => {}
        }
    }
}

fn semi_sync_checks(
    out: &mut Out,
    input: &CheckInput,
    master: Option<(&CheckServer, &ServerFacts)>,
) {
    let degraded = input
        .manager
        .as_ref()
        .and_then(|m| m.semi_sync_degraded.clone());
    if let Some((m, f)) = master {
        if !f.semi_sync_master {
            match &degraded {
                Some(why) => out.fail(
                    "semi_sync",
                    Some(&m.name),
                    format!("semi-sync degraded to asynchronous by the manager: {why}"),
                    "bring a replica back: the manager restores semi-sync as soon as one replicates".into(),
                ),
                None => out.fail(
                    "semi_sync",
                    Some(&m.name),
                    "the master does not wait for a replica's acknowledgement (rpl_semi_sync_master_enabled=OFF): a commit it acknowledges just before it dies, freezes or is cut off can be lost".into(),
                    "SET GLOBAL rpl_semi_sync_master_enabled=ON on the master (myha keeps it on across failovers)".into(),
                ),
            }
        } else {
            match f.semi_sync_timeout_ms {
                Some(t) if t < crate::report::SEMI_SYNC_MIN_TIMEOUT_MS => out.fail(
                    "semi_sync_timeout",
                    Some(&m.name),
                    format!("rpl_semi_sync_master_timeout is {t} ms: after it, a master that is frozen or cut off acknowledges commits no replica has (the manager removes the timer from a master it reads)"),
                    format!("rpl_semi_sync_master_timeout = {} in my.cnf of every server", crate::report::SEMI_SYNC_NO_FALLBACK_MS),
                ),
                _ => out.ok(
                    "semi_sync",
                    Some(&m.name),
                    "semi-sync on, no fallback timer".into(),
                ),
            }
        }
    }
    for s in &input.servers {
        let Ok(f) = &s.facts else { continue };
        if master.is_some_and(|(m, _)| m.name == s.name) {
            continue;
        }
        if f.semi_sync_slave {
            out.ok(
                "semi_sync_replica",
                Some(&s.name),
                "acknowledges as a semi-sync replica".into(),
            );
        } else {
            out.fail(
                "semi_sync_replica",
                Some(&s.name),
                "rpl_semi_sync_slave_enabled=OFF: it never acknowledges, so the master's commits cannot count on it".into(),
                "rpl_semi_sync_slave_enabled = ON in my.cnf of every server".into(),
            );
        }
    }
}

/// Run every check; the result lists passed and failed findings in a
/// stable order (by check, then by configured server order).
pub fn check(input: &CheckInput) -> Vec<Finding> {
    let mut out = Out(Vec::new());
    if let Some(m) = &input.manager {
        match &m.failover_blocked {
            Some(why) => out.fail(
                "coordination",
                None,
                why.clone(),
                "bring etcd back (a quorum of its members), or start a manager: traffic is untouched meanwhile, but a dead master stays dead".into(),
            ),
            None => out.ok("coordination", None, "a manager leads and may fail over".into()),
        }
    }
    let up: Vec<(&CheckServer, &ServerFacts)> = input
        .servers
        .iter()
        .filter_map(|s| s.facts.as_ref().ok().map(|f| (s, f)))
        .collect();

    // Reachability.
    for s in &input.servers {
        match &s.facts {
            Ok(_) => out.ok(
                "reachable",
                Some(&s.name),
                format!("connected to {}", s.address),
            ),
            Err(e) => out.fail(
                "reachable",
                Some(&s.name),
                format!("cannot read {}: {e}", s.address),
                "start mysqld, check the network path and the admin credentials in the config"
                    .into(),
            ),
        }
    }

    // Exactly one writable master.
    let masters: Vec<&(&CheckServer, &ServerFacts)> = up
        .iter()
        .filter(|(_, f)| role_of(f) == Role::Master)
        .collect();
    let master = match masters.as_slice() {
        [m] => {
            out.ok(
                "one_master",
                Some(&m.0.name),
                "the only writable master".into(),
            );
            Some(**m)
        }
        [] => {
            out.fail(
                "one_master",
                None,
                "no writable server that replicates from nobody".into(),
                "SET GLOBAL read_only=OFF on the intended master and make sure it has no replication configured".into(),
            );
            None
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(s, _)| s.name.as_str()).collect();
            out.fail(
                "one_master",
                None,
                format!("{} writable masters: {}", names.len(), names.join(", ")),
                "keep one master writable; SET GLOBAL read_only=ON on the others and repoint them"
                    .into(),
            );
            None
        }
    };

    // Replicas replicate from the master, with GTID, threads running,
    // read_only ON. With several writable masters, each is already named
    // by `one_master`: none of them is "not the master".
    for (s, f) in &up {
        if master.is_some_and(|(m, _)| m.name == s.name) {
            continue;
        }
        if master.is_none() && role_of(f) == Role::Master {
            continue;
        }
        let Some(r) = f.replication.as_ref().filter(|r| !r.source_host.is_empty()) else {
            out.fail(
                "replicates",
                Some(&s.name),
                "is not the master and replicates from nobody".into(),
                "CHANGE MASTER TO the master with MASTER_USE_GTID=slave_pos; START SLAVE".into(),
            );
            continue;
        };
        let source = format!("{}:{}", r.source_host, r.source_port);
        if let Some((m, mf)) = master {
            let matches = source == m.address
                || m.aliases.contains(&source)
                || r.source_server_id.is_some_and(|id| id == mf.server_id);
            if matches {
                out.ok(
                    "replicates",
                    Some(&s.name),
                    format!("replicates from {}", m.name),
                );
            } else {
                out.fail(
                    "replicates",
                    Some(&s.name),
                    format!(
                        "replicates from {source}, not from the master {} ({})",
                        m.name, m.address
                    ),
                    format!("repoint it to {} with GTID", m.name),
                );
            }
        }
        if r.gtid_mode == GtidMode::None {
            let fix = match input.flavor {
                Flavor::Mariadb => "STOP SLAVE; CHANGE MASTER TO MASTER_USE_GTID=slave_pos; START SLAVE",
                Flavor::Mysql => "STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1; START REPLICA",
            };
            out.fail(
                "gtid",
                Some(&s.name),
                "replicates by binlog file/position, not GTID".into(),
                fix.into(),
            );
        } else {
            out.ok("gtid", Some(&s.name), "replicates with GTID".into());
        }
        if r.io_thread != ThreadState::Running || r.sql_thread != ThreadState::Running {
            let err = f.last_error().unwrap_or_else(|| "no error recorded".into());
            out.fail(
                "threads",
                Some(&s.name),
                format!(
                    "replication threads IO={:?} SQL={:?} ({err})",
                    r.io_thread, r.sql_thread
                ),
                "fix the error shown, then START SLAVE".into(),
            );
        }
        if f.read_only {
            out.ok("read_only", Some(&s.name), "read_only is ON".into());
        } else {
            out.fail(
                "read_only",
                Some(&s.name),
                "read_only is OFF on a replica: writes there become errant transactions".into(),
                "SET GLOBAL read_only=ON (and read_only=ON in its my.cnf)".into(),
            );
        }
    }

    // Binary logs on every promotable server; ROW format everywhere.
    for (s, f) in &up {
        if !s.no_master {
            if f.log_bin && f.log_slave_updates {
                out.ok(
                    "binlog",
                    Some(&s.name),
                    "log_bin and log_slave_updates ON".into(),
                );
            } else {
                let missing: Vec<&str> = [
                    ("log_bin", f.log_bin),
                    ("log_slave_updates", f.log_slave_updates),
                ]
                .iter()
                .filter(|(_, on)| !on)
                .map(|(n, _)| *n)
                .collect();
                out.fail(
                    "binlog",
                    Some(&s.name),
                    format!("{} OFF on a promotable server", missing.join(" and ")),
                    format!(
                        "set {} in its my.cnf and restart, or mark it no_master",
                        missing.join("=ON, ") + "=ON"
                    ),
                );
            }
        }
        if f.binlog_format.eq_ignore_ascii_case("ROW") {
            out.ok("binlog_format", Some(&s.name), "binlog_format ROW".into());
        } else {
            out.fail(
                "binlog_format",
                Some(&s.name),
                format!("binlog_format is {}", f.binlog_format),
                "SET GLOBAL binlog_format=ROW and binlog_format=ROW in my.cnf".into(),
            );
        }
        if !f.gtid_strict {
            let what = match input.flavor {
                Flavor::Mariadb => "gtid_strict_mode is OFF",
                Flavor::Mysql => "gtid_mode is not ON",
            };
            out.fail(
                "gtid_strict",
                Some(&s.name),
                what.into(),
                match input.flavor {
                    Flavor::Mariadb => "SET GLOBAL gtid_strict_mode=ON and in my.cnf".into(),
                    Flavor::Mysql => "enable gtid_mode=ON and enforce_gtid_consistency=ON".into(),
                },
            );
        }
    }

    // Unique server_id.
    for (i, (s, f)) in up.iter().enumerate() {
        if let Some((other, _)) = up[..i].iter().find(|(_, o)| o.server_id == f.server_id) {
            out.fail(
                "server_id",
                Some(&s.name),
                format!("server_id {} is also used by {}", f.server_id, other.name),
                "give every server its own server_id in my.cnf and restart".into(),
            );
        }
    }
    if up.len() > 1 && !out.0.iter().any(|f| f.check == "server_id") {
        out.ok("server_id", None, "server_ids are unique".into());
    }

    // Replication user on every promotable server.
    for (s, _) in up.iter().filter(|(s, _)| !s.no_master) {
        match &s.replication_grants {
            None => out.fail(
                "replication_user",
                Some(&s.name),
                format!(
                    "replication user '{}' does not exist",
                    input.replication_user
                ),
                format!(
                    "CREATE USER '{}'@'%' IDENTIFIED BY ...; GRANT REPLICATION SLAVE ON *.* TO it",
                    input.replication_user
                ),
            ),
            Some(g) if !has_replication_grant(g) => out.fail(
                "replication_user",
                Some(&s.name),
                format!(
                    "replication user '{}' lacks REPLICATION SLAVE",
                    input.replication_user
                ),
                format!(
                    "GRANT REPLICATION SLAVE ON *.* TO '{}'@'%'",
                    input.replication_user
                ),
            ),
            Some(_) => out.ok(
                "replication_user",
                Some(&s.name),
                format!(
                    "replication user '{}' present with grants",
                    input.replication_user
                ),
            ),
        }
    }

    // Identical replication filters.
    let filters: Vec<(&str, ReplicationFilters)> = up
        .iter()
        .filter_map(|(s, f)| {
            f.replication
                .as_ref()
                .map(|r| (s.name.as_str(), r.filters.clone()))
        })
        .collect();
    if let Some((first, reference)) = filters.first() {
        for (name, fl) in &filters[1..] {
            if fl != reference {
                out.fail(
                    "filters",
                    Some(name),
                    format!("replication filters differ from {first}'s: {fl:?} vs {reference:?}"),
                    "use the same replicate_* settings on every server".into(),
                );
            }
        }
    }

    // Lossless semi-sync (MariaDB): the master waits for a replica's
    // acknowledgement with no fallback timer, every replica acknowledges.
    if input.flavor == Flavor::Mariadb {
        semi_sync_checks(&mut out, input, master);
    }
    name_resolve_checks(&mut out, input);

    // Servers the manager could not rejoin.
    if let Some(m) = &input.manager {
        for (server, why) in &m.rejoin_refused {
            out.fail(
                "rejoin",
                Some(server),
                format!("not rejoined: {why}"),
                format!("see the reason; `myha rejoin {server}` (with `--force` where the reason says so)"),
            );
        }
    }

    // Clock skew.
    for s in &input.servers {
        if let Some(off) = s.clock_offset_ms {
            if off.abs() > input.max_clock_skew_ms {
                out.fail(
                    "clock",
                    Some(&s.name),
                    format!("clock is {off} ms off the checker's"),
                    "run NTP/chrony on every host".into(),
                );
            }
        }
    }
    operational_checks(&mut out, input);
    out.0
}
