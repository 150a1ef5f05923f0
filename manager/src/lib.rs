//! The myha manager: ingests agent reports, probes every server itself,
//! keeps one topology snapshot per cluster with the age of every fact, and
//! serves it over HTTP. Decisions are pure functions in `myha-core` over
//! these snapshots; this crate only gathers facts and executes.
#![forbid(unsafe_code)]

mod actions;
mod agents;
mod api;
mod detector;
pub mod failover;
mod hooks;
mod probe;
mod reinstate;
mod rejoin;
pub mod state;
pub mod store;
pub mod switchover;
mod upkeep;

use std::sync::Arc;

use myha_config::Config;
use tokio::sync::watch;

pub use api::ClusterStatus;
pub use failover::FailoverReport;
pub use state::Topology;
pub use store::{Event, Operation};
pub use store::{FileStore, StateStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Run the manager until `shutdown` turns true.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), ManagerError> {
    let store: Arc<dyn StateStore> = Arc::new(FileStore::open(&config.manager.state_dir)?);
    let topology = Arc::new(Topology::new(&config, Arc::clone(&store))?);
    let agents = agents::AgentClient::new(
        config.token.expose(),
        config
            .manager
            .query_timeout
            .max(std::time::Duration::from_secs(3)),
    )
    .map_err(ManagerError::Client)?;
    let ctx = Arc::new(failover::Context {
        topology: Arc::clone(&topology),
        manager: config.manager.clone(),
        agent_interval: config.agent.interval,
        agents,
    });
    let listener = tokio::net::TcpListener::bind(config.manager.listen)
        .await
        .map_err(|source| ManagerError::Listen {
            addr: config.manager.listen.to_string(),
            source,
        })?;
    tracing::info!(listen = %config.manager.listen, clusters = config.clusters.len(), "manager started");
    let mut tasks = Vec::new();
    for cluster in &config.clusters {
        tasks.push(tokio::spawn(detector::run(
            Arc::clone(&ctx),
            cluster.clone(),
            shutdown.clone(),
        )));
        for host in &cluster.hosts {
            tasks.push(tokio::spawn(probe::run(
                Arc::clone(&topology),
                cluster.clone(),
                host.clone(),
                config.manager.clone(),
                shutdown.clone(),
            )));
        }
    }
    let served = api::serve(
        listener,
        Arc::clone(&ctx),
        config.clone(),
        shutdown,
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("manager stopped");
    served
}
