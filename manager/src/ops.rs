//! A runtime of its own for failovers: one worker thread, apart from the
//! runtime that serves the agents' reports, the API and the probes.
//!
//! With hundreds of clusters a saturated manager queues every task behind
//! thousands of report handlers and probes. A failover's SQL steps have
//! short bounds (`connect_timeout`, `query_timeout`): on the shared
//! runtime they ran out while waiting for their turn, and each attempt
//! aborted (`bench/manager-scale` at 500 clusters). On this thread the
//! operating system schedules the failover beside the shared runtime's
//! workers, and the connections it opens are driven by this runtime's
//! own I/O driver.
use std::future::Future;

pub(crate) struct OpsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl OpsRuntime {
    pub(crate) fn new() -> std::io::Result<OpsRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("myha-ops")
            .enable_all()
            .build()?;
        Ok(OpsRuntime { rt: Some(rt) })
    }

    /// Run `fut` on the operations thread and wait for it; `None` if it
    /// panicked or the runtime is shutting down. Without a runtime of its
    /// own (unit tests), `fut` runs where it is awaited.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        match &self.rt {
            Some(rt) => match rt.spawn(fut).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(error = %e, "an operation ended without an outcome");
                    None
                }
            },
            None => Some(fut.await),
        }
    }
}

impl Default for OpsRuntime {
    /// Operations run on the caller's runtime.
    fn default() -> OpsRuntime {
        OpsRuntime { rt: None }
    }
}

impl std::fmt::Debug for OpsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsRuntime")
            .field("own_thread", &self.rt.is_some())
            .finish()
    }
}

impl Drop for OpsRuntime {
    fn drop(&mut self) {
        // Dropped from async code at shutdown: a runtime may not block
        // there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
