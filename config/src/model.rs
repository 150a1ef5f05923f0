//! The validated configuration: plain types with every default applied and
//! every secret resolved. See `docs/config.md` for the YAML that produces them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Secret;

/// Default values of optional keys, shared by validation, the `Default`
/// impls below and the documentation.
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    pub const MANAGER_LISTEN: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 7070);
    pub const STATE_DIR: &str = "/var/lib/myha";
    pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
    pub const MANAGER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    pub const MANAGER_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
    pub const ETCD_LEASE_TTL: Duration = Duration::from_secs(5);
    pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

    pub const AGENT_PORT: u16 = 7071;
    pub const AGENT_INTERVAL: Duration = Duration::from_millis(250);
    /// The smallest accepted `agent.interval`.
    pub const AGENT_MIN_INTERVAL: Duration = Duration::from_millis(10);
    pub const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
    pub const AGENT_QUERY_TIMEOUT: Duration = Duration::from_secs(1);
    pub const AGENT_REPORT_TIMEOUT: Duration = Duration::from_secs(1);

    pub const MAX_LAG: Duration = Duration::from_secs(10);
    pub const HEARTBEAT_TABLE: &str = "myha.heartbeat";
    pub const AUTO_FAILOVER: bool = true;
    pub const AUTO_REJOIN: bool = true;
    pub const FAILOVER_BLOCK_PERIOD: Duration = Duration::from_secs(600);
    pub const MASTER_DOWN_AFTER: Duration = Duration::from_secs(1);
    pub const SEMI_SYNC_DEGRADE_AFTER: Duration = Duration::from_secs(10);
    pub const AUTO_REINSTATE: bool = false;

    pub const ARP_COUNT: u32 = 3;
    pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

    pub const WRITER_LISTEN: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 6033);
    pub const READER_LISTEN: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 6034);
    pub const HTTP_LISTEN: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 6035);
    pub const FALLBACK_TO_MASTER: bool = true;
    pub const WRITER_HOLD_TIMEOUT: Duration = Duration::from_secs(5);
    pub const BUSY_POLL: Duration = Duration::ZERO;
    /// Open client connections per router listener (writer, reader).
    pub const ROUTER_MAX_CONNECTIONS: u32 = 1000;
    /// Open client connections per source address, per listener.
    pub const ROUTER_MAX_CONNECTIONS_PER_SOURCE: u32 = 64;
    /// A client must complete the MySQL handshake (its login answered)
    /// within this long of connecting.
    pub const ROUTER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

    pub const MYSQL_PORT: u16 = 3306;
    pub const CANDIDATE_MASTER: bool = false;
    pub const NO_MASTER: bool = false;
    pub const PRIORITY: i32 = 0;
}

/// A loaded, validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from, as given.
    pub path: PathBuf,
    pub manager: ManagerConfig,
    pub agent: AgentConfig,
    /// In file order.
    pub clusters: Vec<ClusterConfig>,
    /// Credentials of operators, monitors and routers, by hash.
    pub access: crate::AccessList,
    /// TLS of every HTTP API (absent: plain HTTP).
    pub tls: Option<TlsConfig>,
    /// The process this configuration was loaded for.
    pub role: Role,
    /// This process's own bearer token: the manager's, an agent's (its
    /// host's), a router's or the CLI's, as [`Config::role`] says. Only
    /// the secrets a role needs are resolved; the others stay unloaded.
    pub token: Secret,
}

impl Config {
    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// A host and its cluster, looked up by host name, else by
    /// `address:port` (see [`HostConfig::mysql_addr`]), else by address alone
    /// (the first such host in file order).
    pub fn find_host(&self, host: &str) -> Option<(&ClusterConfig, &HostConfig)> {
        let all = || {
            self.clusters
                .iter()
                .flat_map(|c| c.hosts.iter().map(move |h| (c, h)))
        };
        all()
            .find(|(_, h)| h.name == host)
            .or_else(|| all().find(|(_, h)| h.mysql_addr() == host))
            .or_else(|| all().find(|(_, h)| h.address == host))
    }
}

/// The process a configuration is loaded for: it decides which secrets
/// are resolved (a router or a read-only CLI reads no database password)
/// and which credential is the process's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The manager: database passwords and the manager's token.
    Manager,
    /// The agent of this host: its cluster's admin password and the
    /// host's own token.
    Agent(String),
    /// The router of this cluster: the router's token only.
    Router(String),
    /// The CLI. `database`: it reads the servers itself (`myha check`)
    /// and needs the admin password.
    Cli { database: bool },
}

