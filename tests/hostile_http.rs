//! Issue 12: the manager survives hostile HTTP clients. 2,000 half-open
//! connections (half a request line, then silence), kept open by a flooder
//! that reopens every one the manager closes, while `myha status` answers
//! and a failover completes; then SIGTERM ends the manager within 5 s
//! whatever the flood holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use myha_testbed::{raise_fd_limit, Bed};

/// Keeps `n` half-sent requests open against `addr` until stopped.
struct Flood {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    reopened: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn half_open(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.write_all(b"GET /v1/clusters HTTP/1.1\r\nHost: m").ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

impl Flood {
    fn start(addr: SocketAddr, n: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let reopened = Arc::new(AtomicUsize::new(0));
        let (s, o, r) = (Arc::clone(&stop), Arc::clone(&open), Arc::clone(&reopened));
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| half_open(addr)).collect();
            let mut buf = [0u8; 512];
            while !s.load(Ordering::SeqCst) {
                for c in conns.iter_mut() {
                    let closed = match c {
                        None => true,
                        Some(stream) => match stream.read(&mut buf) {
                            Ok(0) => true,
                            Ok(_) => true, // an answer (408/closing): done with it
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        },
                    };
                    if closed {
                        *c = half_open(addr);
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                }
                o.store(
                    conns.iter().filter(|c| c.is_some()).count(),
                    Ordering::SeqCst,
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Flood {
            stop,
            open,
            reopened,
            thread: Some(thread),
        }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pid of this bed's manager process.
fn manager_pid(bed: &Bed) -> u32 {
    let config = bed.config_path.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "manager") && args.contains(&config) {
            return pid;
        }
    }
    panic!("no manager process for {config}");
}

/// Running (not exited, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[test]
fn two_thousand_half_open_connections_neither_blind_the_manager_nor_block_its_shutdown() {
    raise_fd_limit();
    let bed = healthy_bed();
    let addr: SocketAddr = format!("{}:7070", bed.gateway).parse().unwrap();
    let flood = Flood::start(addr, 2000);
    let t = Instant::now();
    while flood.open() < 1900 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        flood.open() >= 1900,
        "only {} flood connections",
        flood.open()
    );

    // The operator still sees the cluster, promptly, many times over.
    for _ in 0..5 {
        let t = Instant::now();
        let st = bed.status().expect("myha status under the flood");
        assert_eq!(st["master"], "db1");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "status took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The agents still report, and a failover still happens.
    let (epoch, _) = bed.epoch_master().unwrap();
    bed.kill_mysqld("db1").unwrap();
    let new = bed.wait_failover("db1", epoch, Duration::from_secs(60));
    assert!(
        new.is_some(),
        "no failover under the flood\n{}",
        bed.manager_log()
    );
    assert!(
        flood.open() >= 1500,
        "the flood thinned to {}",
        flood.open()
    );
    eprintln!(
        "flood: {} open, {} reopened; failover to {new:?}",
        flood.open(),
        flood.reopened.load(Ordering::SeqCst)
    );

    // SIGTERM while the flood holds its half-sent requests.
    let pid = manager_pid(&bed);
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while alive(pid) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    assert!(!alive(pid), "the manager still runs 10 s after SIGTERM");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    eprintln!("SIGTERM under the flood: the manager exited in {took:?}");
    drop(flood);
}
