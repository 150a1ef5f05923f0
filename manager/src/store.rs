//! Where the manager's durable state lives. One trait, so that the state
//! can later live in etcd for manager HA; today a directory of JSON files,
//! each replaced atomically (write to a temporary file, fsync, rename).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The shared state on etcd could not be read or written.
    #[error("shared state {key}: {source}")]
    Etcd {
        key: String,
        source: crate::coord::EtcdError,
    },
    /// Shared state under `key` is not what myha wrote.
    #[error("shared state {key} is corrupt: {source}")]
    CorruptShared {
        key: String,
        source: serde_json::Error,
    },
    /// The state was written by a newer myha (a downgrade): this one
    /// would not understand all of it, and refuses to act on it.
    #[error("state of cluster {cluster} has schema {found}, newer than this myha's {known}: run the myha version that wrote it (or newer)")]
    NewerSchema {
        cluster: String,
        found: u32,
        known: u32,
    },
}

/// The schema of the durable state this myha writes. 0 (absent) is the
/// state written before schemas were numbered, read as 1. Bump it when a
/// change of [`ClusterState`] cannot be read by an older myha.
pub const STATE_SCHEMA: u32 = 1;

/// `state` as read for `cluster`: refused if a newer myha wrote it.
pub(crate) fn readable(cluster: &str, mut state: ClusterState) -> Result<ClusterState, StoreError> {
    if state.schema > STATE_SCHEMA {
        return Err(StoreError::NewerSchema {
            cluster: cluster.to_string(),
            found: state.schema,
            known: STATE_SCHEMA,
        });
    }
    state.schema = STATE_SCHEMA;
    Ok(state)
}

impl StoreError {
    /// The write was refused because this manager does not lead.
    pub fn not_leader(&self) -> bool {
        matches!(
            self,
            StoreError::Etcd {
                source: crate::coord::EtcdError::NotLeader,
                ..
            }
        )
    }
}

/// Durable per-cluster state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The schema of this state ([`STATE_SCHEMA`] when written by this
    /// myha; absent in states written before it was numbered).
    #[serde(default)]
    pub schema: u32,
    /// Bumped on every change of master; agents enforce it.
    pub epoch: u64,
    /// The master of `epoch`, once known.
    pub master: Option<String>,
    /// The failover or switchover under way, if any: a manager that
    /// restarts finds it here and finishes it instead of starting another.
    #[serde(default)]
    pub in_progress: Option<Operation>,
    /// Unix ms of the last completed failover.
    #[serde(default)]
    pub last_failover_ms: Option<u64>,
    /// No automatic failover before this Unix ms (anti-flapping), unless
    /// an operator acknowledged.
    #[serde(default)]
    pub blocked_until_ms: Option<u64>,
    /// Servers that were master and were failed away from, not rejoined
    /// yet: they must stay read-only.
    #[serde(default)]
    pub needs_rejoin: Vec<String>,
    /// Servers kept out because they executed transactions the master
    /// lacks: server -> the extra GTIDs.
    #[serde(default)]
    pub diverged: std::collections::BTreeMap<String, Vec<String>>,
    /// Semi-sync is wanted on this cluster's master but was degraded to
    /// asynchronous by the manager, and why: no replica could acknowledge.
    /// It comes back on as soon as a replica replicates from the master.
    #[serde(default)]
    pub semi_sync_degraded: Option<String>,
    /// This cluster's masters run semi-sync: set the first time the
    /// manager sees its master with semi-sync on, and kept, so that a
    /// master that comes back without it (a restart reads my.cnf, where it
    /// is off) gets it back.
    #[serde(default)]
    pub semi_sync_wanted: bool,
}

impl ClusterState {
    /// What the pure decisions of `myha_core` read of this state.
    pub fn view(&self) -> myha_core::durable::DurableView {
        myha_core::durable::DurableView {
            epoch: self.epoch,
            master: self.master.clone(),
            in_progress: self.in_progress.is_some(),
            // A failover or switchover publishes its new master as soon as
            // it is writable (before the VIP moves and the replicas are
            // repointed).
            published_master: self
                .in_progress
                .as_ref()
                .filter(|op| op.phase >= Phase::Writable)
                .and_then(|op| op.new_master.clone()),
            last_failover_ms: self.last_failover_ms,
            blocked_until_ms: self.blocked_until_ms,
            needs_rejoin: self.needs_rejoin.clone(),
            diverged: self.diverged.clone(),
            semi_sync_degraded: self.semi_sync_degraded.is_some(),
            semi_sync_wanted: self.semi_sync_wanted,
        }
    }
}

