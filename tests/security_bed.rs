//! Security on a real bed: every HTTP API over TLS and MariaDB requiring
//! it (a bed with `BedOptions::tls`), and each credential held to its role's
//! scope (403 outside it, 401 for an unknown token).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use myha_testbed::{
    query_tcp, wait_until, Bed, PatientOptions, PatientWriter, Sampler, APP_PASSWORD, APP_USER,
    CLUSTER,
};

/// `SHOW SLAVE STATUS\G` of `host`, as root over the socket.
fn slave_status(bed: &Bed, host: &str) -> String {
    bed.exec(host, &["mariadb", "-uroot", "-e", "SHOW SLAVE STATUS\\G"])
        .unwrap()
}

/// Replicating over TLS with the master's certificate checked.
fn replicates_over_tls(bed: &Bed, host: &str) -> bool {
    let s = slave_status(bed, host);
    s.contains("Slave_IO_Running: Yes")
        && s.contains("Master_SSL_Allowed: Yes")
        && s.contains("Master_SSL_Verify_Server_Cert: Yes")
}

#[test]
fn tls_bed_serves_https_and_mariadb_requires_tls() {
    let mut opts = options();
    opts.tls = true;
    let bed = Bed::start(opts).expect("start TLS bed");
    let ca = bed.ca_file().expect("a TLS bed has a CA");
    for key in [
        bed.dir.join("tls/key.pem"),
        bed.host_dir("db1").join("tls/key.pem"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    if let Err(e) = bed.wait_ready(Duration::from_secs(60)) {
        panic!(
            "{e}\nstatus: {:?}\nmanager log:\n{}",
            bed.status().err(),
            bed.manager_log()
        );
    }
    wait_healthy(&bed, Duration::from_secs(30));

    // The CLI reaches the manager over https (manager.url, tls.ca_file).
    let cfg = std::fs::read_to_string(&bed.config_path).unwrap();
    assert!(
        cfg.contains(&format!("url: https://{}:7070", bed.gateway)),
        "{cfg}"
    );
    let out = bed.myha(&["status"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // https with the bed's CA; not without it, and never plain http.
    let manager = bed.manager_url();
    let (code, _) = bed
        .http(
            "GET",
            &format!("{manager}/v1/clusters"),
            Some(&bed.token),
            None,
        )
        .unwrap();
    assert_eq!(code, 200, "https GET with the operator token");
    let plain = format!("http://{}:7070/v1/clusters", bed.gateway);
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args([
            "-H",
            &format!("Authorization: Bearer {}", bed.monitor_token),
        ])
        .arg(&plain)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert_ne!(code, "200", "plain http to the manager answered: {code}");
    assert!(!out.status.success(), "plain http to the manager succeeded");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "/dev/null"])
        .arg(format!("{manager}/v1/health"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "https without the bed's CA must fail the certificate check"
    );
    // An agent: https with its own certificate (its address).
    let agent = bed.agent_url("db2").unwrap();
    let (code, _) = bed
        .http(
            "GET",
            &format!("{agent}/v1/status"),
            Some(&bed.monitor_token),
            None,
        )
        .unwrap();
    assert_eq!(code, 200, "https GET of an agent's sample");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "/dev/null"])
        .arg(format!(
            "http://{}:7071/v1/health",
            bed.host("db2").unwrap().ip
        ))
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain http to an agent succeeded");

    // MariaDB: a plain TCP connection is refused, TLS (the server's
    // certificate checked, its address included) is served, with the same
    // account. MariaDB 10.11 refuses an insecure transport as "Access
    // denied" (1045); the TLS login below shows the password is right.
    let db1 = bed.host("db1").unwrap().ip.clone();
    let plain = query_tcp(&db1, 3306, (APP_USER, APP_PASSWORD), None, "SELECT 1");
    let err = plain
        .expect_err("a plain connection must be refused")
        .to_string();
    assert!(
        err.to_lowercase().contains("insecure transport") || err.contains("1045"),
        "not refused at login: {err}"
    );
    let cipher = query_tcp(
        &db1,
        3306,
        (APP_USER, APP_PASSWORD),
        Some(&ca),
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'",
    )
    .expect("TLS connection to db1");
    assert!(cipher.is_some_and(|c| !c.is_empty()), "no TLS cipher");
    // Replication runs over TLS too (require_secure_transport allows no other).
    for r in ["db2", "db3"] {
        assert!(replicates_over_tls(&bed, r), "{}", slave_status(&bed, r));
    }
    // `myha check` reads every server itself, over TLS.
    myha_ok(&bed, &["check"]);

    // A switchover: the manager repoints over TLS (mysql_tls.replication).
    let out = bed.myha(&["switchover", "--to", "db2"]).unwrap();
    assert!(
        out.status.success(),
        "switchover failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        bed.manager_log()
    );
    assert_eq!(wait_master_not(&bed, "db1"), "db2");
    wait_replicating_from(&bed, "db1", "db2", Duration::from_secs(30));
    wait_replicating_from(&bed, "db3", "db2", Duration::from_secs(30));
    for r in ["db1", "db3"] {
        wait_until(
            Duration::from_secs(10),
            &format!("{r} replicates from db2 over TLS"),
            || Ok(replicates_over_tls(&bed, r)),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", slave_status(&bed, r)));
    }

    // The bed's own MariaDB clients use TLS in a TLS bed: the writer
    // container, patient writers, the sampler (over a host's loopback).
    let db2 = bed.host("db2").unwrap().ip.clone();
    let writer = bed.start_writer(&db2, 3306).unwrap();
    writer.wait_acks(10, Duration::from_secs(20)).unwrap();
    let log = writer.stop();
    assert!(log.acks.len() >= 10, "writer over TLS: {:?}", log.errors);
    bed.ensure_patient_table("db2").unwrap();
    let patient = PatientWriter::start(PatientOptions {
        clients: 2,
        tls_ca: bed.ca_file(),
        ..PatientOptions::new("tls", &db2, 3306)
    })
    .unwrap();
    patient.wait_acks(10, Duration::from_secs(20)).unwrap();
    let log = patient.stop();
    assert!(log.last_error.is_none(), "{:?}", log.last_error);
    let sampler = Sampler::start(&bed).unwrap();
    sampler.wait_warm(Duration::from_secs(10)).unwrap();
    let seen = sampler.stop();
    assert_eq!(seen.max_writable, 1, "{seen}");
}

/// Each host sees its own directory of the bed only: its copy of the
/// configuration, its own agent token; not the manager's token or state,
/// nor the other hosts' tokens. Every secret file is private.
fn assert_bed_hygiene(bed: &Bed) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for f in [
        "manager.token",
        "operator.token",
        "monitor.token",
        "router.token",
        "admin.pw",
        "repl.pw",
    ] {
        assert_eq!(mode(&bed.dir.join(f)), 0o600, "{f}");
    }
    for h in &bed.hosts {
        let own = bed.host_dir(&h.name);
        assert_eq!(mode(&own.join("agent.token")), 0o600);
        assert_eq!(mode(&own.join("admin.pw")), 0o600);
        assert!(
            !own.join("repl.pw").exists(),
            "an agent needs no replication password"
        );
        let sees = |p: &std::path::Path| {
            bed.exec(&h.name, &["test", "-e", &p.display().to_string()])
                .is_ok()
        };
        assert!(sees(&own.join("agent.token")), "{}: its own token", h.name);
        assert!(sees(&own.join("myha.yaml")), "{}: its config", h.name);
        assert!(
            !sees(&bed.dir.join("manager.token")),
            "{}: the manager's token",
            h.name
        );
        assert!(
            !sees(&bed.dir.join("operator.token")),
            "{}: the CLI's token",
            h.name
        );
        assert!(
            !sees(&bed.dir.join("state")),
            "{}: the manager's state",
            h.name
        );
        for other in bed.hosts.iter().filter(|o| o.name != h.name) {
            assert!(
                !sees(&bed.host_dir(&other.name)),
                "{} sees {}'s directory",
                h.name,
                other.name
            );
        }
    }
}

#[test]
fn each_token_is_held_to_its_role() {
    let bed = healthy_bed();
    assert_bed_hygiene(&bed);
    let manager = bed.manager_url();
    let post = |url: &str, token: &str, body: &str| -> u16 {
        bed.http("POST", url, Some(token), Some(body)).unwrap().0
    };
    let get =
        |url: &str, token: &str| -> u16 { bed.http("GET", url, Some(token), None).unwrap().0 };

    // The manager: switchover is an operator's act. A dry run, so that a
    // missing check would change nothing.
    let switchover = format!("{manager}/v1/clusters/{CLUSTER}/switchover");
    let body = r#"{"to":"db2","dry_run":true}"#;
    assert_eq!(post(&switchover, &bed.router_token, body), 403, "router");
    assert_eq!(post(&switchover, &bed.monitor_token, body), 403, "monitor");
    assert_eq!(
        post(&switchover, &bed.agent_tokens["db2"], body),
        403,
        "agent"
    );
    assert_eq!(post(&switchover, "not-a-known-token", body), 401, "unknown");
    // Reading is for operators and monitors; the router sees its view only.
    let status = format!("{manager}/v1/clusters/{CLUSTER}");
    assert_eq!(get(&status, &bed.monitor_token), 200, "monitor reads");
    assert_eq!(get(&status, &bed.token), 200, "operator reads");
    assert_eq!(get(&status, &bed.router_token), 403, "router reads status");
    assert_eq!(get(&status, "not-a-known-token"), 401, "unknown reads");

    // An agent reports for its own host only: db3's own report, sent
    // with db2's token.
    let agent3 = bed.agent_url("db3").unwrap();
    let (code, report) = bed
        .http(
            "GET",
            &format!("{agent3}/v1/status"),
            Some(&bed.manager_token),
            None,
        )
        .unwrap();
    assert_eq!(code, 200, "the manager reads an agent's sample");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["host"], "db3", "{report}");
    let report = report.to_string();
    assert_eq!(
        post(
            &format!("{manager}/v1/report"),
            &bed.agent_tokens["db2"],
            &report
        ),
        403,
        "db2's agent reporting for db3"
    );
    assert_eq!(
        post(&format!("{manager}/v1/report"), &bed.monitor_token, &report),
        403,
        "a monitor reporting"
    );

    // Agents: fences and VIP moves come from the manager only.
    let fence = format!("{agent3}/v1/fence");
    let vip = format!("{agent3}/v1/vip");
    let epoch = bed.status().unwrap()["epoch"].as_u64().unwrap_or(0);
    let fence_body = format!(r#"{{"epoch":{epoch},"master":"db1"}}"#);
    let vip_body = format!(
        r#"{{"op":"remove","spec":{{"address":"{}","prefix_len":24,"interface":"eth0","arp_count":0}}}}"#,
        bed.vip()
    );
    for (who, token) in [
        ("monitor", bed.monitor_token.as_str()),
        ("operator", bed.token.as_str()),
        ("router", bed.router_token.as_str()),
        ("db3's own agent", bed.agent_tokens["db3"].as_str()),
    ] {
        assert_eq!(post(&fence, token, &fence_body), 403, "{who} fencing");
        assert_eq!(post(&vip, token, &vip_body), 403, "{who} moving the VIP");
    }
    assert_eq!(post(&fence, "not-a-known-token", &fence_body), 401);
    assert_eq!(post(&vip, "not-a-known-token", &vip_body), 401);
    // Reading an agent's sample: manager, monitor, operator; not a router.
    let sample = format!("{agent3}/v1/status");
    assert_eq!(get(&sample, &bed.monitor_token), 200, "monitor");
    assert_eq!(get(&sample, &bed.token), 200, "operator");
    assert_eq!(get(&sample, &bed.router_token), 403, "router");
    assert_eq!(get(&sample, "not-a-known-token"), 401, "unknown");

    // The manager's token fences: a replica (read-only already, its
    // replication threads spared), which goes on replicating.
    let (code, answer) = bed
        .http("POST", &fence, Some(&bed.manager_token), Some(&fence_body))
        .unwrap();
    assert_eq!(code, 200, "the manager fencing db3: {answer}");
    assert!(answer.contains("\"fenced\":true"), "{answer}");
    assert_eq!(bed.sql("db3", "SELECT @@read_only").unwrap(), "1");
    wait_healthy(&bed, Duration::from_secs(20));
}

/// `tls.client_auth`: every server requires a certificate signed by the
/// bed's CA. Agents, manager and CLI present theirs and the cluster works;
/// a client with the right CA and token but no certificate is refused
/// during the handshake, before any request is read.
#[test]
fn client_auth_bed_requires_client_certificates() {
    let mut opts = options();
    opts.tls = true;
    opts.client_auth = true;
    let bed = Bed::start(opts).expect("start mTLS bed");
    if let Err(e) = bed.wait_ready(Duration::from_secs(60)) {
        panic!("{e}\nmanager log:\n{}", bed.manager_log());
    }
    wait_healthy(&bed, Duration::from_secs(30));
    let cfg = std::fs::read_to_string(&bed.config_path).unwrap();
    assert!(cfg.contains("client_auth: true"), "{cfg}");
    // The bed's curl presents the manager host's certificate.
    let url = format!("{}/v1/clusters", bed.manager_url());
    assert_eq!(
        bed.http("GET", &url, Some(&bed.token), None).unwrap().0,
        200
    );
    // Without a certificate: no TLS session, whatever the token.
    let ca = bed.ca_file().unwrap();
    for target in [
        url.clone(),
        format!("{}/v1/status", bed.agent_url("db2").unwrap()),
    ] {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&ca)
            .args([
                "-H",
                &format!("Authorization: Bearer {}", bed.manager_token),
            ])
            .arg(&target)
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            code, "000",
            "{target} answered without a client certificate"
        );
    }
    // Agents report through it: a switchover works end to end.
    myha_ok(&bed, &["switchover", "--to", "db2"]);
    wait_until(Duration::from_secs(30), "db2 master", || {
        Ok(bed.status()?["master"] == "db2")
    })
    .unwrap();
}
