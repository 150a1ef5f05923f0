//! Virtual IP (VIP) handling: put an IPv4 address on a local interface, take
//! it off again, and tell the neighbours about it.
//!
//! * The address itself is added and removed over rtnetlink (the same
//!   requests as `ip addr add A/P dev IF` and `ip addr del A/P dev IF`), in
//!   the network namespace of the calling process. That needs
//!   `CAP_NET_ADMIN`, nothing else; no raw socket is opened here.
//! * The gratuitous (unsolicited) ARP announcements are sent by the external
//!   `arping` tool, one process per frame, so this crate needs no raw socket
//!   and no `unsafe`. Debian's `arping` package (Thomas Habets' arping) is
//!   what the host image installs and what this module is tested with; the
//!   iputils flavour (`iputils-arping`) is recognised too. The flavour is
//!   detected once, from `arping -V`, and remembered.
//! * `add` sends `arp_count` announcements spread evenly over a window of
//!   about one second: frame `k` (counting from 0) starts at
//!   `k × (1 s / arp_count)` after the address was added, so the first one
//!   goes out immediately. `add` returns after the last one.
//! * A failed announcement is **not** an error: by then the address has been
//!   moved, which is the part that matters, and neighbours also learn the new
//!   MAC address from ordinary ARP once their cache entry expires. Failures
//!   are reported in [`VipOutcome::announcements_sent`] (frames actually sent)
//!   and [`VipOutcome::detail`]. On an interface flagged `NOARP` (a `dummy`
//!   interface, `ip link set IF arp off`) or on a loopback interface no
//!   announcement is attempted at all, and `detail` says so.
//! * Every netlink request and every external command runs under a
//!   [`tokio::time::timeout`]; an `arping` that overruns is killed.
//!
//! Presence is exact: the address counts as present on the interface only
//! with the configured prefix length (as `ip addr del A/P dev IF` would match
//! it). The same address with another prefix length is a different entry to
//! the kernel and is left alone.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

/// Upper bound for one netlink request (link lookup, address dump, add, del).
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one `arping` process (one frame, or the flavour probe).
pub const ARPING_TIMEOUT: Duration = Duration::from_secs(3);
/// The announcements of one `add` are spread over this window.
pub const ANNOUNCE_WINDOW: Duration = Duration::from_secs(1);
/// Largest accepted [`VipSpec::arp_count`]; each frame costs one process.
pub const MAX_ARP_COUNT: u32 = 20;

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
const MAX_IFNAME_LEN: usize = 15;

// Linux errno values, as carried (negated) in netlink error messages.
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

/// Where `arping` is looked for when it is not on `PATH` (a non-root `PATH`
/// often lacks the sbin directories).
const ARPING_FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// A netlink request failed (no permission, socket error, kernel refusal).
    #[error("netlink: {0}")]
    Netlink(String),
    /// The named interface does not exist in this network namespace.
    #[error("no network interface named {0:?}")]
    NoInterface(String),
    /// An announcement could not be sent. `add` reports these in
    /// [`VipOutcome::detail`] rather than failing.
    #[error("arping: {0}")]
    Arping(String),
    /// The spec cannot be applied as given (bad prefix length, address or
    /// interface name, too many announcements).
    #[error("invalid VIP spec: {0}")]
    InvalidSpec(String),
    /// A netlink request or an external command did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// One virtual address: `address/prefix_len` on `interface`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipSpec {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub interface: String,
    /// Gratuitous ARP frames `add` sends (0 sends none; at most
    /// [`MAX_ARP_COUNT`]).
    pub arp_count: u32,
}

/// What `add` or `remove` did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipOutcome {
    /// Whether the address was added (or removed) by this call; false when it
    /// was already in the wanted state.
    pub changed: bool,
    /// Gratuitous ARP frames actually sent (always 0 for `remove`).
    pub announcements_sent: u32,
    /// Wall time of the whole call, announcements included.
    pub elapsed_ms: u64,
    /// One line for humans and logs: what was done, and why any announcement
    /// is missing.
    pub detail: String,
}

