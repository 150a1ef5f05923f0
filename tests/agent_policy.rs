//! Issue 12: the agent's API is narrow. Even with the manager's own
//! credential, an order for an older epoch does not fence the current
//! master, and a VIP request cannot make a host claim an address of the
//! requester's choosing (the address comes from the agent's configuration).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use myha_testbed::{wait_until, Bed};

/// POST `body` to `host`'s agent with `token`: (HTTP status, body).
/// Plain or TLS (MYHA_BED_TLS=1): the bed's curl knows which.
fn post(bed: &Bed, host: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let url = format!("{}{path}", bed.agent_url(host).unwrap());
    bed.http("POST", &url, Some(token), Some(body)).unwrap()
}

fn read_only(bed: &Bed, host: &str) -> bool {
    bed.sql(host, "SELECT @@global.read_only")
        .unwrap()
        .lines()
        .any(|l| l.trim() == "1")
}

#[test]
fn stale_fences_and_foreign_vip_addresses_are_refused() {
    let mut opts = options();
    opts.vip = true;
    let bed = Bed::start(opts).expect("start bed");
    wait_healthy(&bed, Duration::from_secs(30));
    bed.wait_ready(Duration::from_secs(20)).unwrap();
    // A switchover makes the epoch newer than anything replayed below.
    myha_ok(&bed, &["switchover", "--to", "db2"]);
    let (epoch, master) = bed.epoch_master().unwrap();
    assert_eq!(master.as_deref(), Some("db2"));
    assert!(epoch >= 1);
    // Wait until db2's agent has heard the new epoch.
    wait_until(
        Duration::from_secs(20),
        "db2 writable in the new epoch",
        || Ok(!read_only(&bed, "db2")),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    // A replayed fence for an older epoch, with the manager's own token.
    let (code, body) = post(
        &bed,
        "db2",
        "/v1/fence",
        &bed.manager_token,
        &format!(r#"{{"epoch":{},"master":"db1"}}"#, epoch - 1),
    );
    assert_eq!(code, 409, "stale fence: {body}");
    assert!(body.contains("older than epoch"), "{body}");
    assert!(!read_only(&bed, "db2"), "a stale fence fenced the master");

    // A VIP request naming another address: the agent uses its own
    // configuration; db3 (a replica) removes the VIP it does not hold and
    // never adds the requested address.
    let foreign = bed.gateway.clone();
    let (code, body) = post(
        &bed,
        "db3",
        "/v1/vip",
        &bed.manager_token,
        &format!(
            r#"{{"op":"remove","epoch":{epoch},"spec":{{"address":"{foreign}","prefix_len":24,"interface":"eth0","arp_count":1}}}}"#
        ),
    );
    assert_eq!(code, 200, "vip remove: {body}");
    let addrs = bed
        .exec("db3", &["ip", "-4", "-o", "addr", "show"])
        .unwrap();
    assert!(!addrs.contains(&format!(" {foreign}/")), "{addrs}");
    assert!(addrs.contains(&bed.host("db3").unwrap().ip), "{addrs}");
    // An add for an older epoch is refused: no second VIP holder.
    let (code, body) = post(
        &bed,
        "db3",
        "/v1/vip",
        &bed.manager_token,
        &format!(r#"{{"op":"add","epoch":{}}}"#, epoch - 1),
    );
    assert_eq!(code, 409, "stale vip add: {body}");
    let addrs = bed
        .exec("db3", &["ip", "-4", "-o", "addr", "show"])
        .unwrap();
    assert!(!addrs.contains(&format!(" {}/", bed.vip())), "{addrs}");
    // An unknown op is a client error, not an action.
    let (code, _) = post(
        &bed,
        "db3",
        "/v1/vip",
        &bed.manager_token,
        r#"{"op":"steal"}"#,
    );
    assert!((400..500).contains(&code), "{code}");
    // The cluster is intact.
    let st = bed.status().unwrap();
    assert_eq!(st["master"], "db2");
}
