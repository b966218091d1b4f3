//! The key layout (docs/key-layout.md): one key per session, and one index per principal in the
//! same slot; the hash tag is the session id's slot tag.
//!
//! Every command and script of an operation names keys of one hash tag only, so each operation
//! is single-slot by construction and can never fail with CROSSSLOT on a cluster.

use crate::{HANDLE_LEN, SessionId, SlotTag};

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

    /// The key holding a session: `<prefix>{<tag>}.<handle>` for a tagged id (the key never
    /// contains the id itself), `<prefix>{<id>}` for an id of the first form.
    pub fn session(&self, id: &SessionId) -> String {
        match id.tag_str() {
            Some(tag) => {
                let mut key = self.members_of(tag);
                id.push_handle(&mut key);
                key
            }
            None => format!("{}{{{}}}", self.prefix, id.as_str()),
        }
    }

    /// The key of the session with `handle` in the slot of `tag`.
    pub fn session_by_handle(&self, tag: &SlotTag, handle: &str) -> String {
        let mut key = self.members_of(tag.as_str());
        key.push_str(handle);
        key
    }

    /// What precedes a handle in the session keys of `tag`'s slot (scripts append handles).
    pub fn members(&self, tag: &SlotTag) -> String {
        self.members_of(tag.as_str())
    }

    /// [`Self::members`] with room for the handle: every RPC builds a session key, so it takes
    /// one allocation.
    fn members_of(&self, tag: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + tag.len() + 3 + HANDLE_LEN);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(tag);
        key.push_str("}.");
        key
    }

    /// The index of a principal whose sessions carry `tag`: a sorted set of handles scored by
    /// last activity (ms).
    pub fn index(&self, tag: &SlotTag) -> String {
        format!("{}{{{}}}:i", self.prefix, tag.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_tag_is_the_slot_tag_and_keys_never_hold_the_id() {
        let id = SessionId::generate();
        let tag = id.tag().unwrap();
        let keys = KeySpace::new("vs:");
        let key = keys.session(&id);
        assert_eq!(key, format!("vs:{{{}}}.{}", tag.as_str(), id.handle()));
        assert!(
            !key.contains(&id.as_str()[12..]),
            "the secret part is not in the key"
        );
        let slot = |k: &str| fred::util::redis_keyslot(k.as_bytes());
        assert_eq!(slot(&key), slot(tag.as_str()));
        assert_eq!(
            slot(&keys.index(&tag)),
            slot(&key),
            "index and session share a slot"
        );
    }

    #[test]
    fn ids_of_the_first_form_keep_their_key() {
        let legacy = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            KeySpace::new("vs:").session(&legacy),
            "vs:{AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA}"
        );
    }
}