/// Put `spec.address/spec.prefix_len` on `spec.interface` (idempotent), then
/// send `spec.arp_count` gratuitous ARP announcements, the first immediately.
/// The announcements are sent even when the address was already there.
pub async fn add(spec: &VipSpec) -> Result<VipOutcome, VipError> {
    let start = Instant::now();
    validate(spec)?;
    // Find arping before touching the address, so that the first frame can
    // follow the address without a probe in between.
    let arping = if spec.arp_count > 0 {
        Some(arping_tool().await)
    } else {
        None
    };

    let nl = Netlink::open()?;
    let link = nl.link(&spec.interface).await?;
    let index = link.header.index;
    let changed = if nl.find_address(index, spec).await?.is_some() {
        false
    } else {
        nl.add_address(index, spec).await?
    };
    drop(nl);

    let what = format!("{}/{} on {}", spec.address, spec.prefix_len, spec.interface);
    let mut detail = if changed {
        format!("added {what}")
    } else {
        format!("{what} was already present")
    };
    let flags = link.header.flags;
    let mut sent = 0;
    match arping {
        None => detail.push_str("; no announcements requested"),
        Some(_) if flags.contains(LinkFlags::Loopback) => {
            detail.push_str("; no announcements: loopback interface");
        }
        Some(_) if flags.contains(LinkFlags::Noarp) => {
            detail.push_str("; no announcements: interface has NOARP set");
        }
        Some(Err(e)) => {
            detail.push_str(&format!("; 0/{} announcements sent: {e}", spec.arp_count));
        }
        Some(Ok(tool)) => {
            let (n, failures) = announce(&tool, spec).await;
            sent = n;
            detail.push_str(&format!(
                "; {n}/{} gratuitous ARP announcements sent",
                spec.arp_count
            ));
            if !failures.is_empty() {
                detail.push_str(&format!(" ({})", failures.join("; ")));
            }
        }
    }
    if !flags.contains(LinkFlags::Up) {
        detail.push_str("; interface is down");
    }
    if changed {
        tracing::info!(vip = %what, announcements = sent, "VIP added: {detail}");
    }
    if sent < spec.arp_count {
        tracing::warn!(vip = %what, "VIP announcements incomplete: {detail}");
    }
    Ok(VipOutcome {
        changed,
        announcements_sent: sent,
        elapsed_ms: millis(start.elapsed()),
        detail,
    })
}

/// When the follow-up announcements go, after the first burst of [`add`]:
/// a neighbour that missed or ignored the first burst (a lost frame, an
/// entry updated within its `locktime`, a host that answered for the VIP a
/// moment before it lost it) would otherwise keep sending to the old MAC
/// address until its entry goes stale, 30 s or more. keepalived repeats
/// its announcements 5 s after taking an address for the same reason.
pub const FOLLOW_UP_ANNOUNCEMENTS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(5)];

/// Announce the VIP again at each of [`FOLLOW_UP_ANNOUNCEMENTS`] (one frame
/// each), as long as it is still on the interface; stops at the first
/// check that finds it gone. Failures are logged, never returned: the
/// address is in place, which is what matters.
pub async fn follow_up(spec: VipSpec) {
    if spec.arp_count == 0 {
        return;
    }
    let start = tokio::time::Instant::now();
    let Ok(tool) = arping_tool().await else {
        return;
    };
    for at in FOLLOW_UP_ANNOUNCEMENTS {
        tokio::time::sleep_until(start + at).await;
        if !is_present(&spec).await.unwrap_or(false) {
            return;
        }
        if let Err(e) = send_one(&tool, &spec).await {
            tracing::warn!(vip = %spec.address, error = %e, "follow-up VIP announcement failed");
        }
    }
}

