//! `myha failover` and `myha history`.
use std::process::ExitCode;

use anyhow::bail;
use myha_api::journal::Event;
use myha_api::operation::{FailoverReport, OpStatus};
use myha_api::paths;
use myha_api::requests::{
    AckAnswer, FailoverRequest, RejoinAnswer, RejoinRequest, SwitchoverLine, SwitchoverRequest,
};
use myha_config::Config;

use crate::client::ManagerClient;

/// The cluster named, or the only one.
pub fn pick_cluster<'a>(config: &'a Config, name: Option<&'a str>) -> anyhow::Result<&'a str> {
    match name {
        Some(n) if config.cluster(n).is_some() => Ok(n),
        Some(n) => bail!("no cluster {n:?} in {}", config.path.display()),
        None => match config.clusters.as_slice() {
            [one] => Ok(&one.name),
            _ => bail!("the configuration has several clusters: name one with --cluster"),
        },
    }
}

/// `2026-12-02T02:23:52.755Z`: the date too (a journal spans days).
fn fmt_time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// `--since`: a duration back from now (`2h`, `30m`) or a time
/// (`2026-12-01T22:00:00Z`, `2026-12-01 22:00:00`), as unix ms.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(text) {
        Ok(d) => now.checked_sub(d).ok_or("too far back")?,
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|e| {
            format!("`{text}` is neither a duration (2h, 30m) nor a UTC time (2026-12-01T22:00:00Z): {e}")
        })?,
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

pub fn print_event(e: &Event) {
    let dur = e
        .duration_ms
        .map(|d| format!(" ({d} ms)"))
        .unwrap_or_default();
    let op = if e.operation.is_empty() {
        String::new()
    } else {
        format!("[{}] ", e.operation)
    };
    println!(
        "{} {op}{:<16} {:<8} {}{dur}",
        fmt_time(e.at_ms),
        e.step,
        e.status,
        e.detail
    );
}

pub async fn failover(
    config: &Config,
    cluster: Option<&str>,
    to: Option<&str>,
    dry_run: bool,
    ack: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = pick_cluster(config, cluster)?;
    let client = ManagerClient::new(config)?;
    if ack {
        let v: AckAnswer = client
            .post(&paths::ack(cluster), &serde_json::json!({}))
            .await?;
        if json {
            println!("{}", serde_json::to_string(&v)?);
        } else {
            println!("acknowledged: automatic failover of {cluster} is enabled again");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report: FailoverReport = client
        .post(
            &paths::failover(cluster),
            &FailoverRequest {
                to: to.map(str::to_string),
                dry_run,
            },
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for e in &report.steps {
            print_event(e);
        }
        if let Some(c) = &report.choice {
            for e in &c.excluded {
                println!("  excluded {}: {}", e.server, e.reason);
            }
        }
        println!(
            "{}: {} -> {} (epoch {}), {} ms",
            report.status,
            report.old_master,
            report.new_master.as_deref().unwrap_or("nobody"),
            report.epoch,
            report.duration_ms
        );
        println!("lost: {}", report.lost);
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    Ok(match report.status {
        OpStatus::Completed | OpStatus::DryRun if report.problems.is_empty() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

pub async fn history(
    config: &Config,
    cluster: Option<&str>,
    since_ms: Option<u64>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = pick_cluster(config, cluster)?;
    let client = ManagerClient::new(config)?;
    let mut query = format!("?limit={limit}");
    if let Some(s) = since_ms {
        query.push_str(&format!("&since_ms={s}"));
    }
    let events: Vec<Event> = client
        .get(&format!("{}{query}", paths::history(cluster)))
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        for e in &events {
            print_event(e);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn switchover(
    config: &Config,
    cluster: Option<&str>,
    to: Option<&str>,
    dry_run: bool,
    timeout: std::time::Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = pick_cluster(config, cluster)?;
    let client = ManagerClient::new(config)?;
    let mut report: Option<FailoverReport> = None;
    let mut events = Vec::new();
    client
        .post_stream(
            &paths::switchover(cluster),
            &SwitchoverRequest {
                to: to.map(str::to_string),
                dry_run,
                timeout_ms: Some(timeout.as_millis() as u64),
            },
            |line| match serde_json::from_str::<SwitchoverLine>(line) {
                Ok(SwitchoverLine::Event { event }) => {
                    if !json {
                        print_event(&event);
                    }
                    events.push(event);
                }
                Ok(SwitchoverLine::Report { report: r }) => report = Some(*r),
                // A line this version does not know: skipped, the report
                // is what decides.
                Err(_) => {}
            },
        )
        .await?;
    let Some(report) = report else {
        bail!(
            "the manager ended the switchover stream without a report ({} steps seen)",
            events.len()
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} -> {} (epoch {}), {} ms",
            report.status,
            report.old_master,
            report.new_master.as_deref().unwrap_or("-"),
            report.epoch,
            report.duration_ms
        );
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    Ok(match report.status {
        OpStatus::Completed | OpStatus::DryRun => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

pub async fn rejoin(
    config: &Config,
    cluster: Option<&str>,
    host: &str,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = pick_cluster(config, cluster)?;
    let client = ManagerClient::new(config)?;
    let v: RejoinAnswer = client
        .post_any(
            &paths::rejoin(cluster),
            &RejoinRequest {
                host: host.to_string(),
                force,
            },
        )
        .await?;
    let detail = &v.detail;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if v.rejoined {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if v.rejoined {
        println!("rejoined: {detail}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("not rejoined: {detail}");
        Ok(ExitCode::FAILURE)
    }
}

/// `myha reload`: every manager reloads its own file; exit 0 only if all
/// of them took it.
pub async fn reload(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let client = ManagerClient::new(config)?;
    let mut all_ok = true;
    let mut answers = Vec::new();
    for (url, result) in client.post_every(myha_api::paths::RELOAD).await {
        let (ok, value, text) = match result {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_str::<myha_api::requests::ReloadAnswer>(&body) {
                    Ok(a) => {
                        let text = reload_summary(&a);
                        (true, serde_json::to_value(&a)?, text)
                    }
                    Err(e) => (
                        false,
                        serde_json::json!({ "error": format!("unreadable answer: {e}") }),
                        format!("unreadable answer: {e}"),
                    ),
                }
            }
            Ok((status, body)) => (
                false,
                serde_json::json!({ "status": status.as_u16(), "error": body.trim() }),
                format!("{status}: {}", body.trim()),
            ),
            Err(e) => (
                false,
                serde_json::json!({ "error": format!("{e:#}") }),
                format!("{e:#}"),
            ),
        };
        all_ok &= ok;
        if json {
            answers.push(serde_json::json!({ "manager": url, "ok": ok, "answer": value }));
        } else if ok {
            println!("{url}: reloaded: {text}");
        } else {
            eprintln!("{url}: NOT reloaded: {text}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&answers)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn reload_summary(a: &myha_api::requests::ReloadAnswer) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut text = format!(
        "added {}; removed {}; changed {}; {} unchanged",
        list(&a.added),
        list(&a.removed),
        list(&a.changed),
        a.unchanged.len()
    );
    if a.access_changed {
        text.push_str("; access list changed");
    }
    if !a.restart_needed.is_empty() {
        text.push_str(&format!(
            "; NOT applied until a restart: {}",
            a.restart_needed.join(", ")
        ));
    }
    text
}
