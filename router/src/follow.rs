//! Following the manager's view of the cluster: long-polling its watch,
//! and taking each new view in.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use myha_api::watch::WatchAnswer;
use myha_core::routing::{fit_for_reads, RouterView};
use tokio::sync::watch;

use crate::pool::RISE;
use crate::Shared;

impl Shared {
    /// Take a new view: never an older epoch than one seen; update the
    /// pool's hysteresis; cut connections to backends that went down.
    pub(crate) fn accept_view(&self, view: RouterView) {
        let current_epoch = self.view.borrow().as_ref().map_or(0, |v| v.epoch);
        if view.epoch < current_epoch {
            tracing::warn!(
                epoch = view.epoch,
                seen = current_epoch,
                "ignoring a view of an older epoch"
            );
            return;
        }
        let now = Instant::now();
        let first = self.view.borrow().is_none();
        {
            let mut backends = self.backends();
            for b in &view.servers {
                let st = backends.entry(b.name.clone()).or_default();
                if fit_for_reads(b, view.max_lag_seconds) {
                    if st.fit_since.is_none() {
                        // At start-up a fit replica serves at once; later it
                        // must stay fit for RISE first.
                        st.fit_since = Some(if first { now - RISE } else { now });
                    }
                } else {
                    st.fit_since = None;
                    if b.down {
                        st.generation += 1;
                    }
                }
            }
        }
        if let Ok(mut t) = self.last_view.lock() {
            *t = Some(now);
        }
        self.view.send_replace(Some(view));
    }
}

/// Follow the manager's view of the cluster by long-polling.
pub(crate) async fn subscribe(
    shared: Arc<Shared>,
    managers: Vec<String>,
    cluster: String,
    token: String,
    client: reqwest::Client,
    mut shutdown: watch::Receiver<bool>,
) {
    let base = |i: usize| managers.get(i).map(|m| m.trim_end_matches('/').to_string());
    // The manager asked now: the leader when one says who it is, the next
    // one in the list when it does not answer.
    let mut at = 0usize;
    let mut digest: Option<u64> = None;
    loop {
        let Some(manager) = base(at) else {
            return;
        };
        let url = format!("{manager}{}", myha_api::paths::watch(&cluster));
        let full = match digest {
            Some(d) => format!("{url}?timeout_ms=10000&after={d}"),
            None => format!("{url}?timeout_ms=10000"),
        };
        let req = client.get(&full).bearer_auth(&token);
        let got = tokio::select! {
            r = req.send() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let answer = match got.and_then(reqwest::Response::error_for_status) {
            Ok(r) => r.json::<WatchAnswer>().await.ok(),
            Err(e) => {
                if shared.manager_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%manager, error = %e, "manager unreachable: keeping the last known topology");
                }
                None
            }
        };
        let mut moved = false;
        if let Some(leader) = answer.as_ref().and_then(|a| a.leader.as_deref()) {
            let leader = leader.trim_end_matches('/');
            if leader != manager {
                if let Some(i) = managers
                    .iter()
                    .position(|m| m.trim_end_matches('/') == leader)
                {
                    at = i;
                    moved = true;
                }
            }
        }
        match answer {
            Some(WatchAnswer {
                digest: d, view, ..
            }) => {
                if !shared.manager_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!(epoch = view.epoch, %manager, "following the manager's topology");
                }
                // Moving to the leader: its digest may differ, ask afresh.
                digest = (!moved).then_some(d);
                shared.accept_view(view);
            }
            None => {
                digest = None;
                if managers.len() > 1 {
                    at = (at + 1) % managers.len();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}