/// Take `spec.address/spec.prefix_len` off `spec.interface` (idempotent: an
/// absent address gives `changed == false`). Sends nothing.
pub async fn remove(spec: &VipSpec) -> Result<VipOutcome, VipError> {
    let start = Instant::now();
    validate(spec)?;
    let nl = Netlink::open()?;
    let link = nl.link(&spec.interface).await?;
    let changed = match nl.find_address(link.header.index, spec).await? {
        Some(existing) => nl.del_address(existing).await?,
        None => false,
    };
    let what = format!("{}/{} on {}", spec.address, spec.prefix_len, spec.interface);
    let detail = if changed {
        tracing::info!(vip = %what, "VIP removed");
        format!("removed {what}")
    } else {
        format!("{what} was not present")
    };
    Ok(VipOutcome {
        changed,
        announcements_sent: 0,
        elapsed_ms: millis(start.elapsed()),
        detail,
    })
}

/// Whether `spec.address/spec.prefix_len` is on `spec.interface`.
pub async fn is_present(spec: &VipSpec) -> Result<bool, VipError> {
    validate(spec)?;
    let nl = Netlink::open()?;
    let link = nl.link(&spec.interface).await?;
    Ok(nl.find_address(link.header.index, spec).await?.is_some())
}

fn validate(spec: &VipSpec) -> Result<(), VipError> {
    let name = &spec.interface;
    if name.is_empty()
        || name.len() > MAX_IFNAME_LEN
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(VipError::InvalidSpec(format!(
            "{name:?} is not a valid interface name"
        )));
    }
    if spec.prefix_len > 32 {
        return Err(VipError::InvalidSpec(format!(
            "prefix length {} is above 32",
            spec.prefix_len
        )));
    }
    let a = spec.address;
    if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
        return Err(VipError::InvalidSpec(format!(
            "{a} cannot be a virtual IP address"
        )));
    }
    if spec.arp_count > MAX_ARP_COUNT {
        return Err(VipError::InvalidSpec(format!(
            "arp_count {} is above {MAX_ARP_COUNT}",
            spec.arp_count
        )));
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run one netlink step under [`NETLINK_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, VipError>>,
) -> Result<T, VipError> {
    match tokio::time::timeout(NETLINK_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(VipError::Timeout(format!(
            "{what} took longer than {NETLINK_TIMEOUT:?}"
        ))),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// One rtnetlink connection; its driver task is stopped on drop.
struct Netlink {
    handle: rtnetlink::Handle,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Netlink {
    fn open() -> Result<Self, VipError> {
        let (connection, handle, _messages) = rtnetlink::new_connection()
            .map_err(|e| VipError::Netlink(format!("cannot open a netlink socket: {e}")))?;
        let driver = tokio::spawn(connection);
        Ok(Self { handle, driver })
    }

    async fn link(&self, name: &str) -> Result<LinkMessage, VipError> {
        bounded(&format!("looking up interface {name:?}"), async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match links.try_next().await {
                Ok(Some(link)) => Ok(link),
                Ok(None) => Err(VipError::NoInterface(name.to_string())),
                Err(e) if errno(&e) == Some(ENODEV) => Err(VipError::NoInterface(name.to_string())),
                Err(e) => Err(VipError::Netlink(format!(
                    "looking up interface {name:?}: {e}"
                ))),
            }
        })
        .await
    }

    /// The kernel's entry for exactly `spec.address/spec.prefix_len` on the
    /// link `index`, if there is one.
    async fn find_address(
        &self,
        index: u32,
        spec: &VipSpec,
    ) -> Result<Option<AddressMessage>, VipError> {
        let wanted = IpAddr::V4(spec.address);
        bounded("listing addresses", async {
            let mut found = None;
            let mut dump = self
                .handle
                .address()
                .get()
                .set_link_index_filter(index)
                .execute();
            // Read the whole dump, so that the request completes cleanly.
            while let Some(msg) = dump
                .try_next()
                .await
                .map_err(|e| VipError::Netlink(format!("listing addresses: {e}")))?
            {
                if found.is_none()
                    && msg.header.family == AddressFamily::Inet
                    && msg.header.prefix_len == spec.prefix_len
                    && local_address(&msg) == Some(wanted)
                {
                    found = Some(msg);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Add the address; `Ok(false)` when the kernel says it already exists
    /// (someone else added it since we looked).
    async fn add_address(&self, index: u32, spec: &VipSpec) -> Result<bool, VipError> {
        let what = format!("adding {}/{}", spec.address, spec.prefix_len);
        bounded(&what, async {
            let result = self
                .handle
                .address()
                .add(index, IpAddr::V4(spec.address), spec.prefix_len)
                .execute()
                .await;
            match result {
                Ok(()) => Ok(true),
                Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
                Err(e) if errno(&e) == Some(ENODEV) => {
                    Err(VipError::NoInterface(spec.interface.clone()))
                }
                Err(e) => Err(VipError::Netlink(format!("{what}: {e}"))),
            }
        })
        .await
    }

    /// Delete the address as the kernel listed it; `Ok(false)` when it is
    /// already gone.
    async fn del_address(&self, existing: AddressMessage) -> Result<bool, VipError> {
        bounded("deleting the address", async {
            match self.handle.address().del(existing).execute().await {
                Ok(()) => Ok(true),
                Err(e) if errno(&e) == Some(EADDRNOTAVAIL) => Ok(false),
                Err(e) => Err(VipError::Netlink(format!("deleting the address: {e}"))),
            }
        })
        .await
    }
}

/// The interface-local address of an address message (`IFA_LOCAL`, which
/// IPv4 entries always carry; `IFA_ADDRESS` otherwise).
fn local_address(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// Which `arping` implementation is installed: their options differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// Thomas Habets' arping (Debian package `arping`).
    Habets,
    /// The iputils arping (Debian package `iputils-arping`).
    Iputils,
}

#[derive(Debug, Clone)]
struct Arping {
    path: PathBuf,
    flavor: Flavor,
}

static ARPING: OnceLock<Arping> = OnceLock::new();

/// Locate and identify `arping`; a success is remembered for the process.
async fn arping_tool() -> Result<Arping, VipError> {
    if let Some(tool) = ARPING.get() {
        return Ok(tool.clone());
    }
    let path = find_arping().await.ok_or_else(|| {
        VipError::Arping("arping is not installed (Debian package `arping`)".to_string())
    })?;
    let mut cmd = tokio::process::Command::new(&path);
    cmd.arg("-V");
    let out = run(&mut cmd).await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let flavor = if text.contains("iputils") {
        Flavor::Iputils
    } else if text.contains("Habets") || text.contains("ARPing") {
        Flavor::Habets
    } else {
        return Err(VipError::Arping(format!(
            "{} is neither Habets' nor iputils' arping",
            path.display()
        )));
    };
    let tool = Arping { path, flavor };
    Ok(ARPING.get_or_init(|| tool).clone())
}

pub(crate) async fn find_arping() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(ARPING_FALLBACK_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("arping");
        if is_file(&candidate).await {
            return Some(candidate);
        }
    }
    None
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.is_file())
        .unwrap_or(false)
}

/// Run a command to completion under [`ARPING_TIMEOUT`], killing it if it
/// overruns. A non-zero exit is not an error here.
async fn run(cmd: &mut tokio::process::Command) -> Result<std::process::Output, VipError> {
    cmd.stdin(std::process::Stdio::null())
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let program = format!("{:?}", cmd.as_std().get_program());
    match tokio::time::timeout(ARPING_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(VipError::Arping(format!("cannot run {program}: {e}"))),
        Err(_) => Err(VipError::Timeout(format!(
            "{program} took longer than {ARPING_TIMEOUT:?}"
        ))),
    }
}

/// Send `spec.arp_count` (≥ 1) frames, evenly spread over [`ANNOUNCE_WINDOW`],
/// the first at once. Returns the number sent and one line per failure.
async fn announce(tool: &Arping, spec: &VipSpec) -> (u32, Vec<String>) {
    let start = tokio::time::Instant::now();
    let step = ANNOUNCE_WINDOW / spec.arp_count.max(1);
    let mut sent = 0;
    let mut failures = Vec::new();
    for k in 0..spec.arp_count {
        if k > 0 {
            tokio::time::sleep_until(start + step * k).await;
        }
        match send_one(tool, spec).await {
            Ok(()) => sent += 1,
            Err(e) => failures.push(format!("frame {}: {e}", k + 1)),
        }
    }
    (sent, failures)
}

/// One gratuitous ARP request for `spec.address` out of `spec.interface`:
/// "who-has VIP tell VIP", broadcast. Habets' arping 2.23 puts the
/// interface's primary address as sender unless told `-S`, and such a frame
/// updates nobody's cache for the VIP: measured on the test bed, only the
/// frame with the VIP as sender moved a client's REACHABLE entry at once.
async fn send_one(tool: &Arping, spec: &VipSpec) -> Result<(), VipError> {
    let address = spec.address.to_string();
    let mut cmd = tokio::process::Command::new(&tool.path);
    match tool.flavor {
        // -w 0: exit right after sending instead of waiting a second for a
        // reply that never comes to an unsolicited frame.
        Flavor::Habets => cmd.args(["-U", "-S", &address, "-c", "1", "-w", "0", "-i"]),
        Flavor::Iputils => cmd.args(["-U", "-s", &address, "-c", "1", "-w", "1", "-I"]),
    };
    cmd.arg(&spec.interface).arg(&address);
    let out = run(&mut cmd).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Both flavours exit non-zero when no reply came, which is the normal
    // case for an unsolicited frame: judge by the "sent" count they print.
    match frames_sent(tool.flavor, &stdout) {
        Some(n) if n >= 1 => Ok(()),
        None if out.status.success() => Ok(()),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .chain(stdout.lines())
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no output");
            Err(VipError::Arping(format!("{}: {reason}", out.status)))
        }
    }
}

/// The number of frames an arping run reports as sent.
fn frames_sent(flavor: Flavor, stdout: &str) -> Option<u32> {
    stdout.lines().find_map(|line| {
        let line = line.trim();
        match flavor {
            // "1 packets transmitted, 0 packets received, 100% unanswered"
            Flavor::Habets => line
                .split_once(" packets transmitted")
                .and_then(|(n, _)| n.trim().parse().ok()),
            // "Sent 1 probes (1 broadcast(s))"
            Flavor::Iputils => line
                .strip_prefix("Sent ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VipSpec {
        VipSpec {
            address: Ipv4Addr::new(192, 0, 2, 10),
            prefix_len: 24,
            interface: "eth0".to_string(),
            arp_count: 3,
        }
    }

    #[test]
    fn parses_sent_counts() {
        let habets = "ARPING 192.0.2.77\n\n--- 192.0.2.77 statistics ---\n\
                      1 packets transmitted, 0 packets received, 100% unanswered (0 extra)\n";
        assert_eq!(frames_sent(Flavor::Habets, habets), Some(1));
        let iputils = "ARPING 192.0.2.77 from 192.0.2.77 eth0\nSent 1 probes (1 broadcast(s))\nReceived 0 response(s)\n";
        assert_eq!(frames_sent(Flavor::Iputils, iputils), Some(1));
        assert_eq!(frames_sent(Flavor::Habets, "Timeout\n"), None);
    }

    #[test]
    fn validates_specs() {
        assert!(validate(&spec()).is_ok());
        let bad = [
            VipSpec {
                prefix_len: 33,
                ..spec()
            },
            VipSpec {
                interface: String::new(),
                ..spec()
            },
            VipSpec {
                interface: "a-very-long-interface".to_string(),
                ..spec()
            },
            VipSpec {
                address: Ipv4Addr::UNSPECIFIED,
                ..spec()
            },
            VipSpec {
                address: Ipv4Addr::new(224, 0, 0, 1),
                ..spec()
            },
            VipSpec {
                arp_count: MAX_ARP_COUNT + 1,
                ..spec()
            },
        ];
        for s in bad {
            assert!(
                matches!(validate(&s), Err(VipError::InvalidSpec(_))),
                "{s:?}"
            );
        }
    }
}
