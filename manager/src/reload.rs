//! Configuration reload without a restart (`SIGHUP`, `POST /v1/reload`):
//! the file is read and checked again; only a valid file takes effect, and
//! only when no operation runs on a cluster it changes or removes. Its
//! clusters and its access list are applied; the other sections take
//! effect at the next restart, and the answer names them.
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use myha_api::requests::ReloadAnswer;
use myha_config::{ClusterConfig, Config, Role};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::operation::Context;
use crate::store::StoreError;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load or does not validate: every error with its
    /// location.
    #[error("{0}\nmyha: reload refused: the running configuration is unchanged")]
    Invalid(String),
    /// An operation runs on a cluster the reload would change or remove.
    #[error(
        "reload refused: {0}; the running configuration is unchanged, try again when it is over"
    )]
    Busy(String),
    /// The new clusters' durable state could not be read.
    #[error("reload refused: {0}; the running configuration is unchanged")]
    Store(#[from] StoreError),
    #[error("reload refused: the manager is stopping")]
    Stopping,
}

/// The configuration in force, and the way to ask for a reload.
#[derive(Debug)]
pub(crate) struct Live {
    config: RwLock<Arc<Config>>,
    requests: mpsc::Sender<Reply>,
}

pub(crate) type Reply = oneshot::Sender<Result<ReloadAnswer, ReloadError>>;

impl Live {
    pub(crate) fn new(config: Config) -> (Live, mpsc::Receiver<Reply>) {
        let (tx, rx) = mpsc::channel(8);
        (
            Live {
                config: RwLock::new(Arc::new(config)),
                requests: tx,
            },
            rx,
        )
    }

    /// The configuration in force now.
    pub(crate) fn get(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// Ask the manager's main loop to reload, and wait for its answer.
    pub(crate) async fn request(&self) -> Result<ReloadAnswer, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .await
            .map_err(|_| ReloadError::Stopping)?;
        rx.await.map_err(|_| ReloadError::Stopping)?
    }
}

