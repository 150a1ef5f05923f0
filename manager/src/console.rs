//! The web console: a page, a script and a style sheet embedded in the
//! binary (served without a credential: they hold no data), and the live
//! feed its cluster page reads (`GET /v1/clusters/{name}/stream`, behind
//! the token like every other API route).
//!
//! The script takes the operator's token from the URL fragment
//! (`/#token=…`, never sent to a server) or a form, keeps it in the tab's
//! `sessionStorage`, and calls the JSON API with `Authorization: Bearer`.
//!
//! The feed is Server-Sent Events read with `fetch()` (an `EventSource`
//! cannot send a header): one [`ConsoleFrame`] at once, then one whenever
//! the routing view changes (a new master, a server in or out) and at
//! least every [`TICK`]. Streams are bounded: at most [`MAX_STREAMS`] at
//! once in the process (more are answered 503) and each ends after
//! [`STREAM_LIFETIME`] (the script reconnects); a client that stops
//! reading is closed by the server's write timeout.
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use myha_api::console::{ConsoleFrame, Pool, PoolMember, VipView};
use myha_api::paths;
use myha_api::status::ClusterStatus;
use myha_config::ClusterConfig;
use myha_core::routing::{fit_for_reads, RouterView};
use myha_core::topology::Role;
use tokio::sync::{watch, Semaphore, SemaphorePermit};

use crate::state::PublishedView;

/// Live feeds open at once in this process, all clusters together.
pub(crate) const MAX_STREAMS: usize = 64;
/// A feed ends after this long; the console reconnects.
pub(crate) const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// A frame at least this often (ages, lag, the verdict move without a
/// change of the routing view).
pub(crate) const TICK: Duration = Duration::from_secs(1);

static STREAMS: Semaphore = Semaphore::const_new(MAX_STREAMS);

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// The page allows only its own script and style sheet, and talks only to
/// its own origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The console's static files: no credential, no data.
pub(crate) fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            paths::CONSOLE,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            paths::CONSOLE_JS,
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            paths::CONSOLE_CSS,
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

/// One frame of the feed.
pub(crate) fn frame(
    status: ClusterStatus,
    routing: Option<RouterView>,
    cluster: &ClusterConfig,
) -> ConsoleFrame {
    let pools = routing.as_ref().map(pools).unwrap_or_default();
    let vip = cluster.vip.as_ref().map(|v| VipView {
        address: format!("{}/{} on {}", v.address, v.prefix_len, v.interface),
        holder: status.epoch_master.clone(),
    });
    ConsoleFrame {
        status,
        routing,
        pools,
        vip,
    }
}

/// Every server of a routing view, in the pool the routers put it in, and
/// why (the same rules as [`fit_for_reads`]).
pub(crate) fn pools(view: &RouterView) -> Vec<PoolMember> {
    let writer = view.writer.as_ref().map(|w| w.name.as_str());
    view.servers
        .iter()
        .map(|b| {
            let lag = b
                .lag_seconds
                .map_or_else(|| "unknown".to_string(), |l| format!("{l:.1} s"));
            let (pool, reason) = if Some(b.name.as_str()) == writer {
                (
                    Pool::Writer,
                    format!("master of epoch {}, writable", view.epoch),
                )
            } else if fit_for_reads(b, view.max_lag_seconds) {
                (
                    Pool::Reader,
                    format!(
                        "healthy replica, lag {lag} (at most {:.1} s), weight {}",
                        view.max_lag_seconds, b.weight
                    ),
                )
            } else {
                let why = if b.down {
                    "mysqld is down: its connections are cut".to_string()
                } else if b.role == Role::Master {
                    if view.changing {
                        "master, not published: a change is under way, new writes are held"
                            .to_string()
                    } else {
                        "master, not healthy or not writable: no writer".to_string()
                    }
                } else if b.role != Role::Replica {
                    format!("{}: kept out of every pool", b.role)
                } else if !b.healthy {
                    "not healthy (mysqld unreachable or replication stopped): drained".to_string()
                } else if b.weight == 0 {
                    "weight 0".to_string()
                } else {
                    format!(
                        "lag {lag} over the bound of {:.1} s: drained",
                        view.max_lag_seconds
                    )
                };
                (Pool::Out, why)
            };
            PoolMember {
                name: b.name.clone(),
                role: b.role,
                pool,
                reason,
            }
        })
        .collect()
}

