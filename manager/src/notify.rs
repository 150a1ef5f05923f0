//! Webhook notifications: every journaled event is POSTed as JSON to each
//! of `manager.webhooks`, beside the shell hooks. Each webhook has its own
//! queue and task, so a slow or dead receiver delays no other and never
//! an operation: attempts are bounded by the webhook's `timeout`, retried
//! `retries` times (1 s, 2 s, 4 s … apart, at most 30 s), and when a queue
//! is full the event is dropped for that webhook and the drop is logged.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use myha_config::Webhook;
use tokio::sync::mpsc;

use crate::store::Event;

/// Events waiting per webhook before new ones are dropped.
const QUEUE: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Notifier {
    hooks: Vec<Hook>,
}

#[derive(Debug)]
struct Hook {
    url: String,
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// Start one sender task per webhook (none: nothing to do). Err: a
    /// webhook's HTTP client cannot be built.
    pub(crate) fn start(webhooks: &[Webhook]) -> Result<Notifier, myha_http::HttpError> {
        let mut hooks = Vec::new();
        for w in webhooks {
            let http = myha_http::client(&myha_http::ClientOptions {
                ca_file: None,
                identity: None,
                connect_timeout: w.timeout,
                timeout: w.timeout,
            })?;
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(send_all(http, w.clone(), rx));
            hooks.push(Hook {
                url: w.url.clone(),
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            });
        }
        Ok(Notifier { hooks })
    }

    /// Queue `event` for every webhook; never waits.
    pub(crate) fn event(&self, event: &Event) {
        for h in &self.hooks {
            if h.tx.try_send(event.clone()).is_err() {
                let n = h.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(100) {
                    tracing::warn!(url = %h.url, dropped = n, "webhook queue full: events dropped for this webhook");
                }
            }
        }
    }
}

/// POST every queued event to `hook`, in order, each with its retries.
async fn send_all(http: reqwest::Client, hook: Webhook, mut rx: mpsc::Receiver<Event>) {
    while let Some(event) = rx.recv().await {
        let mut pause = Duration::from_secs(1);
        for attempt in 0..=hook.retries {
            match post(&http, &hook, &event).await {
                Ok(()) => break,
                Err(why) if attempt == hook.retries => {
                    tracing::warn!(url = %hook.url, step = %event.step, attempts = attempt + 1, error = %why, "webhook: event not delivered");
                }
                Err(why) => {
                    tracing::debug!(url = %hook.url, attempt, error = %why, "webhook: retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

async fn post(http: &reqwest::Client, hook: &Webhook, event: &Event) -> Result<(), String> {
    let mut req = http.post(&hook.url).timeout(hook.timeout).json(event);
    if let Some(t) = &hook.token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}
