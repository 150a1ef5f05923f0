//! Operator hooks around a failover. Each runs through `sh -c` with the
//! operation described in environment variables, under a timeout:
//!
//! | variable | meaning |
//! |---|---|
//! | `MYHA_EVENT` | `pre_failover`, `post_failover`, `on_failure` (or the switchover equivalents) |
//! | `MYHA_CLUSTER` | cluster name |
//! | `MYHA_OLD_MASTER`, `MYHA_OLD_MASTER_ADDRESS`, `MYHA_OLD_MASTER_PORT` | the failed master |
//! | `MYHA_NEW_MASTER`, `MYHA_NEW_MASTER_ADDRESS`, `MYHA_NEW_MASTER_PORT` | the promoted one (empty before it is chosen) |
//! | `MYHA_EPOCH` | topology epoch after the operation (before it, for `pre_*`) |
//! | `MYHA_OPERATION` | the operation id, as in `myha history` |
//! | `MYHA_DETAIL` | for `on_failure`, what went wrong |
//!
//! A non-zero exit of `pre_failover` aborts the failover. The MHA-style
//! `master_ip_failover_script` is called as MHA calls it:
//! `--command=stop --orig_master_host=H --orig_master_ip=IP --orig_master_port=P`
//! before promotion, and `--command=start` with the `--new_master_*`
//! arguments too after it.
use std::time::Duration;

use myha_config::HostConfig;
use tokio::process::Command;

/// The moments an operator hook runs at. Its name is `MYHA_EVENT`, and the
/// journal step of the hook's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    PreFailover,
    PostFailover,
    PreSwitchover,
    PostSwitchover,
    OnFailure,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreFailover => "pre_failover",
            HookEvent::PostFailover => "post_failover",
            HookEvent::PreSwitchover => "pre_switchover",
            HookEvent::PostSwitchover => "post_switchover",
            HookEvent::OnFailure => "on_failure",
        }
    }

    /// The configured command for this event, if any.
    pub(crate) fn command(self, hooks: &myha_config::HooksConfig) -> Option<String> {
        match self {
            HookEvent::PreFailover => hooks.pre_failover.clone(),
            HookEvent::PostFailover => hooks.post_failover.clone(),
            HookEvent::PreSwitchover => hooks.pre_switchover.clone(),
            HookEvent::PostSwitchover => hooks.post_switchover.clone(),
            HookEvent::OnFailure => hooks.on_failure.clone(),
        }
    }

    /// Where MHA's `master_ip_failover_script` runs: `stop` before a
    /// failover's promotion, `start` after it; not otherwise.
    pub(crate) fn mha_phase(self) -> Option<bool> {
        match self {
            HookEvent::PreFailover => Some(false),
            HookEvent::PostFailover => Some(true),
            HookEvent::PreSwitchover | HookEvent::PostSwitchover | HookEvent::OnFailure => None,
        }
    }
}

/// A hook's outcome is journaled under its event's name.
impl From<HookEvent> for crate::store::Step {
    fn from(event: HookEvent) -> crate::store::Step {
        use crate::store::Step;
        match event {
            HookEvent::PreFailover => Step::PreFailover,
            HookEvent::PostFailover => Step::PostFailover,
            HookEvent::PreSwitchover => Step::PreSwitchover,
            HookEvent::PostSwitchover => Step::PostSwitchover,
            HookEvent::OnFailure => Step::OnFailure,
        }
    }
}

impl std::fmt::Display for HookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

pub(crate) struct HookContext<'a> {
    pub cluster: &'a str,
    pub operation: &'a str,
    pub old_master: Option<&'a HostConfig>,
    pub new_master: Option<&'a HostConfig>,
    pub epoch: u64,
    pub detail: &'a str,
}

/// Run `command` for `event`. `Ok(None)` when there is no hook; the
/// combined output's tail on success or failure.
pub(crate) async fn run(
    command: Option<&str>,
    event: HookEvent,
    ctx: &HookContext<'_>,
    limit: Duration,
) -> Result<Option<String>, String> {
    let Some(command) = command else {
        return Ok(None);
    };
    let host = |h: Option<&HostConfig>| {
        h.map(|h| (h.name.clone(), h.address.clone(), h.port.to_string()))
            .unwrap_or_default()
    };
    let (old, old_addr, old_port) = host(ctx.old_master);
    let (new, new_addr, new_port) = host(ctx.new_master);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("MYHA_EVENT", event.as_str())
        .env("MYHA_CLUSTER", ctx.cluster)
        .env("MYHA_OPERATION", ctx.operation)
        .env("MYHA_OLD_MASTER", old)
        .env("MYHA_OLD_MASTER_ADDRESS", old_addr)
        .env("MYHA_OLD_MASTER_PORT", old_port)
        .env("MYHA_NEW_MASTER", new)
        .env("MYHA_NEW_MASTER_ADDRESS", new_addr)
        .env("MYHA_NEW_MASTER_PORT", new_port)
        .env("MYHA_EPOCH", ctx.epoch.to_string())
        .env("MYHA_DETAIL", ctx.detail)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "{event} hook timed out after {} ms",
                limit.as_millis()
            ))
        }
        Ok(Err(e)) => return Err(format!("{event} hook could not run: {e}")),
        Ok(Ok(o)) => o,
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let tail: String = text
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if output.status.success() {
        Ok(Some(tail.trim().to_string()))
    } else {
        Err(format!(
            "{event} hook exited with {}: {}",
            output.status,
            tail.trim()
        ))
    }
}

/// The MHA `master_ip_failover_script` calling convention.
pub(crate) fn mha_command(script: &str, start: bool, ctx: &HookContext<'_>) -> String {
    let mut cmd = format!(
        "{script} --command={}",
        if start { "start" } else { "stop" }
    );
    if let Some(o) = ctx.old_master {
        cmd.push_str(&format!(
            " --orig_master_host={} --orig_master_ip={} --orig_master_port={}",
            o.name, o.address, o.port
        ));
    }
    if start {
        if let Some(n) = ctx.new_master {
            cmd.push_str(&format!(
                " --new_master_host={} --new_master_ip={} --new_master_port={}",
                n.name, n.address, n.port
            ));
        }
    }
    cmd
}
