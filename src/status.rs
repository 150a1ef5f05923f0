//! `myha status`: the manager's live topology as a table or JSON.
use std::process::ExitCode;

use myha_api::status::ClusterStatus;
use myha_config::Config;
use myha_core::flavor::ThreadState;
use serde::Serialize;

use crate::client::ManagerClient;
use myha_api::status::Attention;

#[derive(Serialize)]
struct JsonCluster<'a> {
    cluster: &'a str,
    epoch: u64,
    master: Option<&'a str>,
    problems: &'a [String],
    /// Per server, each key once: name, address, role, mysqld_up,
    /// host_reachable, read_only, gtid_position, io_running, sql_running,
    /// last_error, lag_seconds, age_ms, and everything else known.
    servers: &'a [myha_core::topology::ServerView],
    /// How much the cluster needs an operator (the exit code), and why.
    attention: JsonAttention,
    #[serde(flatten)]
    rails: Rails<'a>,
    /// Which manager answered, who leads, and why no failover is possible
    /// now when none is.
    coordination: Option<&'a myha_api::coordination::Coordination>,
}

#[derive(Serialize)]
struct JsonAttention {
    level: Attention,
    code: u8,
    reasons: Vec<String>,
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
        servers: &s.servers,
        attention: {
            let (level, reasons) = st.attention(myha_http::unix_ms());
            JsonAttention {
                level,
                code: level.code(),
                reasons,
            }
        },
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

/// `myha status`: exits 0 when every cluster is healthy, 1 when one is
/// degraded, 2 when one has no writable master or no failover possible,
/// 3 when the manager cannot be asked (Nagios: OK, WARNING, CRITICAL,
/// UNKNOWN).
pub async fn run(config: &Config, cluster: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let asked = async {
        let client = ManagerClient::new(config)?;
        anyhow::Ok(match cluster {
            Some(name) => vec![client.get(&myha_api::paths::cluster(name)).await?],
            None => client.get(myha_api::paths::CLUSTERS).await?,
        })
    };
    let snapshots: Vec<ClusterStatus> = match asked.await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("myha: {e:#}");
            return Ok(ExitCode::from(3));
        }
    };
    let now = myha_http::unix_ms();
    let worst = snapshots
        .iter()
        .map(|s| s.attention(now).0)
        .max()
        .unwrap_or(Attention::Healthy);
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
    if !json {
        for s in &snapshots {
            let (level, reasons) = s.attention(now);
            if level != Attention::Healthy {
                println!(
                    "{} {}: {}",
                    s.snapshot.cluster,
                    match level {
                        Attention::Critical => "CRITICAL",
                        _ => "DEGRADED",
                    },
                    reasons.join("; ")
                );
            }
        }
    }
    Ok(ExitCode::from(worst.code()))
}
