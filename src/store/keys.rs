//! The key layout: one key per session, its hash tag the session id.
//!
//! Every command and script of an operation names only this key, so each operation is
//! single-slot by construction and can never fail with CROSSSLOT on a cluster.

use crate::session::SessionId;

/// Builds Valkey keys under a configurable prefix.
#[derive(Debug, Clone)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    /// A key space under `prefix` (for example `vs:`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The key holding a session: `<prefix>{<id>}`. Ids cannot contain braces, so the tag is the
    /// whole id.
    pub fn session(&self, id: &SessionId) -> String {
        format!("{}{{{}}}", self.prefix, id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_tag_is_the_id() {
        let id = SessionId::generate();
        let key = KeySpace::new("vs:").session(&id);
        assert_eq!(key, format!("vs:{{{}}}", id.as_str()));
        assert_eq!(
            fred::util::redis_keyslot(key.as_bytes()),
            fred::util::redis_keyslot(id.as_str().as_bytes())
        );
    }
}
