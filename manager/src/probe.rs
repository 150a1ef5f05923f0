//! The manager's own probe of every server: the first of the three views
//! (manager, the server's agent, the replicas) failure detection weighs.
use std::sync::Arc;
use std::time::Instant;

use myha_config::{ClusterConfig, HostConfig, ManagerConfig};
use myha_core::detect::probe_due;
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
    let interval_ms = cfg.probe_interval.as_millis() as u64;
    let mut tick = interval(cfg.probe_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A cluster that stops or starts being quiet, or an operation that
    // needs fresh readings (`Topology::probe_now`), has every server
    // probed at once.
    let mut signal = topology.quiet_watch(&cluster.name);
    let mut last_started: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let due = topology
                    .probe_pace(&cluster.name, &host.name, last_started)
                    .is_none_or(|pace| probe_due(pace, interval_ms));
                if !due {
                    continue;
                }
            }
            changed = async { signal.as_mut()?.changed().await.ok() }, if signal.is_some() => {
                match (changed, signal.as_mut()) {
                    (Some(()), Some(s)) => {
                        s.borrow_and_update();
                    }
                    // Its sender is gone (never while the cluster's tasks
                    // run: a reload stops them first): probe every tick.
                    _ => signal = None,
                }
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let started = Instant::now();
        last_started = Some(started);
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
