//! Talking to MySQL/MariaDB servers. mysql_async has no timeouts of its
//! own: every connect and every query here runs under `tokio::time::timeout`,
//! and a connection whose call timed out or failed at the I/O level is
//! dropped, never reused. TCP only (`prefer_socket = false`), so that a
//! probe measures what a client sees.
#![forbid(unsafe_code)]

mod facts;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use myha_core::flavor::Row;
use myha_core::report::DownKind;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Value};
use tokio::time::timeout;

pub use facts::{
    collect_facts, facts_batch, fence, heartbeat_lag_query, heartbeat_write, probe_batch,
    replication_grants, FactsOptions,
};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Connect with TLS (the server's certificate checked against a CA).
    pub tls: Option<EndpointTls>,
}

/// TLS of a connection to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointTls {
    /// The CA that signs the server's certificate (PEM).
    pub ca_file: std::path::PathBuf,
    /// The name the certificate must carry (default: the host connected to).
    pub server_name: Option<String>,
}

impl EndpointTls {
    /// From a cluster's `mysql_tls:`.
    pub fn from_config(tls: Option<&myha_config::MysqlTlsConfig>) -> Option<EndpointTls> {
        tls.map(|t| EndpointTls {
            ca_file: t.ca_file.clone(),
            server_name: t.server_name.clone(),
        })
    }
}

impl Endpoint {
    /// The cluster's admin user at `host:port`, with the cluster's
    /// `mysql_tls:` (if any).
    pub fn admin(
        cluster: &myha_config::ClusterConfig,
        host: impl Into<String>,
        port: u16,
    ) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            user: cluster.admin.user.clone(),
            password: cluster.admin.password.expose().to_string(),
            tls: EndpointTls::from_config(cluster.mysql_tls.as_ref()),
        }
    }

    /// The cluster's admin user at a configured host (its address and
    /// port), with the cluster's `mysql_tls:` (if any).
    pub fn of_host(
        cluster: &myha_config::ClusterConfig,
        host: &myha_config::HostConfig,
    ) -> Endpoint {
        Endpoint::admin(cluster, host.address.clone(), host.port)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Bounds on every call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub query: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connection to {addr} refused")]
    Refused { addr: String },
    #[error("{what} to {addr} timed out after {ms} ms")]
    Timeout {
        addr: String,
        what: &'static str,
        ms: u128,
    },
    #[error("server {addr} answered error {code}: {message}")]
    Server {
        addr: String,
        code: u16,
        message: String,
    },
    #[error("I/O error talking to {addr}: {message}")]
    Io { addr: String, message: String },
    #[error("unexpected answer from {addr}: {message}")]
    Protocol { addr: String, message: String },
}

impl DbError {
    /// How a failure to read the server is classified in reports.
    pub fn down_kind(&self) -> DownKind {
        match self {
            DbError::Refused { .. } => DownKind::Refused,
            DbError::Timeout { .. } => DownKind::Timeout,
            DbError::Server { .. } => DownKind::Rejected,
            DbError::Io { .. } | DbError::Protocol { .. } => DownKind::Error,
        }
    }

    /// The server's error code, for server errors.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            DbError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn from_driver(addr: &str, e: mysql_async::Error) -> DbError {
        let addr = addr.to_string();
        match e {
            mysql_async::Error::Server(s) => DbError::Server {
                addr,
                code: s.code,
                message: s.message,
            },
            mysql_async::Error::Io(mysql_async::IoError::Io(io))
                if io.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                DbError::Refused { addr }
            }
            mysql_async::Error::Io(io) => DbError::Io {
                addr,
                message: io.to_string(),
            },
            other => DbError::Protocol {
                addr,
                message: other.to_string(),
            },
        }
    }
}

