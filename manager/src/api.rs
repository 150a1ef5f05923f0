//! The manager's HTTP API: agents post reports, the CLI reads status and
//! history and asks for failovers. Every request needs the shared token.
use std::sync::Arc;

use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use myha_config::{Config, Principal, Scope};
use myha_core::analysis::Verdict;
use myha_core::report::AgentReport;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::detector::analyse_now;
use crate::failover;
use crate::operation::{journal, Context};
use crate::state::{unix_ms, IngestError};
use crate::store::{Event, Step, StepStatus};
use crate::ManagerError;
use myha_api::paths;
use myha_api::requests::{
    AckAnswer, FailoverRequest, Health, RejoinAnswer, RejoinRequest, SwitchoverLine,
    SwitchoverRequest,
};
use myha_api::watch::{WatchAnswer, WatchQuery};

#[derive(Clone)]
struct App {
    ctx: Arc<Context>,
    /// Forwards a follower's action requests to the leader.
    forwarder: reqwest::Client,
}

pub use myha_api::status::ClusterStatus;

fn status_of(app: &App, name: &str) -> Option<ClusterStatus> {
    let topo = &app.ctx.topology;
    let snapshot = topo.snapshot(name)?;
    let durable = topo.durable(name)?;
    let config = app.ctx.live.get();
    let cluster = config.cluster(name)?;
    let master = durable.master.clone().or(snapshot.master.clone());
    let readiness = master
        .as_deref()
        .map(|m| failover::candidate_choice(topo, cluster, &snapshot, m, None));
    Some(ClusterStatus {
        epoch_master: durable.master.clone(),
        analysis: topo.analysis(name),
        readiness,
        failover_blocked_until_ms: durable.blocked_until_ms.filter(|u| *u > unix_ms()),
        last_failover_ms: durable.last_failover_ms,
        in_progress: durable.in_progress,
        needs_rejoin: durable.needs_rejoin,
        rejoin_refused: topo.rejoin_refused(name),
        semi_sync_degraded: durable.semi_sync_degraded,
        coordination: Some(app.ctx.coord.view()),
        snapshot,
    })
}

/// Long-poll for routers: answers at once if the view's digest differs from
/// `after`, else when it changes, else after `timeout_ms` (default 20 s).
/// The view is recomputed once per change of the cluster's state (and per
/// detection tick), not per watcher: a watcher waits on its notifier.
async fn watch(
    State(app): State<App>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WatchQuery>,
) -> Response {
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(q.timeout_ms.unwrap_or(20_000).min(60_000));
    let topo = &app.ctx.topology;
    let Some(mut views) = topo.watch_view(&name) else {
        return not_found(&name);
    };
    // Up to date now, whatever the last change was.
    topo.refresh_view(&name);
    let mut last = false;
    loop {
        let Some(published) = views.borrow_and_update().clone() else {
            return not_found(&name);
        };
        if q.after != Some(published.digest) || last {
            return Json(WatchAnswer {
                digest: published.digest,
                view: published.view.clone(),
                leader: app.ctx.coord.leader_url(),
            })
            .into_response();
        }
        if !matches!(
            tokio::time::timeout_at(deadline, views.changed()).await,
            Ok(Ok(()))
        ) {
            // The deadline (or the manager stopping): answer with the
            // view as it is now.
            topo.refresh_view(&name);
            last = true;
        }
    }
}

// --- web console (issue 16) ---
/// The web console's live feed of one cluster (see `crate::console`).
async fn console_stream(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(views) = app.ctx.topology.watch_view(&name) else {
        return not_found(&name);
    };
    crate::console::stream(views, move || {
        let status = status_of(&app, &name)?;
        let cluster = app.ctx.live.get().cluster(&name).cloned()?;
        let routing = app.ctx.topology.router_view(&name);
        Some(crate::console::frame(status, routing, &cluster))
    })
}
// --- end web console ---

/// What a route asks of its caller.
fn scope_of(method: &axum::http::Method, path: &str) -> Scope {
    match path {
        paths::REPORT => Scope::Report,
        paths::WATCH_ROUTE => Scope::View,
        _ if method == axum::http::Method::GET => Scope::Read,
        _ => Scope::Act,
    }
}

