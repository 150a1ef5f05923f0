//! `myha status`: the manager's live topology as a table or JSON.
use std::process::ExitCode;

use myha_api::status::ClusterStatus;
use myha_config::Config;
use myha_core::flavor::ThreadState;
use myha_core::topology::ServerView;
use serde::Serialize;

use crate::client::ManagerClient;

/// The documented `--json` shape: per server the fields scripts rely on,
/// plus everything else the manager knows.
#[derive(Serialize)]
struct JsonServer<'a> {
    name: &'a str,
    address: &'a str,
    role: String,
    mysqld_up: Option<bool>,
    host_reachable: bool,
    read_only: Option<bool>,
    gtid_position: Option<&'a str>,
    io_running: Option<ThreadState>,
    sql_running: Option<ThreadState>,
    last_error: Option<&'a str>,
    lag_seconds: Option<f64>,
    age_ms: Option<u64>,
    #[serde(flatten)]
    detail: &'a ServerView,
}

#[derive(Serialize)]
struct JsonCluster<'a> {
    cluster: &'a str,
    epoch: u64,
    master: Option<&'a str>,
    problems: &'a [String],
    servers: Vec<JsonServer<'a>>,
    #[serde(flatten)]
    rails: Rails<'a>,
    /// Which manager answered, who leads, and why no failover is possible
    /// now when none is.
    coordination: Option<&'a myha_api::coordination::Coordination>,
}

#[derive(Serialize)]
struct Rails<'a> {
    epoch_master: Option<&'a str>,
    verdict: Option<myha_core::analysis::Verdict>,
    analysis: Option<&'a myha_core::analysis::Analysis>,
    readiness: Option<&'a myha_core::candidate::CandidateChoice>,
    failover_blocked_until_ms: Option<u64>,
    last_failover_ms: Option<u64>,
    in_progress: Option<&'a myha_api::journal::Operation>,
    needs_rejoin: &'a [String],
    /// Server -> why it was not rejoined (the last attempt's refusal).
    rejoin_refused: &'a std::collections::BTreeMap<String, String>,
    /// Why the manager degraded semi-sync to asynchronous, if it did.
    semi_sync_degraded: Option<&'a str>,
}

fn json_cluster(st: &ClusterStatus) -> JsonCluster<'_> {
    let s = &st.snapshot;
    JsonCluster {
        cluster: &s.cluster,
        epoch: s.epoch,
        master: s.master.as_deref(),
        problems: &s.problems,
        coordination: st.coordination.as_ref(),
        rails: Rails {
            epoch_master: st.epoch_master.as_deref(),
            verdict: st.analysis.as_ref().map(|a| a.verdict),
            analysis: st.analysis.as_ref(),
            readiness: st.readiness.as_ref(),
            failover_blocked_until_ms: st.failover_blocked_until_ms,
            last_failover_ms: st.last_failover_ms,
            in_progress: st.in_progress.as_ref(),
            needs_rejoin: &st.needs_rejoin,
            rejoin_refused: &st.rejoin_refused,
            semi_sync_degraded: st.semi_sync_degraded.as_deref(),
        },
        servers: s
            .servers
            .iter()
            .map(|v| JsonServer {
                name: &v.name,
                address: &v.address,
                role: v.role.to_string(),
                mysqld_up: v.mysqld_up,
                host_reachable: v.host_reachable,
                read_only: v.read_only,
                gtid_position: v.gtid_position.as_deref(),
                io_running: v.io_running,
                sql_running: v.sql_running,
                last_error: v.last_error.as_deref(),
                lag_seconds: v.lag_seconds,
                age_ms: v.age_ms,
                detail: v,
            })
            .collect(),
    }
}

fn yes_no(v: Option<bool>, yes: &str, no: &str) -> String {
    match v {
        Some(true) => yes.into(),
        Some(false) => no.into(),
        None => "?".into(),
    }
}

fn thread(t: Option<ThreadState>) -> &'static str {
    match t {
        Some(ThreadState::Running) => "yes",
        Some(ThreadState::Connecting) => "conn",
        Some(ThreadState::Stopped) => "NO",
        None => "-",
    }
}