/// One connection to one server, reconnected lazily after any failure.
pub struct Db {
    endpoint: Endpoint,
    timeouts: Timeouts,
    conn: Option<Conn>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Db {
    /// A handle that connects on first use.
    pub fn new(endpoint: Endpoint, timeouts: Timeouts) -> Db {
        Db {
            endpoint,
            timeouts,
            conn: None,
        }
    }

    /// Connect now.
    pub async fn connect(endpoint: Endpoint, timeouts: Timeouts) -> Result<Db, DbError> {
        let mut db = Db::new(endpoint, timeouts);
        db.ensure().await?;
        Ok(db)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drop the connection; the next call reconnects.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn ensure(&mut self) -> Result<&mut Conn, DbError> {
        if self.conn.is_none() {
            let e = &self.endpoint;
            let opts = OptsBuilder::default()
                .ip_or_hostname(e.host.clone())
                .tcp_port(e.port)
                .user(Some(e.user.clone()))
                .pass(Some(e.password.clone()))
                .prefer_socket(false)
                .tcp_nodelay(true)
                .stmt_cache_size(0)
                .ssl_opts(e.tls.as_ref().map(|t| {
                    mysql_async::SslOpts::default()
                        .with_root_certs(vec![t.ca_file.clone().into()])
                        .with_danger_tls_hostname_override(t.server_name.clone())
                }));
            let addr = e.to_string();
            let conn = match timeout(self.timeouts.connect, Conn::new(opts)).await {
                Ok(Ok(c)) => c,
                Ok(Err(err)) => return Err(DbError::from_driver(&addr, err)),
                Err(_) => {
                    return Err(DbError::Timeout {
                        addr,
                        what: "connect",
                        ms: self.timeouts.connect.as_millis(),
                    })
                }
            };
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| DbError::Protocol {
            addr: self.endpoint.to_string(),
            message: "no connection".into(),
        })
    }

    /// Run a text query and return its rows by column name. Values come
    /// back as text (NULL as `None`).
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        self.query_with(sql, self.timeouts.query).await
    }

    /// Like [`Db::query`] with an explicit bound, for calls that may
    /// legitimately take longer (waiting for a GTID).
    pub async fn query_with(&mut self, sql: &str, bound: Duration) -> Result<Vec<Row>, DbError> {
        let addr = self.endpoint.to_string();
        let conn = self.ensure().await?;
        match timeout(bound, conn.query::<mysql_async::Row, _>(sql)).await {
            Ok(Ok(rows)) => Ok(rows.into_iter().map(to_row).collect()),
            Ok(Err(err)) => Err(self.failed(&addr, err, true)),
            Err(_) => Err(self.timed_out(addr, bound)),
        }
    }

    /// The error of a call the driver failed. The connection is kept only
    /// after a server error the server answered cleanly (`clean`): the
    /// stream may hold an unread answer otherwise.
    fn failed(&mut self, addr: &str, err: mysql_async::Error, clean: bool) -> DbError {
        let err = DbError::from_driver(addr, err);
        if !(clean && matches!(err, DbError::Server { .. })) {
            self.conn = None;
        }
        err
    }

    /// The error of a call that ran past `bound`. The connection's state is
    /// unknown mid-query: it is never reused.
    fn timed_out(&mut self, addr: String, bound: Duration) -> DbError {
        self.conn = None;
        DbError::Timeout {
            addr,
            what: "query",
            ms: bound.as_millis(),
        }
    }

    /// Run `expected` statements in one round trip (`a; b; c`, text
    /// protocol) and return each one's rows, in order. The server runs
    /// none after a failed statement: an error in the first one is that
    /// statement's error and leaves the connection usable, as with
    /// [`Db::query`]. Anything else short of `expected` results (an error
    /// further on, fewer results, `bound` passing) fails the call and drops
    /// the connection, whose stream may hold an unread answer.
    pub async fn query_batch(
        &mut self,
        sql: &str,
        expected: usize,
        bound: Duration,
    ) -> Result<Vec<Vec<Row>>, DbError> {
        let addr = self.endpoint.to_string();
        let conn = self.ensure().await?;
        let run = async {
            let mut sets = Vec::with_capacity(expected);
            let mut result = match conn.query_iter(sql).await {
                Ok(r) => r,
                Err(e) => return (sets, Some(e)),
            };
            while sets.len() < expected {
                match result.collect::<mysql_async::Row>().await {
                    Ok(rows) => sets.push(rows.into_iter().map(to_row).collect::<Vec<_>>()),
                    Err(e) => return (sets, Some(e)),
                }
                if result.is_empty() {
                    break;
                }
            }
            (sets, None)
        };
        let Ok((sets, failed)) = timeout(bound, run).await else {
            return Err(self.timed_out(addr, bound));
        };
        match failed {
            None if sets.len() == expected => Ok(sets),
            None => {
                self.conn = None;
                Err(DbError::Protocol {
                    addr,
                    message: format!(
                        "a batch of {expected} statements answered {} results",
                        sets.len()
                    ),
                })
            }
            Some(err) => Err(self.failed(&addr, err, sets.is_empty())),
        }
    }

    /// The first row, if any.
    pub async fn query_first(&mut self, sql: &str) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql).await?.into_iter().next())
    }

    /// Run a statement, discarding any result.
    pub async fn exec(&mut self, sql: &str) -> Result<(), DbError> {
        self.query(sql).await.map(|_| ())
    }

    /// The first column of the first row as an integer.
    pub async fn query_i64(&mut self, sql: &str, bound: Duration) -> Result<Option<i64>, DbError> {
        let rows = self.query_with(sql, bound).await?;
        let value = rows
            .into_iter()
            .next()
            .and_then(|r| r.into_values().next())
            .flatten();
        match value {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| DbError::Protocol {
                    addr: self.endpoint.to_string(),
                    message: format!("expected an integer from `{sql}`, got {v:?}"),
                }),
        }
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn to_row(row: mysql_async::Row) -> Row {
    let columns = row.columns_ref();
    let mut out = BTreeMap::new();
    for (i, col) in columns.iter().enumerate() {
        let value = row.as_ref(i).and_then(value_text);
        out.insert(col.name_str().into_owned(), value);
    }
    out
}