/// Authenticates the caller (401 without a known credential), checks the
/// route's scope against its role (403), and hands the [`Principal`] on.
async fn require_token(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(principal) = app.ctx.live.get().authenticate(given) else {
        return (StatusCode::UNAUTHORIZED, "missing or wrong token\n").into_response();
    };
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let scope = scope_of(req.method(), &path);
    if !principal.may(scope) {
        tracing::warn!(%principal, method = %req.method(), path = %req.uri().path(), "refused: outside the caller's role");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "{principal} (role {}) may not {} {}\n",
                principal.role(),
                req.method(),
                req.uri().path()
            ),
        )
            .into_response();
    }
    if scope == Scope::Act {
        tracing::info!(%principal, method = %req.method(), path = %req.uri().path(), "operator request");
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// A `to` naming no host of the cluster is the caller's error.
fn unknown_target(cluster: &myha_config::ClusterConfig, to: Option<&str>) -> Option<Response> {
    let to = to?;
    cluster.host(to).is_none().then(|| {
        (
            StatusCode::BAD_REQUEST,
            format!("{to:?} is not a host of cluster {}\n", cluster.name),
        )
            .into_response()
    })
}

fn not_found(name: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("unknown cluster {name:?}\n")).into_response()
}

/// A JSON body decoded straight from its bytes by serde_json. axum's
/// `Json` decodes through serde_path_to_error, which tracks the path of
/// every field as it goes: that was half the cost of decoding an agent's
/// report, of which the manager takes thousands a second. Only a body
/// that fails is decoded again through `Json`, so what a client is told
/// (the status, and the message with the failing field's path) is axum's;
/// a body without a JSON content type goes to `Json` as it is.
struct FastJson<T>(T);

impl<T, S> FromRequest<S> for FastJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        if !json_content_type(req.headers()) {
            return match Json::<T>::from_request(req, state).await {
                Ok(Json(value)) => Ok(FastJson(value)),
                Err(rejection) => Err(rejection.into_response()),
            };
        }
        let body = bytes::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match serde_json::from_slice(&body) {
            Ok(value) => Ok(FastJson(value)),
            Err(_) => match Json::<T>::from_bytes(&body) {
                Ok(Json(value)) => Ok(FastJson(value)),
                Err(rejection) => Err(rejection.into_response()),
            },
        }
    }
}

/// What axum's `Json` takes as a JSON content type, decided the same way
/// (a parsed `mime`): `application/json`, or `application/<name>+json`,
/// with or without parameters.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == "application"
        && (mime.subtype() == "json" || mime.suffix().is_some_and(|name| name == "json"))
}

