//! Manager high availability in the test bed: an etcd cluster of child
//! processes on 127.0.0.1 ([`EtcdCluster`]), TCP relays that can cut one
//! manager off etcd without touching anything else ([`CutProxy`]), and the
//! [`Bed`] methods that run several managers on it
//! ([`BedOptions::ha_managers`](crate::BedOptions::ha_managers)).
//!
//! Every port is asked from the OS. Logs stay in the caller's directory
//! (`etcd-{i}.log`, `manager-{i}.log`) for a failed test to show.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use myha_api::coordination::Coordination;
use myha_api::requests::Health;

use crate::{lock, wait_until, Bed, BedError, Result};

/// The lease every HA bed configures (`coordination.etcd.lease_ttl`).
pub const HA_LEASE_TTL: Duration = Duration::from_secs(5);
/// The first manager's port on the bed's gateway; manager `i` listens on
/// `HA_BASE_PORT + i`.
pub const HA_BASE_PORT: u16 = 7070;
/// Members of a bed's etcd cluster.
pub const ETCD_MEMBERS: usize = 3;

fn other(e: impl std::fmt::Display) -> BedError {
    BedError::Other(e.to_string())
}

/// The etcd binary: `MYHA_ETCD_BIN`, else Debian's `/usr/bin/etcd`, else
/// `etcd` on `PATH`.
fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MYHA_ETCD_BIN") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/bin/etcd");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("etcd")
    }
}

/// Go's name of this machine's architecture, for `ETCD_UNSUPPORTED_ARCH`
/// (etcd 3.4 refuses to start elsewhere than amd64 without it).
fn go_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => None,
        "aarch64" => Some("arm64"),
        "x86" => Some("386"),
        "powerpc64" => Some("ppc64le"),
        "loongarch64" => Some("loong64"),
        other => Some(other),
    }
}

/// Ports this process handed out: never twice (a stopped etcd member
/// keeps its ports for its restart).
static GIVEN_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// The kernel's range of ephemeral ports (outgoing connections' local
/// ports), `(low, high)`.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// `n` distinct ports of 127.0.0.1 that the OS let this process bind a
/// moment ago, none handed out before by this process. They are taken
/// below the kernel's ephemeral range when it leaves room (from 10000 up),
/// so that no outgoing connection holds one when an etcd member restarts
/// on it; else the OS picks (`bind 127.0.0.1:0`). The listeners are
/// dropped before returning: another process may take a port in between,
/// the caller retries.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut given = lock(&GIVEN_PORTS);
    let (low, _) = ephemeral_range();
    let mut held = Vec::new();
    let mut ports = Vec::new();
    if low > 11_000 {
        let span = u64::from(low - 10_000);
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        let mut tries = 0;
        while ports.len() < n && tries < 10_000 {
            tries += 1;
            // xorshift: only spread, no secrecy needed.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = 10_000 + (x % span) as u16;
            if given.contains(&port) || ports.contains(&port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
                ports.push(port);
            }
        }
    }
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").map_err(other)?;
        let port = l.local_addr().map_err(other)?.port();
        if !given.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
        held.push(l);
    }
    given.extend(&ports);
    Ok(ports)
}

/// A bare HTTP/1.0 request to `addr` (no TLS, no client library; 1.0 so
/// the answer is never chunked): the status code and the body.
pub fn http_plain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (etcd's JSON gateway carries keys and values so).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(B64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The smallest key greater than every key with `prefix` (etcd's
/// `range_end` of a prefix query).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

static ETCD_COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
    /// Plain HTTP `/health` (`--listen-metrics-urls`), TLS or not.
    metrics: u16,
    /// The clients' scheme: `https` with TLS.
    scheme: &'static str,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client))
    }

    fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client)
    }

    fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics))
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }

    fn log_tail(&self, lines: usize) -> String {
        std::fs::read_to_string(&self.log)
            .map(|s| {
                let l: Vec<&str> = s.lines().collect();
                l[l.len().saturating_sub(lines)..].join("\n")
            })
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `/health` answers `{"health":"true"}` (the member serves and the
    /// cluster has a leader).
    fn healthy(&self) -> bool {
        http_plain(
            self.metrics_addr(),
            "GET",
            "/health",
            None,
            Duration::from_millis(500),
        )
        .is_ok_and(|(code, body)| code == 200 && body.contains("\"true\""))
    }

    /// The member's HTTP port answers (healthy or not).
    fn serving(&self) -> bool {
        http_plain(
            self.metrics_addr(),
            "GET",
            "/health",
            None,
            Duration::from_millis(500),
        )
        .is_ok_and(|(code, _)| code != 0)
    }
}

/// A cluster of etcd members (Debian's `etcd-server`, 3.4), child
/// processes of this one on 127.0.0.1. Dropping it SIGKILLs every member;
/// their data directories and logs (`etcd-{i}.log`) stay in `dir`.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    /// With TLS: the CA, the members' certificate and a client's, as
    /// files under `dir/tls`.
    tls: Option<EtcdTlsFiles>,
    members: Mutex<Vec<Member>>,
}

