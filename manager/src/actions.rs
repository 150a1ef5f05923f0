//! The steps a failover or switchover executes on servers, each bounded in
//! time. Decisions are taken elsewhere (myha-core); these only act and
//! report what they did.
use std::time::{Duration, Instant};

use myha_config::{ClusterConfig, HostConfig, ManagerConfig};
use myha_core::candidate::{executed_set, received_set};
use myha_core::flavor::{ChangeSource, Flavor, GtidMode, ThreadState};
use myha_core::report::ServerFacts;
use myha_mysql::{collect_facts, Db, DbError, Endpoint, FactsOptions, Timeouts};

/// How long `STOP SLAVE` may take: the IO thread may be stuck connecting
/// to a dead source for up to `slave_net_timeout` (60 s by default).
pub(crate) const STOP_REPLICA_BOUND: Duration = Duration::from_secs(65);

/// The manager's connection to a server, as the cluster's admin user,
/// with the manager's timeouts.
pub(crate) fn admin_db(cluster: &ClusterConfig, host: &HostConfig, cfg: &ManagerConfig) -> Db {
    Db::new(
        Endpoint::of_host(cluster, host),
        Timeouts {
            connect: cfg.connect_timeout,
            query: cfg.query_timeout,
        },
    )
}

/// A connection to one configured server, with the cluster's flavor.
pub(crate) struct Server {
    pub name: String,
    pub db: Db,
    pub flavor: Flavor,
    opts: FactsOptions,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Failed(String),
}

pub(crate) type Result<T> = std::result::Result<T, ActionError>;

impl Server {
    pub fn new(cluster: &ClusterConfig, host: &HostConfig, cfg: &ManagerConfig) -> Server {
        Server {
            name: host.name.clone(),
            db: admin_db(cluster, host, cfg),
            flavor: cluster.flavor,
            opts: FactsOptions::for_cluster(cluster),
        }
    }

    pub async fn facts(&mut self) -> Result<ServerFacts> {
        Ok(collect_facts(&mut self.db, &self.opts).await?)
    }

    async fn exec_all(&mut self, statements: &[String]) -> Result<()> {
        for s in statements {
            self.db.exec(s).await?;
        }
        Ok(())
    }

    /// Fence: read_only ON, client sessions killed; returns how many.
    pub async fn fence(&mut self) -> Result<usize> {
        Ok(myha_mysql::fence(&mut self.db, self.flavor).await?)
    }

    /// read_only OFF (and semi-sync master side on, if asked).
    pub async fn make_writable(&mut self, semi_sync: bool) -> Result<()> {
        if semi_sync {
            self.semi_sync_on().await?;
        }
        let statements = self.flavor.set_read_only(false);
        self.exec_all(&statements).await
    }

    /// Semi-sync master side on, without a fallback timer: a commit waits
    /// for a replica's acknowledgement, even with no replica connected,
    /// until one acknowledges or the manager degrades semi-sync (see
    /// [`Server::semi_sync_off`]). MariaDB only (MySQL: left to its config).
    pub async fn semi_sync_on(&mut self) -> Result<()> {
        if self.flavor == Flavor::Mariadb {
            self.db
                .exec(&format!(
                    "SET GLOBAL rpl_semi_sync_master_timeout = {}",
                    myha_core::report::SEMI_SYNC_NO_FALLBACK_MS
                ))
                .await?;
            self.db
                .exec("SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON")
                .await?;
            self.db
                .exec("SET GLOBAL rpl_semi_sync_master_enabled = ON")
                .await?;
        }
        Ok(())
    }

