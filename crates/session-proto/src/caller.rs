//! How a caller reaches valkey-sessions: plaintext or TLS (own CA, optional client certificate
//! for mutual TLS) and an optional bearer token on every call. Shared by the gateway, the load
//! generator, the health probe and the tests.

use std::path::PathBuf;

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::session_service_client::SessionServiceClient;

/// A session client that authenticates every call.
pub type Client = SessionServiceClient<InterceptedService<Channel, BearerToken>>;

/// Caller credentials and trust, from flags or environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CallerOptions {
    /// PEM CA certificates the service's certificate must chain to (default: the system roots).
    #[arg(long = "service-ca-file", env = "SESSION_SERVICE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    #[arg(long = "service-cert-file", env = "SESSION_SERVICE_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "service-key-file", env = "SESSION_SERVICE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// File holding the bearer token sent as `authorization: Bearer <token>`; refused with an
    /// `http://` URL unless `allow_token_over_plaintext`.
    #[arg(long = "service-token-file", env = "SESSION_SERVICE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Send the token over a plaintext connection: only for a loopback sidecar or a network
    /// that encrypts by itself (a service mesh).
    #[arg(
        long = "service-allow-token-over-plaintext",
        env = "SESSION_SERVICE_ALLOW_TOKEN_OVER_PLAINTEXT"
    )]
    pub allow_token_over_plaintext: bool,
}

impl CallerOptions {
    /// An endpoint for `url`; `https://` URLs get TLS with the configured trust and identity.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| format!("{url}: {e}"))?;
        if !url.starts_with("https://") {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                return Err(format!(
                    "{url}: a CA or client certificate is configured but the URL is not https://"
                ));
            }
            if self.token_file.is_some() && !self.allow_token_over_plaintext {
                return Err(format!(
                    "{url}: a bearer token needs TLS (an https:// URL): it would travel in clear; \
                     SESSION_SERVICE_ALLOW_TOKEN_OVER_PLAINTEXT=true only where the network \
                     encrypts"
                ));
            }
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_file {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read(path)?)),
            None => tls.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => return Err("a client certificate needs both its cert and key files".into()),
        }
        endpoint
            .tls_config(tls)
            .map_err(|e| format!("{url}: TLS: {e}"))
    }

    /// The interceptor adding the bearer token, if one is configured.
    pub fn bearer(&self) -> Result<BearerToken, String> {
        match &self.token_file {
            Some(path) => {
                let raw = String::from_utf8(read(path)?)
                    .map_err(|_| format!("{}: the token is not UTF-8", path.display()))?;
                BearerToken::new(raw.trim())
            }
            None => Ok(BearerToken::none()),
        }
    }

    /// A session client over `channel` that authenticates as configured.
    pub fn client(&self, channel: Channel) -> Result<Client, String> {
        Ok(SessionServiceClient::with_interceptor(
            channel,
            self.bearer()?,
        ))
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Adds `authorization: Bearer <token>` to every call (or nothing, without a token). Its `Debug`
/// never shows the token.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// A token to send.
    pub fn new(token: &str) -> Result<Self, String> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the bearer token must be printable ASCII".to_string())?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }

    /// No token.
    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(***)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_needs_tls_unless_the_network_encrypts() {
        let mut options = CallerOptions {
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        };
        let refused = options.endpoint("http://127.0.0.1:50051").unwrap_err();
        assert!(refused.contains("needs TLS"), "{refused}");
        options.allow_token_over_plaintext = true;
        options.endpoint("http://127.0.0.1:50051").unwrap();
    }
}
