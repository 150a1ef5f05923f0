//! `myha check`: validate the configuration (by loading it) and every
//! cluster, reading each server directly.
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use myha_config::{ClusterConfig, Config};
use myha_core::check::{
    check, AgentCheck, CheckInput, CheckServer, Finding, HookCheck, ManagerView,
};
use myha_mysql::{collect_facts, replication_grants, Db, Endpoint, FactsOptions, Timeouts};

const MAX_CLOCK_SKEW_MS: i64 = 1000;

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

async fn gather(config: &Config, cluster: &ClusterConfig) -> CheckInput {
    let timeouts = Timeouts {
        connect: config.manager.connect_timeout,
        query: config.manager.query_timeout,
    };
    let opts = FactsOptions::for_cluster(cluster);
    let (manager, report_ages) = match manager_status(config, &cluster.name).await {
        Some((view, ages)) => (Some(view), ages),
        None => (None, Default::default()),
    };
    let agents = myha_http::client_for(
        config,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(3),
    )
    .ok();
    let mut servers = Vec::new();
    for host in &cluster.hosts {
        let mut db = Db::new(Endpoint::of_host(cluster, host), timeouts);
        let facts = collect_facts(&mut db, &opts)
            .await
            .map_err(|e| e.to_string());
        let mut grants = None;
        let mut clock_offset_ms = None;
        if facts.is_ok() {
            grants = replication_grants(&mut db, &cluster.replication.user)
                .await
                .ok()
                .flatten();
            let before = unix_us();
            let t0 = Instant::now();
            if let Ok(Some(server_us)) = db
                .query_i64(
                    "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
                    timeouts.query,
                )
                .await
            {
                let rtt_us = t0.elapsed().as_micros() as i64;
                clock_offset_ms = Some((server_us - (before + rtt_us / 2)) / 1000);
            }
        }
        let (mut slave_net_timeout_s, mut admin_grants, mut replication_login) = (None, None, None);
        if facts.is_ok() {
            let var = match cluster.flavor {
                myha_core::flavor::Flavor::Mariadb => "@@slave_net_timeout",
                myha_core::flavor::Flavor::Mysql => "@@replica_net_timeout",
            };
            slave_net_timeout_s = db
                .query_i64(&format!("SELECT {var}"), timeouts.query)
                .await
                .ok()
                .flatten();
            admin_grants = db.query("SHOW GRANTS").await.ok().map(|rows| {
                rows.into_iter()
                    .filter_map(|r| r.into_values().next().flatten())
                    .collect()
            });
            replication_login = Some(replication_login_works(cluster, host, timeouts).await);
        }
        let agent = match &agents {
            Some(http) => Some(
                agent_check(
                    config,
                    http,
                    host,
                    report_ages.get(&host.name).copied().flatten(),
                )
                .await,
            ),
            None => None,
        };
        servers.push(CheckServer {
            name: host.name.clone(),
            address: host.mysql_addr(),
            aliases: vec![format!("{}:{}", host.name, host.port)],
            no_master: host.no_master,
            facts,
            replication_grants: grants,
            clock_offset_ms,
            slave_net_timeout_s,
            admin_grants,
            replication_login,
            agent,
        });
    }
    let remote = cluster.hosts.iter().any(|h| !is_loopback(&h.address));
    CheckInput {
        cluster: cluster.name.clone(),
        flavor: cluster.flavor,
        replication_user: cluster.replication.user.clone(),
        max_clock_skew_ms: MAX_CLOCK_SKEW_MS,
        servers,
        behind_router: cluster.router.is_some(),
        manager,
        version: env!("CARGO_PKG_VERSION").to_string(),
        vip_interface: cluster.vip.as_ref().map(|v| v.interface.clone()),
        hooks: hook_checks(cluster),
        manager_listen: Some((config.manager.listen.to_string(), remote)),
    }
}

