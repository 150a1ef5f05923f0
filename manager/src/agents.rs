//! Requests from the manager to agents: host-local work (VIP, fencing).
use std::time::Duration;

use myha_config::{HostConfig, VipConfig};
use serde_json::json;

pub(crate) struct AgentClient {
    http: reqwest::Client,
    token: String,
}

impl AgentClient {
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
        body: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", host.agent_url());
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", host.name))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{}: {e}", host.name))?;
        if !status.is_success() {
            return Err(format!(
                "{}: agent answered {status}: {}",
                host.name,
                text.trim()
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("{}: unreadable answer: {e}", host.name))
    }

    /// Add or remove the cluster's VIP on `host`: the agent takes address
    /// and interface from its own configuration; `epoch` is the manager's
    /// current one (an agent refuses an add for an epoch older than the
    /// newest it knows).
    pub async fn vip(
        &self,
        host: &HostConfig,
        _vip: &VipConfig,
        op: VipOp,
        epoch: u64,
    ) -> Result<serde_json::Value, String> {
        self.post(host, "/v1/vip", json!({ "op": op, "epoch": epoch }))
            .await
    }

    /// Ask the host's agent to fence its mysqld (read_only, kill sessions).
    pub async fn fence(
        &self,
        host: &HostConfig,
        epoch: u64,
        master: &str,
    ) -> Result<serde_json::Value, String> {
        self.post(
            host,
            "/v1/fence",
            json!({ "epoch": epoch, "master": master }),
        )
        .await
    }
}

/// What the agent is asked to do with the VIP (`op` of `/v1/vip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VipOp {
    Add,
    Remove,
}