/// What a new configuration changes against the one in force (pure).
pub(crate) fn diff(old: &Config, new: &Config) -> ReloadAnswer {
    let before: BTreeMap<&str, &ClusterConfig> =
        old.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let after: BTreeMap<&str, &ClusterConfig> =
        new.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut answer = ReloadAnswer {
        path: new.path.display().to_string(),
        access_changed: old.access != new.access,
        ..ReloadAnswer::default()
    };
    for (name, c) in &after {
        match before.get(name) {
            None => answer.added.push(name.to_string()),
            Some(o) if *o == *c => answer.unchanged.push(name.to_string()),
            Some(_) => answer.changed.push(name.to_string()),
        }
    }
    answer.removed = before
        .keys()
        .filter(|n| !after.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    if old.manager != new.manager {
        answer.restart_needed.push("manager".into());
    }
    if old.agent != new.agent {
        answer.restart_needed.push("agent".into());
    }
    if old.tls != new.tls {
        answer.restart_needed.push("tls".into());
    }
    answer
}

/// The configuration a reload puts in force: the new file's clusters and
/// access list, the running one's other sections.
fn effective(old: &Config, new: Config) -> Config {
    Config {
        clusters: new.clusters,
        access: new.access,
        ..old.clone()
    }
}

/// The detector and probes of one cluster, stopped on their own.
struct ClusterTasks {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// The per-cluster tasks of the manager. A task that ends while its
/// cluster was not stopped is reported on `early` (the manager then exits:
/// never a zombie that answers).
pub(crate) struct Fleet {
    ctx: Arc<Context>,
    clusters: BTreeMap<String, ClusterTasks>,
    early: mpsc::UnboundedSender<String>,
}

impl Fleet {
    pub(crate) fn new(ctx: Arc<Context>) -> (Fleet, mpsc::UnboundedReceiver<String>) {
        let (early, rx) = mpsc::unbounded_channel();
        (
            Fleet {
                ctx,
                clusters: BTreeMap::new(),
                early,
            },
            rx,
        )
    }

    /// Start the detector and the probes of `cluster`.
    pub(crate) fn start(&mut self, cluster: &ClusterConfig) {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let ctx = &self.ctx;
        let detector = crate::detector::run(Arc::clone(ctx), cluster.clone(), stopped.clone());
        self.watch(&mut tasks, &stopped, &cluster.name, "detector", detector);
        for host in &cluster.hosts {
            let probe = crate::probe::run(
                Arc::clone(&ctx.topology),
                cluster.clone(),
                host.clone(),
                ctx.manager.clone(),
                stopped.clone(),
            );
            self.watch(&mut tasks, &stopped, &cluster.name, "probe", probe);
        }
        self.clusters
            .insert(cluster.name.clone(), ClusterTasks { stop, tasks });
    }

    fn watch(
        &self,
        tasks: &mut JoinSet<()>,
        stopped: &watch::Receiver<bool>,
        cluster: &str,
        what: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (early, stopped, cluster) = (self.early.clone(), stopped.clone(), cluster.to_string());
        tasks.spawn(async move {
            let ended = tokio::spawn(task).await;
            if !*stopped.borrow() {
                let why = match ended {
                    Err(e) if e.is_panic() => format!("the {what} task of {cluster} panicked"),
                    Err(e) => format!("the {what} task of {cluster} failed: {e}"),
                    Ok(()) => format!("the {what} task of {cluster} returned"),
                };
                let _ = early.send(why);
            }
        });
    }

    /// Stop the tasks of `cluster` and wait for them (a detector finishes
    /// the action it is in).
    pub(crate) async fn stop(&mut self, cluster: &str) {
        if let Some(mut c) = self.clusters.remove(cluster) {
            let _ = c.stop.send(true);
            while c.tasks.join_next().await.is_some() {}
        }
    }

    /// Stop every cluster's tasks.
    pub(crate) async fn stop_all(&mut self) {
        let names: Vec<String> = self.clusters.keys().cloned().collect();
        for c in self.clusters.values() {
            let _ = c.stop.send(true);
        }
        for name in names {
            self.stop(&name).await;
        }
    }

    /// Read the configuration file again and apply it (see the module).
    pub(crate) async fn reload(&mut self) -> Result<ReloadAnswer, ReloadError> {
        let ctx = Arc::clone(&self.ctx);
        let old = ctx.live.get();
        let path = old.path.clone();
        let new = tokio::task::spawn_blocking(move || {
            myha_config::load_as(&path, &Role::Manager).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ReloadError::Invalid(format!("reading the configuration failed: {e}")))?
        .map_err(ReloadError::Invalid)?;
        let answer = diff(&old, &new);
        let touched: Vec<&String> = answer.changed.iter().chain(&answer.removed).collect();
        for name in &touched {
            if let Some(op) = ctx.topology.durable(name).and_then(|d| d.in_progress) {
                return Err(ReloadError::Busy(format!(
                    "cluster {name} has operation {} in progress ({:?})",
                    op.id, op.phase
                )));
            }
        }
        for name in &touched {
            self.stop(name).await;
        }
        if let Err(e) = ctx.topology.apply_clusters(&new.clusters) {
            // Nothing was applied: the stopped clusters run again as they
            // were.
            for name in &touched {
                if let Some(c) = old.cluster(name) {
                    self.start(c);
                }
            }
            return Err(e.into());
        }
        for name in answer.added.iter().chain(&answer.changed) {
            if let Some(c) = new.cluster(name) {
                self.start(c);
            }
        }
        ctx.live.set(effective(&old, new));
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> Config {
        let env = |_: &str| -> Option<String> { Some("test-token-0123456789".to_owned()) };
        myha_config::load_str(text, Path::new("/etc/myha/myha.yaml"), &env)
            .unwrap_or_else(|e| panic!("test configuration does not load:\n{e}"))
    }

    #[test]
    fn a_diff_names_added_removed_changed_and_restart_only_sections() {
        let base = crate::testing::CONFIG;
        let old = load(base);
        assert_eq!(
            diff(&old, &old),
            ReloadAnswer {
                path: "/etc/myha/myha.yaml".into(),
                unchanged: vec!["main".into()],
                ..ReloadAnswer::default()
            }
        );
        // The same file with the cluster renamed: one added, one removed.
        let renamed = load(&base.replace("main", "orders"));
        let d = diff(&old, &renamed);
        assert_eq!(d.added, vec!["orders".to_string()]);
        assert_eq!(d.removed, vec!["main".to_string()]);
        assert!(d.changed.is_empty() && d.unchanged.is_empty());
        // A changed setting of the cluster.
        let mut changed = old.clone();
        changed.clusters[0].max_lag = std::time::Duration::from_secs(99);
        let d = diff(&old, &changed);
        assert_eq!(d.changed, vec!["main".to_string()]);
        assert!(d.restart_needed.is_empty());
        // A changed password is a change, though no one can print it.
        let mut password = old.clone();
        password.clusters[0].admin.password = myha_config::Secret::new("other");
        assert_eq!(diff(&old, &password).changed, vec!["main".to_string()]);
        // Sections read only at start are named, not applied.
        let mut probe = old.clone();
        probe.manager.probe_interval = std::time::Duration::from_secs(7);
        assert_eq!(
            diff(&old, &probe).restart_needed,
            vec!["manager".to_string()]
        );
        let kept = effective(&old, probe);
        assert_eq!(kept.manager, old.manager);
    }
}
