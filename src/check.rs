//! `myha check`: validate the configuration (by loading it) and every
//! cluster, reading each server directly.
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use myha_config::{ClusterConfig, Config};
use myha_core::check::{check, CheckInput, CheckServer, Finding, ManagerView};
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
        servers.push(CheckServer {
            name: host.name.clone(),
            address: host.mysql_addr(),
            aliases: vec![format!("{}:{}", host.name, host.port)],
            no_master: host.no_master,
            facts,
            replication_grants: grants,
            clock_offset_ms,
        });
    }
    CheckInput {
        cluster: cluster.name.clone(),
        flavor: cluster.flavor,
        replication_user: cluster.replication.user.clone(),
        max_clock_skew_ms: MAX_CLOCK_SKEW_MS,
        servers,
        behind_router: cluster.router.is_some(),
        manager: manager_view(config, &cluster.name).await,
    }
}

/// What the manager says of the cluster, when it answers: rejoin refusals
/// and a degraded semi-sync. A manager that does not answer leaves these
/// checks out (its own absence is not this command's finding).
async fn manager_view(config: &Config, cluster: &str) -> Option<ManagerView> {
    let client = crate::client::ManagerClient::new(config).ok()?;
    let st: myha_api::status::ClusterStatus =
        client.get(&myha_api::paths::cluster(cluster)).await.ok()?;
    Some(ManagerView {
        rejoin_refused: st.rejoin_refused,
        semi_sync_degraded: st.semi_sync_degraded,
        failover_blocked: st.coordination.and_then(|c| c.blocked),
    })
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
