//! The CLI's HTTP client for the manager's API.
use std::time::Duration;

use anyhow::{bail, Context};
use myha_config::Config;
use serde::de::DeserializeOwned;

pub struct ManagerClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ManagerClient {
    pub fn new(config: &Config) -> anyhow::Result<ManagerClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(ManagerClient {
            http,
            base: config.manager.url.trim_end_matches('/').to_string(),
            token: config.manager.token.expose().to_string(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            // Operations (failover) may take their bounded time.
            req = req.json(&b).timeout(Duration::from_secs(180));
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the manager at {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("manager answered {status} for {url}: {}", body.trim());
        }
        resp.json::<T>()
            .await
            .with_context(|| format!("unreadable answer from {url}"))
    }
}
