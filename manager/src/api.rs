//! The manager's HTTP API: agents post reports, the CLI reads snapshots.
//! Every request needs the shared token.
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use myha_core::report::AgentReport;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{IngestError, Topology};
use crate::ManagerError;

#[derive(Clone)]
struct App {
    topology: Arc<Topology>,
    token: Arc<str>,
}

async fn require_token(State(app): State<App>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if myha_core::auth::bearer_matches(given, &app.token) {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "missing or wrong token\n").into_response()
    }
}

async fn report(State(app): State<App>, Json(report): Json<AgentReport>) -> Response {
    match app.topology.ingest(report) {
        Ok(ack) => Json(ack).into_response(),
        Err(e @ IngestError::UnknownCluster(_)) | Err(e @ IngestError::UnknownHost { .. }) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
    }
}

async fn clusters(State(app): State<App>) -> Response {
    Json(app.topology.snapshots()).into_response()
}

async fn cluster(State(app): State<App>, Path(name): Path<String>) -> Response {
    match app.topology.snapshot(&name) {
        Some(s) => Json(s).into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown cluster {name:?}\n")).into_response(),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
}

pub(crate) async fn serve(
    listener: TcpListener,
    topology: Arc<Topology>,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ManagerError> {
    let app = App {
        topology,
        token: token.into(),
    };
    let router = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/report", post(report))
        .route("/v1/clusters", get(clusters))
        .route("/v1/clusters/{name}", get(cluster))
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(ManagerError::Serve)
}
