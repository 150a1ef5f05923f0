//! A pause at a phase of an operation, for tests that kill the leader at
//! each step of a failover. Off unless the environment variable
//! `MYHA_FAILPOINTS_FILE` names a file; the file is read each time an
//! operation reaches a phase, and holds `<phase> <milliseconds>` (for
//! example `fenced 5000`): the operation pauses that long right after the
//! phase is persisted. A missing or empty file pauses nothing. Never set
//! in production: it exists to stop a leader at a known point.
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::store::Phase;

fn file() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os("MYHA_FAILPOINTS_FILE").map(PathBuf::from))
        .as_ref()
}

/// The pause `text` asks for at `phase`, if any (pure).
fn pause_in(text: &str, phase: Phase) -> Option<Duration> {
    let mut words = text.split_whitespace();
    let name = words.next()?;
    let ms: u64 = words.next()?.parse().ok()?;
    let wanted: Phase = serde_json::from_value(serde_json::Value::String(name.into())).ok()?;
    (wanted == phase).then(|| Duration::from_millis(ms))
}

/// Pause here if the failpoints file asks for it at `phase`.
pub(crate) async fn reached(cluster: &str, op: &str, phase: Phase) {
    let Some(path) = file() else {
        return;
    };
    let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
    if let Some(pause) = pause_in(&text, phase) {
        tracing::warn!(
            cluster,
            op,
            ?phase,
            pause_ms = pause.as_millis() as u64,
            "failpoint: pausing after the phase"
        );
        tokio::time::sleep(pause).await;
        tracing::warn!(cluster, op, ?phase, "failpoint: going on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_read_for_its_phase_only() {
        assert_eq!(
            pause_in("fenced 5000\n", Phase::Fenced),
            Some(Duration::from_secs(5))
        );
        assert_eq!(pause_in("fenced 5000", Phase::Promoted), None);
        assert_eq!(
            pause_in("candidate_chosen 10", Phase::CandidateChosen),
            Some(Duration::from_millis(10))
        );
        assert_eq!(pause_in("", Phase::Fenced), None);
        assert_eq!(pause_in("fenced soon", Phase::Fenced), None);
        assert_eq!(pause_in("nowhere 10", Phase::Fenced), None);
    }
}
