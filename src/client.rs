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
        let http = myha_http::client_for(config, Duration::from_secs(3), Duration::from_secs(10))
            .context("building the HTTP client")?;
        Ok(ManagerClient {
            http,
            base: config.manager.url.trim_end_matches('/').to_string(),
            token: config.token.expose().to_string(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(serde_json::to_value(body)?),
        )
        .await
    }

    /// POST and read the JSON answer whatever the status (the body explains).
    pub async fn post_any<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .with_context(|| format!("cannot reach the manager at {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str(&text)
            .with_context(|| format!("manager answered {status}: {}", text.trim()))
    }

    /// POST, then hand each line of the streamed answer to `line`.
    pub async fn post_stream(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        mut line: impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .with_context(|| format!("cannot reach the manager at {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("manager answered {status} for {url}: {}", text.trim());
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("reading {url}"))?
        {
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = buf.drain(..=pos).collect();
                line(String::from_utf8_lossy(&l).trim());
            }
        }
        if !buf.is_empty() {
            line(String::from_utf8_lossy(&buf).trim());
        }
        Ok(())
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