async fn report(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    FastJson(report): FastJson<AgentReport>,
) -> Response {
    // An agent speaks for its own host only.
    let own = matches!(&principal, Principal::Agent { host } if *host == report.host);
    if !own {
        tracing::warn!(%principal, host = %report.host, "refused a report for another host");
        return (
            StatusCode::FORBIDDEN,
            format!("{principal} may not report for host {:?}\n", report.host),
        )
            .into_response();
    }
    match app.ctx.topology.ingest(report) {
        Ok(mut ack) => {
            ack.leader = app.ctx.coord.is_leader();
            Json(ack).into_response()
        }
        Err(e @ IngestError::UnknownCluster(_)) | Err(e @ IngestError::UnknownHost { .. }) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e @ IngestError::SeqOutOfRange { .. }) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

async fn clusters(State(app): State<App>) -> Response {
    let all: Vec<ClusterStatus> = app
        .ctx
        .live
        .get()
        .clusters
        .iter()
        .filter_map(|c| status_of(&app, &c.name))
        .collect();
    Json(all).into_response()
}

async fn cluster(State(app): State<App>, Path(name): Path<String>) -> Response {
    match status_of(&app, &name) {
        Some(s) => Json(s).into_response(),
        None => not_found(&name),
    }
}

async fn history(
    State(app): State<App>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<myha_api::journal::HistoryQuery>,
) -> Response {
    if app.ctx.live.get().cluster(&name).is_none() {
        return not_found(&name);
    }
    match app.ctx.topology.store().history(&name) {
        Ok(events) => Json::<Vec<Event>>(q.page(events)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn failover_now(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(req): Json<FailoverRequest>,
) -> Response {
    let Some(cluster) = app.ctx.live.get().cluster(&name).cloned() else {
        return not_found(&name);
    };
    let Some(analysis) = analyse_now(&app.ctx, &cluster) else {
        return not_found(&name);
    };
    if let Some(bad) = unknown_target(&cluster, req.to.as_deref()) {
        return bad;
    }
    if !req.dry_run && !analysis.verdict.is_dead() {
        let why = match analysis.verdict {
            Verdict::Healthy => {
                "the master is healthy: use `myha switchover` for a planned change".to_string()
            }
            v => format!(
                "the master is not known dead ({v:?}: {})",
                analysis.evidence.join("; ")
            ),
        };
        journal(
            &app.ctx,
            &name,
            Step::NoFailover,
            StepStatus::Skipped,
            format!("manual failover refused: {why}"),
        );
        return (StatusCode::CONFLICT, format!("refused: {why}\n")).into_response();
    }
    let report = failover::failover(
        &app.ctx,
        &cluster,
        &analysis,
        req.to.as_deref(),
        req.dry_run,
    )
    .await;
    Json(report).into_response()
}

/// Run a switchover, streaming each step as a JSON line (`{"event":..}`)
/// as it happens, then the report (`{"report":..}`).
async fn switchover_now(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(req): Json<SwitchoverRequest>,
) -> Response {
    let Some(cluster) = app.ctx.live.get().cluster(&name).cloned() else {
        return not_found(&name);
    };
    if let Some(bad) = unknown_target(&cluster, req.to.as_deref()) {
        return bad;
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let lines = tx.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(ev) = events_rx.recv().await {
            let line =
                serde_json::to_string(&SwitchoverLine::Event { event: ev }).unwrap_or_default();
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let ctx = Arc::clone(&app.ctx);
    // Tracked: a shutdown waits for the switchover to end.
    let tracker = ctx.background.clone();
    tracker.spawn(async move {
        // On the operations thread, as failovers (see `crate::ops`).
        let c = Arc::clone(&ctx);
        let run = async move {
            let request = crate::switchover::SwitchoverRequest {
                to: req.to.as_deref(),
                dry_run: req.dry_run,
                timeout: std::time::Duration::from_millis(req.timeout_ms.unwrap_or(10_000)),
            };
            crate::switchover::switchover(&c, &cluster, &request, Some(events_tx)).await
        };
        let Some(report) = ctx.ops.run(run).await else {
            // No outcome (logged): the stream ends without a report, and
            // the client says so.
            let _ = forwarder.await;
            return;
        };
        // Every event is out (the sink closed with the run) before the report.
        let _ = forwarder.await;
        let _ = tx.send(
            serde_json::to_string(&SwitchoverLine::Report {
                report: Box::new(report),
            })
            .unwrap_or_default(),
        );
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| {
            (
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line + "\n")),
                rx,
            )
        })
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

async fn rejoin_now(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(req): Json<RejoinRequest>,
) -> Response {
    let Some(cluster) = app.ctx.live.get().cluster(&name).cloned() else {
        return not_found(&name);
    };
    match crate::rejoin::rejoin(&app.ctx, &cluster, &req.host, req.force).await {
        Ok(done) => Json(RejoinAnswer {
            rejoined: true,
            detail: done,
        })
        .into_response(),
        // One mapping, in the error type: an unknown host is 404, a
        // refusal because of the cluster's state 409, an unreachable
        // server 503/504.
        Err(why) => (
            why.http_status(),
            Json(RejoinAnswer {
                rejoined: false,
                detail: why.to_string(),
            }),
        )
            .into_response(),
    }
}

async fn ack(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    if app.ctx.live.get().cluster(&name).is_none() {
        return not_found(&name);
    }
    match app
        .ctx
        .topology
        .update_durable(&name, |s| s.blocked_until_ms = None)
    {
        Ok(_) => {
            journal(
                &app.ctx,
                &name,
                Step::Ack,
                StepStatus::Info,
                format!(
                    "{principal} acknowledged the last failover: automatic failover enabled again"
                ),
            );
            Json(AckAnswer { acknowledged: true }).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Reload this manager's configuration file (never forwarded: every
/// manager reads its own).
async fn reload(State(app): State<App>, Extension(principal): Extension<Principal>) -> Response {
    tracing::info!(%principal, "configuration reload requested");
    match app.ctx.live.request().await {
        Ok(answer) => Json(answer).into_response(),
        Err(e @ crate::ReloadError::Invalid(_)) => {
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        Err(e @ crate::ReloadError::Busy(_)) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    myha_http::metrics::exposition(app.ctx.metrics.registry())
}

/// Liveness without a credential: nothing but that the manager serves.
async fn alive() -> &'static str {
    "ok\n"
}

async fn health(State(app): State<App>) -> Json<Health> {
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
        coordination: Some(app.ctx.coord.view()),
    })
}

/// Bounds of a request a follower forwards to the leader (a switchover
/// streams its steps for up to its own bound).
const FORWARD_CONNECT: std::time::Duration = std::time::Duration::from_secs(3);
const FORWARD_BOUND: std::time::Duration = std::time::Duration::from_secs(300);
/// The largest action request body forwarded.
const FORWARD_MAX_BODY: usize = 64 * 1024;

/// Actions run on the leader: a follower forwards the request (the caller's
/// credentials with it; the leader checks them again) and streams the
/// answer back. With no leader, nothing runs and the answer says why.
async fn to_leader(State(app): State<App>, req: Request, next: Next) -> Response {
    if app.ctx.coord.is_leader() {
        return next.run(req).await;
    }
    let view = app.ctx.coord.view();
    let Some(leader) = view.leader.clone().filter(|l| *l != view.this) else {
        let why = view
            .blocked
            .unwrap_or_else(|| "no manager leads now".to_string());
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORWARD_MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let url = format!("{leader}{path}");
    tracing::info!(%url, method = %parts.method, "forwarding an action to the leader");
    let mut call = app
        .forwarder
        .request(parts.method.clone(), &url)
        .body(bytes);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&name) {
            call = call.header(name, v);
        }
    }
    let mut resp = match call.send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("this manager follows; the leader {leader} did not answer: {e}\n"),
            )
                .into_response()
        }
    };
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut out = Response::builder().status(status);
    if let Some(ct) = content_type {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    out.header("x-myha-forwarded-to", leader.as_str())
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    config: Config,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ManagerError> {
    let forwarder = myha_http::client_for(&config, FORWARD_CONNECT, FORWARD_BOUND)?;
    let app = App { ctx, forwarder };
    // What changes the cluster runs on the leader: a follower forwards it.
    let actions = Router::new()
        .route(paths::FAILOVER_ROUTE, post(failover_now))
        .route(paths::ACK_ROUTE, post(ack))
        .route(paths::SWITCHOVER_ROUTE, post(switchover_now))
        .route(paths::REJOIN_ROUTE, post(rejoin_now))
        .route_layer(middleware::from_fn_with_state(app.clone(), to_leader));
    let router = Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::REPORT, post(report))
        .route(paths::CLUSTERS, get(clusters))
        .route(paths::CLUSTER_ROUTE, get(cluster))
        .route(paths::HISTORY_ROUTE, get(history))
        .route(paths::WATCH_ROUTE, get(watch))
        .route(paths::STREAM_ROUTE, get(console_stream))
        .route(paths::RELOAD, post(reload))
        .route(paths::METRICS, get(metrics))
        .merge(actions)
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        // Outside the credential check: it tells nothing.
        .route(paths::LIVENESS, get(alive))
        // The console's page, script and style: no data, no credential.
        .merge(crate::console::assets())
        .with_state(app);
    myha_http::serve(
        listener,
        router,
        tls,
        myha_http::Limits::default(),
        shutdown,
    )
    .await
    .map_err(ManagerError::Http)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Probe {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        n: u32,
    }

    async fn decode(content_type: Option<&str>, body: &str) -> Result<Probe, (StatusCode, String)> {
        let mut req = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(axum::body::Body::from(body.to_string())).unwrap();
        match FastJson::<Probe>::from_request(req, &()).await {
            Ok(FastJson(p)) => Ok(p),
            Err(resp) => {
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
                    .await
                    .unwrap();
                Err((status, String::from_utf8_lossy(&bytes).into_owned()))
            }
        }
    }

    /// The fast decoder takes what axum's `Json` takes, and refuses what it
    /// refuses with the same status and a message naming the field.
    #[tokio::test]
    async fn fast_json_answers_as_axums_json() {
        let good = r#"{"name":"db1","inner":{"n":3}}"#;
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/x+json",
        ] {
            let p = decode(Some(ct), good).await.unwrap();
            assert_eq!(
                p,
                Probe {
                    name: "db1".into(),
                    inner: Inner { n: 3 }
                }
            );
        }
        let (status, text) = decode(
            Some("application/json"),
            r#"{"name":"db1","inner":{"n":"x"}}"#,
        )
        .await
        .unwrap_err();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.contains("inner.n"), "{text}");
        let (status, _) = decode(Some("application/json"), "{").await.unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for ct in [None, Some("text/plain"), Some("application/+json")] {
            let (status, _) = decode(ct, good).await.unwrap_err();
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        }
    }
}
