//! The manager's own probe of every server: the first of the three views
//! (manager, the server's agent, the replicas) failure detection weighs.
use std::sync::Arc;
use std::time::Instant;

use myha_config::{ClusterConfig, HostConfig, ManagerConfig};
use myha_core::report::MysqldStatus;
use myha_core::topology::ProbeResult;
use myha_mysql::{collect_facts, FactsOptions};
use tokio::sync::watch;
use tokio::time::{interval, MissedTickBehavior};

use crate::state::Topology;

pub(crate) async fn run(
    topology: Arc<Topology>,
    cluster: ClusterConfig,
    host: HostConfig,
    cfg: ManagerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut db = crate::actions::admin_db(&cluster, &host, &cfg);
    let opts = FactsOptions::for_cluster(&cluster);
    let mut tick = interval(cfg.probe_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let started = Instant::now();
        let result = match collect_facts(&mut db, &opts).await {
            Ok(facts) => ProbeResult {
                mysqld: MysqldStatus::Up {
                    facts: Box::new(facts),
                },
                latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            },
            Err(e) => {
                tracing::debug!(host = %host.name, error = %e, "probe failed");
                ProbeResult {
                    mysqld: MysqldStatus::Down {
                        kind: e.down_kind(),
                        error: e.to_string(),
                    },
                    latency_ms: None,
                }
            }
        };
        topology.record_probe(&cluster.name, &host.name, result);
    }
}
