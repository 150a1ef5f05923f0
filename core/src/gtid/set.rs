//! [`GtidSet`]: the flavor-neutral view of executed transactions, and the
//! per-key set algebra shared with [`MysqlGtidSet`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::mysql::{parse_sid_entry, EntryWriter};
use super::text::{self, Span};
use super::{GtidError, IntervalSet, MariaGtidPos, MysqlGtidSet, Sid};

/// What a set of transaction numbers belongs to: a MariaDB replication
/// domain or a MySQL source id. Domains sort before source ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GtidKey {
    /// A MariaDB domain id; its values are seq numbers.
    Domain(u32),
    /// A MySQL source id (UUID and optional tag); its values are GNOs.
    Sid(Sid),
}

impl fmt::Display for GtidKey {
    /// A domain prints as its number (`0`), a source id as `uuid[:tag]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidKey::Domain(domain) => write!(f, "{domain}"),
            GtidKey::Sid(sid) => write!(f, "{sid}"),
        }
    }
}

/// A flavor-neutral set of transactions: for each [`GtidKey`], the set of
/// its transaction numbers (never empty).
///
/// MariaDB domain `d` at seq `n` is `Domain(d)` with `1..=n`, so positions
/// of both flavors can be compared and subtracted the same way.
///
/// Formats like a MySQL GTID set, with domains first as `domain:intervals`:
/// `0:1-100,1:1-5,3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag:2`. The
/// parser accepts exactly that form (intervals may include 0 here).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GtidSet {
    sets: BTreeMap<GtidKey, IntervalSet>,
}

impl GtidSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `start..=end` to `key`'s transactions.
    pub fn insert_range(&mut self, key: GtidKey, start: u64, end: u64) {
        insert_set(&mut self.sets, key, IntervalSet::from_range(start, end));
    }

    /// Adds (unions) `set` to `key`'s transactions.
    pub fn insert_set(&mut self, key: GtidKey, set: IntervalSet) {
        insert_set(&mut self.sets, key, set);
    }

    /// The transactions of `key`, if it has any.
    pub fn get(&self, key: &GtidKey) -> Option<&IntervalSet> {
        self.sets.get(key)
    }

    /// Whether transaction `n` of `key` is in the set.
    pub fn contains(&self, key: &GtidKey, n: u64) -> bool {
        self.sets.get(key).is_some_and(|set| set.contains(n))
    }

    /// Keys with their (non-empty) transactions, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&GtidKey, &IntervalSet)> {
        self.sets.iter()
    }

    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Number of transactions (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        count(&self.sets)
    }

    /// Transactions in `self` or `other`.
    pub fn union(&self, other: &Self) -> Self {
        Self {
            sets: union(&self.sets, &other.sets),
        }
    }

    /// Transactions in both `self` and `other`.
    pub fn intersection(&self, other: &Self) -> Self {
        Self {
            sets: intersection(&self.sets, &other.sets),
        }
    }

    /// Transactions in `self` but not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        Self {
            sets: difference(&self.sets, &other.sets),
        }
    }

    /// Whether every transaction of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        is_subset(&self.sets, &other.sets)
    }
}

impl FromIterator<(GtidKey, IntervalSet)> for GtidSet {
    /// Collects per-key sets, uniting those of repeated keys.
    fn from_iter<I: IntoIterator<Item = (GtidKey, IntervalSet)>>(iter: I) -> Self {
        let mut sets = BTreeMap::new();
        for (key, set) in iter {
            insert_set(&mut sets, key, set);
        }
        Self { sets }
    }
}

impl From<&MysqlGtidSet> for GtidSet {
    fn from(set: &MysqlGtidSet) -> Self {
        set.iter()
            .map(|(sid, set)| (GtidKey::Sid(sid.clone()), set.clone()))
            .collect()
    }
}

impl From<MysqlGtidSet> for GtidSet {
    fn from(set: MysqlGtidSet) -> Self {
        Self::from(&set)
    }
}

impl From<&MariaGtidPos> for GtidSet {
    fn from(pos: &MariaGtidPos) -> Self {
        pos.to_set()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut writer = EntryWriter::default();
        for (key, set) in &self.sets {
            match key {
                GtidKey::Domain(domain) => {
                    writer.separate(f)?;
                    write!(f, "{domain}:{set}")?;
                }
                GtidKey::Sid(sid) => writer.sid(f, sid, set)?,
            }
        }
        Ok(())
    }
}

impl FromStr for GtidSet {
    type Err = GtidError;

    /// Parses the [`Display`](fmt::Display) form; blank text is empty.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut sets = BTreeMap::new();
        for entry in text::entries(s)? {
            let head = entry.split_once(":").map_or(entry, |(head, _)| head);
            if !head.text.is_empty() && head.text.bytes().all(|b| b.is_ascii_digit()) {
                let (domain, set) = parse_domain_entry(s, entry)?;
                insert_set(&mut sets, GtidKey::Domain(domain), set);
            } else {
                parse_sid_entry(s, entry, 0, |sid, start, end| {
                    insert_set(
                        &mut sets,
                        GtidKey::Sid(sid),
                        IntervalSet::from_range(start, end),
                    );
                })?;
            }
        }
        Ok(Self { sets })
    }
}

