//! The agent's own small HTTP API. Every request needs the shared token.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{AgentError, Shared};

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if myha_core::auth::bearer_matches(given, &shared.token) {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "missing or wrong token\n").into_response()
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let last = shared.last.lock().await;
    Json(serde_json::json!({
        "host": shared.host.name,
        "cluster": shared.cluster.name,
        "last_sample_at_ms": last.as_ref().map(|r| r.sampled_at_ms),
        "mysqld_up": last.as_ref().map(|r| r.mysqld.facts().is_some()),
    }))
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.last.lock().await.clone() {
        Some(report) => Json(report).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no sample yet\n").into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct VipRequest {
    op: String,
    spec: crate::vip::VipSpec,
}

/// Add or remove the cluster's virtual IP on this host.
async fn vip(State(shared): State<Arc<Shared>>, Json(req): Json<VipRequest>) -> Response {
    let res = match req.op.as_str() {
        "add" => crate::vip::add(&req.spec).await,
        "remove" => crate::lease::drop_vip(&req.spec, shared.host.port).await,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown op {other:?}: add or remove\n"),
            )
                .into_response()
        }
    };
    match res {
        Ok(outcome) => {
            tracing::info!(host = %shared.host.name, op = %req.op, address = %req.spec.address, ?outcome, "VIP");
            Json(outcome).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct FenceRequest {
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    master: String,
}

/// Fence the local mysqld: read_only ON and client sessions killed.
async fn fence(State(shared): State<Arc<Shared>>, Json(req): Json<FenceRequest>) -> Response {
    let queued = || {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "fenced": false,
                "queued": true,
                "detail": "mysqld does not answer: its lease is over (only resets leave its port) and a fence is queued until it answers"
            })),
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
            Json(serde_json::json!({ "fenced": true, "killed": killed })).into_response()
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
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/vip", axum::routing::post(vip))
        .route("/v1/fence", axum::routing::post(fence))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(AgentError::Serve)
}
