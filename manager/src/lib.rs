//! The myha manager: ingests agent reports, probes every server itself,
//! keeps one topology snapshot per cluster with the age of every fact, and
//! serves it over HTTP. Decisions are pure functions in `myha-core` over
//! these snapshots; this crate only gathers facts and executes.
#![forbid(unsafe_code)]

mod api;
mod probe;
pub mod state;
pub mod store;

use std::sync::Arc;

use myha_config::Config;
use tokio::sync::watch;

pub use state::Topology;
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
}

/// Run the manager until `shutdown` turns true.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), ManagerError> {
    let store: Arc<dyn StateStore> = Arc::new(FileStore::open(&config.manager.state_dir)?);
    let topology = Arc::new(Topology::new(&config, store.as_ref())?);
    let listener = tokio::net::TcpListener::bind(config.manager.listen)
        .await
        .map_err(|source| ManagerError::Listen {
            addr: config.manager.listen.to_string(),
            source,
        })?;
    tracing::info!(listen = %config.manager.listen, clusters = config.clusters.len(), "manager started");
    let mut tasks = Vec::new();
    for cluster in &config.clusters {
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
        Arc::clone(&topology),
        config.manager.token.expose().to_string(),
        shutdown,
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("manager stopped");
    served
}
