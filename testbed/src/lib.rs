//! The Docker test bed: each database host is a container built from
//! Debian packages (see `scripts/build-images`), on a private bridge network
//! of its own. mysqld is not the container's PID 1, so it can die while the
//! host lives. Faults: kill mysqld, kill/pause a container, cut a host off
//! the network (iptables inside the host), cut it off from the manager only.
//!
//! Every bed removes its containers, network and files when dropped, also
//! when a test panics; beds left behind by a killed test process are
//! removed by the next [`Bed::start`].
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod fakemysql;
pub mod flood;
pub mod ha;
pub mod router_path;

pub use ha::{CutProxy, EtcdCluster, HA_LEASE_TTL};

pub const IMAGE: &str = "myha/mariadb-host:10.11";
pub const ADMIN_USER: &str = "myha";
pub const ADMIN_PASSWORD: &str = "myha-admin-pw";
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "myha-repl-pw";
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "myha-app-pw";
const LABEL: &str = "org.myha.testbed";
/// Every bed network is a /24 of this range.
pub const BED_RANGE: &str = "10.213.0.0/16";
/// Where a TLS bed's MariaDB keeps its certificate, key and CA inside each
/// host (copied there, owned by `mysql`, by `myha-host-init`): the
/// cluster's `mysql_tls.replication_ca` is `{DB_TLS_DIR}/ca.pem`.
pub const DB_TLS_DIR: &str = "/etc/mysql/tls";
/// A name every database host's certificate carries besides its address:
/// the bed's own MariaDB clients check it when they connect through the VIP
/// or a router (addresses no single server's certificate names). No API
/// is reached by this name.
pub const DB_TLS_NAME: &str = "mariadb.bed.myha.test";

