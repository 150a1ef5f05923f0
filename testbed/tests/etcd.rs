//! The HA test bed's own parts, without Docker: an etcd cluster of child
//! processes survives the loss of one member and stops cleanly; a
//! `CutProxy` relays, cuts, hangs and heals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use myha_testbed::ha::{http_plain, ETCD_MEMBERS};
use myha_testbed::{CutProxy, EtcdCluster};

/// A directory named like a bed's (so a killed test's members are reaped).
fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myha-t{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn etcd_pids(dir: &std::path::Path) -> Vec<u32> {
    let needle = format!("{}/", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("etcd") && cmd.contains(&needle)).then_some(pid)
        })
        .collect()
}

#[test]
fn an_etcd_cluster_writes_with_one_member_down_and_stops_cleanly() {
    let dir = test_dir("etcd");
    let t = Instant::now();
    let etcd = EtcdCluster::start(&dir, ETCD_MEMBERS).unwrap();
    eprintln!(
        "etcd cluster {:?} healthy after {} ms",
        etcd.client_urls(),
        t.elapsed().as_millis()
    );
    assert_eq!(etcd.client_urls().len(), 3);
    assert_eq!(etcd_pids(&dir).len(), 3);

    // As curl would: a put on one member, read back from another.
    let addrs = etcd.client_addrs();
    let (code, body) = http_plain(
        addrs[0],
        "POST",
        "/v3/kv/put",
        Some(r#"{"key":"YQ==","value":"Yg=="}"#),
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(etcd.get("a").unwrap().as_deref(), Some("b"));

    // Lose the raft leader: a new one within the election timeout, and
    // writes go on.
    let leader = etcd.leader_member().expect("a raft leader");
    etcd.stop_member(leader);
    assert_eq!(etcd.running().iter().filter(|r| **r).count(), 2);
    let t = Instant::now();
    while etcd.leader_member().is_none_or(|l| l == leader) {
        assert!(t.elapsed() < Duration::from_secs(10), "no new raft leader");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("new raft leader after {} ms", t.elapsed().as_millis());
    loop {
        if etcd.put("/test/k", "after-loss").is_ok() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no write after losing a member"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "write after losing member {leader}: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(
        etcd.get_prefix("/test/").unwrap(),
        vec![("/test/k".to_string(), "after-loss".to_string())]
    );
    assert_ne!(etcd.leader_member(), Some(leader));

    // It comes back on its data and catches up.
    etcd.start_member(leader).unwrap();
    let (code, body) = http_plain(
        addrs[leader],
        "POST",
        "/v3/kv/range",
        Some(&format!(
            r#"{{"key":"{}","serializable":true}}"#,
            myha_testbed::ha::base64_encode(b"/test/k")
        )),
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");

    // All down: no quorum; all up again on their data: the key is there.
    etcd.stop_all();
    assert!(etcd.put("/test/k", "x").is_err());
    etcd.start_all().unwrap();
    assert_eq!(etcd.get("/test/k").unwrap().as_deref(), Some("after-loss"));

    drop(etcd);
    assert!(etcd_pids(&dir).is_empty(), "members outlived the drop");
    // The logs stay for a failed test to show.
    assert!(dir.join("etcd-0.log").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An echo server: every connection echoes what it reads.
fn echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn connect(p: &CutProxy) -> TcpStream {
    let s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn echo(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn a_cut_proxy_relays_cuts_hangs_and_heals() {
    let proxy = CutProxy::start(echo_server()).unwrap();
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(echo(&mut a, b"hello").unwrap(), b"hello");
    assert_eq!(echo(&mut b, b"world").unwrap(), b"world");
    assert_eq!(proxy.connections(), 2);

    // Cut: both connections end at once (EOF or reset, not a timeout).
    let t = Instant::now();
    proxy.cut();
    let mut buf = [0u8; 8];
    for s in [&mut a, &mut b] {
        let r = s.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // New connections are closed as soon as they are accepted.
    let mut c = connect(&proxy);
    assert!(echo(&mut c, b"x").is_err());
    assert_eq!(proxy.connections(), 0);

    // Heal: it relays again.
    proxy.heal();
    let mut d = connect(&proxy);
    assert_eq!(echo(&mut d, b"again").unwrap(), b"again");

    // Hang: silence, the connection stays; heal delivers what was held.
    proxy.hang();
    d.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    d.write_all(b"held").unwrap();
    let mut got = [0u8; 4];
    let r = d.read(&mut got);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "{r:?}"
    );
    proxy.heal();
    d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    d.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"held");
    assert_eq!(proxy.relayed(), 3);

    drop(proxy);
    let r = d.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[test]
fn a_cut_proxy_in_front_of_etcd_cuts_one_client_only() {
    let dir = test_dir("etcd-proxy");
    let etcd = EtcdCluster::start(&dir, ETCD_MEMBERS).unwrap();
    let target = etcd.client_addrs()[0];
    let cut = CutProxy::start(target).unwrap();
    let open = CutProxy::start(target).unwrap();
    let health = |p: &CutProxy| {
        http_plain(p.addr(), "GET", "/health", None, Duration::from_secs(1))
            .map(|(code, body)| code == 200 && body.contains("true"))
            .unwrap_or(false)
    };
    assert!(health(&cut) && health(&open));
    cut.cut();
    assert!(!health(&cut));
    assert!(health(&open));
    cut.heal();
    assert!(health(&cut));
    drop((cut, open, etcd));
    std::fs::remove_dir_all(&dir).unwrap();
}