/// The files of a TLS etcd cluster (see [`EtcdCluster::start_tls`]).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate the members accept (`--client-cert-auth`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl EtcdTlsFiles {
    fn generate(dir: &Path) -> Result<EtcdTlsFiles> {
        let leaves = [
            ("etcd member".to_string(), vec!["127.0.0.1".to_string()]),
            ("myha manager".to_string(), vec!["myha-manager".to_string()]),
        ];
        let (ca, pems) = crate::issue_certificates("myha etcd test CA", &leaves)?;
        let d = dir.join("tls");
        let files = EtcdTlsFiles {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server-key.pem"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client-key.pem"),
        };
        let [(server_cert, server_key), (client_cert, client_key)] = pems.as_slice() else {
            return Err(other("etcd TLS: two certificates expected".to_string()));
        };
        crate::write_file(&files.ca, ca.as_bytes(), 0o644)?;
        crate::write_file(&files.server_cert, server_cert.as_bytes(), 0o644)?;
        crate::write_private(&files.server_key, server_key)?;
        crate::write_file(&files.client_cert, client_cert.as_bytes(), 0o644)?;
        crate::write_private(&files.client_key, client_key)?;
        Ok(files)
    }
}

impl EtcdCluster {
    /// Start `n` members under `dir` and wait until every one is healthy.
    /// Ports come from the OS; a port taken between the question and
    /// etcd's bind makes a fresh attempt with new ports.
    pub fn start(dir: &Path, n: usize) -> Result<EtcdCluster> {
        EtcdCluster::start_with(dir, n, false)
    }

    /// [`EtcdCluster::start`] with clients on TLS, a client certificate
    /// required (a CA of the cluster's own: [`EtcdCluster::tls_files`]).
    pub fn start_tls(dir: &Path, n: usize) -> Result<EtcdCluster> {
        EtcdCluster::start_with(dir, n, true)
    }

