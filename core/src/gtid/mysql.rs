//! MySQL GTIDs: source ids ([`Sid`]) and GTID sets ([`MysqlGtidSet`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::set;
use super::text::{self, Span};
use super::{GtidError, IntervalSet};

/// A MySQL source id: the server UUID, plus a tag for MySQL 8.4 tagged
/// GTIDs (`uuid:tag:n`).
///
/// Displays as `3e11fa47-71ca-11e1-9e33-c80aa9429562` or
/// `3e11fa47-71ca-11e1-9e33-c80aa9429562:mytag`. Ordering is by UUID
/// bytes (the same as by lowercase text), then untagged before tagged, then
/// by tag: the order of MySQL's canonical output. Tags must be lowercase
/// (as the constructors and parsers ensure) for that to hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sid {
    /// The server UUID, in byte order of its text form.
    pub uuid: [u8; 16],
    /// The lowercase tag (`[a-z_][a-z0-9_]{0,31}`), if any.
    pub tag: Option<String>,
}

impl Sid {
    /// An untagged source id.
    pub fn new(uuid: [u8; 16]) -> Self {
        Sid { uuid, tag: None }
    }

    /// A tagged source id; the tag is validated and lowercased.
    pub fn with_tag(uuid: [u8; 16], tag: &str) -> Result<Self, GtidError> {
        let tag = text::tag(tag, Span::whole(tag))?;
        Ok(Sid {
            uuid,
            tag: Some(tag),
        })
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text::write_uuid(f, &self.uuid)?;
        match &self.tag {
            Some(tag) => write!(f, ":{tag}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Sid {
    type Err = GtidError;

    /// Parses `uuid` or `uuid:tag` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let span = Span::whole(s).trim();
        match span.split_once(":") {
            None => Ok(Sid::new(text::uuid(s, span)?)),
            Some((uuid, tag)) => Ok(Sid {
                uuid: text::uuid(s, uuid)?,
                tag: Some(text::tag(s, tag)?),
            }),
        }
    }
}

serde_via_string!(Sid);

/// A MySQL GTID set, such as `@@gtid_executed` or the `Executed_Gtid_Set`
/// of `SHOW REPLICA STATUS`: for each [`Sid`], the set of its transaction
/// numbers (GNOs, starting at 1; no sid maps to an empty set).
///
/// Parses entries `uuid:interval[:interval...]` separated by commas
/// (whitespace and newlines around commas are fine), where an interval is
/// `n` or `a-b` with `1 <= a <= b`, and a MySQL 8.4 tag may start a new
/// group of intervals in an entry: `uuid:1-5:tag:3-4:9`. UUIDs and tags are
/// case-insensitive; overlapping intervals and repeated UUIDs are merged.
///
/// Displays canonically: UUIDs lowercase and sorted, one entry per UUID with
/// its untagged intervals first and then its tags in order, intervals merged
/// and sorted, entries joined by `,` (MySQL itself prints `,\n`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MysqlGtidSet {
    sets: BTreeMap<Sid, IntervalSet>,
}

impl MysqlGtidSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds transactions `start..=end` of `sid`.
    pub fn insert_range(&mut self, sid: Sid, start: u64, end: u64) {
        set::insert_set(&mut self.sets, sid, IntervalSet::from_range(start, end));
    }

    /// Adds (unions) `set` to the transactions of `sid`.
    pub fn insert_set(&mut self, sid: Sid, set: IntervalSet) {
        set::insert_set(&mut self.sets, sid, set);
    }

    /// The transactions of `sid`, if it has any.
    pub fn get(&self, sid: &Sid) -> Option<&IntervalSet> {
        self.sets.get(sid)
    }

    /// Whether transaction `n` of `sid` is in the set.
    pub fn contains(&self, sid: &Sid, n: u64) -> bool {
        self.sets.get(sid).is_some_and(|set| set.contains(n))
    }

    /// Source ids with their (non-empty) transactions, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&Sid, &IntervalSet)> {
        self.sets.iter()
    }

    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Number of transactions (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        set::count(&self.sets)
    }

    /// Transactions in `self` or `other`.
    pub fn union(&self, other: &Self) -> Self {
        Self {
            sets: set::union(&self.sets, &other.sets),
        }
    }

    /// Transactions in both `self` and `other`.
    pub fn intersection(&self, other: &Self) -> Self {
        Self {
            sets: set::intersection(&self.sets, &other.sets),
        }
    }

    /// Transactions in `self` but not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        Self {
            sets: set::difference(&self.sets, &other.sets),
        }
    }

    /// Whether every transaction of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        set::is_subset(&self.sets, &other.sets)
    }
}

