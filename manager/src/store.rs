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
}

/// Durable per-cluster state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Bumped on every change of master; agents enforce it.
    pub epoch: u64,
    /// The master of `epoch`, once known.
    pub master: Option<String>,
}

pub trait StateStore: Send + Sync + std::fmt::Debug {
    fn load(&self, cluster: &str) -> Result<Option<ClusterState>, StoreError>;
    fn save(&self, cluster: &str, state: &ClusterState) -> Result<(), StoreError>;
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
}

impl StateStore for FileStore {
    fn load(&self, cluster: &str) -> Result<Option<ClusterState>, StoreError> {
        let path = self.path(cluster);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Corrupt { path, source }),
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
        };
        store.save("c1", &st).unwrap();
        assert_eq!(store.load("c1").unwrap(), Some(st));
        std::fs::write(dir.join("cluster-bad.json"), b"{not json").unwrap();
        assert!(matches!(store.load("bad"), Err(StoreError::Corrupt { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
