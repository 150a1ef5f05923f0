//! [`IntervalSet`]: a set of `u64` stored as sorted inclusive ranges.

use std::fmt;
use std::str::FromStr;

use super::text::{self, Span};
use super::GtidError;

/// A set of `u64` values, stored as sorted, disjoint, non-adjacent inclusive
/// ranges (`1-5:7` is stored as `[(1, 5), (7, 7)]`, never as
/// `[(1, 3), (4, 5), (7, 7)]`). This is the shape of the transaction numbers
/// of one MySQL source id, or of the seqs of one MariaDB domain.
///
/// Formats as MySQL does: `1-5:7:9-10` (the empty set is `""`), and parses
/// the same form back, merging overlapping or unsorted intervals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct IntervalSet {
    /// Invariant: sorted, each `start <= end`, and each range starts at
    /// least two past the end of the previous one.
    ranges: Vec<(u64, u64)>,
}

impl IntervalSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set `start..=end` (empty when `start > end`).
    pub fn from_range(start: u64, end: u64) -> Self {
        Self::from_ranges([(start, end)])
    }

    /// Builds a set from inclusive ranges in any order, merging overlapping
    /// and adjacent ones. A range with `start > end` is empty and ignored.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut ranges: Vec<_> = ranges.into_iter().filter(|(s, e)| s <= e).collect();
        ranges.sort_unstable();
        Self {
            ranges: coalesce(ranges),
        }
    }

    /// Adds `start..=end` (nothing when `start > end`).
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start > end {
            return;
        }
        // Ranges `lo..hi` overlap or touch the new one; they are replaced by
        // their union with it.
        let lo = self
            .ranges
            .partition_point(|&(_, e)| e.saturating_add(1) < start);
        let hi = self
            .ranges
            .partition_point(|&(s, _)| s <= end.saturating_add(1));
        let mut merged = (start, end);
        if lo < hi {
            merged.0 = merged.0.min(self.ranges[lo].0);
            merged.1 = merged.1.max(self.ranges[hi - 1].1);
        }
        self.ranges.splice(lo..hi, [merged]);
    }

    /// Adds the single value `n`.
    pub fn insert(&mut self, n: u64) {
        self.insert_range(n, n);
    }

    /// Whether `n` is in the set.
    pub fn contains(&self, n: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, e)| e < n);
        self.ranges.get(i).is_some_and(|&(s, _)| s <= n)
    }

    /// Whether the set has no values.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of values in the set (saturating at `u64::MAX`: only the full
    /// range `0..=u64::MAX` has more).
    pub fn count(&self) -> u64 {
        self.ranges.iter().fold(0u64, |n, &(s, e)| {
            n.saturating_add((e - s).saturating_add(1))
        })
    }

    /// The sorted, disjoint, non-adjacent inclusive ranges of the set.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The smallest value, if any.
    pub fn min(&self) -> Option<u64> {
        self.ranges.first().map(|&(s, _)| s)
    }

    /// The largest value, if any.
    pub fn max(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, e)| e)
    }

    /// Values in `self` or `other`.
    pub fn union(&self, other: &Self) -> Self {
        let mut a = self.ranges.iter().copied().peekable();
        let mut b = other.ranges.iter().copied().peekable();
        let merged = std::iter::from_fn(|| match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (Some(_), Some(_)) | (None, _) => b.next(),
            (Some(_), None) => a.next(),
        });
        Self {
            ranges: coalesce(merged),
        }
    }

    /// Values in both `self` and `other`.
    pub fn intersection(&self, other: &Self) -> Self {
        let (a, b) = (&self.ranges, &other.ranges);
        let mut ranges = Vec::new();
        let (mut i, mut j) = (0, 0);
        while let (Some(&(a_start, a_end)), Some(&(b_start, b_end))) = (a.get(i), b.get(j)) {
            let (start, end) = (a_start.max(b_start), a_end.min(b_end));
            if start <= end {
                ranges.push((start, end));
            }
            // Drop whichever range ends first: it cannot meet anything further.
            if a_end < b_end {
                i += 1;
            } else {
                j += 1;
            }
        }
        // Pieces come from disjoint, non-adjacent inputs, so they are too.
        Self { ranges }
    }

    /// Values in `self` but not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        let holes = &other.ranges;
        let mut ranges = Vec::new();
        let mut j = 0;
        for &(start, end) in &self.ranges {
            // Skip holes entirely before this range.
            while holes.get(j).is_some_and(|&(_, hole_end)| hole_end < start) {
                j += 1;
            }
            // `cursor` is the first value of `start..=end` not yet decided.
            let mut cursor = Some(start);
            while let (Some(from), Some(&(hole_start, hole_end))) = (cursor, holes.get(j)) {
                if hole_start > end {
                    break;
                }
                if hole_start > from {
                    ranges.push((from, hole_start - 1));
                }
                if hole_end >= end {
                    // This hole may also cover the start of the next range.
                    cursor = None;
                } else {
                    cursor = Some(hole_end + 1);
                    j += 1;
                }
            }
            if let Some(from) = cursor {
                ranges.push((from, end));
            }
        }
        Self { ranges }
    }

    /// Whether every value of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        let outer = &other.ranges;
        let mut j = 0;
        // `other`'s ranges are non-adjacent, so each range of `self` must fit
        // inside a single one of them.
        self.ranges.iter().all(|&(start, end)| {
            while outer.get(j).is_some_and(|&(_, e)| e < start) {
                j += 1;
            }
            outer.get(j).is_some_and(|&(s, e)| s <= start && end <= e)
        })
    }

    /// Whether `self` and `other` have no value in common.
    pub fn is_disjoint(&self, other: &Self) -> bool {
        self.intersection(other).is_empty()
    }

    /// Parses `1-5:7` style intervals (values may be 0) from `span` of
    /// `input`; the caller decides whether an empty set is acceptable.
    pub(super) fn parse_span(input: &str, span: Span<'_>, min: u64) -> Result<Self, GtidError> {
        let mut set = Self::new();
        for part in span.split(':') {
            let (start, end) = text::interval(input, part, min)?;
            set.insert_range(start, end);
        }
        Ok(set)
    }
}

