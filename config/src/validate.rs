//! Turning the file-shaped [`RawConfig`] into the public [`Config`]:
//! applying defaults, resolving secrets and checking every rule, collecting
//! all problems (each at the position of the node at fault) instead of
//! stopping at the first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::error::line_column;
use crate::model::{default_url, defaults, Coordination, EtcdConfig};
use crate::raw::{
    RawAccess, RawAgent, RawCli, RawCluster, RawConfig, RawCoordination, RawHooks, RawHost,
    RawManager, RawMysqlTls, RawRelay, RawRouter, RawTls, RawVip, Rejected,
};
use crate::{
    AccessEntry, AgentConfig, ClusterConfig, Config, ConfigError, ConfigErrors, Credentials,
    HooksConfig, HostConfig, ManagerConfig, MysqlTlsConfig, Relay, Role, RouterConfig, Secret,
    TlsConfig, TokenHash, VipConfig,
};

/// Validates a parsed file. `path` is used in messages and to resolve
/// relative `*_file` and `state_dir` paths; `env` looks up `*_env` variables.
pub(crate) fn validate(
    raw: Spanned<RawConfig>,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    role: &Role,
) -> Result<Config, ConfigErrors> {
    let mut validator = Validator {
        file: path,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        env,
        role,
        agent_cluster: None,
        errors: Vec::new(),
    };
    let config = validator.config(raw);
    validator.finish(config)
}

/// A position in the file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    line: u32,
    column: u32,
}

impl At {
    fn of<T>(node: &Spanned<T>) -> Self {
        let (line, column) = line_column(&node.referenced);
        Self { line, column }
    }

    /// Where an optional key's value is, or `parent` if the key is absent
    /// (i.e. a default is in effect).
    fn value_or<T>(node: &Option<Spanned<T>>, parent: At) -> Self {
        node.as_ref().map_or(parent, At::of)
    }
}

/// The three keys through which a secret may (or may not) be given.
struct SecretKeys {
    /// Rejected inline form.
    inline: &'static str,
    env: &'static str,
    file: &'static str,
}

const TOKEN: SecretKeys = SecretKeys {
    inline: "token",
    env: "token_env",
    file: "token_file",
};
const PASSWORD: SecretKeys = SecretKeys {
    inline: "password",
    env: "password_env",
    file: "password_file",
};
const REPLICATION_PASSWORD: SecretKeys = SecretKeys {
    inline: "replication_password",
    env: "replication_password_env",
    file: "replication_password_file",
};

/// A secret as written in the file.
struct RawSecret {
    inline: Rejected,
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
}

/// A cluster or host name that was present and non-empty.
struct Name {
    value: String,
    at: At,
    /// False if an earlier cluster (or host) already has this name.
    first: bool,
}

/// A cluster under construction: hosts are attached after all clusters are known.
struct ClusterDraft {
    config: ClusterConfig,
    name: Option<Name>,
    /// Where each timing rule's key is (its value, or the cluster when a
    /// default is in effect), for [`crate::Timings::problems`].
    master_down_at: At,
    degrade_at: At,
    /// The router's own token, resolved for [`Role::Router`] of this cluster.
    router_token: Secret,
}