/// Parses `domain:intervals`.
fn parse_domain_entry(input: &str, entry: Span<'_>) -> Result<(u32, IntervalSet), GtidError> {
    let Some((head, intervals)) = entry.split_once(":") else {
        return Err(text::error(
            input,
            entry.end(),
            format!("domain {} has no intervals", entry.text),
        ));
    };
    let domain = text::number(input, head, "domain")?;
    if let Some(part) = intervals.split(':').find(|part| {
        part.text
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    }) {
        return Err(text::error(
            input,
            part.offset,
            "tags apply only to MySQL UUIDs, not MariaDB domains",
        ));
    }
    Ok((domain, IntervalSet::parse_span(input, intervals, 0)?))
}

serde_via_string!(GtidSet);

// --- Per-key set algebra, shared by `GtidSet` and `MysqlGtidSet`. ----------
// Invariant of every map: no key maps to an empty set.

/// Unites `set` into `key`'s entry, keeping the no-empty-entry invariant.
pub(super) fn insert_set<K: Ord>(sets: &mut BTreeMap<K, IntervalSet>, key: K, set: IntervalSet) {
    if set.is_empty() {
        return;
    }
    let entry = sets.entry(key).or_default();
    *entry = entry.union(&set);
}

pub(super) fn union<K: Ord + Clone>(
    a: &BTreeMap<K, IntervalSet>,
    b: &BTreeMap<K, IntervalSet>,
) -> BTreeMap<K, IntervalSet> {
    let mut out = a.clone();
    for (key, set) in b {
        insert_set(&mut out, key.clone(), set.clone());
    }
    out
}

pub(super) fn intersection<K: Ord + Clone>(
    a: &BTreeMap<K, IntervalSet>,
    b: &BTreeMap<K, IntervalSet>,
) -> BTreeMap<K, IntervalSet> {
    a.iter()
        .filter_map(|(key, set)| {
            let common = set.intersection(b.get(key)?);
            (!common.is_empty()).then(|| (key.clone(), common))
        })
        .collect()
}

pub(super) fn difference<K: Ord + Clone>(
    a: &BTreeMap<K, IntervalSet>,
    b: &BTreeMap<K, IntervalSet>,
) -> BTreeMap<K, IntervalSet> {
    a.iter()
        .filter_map(|(key, set)| {
            let rest = match b.get(key) {
                Some(other) => set.difference(other),
                None => set.clone(),
            };
            (!rest.is_empty()).then(|| (key.clone(), rest))
        })
        .collect()
}

pub(super) fn is_subset<K: Ord>(
    a: &BTreeMap<K, IntervalSet>,
    b: &BTreeMap<K, IntervalSet>,
) -> bool {
    a.iter()
        .all(|(key, set)| b.get(key).is_some_and(|other| set.is_subset(other)))
}

pub(super) fn count<K>(sets: &BTreeMap<K, IntervalSet>) -> u64 {
    sets.values()
        .fold(0u64, |n, set| n.saturating_add(set.count()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const UUID_A: &str = "2174b383-5441-11e8-b90a-c80aa9429562";
    const UUID_B: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mixed_keys_roundtrip() {
        let text = format!("0:1-100,7:3,{UUID_A}:1-3:7-9,{UUID_B}:1-5:mytag:1-3");
        let set: GtidSet = text.parse().unwrap();
        assert_eq!(set.to_string(), text);
        assert_eq!(set.count(), 100 + 1 + 6 + 5 + 3);
        assert!(set.contains(&GtidKey::Domain(0), 100));
        assert!(!set.contains(&GtidKey::Domain(1), 1));
    }

    #[test]
    fn from_mysql_set_formats_identically() {
        let text = format!("{UUID_A}:1-3:7-9,{UUID_B}:1-5:mytag:1-3");
        let mysql: MysqlGtidSet = text.parse().unwrap();
        assert_eq!(GtidSet::from(&mysql).to_string(), text);
    }

    #[test]
    fn algebra() {
        let a: GtidSet = format!("0:1-100,{UUID_A}:1-5").parse().unwrap();
        let b: GtidSet = "0:1-90,1:1-5".parse().unwrap();
        assert_eq!(
            a.difference(&b).to_string(),
            format!("0:91-100,{UUID_A}:1-5")
        );
        assert_eq!(a.intersection(&b).to_string(), "0:1-90");
        assert_eq!(
            a.union(&b).to_string(),
            format!("0:1-100,1:1-5,{UUID_A}:1-5")
        );
        assert!(a.intersection(&b).is_subset(&a));
        assert!(!a.is_subset(&b));
        assert!(GtidSet::new().is_subset(&b));
    }

    #[test]
    fn parse_errors() {
        let err = "0:1-5:tag:1".parse::<GtidSet>().unwrap_err();
        assert!(
            err.to_string()
                .contains("at byte 6: tags apply only to MySQL UUIDs"),
            "{err}"
        );
        assert!("0".parse::<GtidSet>().is_err());
        assert!("0:".parse::<GtidSet>().is_err());
        assert!("4294967296:1".parse::<GtidSet>().is_err());
        assert!("zz:1".parse::<GtidSet>().is_err());
    }

    #[test]
    fn serde_as_string() {
        let set: GtidSet = "0:1-5".parse().unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#""0:1-5""#);
        assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), set);
    }
}
