//! The manager's live state: the latest agent report and the latest own
//! probe of every configured host, from which snapshots are built on demand.
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use myha_config::{ClusterConfig, Config};
use myha_core::detect::ProbePaceInput;
use myha_core::durable::{apply_durable, DurableView};
use myha_core::report::{AckStatus, AgentReport, ReportAck, ServerFacts, MAX_SEQ};
use myha_core::routing::{router_view, RouterView};
use myha_core::topology::{
    build_snapshot_with_problems, ClusterSnapshot, Freshness, HostObservation, ProbeResult,
};

use tokio::sync::{watch, Notify};

use crate::store::{ClusterState, StateStore, StoreError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("unknown cluster {0:?}")]
    UnknownCluster(String),
    #[error("host {host:?} is not part of cluster {cluster:?}")]
    UnknownHost { cluster: String, host: String },
    /// A `seq` beyond [`MAX_SEQ`]: an invalid report (a client error).
    #[error("report from {host:?}: seq {seq} is out of range (at most {MAX_SEQ})")]
    SeqOutOfRange { host: String, seq: u64 },
}

#[derive(Debug, Default)]
struct HostEntry {
    report: Option<(AgentReport, Instant)>,
    probe: Option<(ProbeResult, Instant)>,
    /// Since when the manager's probe has failed without a success.
    probe_failing_since: Option<Instant>,
    /// The last facts read from the server by anyone, kept when it dies:
    /// what it had is what a failover may lose.
    last_facts: Option<(ServerFacts, Instant)>,
}

impl HostEntry {
    fn remember(&mut self, facts: Option<&ServerFacts>, at: Instant) {
        if let Some(f) = facts {
            self.last_facts = Some((f.clone(), at));
        }
    }

    /// The manager's own probe read the server within `stale_after_ms`.
    fn probe_reads(&self, now: Instant, stale_after_ms: u64) -> bool {
        self.probe
            .as_ref()
            .is_some_and(|(p, at)| p.mysqld.facts().is_some() && age_ms(*at, now) <= stale_after_ms)
    }
}

#[derive(Debug)]
struct ClusterInner {
    durable: ClusterState,
    hosts: BTreeMap<String, HostEntry>,
    /// The detector's latest analysis.
    analysis: Option<myha_core::analysis::Analysis>,
    /// Why each server that should rejoin did not, at the last attempt.
    rejoin_refused: BTreeMap<String, String>,
}

/// The routing view of a cluster as last computed, with its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedView {
    pub digest: u64,
    pub view: RouterView,
}

#[derive(Debug)]
struct ClusterEntry {
    config: ClusterConfig,
    inner: RwLock<ClusterInner>,
    /// The routing view, recomputed whenever the state changes (and on
    /// every detection tick, for what only time changes); its receivers
    /// are woken only when its digest changes.
    view: Arc<watch::Sender<Option<Arc<PublishedView>>>>,
    /// Wakes the cluster's detector at once: a report or probe differed
    /// materially from the last one from its host.
    wake: Arc<Notify>,
    /// Whether the detector's last look found the cluster quiet: the
    /// probes of its replicas relax while it is
    /// ([`myha_core::detect::probe_due`]). Every change, and every
    /// [`Topology::probe_now`], has every probe of the cluster run at once.
    quiet: Arc<watch::Sender<bool>>,
}

impl ClusterEntry {
    fn new(config: &ClusterConfig, durable: ClusterState) -> ClusterEntry {
        ClusterEntry {
            config: config.clone(),
            inner: RwLock::new(ClusterInner {
                durable,
                hosts: config
                    .hosts
                    .iter()
                    .map(|h| (h.name.clone(), HostEntry::default()))
                    .collect(),
                analysis: None,
                rejoin_refused: BTreeMap::new(),
            }),
            view: Arc::new(watch::Sender::new(None)),
            wake: Arc::new(Notify::new()),
            quiet: Arc::new(watch::Sender::new(false)),
        }
    }

