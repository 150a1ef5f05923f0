//! The error type of the GTID module.

/// Why a GTID string could not be parsed, or two positions compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    /// `input` is not a valid GTID / GTID set / position; `position` is the
    /// byte offset in `input` where the problem was found.
    #[error("invalid GTID {input:?} at byte {position}: {reason}")]
    Parse {
        /// The whole text that was being parsed.
        input: String,
        /// Byte offset of the offending part within `input`.
        position: usize,
        /// What is wrong there, in plain words.
        reason: String,
    },
    /// A MariaDB position was compared with a MySQL GTID set.
    #[error("cannot compare a MariaDB GTID position with a MySQL GTID set")]
    FlavorMismatch,
}
