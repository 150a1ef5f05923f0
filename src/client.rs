//! The CLI's HTTP client for the manager's API.
use std::time::Duration;

use anyhow::{bail, Context};
use myha_config::Config;
use serde::de::DeserializeOwned;

pub struct ManagerClient {
    http: reqwest::Client,
    /// Every manager (`manager.urls`), tried in order: any one answers
    /// reads, and a follower forwards actions to the leader.
    bases: Vec<String>,
    /// The one that answered last.
    at: std::sync::atomic::AtomicUsize,
    token: String,
}

impl ManagerClient {
    pub fn new(config: &Config) -> anyhow::Result<ManagerClient> {
        let http = myha_http::client_for(config, Duration::from_secs(3), Duration::from_secs(10))
            .context("building the HTTP client")?;
        Ok(ManagerClient {
            http,
            bases: config
                .manager
                .urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            at: std::sync::atomic::AtomicUsize::new(0),
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
        let body = serde_json::to_value(body)?;
        let (_, resp) = self
            .send(
                reqwest::Method::POST,
                path,
                Some(&body),
                Duration::from_secs(120),
            )
            .await?;
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
        let body = serde_json::to_value(body)?;
        let (url, mut resp) = self
            .send(
                reqwest::Method::POST,
                path,
                Some(&body),
                Duration::from_secs(300),
            )
            .await?;
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
        // Operations (failover) may take their bounded time.
        let bound = match body {
            Some(_) => Duration::from_secs(180),
            None => Duration::from_secs(10),
        };
        let (url, resp) = self.send(method, path, body.as_ref(), bound).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("manager answered {status} for {url}: {}", body.trim());
        }
        resp.json::<T>()
            .await
            .with_context(|| format!("unreadable answer from {url}"))
    }

    /// Send to the manager that answered last, else to the next ones in
    /// `manager.urls`. Only a manager that could not be reached, or that
    /// refused because it is cut off from coordination (it did nothing), is
    /// skipped: a request another manager may have acted on is never sent
    /// twice.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        bound: Duration,
    ) -> anyhow::Result<(String, reqwest::Response)> {
        use std::sync::atomic::Ordering;
        let n = self.bases.len().max(1);
        let first = self.at.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let Some(base) = self.bases.get(i) else {
                break;
            };
            let url = format!("{base}{path}");
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .timeout(bound);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                // A manager cut off from coordination refuses before doing
                // anything (`myha_api::coordination::UNAVAILABLE`): the
                // next one may lead. Any other answer is final.
                Ok(resp)
                    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && k + 1 < n =>
                {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if !text.starts_with(myha_api::coordination::UNAVAILABLE) {
                        bail!("manager answered {status} for {url}: {}", text.trim());
                    }
                    failures.push(format!("{base}: {}", text.trim()));
                }
                Ok(resp) => {
                    self.at.store(i, Ordering::Relaxed);
                    return Ok((url, resp));
                }
                Err(e) if e.is_connect() && k + 1 < n => failures.push(format!("{base}: {e}")),
                Err(e) => {
                    failures.push(format!("{base}: {e}"));
                    bail!("cannot reach the manager ({})", failures.join("; "));
                }
            }
        }
        bail!("cannot reach any manager ({})", failures.join("; "))
    }

    /// POST an empty body to every manager in turn (a reload: each
    /// manager reads its own file), with each one's status and answer, or
    /// why it could not be reached.
    pub async fn post_every(
        &self,
        path: &str,
    ) -> Vec<(String, anyhow::Result<(reqwest::StatusCode, String)>)> {
        let mut out = Vec::new();
        for base in &self.bases {
            let url = format!("{base}{path}");
            let answer = async {
                let resp = self
                    .http
                    .post(&url)
                    .bearer_auth(&self.token)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {base}"))?;
                let status = resp.status();
                let text = resp
                    .text()
                    .await
                    .with_context(|| format!("reading the answer of {base}"))?;
                Ok((status, text))
            }
            .await;
            out.push((base.clone(), answer));
        }
        out
    }
}