fn is_loopback(address: &str) -> bool {
    address == "localhost"
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Log in as the replication user with the configured password.
async fn replication_login_works(
    cluster: &ClusterConfig,
    host: &myha_config::HostConfig,
    timeouts: Timeouts,
) -> Result<(), String> {
    let mut endpoint = Endpoint::of_host(cluster, host);
    endpoint.user = cluster.replication.user.clone();
    endpoint.password = cluster.replication.password.expose().to_string();
    let mut db = Db::connect(endpoint, timeouts)
        .await
        .map_err(|e| e.to_string())?;
    db.query_i64("SELECT 1", timeouts.query)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Ask `host`'s agent for its health.
async fn agent_check(
    config: &Config,
    http: &reqwest::Client,
    host: &myha_config::HostConfig,
    report_age_ms: Option<u64>,
) -> AgentCheck {
    let url = format!("{}{}", host.agent_url(), myha_api::paths::HEALTH);
    let asked = async {
        let resp = http
            .get(&url)
            .bearer_auth(config.token.expose())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        resp.json::<myha_api::agent::AgentHealth>()
            .await
            .map_err(|e| format!("{url}: unreadable answer: {e}"))
    };
    match asked.await {
        Ok(h) => AgentCheck {
            reachable: Ok(()),
            version: h.version,
            vip_interface: h.vip_interface,
            arping: h.arping,
            report_age_ms,
        },
        Err(e) => AgentCheck {
            reachable: Err(e),
            version: None,
            vip_interface: None,
            arping: None,
            report_age_ms,
        },
    }
}

/// Whether each configured hook can run here: its command (the first
/// word) exists and is executable.
fn hook_checks(cluster: &ClusterConfig) -> Vec<HookCheck> {
    use std::os::unix::fs::PermissionsExt;
    let h = &cluster.hooks;
    [
        ("pre_failover", &h.pre_failover),
        ("post_failover", &h.post_failover),
        ("on_failure", &h.on_failure),
        ("pre_switchover", &h.pre_switchover),
        ("post_switchover", &h.post_switchover),
        ("master_ip_failover_script", &h.master_ip_failover_script),
    ]
    .into_iter()
    .filter_map(|(name, cmd)| {
        let cmd = cmd.as_deref()?;
        let program = cmd
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let runnable = if program.contains('/') {
            match std::fs::metadata(&program) {
                Err(e) => Err(e.to_string()),
                Ok(m) if !m.is_file() => Err("not a file".to_string()),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("not executable".to_string()),
                Ok(_) => Ok(()),
            }
        } else {
            let on_path = std::env::var_os("PATH").is_some_and(|p| {
                std::env::split_paths(&p).any(|d| {
                    std::fs::metadata(d.join(&program))
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
            });
            if on_path || matches!(program.as_str(), "true" | "false" | "echo" | "exit") {
                Ok(())
            } else {
                Err(format!("`{program}` is not on PATH"))
            }
        };
        Some(HookCheck {
            name: name.to_string(),
            path: program,
            runnable,
        })
    })
    .collect()
}

/// What the manager says of the cluster, when it answers: rejoin refusals,
/// a degraded semi-sync, and the age of each agent's last report. A
/// manager that does not answer leaves these checks out (its own absence
/// is not this command's finding).
async fn manager_status(
    config: &Config,
    cluster: &str,
) -> Option<(ManagerView, std::collections::BTreeMap<String, Option<u64>>)> {
    let client = crate::client::ManagerClient::new(config).ok()?;
    let st: myha_api::status::ClusterStatus =
        client.get(&myha_api::paths::cluster(cluster)).await.ok()?;
    let ages = st
        .snapshot
        .servers
        .iter()
        .map(|s| (s.name.clone(), s.agent.last_report_age_ms))
        .collect();
    Some((
        ManagerView {
            rejoin_refused: st.rejoin_refused,
            semi_sync_degraded: st.semi_sync_degraded,
            failover_blocked: st.coordination.and_then(|c| c.blocked),
        },
        ages,
    ))
}

pub async fn run(config: &Config, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let clusters: Vec<&ClusterConfig> = match only {
        Some(name) => match config.cluster(name) {
            Some(c) => vec![c],
            None => anyhow::bail!("no cluster {name:?} in {}", config.path.display()),
        },
        None => config.clusters.iter().collect(),
    };
    let mut all: Vec<(String, Vec<Finding>)> = Vec::new();
    for c in clusters {
        let input = gather(config, c).await;
        all.push((c.name.clone(), check(&input)));
    }
    let failed = all.iter().flat_map(|(_, f)| f).filter(|f| !f.ok).count();
    if json {
        let out: Vec<serde_json::Value> = all
            .iter()
            .map(|(c, f)| serde_json::json!({ "cluster": c, "findings": f }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("config {}: OK", config.path.display());
        for (cluster, findings) in &all {
            println!("cluster {cluster}:");
            for f in findings {
                println!("  {f}");
            }
        }
        if failed == 0 {
            println!("all checks passed");
        } else {
            println!("{failed} check(s) FAILED");
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