    /// This cluster under new settings: its durable state, its view's
    /// watchers, and the observations of hosts whose settings did not
    /// change are kept; the analysis is made again.
    fn reconfigured(&self, config: &ClusterConfig) -> ClusterEntry {
        let mut old = self.write();
        let hosts = config
            .hosts
            .iter()
            .map(|h| {
                let same = self.config.host(&h.name) == Some(h);
                let kept = same
                    .then(|| old.hosts.remove(&h.name))
                    .flatten()
                    .unwrap_or_default();
                (h.name.clone(), kept)
            })
            .collect();
        ClusterEntry {
            config: config.clone(),
            inner: RwLock::new(ClusterInner {
                durable: old.durable.clone(),
                hosts,
                analysis: None,
                rejoin_refused: std::mem::take(&mut old.rejoin_refused),
            }),
            view: Arc::clone(&self.view),
            wake: Arc::clone(&self.wake),
            quiet: Arc::clone(&self.quiet),
        }
    }

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
    /// Replaced as a whole by a configuration reload; each entry is shared
    /// with whoever holds it at that moment.
    clusters: RwLock<BTreeMap<String, Arc<ClusterEntry>>>,
    fresh: Freshness,
    store: std::sync::Arc<dyn StateStore>,
    /// The state lives on etcd (see [`Topology::new`]).
    shared: bool,
    started: Instant,
}

/// The durable state a cluster starts from: the store's; in embedded
/// mode a new cluster's first epoch is written at once, on etcd the
/// leader writes it ([`Topology::reload_durable`]).
fn initial_durable(
    store: &dyn StateStore,
    shared: bool,
    cluster: &str,
) -> Result<ClusterState, StoreError> {
    Ok(match (shared, store.load(cluster)) {
        (true, Ok(Some(s))) => s,
        (true, _) => ClusterState::default(),
        (false, Ok(Some(s))) => s,
        (false, Ok(None)) => {
            let s = ClusterState {
                epoch: 1,
                ..ClusterState::default()
            };
            store.save(cluster, &s)?;
            s
        }
        (false, Err(e)) => return Err(e),
    })
}

pub(crate) use myha_http::unix_ms;

fn age_ms(at: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(at).as_millis() as u64
}

impl Topology {
    /// `shared`: the state lives on etcd, written by the leader only; it
    /// is read when this manager leads or follows ([`Topology::reload_durable`]),
    /// not here (etcd may be down when the manager starts).
    pub fn new(
        config: &Config,
        store: std::sync::Arc<dyn StateStore>,
        shared: bool,
    ) -> Result<Topology, StoreError> {
        let mut clusters = BTreeMap::new();
        for c in &config.clusters {
            let durable = initial_durable(store.as_ref(), shared, &c.name)?;
            clusters.insert(c.name.clone(), Arc::new(ClusterEntry::new(c, durable)));
        }
        let agent_stale = myha_config::Timings::agent_stale_after(&config.agent);
        let probe_stale = myha_config::Timings::probe_stale_after(&config.manager);
        Ok(Topology {
            clusters: RwLock::new(clusters),
            fresh: Freshness {
                agent_stale_after_ms: agent_stale.as_millis() as u64,
                probe_stale_after_ms: probe_stale.as_millis() as u64,
            },
            store,
            shared,
            started: Instant::now(),
        })
    }

    /// The entry of `cluster`, if configured.
    fn entry(&self, cluster: &str) -> Option<Arc<ClusterEntry>> {
        self.clusters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .cloned()
    }

    /// Take a reloaded configuration's clusters: new ones are added (with
    /// their durable state, if any), gone ones dropped (their durable state
    /// stays in the store), changed ones take their new settings and keep
    /// their durable state, their routing view's watchers and what is
    /// known of the hosts they still have. The caller has checked that no
    /// operation runs on a changed or removed cluster.
    pub fn apply_clusters(&self, wanted: &[ClusterConfig]) -> Result<(), StoreError> {
        // Durable states are read before the map is locked (a store read
        // may be a network call).
        let mut fresh = BTreeMap::new();
        for c in wanted {
            if self.entry(&c.name).is_none() {
                let durable = initial_durable(self.store.as_ref(), self.shared, &c.name)?;
                fresh.insert(c.name.clone(), durable);
            }
        }
        let mut map = self.clusters.write().unwrap_or_else(|e| e.into_inner());
        let mut next = BTreeMap::new();
        for c in wanted {
            let entry = match map.remove(&c.name) {
                Some(old) if old.config == *c => old,
                Some(old) => Arc::new(old.reconfigured(c)),
                None => Arc::new(ClusterEntry::new(
                    c,
                    fresh.remove(&c.name).unwrap_or_default(),
                )),
            };
            next.insert(c.name.clone(), entry);
        }
        *map = next;
        drop(map);
        for c in wanted {
            self.refresh_view(&c.name);
        }
        Ok(())
    }

    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// How long ago the manager started: evidence younger than the
    /// manager itself is incomplete.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The durable state of a cluster.
    pub fn durable(&self, cluster: &str) -> Option<ClusterState> {
        self.entry(cluster).map(|e| e.read().durable.clone())
    }