pub use myha_api::journal::{Event, OpKind, Operation, Phase, Step, StepStatus};

pub trait StateStore: Send + Sync + std::fmt::Debug {
    fn load(&self, cluster: &str) -> Result<Option<ClusterState>, StoreError>;
    fn save(&self, cluster: &str, state: &ClusterState) -> Result<(), StoreError>;
    /// Append to the cluster's journal, durably.
    fn append(&self, event: &Event) -> Result<(), StoreError>;
    /// The journal, oldest first.
    fn history(&self, cluster: &str) -> Result<Vec<Event>, StoreError>;
    /// A shared store: every cluster's state written after `revision` (all
    /// of them for 0), by cluster, and the revision to pass next time.
    /// `None` for a store only this manager writes.
    fn changed_since(&self, _revision: i64) -> Result<Option<SharedChanges>, StoreError> {
        Ok(None)
    }
}

/// What [`StateStore::changed_since`] found.
#[derive(Debug, Default)]
pub struct SharedChanges {
    /// The store's revision when read.
    pub revision: i64,
    pub states: Vec<(String, ClusterState)>,
}

#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("cluster-{cluster}.json"))
    }

    fn journal_path(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("journal-{cluster}.jsonl"))
    }
}

impl StateStore for FileStore {
    fn load(&self, cluster: &str) -> Result<Option<ClusterState>, StoreError> {
        let path = self.path(cluster);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::Corrupt { path, source })
                .and_then(|st| readable(cluster, st))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn save(&self, cluster: &str, state: &ClusterState) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.path(cluster);
        let tmp = path.with_extension("json.tmp");
        let io = |source| StoreError::Io {
            path: tmp.clone(),
            source,
        };
        let state = &ClusterState {
            schema: STATE_SCHEMA,
            ..state.clone()
        };
        let bytes = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    fn append(&self, event: &Event) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.journal_path(&event.cluster);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(event).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)?;
        Ok(())
    }

    fn history(&self, cluster: &str) -> Result<Vec<Event>, StoreError> {
        let path = self.journal_path(cluster);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        // A torn last line (crash mid-append) is skipped, not fatal.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Event>(l).ok())
            .collect())
    }
}

/// The durable state on etcd, shared by every manager: each cluster's
/// state under `<prefix>/state/<name>` (one range read finds every state
/// that changed), its journal under `<prefix>/clusters/<name>/journal/`. Reads from any manager; writes only
/// from the leader, each conditioned on its leadership (see `coord`).
#[derive(Debug)]
pub struct EtcdStore {
    etcd: std::sync::Arc<crate::coord::Etcd>,
    /// Tells apart two events journaled in the same millisecond.
    seq: std::sync::atomic::AtomicU64,
    /// This manager, in journal keys (two leaders' events never collide).
    tag: u64,
}

impl EtcdStore {
    pub fn new(etcd: std::sync::Arc<crate::coord::Etcd>, me: &str) -> EtcdStore {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        me.hash(&mut h);
        EtcdStore {
            etcd,
            seq: std::sync::atomic::AtomicU64::new(0),
            tag: h.finish() & 0xffff_ffff,
        }
    }

    fn state_prefix(&self) -> String {
        self.etcd.key("state/")
    }

    fn state_key(&self, cluster: &str) -> String {
        format!("{}{cluster}", self.state_prefix())
    }

    fn journal_prefix(&self, cluster: &str) -> String {
        self.etcd.key(&format!("clusters/{cluster}/journal/"))
    }
}

