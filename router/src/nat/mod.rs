//! `relay: nat`: the kernel forwards new connections to their backend by
//! destination NAT, as LVS-NAT or kube-proxy do; the router decides and
//! writes the rules, and moves no byte of a forwarded connection.
//!
//! The router owns one nftables table (`myha_router_<ip>_<port>`, named
//! after its writer listener). Every change of the view, and every second
//! anyway, it replaces the whole table in one atomic transaction:
//!
//! - `dnat_local` (output) and `dnat_remote` (prerouting) send the SYN of a
//!   new connection to a listener's address to the chosen backend: the
//!   writer port to the master, the reader port over the pool
//!   (`numgen inc` for round-robin and weighted, `jhash ip saddr` for
//!   address hash). Only new connections reach NAT chains: an established
//!   connection keeps its backend (conntrack holds the binding), so a
//!   replica leaving the pool is drained, as in user space.
//! - When no rule takes a SYN (the master is changing, there is no master,
//!   the reader pool is empty with no fallback, `least_connections`, a
//!   loopback client of a wildcard listener), it reaches the router's own
//!   listening socket and is served in user space: a held writer
//!   connection is held exactly as without NAT.
//! - `masq` masquerades forwarded connections, so a backend answers
//!   through this host even when the client is elsewhere.
//! - `cut_*` (output, input, forward) answer with a TCP reset every packet
//!   of a forwarded connection whose backend is no longer live: on the
//!   writer port, any server but the master of the newest epoch; on the
//!   reader port, a server known down. No byte reaches the old master after
//!   the epoch changed, in either direction.
//! - Dead man's switch: the listener ports are in a set whose elements
//!   expire after [`TTL`], and so are the live backends. A router that dies
//!   stops refreshing them: within `TTL` new connections are refused (no
//!   listener) and forwarded ones are reset, as if the router's own sockets
//!   had closed. No rule can outlive its router and send writes to a master
//!   the manager has since replaced. A router that starts deletes the table
//!   a dead one left.
//!
//! - Connection caps: a second table (`<table>_limits`, see
//!   [`limits_ruleset`]) answers with a TCP reset a new connection to a
//!   listener over `max_connections` (per listener) or
//!   `max_connections_per_source` (per source address and listener),
//!   counting the kernel's connection-tracking entries (`ct count`), before
//!   any NAT. It is a table of its own so that the counts survive the
//!   rewrites of the main table; its listener set expires as the main
//!   table's does.
//!
//! The rules are plain text handed to `nft -f -` (the nftables package);
//! building them is a pure function ([`rules`]), tested there.
//!
//! - [`rules`]: the rulesets, as text (pure);
//! - [`conntrack`]: closing this host's clients of forwarded connections;
//! - [`driver`]: what the rules should say ([`driver::nat_plan`], pure)
//!   and the loop that keeps them in step with the view.

use std::net::{SocketAddr, SocketAddrV4};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

pub(crate) mod conntrack;
pub(crate) mod driver;
pub(crate) mod rules;

use rules::{
    limit_counts, limits_refresh, limits_removal, limits_ruleset, refresh, ruleset, table_name,
};
pub(crate) use rules::{limits_table_name, Caps, Plan};

/// Rules and live sets expire this long after the router's last refresh:
/// room for a refresh period and two slow runs of `nft` before anything
/// expires while the router lives.
pub(crate) const TTL: Duration = Duration::from_secs(6);
/// The router renews its table at least this often.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);
/// One run of `nft`.
const NFT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    #[error("nft did not answer within {0:?}")]
    Timeout(Duration),
    #[error("nft refused the rules: {0}")]
    Refused(String),
}