#[derive(Debug, thiserror::Error)]
pub enum BedError {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, BedError>;

fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BedError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(BedError::Command {
            cmd: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn docker(args: &[&str]) -> Result<String> {
    let out = run(Command::new("docker").args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Build the base images once per process (cached by Docker across runs).
pub fn ensure_images() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        run(Command::new(repo_root().join("scripts/build-images")).arg("--base-only"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(BedError::Other)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The PID of the test process a bed directory (`.../myha-t{pid}-{n}/...`)
/// named in `text` belongs to.
fn bed_owner(text: &str) -> Option<u32> {
    let at = text.find("myha-t")? + "myha-t".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Kill manager and router processes of beds whose test process is gone
/// (a harness killed before it could stop them): they would go on probing
/// the addresses of a network that no longer exists, and answer on a
/// gateway address a new bed may be given.
fn reap_stale_processes() {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // `myha manager|router` execs `myhad` with the same arguments;
        // an HA bed's etcd members carry the bed's directory too.
        let is_bed_daemon = (args
            .first()
            .is_some_and(|a| a.ends_with("/myha") || a.ends_with("/myhad"))
            && args.get(1).is_some_and(|a| a == "manager" || a == "router"))
            || (args.first().is_some_and(|a| a.ends_with("etcd"))
                && args.iter().any(|a| a == "--initial-cluster-token"));
        if !is_bed_daemon {
            continue;
        }
        let owner = args.iter().find_map(|a| bed_owner(a));
        if owner.is_some_and(|o| !pid_alive(o)) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// While beds exist, traffic to the beds' range that no bed network owns
/// (a bed that is gone) is dropped at once by a `blackhole` route, instead
/// of leaving by the default gateway and hanging until a connect timeout.
/// Each bed's own /24 route is more specific and wins. Idempotent.
fn add_blackhole() {
    let _ = Command::new("ip")
        .args(["route", "replace", "blackhole", BED_RANGE])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Remove the [`BED_RANGE`] blackhole route once no bed network (of any
/// test process, or the sandbox) remains. A bed that another process is
/// creating at the same instant may lose it: harmless for a live bed,
/// whose own /24 route is more specific.
pub fn remove_blackhole_if_unused() {
    match docker(&["network", "ls", "-q", "--filter", &format!("label={LABEL}")]) {
        Ok(nets) if nets.trim().is_empty() => {
            let _ = Command::new("ip")
                .args(["route", "del", "blackhole", BED_RANGE])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        _ => {}
    }
}

/// Remove containers and networks of beds whose test process is gone.
pub fn reap_stale() {
    reap_stale_processes();
    let Ok(list) = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        &format!("{{{{.ID}}}} {{{{.Label \"{LABEL}\"}}}}"),
    ]) else {
        return;
    };
    for line in list.lines() {
        if let Some((id, pid)) = line.split_once(' ') {
            if pid.parse::<u32>().is_ok_and(|p| !pid_alive(p)) {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
    }
    if let Ok(nets) = docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        &format!("{{{{.ID}}}} {{{{.Label \"{LABEL}\"}}}}"),
    ]) {
        for line in nets.lines() {
            if let Some((id, pid)) = line.split_once(' ') {
                if pid.parse::<u32>().is_ok_and(|p| !pid_alive(p)) {
                    let _ = docker(&["network", "rm", id]);
                }
            }
        }
    }
    remove_blackhole_if_unused();
}

/// What to start.
#[derive(Debug, Clone)]
pub struct BedOptions {
    /// Number of database hosts (db1 is the master).
    pub hosts: usize,
    /// The `myha` binary to run as agent (inside the hosts) and manager.
    pub myha_bin: PathBuf,
    /// Start an agent in every host.
    pub agents: bool,
    /// Start the manager on this machine.
    pub manager: bool,
    /// Extra YAML appended to the cluster's section (indented 4 spaces).
    pub cluster_yaml: String,
    /// Extra YAML appended to the `manager:` section (indented 2 spaces;
    /// the single manager's only).
    pub manager_yaml: String,
    /// Extra mysqld options for every host (my.cnf lines).
    pub mysqld_extra: String,
    /// Name prefix of containers and network (default: per test process).
    pub name: Option<String>,
    /// Where the config and logs go (default: a temporary directory).
    pub dir: Option<PathBuf>,
    /// Run this image, which has the agent installed, instead of
    /// bind-mounting `myha_bin` into the base image.
    pub image_with_agent: Option<String>,
    /// Configure a virtual IP (`<subnet>.100/24` on eth0) for the master.
    pub vip: bool,
    /// Configure and start a router on this machine (writer port 6033,
    /// reader 6034, HTTP 6035 on the bridge's address).
    pub router: bool,
    /// More keys for the router's section, e.g. `", relay: nat"`.
    pub router_extra: String,
    /// TLS everywhere: a CA of the bed's own signs a certificate for the
    /// manager and router (the gateway's address) and one per host (its
    /// address: its agent and its MariaDB); every HTTP API is https,
    /// MariaDB has `require_secure_transport=ON` and replication uses TLS.
    pub tls: bool,
    /// With `tls`: servers require client certificates (`client_auth`):
    /// agents, manager, router and CLI present their own.
    pub client_auth: bool,
    /// Managers on etcd (`manager.coordination`): 0, the default, runs
    /// one manager without coordination; `n` starts an etcd cluster of
    /// [`ha::ETCD_MEMBERS`] in the bed's directory and `n` managers on
    /// `{gateway}:7070..`, each with its own `manager-{i}.yaml` (its
    /// listen, url, state_dir and etcd endpoints: proxies a test can cut).
    pub ha_managers: usize,
    /// With `ha_managers`: etcd serves its clients over TLS and requires
    /// a client certificate (a CA of its own); the managers present one.
    pub etcd_tls: bool,
    /// With `ha_managers`: the managers reach etcd directly, not through
    /// proxies (a sandbox outlives the process that started it; its
    /// proxies would not).
    pub ha_direct: bool,
}

impl BedOptions {
    pub fn new(myha_bin: impl Into<PathBuf>) -> BedOptions {
        BedOptions {
            hosts: 3,
            myha_bin: myha_bin.into(),
            agents: true,
            manager: true,
            cluster_yaml: String::new(),
            mysqld_extra: String::new(),
            name: None,
            dir: None,
            image_with_agent: None,
            vip: false,
            router: false,
            router_extra: String::new(),
            // MYHA_BED_TLS=1 runs every bed (and so the whole suite) over TLS.
            tls: std::env::var_os("MYHA_BED_TLS").is_some_and(|v| v == "1"),
            client_auth: false,
            ha_managers: 0,
            etcd_tls: false,
            manager_yaml: String::new(),
            ha_direct: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub container: String,
    pub ip: String,
    pub server_id: u32,
}

/// A running test bed.
#[derive(Debug)]
pub struct Bed {
    pub prefix: String,
    pub network: String,
    /// The bridge's address on this machine, where the manager listens.
    pub gateway: String,
    pub dir: PathBuf,
    /// The manager's (and the CLI's, the router's) configuration. Each host
    /// has its own copy in [`Bed::host_dir`], the only directory of the bed
    /// its container sees.
    pub config_path: PathBuf,
    /// An operator's token: the CLI's (`cli.token_file`), for status,
    /// switchover, failover, rejoin.
    pub token: String,
    /// The manager's own token (agents take fences and VIP moves from it only).
    pub manager_token: String,
    /// A read-only credential (status, history, an agent's sample).
    pub monitor_token: String,
    /// The router's token (the routing view only).
    pub router_token: String,
    /// Each host's agent token, by host name.
    pub agent_tokens: BTreeMap<String, String>,
    /// Started with [`BedOptions::tls`].
    pub tls: bool,
    pub hosts: Vec<Host>,
    pub myha_bin: PathBuf,
    owner: String,
    manager: Option<Child>,
    router: Option<Child>,
    keep: bool,
    /// With [`BedOptions::ha_managers`]: etcd, the proxies, the managers.
    ha: Option<ha::HaManagers>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
pub const CLUSTER: &str = "bed";

impl Bed {
    /// Start a bed: network, hosts with replication from db1, agents, manager.
    pub fn start(opts: BedOptions) -> Result<Bed> {
        let daemon = daemon_bin(&opts.myha_bin);
        if !daemon.is_file() {
            return Err(BedError::Other(format!(
                "{} is missing: `myha agent|manager|router` runs it (cargo build -p myhad)",
                daemon.display()
            )));
        }
        ensure_images()?;
        reap_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = opts
            .name
            .clone()
            .unwrap_or_else(|| format!("myha-t{pid}-{n}"));
        let dir = opts
            .dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(&prefix));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BedError::Other(format!("{}: {e}", dir.display())))?;
        add_blackhole();

        // Beds of a test process carry its pid and are reaped once it is
        // gone; a named bed (the sandbox) is removed only explicitly.
        let owner = if opts.name.is_some() {
            "named".to_string()
        } else {
            pid.to_string()
        };
        // A /24 of our own; try the next on overlap with another bed.
        let mut created = None;
        for attempt in 0..60u32 {
            let octet = 20 + ((pid + n * 7 + attempt) % 200);
            let subnet = format!("10.213.{octet}.0/24");
            let res = docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &subnet,
                "--label",
                &format!("{LABEL}={owner}"),
                &prefix,
            ]);
            if res.is_ok() {
                created = Some(format!("10.213.{octet}"));
                break;
            }
        }
        let base = created.ok_or_else(|| BedError::Other("no free 10.213.x.0/24 subnet".into()))?;
        let mut bed = Bed {
            prefix: prefix.clone(),
            network: prefix.clone(),
            gateway: format!("{base}.1"),
            config_path: dir.join("myha.yaml"),
            dir,
            token: new_token()?,
            manager_token: new_token()?,
            monitor_token: new_token()?,
            router_token: new_token()?,
            agent_tokens: (1..=opts.hosts)
                .map(|i| Ok((format!("db{i}"), new_token()?)))
                .collect::<Result<_>>()?,
            tls: opts.tls,
            hosts: (1..=opts.hosts)
                .map(|i| Host {
                    name: format!("db{i}"),
                    container: format!("{prefix}-db{i}"),
                    ip: format!("{base}.{}", 10 + i),
                    server_id: i as u32,
                })
                .collect(),
            myha_bin: opts.myha_bin.clone(),
            owner,
            manager: None,
            router: None,
            keep: std::env::var_os("MYHA_KEEP_BED").is_some(),
            ha: None,
        };
        if opts.ha_managers > 0 {
            bed.ha = Some(ha::HaManagers::start(
                &bed.dir,
                opts.ha_managers,
                opts.ha_direct,
                opts.etcd_tls,
            )?);
        }
        bed.write_config(&opts)?;
        for h in bed.hosts.clone() {
            bed.run_host(&h, &opts)?;
        }
        for h in &bed.hosts {
            bed.wait_mysqld(&h.name, Duration::from_secs(60))?;
        }
        bed.setup_replication()?;
        if opts.manager {
            bed.start_manager()?;
        }
        if opts.router {
            bed.start_router()?;
        }
        Ok(bed)
    }

    fn write_config(&self, opts: &BedOptions) -> Result<()> {
        let gw = &self.gateway;
        let dir = &self.dir;
        let hash = |t: &str| myha_config::TokenHash::of(t).to_hex();
        write_private(&dir.join("manager.token"), &self.manager_token)?;
        write_private(&dir.join("operator.token"), &self.token)?;
        write_private(&dir.join("monitor.token"), &self.monitor_token)?;
        write_private(&dir.join("router.token"), &self.router_token)?;
        write_private(&dir.join("admin.pw"), ADMIN_PASSWORD)?;
        write_private(&dir.join("repl.pw"), REPL_PASSWORD)?;
        let scheme = self.scheme();
        // An HA bed's main configuration (agents', routers', the CLI's)
        // lists every manager; each manager's own differs in its block.
        let manager_block = match &self.ha {
            Some(ha) => self.ha_manager_block(ha, None),
            None => format!(
                "manager:\n  listen: {gw}:7070\n  url: {scheme}://{gw}:7070\n  token_file: manager.token\n  state_dir: {dir}/state\n  probe_interval: 250ms\n  connect_timeout: 300ms\n  query_timeout: 1s\n{extra}",
                dir = dir.display(),
                extra = opts.manager_yaml,
            ),
        };
        let mut yaml = format!(
            "# Written by the myha test bed. Secrets are the files next to this\n\
             # one (mode 0600); each host has a copy of this file in hosts/<name>/\n\
             # with its own agent token (and certificate), nothing else.\n\
             {manager_block}\
             agent:\n  port: 7071\n  interval: 250ms\n  connect_timeout: 300ms\n  query_timeout: 1s\n  report_timeout: 500ms\n  token_file: agent.token\n\
             cli:\n  token_file: operator.token\n",
        );
        if self.tls {
            yaml.push_str(
                "tls:\n  ca_file: tls/ca.pem\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n",
            );
            if opts.client_auth {
                yaml.push_str("  client_auth: true\n");
            }
        }
        yaml.push_str(&format!(
            "clusters:\n  - name: {CLUSTER}\n    flavor: mariadb\n    user: {ADMIN_USER}\n    password_file: admin.pw\n    replication_user: {REPL_USER}\n    replication_password_file: repl.pw\n"
        ));
        if self.tls {
            yaml.push_str(&format!(
                "    mysql_tls: {{ ca_file: tls/ca.pem, replication_ca: {DB_TLS_DIR}/ca.pem }}\n"
            ));
        }
        if opts.vip {
            yaml.push_str(&format!(
                "    vip: {{ address: {}/24, interface: eth0, arp_count: 3 }}\n",
                self.vip()
            ));
        }
        if opts.router {
            // One line, ending with `writer_hold_timeout: 10s }` (tests
            // and benchmarks derive other routers' configs from it).
            yaml.push_str(&format!(
                "    router: {{ token_file: router.token, writer_listen: {gw}:6033, reader_listen: {gw}:6034, http_listen: {gw}:6035, writer_hold_timeout: 10s{} }}\n",
                opts.router_extra,
            ));
        }
        for line in opts.cluster_yaml.lines() {
            yaml.push_str("    ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str("hosts:\n");
        for h in &self.hosts {
            yaml.push_str(&format!(
                "  - name: {}\n    cluster: {CLUSTER}\n    address: {}\n",
                h.name, h.ip
            ));
        }
        yaml.push_str("access:\n");
        yaml.push_str(&format!(
            "  - {{ name: manager, role: manager, token_sha256: {} }}\n",
            hash(&self.manager_token)
        ));
        for (host, token) in &self.agent_tokens {
            yaml.push_str(&format!(
                "  - {{ name: agent-{host}, role: agent, host: {host}, token_sha256: {} }}\n",
                hash(token)
            ));
        }
        for (name, token) in [
            ("operator", &self.token),
            ("monitor", &self.monitor_token),
            ("router", &self.router_token),
        ] {
            yaml.push_str(&format!(
                "  - {{ name: {name}, role: {name}, token_sha256: {} }}\n",
                hash(token)
            ));
        }
        write_file(&self.config_path, yaml.as_bytes(), 0o644)?;
        if let Some(ha) = &self.ha {
            for i in 0..ha.len() {
                let own = yaml.replacen(&manager_block, &self.ha_manager_block(ha, Some(i)), 1);
                write_file(&self.manager_config_n(i), own.as_bytes(), 0o644)?;
            }
        }

        // Each host: the YAML, its own agent token, the admin password
        // (its agent's), and with TLS its certificate, key and the CA.
        let tls = if self.tls {
            Some(BedTls::generate(&self.gateway, &self.hosts)?)
        } else {
            None
        };
        if let Some(t) = &tls {
            let d = dir.join("tls");
            write_file(&d.join("ca.pem"), t.ca_pem.as_bytes(), 0o644)?;
            write_file(&d.join("cert.pem"), t.gateway.0.as_bytes(), 0o644)?;
            write_private(&d.join("key.pem"), &t.gateway.1)?;
        }
        for h in &self.hosts {
            let hd = self.host_dir(&h.name);
            write_file(&hd.join("myha.yaml"), yaml.as_bytes(), 0o644)?;
            let token = self
                .agent_tokens
                .get(&h.name)
                .ok_or_else(|| BedError::Other(format!("no token for {}", h.name)))?;
            write_private(&hd.join("agent.token"), token)?;
            write_private(&hd.join("admin.pw"), ADMIN_PASSWORD)?;
            if let Some(t) = &tls {
                let (cert, key) = t
                    .hosts
                    .get(&h.name)
                    .ok_or_else(|| BedError::Other(format!("no certificate for {}", h.name)))?;
                let d = hd.join("tls");
                write_file(&d.join("ca.pem"), t.ca_pem.as_bytes(), 0o644)?;
                write_file(&d.join("cert.pem"), cert.as_bytes(), 0o644)?;
                write_private(&d.join("key.pem"), key)?;
            }
        }
        Ok(())
    }

    /// The directory of `host` (`{dir}/hosts/<name>`): the only part of
    /// the bed mounted into its container (at the same path), holding its
    /// copy of the configuration (`myha.yaml`), its `agent.token`, the
    /// admin password and, with TLS, its `tls/` files.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
    }

    /// `https` with [`BedOptions::tls`], else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The CA of a TLS bed, on this machine.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.join("tls").join("ca.pem"))
    }

    /// The manager's base URL.
    pub fn manager_url(&self) -> String {
        format!("{}://{}:7070", self.scheme(), self.gateway)
    }

    /// A host's agent base URL.
    pub fn agent_url(&self, host: &str) -> Result<String> {
        Ok(format!("{}://{}:7071", self.scheme(), self.host(host)?.ip))
    }

    /// An HTTP request with curl (`--cacert` of the bed's CA with TLS):
    /// the status code (0 when no HTTP answer came) and the body.
    pub fn http(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        self.http_within(method, url, token, body, Duration::from_secs(5))
    }

    /// [`Bed::http`] with its own time limit.
    pub fn http_within(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&str>,
        limit: Duration,
    ) -> Result<(u16, String)> {
        let mut cmd = Command::new("curl");
        let max_time = format!("{:.3}", limit.as_secs_f64());
        cmd.args([
            "-s",
            "--max-time",
            &max_time,
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(ca) = self.ca_file() {
            cmd.arg("--cacert").arg(ca);
            // With client_auth the servers want a certificate: this
            // machine's (the manager's) serves.
            cmd.arg("--cert")
                .arg(self.dir.join("tls/cert.pem"))
                .arg("--key")
                .arg(self.dir.join("tls/key.pem"));
        }
        // The token goes through stdin, not the command line (which
        // every local user can read in /proc).
        cmd.args(["-H", "@-"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        cmd.arg(url);
        let spawn_err = |source| BedError::Spawn {
            cmd: format!("curl {url}"),
            source,
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let header = token
                .map(|t| format!("Authorization: Bearer {t}\n"))
                .unwrap_or_default();
            let _ = stdin.write_all(header.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    fn run_host(&self, h: &Host, opts: &BedOptions) -> Result<()> {
        let host_dir = self.host_dir(&h.name);
        let hd = host_dir.display().to_string();
        let bin_mount = format!("{}:/usr/local/bin/myha:ro", opts.myha_bin.display());
        let agent_args = if opts.agents {
            format!("--config {hd}/myha.yaml --host {}", h.name)
        } else {
            String::new()
        };
        // `myha agent` runs `myhad` from its own directory.
        let daemon_mount = format!(
            "{}:/usr/local/bin/myhad:ro",
            daemon_bin(&opts.myha_bin).display()
        );
        let (mount, image) = match &opts.image_with_agent {
            Some(image) => (Vec::new(), image.as_str()),
            None => (
                vec!["-v", bin_mount.as_str(), "-v", daemon_mount.as_str()],
                IMAGE,
            ),
        };
        let label = format!("{LABEL}={}", self.owner);
        let mut env = vec![
            format!("MYHA_SERVER_ID={}", h.server_id),
            format!("MYHA_AGENT_ARGS={agent_args}"),
            format!("MYHA_MYSQLD_EXTRA={}", opts.mysqld_extra),
        ];
        if self.tls {
            env.push(format!("MYHA_TLS_DIR={hd}/tls"));
        }
        // Only this host's directory: not the manager's state, nor the
        // other hosts' tokens.
        let volume = format!("{hd}:{hd}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &h.container,
            "--hostname",
            &h.name,
            "--network",
            &self.network,
            "--ip",
            &h.ip,
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "NET_RAW",
            "--label",
            &label,
            "-v",
            &volume,
        ];
        for e in &env {
            args.extend(["-e", e.as_str()]);
        }
        args.extend(mount);
        args.push(image);
        docker(&args)?;
        Ok(())
    }

    /// Wait until the manager has adopted db1 as the master, finds it
    /// healthy and (with a VIP configured) has put the VIP on it.
    pub fn wait_ready(&self, limit: Duration) -> Result<()> {
        let vip = format!("{}/24", self.vip());
        let with_vip = std::fs::read_to_string(&self.config_path)
            .map(|c| c.contains("vip:"))
            .unwrap_or(false);
        wait_until(limit, "db1 adopted and healthy (VIP on it)", || {
            let st = self.status()?;
            let on_db1 = !with_vip
                || self
                    .exec("db1", &["ip", "-4", "addr", "show", "dev", "eth0"])?
                    .contains(&vip);
            Ok(st["epoch_master"] == "db1" && st["verdict"] == "healthy" && on_db1)
        })
    }

    /// The virtual IP of the bed (configured with `BedOptions::vip`).
    pub fn vip(&self) -> String {
        format!("{}.100", self.gateway.trim_end_matches(".1"))
    }

    fn client_ip(&self) -> String {
        format!("{}.200", self.gateway.trim_end_matches(".1"))
    }

    /// The `myha-writer` binary next to `myha`, built if missing.
    fn writer_bin(&self) -> Result<PathBuf> {
        let bin = self.myha_bin.with_file_name("myha-writer");
        if !bin.exists() {
            let release = self.myha_bin.to_string_lossy().contains("/release/");
            let mut cmd = Command::new("cargo");
            cmd.args(["build", "-q", "-p", "myha-testbed", "--bin", "myha-writer"])
                .current_dir(repo_root());
            if release {
                cmd.arg("--release");
            }
            run(&mut cmd)?;
        }
        Ok(bin)
    }

    /// Start a continuous writer in a client container on the bed's
    /// network, inserting sequential ids into `app.seq` through `host:port`.
    pub fn start_writer(&self, host: &str, port: u16) -> Result<Writer> {
        self.start_writer_with(host, port, 10_000)
    }

    /// Like [`Bed::start_writer`] with the writer's own query timeout.
    pub fn start_writer_with(
        &self,
        host: &str,
        port: u16,
        query_timeout_ms: u64,
    ) -> Result<Writer> {
        // On the master (db1 until the manager names another): on a
        // replica, root's write would be an errant transaction.
        let master = self
            .epoch_master()
            .ok()
            .and_then(|(_, m)| m)
            .unwrap_or_else(|| "db1".to_string());
        self.sql(
            &master,
            "CREATE TABLE IF NOT EXISTS app.seq (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
        )?;
        let bin = self.writer_bin()?;
        let name = format!("{}-client", self.prefix);
        // The client container sees its own directory only.
        let client_dir = self.dir.join("client");
        std::fs::create_dir_all(&client_dir)
            .map_err(|e| BedError::Other(format!("{}: {e}", client_dir.display())))?;
        let out = client_dir.join("writer.log");
        let stop = client_dir.join("writer.stop");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&stop);
        let mut tls_args = Vec::new();
        if let Some(ca) = self.ca_file() {
            let copy = client_dir.join("ca.pem");
            std::fs::copy(&ca, &copy)
                .map_err(|e| BedError::Other(format!("{}: {e}", copy.display())))?;
            tls_args = vec![
                "--ssl-ca".to_string(),
                copy.display().to_string(),
                "--ssl-name".to_string(),
                DB_TLS_NAME.to_string(),
            ];
        }
        let dir = client_dir.display().to_string();
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &self.network,
            "--ip",
            &self.client_ip(),
            "--label",
            &format!("{LABEL}={}", self.owner),
            "-v",
            &format!("{dir}:{dir}"),
            "-v",
            &format!("{}:/usr/local/bin/myha-writer:ro", bin.display()),
            "--entrypoint",
            "/usr/local/bin/myha-writer",
            IMAGE,
            "--host",
            host,
            "--port",
            &port.to_string(),
            "--out",
            &out.display().to_string(),
            "--stop-file",
            &stop.display().to_string(),
            "--query-timeout-ms",
            &query_timeout_ms.to_string(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(tls_args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)?;
        Ok(Writer {
            container: name,
            out,
            stop,
        })
    }

    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| BedError::Other(format!("no host {name} in this bed")))
    }

    /// Run a command inside a host.
    pub fn exec(&self, host: &str, cmd: &[&str]) -> Result<String> {
        let c = self.host(host)?.container.clone();
        let mut args = vec!["exec", c.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }

    /// Run SQL as root over the local socket; tab-separated rows, no header.
    pub fn sql(&self, host: &str, sql: &str) -> Result<String> {
        self.exec(host, &["mariadb", "-uroot", "-N", "-B", "-e", sql])
    }

    fn wait_mysqld(&self, host: &str, limit: Duration) -> Result<()> {
        wait_until(limit, &format!("mysqld on {host}"), || {
            Ok(self.exec(host, &["mariadb-admin", "ping"]).is_ok())
        })
    }

    fn setup_replication(&self) -> Result<()> {
        let Some(master) = self.hosts.first() else {
            return Ok(());
        };
        self.sql(
            &master.name,
            "SET GLOBAL read_only = OFF; SET GLOBAL rpl_semi_sync_master_enabled = ON",
        )?;
        for h in &self.hosts[1..] {
            self.sql(&h.name, &self.change_master_sql(&master.ip))?;
            self.sql(&h.name, "START SLAVE")?;
        }
        for h in &self.hosts[1..] {
            wait_until(
                Duration::from_secs(30),
                &format!("replication on {}", h.name),
                || {
                    let out = self.exec(
                        &h.name,
                        &["mariadb", "-uroot", "-e", "SHOW SLAVE STATUS\\G"],
                    )?;
                    Ok(out.contains("Slave_IO_Running: Yes")
                        && out.contains("Slave_SQL_Running: Yes"))
                },
            )?;
        }
        Ok(())
    }

    /// `CHANGE MASTER TO` the given master with GTID (`slave_pos`); over
    /// TLS, the master's certificate checked, in a TLS bed.
    pub fn change_master_sql(&self, master_ip: &str) -> String {
        let ssl = if self.tls {
            format!(
                ", MASTER_SSL=1, MASTER_SSL_CA='{DB_TLS_DIR}/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1"
            )
        } else {
            String::new()
        };
        format!(
            "CHANGE MASTER TO MASTER_HOST='{master_ip}', MASTER_PORT=3306, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
             MASTER_HEARTBEAT_PERIOD=0.5{ssl}"
        )
    }

    /// Start (or restart) the manager on this machine; on an HA bed,
    /// every manager.
    pub fn start_manager(&mut self) -> Result<()> {
        self.stop_manager();
        if self.ha.is_some() {
            for i in 0..self.ha_managers() {
                self.start_manager_n(i)?;
            }
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("manager.log"))
            .map_err(|e| BedError::Other(e.to_string()))?;
        let err = log
            .try_clone()
            .map_err(|e| BedError::Other(e.to_string()))?;
        let child = Command::new(&self.myha_bin)
            .args(["manager", "--config"])
            .arg(&self.config_path)
            .env("MYHA_LOG", "info,myha_manager=debug")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| BedError::Spawn {
                cmd: "myha manager".into(),
                source,
            })?;
        self.manager = Some(child);
        Ok(())
    }

    /// Start the router on this machine.
    pub fn start_router(&mut self) -> Result<()> {
        self.stop_router();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("router.log"))
            .map_err(|e| BedError::Other(e.to_string()))?;
        let err = log
            .try_clone()
            .map_err(|e| BedError::Other(e.to_string()))?;
        let child = Command::new(&self.myha_bin)
            .args(["router", "--config"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| BedError::Spawn {
                cmd: "myha router".into(),
                source,
            })?;
        self.router = Some(child);
        Ok(())
    }

    /// Stop the router as an operator would (SIGTERM: it retires its
    /// `relay: nat` rules), killing it if it takes more than 5 s.
    pub fn stop_router(&mut self) {
        if let Some(mut c) = self.router.take() {
            terminate(&mut c);
        }
    }

    /// SIGKILL the router: it gets no chance to clean up.
    pub fn kill_router(&mut self) {
        if let Some(mut c) = self.router.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The router process's pid, if it runs.
    pub fn router_pid(&self) -> Option<u32> {
        self.router.as_ref().map(Child::id)
    }

    /// The router's discovery answer.
    pub fn router_endpoints(&self) -> Result<serde_json::Value> {
        let (_, body) = self.http(
            "GET",
            &format!(
                "{}://{}:6035/v1/clusters/{CLUSTER}/endpoints",
                self.scheme(),
                self.gateway
            ),
            None,
            None,
        )?;
        serde_json::from_str(&body).map_err(|e| BedError::Other(format!("endpoints JSON: {e}")))
    }

    /// Stop the manager (SIGKILL: a crash, not a clean shutdown); on an
    /// HA bed, every manager.
    pub fn stop_manager(&mut self) {
        for i in 0..self.ha_managers() {
            self.kill_manager_n(i);
        }
        if let Some(mut c) = self.manager.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run the CLI against this bed's config.
    pub fn myha(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.myha_bin)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| BedError::Spawn {
                cmd: format!("myha {}", args.join(" ")),
                source,
            })
    }

    /// `myha status --json` for the bed's cluster, parsed.
    pub fn status(&self) -> Result<serde_json::Value> {
        let out = self.myha(&["status", "--json"])?;
        // 1 and 2 say the cluster needs attention (degraded, critical):
        // the answer is there all the same.
        if !matches!(out.status.code(), Some(0..=2)) {
            return Err(BedError::Other(format!(
                "myha status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let all: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| BedError::Other(format!("status JSON: {e}")))?;
        all.get(0)
            .cloned()
            .ok_or_else(|| BedError::Other("status lists no cluster".into()))
    }

    /// One server's entry in `myha status --json`.
    pub fn server_status(&self, host: &str) -> Result<serde_json::Value> {
        let st = self.status()?;
        st["servers"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == host))
            .cloned()
            .ok_or_else(|| BedError::Other(format!("{host} missing from status")))
    }

    // ---- faults ----

    /// SIGKILL mysqld; the host (container, agent) lives on.
    pub fn kill_mysqld(&self, host: &str) -> Result<()> {
        self.exec(host, &["myha-mysqld", "kill"]).map(|_| ())
    }

    /// SIGSTOP mysqld: the process stays, answers nothing (an overloaded
    /// or hung server as its clients see it); `resume_mysqld` ends it.
    pub fn stall_mysqld(&self, host: &str) -> Result<()> {
        self.exec(host, &["sh", "-c", "kill -STOP $(pgrep -x mariadbd)"])
            .map(|_| ())
    }

    pub fn resume_mysqld(&self, host: &str) -> Result<()> {
        self.exec(host, &["sh", "-c", "kill -CONT $(pgrep -x mariadbd)"])
            .map(|_| ())
    }

    pub fn start_mysqld(&self, host: &str) -> Result<()> {
        self.exec(host, &["myha-mysqld", "start"]).map(|_| ())
    }

    pub fn pause(&self, host: &str) -> Result<()> {
        docker(&["pause", &self.host(host)?.container]).map(|_| ())
    }

    pub fn unpause(&self, host: &str) -> Result<()> {
        docker(&["unpause", &self.host(host)?.container]).map(|_| ())
    }

    pub fn kill_container(&self, host: &str) -> Result<()> {
        docker(&["kill", &self.host(host)?.container]).map(|_| ())
    }

    /// Drop every packet in and out of the host but loopback.
    pub fn partition(&self, host: &str) -> Result<()> {
        self.exec(
            host,
            &["iptables", "-I", "INPUT", "!", "-i", "lo", "-j", "DROP"],
        )?;
        self.exec(
            host,
            &["iptables", "-I", "OUTPUT", "!", "-o", "lo", "-j", "DROP"],
        )?;
        Ok(())
    }

    /// Cut only the path between this machine (the manager) and the host.
    pub fn cut_from_manager(&self, host: &str) -> Result<()> {
        self.exec(
            host,
            &["iptables", "-I", "INPUT", "-s", &self.gateway, "-j", "DROP"],
        )?;
        self.exec(
            host,
            &[
                "iptables",
                "-I",
                "OUTPUT",
                "-d",
                &self.gateway,
                "-j",
                "DROP",
            ],
        )?;
        Ok(())
    }

    /// Undo `partition` / `cut_from_manager`.
    pub fn heal(&self, host: &str) -> Result<()> {
        self.exec(host, &["iptables", "-F"]).map(|_| ())
    }

    /// The tail of the manager's log, for failure messages; on an HA bed,
    /// every manager's with a header each, and etcd's.
    pub fn manager_log(&self) -> String {
        if let Some(ha) = &self.ha {
            return format!("{}{}", self.ha_manager_logs(40), ha.etcd.log_tails(10));
        }
        std::fs::read_to_string(self.dir.join("manager.log"))
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            })
            .unwrap_or_default()
    }
}

impl Bed {
    /// Leave the bed running after this process exits (the sandbox): the
    /// manager keeps running detached; returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.keep = true;
        // An HA bed: its managers and etcd members keep running too; their
        // pids go to files the sandbox's `down` reads.
        if let Some(ha) = self.ha.take() {
            for (name, pid) in ha.detach() {
                let _ = std::fs::write(self.dir.join(format!("{name}.pid")), pid.to_string());
            }
        }
        let pid = self.manager.as_ref().map(Child::id);
        // Dropping a Child neither kills nor waits for it.
        self.manager = None;
        if let Some(r) = self.router.take() {
            let _ = std::fs::write(self.dir.join("router.pid"), r.id().to_string());
        }
        pid
    }
}

/// SIGTERM `child` (a `relay: nat` router then retires its rules), SIGKILL
/// if it has not ended within 5 s.
pub fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The nftables table of a `relay: nat` router whose writer listens on
/// `writer_listen` (`ip:port`), as the router names it (empty when it is
/// not an IPv4 `ip:port`: no router listens there).
pub fn nat_table_name(writer_listen: &str) -> String {
    writer_listen
        .parse()
        .map(myha_router::nat_table_name)
        .unwrap_or_default()
}

/// Where the VIP's packets go, for a writer that stopped hearing back:
/// the holders of the VIP with their MAC addresses, the application
/// host's neighbour entry for the VIP, its sockets to the VIP with their
/// retransmission state, each mysqld's state and the kernel lease rules.
pub fn vip_path_picture(bed: &Bed, app: &AppHost) -> String {
    let vip = bed.vip();
    let mut out = format!("  path to the VIP {vip}:\n");
    for h in bed.hosts.clone() {
        let text = bed
            .exec(
                &h.name,
                &[
                    "sh",
                    "-c",
                    &format!(
                        "ip -o -4 addr show | grep -F ' {vip}/' >/dev/null && echo 'holds the VIP'; \
                         ip -o link show eth0 | grep -o 'link/ether [0-9a-f:]*'; \
                         pgrep -x mariadbd >/dev/null && echo mariadbd up || echo mariadbd DOWN; \
                         iptables -t mangle -S 2>/dev/null | grep -v '^-P' | head -6; true"
                    ),
                ],
            )
            .unwrap_or_else(|e| e.to_string());
        out.push_str(&format!(
            "    {}: {}\n",
            h.name,
            text.trim().replace('\n', " | ")
        ));
    }
    let app = docker(&[
        "exec",
        &app.container,
        "sh",
        "-c",
        &format!("ip neigh show {vip}; ss -tnoi dst {vip} | head -20; true"),
    ])
    .unwrap_or_else(|e| e.to_string());
    out.push_str(&format!(
        "    app: {}\n",
        app.trim().replace('\n', "\n         ")
    ));
    out
}

/// `myhad`, the daemons' binary, next to `myha_bin` (`myha agent|manager|router`
/// runs it).
pub fn daemon_bin(myha_bin: &Path) -> PathBuf {
    myha_bin.with_file_name("myhad")
}

/// Delete a router's retired table (its bed or sandbox is going away).
pub fn delete_nat_table(writer_listen: &str) {
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &nat_table_name(writer_listen)])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop_manager();
        self.stop_router();
        // Managers first, then their proxies and etcd.
        self.ha = None;
        // A `relay: nat` router leaves its retired table; the bed's
        // network goes, so does the table.
        delete_nat_table(&format!("{}:6033", self.gateway));
        if self.keep {
            eprintln!("MYHA_KEEP_BED: leaving {} in place", self.prefix);
            return;
        }
        let client = format!("{}-client", self.prefix);
        let app = format!("{}-app", self.prefix);
        let mut names: Vec<&str> = self.hosts.iter().map(|h| h.container.as_str()).collect();
        names.push(&client);
        names.push(&app);
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(names);
        let _ = docker(&args);
        let _ = docker(&["network", "rm", &self.network]);
        remove_blackhole_if_unused();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new random token: 256 bits from the system's random source, hex.
pub fn new_token() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| BedError::Other("the system's random source failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `path` (its directory created) with `mode`, created with that
/// mode (never readable by others in between) and set to it if it existed.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| BedError::Other(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(data).map_err(err)
}

/// A secret file: mode 0600 from its creation.
fn write_private(path: &Path, secret: &str) -> Result<()> {
    write_file(path, secret.as_bytes(), 0o600)
}

/// The certificates of a TLS bed: a CA of its own (its key never
/// written), one certificate for this machine (the manager and the router,
/// on the gateway's address) and one per host (its agent and its MariaDB,
/// on the host's address, and [`DB_TLS_NAME`]), as PEM (certificate, key).
struct BedTls {
    ca_pem: String,
    gateway: (String, String),
    hosts: BTreeMap<String, (String, String)>,
}

impl BedTls {
    fn generate(gateway: &str, hosts: &[Host]) -> Result<BedTls> {
        let mut leaves = vec![("myha manager".to_string(), vec![gateway.to_string()])];
        leaves.extend(
            hosts
                .iter()
                .map(|h| (h.name.clone(), vec![h.ip.clone(), DB_TLS_NAME.to_string()])),
        );
        let (ca_pem, mut pems) = issue_certificates("myha test bed CA", &leaves)?;
        let gateway = pems.remove(0);
        Ok(BedTls {
            gateway,
            hosts: hosts.iter().map(|h| h.name.clone()).zip(pems).collect(),
            ca_pem,
        })
    }
}

/// A CA of its own (its key never written) named `ca_name`, and one
/// certificate per `(name, subject alternative names)` it signs, for
/// servers and clients alike: the CA's PEM and each (certificate, key).
pub(crate) fn issue_certificates(
    ca_name: &str,
    leaves: &[(String, Vec<String>)],
) -> Result<(String, Vec<(String, String)>)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| BedError::Other(format!("certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).map_err(err)?.pem();
    let issuer = Issuer::new(ca, &ca_key);
    let pems = leaves
        .iter()
        .map(|(name, sans)| {
            let key = KeyPair::generate().map_err(err)?;
            let mut p = CertificateParams::new(sans.clone()).map_err(err)?;
            p.distinguished_name.push(DnType::CommonName, name);
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = p.signed_by(&key, &issuer).map_err(err)?;
            Ok((cert.pem(), key.serialize_pem()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((ca_pem, pems))
}

/// A running writer; see `myha-writer`.
#[derive(Debug)]
pub struct Writer {
    container: String,
    out: PathBuf,
    stop: PathBuf,
}

/// What a writer did.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// (id, unix ms) of every acknowledged insert, in order.
    pub acks: Vec<(u64, u64)>,
    /// (id, unix ms) of every failed attempt.
    pub errors: Vec<(u64, u64)>,
}

impl WriterLog {
    /// The longest time between two consecutive acknowledgements, in ms,
    /// and when it started.
    pub fn longest_gap(&self) -> (u64, u64) {
        self.acks
            .windows(2)
            .map(|w| (w[1].1.saturating_sub(w[0].1), w[0].1))
            .max()
            .unwrap_or((0, 0))
    }

    pub fn last_acked(&self) -> u64 {
        self.acks.last().map_or(0, |a| a.0)
    }
}

impl Writer {
    /// What the writer logged so far.
    pub fn log(&self) -> WriterLog {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut log = WriterLog::default();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let kind = parts.next();
            let id = parts.next().and_then(|v| v.parse().ok());
            let at = parts.next().and_then(|v| v.parse().ok());
            if let (Some(id), Some(at)) = (id, at) {
                match kind {
                    Some("ack") => log.acks.push((id, at)),
                    Some("err") => log.errors.push((id, at)),
                    _ => {}
                }
            }
        }
        log
    }

    /// Wait until the writer has at least `n` more acknowledgements than now.
    pub fn wait_acks(&self, n: usize, limit: Duration) -> Result<()> {
        let base = self.log().acks.len();
        wait_until(limit, &format!("{n} more acknowledged writes"), || {
            Ok(self.log().acks.len() >= base + n)
        })
    }

    /// Stop the writer and return its log.
    pub fn stop(self) -> WriterLog {
        let _ = std::fs::write(&self.stop, b"stop");
        let _ = wait_until(Duration::from_secs(15), "writer exit", || {
            Ok(docker(&["inspect", "-f", "{{.State.Running}}", &self.container])? == "false")
        });
        let log = self.log();
        let _ = docker(&["rm", "-f", &self.container]);
        log
    }
}

/// Poll `cond` every 50 ms until it holds or `limit` passes. Errors from
/// `cond` count as "not yet"; the last one is reported on timeout.
pub fn wait_until(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e.to_string()),
        }
        if start.elapsed() > limit {
            let detail = last_err
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(BedError::Timeout(limit, format!("{what}{detail}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raises this process's soft open-files limit to the hard one (a test
/// that opens thousands of connections): the router's own
/// [`myha_router::raise_fd_limit`]. Returns the soft limit now in force
/// (0 if it cannot be read).
pub fn raise_fd_limit() -> u64 {
    myha_router::raise_fd_limit().0
}

/// Opens `n` connections to `addr` and reads the MySQL server greeting on
/// each: proof that every one of them reached a server. Returns the open
/// connections (closed when dropped) and the server version they saw.
pub fn open_greeted(addr: &str, n: usize, timeout: Duration) -> Result<(Vec<TcpStream>, String)> {
    use std::io::Read;
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| BedError::Other(format!("{addr}: {e}")))?;
    let mut open = Vec::with_capacity(n);
    let mut version = String::new();
    for i in 0..n {
        let fail = |what: &str, e: std::io::Error| {
            BedError::Other(format!(
                "connection {} of {n} to {addr}: {what}: {e}",
                i + 1
            ))
        };
        let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| fail("connect", e))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| fail("set timeout", e))?;
        let mut header = [0u8; 4];
        s.read_exact(&mut header)
            .map_err(|e| fail("greeting header", e))?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)
            .map_err(|e| fail("greeting", e))?;
        // Protocol 10 handshake; 0xff would be an error packet.
        if payload.first() != Some(&10) {
            return Err(BedError::Other(format!(
                "connection {} of {n} to {addr}: not a server greeting: {}",
                i + 1,
                String::from_utf8_lossy(&payload)
            )));
        }
        if version.is_empty() {
            let end = payload.iter().skip(1).position(|b| *b == 0).unwrap_or(0);
            version = String::from_utf8_lossy(&payload[1..1 + end]).into_owned();
        }
        open.push(s);
    }
    Ok((open, version))
}

// ---------------------------------------------------------------------
// Gray failures (issue 11): a sampler of writable servers and VIP
// holders, patient writers that record every acknowledged id, the
// asymmetric faults, and the fault campaign shared by `myha-chaos` and
// `tests/chaos.rs`.
// ---------------------------------------------------------------------

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// The table patient writers insert into (on the bed's `app` database).
pub const PATIENT_TABLE: &str = "app.patient";

/// How often the [`Sampler`] looks at every host.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How long one host's answer may take within a sample.
const SAMPLE_BUDGET: Duration = Duration::from_millis(80);

/// A host whose state could not be read for this long, then answers,
/// is "just resumed" for [`RESUME_GRACE`]: see [`SplitReport`].
const RESUME_AFTER: Duration = Duration::from_secs(1);
const RESUME_GRACE: Duration = Duration::from_millis(300);

/// Every attempted insert of every patient writer of this process gets
/// its own id: unique across writers, paths and faults.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host pid of a running container's init, `None` when it is not
/// running.
fn container_pid(container: &str) -> Option<u32> {
    docker(&["inspect", "-f", "{{.State.Pid}}", container])
        .ok()?
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Move the calling thread into the network namespace of `pid`: its
/// sockets then live there (loopback is the container's loopback, its
/// iptables rules apply as to the container's own processes).
fn enter_netns_of(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/ns/net");
    let f = std::fs::File::open(&path).map_err(|e| BedError::Other(format!("{path}: {e}")))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| BedError::Other(format!("setns {path}: {e}")))
}

/// Whether the cgroup of `pid` is frozen (`docker pause`); cgroup v1
/// freezer or v2 `cgroup.events`.
fn is_frozen(pid: u32) -> Option<bool> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrl.split(',').any(|c| c == "freezer") {
            let s = std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
                .ok()?;
            return Some(s.trim() != "THAWED");
        }
    }
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let events = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cgroup.events")).ok()?;
    Some(events.lines().any(|l| l.trim() == "frozen 1"))
}

/// Whether the network namespace of `pid` has `ip` as a local address
/// (read from the kernel's FIB, no process spawned).
fn holds_address(pid: u32, ip: &str) -> Option<bool> {
    let trie = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).ok()?;
    let needle = format!("|-- {ip}");
    let mut in_leaf = false;
    for line in trie.lines() {
        let l = line.trim();
        if l.starts_with('/') {
            if in_leaf && l.starts_with("/32 host LOCAL") {
                return Some(true);
            }
        } else {
            in_leaf = l == needle;
        }
    }
    Some(false)
}

/// One look at every host, taken at (nearly) the same instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `read_only = 0`, or `None` when mysqld did not answer in time (a
    /// frozen or stopped server, a dead one): it cannot acknowledge either.
    pub writable: Vec<Option<bool>>,
    /// Holds the VIP, or `None` when the host is frozen or down.
    pub vip: Vec<Option<bool>>,
    /// The host just answered again after at least 1 s without an answer
    /// (resumed from a freeze or a SIGSTOP): within 300 ms of that.
    pub writable_resumed: Vec<bool>,
    pub vip_resumed: Vec<bool>,
}

/// What the sampler saw over a time range.
///
/// A host that resumes from a freeze (`docker pause`, SIGSTOP of mysqld)
/// answers with whatever state it froze in, at the same instant its agent
/// resumes: no agent can fence a server before the server runs again. Two
/// writable servers (or VIP holders) where one of them is within 300 ms of
/// its first answer after ≥ 1 s of silence are counted apart
/// (`*_resumed`), not as split-brain; everything else counts.
#[derive(Debug, Clone, Default)]
pub struct SplitReport {
    pub samples: usize,
    pub max_writable: usize,
    pub max_vip: usize,
    /// Samples with two or more writable servers.
    pub split_writable: usize,
    /// Samples with two or more hosts holding the VIP.
    pub split_vip: usize,
    pub resumed_writable: usize,
    pub resumed_vip: usize,
    /// The longest time between two samples, ms (proves the ≤ 100 ms).
    pub max_interval_ms: u64,
    /// Per host: samples without an answer from mysqld.
    pub unanswered: Vec<(String, usize)>,
    /// The first split samples, described.
    pub episodes: Vec<String>,
}

impl SplitReport {
    pub fn clean(&self) -> bool {
        self.split_writable == 0 && self.split_vip == 0
    }
}

impl std::fmt::Display for SplitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} samples (max interval {} ms): max writable {}, max VIP holders {}, \
             split samples: writable {}, VIP {} (just-resumed: writable {}, VIP {}); unanswered {:?}",
            self.samples,
            self.max_interval_ms,
            self.max_writable,
            self.max_vip,
            self.split_writable,
            self.split_vip,
            self.resumed_writable,
            self.resumed_vip,
            self.unanswered
        )?;
        for e in &self.episodes {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Count one sample's `(all, settled)` writable servers (or VIP holders):
/// two or more settled ones are a split (the first 12 splits of a report
/// are described in `episodes`), two or more with a just-resumed one among
/// them are counted apart.
fn tally(
    (all, settled): (usize, usize),
    split: &mut usize,
    resumed: &mut usize,
    episodes: &mut Vec<String>,
    episode: impl FnOnce() -> String,
) {
    if all < 2 {
        return;
    }
    if settled >= 2 {
        *split += 1;
        if episodes.len() < 12 {
            episodes.push(episode());
        }
    } else {
        *resumed += 1;
    }
}

struct HostAnswer {
    tick: u64,
    idx: usize,
    writable: Option<bool>,
    vip: Option<bool>,
}

/// Samples every host every 100 ms: is mysqld writable (`@@read_only`,
/// asked over the container's own loopback from a thread inside its
/// network namespace, so partitions and iptables rules do not blind it),
/// and does the host hold the VIP (the kernel's FIB of its namespace).
#[derive(Debug)]
pub struct Sampler {
    hosts: Vec<String>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub started: Instant,
}

impl Sampler {
    pub fn start(bed: &Bed) -> Result<Sampler> {
        // Taken before the threads start: a first sample may be recorded
        // before this function returns, and `report` counts from here.
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (tick_tx, tick_rx) = tokio::sync::watch::channel(0u64);
        let (ans_tx, ans_rx) = mpsc::channel::<HostAnswer>();
        let mut threads = Vec::new();
        let vip = bed.vip();
        let ca = bed.ca_file();
        for (idx, h) in bed.hosts.iter().enumerate() {
            let container = h.container.clone();
            let vip = vip.clone();
            let ca = ca.clone();
            let ticks = tick_rx.clone();
            let out = ans_tx.clone();
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("sample-{}", h.name))
                .spawn(move || sample_host(&container, &vip, ca, idx, ticks, &out, &stop))
                .map_err(|e| BedError::Other(format!("sampler thread: {e}")))?;
            threads.push(t);
        }
        drop(ans_tx);
        let n = bed.hosts.len();
        let all = samples.clone();
        let stop2 = stop.clone();
        let t = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || coordinate(n, &tick_tx, &ans_rx, &all, &stop2))
            .map_err(|e| BedError::Other(format!("sampler thread: {e}")))?;
        threads.push(t);
        Ok(Sampler {
            hosts: bed.hosts.iter().map(|h| h.name.clone()).collect(),
            samples,
            stop,
            threads,
            started,
        })
    }

    /// Samples taken so far.
    pub fn count(&self) -> usize {
        lock(&self.samples).len()
    }

    /// Wait until at least one sample answered for every host.
    pub fn wait_warm(&self, limit: Duration) -> Result<()> {
        wait_until(limit, "sampler sees every host", || {
            Ok(lock(&self.samples)
                .iter()
                .rev()
                .take(5)
                .any(|s| s.writable.iter().all(Option::is_some)))
        })
    }

    /// Everything seen so far.
    pub fn report(&self) -> SplitReport {
        self.report_between(self.started, Instant::now() + Duration::from_secs(3600))
    }

    /// What was seen between `from` and `to`.
    pub fn report_between(&self, from: Instant, to: Instant) -> SplitReport {
        let samples = lock(&self.samples);
        let mut r = SplitReport {
            unanswered: self.hosts.iter().map(|h| (h.clone(), 0)).collect(),
            ..SplitReport::default()
        };
        let mut prev: Option<Instant> = None;
        let names = |flags: &[Option<bool>]| -> String {
            flags
                .iter()
                .zip(&self.hosts)
                .filter(|(f, _)| **f == Some(true))
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        for s in samples.iter().filter(|s| s.at >= from && s.at <= to) {
            r.samples += 1;
            if let Some(p) = prev {
                r.max_interval_ms = r.max_interval_ms.max(ms(s.at.duration_since(p)));
            }
            prev = Some(s.at);
            for (i, w) in s.writable.iter().enumerate() {
                if w.is_none() {
                    if let Some(u) = r.unanswered.get_mut(i) {
                        u.1 += 1;
                    }
                }
            }
            let count = |flags: &[Option<bool>], resumed: &[bool]| -> (usize, usize) {
                let all = flags.iter().filter(|f| **f == Some(true)).count();
                let settled = flags
                    .iter()
                    .zip(resumed)
                    .filter(|(f, r)| **f == Some(true) && !**r)
                    .count();
                (all, settled)
            };
            let (w_all, w_settled) = count(&s.writable, &s.writable_resumed);
            let (v_all, v_settled) = count(&s.vip, &s.vip_resumed);
            r.max_writable = r.max_writable.max(w_all);
            r.max_vip = r.max_vip.max(v_all);
            let at = s.at.duration_since(self.started).as_secs_f64();
            tally(
                (w_all, w_settled),
                &mut r.split_writable,
                &mut r.resumed_writable,
                &mut r.episodes,
                || format!("t+{at:.2}s writable: {}", names(&s.writable)),
            );
            tally(
                (v_all, v_settled),
                &mut r.split_vip,
                &mut r.resumed_vip,
                &mut r.episodes,
                || format!("t+{at:.2}s VIP held by: {}", names(&s.vip)),
            );
        }
        r
    }

    /// Stop sampling; what was seen.
    pub fn stop(mut self) -> SplitReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The sampler's clock: every 100 ms, ask every host at once, collect the
/// answers that come within the budget, record the sample.
fn coordinate(
    n: usize,
    ticks: &tokio::sync::watch::Sender<u64>,
    answers: &mpsc::Receiver<HostAnswer>,
    samples: &Mutex<Vec<Sample>>,
    stop: &AtomicBool,
) {
    let mut tick = 0u64;
    let mut next = Instant::now();
    // Per host: since when unanswered, and until when "just resumed".
    let mut w_silent: Vec<Option<Instant>> = vec![None; n];
    let mut v_silent: Vec<Option<Instant>> = vec![None; n];
    let mut w_grace: Vec<Option<Instant>> = vec![None; n];
    let mut v_grace: Vec<Option<Instant>> = vec![None; n];
    while !stop.load(Ordering::SeqCst) {
        tick += 1;
        let at = Instant::now();
        let _ = ticks.send(tick);
        let deadline = at + SAMPLE_BUDGET + Duration::from_millis(5);
        let mut writable = vec![None; n];
        let mut vip = vec![None; n];
        let mut got = 0;
        while got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match answers.recv_timeout(left) {
                Ok(a) if a.tick == tick => {
                    if let (Some(w), Some(v)) = (writable.get_mut(a.idx), vip.get_mut(a.idx)) {
                        *w = a.writable;
                        *v = a.vip;
                    }
                    got += 1;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let track = |flags: &[Option<bool>],
                     silent: &mut [Option<Instant>],
                     grace: &mut [Option<Instant>]|
         -> Vec<bool> {
            flags
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let (Some(s), Some(g)) = (silent.get_mut(i), grace.get_mut(i)) else {
                        return false;
                    };
                    if f.is_none() {
                        s.get_or_insert(at);
                    } else if let Some(since) = s.take() {
                        if at.duration_since(since) >= RESUME_AFTER {
                            *g = Some(at + RESUME_GRACE);
                        }
                    }
                    g.is_some_and(|g| at < g)
                })
                .collect()
        };
        let writable_resumed = track(&writable, &mut w_silent, &mut w_grace);
        let vip_resumed = track(&vip, &mut v_silent, &mut v_grace);
        lock(samples).push(Sample {
            at,
            writable,
            vip,
            writable_resumed,
            vip_resumed,
        });
        next += SAMPLE_INTERVAL;
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// One host's sampling thread: lives in the host's network namespace
/// (re-entered when the container restarts with a new pid).
fn sample_host(
    container: &str,
    vip: &str,
    ca: Option<PathBuf>,
    idx: usize,
    mut ticks: tokio::sync::watch::Receiver<u64>,
    out: &mpsc::Sender<HostAnswer>,
    stop: &AtomicBool,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        use mysql_async::prelude::Queryable;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(3306)
            .user(Some(ADMIN_USER))
            .pass(Some(ADMIN_PASSWORD))
            .prefer_socket(false)
            .tcp_nodelay(true)
            // Over loopback: the certificate names the host's address.
            .ssl_opts(ssl_opts(ca.as_deref()));
        let tls = ca.is_some();
        let mut pid: Option<u32> = None;
        let mut in_netns: Option<u32> = None;
        let mut resolved_at: Option<Instant> = None;
        let mut conn: Option<mysql_async::Conn> = None;
        while ticks.changed().await.is_ok() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let tick = *ticks.borrow_and_update();
            let mut answer = HostAnswer {
                tick,
                idx,
                writable: None,
                vip: None,
            };
            if pid.is_none_or(|p| !pid_alive(p))
                && resolved_at.is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            {
                resolved_at = Some(Instant::now());
                pid = container_pid(container);
            }
            let Some(p) = pid.filter(|p| pid_alive(*p)) else {
                let _ = out.send(answer);
                continue;
            };
            if in_netns != Some(p) {
                conn = None;
                if enter_netns_of(p).is_err() {
                    pid = None;
                    let _ = out.send(answer);
                    continue;
                }
                in_netns = Some(p);
            }
            if is_frozen(p) == Some(true) {
                let _ = out.send(answer);
                continue;
            }
            answer.vip = holds_address(p, vip);
            // A TLS handshake may take longer than a sample's budget (a
            // debug build): the connection is made with a budget of its
            // own, that tick's answer is late, later ones use it.
            let started = Instant::now();
            if conn.is_none() {
                let budget = if tls {
                    Duration::from_secs(2)
                } else {
                    SAMPLE_BUDGET
                };
                match tokio::time::timeout(budget, mysql_async::Conn::new(opts.clone())).await {
                    Ok(Ok(c)) => conn = Some(c),
                    _ => {
                        let _ = out.send(answer);
                        continue;
                    }
                }
            }
            let budget = if tls {
                SAMPLE_BUDGET
            } else {
                SAMPLE_BUDGET.saturating_sub(started.elapsed())
            };
            let asked = tokio::time::timeout(budget, async {
                match conn.as_mut() {
                    Some(c) => c
                        .query_first::<i64, _>("SELECT @@read_only")
                        .await
                        .map_err(|_| ()),
                    None => Err(()),
                }
            })
            .await;
            match asked {
                Ok(Ok(Some(ro))) => answer.writable = Some(ro == 0),
                _ => conn = None,
            }
            let _ = out.send(answer);
        }
    });
}

/// How a [`PatientWriter`] writes.
#[derive(Debug, Clone)]
pub struct PatientOptions {
    /// A name for reports ("vip", "router", "direct").
    pub label: String,
    /// The address the clients connect to: the master's own IP, the VIP,
    /// the router's address.
    pub host: String,
    pub port: u16,
    pub clients: usize,
    /// How many of the clients keep their connection (an application's
    /// pool), reconnecting only after an error; the others connect for
    /// every insert.
    pub persistent: usize,
    /// The client's patience for a connect and for each INSERT (an
    /// application's read timeout).
    pub timeout: Duration,
    /// Pause between two inserts of one client.
    pub pace: Duration,
    /// Run the clients inside this container's network namespace (an
    /// application host on the bed's network); `None`: this machine.
    pub netns_container: Option<String>,
    /// Connect with TLS, the server's certificate checked against this CA
    /// and for [`DB_TLS_NAME`] (clients reach the master by the VIP or a
    /// router). A TLS bed needs it: [`Bed::ca_file`].
    pub tls_ca: Option<PathBuf>,
}

impl PatientOptions {
    pub fn new(label: &str, host: &str, port: u16) -> PatientOptions {
        PatientOptions {
            label: label.to_string(),
            host: host.to_string(),
            port,
            clients: 5,
            persistent: 5,
            timeout: Duration::from_secs(60),
            pace: Duration::from_millis(20),
            netns_container: None,
            tls_ca: None,
        }
    }
}

/// One acknowledged insert.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub id: u64,
    pub client: usize,
    pub sent: Instant,
    pub acked: Instant,
}

#[derive(Debug, Default)]
struct PatientShared {
    acks: Vec<Ack>,
    errors: usize,
    last_error: Option<String>,
}

/// What a patient writer did.
#[derive(Debug, Clone, Default)]
pub struct PatientLog {
    pub label: String,
    pub acks: Vec<Ack>,
    pub errors: usize,
    pub last_error: Option<String>,
}

impl PatientLog {
    pub fn acked_ids(&self) -> Vec<u64> {
        self.acks.iter().map(|a| a.id).collect()
    }
}

/// Clients that insert unique ids into [`PATIENT_TABLE`] one at a time
/// (autocommit) with a long client timeout, and record every id the
/// server acknowledged (OK received).
#[derive(Debug)]
pub struct PatientWriter {
    pub label: String,
    shared: Arc<Mutex<PatientShared>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl PatientWriter {
    pub fn start(opts: PatientOptions) -> Result<PatientWriter> {
        let netns_pid = match &opts.netns_container {
            Some(c) => Some(
                container_pid(c)
                    .ok_or_else(|| BedError::Other(format!("container {c} is not running")))?,
            ),
            None => None,
        };
        let shared = Arc::new(Mutex::new(PatientShared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for client in 0..opts.clients {
            let opts = opts.clone();
            let shared = shared.clone();
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("{}-{client}", opts.label))
                .spawn(move || {
                    if let Some(pid) = netns_pid {
                        if let Err(e) = enter_netns_of(pid) {
                            lock(&shared).last_error = Some(e.to_string());
                            return;
                        }
                    }
                    patient_client(&opts, client, &shared, &stop);
                })
                .map_err(|e| BedError::Other(format!("writer thread: {e}")))?;
            threads.push(t);
        }
        Ok(PatientWriter {
            label: opts.label,
            shared,
            stop,
            threads,
        })
    }

    /// Every acknowledgement so far, in the order they came.
    pub fn acks(&self) -> Vec<Ack> {
        lock(&self.shared).acks.clone()
    }

    pub fn ack_count(&self) -> usize {
        lock(&self.shared).acks.len()
    }

    pub fn acked_ids(&self) -> Vec<u64> {
        lock(&self.shared).acks.iter().map(|a| a.id).collect()
    }

    pub fn errors(&self) -> usize {
        lock(&self.shared).errors
    }

    /// Wait until `n` more inserts are acknowledged than now.
    pub fn wait_acks(&self, n: usize, limit: Duration) -> Result<()> {
        let base = self.ack_count();
        wait_until(
            limit,
            &format!("{n} more acknowledged writes ({})", self.label),
            || Ok(self.ack_count() >= base + n),
        )
        .map_err(|e| {
            let last = lock(&self.shared).last_error.clone().unwrap_or_default();
            BedError::Other(format!("{e}; last error: {last}"))
        })
    }

    /// Stop: every client finishes the insert it has in flight (which may
    /// take up to its timeout), then the log.
    pub fn stop(mut self) -> PatientLog {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let s = lock(&self.shared);
        PatientLog {
            label: self.label.clone(),
            acks: s.acks.clone(),
            errors: s.errors,
            last_error: s.last_error.clone(),
        }
    }
}

impl Drop for PatientWriter {
    fn drop(&mut self) {
        // No join: a client may wait up to its timeout.
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn patient_client(
    opts: &PatientOptions,
    client: usize,
    shared: &Mutex<PatientShared>,
    stop: &AtomicBool,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let persistent = client < opts.persistent;
    rt.block_on(async move {
        use mysql_async::prelude::Queryable;
        let my = mysql_async::OptsBuilder::default()
            .ip_or_hostname(opts.host.clone())
            .tcp_port(opts.port)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some("app"))
            .prefer_socket(false)
            .tcp_nodelay(true)
            .ssl_opts(ssl_opts(opts.tls_ca.as_deref()));
        let fail = |what: String| {
            let mut s = lock(shared);
            s.errors += 1;
            s.last_error = Some(what);
        };
        let mut conn: Option<mysql_async::Conn> = None;
        while !stop.load(Ordering::SeqCst) {
            if conn.is_none() {
                match tokio::time::timeout(opts.timeout, mysql_async::Conn::new(my.clone())).await {
                    Ok(Ok(c)) => conn = Some(c),
                    Ok(Err(e)) => {
                        fail(format!("connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => {
                        fail("connect timeout".into());
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
            let sent = Instant::now();
            let sql = format!("INSERT INTO {PATIENT_TABLE} (id, c) VALUES ({id}, {client})");
            match tokio::time::timeout(opts.timeout, c.query_drop(sql)).await {
                Ok(Ok(())) => {
                    lock(shared).acks.push(Ack {
                        id,
                        client,
                        sent,
                        acked: Instant::now(),
                    });
                    if !persistent {
                        if let Some(c) = conn.take() {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
                        }
                    }
                    tokio::time::sleep(opts.pace).await;
                }
                Ok(Err(e)) => {
                    fail(format!("insert {id}: {e}"));
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    fail(format!("insert {id}: timeout"));
                    conn = None;
                }
            }
        }
    });
}

/// TLS options of a bed's MariaDB client: the bed's CA, and the name
/// every server's certificate carries, [`DB_TLS_NAME`], checked whatever
/// address the client connects to (loopback, the VIP, a router). `None`
/// (plain) without a CA.
///
/// Not `with_danger_skip_domain_validation`: mysql_async 0.37 recognises
/// the name mismatch by the text `NotValidForName` in the error, which
/// rustls 0.23 no longer prints (`NotValidForNameContext` displays as
/// "certificate not valid for name …"), so it skips nothing.
pub fn ssl_opts(ca: Option<&Path>) -> Option<mysql_async::SslOpts> {
    ca.map(|ca| {
        mysql_async::SslOpts::default()
            .with_root_certs(vec![ca.to_path_buf().into()])
            .with_danger_tls_hostname_override(Some(DB_TLS_NAME))
    })
}

/// One query from this machine over TCP as `user`: the first column of
/// the first row. With `ca`, over TLS and the server's certificate fully
/// checked (its name too: connect by an address it names); without, plain.
pub fn query_tcp(
    host: &str,
    port: u16,
    (user, password): (&str, &str),
    ca: Option<&Path>,
    sql: &str,
) -> Result<Option<String>> {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BedError::Other(format!("runtime: {e}")))?;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .ssl_opts(ca.map(|ca| {
            mysql_async::SslOpts::default().with_root_certs(vec![ca.to_path_buf().into()])
        }));
    rt.block_on(async move {
        let fail = |e: mysql_async::Error| BedError::Other(format!("{host}:{port}: {e}"));
        let mut conn = tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(opts))
            .await
            .map_err(|_| BedError::Other(format!("{host}:{port}: connect timeout")))?
            .map_err(fail)?;
        let v = conn
            .query_first::<Option<String>, _>(sql)
            .await
            .map_err(fail)?;
        let _ = conn.disconnect().await;
        Ok(v.flatten())
    })
}

/// The ids of `ids` that are not in [`PATIENT_TABLE`] on `host`, waiting
/// up to `limit` for them to arrive (replication).
pub fn missing_acked(bed: &Bed, host: &str, ids: &[u64], limit: Duration) -> Result<Vec<u64>> {
    let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) else {
        return Ok(Vec::new());
    };
    let sql = format!("SELECT id FROM {PATIENT_TABLE} WHERE id BETWEEN {lo} AND {hi}");
    let start = Instant::now();
    loop {
        let present: std::collections::HashSet<u64> = bed
            .sql(host, &sql)?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|i| !present.contains(i))
            .collect();
        if missing.is_empty() || start.elapsed() > limit {
            return Ok(missing);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The longest time without an acknowledgement in `[from, to]`, in ms
/// (from the last acknowledgement before `from`, and up to `to`).
pub fn longest_silence(acks: &[Ack], from: Instant, to: Instant) -> u64 {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.acked).collect();
    times.sort();
    let mut prev = times
        .iter()
        .rev()
        .find(|t| **t <= from)
        .copied()
        .unwrap_or(from);
    let mut longest = 0;
    for t in times.iter().filter(|t| **t > from && **t <= to) {
        longest = longest.max(ms(t.duration_since(prev)));
        prev = *t;
    }
    longest.max(ms(to.saturating_duration_since(prev)))
}

/// An application host: a container on the bed's network running no
/// database, whose network namespace patient writers can use. Removed
/// when dropped.
#[derive(Debug)]
pub struct AppHost {
    pub container: String,
    pub ip: String,
    /// The bed's CA when it runs TLS: clients from this host use it.
    pub tls_ca: Option<PathBuf>,
}

impl Drop for AppHost {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
    }
}

/// Where every server stands after a heal.
#[derive(Debug, Clone, Default)]
pub struct Strength {
    /// The master of the current epoch, writable, no operation running.
    pub master: Option<String>,
    pub epoch: u64,
    pub replicating: Vec<String>,
    /// Servers shown `diverged`, with the GTIDs they hold that the master
    /// lacks.
    pub diverged: Vec<(String, Vec<String>)>,
    /// Servers neither replicating from the master nor shown diverged:
    /// name and what status says about them.
    pub stranded: Vec<(String, String)>,
    pub waited: Duration,
}

impl Strength {
    pub fn full(&self) -> bool {
        self.master.is_some() && self.stranded.is_empty() && self.diverged.is_empty()
    }
}

impl Bed {
    /// The address of the application host ([`Bed::start_app`]).
    pub fn app_ip(&self) -> String {
        format!("{}.201", self.gateway.trim_end_matches(".1"))
    }

    /// Start an application host on the bed's network (no mysqld).
    pub fn start_app(&self) -> Result<AppHost> {
        let name = format!("{}-app", self.prefix);
        let _ = docker(&["rm", "-f", &name]);
        let ip = self.app_ip();
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &self.network,
            "--ip",
            &ip,
            "--label",
            &format!("{LABEL}={}", self.owner),
            "--entrypoint",
            "/bin/sleep",
            IMAGE,
            "infinity",
        ])?;
        Ok(AppHost {
            container: name,
            ip,
            tls_ca: self.ca_file(),
        })
    }

    /// Create [`PATIENT_TABLE`] on `master` (replicated to the others).
    pub fn ensure_patient_table(&self, master: &str) -> Result<()> {
        self.sql(
            master,
            &format!(
                "CREATE TABLE IF NOT EXISTS {PATIENT_TABLE} (id BIGINT PRIMARY KEY, c INT, \
                 at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))"
            ),
        )
        .map(|_| ())
    }

    /// Cut the host off from the other database hosts only (the manager
    /// and applications still reach it).
    pub fn cut_from_replicas(&self, host: &str) -> Result<()> {
        for other in self.hosts.iter().filter(|h| h.name != host) {
            self.exec(
                host,
                &["iptables", "-I", "INPUT", "-s", &other.ip, "-j", "DROP"],
            )?;
            self.exec(
                host,
                &["iptables", "-I", "OUTPUT", "-d", &other.ip, "-j", "DROP"],
            )?;
        }
        Ok(())
    }

    /// Drop every packet in and out of the host but loopback and the
    /// given addresses (an application host that still reaches it while
    /// the database network and the manager do not).
    pub fn isolate_except(&self, host: &str, allowed: &[&str]) -> Result<()> {
        self.partition(host)?;
        for ip in allowed {
            self.exec(host, &["iptables", "-I", "INPUT", "-s", ip, "-j", "ACCEPT"])?;
            self.exec(
                host,
                &["iptables", "-I", "OUTPUT", "-d", ip, "-j", "ACCEPT"],
            )?;
        }
        Ok(())
    }

    /// `docker start` a killed host (its init starts mysqld and the agent).
    pub fn start_container(&self, host: &str) -> Result<()> {
        docker(&["start", &self.host(host)?.container]).map(|_| ())
    }

    /// (running, paused) of a host's container.
    pub fn container_state(&self, host: &str) -> Result<(bool, bool)> {
        let s = docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Paused}}",
            &self.host(host)?.container,
        ])?;
        let mut it = s.split_whitespace();
        Ok((it.next() == Some("true"), it.next() == Some("true")))
    }

    /// Undo every fault of this file on every host: restart killed
    /// containers, unpause, flush iptables, SIGCONT and (re)start mysqld,
    /// start the manager if it is not running. Returns what it did.
    pub fn heal_all(&mut self) -> Vec<String> {
        let mut did = Vec::new();
        for h in self.hosts.clone() {
            let name = h.name.as_str();
            match self.container_state(name) {
                Ok((false, _)) => {
                    did.push(format!("start {name}"));
                    if let Err(e) = self.start_container(name) {
                        did.push(format!("start {name}: {e}"));
                    }
                    // Its init starts mysqld and the agent.
                    if let Err(e) = self.wait_mysqld(name, Duration::from_secs(60)) {
                        did.push(format!("{name}: {e}"));
                    }
                    continue;
                }
                Ok((true, true)) => {
                    did.push(format!("unpause {name}"));
                    if let Err(e) = self.unpause(name) {
                        did.push(format!("unpause {name}: {e}"));
                    }
                }
                _ => {}
            }
            let _ = self.exec(name, &["iptables", "-F"]);
            let _ = self.exec(
                name,
                &["sh", "-c", "p=$(pgrep -x mariadbd) && kill -CONT $p; true"],
            );
            // Why mysqld was down, when no fault of ours killed it, is in
            // its error log: keep the tail with what the heal did.
            let why = self
                .exec(
                    name,
                    &[
                        "sh",
                        "-c",
                        "pgrep -x mariadbd >/dev/null || awk '/ready for connections/ {n=0} {l[n++]=$0} END {for (i=0;i<n;i++) print l[i]}' /var/log/mysql/error.log | grep -E 'signal|ERROR|Assertion|hutdown|Killed|Out of memory' | tail -8; true",
                    ],
                )
                .unwrap_or_default();
            match self.exec(name, &["myha-mysqld", "start"]) {
                Ok(out) if out.contains("already running") => {}
                Ok(_) if !why.trim().is_empty() => did.push(format!(
                    "start mysqld on {name} (its error log before: {})",
                    why.trim().replace('\n', " | ")
                )),
                Ok(_) => did.push(format!("start mysqld on {name}")),
                Err(e) => did.push(format!("start mysqld on {name}: {e}")),
            }
        }
        if self.ha.is_some() {
            for i in 0..self.ha_managers() {
                if !self.manager_running_n(i) {
                    did.push(format!("start manager {i}"));
                    if let Err(e) = self.start_manager_n(i) {
                        did.push(format!("start manager {i}: {e}"));
                    }
                }
            }
        } else if self.manager.is_none() {
            did.push("start manager".into());
            if let Err(e) = self.start_manager() {
                did.push(format!("start manager: {e}"));
            }
        }
        did
    }

    /// (epoch, master of the epoch) on record.
    pub fn epoch_master(&self) -> Result<(u64, Option<String>)> {
        let st = self.status()?;
        Ok((
            st["epoch"].as_u64().unwrap_or(0),
            st["epoch_master"].as_str().map(str::to_string),
        ))
    }

    /// Wait until a failover away from `old` (epoch past `epoch`) is done:
    /// the new master, or `None` after `limit`.
    pub fn wait_failover(&self, old: &str, epoch: u64, limit: Duration) -> Option<String> {
        let mut new = None;
        let _ = wait_until(limit, "a new master", || {
            let st = self.status()?;
            let m = st["epoch_master"].as_str().unwrap_or_default();
            let ok = st["epoch"].as_u64().is_some_and(|e| e > epoch)
                && !m.is_empty()
                && m != old
                && st["master"] == m
                && st["in_progress"].is_null();
            if ok {
                new = Some(m.to_string());
            }
            Ok(ok)
        });
        new
    }

    /// Where every server stands now.
    pub fn strength(&self) -> Result<Strength> {
        let st = self.status()?;
        let mut s = Strength {
            epoch: st["epoch"].as_u64().unwrap_or(0),
            ..Strength::default()
        };
        let em = st["epoch_master"].as_str().map(str::to_string);
        let master = em.filter(|m| st["master"] == m.as_str() && st["in_progress"].is_null());
        let master_ip = master
            .as_deref()
            .and_then(|m| self.host(m).ok())
            .map(|h| h.ip.clone());
        let servers = st["servers"].as_array().cloned().unwrap_or_default();
        for h in &self.hosts {
            if master.as_deref() == Some(h.name.as_str()) {
                continue;
            }
            let v = servers
                .iter()
                .find(|v| v["name"] == h.name.as_str())
                .cloned()
                .unwrap_or_default();
            let from_master = master_ip.as_deref().is_some_and(|ip| {
                v["replicates_from"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{ip}:")) || r == ip)
            });
            if v["role"] == "diverged" {
                let gtids = v["diverged_gtids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|g| g.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                s.diverged.push((h.name.clone(), gtids));
            } else if v["role"] == "replica"
                && v["io_running"] == "running"
                && v["sql_running"] == "running"
                && from_master
            {
                s.replicating.push(h.name.clone());
            } else {
                let refused = &st["rejoin_refused"][h.name.as_str()];
                s.stranded.push((
                    h.name.clone(),
                    format!(
                        "role {} io {} sql {} from {} mysqld_up {} last_error {}{}",
                        v["role"],
                        v["io_running"],
                        v["sql_running"],
                        v["replicates_from"],
                        v["mysqld_up"],
                        v["last_error"],
                        if refused.is_null() {
                            String::new()
                        } else {
                            format!(" rejoin_refused {refused}")
                        }
                    ),
                ));
            }
        }
        if master.is_none() {
            s.stranded.push((
                "(master)".into(),
                format!(
                    "no settled master: epoch_master {} master {} in_progress {}",
                    st["epoch_master"], st["master"], st["in_progress"]
                ),
            ));
        }
        s.master = master;
        Ok(s)
    }

    /// Wait until every server replicates from the master (or is shown
    /// diverged), up to `limit`; where they stand then.
    pub fn wait_full_strength(&self, limit: Duration) -> Strength {
        let start = Instant::now();
        let mut last = Strength::default();
        let _ = wait_until(limit, "every server replicating", || {
            last = self.strength()?;
            Ok(last.master.is_some() && last.stranded.is_empty())
        });
        last.waited = start.elapsed();
        last
    }

    /// Everything worth printing when a test fails: status, history,
    /// check, the manager's log.
    pub fn diagnostics(&self) -> String {
        let out = |args: &[&str]| {
            self.myha(args)
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_else(|e| e.to_string())
        };
        let log = match &self.ha {
            Some(ha) => format!("{}{}", self.ha_manager_logs(120), ha.etcd.log_tails(20)),
            None => std::fs::read_to_string(self.dir.join("manager.log"))
                .map(|s| {
                    let lines: Vec<&str> = s.lines().collect();
                    lines[lines.len().saturating_sub(120)..].join("\n")
                })
                .unwrap_or_default(),
        };
        // Each agent's warnings and errors (fences, leases, refusals).
        let agents: String = self
            .hosts
            .iter()
            .map(|h| {
                let text = self
                    .exec(
                        &h.name,
                        &[
                            "sh",
                            "-c",
                            "grep -E 'WARN|ERROR' /var/log/myha-agent.log | tail -40; true",
                        ],
                    )
                    .unwrap_or_else(|e| e.to_string());
                format!("==== {} agent warnings (tail)\n{text}\n", h.name)
            })
            .collect();
        format!(
            "==== myha status --json\n{}\n==== myha history\n{}\n==== myha check\n{}\n==== manager log (tail)\n{log}\n{agents}",
            out(&["status", "--json"]),
            out(&["history"]),
            out(&["check"]),
        )
    }
}

/// The fault campaign of issue 11: random faults with a printed seed on
/// one bed, writers through the VIP and the router (and, per fault, on
/// the master's own address) from an application host, every fault
/// healed and checked. Used by `myha-chaos` (`bench/chaos`) and
/// `tests/chaos.rs`.
pub mod chaos {
    use super::*;

    /// A kind of fault.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Kind {
        /// SIGKILL of the master's mysqld; restarted at the heal.
        MysqldKill,
        /// SIGSTOP of the master's mysqld alone for 1–6 s, then SIGCONT.
        MysqldStop,
        /// `docker pause` of the whole master for 1 s up to `pause_max`.
        Pause,
        /// Control: `docker pause` of the master for 300 ms (below detection).
        ShortPause,
        /// `docker kill` of the master's host, `docker start` at the heal.
        HostKill,
        /// Full partition of the master until the failover, 2 s more.
        Partition,
        /// Control: the master cut off from the manager only, 5 s.
        CutManager,
        /// The master cut off from the replicas only, 5 s.
        CutReplicas,
        /// The master cut off from the replicas and the manager while the
        /// application host still reaches it.
        CutReplicasAndManager,
        /// Control: full partition of one replica, 5 s.
        ReplicaPartition,
        /// mysqld kill, then the manager killed (SIGKILL) 0–2.5 s later
        /// (somewhere in the failover), restarted 1 s after.
        ManagerKillInFailover,
        /// A replica's SQL thread stopped 2 s before the master's mysqld dies.
        LaggingReplica,
        /// A replica's mysqld killed, then the master's.
        MasterDiesReplicaDown,
        /// The master partitioned; the new master's mysqld killed 0–2 s
        /// after its promotion, restarted at the heal 300 ms later.
        PromotedDies,
    }

    impl Kind {
        pub const ALL: [Kind; 14] = [
            Kind::MysqldKill,
            Kind::MysqldStop,
            Kind::Pause,
            Kind::ShortPause,
            Kind::HostKill,
            Kind::Partition,
            Kind::CutManager,
            Kind::CutReplicas,
            Kind::CutReplicasAndManager,
            Kind::ReplicaPartition,
            Kind::ManagerKillInFailover,
            Kind::LaggingReplica,
            Kind::MasterDiesReplicaDown,
            Kind::PromotedDies,
        ];

        pub fn name(self) -> &'static str {
            match self {
                Kind::MysqldKill => "mysqld_kill",
                Kind::MysqldStop => "mysqld_stop",
                Kind::Pause => "pause",
                Kind::ShortPause => "short_pause",
                Kind::HostKill => "host_kill",
                Kind::Partition => "partition",
                Kind::CutManager => "cut_manager",
                Kind::CutReplicas => "cut_replicas",
                Kind::CutReplicasAndManager => "cut_replicas_manager",
                Kind::ReplicaPartition => "replica_partition",
                Kind::ManagerKillInFailover => "manager_kill",
                Kind::LaggingReplica => "lagging_replica",
                Kind::MasterDiesReplicaDown => "master_dies_replica_down",
                Kind::PromotedDies => "promoted_dies",
            }
        }

        pub fn parse(s: &str) -> Option<Kind> {
            Kind::ALL.into_iter().find(|k| k.name() == s.trim())
        }

        /// Control cases: faults that must not fail over.
        pub fn control(self) -> bool {
            matches!(
                self,
                Kind::ShortPause | Kind::CutManager | Kind::ReplicaPartition
            )
        }
    }

    /// `kind,kind,...` (or `all`).
    pub fn parse_kinds(list: &str) -> std::result::Result<Vec<Kind>, String> {
        if list.trim() == "all" {
            return Ok(Kind::ALL.to_vec());
        }
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Kind::parse(s).ok_or_else(|| {
                    format!(
                        "unknown fault kind {s:?}; known: {}",
                        Kind::ALL.map(Kind::name).join(",")
                    )
                })
            })
            .collect()
    }

    /// xorshift64*: small, seeded, reproducible.
    #[derive(Debug, Clone)]
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform in `0..n` (0 when `n` is 0).
        pub fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next_u64() % n
            }
        }

        /// Uniform in `lo..=hi`.
        pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.below(hi.saturating_sub(lo) + 1)
        }
    }

    /// A seed from the clock, for runs without `--seed`.
    pub fn clock_seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(11)
    }

