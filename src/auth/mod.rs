//! Who is calling, and may they: a caller identity from a bearer token or the client
//! certificate, mapped to a tenant and the RPCs it may use. Decided before any Valkey call.

mod request;
pub mod tokens;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use crate::{
    config::{AuthConfig, CallerConfig, ConfigError, TenantConfig},
    tenant::{Tenant, Tenants},
};
use tokens::TokenTable;

/// The RPCs of `session.v1.SessionService`, as `methods` may name them.
pub const RPCS: &[&str] = &["Create", "Get", "Put", "Delete", "Rotate"];

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
    /// Builds the authenticator; `tokens` is the table kept current by the file reloader.
    pub fn new(config: &AuthConfig, tenants: Tenants, tokens: Arc<ArcSwap<TokenTable>>) -> Self {
        let callers = config
            .callers
            .iter()
            .map(|c| {
                let tenant = tenants
                    .get(c.tenant.as_deref())
                    .expect("callers' tenants are checked at start-up")
                    .clone();
                let methods = (!c.methods.iter().any(|m| m == "*")).then(|| c.methods.clone());
                (c.identity.clone(), Policy { tenant, methods })
            })
            .collect();
        Self {
            required: config.required,
            tokens,
            callers,
            tenants,
        }
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

/// Checks the `auth.callers` entries: known tenants and RPC names, no identity twice.
pub fn validate_callers(
    callers: &[CallerConfig],
    tenants: &std::collections::BTreeMap<String, TenantConfig>,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, caller) in callers.iter().enumerate() {
        let key = format!("auth.callers[{i}]");
        let problem = |p: String| ConfigError::Entry {
            key: key.clone(),
            problem: p,
        };
        if caller.identity.is_empty() {
            return Err(problem("identity is empty".into()));
        }
        if !seen.insert(caller.identity.as_str()) {
            return Err(problem(format!(
                "identity {:?} is configured twice",
                caller.identity
            )));
        }
        if let Some(tenant) = &caller.tenant {
            if tenant != crate::tenant::DEFAULT_TENANT && !tenants.contains_key(tenant) {
                return Err(problem(format!(
                    "tenant {tenant:?} is not configured under [tenants]"
                )));
            }
        }
        if caller.methods.is_empty() {
            return Err(problem("methods is empty: list RPC names or \"*\"".into()));
        }
        for m in &caller.methods {
            if m != "*" && !RPCS.contains(&m.as_str()) {
                return Err(problem(format!(
                    "unknown method {m:?}; expected \"*\" or one of {RPCS:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Profile};

    fn authenticator(required: bool) -> Authenticator {
        let mut config = Config::defaults(Profile::Local);
        config
            .tenants
            .insert("shop".into(), TenantConfig::default());
        config.auth.required = required;
        config.auth.callers = vec![
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
        let tenants = Tenants::from_config(&config).unwrap();
        Authenticator::new(
            &config.auth,
            tenants,
            Arc::new(ArcSwap::from_pointee(tokens)),
        )
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