    /// Read the cluster's shared state again (a follower, every few
    /// ticks; a new leader, before it acts). `init`: a leader that finds
    /// none writes the first epoch.
    pub fn reload_durable(&self, cluster: &str, init: bool) -> Result<(), StoreError> {
        let Some(entry) = self.entry(cluster) else {
            return Ok(());
        };
        let loaded = match self.store.load(cluster)? {
            Some(s) => s,
            None if init => {
                let s = ClusterState {
                    epoch: 1,
                    ..ClusterState::default()
                };
                self.store.save(cluster, &s)?;
                s
            }
            None => return Ok(()),
        };
        let mut inner = entry.write();
        if inner.durable == loaded {
            return Ok(());
        }
        inner.durable = loaded;
        drop(inner);
        self.refresh_view(cluster);
        Ok(())
    }

    /// A follower's read of the shared state: every cluster whose state
    /// changed on the store after `revision` takes it (one read for all
    /// clusters). Returns the revision to pass next time; unchanged for a
    /// store that is not shared.
    pub fn sync_shared(&self, revision: i64) -> Result<i64, StoreError> {
        let Some(changes) = self.store.changed_since(revision)? else {
            return Ok(revision);
        };
        for (cluster, loaded) in changes.states {
            let Some(entry) = self.entry(&cluster) else {
                continue;
            };
            let mut inner = entry.write();
            if inner.durable == loaded {
                continue;
            }
            inner.durable = loaded;
            drop(inner);
            self.refresh_view(&cluster);
        }
        Ok(changes.revision)
    }

