//! Requests from the manager to agents: host-local work (VIP, fencing).
use std::time::Duration;

use myha_config::{HostConfig, VipConfig};
use serde_json::json;

pub(crate) struct AgentClient {
    http: reqwest::Client,
    token: String,
}

impl AgentClient {
    pub fn new(token: &str, timeout: Duration) -> Result<AgentClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AgentClient {
            http,
            token: token.to_string(),
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

    pub async fn vip(
        &self,
        host: &HostConfig,
        vip: &VipConfig,
        add: bool,
    ) -> Result<serde_json::Value, String> {
        self.post(
            host,
            "/v1/vip",
            json!({
                "op": if add { "add" } else { "remove" },
                "spec": {
                    "address": vip.address,
                    "prefix_len": vip.prefix_len,
                    "interface": vip.interface,
                    "arp_count": vip.arp_count,
                }
            }),
        )
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