fn sse(event: &str, data: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

struct Feed<F> {
    views: watch::Receiver<Option<std::sync::Arc<PublishedView>>>,
    make: F,
    deadline: tokio::time::Instant,
    first: bool,
    done: bool,
    _permit: SemaphorePermit<'static>,
}

/// The live feed of one cluster: `make` builds a frame (None: the cluster
/// is gone, and the feed ends).
pub(crate) fn stream<F>(
    views: watch::Receiver<Option<std::sync::Arc<PublishedView>>>,
    make: F,
) -> Response
where
    F: FnMut() -> Option<ConsoleFrame> + Send + 'static,
{
    let Ok(permit) = STREAMS.try_acquire() else {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live feeds open (at most {MAX_STREAMS}): try again later\n"),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let feed = Feed {
        views,
        make,
        deadline: tokio::time::Instant::now() + STREAM_LIFETIME,
        first: true,
        done: false,
        _permit: permit,
    };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        if feed.done {
            return None;
        }
        if !feed.first {
            let wake = (tokio::time::Instant::now() + TICK).min(feed.deadline);
            // A change of the routing view, or the tick.
            let changed = tokio::time::timeout_at(wake, feed.views.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                // The cluster's view is gone (removed by a reload).
                feed.done = true;
                return Some((Ok::<_, std::convert::Infallible>(sse("end", "gone")), feed));
            }
            if tokio::time::Instant::now() >= feed.deadline {
                feed.done = true;
                return Some((Ok(sse("end", "reconnect")), feed));
            }
        }
        feed.first = false;
        feed.views.borrow_and_update();
        let chunk = match (feed.make)().map(|f| serde_json::to_string(&f)) {
            Some(Ok(json)) => sse("frame", &json),
            Some(Err(e)) => {
                feed.done = true;
                sse("end", &format!("cannot encode the frame: {e}"))
            }
            None => {
                feed.done = true;
                sse("end", "gone")
            }
        };
        Some((Ok(chunk), feed))
    });
    let mut r = Response::new(axum::body::Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use myha_core::routing::Backend;

    fn backend(name: &str, role: Role, healthy: bool, lag: Option<f64>) -> Backend {
        Backend {
            name: name.into(),
            address: format!("{name}:3306"),
            role,
            healthy,
            down: false,
            lag_seconds: lag,
            weight: 1,
        }
    }

    #[test]
    fn every_server_is_in_one_pool_with_its_reason() {
        let master = backend("db1", Role::Master, true, None);
        let view = RouterView {
            cluster: "c".into(),
            epoch: 4,
            writer: Some(master.clone()),
            changing: false,
            servers: vec![
                master,
                backend("db2", Role::Replica, true, Some(0.2)),
                backend("db3", Role::Replica, true, Some(30.0)),
                backend("db4", Role::Replica, false, Some(0.0)),
                backend("db5", Role::NeedsRejoin, true, None),
            ],
            max_lag_seconds: 5.0,
        };
        let p = pools(&view);
        let got: Vec<(&str, Pool)> = p.iter().map(|m| (m.name.as_str(), m.pool)).collect();
        assert_eq!(
            got,
            vec![
                ("db1", Pool::Writer),
                ("db2", Pool::Reader),
                ("db3", Pool::Out),
                ("db4", Pool::Out),
                ("db5", Pool::Out),
            ]
        );
        assert!(p[2].reason.contains("lag 30.0 s over the bound"), "{p:?}");
        assert!(p[3].reason.contains("not healthy"), "{p:?}");
        assert!(p[4].reason.contains("needs rejoin"), "{p:?}");
    }

    #[test]
    fn the_page_allows_nothing_from_elsewhere() {
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!APP_JS.contains("http://") && !APP_JS.contains("https://"));
        assert!(!APP_CSS.contains("http://") && !APP_CSS.contains("https://"));
        assert!(CSP.contains("default-src 'none'"));
    }

    #[tokio::test]
    async fn feeds_are_bounded_in_number() {
        let (_tx, rx) = watch::channel(None);
        let mut open = Vec::new();
        for _ in 0..MAX_STREAMS {
            let r = stream(rx.clone(), || None);
            assert_eq!(r.status(), StatusCode::OK);
            open.push(r);
        }
        let refused = stream(rx.clone(), || None);
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        open.pop();
        let again = stream(rx, || None);
        assert_eq!(again.status(), StatusCode::OK);
    }
}