    fn start_with(dir: &Path, n: usize, tls: bool) -> Result<EtcdCluster> {
        std::fs::create_dir_all(dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
        let tls = match tls {
            true => Some(EtcdTlsFiles::generate(dir)?),
            false => None,
        };
        let mut last = String::new();
        for attempt in 0..5 {
            let token = format!(
                "myha-{}-{}-{}",
                std::process::id(),
                ETCD_COUNTER.fetch_add(1, Ordering::SeqCst),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros())
            );
            let ports = free_ports(3 * n)?;
            let members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: ports[3 * i],
                    peer: ports[3 * i + 1],
                    metrics: ports[3 * i + 2],
                    scheme: if tls.is_some() { "https" } else { "http" },
                    data: dir.join(format!("m{i}.data")),
                    log: dir.join(format!("etcd-{i}.log")),
                    child: None,
                })
                .collect::<Vec<_>>();
            for m in &members {
                let _ = std::fs::remove_dir_all(&m.data);
            }
            let cluster = EtcdCluster {
                dir: dir.to_path_buf(),
                tls: tls.clone(),
                token,
                members: Mutex::new(members),
            };
            let started = (0..n).try_for_each(|i| cluster.spawn(i, "new"));
            let ready = started.and_then(|()| cluster.wait_all(Duration::from_secs(30)));
            match ready {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    let race = cluster.logs_contain("address already in use");
                    last = format!("{e}\n{}", cluster.log_tails(15));
                    cluster.stop_all();
                    if !race {
                        break;
                    }
                    eprintln!("etcd: a port was taken (attempt {attempt}), new ports");
                }
            }
        }
        Err(other(format!("etcd cluster did not start: {last}")))
    }

    fn logs_contain(&self, text: &str) -> bool {
        lock(&self.members)
            .iter()
            .any(|m| std::fs::read_to_string(&m.log).is_ok_and(|s| s.contains(text)))
    }

    /// The last `lines` of every member's log, with a header each.
    pub fn log_tails(&self, lines: usize) -> String {
        lock(&self.members)
            .iter()
            .map(|m| {
                format!(
                    "==== etcd {} ({}) log (tail)\n{}\n",
                    m.name,
                    m.client_url(),
                    m.log_tail(lines)
                )
            })
            .collect()
    }

    fn spawn(&self, i: usize, state: &str) -> Result<()> {
        let mut members = lock(&self.members);
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let m = members
            .get_mut(i)
            .ok_or_else(|| other(format!("no etcd member {i}")))?;
        m.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| other(format!("{}: {e}", m.log.display())))?;
        let err = log.try_clone().map_err(other)?;
        let mut cmd = Command::new(etcd_bin());
        // etcd takes its flags from ETCD_* variables too: none of the
        // caller's may change these members.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        if let Some(arch) = go_arch() {
            cmd.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args([
                "--listen-metrics-urls",
                &format!("http://{}", m.metrics_addr()),
            ])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd.spawn().map_err(|source| BedError::Spawn {
            cmd: format!("{} --name {}", etcd_bin().display(), m.name),
            source,
        })?;
        m.child = Some(child);
        Ok(())
    }

    /// An error if a member that should run has exited.
    fn check_alive(&self) -> Result<()> {
        let mut members = lock(&self.members);
        for m in members.iter_mut() {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    m.child = None;
                    return Err(other(format!(
                        "etcd member {} exited ({status}):\n{}",
                        m.name,
                        m.log_tail(15)
                    )));
                }
            }
        }
        Ok(())
    }

    fn wait_all(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            if lock(&self.members).iter().all(Member::healthy) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(BedError::Timeout(limit, "every etcd member healthy".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TLS files, if the members serve TLS.
    pub fn tls_files(&self) -> Option<&EtcdTlsFiles> {
        self.tls.as_ref()
    }

    /// Every member's client URL (`http://127.0.0.1:PORT`, `https` with
    /// TLS), running or not.
    pub fn client_urls(&self) -> Vec<String> {
        lock(&self.members).iter().map(Member::client_url).collect()
    }

    /// Every member's client address.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.members)
            .iter()
            .map(Member::client_addr)
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.members).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the data directories and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which members run (as child processes; a crashed one still counts
    /// until it is noticed).
    pub fn running(&self) -> Vec<bool> {
        lock(&self.members)
            .iter_mut()
            .map(|m| {
                if let Some(c) = m.child.as_mut() {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        m.child = None;
                    }
                }
                m.child.is_some()
            })
            .collect()
    }

    /// SIGKILL member `i` (its data stays).
    pub fn stop_member(&self, i: usize) {
        if let Some(m) = lock(&self.members).get_mut(i) {
            m.kill();
        }
    }

    /// Start member `i` again on its data and ports. Waits until it is
    /// healthy when a quorum runs with it, else until it serves HTTP.
    pub fn start_member(&self, i: usize) -> Result<()> {
        self.spawn(i, "existing")?;
        let quorum = self.len() / 2 + 1;
        let with_quorum = self.running().iter().filter(|r| **r).count() >= quorum;
        let what = if with_quorum { "healthy" } else { "serving" };
        let start = Instant::now();
        let limit = Duration::from_secs(30);
        loop {
            self.check_alive()?;
            let ok = lock(&self.members).get(i).is_some_and(|m| {
                if with_quorum {
                    m.healthy()
                } else {
                    m.serving()
                }
            });
            if ok {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(BedError::Timeout(
                    limit,
                    format!("etcd member {i} {what}\n{}", self.log_tails(15)),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL every member.
    /// Leave every member running after this process (a sandbox): their
    /// names (`etcd-{i}`) and pids; Drop then stops nothing.
    pub fn detach(&self) -> Vec<(String, u32)> {
        lock(&self.members)
            .iter_mut()
            .enumerate()
            .filter_map(|(i, m)| m.child.take().map(|c| (format!("etcd-{i}"), c.id())))
            .collect()
    }

    pub fn stop_all(&self) {
        for m in lock(&self.members).iter_mut() {
            m.kill();
        }
    }

    /// Start every stopped member (on its data) and wait until all are
    /// healthy.
    pub fn start_all(&self) -> Result<()> {
        let running = self.running();
        for (i, r) in running.iter().enumerate() {
            if !r {
                self.spawn(i, "existing")?;
            }
        }
        self.wait_all(Duration::from_secs(30))
            .map_err(|e| other(format!("{e}\n{}", self.log_tails(15))))
    }

    /// The index of the member that leads the raft group now, asked of
    /// every running member (`/v3/maintenance/status`).
    pub fn leader_member(&self) -> Option<usize> {
        let addrs = self.client_addrs();
        let mut ids = vec![None; addrs.len()];
        let mut leader = None;
        for (i, a) in addrs.iter().enumerate() {
            let Ok((200, body)) = http_plain(
                *a,
                "POST",
                "/v3/maintenance/status",
                Some("{}"),
                Duration::from_millis(500),
            ) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            ids[i] = v["header"]["member_id"].as_str().map(str::to_string);
            if let Some(l) = v["leader"].as_str().filter(|l| *l != "0") {
                leader = Some(l.to_string());
            }
        }
        let leader = leader?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// A request to the first running member that answers HTTP.
    fn request(&self, path: &str, body: &str) -> Result<serde_json::Value> {
        let mut last = String::from("no member running");
        let running = self.running();
        for (a, r) in self.client_addrs().into_iter().zip(running) {
            if !r {
                continue;
            }
            match http_plain(a, "POST", path, Some(body), Duration::from_secs(3)) {
                Ok((200, text)) => return serde_json::from_str(&text).map_err(other),
                Ok((code, text)) => last = format!("{a}{path}: {code} {text}"),
                Err(e) => last = format!("{a}{path}: {e}"),
            }
        }
        Err(other(format!("etcd request failed: {last}")))
    }

    /// Put `key` = `value` (over the JSON gateway of any running member).
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        let body = serde_json::json!({
            "key": base64_encode(key.as_bytes()),
            "value": base64_encode(value.as_bytes()),
        });
        self.request("/v3/kv/put", &body.to_string()).map(|_| ())
    }

    /// Every key with `prefix` and its value, sorted by key.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let body = serde_json::json!({
            "key": base64_encode(prefix.as_bytes()),
            "range_end": base64_encode(&prefix_end(prefix.as_bytes())),
        });
        self.kvs(&self.request("/v3/kv/range", &body.to_string())?)
    }

    /// `key`'s value, if it exists (a linearizable read: needs a quorum).
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let body = serde_json::json!({ "key": base64_encode(key.as_bytes()) });
        let kvs = self.kvs(&self.request("/v3/kv/range", &body.to_string())?)?;
        Ok(kvs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
    }

    fn kvs(&self, answer: &serde_json::Value) -> Result<Vec<(String, String)>> {
        let text = |v: &serde_json::Value| {
            let raw = base64_decode(v.as_str().unwrap_or_default())
                .ok_or_else(|| other(format!("not base64: {v}")))?;
            Ok(String::from_utf8_lossy(&raw).into_owned())
        };
        answer["kvs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| Ok((text(&kv["key"])?, text(&kv["value"])?)))
                    .collect()
            })
            .unwrap_or_else(|| Ok(Vec::new()))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

// ---------------------------------------------------------------------
// CutProxy
// ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    /// Every connection closed, new ones closed at once.
    Cut,
    /// Nothing relayed (bytes held, not lost), connections kept: a
    /// partition as TCP sees it.
    Hang,
}

#[derive(Debug)]
struct ProxyState {
    mode: Mode,
    /// Both ends of every live relayed connection, by id.
    conns: Vec<(u64, TcpStream, TcpStream)>,
}

#[derive(Debug)]
struct ProxyShared {
    target: SocketAddr,
    state: Mutex<ProxyState>,
    stop: AtomicBool,
    next: AtomicU64,
    relayed: AtomicU64,
}

impl ProxyShared {
    fn mode(&self) -> Mode {
        lock(&self.state).mode
    }

    fn close_all(state: &mut ProxyState) {
        for (_, a, b) in state.conns.drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

/// A TCP relay on 127.0.0.1 (a port from the OS) to one target: what a
/// manager dials instead of an etcd member, so a test can cut that one
/// path without touching anything else. Threads, two per connection.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

impl CutProxy {
    pub fn start(target: SocketAddr) -> Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(other)?;
        let addr = listener.local_addr().map_err(other)?;
        listener.set_nonblocking(true).map_err(other)?;
        let shared = Arc::new(ProxyShared {
            target,
            state: Mutex::new(ProxyState {
                mode: Mode::Open,
                conns: Vec::new(),
            }),
            stop: AtomicBool::new(false),
            next: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("cut-proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &s))
            .map_err(other)?;
        Ok(CutProxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Close every relayed connection now; new connections are closed as
    /// soon as they are accepted, until [`CutProxy::heal`].
    pub fn cut(&self) {
        let mut st = lock(&self.shared.state);
        st.mode = Mode::Cut;
        ProxyShared::close_all(&mut st);
    }

    /// Relay nothing more, in either direction, but keep every
    /// connection (and accept new ones): the peers see silence, as in a
    /// network partition, until [`CutProxy::heal`] delivers what was held.
    pub fn hang(&self) {
        lock(&self.shared.state).mode = Mode::Hang;
    }

    /// Relay again.
    pub fn heal(&self) {
        lock(&self.shared.state).mode = Mode::Open;
    }

    pub fn is_cut(&self) -> bool {
        self.shared.mode() != Mode::Open
    }

    /// Relayed connections open now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.state).conns.len()
    }

    /// Connections relayed since the start.
    pub fn relayed(&self) -> u64 {
        self.shared.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let s = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("cut-proxy-conn".into())
                    .spawn(move || relay(client, &s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn relay(client: TcpStream, shared: &Arc<ProxyShared>) {
    if shared.mode() == Mode::Cut || client.set_nonblocking(false).is_err() {
        return;
    }
    let _ = client.set_nodelay(true);
    let Ok(upstream) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let id = shared.next.fetch_add(1, Ordering::SeqCst);
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    {
        // Registered under the lock `cut` takes: a cut either sees this
        // connection or this sees the cut.
        let mut st = lock(&shared.state);
        if st.mode == Mode::Cut {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
        st.conns.push((id, c3, u3));
    }
    shared.relayed.fetch_add(1, Ordering::SeqCst);
    let s = shared.clone();
    let back = std::thread::Builder::new()
        .name("cut-proxy-back".into())
        .spawn(move || pump(u2, c2, &s));
    pump(client, upstream, shared);
    if let Ok(t) = back {
        let _ = t.join();
    }
    lock(&shared.state).conns.retain(|(i, _, _)| *i != id);
}

/// Copy `from` to `to` until either end closes or the proxy is cut; while
/// it hangs, hold what was read.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &ProxyShared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while shared.mode() == Mode::Hang && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while shared.mode() == Mode::Hang && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if shared.mode() == Mode::Cut || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------
// The bed's managers on etcd
// ---------------------------------------------------------------------

/// The etcd cluster, the proxies and the manager processes of an HA bed.
#[derive(Debug)]
pub(crate) struct HaManagers {
    pub(crate) children: Mutex<Vec<Option<Child>>>,
    /// `proxies[i][j]`: manager `i`'s path to etcd member `j`.
    pub(crate) proxies: Vec<Vec<CutProxy>>,
    /// Dropped last (fields drop in this order).
    pub(crate) etcd: EtcdCluster,
}

impl HaManagers {
    /// `direct`: the managers reach the members themselves (no proxies to
    /// cut; what a sandbox that outlives its starter needs).
    pub(crate) fn start(
        dir: &Path,
        managers: usize,
        direct: bool,
        tls: bool,
    ) -> Result<HaManagers> {
        let etcd = EtcdCluster::start_with(&dir.join("etcd"), ETCD_MEMBERS, tls)?;
        let proxies = (0..managers)
            .map(|_| match direct {
                true => Ok(Vec::new()),
                false => etcd
                    .client_addrs()
                    .into_iter()
                    .map(CutProxy::start)
                    .collect::<Result<Vec<_>>>(),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HaManagers {
            etcd,
            proxies,
            children: Mutex::new((0..managers).map(|_| None).collect()),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.proxies.len()
    }

    /// Manager `i`'s etcd endpoints: its own proxies, or the members.
    pub(crate) fn endpoints(&self, i: usize) -> Vec<String> {
        match self.proxies.get(i) {
            Some(p) if !p.is_empty() => {
                let scheme = if self.etcd.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                p.iter().map(|p| format!("{scheme}://{}", p.addr)).collect()
            }
            _ => self.etcd.client_urls(),
        }
    }

    /// Leave the managers and etcd running after this process: their
    /// names (`manager-{i}`, `etcd-{i}`) and pids.
    pub(crate) fn detach(self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for (i, c) in lock(&self.children).iter_mut().enumerate() {
            if let Some(c) = c.take() {
                out.push((format!("manager-{i}"), c.id()));
            }
        }
        out.extend(self.etcd.detach());
        out
    }
}

impl Drop for HaManagers {
    fn drop(&mut self) {
        for c in lock(&self.children).iter_mut() {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Then the proxies, then etcd (fields drop in declaration order).
    }
}

impl Bed {
    fn ha(&self) -> Result<&HaManagers> {
        self.ha
            .as_ref()
            .ok_or_else(|| other("not an HA bed (BedOptions::ha_managers is 0)"))
    }

    /// The number of managers (0 on a single-manager bed).
    pub fn ha_managers(&self) -> usize {
        self.ha.as_ref().map_or(0, HaManagers::len)
    }

    /// The etcd cluster of an HA bed (to stop and start members).
    ///
    /// # Panics
    /// On a bed without `ha_managers`.
    pub fn etcd(&self) -> &EtcdCluster {
        match &self.ha {
            Some(ha) => &ha.etcd,
            None => panic!("Bed::etcd on a bed without ha_managers"),
        }
    }

    /// Manager `i`'s base URL (`{scheme}://{gateway}:{7070 + i}`).
    pub fn manager_url_n(&self, i: usize) -> String {
        format!(
            "{}://{}:{}",
            self.scheme(),
            self.gateway,
            usize::from(HA_BASE_PORT) + i
        )
    }

    /// Manager `i`'s own configuration file.
    pub fn manager_config_n(&self, i: usize) -> PathBuf {
        self.dir.join(format!("manager-{i}.yaml"))
    }

    /// Manager `i`'s log file.
    pub fn manager_log_path_n(&self, i: usize) -> PathBuf {
        self.dir.join(format!("manager-{i}.log"))
    }

    /// Start manager `i` (SIGKILLing it first if it runs).
    pub fn start_manager_n(&self, i: usize) -> Result<()> {
        let ha = self.ha()?;
        let mut children = lock(&ha.children);
        let slot = children
            .get_mut(i)
            .ok_or_else(|| other(format!("no manager {i}")))?;
        if let Some(mut c) = slot.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.manager_log_path_n(i))
            .map_err(other)?;
        let err = log.try_clone().map_err(other)?;
        let child = Command::new(&self.myha_bin)
            .args(["manager", "--config"])
            .arg(self.manager_config_n(i))
            .env("MYHA_LOG", "info,myha_manager=debug")
            .env("MYHA_FAILPOINTS_FILE", self.failpoints_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| BedError::Spawn {
                cmd: format!("myha manager (manager {i})"),
                source,
            })?;
        *slot = Some(child);
        Ok(())
    }

    /// The managers' failpoints file (`MYHA_FAILPOINTS_FILE`, see the
    /// manager's `failpoint` module).
    pub fn failpoints_path(&self) -> PathBuf {
        self.dir.join("failpoints")
    }

    /// Make every manager pause `pause` right after an operation reaches
    /// `phase` (`"fenced"`, `"promoted"`, ...); `None` removes the pause.
    pub fn set_failpoint(&self, pause: Option<(&str, Duration)>) -> Result<()> {
        let path = self.failpoints_path();
        match pause {
            Some((phase, d)) => {
                std::fs::write(&path, format!("{phase} {}\n", d.as_millis())).map_err(other)
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(other(e)),
                _ => Ok(()),
            },
        }
    }

    /// How many times manager `i`'s log says an operation paused at a
    /// failpoint.
    pub fn failpoint_pauses(&self, i: usize) -> usize {
        std::fs::read_to_string(self.manager_log_path_n(i))
            .map(|l| l.matches("failpoint: pausing").count())
            .unwrap_or(0)
    }

    /// SIGKILL manager `i` (kill -9: a crash).
    pub fn kill_manager_n(&self, i: usize) {
        if let Ok(ha) = self.ha() {
            if let Some(mut c) = lock(&ha.children).get_mut(i).and_then(Option::take) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Stop manager `i` as an operator would: SIGTERM, SIGKILL after 5 s.
    pub fn stop_manager_n(&self, i: usize) {
        if let Ok(ha) = self.ha() {
            let child = lock(&ha.children).get_mut(i).and_then(Option::take);
            if let Some(mut c) = child {
                crate::terminate(&mut c);
            }
        }
    }

    /// Whether manager `i`'s process runs.
    pub fn manager_running_n(&self, i: usize) -> bool {
        let Ok(ha) = self.ha() else {
            return false;
        };
        let mut children = lock(&ha.children);
        let Some(slot) = children.get_mut(i) else {
            return false;
        };
        if let Some(c) = slot.as_mut() {
            if matches!(c.try_wait(), Ok(Some(_))) {
                *slot = None;
            }
        }
        slot.is_some()
    }

    /// Apply `f` to every proxy between manager `i` and etcd.
    fn each_proxy_of(&self, i: usize, f: fn(&CutProxy)) -> Result<()> {
        let ha = self.ha()?;
        let p = ha
            .proxies
            .get(i)
            .ok_or_else(|| other(format!("no manager {i}")))?;
        p.iter().for_each(f);
        Ok(())
    }

    /// Cut manager `i` off every etcd member (its proxies close every
    /// connection and refuse new ones); nothing else changes.
    pub fn cut_from_etcd(&self, i: usize) -> Result<()> {
        self.each_proxy_of(i, CutProxy::cut)
    }

    /// Like [`Bed::cut_from_etcd`] but silent: manager `i`'s connections
    /// to etcd stay open and carry nothing (a partition as TCP sees it).
    pub fn hang_etcd(&self, i: usize) -> Result<()> {
        self.each_proxy_of(i, CutProxy::hang)
    }

    /// Undo [`Bed::cut_from_etcd`] / [`Bed::hang_etcd`].
    pub fn heal_etcd(&self, i: usize) -> Result<()> {
        self.each_proxy_of(i, CutProxy::heal)
    }

    /// Manager `i`'s `/v1/health` (the operator's token), within `timeout`.
    pub fn health_n(&self, i: usize, timeout: Duration) -> Result<Health> {
        let url = format!("{}/v1/health", self.manager_url_n(i));
        let (code, body) = self.http_within("GET", &url, Some(&self.token), None, timeout)?;
        if code != 200 {
            return Err(other(format!("GET {url}: {code} {body}")));
        }
        serde_json::from_str(&body).map_err(|e| other(format!("GET {url}: {e}: {body}")))
    }

    /// Every manager's coordination as its `/v1/health` shows it (1 s
    /// each, asked in parallel): `None` for a manager that did not answer
    /// or answered without one.
    pub fn coordinations(&self) -> Vec<Option<Coordination>> {
        let n = self.ha_managers();
        std::thread::scope(|s| {
            let asks: Vec<_> = (0..n)
                .map(|i| {
                    s.spawn(move || {
                        self.health_n(i, Duration::from_secs(1))
                            .ok()
                            .and_then(|h| h.coordination)
                    })
                })
                .collect();
            asks.into_iter().map(|a| a.join().ok().flatten()).collect()
        })
    }

    /// The managers whose health says `is_leader` now.
    pub fn leaders(&self) -> Vec<usize> {
        self.coordinations()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.is_leader))
            .map(|(i, _)| i)
            .collect()
    }

    /// The one manager that leads now; `None` if none does, or several
    /// claim to (printed: that is a split).
    pub fn leader(&self) -> Option<usize> {
        let l = self.leaders();
        match l.as_slice() {
            [one] => Some(*one),
            [] => None,
            several => {
                eprintln!("SEVERAL MANAGERS CLAIM TO LEAD: {several:?}");
                None
            }
        }
    }

    /// Wait (sampling every 100 ms) until exactly one manager leads.
    pub fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let mut found = None;
        wait_until(timeout, "exactly one manager leading", || {
            found = self.leader();
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(found.is_some())
        })
        .map_err(|e| {
            other(format!(
                "{e}\ncoordination: {:?}\n{}",
                self.coordinations(),
                self.manager_log()
            ))
        })?;
        found.ok_or_else(|| other("no leader"))
    }

    /// A copy of the main configuration (in the bed's directory, so its
    /// relative paths hold) whose `manager.urls` lists manager `first`
    /// first: the CLI asks it before any other.
    pub fn config_preferring(&self, first: usize) -> Result<PathBuf> {
        let n = self.ha_managers();
        if first >= n {
            return Err(other(format!("no manager {first}")));
        }
        let text = std::fs::read_to_string(&self.config_path).map_err(other)?;
        let urls = self.urls_line(&(0..n).collect::<Vec<_>>());
        let mut order = vec![first];
        order.extend((0..n).filter(|i| *i != first));
        if !text.contains(&urls) {
            return Err(other(format!(
                "no `{}` in {}",
                urls.trim(),
                self.config_path.display()
            )));
        }
        let path = self.dir.join(format!("myha-manager-{first}-first.yaml"));
        crate::write_file(
            &path,
            text.replacen(&urls, &self.urls_line(&order), 1).as_bytes(),
            0o644,
        )?;
        Ok(path)
    }

    /// `  urls: [...]` with the given managers' URLs, in that order.
    pub(crate) fn urls_line(&self, order: &[usize]) -> String {
        let urls: Vec<String> = order.iter().map(|i| self.manager_url_n(*i)).collect();
        format!("  urls: [{}]\n", urls.join(", "))
    }

    /// The `manager:` block of an HA bed's configuration: manager `i`'s
    /// own (its listen, URL, state_dir and etcd endpoints: its proxies),
    /// or with `None` the main configuration's (manager 0's address and
    /// state_dir, the members' own URLs) that agents, routers and the CLI
    /// read.
    pub(crate) fn ha_manager_block(&self, ha: &HaManagers, i: Option<usize>) -> String {
        let k = i.unwrap_or(0);
        let port = usize::from(HA_BASE_PORT) + k;
        let endpoints = match i {
            Some(i) => ha.endpoints(i),
            None => ha.etcd.client_urls(),
        };
        format!(
            "manager:\n  listen: {gw}:{port}\n  url: {url}\n{urls}  token_file: manager.token\n  state_dir: {dir}/state-{k}\n  probe_interval: 250ms\n  connect_timeout: 300ms\n  query_timeout: 1s\n  coordination:\n    etcd:\n      endpoints: [{eps}]\n      prefix: /myha/{prefix}\n      lease_ttl: {ttl}s\n{tls}",
            gw = self.gateway,
            url = self.manager_url_n(k),
            urls = self.urls_line(&(0..ha.len()).collect::<Vec<_>>()),
            dir = self.dir.display(),
            eps = endpoints.join(", "),
            prefix = self.prefix,
            ttl = HA_LEASE_TTL.as_secs(),
            tls = ha.etcd.tls_files().map_or(String::new(), |t| format!(
                "      tls: {{ ca_file: {}, cert_file: {}, key_file: {} }}\n",
                t.ca.display(),
                t.client_cert.display(),
                t.client_key.display()
            )),
        )
    }

    /// The tail (`lines`) of every manager's log, a header each.
    pub(crate) fn ha_manager_logs(&self, lines: usize) -> String {
        (0..self.ha_managers())
            .map(|i| {
                let text = std::fs::read_to_string(self.manager_log_path_n(i))
                    .map(|s| {
                        let l: Vec<&str> = s.lines().collect();
                        l[l.len().saturating_sub(lines)..].join("\n")
                    })
                    .unwrap_or_default();
                format!(
                    "==== manager {i} ({}{}) log (tail)\n{text}\n",
                    self.manager_url_n(i),
                    if self.manager_running_n(i) {
                        ""
                    } else {
                        ", not running"
                    }
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BedOptions, Host};

    /// A bed's files without Docker: hosts and network are names only.
    fn paper_bed(dir: &Path, ha: Option<HaManagers>) -> Bed {
        let tokens = (1..=3).map(|i| (format!("db{i}"), format!("agent-token-{i}")));
        Bed {
            prefix: "myha-paper".into(),
            network: "myha-paper".into(),
            gateway: "10.213.250.1".into(),
            config_path: dir.join("myha.yaml"),
            dir: dir.to_path_buf(),
            token: "operator-token".into(),
            manager_token: "manager-token".into(),
            monitor_token: "monitor-token".into(),
            router_token: "router-token".into(),
            agent_tokens: tokens.collect(),
            tls: false,
            hosts: (1..=3)
                .map(|i| Host {
                    name: format!("db{i}"),
                    container: format!("myha-paper-db{i}"),
                    ip: format!("10.213.250.{}", 10 + i),
                    server_id: i,
                })
                .collect(),
            myha_bin: PathBuf::from("/nonexistent/myha"),
            owner: "paper".into(),
            manager: None,
            router: None,
            // Its Drop touches no container or network.
            keep: true,
            ha,
        }
    }

    fn paper_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("myha-t{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_single_manager_bed_writes_the_manager_block_it_always_did() {
        let dir = paper_dir("paper-single");
        let bed = paper_bed(&dir, None);
        bed.write_config(&BedOptions::new("/nonexistent/myha"))
            .unwrap();
        let text = std::fs::read_to_string(&bed.config_path).unwrap();
        let block = format!(
            "with its own agent token (and certificate), nothing else.\nmanager:\n  listen: 10.213.250.1:7070\n  url: http://10.213.250.1:7070\n  token_file: manager.token\n  state_dir: {}/state\n  probe_interval: 250ms\n  connect_timeout: 300ms\n  query_timeout: 1s\nagent:\n  port: 7071\n",
            dir.display()
        );
        assert!(text.contains(&block), "{text}");
        assert!(!text.contains("coordination"), "{text}");
        assert!(!dir.join("manager-0.yaml").exists());
        myha_config::load(&bed.config_path).unwrap();
        drop(bed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ha_bed_writes_one_configuration_per_manager() {
        let dir = paper_dir("paper-ha");
        let ha = HaManagers::start(&dir, 3, false, false).unwrap();
        let bed = paper_bed(&dir, Some(ha));
        bed.write_config(&BedOptions::new("/nonexistent/myha"))
            .unwrap();
        let urls: Vec<String> = (0..3)
            .map(|i| format!("http://10.213.250.1:{}", 7070 + i))
            .collect();
        let etcd_urls = bed.etcd().client_urls();
        let main = myha_config::load(&bed.config_path).unwrap();
        assert_eq!(main.manager.urls, urls);
        assert_eq!(main.manager.url, urls[0]);
        match &main.manager.coordination {
            myha_config::Coordination::Etcd(e) => {
                assert_eq!(e.endpoints, etcd_urls);
                assert_eq!(e.prefix, "/myha/myha-paper");
                assert_eq!(e.lease_ttl, HA_LEASE_TTL);
            }
            other => panic!("{other:?}"),
        }
        // The hosts read the main configuration.
        assert_eq!(
            std::fs::read_to_string(bed.host_dir("db2").join("myha.yaml")).unwrap(),
            std::fs::read_to_string(&bed.config_path).unwrap()
        );
        let main_text = std::fs::read_to_string(&bed.config_path).unwrap();
        for i in 0..3 {
            let path = bed.manager_config_n(i);
            let own = myha_config::load(&path).unwrap();
            assert_eq!(own.manager.url, urls[i]);
            assert_eq!(own.manager.urls, urls);
            assert_eq!(own.manager.listen.port(), 7070 + i as u16);
            assert_eq!(
                own.manager.state_dir,
                dir.join(format!("state-{i}")),
                "manager {i}"
            );
            let myha_config::Coordination::Etcd(e) = &own.manager.coordination else {
                panic!("manager {i}: no etcd");
            };
            assert_eq!(e.endpoints, bed.ha().unwrap().endpoints(i));
            assert_eq!(e.prefix, "/myha/myha-paper");
            // Apart from the manager block, the same file.
            let text = std::fs::read_to_string(&path).unwrap();
            let tail = |t: &str| t[t.find("agent:\n").unwrap()..].to_string();
            assert_eq!(tail(&text), tail(&main_text), "manager {i}");
        }
        // A configuration that asks manager 2 first.
        let pref = bed.config_preferring(2).unwrap();
        let c = myha_config::load(&pref).unwrap();
        assert_eq!(
            c.manager.urls,
            vec![urls[2].clone(), urls[0].clone(), urls[1].clone()]
        );
        // Each manager reaches etcd through its own proxies.
        let addr = bed.ha().unwrap().proxies[1][0].addr();
        assert!(
            http_plain(addr, "GET", "/health", None, Duration::from_secs(2))
                .is_ok_and(|(code, _)| code == 200)
        );
        bed.cut_from_etcd(1).unwrap();
        assert!(
            !http_plain(addr, "GET", "/health", None, Duration::from_secs(2))
                .is_ok_and(|(code, _)| code == 200)
        );
        let other = bed.ha().unwrap().proxies[0][0].addr();
        assert!(
            http_plain(other, "GET", "/health", None, Duration::from_secs(2))
                .is_ok_and(|(code, _)| code == 200)
        );
        bed.heal_etcd(1).unwrap();
        assert!(
            http_plain(addr, "GET", "/health", None, Duration::from_secs(2))
                .is_ok_and(|(code, _)| code == 200)
        );
        // No manager runs: no leader, quickly.
        let t = Instant::now();
        assert_eq!(bed.leaders(), Vec::<usize>::new());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(bed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
