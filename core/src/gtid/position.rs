//! [`GtidPosition`]: what a server has executed, tagged with its flavor.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{GtidError, GtidSet, MariaGtidPos, MysqlGtidSet};

/// What a server has executed, in its flavor's native form: a MariaDB
/// position (`@@gtid_current_pos` / `@@gtid_binlog_pos`) or a MySQL GTID
/// set (`@@gtid_executed`).
///
/// Serializes as `{"flavor":"mariadb","gtid":"0-1-100,1-3-5"}` or
/// `{"flavor":"mysql","gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"}`
/// (the `gtid` field holds the canonical string form). Displays as the
/// inner value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "flavor", content = "gtid", rename_all = "lowercase")]
pub enum GtidPosition {
    /// A MariaDB GTID position.
    Mariadb(MariaGtidPos),
    /// A MySQL GTID set.
    Mysql(MysqlGtidSet),
}

impl GtidPosition {
    /// The transactions executed, flavor-neutral.
    pub fn to_set(&self) -> GtidSet {
        match self {
            GtidPosition::Mariadb(pos) => pos.to_set(),
            GtidPosition::Mysql(set) => GtidSet::from(set),
        }
    }

    /// Whether no transaction was executed. (A MariaDB position holding
    /// only seq-0 entries counts as empty.)
    pub fn is_empty(&self) -> bool {
        match self {
            GtidPosition::Mariadb(pos) => pos.iter().all(|gtid| gtid.seq == 0),
            GtidPosition::Mysql(set) => set.is_empty(),
        }
    }

    /// Whether `self` has executed everything `other` has.
    ///
    /// # Errors
    /// [`GtidError::FlavorMismatch`] when the flavors differ.
    pub fn covers(&self, other: &GtidPosition) -> Result<bool, GtidError> {
        match (self, other) {
            (GtidPosition::Mariadb(mine), GtidPosition::Mariadb(theirs)) => Ok(mine.covers(theirs)),
            (GtidPosition::Mysql(mine), GtidPosition::Mysql(theirs)) => Ok(theirs.is_subset(mine)),
            _ => Err(GtidError::FlavorMismatch),
        }
    }

    /// The transactions `self` has executed and `other` has not
    /// (`self − other`).
    ///
    /// # Errors
    /// [`GtidError::FlavorMismatch`] when the flavors differ.
    pub fn missing_from(&self, other: &GtidPosition) -> Result<GtidSet, GtidError> {
        match (self, other) {
            (GtidPosition::Mariadb(_), GtidPosition::Mariadb(_))
            | (GtidPosition::Mysql(_), GtidPosition::Mysql(_)) => {
                Ok(self.to_set().difference(&other.to_set()))
            }
            _ => Err(GtidError::FlavorMismatch),
        }
    }
}

impl From<MariaGtidPos> for GtidPosition {
    fn from(pos: MariaGtidPos) -> Self {
        GtidPosition::Mariadb(pos)
    }
}

impl From<MysqlGtidSet> for GtidPosition {
    fn from(set: MysqlGtidSet) -> Self {
        GtidPosition::Mysql(set)
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidPosition::Mariadb(pos) => pos.fmt(f),
            GtidPosition::Mysql(set) => set.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn maria(s: &str) -> GtidPosition {
        GtidPosition::Mariadb(s.parse().unwrap())
    }

    fn mysql(s: &str) -> GtidPosition {
        GtidPosition::Mysql(s.parse().unwrap())
    }

    #[test]
    fn mariadb_comparisons() {
        let master = maria("0-1-100,1-3-5");
        let replica = maria("0-1-90");
        assert!(master.covers(&replica).unwrap());
        assert!(!replica.covers(&master).unwrap());
        assert_eq!(
            master.missing_from(&replica).unwrap().to_string(),
            "0:91-100,1:1-5"
        );
        assert!(replica.missing_from(&master).unwrap().is_empty());
        assert_eq!(master.to_string(), "0-1-100,1-3-5");
        assert!(maria("").is_empty());
        assert!(maria("0-0-0").is_empty());
        assert!(!replica.is_empty());
    }

    #[test]
    fn mysql_comparisons() {
        let master = mysql(&format!("{UUID}:1-10:t:1-2"));
        let replica = mysql(&format!("{UUID}:1-8"));
        assert!(master.covers(&replica).unwrap());
        assert!(!replica.covers(&master).unwrap());
        assert_eq!(
            master.missing_from(&replica).unwrap().to_string(),
            format!("{UUID}:9-10:t:1-2")
        );
        assert!(mysql("").is_empty());
        assert_eq!(replica.to_string(), format!("{UUID}:1-8"));
    }

    #[test]
    fn flavors_do_not_mix() {
        let a = maria("0-1-1");
        let b = mysql(&format!("{UUID}:1"));
        assert_eq!(a.covers(&b), Err(GtidError::FlavorMismatch));
        assert_eq!(b.missing_from(&a), Err(GtidError::FlavorMismatch));
        assert_eq!(
            GtidError::FlavorMismatch.to_string(),
            "cannot compare a MariaDB GTID position with a MySQL GTID set"
        );
    }

    #[test]
    fn serde_is_flavor_tagged() {
        let a = maria("0-1-100,1-3-5");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"flavor":"mariadb","gtid":"0-1-100,1-3-5"}"#);
        assert_eq!(serde_json::from_str::<GtidPosition>(&json).unwrap(), a);

        let b = mysql(&format!("{UUID}:1-5"));
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, format!(r#"{{"flavor":"mysql","gtid":"{UUID}:1-5"}}"#));
        assert_eq!(serde_json::from_str::<GtidPosition>(&json).unwrap(), b);

        let bad = r#"{"flavor":"mariadb","gtid":"0-1"}"#;
        assert!(serde_json::from_str::<GtidPosition>(bad).is_err());
    }
}
