//! Simulated MariaDB endpoints for `bench/manager-scale`: one TCP listener
//! per simulated host on 127.0.0.1 (a port the OS picks), speaking just
//! enough of the MySQL protocol (handshake, `mysql_native_password`
//! accepted whatever the password, `COM_QUERY` in the text protocol,
//! `COM_PING`, `COM_QUIT`) to answer what the manager's probe asks
//! (`myha_mysql::collect_facts`) the way a real MariaDB master or replica
//! would.
//!
//! The answers are the result sets of the real bed's MariaDB, recorded
//! with the same queries ([`Recording::record`]): the same columns in the
//! same order, the same values, except those that make each host itself
//! (`server_id`, `hostname`, `port`, the clock, the replication source) and
//! the GTID positions, which advance with time: every simulated master
//! commits about 50 transactions a second in domain 0 and writes its
//! heartbeat (domain 1000000000 + server_id) 4 times a second, as its
//! agent would; its replicas are 1 to 3 ms behind ([`position`]). The
//! load generator's agent reports carry the same facts ([`facts_now`]), so
//! the manager's probe and the reports agree as they do on a healthy
//! cluster.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use myha_api::ServerFacts;

/// A result set as text: column names in order, rows of values (`None`:
/// SQL `NULL`).
#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The value of `column` in the first row.
    pub fn first(&self, column: &str) -> Option<String> {
        let i = self.column(column)?;
        self.rows.first()?.get(i).cloned().flatten()
    }
}

/// The queries the manager's probe runs (MariaDB flavor), as
/// `myha_core::flavor` writes them.
pub fn server_variables_query() -> &'static str {
    myha_core::flavor::Flavor::Mariadb.server_variables_query()
}

pub fn gtid_variables_query() -> &'static str {
    myha_core::flavor::Flavor::Mariadb.gtid_variables_query()
}

pub fn replica_status_query() -> &'static str {
    myha_core::flavor::Flavor::Mariadb.show_replica_status()
}

/// The heartbeat-lag query of `myha_mysql::collect_facts` (every row; a
/// replica's lag is its source's).
pub fn heartbeat_query(table: &str) -> String {
    myha_mysql::heartbeat_lag_query(table)
}

/// What mysql_async asks right after connecting.
const SETTINGS_QUERY: &str = "SELECT @@max_allowed_packet,@@wait_timeout";

/// The real bed's answers, recorded from its master and one replica.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// `@@version` of the real server (the handshake announces it).
    pub version: String,
    pub settings: ResultSet,
    pub master_vars: ResultSet,
    pub replica_vars: ResultSet,
    pub master_gtid: ResultSet,
    pub replica_gtid: ResultSet,
    /// The master's `SHOW ALL SLAVES STATUS` (columns, no row).
    pub master_status: ResultSet,
    /// A replica's, one row.
    pub replica_status: ResultSet,
    pub heartbeat: ResultSet,
}

/// Where to read a real server from.
#[derive(Debug, Clone)]
pub struct RealServer {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl RealServer {
    async fn connect(&self) -> Result<mysql_async::Conn, String> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false);
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            mysql_async::Conn::new(opts),
        )
        .await
        .map_err(|_| format!("connect to {}:{} timed out", self.host, self.port))?
        .map_err(|e| format!("connect to {}:{}: {e}", self.host, self.port))
    }
}

async fn record_query(conn: &mut mysql_async::Conn, sql: &str) -> Result<ResultSet, String> {
    let rows: Vec<mysql_async::Row> =
        tokio::time::timeout(std::time::Duration::from_secs(5), conn.query(sql))
            .await
            .map_err(|_| format!("`{sql}` timed out"))?
            .map_err(|e| format!("`{sql}`: {e}"))?;
    let mut set = ResultSet::default();
    // A result with no row still names its columns; mysql_async hands
    // them over with the rows only, so an empty result is asked again
    // through a row of its own below when needed.
    for row in rows {
        if set.columns.is_empty() {
            set.columns = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
        }
        let values = (0..row.len())
            .map(|i| row.as_ref(i).and_then(value_text))
            .collect();
        set.rows.push(values);
    }
    Ok(set)
}

