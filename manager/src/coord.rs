//! Who may act. One manager alone (embedded) always leads. With
//! `coordination: { etcd: … }` several managers run and one leads: it holds
//! the key `<prefix>/leader`, attached to an etcd lease it renews every
//! third of `lease_ttl`.
//!
//! Safety argument (docs/ha.md):
//! - A leader acts only while `now < valid_until`, where `valid_until` is
//!   the instant it *sent* its last successful renewal plus `lease_ttl`
//!   minus a margin of `lease_ttl / 3`. etcd counts the TTL from when it
//!   *received* that renewal, which is later: so a leader that stops
//!   hearing from etcd has stopped acting at least a third of the TTL
//!   before its key can expire and another manager can be elected.
//! - Every durable write (the epoch, the operation, the journal) is an etcd
//!   transaction conditioned on the leader key still being this manager's
//!   (its value and its create revision). A deposed leader's write fails,
//!   and a promotion writes the new epoch before the new master is made
//!   writable: a deposed leader never promotes.
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use myha_api::coordination::{Coordination, CoordinationMode, UNAVAILABLE};
use myha_config::EtcdConfig;
use tokio::sync::watch;

/// Who may act: this manager alone, or the leader elected on etcd.
#[derive(Debug, Clone)]
pub struct Coordinator {
    me: String,
    etcd: Option<Arc<Etcd>>,
}

impl Coordinator {
    /// One manager, always the leader.
    pub fn embedded(me: &str) -> Coordinator {
        Coordinator {
            me: me.to_string(),
            etcd: None,
        }
    }

    /// Err: the thread that talks to etcd could not start.
    pub fn etcd(me: &str, cfg: &EtcdConfig) -> std::io::Result<Coordinator> {
        Ok(Coordinator {
            me: me.to_string(),
            etcd: Some(Arc::new(Etcd::new(me, cfg)?)),
        })
    }

    /// May this manager act now.
    pub fn is_leader(&self) -> bool {
        self.etcd.as_ref().is_none_or(|e| e.is_leader())
    }

    /// Bumped each time this manager becomes the leader: the detector then
    /// reloads the shared state and resumes what a previous leader left.
    pub fn terms(&self) -> watch::Receiver<u64> {
        match &self.etcd {
            Some(e) => e.term.subscribe(),
            None => watch::channel(1).1,
        }
    }

    /// The leader's URL, when known.
    pub fn leader_url(&self) -> Option<String> {
        match &self.etcd {
            None => Some(self.me.clone()),
            Some(e) => e.status().leader.clone(),
        }
    }

    pub fn shared(&self) -> Option<Arc<Etcd>> {
        self.etcd.clone()
    }

    /// What `/v1/health` and the status show.
    pub fn view(&self) -> Coordination {
        match &self.etcd {
            None => Coordination {
                mode: CoordinationMode::Embedded,
                this: self.me.clone(),
                leader: Some(self.me.clone()),
                is_leader: true,
                available: true,
                blocked: None,
                error: None,
            },
            Some(e) => {
                let is_leader = e.is_leader();
                let st = e.status();
                let blocked = if !st.available && !is_leader {
                    Some(UNAVAILABLE.to_string())
                } else if st.leader.is_none() && !is_leader {
                    Some("no failover possible: no manager leads yet".to_string())
                } else {
                    None
                };
                Coordination {
                    mode: CoordinationMode::Etcd,
                    this: self.me.clone(),
                    leader: if is_leader {
                        Some(self.me.clone())
                    } else {
                        st.leader.clone()
                    },
                    is_leader,
                    available: st.available,
                    blocked,
                    error: st.error.clone(),
                }
            }
        }
    }

    /// Campaign for leadership and keep it, until `shutdown`; then give it
    /// up (the lease is revoked: a follower leads at once).
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        if let Some(e) = &self.etcd {
            // On the etcd thread: its connections never wait for the
            // manager's workers.
            let campaign = e.io().spawn(Arc::clone(e).run(shutdown));
            if let Err(err) = campaign.await {
                tracing::error!(error = %err, "the etcd campaign task failed");
            }
        }
    }
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("this manager does not lead (its write was refused)")]
    NotLeader,
}

#[derive(Debug, Default, Clone)]
pub struct Status {
    lease: Option<i64>,
    /// The create revision of the leader key this manager wrote.
    my_rev: Option<i64>,
    valid_until: Option<Instant>,
    leader: Option<String>,
    available: bool,
    error: Option<String>,
}