impl StateStore for EtcdStore {
    fn load(&self, cluster: &str) -> Result<Option<ClusterState>, StoreError> {
        let key = self.state_key(cluster);
        let k = key.clone();
        let got = self
            .etcd
            .blocking(self.etcd.store_bound(), |e| async move { e.get(&k).await })
            .map_err(|source| StoreError::Etcd {
                key: key.clone(),
                source,
            })?;
        got.map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::CorruptShared {
                    key: key.clone(),
                    source,
                })
                .and_then(|st| readable(cluster, st))
        })
        .transpose()
    }

    fn save(&self, cluster: &str, state: &ClusterState) -> Result<(), StoreError> {
        let key = self.state_key(cluster);
        let state = &ClusterState {
            schema: STATE_SCHEMA,
            ..state.clone()
        };
        let bytes = serde_json::to_vec(state).map_err(|source| StoreError::CorruptShared {
            key: key.clone(),
            source,
        })?;
        self.put(key, bytes)
    }

    fn append(&self, event: &Event) -> Result<(), StoreError> {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = format!(
            "{}{:016}-{:08x}-{:010}",
            self.journal_prefix(&event.cluster),
            event.at_ms,
            self.tag,
            seq
        );
        let bytes = serde_json::to_vec(event).map_err(|source| StoreError::CorruptShared {
            key: key.clone(),
            source,
        })?;
        self.put(key, bytes)
    }

    fn changed_since(&self, revision: i64) -> Result<Option<SharedChanges>, StoreError> {
        let prefix = self.state_prefix();
        let p = prefix.clone();
        let (revision, kvs) = self
            .etcd
            .blocking(self.etcd.store_bound(), |e| async move {
                e.changed_under(&p, revision).await
            })
            .map_err(|source| StoreError::Etcd {
                key: prefix.clone(),
                source,
            })?;
        let mut states = Vec::with_capacity(kvs.len());
        for (key, bytes) in kvs {
            let Some(cluster) = key.strip_prefix(&prefix) else {
                continue;
            };
            let state =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::CorruptShared {
                    key: key.clone(),
                    source,
                })?;
            states.push((cluster.to_string(), readable(cluster, state)?));
        }
        Ok(Some(SharedChanges { revision, states }))
    }

    fn history(&self, cluster: &str) -> Result<Vec<Event>, StoreError> {
        let prefix = self.journal_prefix(cluster);
        let p = prefix.clone();
        let values = self
            .etcd
            .blocking(self.etcd.store_bound(), |e| async move {
                e.get_prefix(&p).await
            })
            .map_err(|source| StoreError::Etcd {
                key: prefix.clone(),
                source,
            })?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_slice::<Event>(v).ok())
            .collect())
    }
}

impl EtcdStore {
    /// `key = bytes`, if this manager still leads.
    fn put(&self, key: String, bytes: Vec<u8>) -> Result<(), StoreError> {
        let k = key.clone();
        self.etcd
            .blocking(self.etcd.store_bound(), |e| async move {
                e.put_as_leader(&k, bytes).await
            })
            .map_err(|source| StoreError::Etcd { key, source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let dir = std::env::temp_dir().join(format!("myha-store-{}", std::process::id()));
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.load("c1").unwrap(), None);
        let st = ClusterState {
            epoch: 7,
            master: Some("db2".into()),
            ..ClusterState::default()
        };
        store.save("c1", &st).unwrap();
        let written = ClusterState {
            schema: STATE_SCHEMA,
            ..st.clone()
        };
        assert_eq!(store.load("c1").unwrap(), Some(written));
        let text = std::fs::read_to_string(dir.join("cluster-c1.json")).unwrap();
        assert!(
            text.contains(&format!("\"schema\": {STATE_SCHEMA}")),
            "{text}"
        );
        std::fs::write(dir.join("cluster-bad.json"), b"{not json").unwrap();
        assert!(matches!(store.load("bad"), Err(StoreError::Corrupt { .. })));
        // A state from before schemas were numbered is read; one from a
        // newer myha is refused, naming both schemas.
        std::fs::write(
            dir.join("cluster-old.json"),
            br#"{"epoch": 3, "master": "db1"}"#,
        )
        .unwrap();
        assert_eq!(
            store.load("old").unwrap().map(|s| (s.epoch, s.schema)),
            Some((3, STATE_SCHEMA))
        );
        std::fs::write(
            dir.join("cluster-new.json"),
            format!(r#"{{"schema": {}, "epoch": 3}}"#, STATE_SCHEMA + 1),
        )
        .unwrap();
        let e = store.load("new").unwrap_err();
        assert!(
            matches!(e, StoreError::NewerSchema { found, known, .. } if found == STATE_SCHEMA + 1 && known == STATE_SCHEMA),
            "{e}"
        );
        assert!(e.to_string().contains("newer than this myha"), "{e}");
        let ev = Event {
            at_ms: 1,
            cluster: "c1".into(),
            operation: "f1".into(),
            step: Step::Promote,
            status: StepStatus::Ok,
            detail: "db2".into(),
            duration_ms: Some(3),
        };
        store.append(&ev).unwrap();
        store.append(&ev).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("journal-c1.jsonl"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"torn"))
            .unwrap();
        assert_eq!(store.history("c1").unwrap(), vec![ev.clone(), ev]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
