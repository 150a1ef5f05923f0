//! Driving `relay: nat`: what the rules should say for a view and a pool
//! ([`nat_plan`], pure), and the loop that keeps the kernel's rules in
//! step with the view.

use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use myha_config::Strategy;
use myha_core::routing::RouterView;
use tokio::sync::watch;

use super::rules::{literal, reader_entries, Spread};
use super::{limits_table_name, Caps, Nat, Plan, REFRESH, TTL};
use crate::{limits, Shared};

/// How often the kernel's refusal counters are read.
const NAT_COUNTERS_EVERY: Duration = Duration::from_secs(5);

/// What the kernel should do now, for `view` and the reader `pool` (name,
/// address, weight, in configuration order) under `strategy`.
/// `live_writer` carries the master whose forwarded connections live,
/// across views of one epoch that name no writer: as in user space, a
/// connection lives while the view is of its epoch or names its master.
pub(crate) fn nat_plan(
    view: Option<&RouterView>,
    pool: &[(&str, &str, u32)],
    strategy: Strategy,
    fallback_to_master: bool,
    live_writer: &mut Option<(u64, SocketAddrV4)>,
) -> Plan {
    let Some(view) = view else {
        return Plan {
            writer: None,
            writer_live: None,
            readers: Vec::new(),
            spread: Spread::Sequence,
            reader_live: Vec::new(),
        };
    };
    let writer_addr = view.writer.as_ref().and_then(|w| literal(&w.address));
    match (writer_addr, *live_writer) {
        (Some(w), _) => *live_writer = Some((view.epoch, w)),
        (None, Some((epoch, _))) if epoch != view.epoch => *live_writer = None,
        _ => {}
    }
    let writer = if view.changing { None } else { writer_addr };
    let (readers, spread) = if pool.is_empty() {
        let fallback = if fallback_to_master {
            writer_addr
        } else {
            None
        };
        (fallback.into_iter().collect(), Spread::Sequence)
    } else {
        reader_entries(pool, strategy).unwrap_or((Vec::new(), Spread::Sequence))
    };
    // Reader connections are cut only when their server is known down
    // (the master serves reads as the fallback).
    let reader_live = view
        .servers
        .iter()
        .filter(|b| !b.down)
        .filter_map(|b| literal(&b.address))
        .chain(writer_addr)
        .collect();
    Plan {
        writer,
        writer_live: live_writer.map(|(_, a)| a),
        readers,
        spread,
        reader_live,
    }
}

/// [`nat_plan`] for the router's view and pool now.
fn plan_now(shared: &Shared, live_writer: &mut Option<(u64, SocketAddrV4)>) -> Plan {
    let view = shared.view.borrow().clone();
    let pool = shared.pool();
    let entries: Vec<(&str, &str, u32)> = pool
        .iter()
        .map(|p| (p.name.as_str(), p.address.as_str(), p.weight))
        .collect();
    nat_plan(
        view.as_ref(),
        &entries,
        shared.router.strategy,
        shared.router.fallback_to_master,
        live_writer,
    )
}