/// Rows as aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One line per cluster: name, master, verdict, readiness (the candidate
/// a failover would promote now), the largest replica lag. `--cluster`
/// shows one in full.
pub fn summary(all: &[ClusterStatus]) -> String {
    let mut rows: Vec<Vec<String>> = vec![[
        "CLUSTER", "EPOCH", "MASTER", "VERDICT", "READY", "LAG MAX",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect()];
    for st in all {
        let s = &st.snapshot;
        let lag = s
            .servers
            .iter()
            .filter_map(|v| v.lag_seconds)
            .fold(None::<f64>, |m, l| Some(m.map_or(l, |m| m.max(l))));
        let ready = match &st.readiness {
            Some(r) => match &r.chosen {
                Some(c) => format!("-> {c}"),
                None => format!("NO ({})", r.blocker.as_deref().unwrap_or("no candidate")),
            },
            None => "-".into(),
        };
        rows.push(vec![
            s.cluster.clone(),
            s.epoch.to_string(),
            s.master.clone().unwrap_or_else(|| "NONE".into()),
            st.analysis
                .as_ref()
                .map_or("-".into(), |a| format!("{:?}", a.verdict)),
            ready,
            lag.map_or("-".into(), |l| format!("{l:.3}s")),
        ]);
    }
    let mut out = table(&rows);
    if let Some(why) = all
        .iter()
        .find_map(|st| st.coordination.as_ref().and_then(|c| c.blocked.clone()))
    {
        out.push_str(&format!("! {why}\n"));
    }
    out
}

pub fn render(st: &ClusterStatus) -> String {
    let s = &st.snapshot;
    let mut out = format!(
        "cluster {}  epoch {}  master {}\n",
        s.cluster,
        s.epoch,
        s.master.as_deref().unwrap_or("NONE")
    );
    if let Some(c) = &st.coordination {
        if c.mode == myha_api::coordination::CoordinationMode::Etcd {
            let role = if c.is_leader { "leader" } else { "follower" };
            out.push_str(&format!(
                "manager {} ({role}; leader {})\n",
                c.this,
                c.leader.as_deref().unwrap_or("NONE")
            ));
        }
        if let Some(why) = &c.blocked {
            match &c.error {
                Some(e) => out.push_str(&format!("! {why} (last error: {e})\n")),
                None => out.push_str(&format!("! {why}\n")),
            }
        }
    }
    let header = [
        "NAME", "ADDRESS", "ROLE", "MYSQLD", "HOST", "RO", "IO", "SQL", "LAG", "AGE", "GTID",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for v in &s.servers {
        rows.push(vec![
            v.name.clone(),
            v.address.clone(),
            v.role.to_string(),
            yes_no(v.mysqld_up, "up", "DOWN"),
            if v.host_reachable {
                "up".into()
            } else {
                "UNREACHABLE".into()
            },
            yes_no(v.read_only, "ON", "off"),
            thread(v.io_running).into(),
            thread(v.sql_running).into(),
            v.lag_seconds.map_or("-".into(), |l| format!("{l:.3}s")),
            v.age_ms.map_or("-".into(), |a| format!("{a}ms")),
            v.gtid_position.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&table(&rows));
    for v in &s.servers {
        if let Some(e) = &v.last_error {
            out.push_str(&format!("  {}: last error: {e}\n", v.name));
        }
    }
    for v in &s.servers {
        for d in &v.disagreements {
            out.push_str(&format!(
                "  ! {}: its agent disagrees with the manager's probe: {d} (the probe's reading is used)\n",
                v.name
            ));
        }
    }
    for p in &s.problems {
        out.push_str(&format!("  ! {p}\n"));
    }
    for (host, why) in &st.rejoin_refused {
        out.push_str(&format!("  ! {host} NOT rejoined: {why}\n"));
    }
    if let Some(why) = &st.semi_sync_degraded {
        out.push_str(&format!(
            "  ! semi-sync DEGRADED to asynchronous by the manager: {why}\n"
        ));
    }
    if let Some(a) = &st.analysis {
        out.push_str(&format!(
            "verdict: {:?} -- {}\n",
            a.verdict,
            a.evidence.join("; ")
        ));
    }
    if let Some(r) = &st.readiness {
        match &r.chosen {
            Some(c) => {
                out.push_str(&format!("if the master died now: promote {c}"));
                if let Some(src) = &r.catch_up_from {
                    out.push_str(&format!(" after catching up from {src}"));
                }
                out.push('\n');
            }
            None => out.push_str(&format!(
                "if the master died now: NO failover possible: {}\n",
                r.blocker.as_deref().unwrap_or("no eligible replica")
            )),
        }
        for e in &r.excluded {
            out.push_str(&format!("  excluded {}: {}\n", e.server, e.reason));
        }
    }
    if let Some(until) = st.failover_blocked_until_ms {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        out.push_str(&format!(
            "automatic failover BLOCKED for {} s more (anti-flapping); `myha failover --ack` to re-enable\n",
            until.saturating_sub(now) / 1000
        ));
    }
    if let Some(op) = &st.in_progress {
        out.push_str(&format!(
            "operation in progress: {} ({:?})\n",
            op.id, op.phase
        ));
    }
    out
}

pub async fn run(config: &Config, cluster: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let client = ManagerClient::new(config)?;
    let snapshots: Vec<ClusterStatus> = match cluster {
        Some(name) => vec![client.get(&myha_api::paths::cluster(name)).await?],
        None => client.get(myha_api::paths::CLUSTERS).await?,
    };
    if json {
        let out: Vec<JsonCluster<'_>> = snapshots.iter().map(json_cluster).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if cluster.is_none() && snapshots.len() > 1 {
        print!("{}", summary(&snapshots));
    } else {
        for s in &snapshots {
            print!("{}", render(s));
        }
    }
    Ok(ExitCode::SUCCESS)
}
