//! Property tests: text round trips, set laws, and the set algebra checked
//! against a naive `BTreeSet` model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

// --- Strategies --------------------------------------------------------------

/// Ranges over a small universe, so sets overlap often and the model stays
/// small. Some ranges are reversed (`start > end`), which must be ignored.
fn small_ranges(min: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    vec(
        (min..min + 40, 0u64..8, any::<bool>()).prop_map(|(start, len, reversed)| {
            if reversed && len > 0 {
                (start + len, start)
            } else {
                (start, start + len)
            }
        }),
        0..6,
    )
}

/// Ranges near `u64::MAX`, to exercise overflow edges.
fn top_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    vec(
        (0u64..30, 0u64..8).prop_map(|(from_top, len)| {
            let start = u64::MAX - from_top;
            (start, start.saturating_add(len))
        }),
        0..4,
    )
}

fn interval_set_from(min: u64) -> impl Strategy<Value = IntervalSet> {
    prop_oneof![
        4 => small_ranges(min),
        1 => (small_ranges(min), top_ranges()).prop_map(|(mut a, b)| { a.extend(b); a }),
    ]
    .prop_map(IntervalSet::from_ranges)
}

fn interval_set() -> impl Strategy<Value = IntervalSet> {
    interval_set_from(0)
}

const UUIDS: [[u8; 16]; 2] = [[0x3e; 16], [0x21; 16]];

fn sid() -> impl Strategy<Value = Sid> {
    (
        prop::sample::select(UUIDS.to_vec()),
        prop::sample::select(vec![None, Some("a"), Some("tag_1")]),
    )
        .prop_map(|(uuid, tag)| Sid {
            uuid,
            tag: tag.map(str::to_owned),
        })
}

fn mysql_set() -> impl Strategy<Value = MysqlGtidSet> {
    vec((sid(), interval_set_from(1)), 0..5).prop_map(|entries| entries.into_iter().collect())
}

fn gtid_key() -> impl Strategy<Value = GtidKey> {
    prop_oneof![
        (0u32..3).prop_map(GtidKey::Domain),
        sid().prop_map(GtidKey::Sid),
    ]
}

fn gtid_set() -> impl Strategy<Value = GtidSet> {
    vec((gtid_key(), interval_set()), 0..5).prop_map(|entries| entries.into_iter().collect())
}

/// Positions over few domains and small seqs, so they overlap.
fn small_pos() -> impl Strategy<Value = MariaGtidPos> {
    vec((0u32..4, 0u32..3, 0u64..20), 0..4).prop_map(|gtids| {
        gtids
            .into_iter()
            .map(|(d, s, q)| MariaGtid::new(d, s, q))
            .collect()
    })
}

/// Positions with arbitrary numbers, for round trips.
fn any_pos() -> impl Strategy<Value = MariaGtidPos> {
    prop_oneof![
        small_pos(),
        vec(any::<(u32, u32, u64)>(), 0..4).prop_map(|gtids| {
            gtids
                .into_iter()
                .map(|(d, s, q)| MariaGtid::new(d, s, q))
                .collect()
        }),
    ]
}

fn small_state() -> impl Strategy<Value = MariaBinlogState> {
    vec((0u32..3, 0u32..3, 0u64..10), 0..6).prop_map(|gtids| {
        gtids
            .into_iter()
            .map(|(d, s, q)| MariaGtid::new(d, s, q))
            .collect()
    })
}

fn any_state() -> impl Strategy<Value = MariaBinlogState> {
    prop_oneof![
        small_state(),
        vec(any::<(u32, u32, u64)>(), 0..4).prop_map(|gtids| {
            gtids
                .into_iter()
                .map(|(d, s, q)| MariaGtid::new(d, s, q))
                .collect()
        }),
    ]
}

// --- Models ------------------------------------------------------------------

fn model(set: &IntervalSet) -> BTreeSet<u64> {
    set.ranges().iter().flat_map(|&(s, e)| s..=e).collect()
}

