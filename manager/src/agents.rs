//! Requests from the manager to agents: host-local work (VIP, fencing).
use std::time::Duration;

use myha_config::{HostConfig, VipConfig};

/// Why a call to an agent failed. Every message starts with the host's
/// name (the journal shows them as they are).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentCallError {
    /// No answer within the client's timeout.
    #[error("{host}: {source}")]
    Timeout {
        host: String,
        source: reqwest::Error,
    },
    /// The agent could not be reached (connection refused, no route).
    #[error("{host}: {source}")]
    Refused {
        host: String,
        source: reqwest::Error,
    },
    /// Any other failure of the request or of reading its answer.
    #[error("{host}: {source}")]
    Transport {
        host: String,
        source: reqwest::Error,
    },
    /// The agent answered with an error status.
    #[error("{host}: agent answered {status}: {body}")]
    Http {
        host: String,
        status: reqwest::StatusCode,
        /// The answer's body, trimmed.
        body: String,
    },
    /// The agent answered success with a body that is not JSON.
    #[error("{host}: unreadable answer: {source}")]
    Decode {
        host: String,
        source: serde_json::Error,
    },
}

impl AgentCallError {
    fn transport(host: &str, source: reqwest::Error) -> AgentCallError {
        let host = host.to_string();
        if source.is_timeout() {
            AgentCallError::Timeout { host, source }
        } else if source.is_connect() {
            AgentCallError::Refused { host, source }
        } else {
            AgentCallError::Transport { host, source }
        }
    }
}

pub(crate) struct AgentClient {
    http: reqwest::Client,
    token: String,
}

impl AgentClient {
    /// The error stays a `String`: `ManagerError::Client(String)` takes it
    /// (lib.rs).
    pub fn new(config: &myha_config::Config, timeout: Duration) -> Result<AgentClient, String> {
        let http = myha_http::client_for(config, timeout, timeout).map_err(|e| e.to_string())?;
        Ok(AgentClient {
            http,
            token: config.token.expose().to_string(),
        })
    }

    async fn post(
        &self,
        host: &HostConfig,
        path: &str,
        body: impl serde::Serialize,
    ) -> Result<serde_json::Value, AgentCallError> {
        let url = format!("{}{path}", host.agent_url());
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| AgentCallError::transport(&host.name, e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| AgentCallError::transport(&host.name, e))?;
        if !status.is_success() {
            return Err(AgentCallError::Http {
                host: host.name.clone(),
                status,
                body: text.trim().to_string(),
            });
        }
        serde_json::from_str(&text).map_err(|source| AgentCallError::Decode {
            host: host.name.clone(),
            source,
        })
    }

    /// Add or remove the cluster's VIP on `host`: the agent takes address
    /// and interface from its own configuration; `epoch` is the manager's
    /// current one (an agent refuses an add for an epoch older than the
    /// newest it knows).
    pub async fn set_vip(
        &self,
        host: &HostConfig,
        _vip: &VipConfig,
        op: VipOp,
        epoch: u64,
    ) -> Result<serde_json::Value, AgentCallError> {
        self.post(
            host,
            myha_api::paths::VIP,
            myha_api::agent::VipRequest {
                op,
                epoch: Some(epoch),
            },
        )
        .await
    }

    /// Ask the host's agent to fence its mysqld (read_only, kill sessions).
    pub async fn fence(
        &self,
        host: &HostConfig,
        epoch: u64,
        master: &str,
    ) -> Result<serde_json::Value, AgentCallError> {
        self.post(
            host,
            myha_api::paths::FENCE,
            myha_api::agent::FenceRequest {
                epoch,
                master: master.to_string(),
            },
        )
        .await
    }
}

pub use myha_api::agent::VipOp;