/// What a credential in `access:` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessRole {
    /// The manager: the only one agents take fences and VIP moves from.
    Manager,
    /// The agent of one host (`host:`): it may report for that host only.
    Agent,
    /// Everything the CLI does: status, history, switchover, failover,
    /// rejoin, acknowledging a failover.
    Operator,
    /// Read-only: status, history, the routing view.
    Monitor,
    /// The routing view only.
    Router,
}

impl AccessRole {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manager => "manager",
            Self::Agent => "agent",
            Self::Operator => "operator",
            Self::Monitor => "monitor",
            Self::Router => "router",
        }
    }
}

impl fmt::Display for AccessRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of a token: what a verifier keeps instead of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Parses 64 hexadecimal digits (an optional `sha256:` prefix allowed).
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.trim();
        let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Whether `token` hashes to this, compared in constant time.
    pub fn matches(&self, token: &str) -> bool {
        self.matches_hash(&Self::of(token))
    }

    /// Equality in constant time.
    pub fn matches_hash(&self, other: &TokenHash) -> bool {
        other
            .0
            .iter()
            .zip(&self.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}…", &self.to_hex()[..12])
    }
}

/// One entry of `access:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// Who holds it: shown in the journal of what it did.
    pub name: String,
    pub role: AccessRole,
    /// With role `agent`: the host it speaks for.
    pub host: Option<String>,
    pub token_sha256: TokenHash,
    /// Line and column of its hash in the file.
    pub at: (u32, u32),
}

/// `tls:` — TLS of the manager's, the agents' and the routers' HTTP APIs,
/// and of the clients that call them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The CA that signs the servers' certificates (and the clients', with
    /// `client_auth`).
    pub ca_file: PathBuf,
    /// This process's certificate (servers; clients with `client_auth`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Servers require a client certificate signed by `ca_file`.
    pub client_auth: bool,
}

/// A cluster's `mysql_tls:` — TLS on myha's connections to the servers
/// and on replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlTlsConfig {
    /// CA that signs the servers' certificates (on the myha host).
    pub ca_file: PathBuf,
    /// The name the servers' certificates carry, when they do not name
    /// the hosts' addresses (default: each host's `address` is checked).
    pub server_name: Option<String>,
    /// Replicas connect to the master with TLS (`MASTER_SSL=1`).
    pub replication: bool,
    /// CA path on the database hosts: replicas verify the master's
    /// certificate with it (`MASTER_SSL_CA`, `MASTER_SSL_VERIFY_SERVER_CERT`).
    pub replication_ca: Option<String>,
}

/// `manager:` — the failover manager process.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerConfig {
    /// Address the manager's HTTP API listens on.
    pub listen: SocketAddr,
    /// This manager's own URL (no trailing `/`): agents, routers and the
    /// CLI use it when `urls` is not set; with several managers, it is
    /// this one's identity (peers forward actions to the leader's).
    pub url: String,
    /// Every manager's URL, in the order agents, routers and the CLI try
    /// them (`[url]` when `urls:` is not set).
    pub urls: Vec<String>,
    /// How several managers agree on one leader; `Embedded` by default.
    pub coordination: Coordination,
    /// The hash of the manager's token: agents accept fences and VIP moves
    /// only from its holder.
    pub token_sha256: TokenHash,
    /// Where the manager keeps its durable state.
    pub state_dir: PathBuf,
    pub probe_interval: Duration,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// Every journaled event is POSTed as JSON to each of these.
    pub webhooks: Vec<Webhook>,
}

/// `manager.webhooks[]`: an HTTP endpoint notified of every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// `http(s)://…`; the event is the request's JSON body.
    pub url: String,
    /// Bound of one attempt.
    pub timeout: Duration,
    /// Further attempts after a failed one (1 s, 2 s, 4 s … apart).
    pub retries: u32,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<Secret>,
}

/// `manager.coordination`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Coordination {
    /// One manager, its durable state in `state_dir`.
    #[default]
    Embedded,
    /// Several managers on etcd: one leader, shared state under `prefix`.
    Etcd(EtcdConfig),
}

/// `manager.coordination.etcd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Every key myha writes starts with it (no trailing `/`).
    pub prefix: String,
    /// TTL of the leader's lease: a dead leader is replaced after at most
    /// this long.
    pub lease_ttl: Duration,
    /// Bound of one etcd request.
    pub request_timeout: Duration,
    /// TLS to the members (`https://` endpoints): the CA that signs their
    /// certificates, and the manager's own client certificate when the
    /// members require one (`--client-cert-auth`).
    pub tls: Option<EtcdTls>,
}