/// The TLS options of `tls`: its files read now (an unreadable one stops
/// the manager's start, naming it).
fn tls_options(tls: &myha_config::EtcdTls) -> std::io::Result<etcd_client::TlsOptions> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("etcd tls: cannot read {}: {e}", path.display()),
            )
        })
    };
    let mut options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca_file)?));
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

/// The etcd side: the client, the leadership, the keys.
pub struct Etcd {
    cfg: EtcdConfig,
    me: String,
    /// One client per member, connected on first use (etcd may be down
    /// when the manager starts): a request goes to the member that
    /// answered last, then to the others, so that one member down changes
    /// nothing.
    clients: tokio::sync::Mutex<Vec<Option<Client>>>,
    preferred: std::sync::atomic::AtomicUsize,
    status: Mutex<Status>,
    term: watch::Sender<u64>,
    /// TLS to the members (`tls:`), its files read at start.
    tls: Option<etcd_client::TlsOptions>,
    /// Every etcd connection and request runs here, on a thread of its
    /// own: a manager worker blocked on the topology lock can never hold
    /// up the etcd I/O that would release it.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Allowed inside the manager's runtime, unlike a plain drop.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("me", &self.me)
            .field("endpoints", &self.cfg.endpoints)
            .finish()
    }
}

impl Etcd {
    fn new(me: &str, cfg: &EtcdConfig) -> std::io::Result<Etcd> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("myha-etcd")
            .enable_all()
            .build()?;
        let tls = cfg.tls.as_ref().map(tls_options).transpose()?;
        Ok(Etcd {
            rt: Some(rt),
            tls,
            cfg: cfg.clone(),
            me: me.to_string(),
            clients: tokio::sync::Mutex::new(vec![None; cfg.endpoints.len()]),
            preferred: std::sync::atomic::AtomicUsize::new(0),
            status: Mutex::new(Status::default()),
            term: watch::Sender::new(0),
        })
    }

    /// The etcd thread's runtime.
    fn io(&self) -> tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            // Only during drop.
            None => tokio::runtime::Handle::current(),
        }
    }

    /// Run `f` on the etcd thread and wait for it from synchronous code
    /// (the state store), at most `bound`. The waiting worker steps aside
    /// (`block_in_place`) on the manager's multi-threaded runtime.
    pub fn blocking<T, F>(
        self: &Arc<Self>,
        bound: Duration,
        f: impl FnOnce(Arc<Etcd>) -> F,
    ) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, EtcdError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let fut = f(Arc::clone(self));
        self.io().spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = || rx.recv_timeout(bound);
        let got = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        got.unwrap_or(Err(EtcdError::TimedOut(bound)))
    }

    /// The longest a store call may take: every member tried once.
    pub fn store_bound(&self) -> Duration {
        self.cfg.request_timeout * (self.cfg.endpoints.len().max(1) as u32 + 1)
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.cfg.prefix)
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.cfg.prefix)
    }

    fn is_leader(&self) -> bool {
        let st = self.status();
        st.my_rev.is_some() && st.valid_until.is_some_and(|u| Instant::now() < u)
    }

    /// The client of member `i`, connected on first use. The slots' lock
    /// is not held while connecting: a member that does not answer must
    /// not hold up the others.
    async fn client(&self, i: usize) -> Result<Client, EtcdError> {
        if let Some(Some(c)) = self.clients.lock().await.get(i) {
            return Ok(c.clone());
        }
        let endpoint = self.cfg.endpoints.get(i).cloned().unwrap_or_default();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.cfg.request_timeout)
            .with_timeout(self.cfg.request_timeout)
            .with_keep_alive(self.cfg.lease_ttl / 3, self.cfg.request_timeout);
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone());
        }
        let c = self
            .bounded(Client::connect([endpoint], Some(options)))
            .await?;
        if let Some(slot) = self.clients.lock().await.get_mut(i) {
            // A concurrent connect may have won: either client will do.
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    /// Run `op` against the member that answered last, then the others in
    /// turn; the last error if none answers. A member that fails stops
    /// being the first one asked. Every request myha sends is safe to
    /// repeat (puts of the same value, guarded transactions whose outcome
    /// is read back), but never concurrently: writes go here, one member
    /// at a time, so that two copies of one write are never in flight.
    async fn call<T, F>(&self, op: impl Fn(Client) -> F) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.cfg.endpoints.len().max(1);
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = EtcdError::TimedOut(self.cfg.request_timeout);
        for k in 0..n {
            let i = (first + k) % n;
            match self.attempt(i, &op).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    self.demote(i);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// For reads and lease renewals only (repeating them concurrently is
    /// harmless): ask the preferred member, and if it has not answered
    /// within [`Etcd::hedge_after`] (or failed), ask the next one as well,
    /// and so on; the first answer wins. A member that died, or an etcd
    /// election, then costs a fraction of `request_timeout` instead of
    /// several whole ones, and a leader renews its lease in time.
    async fn call_hedged<T, F>(&self, op: impl Fn(Client) -> F) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let n = self.cfg.endpoints.len().max(1);
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let ask = |k: usize| {
            let i = (first + k) % n;
            let op = &op;
            async move { (i, self.attempt(i, op).await) }
        };
        let mut pending = FuturesUnordered::new();
        pending.push(ask(0));
        let mut asked = 1;
        let mut last = EtcdError::TimedOut(self.cfg.request_timeout);
        loop {
            tokio::select! {
                got = pending.next() => match got {
                    Some((i, Ok(v))) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Some((i, Err(e))) => {
                        self.demote(i);
                        last = e;
                        if asked < n {
                            pending.push(ask(asked));
                            asked += 1;
                        } else if pending.is_empty() {
                            return Err(last);
                        }
                    }
                    None => return Err(last),
                },
                _ = tokio::time::sleep(self.hedge_after()), if asked < n => {
                    pending.push(ask(asked));
                    asked += 1;
                }
            }
        }
    }

    /// One request to member `i`, bounded by `request_timeout`.
    async fn attempt<T, F>(&self, i: usize, op: &impl Fn(Client) -> F) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let c = self.client(i).await?;
        self.bounded(op(c)).await
    }

    /// Member `i` failed: if it was the one asked first, the next one is.
    fn demote(&self, i: usize) {
        let n = self.cfg.endpoints.len().max(1);
        let _ =
            self.preferred
                .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// How long a hedged request waits for one member before asking the
    /// next as well.
    fn hedge_after(&self) -> Duration {
        (self.cfg.request_timeout / 4).max(Duration::from_millis(50))
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, EtcdError> {
        match tokio::time::timeout(self.cfg.request_timeout, f).await {
            Ok(r) => r.map_err(EtcdError::from),
            Err(_) => Err(EtcdError::TimedOut(self.cfg.request_timeout)),
        }
    }

    async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use myha_core::leadership;
        let ttl = self.cfg.lease_ttl;
        let period = leadership::renew_period(ttl);
        // After a failed round, try again soon: an etcd election (a member
        // lost) lasts a second or two, and the lease must be renewed as
        // soon as etcd answers again.
        let retry = leadership::retry_after(ttl);
        let mut last_ok: Option<Instant> = None;
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            let was = self.is_leader();
            let res = self.round().await;
            let mut st = self.status();
            match res {
                Ok(()) => {
                    last_ok = Some(Instant::now());
                    if !st.available {
                        tracing::info!("etcd answers");
                    }
                    st.available = true;
                    st.error = None;
                    wait = period;
                }
                Err(e) => {
                    // Unavailable once nothing has worked for a whole lease:
                    // a few failed rounds (an etcd election) are not an
                    // outage.
                    let down = leadership::unavailable(last_ok.map(|t| t.elapsed()), ttl);
                    if st.available && down {
                        tracing::warn!(error = %e, "etcd unreachable: no failover is possible while it is");
                    }
                    if down {
                        st.available = false;
                    }
                    st.error = Some(e.to_string());
                    wait = retry;
                }
            }
            // Past its validity, leadership is gone. The lease is kept:
            // if etcd still holds it (and the key with it), the next round
            // that reaches etcd takes the leadership back; if not, a new
            // lease is granted and the campaign starts anew.
            if st.valid_until.is_some_and(|u| Instant::now() >= u) {
                if st.my_rev.is_some() {
                    tracing::warn!("leadership lapsed: lease not renewed in time; not acting");
                }
                st.my_rev = None;
                st.valid_until = None;
            }
            drop(st);
            let now = self.is_leader();
            if now && !was {
                tracing::info!(me = %self.me, "this manager leads");
                self.term.send_modify(|t| *t += 1);
            } else if was && !now {
                tracing::warn!(me = %self.me, "this manager no longer leads");
            }
        }
        // Give leadership up at once.
        let lease = self.status().lease;
        if let Some(lease) = lease {
            let revoked = self
                .call(|mut c| async move { c.lease_revoke(lease).await })
                .await;
            if revoked.is_ok() {
                tracing::info!("leadership given up (lease revoked)");
            }
        }
        let mut st = self.status();
        st.my_rev = None;
        st.valid_until = None;
    }

    /// One round: renew (or get) the lease, then hold or seek the leader key.
    async fn round(&self) -> Result<(), EtcdError> {
        let ttl = self.cfg.lease_ttl;
        let ttl_s = ttl.as_secs() as i64;
        let acts_for = myha_core::leadership::acts_for(ttl);
        let sent = Instant::now();
        let held = self.status().lease;
        let renewed = match held {
            Some(id) => {
                self.call_hedged(|mut c| async move {
                    let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
                    keeper.keep_alive().await?;
                    Ok(stream.message().await?.is_some_and(|a| a.ttl() > 0))
                })
                .await?
            }
            None => false,
        };
        let lease = match (held, renewed) {
            (Some(id), true) => id,
            _ => {
                if held.is_some() {
                    // Expired: whatever it held is gone.
                    let mut st = self.status();
                    st.lease = None;
                    st.my_rev = None;
                    st.valid_until = None;
                }
                let g = self
                    .call_hedged(|mut c| async move { c.lease_grant(ttl_s, None).await })
                    .await?;
                self.status().lease = Some(g.id());
                g.id()
            }
        };
        let key = self.leader_key();
        let mine = self.status().my_rev;
        if mine.is_none() {
            let (k, me) = (key.clone(), self.me.clone());
            let won = self
                .call(|mut c| {
                    let txn = Txn::new()
                        .when([Compare::create_revision(k.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            k.as_str(),
                            me.as_str(),
                            Some(PutOptions::new().with_lease(lease)),
                        )]);
                    async move { c.txn(txn).await }
                })
                .await?;
            if won.succeeded() {
                let rev = won.header().map(|h| h.revision()).unwrap_or_default();
                let mut st = self.status();
                st.my_rev = Some(rev);
                st.valid_until = Some(sent + acts_for);
                st.leader = Some(self.me.clone());
                return Ok(());
            }
        }
        // Who holds the key: this manager (kept, or created by an attempt
        // whose answer was lost), or another.
        let k = key.clone();
        let got = self
            .call_hedged(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        let kv = got.kvs().first();
        let ours = kv.is_some_and(|kv| kv.value() == self.me.as_bytes() && kv.lease() == lease);
        let mut st = self.status();
        if ours {
            st.my_rev = kv.map(|kv| kv.create_revision());
            st.valid_until = Some(sent + acts_for);
            st.leader = Some(self.me.clone());
        } else {
            st.my_rev = None;
            st.valid_until = None;
            st.leader = kv.and_then(|kv| kv.value_str().ok()).map(str::to_string);
        }
        Ok(())
    }

    /// The guard of every durable write: the leader key is still this
    /// manager's, as written at its election.
    fn guard(&self) -> Result<Vec<Compare>, EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let rev = self.status().my_rev.ok_or(EtcdError::NotLeader)?;
        let key = self.leader_key();
        Ok(vec![
            Compare::create_revision(key.as_str(), CompareOp::Equal, rev),
            Compare::value(key.as_str(), CompareOp::Equal, self.me.as_str()),
        ])
    }

    /// Put `key = value` if this manager still leads.
    pub async fn put_as_leader(&self, key: &str, value: Vec<u8>) -> Result<(), EtcdError> {
        let guard = self.guard()?;
        let r = self
            .call(|mut c| {
                let txn =
                    Txn::new()
                        .when(guard.clone())
                        .and_then([TxnOp::put(key, value.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            Ok(())
        } else {
            // Deposed: stop acting now, not at the end of the validity.
            let mut st = self.status();
            st.my_rev = None;
            st.valid_until = None;
            Err(EtcdError::NotLeader)
        }
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let r = self
            .call_hedged(|mut c| {
                let key = key.to_string();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Every key and value under `prefix` modified after revision `after`
    /// (all of them for 0), and etcd's revision at the time of the read:
    /// the next call passes it to read only what changed since.
    pub async fn changed_under(
        &self,
        prefix: &str,
        after: i64,
    ) -> Result<(i64, Vec<(String, Vec<u8>)>), EtcdError> {
        let r = self
            .call_hedged(|mut c| {
                let prefix = prefix.to_string();
                let mut opts = GetOptions::new().with_prefix();
                if after > 0 {
                    opts = opts.with_min_mod_revision(after + 1);
                }
                async move { c.get(prefix, Some(opts)).await }
            })
            .await?;
        let revision = r.header().map_or(after, |h| h.revision());
        let kvs = r
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        Ok((revision, kvs))
    }

    /// Every value under `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<Vec<u8>>, EtcdError> {
        let r = self
            .call_hedged(|mut c| {
                let prefix = prefix.to_string();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(r.kvs().iter().map(|kv| kv.value().to_vec()).collect())
    }
}
