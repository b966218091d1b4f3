//! A domain setting that cannot work, named by its configuration key.

/// A setting the domain refuses; the message names the key and what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// A value was read but is not acceptable.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `valkey.url`.
        key: &'static str,
        /// What is wrong and what would be right.
        problem: String,
    },
    /// An entry of a list or table (a tenant, a caller) is not acceptable.
    #[error("configuration `{key}`: {problem}")]
    Entry {
        /// Dotted key, e.g. `tenants.shop.limits`.
        key: String,
        /// What is wrong and what would be right.
        problem: String,
    },
}

impl SettingError {
    /// A value of `key` that is not acceptable.
    pub fn invalid(key: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            problem: problem.into(),
        }
    }

    /// An entry at `key` that is not acceptable.
    pub fn entry(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Entry {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The key at fault.
    pub fn key(&self) -> &str {
        match self {
            Self::Invalid { key, .. } => key,
            Self::Entry { key, .. } => key,
        }
    }
}

/// Checks that a duration setting is not zero.
pub fn positive(key: &'static str, value: std::time::Duration) -> Result<(), SettingError> {
    if value.is_zero() {
        return Err(SettingError::invalid(key, "must be greater than zero"));
    }
    Ok(())
}

/// Checks that a path setting names a readable file (read at start-up, before anything listens).
pub fn readable(key: &'static str, path: &std::path::Path) -> Result<(), SettingError> {
    if std::fs::File::open(path).is_err() || !path.is_file() {
        return Err(SettingError::invalid(
            key,
            format!("{} is not a readable file", path.display()),
        ));
    }
    Ok(())
}
