//! How long sessions live: idle and absolute timeouts, and sessions per principal.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SettingError;

/// Session lifetime settings (the `sessions` configuration section, or a tenant's override).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifetimes {
    /// Idle timeout when a Create gives none (Spring Session's default is 30 minutes).
    #[serde(with = "humantime_serde")]
    pub default_idle_timeout: Duration,
    /// Longest idle timeout a Create may ask for.
    #[serde(with = "humantime_serde")]
    pub max_idle_timeout: Duration,
    /// Absolute lifetime when a Create gives none (7 days by default: a stolen id does not live
    /// for ever just because it is used); unset means no cap.
    #[serde(with = "humantime_serde", default)]
    pub default_absolute_timeout: Option<Duration>,
    /// Longest absolute lifetime a Create may ask for.
    #[serde(with = "humantime_serde")]
    pub max_absolute_timeout: Duration,
    /// Live sessions one principal may have; 0 means no limit.
    #[serde(default)]
    pub max_per_principal: usize,
    /// What a login beyond `max_per_principal` does.
    #[serde(default)]
    pub on_limit: OnLimit,
}

/// The absolute lifetime of a session whose Create gives none.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            default_idle_timeout: Duration::from_secs(30 * 60),
            max_idle_timeout: Duration::from_secs(24 * 3600),
            default_absolute_timeout: Some(DEFAULT_ABSOLUTE_TIMEOUT),
            max_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
            max_per_principal: 0,
            on_limit: OnLimit::RevokeOldest,
        }
    }
}

/// What happens when a principal would exceed `sessions.max_per_principal`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// The least recently active session of the principal is revoked (Spring Security's default).
    #[default]
    RevokeOldest,
    /// The new session is refused with RESOURCE_EXHAUSTED.
    Reject,
}

impl Lifetimes {
    /// Checks that the defaults fit under the caps.
    pub fn check(&self) -> Result<(), SettingError> {
        if self.default_idle_timeout < Duration::from_secs(1)
            || self.default_idle_timeout > self.max_idle_timeout
        {
            return Err(SettingError::invalid(
                "sessions.default_idle_timeout",
                "must be at least 1s and at most sessions.max_idle_timeout",
            ));
        }
        if let Some(abs) = self.default_absolute_timeout
            && (abs < Duration::from_secs(1) || abs > self.max_absolute_timeout)
        {
            return Err(SettingError::invalid(
                "sessions.default_absolute_timeout",
                "must be at least 1s and at most sessions.max_absolute_timeout",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_must_fit_under_the_caps() {
        Lifetimes::default()
            .check()
            .expect("the defaults are valid");
        let long_idle = Lifetimes {
            default_idle_timeout: Duration::from_secs(25 * 3600),
            ..Lifetimes::default()
        };
        assert_eq!(
            long_idle.check().unwrap_err().key(),
            "sessions.default_idle_timeout"
        );
        let long_absolute = Lifetimes {
            default_absolute_timeout: Some(Duration::from_secs(31 * 24 * 3600)),
            ..Lifetimes::default()
        };
        assert_eq!(
            long_absolute.check().unwrap_err().key(),
            "sessions.default_absolute_timeout"
        );
    }
}
