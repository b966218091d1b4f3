//! The security material read at start-up: the gRPC TLS configuration and the token hashes,
//! re-read when the files change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use service_kit::tls::{self, ServerTls};

use crate::{auth::tokens::TokenTable, config::Config};

/// The gRPC TLS configuration and the token hashes. Loading fails on a missing or bad file,
/// naming it, before anything listens.
pub struct Security {
    pub(super) tls: Option<ServerTls>,
    pub(super) tokens: Arc<ArcSwap<TokenTable>>,
}

impl Security {
    /// Reads the files the configuration names.
    pub fn load(config: &Config) -> Result<Self, SecurityError> {
        let tls = if config.grpc.tls.enabled() {
            Some(ServerTls::load(&config.grpc.tls)?)
        } else {
            None
        };
        let tokens = match &config.auth.tokens_file {
            Some(path) => TokenTable::load(path).map_err(SecurityError::Tokens)?,
            None => TokenTable::default(),
        };
        Ok(Self {
            tls,
            tokens: Arc::new(ArcSwap::from_pointee(tokens)),
        })
    }

    /// Starts re-reading the files when they change on disk.
    pub(super) fn watch(&self, config: &Config) {
        if let Some(tls) = &self.tls {
            tls.watch(&config.grpc.tls);
        }
        if let Some(path) = config.auth.tokens_file.clone() {
            let tokens = self.tokens.clone();
            service_kit::reload::spawn(
                "auth tokens",
                "grpc_auth_token_reloads_total",
                vec![path.clone()],
                config.auth.reload_interval,
                move || {
                    tokens.store(Arc::new(TokenTable::load(&path)?));
                    Ok(())
                },
            );
        }
    }
}

/// A security file that could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A TLS certificate, key or CA file.
    #[error("grpc tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The tokens file.
    #[error("auth tokens: {0}")]
    Tokens(String),
}
