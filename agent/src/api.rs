//! The agent's own small HTTP API. Reads need a manager, operator or
//! monitor credential; fencing and the VIP only the manager's.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use myha_api::agent::{AgentHealth, FenceAnswer, FenceRequest, VipOp, VipRequest};
use myha_api::paths;
use myha_config::Scope;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{AgentError, Shared};

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(principal) = shared.access.authenticate(given) else {
        return (StatusCode::UNAUTHORIZED, "missing or wrong token\n").into_response();
    };
    let scope = if req.method() == axum::http::Method::GET {
        Scope::Read
    } else {
        Scope::Steer
    };
    if !principal.may(scope) {
        tracing::warn!(%principal, method = %req.method(), path = %req.uri().path(), "refused: only the manager may fence or move the VIP");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "{principal} may not {} {} on an agent\n",
                req.method(),
                req.uri().path()
            ),
        )
            .into_response();
    }
    next.run(req).await
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    myha_http::metrics::exposition(shared.metrics.registry(&shared))
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<AgentHealth> {
    let (last_sample_at_ms, mysqld_up) = {
        let last = shared.last.lock().await;
        (
            last.as_ref().map(|r| r.sampled_at_ms),
            last.as_ref().map(|r| r.mysqld.facts().is_some()),
        )
    };
    let vip = shared.cluster.vip.as_ref();
    let arping = match vip {
        Some(_) => Some(crate::vip::find_arping().await.is_some()),
        None => None,
    };
    Json(AgentHealth {
        host: shared.host.name.clone(),
        cluster: shared.cluster.name.clone(),
        last_sample_at_ms,
        mysqld_up,
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        unix_ms: Some(myha_http::unix_ms()),
        vip_interface: vip.map(|v| {
            std::path::Path::new("/sys/class/net")
                .join(&v.interface)
                .exists()
        }),
        arping,
    })
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.last.lock().await.clone() {
        Some(report) => Json(report).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no sample yet\n").into_response(),
    }
}

/// Add or remove the cluster's virtual IP on this host.
async fn vip(State(shared): State<Arc<Shared>>, Json(req): Json<VipRequest>) -> Response {
    let Some(vip) = &shared.cluster.vip else {
        return (
            StatusCode::CONFLICT,
            format!("cluster {} has no `vip:` configured\n", shared.cluster.name),
        )
            .into_response();
    };
    if let (VipOp::Add, Some(refusal)) = (&req.op, stale_epoch(&shared, req.epoch)) {
        return refusal;
    }
    let spec = crate::vip::VipSpec {
        address: vip.address,
        prefix_len: vip.prefix_len,
        interface: vip.interface.clone(),
        arp_count: vip.arp_count,
    };
    let res = match req.op {
        VipOp::Add => {
            let res = crate::vip::add(&spec).await;
            if res.as_ref().is_ok_and(|o| o.changed) {
                // Bounded (≈ 5 s), and it stops once the VIP is gone.
                tokio::spawn(crate::vip::follow_up(spec.clone()));
            }
            res
        }
        VipOp::Remove => crate::lease::drop_vip(&spec, shared.host.port).await,
    };
    let op = match req.op {
        VipOp::Add => "add",
        VipOp::Remove => "remove",
    };
    shared.metrics.vip(op, res.is_ok());
    match res {
        Ok(outcome) => {
            tracing::info!(host = %shared.host.name, op = ?req.op, address = %spec.address, epoch = ?req.epoch, ?outcome, "VIP");
            Json(outcome).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A refusal when `epoch` is older than the newest epoch the manager has
/// answered this agent with: a replayed or stale order.
fn stale_epoch(shared: &Shared, epoch: Option<u64>) -> Option<Response> {
    let known = shared.acked_epoch.load(std::sync::atomic::Ordering::SeqCst);
    let epoch = epoch.unwrap_or(0);
    (epoch < known).then(|| {
        tracing::warn!(epoch, known, "refused an order for an older epoch");
        (
            StatusCode::CONFLICT,
            format!("epoch {epoch} is older than epoch {known}, the newest this agent knows\n"),
        )
            .into_response()
    })
}

/// Fence the local mysqld: read_only ON and client sessions killed.
async fn fence(State(shared): State<Arc<Shared>>, Json(req): Json<FenceRequest>) -> Response {
    if let Some(refusal) = stale_epoch(&shared, Some(req.epoch)) {
        return refusal;
    }
    // Journaled in the agent's log: who fenced, for which epoch and master.
    tracing::warn!(epoch = req.epoch, master = %req.master, "fence ordered by the manager");
    let queued = || {
        (
            StatusCode::ACCEPTED,
            Json(FenceAnswer {
                fenced: false,
                queued: true,
                killed: None,
                detail: Some(
                    "mysqld does not answer: its lease is over (only resets leave its port) and a fence is queued until it answers"
                        .to_string(),
                ),
            }),
        )
            .into_response()
    };
    if shared
        .queued_fence
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return queued();
    }
    let mut db = shared.local_db();
    match crate::lease::fence_host(&shared, &mut db).await {
        Ok(killed) => {
            tracing::warn!(epoch = req.epoch, master = %req.master, killed, "fenced by the manager");
            Json(FenceAnswer {
                fenced: true,
                queued: false,
                killed: Some(killed as u64),
                detail: None,
            })
            .into_response()
        }
        // A hung mysqld (its process is there): queue the fence.
        Err(e) if crate::mysqld_process_running() == Some(true) => {
            tracing::warn!(error = %e, "fence asked by the manager: mysqld does not answer, fence queued");
            crate::lease::queue_fence(Arc::clone(&shared));
            queued()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot fence: {e}\n"),
        )
            .into_response(),
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let app = Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::AGENT_STATUS, get(status))
        .route(paths::VIP, axum::routing::post(vip))
        .route(paths::FENCE, axum::routing::post(fence))
        .route(paths::METRICS, get(metrics))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ))
        // Outside the credential check: it tells nothing.
        .route(paths::LIVENESS, get(|| async { "ok\n" }))
        .with_state(shared);
    myha_http::serve(listener, app, tls, myha_http::Limits::default(), shutdown)
        .await
        .map_err(AgentError::Http)
}