impl FromIterator<(Sid, IntervalSet)> for MysqlGtidSet {
    /// Collects per-sid sets, uniting those of repeated sids.
    fn from_iter<I: IntoIterator<Item = (Sid, IntervalSet)>>(iter: I) -> Self {
        let mut sets = BTreeMap::new();
        for (sid, set) in iter {
            set::insert_set(&mut sets, sid, set);
        }
        Self { sets }
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut writer = EntryWriter::default();
        for (sid, set) in &self.sets {
            writer.sid(f, sid, set)?;
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut sets = BTreeMap::new();
        for entry in text::entries(s)? {
            parse_sid_entry(s, entry, 1, |sid, start, end| {
                set::insert_set(&mut sets, sid, IntervalSet::from_range(start, end));
            })?;
        }
        Ok(Self { sets })
    }
}

serde_via_string!(MysqlGtidSet);

/// Parses one entry `uuid:intervals[:tag:intervals...]` of `input`, calling
/// `add` for every interval. Intervals must start at `min` or above. The
/// UUID must be followed by something, and every tag by intervals.
pub(super) fn parse_sid_entry(
    input: &str,
    entry: Span<'_>,
    min: u64,
    mut add: impl FnMut(Sid, u64, u64),
) -> Result<(), GtidError> {
    let mut parts = entry.split(':');
    let Some(uuid_part) = parts.next() else {
        return Err(text::error(input, entry.offset, "entry is empty"));
    };
    let uuid = text::uuid(input, uuid_part)?;
    let mut sid = Sid::new(uuid);
    // Whether the current sid got intervals; a bare UUID needs at least one
    // element after it, a tag needs intervals.
    let mut has_intervals = false;
    let mut has_elements = false;
    for part in parts {
        has_elements = true;
        if part.text.starts_with(|c: char| c.is_ascii_digit()) {
            let (start, end) = text::interval(input, part, min)?;
            add(sid.clone(), start, end);
            has_intervals = true;
        } else if part.text.is_empty() {
            return Err(text::error(input, part.offset, "empty interval"));
        } else {
            if let (Some(tag), false) = (&sid.tag, has_intervals) {
                return Err(tag_without_intervals(input, part.offset, tag));
            }
            sid = Sid {
                uuid,
                tag: Some(text::tag(input, part)?),
            };
            has_intervals = false;
        }
    }
    if !has_elements {
        return Err(text::error(
            input,
            entry.end(),
            format!("UUID {} has no intervals", uuid_part.text),
        ));
    }
    match (&sid.tag, has_intervals) {
        (Some(tag), false) => Err(tag_without_intervals(input, entry.end(), tag)),
        _ => Ok(()),
    }
}

fn tag_without_intervals(input: &str, position: usize, tag: &str) -> GtidError {
    text::error(input, position, format!("tag {tag:?} has no intervals"))
}

/// Writes comma-separated entries, merging consecutive source ids with the
/// same UUID into one `uuid:intervals:tag:intervals` entry.
#[derive(Default)]
pub(super) struct EntryWriter {
    started: bool,
    uuid: Option<[u8; 16]>,
}

impl EntryWriter {
    /// Starts a new entry (writes the comma if one is needed).
    pub fn separate(&mut self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uuid = None;
        if self.started {
            f.write_str(",")?;
        }
        self.started = true;
        Ok(())
    }

