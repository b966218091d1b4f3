//! The gRPC hop secured: a throwaway PKI (server and client certificates, expired ones, a second
//! CA), a tokens file with hashes, and a config file of callers and tenants.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, string::Ia5String,
};
use session_proto::caller::CallerOptions;
use sha2::{Digest, Sha256};

/// A certificate authority that issues into a directory.
pub struct Pki {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

/// A certificate and its key on disk.
#[derive(Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`, writing into `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, file: &str) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// A client certificate naming `uri` (a SPIFFE-style id); `expired` dates it in the past.
    pub fn client(&self, file: &str, uri: &str, expired: bool) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(Ia5String::try_from(uri).unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue(file, params)
    }

    /// A client certificate of this CA that names no identity (no URI or DNS SAN).
    pub fn client_without_identity(&self, file: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params)
    }

    fn issue(&self, file: &str, mut params: CertificateParams) -> Issued {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{} {file}", self.name));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// A secured set-up: TLS with a server certificate, optional mutual TLS, tokens and callers.
pub struct Secured {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub server: Issued,
    pub tokens_file: PathBuf,
    pub config_file: PathBuf,
    mtls: bool,
}

/// The token of the caller `gateway` (default tenant, every RPC).
pub const GATEWAY_TOKEN: &str = "gw-7c1d0b6a2f4e48e1b3a9d5f0c2e4a6b8";

impl Secured {
    /// TLS plus bearer tokens; `config` is appended to a config file that already requires auth
    /// and knows the caller `gateway` (default tenant) with [`GATEWAY_TOKEN`].
    pub fn new(tokens: &[(&str, &str)], config: &str) -> Self {
        Self::build(tokens, config, false)
    }

    /// Like [`Secured::new`], with mutual TLS against the set-up's CA.
    pub fn mtls(tokens: &[(&str, &str)], config: &str) -> Self {
        Self::build(tokens, config, true)
    }

    fn build(tokens: &[(&str, &str)], config: &str, mtls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "main");
        let server = pki.server("server");
        let tokens_file = dir.path().join("tokens.toml");
        let mut all = vec![("gateway", GATEWAY_TOKEN)];
        all.extend_from_slice(tokens);
        write_tokens(&tokens_file, &all);
        let config_file = dir.path().join("config.toml");
        std::fs::write(
            &config_file,
            format!(
                "[auth]\nrequired = true\nreload_interval = \"200ms\"\n\n\
                 [[auth.callers]]\nidentity = \"gateway\"\nmethods = [\"*\"]\n\n{config}\n"
            ),
        )
        .unwrap();
        Self {
            dir,
            pki,
            server,
            tokens_file,
            config_file,
            mtls,
        }
    }

    /// The service's environment.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("VALKEY_SESSIONS_CONFIG".into(), path(&self.config_file)),
            ("GRPC_TLS_CERT_FILE".into(), path(&self.server.cert)),
            ("GRPC_TLS_KEY_FILE".into(), path(&self.server.key)),
            ("GRPC_AUTH_TOKENS_FILE".into(), path(&self.tokens_file)),
            (
                "VALKEY_SESSIONS_GRPC__TLS__RELOAD_INTERVAL".into(),
                "200ms".into(),
            ),
        ];
        if self.mtls {
            env.push(("GRPC_TLS_CLIENT_CA_FILE".into(), path(&self.pki.ca)));
        }
        env
    }

    /// A caller trusting the CA and sending `token`.
    pub fn caller(&self, token: Option<&str>) -> CallerOptions {
        let token_file = token.map(|t| {
            let file = self.dir.path().join(format!("token-{}", hash_hex(t)));
            std::fs::write(&file, t).unwrap();
            file
        });
        CallerOptions {
            ca_file: Some(self.pki.ca.clone()),
            cert_file: None,
            key_file: None,
            token_file,
            allow_token_over_plaintext: false,
        }
    }

    /// A caller presenting a client certificate (and no token).
    pub fn cert_caller(&self, issued: &Issued) -> CallerOptions {
        CallerOptions {
            ca_file: Some(self.pki.ca.clone()),
            cert_file: Some(issued.cert.clone()),
            key_file: Some(issued.key.clone()),
            token_file: None,
            allow_token_over_plaintext: false,
        }
    }
}

/// Writes a tokens file of `(identity, token)` pairs, as hashes.
pub fn write_tokens(file: &Path, tokens: &[(&str, &str)]) {
    let text: String = tokens
        .iter()
        .map(|(identity, token)| {
            format!(
                "[[token]]\nidentity = \"{identity}\"\nsha256 = \"{}\"\n",
                hash_hex(token)
            )
        })
        .collect();
    // Write then rename: a reader never sees half a file (the way secrets are swapped).
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The SHA-256 of a token in hex, as the tokens file holds it.
pub fn hash_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
