//! Configuration of myha: one YAML file describing the manager, the agents,
//! the clusters and their hosts.
//!
//! ```no_run
//! let config = myha_config::load(std::path::Path::new("/etc/myha/myha.yaml"))?;
//! for cluster in &config.clusters {
//!     println!("{}: {} hosts", cluster.name, cluster.hosts.len());
//! }
//! # Ok::<(), myha_config::ConfigErrors>(())
//! ```
//!
//! Loading happens in two steps:
//!
//! 1. **Parsing** into file-shaped structs (`raw`), with unknown keys denied.
//!    serde stops at the first syntax or type error, which is reported alone.
//! 2. **Validation** (`validate`), which applies defaults, resolves secrets
//!    and checks every rule, reporting *all* problems at once.
//!
//! Every error names `file:line:column` (see [`ConfigError`]). Secrets are only
//! given by reference (`*_env`, `*_file`), are resolved at load time and held
//! in [`Secret`], which never prints its value. The YAML reference is
//! `docs/config.md`.
#![forbid(unsafe_code)]

mod access;
mod error;
mod model;
mod raw;
mod secret;
mod timings;
mod validate;
pub use validate::is_host_name;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde_saphyr::Spanned;

pub use access::{AccessList, Principal, Scope};
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    defaults, AccessEntry, AccessRole, AgentConfig, ClusterConfig, Config, Coordination,
    Credentials, EtcdConfig, EtcdTls, Flavor, HooksConfig, HostConfig, ManagerConfig,
    MysqlTlsConfig, Relay, Role, RouterConfig, Strategy, TlsConfig, TokenHash, VipConfig, Webhook,
};
pub use secret::Secret;
pub use timings::{TimingKey, Timings};

/// Loads and validates the configuration file at `path` for the manager
/// (see [`load_as`]).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_as(path, &Role::Manager)
}

/// Loads and validates the configuration file at `path` for the process
/// `role`, resolving the secrets that role needs (`*_env` from the process
/// environment, `*_file` from files that only their owner may read).
/// [`load_as`], with the whole explanation an operator reads when it fails:
/// every error with its location, then that nothing was started.
pub fn load_or_explain(path: &Path, role: &Role) -> Result<Config, String> {
    load_as(path, role).map_err(|errors| {
        format!(
            "{errors}\nmyha: configuration {} is invalid; nothing was started",
            path.display()
        )
    })
}

pub fn load_as(path: &Path, role: &Role) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError::whole_file(path, format!("cannot read configuration file: {err}"))
    })?;
    load_str_as(&text, path, &|name| std::env::var(name).ok(), role)
}

/// Parses and validates `text` as if read from `path`, for the manager.
///
/// `path` appears in error messages and anchors relative `*_file` and
/// `state_dir` paths; `env` resolves `*_env` secrets (pass a closure over a
/// map in tests).
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    load_str_as(text, path, env, &Role::Manager)
}

/// [`load_str`] for the process `role`.
pub fn load_str_as(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    role: &Role,
) -> Result<Config, ConfigErrors> {
    let raw: Spanned<raw::RawConfig> =
        serde_saphyr::from_str(text).map_err(|err| ConfigError::from_yaml(path, &err))?;
    validate::validate(raw, path, env, role)
}