struct Validator<'a> {
    file: &'a Path,
    /// Directory of the configuration file, for relative paths.
    dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The process the file is loaded for: which secrets to resolve.
    role: &'a Role,
    /// With [`Role::Agent`]: the cluster of the agent's host.
    agent_cluster: Option<String>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, at: At, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(self.file, at.line, at.column, message));
    }

    fn finish(mut self, config: Config) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(config);
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.errors))
    }

    fn config(&mut self, raw: Spanned<RawConfig>) -> Config {
        let root = At::of(&raw);
        let RawConfig {
            manager,
            agent,
            clusters,
            hosts,
            access,
            tls,
            cli,
        } = raw.value;

        if let Role::Agent(me) = self.role {
            self.agent_cluster = hosts.as_ref().and_then(|list| {
                list.value
                    .iter()
                    .find(|h| h.value.name.as_ref().is_some_and(|n| &n.value == me))
                    .and_then(|h| h.value.cluster.as_ref().map(|c| c.value.clone()))
            });
        }
        let tls = tls.map(|node| self.tls(node));
        // A missing `manager:` is reported as its missing keys, at the root.
        let (manager, manager_token) = match manager {
            Some(node) => self.manager(At::of(&node), node.value, tls.is_some()),
            None => self.manager(root, RawManager::default(), tls.is_some()),
        };
        let (agent, agent_token) = match agent {
            Some(node) => self.agent(node.value),
            None => (
                AgentConfig::default(),
                RawSecret {
                    inline: None,
                    env: None,
                    file: None,
                },
            ),
        };
        let (mut clusters, router_token) = self.clusters(root, clusters);
        for c in &clusters {
            let timings = crate::Timings::of(&manager, &agent, &c.config);
            for (key, why) in timings.problems() {
                let at = match key {
                    crate::TimingKey::MasterDownAfter => c.master_down_at,
                    crate::TimingKey::SemiSyncDegradeAfter => c.degrade_at,
                };
                self.error(at, format!("cluster `{}`: {why}", c.config.name));
            }
        }
        let (host_token, host_names) =
            self.hosts(hosts, &agent, agent_token, tls.is_some(), &mut clusters);
        let mut manager = manager;
        let access_at = access.as_ref().map_or(root, At::of);
        let access = self.access(access);
        self.bind_access(access_at, &access, &host_names, &mut manager, &mut clusters);
        let cli_token = match cli {
            Some(node) => {
                let at = At::of(&node);
                self.cli(at, node.value)
            }
            None => self.cli(root, RawCli::default()),
        };
        let token = match self.role {
            Role::Manager => manager_token,
            Role::Agent(_) => host_token,
            Role::Router(_) => router_token,
            Role::Cli { .. } => cli_token,
        };

        Config {
            path: self.file.to_path_buf(),
            manager,
            agent,
            clusters: clusters.into_iter().map(|c| c.config).collect(),
            access: crate::AccessList::new(access),
            tls,
            role: self.role.clone(),
            token,
        }
    }

    /// Whether this process resolves the database passwords of `cluster`.
    fn wants_db_passwords(&self, cluster: Option<&str>, replication: bool) -> bool {
        match self.role {
            Role::Manager => true,
            Role::Cli { database } => *database,
            Role::Agent(_) => {
                !replication && cluster.is_some() && self.agent_cluster.as_deref() == cluster
            }
            Role::Router(_) => false,
        }
    }

    // ---- sections -------------------------------------------------------

    fn manager(&mut self, at: At, raw: RawManager, tls: bool) -> (ManagerConfig, Secret) {
        let listen_at = At::value_or(&raw.listen, at);
        let listen = self.socket_addr("listen", raw.listen, defaults::MANAGER_LISTEN);
        let url = match raw.url {
            Some(url) => self.url(url, tls),
            None => {
                if listen.ip().is_unspecified() {
                    self.error(
                        listen_at,
                        format!(
                            "`url` is required when `listen` is an unspecified address ({}): \
                             set it to the URL agents use to reach the manager",
                            listen.ip()
                        ),
                    );
                }
                default_url(listen, tls)
            }
        };
        let urls_at = raw.urls.as_ref().map_or(at, At::of);
        let urls = match raw.urls {
            None => vec![url.clone()],
            Some(list) if list.value.is_empty() => {
                self.error(
                    At::of(&list),
                    "`urls` lists no manager: list every manager's URL, or remove the key",
                );
                vec![url.clone()]
            }
            Some(list) => {
                let mut urls: Vec<String> = Vec::new();
                for node in list.value {
                    let at = At::of(&node);
                    let u = self.url(node, tls);
                    if urls.contains(&u) {
                        self.error(at, format!("`urls` lists {u} twice"));
                    } else {
                        urls.push(u);
                    }
                }
                urls
            }
        };
        let coordination = match raw.coordination {
            None => Coordination::Embedded,
            Some(c) => self.coordination(c),
        };
        if urls.len() > 1 && coordination == Coordination::Embedded {
            self.error(
                urls_at,
                format!(
                    "`urls` lists {} managers but `coordination` is not set: several managers need \
                     `coordination: {{ etcd: {{ endpoints: [...] }} }}` to agree on one leader",
                    urls.len()
                ),
            );
        }
        let token = self.secret(
            at,
            "`manager`",
            &TOKEN,
            RawSecret {
                inline: raw.token,
                env: raw.token_env,
                file: raw.token_file,
            },
            *self.role == Role::Manager,
        );
        // Filled in from `access:`.
        let token_sha256 = TokenHash([0; 32]);
        let state_dir = match raw.state_dir {
            Some(dir) => self.dir_path("state_dir", dir),
            None => PathBuf::from(defaults::STATE_DIR),
        };
        let webhooks = match raw.webhooks {
            None => Vec::new(),
            Some(list) => list
                .value
                .into_iter()
                .map(|node| self.webhook(node))
                .collect(),
        };
        let config = ManagerConfig {
            webhooks,
            listen,
            url,
            urls,
            coordination,
            token_sha256,
            state_dir,
            probe_interval: self.duration(
                "probe_interval",
                raw.probe_interval,
                defaults::PROBE_INTERVAL,
            ),
            connect_timeout: self.duration(
                "connect_timeout",
                raw.connect_timeout,
                defaults::MANAGER_CONNECT_TIMEOUT,
            ),
            query_timeout: self.duration(
                "query_timeout",
                raw.query_timeout,
                defaults::MANAGER_QUERY_TIMEOUT,
            ),
        };
        (config, token)
    }

    fn coordination(&mut self, node: Spanned<RawCoordination>) -> Coordination {
        let at = At::of(&node);
        let Some(etcd) = node.value.etcd else {
            self.error(
                at,
                "`coordination` names no service: set `etcd: { endpoints: [...] }` or remove the key",
            );
            return Coordination::Embedded;
        };
        let etcd_at = At::of(&etcd);
        let raw = etcd.value;
        let mut endpoints = Vec::new();
        match raw.endpoints {
            None => self.error(
                etcd_at,
                "`etcd` needs `endpoints`: the `http://host:port` of each etcd member",
            ),
            Some(list) if list.value.is_empty() => {
                self.error(At::of(&list), "`endpoints` lists no etcd member")
            }
            Some(list) => {
                for node in list.value {
                    let e = node.value.trim().trim_end_matches('/').to_owned();
                    let ok = e
                        .strip_prefix("http://")
                        .or_else(|| e.strip_prefix("https://"))
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
                    if !ok {
                        self.error(
                            At::of(&node),
                            format!(
                                "etcd endpoint `{}` is not `http://host:port` or `https://host:port`",
                                node.value
                            ),
                        );
                    } else if endpoints.contains(&e) {
                        self.error(At::of(&node), format!("etcd endpoint {e} is listed twice"));
                    } else {
                        endpoints.push(e);
                    }
                }
            }
        }
        let prefix = match raw.prefix {
            None => "/myha".to_owned(),
            Some(p) => {
                let v = p.value.trim().trim_end_matches('/').to_owned();
                if !v.starts_with('/') || v.len() < 2 || v.chars().any(char::is_whitespace) {
                    self.error(
                        At::of(&p),
                        format!(
                            "`prefix` must start with `/`, name something, and hold no space (got `{}`)",
                            p.value
                        ),
                    );
                }
                v
            }
        };
        let lease_at = At::value_or(&raw.lease_ttl, etcd_at);
        let lease_ttl = self.duration("lease_ttl", raw.lease_ttl, defaults::ETCD_LEASE_TTL);
        if lease_ttl.subsec_nanos() != 0 {
            self.error(
                lease_at,
                format!(
                    "`lease_ttl` is a whole number of seconds (etcd leases are), got {}",
                    humantime::format_duration(lease_ttl)
                ),
            );
        }
        let request_timeout = self.duration(
            "request_timeout",
            raw.request_timeout,
            defaults::ETCD_REQUEST_TIMEOUT,
        );
        if request_timeout >= lease_ttl / 3 && !lease_ttl.is_zero() {
            self.error(
                lease_at,
                format!(
                    "`request_timeout` ({}) must be under a third of `lease_ttl` ({}): a leader must \
                     learn that it cannot renew before it has to stop acting",
                    humantime::format_duration(request_timeout),
                    humantime::format_duration(lease_ttl)
                ),
            );
        }
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        let tls = match raw.tls {
            Some(node) => {
                let tls_at = At::of(&node);
                if https < endpoints.len() {
                    self.error(
                        tls_at,
                        "`tls` is set: every etcd endpoint must be `https://host:port`",
                    );
                }
                Some(self.etcd_tls(node))
            }
            None => {
                if https > 0 {
                    self.error(
                        etcd_at,
                        "`https://` etcd endpoints need `tls: { ca_file: ... }` (the CA that signs the members' certificates)",
                    );
                }
                None
            }
        };
        Coordination::Etcd(EtcdConfig {
            endpoints,
            prefix,
            lease_ttl,
            request_timeout,
            tls,
        })
    }

    fn agent(&mut self, raw: RawAgent) -> (AgentConfig, RawSecret) {
        let interval = match raw.interval {
            Some(node) => {
                let at = At::of(&node);
                let interval = self.duration("interval", Some(node), defaults::AGENT_INTERVAL);
                if interval < defaults::AGENT_MIN_INTERVAL {
                    self.error(
                        at,
                        format!(
                            "`interval` must be at least {}",
                            humantime::format_duration(defaults::AGENT_MIN_INTERVAL)
                        ),
                    );
                }
                interval
            }
            None => defaults::AGENT_INTERVAL,
        };
        let token = RawSecret {
            inline: raw.token,
            env: raw.token_env,
            file: raw.token_file,
        };
        let config = AgentConfig {
            port: self.port("port", raw.port, defaults::AGENT_PORT),
            interval,
            connect_timeout: self.duration(
                "connect_timeout",
                raw.connect_timeout,
                defaults::AGENT_CONNECT_TIMEOUT,
            ),
            query_timeout: self.duration(
                "query_timeout",
                raw.query_timeout,
                defaults::AGENT_QUERY_TIMEOUT,
            ),
            report_timeout: self.duration(
                "report_timeout",
                raw.report_timeout,
                defaults::AGENT_REPORT_TIMEOUT,
            ),
        };
        (config, token)
    }

    fn clusters(
        &mut self,
        root: At,
        raw: Option<Spanned<Vec<Spanned<RawCluster>>>>,
    ) -> (Vec<ClusterDraft>, Secret) {
        let (items, at) = match raw {
            Some(list) => {
                let at = At::of(&list);
                (list.value, at)
            }
            None => (Vec::new(), root),
        };
        if items.is_empty() {
            self.error(at, "at least one cluster must be defined under `clusters`");
        }
        let mut seen = HashMap::new();
        let drafts: Vec<ClusterDraft> = items
            .into_iter()
            .map(|node| self.cluster(node, &mut seen))
            .collect();
        let mut token = Secret::unloaded();
        if let Role::Router(name) = self.role {
            if let Some(d) = drafts.iter().find(|d| &d.config.name == name) {
                token = d.router_token.clone();
            }
        }
        (drafts, token)
    }

    fn cluster(
        &mut self,
        node: Spanned<RawCluster>,
        seen: &mut HashMap<String, At>,
    ) -> ClusterDraft {
        let at = At::of(&node);
        let raw = node.value;
        let name = self.name("cluster", at, raw.name, seen);
        let owner = describe("cluster", name.as_ref());
        let cluster_name = name.as_ref().map(|n| n.value.clone());
        let wants_admin = self.wants_db_passwords(cluster_name.as_deref(), false);
        let wants_replication = self.wants_db_passwords(cluster_name.as_deref(), true);

        let master_down_at = At::value_or(&raw.master_down_after, at);
        let degrade_at = At::value_or(&raw.semi_sync_degrade_after, at);
        let user = self.required(at, &owner, "user", raw.user);
        let password = self.secret(
            at,
            &owner,
            &PASSWORD,
            RawSecret {
                inline: raw.password,
                env: raw.password_env,
                file: raw.password_file,
            },
            wants_admin,
        );
        let replication_user = self.required(at, &owner, "replication_user", raw.replication_user);
        let replication_password = self.secret(
            at,
            &owner,
            &REPLICATION_PASSWORD,
            RawSecret {
                inline: raw.replication_password,
                env: raw.replication_password_env,
                file: raw.replication_password_file,
            },
            wants_replication,
        );
        let wants_router_token =
            matches!(self.role, Role::Router(c) if Some(c) == cluster_name.as_ref());
        let (router, router_token) = match raw.router {
            Some(router) => self.router(router, wants_router_token),
            None => (None, Secret::unloaded()),
        };
        let mysql_tls = raw.mysql_tls.map(|node| self.mysql_tls(node));

        let config = ClusterConfig {
            name: name.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
            flavor: raw
                .flavor
                .map(|f| f.value)
                .unwrap_or(crate::Flavor::Mariadb),
            admin: Credentials {
                user: user.map(|u| u.value).unwrap_or_default(),
                password,
            },
            replication: Credentials {
                user: replication_user.map(|u| u.value).unwrap_or_default(),
                password: replication_password,
            },
            max_lag: self.duration("max_lag", raw.max_lag, defaults::MAX_LAG),
            heartbeat_table: self.heartbeat_table(raw.heartbeat_table),
            auto_failover: flag(&raw.auto_failover, defaults::AUTO_FAILOVER),
            auto_rejoin: flag(&raw.auto_rejoin, defaults::AUTO_REJOIN),
            failover_block_period: self.duration(
                "failover_block_period",
                raw.failover_block_period,
                defaults::FAILOVER_BLOCK_PERIOD,
            ),
            master_down_after: self.duration(
                "master_down_after",
                raw.master_down_after,
                defaults::MASTER_DOWN_AFTER,
            ),
            semi_sync_degrade_after: self.duration(
                "semi_sync_degrade_after",
                raw.semi_sync_degrade_after,
                defaults::SEMI_SYNC_DEGRADE_AFTER,
            ),
            auto_reinstate: flag(&raw.auto_reinstate, defaults::AUTO_REINSTATE),
            vip: raw.vip.map(|vip| self.vip(vip)),
            hooks: match raw.hooks {
                Some(hooks) => self.hooks(hooks.value),
                None => HooksConfig::default(),
            },
            router,
            mysql_tls,
            hosts: Vec::new(),
        };
        ClusterDraft {
            config,
            name,
            master_down_at,
            degrade_at,
            router_token,
        }
    }

    fn vip(&mut self, node: Spanned<RawVip>) -> VipConfig {
        let at = At::of(&node);
        let raw = node.value;
        let (address, prefix_len) = match self.required(at, "`vip`", "address", raw.address) {
            Some(address) => self.ipv4_with_prefix(address),
            None => (Ipv4Addr::UNSPECIFIED, 0),
        };
        let interface = self.required(at, "`vip`", "interface", raw.interface);
        if let Some(interface) = &interface {
            if !is_interface_name(&interface.value) {
                self.error(
                    At::of(interface),
                    format!(
                        "`interface` `{}` is not a network interface name \
                         (at most 15 characters, no spaces or `/`)",
                        interface.value
                    ),
                );
            }
        }
        VipConfig {
            address,
            prefix_len,
            interface: interface.map(|i| i.value).unwrap_or_default(),
            arp_count: raw.arp_count.map_or(defaults::ARP_COUNT, |n| n.value),
        }
    }

    fn hooks(&mut self, raw: RawHooks) -> HooksConfig {
        HooksConfig {
            pre_failover: self.command("pre_failover", raw.pre_failover),
            post_failover: self.command("post_failover", raw.post_failover),
            on_failure: self.command("on_failure", raw.on_failure),
            pre_switchover: self.command("pre_switchover", raw.pre_switchover),
            post_switchover: self.command("post_switchover", raw.post_switchover),
            master_ip_failover_script: self
                .command("master_ip_failover_script", raw.master_ip_failover_script),
            timeout: self.duration("timeout", raw.timeout, defaults::HOOK_TIMEOUT),
        }
    }

    fn router(
        &mut self,
        node: Spanned<RawRouter>,
        wants_token: bool,
    ) -> (Option<RouterConfig>, Secret) {
        let at = At::of(&node);
        let raw = node.value;
        let given = raw.token.is_some() || raw.token_env.is_some() || raw.token_file.is_some();
        let token = if !wants_token && !given {
            // Only the router itself needs it.
            Secret::unloaded()
        } else {
            self.secret(
                at,
                "`router`",
                &TOKEN,
                RawSecret {
                    inline: raw.token,
                    env: raw.token_env,
                    file: raw.token_file,
                },
                wants_token,
            )
        };
        let listeners = [
            ("writer_listen", raw.writer_listen, defaults::WRITER_LISTEN),
            ("reader_listen", raw.reader_listen, defaults::READER_LISTEN),
            ("http_listen", raw.http_listen, defaults::HTTP_LISTEN),
        ]
        .map(|(key, value, default)| {
            let value_at = At::value_or(&value, at);
            (key, self.socket_addr(key, value, default), value_at)
        });
        // The three listeners of one router cannot bind the same port.
        for (i, (key, addr, value_at)) in listeners.iter().enumerate() {
            let earlier = listeners[..i].iter().find(|(_, a, _)| overlaps(*a, *addr));
            if let Some((other, other_addr, _)) = earlier {
                self.error(
                    *value_at,
                    format!("`{key}` {addr} conflicts with `{other}` {other_addr}"),
                );
            }
        }
        let relay_at = At::value_or(&raw.relay, at);
        let relay = match raw.relay.as_ref().map(|r| r.value) {
            None => Relay::default(),
            Some(RawRelay::Userspace) => Relay::Userspace,
            Some(RawRelay::Nat) => Relay::Nat,
            Some(RawRelay::Kernel) => {
                self.error(
                    relay_at,
                    "`relay: kernel` was retired (`relay: nat` is faster in every case \
                     measured): use `relay: nat` (the kernel forwards by NAT) or \
                     `relay: userspace`",
                );
                Relay::default()
            }
        };
        if relay == Relay::Nat {
            for (key, addr, _) in &listeners[..2] {
                if let Some(why) = nat_refuses(*addr) {
                    self.error(relay_at, format!("`relay: nat` {why}: `{key}` is {addr}"));
                }
            }
        }
        let [(_, writer_listen, _), (_, reader_listen, _), (_, http_listen, _)] = listeners;
        let config = RouterConfig {
            writer_listen,
            reader_listen,
            http_listen,
            strategy: raw.strategy.map(|s| s.value).unwrap_or_default(),
            fallback_to_master: flag(&raw.fallback_to_master, defaults::FALLBACK_TO_MASTER),
            writer_hold_timeout: self.duration(
                "writer_hold_timeout",
                raw.writer_hold_timeout,
                defaults::WRITER_HOLD_TIMEOUT,
            ),
            busy_poll: self.busy_poll(raw.busy_poll),
            relay,
            max_connections: self.count(
                "max_connections",
                raw.max_connections,
                defaults::ROUTER_MAX_CONNECTIONS,
                1..=1_000_000,
            ),
            max_connections_per_source: self.count(
                "max_connections_per_source",
                raw.max_connections_per_source,
                defaults::ROUTER_MAX_CONNECTIONS_PER_SOURCE,
                1..=1_000_000,
            ),
            handshake_timeout: self.duration(
                "handshake_timeout",
                raw.handshake_timeout,
                defaults::ROUTER_HANDSHAKE_TIMEOUT,
            ),
        };
        (Some(config), token)
    }

    /// `busy_poll`: zero turns it off; more than 10ms only burns CPU.
    fn busy_poll(&mut self, raw: Option<Spanned<String>>) -> Duration {
        const MAX: Duration = Duration::from_millis(10);
        let Some(node) = raw else {
            return defaults::BUSY_POLL;
        };
        match humantime::parse_duration(node.value.trim()) {
            Ok(d) if d <= MAX => d,
            Ok(d) => {
                self.error(
                    At::of(&node),
                    format!(
                        "`busy_poll` {} is too long: at most 10ms (0s turns it off)",
                        humantime::format_duration(d)
                    ),
                );
                defaults::BUSY_POLL
            }
            Err(err) => {
                self.error(
                    At::of(&node),
                    format!(
                        "`busy_poll`: invalid duration `{}` ({err}); write e.g. `200us`, `1ms` or `0s`",
                        node.value
                    ),
                );
                defaults::BUSY_POLL
            }
        }
    }

    /// Converts every host and attaches it to its cluster, then checks that
    /// every cluster got at least one.
    fn hosts(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawHost>>>>,
        agent: &AgentConfig,
        agent_token: RawSecret,
        tls: bool,
        clusters: &mut [ClusterDraft],
    ) -> (Secret, Vec<String>) {
        let mut seen_hosts = Vec::new();
        let mut hosts_complete = true;
        let default_given = agent_token.env.is_some() || agent_token.file.is_some();
        let mut agent_token = Some(agent_token);
        let mut own_token = Secret::unloaded();
        let index: HashMap<String, usize> = clusters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.name
                    .as_ref()
                    .filter(|n| n.first)
                    .map(|n| (n.value.clone(), i))
            })
            .collect();
        // A host may belong to a cluster whose name is missing (already an
        // error); don't pile "undefined cluster" errors on top of that.
        let some_cluster_unnamed = clusters.iter().any(|c| c.name.is_none());
        let defined = {
            let names: Vec<&str> = clusters
                .iter()
                .filter_map(|c| c.name.as_ref().filter(|n| n.first))
                .map(|n| n.value.as_str())
                .collect();
            if names.is_empty() {
                "no clusters are defined".to_owned()
            } else {
                format!("defined clusters: {}", names.join(", "))
            }
        };

        let mut names = HashMap::new();
        let mut endpoints: HashMap<(String, u16), (String, At)> = HashMap::new();
        for node in raw.map(|list| list.value).unwrap_or_default() {
            let at = At::of(&node);
            let raw = node.value;
            let before = self.errors.len();
            let name = self.name("host", at, raw.name, &mut names);
            if self.errors.len() > before {
                // A host without a valid name: its credential cannot be matched.
                hosts_complete = false;
            }
            let owner = describe("host", name.as_ref());
            let cluster = self.required(at, &owner, "cluster", raw.cluster);
            let address = self.address(at, &owner, raw.address);
            let port = self.port("port", raw.port, defaults::MYSQL_PORT);
            let agent_port = self.port("agent_port", raw.agent_port, agent.port);

            let candidate_master = flag(&raw.candidate_master, defaults::CANDIDATE_MASTER);
            let no_master = flag(&raw.no_master, defaults::NO_MASTER);
            if candidate_master && no_master {
                self.error(
                    At::value_or(&raw.no_master, at),
                    format!("{owner} sets both `candidate_master` and `no_master`; choose one"),
                );
            }

            if let Some(address) = &address {
                let key = (address.value.to_ascii_lowercase(), port);
                if let Some((first, first_at)) = endpoints.get(&key) {
                    let message = format!(
                        "{owner} has the same address and port ({}:{port}) as {first} (line {})",
                        address.value, first_at.line
                    );
                    self.error(At::of(address), message);
                } else {
                    endpoints.insert(key, (owner.clone(), at));
                }
            }

            let host = HostConfig {
                name: name.map(|n| n.value).unwrap_or_default(),
                address: address.map(|a| a.value).unwrap_or_default(),
                port,
                agent_port,
                candidate_master,
                no_master,
                priority: raw.priority.map_or(defaults::PRIORITY, |p| p.value),
                weight: raw.weight.map_or(1, |w| w.value),
                // Filled in from `access:`.
                token_sha256: TokenHash([0; 32]),
                tls,
            };
            if !host.name.is_empty() {
                seen_hosts.push(host.name.clone());
            }
            let me = matches!(self.role, Role::Agent(h) if *h == host.name);
            let own = RawSecret {
                inline: raw.token,
                env: raw.token_env,
                file: raw.token_file,
            };
            if own.inline.is_some() || own.env.is_some() || own.file.is_some() {
                own_token = self.secret(at, &owner, &TOKEN, own, me).or(own_token);
            } else if !default_given {
                self.error(
                    at,
                    format!(
                        "{owner} has no token of its own: set `token_file` (or `token_env`) \
                         on the host, or in `agent:` for every host"
                    ),
                );
            } else if me {
                // The `agent:` section's token (a path that holds each
                // host's own token on that host).
                if let Some(default) = agent_token.take() {
                    own_token = self.secret(at, &owner, &TOKEN, default, true);
                }
            }
            if let Some(cluster) = cluster {
                match index.get(&cluster.value) {
                    Some(&i) => clusters[i].config.hosts.push(host),
                    None if some_cluster_unnamed => {}
                    None => self.error(
                        At::of(&cluster),
                        format!(
                            "{owner} refers to undefined cluster `{}`; {defined}",
                            cluster.value
                        ),
                    ),
                }
            }
        }

        for cluster in clusters.iter() {
            if let Some(name) = cluster.name.as_ref().filter(|n| n.first) {
                if cluster.config.hosts.is_empty() {
                    self.error(
                        name.at,
                        format!(
                            "cluster `{0}` has no hosts: add at least one entry to `hosts` \
                             with `cluster: {0}`",
                            name.value
                        ),
                    );
                }
            }
        }
        if let Some(default) = agent_token.filter(|_| default_given) {
            // Not this process's: only its shape is checked.
            self.secret(At { line: 1, column: 1 }, "`agent`", &TOKEN, default, false);
        }
        if !hosts_complete {
            // Don't call credentials of misnamed hosts dangling.
            seen_hosts.clear();
        }
        (own_token, seen_hosts)
    }

    // ---- values ---------------------------------------------------------

    /// A required, non-empty string.
    fn required(
        &mut self,
        owner_at: At,
        owner: &str,
        key: &str,
        raw: Option<Spanned<String>>,
    ) -> Option<Spanned<String>> {
        match raw {
            None => {
                self.error(owner_at, format!("{owner} is missing required key `{key}`"));
                None
            }
            Some(node) if node.value.trim().is_empty() => {
                self.error(At::of(&node), format!("`{key}` must not be empty"));
                None
            }
            Some(node) => Some(node),
        }
    }

    /// A cluster or host name: required, well-formed, unique among its kind.
    fn name(
        &mut self,
        kind: &str,
        owner_at: At,
        raw: Option<Spanned<String>>,
        seen: &mut HashMap<String, At>,
    ) -> Option<Name> {
        let node = self.required(owner_at, kind, "name", raw)?;
        let at = At::of(&node);
        let value = node.value;
        if !is_name(&value) {
            self.error(
                at,
                format!(
                    "{kind} name `{value}` is invalid: use only letters, digits, `_`, `.` and `-`"
                ),
            );
        }
        let first = match seen.get(&value) {
            Some(first_at) => {
                let message = format!(
                    "duplicate {kind} name `{value}` (first defined at line {})",
                    first_at.line
                );
                self.error(at, message);
                false
            }
            None => {
                seen.insert(value.clone(), at);
                true
            }
        };
        Some(Name { value, at, first })
    }

    /// A host's `address`: an IP address or a DNS name.
    fn address(
        &mut self,
        owner_at: At,
        owner: &str,
        raw: Option<Spanned<String>>,
    ) -> Option<Spanned<String>> {
        let node = self.required(owner_at, owner, "address", raw)?;
        if node.value.parse::<IpAddr>().is_err() && !is_host_name(&node.value) {
            self.error(
                At::of(&node),
                format!(
                    "`address` `{}` is neither an IP address nor a host name",
                    node.value
                ),
            );
            return None;
        }
        Some(node)
    }

    fn port(&mut self, key: &str, raw: Option<Spanned<i64>>, default: u16) -> u16 {
        let Some(node) = raw else {
            return default;
        };
        match u16::try_from(node.value) {
            Ok(port) if port != 0 => port,
            _ => {
                self.error(
                    At::of(&node),
                    format!(
                        "`{key}` must be a port number from 1 to 65535, got {}",
                        node.value
                    ),
                );
                default
            }
        }
    }

    fn socket_addr(
        &mut self,
        key: &str,
        raw: Option<Spanned<String>>,
        default: SocketAddr,
    ) -> SocketAddr {
        let Some(node) = raw else {
            return default;
        };
        match node.value.trim().parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => addr,
            Ok(_) => {
                self.error(At::of(&node), format!("`{key}`: port must not be 0"));
                default
            }
            Err(_) => {
                self.error(
                    At::of(&node),
                    format!(
                        "`{key}` `{}` is not an IP address and port such as 127.0.0.1:7070",
                        node.value
                    ),
                );
                default
            }
        }
    }

    fn url(&mut self, node: Spanned<String>, tls: bool) -> String {
        let url = node.value.trim().trim_end_matches('/');
        let (scheme, why) = if tls {
            ("https://", "`tls:` is set")
        } else {
            ("http://", "`tls:` is not set")
        };
        if url.strip_prefix(scheme).is_none_or(str::is_empty) {
            self.error(
                At::of(&node),
                format!(
                    "`url` must start with `{scheme}` ({why}), e.g. {scheme}10.0.0.5:7070 (got `{}`)",
                    node.value
                ),
            );
        }
        url.to_owned()
    }

    /// A duration within the key's sane range (see [`duration_bounds`]);
    /// `default` if absent.
    fn duration(&mut self, key: &str, raw: Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(node) = raw else {
            return default;
        };
        let (min, max) = duration_bounds(key);
        match humantime::parse_duration(node.value.trim()) {
            Ok(duration) if duration >= min && duration <= max => duration,
            Ok(duration) if duration.is_zero() => {
                self.error(At::of(&node), format!("`{key}` must be greater than 0"));
                default
            }
            Ok(duration) => {
                let side = if duration < min {
                    "too short"
                } else {
                    "too long"
                };
                self.error(
                    At::of(&node),
                    format!(
                        "`{key}` {} is {side}: it must be from {} to {}",
                        node.value.trim(),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Err(err) => {
                self.error(
                    At::of(&node),
                    format!(
                        "`{key}`: invalid duration `{}` ({err}); write a number with a unit, \
                         e.g. `250ms`, `2s`, `10m`",
                        node.value
                    ),
                );
                default
            }
        }
    }

    /// A whole number within `range`; `default` if absent.
    fn count(
        &mut self,
        key: &str,
        raw: Option<Spanned<i64>>,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        let Some(node) = raw else {
            return default;
        };
        match u32::try_from(node.value) {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.error(
                    At::of(&node),
                    format!(
                        "`{key}` must be from {} to {} (got {})",
                        range.start(),
                        range.end(),
                        node.value
                    ),
                );
                default
            }
        }
    }

    fn heartbeat_table(&mut self, raw: Option<Spanned<String>>) -> String {
        let Some(node) = raw else {
            return defaults::HEARTBEAT_TABLE.to_owned();
        };
        let valid = node
            .value
            .split_once('.')
            .is_some_and(|(db, table)| is_identifier(db) && is_identifier(table));
        if !valid {
            self.error(
                At::of(&node),
                format!(
                    "`heartbeat_table` must be `database.table`, each part made of letters, \
                     digits, `_` or `$` (got `{}`)",
                    node.value
                ),
            );
        }
        node.value
    }

    /// `a.b.c.d/len` with `len` in 1..=32.
    fn ipv4_with_prefix(&mut self, node: Spanned<String>) -> (Ipv4Addr, u8) {
        let parsed = node
            .value
            .trim()
            .split_once('/')
            .and_then(|(ip, len)| Some((ip.parse::<Ipv4Addr>().ok()?, len.parse::<u8>().ok()?)))
            .filter(|(_, len)| (1..=32).contains(len));
        parsed.unwrap_or_else(|| {
            self.error(
                At::of(&node),
                format!(
                    "vip `address` must be an IPv4 address with a prefix length from 1 to 32, \
                     e.g. 10.0.0.100/24 (got `{}`)",
                    node.value
                ),
            );
            (Ipv4Addr::UNSPECIFIED, 0)
        })
    }

    /// An optional hook command; present means non-empty.
    fn command(&mut self, key: &str, raw: Option<Spanned<String>>) -> Option<String> {
        let node = raw?;
        if node.value.trim().is_empty() {
            self.error(
                At::of(&node),
                format!("`{key}` must not be empty; omit the key to run no hook"),
            );
            return None;
        }
        Some(node.value)
    }

    /// A directory path; relative paths are resolved against the config file's directory.
    fn dir_path(&mut self, key: &str, node: Spanned<String>) -> PathBuf {
        if node.value.trim().is_empty() {
            self.error(At::of(&node), format!("`{key}` must not be empty"));
        }
        self.dir.join(&node.value)
    }

    // ---- identities -----------------------------------------------------

    /// A required `token_sha256`: 64 hexadecimal digits.
    fn token_hash(&mut self, owner_at: At, owner: &str, raw: Option<Spanned<String>>) -> TokenHash {
        let Some(node) = raw else {
            self.error(
                owner_at,
                format!(
                    "{owner} is missing `token_sha256` (the SHA-256 of its token, \
                     as `myha token new` prints it)"
                ),
            );
            return TokenHash([0; 32]);
        };
        TokenHash::parse(&node.value).unwrap_or_else(|| {
            // Not echoed: it might be a token pasted where its hash belongs.
            self.error(
                At::of(&node),
                "`token_sha256` must be 64 hexadecimal digits (the SHA-256 of the token, \
                 never the token itself)",
            );
            TokenHash([0; 32])
        })
    }

    fn access(&mut self, raw: Option<Spanned<Vec<Spanned<RawAccess>>>>) -> Vec<AccessEntry> {
        let mut seen = HashMap::new();
        let mut hashes: HashMap<TokenHash, String> = HashMap::new();
        let mut out = Vec::new();
        for node in raw.map(|l| l.value).unwrap_or_default() {
            let at = At::of(&node);
            let raw = node.value;
            if let Some(inline) = &raw.token {
                self.error(
                    At::of(inline),
                    "inline `token` is not allowed in `access`: give its SHA-256 as \
                     `token_sha256` (`myha token new` prints both)",
                );
            }
            let name = self.name("access entry", at, raw.name, &mut seen);
            let owner = describe("access entry", name.as_ref());
            let role = match raw.role {
                Some(r) => Some(r.value),
                None => {
                    self.error(
                        at,
                        format!(
                            "{owner} is missing required key `role` \
                             (manager, agent, operator, monitor or router)"
                        ),
                    );
                    None
                }
            };
            let host = match (role, raw.host) {
                (Some(crate::AccessRole::Agent), Some(h)) => Some(h),
                (Some(crate::AccessRole::Agent), None) => {
                    self.error(
                        at,
                        format!("{owner} has role `agent` but no `host` (the host it speaks for)"),
                    );
                    None
                }
                (_, Some(h)) => {
                    self.error(At::of(&h), "`host` is only for entries with role `agent`");
                    None
                }
                (_, None) => None,
            };
            let hash_at = At::value_or(&raw.token_sha256, at);
            let hash = self.token_hash(at, &owner, raw.token_sha256);
            let name = name.map(|n| n.value).unwrap_or_default();
            if hash.0 != [0; 32] {
                if let Some(first) = hashes.get(&hash) {
                    self.error(
                        hash_at,
                        format!("{owner} has the same token as access entry `{first}`"),
                    );
                }
                hashes.insert(hash, name.clone());
            }
            if let Some(role) = role {
                out.push(AccessEntry {
                    name,
                    role,
                    host: host.map(|h| h.value),
                    token_sha256: hash,
                    at: (hash_at.line, hash_at.column),
                });
            }
        }
        out
    }

    /// Gives the manager and every host the hash of its credential from
    /// `access:`: exactly one entry for the manager, one per host, none for
    /// a host that does not exist.
    fn bind_access(
        &mut self,
        at: At,
        access: &[AccessEntry],
        host_names: &[String],
        manager: &mut ManagerConfig,
        clusters: &mut [ClusterDraft],
    ) {
        use crate::AccessRole;
        // A file without hosts is broken already: say that, not this.
        if host_names.is_empty() {
            return;
        }
        let pos = |e: &AccessEntry| At {
            line: e.at.0,
            column: e.at.1,
        };
        let managers: Vec<&AccessEntry> = access
            .iter()
            .filter(|e| e.role == AccessRole::Manager)
            .collect();
        match managers.as_slice() {
            [] => self.error(
                at,
                "`access` has no entry with role `manager`: agents accept fences and VIP \
                 moves only from the manager's credential (`myha token new` makes one)",
            ),
            // Several during a rotation (docs/security.md).
            [first, ..] => manager.token_sha256 = first.token_sha256,
        }
        let mut bound: HashMap<&str, &AccessEntry> = HashMap::new();
        for entry in access.iter().filter(|e| e.role == AccessRole::Agent) {
            let Some(host) = entry.host.as_deref() else {
                continue;
            };
            let found = clusters
                .iter_mut()
                .flat_map(|c| c.config.hosts.iter_mut())
                .find(|h| h.name == host);
            let defined = host_names.iter().any(|h| h == host);
            match found {
                // Defined but in no valid cluster: that is reported already.
                None if defined => {}
                None => self.error(
                    pos(entry),
                    format!(
                        "access entry `{}` names host `{host}`, which is not defined",
                        entry.name
                    ),
                ),
                // Several during a rotation: the first is the host's.
                Some(h) => {
                    if !bound.contains_key(host) {
                        h.token_sha256 = entry.token_sha256;
                    }
                    bound.insert(host, entry);
                }
            }
        }
        let missing: Vec<String> = clusters
            .iter()
            .flat_map(|c| c.config.hosts.iter())
            .filter(|h| is_host_name(&h.name) && !bound.contains_key(h.name.as_str()))
            .map(|h| h.name.clone())
            .collect();
        if !missing.is_empty() {
            self.error(
                at,
                format!(
                    "`access` has no agent credential for host(s) {}: add for each \
                     `{{ name: ..., role: agent, host: <host>, token_sha256: ... }}`",
                    missing.join(", ")
                ),
            );
        }
    }

    fn cli(&mut self, at: At, raw: RawCli) -> Secret {
        let need = matches!(self.role, Role::Cli { .. });
        let given = raw.token.is_some() || raw.token_env.is_some() || raw.token_file.is_some();
        if !need && !given {
            // Only the CLI needs one (a DB host's copy of the file may omit it).
            return Secret::unloaded();
        }
        self.secret(
            at,
            "`cli` (the CLI's own credential, an `access:` entry's token)",
            &TOKEN,
            RawSecret {
                inline: raw.token,
                env: raw.token_env,
                file: raw.token_file,
            },
            need,
        )
    }

    /// `tls:`; the files this process uses must be readable, and its key
    /// private.
    fn tls(&mut self, node: Spanned<RawTls>) -> TlsConfig {
        let at = At::of(&node);
        let raw = node.value;
        let client_auth = flag(&raw.client_auth, false);
        // Servers present a certificate; with client_auth, every client too.
        let serves = !matches!(self.role, Role::Cli { .. });
        let presents = serves || client_auth;
        let (ca_file, cert_file, key_file) = self.tls_files(
            at,
            "`tls`",
            (raw.ca_file, raw.cert_file, raw.key_file),
            true,
            presents,
        );
        if presents && cert_file.is_none() && key_file.is_none() {
            let who = if serves {
                "this process serves HTTPS"
            } else {
                "`client_auth` is on"
            };
            self.error(
                at,
                format!("`tls` is missing `cert_file` and `key_file`: {who}"),
            );
        }
        TlsConfig {
            ca_file,
            cert_file,
            key_file,
            client_auth,
        }
    }

    /// One of `manager.webhooks`.
    fn webhook(&mut self, node: Spanned<crate::raw::RawWebhook>) -> crate::model::Webhook {
        let at = At::of(&node);
        let raw = node.value;
        let url = match self.required(at, "a webhook", "url", raw.url) {
            Some(u) => {
                let v = u.value.trim().to_string();
                let ok = v
                    .strip_prefix("http://")
                    .or_else(|| v.strip_prefix("https://"))
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
                if !ok {
                    self.error(
                        At::of(&u),
                        format!("webhook `url` must be `http://…` or `https://…`, got `{v}`"),
                    );
                }
                v
            }
            None => String::new(),
        };
        let timeout_at = At::value_or(&raw.timeout, at);
        let timeout = self.duration("timeout", raw.timeout, Duration::from_secs(2));
        if timeout.is_zero() || timeout > Duration::from_secs(30) {
            self.error(
                timeout_at,
                "webhook `timeout` must be above 0 and at most 30s (a slow receiver must not hold events back)",
            );
        }
        let retries = match raw.retries {
            None => 3,
            Some(n) if (0..=10).contains(&n.value) => n.value as u32,
            Some(n) => {
                self.error(At::of(&n), "webhook `retries` must be between 0 and 10");
                3
            }
        };
        let token = (raw.token.is_some() || raw.token_env.is_some() || raw.token_file.is_some())
            .then(|| {
                self.secret(
                    at,
                    "a webhook",
                    &TOKEN,
                    RawSecret {
                        inline: raw.token,
                        env: raw.token_env,
                        file: raw.token_file,
                    },
                    *self.role == Role::Manager,
                )
            });
        crate::model::Webhook {
            url,
            timeout,
            retries,
            token,
        }
    }

    /// A TLS section's files: the CA (required; checked if `ca_used`), and
    /// the certificate and key (both or neither; checked if `pair_used`,
    /// the key private).
    #[allow(clippy::type_complexity)]
    fn tls_files(
        &mut self,
        at: At,
        what: &str,
        (ca, cert, key): (
            Option<Spanned<String>>,
            Option<Spanned<String>>,
            Option<Spanned<String>>,
        ),
        ca_used: bool,
        pair_used: bool,
    ) -> (PathBuf, Option<PathBuf>, Option<PathBuf>) {
        let ca_file = match self.required(at, what, "ca_file", ca) {
            Some(node) => self.readable_file("ca_file", node, false, ca_used),
            None => PathBuf::new(),
        };
        if cert.is_some() != key.is_some() {
            self.error(
                at,
                format!("{what} needs both `cert_file` and `key_file`, or neither"),
            );
        }
        let cert_file = cert.map(|node| self.readable_file("cert_file", node, false, pair_used));
        let key_file = key.map(|node| self.readable_file("key_file", node, true, pair_used));
        (ca_file, cert_file, key_file)
    }

    /// `manager.coordination.etcd.tls`: only the manager reads the files.
    fn etcd_tls(&mut self, node: Spanned<crate::raw::RawEtcdTls>) -> crate::model::EtcdTls {
        let at = At::of(&node);
        let raw = node.value;
        let used = matches!(self.role, Role::Manager);
        let (ca_file, cert_file, key_file) = self.tls_files(
            at,
            "etcd `tls`",
            (raw.ca_file, raw.cert_file, raw.key_file),
            used,
            used,
        );
        crate::model::EtcdTls {
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// A cluster's `mysql_tls:`.
    fn mysql_tls(&mut self, node: Spanned<RawMysqlTls>) -> MysqlTlsConfig {
        let at = At::of(&node);
        let raw = node.value;
        let ca_file = match self.required(at, "`mysql_tls`", "ca_file", raw.ca_file) {
            Some(node) => self.readable_file("ca_file", node, false, true),
            None => PathBuf::new(),
        };
        let replication_ca = match raw.replication_ca {
            Some(node) if node.value.trim().is_empty() => {
                self.error(At::of(&node), "`replication_ca` must not be empty");
                None
            }
            Some(node) if node.value.contains('\'') || !node.value.starts_with('/') => {
                self.error(
                    At::of(&node),
                    "`replication_ca` must be an absolute path on the database hosts, \
                     without quotes",
                );
                None
            }
            Some(node) => Some(node.value),
            None => None,
        };
        MysqlTlsConfig {
            ca_file,
            server_name: match raw.server_name {
                Some(node) if !is_host_name(&node.value) => {
                    self.error(
                        At::of(&node),
                        format!("`server_name` `{}` is not a DNS name", node.value),
                    );
                    None
                }
                Some(node) => Some(node.value),
                None => None,
            },
            replication: flag(&raw.replication, true),
            replication_ca,
        }
    }

    /// A file path (relative to the configuration's directory) that must
    /// be readable; `private`: also not accessible to group or others.
    /// `used`: this process reads it (else only the path is checked).
    fn readable_file(
        &mut self,
        key: &str,
        node: Spanned<String>,
        private: bool,
        used: bool,
    ) -> PathBuf {
        let at = At::of(&node);
        if node.value.trim().is_empty() {
            self.error(at, format!("`{key}` must name a file"));
            return PathBuf::new();
        }
        let path = self.dir.join(&node.value);
        if !used {
            return path;
        }
        if private {
            if let Some(why) = exposed(&path) {
                self.error(at, format!("`{key}` `{}` {why}", path.display()));
                return path;
            }
        }
        if let Err(err) = std::fs::File::open(&path) {
            self.error(
                at,
                format!("cannot read `{key}` `{}`: {err}", path.display()),
            );
        }
        path
    }

    // ---- secrets --------------------------------------------------------

    /// Resolves a secret given by exactly one of `*_env` / `*_file`.
    ///
    /// On error an empty placeholder is returned (the configuration is
    /// rejected anyway). Messages name keys, variables and files, never values.
    ///
    /// A secret this process's role does not `need` is not read: only the
    /// way it is given is checked.
    fn secret(
        &mut self,
        owner_at: At,
        owner: &str,
        keys: &SecretKeys,
        raw: RawSecret,
        need: bool,
    ) -> Secret {
        if let Some(inline) = &raw.inline {
            self.error(
                At::of(inline),
                format!(
                    "inline `{}` is not allowed: use `{}` (name of an environment variable) \
                     or `{}` (path of a file holding the secret)",
                    keys.inline, keys.env, keys.file
                ),
            );
        }
        match (raw.env, raw.file) {
            (Some(_), None) | (None, Some(_)) if !need => return Secret::unloaded(),
            (Some(env), None) => return self.secret_from_env(keys.env, env),
            (None, Some(file)) => return self.secret_from_file(keys.file, file),
            (Some(_), Some(file)) => self.error(
                At::of(&file),
                format!(
                    "`{}` and `{}` are both set: use exactly one",
                    keys.env, keys.file
                ),
            ),
            (None, None) if raw.inline.is_none() => self.error(
                owner_at,
                format!(
                    "{owner} is missing `{}` or `{}` (exactly one is required)",
                    keys.env, keys.file
                ),
            ),
            (None, None) => {}
        }
        Secret::new(String::new())
    }

    fn secret_from_env(&mut self, key: &str, node: Spanned<String>) -> Secret {
        let at = At::of(&node);
        let var = node.value.trim();
        if !is_env_name(var) {
            // Not echoed: a value that is no variable name may be the secret itself.
            self.error(
                at,
                format!(
                    "`{key}` must name an environment variable (letters, digits and `_`, \
                     not starting with a digit)"
                ),
            );
            return Secret::new(String::new());
        }
        match (self.env)(var) {
            Some(value) if !value.is_empty() => Secret::new(value),
            Some(_) => {
                self.error(
                    at,
                    format!("environment variable `{var}` (from `{key}`) is empty"),
                );
                Secret::new(String::new())
            }
            None => {
                self.error(
                    at,
                    format!("environment variable `{var}` (from `{key}`) is not set"),
                );
                Secret::new(String::new())
            }
        }
    }

    fn secret_from_file(&mut self, key: &str, node: Spanned<String>) -> Secret {
        let at = At::of(&node);
        if node.value.trim().is_empty() {
            self.error(at, format!("`{key}` must name a file"));
            return Secret::new(String::new());
        }
        let path = self.dir.join(&node.value);
        if let Some(why) = exposed(&path) {
            self.error(
                at,
                format!("secret file `{}` (from `{key}`) {why}", path.display()),
            );
            return Secret::new(String::new());
        }
        match std::fs::read_to_string(&path) {
            Ok(contents) => {
                let value = contents.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    self.error(
                        at,
                        format!("secret file `{}` (from `{key}`) is empty", path.display()),
                    );
                    return Secret::new(String::new());
                }
                Secret::new(value)
            }
            Err(err) => {
                self.error(
                    at,
                    format!(
                        "cannot read secret file `{}` (from `{key}`): {err}",
                        path.display()
                    ),
                );
                Secret::new(String::new())
            }
        }
    }
}

/// Why a secret file must not be used: readable (or writable) by group or
/// others. `None` when it is private, or cannot be inspected (the read
/// that follows says why).
fn exposed(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "is accessible to group or others (mode {mode:04o}): make it private, \
             e.g. `chmod 600 {}`",
            path.display()
        )
    })
}

