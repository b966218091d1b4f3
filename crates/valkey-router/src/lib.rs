//! Routes one-key Valkey commands to the node that serves the key, on a standalone Valkey or a
//! cluster: the slot table, a plain fred client per node, MOVED, ASK and TRYAGAIN, replica reads
//! with READONLY, and a health probe that makes commands for a dead shard fail at once.
//!
//! It exists because fred 10.1's cluster client cannot follow ASK (the `fred_follows_ask` test
//! shows it) and stalls every shard while one reconnects (nodes.rs). It knows nothing of
//! sessions: the day fred does both, this crate can be deleted and the store can use fred's
//! cluster client.

pub mod deadline;
mod error;
mod lua;
mod memory;
mod nodes;
mod route;
mod topology;
mod valkey;

pub use error::{RouteError, describe, is_auth_failure};
pub use lua::{
    load as load_scripts, run as run_script, run_index_optional as run_script_index_optional,
};
pub use nodes::Template;
pub use route::Lane;
pub use valkey::{Probe, Valkey};
