//! Who is calling, and may they: a caller identity from a bearer token or the client
//! certificate, mapped to a tenant and the RPCs it may use. Decided before any Valkey call.

mod config;
mod request;
pub mod tokens;

pub use config::AuthConfig;
#[cfg(test)]
use config::CallerConfig;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use session_core::{SettingError, Tenant, Tenants};
use tokens::TokenTable;

/// The caller of one RPC, as the service sees it (a request extension).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated identity; `None` for an anonymous caller where auth is not required.
    pub identity: Option<Arc<str>>,
    /// The tenant whose sessions the caller works on.
    pub tenant: Arc<Tenant>,
}

/// Why a call was refused; the label of `grpc_auth_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No identity where one is required (UNAUTHENTICATED).
    MissingCredentials,
    /// A malformed or unknown bearer token (UNAUTHENTICATED).
    InvalidToken,
    /// An authenticated identity that is not a configured caller (PERMISSION_DENIED).
    UnknownIdentity,
    /// A known caller calling an RPC it is not allowed (PERMISSION_DENIED).
    MethodNotAllowed,
}

impl Rejection {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidToken => "invalid_token",
            Self::UnknownIdentity => "unknown_identity",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The status a caller gets: never the token, never whether an identity exists elsewhere.
    pub fn status(self, method: &str) -> tonic::Status {
        match self {
            Self::MissingCredentials => tonic::Status::unauthenticated(
                "no caller identity: send `authorization: Bearer <token>` or a client certificate",
            ),
            Self::InvalidToken => tonic::Status::unauthenticated(
                "the bearer token is malformed or not valid; check the token or ask for a new one",
            ),
            Self::UnknownIdentity => tonic::Status::permission_denied(
                "the authenticated identity is not a configured caller of this service",
            ),
            Self::MethodNotAllowed => {
                tonic::Status::permission_denied(format!("this caller may not call {method}"))
            }
        }
    }
}

struct Policy {
    tenant: Arc<Tenant>,
    /// `None` means every RPC.
    methods: Option<Vec<String>>,
}

/// Decides, per request, who calls and whether they may.
pub struct Authenticator {
    required: bool,
    tokens: Arc<ArcSwap<TokenTable>>,
    callers: HashMap<String, Policy>,
    tenants: Tenants,
}

impl Authenticator {
    /// Builds the authenticator; `tokens` is the table kept current by the file reloader. Fails
    /// on a caller whose tenant is not configured.
    pub fn new(
        config: &AuthConfig,
        tenants: Tenants,
        tokens: Arc<ArcSwap<TokenTable>>,
    ) -> Result<Self, SettingError> {
        let mut callers = HashMap::new();
        for (i, c) in config.callers.iter().enumerate() {
            let tenant = tenants.get(c.tenant.as_deref()).ok_or_else(|| {
                SettingError::entry(
                    format!("auth.callers[{i}]"),
                    format!(
                        "tenant {:?} is not configured under [tenants]",
                        c.tenant.as_deref().unwrap_or_default()
                    ),
                )
            })?;
            let methods = (!c.methods.iter().any(|m| m == "*")).then(|| c.methods.clone());
            let policy = Policy {
                tenant: tenant.clone(),
                methods,
            };
            callers.insert(c.identity.clone(), policy);
        }
        Ok(Self {
            required: config.required,
            tokens,
            callers,
            tenants,
        })
    }

    /// The caller of `method`, given the `authorization` header value (if any) and the identity
    /// of the connection's client certificate (if any). A bearer token, when sent, names the
    /// caller; otherwise the certificate does.
    pub fn authorize(
        &self,
        method: &str,
        authorization: Option<&[u8]>,
        cert_identity: Option<&Arc<str>>,
    ) -> Result<Caller, Rejection> {
        let identity = match authorization {
            Some(value) => Some(self.bearer(value)?),
            None => cert_identity.cloned(),
        };
        let Some(identity) = identity else {
            if self.required {
                return Err(Rejection::MissingCredentials);
            }
            return Ok(Caller {
                identity: None,
                tenant: self.tenants.default_tenant().clone(),
            });
        };
        let policy = self
            .callers
            .get(&*identity)
            .ok_or(Rejection::UnknownIdentity)?;
        if let Some(methods) = &policy.methods {
            if !methods.iter().any(|m| m == method) {
                return Err(Rejection::MethodNotAllowed);
            }
        }
        Ok(Caller {
            identity: Some(identity),
            tenant: policy.tenant.clone(),
        })
    }

