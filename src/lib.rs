//! valkey-sessions: a gRPC session service backed by Valkey.
//!
//! The request path reads top to bottom: the gate layer ([`layers`]) authenticates and admits,
//! [`service`] validates and maps to gRPC once, session-store talks to Valkey through
//! valkey-router, session-core holds the rules. [`server`] builds it all and serves it on a
//! socket; [`config`] puts the sections of the configuration together.

mod auth;
pub mod config;
mod health;
mod layers;
pub mod runtime;
pub mod server;
mod service;
pub mod telemetry;
