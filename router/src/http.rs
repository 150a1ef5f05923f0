//! The router's HTTP API: its endpoints for discovery, its health, and
//! its Prometheus metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use myha_api::paths;
use myha_api::router::{EndpointLimits, Endpoints, Limits, Reader, RouterHealth, Writer};
use myha_http::metrics::prometheus_client::collector::Collector;
use myha_http::metrics::prometheus_client::encoding::DescriptorEncoder;
use myha_http::metrics::{Emit, Labels};

use crate::{limits, Shared};

/// The API's routes.
pub(crate) fn app(shared: &Arc<Shared>) -> axum::Router {
    let s1 = Arc::clone(shared);
    let s2 = Arc::clone(shared);
    let s3 = Arc::clone(shared);
    axum::Router::new()
        .route(
            paths::ENDPOINTS_ROUTE,
            axum::routing::get(move || {
                let s = Arc::clone(&s1);
                async move { axum::Json(endpoints(&s)) }
            }),
        )
        .route(
            paths::HEALTH,
            axum::routing::get(move || {
                let s = Arc::clone(&s2);
                async move {
                    axum::Json(RouterHealth {
                        manager_reachable: s.manager_ok.load(Ordering::Relaxed),
                        epoch: s.view.borrow().as_ref().map(|v| v.epoch),
                        view_age_ms: view_age_ms(&s),
                    })
                }
            }),
        )
        .route(paths::LIVENESS, axum::routing::get(|| async { "ok\n" }))
        .route(
            paths::METRICS,
            axum::routing::get(move || {
                let s = Arc::clone(&s3);
                async move { metrics(&s) }
            }),
        )
}

fn endpoints(shared: &Shared) -> Endpoints {
    let view = shared.view.borrow().clone();
    let pool: Vec<String> = shared.pool().into_iter().map(|p| p.name).collect();
    let backends = shared.backends();
    let readers = view
        .as_ref()
        .map(|v| {
            v.servers
                .iter()
                .filter(|b| b.role == myha_core::topology::Role::Replica)
                .map(|b| Reader {
                    name: b.name.clone(),
                    address: b.address.clone(),
                    lag_seconds: b.lag_seconds,
                    healthy: b.healthy,
                    in_pool: pool.contains(&b.name),
                    connections: backends
                        .get(&b.name)
                        .map_or(0, |s| s.connections.load(Ordering::Relaxed)),
                })
                .collect()
        })
        .unwrap_or_default();
    Endpoints {
        cluster: shared.cluster.name.clone(),
        epoch: view.as_ref().map(|v| v.epoch),
        writer: view
            .as_ref()
            .and_then(|v| v.writer.as_ref())
            .map(|w| Writer {
                name: w.name.clone(),
                address: w.address.clone(),
            }),
        changing: view.as_ref().is_some_and(|v| v.changing),
        readers,
        manager_reachable: shared.manager_ok.load(Ordering::Relaxed),
        view_age_ms: view_age_ms(shared),
        relay: relay_in_effect(shared).to_string(),
        limits: limits(shared),
    }
}

/// How long ago the manager's last view arrived.
fn view_age_ms(shared: &Shared) -> Option<u64> {
    shared
        .last_view
        .lock()
        .ok()
        .and_then(|t| t.map(|t| t.elapsed().as_millis() as u64))
}

/// The caps and what they refused, per endpoint (the kernel's refusals
/// with `relay: nat` included, as last read).
fn limits(shared: &Shared) -> Limits {
    let l = &shared.limits;
    let endpoints = limits::ENDPOINTS
        .iter()
        .enumerate()
        .map(|(i, endpoint)| {
            let (open, sources) = l.open_now(i);
            let (listener_cap, source_cap) = l.refusals(i);
            (
                endpoint.to_string(),
                EndpointLimits {
                    open: u64::from(open),
                    sources: sources as u64,
                    refused_listener_cap: listener_cap,
                    refused_source_cap: source_cap,
                    handshake_timeouts: l.handshake_timeouts[i].load(Ordering::Relaxed),
                },
            )
        })
        .collect();
    Limits {
        max_connections: l.max_connections,
        max_connections_per_source: l.max_per_source,
        handshake_timeout_ms: l.handshake_timeout.as_millis() as u64,
        endpoints,
    }
}

/// Who moves the bytes of new connections now.
fn relay_in_effect(shared: &Shared) -> &'static str {
    if shared.nat_active.load(Ordering::Relaxed) {
        "nat"
    } else {
        "userspace"
    }
}

fn metrics(shared: &Arc<Shared>) -> axum::response::Response {
    myha_http::metrics::exposition(shared.registry())
}