/// `manager.coordination.etcd.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl EtcdConfig {
    /// How long before its lease could expire a leader stops acting when
    /// it cannot renew: a third of the TTL, so that a leader that stops
    /// hearing from etcd has stopped before any other manager can be
    /// elected (clock rates differ by far less than that).
    pub fn stop_margin(&self) -> Duration {
        myha_core::leadership::stop_margin(self.lease_ttl)
    }
}

/// `agent:` — settings shared by every per-host agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Default HTTP port of an agent (a host's `agent_port` overrides it).
    pub port: u16,
    /// How often an agent samples its local server.
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// Timeout of an agent's report to the manager.
    pub report_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            port: defaults::AGENT_PORT,
            interval: defaults::AGENT_INTERVAL,
            connect_timeout: defaults::AGENT_CONNECT_TIMEOUT,
            query_timeout: defaults::AGENT_QUERY_TIMEOUT,
            report_timeout: defaults::AGENT_REPORT_TIMEOUT,
        }
    }
}

/// Server flavor of a cluster. YAML: `mariadb` or `mysql`. The type is the
/// flavor layer's own, so configuration and SQL never disagree.
pub use myha_core::flavor::Flavor;

/// A database account.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// One entry of `clusters:`: a replication topology managed as a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub flavor: Flavor,
    /// Account myha uses to monitor and reconfigure servers.
    pub admin: Credentials,
    /// Account replicas use to connect to the master.
    pub replication: Credentials,
    /// A replica lagging more than this is not promoted.
    pub max_lag: Duration,
    /// `db.table` written by the heartbeat.
    pub heartbeat_table: String,
    pub auto_failover: bool,
    pub auto_rejoin: bool,
    /// After a failover, further automatic failovers are refused this long.
    pub failover_block_period: Duration,
    /// How long evidence of a dead master must persist before failover.
    pub master_down_after: Duration,
    /// The master's commits wait for a semi-sync acknowledgement; when no
    /// replica has been able to acknowledge for this long (and the manager
    /// reads the master, under the current epoch), the manager degrades
    /// semi-sync to asynchronous, and restores it when a replica is back.
    pub semi_sync_degrade_after: Duration,
    /// Reinstate a diverged former master automatically when its extra
    /// transactions were never acknowledged (saved, then undone by binlog
    /// flashback), as `myha rejoin HOST --force` does.
    pub auto_reinstate: bool,
    pub vip: Option<VipConfig>,
    pub hooks: HooksConfig,
    pub router: Option<RouterConfig>,
    pub mysql_tls: Option<MysqlTlsConfig>,
    /// Hosts whose `cluster:` names this cluster, in file order (never empty).
    pub hosts: Vec<HostConfig>,
}

impl ClusterConfig {
    /// The host called `name` in this cluster.
    pub fn host(&self, name: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// A writable master whose agent has had no answer from the manager
    /// for this long, and reaches no other host of the cluster, fences
    /// itself: `max(master_down_after, 1 s)`.
    pub fn self_fence_after(&self) -> std::time::Duration {
        self.master_down_after
            .max(std::time::Duration::from_secs(1))
    }

    /// How long after the manager last heard from an old master's agent a
    /// failover may promote when it could fence the old master neither
    /// directly nor through its agent: the self-fence delay, plus time for
    /// that agent's sample, its peer check (300 ms) and the fence itself;
    /// and past the end of the master's lease (renewed up to one agent
    /// interval after its last report, for `self_fence_after` rounded up
    /// to the next second).
    pub fn self_fenced_by(&self, agent_interval: std::time::Duration) -> std::time::Duration {
        self.self_fence_after()
            .saturating_add(agent_interval)
            .saturating_add(std::time::Duration::from_millis(1250))
    }
}

/// One entry of `hosts:`: a database server with its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub name: String,
    /// IP address or DNS name of the server and its agent.
    pub address: String,
    /// MySQL/MariaDB port.
    pub port: u16,
    pub agent_port: u16,
    /// Preferred when choosing a new master.
    pub candidate_master: bool,
    /// Never promoted.
    pub no_master: bool,
    /// Higher is preferred among otherwise equal candidates.
    pub priority: i32,
    /// The router's weight for this server in the reader pool (strategy
    /// `weighted`); 0 keeps it out of the pool.
    pub weight: u32,
    /// The hash of this host's agent token: the manager takes reports for
    /// this host only from its holder.
    pub token_sha256: TokenHash,
    /// The agent's API is served over TLS (`tls:` is set).
    pub tls: bool,
}

