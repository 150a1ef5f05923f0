//! An operation (failover, switchover) under way: what it runs with, its
//! journal (every step recorded, durably, as it happens), the operator
//! hooks around it, and the report it ends with.
use std::sync::Arc;
use std::time::{Duration, Instant};

use myha_config::{ClusterConfig, HostConfig, ManagerConfig};
use myha_core::candidate::CandidateChoice;

use crate::actions::Server;
use crate::agents::AgentClient;
use crate::hooks::{self, HookContext, HookEvent};
use crate::state::{unix_ms, Topology};
use crate::store::{Event, OpKind, Operation, Phase, Step, StepStatus};
use crate::tracker::Tracker;

/// Everything an operation needs, shared with the detector and the API.
pub struct Context {
    pub topology: Arc<Topology>,
    pub manager: ManagerConfig,
    /// The agents' sampling interval (`agent.interval`).
    pub agent_interval: Duration,
    pub(crate) agents: AgentClient,
    /// Work spawned in the background (automatic rejoins, switchovers
    /// requested over the API), awaited on shutdown.
    pub(crate) background: Tracker,
    /// Who may act: only the leader runs operations, rejoins, VIP moves
    /// and hooks.
    pub coord: crate::coord::Coordinator,
    /// The configuration in force (a reload replaces its clusters and
    /// access list), and the way to ask for a reload.
    pub(crate) live: Arc<crate::reload::Live>,
    /// Prometheus metrics (`GET /metrics`).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Webhooks told of every journaled event.
    pub(crate) notify: crate::notify::Notifier,
    /// Where failovers run (a thread of their own).
    pub(crate) ops: crate::ops::OpsRuntime,
}

pub use myha_api::operation::{FailoverReport, OpStatus};

/// How an operation ends, for [`Journal::finish`].
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: OpStatus,
    pub(crate) new_master: Option<String>,
    pub(crate) epoch: u64,
    pub(crate) choice: Option<CandidateChoice>,
    pub(crate) lost: String,
}

impl Outcome {
    /// `status` at `epoch`, no new master, no choice, nothing lost.
    pub(crate) fn new(status: OpStatus, epoch: u64) -> Outcome {
        Outcome {
            status,
            new_master: None,
            epoch,
            choice: None,
            lost: "none".into(),
        }
    }

    pub(crate) fn to(mut self, new_master: Option<String>) -> Outcome {
        self.new_master = new_master;
        self
    }

    pub(crate) fn choice(mut self, choice: Option<CandidateChoice>) -> Outcome {
        self.choice = choice;
        self
    }

    pub(crate) fn lost(mut self, lost: String) -> Outcome {
        self.lost = lost;
        self
    }
}

/// Journal an event outside an operation (a detection, a rejoin, ...).
pub(crate) fn journal(
    ctx: &Context,
    cluster: &str,
    step: Step,
    status: StepStatus,
    detail: String,
) {
    journal_for(ctx, cluster, "", step, status, detail);
}

/// [`journal`] an event of operation `op` outside its run (a new leader
/// or a restarted manager taking it over).
pub(crate) fn journal_for(
    ctx: &Context,
    cluster: &str,
    op: &str,
    step: Step,
    status: StepStatus,
    detail: String,
) {
    let ev = Event {
        at_ms: unix_ms(),
        cluster: cluster.to_string(),
        operation: op.to_string(),
        step,
        status,
        detail,
        duration_ms: None,
    };
    tracing::info!(cluster, step = %step, status = %status, detail = %ev.detail, "event");
    if let Err(e) = ctx.topology.store().append(&ev) {
        tracing::error!(error = %e, "cannot journal an event");
    }
    ctx.notify.event(&ev);
}

/// The operation id of a dry run (failover or switchover): it is never
/// journaled.
pub(crate) const DRY_RUN: &str = "dry-run";

pub(crate) fn new_op_id(kind: OpKind) -> String {
    format!("{}-{}", kind.as_str(), unix_ms())
}

/// One operation's journal: the steps recorded so far, the problems met,
/// and what it needs to act (`ctx`, `cluster`).
pub(crate) struct Journal<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) cluster: &'a ClusterConfig,
    pub(crate) op: String,
    /// The master the operation moves away from.
    pub(crate) old_master: String,
    pub(crate) steps: Vec<Event>,
    pub(crate) problems: Vec<String>,
    /// Where each step also goes as it is journaled (the CLI's stream).
    pub(crate) sink: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    started: Instant,
}