    /// Writes `sid`'s intervals, within the current entry if it is for the
    /// same UUID.
    pub fn sid(&mut self, f: &mut fmt::Formatter<'_>, sid: &Sid, set: &IntervalSet) -> fmt::Result {
        if self.uuid != Some(sid.uuid) {
            self.separate(f)?;
            text::write_uuid(f, &sid.uuid)?;
            self.uuid = Some(sid.uuid);
        }
        if let Some(tag) = &sid.tag {
            write!(f, ":{tag}")?;
        }
        write!(f, ":{set}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const UUID_A: &str = "2174b383-5441-11e8-b90a-c80aa9429562";
    const UUID_B: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn parse(s: &str) -> MysqlGtidSet {
        s.parse().unwrap()
    }

    fn sid(s: &str) -> Sid {
        s.parse().unwrap()
    }

    fn parse_err(s: &str) -> String {
        s.parse::<MysqlGtidSet>().unwrap_err().to_string()
    }

    #[test]
    fn show_replica_status_executed_gtid_set() {
        // As printed by MySQL 8.0 `SHOW REPLICA STATUS`.
        let text = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n2174b383-5441-11e8-b90a-c80aa9429562:1-3:7-9";
        let set = parse(text);
        assert_eq!(set.to_string(), format!("{UUID_A}:1-3:7-9,{UUID_B}:1-5"));
        assert_eq!(set.count(), 11);
        assert!(set.contains(&sid(UUID_A), 8));
        assert!(!set.contains(&sid(UUID_A), 5));
        assert_eq!(set.get(&sid(UUID_B)).unwrap().to_string(), "1-5");
        assert_eq!(parse(&set.to_string()), set);
    }

    #[test]
    fn tagged_gtids_mysql_8_4() {
        let set = parse(&format!("{UUID_B}:1-5:mytag:1-3"));
        assert_eq!(set.to_string(), format!("{UUID_B}:1-5:mytag:1-3"));
        assert!(set.contains(&sid(&format!("{UUID_B}:MyTag")), 2));
        assert!(!set.contains(&sid(&format!("{UUID_B}:mytag")), 4));

        // Mixed, unordered, upper case: normalized.
        let set = parse(&format!(
            "{}:Zeta:4:1-2:alpha:9:1,\n {UUID_B}:7:_x:1",
            UUID_B.to_uppercase()
        ));
        assert_eq!(
            set.to_string(),
            format!("{UUID_B}:7:_x:1:alpha:1:9:zeta:1-2:4")
        );
        assert_eq!(set.iter().count(), 4);

        // A UUID with only tagged intervals.
        assert_eq!(
            parse(&format!("{UUID_A}:t:1-2")).to_string(),
            format!("{UUID_A}:t:1-2")
        );
    }

    #[test]
    fn merges_repeated_uuids_and_intervals() {
        let set = parse(&format!("{UUID_A}:5-9:1-3, {UUID_A}:4:8-12"));
        assert_eq!(set.to_string(), format!("{UUID_A}:1-12"));
    }

    #[test]
    fn empty_and_whitespace() {
        assert!(parse("").is_empty());
        assert!(parse(" \n").is_empty());
        assert_eq!(parse("").to_string(), "");
    }

    #[test]
    fn algebra() {
        let executed = parse(&format!("{UUID_A}:1-10,{UUID_B}:1-5"));
        let replica = parse(&format!("{UUID_A}:1-8,{UUID_B}:1-5:t:1"));
        assert_eq!(
            executed.difference(&replica).to_string(),
            format!("{UUID_A}:9-10")
        );
        assert_eq!(
            replica.difference(&executed).to_string(),
            format!("{UUID_B}:t:1")
        );
        assert_eq!(
            executed.intersection(&replica).to_string(),
            format!("{UUID_A}:1-8,{UUID_B}:1-5")
        );
        assert_eq!(
            executed.union(&replica).to_string(),
            format!("{UUID_A}:1-10,{UUID_B}:1-5:t:1")
        );
        assert!(!replica.is_subset(&executed));
        assert!(executed.intersection(&replica).is_subset(&executed));
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        assert_eq!(
            parse_err("3e11fa47-71ca-11e1-9e33-c80aa9429562:5-3"),
            r#"invalid GTID "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-3" at byte 37: interval "5-3" is reversed (start > end)"#
        );
        assert_eq!(
            parse_err("3e11fa47-71ca-11e1-9e33-c80aa9429562:0-3"),
            r#"invalid GTID "3e11fa47-71ca-11e1-9e33-c80aa9429562:0-3" at byte 37: interval "0-3" starts at 0, but transaction numbers start at 1"#
        );
        assert_eq!(
            parse_err("3e11fa47-71ca-11e1-9e33-c80aa942956:1"),
            r#"invalid GTID "3e11fa47-71ca-11e1-9e33-c80aa942956:1" at byte 0: invalid UUID "3e11fa47-71ca-11e1-9e33-c80aa942956": expected 8-4-4-4-12 hexadecimal digits"#
        );
        assert!(parse_err("3e11fa47-71ca-11e1-9e33-c80aa942956g:1").contains("at byte 35"));
        assert!(parse_err(UUID_A).contains("has no intervals"));
        assert!(parse_err(&format!("{UUID_A}:")).contains("empty interval"));
        assert!(parse_err(&format!("{UUID_A}:1-")).contains("interval end is missing"));
        assert!(parse_err(&format!("{UUID_A}:tag")).contains(r#"tag "tag" has no intervals"#));
        assert!(parse_err(&format!("{UUID_A}:a:b:1")).contains(r#"tag "a" has no intervals"#));
        assert!(parse_err(&format!("{UUID_A}:1:9tag:1")).contains("interval is not a number"));
        assert!(parse_err(&format!("{UUID_A}:1:ta-g:1")).contains("invalid character '-'"));
        assert!(parse_err(&format!("{UUID_A}:1-18446744073709551616")).contains("overflows u64"));
        assert!(parse_err(&format!("{UUID_A}:1,,{UUID_B}:1")).contains("empty entry"));
        assert!(parse_err(&format!("{UUID_A}:1 - 2")).contains("not a number"));
    }

    #[test]
    fn sid_display_and_parse() {
        let tagged = Sid::with_tag([0xab; 16], "Tag_1").unwrap();
        assert_eq!(
            tagged.to_string(),
            "abababab-abab-abab-abab-abababababab:tag_1"
        );
        assert_eq!(sid(&tagged.to_string()), tagged);
        assert!(Sid::new([0; 16]) < Sid::new([1; 16]));
        assert!(Sid::new([1; 16]) < tagged.clone());
        assert!(Sid::with_tag([0; 16], "1").is_err());
        assert!(format!("{UUID_A}:").parse::<Sid>().is_err());
    }

    #[test]
    fn serde_as_string() {
        let set = parse(&format!("{UUID_B}:1-5:mytag:1-3"));
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, format!(r#""{UUID_B}:1-5:mytag:1-3""#));
        assert_eq!(serde_json::from_str::<MysqlGtidSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<MysqlGtidSet>(r#""nope:1""#).is_err());
    }
}
