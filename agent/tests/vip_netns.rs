//! Real test of `myha_agent::vip` against the kernel, run as root on Linux.
//!
//! rtnetlink talks to the network namespace of the calling process, so the
//! outer test creates a private namespace `myha-viptest-<pid>` and re-runs
//! this test binary inside it (`ip netns exec NS <this binary> --exact
//! inner_vip_lifecycle --ignored`). The inner test builds its interface there:
//! a `dummy` interface when the kernel has the driver, otherwise a veth pair
//! whose peer end stays in the same namespace. The VIP is taken from
//! 192.0.2.0/24 (TEST-NET-1, documentation only, never routed); nothing
//! leaves the namespace. Deleting the namespace (a guard, also on panic)
//! removes everything the test made.
//!
//! Without root the test prints why and passes.

use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use myha_agent::vip::{self, VipError, VipSpec};

/// Set in the environment of the re-executed test binary.
const INNER_ENV: &str = "MYHA_VIPTEST_INNER";
const INNER_TEST: &str = "inner_vip_lifecycle";
const INNER_DONE: &str = "VIPTEST-INNER-DONE";
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

fn sh(program: &str, args: &[&str]) -> Output {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run {program} {args:?}: {e}"),
    }
}

fn sh_ok(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn vip_add_remove_in_private_netns() {
    if !is_root() {
        eprintln!("SKIP vip_add_remove_in_private_netns: needs root (network namespaces, netlink address changes)");
        return;
    }
    let ns = format!("myha-viptest-{}", std::process::id());
    // A namespace of that name left behind by an earlier, killed run of a
    // process with the same pid would make `add` fail: remove it first.
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    sh_ok("ip", &["netns", "add", &ns]);
    let _guard = NetnsGuard(ns.clone());

    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let exe = exe.to_string_lossy().into_owned();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            &exe,
            "--exact",
            INNER_TEST,
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(INNER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot re-run the test binary in {ns}: {e}"));
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stdout_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the inner test did not finish within {CHILD_DEADLINE:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for the inner test: {e}"),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    println!("--- inner test stdout ---\n{stdout}");
    println!("--- inner test stderr ---\n{stderr}");
    assert!(status.success(), "inner test failed: {status}");
    assert!(
        stdout.contains(INNER_DONE) && stdout.contains("1 passed"),
        "the inner test did not run to its end"
    );
}

/// Deletes the test interface (and with a veth its peer) even on panic.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

fn rx_packets(dev: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/rx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn addr_listing(dev: &str) -> String {
    sh_ok("ip", &["-4", "-o", "addr", "show", "dev", dev])
}

fn arping_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(Into::into))
        .any(|d| d.join("arping").is_file())
}

#[tokio::test]
#[ignore = "runs only inside the namespace made by vip_add_remove_in_private_netns"]
async fn inner_vip_lifecycle() {
    if std::env::var_os(INNER_ENV).is_none() {
        eprintln!(
            "SKIP {INNER_TEST}: only meaningful when re-run by vip_add_remove_in_private_netns"
        );
        return;
    }
    let dev = format!("myhav{}", std::process::id() % 10000);
    let peer = format!("{dev}p");
    sh_ok("ip", &["link", "set", "lo", "up"]);
    let dummy = sh("ip", &["link", "add", &dev, "type", "dummy"])
        .status
        .success();
    if !dummy {
        sh_ok(
            "ip",
            &["link", "add", &dev, "type", "veth", "peer", "name", &peer],
        );
    }
    let _link = LinkGuard(dev.clone());
    sh_ok("ip", &["link", "set", &dev, "up"]);
    if !dummy {
        sh_ok("ip", &["link", "set", &peer, "up"]);
    }
    println!(
        "test interface: {dev} ({})",
        if dummy { "dummy" } else { "veth" }
    );

    let spec = VipSpec {
        address: Ipv4Addr::new(192, 0, 2, 10),
        prefix_len: 24,
        interface: dev.clone(),
        arp_count: 3,
    };
    // Frames reach the peer only on a veth with ARP on and arping installed.
    let expect_frames = !dummy && arping_installed();

    assert!(!vip::is_present(&spec)
        .await
        .unwrap_or_else(|e| panic!("{e}")));

    // add
    let rx_before = if dummy { 0 } else { rx_packets(&peer) };
    let added = vip::add(&spec).await.unwrap_or_else(|e| panic!("add: {e}"));
    println!("add: {added:?}");
    assert!(added.changed, "{added:?}");
    assert!(vip::is_present(&spec)
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(
        addr_listing(&dev).contains("inet 192.0.2.10/24"),
        "{}",
        addr_listing(&dev)
    );
    if expect_frames {
        assert_eq!(added.announcements_sent, 3, "{added:?}");
        // Let the frames cross the veth before counting them at the peer.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let received = rx_packets(&peer) - rx_before;
        assert!(received >= 3, "peer received {received} frames");
    }
    // 3 frames spread over a 1 s window: about 0.7 s plus process start-up.
    assert!(added.elapsed_ms < 3000, "{added:?}");

    // add again: no change, but the announcements still go out
    let again = vip::add(&spec)
        .await
        .unwrap_or_else(|e| panic!("add again: {e}"));
    println!("add again: {again:?}");
    assert!(!again.changed, "{again:?}");
    if expect_frames {
        assert_eq!(again.announcements_sent, 3, "{again:?}");
    }
    assert!(vip::is_present(&spec)
        .await
        .unwrap_or_else(|e| panic!("{e}")));

    // the same address with another prefix length is a different entry
    let other_prefix = VipSpec {
        prefix_len: 32,
        ..spec.clone()
    };
    assert!(!vip::is_present(&other_prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}")));

    // remove
    let removed = vip::remove(&spec)
        .await
        .unwrap_or_else(|e| panic!("remove: {e}"));
    println!("remove: {removed:?}");
    assert!(removed.changed, "{removed:?}");
    assert!(!vip::is_present(&spec)
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(
        !addr_listing(&dev).contains("192.0.2.10"),
        "{}",
        addr_listing(&dev)
    );
    let removed_again = vip::remove(&spec)
        .await
        .unwrap_or_else(|e| panic!("remove again: {e}"));
    assert!(!removed_again.changed, "{removed_again:?}");

    // one frame only: add returns right after it
    let single = VipSpec {
        arp_count: 1,
        ..spec.clone()
    };
    let one = vip::add(&single)
        .await
        .unwrap_or_else(|e| panic!("add: {e}"));
    println!("add with 1 announcement: {one:?}");
    assert!(one.changed && one.elapsed_ms < 1000, "{one:?}");
    if expect_frames {
        assert_eq!(one.announcements_sent, 1, "{one:?}");
    }
    assert!(
        vip::remove(&single)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .changed
    );

    // NOARP interface: the address moves, no announcement is attempted
    sh_ok("ip", &["link", "set", "dev", &dev, "arp", "off"]);
    let noarp = vip::add(&spec).await.unwrap_or_else(|e| panic!("add: {e}"));
    println!("add on NOARP: {noarp:?}");
    assert!(noarp.changed, "{noarp:?}");
    assert_eq!(noarp.announcements_sent, 0, "{noarp:?}");
    assert!(noarp.detail.contains("NOARP"), "{noarp:?}");
    assert!(
        vip::remove(&spec)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .changed
    );

    // a missing interface is named in the error
    let missing = VipSpec {
        interface: "myhav-nope".to_string(),
        ..spec.clone()
    };
    match vip::add(&missing).await {
        Err(VipError::NoInterface(name)) => assert_eq!(name, "myhav-nope"),
        other => panic!("add on a missing interface: {other:?}"),
    }
    match vip::remove(&missing).await {
        Err(VipError::NoInterface(name)) => assert_eq!(name, "myhav-nope"),
        other => panic!("remove on a missing interface: {other:?}"),
    }
    match vip::is_present(&missing).await {
        Err(VipError::NoInterface(name)) => assert_eq!(name, "myhav-nope"),
        other => panic!("is_present on a missing interface: {other:?}"),
    }

    // an impossible spec is refused before anything is touched
    let bad = VipSpec {
        prefix_len: 33,
        ..spec.clone()
    };
    assert!(matches!(
        vip::add(&bad).await,
        Err(VipError::InvalidSpec(_))
    ));

    println!("{INNER_DONE}");
}
