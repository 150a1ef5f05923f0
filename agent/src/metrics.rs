//! The agent's Prometheus metrics (`GET /metrics`), every sample labelled
//! with its `cluster` and `host`: reports by outcome, fences, VIP changes,
//! and at each scrape what the last sample says.
use std::borrow::Cow;
use std::sync::Arc;

use myha_http::metrics::prometheus_client::collector::Collector;
use myha_http::metrics::prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use myha_http::metrics::prometheus_client::metrics::counter::Counter;
use myha_http::metrics::prometheus_client::metrics::family::Family;
use myha_http::metrics::prometheus_client::registry::Registry;
use myha_http::metrics::{Emit, Labels};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    op: String,
    outcome: String,
}

#[derive(Debug)]
pub(crate) struct AgentMetrics {
    registry: std::sync::OnceLock<Registry>,
    cluster: String,
    host: String,
    reports: Family<Outcome, Counter>,
    fences: Family<Outcome, Counter>,
    vip: Family<VipLabels, Counter>,
}

impl AgentMetrics {
    pub(crate) fn new(cluster: &str, host: &str) -> AgentMetrics {
        AgentMetrics {
            registry: std::sync::OnceLock::new(),
            cluster: cluster.to_string(),
            host: host.to_string(),
            reports: Family::default(),
            fences: Family::default(),
            vip: Family::default(),
        }
    }

    /// The registry, built on first use with the live collector over
    /// `shared` (the agent's state).
    pub(crate) fn registry(&self, shared: &Arc<crate::Shared>) -> &Registry {
        self.registry.get_or_init(|| {
            let labels = [
                (Cow::Borrowed("cluster"), Cow::Owned(self.cluster.clone())),
                (Cow::Borrowed("host"), Cow::Owned(self.host.clone())),
            ];
            let mut r = Registry::with_labels(labels.into_iter());
            r.register(
                "myha_agent_reports",
                "Reports sent to managers, by outcome (accepted, stale, failed).",
                self.reports.clone(),
            );
            r.register(
                "myha_agent_fences",
                "Fences of the local mysqld (ordered by the manager or by the agent itself), by outcome (ok, failed).",
                self.fences.clone(),
            );
            r.register(
                "myha_agent_vip_changes",
                "VIP changes on this host ordered by the manager (op add, remove), by outcome.",
                self.vip.clone(),
            );
            r.register_collector(Box::new(LastSample(Arc::downgrade(shared))));
            r
        })
    }

    pub(crate) fn report(&self, outcome: &str) {
        self.reports
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub(crate) fn fence(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.fences
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub(crate) fn vip(&self, op: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.vip
            .get_or_create(&VipLabels {
                op: op.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// What the last sample says, at each scrape.
#[derive(Debug)]
struct LastSample(std::sync::Weak<crate::Shared>);

impl Collector for LastSample {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.0.upgrade() else {
            return Ok(());
        };
        let none: fn() -> Labels = Vec::new;
        let last = shared.last.try_lock().ok().and_then(|l| l.clone());
        let mut e = Emit::new(&mut encoder);
        if let Some(r) = &last {
            let up = if r.mysqld.facts().is_some() { 1.0 } else { 0.0 };
            e.gauges(
                "myha_agent_mysqld_up",
                "1 if the last sample read the local mysqld.",
                [(none(), up)],
            )?;
            let age = myha_http::unix_ms().saturating_sub(r.sampled_at_ms) as f64 / 1000.0;
            e.gauges(
                "myha_agent_sample_age_seconds",
                "Age of the last sample of the local mysqld.",
                [(none(), age)],
            )?;
        }
        let epoch = shared
            .acked_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        e.gauges(
            "myha_agent_epoch",
            "The newest epoch a manager answered this agent with.",
            [(none(), epoch as f64)],
        )
    }
}
