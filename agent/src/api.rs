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

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
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
