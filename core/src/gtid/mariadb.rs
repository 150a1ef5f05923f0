//! MariaDB GTIDs: single GTIDs, positions, ranges and binlog states.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::text::{self, Span};
use super::{GtidError, GtidKey, GtidSet, IntervalSet};

/// A MariaDB GTID `domain-server_id-seq`, e.g. `0-1-7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariaGtid {
    /// Replication domain.
    pub domain: u32,
    /// Server that originally wrote the event.
    pub server_id: u32,
    /// Sequence number within the domain (0 means "nothing").
    pub seq: u64,
}

impl MariaGtid {
    /// The GTID `domain-server_id-seq`.
    pub const fn new(domain: u32, server_id: u32, seq: u64) -> Self {
        MariaGtid {
            domain,
            server_id,
            seq,
        }
    }

    /// Parses one `d-s-q` span of `input`.
    fn parse_span(input: &str, span: Span<'_>) -> Result<Self, GtidError> {
        let parts: Vec<_> = span.split('-').collect();
        let &[domain, server_id, seq] = parts.as_slice() else {
            return Err(text::error(
                input,
                span.offset,
                format!("expected domain-server_id-seq, found {:?}", span.text),
            ));
        };
        Ok(MariaGtid {
            domain: text::number(input, domain, "domain")?,
            server_id: text::number(input, server_id, "server_id")?,
            seq: text::number(input, seq, "seq")?,
        })
    }
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for MariaGtid {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_span(s, Span::whole(s).trim())
    }
}

serde_via_string!(MariaGtid);

/// A MariaDB GTID position (`@@gtid_binlog_pos`, `@@gtid_current_pos`,
/// `@@gtid_slave_pos`, `Gtid_IO_Pos`): at most one GTID per domain, the last
/// one. In strict mode seqs are monotonic within a domain, so `0-1-100`
/// means "domain 0 has events `1..=100`"; its server_id is only the origin
/// of the last event. A missing domain counts as seq 0, and seq 0 means
/// "nothing" (such entries are kept, but contribute nothing to comparisons).
///
/// Text form: comma-separated GTIDs (whitespace around commas allowed;
/// the empty string is the empty position), formatted sorted by domain.
/// Two GTIDs of one domain are a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MariaGtidPos {
    by_domain: BTreeMap<u32, MariaGtid>,
}

impl MariaGtidPos {
    /// The empty position.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the GTID of `gtid.domain`, returning the one it replaces.
    pub fn insert(&mut self, gtid: MariaGtid) -> Option<MariaGtid> {
        self.by_domain.insert(gtid.domain, gtid)
    }

    /// The GTID of `domain`, if present.
    pub fn get(&self, domain: u32) -> Option<&MariaGtid> {
        self.by_domain.get(&domain)
    }

    /// The seq of `domain`, 0 when absent.
    pub fn seq(&self, domain: u32) -> u64 {
        self.get(domain).map_or(0, |gtid| gtid.seq)
    }

    /// The GTIDs, by domain.
    pub fn iter(&self) -> impl Iterator<Item = &MariaGtid> {
        self.by_domain.values()
    }

    /// The domains present, in order.
    pub fn domains(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_domain.keys().copied()
    }

    /// Whether there is no entry at all. (A position holding only seq-0
    /// entries is not empty, although it stands for no transaction.)
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Number of domains present.
    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    /// Whether `self` has everything `other` has: for every domain of
    /// `other`, `self` is at the same seq or beyond (absent counts as 0).
    /// Equivalent to `other.missing_from(self).is_empty()`.
    pub fn covers(&self, other: &MariaGtidPos) -> bool {
        other.iter().all(|gtid| self.seq(gtid.domain) >= gtid.seq)
    }

    /// What `self` has that `other` lacks: for each domain where `self` is
    /// ahead, the seqs `other.seq + 1 ..= self.seq` (from 1 when `other`
    /// lacks the domain), attributed to `self`'s last server_id. Sorted by
    /// domain.
    pub fn missing_from(&self, other: &MariaGtidPos) -> Vec<MariaGtidRange> {
        self.iter()
            .filter_map(|gtid| {
                let known = other.seq(gtid.domain);
                (gtid.seq > known).then_some(MariaGtidRange {
                    domain: gtid.domain,
                    server_id: gtid.server_id,
                    first_seq: known + 1,
                    last_seq: gtid.seq,
                })
            })
            .collect()
    }