    #[derive(Debug, Clone)]
    pub struct Options {
        pub myha_bin: PathBuf,
        pub seed: u64,
        pub faults: usize,
        pub kinds: Vec<Kind>,
        /// Longest `docker pause` of [`Kind::Pause`].
        pub pause_max: Duration,
        /// More keys for the router's section, e.g. `", relay: nat"`.
        pub router_extra: String,
        /// Print each fault's result as it ends.
        pub verbose: bool,
    }

    impl Options {
        pub fn new(myha_bin: impl Into<PathBuf>) -> Options {
            Options {
                myha_bin: myha_bin.into(),
                seed: clock_seed(),
                faults: 20,
                kinds: Kind::ALL.to_vec(),
                pause_max: Duration::from_secs(30),
                router_extra: String::new(),
                verbose: true,
            }
        }
    }

    /// What one fault did.
    #[derive(Debug, Clone)]
    pub struct FaultResult {
        pub n: usize,
        pub kind: Kind,
        pub detail: String,
        pub old_master: String,
        pub new_master: Option<String>,
        pub failed_over: bool,
        pub vip_silence_ms: u64,
        pub router_silence_ms: u64,
        /// Acknowledged writes checked at this fault (all paths).
        pub acked: usize,
        pub lost: Vec<u64>,
        pub split: SplitReport,
        pub stranded: Vec<(String, String)>,
        pub diverged: Vec<(String, Vec<String>)>,
        pub false_failover: bool,
        /// Seconds from the heal until every server replicated again.
        pub heal_to_strength_s: f64,
        /// A writable master of the current epoch after the heal (and any
        /// rejoin by hand): without one the campaign cannot go on.
        pub settled_master: bool,
        /// What `myha rejoin` by hand did for stranded or diverged servers.
        pub repaired: Vec<String>,
        pub errors: Vec<String>,
        pub secs: f64,
    }

