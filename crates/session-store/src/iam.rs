//! ElastiCache IAM authentication: the password is a SigV4-presigned `connect` request for the
//! cache and user, valid for 15 minutes, signed in-process with credentials from the standard AWS
//! chain (environment, profile, web identity, the ECS task role, IMDS). Signing is aws-sigv4's;
//! nothing here hand-writes SigV4.

use std::{
    fmt,
    time::{Duration, Instant, SystemTime},
};

use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider},
};
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use fred::{
    error::{Error as FredError, ErrorKind},
    types::config::Server,
};
use tokio::sync::Mutex;

/// How long a token is valid, as ElastiCache requires.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// What a token is for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The ElastiCache user id (equal to its user name for IAM users).
    pub user: String,
    /// The cache's name: the replication group id or serverless cache name.
    pub cache_name: String,
    /// The AWS region of the cache.
    pub region: String,
    /// Serverless caches need `ResourceType=ServerlessCache`.
    pub serverless: bool,
}

/// Signs the token: `<cache>/?Action=connect&User=<user>[&ResourceType=ServerlessCache]&X-Amz-…`,
/// the presigned URL without its scheme.
pub fn token(
    req: &TokenRequest,
    credentials: &Credentials,
    at: SystemTime,
) -> Result<String, String> {
    let mut url = format!(
        "http://{}/?Action=connect&User={}",
        req.cache_name,
        urlencode(&req.user)
    );
    if req.serverless {
        url.push_str("&ResourceType=ServerlessCache");
    }
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&req.region)
        .name("elasticache")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(&url)
        .body(())
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request
        .uri()
        .to_string()
        .trim_start_matches("http://")
        .to_owned())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Supplies fred with a fresh IAM token for every new connection and re-authenticates open ones
/// every `refresh`.
pub struct IamCredentials {
    request: TokenRequest,
    aws: SharedCredentialsProvider,
    refresh: Duration,
    cached: Mutex<Option<(Instant, String)>>,
}

impl fmt::Debug for IamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamCredentials")
            .field("request", &self.request)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl IamCredentials {
    /// A provider signing `request` with credentials from `aws`, a new token every `refresh`.
    pub fn new(request: TokenRequest, aws: SharedCredentialsProvider, refresh: Duration) -> Self {
        Self {
            request,
            aws,
            refresh,
            cached: Mutex::new(None),
        }
    }

    /// The standard AWS credential chain, with an HTTPS client on rustls' ring provider (the
    /// build's only crypto provider) for the ECS, IMDS and STS sources.
    pub async fn default_chain(region: String) -> SharedCredentialsProvider {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new(region))
            .load()
            .await;
        config
            .credentials_provider()
            .unwrap_or_else(|| SharedCredentialsProvider::new(Credentials::for_tests()))
    }

    async fn current(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, token)) = cached.as_ref() {
            // 90% of the period, so the periodic re-AUTH always gets a new token.
            if at.elapsed() < self.refresh.mul_f64(0.9) {
                return Ok(token.clone());
            }
        }
        let credentials = self
            .aws
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials for ElastiCache IAM auth: {e}"))?;
        let fresh = token(&self.request, &credentials, SystemTime::now())?;
        metrics::counter!("valkey_iam_token_refreshes_total").increment(1);
        tracing::debug!("signed a new ElastiCache IAM token");
        *cached = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

#[async_trait::async_trait]
impl fred::types::config::CredentialProvider for IamCredentials {
    async fn fetch(
        &self,
        _server: Option<&Server>,
    ) -> Result<(Option<String>, Option<String>), FredError> {
        match self.current().await {
            Ok(token) => Ok((Some(self.request.user.clone()), Some(token))),
            Err(e) => {
                tracing::error!(error = %e, "could not sign an ElastiCache IAM token");
                Err(FredError::new(ErrorKind::Auth, e))
            }
        }
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(self.refresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> (TokenRequest, Credentials, SystemTime) {
        let request = TokenRequest {
            user: "valkey-sessions".into(),
            cache_name: "sessions-cache".into(),
            region: "eu-west-1".into(),
            serverless: true,
        };
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        // 2026-11-25T12:00:00Z
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_608_000);
        (request, creds, at)
    }

    fn query(token: &str) -> std::collections::HashMap<String, String> {
        let (_, q) = token.split_once("/?").expect("host/?query");
        q.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_token_has_the_published_structure() {
        let (request, creds, at) = fixed();
        let t = token(&request, &creds, at).unwrap();
        assert!(
            t.starts_with("sessions-cache/?"),
            "signed host first, no scheme: {t}"
        );
        let q = query(&t);
        assert_eq!(q["Action"], "connect");
        assert_eq!(q["User"], "valkey-sessions");
        assert_eq!(q["ResourceType"], "ServerlessCache");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(
            q["X-Amz-Credential"],
            "AKIDEXAMPLE%2F20261125%2Feu-west-1%2Felasticache%2Faws4_request"
        );
        assert_eq!(q["X-Amz-Date"], "20261125T120000Z");
        assert_eq!(q["X-Amz-Expires"], "900");
        assert_eq!(q["X-Amz-SignedHeaders"], "host");
        // The same request presigned by botocore (SigV4QueryAuth, the signer of AWS's own
        // ElastiCache IAM examples) with these credentials and this clock.
        assert_eq!(
            q["X-Amz-Signature"],
            "ea9711ac273ed581ec22991bc87662d924615d6f5b5415fe6709cf0c6b06bae8"
        );
        assert!(!q.contains_key("X-Amz-Security-Token"));
        // Deterministic for fixed inputs; another second, another signature.
        assert_eq!(t, token(&request, &creds, at).unwrap());
        let later = token(&request, &creds, at + Duration::from_secs(1)).unwrap();
        assert_ne!(query(&later)["X-Amz-Signature"], q["X-Amz-Signature"]);
    }

    #[test]
    fn session_credentials_and_node_based_caches() {
        let (mut request, _, at) = fixed();
        request.serverless = false;
        let creds = Credentials::new("AKID", "secret", Some("session-token".into()), None, "t");
        let q = query(&token(&request, &creds, at).unwrap());
        assert!(!q.contains_key("ResourceType"));
        assert_eq!(q["X-Amz-Security-Token"], "session-token");
    }
}
