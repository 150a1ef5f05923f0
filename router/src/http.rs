//! The router's HTTP API: its endpoints for discovery, its health, and
//! its Prometheus metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use myha_api::paths;
use myha_api::router::{EndpointLimits, Endpoints, Limits, Reader, RouterHealth, Writer};

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
        .route(
            "/metrics",
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

fn metrics(shared: &Shared) -> String {
    let epoch = shared.view.borrow().as_ref().map_or(0, |v| v.epoch);
    let mut out = String::new();
    out.push_str(&format!(
        "myha_router_epoch{{cluster=\"{}\"}} {epoch}\n",
        shared.cluster.name
    ));
    out.push_str(&format!(
        "myha_router_manager_reachable {}\n",
        u8::from(shared.manager_ok.load(Ordering::Relaxed))
    ));
    out.push_str(&format!(
        "myha_router_connections_total{{endpoint=\"writer\"}} {}\n",
        shared.writer_total.load(Ordering::Relaxed)
    ));
    out.push_str(&format!(
        "myha_router_connections_total{{endpoint=\"reader\"}} {}\n",
        shared.reader_total.load(Ordering::Relaxed)
    ));
    for (endpoint, active) in ["writer", "reader"].iter().zip(&shared.active) {
        out.push_str(&format!(
            "myha_router_active_connections{{endpoint=\"{endpoint}\"}} {}\n",
            active.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_nat {}\n",
        u8::from(shared.nat_active.load(Ordering::Relaxed))
    ));
    for (name, v) in [
        ("applies", &shared.nat_applies),
        ("rewrites", &shared.nat_rewrites),
        ("errors", &shared.nat_errors),
    ] {
        out.push_str(&format!(
            "myha_router_nat_{name}_total {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_refused_total {}\n",
        shared.refused_total.load(Ordering::Relaxed)
    ));
    let l = &shared.limits;
    for (i, endpoint) in limits::ENDPOINTS.iter().enumerate() {
        let (open, sources) = l.open_now(i);
        let (listener_cap, source_cap) = l.refusals(i);
        for (name, v) in [
            ("refused_listener_cap_total", listener_cap),
            ("refused_source_cap_total", source_cap),
            (
                "handshake_timeouts_total",
                l.handshake_timeouts[i].load(Ordering::Relaxed),
            ),
            ("open_connections", u64::from(open)),
            ("open_sources", sources as u64),
        ] {
            out.push_str(&format!(
                "myha_router_{name}{{endpoint=\"{endpoint}\"}} {v}\n"
            ));
        }
    }
    for (name, b) in shared.backends().iter() {
        out.push_str(&format!(
            "myha_router_backend_connections{{backend=\"{name}\"}} {}\n",
            b.connections.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "myha_router_uptime_seconds {}\n",
        shared.started.elapsed().as_secs()
    ));
    out
}
