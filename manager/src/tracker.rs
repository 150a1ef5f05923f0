//! Work spawned in the background that a shutdown must wait for (an
//! automatic rejoin must not be cut between its STOP SLAVE and its CHANGE
//! MASTER): a count of the tasks still running, watched.
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    running: watch::Sender<usize>,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            running: watch::Sender::new(0),
        }
    }
}

/// Counts one task while it lives (also if it panics or is aborted).
struct Guard(watch::Sender<usize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Tracker {
    /// Spawn `task`, counted until it ends.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.running.send_modify(|n| *n += 1);
        let guard = Guard(self.running.clone());
        tokio::spawn(async move {
            let _guard = guard;
            task.await;
        });
    }

    /// Tasks still running.
    pub(crate) fn running(&self) -> usize {
        *self.running.borrow()
    }

    /// Wait until no task runs, at most `bound`; false if some still run.
    pub(crate) async fn wait(&self, bound: Duration) -> bool {
        let mut rx = self.running.subscribe();
        tokio::time::timeout(bound, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn waits_for_spawned_work() {
        let t = Tracker::default();
        assert!(t.wait(Duration::from_millis(10)).await);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        t.spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(t.running(), 1);
        assert!(!t.wait(Duration::from_millis(20)).await, "still running");
        tx.send(()).unwrap();
        assert!(t.wait(Duration::from_secs(5)).await);
        assert_eq!(t.running(), 0);
    }

    #[tokio::test]
    async fn a_panicking_task_is_not_counted_forever() {
        let t = Tracker::default();
        t.spawn(async { panic!("boom") });
        assert!(t.wait(Duration::from_secs(5)).await);
    }
}