/// Every metric of the router, read at each scrape from its counters and
/// its view; each sample carries the router's `cluster`.
#[derive(Debug)]
pub(crate) struct Collected(pub(crate) std::sync::Weak<Shared>);

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.0.upgrade() else {
            return Ok(());
        };
        let cluster = shared.cluster.name.clone();
        let c = || -> Labels { vec![("cluster", cluster.clone())] };
        let with = |k: &'static str, v: &str| -> Labels {
            let mut l = c();
            l.push((k, v.to_string()));
            l
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let flag = |b: &std::sync::atomic::AtomicBool| i64::from(b.load(Ordering::Relaxed));
        let epoch = shared.view.borrow().as_ref().map_or(0, |v| v.epoch);
        let mut e = Emit::new(&mut encoder);
        e.int_gauges(
            "myha_router_epoch",
            "The epoch of the manager's view the router follows.",
            [(c(), epoch as i64)],
        )?;
        e.int_gauges(
            "myha_router_manager_reachable",
            "1 if the router's last call to a manager succeeded.",
            [(c(), flag(&shared.manager_ok))],
        )?;
        e.counters(
            "myha_router_connections",
            "Client connections relayed, by endpoint (writer, reader).",
            [
                (with("endpoint", "writer"), load(&shared.writer_total)),
                (with("endpoint", "reader"), load(&shared.reader_total)),
            ],
        )?;
        e.int_gauges(
            "myha_router_active_connections",
            "Client connections being relayed now, by endpoint.",
            ["writer", "reader"]
                .iter()
                .zip(&shared.active)
                .map(|(endpoint, a)| (with("endpoint", endpoint), load(a) as i64)),
        )?;
        e.int_gauges(
            "myha_router_held_writers",
            "Writer connections waiting now for a writable master (a failover or switchover under way).",
            [(c(), load(&shared.holding) as i64)],
        )?;
        e.int_gauges(
            "myha_router_nat",
            "1 if the kernel NAT rules relay new connections (relay: nat), 0 for the userspace relay.",
            [(c(), flag(&shared.nat_active))],
        )?;
        for (name, help, v) in [
            ("myha_router_nat_applies", "Applications of the NAT rules.", &shared.nat_applies),
            ("myha_router_nat_rewrites", "Rewrites of the NAT rules (a change of plan).", &shared.nat_rewrites),
            ("myha_router_nat_errors", "Failed applications of the NAT rules.", &shared.nat_errors),
            ("myha_router_refused", "Connections closed without a backend (no writable master within the hold timeout, backend unreachable).", &shared.refused_total),
        ] {
            e.counters(name, help, [(c(), load(v))])?;
        }
        let l = &shared.limits;
        let per_endpoint = |f: &dyn Fn(usize) -> u64| -> Vec<(Labels, u64)> {
            limits::ENDPOINTS
                .iter()
                .enumerate()
                .map(|(i, endpoint)| (with("endpoint", endpoint), f(i)))
                .collect()
        };
        e.counters(
            "myha_router_refused_listener_cap",
            "Connections refused by the listener's cap (max_connections).",
            per_endpoint(&|i| l.refusals(i).0),
        )?;
        e.counters(
            "myha_router_refused_source_cap",
            "Connections refused by the per-source cap.",
            per_endpoint(&|i| l.refusals(i).1),
        )?;
        e.counters(
            "myha_router_handshake_timeouts",
            "Connections closed for not completing the handshake in time.",
            per_endpoint(&|i| l.handshake_timeouts[i].load(Ordering::Relaxed)),
        )?;
        e.int_gauges(
            "myha_router_open_connections",
            "Connections open now (admitted by the limits), by endpoint.",
            per_endpoint(&|i| u64::from(l.open_now(i).0))
                .into_iter()
                .map(|(k, v)| (k, v as i64)),
        )?;
        e.int_gauges(
            "myha_router_open_sources",
            "Distinct client addresses with a connection open now, by endpoint.",
            per_endpoint(&|i| l.open_now(i).1 as u64)
                .into_iter()
                .map(|(k, v)| (k, v as i64)),
        )?;
        // The reader pool: every replica of the view, in or out, and why.
        let pool: Vec<String> = shared.pool().into_iter().map(|p| p.name).collect();
        let view = shared.view.borrow().clone();
        let replicas: Vec<(String, bool)> = view
            .as_ref()
            .map(|v| {
                v.servers
                    .iter()
                    .filter(|b| b.role == myha_core::topology::Role::Replica)
                    .map(|b| (b.name.clone(), pool.contains(&b.name)))
                    .collect()
            })
            .unwrap_or_default();
        let inside = replicas.iter().filter(|(_, i)| *i).count() as i64;
        e.int_gauges(
            "myha_router_backends",
            "Replicas of the view in the reader pool (state in) and out of it (state out: unhealthy, lagging, or not yet fit long enough).",
            [
                (with("state", "in"), inside),
                (with("state", "out"), replicas.len() as i64 - inside),
            ],
        )?;
        e.int_gauges(
            "myha_router_backend_in_pool",
            "1 if the replica is in the reader pool now.",
            replicas
                .iter()
                .map(|(name, i)| (with("backend", name), i64::from(*i))),
        )?;
        let backends = shared.backends();
        let conns: Vec<(Labels, i64)> = backends
            .iter()
            .map(|(name, b)| {
                (
                    with("backend", name),
                    b.connections.load(Ordering::Relaxed) as i64,
                )
            })
            .collect();
        drop(backends);
        e.int_gauges(
            "myha_router_backend_connections",
            "Reader connections relayed now to each backend.",
            conns,
        )?;
        e.int_gauges(
            "myha_router_uptime_seconds",
            "Seconds since the router started.",
            [(c(), shared.started.elapsed().as_secs() as i64)],
        )
    }
}
