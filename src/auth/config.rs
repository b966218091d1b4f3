//! The `auth` configuration section: who may call the session API.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use session_core::{SettingError, positive, readable};

/// Who may call the session API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse session RPCs without a caller identity (UNAUTHENTICATED).
    pub required: bool,
    /// Bearer-token hashes; re-read when the file changes.
    pub tokens_file: Option<PathBuf>,
    /// How often the tokens file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Known callers: identity, tenant and the RPCs each may call.
    pub callers: Vec<CallerConfig>,
}

/// One known caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// The identity: a client certificate's URI or DNS SAN, or a token's `identity`.
    pub identity: String,
    /// The caller's tenant; unset means the default tenant (the keys of a single-tenant set-up).
    #[serde(default)]
    pub tenant: Option<String>,
    /// RPC names the caller may use (`Get`, `Put`, ...), or `*` for all. Unset: the RPCs on one
    /// session (everything but [`PRINCIPAL_WIDE`]); the RPCs that read or end every session of
    /// a user must be named (or `*`).
    #[serde(default = "session_methods")]
    pub methods: Vec<String>,
}

/// The RPCs that reach every session of a principal: listing a user's sessions, or logging a
/// user out. A caller gets them only by naming them (or `*`).
pub const PRINCIPAL_WIDE: [&str; 3] = ["ListSessions", "RevokeSession", "RevokeSessions"];

/// What a caller without `methods` may call: every RPC of the descriptor on one session.
fn session_methods() -> Vec<String> {
    session_proto::rpc_names()
        .iter()
        .filter(|m| !PRINCIPAL_WIDE.contains(&m.as_str()))
        .cloned()
        .collect()
}

impl Default for AuthConfig {
    /// The same in both profiles: anonymous callers allowed, no tokens, no known callers.
    fn default() -> Self {
        Self {
            required: false,
            tokens_file: None,
            reload_interval: Duration::from_secs(2),
            callers: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Checks the section on its own; which tenants exist is checked where the tenants are
    /// built (`Authenticator::new`).
    pub fn validate(&self) -> Result<(), SettingError> {
        positive("auth.reload_interval", self.reload_interval)?;
        if let Some(tokens) = &self.tokens_file {
            readable("auth.tokens_file", tokens)?;
        }
        let rpcs = session_proto::rpc_names();
        let mut seen = std::collections::HashSet::new();
        for (i, caller) in self.callers.iter().enumerate() {
            let problem = |p: String| SettingError::entry(format!("auth.callers[{i}]"), p);
            if caller.identity.is_empty() {
                return Err(problem("identity is empty".into()));
            }
            if !seen.insert(caller.identity.as_str()) {
                return Err(problem(format!(
                    "identity {:?} is configured twice",
                    caller.identity
                )));
            }
            if caller.methods.is_empty() {
                return Err(problem("methods is empty: list RPC names or \"*\"".into()));
            }
            for m in &caller.methods {
                if m != "*" && !rpcs.contains(m) {
                    return Err(problem(format!(
                        "unknown method {m:?}; expected \"*\" or one of {rpcs:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(methods: &[&str]) -> AuthConfig {
        AuthConfig {
            callers: vec![CallerConfig {
                identity: "job".into(),
                tenant: None,
                methods: methods.iter().map(|m| m.to_string()).collect(),
            }],
            ..AuthConfig::default()
        }
    }

    #[test]
    fn every_rpc_of_the_descriptor_can_be_named_in_methods() {
        let rpcs = session_proto::rpc_names();
        assert!(rpcs.len() >= 8, "the descriptor lists the API: {rpcs:?}");
        for rpc in rpcs {
            caller(&[rpc])
                .validate()
                .unwrap_or_else(|e| panic!("{rpc} cannot be named in auth.callers.methods: {e}"));
        }
        let err = caller(&["Gte"]).validate().unwrap_err().to_string();
        assert!(
            err.contains("auth.callers[0]") && err.contains("Gte"),
            "{err}"
        );
        assert!(caller(&[]).validate().is_err());
    }

    #[test]
    fn a_caller_without_methods_gets_the_rpcs_on_one_session_only() {
        let parsed: CallerConfig = toml::from_str("identity = \"web\"\n").unwrap();
        let methods = &parsed.methods;
        for rpc in ["Create", "Get", "Put", "Delete", "Rotate"] {
            assert!(methods.iter().any(|m| m == rpc), "{rpc} in {methods:?}");
        }
        for rpc in PRINCIPAL_WIDE {
            assert!(!methods.iter().any(|m| m == rpc), "{rpc} in {methods:?}");
            assert!(
                session_proto::rpc_names().iter().any(|m| m == rpc),
                "{rpc} is an RPC of the descriptor"
            );
        }
        AuthConfig {
            callers: vec![parsed],
            ..AuthConfig::default()
        }
        .validate()
        .unwrap();
    }
}
