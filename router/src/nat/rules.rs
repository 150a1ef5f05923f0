//! The rulesets `relay: nat` hands to `nft -f -`, as text: pure functions
//! of the plan, the listeners and the caps.

use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use myha_config::Strategy;
use myha_core::routing::{pick, Candidate, Pick};

/// Entries of a weighted reader map, at most.
const MAX_SLOTS: u64 = 1024;

/// How new reader connections are spread over the map's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// `numgen inc`: the next entry for each connection.
    Sequence,
    /// `jhash ip saddr`: the same client address, the same entry.
    ClientHash,
}

/// What the rules say now: a pure function of the view and the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// New writer connections go here; `None`: to the router (held).
    pub writer: Option<SocketAddrV4>,
    /// Forwarded writer connections live while their backend is this.
    pub writer_live: Option<SocketAddrV4>,
    /// New reader connections are spread over these entries (a backend
    /// may appear several times: its weight); empty: to the router.
    pub readers: Vec<SocketAddrV4>,
    pub spread: Spread,
    /// Forwarded reader connections live while their backend is in here.
    pub reader_live: Vec<SocketAddrV4>,
}

/// A backend's address as the rules need it: an IPv4 literal and a port.
/// Names are left to the user-space path, which resolves them.
pub(crate) fn literal(address: &str) -> Option<SocketAddrV4> {
    match address.parse::<SocketAddr>().ok()? {
        // The kernel will not forward a remote client to loopback.
        SocketAddr::V4(a) if a.ip().is_loopback() => None,
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

/// The reader entries for `pool` (name, address, weight, in configuration
/// order) under `strategy`: the same choices, in the same order, as the
/// user-space path makes connection after connection. `None`: the kernel
/// cannot apply the strategy (least connections needs the counts the
/// router keeps), or a backend has no literal address.
pub(crate) fn reader_entries(
    pool: &[(&str, &str, u32)],
    strategy: Strategy,
) -> Option<(Vec<SocketAddrV4>, Spread)> {
    let candidates: Vec<Candidate<'_>> = pool
        .iter()
        .map(|(name, _, weight)| Candidate {
            name,
            weight: *weight,
            connections: 0,
        })
        .collect();
    let address_of = |name: &str| pool.iter().find(|p| p.0 == name).and_then(|p| literal(p.1));
    let (slots, spread, how): (u64, Spread, fn(u64) -> Pick) = match strategy {
        Strategy::RoundRobin => (pool.len() as u64, Spread::Sequence, |counter| {
            Pick::RoundRobin { counter }
        }),
        Strategy::AddressHash => (pool.len() as u64, Spread::ClientHash, |client| {
            Pick::AddressHash { client }
        }),
        Strategy::Weighted => {
            // The ring of the user-space path, scaled down to a map the
            // kernel holds cheaply.
            let weights = scaled_weights(pool.iter().map(|p| p.2));
            let scaled: Vec<Candidate<'_>> = candidates
                .iter()
                .zip(&weights)
                .map(|(c, w)| Candidate { weight: *w, ..*c })
                .collect();
            let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
            let entries = (0..total)
                .map(|counter| pick(&scaled, Pick::Weighted { counter }).and_then(address_of))
                .collect::<Option<Vec<_>>>()?;
            return Some((entries, Spread::Sequence));
        }
        Strategy::LeastConnections => return None,
    };
    let entries = (0..slots)
        .map(|i| pick(&candidates, how(i)).and_then(address_of))
        .collect::<Option<Vec<_>>>()?;
    Some((entries, spread))
}

/// Weights reduced by their greatest common divisor, and scaled so that
/// they sum to at most [`MAX_SLOTS`] (each at least 1).
fn scaled_weights(weights: impl Iterator<Item = u32>) -> Vec<u32> {
    let ws: Vec<u64> = weights.map(|w| u64::from(w.max(1))).collect();
    let g = ws.iter().copied().fold(0, gcd).max(1);
    let ws: Vec<u64> = ws.iter().map(|w| w / g).collect();
    let total: u64 = ws.iter().sum();
    ws.iter()
        .map(|w| {
            let w = if total > MAX_SLOTS {
                (w * MAX_SLOTS / total).max(1)
            } else {
                *w
            };
            u32::try_from(w).unwrap_or(u32::MAX)
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The router's table name, after its writer listener.
pub fn table_name(writer_listen: SocketAddrV4) -> String {
    let ip = writer_listen.ip().to_string().replace('.', "_");
    format!("myha_router_{ip}_{}", writer_listen.port())
}

/// Matches packets addressed to `listen`: its address, or any local
/// non-loopback address for a wildcard listener.
fn to_listener(listen: SocketAddrV4) -> String {
    if listen.ip().is_unspecified() {
        format!(
            "fib daddr type local ip daddr != 127.0.0.0/8 tcp dport {}",
            listen.port()
        )
    } else {
        format!("ip daddr {} tcp dport {}", listen.ip(), listen.port())
    }
}

/// Matches the packets of connections this table forwarded from `listen`.
fn forwarded_from(listen: SocketAddrV4) -> String {
    let mut m = format!(
        "meta l4proto tcp ct status dnat ct original proto-dst {}",
        listen.port()
    );
    if !listen.ip().is_unspecified() {
        let _ = write!(m, " ct original ip daddr {}", listen.ip());
    }
    m
}

fn element(a: SocketAddrV4) -> String {
    format!("{} . {}", a.ip(), a.port())
}

/// The three sets: name, key type, and elements (without timeouts).
/// Written into the table by [`ruleset`], renewed alone by [`refresh`];
/// all empty for a retired table (`None`).
fn set_elements(
    writer_listen: SocketAddrV4,
    reader_listen: SocketAddrV4,
    plan: Option<&Plan>,
) -> [(&'static str, &'static str, Vec<String>); 3] {
    let backends = "ipv4_addr . inet_service";
    let Some(plan) = plan else {
        return [
            ("alive", "inet_service", Vec::new()),
            ("writer_live", backends, Vec::new()),
            ("reader_live", backends, Vec::new()),
        ];
    };
    let mut reader_live = plan.reader_live.clone();
    reader_live.sort();
    reader_live.dedup();
    [
        (
            "alive",
            "inet_service",
            vec![
                writer_listen.port().to_string(),
                reader_listen.port().to_string(),
            ],
        ),
        (
            "writer_live",
            backends,
            plan.writer_live.iter().map(|a| element(*a)).collect(),
        ),
        (
            "reader_live",
            backends,
            reader_live.iter().map(|a| element(*a)).collect(),
        ),
    ]
}

/// Renews the timeouts of the table's sets without touching its rules
/// (replacing a rule would restart its `numgen` count and skew the
/// spread). Flushing and refilling a set in one transaction leaves no
/// instant without its elements; adding an element that exists would not
/// renew its timeout.
pub(crate) fn refresh(
    table: &str,
    writer_listen: SocketAddrV4,
    reader_listen: SocketAddrV4,
    plan: &Plan,
    ttl: Duration,
) -> String {
    let ttl = ttl.as_secs().max(1);
    let mut out = String::new();
    for (set, _, elements) in set_elements(writer_listen, reader_listen, Some(plan)) {
        let _ = writeln!(out, "flush set ip {table} {set}");
        if !elements.is_empty() {
            let _ = writeln!(
                out,
                "add element ip {table} {set} {{ {} }}",
                timed(&elements, ttl)
            );
        }
    }
    out
}

/// Set elements with their timeout, as nft lists them.
fn timed(elements: &[String], ttl: u64) -> String {
    let timed: Vec<String> = elements
        .iter()
        .map(|e| format!("{e} timeout {ttl}s"))
        .collect();
    timed.join(", ")
}

/// The whole table, replacing any earlier one in the same transaction.
///
/// `None` is the table a stopping router leaves: it forwards nothing new
/// and resets every connection it forwarded (empty sets), as the router's
/// own sockets would close; the next router replaces it. Deleting the
/// table instead would leave forwarded connections translated by
/// conntrack and unguarded, to a master that may be replaced meanwhile.
/// `remote`: forward clients of other hosts too (the `prerouting` rules;
/// only when this host forwards IPv4, else they are left to the router).
pub(crate) fn ruleset(
    table: &str,
    writer_listen: SocketAddrV4,
    reader_listen: SocketAddrV4,
    plan: Option<&Plan>,
    remote: bool,
    ttl: Duration,
) -> String {
    let ttl = ttl.as_secs().max(1);
    let mut out = String::new();
    let _ = writeln!(out, "table ip {table} {{}}\ndelete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    for (set, key, elements) in set_elements(writer_listen, reader_listen, plan) {
        let _ = writeln!(out, "  set {set} {{ type {key}; flags timeout;");
        if !elements.is_empty() {
            let _ = writeln!(out, "    elements = {{ {} }}", timed(&elements, ttl));
        }
        out.push_str("  }\n");
    }

    let Some(plan) = plan else {
        cut_chains(&mut out, writer_listen, reader_listen);
        out.push_str("}\n");
        return out;
    };
    // New connections: SYN without ACK, while the router is alive.
    let mut dnat = Vec::new();
    let syn = "tcp dport @alive tcp flags & (syn|ack) == syn";
    if let Some(w) = plan.writer {
        dnat.push(format!(
            "{} {syn} dnat to {}:{}",
            to_listener(writer_listen),
            w.ip(),
            w.port()
        ));
    }
    match plan.readers.as_slice() {
        [] => {}
        [one] => dnat.push(format!(
            "{} {syn} dnat to {}:{}",
            to_listener(reader_listen),
            one.ip(),
            one.port()
        )),
        many => {
            let selector = match plan.spread {
                Spread::Sequence => "numgen inc",
                Spread::ClientHash => "jhash ip saddr",
            };
            let map: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{i} : {}", element(*a)))
                .collect();
            dnat.push(format!(
                "{} {syn} dnat to {selector} mod {} map {{ {} }}",
                to_listener(reader_listen),
                many.len(),
                map.join(", ")
            ));
        }
    }
    let hooks: &[(&str, &str)] = if remote {
        &[("dnat_local", "output"), ("dnat_remote", "prerouting")]
    } else {
        &[("dnat_local", "output")]
    };
    for (chain, hook) in hooks {
        let _ = writeln!(
            out,
            "  chain {chain} {{\n    type nat hook {hook} priority -100; policy accept;"
        );
        for rule in &dnat {
            let _ = writeln!(out, "    {rule}");
        }
        out.push_str("  }\n");
    }
    let _ = writeln!(
        out,
        "  chain masq {{\n    type nat hook postrouting priority 100; policy accept;\n    {} masquerade\n    {} masquerade\n  }}",
        forwarded_from(writer_listen),
        forwarded_from(reader_listen)
    );
    cut_chains(&mut out, writer_listen, reader_listen);
    out.push_str("}\n");
    out
}

/// Resets for forwarded connections whose backend is not live, in every
/// hook a packet of theirs can cross. At filter priority the packets still
/// carry the backend's address: as destination on the way to it (DNAT is
/// done), as source on the way back (undone only at srcnat priority).
/// Both directions in every hook: a backend on this very host is reached
/// through input and answers through output.
fn cut_chains(out: &mut String, writer_listen: SocketAddrV4, reader_listen: SocketAddrV4) {
    let to_backend = "ct direction original ip daddr . tcp dport";
    let from_backend = "ct direction reply ip saddr . tcp sport";
    for (chain, hook) in [
        ("cut_local", "output"),
        ("cut_in", "input"),
        ("cut_forward", "forward"),
    ] {
        let _ = writeln!(
            out,
            "  chain {chain} {{\n    type filter hook {hook} priority 0; policy accept;"
        );
        for backend in [to_backend, from_backend] {
            for (listen, live) in [
                (writer_listen, "writer_live"),
                (reader_listen, "reader_live"),
            ] {
                // Resets pass: ours come back through input already
                // translated, and any reset only ends what must end.
                let _ = writeln!(
                    out,
                    "    {} tcp flags & rst == 0 {backend} != @{live} reject with tcp reset",
                    forwarded_from(listen)
                );
            }
        }
        out.push_str("  }\n");
    }
}

/// The connection caps the kernel applies (`relay: nat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Connections per listener.
    pub per_listener: u32,
    /// Connections per source address, per listener.
    pub per_source: u32,
}

/// The caps' table, after the router's main table.
pub(crate) fn limits_table_name(table: &str) -> String {
    format!("{table}_limits")
}

/// The named counters of the caps' table: (cap, endpoint) by name.
pub(crate) const LIMIT_COUNTERS: [(&str, &str, &str); 4] = [
    ("refused_listener_writer", "listener", "writer"),
    ("refused_listener_reader", "listener", "reader"),
    ("refused_source_writer", "source", "writer"),
    ("refused_source_reader", "source", "reader"),
];

/// The caps' table, replacing any earlier one: before any NAT (filter
/// hooks at priority -150: after connection tracking, before DNAT at
/// -100), a new connection to a listener is answered with a TCP reset
/// when its source address already has `per_source` connections to that
/// listener, or the listener has `per_listener`, as connection tracking
/// counts them (`ct count`: the forwarded connections and those the
/// router serves itself alike; closed ones no longer count). Clients on
/// this host pass `output`, others `prerouting` (this host's own packets
/// come back through `lo`: skipped there, counted once). The rules work
/// while the listener ports are in `alive`, which expires with the main
/// table's: a dead router's caps stop with its rules.
pub(crate) fn limits_ruleset(
    table: &str,
    writer_listen: SocketAddrV4,
    reader_listen: SocketAddrV4,
    caps: Caps,
    ttl: Duration,
) -> String {
    let t = limits_table_name(table);
    let ttl = ttl.as_secs().max(1);
    let mut out = String::new();
    let _ = writeln!(out, "table ip {t} {{}}\ndelete table ip {t}");
    let _ = writeln!(out, "table ip {t} {{");
    let _ = writeln!(
        out,
        "  set alive {{ type inet_service; flags timeout;\n    elements = {{ {} }}\n  }}",
        timed(&alive_ports(writer_listen, reader_listen), ttl)
    );
    out.push_str("  set listener { type inet_service; size 16; flags dynamic; }\n");
    out.push_str("  set source { type ipv4_addr . inet_service; size 65535; flags dynamic; }\n");
    for (name, _, _) in LIMIT_COUNTERS {
        let _ = writeln!(out, "  counter {name} {{ }}");
    }
    let syn = "tcp dport @alive tcp flags & (syn|ack) == syn";
    let mut rules = Vec::new();
    for (listen, endpoint) in [(writer_listen, "writer"), (reader_listen, "reader")] {
        // The source first: a source over its cap must not fill the
        // listener's count with connections refused anyway.
        rules.push(format!(
            "{} {syn} add @source {{ ip saddr . tcp dport ct count over {} }} counter name \"refused_source_{endpoint}\" reject with tcp reset",
            to_listener(listen),
            caps.per_source
        ));
        rules.push(format!(
            "{} {syn} add @listener {{ tcp dport ct count over {} }} counter name \"refused_listener_{endpoint}\" reject with tcp reset",
            to_listener(listen),
            caps.per_listener
        ));
    }
    for (chain, hook, skip) in [
        ("limit_local", "output", None),
        ("limit_remote", "prerouting", Some("iifname \"lo\" return")),
    ] {
        let _ = writeln!(
            out,
            "  chain {chain} {{\n    type filter hook {hook} priority -150; policy accept;"
        );
        if let Some(skip) = skip {
            let _ = writeln!(out, "    {skip}");
        }
        for rule in &rules {
            let _ = writeln!(out, "    {rule}");
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

fn alive_ports(writer_listen: SocketAddrV4, reader_listen: SocketAddrV4) -> Vec<String> {
    vec![
        writer_listen.port().to_string(),
        reader_listen.port().to_string(),
    ]
}

/// Renews the caps' `alive` set (with the main table's, in one run).
pub(crate) fn limits_refresh(
    table: &str,
    writer_listen: SocketAddrV4,
    reader_listen: SocketAddrV4,
    ttl: Duration,
) -> String {
    let t = limits_table_name(table);
    format!(
        "flush set ip {t} alive\nadd element ip {t} alive {{ {} }}\n",
        timed(
            &alive_ports(writer_listen, reader_listen),
            ttl.as_secs().max(1)
        )
    )
}

/// Removes the caps' table, whether it exists or not.
pub(crate) fn limits_removal(table: &str) -> String {
    let t = limits_table_name(table);
    format!("table ip {t} {{}}\ndelete table ip {t}\n")
}

/// The named counters' packets (each refused connection's SYN), from
/// `nft -j list counters table ...`: (cap, endpoint, count).
pub(crate) fn limit_counts(json: &str) -> Vec<(&'static str, &'static str, u64)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let Some(items) = v.get("nftables").and_then(|n| n.as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let c = i.get("counter")?;
            let name = c.get("name")?.as_str()?;
            let packets = c.get("packets")?.as_u64()?;
            let (_, cap, endpoint) = LIMIT_COUNTERS.iter().find(|(n, _, _)| *n == name)?;
            Some((*cap, *endpoint, packets))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::nat::TTL;
    use std::process::Stdio;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    const POOL: [(&str, &str, u32); 2] =
        [("db2", "10.0.0.12:3306", 1), ("db3", "10.0.0.13:3306", 3)];

    #[test]
    fn round_robin_and_hash_list_each_backend_once_in_order() {
        let (e, s) = reader_entries(&POOL, Strategy::RoundRobin).unwrap();
        assert_eq!(e, vec![a("10.0.0.12:3306"), a("10.0.0.13:3306")]);
        assert_eq!(s, Spread::Sequence);
        let (e, s) = reader_entries(&POOL, Strategy::AddressHash).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(s, Spread::ClientHash);
    }

    #[test]
    fn weighted_repeats_backends_by_weight() {
        let (e, s) = reader_entries(&POOL, Strategy::Weighted).unwrap();
        assert_eq!(s, Spread::Sequence);
        assert_eq!(e.iter().filter(|x| **x == a("10.0.0.12:3306")).count(), 1);
        assert_eq!(e.iter().filter(|x| **x == a("10.0.0.13:3306")).count(), 3);
        // Common factors and huge weights shrink to a small map.
        assert_eq!(scaled_weights([10, 30].into_iter()), vec![1, 3]);
        let big = scaled_weights([1_000_000, 3_000_001].into_iter());
        assert!(big.iter().map(|w| u64::from(*w)).sum::<u64>() <= MAX_SLOTS);
        assert!(big[1] > 2 * big[0]);
        assert_eq!(scaled_weights([1, 100_000].into_iter())[0], 1);
    }

    #[test]
    fn least_connections_and_names_stay_in_user_space() {
        assert!(reader_entries(&POOL, Strategy::LeastConnections).is_none());
        let named = [("db2", "db2.example:3306", 1)];
        assert!(reader_entries(&named, Strategy::RoundRobin).is_none());
        assert!(literal("[::1]:3306").is_none());
        assert!(literal("127.0.0.1:3306").is_none(), "not forwardable");
        assert_eq!(literal("10.0.0.1:3306"), Some(a("10.0.0.1:3306")));
    }

    fn plan() -> Plan {
        Plan {
            writer: Some(a("10.0.0.11:3306")),
            writer_live: Some(a("10.0.0.11:3306")),
            readers: vec![a("10.0.0.12:3306"), a("10.0.0.13:3306")],
            spread: Spread::Sequence,
            reader_live: vec![
                a("10.0.0.13:3306"),
                a("10.0.0.12:3306"),
                a("10.0.0.12:3306"),
            ],
        }
    }

    #[test]
    fn ruleset_forwards_new_connections_and_cuts_stale_ones() {
        let t = table_name(a("10.0.0.1:6033"));
        assert_eq!(t, "myha_router_10_0_0_1_6033");
        let r = ruleset(
            &t,
            a("10.0.0.1:6033"),
            a("10.0.0.1:6034"),
            Some(&plan()),
            true,
            TTL,
        );
        // Replaces a leftover table atomically.
        assert!(r.starts_with(
            "table ip myha_router_10_0_0_1_6033 {}\ndelete table ip myha_router_10_0_0_1_6033\n"
        ));
        assert!(r.contains("ip daddr 10.0.0.1 tcp dport 6033 tcp dport @alive tcp flags & (syn|ack) == syn dnat to 10.0.0.11:3306"));
        assert!(r.contains(
            "dnat to numgen inc mod 2 map { 0 : 10.0.0.12 . 3306, 1 : 10.0.0.13 . 3306 }"
        ));
        assert!(r.contains("elements = { 6033 timeout 6s, 6034 timeout 6s }"));
        assert!(r.contains("elements = { 10.0.0.11 . 3306 timeout 6s }"));
        // Live members once each.
        assert!(
            r.contains("elements = { 10.0.0.12 . 3306 timeout 6s, 10.0.0.13 . 3306 timeout 6s }")
        );
        for hook in ["output", "input", "forward"] {
            assert!(r.contains(&format!("type filter hook {hook} priority 0")));
        }
        // Both directions in each of the three hooks.
        assert_eq!(
            r.matches("!= @writer_live reject with tcp reset").count(),
            6
        );
        assert_eq!(
            r.matches("rst == 0 ct direction original ip daddr . tcp dport != @reader_live")
                .count(),
            3
        );
        assert_eq!(
            r.matches("dnat to").count(),
            4,
            "two rules, local and remote"
        );
        // A host that does not forward: local clients only.
        let local = ruleset(
            &t,
            a("10.0.0.1:6033"),
            a("10.0.0.1:6034"),
            Some(&plan()),
            false,
            TTL,
        );
        assert!(!local.contains("prerouting"));
        assert_eq!(local.matches("dnat to").count(), 2);
    }

    #[test]
    fn a_retired_table_forwards_nothing_and_resets_what_it_forwarded() {
        let r = ruleset("t", a("10.0.0.1:6033"), a("10.0.0.1:6034"), None, true, TTL);
        assert!(!r.contains("dnat to"));
        assert!(!r.contains("masquerade"));
        assert!(!r.contains("elements"));
        assert_eq!(r.matches("reject with tcp reset").count(), 12);
    }

    #[test]
    fn refresh_renews_the_sets_and_leaves_the_rules() {
        let mut p = plan();
        p.writer_live = None;
        let r = refresh("t", a("10.0.0.1:6033"), a("10.0.0.1:6034"), &p, TTL);
        assert_eq!(
            r,
            "flush set ip t alive\n\
             add element ip t alive { 6033 timeout 6s, 6034 timeout 6s }\n\
             flush set ip t writer_live\n\
             flush set ip t reader_live\n\
             add element ip t reader_live { 10.0.0.12 . 3306 timeout 6s, 10.0.0.13 . 3306 timeout 6s }\n"
        );
    }

    #[test]
    fn ruleset_without_a_writer_leaves_new_writers_to_the_router() {
        let mut p = plan();
        p.writer = None;
        p.writer_live = None;
        p.readers = vec![a("10.0.0.12:3306")];
        p.spread = Spread::ClientHash;
        let wildcard = |p: &Plan| {
            ruleset(
                "t",
                a("0.0.0.0:6033"),
                a("0.0.0.0:6034"),
                Some(p),
                true,
                TTL,
            )
        };
        let r = wildcard(&p);
        assert!(!r.contains("tcp dport 6033 tcp dport @alive"));
        // No element: every forwarded writer connection is reset.
        assert!(r.contains("set writer_live { type ipv4_addr . inet_service; flags timeout;\n  }"));
        assert!(r.contains(
            "fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 6034 tcp dport @alive tcp flags & (syn|ack) == syn dnat to 10.0.0.12:3306"
        ));
        assert!(r.contains(
            "meta l4proto tcp ct status dnat ct original proto-dst 6033 tcp flags & rst == 0 ct direction reply ip saddr . tcp sport != @writer_live"
        ));
        p.readers = vec![a("10.0.0.12:3306"), a("10.0.0.13:3306")];
        assert!(wildcard(&p).contains("dnat to jhash ip saddr mod 2 map"));
    }

    #[test]
    fn the_caps_table_resets_sources_then_listeners_over_their_caps() {
        let caps = Caps {
            per_listener: 1000,
            per_source: 64,
        };
        let r = limits_ruleset(
            "myha_router_10_0_0_1_6033",
            a("10.0.0.1:6033"),
            a("10.0.0.1:6034"),
            caps,
            TTL,
        );
        assert!(r.starts_with(
            "table ip myha_router_10_0_0_1_6033_limits {}\ndelete table ip myha_router_10_0_0_1_6033_limits\n"
        ));
        assert!(r.contains("elements = { 6033 timeout 6s, 6034 timeout 6s }"));
        let source = "ip daddr 10.0.0.1 tcp dport 6034 tcp dport @alive tcp flags & (syn|ack) == syn \
             add @source { ip saddr . tcp dport ct count over 64 } counter name \"refused_source_reader\" reject with tcp reset";
        let listener = "ip daddr 10.0.0.1 tcp dport 6034 tcp dport @alive tcp flags & (syn|ack) == syn \
             add @listener { tcp dport ct count over 1000 } counter name \"refused_listener_reader\" reject with tcp reset";
        assert!(r.contains(source), "{r}");
        assert!(r.contains(listener), "{r}");
        assert!(r.find(source) < r.find(listener), "the source's cap first");
        for hook in ["output", "prerouting"] {
            assert!(r.contains(&format!("type filter hook {hook} priority -150")));
        }
        assert_eq!(r.matches("reject with tcp reset").count(), 8);
        assert_eq!(r.matches("iifname \"lo\" return").count(), 1);
        assert_eq!(
            limits_refresh("t", a("10.0.0.1:6033"), a("10.0.0.1:6034"), TTL),
            "flush set ip t_limits alive\nadd element ip t_limits alive { 6033 timeout 6s, 6034 timeout 6s }\n"
        );
    }

    #[test]
    fn the_caps_counters_are_read_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"counter": {"family": "ip", "name": "refused_listener_writer", "table": "t_limits", "handle": 3, "packets": 0, "bytes": 0}},
            {"counter": {"family": "ip", "name": "refused_source_reader", "table": "t_limits", "handle": 6, "packets": 936, "bytes": 56160}},
            {"counter": {"family": "ip", "name": "someone_else", "table": "t_limits", "handle": 7, "packets": 5, "bytes": 1}}]}"#;
        assert_eq!(
            limit_counts(json),
            vec![("listener", "writer", 0), ("source", "reader", 936)]
        );
        assert!(limit_counts("not json").is_empty());
    }

    /// The kernel's own parser accepts every shape of table (`nft -c`
    /// checks a ruleset without committing it; it needs nftables and the
    /// right to talk to netfilter: skipped, with a note, without them).
    #[test]
    fn nft_accepts_the_rulesets() {
        let mut shapes = vec![plan()];
        let mut p = plan();
        p.writer = None;
        p.writer_live = None;
        p.readers.clear();
        p.reader_live.clear();
        shapes.push(p);
        let mut p = plan();
        p.readers.truncate(1);
        p.spread = Spread::ClientHash;
        shapes.push(p);
        let mut p = plan();
        p.spread = Spread::ClientHash;
        shapes.push(p);
        for listen in ["10.0.0.1", "0.0.0.0"] {
            for p in &shapes {
                let w = a(&format!("{listen}:6033"));
                let r = a(&format!("{listen}:6034"));
                let caps = Caps {
                    per_listener: 1000,
                    per_source: 64,
                };
                let r = ruleset("myha_router_check", w, r, Some(p), true, TTL)
                    + &refresh("myha_router_check", w, r, p, TTL)
                    + &limits_ruleset("myha_router_check", w, r, caps, TTL)
                    + &limits_refresh("myha_router_check", w, r, TTL)
                    + &ruleset("myha_router_check", w, r, None, true, TTL)
                    + &limits_removal("myha_router_check")
                    + &ruleset("myha_router_check", w, r, Some(p), false, TTL);
                let Some(out) = nft_check(&r) else {
                    return;
                };
                assert!(
                    out.status.success(),
                    "nft refused:\n{r}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// `nft -c -f -` on `rules`; `None`, with a note, when nft is absent
    /// or may not run here.
    fn nft_check(rules: &str) -> Option<std::process::Output> {
        use std::io::Write as _;
        let child = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: cannot run nft (the nftables package): {e}");
                return None;
            }
        };
        // An nft that refuses at once may close its input unread.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(rules.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("Operation not permitted") {
            eprintln!(
                "skipped: nft may not check rulesets here: {}",
                stderr.trim()
            );
            return None;
        }
        Some(out)
    }
}