fn value_text(v: &mysql_async::Value) -> Option<String> {
    match v {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

impl Recording {
    /// Run the probe's queries on a real master and one of its replicas
    /// (whose source is `master_server_id`) and keep their answers.
    pub async fn record(
        master: &RealServer,
        replica: &RealServer,
        heartbeat_table: &str,
        master_server_id: u32,
    ) -> Result<Recording, String> {
        let mut m = master.connect().await?;
        let mut r = replica.connect().await?;
        let master_vars = record_query(&mut m, server_variables_query()).await?;
        let version = master_vars
            .first("version")
            .ok_or("the master's variables name no version")?;
        let mut replica_status = record_query(&mut r, replica_status_query()).await?;
        if replica_status.rows.len() != 1 {
            return Err(format!(
                "the replica shows {} replication connections, expected 1",
                replica_status.rows.len()
            ));
        }
        let mut master_status = record_query(&mut m, replica_status_query()).await?;
        if !master_status.rows.is_empty() {
            return Err("the master replicates from something".into());
        }
        // Same columns, no row.
        master_status.columns = replica_status.columns.clone();
        replica_status.rows.truncate(1);
        let rec = Recording {
            version,
            settings: record_query(&mut m, SETTINGS_QUERY).await?,
            replica_vars: record_query(&mut r, server_variables_query()).await?,
            master_vars,
            master_gtid: record_query(&mut m, gtid_variables_query()).await?,
            replica_gtid: record_query(&mut r, gtid_variables_query()).await?,
            master_status,
            replica_status,
            heartbeat: record_query(&mut r, &heartbeat_query(heartbeat_table)).await?,
        };
        let _ = m.disconnect().await;
        let _ = r.disconnect().await;
        for (what, set) in [
            ("settings", &rec.settings),
            ("master variables", &rec.master_vars),
            ("replica variables", &rec.replica_vars),
            ("master GTIDs", &rec.master_gtid),
            ("replica GTIDs", &rec.replica_gtid),
        ] {
            if set.rows.len() != 1 {
                return Err(format!("{what}: {} rows, expected 1", set.rows.len()));
            }
        }
        // One row per server that has been a master: the source's is there.
        let source = master_server_id.to_string();
        if !rec.heartbeat.column("server_id").is_some_and(|i| {
            rec.heartbeat
                .rows
                .iter()
                .any(|r| r.get(i).cloned().flatten().as_deref() == Some(source.as_str()))
        }) {
            return Err(format!(
                "heartbeat: no row of the master (server_id {source})"
            ));
        }
        Ok(rec)
    }
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct SimHost {
    /// Index of its cluster (0-based).
    pub cluster: usize,
    pub name: String,
    pub server_id: u32,
    pub port: u16,
    /// A replica's master: its port and server_id.
    pub master: Option<(u16, u32)>,
}

impl SimHost {
    pub fn is_replica(&self) -> bool {
        self.master.is_some()
    }

    /// The server_id of its cluster's master.
    pub fn master_server_id(&self) -> u32 {
        self.master.map_or(self.server_id, |(_, id)| id)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// When the simulated masters started committing.
fn origin_ms() -> u64 {
    static ORIGIN: OnceLock<u64> = OnceLock::new();
    *ORIGIN.get_or_init(unix_ms)
}

/// The GTID position of cluster `cluster` (master `master_id`) at `at_ms`:
/// domain 0 at about 50 transactions a second, the heartbeat domain at 4.
pub fn position(cluster: usize, master_id: u32, at_ms: u64) -> String {
    let t = at_ms.saturating_sub(origin_ms());
    let app = 1000 + cluster as u64 * 7 + t / 20;
    let hb = 1 + t / 250;
    let domain = myha_core::report::heartbeat_domain(master_id);
    format!("0-{master_id}-{app},{domain}-{master_id}-{hb}")
}

/// A host's position now: replicas 3 ms behind their master.
fn host_position(h: &SimHost, now: u64, behind: u64) -> String {
    let lag = if h.is_replica() { behind } else { 0 };
    position(h.cluster, h.master_server_id(), now.saturating_sub(lag))
}

/// Heartbeat lag of a replica in microseconds: the heartbeat is written
/// every 250 ms, so 1 ms of replication plus up to 250 ms since the last.
fn heartbeat_lag_us(now: u64) -> u64 {
    1_000 + (now % 250) * 1_000
}

/// The facts a simulated host's agent reports now: `template` (what
/// `collect_facts` read from a simulated host of the same role) made
/// this host's, at this instant.
pub fn facts_now(h: &SimHost, template: &ServerFacts, now: u64) -> ServerFacts {
    let mut f = template.clone();
    f.server_id = h.server_id;
    f.hostname = h.name.clone();
    let pos = host_position(h, now, 3);
    f.gtid_executed = pos.clone();
    f.gtid_binlog_state = pos.clone();
    f.clock_unix_us = (now * 1000) as i64;
    if let Some((port, id)) = h.master {
        f.gtid_slave_pos = pos.clone();
        f.heartbeat_lag_ms = Some(heartbeat_lag_us(now) / 1000);
        if let Some(r) = f.replication.as_mut() {
            r.source_host = "127.0.0.1".into();
            r.source_port = port;
            r.source_server_id = Some(id);
            r.retrieved_gtids = host_position(h, now, 1);
            r.executed_gtids = Some(pos);
            r.seconds_behind_source = Some(0);
        }
    }
    f
}

/// Counters of the whole fleet.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub connections: AtomicU64,
    pub queries: AtomicU64,
    /// Queries answered with an OK and nothing else because they are not
    /// the probe's (each text, cut to 80 characters, with its count).
    pub other: Mutex<BTreeMap<String, u64>>,
}

impl FleetStats {
    pub fn other_queries(&self) -> BTreeMap<String, u64> {
        self.other
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

/// The running simulated hosts; dropping it closes every listener and
/// connection.
pub struct Fleet {
    pub hosts: Vec<SimHost>,
    pub stats: Arc<FleetStats>,
    tasks: tokio::task::JoinSet<()>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Fleet {
    /// Start `clusters` simulated clusters of 3 hosts (`{prefix}{n:04}-db{1,2,3}`,
    /// db1 the master, server_ids 1-3). Call within a tokio runtime.
    pub async fn start(rec: Recording, clusters: usize, prefix: &str) -> std::io::Result<Fleet> {
        let encoded = Arc::new(Encoded::new(rec));
        let stats = Arc::new(FleetStats::default());
        let mut tasks = tokio::task::JoinSet::new();
        let mut hosts = Vec::with_capacity(clusters * 3);
        let conn_ids = Arc::new(AtomicU32::new(100));
        for c in 0..clusters {
            let mut listeners = Vec::new();
            for _ in 0..3 {
                let l = TcpListener::bind("127.0.0.1:0").await?;
                let port = l.local_addr()?.port();
                listeners.push((l, port));
            }
            let master_port = listeners[0].1;
            for (i, (l, port)) in listeners.into_iter().enumerate() {
                let host = SimHost {
                    cluster: c,
                    name: format!("{prefix}{:04}-db{}", c + 1, i + 1),
                    server_id: i as u32 + 1,
                    port,
                    master: (i > 0).then_some((master_port, 1)),
                };
                hosts.push(host.clone());
                let (host, encoded, stats, ids) = (
                    Arc::new(host),
                    Arc::clone(&encoded),
                    Arc::clone(&stats),
                    Arc::clone(&conn_ids),
                );
                tasks.spawn(async move {
                    let mut sessions = tokio::task::JoinSet::new();
                    loop {
                        let sock = match l.accept().await {
                            Ok((sock, _)) => sock,
                            Err(_) => {
                                // Out of descriptors, say: not a busy loop.
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        stats.connections.fetch_add(1, Ordering::Relaxed);
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        let (host, encoded, stats) =
                            (Arc::clone(&host), Arc::clone(&encoded), Arc::clone(&stats));
                        sessions.spawn(async move {
                            let _ = session(sock, &host, &encoded, &stats, id).await;
                        });
                        // Reap the finished ones.
                        while sessions.try_join_next().is_some() {}
                    }
                });
            }
        }
        Ok(Fleet {
            hosts,
            stats,
            tasks,
        })
    }

    /// The hosts of the first `n` clusters.
    pub fn cluster_hosts(&self, n: usize) -> &[SimHost] {
        &self.hosts[..(n * 3).min(self.hosts.len())]
    }
}

// ---- the protocol ----

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_FOUND_ROWS: u32 = 2;
const CLIENT_LONG_FLAG: u32 = 4;
const CLIENT_CONNECT_WITH_DB: u32 = 8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_STATEMENTS: u32 = 0x1_0000;
const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const CLIENT_CONNECT_ATTRS: u32 = 0x10_0000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
/// What the simulated server offers: no TLS, no compression, classic EOF
/// packets. `CLIENT_LONG_PASSWORD` set: a MariaDB client then uses no
/// MariaDB extended capability.
const CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC;
const STATUS_AUTOCOMMIT: u16 = 2;
const SERVER_MORE_RESULTS_EXISTS: u16 = 8;
/// utf8mb4_general_ci
const CHARSET: u8 = 45;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_RESET_CONNECTION: u8 = 0x1f;

fn lenenc_int(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if v < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v < 1 << 24 {
        out.push(0xfd);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Append one packet (`payload` under 16 MiB) with sequence id `*seq`.
fn packet(out: &mut Vec<u8>, seq: &mut u8, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.push(*seq);
    *seq = seq.wrapping_add(1);
    out.extend_from_slice(payload);
}

fn ok_payload(more: bool) -> Vec<u8> {
    let mut p = vec![0x00, 0, 0];
    let status = if more {
        STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS
    } else {
        STATUS_AUTOCOMMIT
    };
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p
}

/// `more`: another result set of the same batch follows.
fn eof_payload(more: bool) -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(&0u16.to_le_bytes());
    let status = if more {
        STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS
    } else {
        STATUS_AUTOCOMMIT
    };
    p.extend_from_slice(&status.to_le_bytes());
    p
}

fn err_payload(code: u16, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(b"#HY000");
    p.extend_from_slice(message.as_bytes());
    p
}

/// The column count and the column definitions, as packet payloads (the
/// sequence ids depend on where the set falls in a batch): the same for
/// every answer to one query.
fn encode_columns(columns: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = Vec::new();
    lenenc_int(&mut p, columns.len() as u64);
    out.push(p);
    for c in columns {
        let mut p = Vec::new();
        lenenc_str(&mut p, b"def");
        lenenc_str(&mut p, b"");
        lenenc_str(&mut p, b"");
        lenenc_str(&mut p, b"");
        lenenc_str(&mut p, c.as_bytes());
        lenenc_str(&mut p, c.as_bytes());
        p.push(0x0c);
        p.extend_from_slice(&u16::from(CHARSET).to_le_bytes());
        p.extend_from_slice(&1024u32.to_le_bytes());
        // MYSQL_TYPE_VAR_STRING: the text protocol carries every value as
        // text whatever its type.
        p.push(0xfd);
        p.extend_from_slice(&0u16.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&[0, 0]);
        out.push(p);
    }
    out
}

/// A recorded result set, ready to answer: its column block encoded once,
/// its first row kept for the values that stay.
struct Canned {
    columns: Vec<String>,
    head: Vec<Vec<u8>>,
    row: Vec<Option<String>>,
}

impl Canned {
    fn new(set: &ResultSet) -> Canned {
        Canned {
            columns: set.columns.clone(),
            head: encode_columns(&set.columns),
            row: set.rows.first().cloned().unwrap_or_default(),
        }
    }

    /// Append the answer: the recorded row with `patch` applied by column
    /// name (no row at all with `rows == false`); `more`: another result
    /// set of the batch follows.
    fn answer(
        &self,
        out: &mut Vec<u8>,
        seq: &mut u8,
        more: bool,
        rows: bool,
        patch: &dyn Fn(&str) -> Option<String>,
    ) {
        for p in &self.head {
            packet(out, seq, p);
        }
        packet(out, seq, &eof_payload(false));
        if rows {
            let mut p = Vec::with_capacity(512);
            for (c, v) in self.columns.iter().zip(&self.row) {
                match patch(c).or_else(|| v.clone()) {
                    Some(v) => lenenc_str(&mut p, v.as_bytes()),
                    None => p.push(0xfb),
                }
            }
            packet(out, seq, &p);
        }
        packet(out, seq, &eof_payload(more));
    }
}

struct Encoded {
    version: String,
    settings: Canned,
    master_vars: Canned,
    replica_vars: Canned,
    master_gtid: Canned,
    replica_gtid: Canned,
    status: Canned,
    heartbeat: Canned,
    /// The master's `gtid_slave_pos` as recorded (empty on a server that
    /// never replicated).
    master_slave_pos_empty: bool,
}

impl Encoded {
    fn new(rec: Recording) -> Encoded {
        Encoded {
            version: rec.version.clone(),
            settings: Canned::new(&rec.settings),
            master_vars: Canned::new(&rec.master_vars),
            replica_vars: Canned::new(&rec.replica_vars),
            master_gtid: Canned::new(&rec.master_gtid),
            replica_gtid: Canned::new(&rec.replica_gtid),
            status: Canned::new(&rec.replica_status),
            heartbeat: Canned::new(&rec.heartbeat),
            master_slave_pos_empty: rec
                .master_gtid
                .first("gtid_slave_pos")
                .is_none_or(|s| s.is_empty()),
        }
    }
}

async fn read_packet<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<u8> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(head[3])
}

fn handshake(version: &str, conn_id: u32) -> Vec<u8> {
    let mut p = vec![10u8];
    // MariaDB announces itself behind the 5.5.5- prefix.
    p.extend_from_slice(format!("5.5.5-{version}").as_bytes());
    p.push(0);
    p.extend_from_slice(&conn_id.to_le_bytes());
    p.extend_from_slice(b"abcdefgh");
    p.push(0);
    p.extend_from_slice(&((CAPABILITIES & 0xffff) as u16).to_le_bytes());
    p.push(CHARSET);
    p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((CAPABILITIES >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0u8; 10]);
    p.extend_from_slice(b"ijklmnopqrst");
    p.push(0);
    p.extend_from_slice(b"mysql_native_password");
    p.push(0);
    p
}

async fn session(
    sock: TcpStream,
    host: &SimHost,
    enc: &Encoded,
    stats: &FleetStats,
    conn_id: u32,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let mut out = Vec::with_capacity(4096);
    let mut seq = 0u8;
    packet(&mut out, &mut seq, &handshake(&enc.version, conn_id));
    wr.write_all(&out).await?;
    let mut buf = Vec::with_capacity(1024);
    // The handshake response: any credentials are accepted.
    let seq = read_packet(&mut rd, &mut buf).await?;
    out.clear();
    let mut seq = seq.wrapping_add(1);
    packet(&mut out, &mut seq, &ok_payload(false));
    wr.write_all(&out).await?;
    loop {
        read_packet(&mut rd, &mut buf).await?;
        out.clear();
        let mut seq = 1u8;
        match buf.first().copied() {
            Some(COM_QUIT) | None => return Ok(()),
            Some(COM_QUERY) => {
                stats.queries.fetch_add(1, Ordering::Relaxed);
                let sql = String::from_utf8_lossy(&buf[1..]);
                answer(host, enc, stats, sql.trim(), &mut out);
            }
            Some(COM_PING | COM_INIT_DB | COM_RESET_CONNECTION) => {
                packet(&mut out, &mut seq, &ok_payload(false))
            }
            Some(other) => packet(
                &mut out,
                &mut seq,
                &err_payload(1047, &format!("unknown command {other}")),
            ),
        }
        wr.write_all(&out).await?;
    }
}

/// Answer a query, or a batch of them (`a; b; c`: one result set each,
/// as a server with CLIENT_MULTI_STATEMENTS does).
fn answer(host: &SimHost, enc: &Encoded, stats: &FleetStats, sql: &str, out: &mut Vec<u8>) {
    let statements: Vec<&str> = sql
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut seq = 1u8;
    let last = statements.len().saturating_sub(1);
    if statements.is_empty() {
        packet(out, &mut seq, &ok_payload(false));
    }
    for (i, one) in statements.into_iter().enumerate() {
        answer_one(host, enc, stats, one, out, &mut seq, i < last);
    }
}

fn answer_one(
    host: &SimHost,
    enc: &Encoded,
    stats: &FleetStats,
    sql: &str,
    out: &mut Vec<u8>,
    seq: &mut u8,
    more: bool,
) {
    let now = unix_ms();
    let replica = host.is_replica();
    if sql.starts_with("SELECT @@max_allowed_packet") {
        enc.settings.answer(out, seq, more, true, &|_| None);
    } else if sql == server_variables_query() {
        let vars = if replica {
            &enc.replica_vars
        } else {
            &enc.master_vars
        };
        vars.answer(out, seq, more, true, &|c| match c {
            "server_id" => Some(host.server_id.to_string()),
            "hostname" => Some(host.name.clone()),
            "port" => Some(host.port.to_string()),
            "now_us" => Some((now * 1000).to_string()),
            _ => None,
        });
    } else if sql == gtid_variables_query() {
        let pos = host_position(host, now, 3);
        let (set, slave_pos) = if replica {
            (&enc.replica_gtid, pos.clone())
        } else if enc.master_slave_pos_empty {
            (&enc.master_gtid, String::new())
        } else {
            (&enc.master_gtid, pos.clone())
        };
        set.answer(out, seq, more, true, &|c| match c {
            "gtid_binlog_pos" | "gtid_binlog_state" | "gtid_current_pos" => Some(pos.clone()),
            "gtid_slave_pos" => Some(slave_pos.clone()),
            _ => None,
        });
    } else if sql == replica_status_query() {
        let (port, id) = host.master.unwrap_or((0, 0));
        enc.status.answer(out, seq, more, replica, &|c| match c {
            "Master_Host" => Some("127.0.0.1".into()),
            "Master_Port" => Some(port.to_string()),
            "Master_Server_Id" => Some(id.to_string()),
            "Gtid_IO_Pos" => Some(host_position(host, now, 1)),
            "Gtid_Slave_Pos" => Some(host_position(host, now, 3)),
            "Seconds_Behind_Master" => Some("0".into()),
            _ => None,
        });
    } else if sql
        .starts_with("SELECT server_id, TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) AS lag_us")
    {
        let source = host.master_server_id();
        enc.heartbeat.answer(out, seq, more, true, &|c| match c {
            "server_id" => Some(source.to_string()),
            "lag_us" => Some(heartbeat_lag_us(now).to_string()),
            _ => None,
        });
    } else {
        let key: String = sql.chars().take(80).collect();
        if let Ok(mut m) = stats.other.lock() {
            *m.entry(key).or_default() += 1;
        }
        packet(out, seq, &ok_payload(more));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cols: &[&str], row: &[Option<&str>]) -> ResultSet {
        ResultSet {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: vec![row.iter().map(|v| v.map(str::to_string)).collect()],
        }
    }

    /// A recording shaped like MariaDB 10.11's answers (a few columns of
    /// each), enough for `collect_facts`.
    fn recording() -> Recording {
        let vars_cols = [
            "server_id",
            "server_uuid",
            "version",
            "hostname",
            "port",
            "read_only",
            "log_bin",
            "log_slave_updates",
            "binlog_format",
            "gtid_strict",
            "semi_sync_master",
            "semi_sync_slave",
            "semi_sync_timeout_ms",
            "skip_name_resolve",
            "now_us",
        ];
        let vars = |ro: &str| {
            set(
                &vars_cols,
                &[
                    Some("1"),
                    None,
                    Some("10.11.6-MariaDB-0+deb12u1-log"),
                    Some("db1"),
                    Some("3306"),
                    Some(ro),
                    Some("1"),
                    Some("1"),
                    Some("ROW"),
                    Some("1"),
                    Some("1"),
                    Some("1"),
                    Some("4294967295"),
                    Some("1"),
                    Some("0"),
                ],
            )
        };
        let gtid_cols = [
            "gtid_binlog_pos",
            "gtid_binlog_state",
            "gtid_current_pos",
            "gtid_slave_pos",
        ];
        let gtid = set(
            &gtid_cols,
            &[Some("0-1-5"), Some("0-1-5"), Some("0-1-5"), Some("")],
        );
        let status_cols = [
            "Connection_name",
            "Slave_SQL_State",
            "Slave_IO_State",
            "Master_Host",
            "Master_User",
            "Master_Port",
            "Master_Log_File",
            "Read_Master_Log_Pos",
            "Relay_Master_Log_File",
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Replicate_Do_DB",
            "Replicate_Ignore_DB",
            "Replicate_Do_Table",
            "Replicate_Ignore_Table",
            "Replicate_Wild_Do_Table",
            "Replicate_Wild_Ignore_Table",
            "Last_IO_Errno",
            "Last_IO_Error",
            "Last_SQL_Errno",
            "Last_SQL_Error",
            "Exec_Master_Log_Pos",
            "Seconds_Behind_Master",
            "Replicate_Ignore_Server_Ids",
            "Master_Server_Id",
            "Using_Gtid",
            "Gtid_IO_Pos",
            "Relay_Log_Space",
            "SQL_Delay",
            "Slave_SQL_Running_State",
            "Replicate_Do_Domain_Ids",
            "Replicate_Ignore_Domain_Ids",
            "Gtid_Slave_Pos",
        ];
        let status_row: Vec<Option<&str>> = status_cols
            .iter()
            .map(|c| match *c {
                "Connection_name" => Some(""),
                "Slave_IO_Running" | "Slave_SQL_Running" => Some("Yes"),
                "Using_Gtid" => Some("Slave_Pos"),
                "Master_User" => Some("repl"),
                "Master_Log_File" | "Relay_Master_Log_File" => Some("mysql-bin.000001"),
                "Read_Master_Log_Pos"
                | "Exec_Master_Log_Pos"
                | "Last_IO_Errno"
                | "Last_SQL_Errno"
                | "Master_Port"
                | "Master_Server_Id"
                | "Seconds_Behind_Master"
                | "Relay_Log_Space"
                | "SQL_Delay" => Some("0"),
                _ => Some(""),
            })
            .collect();
        let replica_status = set(&status_cols, &status_row);
        Recording {
            version: "10.11.6-MariaDB-0+deb12u1-log".into(),
            settings: set(
                &["@@max_allowed_packet", "@@wait_timeout"],
                &[Some("16777216"), Some("28800")],
            ),
            master_vars: vars("0"),
            replica_vars: vars("1"),
            master_gtid: gtid.clone(),
            replica_gtid: gtid,
            master_status: ResultSet {
                columns: replica_status.columns.clone(),
                rows: Vec::new(),
            },
            replica_status,
            heartbeat: set(&["server_id", "lag_us"], &[Some("1"), Some("1000")]),
        }
    }

    #[tokio::test]
    async fn the_probe_reads_a_simulated_master_and_replica() {
        let fleet = Fleet::start(recording(), 1, "t")
            .await
            .unwrap_or_else(|e| panic!("fleet: {e}"));
        let opts = myha_mysql::FactsOptions {
            flavor: myha_core::flavor::Flavor::Mariadb,
            heartbeat_table: "myha.heartbeat".into(),
        };
        let mut facts = Vec::new();
        for h in &fleet.hosts {
            let mut db = myha_mysql::Db::new(
                myha_mysql::Endpoint {
                    host: "127.0.0.1".into(),
                    port: h.port,
                    user: "myha".into(),
                    password: "pw".into(),
                    tls: None,
                },
                myha_mysql::Timeouts {
                    connect: std::time::Duration::from_secs(2),
                    query: std::time::Duration::from_secs(2),
                },
            );
            // Twice: the second on the same connection.
            for _ in 0..2 {
                let f = myha_mysql::collect_facts(&mut db, &opts)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", h.name));
                facts.push((h.clone(), f));
            }
        }
        let (m, master) = &facts[0];
        assert!(!master.read_only && master.replication.is_none());
        assert_eq!(master.hostname, m.name);
        assert!(master.gtid_executed.starts_with("0-1-"));
        let (r, replica) = &facts[2];
        assert_eq!(replica.server_id, 2);
        let repl = replica
            .replication
            .as_ref()
            .unwrap_or_else(|| panic!("replica without replication"));
        assert_eq!(repl.source_port, m.port);
        assert_eq!(repl.source_server_id, Some(1));
        assert!(
            replica.read_only && replica.heartbeat_lag_ms.is_some(),
            "{replica:?} {:?}",
            fleet.stats.other_queries()
        );
        // The report's facts have the probe's shape.
        let now = unix_ms();
        let built = facts_now(r, replica, now);
        assert_eq!(
            built.replication.as_ref().map(|x| x.source_port),
            Some(m.port)
        );
        assert_eq!(built.server_id, 2);
        assert!(fleet.stats.other_queries().is_empty());
    }
}