fn model_of_ranges(ranges: &[(u64, u64)]) -> BTreeSet<u64> {
    ranges.iter().flat_map(|&(s, e)| s..=e).collect()
}

fn gtid_model(set: &GtidSet) -> BTreeSet<(GtidKey, u64)> {
    set.iter()
        .flat_map(|(key, set)| model(set).into_iter().map(move |n| (key.clone(), n)))
        .collect()
}

fn assert_normalized(set: &IntervalSet) {
    for &(s, e) in set.ranges() {
        assert!(s <= e, "{set:?}");
    }
    for pair in set.ranges().windows(2) {
        let ((_, prev_end), (next_start, _)) = (pair[0], pair[1]);
        assert!(prev_end < u64::MAX && next_start > prev_end + 1, "{set:?}");
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap()
}

// --- IntervalSet -------------------------------------------------------------

proptest! {
    #[test]
    fn interval_set_roundtrips(set in interval_set()) {
        let text = set.to_string();
        prop_assert_eq!(text.parse::<IntervalSet>().unwrap(), set.clone());
        let json = serde_json::to_string(&set).unwrap();
        prop_assert_eq!(serde_json::from_str::<IntervalSet>(&json).unwrap(), set);
    }

    #[test]
    fn from_ranges_and_insert_match_model(ranges in small_ranges(0), extra in small_ranges(0)) {
        let mut set = IntervalSet::from_ranges(ranges.clone());
        assert_normalized(&set);
        prop_assert_eq!(model(&set), model_of_ranges(&ranges));
        for &(s, e) in &extra {
            set.insert_range(s, e);
            assert_normalized(&set);
        }
        let mut all = ranges;
        all.extend(extra);
        let expected = model_of_ranges(&all);
        prop_assert_eq!(model(&set), expected.clone());
        prop_assert_eq!(set.count(), count(expected.len()));
        prop_assert_eq!(set.max(), expected.last().copied());
        prop_assert_eq!(set.min(), expected.first().copied());
        for n in 0..60 {
            prop_assert_eq!(set.contains(n), expected.contains(&n));
        }
    }

    #[test]
    fn interval_ops_match_model(a in interval_set(), b in interval_set()) {
        let (ma, mb) = (model(&a), model(&b));
        let union = a.union(&b);
        let intersection = a.intersection(&b);
        let difference = a.difference(&b);
        for set in [&union, &intersection, &difference] {
            assert_normalized(set);
        }
        prop_assert_eq!(model(&union), ma.union(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(model(&intersection), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(model(&difference), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
        prop_assert_eq!(a.count(), count(ma.len()));
    }

    #[test]
    fn interval_set_laws(a in interval_set(), b in interval_set(), c in interval_set()) {
        let union = a.union(&b);
        prop_assert!(a.is_subset(&union));
        prop_assert!(a.difference(&b).is_disjoint(&b));
        prop_assert_eq!(a.difference(&b).union(&a.intersection(&b)), a.clone());
        prop_assert_eq!(a.is_subset(&b), a.difference(&b).is_empty());
        prop_assert_eq!(union.count(), a.count() + b.count() - a.intersection(&b).count());
        prop_assert_eq!(union.clone(), b.union(&a));
        prop_assert_eq!(union.union(&c), a.union(&b.union(&c)));
        prop_assert_eq!(a.intersection(&b), b.intersection(&a));
        prop_assert!(a.is_subset(&a));
    }
}

// --- MySQL and neutral GTID sets ---------------------------------------------

proptest! {
    #[test]
    fn mysql_set_roundtrips(set in mysql_set()) {
        let text = set.to_string();
        prop_assert_eq!(text.parse::<MysqlGtidSet>().unwrap(), set.clone());
        // MySQL's own `,\n` separator and upper case parse the same.
        let mysql_style = text.replace(',', ",\n").to_uppercase();
        prop_assert_eq!(mysql_style.parse::<MysqlGtidSet>().unwrap(), set.clone());
        let json = serde_json::to_string(&set).unwrap();
        prop_assert_eq!(serde_json::from_str::<MysqlGtidSet>(&json).unwrap(), set.clone());
        // The neutral view prints the same text.
        prop_assert_eq!(GtidSet::from(&set).to_string(), text);
    }

    #[test]
    fn mysql_ops_agree_with_neutral_ops(a in mysql_set(), b in mysql_set()) {
        let (na, nb) = (GtidSet::from(&a), GtidSet::from(&b));
        prop_assert_eq!(GtidSet::from(a.union(&b)), na.union(&nb));
        prop_assert_eq!(GtidSet::from(a.intersection(&b)), na.intersection(&nb));
        prop_assert_eq!(GtidSet::from(a.difference(&b)), na.difference(&nb));
        prop_assert_eq!(a.is_subset(&b), na.is_subset(&nb));
        prop_assert_eq!(a.count(), na.count());
        prop_assert_eq!(a.is_empty(), na.is_empty());
    }

    #[test]
    fn gtid_set_roundtrips(set in gtid_set()) {
        prop_assert_eq!(set.to_string().parse::<GtidSet>().unwrap(), set.clone());
        let json = serde_json::to_string(&set).unwrap();
        prop_assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), set);
    }

    #[test]
    fn gtid_set_ops_match_model(a in gtid_set(), b in gtid_set()) {
        let (ma, mb) = (gtid_model(&a), gtid_model(&b));
        prop_assert_eq!(gtid_model(&a.union(&b)), ma.union(&mb).cloned().collect::<BTreeSet<_>>());
        prop_assert_eq!(gtid_model(&a.intersection(&b)), ma.intersection(&mb).cloned().collect::<BTreeSet<_>>());
        prop_assert_eq!(gtid_model(&a.difference(&b)), ma.difference(&mb).cloned().collect::<BTreeSet<_>>());
        prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
        prop_assert_eq!(a.count(), count(ma.len()));
        // No empty entries survive an operation.
        for set in [a.union(&b), a.intersection(&b), a.difference(&b)] {
            prop_assert!(set.iter().all(|(_, s)| !s.is_empty()));
        }
    }

    #[test]
    fn gtid_set_laws(a in gtid_set(), b in gtid_set(), c in gtid_set()) {
        let union = a.union(&b);
        prop_assert!(a.is_subset(&union));
        prop_assert!(a.difference(&b).intersection(&b).is_empty());
        prop_assert_eq!(a.difference(&b).union(&a.intersection(&b)), a.clone());
        prop_assert_eq!(a.is_subset(&b), a.difference(&b).is_empty());
        prop_assert_eq!(union.count(), a.count() + b.count() - a.intersection(&b).count());
        prop_assert_eq!(union.clone(), b.union(&a));
        prop_assert_eq!(union.union(&c), a.union(&b.union(&c)));
    }
}

// --- MariaDB -----------------------------------------------------------------

proptest! {
    #[test]
    fn maria_pos_roundtrips(pos in any_pos()) {
        let text = pos.to_string();
        prop_assert_eq!(text.parse::<MariaGtidPos>().unwrap(), pos.clone());
        let json = serde_json::to_string(&pos).unwrap();
        prop_assert_eq!(serde_json::from_str::<MariaGtidPos>(&json).unwrap(), pos.clone());
        let tagged = GtidPosition::Mariadb(pos);
        let json = serde_json::to_string(&tagged).unwrap();
        prop_assert_eq!(serde_json::from_str::<GtidPosition>(&json).unwrap(), tagged);
    }

    #[test]
    fn maria_binlog_state_roundtrips(state in any_state()) {
        let text = state.to_string();
        prop_assert_eq!(text.parse::<MariaBinlogState>().unwrap(), state.clone());
        let json = serde_json::to_string(&state).unwrap();
        prop_assert_eq!(serde_json::from_str::<MariaBinlogState>(&json).unwrap(), state);
    }

    #[test]
    fn maria_ranges_roundtrip(gtid in any::<(u32, u32, u64)>(), len in 0u64..5) {
        let (domain, server_id, first_seq) = gtid;
        let range = MariaGtidRange {
            domain,
            server_id,
            first_seq,
            last_seq: first_seq.saturating_add(len),
        };
        prop_assert_eq!(range.to_string().parse::<MariaGtidRange>().unwrap(), range);
    }

    #[test]
    fn maria_covers_iff_nothing_missing(a in small_pos(), b in small_pos()) {
        prop_assert_eq!(a.covers(&b), b.missing_from(&a).is_empty());
        prop_assert_eq!(a.covers(&b), b.to_set().is_subset(&a.to_set()));
        prop_assert!(a.covers(&a));
        let pa = GtidPosition::Mariadb(a.clone());
        let pb = GtidPosition::Mariadb(b.clone());
        prop_assert_eq!(pa.covers(&pb).unwrap(), a.covers(&b));
    }

    #[test]
    fn maria_missing_from_is_set_difference(a in small_pos(), b in small_pos()) {
        let missing: GtidSet = a
            .missing_from(&b)
            .iter()
            .map(|r| (GtidKey::Domain(r.domain), IntervalSet::from_range(r.first_seq, r.last_seq)))
            .collect();
        prop_assert_eq!(&missing, &a.to_set().difference(&b.to_set()));
        let pa = GtidPosition::Mariadb(a.clone());
        let pb = GtidPosition::Mariadb(b.clone());
        prop_assert_eq!(pa.missing_from(&pb).unwrap(), missing);
        for range in a.missing_from(&b) {
            prop_assert!(range.first_seq <= range.last_seq);
            prop_assert_eq!(Some(range.server_id), a.get(range.domain).map(|g| g.server_id));
        }
    }

    #[test]
    fn maria_merge_max_is_union(a in small_pos(), b in small_pos()) {
        let merged = a.merge_max(&b);
        prop_assert!(merged.covers(&a) && merged.covers(&b));
        prop_assert_eq!(merged.to_set(), a.to_set().union(&b.to_set()));
        prop_assert_eq!(merged.domains().collect::<BTreeSet<_>>(),
            a.domains().chain(b.domains()).collect::<BTreeSet<_>>());
    }

    #[test]
    fn maria_errant_against_matches_definition(replica in small_state(), master in small_state()) {
        let errant = replica.errant_against(&master);
        let expected: Vec<MariaGtid> = replica
            .iter()
            .filter(|g| g.seq > 0 && master.get(g.domain, g.server_id).is_none_or(|m| g.seq > m))
            .copied()
            .collect();
        prop_assert_eq!(&errant, &expected);
        prop_assert!(errant.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(replica.errant_against(&replica).is_empty());
        // A master that has seen everything the replica has leaves nothing errant.
        let caught_up: MariaBinlogState = master
            .iter()
            .chain(replica.iter())
            .map(|g| MariaGtid { seq: g.seq.max(master.get(g.domain, g.server_id).unwrap_or(0)), ..*g })
            .collect();
        prop_assert!(replica.errant_against(&caught_up).is_empty());
    }

    #[test]
    fn maria_binlog_position_is_per_domain_max(state in small_state()) {
        let pos = state.position();
        for gtid in state.iter() {
            prop_assert!(pos.seq(gtid.domain) >= gtid.seq);
        }
        for gtid in pos.iter() {
            prop_assert_eq!(state.get(gtid.domain, gtid.server_id), Some(gtid.seq));
        }
        prop_assert_eq!(
            pos.domains().collect::<BTreeSet<_>>(),
            state.iter().map(|g| g.domain).collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn mysql_position_covers_iff_subset(a in mysql_set(), b in mysql_set()) {
        let pa = GtidPosition::Mysql(a.clone());
        let pb = GtidPosition::Mysql(b.clone());
        prop_assert_eq!(pa.covers(&pb).unwrap(), b.is_subset(&a));
        prop_assert_eq!(pa.covers(&pb).unwrap(), pb.missing_from(&pa).unwrap().is_empty());
        let json = serde_json::to_string(&pa).unwrap();
        prop_assert_eq!(serde_json::from_str::<GtidPosition>(&json).unwrap(), pa);
    }
}