    /// Per domain, the GTID with the higher seq (`self`'s on a tie).
    pub fn merge_max(&self, other: &MariaGtidPos) -> MariaGtidPos {
        let mut merged = self.clone();
        for gtid in other.iter() {
            if self.get(gtid.domain).is_none_or(|mine| gtid.seq > mine.seq) {
                merged.insert(*gtid);
            }
        }
        merged
    }

    /// The transactions this position stands for: domain `d` at seq `n`
    /// becomes key [`GtidKey::Domain`]`(d)` with `1..=n` (nothing for seq 0).
    pub fn to_set(&self) -> GtidSet {
        self.iter()
            .map(|gtid| {
                (
                    GtidKey::Domain(gtid.domain),
                    IntervalSet::from_range(1, gtid.seq),
                )
            })
            .collect()
    }
}

impl FromIterator<MariaGtid> for MariaGtidPos {
    /// Collects GTIDs; a later GTID of a domain replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = MariaGtid>>(iter: I) -> Self {
        Self {
            by_domain: iter.into_iter().map(|g| (g.domain, g)).collect(),
        }
    }
}

impl fmt::Display for MariaGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, self.iter())
    }
}

impl FromStr for MariaGtidPos {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut pos = MariaGtidPos::new();
        for entry in text::entries(s)? {
            let gtid = MariaGtid::parse_span(s, entry)?;
            if pos.insert(gtid).is_some() {
                return Err(text::error(
                    s,
                    entry.offset,
                    format!(
                        "duplicate domain {} (a position holds one GTID per domain; \
                         is this a gtid_binlog_state?)",
                        gtid.domain
                    ),
                ));
            }
        }
        Ok(pos)
    }
}

serde_via_string!(MariaGtidPos);

/// A run of consecutive MariaDB GTIDs in one domain: seqs
/// `first_seq..=last_seq`, with `server_id` the origin of the last event
/// known (earlier events may come from other servers).
///
/// Displays as `0-1-5..0-1-9`, or `0-1-5` when it holds a single GTID, and
/// parses the same forms (both ends must share domain and server_id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariaGtidRange {
    /// Replication domain.
    pub domain: u32,
    /// Origin server of the last event known.
    pub server_id: u32,
    /// First seq of the range.
    pub first_seq: u64,
    /// Last seq of the range (`>= first_seq`).
    pub last_seq: u64,
}

impl MariaGtidRange {
    /// Number of GTIDs in the range (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.last_seq
            .saturating_sub(self.first_seq)
            .saturating_add(1)
    }

    /// The first GTID of the range.
    pub fn first(&self) -> MariaGtid {
        MariaGtid::new(self.domain, self.server_id, self.first_seq)
    }

    /// The last GTID of the range.
    pub fn last(&self) -> MariaGtid {
        MariaGtid::new(self.domain, self.server_id, self.last_seq)
    }
}

impl fmt::Display for MariaGtidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first_seq == self.last_seq {
            write!(f, "{}", self.first())
        } else {
            write!(f, "{}..{}", self.first(), self.last())
        }
    }
}

impl FromStr for MariaGtidRange {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let span = Span::whole(s).trim();
        let (first, last) = match span.split_once("..") {
            Some((a, b)) => (MariaGtid::parse_span(s, a)?, MariaGtid::parse_span(s, b)?),
            None => {
                let gtid = MariaGtid::parse_span(s, span)?;
                (gtid, gtid)
            }
        };
        if (first.domain, first.server_id) != (last.domain, last.server_id) {
            return Err(text::error(
                s,
                span.offset,
                "both ends of a range must have the same domain and server_id",
            ));
        }
        if first.seq > last.seq {
            return Err(text::error(
                s,
                span.offset,
                "range is reversed (first seq > last seq)",
            ));
        }
        Ok(MariaGtidRange {
            domain: first.domain,
            server_id: first.server_id,
            first_seq: first.seq,
            last_seq: last.seq,
        })
    }
}

