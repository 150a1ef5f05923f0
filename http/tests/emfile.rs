//! The accept loop survives EMFILE. Alone in its test binary: it lowers the
//! process's RLIMIT_NOFILE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::routing::get;
use common::*;
use myha_http::{serve_with_stats, Limits, Stats};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_loop_survives_emfile() {
    let app = axum::Router::new().route("/hello", get(|| async { "hello" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // 30 clients wait in the backlog before the server accepts anything
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open_fds() + 5, hard).unwrap();

    let (stop, rx) = tokio::sync::watch::channel(false);
    let stats = Arc::new(Stats::default());
    let handle = tokio::spawn(serve_with_stats(
        listener,
        app,
        None,
        Limits::default(),
        rx,
        stats.clone(),
    ));
    wait_until("EMFILE seen", Duration::from_secs(5), || {
        stats.accept_errors.load(Ordering::SeqCst) >= 2
    })
    .await;
    let accepted = stats.accepted.load(Ordering::SeqCst);
    assert!(accepted < 30, "accepted {accepted}");

    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    wait_until("all accepted", Duration::from_secs(5), || {
        stats.accepted.load(Ordering::SeqCst) == 30
    })
    .await;
    let c = myha_http::client(&myha_http::ClientOptions::default()).unwrap();
    let body = c
        .get(format!("http://{addr}/hello"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello");
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
    drop(clients);
}