    /// Change the durable state and persist it before anyone sees it.
    pub fn update_durable(
        &self,
        cluster: &str,
        change: impl FnOnce(&mut ClusterState),
    ) -> Result<ClusterState, StoreError> {
        let Some(entry) = self.entry(cluster) else {
            return Err(StoreError::Io {
                path: cluster.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "unknown cluster"),
            });
        };
        let mut inner = entry.write();
        let mut next = inner.durable.clone();
        change(&mut next);
        if next == inner.durable {
            return Ok(next);
        }
        self.store.save(cluster, &next)?;
        inner.durable = next.clone();
        drop(inner);
        self.refresh_view(cluster);
        Ok(next)
    }

    pub fn set_analysis(&self, cluster: &str, analysis: myha_core::analysis::Analysis) {
        if let Some(e) = self.entry(cluster) {
            e.write().analysis = Some(analysis);
        }
    }

    /// Record why `host` was not rejoined (`None`: it was, or needs not
    /// be). Returns whether the reason changed, so callers log changes
    /// only.
    pub fn set_rejoin_refused(&self, cluster: &str, host: &str, why: Option<String>) -> bool {
        let Some(e) = self.entry(cluster) else {
            return false;
        };
        let mut inner = e.write();
        match why {
            Some(w) => inner.rejoin_refused.insert(host.to_string(), w.clone()) != Some(w),
            None => inner.rejoin_refused.remove(host).is_some(),
        }
    }

    /// Why servers that should rejoin did not, by server.
    pub fn rejoin_refused(&self, cluster: &str) -> BTreeMap<String, String> {
        self.entry(cluster)
            .map(|e| e.read().rejoin_refused.clone())
            .unwrap_or_default()
    }

    pub fn analysis(&self, cluster: &str) -> Option<myha_core::analysis::Analysis> {
        self.entry(cluster).and_then(|e| e.read().analysis.clone())
    }

    pub fn cluster_config(&self, cluster: &str) -> Option<ClusterConfig> {
        self.entry(cluster).map(|e| e.config.clone())
    }

    /// Take an agent's report; answer with the cluster's epoch, and
    /// whether the report was taken in: a report of the same instance whose
    /// `seq` is not above the last one's is dropped and answered
    /// [`AckStatus::Stale`] (its agent then starts a new instance, which is
    /// taken in from its first report). A `seq` beyond [`MAX_SEQ`] is
    /// refused as invalid, so that no report can put an agent's later
    /// reports out of reach.
    pub fn ingest(&self, report: AgentReport) -> Result<ReportAck, IngestError> {
        let entry = self
            .entry(&report.cluster)
            .ok_or_else(|| IngestError::UnknownCluster(report.cluster.clone()))?;
        let probe_stale_after_ms = self.fresh.probe_stale_after_ms;
        let mut inner = entry.write();
        let host = inner
            .hosts
            .get_mut(&report.host)
            .ok_or_else(|| IngestError::UnknownHost {
                cluster: report.cluster.clone(),
                host: report.host.clone(),
            })?;
        if report.seq > MAX_SEQ {
            return Err(IngestError::SeqOutOfRange {
                host: report.host.clone(),
                seq: report.seq,
            });
        }
        let seq = report.seq;
        // Reports can arrive out of order; keep the newest of an instance.
        let newer = host
            .report
            .as_ref()
            .is_none_or(|(old, _)| old.instance != report.instance || old.seq < report.seq);
        let mut material = false;
        if newer {
            let now = Instant::now();
            // What a failover may lose is what the manager last read
            // itself; an agent's facts count only while it reads nothing.
            if !host.probe_reads(now, probe_stale_after_ms) {
                host.remember(report.mysqld.facts(), now);
            }
            material = host
                .report
                .as_ref()
                .is_none_or(|(old, _)| report.differs_materially(old));
            host.report = Some((report, now));
        }
        let ack = ReportAck {
            epoch: inner.durable.epoch,
            master: inner.durable.master.clone(),
            seq,
            status: if newer {
                AckStatus::Accepted
            } else {
                AckStatus::Stale
            },
            // Set by the API from the coordination.
            leader: true,
        };
        drop(inner);
        // The detector recomputes the snapshot and the routing view: at
        // once on a material change, else at its next tick. Not here, per
        // report: that was most of the manager's work with many clusters.
        if material {
            entry.wake.notify_one();
        }
        Ok(ack)
    }

    /// Record the manager's own probe of `host`.
    pub fn record_probe(&self, cluster: &str, host: &str, probe: ProbeResult) {
        let Some(entry) = self.entry(cluster) else {
            return;
        };
        let material = {
            let mut inner = entry.write();
            let Some(h) = inner.hosts.get_mut(host) else {
                return;
            };
            let now = Instant::now();
            if probe.mysqld.facts().is_some() {
                h.probe_failing_since = None;
            } else if h.probe_failing_since.is_none() {
                // Failing since the last success (or since the first probe).
                h.probe_failing_since = Some(h.probe.as_ref().map_or(now, |(_, at)| *at));
            }
            h.remember(probe.mysqld.facts(), now);
            let material = h
                .probe
                .as_ref()
                .is_none_or(|(old, _)| probe.mysqld.differs_materially(&old.mysqld));
            h.probe = Some((probe, now));
            material
        };
        if material {
            entry.wake.notify_one();
        }
    }

    /// Record whether the detector's look found `cluster` quiet.
    pub fn set_quiet(&self, cluster: &str, quiet: bool) {
        if let Some(e) = self.entry(cluster) {
            e.quiet
                .send_if_modified(|q| std::mem::replace(q, quiet) != quiet);
        }
    }

    /// Follows whether `cluster` is quiet ([`Topology::set_quiet`]); the
    /// probes of the cluster run at once at every change it signals.
    pub fn quiet_watch(&self, cluster: &str) -> Option<watch::Receiver<bool>> {
        self.entry(cluster).map(|e| e.quiet.subscribe())
    }

    /// Have every probe of `cluster` run at once, whatever its pace: for
    /// an operation that needs readings newer than its request.
    pub fn probe_now(&self, cluster: &str) {
        if let Some(e) = self.entry(cluster) {
            e.quiet.send_modify(|_| {});
        }
    }

    /// What the pace of the manager's probe of `host` depends on now
    /// ([`myha_core::detect::probe_due`]), given when that probe last
    /// started; `None` for an unknown host.
    pub fn probe_pace(
        &self,
        cluster: &str,
        host: &str,
        last_started: Option<Instant>,
    ) -> Option<ProbePaceInput> {
        let entry = self.entry(cluster)?;
        let cluster_quiet = *entry.quiet.borrow();
        let inner = entry.read();
        let h = inner.hosts.get(host)?;
        let now = Instant::now();
        let probe_facts = h.probe.as_ref().and_then(|(p, _)| p.mysqld.facts());
        let agent_facts = h.report.as_ref().and_then(|(r, at)| {
            (age_ms(*at, now) <= self.fresh.agent_stale_after_ms)
                .then(|| r.mysqld.facts())
                .flatten()
        });
        Some(ProbePaceInput {
            cluster_quiet,
            master: inner.durable.master.as_deref().is_none_or(|m| m == host),
            probe_read: probe_facts.is_some(),
            agent_reads: agent_facts.is_some(),
            agrees: match (probe_facts, agent_facts) {
                (Some(p), Some(a)) => !a.differs_materially(p),
                _ => false,
            },
            since_probe_ms: last_started.map(|t| age_ms(t, now)),
        })
    }

    /// What wakes the detector of `cluster` (see [`Topology::ingest`]).
    pub fn waker(&self, cluster: &str) -> Option<Arc<Notify>> {
        self.entry(cluster).map(|e| Arc::clone(&e.wake))
    }

    /// The last facts anyone read from `host`, with their age.
    pub fn last_known_facts(&self, cluster: &str, host: &str) -> Option<(ServerFacts, Duration)> {
        let entry = self.entry(cluster)?;
        let inner = entry.read();
        let (f, at) = inner.hosts.get(host)?.last_facts.as_ref()?;
        Some((f.clone(), at.elapsed()))
    }

    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The snapshot of one cluster now.
    pub fn snapshot(&self, cluster: &str) -> Option<ClusterSnapshot> {
        let entry = self.entry(cluster)?;
        let inner = entry.read();
        Some(self.snapshot_of(cluster, &entry, &inner))
    }

    /// The snapshot of `entry` (named `cluster`) from `inner`, its state.
    fn snapshot_of(
        &self,
        cluster: &str,
        entry: &ClusterEntry,
        inner: &ClusterInner,
    ) -> ClusterSnapshot {
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
                    probe_failing_for_ms: e
                        .and_then(|e| e.probe_failing_since)
                        .map(|at| age_ms(at, now)),
                }
            })
            .collect();
        let (snap, problems) =
            build_snapshot_with_problems(cluster, inner.durable.epoch, unix_ms(), &obs, self.fresh);
        // Errant transactions are judged against the last facts known of
        // the others.
        let known: Vec<(&str, &ServerFacts)> = inner
            .hosts
            .iter()
            .filter_map(|(n, h)| h.last_facts.as_ref().map(|(f, _)| (n.as_str(), f)))
            .collect();
        apply_durable(snap, problems, &known, &inner.durable.view())
    }

    /// The routing view of one cluster now (snapshot and durable state
    /// read together).
    pub fn router_view(&self, cluster: &str) -> Option<RouterView> {
        let entry = self.entry(cluster)?;
        let inner = entry.read();
        let snapshot = self.snapshot_of(cluster, &entry, &inner);
        Some(routing_view(
            &entry.config,
            &snapshot,
            &inner.durable.view(),
        ))
    }

    /// Publish the routing view computed from `snapshot` (just built by
    /// the detector) and the durable state now; watchers wake if its
    /// digest changed. Saves the second snapshot [`Topology::refresh_view`]
    /// would build.
    pub fn publish_view(&self, snapshot: &ClusterSnapshot) {
        let Some(entry) = self.entry(&snapshot.cluster) else {
            return;
        };
        publish(&entry, || {
            let durable = entry.read().durable.view();
            // If the state moved on since the snapshot, whoever moved it
            // published its own view.
            (durable.epoch == snapshot.epoch)
                .then(|| routing_view(&entry.config, snapshot, &durable))
        });
    }

    /// Recompute the routing view of `cluster`; its watchers wake if its
    /// digest changed.
    pub fn refresh_view(&self, cluster: &str) {
        if let Some(entry) = self.entry(cluster) {
            publish(&entry, || self.router_view(cluster));
        }
    }

    /// Watch the routing view of `cluster` (see [`Topology::refresh_view`]).
    pub fn watch_view(&self, cluster: &str) -> Option<watch::Receiver<Option<Arc<PublishedView>>>> {
        self.entry(cluster).map(|e| e.view.subscribe())
    }

    pub fn snapshots(&self) -> Vec<ClusterSnapshot> {
        self.cluster_names()
            .iter()
            .filter_map(|c| self.snapshot(c))
            .collect()
    }
}

