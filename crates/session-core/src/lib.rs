//! The session domain: ids, the session record, limits, lifetimes, tenants, the key space and
//! errors. No I/O lives here; everything above it (store, service, gateway) builds on it.

mod error;
mod id;
mod keys;
mod lifetimes;
mod limits;
mod setting;
mod tenant;

pub use error::Error;
pub use id::{HANDLE_LEN, SessionId, SlotTag, TAG_BYTES};
pub use keys::KeySpace;
pub use lifetimes::{Lifetimes, OnLimit};
pub use limits::Limits;
pub use setting::{SettingError, positive, readable};
pub use tenant::{DEFAULT_TENANT, Tenant, TenantOverrides, Tenants};

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Attribute names to opaque values, as the API carries them.
pub type Attributes = HashMap<String, Vec<u8>>;

/// A stored session with its bookkeeping; times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// Application data.
    pub attributes: Attributes,
    /// Owning user, empty for anonymous sessions.
    pub principal: String,
    /// Incremented by every successful Put, starting at 1.
    pub version: u64,
    /// Creation time.
    pub created_at_ms: u64,
    /// Last time the expiry was refreshed.
    pub last_accessed_at_ms: u64,
    /// Inactivity timeout.
    pub idle_timeout_ms: u64,
    /// Hard end of life, if any.
    pub absolute_expires_at_ms: Option<u64>,
}

impl Session {
    /// When the session expires without further activity.
    pub fn expires_at_ms(&self) -> u64 {
        expiry_ms(
            self.last_accessed_at_ms,
            self.idle_timeout_ms,
            self.absolute_expires_at_ms,
        )
    }

    /// Whether a read at `now_ms` should refresh the expiry: only in the second half of the idle
    /// window, and only if the refresh would actually move the expiry (the cap may forbid it).
    pub fn needs_touch(&self, now_ms: u64) -> bool {
        let expires = self.expires_at_ms();
        let remaining = expires.saturating_sub(now_ms);
        remaining < self.idle_timeout_ms / 2
            && expiry_ms(now_ms, self.idle_timeout_ms, self.absolute_expires_at_ms) > expires
    }
}

/// `last + idle`, capped at the absolute expiry: the one rule for a session's end of life.
pub fn expiry_ms(last_ms: u64, idle_ms: u64, absolute_ms: Option<u64>) -> u64 {
    let idle_end = last_ms.saturating_add(idle_ms);
    absolute_ms.map_or(idle_end, |cap| idle_end.min(cap))
}

/// The current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(last: u64, idle: u64, cap: Option<u64>) -> Session {
        Session {
            id: SessionId::generate(),
            attributes: Attributes::new(),
            principal: String::new(),
            version: 1,
            created_at_ms: 0,
            last_accessed_at_ms: last,
            idle_timeout_ms: idle,
            absolute_expires_at_ms: cap,
        }
    }

    #[test]
    fn expiry_is_capped_by_the_absolute_limit() {
        assert_eq!(session(1_000, 500, None).expires_at_ms(), 1_500);
        assert_eq!(session(1_000, 500, Some(1_200)).expires_at_ms(), 1_200);
    }

    #[test]
    fn touch_only_in_the_second_half_and_only_if_it_moves_the_expiry() {
        let s = session(1_000, 1_000, None);
        assert!(!s.needs_touch(1_400), "first half: no write");
        assert!(s.needs_touch(1_600), "second half: refresh");
        let capped = session(1_000, 1_000, Some(2_000));
        assert!(!capped.needs_touch(1_700), "already at the cap");
    }
}
