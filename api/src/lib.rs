//! The wire contract of myha, in one place: every JSON body the agents,
//! the manager, the routers and the CLI exchange, and the paths they use.
//!
//! Types only: no I/O and no policy. The bearer-token client builder and
//! the one `require_token` layer live in `myha-http`, which carries the
//! transport (TLS, limits); the domain types a report or a router view is
//! made of (GTID sets, snapshots) are `myha-core`'s and re-exported here.
//! A change of the JSON on the wire is a change of this crate.

pub mod agent;
pub mod console;
pub mod coordination;
pub mod journal;
pub mod operation;
pub mod paths;
pub mod requests;
pub mod router;
pub mod status;
pub mod watch;

/// What an agent reports to the manager, and the manager's answer.
pub use myha_core::report::{AgentReport, MasterView, ReportAck, ServerFacts};
/// What a router is told: the writer and the readers of a cluster.
pub use myha_core::routing::{Backend, RouterView};