/// The sane range of each duration key: shorter makes no sense for a
/// network round trip or a sampling loop, longer would overflow the
/// daemons' clock arithmetic or means "never" (which no key offers).
fn duration_bounds(key: &str) -> (Duration, Duration) {
    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);
    match key {
        "probe_interval" | "interval" => (10 * MS, 10 * S),
        "connect_timeout" | "report_timeout" => (10 * MS, 60 * S),
        "query_timeout" => (10 * MS, 600 * S),
        "max_lag" => (MS, DAY),
        "failover_block_period" => (S, 30 * DAY),
        "master_down_after" => (100 * MS, HOUR),
        "semi_sync_degrade_after" => (S, DAY),
        "timeout" => (S, HOUR),
        "writer_hold_timeout" => (10 * MS, 600 * S),
        "handshake_timeout" => (100 * MS, 300 * S),
        "lease_ttl" => (2 * S, 600 * S),
        "request_timeout" => (10 * MS, 60 * S),
        _ => (MS, DAY),
    }
}

/// "cluster `shop`" / "host `db1`", or just the kind if the name is missing.
fn describe(kind: &str, name: Option<&Name>) -> String {
    match name {
        Some(name) => format!("{kind} `{}`", name.value),
        None => kind.to_owned(),
    }
}

fn flag(raw: &Option<Spanned<bool>>, default: bool) -> bool {
    raw.as_ref().map_or(default, |b| b.value)
}

/// Two listen addresses that cannot both be bound: same port, and the same
/// IP or one of them the wildcard address.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_env_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[A-Za-z0-9_.-]+`
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A MySQL identifier as accepted unquoted: `[A-Za-z0-9_$]+`.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$'))
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`
/// (container names), none empty or starting/ending with `-`.
pub fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        })
}

/// A Linux network interface name (e.g. `eth0`, `ens3:1`, `bond0.100`).
fn is_interface_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && !s.chars().any(|c| c.is_whitespace() || c == '/')
}

/// Why `relay: nat` cannot serve a listener, if it cannot: the rules are
/// IPv4 (`table ip`), and the kernel will not forward a connection whose
/// source is a loopback address to a backend on another interface.
fn nat_refuses(addr: SocketAddr) -> Option<&'static str> {
    match addr {
        SocketAddr::V6(_) => Some("forwards IPv4 only"),
        SocketAddr::V4(a) if a.ip().is_loopback() => Some(
            "cannot forward connections made to a loopback address \
             (listen on an address the backends can reach)",
        ),
        SocketAddr::V4(_) => None,
    }
}
