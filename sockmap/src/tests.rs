//! Against the running kernel (root, as in CI): two loopback connections
//! spliced together the way the router does it.
use super::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

/// `(outer client, router's accepted socket)` of a fresh loopback
/// connection.
fn connection(l: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = l.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
    let c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    let (s, _) = l.accept().unwrap_or_else(|e| panic!("accept: {e}"));
    for t in [&c, &s] {
        t.set_nodelay(true)
            .unwrap_or_else(|e| panic!("nodelay: {e}"));
        t.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("timeout: {e}"));
    }
    (c, s)
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"))
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("read {n} bytes: {e}"));
    buf
}

/// What the router's two sockets hold for user space right now.
fn queued_for_router(s: &TcpStream) -> usize {
    s.set_nonblocking(true)
        .unwrap_or_else(|e| panic!("nonblocking: {e}"));
    let mut buf = [0u8; 1];
    let n = match s.peek(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("peek: {e}"),
    };
    s.set_nonblocking(false)
        .unwrap_or_else(|e| panic!("blocking: {e}"));
    n
}

#[test]
fn program_is_twelve_instructions_with_the_map_in_the_wide_load() {
    let p = program(7);
    assert_eq!(p.len(), 12 * 8);
    // ld_imm64 r2, map fd 7 (pseudo map fd in src)
    assert_eq!(&p[32..40], &[0x18, 0x12, 0, 0, 7, 0, 0, 0]);
    assert_eq!(&p[88..96], &[0x95, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn spliced_bytes_flow_both_ways_without_reaching_the_router() {
    let splicer = Splicer::new().unwrap_or_else(|e| panic!("{e}"));
    let front = listener();
    let back = listener();
    let (mut app, router_front) = connection(&front);
    let (router_back, mut server) = connection(&back);
    let pairing = splicer
        .pair(router_front.as_fd(), router_back.as_fd())
        .unwrap_or_else(|e| panic!("{e}"));
    // Baselines: the SYN counts in an active opener's `bytes_acked`.
    let f0 = tcp_counters(router_front.as_fd()).unwrap_or_else(|e| panic!("{e}"));
    let b0 = tcp_counters(router_back.as_fd()).unwrap_or_else(|e| panic!("{e}"));

    for i in 0..200u32 {
        let q = format!("query {i}");
        app.write_all(q.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_exact(&mut server, q.len()), q.as_bytes());
        let a = format!("answer {i} {}", "x".repeat(i as usize));
        server
            .write_all(a.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_exact(&mut app, a.len()), a.as_bytes());
    }
    assert_eq!(queued_for_router(&router_front), 0);
    assert_eq!(queued_for_router(&router_back), 0);

    // 8 MiB each way at once: back-pressure through the kernel, in order.
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut server2 = server.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let expect = big.clone();
    let echo = std::thread::spawn(move || {
        let got = read_exact(&mut server2, expect.len());
        assert!(got == expect, "server received other bytes than sent");
        server2.write_all(&got).unwrap_or_else(|e| panic!("{e}"));
    });
    app.write_all(&big).unwrap_or_else(|e| panic!("{e}"));
    let back_again = read_exact(&mut app, big.len());
    assert!(back_again == big, "client received other bytes than sent");
    echo.join().unwrap_or_else(|_| panic!("echo thread"));

    // Counters: all the app sent was received by the router's front
    // socket and queued, by the kernel, on its back socket.
    let f = tcp_counters(router_front.as_fd()).unwrap_or_else(|e| panic!("{e}"));
    let b = tcp_counters(router_back.as_fd()).unwrap_or_else(|e| panic!("{e}"));
    assert!(f.received >= big.len() as u64);
    assert_eq!(
        f.received - f0.received,
        b.queued - b0.queued,
        "front received {f:?} back {b:?}"
    );
    assert_eq!(
        b.received - b0.received,
        f.queued - f0.queued,
        "back received {b:?} front {f:?}"
    );

    // Unpaired, bytes stop at the router's socket.
    drop(pairing);
    app.write_all(b"after").unwrap_or_else(|e| panic!("{e}"));
    let mut router_front = router_front;
    assert_eq!(read_exact(&mut router_front, 5), b"after");
}

#[test]
fn many_pairs_share_one_map_and_do_not_cross() {
    let splicer = Splicer::new().unwrap_or_else(|e| panic!("{e}"));
    let front = listener();
    let back = listener();
    let mut conns = Vec::new();
    for _ in 0..50 {
        let (app, rf) = connection(&front);
        let (rb, server) = connection(&back);
        let p = splicer
            .pair(rf.as_fd(), rb.as_fd())
            .unwrap_or_else(|e| panic!("{e}"));
        conns.push((app, rf, rb, server, p));
    }
    for (i, (app, _, _, server, _)) in conns.iter_mut().enumerate() {
        let q = format!("connection {i}");
        app.write_all(q.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_exact(server, q.len()), q.as_bytes());
    }
}

#[test]
fn pairing_a_socket_twice_is_refused() {
    let splicer = Splicer::new().unwrap_or_else(|e| panic!("{e}"));
    let front = listener();
    let back = listener();
    let (_app, rf) = connection(&front);
    let (rb, _server) = connection(&back);
    let (rb2, _server2) = connection(&back);
    let _p = splicer
        .pair(rf.as_fd(), rb.as_fd())
        .unwrap_or_else(|e| panic!("{e}"));
    let err = splicer
        .pair(rf.as_fd(), rb2.as_fd())
        .err()
        .unwrap_or_else(|| panic!("second pairing of one socket accepted"));
    assert!(err.to_string().contains("relay map"), "{err}");
}