/// Runs a tool with a timeout; its standard output. (`ss -K` reports an
/// "Invalid argument" from the kernel for sockets it could not destroy
/// on stderr and still exits 0.)
async fn run_tool(tool: &str, args: &[&str]) -> Result<String, NatError> {
    let run = tokio::process::Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .map_err(|_| NatError::Timeout(NFT_TIMEOUT))?
        .map_err(NatError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NatError::Refused(format!(
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether this host forwards IPv4 between interfaces.
fn forwarding() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1")
}

/// The router's nftables table.
pub(crate) struct Nat {
    pub table: String,
    writer_listen: SocketAddrV4,
    reader_listen: SocketAddrV4,
    /// The connection caps the kernel applies; `None`: none.
    pub caps: Option<Caps>,
    /// The caps' table is in place (written, and no run since failed).
    limits_in_place: AtomicBool,
}

impl Nat {
    /// `None` with the reason when the listeners are not IPv4 (the
    /// configuration refuses that already) or nft cannot be run here.
    pub async fn start(writer: SocketAddr, reader: SocketAddr) -> Result<Self, String> {
        let (SocketAddr::V4(writer_listen), SocketAddr::V4(reader_listen)) = (writer, reader)
        else {
            return Err("the listeners are not IPv4".into());
        };
        let nat = Self {
            table: table_name(writer_listen),
            writer_listen,
            reader_listen,
            caps: None,
            limits_in_place: AtomicBool::new(false),
        };
        nat.nft("list tables\n").await.map_err(|e| e.to_string())?;
        Ok(nat)
    }

    /// Replaces the table with the rules of `plan`. Clients of other
    /// hosts are forwarded only if this host forwards IPv4 (read each
    /// time: it can change); otherwise they reach the router's sockets.
    pub async fn apply(&self, plan: &Plan) -> Result<(), NatError> {
        let rules = ruleset(
            &self.table,
            self.writer_listen,
            self.reader_listen,
            Some(plan),
            forwarding(),
            TTL,
        );
        self.nft_with_limits(rules).await
    }

    /// Runs `script` with the renewal of the caps' table when it is in
    /// place; a failure leaves the caps to [`Nat::ensure_limits`] (a caps'
    /// table gone missing must not stop the main table's renewals).
    async fn nft_with_limits(&self, mut script: String) -> Result<(), NatError> {
        if self.caps.is_some() && self.limits_in_place.load(Ordering::Relaxed) {
            script.push_str(&limits_refresh(
                &self.table,
                self.writer_listen,
                self.reader_listen,
                TTL,
            ));
        }
        let done = self.nft(&script).await;
        if done.is_err() {
            self.limits_in_place.store(false, Ordering::Relaxed);
        }
        done
    }

    /// Writes the caps' table if it is not in place. Its own run: a kernel
    /// that refuses it (no `ct count` in sets, no reject before routing)
    /// leaves NAT working, without caps. Returns whether it wrote.
    pub async fn ensure_limits(&self) -> Result<bool, NatError> {
        let Some(caps) = self.caps else {
            return Ok(false);
        };
        if self.limits_in_place.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let rules = limits_ruleset(
            &self.table,
            self.writer_listen,
            self.reader_listen,
            caps,
            TTL,
        );
        self.nft(&rules).await?;
        self.limits_in_place.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// What the caps' rules refused so far: (cap, endpoint, count).
    pub async fn limit_counts(&self) -> Result<Vec<(&'static str, &'static str, u64)>, NatError> {
        let t = limits_table_name(&self.table);
        let json = run_tool("nft", &["-j", "list", "counters", "table", "ip", &t]).await?;
        Ok(limit_counts(&json))
    }

    /// After a failed update the kernel may still forward by the rules
    /// before it: empty the sets (new connections reach the router, the
    /// forwarded ones are reset) rather than let them run on until they
    /// expire.
    pub async fn disarm(&self) -> Result<(), NatError> {
        let t = &self.table;
        self.nft(&format!(
            "flush set ip {t} alive\nflush set ip {t} writer_live\nflush set ip {t} reader_live\n"
        ))
        .await
    }

    /// Renews the timeouts of the table `apply` wrote for `plan`.
    pub async fn refresh(&self, plan: &Plan) -> Result<(), NatError> {
        let script = refresh(
            &self.table,
            self.writer_listen,
            self.reader_listen,
            plan,
            TTL,
        );
        self.nft_with_limits(script).await
    }

    /// The router is stopping: leave the table that forwards nothing and
    /// resets what it forwarded (see [`ruleset`]), and remove the caps
    /// (nothing is forwarded any more).
    pub async fn retire(&self) -> Result<(), NatError> {
        let mut rules = ruleset(
            &self.table,
            self.writer_listen,
            self.reader_listen,
            None,
            false,
            TTL,
        );
        rules.push_str(&limits_removal(&self.table));
        self.limits_in_place.store(false, Ordering::Relaxed);
        self.nft(&rules).await
    }

    async fn nft(&self, script: &str) -> Result<(), NatError> {
        let run = async {
            let mut child = tokio::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(NatError::Spawn)?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(script.as_bytes())
                    .await
                    .map_err(NatError::Spawn)?;
            }
            let out = child.wait_with_output().await.map_err(NatError::Spawn)?;
            if out.status.success() {
                Ok(())
            } else {
                Err(NatError::Refused(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ))
            }
        };
        tokio::time::timeout(NFT_TIMEOUT, run)
            .await
            .map_err(|_| NatError::Timeout(NFT_TIMEOUT))?
    }
}