    impl FaultResult {
        pub fn bad(&self) -> bool {
            !self.lost.is_empty()
                || !self.split.clean()
                || !self.stranded.is_empty()
                || self.false_failover
                || !self.errors.is_empty()
        }

        pub fn line(&self) -> String {
            format!(
                "#{:<3} {:<24} {:<28} master {}→{} silence vip {} ms router {} ms, acked {} lost {}, split w{} v{} (resumed w{} v{}), strength {:.1}s, stranded {:?}, diverged {:?}{}{}{} [{:.0}s]",
                self.n,
                self.kind.name(),
                self.detail,
                self.old_master,
                self.new_master.as_deref().unwrap_or("?"),
                self.vip_silence_ms,
                self.router_silence_ms,
                self.acked,
                self.lost.len(),
                self.split.split_writable,
                self.split.split_vip,
                self.split.resumed_writable,
                self.split.resumed_vip,
                self.heal_to_strength_s,
                self.stranded,
                self.diverged,
                if self.false_failover { ", FALSE FAILOVER" } else { "" },
                if self.repaired.is_empty() {
                    String::new()
                } else {
                    format!(", by hand: {:?}", self.repaired)
                },
                if self.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors {:?}", self.errors)
                },
                self.secs
            )
        }
    }

    /// The whole campaign.
    #[derive(Debug, Clone, Default)]
    pub struct Report {
        pub seed: u64,
        pub results: Vec<FaultResult>,
        /// Acknowledged ids (every writer, every fault) missing from the
        /// final master at the end.
        pub final_lost: Vec<u64>,
        pub total_acked: usize,
        pub sampler: SplitReport,
        /// Set when the campaign stopped early (the bed could not go on).
        pub aborted: Option<String>,
        pub diagnostics: String,
    }

    fn median(v: &mut [u64]) -> u64 {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    impl Report {
        pub fn ok(&self) -> bool {
            self.aborted.is_none()
                && self.final_lost.is_empty()
                && self.results.iter().all(|r| !r.bad())
        }

        /// The per-kind table.
        pub fn table(&self) -> String {
            let mut kinds: Vec<Kind> = self.results.iter().map(|r| r.kind).collect();
            kinds.sort();
            kinds.dedup();
            let mut t = format!(
                "seed {}: {} faults, {} acknowledged writes checked\n\
                 {:<24} {:>4} {:>4} {:>15} {:>15} {:>6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>6} {:>6}\n",
                self.seed,
                self.results.len(),
                self.total_acked,
                "fault",
                "runs",
                "f/o",
                "vip med/max ms",
                "rtr med/max ms",
                "acked",
                "lost",
                "splitW",
                "splitV",
                "stranded",
                "diverged",
                "false",
                "errors",
            );
            for k in kinds {
                let rs: Vec<&FaultResult> = self.results.iter().filter(|r| r.kind == k).collect();
                let mut vip: Vec<u64> = rs.iter().map(|r| r.vip_silence_ms).collect();
                let mut rtr: Vec<u64> = rs.iter().map(|r| r.router_silence_ms).collect();
                let vmax = vip.iter().copied().max().unwrap_or(0);
                let rmax = rtr.iter().copied().max().unwrap_or(0);
                t.push_str(&format!(
                    "{:<24} {:>4} {:>4} {:>15} {:>15} {:>6} {:>5} {:>6} {:>6} {:>8} {:>8} {:>6} {:>6}\n",
                    format!("{}{}", k.name(), if k.control() { " (ctl)" } else { "" }),
                    rs.len(),
                    rs.iter().filter(|r| r.failed_over).count(),
                    format!("{}/{}", median(&mut vip), vmax),
                    format!("{}/{}", median(&mut rtr), rmax),
                    rs.iter().map(|r| r.acked).sum::<usize>(),
                    rs.iter().map(|r| r.lost.len()).sum::<usize>(),
                    rs.iter().map(|r| r.split.split_writable).sum::<usize>(),
                    rs.iter().map(|r| r.split.split_vip).sum::<usize>(),
                    rs.iter().map(|r| r.stranded.len()).sum::<usize>(),
                    rs.iter().map(|r| r.diverged.len()).sum::<usize>(),
                    rs.iter().filter(|r| r.false_failover).count(),
                    rs.iter().map(|r| r.errors.len()).sum::<usize>(),
                ));
            }
            let lost: usize = self.results.iter().map(|r| r.lost.len()).sum();
            let split: usize = self
                .results
                .iter()
                .map(|r| r.split.split_writable + r.split.split_vip)
                .sum();
            let stranded: usize = self.results.iter().map(|r| r.stranded.len()).sum();
            let falses = self.results.iter().filter(|r| r.false_failover).count();
            t.push_str(&format!(
                "total: lost {lost} (final check: {} missing of {}), split samples {split}, stranded {stranded}, false failovers {falses}\n\
                 sampler over the whole run: {}\n",
                self.final_lost.len(),
                self.total_acked,
                self.sampler
            ));
            t.push_str(
                "(the router runs on the manager's host: cutting the master off from the manager cuts it off from the router too)\n",
            );
            if let Some(a) = &self.aborted {
                t.push_str(&format!("ABORTED: {a}\n"));
            }
            t
        }
    }

    struct Run<'a> {
        bed: &'a mut Bed,
        app: &'a AppHost,
        sampler: &'a Sampler,
        vip_w: &'a PatientWriter,
        router_w: &'a PatientWriter,
        rng: Rng,
        opts: &'a Options,
        /// How many acks of each long-running writer were checked already.
        vip_checked: usize,
        router_checked: usize,
    }

    fn sleep(d: Duration) {
        std::thread::sleep(d);
    }

    /// Run a campaign on a fresh bed.
    pub fn run(opts: &Options) -> Result<Report> {
        if opts.kinds.is_empty() {
            return Err(BedError::Other("no fault kinds selected".into()));
        }
        let mut bo = BedOptions::new(&opts.myha_bin);
        bo.vip = true;
        bo.router = true;
        bo.router_extra = opts.router_extra.clone();
        // Anti-flapping short: a campaign fails over again and again.
        bo.cluster_yaml = "failover_block_period: 1s".into();
        let mut bed = Bed::start(bo)?;
        bed.wait_ready(Duration::from_secs(60))?;
        let s = bed.wait_full_strength(Duration::from_secs(60));
        if !s.full() {
            return Err(BedError::Other(format!(
                "bed never healthy: {s:?}\n{}",
                bed.diagnostics()
            )));
        }
        bed.ensure_patient_table("db1")?;
        let app = bed.start_app()?;
        let sampler = Sampler::start(&bed)?;
        sampler.wait_warm(Duration::from_secs(20))?;
        let through = |label: &str, host: &str, port: u16| PatientOptions {
            clients: 2,
            persistent: 1,
            pace: Duration::from_millis(25),
            netns_container: Some(app.container.clone()),
            tls_ca: bed.ca_file(),
            ..PatientOptions::new(label, host, port)
        };
        let vip_w = PatientWriter::start(through("vip", &bed.vip(), 3306))?;
        let router_w = PatientWriter::start(through("router", &bed.gateway, 6033))?;
        vip_w.wait_acks(20, Duration::from_secs(30))?;
        router_w.wait_acks(20, Duration::from_secs(30))?;
        let mut report = Report {
            seed: opts.seed,
            ..Report::default()
        };
        let mut run = Run {
            bed: &mut bed,
            app: &app,
            sampler: &sampler,
            vip_w: &vip_w,
            router_w: &router_w,
            rng: Rng::new(opts.seed),
            opts,
            vip_checked: 0,
            router_checked: 0,
        };
        let mut all_acked: Vec<u64> = Vec::new();
        // Drawn from a deck: every kind once in a seeded order, then again,
        // so that a short campaign still covers every kind selected.
        let mut deck: Vec<Kind> = Vec::new();
        for n in 1..=opts.faults {
            if deck.is_empty() {
                deck = opts.kinds.clone();
                for i in (1..deck.len()).rev() {
                    let j = run.rng.below(i as u64 + 1) as usize;
                    deck.swap(i, j);
                }
            }
            let Some(k) = deck.pop() else { break };
            match run.fault(n, k, &mut all_acked) {
                Ok(r) => {
                    if opts.verbose {
                        eprintln!("{}", r.line());
                        if r.bad() {
                            eprintln!("  {}", r.split);
                        }
                    }
                    let no_master = !r.settled_master;
                    report.results.push(r);
                    if no_master {
                        report.aborted = Some(format!("no master after fault #{n}"));
                        break;
                    }
                }
                Err(e) => {
                    report.aborted = Some(format!("fault #{n} ({}): {e}", k.name()));
                    break;
                }
            }
        }
        let vip_log = vip_w.stop();
        let router_log = router_w.stop();
        for l in [&vip_log, &router_log] {
            all_acked.extend(l.acked_ids());
        }
        all_acked.sort_unstable();
        all_acked.dedup();
        report.total_acked = all_acked.len();
        let master = bed.epoch_master().ok().and_then(|(_, m)| m);
        match master {
            Some(m) => {
                report.final_lost = missing_acked(&bed, &m, &all_acked, Duration::from_secs(10))?;
            }
            None => {
                report
                    .aborted
                    .get_or_insert_with(|| "no master at the end".into());
            }
        }
        report.sampler = sampler.stop();
        if !report.ok() {
            report.diagnostics = bed.diagnostics();
        }
        drop(app);
        Ok(report)
    }

    impl Run<'_> {
        fn others(&self, master: &str) -> Vec<String> {
            self.bed
                .hosts
                .iter()
                .filter(|h| h.name != master)
                .map(|h| h.name.clone())
                .collect()
        }

        fn pick(&mut self, from: &[String]) -> String {
            from.get(self.rng.below(from.len() as u64) as usize)
                .cloned()
                .unwrap_or_default()
        }

        /// Wait for a failover; an error noted if it does not come.
        /// Where the VIP's packets go, for a writer that stopped hearing
        /// back: the holders of the VIP with their MAC addresses, the
        /// application host's neighbour entry for the VIP, its sockets to
        /// the VIP with their retransmission state, each mysqld's state and
        /// the kernel lease rules.
        fn path_picture(&self) -> String {
            crate::vip_path_picture(self.bed, self.app)
        }

        fn expect_failover(&self, m: &str, epoch: u64, errors: &mut Vec<String>) {
            if self
                .bed
                .wait_failover(m, epoch, Duration::from_secs(30))
                .is_none()
            {
                errors.push("no failover within 30 s".into());
            }
        }

        fn fault(&mut self, n: usize, kind: Kind, all_acked: &mut Vec<u64>) -> Result<FaultResult> {
            let started = Instant::now();
            let (epoch0, m) = self.bed.epoch_master()?;
            let m = m.ok_or_else(|| BedError::Other("no master on record".into()))?;
            let m_ip = self.bed.host(&m)?.ip.clone();
            let replicas = self.others(&m);
            // Clients on the master's own address, from the app host.
            let direct = PatientWriter::start(PatientOptions {
                clients: 3,
                persistent: 2,
                pace: Duration::from_millis(30),
                netns_container: Some(self.app.container.clone()),
                tls_ca: self.bed.ca_file(),
                ..PatientOptions::new("direct", &m_ip, 3306)
            })?;
            let _ = direct.wait_acks(5, Duration::from_secs(10));
            let mut errors = Vec::new();
            let mut lagging: Option<String> = None;
            let t_fault = Instant::now();
            let detail = match kind {
                Kind::MysqldKill => {
                    self.bed.kill_mysqld(&m)?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    sleep(Duration::from_secs(1));
                    String::new()
                }
                Kind::MysqldStop => {
                    let d = self.rng.range(1000, 6000);
                    self.bed.stall_mysqld(&m)?;
                    sleep(Duration::from_millis(d));
                    self.bed.resume_mysqld(&m)?;
                    format!("{d} ms")
                }
                Kind::Pause => {
                    let max = ms(self.opts.pause_max).max(1000);
                    let d = self.rng.range(1000, max);
                    self.bed.pause(&m)?;
                    sleep(Duration::from_millis(d));
                    self.bed.unpause(&m)?;
                    format!("{d} ms")
                }
                Kind::ShortPause => {
                    self.bed.pause(&m)?;
                    sleep(Duration::from_millis(300));
                    self.bed.unpause(&m)?;
                    sleep(Duration::from_secs(4));
                    "300 ms".into()
                }
                Kind::HostKill => {
                    self.bed.kill_container(&m)?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    String::new()
                }
                Kind::Partition => {
                    self.bed.partition(&m)?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    sleep(Duration::from_secs(2));
                    String::new()
                }
                Kind::CutManager => {
                    self.bed.cut_from_manager(&m)?;
                    sleep(Duration::from_secs(5));
                    "5 s".into()
                }
                Kind::CutReplicas => {
                    self.bed.cut_from_replicas(&m)?;
                    sleep(Duration::from_secs(5));
                    "5 s".into()
                }
                Kind::CutReplicasAndManager => {
                    let app_ip = self.app.ip.clone();
                    self.bed.isolate_except(&m, &[app_ip.as_str()])?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    sleep(Duration::from_secs(2));
                    String::new()
                }
                Kind::ReplicaPartition => {
                    let r = self.pick(&replicas);
                    self.bed.partition(&r)?;
                    sleep(Duration::from_secs(5));
                    format!("{r}, 5 s")
                }
                Kind::ManagerKillInFailover => {
                    let d = self.rng.range(0, 2500);
                    self.bed.kill_mysqld(&m)?;
                    sleep(Duration::from_millis(d));
                    self.bed.stop_manager();
                    sleep(Duration::from_secs(1));
                    self.bed.start_manager()?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    format!("manager killed at +{d} ms")
                }
                Kind::LaggingReplica => {
                    let r = self.pick(&replicas);
                    self.bed.sql(&r, "STOP SLAVE SQL_THREAD")?;
                    sleep(Duration::from_secs(2));
                    self.bed.kill_mysqld(&m)?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    lagging = Some(r.clone());
                    format!("{r} lagging")
                }
                Kind::MasterDiesReplicaDown => {
                    let r = self.pick(&replicas);
                    self.bed.kill_mysqld(&r)?;
                    let _ = wait_until(Duration::from_secs(5), "replica seen down", || {
                        Ok(self.bed.server_status(&r)?["mysqld_up"] != true)
                    });
                    self.bed.kill_mysqld(&m)?;
                    self.expect_failover(&m, epoch0, &mut errors);
                    format!("{r} down")
                }
                Kind::PromotedDies => {
                    self.bed.partition(&m)?;
                    match self.bed.wait_failover(&m, epoch0, Duration::from_secs(30)) {
                        Some(n) => {
                            let d = self.rng.range(0, 2000);
                            sleep(Duration::from_millis(d));
                            self.bed.kill_mysqld(&n)?;
                            sleep(Duration::from_millis(300));
                            format!("{n} killed at +{d} ms")
                        }
                        None => {
                            errors.push("no failover within 30 s".into());
                            String::new()
                        }
                    }
                }
            };
            let t_heal = Instant::now();
            let healed = self.bed.heal_all();
            if let Some(r) = &lagging {
                // Harmless when the failover's repoint restarted it.
                let _ = self.bed.sql(r, "START SLAVE SQL_THREAD");
            }
            let mut strength = self.bed.wait_full_strength(Duration::from_secs(30));
            let heal_to_strength_s = t_heal.elapsed().as_secs_f64();
            // Stranded and diverged servers are recorded as such; then the
            // operator's way (`myha rejoin`, `--force`) so that the
            // campaign goes on at full strength.
            let mut repaired = Vec::new();
            let stuck: Vec<String> = strength
                .stranded
                .iter()
                .map(|(h, _)| h.clone())
                .chain(strength.diverged.iter().map(|(h, _)| h.clone()))
                .filter(|h| !h.starts_with('('))
                .collect();
            if !stuck.is_empty() {
                for h in &stuck {
                    let plain = self
                        .bed
                        .myha(&["rejoin", h])
                        .is_ok_and(|o| o.status.success());
                    if !plain {
                        match self.bed.myha(&["rejoin", h, "--force"]) {
                            Ok(o) if o.status.success() => {}
                            Ok(o) => eprintln!(
                                "  rejoin {h} --force failed: {}{}",
                                String::from_utf8_lossy(&o.stdout).trim(),
                                String::from_utf8_lossy(&o.stderr).trim()
                            ),
                            Err(e) => eprintln!("  rejoin {h} --force: {e}"),
                        }
                    }
                }
                let again = self.bed.wait_full_strength(Duration::from_secs(20));
                for h in &stuck {
                    let back = again.replicating.contains(h);
                    repaired.push(format!(
                        "{h}: {}",
                        if back {
                            "rejoined by hand"
                        } else {
                            "STILL OUT"
                        }
                    ));
                }
                if again.master.is_none() {
                    strength.master = None;
                } else if strength.master.is_none() {
                    strength.master = again.master.clone();
                }
            }
            // Writes through the VIP and the router flow again.
            if strength.master.is_some() {
                for w in [self.vip_w, self.router_w] {
                    if w.wait_acks(3, Duration::from_secs(30)).is_err() {
                        errors.push(format!(
                            "writes through the {} did not resume within 30 s of the heal",
                            w.label
                        ));
                        eprintln!("{}", self.path_picture());
                    }
                }
            }
            let t_end = Instant::now();
            let direct_log = direct.stop();
            let (epoch1, final_master) = self.bed.epoch_master()?;
            let failed_over = epoch1 != epoch0;
            // Acknowledged writes: the direct clients' and what the
            // long-running writers acknowledged since the last check.
            let vip_acks = self.vip_w.acks();
            let router_acks = self.router_w.acks();
            let mut ids: Vec<u64> = direct_log.acked_ids();
            ids.extend(vip_acks.iter().skip(self.vip_checked).map(|a| a.id));
            ids.extend(router_acks.iter().skip(self.router_checked).map(|a| a.id));
            self.vip_checked = vip_acks.len();
            self.router_checked = router_acks.len();
            all_acked.extend(direct_log.acked_ids());
            let lost = match &final_master {
                Some(fm) => missing_acked(self.bed, fm, &ids, Duration::from_secs(10))?,
                None => {
                    errors.push("no master to check acknowledged writes on".into());
                    Vec::new()
                }
            };
            // Where each lost write went: which writer, when it was
            // acknowledged, which servers have it.
            for id in &lost {
                let ack = direct_log
                    .acks
                    .iter()
                    .map(|a| ("direct", a))
                    .chain(vip_acks.iter().map(|a| ("vip", a)))
                    .chain(router_acks.iter().map(|a| ("router", a)))
                    .find(|(_, a)| a.id == *id);
                let on: Vec<String> = ["db1", "db2", "db3"]
                    .iter()
                    .map(|h| {
                        let has = self
                            .bed
                            .sql(
                                h,
                                &format!("SELECT COUNT(*) FROM {PATIENT_TABLE} WHERE id = {id}"),
                            )
                            .map(|o| o.trim().to_string())
                            .unwrap_or_else(|e| format!("? ({e})"));
                        format!("{h}: {has}")
                    })
                    .collect();
                if let Some((w, a)) = ack {
                    eprintln!(
                        "  lost id {id} ({w} client {}): sent {:+} ms, acknowledged {:+} ms after the fault; {}",
                        a.client,
                        a.sent.saturating_duration_since(t_fault).as_millis() as i64
                            - t_fault.saturating_duration_since(a.sent).as_millis() as i64,
                        a.acked.saturating_duration_since(t_fault).as_millis() as i64
                            - t_fault.saturating_duration_since(a.acked).as_millis() as i64,
                        on.join(", ")
                    );
                }
            }
            if !healed.is_empty() && self.opts.verbose {
                eprintln!("  heal: {}", healed.join("; "));
            }
            Ok(FaultResult {
                n,
                kind,
                detail,
                old_master: m,
                new_master: final_master,
                failed_over,
                vip_silence_ms: longest_silence(&vip_acks, t_fault, t_end),
                router_silence_ms: longest_silence(&router_acks, t_fault, t_end),
                acked: ids.len(),
                lost,
                split: self.sampler.report_between(t_fault, t_end),
                stranded: strength.stranded,
                diverged: strength.diverged,
                false_failover: kind.control() && failed_over,
                heal_to_strength_s,
                settled_master: strength.master.is_some(),
                repaired,
                errors,
                secs: started.elapsed().as_secs_f64(),
            })
        }
    }
}

pub use prometheus_parse;

/// Prometheus text exposition (`GET /metrics`), parsed by a Prometheus
/// text parser (the `prometheus-parse` crate): an error if it does not
/// parse, or if a sample's metric has no `# TYPE` line.
pub fn parse_metrics(body: &str) -> Result<prometheus_parse::Scrape> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .map_err(|e| BedError::Other(format!("metrics do not parse: {e}")))?;
    let typed: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for s in &scrape.samples {
        let base = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|suffix| s.metric.strip_suffix(suffix))
            .unwrap_or(&s.metric);
        if !typed.iter().any(|t| *t == s.metric || *t == base) {
            return Err(BedError::Other(format!(
                "metric {} has no # TYPE line",
                s.metric
            )));
        }
    }
    Ok(scrape)
}

/// The value of the sample `name` whose labels include `labels`, in a
/// parsed exposition (counters, gauges and untyped samples; a histogram's
/// `_count` and `_sum` are samples of their own names).
pub fn metric_value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape.samples.iter().find_map(|s| {
        let named = s.metric == name;
        let labelled = labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
        let value = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            _ => None,
        };
        (named && labelled).then_some(value).flatten()
    })
}
