//! The manager's live state: the latest agent report and the latest own
//! probe of every configured host, from which snapshots are built on demand.
use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use myha_config::{ClusterConfig, Config};
use myha_core::report::{AgentReport, ReportAck};
use myha_core::topology::{
    build_snapshot, ClusterSnapshot, Freshness, HostObservation, ProbeResult,
};

use crate::store::{ClusterState, StateStore, StoreError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("unknown cluster {0:?}")]
    UnknownCluster(String),
    #[error("host {host:?} is not part of cluster {cluster:?}")]
    UnknownHost { cluster: String, host: String },
}

#[derive(Debug, Default)]
struct HostEntry {
    report: Option<(AgentReport, Instant)>,
    probe: Option<(ProbeResult, Instant)>,
}

#[derive(Debug)]
struct ClusterInner {
    durable: ClusterState,
    hosts: BTreeMap<String, HostEntry>,
}

#[derive(Debug)]
struct ClusterEntry {
    config: ClusterConfig,
    inner: RwLock<ClusterInner>,
}

impl ClusterEntry {
    fn read(&self) -> RwLockReadGuard<'_, ClusterInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, ClusterInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every cluster's live state.
#[derive(Debug)]
pub struct Topology {
    clusters: BTreeMap<String, ClusterEntry>,
    fresh: Freshness,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn age_ms(at: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(at).as_millis() as u64
}

impl Topology {
    pub fn new(config: &Config, store: &dyn StateStore) -> Result<Topology, StoreError> {
        let mut clusters = BTreeMap::new();
        for c in &config.clusters {
            let durable = match store.load(&c.name)? {
                Some(s) => s,
                None => {
                    let s = ClusterState {
                        epoch: 1,
                        master: None,
                    };
                    store.save(&c.name, &s)?;
                    s
                }
            };
            let hosts = c
                .hosts
                .iter()
                .map(|h| (h.name.clone(), HostEntry::default()))
                .collect();
            clusters.insert(
                c.name.clone(),
                ClusterEntry {
                    config: c.clone(),
                    inner: RwLock::new(ClusterInner { durable, hosts }),
                },
            );
        }
        let agent_stale = (config.agent.interval * 4).max(Duration::from_millis(1000));
        let probe_stale = config.manager.probe_interval * 3 + config.manager.query_timeout;
        Ok(Topology {
            clusters,
            fresh: Freshness {
                agent_stale_after_ms: agent_stale.as_millis() as u64,
                probe_stale_after_ms: probe_stale.as_millis() as u64,
            },
        })
    }

    /// Take an agent's report; answer with the cluster's epoch.
    pub fn ingest(&self, report: AgentReport) -> Result<ReportAck, IngestError> {
        let entry = self
            .clusters
            .get(&report.cluster)
            .ok_or_else(|| IngestError::UnknownCluster(report.cluster.clone()))?;
        let mut inner = entry.write();
        let host = inner
            .hosts
            .get_mut(&report.host)
            .ok_or_else(|| IngestError::UnknownHost {
                cluster: report.cluster.clone(),
                host: report.host.clone(),
            })?;
        // Reports can arrive out of order; keep the newest of an instance.
        let newer = host
            .report
            .as_ref()
            .is_none_or(|(old, _)| old.instance != report.instance || old.seq < report.seq);
        if newer {
            host.report = Some((report, Instant::now()));
        }
        Ok(ReportAck {
            epoch: inner.durable.epoch,
            master: inner.durable.master.clone(),
        })
    }

    pub(crate) fn record_probe(&self, cluster: &str, host: &str, probe: ProbeResult) {
        if let Some(entry) = self.clusters.get(cluster) {
            if let Some(h) = entry.write().hosts.get_mut(host) {
                h.probe = Some((probe, Instant::now()));
            }
        }
    }

    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }

    /// The snapshot of one cluster now.
    pub fn snapshot(&self, cluster: &str) -> Option<ClusterSnapshot> {
        let entry = self.clusters.get(cluster)?;
        let inner = entry.read();
        let now = Instant::now();
        let obs: Vec<HostObservation<'_>> = entry
            .config
            .hosts
            .iter()
            .map(|h| {
                let e = inner.hosts.get(&h.name);
                HostObservation {
                    name: &h.name,
                    address: h.mysql_addr(),
                    agent: e
                        .and_then(|e| e.report.as_ref())
                        .map(|(r, at)| (r, age_ms(*at, now))),
                    probe: e
                        .and_then(|e| e.probe.as_ref())
                        .map(|(p, at)| (p, age_ms(*at, now))),
                }
            })
            .collect();
        Some(build_snapshot(
            cluster,
            inner.durable.epoch,
            unix_ms(),
            &obs,
            self.fresh,
        ))
    }

    pub fn snapshots(&self) -> Vec<ClusterSnapshot> {
        self.clusters
            .keys()
            .filter_map(|c| self.snapshot(c))
            .collect()
    }
}