/// Keeps the kernel's rules in step with the view (`relay: nat`): on every
/// change at once, every [`REFRESH`] anyway (the rules expire), and
/// often enough for a replica's return after its rise time to take effect.
pub(crate) async fn nat_loop(
    shared: Arc<Shared>,
    mut nat: Nat,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rx = shared.view.subscribe();
    let mut live_writer = None;
    let mut last: Option<(Plan, Instant)> = None;
    let mut failing = false;
    // The kernel forwards connections the router never sees: the caps go
    // into its rules too.
    nat.caps = Some(Caps {
        per_listener: shared.limits.max_connections,
        per_source: shared.limits.max_per_source,
    });
    let mut limits_failing = false;
    let mut counted: Option<Instant> = None;
    loop {
        // Nothing to write before the first view: a table a dead router
        // left expires on its own, and its forwarded connections to a
        // master still current survive a quick restart.
        if shared.view.borrow().is_none() {
            tokio::select! {
                _ = rx.changed() => continue,
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        let plan = plan_now(&shared, &mut live_writer);
        let changed = last.as_ref().is_none_or(|(p, _)| *p != plan);
        let due = last.as_ref().is_none_or(|(_, at)| at.elapsed() >= REFRESH);
        if changed || due {
            // A change rewrites the table; otherwise only the timeouts are
            // renewed, so the rules keep their spread counters. The
            // timeouts run from before nft starts.
            let started = Instant::now();
            let done = if changed {
                nat.apply(&plan).await
            } else {
                nat.refresh(&plan).await
            };
            match done {
                Ok(()) => {
                    if failing || last.is_none() {
                        tracing::info!(table = %nat.table, "relay: nat rules in place");
                    }
                    failing = false;
                    shared.nat_active.store(true, Ordering::Relaxed);
                    shared.nat_applies.fetch_add(1, Ordering::Relaxed);
                    if changed {
                        shared.nat_rewrites.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(?plan, "relay: nat rules changed");
                    }
                    // The master changed: the reset rules are in place;
                    // close this host's clients of the old one now.
                    let before = last.as_ref().and_then(|(p, _)| p.writer_live);
                    if let Some(old) = before.filter(|o| plan.writer_live != Some(*o)) {
                        match nat.close_local_clients(old).await {
                            Ok(n) => {
                                tracing::info!(old = %old, closed = n, "master changed: closed this host's forwarded writer connections")
                            }
                            Err(e) => {
                                tracing::warn!(old = %old, error = %e, "master changed: cannot close forwarded writer connections here; they are reset at their next packet")
                            }
                        }
                    }
                    last = Some((plan, started));
                    nat_limits(&shared, &nat, &mut limits_failing, &mut counted).await;
                }
                Err(e) => {
                    shared.nat_errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::error!(error = %e, "relay: nat cannot update its rules; they expire \
                            within {:?} and connections are then served in user space", TTL);
                    }
                    failing = true;
                    if changed {
                        // The kernel may still forward by the rules before
                        // this change: empty their sets now if it lets
                        // us, and rewrite the whole table next time.
                        if let Err(e) = nat.disarm().await {
                            tracing::debug!(error = %e, "relay: nat could not empty its sets either");
                        }
                        last = None;
                        shared.nat_active.store(false, Ordering::Relaxed);
                    }
                    // A failed renewal leaves rules that are still right:
                    // retried in 250 ms, they expire only if it keeps
                    // failing for the TTL.
                }
            }
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    let retired = nat.retire().await;
    if retired.is_ok() {
        if let Err(e) = nat.close_all_local_clients().await {
            tracing::warn!(error = %e, "relay: nat cannot close its forwarded connections here; they are reset at their next packet");
        }
    }
    match retired {
        Ok(()) => tracing::info!(
            table = %nat.table,
            "relay: nat retired: the table forwards nothing and resets what it forwarded"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "relay: nat could not retire its rules; they expire on their own")
        }
    }
    shared.nat_active.store(false, Ordering::Relaxed);
}

/// Keeps the kernel's connection caps in place (`relay: nat`) and reads
/// what they refused every [`NAT_COUNTERS_EVERY`]. Without them NAT still
/// works: the router says so once, and retries at each renewal.
async fn nat_limits(shared: &Shared, nat: &Nat, failing: &mut bool, counted: &mut Option<Instant>) {
    match nat.ensure_limits().await {
        Ok(wrote) => {
            if wrote {
                tracing::info!(
                    table = %limits_table_name(&nat.table),
                    "relay: nat connection caps in place"
                );
            }
            *failing = false;
        }
        Err(e) => {
            if !*failing {
                tracing::warn!(error = %e, "relay: nat cannot apply the connection caps in the kernel; \
                    forwarded connections are not capped (the router's own are)");
            }
            *failing = true;
            return;
        }
    }
    if counted.is_some_and(|t| t.elapsed() < NAT_COUNTERS_EVERY) {
        return;
    }
    *counted = Some(Instant::now());
    match nat.limit_counts().await {
        Ok(counts) => {
            for (cap, endpoint, n) in counts {
                let i = if endpoint == "writer" {
                    limits::WRITER
                } else {
                    limits::READER
                };
                let slot = if cap == "listener" {
                    &shared.limits.nat_refused_listener_cap[i]
                } else {
                    &shared.limits.nat_refused_source_cap[i]
                };
                slot.store(n, Ordering::Relaxed);
            }
        }
        Err(e) => tracing::debug!(error = %e, "relay: nat cannot read the caps' counters"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use myha_core::routing::Backend;
    use myha_core::topology::Role;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn server(name: &str, address: &str, role: Role) -> Backend {
        Backend {
            name: name.to_string(),
            address: address.to_string(),
            role,
            healthy: true,
            down: false,
            lag_seconds: Some(0.0),
            weight: 1,
        }
    }

    /// Epoch `epoch`, db1 the master (named as writer when `writer`),
    /// db2 and db3 replicas.
    fn view(epoch: u64, writer: bool) -> RouterView {
        let db1 = server("db1", "10.0.0.11:3306", Role::Master);
        RouterView {
            cluster: "c".to_string(),
            epoch,
            writer: writer.then(|| db1.clone()),
            changing: false,
            servers: vec![
                db1,
                server("db2", "10.0.0.12:3306", Role::Replica),
                server("db3", "10.0.0.13:3306", Role::Replica),
            ],
            max_lag_seconds: 10.0,
        }
    }

    const POOL: [(&str, &str, u32); 2] =
        [("db2", "10.0.0.12:3306", 1), ("db3", "10.0.0.13:3306", 1)];

    #[test]
    fn without_a_view_nothing_is_forwarded() {
        let mut live = Some((3, a("10.0.0.11:3306")));
        let p = nat_plan(None, &POOL, Strategy::RoundRobin, true, &mut live);
        assert_eq!(p.writer, None);
        assert_eq!(p.writer_live, None);
        assert!(p.readers.is_empty());
        assert!(p.reader_live.is_empty());
        assert_eq!(p.spread, Spread::Sequence);
        assert_eq!(live, Some((3, a("10.0.0.11:3306"))), "left as it was");
    }

    #[test]
    fn writers_go_to_the_master_and_readers_over_the_pool() {
        let mut live = None;
        let v = view(4, true);
        let p = nat_plan(Some(&v), &POOL, Strategy::RoundRobin, true, &mut live);
        assert_eq!(p.writer, Some(a("10.0.0.11:3306")));
        assert_eq!(p.writer_live, Some(a("10.0.0.11:3306")));
        assert_eq!(live, Some((4, a("10.0.0.11:3306"))));
        assert_eq!(p.readers, vec![a("10.0.0.12:3306"), a("10.0.0.13:3306")]);
        assert_eq!(p.spread, Spread::Sequence);
        // Every server not down, and the master (listed twice: the rules
        // deduplicate).
        assert_eq!(
            p.reader_live,
            vec![
                a("10.0.0.11:3306"),
                a("10.0.0.12:3306"),
                a("10.0.0.13:3306"),
                a("10.0.0.11:3306")
            ]
        );
        let hashed = nat_plan(Some(&v), &POOL, Strategy::AddressHash, true, &mut live);
        assert_eq!(hashed.spread, Spread::ClientHash);
    }

    #[test]
    fn a_changing_view_holds_new_writers_and_keeps_the_old_ones() {
        let mut live = None;
        let mut v = view(4, true);
        v.changing = true;
        let p = nat_plan(Some(&v), &POOL, Strategy::RoundRobin, true, &mut live);
        assert_eq!(p.writer, None, "held by the router");
        assert_eq!(p.writer_live, Some(a("10.0.0.11:3306")));
    }

    #[test]
    fn the_live_master_survives_views_of_its_epoch_without_a_writer() {
        let mut live = None;
        nat_plan(
            Some(&view(4, true)),
            &POOL,
            Strategy::RoundRobin,
            true,
            &mut live,
        );
        let same = nat_plan(
            Some(&view(4, false)),
            &POOL,
            Strategy::RoundRobin,
            true,
            &mut live,
        );
        assert_eq!(same.writer, None);
        assert_eq!(same.writer_live, Some(a("10.0.0.11:3306")));
        let newer = nat_plan(
            Some(&view(5, false)),
            &POOL,
            Strategy::RoundRobin,
            true,
            &mut live,
        );
        assert_eq!(newer.writer_live, None, "a new epoch cuts them");
        assert_eq!(live, None);
    }

    #[test]
    fn an_empty_pool_falls_back_to_the_master_if_allowed() {
        let mut live = None;
        let v = view(4, true);
        let p = nat_plan(Some(&v), &[], Strategy::Weighted, true, &mut live);
        assert_eq!(p.readers, vec![a("10.0.0.11:3306")]);
        assert_eq!(p.spread, Spread::Sequence);
        let p = nat_plan(Some(&v), &[], Strategy::Weighted, false, &mut live);
        assert!(p.readers.is_empty(), "left to the router, which refuses");
    }

    #[test]
    fn down_servers_are_cut_and_what_nat_cannot_do_stays_in_user_space() {
        let mut live = None;
        let mut v = view(4, true);
        v.servers[2].down = true;
        let p = nat_plan(
            Some(&v),
            &POOL[..1],
            Strategy::LeastConnections,
            true,
            &mut live,
        );
        assert!(p.readers.is_empty(), "least_connections: user space");
        assert!(!p.reader_live.contains(&a("10.0.0.13:3306")));
        assert!(p.reader_live.contains(&a("10.0.0.12:3306")));
        // A master at a loopback or named address is not forwarded.
        let mut v = view(4, true);
        if let Some(w) = v.writer.as_mut() {
            w.address = "127.0.0.1:3306".to_string();
        }
        let p = nat_plan(Some(&v), &POOL, Strategy::RoundRobin, true, &mut live);
        assert_eq!(p.writer, None);
        assert_eq!(
            p.writer_live,
            Some(a("10.0.0.11:3306")),
            "the epoch's master still"
        );
    }
}