impl HostConfig {
    /// `http(s)://address:agent_port` (IPv6 addresses in brackets).
    pub fn agent_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}:{}",
            self.bracketed_address(),
            self.agent_port
        )
    }

    /// `address:port` of the database server (IPv6 addresses in brackets).
    pub fn mysql_addr(&self) -> String {
        format!("{}:{}", self.bracketed_address(), self.port)
    }

    fn bracketed_address(&self) -> String {
        if self.address.parse::<Ipv6Addr>().is_ok() {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        }
    }
}

/// `vip:` — a virtual IP moved to the master on failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Network interface the address is added to.
    pub interface: String,
    /// Gratuitous ARP packets sent after moving the address.
    pub arp_count: u32,
}

/// `hooks:` — external commands run around a failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    pub pre_failover: Option<String>,
    pub post_failover: Option<String>,
    pub on_failure: Option<String>,
    /// Run before a switchover; a non-zero exit aborts it.
    pub pre_switchover: Option<String>,
    /// Run after a completed switchover.
    pub post_switchover: Option<String>,
    /// MHA-compatible `master_ip_failover` script.
    pub master_ip_failover_script: Option<String>,
    /// Each hook is killed after this long.
    pub timeout: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            pre_failover: None,
            post_failover: None,
            on_failure: None,
            pre_switchover: None,
            post_switchover: None,
            master_ip_failover_script: None,
            timeout: defaults::HOOK_TIMEOUT,
        }
    }
}

/// Load-balancing strategy of the router's reader port.
/// YAML: `round_robin`, `weighted`, `least_connections`, `address_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Weighted,
    LeastConnections,
    AddressHash,
}

impl Strategy {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Weighted => "weighted",
            Self::LeastConnections => "least_connections",
            Self::AddressHash => "address_hash",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the router moves bytes between a client and its backend.
/// YAML: `userspace`, `nat` (`kernel`, the BPF sockmap relay, was retired:
/// the configuration refuses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Relay {
    /// The router reads and writes every byte (tokio, 16 KiB buffers).
    #[default]
    Userspace,
    /// The kernel forwards new connections to the chosen backend by
    /// destination NAT (nftables, LVS-NAT style); the router only writes the
    /// rules, and serves in user space whatever the rules do not take
    /// (held writer connections, `least_connections` reads). IPv4, root;
    /// falls back to `userspace` when nftables is unavailable.
    Nat,
}

impl Relay {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Userspace => "userspace",
            Self::Nat => "nat",
        }
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `router:` — the built-in TCP router in front of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Connections here go to the master.
    pub writer_listen: SocketAddr,
    /// Connections here are spread over the replicas.
    pub reader_listen: SocketAddr,
    /// Router status/health API.
    pub http_listen: SocketAddr,
    pub strategy: Strategy,
    /// Send reads to the master when no replica is usable.
    pub fallback_to_master: bool,
    /// How long new writer connections wait for a master during a failover.
    pub writer_hold_timeout: Duration,
    /// Keep polling sockets this long after the last byte before sleeping
    /// in epoll (zero: never busy-poll).
    pub busy_poll: Duration,
    /// Who moves the bytes of a relayed connection.
    pub relay: Relay,
    /// Open client connections per listener; more are refused at once.
    pub max_connections: u32,
    /// Open client connections from one source address per listener.
    pub max_connections_per_source: u32,
    /// A client that has not completed the MySQL handshake this long after
    /// connecting is disconnected.
    pub handshake_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            writer_listen: defaults::WRITER_LISTEN,
            reader_listen: defaults::READER_LISTEN,
            http_listen: defaults::HTTP_LISTEN,
            strategy: Strategy::default(),
            fallback_to_master: defaults::FALLBACK_TO_MASTER,
            writer_hold_timeout: defaults::WRITER_HOLD_TIMEOUT,
            busy_poll: defaults::BUSY_POLL,
            relay: Relay::default(),
            max_connections: defaults::ROUTER_MAX_CONNECTIONS,
            max_connections_per_source: defaults::ROUTER_MAX_CONNECTIONS_PER_SOURCE,
            handshake_timeout: defaults::ROUTER_HANDSHAKE_TIMEOUT,
        }
    }
}

/// `http(s)://<listen>`, the default manager URL.
pub(crate) fn default_url(listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{listen}")
}