impl<'a> Journal<'a> {
    pub(crate) fn new(
        ctx: &'a Context,
        cluster: &'a ClusterConfig,
        op: String,
        old_master: String,
        sink: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    ) -> Journal<'a> {
        Journal {
            ctx,
            cluster,
            op,
            old_master,
            steps: Vec::new(),
            problems: Vec::new(),
            sink,
            started: Instant::now(),
        }
    }

    /// Claim the cluster for this operation, persisted first: one
    /// operation at a time. Err says why not.
    pub(crate) fn claim(
        &self,
        kind: OpKind,
        new_master: Option<String>,
        phase: Phase,
    ) -> Result<(), String> {
        let claimed = self.ctx.topology.update_durable(&self.cluster.name, |s| {
            if s.in_progress.is_none() {
                s.in_progress = Some(Operation {
                    id: self.op.clone(),
                    kind,
                    old_master: self.old_master.clone(),
                    new_master: new_master.clone(),
                    phase,
                    started_ms: unix_ms(),
                });
            }
        });
        match claimed {
            Ok(s) if s.in_progress.as_ref().is_some_and(|o| o.id == self.op) => Ok(()),
            Ok(s) => {
                let other = s.in_progress.map(|o| o.id).unwrap_or_default();
                Err(format!("another operation is in progress: {other}"))
            }
            Err(e) => Err(format!("cannot persist the operation: {e}")),
        }
    }

    /// The report of the operation, ending as `outcome` says.
    /// This manager does not lead any more: it stops here, touching
    /// nothing, and says who carries on.
    pub(crate) fn handed_over(mut self, epoch: u64, new_master: Option<String>) -> FailoverReport {
        let leader = self
            .ctx
            .coord
            .leader_url()
            .unwrap_or_else(|| "the next leader".into());
        let detail = match &new_master {
            Some(m) => format!(
                "this manager lost its leadership after promoting {m} (epoch {epoch}): it stops here; {leader} finishes the operation on record"
            ),
            None => format!(
                "this manager lost its leadership before promotion: it stops here and changes nothing back; {leader} abandons the operation on record and decides again"
            ),
        };
        self.problems.push(detail.clone());
        self.record(Step::Abort, StepStatus::Skipped, detail, None);
        self.finish(Outcome::new(OpStatus::HandedOver, epoch).to(new_master))
    }

    /// This manager may still act.
    pub(crate) fn leads(&self) -> bool {
        self.ctx.coord.is_leader()
    }

    pub(crate) fn finish(self, outcome: Outcome) -> FailoverReport {
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if !self.dry_run() {
            self.ctx.metrics.operation(
                &self.cluster.name,
                &self.op,
                outcome.status.as_str(),
                duration_ms,
            );
        }
        FailoverReport {
            operation: self.op,
            cluster: self.cluster.name.clone(),
            status: outcome.status,
            old_master: self.old_master,
            new_master: outcome.new_master,
            epoch: outcome.epoch,
            choice: outcome.choice,
            lost: outcome.lost,
            problems: self.problems,
            steps: self.steps,
            duration_ms,
        }
    }

    /// A dry run: its steps are answered, never journaled or counted.
    fn dry_run(&self) -> bool {
        self.op == DRY_RUN
    }

    pub(crate) fn record(
        &mut self,
        step: Step,
        status: StepStatus,
        detail: String,
        started: Option<Instant>,
    ) {
        let duration_ms = started.map(|s| s.elapsed().as_millis() as u64);
        self.record_at(unix_ms(), step, status, detail, duration_ms);
    }

    /// Journal a step that finished at `at_ms`.
    pub(crate) fn record_at(
        &mut self,
        at_ms: u64,
        step: Step,
        status: StepStatus,
        detail: String,
        duration_ms: Option<u64>,
    ) {
        let ev = Event {
            at_ms,
            cluster: self.cluster.name.clone(),
            operation: self.op.clone(),
            step,
            status,
            detail,
            duration_ms,
        };
        tracing::info!(cluster = %ev.cluster, op = %ev.operation, step = %ev.step, status = %ev.status, detail = %ev.detail, "failover step");
        if let Some(sink) = &self.sink {
            let _ = sink.send(ev.clone());
        }
        if !self.dry_run() {
            self.ctx
                .metrics
                .step(&ev.cluster, &self.op, step, status, duration_ms);
            if let Err(e) = self.ctx.topology.store().append(&ev) {
                tracing::error!(error = %e, "cannot journal a failover step");
            }
            self.ctx.notify.event(&ev);
        }
        if status == StepStatus::Failed {
            self.problems.push(format!("{step}: {}", ev.detail));
        }
        self.steps.push(ev);
    }

    /// Journal steps done in branches that ran beside each other.
    pub(crate) fn record_all(&mut self, steps: impl IntoIterator<Item = StepRecord>) {
        for st in steps {
            self.record_at(st.at_ms, st.step, st.status, st.detail, st.duration_ms);
        }
    }

    pub(crate) fn host(&self, name: &str) -> Option<&HostConfig> {
        self.cluster.hosts.iter().find(|h| h.name == name)
    }

    pub(crate) fn server(&self, name: &str) -> Option<Server> {
        self.host(name)
            .map(|h| Server::new(self.cluster, h, &self.ctx.manager))
    }

    /// A phase reached and persisted: where a test's failpoint may pause
    /// (see `failpoint`).
    pub(crate) async fn checkpoint(&self, phase: Phase) {
        crate::failpoint::reached(&self.cluster.name, &self.op, phase).await;
    }

    pub(crate) fn set_phase(&mut self, phase: Phase, new_master: Option<&str>) {
        let res = self.ctx.topology.update_durable(&self.cluster.name, |s| {
            if let Some(op) = s.in_progress.as_mut() {
                op.phase = phase;
                if let Some(m) = new_master {
                    op.new_master = Some(m.to_string());
                }
            }
        });
        if let Err(e) = res {
            self.record(
                Step::Journal,
                StepStatus::Failed,
                format!("cannot persist phase {phase:?}: {e}"),
                None,
            );
        }
    }

    /// Run the operator hook of `event` (and, around a failover, MHA's
    /// `master_ip_failover_script`); false if one failed.
    pub(crate) async fn hook(
        &mut self,
        event: HookEvent,
        old: Option<&str>,
        new: Option<&str>,
        epoch: u64,
        detail: &str,
    ) -> bool {
        let hooks = &self.cluster.hooks;
        let command = event.command(hooks);
        let old_h = old.and_then(|n| self.host(n)).cloned();
        let new_h = new.and_then(|n| self.host(n)).cloned();
        let op = self.op.clone();
        let ctx = HookContext {
            cluster: &self.cluster.name,
            operation: &op,
            old_master: old_h.as_ref(),
            new_master: new_h.as_ref(),
            epoch,
            detail,
        };
        let mut ok = true;
        let started = Instant::now();
        match hooks::run(command.as_deref(), event, &ctx, hooks.timeout).await {
            Ok(None) => {}
            Ok(Some(out)) => self.record(event.into(), StepStatus::Ok, out, Some(started)),
            Err(e) => {
                ok = false;
                self.record(event.into(), StepStatus::Failed, e, Some(started));
            }
        }
        if let (Some(script), Some(start)) =
            (hooks.master_ip_failover_script.clone(), event.mha_phase())
        {
            let started = Instant::now();
            let cmd = hooks::mha_command(&script, start, &ctx);
            let step = Step::MasterIpFailoverScript;
            match hooks::run(Some(&cmd), event, &ctx, hooks.timeout).await {
                Ok(out) => {
                    self.record(step, StepStatus::Ok, out.unwrap_or_default(), Some(started))
                }
                Err(e) => {
                    ok = false;
                    self.record(step, StepStatus::Failed, e, Some(started));
                }
            }
        }
        ok
    }

    /// The end of a completed operation: the post hook, then the `finish`
    /// step; returns `completed` or `completed_with_errors`.
    pub(crate) async fn conclude(
        &mut self,
        post_hook: HookEvent,
        new: &str,
        epoch: u64,
    ) -> OpStatus {
        let old = self.old_master.clone();
        self.hook(post_hook, Some(&old), Some(new), epoch, "").await;
        let status = if self.problems.is_empty() {
            OpStatus::Completed
        } else {
            OpStatus::CompletedWithErrors
        };
        self.record(
            Step::Finish,
            StepStatus::Ok,
            format!(
                "{status} in {} ms: {old} -> {new}, epoch {epoch}",
                self.started.elapsed().as_millis()
            ),
            Some(self.started),
        );
        status
    }
}

