//! The service's integration tests, one module per behaviour family, against real valkey-server
//! processes and the real binaries (crates/test-support). The slow fault, chaos and soak runs are
//! in `tests/slow`.

mod api;
mod capacity;
mod cloud;
mod durability;
mod expiry;
mod near_cache;
mod operations;
mod principals;
mod proposed_ids;
mod resilience;
mod secrets;
mod security;
mod tower_sessions_adapter;
mod valkey_auth;
