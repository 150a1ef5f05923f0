//! File-shaped ("raw") structs: exactly what the YAML may contain.
//!
//! Every value is wrapped in [`Spanned`] so validation can point at the line and
//! column it came from, and almost every key is optional here, so that a
//! missing required key is reported by validation together with every other
//! problem instead of stopping the parse. Turning these into the public types
//! of [`crate::model`] is the job of [`crate::validate`].

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A key that is recognised only to be rejected (inline secrets). Its value is
/// skipped without being stored, so it can never leak into an error message.
pub(crate) type Rejected = Option<Spanned<IgnoredAny>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub manager: Option<Spanned<RawManager>>,
    pub agent: Option<Spanned<RawAgent>>,
    pub clusters: Option<Spanned<Vec<Spanned<RawCluster>>>>,
    pub hosts: Option<Spanned<Vec<Spanned<RawHost>>>>,
    pub access: Option<Spanned<Vec<Spanned<RawAccess>>>>,
    pub tls: Option<Spanned<RawTls>>,
    pub cli: Option<Spanned<RawCli>>,
}

/// One entry of `access:`: a credential of an operator, a monitor or a
/// router, known to the manager by its hash only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    pub name: Option<Spanned<String>>,
    pub role: Option<Spanned<crate::AccessRole>>,
    pub host: Option<Spanned<String>>,
    pub token_sha256: Option<Spanned<String>>,
    pub token: Rejected,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub client_auth: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCli {
    pub token: Rejected,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMysqlTls {
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub replication: Option<Spanned<bool>>,
    pub replication_ca: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManager {
    pub listen: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    pub coordination: Option<Spanned<RawCoordination>>,
    pub token: Rejected,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub probe_interval: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub query_timeout: Option<Spanned<String>>,
    pub webhooks: Option<Spanned<Vec<Spanned<RawWebhook>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub token: Rejected,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCoordination {
    pub etcd: Option<Spanned<RawEtcd>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEtcd {
    pub endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    pub prefix: Option<Spanned<String>>,
    pub lease_ttl: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub tls: Option<Spanned<RawEtcdTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEtcdTls {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub port: Option<Spanned<i64>>,
    pub interval: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub query_timeout: Option<Spanned<String>>,
    pub report_timeout: Option<Spanned<String>>,
    pub token: Rejected,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: Option<Spanned<String>>,
    pub flavor: Option<Spanned<crate::Flavor>>,
    pub user: Option<Spanned<String>>,
    pub password: Rejected,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub replication_user: Option<Spanned<String>>,
    pub replication_password: Rejected,
    pub replication_password_env: Option<Spanned<String>>,
    pub replication_password_file: Option<Spanned<String>>,
    pub max_lag: Option<Spanned<String>>,
    pub heartbeat_table: Option<Spanned<String>>,
    pub auto_failover: Option<Spanned<bool>>,
    pub auto_rejoin: Option<Spanned<bool>>,
    pub failover_block_period: Option<Spanned<String>>,
    pub master_down_after: Option<Spanned<String>>,
    pub semi_sync_degrade_after: Option<Spanned<String>>,
    pub auto_reinstate: Option<Spanned<bool>>,
    pub vip: Option<Spanned<RawVip>>,
    pub hooks: Option<Spanned<RawHooks>>,
    pub router: Option<Spanned<RawRouter>>,
    pub mysql_tls: Option<Spanned<RawMysqlTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVip {
    pub address: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub arp_count: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHooks {
    pub pre_failover: Option<Spanned<String>>,
    pub post_failover: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<String>>,
    pub pre_switchover: Option<Spanned<String>>,
    pub post_switchover: Option<Spanned<String>>,
    pub master_ip_failover_script: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// `relay:` as written: [`crate::Relay`]'s values, and `kernel`, retired
/// but still read so that it is refused with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawRelay {
    Userspace,
    Kernel,
    Nat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub writer_listen: Option<Spanned<String>>,
    pub reader_listen: Option<Spanned<String>>,
    pub http_listen: Option<Spanned<String>>,
    pub strategy: Option<Spanned<crate::Strategy>>,
    pub fallback_to_master: Option<Spanned<bool>>,
    pub writer_hold_timeout: Option<Spanned<String>>,
    pub busy_poll: Option<Spanned<String>>,
    pub relay: Option<Spanned<RawRelay>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_source: Option<Spanned<i64>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub token: Rejected,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub name: Option<Spanned<String>>,
    pub cluster: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub agent_port: Option<Spanned<i64>>,
    pub candidate_master: Option<Spanned<bool>>,
    pub no_master: Option<Spanned<bool>>,
    pub priority: Option<Spanned<i32>>,
    pub weight: Option<Spanned<u32>>,
    pub token: Rejected,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}