/// A step done in a branch that ran beside another, journaled after.
pub(crate) struct StepRecord {
    pub(crate) step: Step,
    pub(crate) status: StepStatus,
    pub(crate) detail: String,
    at_ms: u64,
    duration_ms: Option<u64>,
}

impl StepRecord {
    pub(crate) fn new(
        step: Step,
        status: StepStatus,
        detail: String,
        started: Option<Instant>,
    ) -> StepRecord {
        StepRecord {
            step,
            status,
            detail,
            at_ms: unix_ms(),
            duration_ms: started.map(|s| s.elapsed().as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agents::VipOp;
    use crate::store::FileStore;

    use crate::testing::CONFIG;

    fn context(dir: &Path) -> (Context, myha_config::Config) {
        let env = |name: &str| -> Option<String> {
            match name {
                "MYHA_TOKEN" => Some("test-token-0123456789".to_owned()),
                _ => Some("test-password".to_owned()),
            }
        };
        let config = myha_config::load_str(CONFIG, Path::new("/etc/myha/myha.yaml"), &env)
            .unwrap_or_else(|e| panic!("test configuration does not load:\n{e}"));
        let store = Arc::new(FileStore::open(dir).unwrap());
        let ctx = Context {
            topology: Arc::new(Topology::new(&config, store, false).unwrap()),
            manager: config.manager.clone(),
            agent_interval: config.agent.interval,
            agents: AgentClient::new(&config, Duration::from_secs(1)).unwrap(),
            background: Tracker::default(),
            coord: crate::coord::Coordinator::embedded(&config.manager.url),
            live: Arc::new(crate::reload::Live::new(config.clone()).0),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            notify: crate::notify::Notifier::default(),
            ops: crate::ops::OpsRuntime::default(),
        };
        (ctx, config)
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("myha-op-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn statuses_serialize_as_before() {
        let json = |v: &dyn erased::Json| v.json();
        assert_eq!(json(&StepStatus::Ok), "\"ok\"");
        assert_eq!(json(&StepStatus::Failed), "\"failed\"");
        assert_eq!(json(&StepStatus::Skipped), "\"skipped\"");
        assert_eq!(json(&StepStatus::Info), "\"info\"");
        assert_eq!(json(&StepStatus::Refused), "\"refused\"");
        assert_eq!(json(&StepStatus::Degraded), "\"degraded\"");
        assert_eq!(json(&OpStatus::RolledBack), "\"rolled_back\"");
        assert_eq!(
            json(&OpStatus::CompletedWithErrors),
            "\"completed_with_errors\""
        );
        assert_eq!(json(&OpStatus::DryRun), "\"dry_run\"");
        assert_eq!(json(&OpKind::Switchover), "\"switchover\"");
        assert_eq!(json(&HookEvent::PreFailover), "\"pre_failover\"");
        assert_eq!(json(&HookEvent::OnFailure), "\"on_failure\"");
        assert_eq!(json(&VipOp::Add), "\"add\"");
        assert_eq!(json(&VipOp::Remove), "\"remove\"");
        assert_eq!(json(&Step::VipAdd), "\"vip_add\"");
        assert_eq!(
            json(&Step::MasterIpFailoverScript),
            "\"master_ip_failover_script\""
        );
        assert_eq!(json(&Step::ApplyRelayLog), "\"apply_relay_log\"");
    }

    /// The text a status shows (`as_str`, `Display`) is its JSON name, and
    /// the JSON name reads back as the same value.
    #[test]
    fn names_match_json_and_round_trip() {
        use StepStatus as S;
        for s in [
            S::Ok,
            S::Failed,
            S::Skipped,
            S::Info,
            S::Refused,
            S::Degraded,
            S::Started,
            S::Saved,
            S::Undone,
            S::Resumed,
        ] {
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<S>(&j).unwrap(), s);
        }
        use OpStatus as O;
        for s in [
            O::Completed,
            O::CompletedWithErrors,
            O::Aborted,
            O::DryRun,
            O::Refused,
            O::RolledBack,
        ] {
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<O>(&j).unwrap(), s);
        }
        for e in [
            HookEvent::PreFailover,
            HookEvent::PostFailover,
            HookEvent::PreSwitchover,
            HookEvent::PostSwitchover,
            HookEvent::OnFailure,
        ] {
            let step: Step = e.into();
            assert_eq!(step.as_str(), e.as_str());
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        // Padding is honoured: the CLI prints aligned columns.
        assert_eq!(format!("{:<8}|", StepStatus::Ok), "ok      |");
        assert_eq!(format!("{:<10}|", Step::Fence), "fence     |");
    }

    #[test]
    fn journal_event_shape_is_unchanged() {
        let ev = Event {
            at_ms: 5,
            cluster: "main".into(),
            operation: "failover-1".into(),
            step: Step::SemiSync,
            status: StepStatus::Degraded,
            detail: "why".into(),
            duration_ms: None,
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            text,
            r#"{"at_ms":5,"cluster":"main","operation":"failover-1","step":"semi_sync","status":"degraded","detail":"why"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev);
        let op = Operation {
            id: "switchover-1".into(),
            kind: OpKind::Switchover,
            old_master: "db1".into(),
            new_master: Some("db2".into()),
            phase: Phase::CandidateChosen,
            started_ms: 9,
        };
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"id":"switchover-1","kind":"switchover","old_master":"db1","new_master":"db2","phase":"candidate_chosen","started_ms":9}"#
        );
    }

    #[tokio::test]
    async fn finish_reports_the_outcome_and_the_journal() {
        let dir = temp_dir("finish");
        let (ctx, config) = context(&dir);
        let cluster = &config.clusters[0];
        let mut run = Journal::new(&ctx, cluster, "failover-7".into(), "db1".into(), None);
        run.record(Step::Detect, StepStatus::Info, "dead".into(), None);
        run.record(
            Step::Promote,
            StepStatus::Failed,
            "read_only OFF".into(),
            None,
        );
        run.record_all([StepRecord::new(
            Step::VipAdd,
            StepStatus::Ok,
            "db2: added".into(),
            Some(Instant::now()),
        )]);
        let outcome = Outcome::new(OpStatus::CompletedWithErrors, 4)
            .to(Some("db2".into()))
            .lost("none".into());
        let report = run.finish(outcome);
        assert_eq!(report.operation, "failover-7");
        assert_eq!(report.cluster, "main");
        assert_eq!(report.old_master, "db1");
        assert_eq!(report.new_master.as_deref(), Some("db2"));
        assert_eq!(report.epoch, 4);
        assert_eq!(report.status, OpStatus::CompletedWithErrors);
        assert_eq!(report.problems, ["promote: read_only OFF"]);
        let steps: Vec<_> = report.steps.iter().map(|e| (e.step, e.status)).collect();
        assert_eq!(
            steps,
            [
                (Step::Detect, StepStatus::Info),
                (Step::Promote, StepStatus::Failed),
                (Step::VipAdd, StepStatus::Ok),
            ]
        );
        assert!(report.steps[2].duration_ms.is_some());
        // Journaled durably too, under the operation.
        let history = ctx.topology.store().history("main").unwrap();
        assert_eq!(history, report.steps);
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "completed_with_errors");
        assert_eq!(json["steps"][1]["status"], "failed");
        assert_eq!(json["lost"], "none");
        // The defaults: no new master, no choice, nothing lost.
        let run = Journal::new(&ctx, cluster, "dry-run".into(), "db1".into(), None);
        let report = run.finish(Outcome::new(OpStatus::RolledBack, 3));
        assert_eq!(
            (
                report.status,
                report.new_master,
                report.choice.is_none(),
                report.lost.as_str()
            ),
            (OpStatus::RolledBack, None, true, "none")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn one_operation_at_a_time() {
        let dir = temp_dir("claim");
        let (ctx, config) = context(&dir);
        let cluster = &config.clusters[0];
        let first = Journal::new(&ctx, cluster, "failover-1".into(), "db1".into(), None);
        first.claim(OpKind::Failover, None, Phase::Started).unwrap();
        let second = Journal::new(&ctx, cluster, "switchover-2".into(), "db1".into(), None);
        let err = second
            .claim(
                OpKind::Switchover,
                Some("db2".into()),
                Phase::CandidateChosen,
            )
            .unwrap_err();
        assert_eq!(err, "another operation is in progress: failover-1");
        let held = ctx.topology.durable("main").unwrap().in_progress.unwrap();
        assert_eq!(
            (held.id.as_str(), held.kind),
            ("failover-1", OpKind::Failover)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    mod erased {
        pub trait Json {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }
}
