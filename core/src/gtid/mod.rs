//! GTID arithmetic for MySQL and MariaDB.
//!
//! Both flavors identify every transaction by a *global transaction id*,
//! but they model "what a server has executed" differently:
//!
//! * **MariaDB** GTIDs are `domain-server_id-seq` ([`MariaGtid`]). A
//!   *position* ([`MariaGtidPos`], e.g. `@@gtid_current_pos`) keeps only the
//!   last GTID of each replication domain; in strict mode sequence numbers are
//!   monotonic within a domain, so `0-1-100` means "domain 0 has events
//!   `1..=100`". The *binlog state* ([`MariaBinlogState`],
//!   `@@gtid_binlog_state`) keeps the last seq written by each server in each
//!   domain, which is what exposes errant local writes on a replica.
//! * **MySQL** GTIDs are `uuid:n` (MySQL 8.4 adds tagged `uuid:tag:n`), and a
//!   server's history is an explicit set of intervals per source id
//!   ([`MysqlGtidSet`], e.g. `@@gtid_executed`).
//!
//! Both map onto a flavor-neutral [`GtidSet`]: a set of integers per key,
//! where a key is a MariaDB domain or a MySQL source id ([`GtidKey`]). A
//! MariaDB domain `d` at seq `n` becomes key `Domain(d)` with interval
//! `1..=n`. [`GtidPosition`] is what the rest of myha passes around: the
//! executed position of a server, tagged with its flavor.
//!
//! All parsers are strict (they reject anything a server would not print)
//! and report the offending input and byte offset in [`GtidError::Parse`].
//! Every type here serializes (serde) as its canonical string form, except
//! [`GtidPosition`], which serializes as `{"flavor":"mariadb","gtid":"0-1-5"}`
//! or `{"flavor":"mysql","gtid":"3e11fa47-…:1-5"}`.

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr`, so the
/// type travels as its canonical string form.
macro_rules! serde_via_string {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod error;
mod interval;
mod mariadb;
mod mysql;
mod position;
mod set;
mod text;

#[cfg(test)]
mod proptests;

pub use error::GtidError;
pub use interval::IntervalSet;
pub use mariadb::{MariaBinlogState, MariaGtid, MariaGtidPos, MariaGtidRange};
pub use mysql::{MysqlGtidSet, Sid};
pub use position::GtidPosition;
pub use set::{GtidKey, GtidSet};
