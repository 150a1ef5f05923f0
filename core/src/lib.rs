//! Pure logic of myha: GTID arithmetic, flavor-specific parsing and SQL,
//! the topology model and the decisions taken over it. No I/O here: every
//! function is a function of its arguments, so it can be tested exhaustively.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod auth;
pub mod candidate;
pub mod check;
pub mod detect;
pub mod durable;
pub mod fence;
pub mod flavor;
pub mod gtid;
pub mod leadership;
pub mod reinstate;
pub mod rejoin;
pub mod report;
pub mod routing;
pub mod switchover;
pub mod topology;
pub mod upkeep;