serde_via_string!(MariaGtidRange);

/// A MariaDB binlog state (`@@gtid_binlog_state`): for each (domain,
/// server_id), the last seq that server wrote in that domain, e.g.
/// `0-2-2,0-1-7`. Errant local writes on a replica show up here as entries
/// of servers other than the master.
///
/// Text form: comma-separated GTIDs (whitespace around commas allowed),
/// formatted sorted by domain then server_id. Two GTIDs with the same
/// domain and server_id are a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MariaBinlogState {
    by_origin: BTreeMap<(u32, u32), MariaGtid>,
}

impl MariaBinlogState {
    /// The empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the entry of (`gtid.domain`, `gtid.server_id`), returning the
    /// one it replaces.
    pub fn insert(&mut self, gtid: MariaGtid) -> Option<MariaGtid> {
        self.by_origin.insert((gtid.domain, gtid.server_id), gtid)
    }

    /// The entries, by domain then server_id.
    pub fn iter(&self) -> impl Iterator<Item = &MariaGtid> {
        self.by_origin.values()
    }

    /// The last seq `server_id` wrote in `domain`, if any.
    pub fn get(&self, domain: u32, server_id: u32) -> Option<u64> {
        self.by_origin.get(&(domain, server_id)).map(|g| g.seq)
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_origin.len()
    }

    /// The position this state reaches: per domain, the entry with the
    /// highest seq (the lowest server_id among equals, which strict mode
    /// never produces).
    pub fn position(&self) -> MariaGtidPos {
        let mut pos = MariaGtidPos::new();
        for gtid in self.iter() {
            if pos.get(gtid.domain).is_none_or(|best| gtid.seq > best.seq) {
                pos.insert(*gtid);
            }
        }
        pos
    }

    /// Entries of `self` that `master` never wrote: those whose (domain,
    /// server_id) is absent from `master`, or whose seq is beyond `master`'s
    /// for that pair. Seq-0 entries stand for nothing and are never errant.
    /// Sorted by domain, then server_id.
    pub fn errant_against(&self, master: &MariaBinlogState) -> Vec<MariaGtid> {
        self.iter()
            .filter(|gtid| {
                gtid.seq > 0
                    && master
                        .get(gtid.domain, gtid.server_id)
                        .is_none_or(|known| gtid.seq > known)
            })
            .copied()
            .collect()
    }
}

impl FromIterator<MariaGtid> for MariaBinlogState {
    /// Collects GTIDs; a later GTID of a (domain, server_id) replaces an
    /// earlier one.
    fn from_iter<I: IntoIterator<Item = MariaGtid>>(iter: I) -> Self {
        Self {
            by_origin: iter
                .into_iter()
                .map(|g| ((g.domain, g.server_id), g))
                .collect(),
        }
    }
}

impl fmt::Display for MariaBinlogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, self.iter())
    }
}

impl FromStr for MariaBinlogState {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut state = MariaBinlogState::new();
        for entry in text::entries(s)? {
            let gtid = MariaGtid::parse_span(s, entry)?;
            if state.insert(gtid).is_some() {
                return Err(text::error(
                    s,
                    entry.offset,
                    format!(
                        "duplicate entry for domain {} server_id {}",
                        gtid.domain, gtid.server_id
                    ),
                ));
            }
        }
        Ok(state)
    }
}

serde_via_string!(MariaBinlogState);

