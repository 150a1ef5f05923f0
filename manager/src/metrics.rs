//! The manager's Prometheus metrics (`GET /metrics`): operations by
//! outcome and their durations per step, fences and VIP moves, counted as
//! they are journaled; each cluster's verdict, readiness, lag, report ages
//! and leadership, read from the live state at each scrape.
use std::sync::Arc;

use myha_http::metrics::prometheus_client::collector::Collector;
use myha_http::metrics::prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use myha_http::metrics::prometheus_client::metrics::counter::Counter;
use myha_http::metrics::prometheus_client::metrics::family::Family;
use myha_http::metrics::prometheus_client::metrics::histogram::Histogram;
use myha_http::metrics::prometheus_client::registry::Registry;
use myha_http::metrics::{Emit, Labels};

use crate::store::{Step, StepStatus};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    cluster: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    cluster: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    cluster: String,
    kind: String,
    step: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    cluster: String,
    op: String,
    outcome: String,
}

/// The manager's metrics; the registry is read-only once built.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    failovers: Family<Outcome, Counter>,
    switchovers: Family<Outcome, Counter>,
    operation_seconds: Family<KindLabels, Histogram>,
    step_seconds: Family<StepLabels, Histogram>,
    fences: Family<Outcome, Counter>,
    vip_moves: Family<VipLabels, Counter>,
    /// `myha_detector_looks` by cause, created once (a look is frequent).
    looks_timer: Counter,
    looks_change: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookLabels {
    cause: String,
}

/// Why the detector looked at a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookCause {
    /// Its pace ran out (50 ms while something happens, 500 ms quiet).
    Timer,
    /// A report or probe differed materially from the last one.
    Change,
}

impl LookCause {
    fn as_str(self) -> &'static str {
        match self {
            LookCause::Timer => "timer",
            LookCause::Change => "change",
        }
    }
}

