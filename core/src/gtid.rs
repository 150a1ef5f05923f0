//! GTID arithmetic (being written).
