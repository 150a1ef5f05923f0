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

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "myha/mariadb-host:10.11";
pub const ADMIN_USER: &str = "myha";
pub const ADMIN_PASSWORD: &str = "myha-admin-pw";
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "myha-repl-pw";
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "myha-app-pw";
const LABEL: &str = "org.myha.testbed";

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

/// Remove containers and networks of beds whose test process is gone.
pub fn reap_stale() {
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
    /// More keys for the router's section, e.g. `", relay: kernel"`.
    pub router_extra: String,
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
    pub config_path: PathBuf,
    pub token: String,
    pub hosts: Vec<Host>,
    pub myha_bin: PathBuf,
    owner: String,
    manager: Option<Child>,
    router: Option<Child>,
    keep: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
pub const CLUSTER: &str = "bed";

impl Bed {
    /// Start a bed: network, hosts with replication from db1, agents, manager.
    pub fn start(opts: BedOptions) -> Result<Bed> {
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
            token: format!("bed-token-{pid}-{n}"),
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
        };
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
        let w = |p: &Path, s: &str| {
            std::fs::write(p, s).map_err(|e| BedError::Other(format!("{}: {e}", p.display())))
        };
        w(&self.dir.join("token"), &self.token)?;
        w(&self.dir.join("admin.pw"), ADMIN_PASSWORD)?;
        w(&self.dir.join("repl.pw"), REPL_PASSWORD)?;
        let mut yaml = format!(
            "# Written by the myha test bed.\n\
             manager:\n  listen: {gw}:7070\n  url: http://{gw}:7070\n  token_file: token\n  state_dir: {dir}/state\n  probe_interval: 250ms\n  connect_timeout: 300ms\n  query_timeout: 1s\n\
             agent:\n  port: 7071\n  interval: 250ms\n  connect_timeout: 300ms\n  query_timeout: 1s\n  report_timeout: 500ms\n\
             clusters:\n  - name: {CLUSTER}\n    flavor: mariadb\n    user: {ADMIN_USER}\n    password_file: admin.pw\n    replication_user: {REPL_USER}\n    replication_password_file: repl.pw\n",
            gw = self.gateway,
            dir = self.dir.display(),
        );
        if opts.vip {
            yaml.push_str(&format!(
                "    vip: {{ address: {}/24, interface: eth0, arp_count: 3 }}\n",
                self.vip()
            ));
        }
        if opts.router {
            yaml.push_str(&format!(
                "    router: {{ writer_listen: {gw}:6033, reader_listen: {gw}:6034, http_listen: {gw}:6035, writer_hold_timeout: 10s{} }}\n",
                opts.router_extra,
                gw = self.gateway
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
        w(&self.config_path, &yaml)
    }

    fn run_host(&self, h: &Host, opts: &BedOptions) -> Result<()> {
        let dir = self.dir.display().to_string();
        let bin_mount = format!("{}:/usr/local/bin/myha:ro", opts.myha_bin.display());
        let agent_args = if opts.agents {
            format!("--config {} --host {}", self.config_path.display(), h.name)
        } else {
            String::new()
        };
        let (mount, image) = match &opts.image_with_agent {
            Some(image) => (Vec::new(), image.as_str()),
            None => (vec!["-v", bin_mount.as_str()], IMAGE),
        };
        let label = format!("{LABEL}={}", self.owner);
        let env = [
            format!("MYHA_SERVER_ID={}", h.server_id),
            format!("MYHA_AGENT_ARGS={agent_args}"),
            format!("MYHA_MYSQLD_EXTRA={}", opts.mysqld_extra),
        ];
        let volume = format!("{dir}:{dir}");
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
        self.sql(
            "db1",
            "CREATE TABLE IF NOT EXISTS app.seq (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
        )?;
        let bin = self.writer_bin()?;
        let name = format!("{}-client", self.prefix);
        let out = self.dir.join("writer.log");
        let stop = self.dir.join("writer.stop");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&stop);
        let dir = self.dir.display().to_string();
        docker(&[
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
        ])?;
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

    /// `CHANGE MASTER TO` the given master with GTID (`slave_pos`).
    pub fn change_master_sql(&self, master_ip: &str) -> String {
        format!(
            "CHANGE MASTER TO MASTER_HOST='{master_ip}', MASTER_PORT=3306, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
             MASTER_HEARTBEAT_PERIOD=0.5"
        )
    }

    /// Start (or restart) the manager on this machine.
    pub fn start_manager(&mut self) -> Result<()> {
        self.stop_manager();
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
        let out = run(Command::new("curl").args([
            "-s",
            "--max-time",
            "3",
            &format!(
                "http://{}:6035/v1/clusters/{CLUSTER}/endpoints",
                self.gateway
            ),
        ]))?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| BedError::Other(format!("endpoints JSON: {e}")))
    }

    /// Stop the manager (SIGKILL: a crash, not a clean shutdown).
    pub fn stop_manager(&mut self) {
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
        if !out.status.success() {
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

    /// The tail of the manager's log, for failure messages.
    pub fn manager_log(&self) -> String {
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
/// `writer_listen` (`ip:port`), named as `myha-router` names it.
pub fn nat_table_name(writer_listen: &str) -> String {
    format!("myha_router_{}", writer_listen.replace(['.', ':'], "_"))
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
        // A `relay: nat` router leaves its retired table; the bed's
        // network goes, so does the table.
        delete_nat_table(&format!("{}:6033", self.gateway));
        if self.keep {
            eprintln!("MYHA_KEEP_BED: leaving {} in place", self.prefix);
            return;
        }
        let client = format!("{}-client", self.prefix);
        let mut names: Vec<&str> = self.hosts.iter().map(|h| h.container.as_str()).collect();
        names.push(&client);
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(names);
        let _ = docker(&args);
        let _ = docker(&["network", "rm", &self.network]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
/// that opens thousands of connections; the router does the same).
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
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
