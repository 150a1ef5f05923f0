//! The timing rules of manager leadership on etcd (docs/ha.md), as pure
//! functions of the lease TTL: how often to renew, how long a leader may
//! act after a renewal, when etcd counts as unavailable.
use std::time::Duration;

/// How long before its lease can expire a leader that cannot renew stops
/// acting: a third of the TTL (scheduling delays and clock-rate
/// differences are far smaller).
pub fn stop_margin(ttl: Duration) -> Duration {
    ttl / 3
}

/// How long a leader may act after *sending* a renewal that succeeded:
/// etcd counts the TTL from when it *received* it, later; minus the margin.
pub fn acts_for(ttl: Duration) -> Duration {
    ttl.saturating_sub(stop_margin(ttl))
}

/// How often a manager renews its lease (and a follower campaigns): a
/// tenth of the TTL, at most a second, at least 200 ms: the last success
/// before an etcd member dies is then at most half a second old (default
/// TTL), which leaves the most of [`acts_for`] to the election. A leader keeps
/// [`acts_for`] after each renewal, so it rides out several failed rounds
/// (an etcd raft election after a member is lost takes one to two seconds).
pub fn renew_period(ttl: Duration) -> Duration {
    (ttl / 10)
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(200))
}

/// The next attempt after a failed round: soon, so that the renewal lands
/// as soon as etcd answers again.
pub fn retry_after(ttl: Duration) -> Duration {
    Duration::from_millis(250).min(renew_period(ttl))
}

/// etcd counts as unavailable (no failover possible) once nothing has
/// worked for a whole TTL: a few failed rounds are not an outage.
/// `since_ok`: how long ago the last round succeeded, if one ever did.
pub fn unavailable(since_ok: Option<Duration>, ttl: Duration) -> bool {
    since_ok.is_none_or(|d| d >= ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_leader_stops_before_its_lease_can_expire() {
        for secs in [2, 3, 5, 10, 60, 600] {
            let ttl = secs * S;
            assert!(acts_for(ttl) < ttl, "{ttl:?}");
            assert_eq!(acts_for(ttl) + stop_margin(ttl), ttl);
            // Several renewals fit in what a leader may act on one.
            assert!(
                renew_period(ttl) * 2 < acts_for(ttl),
                "{ttl:?}: renew {:?}, acts for {:?}",
                renew_period(ttl),
                acts_for(ttl)
            );
        }
    }

    #[test]
    fn the_default_rides_out_an_etcd_election() {
        // lease_ttl 5 s: a renewal every 0.5 s, 3.33 s of validity: a
        // leader whose renewal failed just after a success still has
        // more than 2 s (an etcd election) before it must stop.
        let ttl = 5 * S;
        assert!(acts_for(ttl) - renew_period(ttl) > 2 * S);
        assert_eq!(retry_after(ttl), Duration::from_millis(250));
    }

    #[test]
    fn renewals_are_bounded_both_ways() {
        assert_eq!(renew_period(600 * S), S);
        assert_eq!(renew_period(S), Duration::from_millis(200));
    }

    #[test]
    fn one_failed_round_is_not_an_outage() {
        let ttl = 5 * S;
        assert!(unavailable(None, ttl));
        assert!(!unavailable(Some(2 * S), ttl));
        assert!(unavailable(Some(5 * S), ttl));
    }
}