impl Metrics {
    /// The metrics; `live` is added as a collector once the topology
    /// exists ([`Metrics::with_live`]).
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let failovers = Family::<Outcome, Counter>::default();
        registry.register(
            "myha_failovers",
            "Failovers run by this manager, by outcome (completed, completed_with_errors, aborted, handed_over).",
            failovers.clone(),
        );
        let switchovers = Family::<Outcome, Counter>::default();
        registry.register(
            "myha_switchovers",
            "Switchovers run by this manager, by outcome.",
            switchovers.clone(),
        );
        let operation_seconds = myha_http::metrics::seconds_histograms::<KindLabels>();
        registry.register(
            "myha_operation_duration_seconds",
            "How long each failover or switchover took, from its start to its report.",
            operation_seconds.clone(),
        );
        let step_seconds = myha_http::metrics::seconds_histograms::<StepLabels>();
        registry.register(
            "myha_operation_step_duration_seconds",
            "How long each timed step of a failover or switchover took (fence, promote, repoint, vip_add, ...).",
            step_seconds.clone(),
        );
        let fences = Family::<Outcome, Counter>::default();
        registry.register(
            "myha_fences",
            "Fences of an old master attempted during operations, by outcome (ok, failed, skipped).",
            fences.clone(),
        );
        let vip_moves = Family::<VipLabels, Counter>::default();
        registry.register(
            "myha_vip_moves",
            "VIP changes ordered by the manager (op add, remove, ensure), by outcome.",
            vip_moves.clone(),
        );
        let looks = Family::<LookLabels, Counter>::default();
        registry.register(
            "myha_detector_looks",
            "Looks of the detectors at their clusters (a snapshot and a verdict each), all clusters together, by cause (timer, change).",
            looks.clone(),
        );
        let look = |cause: LookCause| {
            looks
                .get_or_create(&LookLabels {
                    cause: cause.as_str().to_string(),
                })
                .clone()
        };
        let (looks_timer, looks_change) = (look(LookCause::Timer), look(LookCause::Change));
        Metrics {
            registry,
            failovers,
            switchovers,
            operation_seconds,
            step_seconds,
            fences,
            vip_moves,
            looks_timer,
            looks_change,
        }
    }

    /// Add the collector of the live state.
    pub(crate) fn with_live(mut self, live: LiveState) -> Metrics {
        self.registry.register_collector(Box::new(live));
        self
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One look of a detector.
    pub(crate) fn look(&self, cause: LookCause) {
        match cause {
            LookCause::Timer => self.looks_timer.inc(),
            LookCause::Change => self.looks_change.inc(),
        };
    }

    /// A step journaled by operation `op` ("failover-…", "switchover-…").
    pub(crate) fn step(
        &self,
        cluster: &str,
        op: &str,
        step: Step,
        status: StepStatus,
        duration_ms: Option<u64>,
    ) {
        let kind = kind_of(op);
        if let Some(ms) = duration_ms {
            self.step_seconds
                .get_or_create(&StepLabels {
                    cluster: cluster.to_string(),
                    kind: kind.to_string(),
                    step: step.as_str().to_string(),
                })
                .observe(ms as f64 / 1000.0);
        }
        let outcome = status.as_str().to_string();
        match step {
            Step::Fence => {
                self.fences
                    .get_or_create(&Outcome {
                        cluster: cluster.to_string(),
                        outcome,
                    })
                    .inc();
            }
            Step::VipAdd | Step::VipRemove | Step::VipEnsure => {
                let op = match step {
                    Step::VipAdd => "add",
                    Step::VipRemove => "remove",
                    _ => "ensure",
                };
                self.vip_moves
                    .get_or_create(&VipLabels {
                        cluster: cluster.to_string(),
                        op: op.to_string(),
                        outcome,
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// An operation's end.
    pub(crate) fn operation(&self, cluster: &str, op: &str, outcome: &str, duration_ms: u64) {
        let kind = kind_of(op);
        let family = match kind {
            "failover" => &self.failovers,
            "switchover" => &self.switchovers,
            _ => return,
        };
        family
            .get_or_create(&Outcome {
                cluster: cluster.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.operation_seconds
            .get_or_create(&KindLabels {
                cluster: cluster.to_string(),
                kind: kind.to_string(),
            })
            .observe(duration_ms as f64 / 1000.0);
    }
}

/// "failover" of "failover-1796…".
fn kind_of(op: &str) -> &str {
    op.split('-').next().unwrap_or(op)
}

/// What the live state says at each scrape.
#[derive(Debug)]
pub(crate) struct LiveState {
    pub(crate) topology: Arc<crate::state::Topology>,
    pub(crate) coord: crate::coord::Coordinator,
    pub(crate) configs: Arc<crate::reload::Live>,
}

impl Collector for LiveState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let topo = &self.topology;
        let config = self.configs.get();
        let mut verdicts = Vec::new();
        let mut ready = Vec::new();
        let mut epochs = Vec::new();
        let mut blocked = Vec::new();
        let mut lags = Vec::new();
        let mut report_ages = Vec::new();
        let mut probe_ok = Vec::new();
        let now = myha_http::unix_ms();
        for cluster in &config.clusters {
            let name = &cluster.name;
            let Some(snapshot) = topo.snapshot(name) else {
                continue;
            };
            let durable = topo.durable(name).unwrap_or_default();
            let c = || vec![("cluster", name.clone())];
            if let Some(a) = topo.analysis(name) {
                let verdict = serde_json::to_value(a.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", a.verdict));
                let mut l = c();
                l.push(("verdict", verdict));
                verdicts.push((l, 1.0));
            }
            let master = durable.master.clone().or(snapshot.master.clone());
            let can = master.as_deref().is_some_and(|m| {
                crate::failover::candidate_choice(topo, cluster, &snapshot, m, None)
                    .chosen
                    .is_some()
            });
            ready.push((c(), if can { 1.0 } else { 0.0 }));
            epochs.push((c(), durable.epoch as f64));
            let until = durable.blocked_until_ms.filter(|u| *u > now);
            blocked.push((c(), until.map_or(0.0, |u| (u - now) as f64 / 1000.0)));
            for s in &snapshot.servers {
                let h = || {
                    let mut l = c();
                    l.push(("host", s.name.clone()));
                    l
                };
                if let Some(lag) = s.lag_seconds {
                    lags.push((h(), lag));
                }
                if let Some(age) = s.agent.last_report_age_ms {
                    report_ages.push((h(), age as f64 / 1000.0));
                }
                probe_ok.push((h(), if s.manager_probe.ok { 1.0 } else { 0.0 }));
            }
        }
        let leader: Labels = Vec::new();
        let mut e = Emit::new(&mut encoder);
        e.gauges(
            "myha_cluster_verdict",
            "The detector's current verdict per cluster: 1 on the verdict's label (healthy, mysqld_down_host_up, dead_master, ...).",
            verdicts,
        )?;
        e.gauges(
            "myha_cluster_failover_ready",
            "1 if a failover could promote a replica now, 0 if none is eligible.",
            ready,
        )?;
        e.gauges(
            "myha_cluster_epoch",
            "The cluster's epoch (fencing token).",
            epochs,
        )?;
        e.gauges(
            "myha_cluster_failover_blocked_seconds",
            "How long automatic failover stays blocked by the anti-flapping period (0: not blocked).",
            blocked,
        )?;
        e.gauges(
            "myha_replica_lag_seconds",
            "Replication lag per replica, as last read.",
            lags,
        )?;
        e.gauges(
            "myha_agent_report_age_seconds",
            "Age of the last report from each host's agent.",
            report_ages,
        )?;
        e.gauges(
            "myha_probe_up",
            "1 if the manager's own probe of the server succeeded last time.",
            probe_ok,
        )?;
        e.gauges(
            "myha_manager_leader",
            "1 if this manager leads (may act), 0 if it follows.",
            [(leader, if self.coord.is_leader() { 1.0 } else { 0.0 })],
        )
    }
}