/// Merges sorted ranges into disjoint, non-adjacent ones.
fn coalesce(sorted: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in sorted {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

impl fmt::Display for IntervalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(start, end)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for IntervalSet {
    type Err = GtidError;

    /// Parses `1-5:7:9-10`; blank text is the empty set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let span = Span::whole(s).trim();
        if span.text.is_empty() {
            return Ok(Self::new());
        }
        Self::parse_span(s, span, 0)
    }
}

serde_via_string!(IntervalSet);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn set(s: &str) -> IntervalSet {
        s.parse().unwrap()
    }

    #[test]
    fn normalizes_ranges() {
        let s = IntervalSet::from_ranges([(9, 10), (1, 3), (4, 5), (7, 7), (2, 2), (6, 3)]);
        assert_eq!(s.ranges(), &[(1, 5), (7, 7), (9, 10)]);
        assert_eq!(s.to_string(), "1-5:7:9-10");
        assert_eq!(s.count(), 8);
        assert_eq!(s.min(), Some(1));
        assert_eq!(s.max(), Some(10));
        assert_eq!(IntervalSet::new().max(), None);
        assert_eq!(IntervalSet::new().to_string(), "");
    }

    #[test]
    fn insert_range_merges_neighbours() {
        let mut s = set("1-2:5:9-10:20");
        s.insert_range(3, 9);
        assert_eq!(s.to_string(), "1-10:20");
        s.insert(12);
        s.insert_range(30, 29);
        assert_eq!(s.to_string(), "1-10:12:20");
        s.insert(11);
        assert_eq!(s.to_string(), "1-12:20");
        s.insert_range(0, u64::MAX);
        assert_eq!(s.ranges(), &[(0, u64::MAX)]);
        assert_eq!(s.count(), u64::MAX);
    }

    #[test]
    fn contains_checks_bounds() {
        let s = set("1-5:7");
        assert!(!s.contains(0));
        assert!(s.contains(1) && s.contains(5) && s.contains(7));
        assert!(!s.contains(6) && !s.contains(8));
    }

    #[test]
    fn set_operations() {
        let a = set("1-10:20-30");
        let b = set("5-22:40");
        assert_eq!(a.union(&b).to_string(), "1-30:40");
        assert_eq!(a.intersection(&b).to_string(), "5-10:20-22");
        assert_eq!(a.difference(&b).to_string(), "1-4:23-30");
        assert_eq!(b.difference(&a).to_string(), "11-19:40");
        assert!(set("2-3:21").is_subset(&a));
        assert!(!set("10-11").is_subset(&a));
        assert!(IntervalSet::new().is_subset(&IntervalSet::new()));
        assert!(set("1-3").is_disjoint(&set("4-5")));
    }

    #[test]
    fn difference_at_the_edges_of_u64() {
        let all = IntervalSet::from_range(0, u64::MAX);
        let hole = IntervalSet::from_ranges([(0, 0), (5, 6), (u64::MAX, u64::MAX)]);
        assert_eq!(all.difference(&hole).ranges(), &[(1, 4), (7, u64::MAX - 1)]);
        assert!(all.difference(&all).is_empty());
    }

    #[test]
    fn parse_errors() {
        let err = "1-5:5-3".parse::<IntervalSet>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid GTID "1-5:5-3" at byte 4: interval "5-3" is reversed (start > end)"#
        );
        assert!("1-5::7".parse::<IntervalSet>().is_err());
        assert!("1-".parse::<IntervalSet>().is_err());
        assert!("1-99999999999999999999".parse::<IntervalSet>().is_err());
        assert_eq!(set("5:1-3:2-4").to_string(), "1-5");
    }

    #[test]
    fn serde_as_string() {
        let s = set("1-5:7");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""1-5:7""#);
        assert_eq!(
            serde_json::from_str::<IntervalSet>(r#""1-5:7""#).unwrap(),
            s
        );
    }
}
