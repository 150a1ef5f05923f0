#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use common::*;
use myha_http::{client, server_tls, ClientOptions, Limits, PeerCertificate, TlsFiles};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/who",
            get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.to_string() }),
        )
        .route(
            "/peer",
            get(|cert: Option<Extension<PeerCertificate>>| async move {
                match cert {
                    Some(Extension(c)) => format!(
                        "cn={} dns={}",
                        c.common_name().unwrap_or("-"),
                        c.dns_names().join(",")
                    ),
                    None => "none".to_string(),
                }
            }),
        )
        .route(
            "/sleep/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                },
            ),
        )
}

fn plain_client() -> reqwest::Client {
    client(&ClientOptions::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_round_trip_with_connect_info() {
    let srv = start(app(), None, Limits::default()).await;
    let c = plain_client();
    let body = c
        .get(format!("http://{}/hello", srv.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello");
    let who = c
        .get(format!("http://{}/who", srv.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let who: SocketAddr = who.parse().unwrap();
    assert_eq!(who.ip().to_string(), "127.0.0.1");
    assert_ne!(who.port(), srv.addr.port());
    let peer = c
        .get(format!("http://{}/peer", srv.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(peer, "none");
    assert_eq!(srv.stats.snapshot().accepted, 1, "keep-alive reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_and_wrong_ca() {
    let pki = make_pki("good");
    let tls = server_tls(&TlsFiles {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        ca_file: None,
        client_auth: false,
    })
    .unwrap();
    let srv = start(app(), Some(tls), Limits::default()).await;
    let url = format!("https://{}/peer", srv.addr);

    let good = client(&ClientOptions {
        ca_file: Some(pki.ca.clone()),
        ..ClientOptions::default()
    })
    .unwrap();
    let resp = good.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "none");
    // by name too
    let resp = good
        .get(format!("https://localhost:{}/hello", srv.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello");

    // a client that trusts another CA refuses the server
    let other = make_pki("other");
    let wrong = client(&ClientOptions {
        ca_file: Some(other.ca.clone()),
        ..ClientOptions::default()
    })
    .unwrap();
    let start = Instant::now();
    let err = wrong.get(&url).send().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(err.is_connect(), "{err:?}");
    // the system roots do not know our test CA either
    let system = plain_client();
    assert!(system.get(&url).send().await.is_err());
    // plain HTTP to a TLS port fails, not hangs
    assert!(system
        .get(format!("http://{}/hello", srv.addr))
        .send()
        .await
        .is_err());
    wait_until("tls failures counted", Duration::from_secs(2), || {
        srv.stats.tls_failures.load(Ordering::SeqCst) >= 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_auth() {
    let pki = make_pki("mtls");
    let tls = server_tls(&TlsFiles {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        ca_file: Some(pki.ca.clone()),
        client_auth: true,
    })
    .unwrap();
    let srv = start(app(), Some(tls), Limits::default()).await;
    let url = format!("https://{}/peer", srv.addr);

    let anonymous = client(&ClientOptions {
        ca_file: Some(pki.ca.clone()),
        ..ClientOptions::default()
    })
    .unwrap();
    assert!(anonymous.get(&url).send().await.is_err());

    // a certificate from another CA is refused too
    let other = make_pki("intruder");
    let intruder = client(&ClientOptions {
        ca_file: Some(pki.ca.clone()),
        identity: Some((other.client_cert.clone(), other.client_key.clone())),
        ..ClientOptions::default()
    })
    .unwrap();
    assert!(intruder.get(&url).send().await.is_err());

    let agent = client(&ClientOptions {
        ca_file: Some(pki.ca.clone()),
        identity: Some((pki.client_cert.clone(), pki.client_key.clone())),
        ..ClientOptions::default()
    })
    .unwrap();
    let resp = agent.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "cn=agent-1 dns=agent-1.example");
    assert!(srv.stats.tls_failures.load(Ordering::SeqCst) >= 2);
}

/// Opens `n` connections that each send half a request line and stall.
async fn half_open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /hel").await.unwrap();
        conns.push(s);
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_does_not_starve_a_real_request() {
    myha_http::raise_nofile_limit().unwrap();
    let srv = start(app(), None, Limits::default()).await;
    let flood = half_open(srv.addr, 2000).await;
    wait_until("the flood accepted", Duration::from_secs(10), || {
        srv.stats.active.load(Ordering::SeqCst) >= 2000
    })
    .await;
    let c = plain_client();
    let start = Instant::now();
    let body = c
        .get(format!("http://{}/hello", srv.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(body, "hello");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let s = srv.stats.snapshot();
    assert_eq!(s.evicted, 0);
    assert!(s.active >= 2001, "{s:?}");
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_beyond_the_cap_evicts_the_oldest_waiters() {
    myha_http::raise_nofile_limit().unwrap();
    let limits = Limits {
        max_connections: 500,
        ..Limits::default()
    };
    let srv = start(app(), None, limits).await;
    let mut flood = half_open(srv.addr, 2000).await;
    wait_until("the flood accepted", Duration::from_secs(10), || {
        srv.stats.accepted.load(Ordering::SeqCst) >= 2000
    })
    .await;
    let c = plain_client();
    let start = Instant::now();
    let body = c
        .get(format!("http://{}/hello", srv.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(body, "hello");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let s = srv.stats.snapshot();
    assert!(s.evicted >= 1501, "{s:?}");
    assert_eq!(s.refused, 0);
    wait_until("evicted connections closed", Duration::from_secs(5), || {
        srv.stats.active.load(Ordering::SeqCst) <= 500
    })
    .await;
    // the oldest were evicted, the newest are still held
    let (_, _) = read_until_closed(&mut flood[0], Duration::from_secs(2)).await;
    assert!(still_open(flood.last_mut().unwrap(), Duration::from_millis(100)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_of_busy_connections_refuses_new_ones() {
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let srv = start(app(), None, limits).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /sleep/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(s);
    }
    wait_until("two handlers running", Duration::from_secs(2), || {
        srv.stats.active.load(Ordering::SeqCst) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // the third slot: a half-sent request, evicted by a real request
    let mut half = TcpStream::connect(srv.addr).await.unwrap();
    half.write_all(b"GET /hel").await.unwrap();
    wait_until("three connections", Duration::from_secs(2), || {
        srv.stats.active.load(Ordering::SeqCst) == 3
    })
    .await;
    let mut real = TcpStream::connect(srv.addr).await.unwrap();
    real.write_all(b"GET /sleep/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut half, Duration::from_secs(2)).await;
    wait_until("the real request running", Duration::from_secs(2), || {
        srv.stats.evicted.load(Ordering::SeqCst) == 1
            && srv.stats.active.load(Ordering::SeqCst) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // now every connection is inside a handler: a new one is refused
    let mut extra = TcpStream::connect(srv.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (got, took) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(took < Duration::from_millis(500), "{took:?}");
    let s = srv.stats.snapshot();
    assert_eq!(s.refused, 1, "{s:?}");
    assert_eq!(s.evicted, 1, "{s:?}");
    // the busy ones are served
    for c in busy.iter_mut().chain([&mut real]) {
        let resp = read_response(c).await;
        assert!(resp.ends_with("slept"), "{resp}");
    }
}

fn short_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1000),
        ..Limits::default()
    }
}

fn assert_closed_near(took: Duration, expected: Duration) {
    assert!(
        took >= expected.saturating_sub(Duration::from_millis(50))
            && took < expected + Duration::from_millis(700),
        "closed after {took:?}, expected about {expected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_closed_after_header_timeout() {
    let srv = start(app(), None, short_limits()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(got.is_empty());
    assert_closed_near(took, Duration::from_millis(300));
    wait_until("header timeout counted", Duration::from_secs(1), || {
        srv.stats.header_timeouts.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_request_line_closed_after_header_timeout() {
    let srv = start(app(), None, short_limits()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /hel").await.unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_closed_near(took, Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_one_byte_at_a_time_closed_after_header_timeout() {
    let srv = start(app(), None, short_limits()).await;
    let s = TcpStream::connect(srv.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let line = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for b in line {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut r, &mut buf),
    )
    .await
    .expect("closed in time")
    .unwrap_or(0);
    let took = start.elapsed();
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert_closed_near(took, Duration::from_millis(300));
    writer.abort();
    assert_eq!(srv.stats.header_timeouts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_idle_then_slow_next_request() {
    let srv = start(app(), None, short_limits()).await;

    // idle keep-alive: kept beyond header_read_timeout, closed at idle_timeout
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let start = Instant::now();
    assert!(still_open(&mut s, Duration::from_millis(600)).await);
    read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert_closed_near(start.elapsed(), Duration::from_millis(1000));
    assert_eq!(srv.stats.idle_timeouts.load(Ordering::SeqCst), 1);

    // second request on a keep-alive connection that stalls half-way:
    // closed header_read_timeout after its first byte
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut s).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.write_all(b"GET /hel").await.unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(got.is_empty());
    assert_closed_near(took, Duration::from_millis(300));
    assert_eq!(srv.stats.header_timeouts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_gets_503() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let srv = start(app(), None, limits).await;
    let c = plain_client();
    let start = Instant::now();
    let resp = c
        .get(format!("http://{}/sleep/5000", srv.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(start.elapsed() < Duration::from_secs(1));
    let resp = c
        .get(format!("http://{}/sleep/10", srv.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(srv.stats.request_timeouts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_and_half_sent_at_once() {
    let limits = Limits {
        shutdown_grace: Duration::from_secs(2),
        ..Limits::default()
    };
    let srv = start(app(), None, limits).await;
    let mut half = TcpStream::connect(srv.addr).await.unwrap();
    half.write_all(b"GET /hel").await.unwrap();
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut idle).await;
    wait_until("both accepted", Duration::from_secs(2), || {
        srv.stats.active.load(Ordering::SeqCst) == 2
    })
    .await;

    let start = Instant::now();
    srv.stop.send(true).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), srv.handle)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(res.is_ok());
    let took = start.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}");
    read_until_closed(&mut half, Duration::from_secs(1)).await;
    read_until_closed(&mut idle, Duration::from_secs(1)).await;
    // no longer listening
    assert!(TcpStream::connect(srv.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_finish_and_returns_within_grace() {
    let limits = Limits {
        shutdown_grace: Duration::from_millis(1000),
        ..Limits::default()
    };
    let srv = start(app(), None, limits).await;
    // a half-sent request held by the client
    let mut half = TcpStream::connect(srv.addr).await.unwrap();
    half.write_all(b"GET /sleep/1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // a request that finishes within the grace
    let mut short = TcpStream::connect(srv.addr).await.unwrap();
    short
        .write_all(b"GET /sleep/300 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // a request that does not
    let mut long = TcpStream::connect(srv.addr).await.unwrap();
    long.write_all(b"GET /sleep/60000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_until("all accepted", Duration::from_secs(2), || {
        srv.stats.active.load(Ordering::SeqCst) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let start = Instant::now();
    srv.stop.send(true).unwrap();
    let handle = srv.handle;
    let (got, _) = read_until_closed(&mut short, Duration::from_secs(2)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("slept"),
        "{got}"
    );
    let res = tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(res.is_ok());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1400),
        "took {took:?}"
    );
    let (got, _) = read_until_closed(&mut long, Duration::from_secs(1)).await;
    assert!(got.is_empty());
    let (got, _) = read_until_closed(&mut half, Duration::from_secs(1)).await;
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_does_not_read_is_closed() {
    let big = Router::new().route("/big", get(|| async { vec![b'x'; 64 << 20] }));
    let limits = Limits {
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let srv = start(big, None, limits).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // read nothing: the server's writes block, then it gives up
    wait_until("write timeout", Duration::from_secs(5), || {
        srv.stats.write_timeouts.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_until("connection closed", Duration::from_secs(2), || {
        srv.stats.active.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_silent_client_closed_after_handshake_timeout() {
    let pki = make_pki("hs");
    let tls = server_tls(&TlsFiles {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        ca_file: None,
        client_auth: false,
    })
    .unwrap();
    let limits = Limits {
        tls_handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = start(app(), Some(tls), limits).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(got.is_empty());
    assert_closed_near(took, Duration::from_millis(300));
    wait_until("tls failure counted", Duration::from_secs(1), || {
        srv.stats.tls_failures.load(Ordering::SeqCst) == 1
    })
    .await;
}