/// Writes GTIDs joined by `,`.
fn write_list<'a>(
    f: &mut fmt::Formatter<'_>,
    gtids: impl Iterator<Item = &'a MariaGtid>,
) -> fmt::Result {
    for (i, gtid) in gtids.enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{gtid}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn pos(s: &str) -> MariaGtidPos {
        s.parse().unwrap()
    }

    fn state(s: &str) -> MariaBinlogState {
        s.parse().unwrap()
    }

    fn err<T: FromStr<Err = GtidError> + fmt::Debug>(s: &str) -> String {
        s.parse::<T>().unwrap_err().to_string()
    }

    #[test]
    fn single_gtid() {
        let gtid: MariaGtid = "0-1-7".parse().unwrap();
        assert_eq!(gtid, MariaGtid::new(0, 1, 7));
        assert_eq!(gtid.to_string(), "0-1-7");
        assert_eq!(
            "4294967295-4294967295-18446744073709551615"
                .parse::<MariaGtid>()
                .unwrap(),
            MariaGtid::new(u32::MAX, u32::MAX, u64::MAX)
        );
    }

    #[test]
    fn single_gtid_errors() {
        assert_eq!(
            err::<MariaGtid>("0-x-3"),
            r#"invalid GTID "0-x-3" at byte 2: server_id is not a number"#
        );
        assert_eq!(
            err::<MariaGtid>("0-1"),
            r#"invalid GTID "0-1" at byte 0: expected domain-server_id-seq, found "0-1""#
        );
        assert_eq!(
            err::<MariaGtid>("4294967296-1-1"),
            r#"invalid GTID "4294967296-1-1" at byte 0: domain 4294967296 overflows u32"#
        );
        assert_eq!(
            err::<MariaGtid>("0-1-18446744073709551616"),
            r#"invalid GTID "0-1-18446744073709551616" at byte 4: seq 18446744073709551616 overflows u64"#
        );
        assert!(err::<MariaGtid>("0-1-").contains("seq is missing"));
        assert!(err::<MariaGtid>("0--1-5").contains("expected domain-server_id-seq"));
        assert!(err::<MariaGtid>("0-+1-5").contains("server_id is not a number"));
        assert!(err::<MariaGtid>("").contains("expected domain-server_id-seq"));
    }

    #[test]
    fn positions_from_mariadb_10_11() {
        let p = pos("0-1-100,1-3-5");
        assert_eq!(p.get(0), Some(&MariaGtid::new(0, 1, 100)));
        assert_eq!(p.seq(1), 5);
        assert_eq!(p.seq(2), 0);
        assert_eq!(p.domains().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(p.to_string(), "0-1-100,1-3-5");
        assert_eq!(pos(" 1-3-5 ,\n0-1-100\n").to_string(), "0-1-100,1-3-5");
        assert!(pos("").is_empty());
        assert_eq!(pos("").to_string(), "");
        assert_eq!(pos("0-0-0").len(), 1);
        assert!(pos("0-0-0").to_set().is_empty());
    }

    #[test]
    fn position_errors() {
        assert_eq!(
            err::<MariaGtidPos>("0-2-2,0-1-7"),
            r#"invalid GTID "0-2-2,0-1-7" at byte 6: duplicate domain 0 (a position holds one GTID per domain; is this a gtid_binlog_state?)"#
        );
        assert_eq!(
            err::<MariaGtidPos>("0-1-5, 1-x-3"),
            r#"invalid GTID "0-1-5, 1-x-3" at byte 9: server_id is not a number"#
        );
        assert!(err::<MariaGtidPos>("0-1-5,").contains("empty entry"));
    }

    #[test]
    fn covers_and_missing_from() {
        let master = pos("0-1-100,1-3-5");
        let replica = pos("0-1-90");
        assert!(master.covers(&replica));
        assert!(!replica.covers(&master));
        let missing = master.missing_from(&replica);
        assert_eq!(
            missing,
            vec![
                MariaGtidRange {
                    domain: 0,
                    server_id: 1,
                    first_seq: 91,
                    last_seq: 100
                },
                MariaGtidRange {
                    domain: 1,
                    server_id: 3,
                    first_seq: 1,
                    last_seq: 5
                },
            ]
        );
        assert_eq!(missing[0].to_string(), "0-1-91..0-1-100");
        assert_eq!(missing[0].count(), 10);
        assert!(replica.missing_from(&master).is_empty());
        // seq 0 is nothing, whether present or not.
        assert!(pos("").covers(&pos("5-1-0")));
        assert!(pos("0-1-1").covers(&pos("0-1-1")));
    }

    #[test]
    fn merge_max_takes_higher_seq() {
        let a = pos("0-1-100,1-3-5");
        let b = pos("0-2-101,1-4-5,2-1-1");
        assert_eq!(a.merge_max(&b).to_string(), "0-2-101,1-3-5,2-1-1");
        assert_eq!(b.merge_max(&a).to_string(), "0-2-101,1-4-5,2-1-1");
    }

    #[test]
    fn to_set_counts_from_one() {
        let set = pos("0-1-100,1-3-5,2-1-0").to_set();
        assert_eq!(set.to_string(), "0:1-100,1:1-5");
        assert_eq!(set.count(), 105);
    }

    #[test]
    fn ranges() {
        let one: MariaGtidRange = "0-1-5".parse().unwrap();
        assert_eq!((one.first_seq, one.last_seq, one.count()), (5, 5, 1));
        assert_eq!(one.to_string(), "0-1-5");
        let run: MariaGtidRange = "0-1-5..0-1-9".parse().unwrap();
        assert_eq!(run.to_string(), "0-1-5..0-1-9");
        assert_eq!(run.first(), MariaGtid::new(0, 1, 5));
        assert_eq!(run.last(), MariaGtid::new(0, 1, 9));
        assert!(err::<MariaGtidRange>("0-1-9..0-1-5").contains("reversed"));
        assert!(err::<MariaGtidRange>("0-1-5..0-2-9").contains("same domain"));
        assert!(err::<MariaGtidRange>("0-1-5..").contains("expected"));
    }

    #[test]
    fn binlog_state_with_errant_write() {
        // Replica (server 2) wrote seq 2 locally while replicating server 1.
        let replica = state("0-2-2,0-1-7");
        assert_eq!(replica.to_string(), "0-1-7,0-2-2");
        assert_eq!(replica.get(0, 2), Some(2));
        assert_eq!(replica.get(0, 3), None);
        assert_eq!(replica.position().to_string(), "0-1-7");
        let master = state("0-1-7");
        assert_eq!(
            replica.errant_against(&master),
            vec![MariaGtid::new(0, 2, 2)]
        );
        assert!(master.errant_against(&replica).is_empty());
    }

    #[test]
    fn errant_against_ahead_of_master() {
        let master = state("0-1-10,0-2-2,1-5-3");
        let replica = state("1-5-4,0-1-10,0-2-2,0-3-0,2-9-1");
        assert_eq!(
            replica.errant_against(&master),
            vec![MariaGtid::new(1, 5, 4), MariaGtid::new(2, 9, 1)]
        );
        assert_eq!(replica.position().to_string(), "0-1-10,1-5-4,2-9-1");
    }

    #[test]
    fn binlog_state_errors() {
        assert_eq!(
            err::<MariaBinlogState>("0-1-7,0-2-2,\n0-1-8"),
            r#"invalid GTID "0-1-7,0-2-2,\n0-1-8" at byte 13: duplicate entry for domain 0 server_id 1"#
        );
        assert!(state("").is_empty());
    }

    #[test]
    fn serde_as_strings() {
        let p = pos("0-1-100,1-3-5");
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""0-1-100,1-3-5""#);
        assert_eq!(
            serde_json::from_str::<MariaGtidPos>(r#""0-1-100,1-3-5""#).unwrap(),
            p
        );
        let s = state("0-2-2,0-1-7");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#""0-1-7,0-2-2""#);
        assert_eq!(serde_json::from_str::<MariaBinlogState>(&json).unwrap(), s);
        let g = MariaGtid::new(0, 1, 7);
        assert_eq!(serde_json::to_string(&g).unwrap(), r#""0-1-7""#);
        let r: MariaGtidRange = "0-1-5..0-1-9".parse().unwrap();
        assert_eq!(
            serde_json::from_str::<MariaGtidRange>(&serde_json::to_string(&r).unwrap()).unwrap(),
            r
        );
        let e = serde_json::from_str::<MariaGtidPos>(r#""0-x-3""#).unwrap_err();
        assert!(e.to_string().contains("server_id is not a number"), "{e}");
    }
}