    fn bearer(&self, value: &[u8]) -> Result<Arc<str>, Rejection> {
        let value = std::str::from_utf8(value).map_err(|_| Rejection::InvalidToken)?;
        let (scheme, token) = value.split_once(' ').ok_or(Rejection::InvalidToken)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Rejection::InvalidToken);
        }
        self.tokens
            .load()
            .verify(token.trim())
            .ok_or(Rejection::InvalidToken)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use session_core::{Lifetimes, Limits, TenantOverrides};

    use super::*;

    fn tenants() -> Tenants {
        let named = BTreeMap::from([("shop".to_string(), TenantOverrides::default())]);
        Tenants::build("vs:", &Limits::default(), &Lifetimes::default(), &named).unwrap()
    }

    fn authenticator(required: bool) -> Authenticator {
        let mut config = AuthConfig {
            required,
            ..AuthConfig::default()
        };
        config.callers = vec![
            CallerConfig {
                identity: "gw".into(),
                tenant: Some("shop".into()),
                methods: vec!["*".into()],
            },
            CallerConfig {
                identity: "spiffe://example.org/reader".into(),
                tenant: None,
                methods: vec!["Get".into()],
            },
        ];
        let tokens = TokenTable::parse(&format!(
            "[[token]]\nidentity = \"gw\"\nsha256 = \"{}\"\n[[token]]\nidentity = \"stranger\"\nsha256 = \"{}\"\n",
            tokens::hash_hex("good"),
            tokens::hash_hex("other"),
        ))
        .unwrap();
        Authenticator::new(&config, tenants(), Arc::new(ArcSwap::from_pointee(tokens))).unwrap()
    }

    #[test]
    fn a_caller_of_an_unknown_tenant_is_refused() {
        let config = AuthConfig {
            callers: vec![CallerConfig {
                identity: "gw".into(),
                tenant: Some("nope".into()),
                methods: vec!["*".into()],
            }],
            ..AuthConfig::default()
        };
        let tokens = Arc::new(ArcSwap::from_pointee(TokenTable::default()));
        let err = Authenticator::new(&config, tenants(), tokens)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("auth.callers[0]") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn identities_map_to_tenants_and_methods() {
        let a = authenticator(true);
        let caller = a.authorize("Put", Some(b"Bearer good"), None).unwrap();
        assert_eq!(caller.identity.as_deref(), Some("gw"));
        assert_eq!(&*caller.tenant.name, "shop");
        let cert: Arc<str> = "spiffe://example.org/reader".into();
        let reader = a.authorize("Get", None, Some(&cert)).unwrap();
        assert_eq!(&*reader.tenant.name, "default");
        assert_eq!(
            a.authorize("Put", None, Some(&cert)).unwrap_err(),
            Rejection::MethodNotAllowed
        );
        assert_eq!(
            a.authorize("Get", Some(b"Bearer other"), None).unwrap_err(),
            Rejection::UnknownIdentity
        );
        for bad in [
            &b"Bearer nope"[..],
            b"Basic Z29vZA==",
            b"good",
            b"Bearer ",
            b"\xff\xfe",
        ] {
            assert_eq!(
                a.authorize("Get", Some(bad), None).unwrap_err(),
                Rejection::InvalidToken
            );
        }
        assert_eq!(
            a.authorize("Get", None, None).unwrap_err(),
            Rejection::MissingCredentials
        );
    }

    #[test]
    fn anonymous_callers_get_the_default_tenant_when_auth_is_optional() {
        let a = authenticator(false);
        let caller = a.authorize("Create", None, None).unwrap();
        assert!(caller.identity.is_none());
        assert_eq!(&*caller.tenant.name, "default");
        assert_eq!(
            a.authorize("Create", Some(b"Bearer wrong"), None)
                .unwrap_err(),
            Rejection::InvalidToken,
            "a token that is sent must be valid even where auth is optional"
        );
    }
}