/// The routing view of a cluster from a snapshot and its durable state.
fn routing_view(
    config: &ClusterConfig,
    snapshot: &ClusterSnapshot,
    durable: &DurableView,
) -> RouterView {
    router_view(
        snapshot,
        durable,
        |n| config.host(n).map_or(1, |h| h.weight),
        config.max_lag.as_secs_f64(),
    )
}

/// Publish the view `make` computes (nothing if it gives none). It is
/// computed while holding the sender, so that two publications never land
/// out of order; watchers wake only if the digest changed.
fn publish(entry: &ClusterEntry, make: impl FnOnce() -> Option<RouterView>) {
    entry.view.send_if_modified(|published| {
        let Some(view) = make() else {
            return false;
        };
        let digest = view.digest();
        let changed = published.as_ref().is_none_or(|p| p.digest != digest);
        *published = Some(Arc::new(PublishedView { digest, view }));
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStore;
    use std::path::Path;

    use crate::testing::CONFIG;
    use myha_core::report::MysqldStatus;

    fn topology(name: &str) -> Topology {
        let env = |_: &str| -> Option<String> { Some("test-token-0123456789".to_owned()) };
        let config = myha_config::load_str(CONFIG, Path::new("/etc/myha/myha.yaml"), &env)
            .unwrap_or_else(|e| panic!("test configuration does not load:\n{e}"));
        let dir = std::env::temp_dir().join(format!("myha-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = std::sync::Arc::new(FileStore::open(&dir).unwrap());
        Topology::new(&config, store, false).unwrap()
    }

    fn up(server_id: u32) -> MysqldStatus {
        let facts: ServerFacts = serde_json::from_value(serde_json::json!({
            "flavor": "mariadb", "server_id": server_id, "version": "10.11.6-MariaDB",
            "hostname": "h", "read_only": true, "super_read_only": false, "log_bin": true,
            "log_slave_updates": true, "binlog_format": "ROW", "gtid_strict": true,
            "gtid_executed": "0-1-5", "gtid_binlog_state": "0-1-5", "gtid_slave_pos": "0-1-5",
            "server_uuid": "", "replication": null, "heartbeat_lag_ms": null,
            "clock_unix_us": 0, "semi_sync_master": false, "semi_sync_slave": false
        }))
        .unwrap();
        MysqldStatus::Up {
            facts: Box::new(facts),
        }
    }

    fn report(host: &str, seq: u64, mysqld: MysqldStatus) -> AgentReport {
        AgentReport {
            cluster: "main".into(),
            host: host.into(),
            agent_version: "test".into(),
            instance: 1,
            seq,
            sampled_at_ms: 0,
            sample_ms: 0,
            mysqld,
            mysqld_process: Some(true),
            master_view: None,
            epoch_seen: 0,
        }
    }

    /// What the probe of a server is paced on comes from what the
    /// topology holds: the detector's quiet flag (watched by the probes),
    /// the master on record, the manager's last probe, the agent's report.
    #[test]
    fn the_probe_pace_reads_the_quiet_flag_the_master_and_both_readings() {
        use myha_core::detect::probe_due;
        let topo = topology("pace");
        assert!(topo.probe_pace("main", "nope", None).is_none());
        assert!(topo.quiet_watch("nope").is_none());
        let mut quiet = topo.quiet_watch("main").unwrap();
        let first = topo.probe_pace("main", "db2", None).unwrap();
        assert_eq!(
            first,
            ProbePaceInput {
                cluster_quiet: false,
                master: true, // no master on record yet
                probe_read: false,
                agent_reads: false,
                agrees: false,
                since_probe_ms: None,
            }
        );
        topo.update_durable("main", |s| s.master = Some("db1".into()))
            .unwrap();
        let probe = ProbeResult {
            mysqld: up(2),
            latency_ms: Some(1.0),
        };
        topo.record_probe("main", "db2", probe);
        topo.ingest(report("db2", 1, up(2))).unwrap();
        // Only the quiet flag is missing: still probed every interval.
        let started = Some(Instant::now());
        let pace = topo.probe_pace("main", "db2", started).unwrap();
        assert!(!pace.cluster_quiet && !pace.master && pace.probe_read && pace.agent_reads);
        assert!(pace.agrees);
        assert!(probe_due(pace, 500));

        topo.set_quiet("main", true);
        assert!(quiet.has_changed().unwrap());
        assert!(*quiet.borrow_and_update());
        let relaxed = topo.probe_pace("main", "db2", started).unwrap();
        assert!(relaxed.cluster_quiet);
        assert!(!probe_due(relaxed, 500), "{relaxed:?}");
        // The master is probed every interval, quiet or not.
        topo.record_probe(
            "main",
            "db1",
            ProbeResult {
                mysqld: up(1),
                latency_ms: Some(1.0),
            },
        );
        topo.ingest(report("db1", 1, up(1))).unwrap();
        assert!(probe_due(
            topo.probe_pace("main", "db1", started).unwrap(),
            500
        ));
        // The same flag again wakes nobody; losing it wakes the probes, and
        // so does an operation that wants fresh readings.
        topo.set_quiet("main", true);
        assert!(!quiet.has_changed().unwrap());
        topo.probe_now("main");
        assert!(quiet.has_changed().unwrap());
        assert!(*quiet.borrow_and_update(), "probe_now leaves the flag");
        topo.set_quiet("main", false);
        assert!(quiet.has_changed().unwrap());
        assert!(!*quiet.borrow_and_update());
        // A replica whose agent reads something else (its SQL thread
        // stopped, read_only off) is probed every interval.
        topo.set_quiet("main", true);
        let MysqldStatus::Up { mut facts } = up(2) else {
            unreachable!()
        };
        facts.read_only = false;
        topo.ingest(report("db2", 2, MysqldStatus::Up { facts }))
            .unwrap();
        let pace = topo.probe_pace("main", "db2", started).unwrap();
        assert!(pace.agent_reads && !pace.agrees);
        assert!(probe_due(pace, 500));
        // A replica whose agent cannot read it is probed every interval.
        topo.set_quiet("main", true);
        let down = MysqldStatus::Down {
            kind: myha_core::report::DownKind::Refused,
            error: "refused".into(),
        };
        topo.ingest(report("db2", 3, down)).unwrap();
        let pace = topo.probe_pace("main", "db2", started).unwrap();
        assert!(!pace.agent_reads);
        assert!(probe_due(pace, 500));
    }

    #[test]
    fn the_routing_view_wakes_watchers_only_when_it_changes() {
        let topo = topology("view");
        assert!(topo.watch_view("nope").is_none());
        let mut rx = topo.watch_view("main").unwrap();
        assert!(rx.borrow_and_update().is_none());
        topo.refresh_view("main");
        assert!(rx.has_changed().unwrap(), "first view published");
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.view, topo.router_view("main").unwrap());
        assert!(first.view.writer.is_none());

        // Nothing changed: no wake-up.
        topo.refresh_view("main");
        assert!(!rx.has_changed().unwrap());
        // A change of durable state that routers see wakes them at once.
        topo.update_durable("main", |s| s.epoch = 2).unwrap();
        assert!(rx.has_changed().unwrap());
        let second = rx.borrow_and_update().clone().unwrap();
        assert_eq!(second.view.epoch, 2);
        assert_ne!(second.digest, first.digest);
        // One they do not see changes nothing.
        topo.update_durable("main", |s| s.semi_sync_wanted = true)
            .unwrap();
        assert!(!rx.has_changed().unwrap());
    }
}