    /// Semi-sync master side off: commits waiting for an acknowledgement
    /// are released and acknowledged. Only the manager decides this, for
    /// the master of the current epoch, when no replica can acknowledge.
    pub async fn semi_sync_off(&mut self) -> Result<()> {
        if self.flavor == Flavor::Mariadb {
            self.db
                .exec("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
                .await?;
        }
        Ok(())
    }

    /// Wait until the server has executed `gtids` (flavor text).
    pub async fn wait_for_gtids(&mut self, gtids: &str, bound: Duration) -> Result<()> {
        if gtids.is_empty() {
            return Ok(());
        }
        let sql = self.flavor.wait_for_gtid(gtids, bound.as_secs_f64());
        let value = self
            .db
            .query_i64(&sql, bound + Duration::from_secs(2))
            .await?
            .ok_or_else(|| {
                ActionError::Failed(format!(
                    "{}: GTID wait returned NULL (not a replica?)",
                    self.name
                ))
            })?;
        if self.flavor.wait_result_ok(value) {
            Ok(())
        } else {
            Err(ActionError::Failed(format!(
                "{} did not reach {gtids} within {} ms",
                self.name,
                bound.as_millis()
            )))
        }
    }

    /// Make sure the relay log is being applied and wait until everything
    /// received has been executed. Returns the executed position.
    pub async fn apply_relay_log(&mut self, bound: Duration) -> Result<String> {
        let facts = self.facts().await?;
        let Some(repl) = facts.replication.as_ref() else {
            return Ok(facts.gtid_executed);
        };
        if repl.sql_thread != ThreadState::Running {
            self.db.exec(self.flavor.start_replica_sql()).await?;
        }
        let started = Instant::now();
        loop {
            let f = self.facts().await?;
            let (exec, recv) = match (executed_set(&f), received_set(&f)) {
                (Ok(e), Ok(r)) => (e, r),
                (Err(e), _) | (_, Err(e)) => return Err(ActionError::Failed(e.to_string())),
            };
            if recv.is_subset(&exec) {
                return Ok(f.gtid_executed);
            }
            if let Some(r) = f.replication.as_ref().filter(|r| r.last_sql_errno != 0) {
                return Err(ActionError::Failed(format!(
                    "{}: SQL thread error {} while applying its relay log: {}",
                    self.name, r.last_sql_errno, r.last_sql_error
                )));
            }
            if started.elapsed() > bound {
                return Err(ActionError::Failed(format!(
                    "{} still has unapplied relay log after {} ms (executed {}, received {})",
                    self.name,
                    bound.as_millis(),
                    f.gtid_executed,
                    recv
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Transactions open on the server for more than `secs` seconds, as
    /// "thread N: S s" lines (what a switchover would kill).
    pub async fn long_transactions(&mut self, secs: u64) -> Result<Vec<String>> {
        let rows = self
            .db
            .query(&format!(
                "SELECT trx_mysql_thread_id AS thread, TIMESTAMPDIFF(SECOND, trx_started, NOW()) AS age, \
                 COALESCE(LEFT(trx_query, 80), '') AS query FROM information_schema.INNODB_TRX \
                 WHERE trx_started < NOW() - INTERVAL {secs} SECOND"
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let get = |k: &str| r.get(k).cloned().flatten().unwrap_or_default();
                format!(
                    "thread {}: open {} s: {}",
                    get("thread"),
                    get("age"),
                    get("query")
                )
            })
            .collect())
    }

    /// Make a former master a replica of `source`: its replication
    /// position is set deliberately to what it executed (its gtid_slave_pos
    /// is stale from before it was master), then it replicates with GTID.
    pub async fn rejoin_as_replica(
        &mut self,
        source: &HostConfig,
        cluster: &ClusterConfig,
        position: &str,
    ) -> Result<()> {
        self.db
            .query_with(self.flavor.stop_replica(), STOP_REPLICA_BOUND)
            .await?;
        if self.flavor == Flavor::Mariadb {
            let set = format!(
                "SET GLOBAL gtid_slave_pos = {}",
                myha_core::flavor::sql_string_literal(position)
            );
            match self.db.exec(&set).await {
                // ER_MASTER_GTID_POS_CONFLICTS_WITH_BINLOG: under strict
                // mode the position may not be behind this server's own
                // binlog in any domain. The caller checked that its only
                // GTIDs the master lacks are its own heartbeats (written
                // while it was cut off, in a domain no other server
                // writes): the position takes the master's there, set
                // with strict mode off for this one statement.
                Err(e) if e.server_code() == Some(1947) => {
                    self.db.exec("SET GLOBAL gtid_strict_mode = OFF").await?;
                    let res = self.db.exec(&set).await;
                    self.db.exec("SET GLOBAL gtid_strict_mode = ON").await?;
                    res?;
                }
                other => other?,
            }
        }
        self.repoint(source, cluster, GtidMode::SlavePos).await
    }

    /// RESET MASTER: forget this server's own binary logs and GTID history.
    pub async fn reset_binlog(&mut self) -> Result<()> {
        self.db.exec("RESET MASTER").await?;
        Ok(())
    }

    /// STOP SLAVE, both threads (bounded for an IO thread stuck
    /// connecting).
    pub async fn stop_replica(&mut self) -> Result<()> {
        self.db
            .query_with(self.flavor.stop_replica(), STOP_REPLICA_BOUND)
            .await?;
        Ok(())
    }

    /// Stop the IO thread (bounded for a thread stuck connecting).
    pub async fn stop_io_thread(&mut self) -> Result<()> {
        self.db
            .query_with(self.flavor.stop_replica_io(), STOP_REPLICA_BOUND)
            .await?;
        Ok(())
    }

    /// START SLAVE (both threads), for replicas left stopped by an abort.
    pub async fn start_replica(&mut self) -> Result<()> {
        let f = self.facts().await?;
        if f.is_replicating() {
            self.db.exec(self.flavor.start_replica()).await?;
        }
        Ok(())
    }

    /// Stop applying events: the SQL thread only, which is immediate. The
    /// IO thread may be stuck connecting to a dead master for up to
    /// `slave_net_timeout`; events it still fetches are never applied.
    pub async fn stop_applying(&mut self) -> Result<()> {
        self.db.exec(self.flavor.stop_replica_sql()).await?;
        Ok(())
    }

    /// Stop replicating and forget the source (relay logs included): the
    /// end of a promotion, bounded by `bound` for the IO thread to stop.
    pub async fn detach(&mut self, bound: Duration) -> Result<()> {
        self.db
            .query_with(self.flavor.stop_replica(), bound)
            .await?;
        self.db.exec(self.flavor.reset_replica_all()).await?;
        Ok(())
    }

    /// Replicate from `source` with GTID auto-positioning.
    pub async fn repoint(
        &mut self,
        source: &HostConfig,
        cluster: &ClusterConfig,
        mode: GtidMode,
    ) -> Result<()> {
        // STOP SLAVE waits for an IO thread stuck connecting to a dead
        // source (up to slave_net_timeout).
        self.db
            .query_with(self.flavor.stop_replica(), STOP_REPLICA_BOUND)
            .await?;
        let change = self.flavor.change_source(&ChangeSource {
            host: source.address.clone(),
            port: source.port,
            user: cluster.replication.user.clone(),
            password: cluster.replication.password.expose().to_string(),
            gtid_mode: mode,
            connect_retry_secs: 1,
            heartbeat_period_secs: 0.5,
            ssl: cluster
                .mysql_tls
                .as_ref()
                .filter(|t| t.replication)
                .map(|t| t.replication_ca.clone()),
        });
        self.db.exec(&change).await?;
        if self.flavor == Flavor::Mariadb {
            self.db
                .exec("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
                .await?;
        }
        self.db.exec(self.flavor.start_replica()).await?;
        Ok(())
    }

    /// Wait until both replication threads run and the server has executed
    /// `target` (the source's position when repointed).
    pub async fn verify_replicating(&mut self, target: &str, bound: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let f = self.facts().await?;
            let running = f.replication.as_ref().is_some_and(|r| {
                r.io_thread == ThreadState::Running && r.sql_thread == ThreadState::Running
            });
            if running {
                break;
            }
            if let Some(e) = f.last_error() {
                if started.elapsed() > bound / 2 {
                    return Err(ActionError::Failed(format!(
                        "{}: replication not running: {e}",
                        self.name
                    )));
                }
            }
            if started.elapsed() > bound {
                return Err(ActionError::Failed(format!(
                    "{}: replication threads not running after {} ms",
                    self.name,
                    bound.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = bound
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        self.wait_for_gtids(target, left).await
    }
}
