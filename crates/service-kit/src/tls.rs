//! TLS on the gRPC port: rustls with certificates read from files and re-read when they change
//! (new connections get the new certificate; open connections keep theirs), optional mutual TLS,
//! and the caller identity named by a client certificate.

mod accept;

pub use accept::{Conn, PeerInfo, incoming};

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use serde::{Deserialize, Serialize};

/// Where a server's TLS files are; TLS is on when `cert_file` and `key_file` are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes (rotation without restart).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl ServerTlsConfig {
    /// Whether the port speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// A TLS file that could not be used; names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct TlsError {
    /// The file at fault.
    pub path: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The server's current TLS configuration, swapped atomically on rotation.
#[derive(Clone)]
pub struct ServerTls {
    current: Arc<ArcSwap<ServerConfig>>,
    alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// Loads the files named in `cfg` for gRPC (ALPN `h2`); at start-up an error here stops the
    /// process.
    pub fn load(cfg: &ServerTlsConfig) -> Result<Self, TlsError> {
        Self::load_with_alpn(cfg, &[b"h2"])
    }

    /// Loads the files named in `cfg`, offering the given ALPN protocols (HTTP servers add
    /// `http/1.1`).
    pub fn load_with_alpn(cfg: &ServerTlsConfig, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let (config, not_after) = build(cfg, &alpn)?;
        record_expiry(not_after);
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(config)),
            alpn,
        })
    }

    /// Re-reads the files whenever they change; a bad file keeps the last good configuration.
    pub fn watch(&self, cfg: &ServerTlsConfig) {
        let paths = [&cfg.cert_file, &cfg.key_file, &cfg.client_ca_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let current = self.current.clone();
        let cfg = cfg.clone();
        let alpn = self.alpn.clone();
        crate::reload::spawn(
            "grpc tls certificate",
            "grpc_tls_reloads_total",
            paths,
            cfg.reload_interval,
            move || {
                let (config, not_after) = build(&cfg, &alpn).map_err(|e| e.to_string())?;
                current.store(Arc::new(config));
                record_expiry(not_after);
                Ok(())
            },
        );
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }
}

/// The longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn build(cfg: &ServerTlsConfig, alpn: &[Vec<u8>]) -> Result<(ServerConfig, i64), TlsError> {
    let (Some(cert_path), Some(key_path)) = (&cfg.cert_file, &cfg.key_file) else {
        return Err(TlsError {
            path: "grpc.tls".into(),
            problem: "cert_file and key_file are both required".into(),
        });
    };
    let chain = read_certs(cert_path)?;
    let not_after = X509Certificate::from_der(&chain[0])
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| bad(cert_path, format!("not an X.509 certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| bad(key_path, format!("no usable PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert_path, e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_path)? {
                roots
                    .add(cert)
                    .map_err(|e| bad(ca_path, format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(ca_path, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad(key_path, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = alpn.to_vec();
    Ok((config, not_after))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| bad(path, format!("not readable as PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn bad(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

fn record_expiry(not_after: i64) {
    metrics::gauge!("grpc_tls_certificate_expiration_timestamp_seconds").set(not_after as f64);
}

/// The caller identity a client certificate names: its first URI SAN (SPIFFE style), else its
/// first DNS SAN.
pub fn cert_identity(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    let san = cert.subject_alternative_name().ok().flatten()?;
    let names = &san.value.general_names;
    names
        .iter()
        .find_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .or_else(|| {
            names.iter().find_map(|n| match n {
                GeneralName::DNSName(dns) => Some(*dns),
                _ => None,
            })
        })
        .map(Arc::from)
}
