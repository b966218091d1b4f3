//! valkey-sessions: a gRPC session service backed by Valkey.
//!
//! The request path reads top to bottom: [`service`] validates and maps, [`store`] talks to
//! Valkey, [`session`] holds the rules. [`server`] wires it all to a socket.

pub mod auth;
pub mod client;
pub mod config;
pub mod gateway;
pub mod health;
pub mod layers;
pub mod proto;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod tls;

pub use proto::session_service_client::SessionServiceClient;
