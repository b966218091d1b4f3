//! Tenants: each application's sessions live under their own key prefix, with its own limits and
//! lifetimes. A session id of one tenant names no key of another, so a cross-tenant Get, Put,
//! Delete or Rotate finds nothing (NOT_FOUND) and existence never leaks.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{KeySpace, Lifetimes, Limits, SettingError};

/// The name of the tenant of anonymous callers and callers configured without a tenant; its keys
/// are those of a single-tenant set-up (`<prefix>{<id>}`).
pub const DEFAULT_TENANT: &str = "default";

/// One tenant, resolved: key space, limits and lifetimes.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant's name (`default` for the single-tenant key space).
    pub name: Arc<str>,
    /// Where its sessions live.
    pub keys: KeySpace,
    /// Its size and count limits.
    pub limits: Limits,
    /// Its lifetime defaults and caps.
    pub lifetimes: Lifetimes,
}

/// A tenant's configuration entry: its sessions live under `<valkey.key_prefix><name>:`;
/// `limits` and `sessions` keys given here replace the global ones for this tenant only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantOverrides {
    /// Overrides of `limits` keys.
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// Overrides of `sessions` keys.
    pub sessions: serde_json::Map<String, serde_json::Value>,
}

/// Every configured tenant, by name.
#[derive(Debug, Clone)]
pub struct Tenants {
    default: Arc<Tenant>,
    named: HashMap<String, Arc<Tenant>>,
}

impl Tenants {
    /// Resolves the `tenants` section against the global `limits` and `sessions`, with every
    /// key under `prefix`; checks the global and each tenant's resulting settings.
    pub fn build(
        prefix: &str,
        limits: &Limits,
        lifetimes: &Lifetimes,
        tenants: &BTreeMap<String, TenantOverrides>,
    ) -> Result<Self, SettingError> {
        lifetimes.check()?;
        limits.check()?;
        let default = Arc::new(Tenant {
            name: DEFAULT_TENANT.into(),
            keys: KeySpace::new(prefix),
            limits: limits.clone(),
            lifetimes: lifetimes.clone(),
        });
        let mut named = HashMap::new();
        for (name, tenant) in tenants {
            let key = format!("tenants.{name}");
            if name == DEFAULT_TENANT
                || name.is_empty()
                || name.len() > 32
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(SettingError::entry(
                    key,
                    "tenant names are 1..=32 characters of a-z, 0-9, '-' and '_', and not `default`",
                ));
            }
            let limits: Limits = overlay(limits, &tenant.limits)
                .map_err(|e| SettingError::entry(format!("{key}.limits"), e))?;
            let lifetimes: Lifetimes = overlay(lifetimes, &tenant.sessions)
                .map_err(|e| SettingError::entry(format!("{key}.sessions"), e))?;
            lifetimes
                .check()
                .and_then(|()| limits.check())
                .map_err(|e| SettingError::entry(key.clone(), e.to_string()))?;
            named.insert(
                name.clone(),
                Arc::new(Tenant {
                    name: name.as_str().into(),
                    keys: KeySpace::new(format!("{prefix}{name}:")),
                    limits,
                    lifetimes,
                }),
            );
        }
        Ok(Self { default, named })
    }

    /// The default tenant.
    pub fn default_tenant(&self) -> &Arc<Tenant> {
        &self.default
    }

    /// A tenant by name; `None` and `default` mean the default tenant.
    pub fn get(&self, name: Option<&str>) -> Option<&Arc<Tenant>> {
        match name {
            None | Some(DEFAULT_TENANT) => Some(&self.default),
            Some(name) => self.named.get(name),
        }
    }

    /// The element-wise largest limits of all tenants (sizes the gRPC message limit).
    pub fn largest_limits(&self) -> Limits {
        self.named
            .values()
            .fold(self.default.limits.clone(), |acc, t| acc.max(&t.limits))
    }
}

/// `base` with the keys of `over` replaced; unknown keys are errors naming them.
fn overlay<T: Serialize + DeserializeOwned>(
    base: &T,
    over: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, String> {
    let mut value = serde_json::to_value(base).map_err(|e| e.to_string())?;
    if let Some(object) = value.as_object_mut() {
        for (k, v) in over {
            object.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(tenants: &BTreeMap<String, TenantOverrides>) -> Result<Tenants, SettingError> {
        Tenants::build("vs:", &Limits::default(), &Lifetimes::default(), tenants)
    }

    #[test]
    fn tenants_get_their_own_prefix_and_fall_back_to_global_settings() {
        let mut config = BTreeMap::new();
        let mut shop = TenantOverrides::default();
        shop.limits
            .insert("max_value_bytes".into(), serde_json::json!(1000));
        shop.sessions
            .insert("default_idle_timeout".into(), serde_json::json!("5m"));
        config.insert("shop".into(), shop);
        let tenants = build(&config).expect("valid");
        let (limits, lifetimes) = (Limits::default(), Lifetimes::default());
        let shop = tenants.get(Some("shop")).unwrap();
        assert_eq!(shop.limits.max_value_bytes, 1000);
        assert_eq!(shop.limits.max_attributes, limits.max_attributes);
        assert_eq!(shop.lifetimes.default_idle_timeout.as_secs(), 300);
        assert_eq!(shop.lifetimes.max_idle_timeout, lifetimes.max_idle_timeout);
        let id = crate::SessionId::generate();
        let tag = id.tag().unwrap();
        assert_eq!(
            shop.keys.session(&id),
            format!("vs:shop:{{{}}}.{}", tag.as_str(), id.handle())
        );
        assert_eq!(
            tenants.get(None).unwrap().keys.session(&id),
            format!("vs:{{{}}}.{}", tag.as_str(), id.handle()),
            "the default tenant keeps the single-tenant layout"
        );
        assert!(tenants.get(Some("nope")).is_none());
    }

    #[test]
    fn bad_tenant_entries_are_named() {
        let mut config = BTreeMap::new();
        let mut bad = TenantOverrides::default();
        bad.limits
            .insert("max_vlaue_bytes".into(), serde_json::json!(1));
        config.insert("shop".into(), bad);
        let err = build(&config).unwrap_err().to_string();
        assert!(
            err.contains("tenants.shop.limits") && err.contains("max_vlaue_bytes"),
            "{err}"
        );
        let mut config = BTreeMap::new();
        config.insert("Bad Name".into(), TenantOverrides::default());
        assert!(build(&config).is_err());
    }
}
