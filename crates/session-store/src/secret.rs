//! The deployment's secrets for slot tags and page tokens: every instance of the service must
//! derive the same tag for a principal. They come from `secret.file` / `secret.keys` (shared by
//! every instance, rotated by listing a new one first), or, unconfigured, from Valkey itself
//! (`SET NX GET`: whoever is first wins). Which one writes, and whether the instances agree, is
//! agreement.rs's.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use fred::{
    prelude::KeysInterface,
    types::{SetOptions, Value},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::SessionStore;
use session_core::{Error, SlotTag};

/// A 256-bit key for HMAC-SHA256.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl Secret {
    /// A secret as configured: 32 bytes in base64 (standard or URL-safe, padding optional), as
    /// `openssl rand -base64 32` prints them.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let text = text.trim().trim_end_matches('=');
        let bytes = STANDARD_NO_PAD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| "a secret is 32 bytes in base64 (openssl rand -base64 32)".to_owned())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "a secret is 32 bytes in base64 (openssl rand -base64 32), this one is {}",
                b.len()
            )
        })?;
        Ok(Self(bytes))
    }

    /// From raw bytes (the key Valkey holds).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// A short public name of the secret: instances compare these, never the secret.
    pub fn fingerprint(&self) -> String {
        self.mac(&[b"fingerprint"])[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The slot tag of `principal` in `tenant`: keyed, so a tag says nothing about who it is.
    pub fn principal_tag(&self, tenant: &str, principal: &str) -> SlotTag {
        let mac = self.mac(&[b"tag", tenant.as_bytes(), principal.as_bytes()]);
        let mut bytes = [0u8; session_core::TAG_BYTES];
        bytes.copy_from_slice(&mac[..session_core::TAG_BYTES]);
        SlotTag::from_bytes(bytes)
    }

    /// HMAC-SHA256 over the parts, each length-prefixed so no two inputs collide.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length works");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// How long a page token stays valid.
pub const PAGE_TOKEN_TTL_MS: u64 = 10 * 60 * 1000;
const PAGE_MAC_LEN: usize = 16;

impl Secret {
    /// An opaque ListSessions page token for the cursor (score, handle), bound to the tenant and
    /// principal and to the time it was issued.
    pub fn page_token(
        &self,
        tenant: &str,
        principal: &str,
        (score, handle): &(u64, String),
        now_ms: u64,
    ) -> String {
        let mut payload = Vec::with_capacity(16 + handle.len() + PAGE_MAC_LEN);
        payload.extend_from_slice(&score.to_be_bytes());
        payload.extend_from_slice(&now_ms.to_be_bytes());
        payload.extend_from_slice(handle.as_bytes());
        let mac = self.mac(&[b"page", tenant.as_bytes(), principal.as_bytes(), &payload]);
        payload.extend_from_slice(&mac[..PAGE_MAC_LEN]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The cursor of a page token, if it is genuine, for this tenant and principal, and fresh.
    pub fn open_page_token(
        &self,
        tenant: &str,
        principal: &str,
        token: &str,
        now_ms: u64,
    ) -> Result<(u64, String), &'static str> {
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| "page_token is not a token this service issued")?;
        if raw.len() < 16 + PAGE_MAC_LEN || raw.len() > 16 + 64 + PAGE_MAC_LEN {
            return Err("page_token is not a token this service issued");
        }
        let (payload, mac) = raw.split_at(raw.len() - PAGE_MAC_LEN);
        let expected = self.mac(&[b"page", tenant.as_bytes(), principal.as_bytes(), payload]);
        if !bool::from(mac.ct_eq(&expected[..PAGE_MAC_LEN])) {
            return Err("page_token was not issued for this principal, or was altered");
        }
        let score = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        let issued = u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes"));
        if now_ms.saturating_sub(issued) > PAGE_TOKEN_TTL_MS || issued > now_ms + 60_000 {
            return Err("page_token has expired (10 minutes); list from the first page again");
        }
        let handle = String::from_utf8(payload[16..].to_vec())
            .map_err(|_| "page_token is not a token this service issued")?;
        Ok((score, handle))
    }
}

/// The secrets an instance knows, and the one it writes with (agreement.rs chooses it).
#[derive(Debug, Clone)]
pub struct Keys {
    /// Tags new sessions and signs page tokens.
    writing: Secret,
    /// Every secret whose tags and tokens are read, the writing one first.
    known: Vec<Secret>,
}

impl Keys {
    /// `known[writing]` writes; every one of `known` is read.
    pub fn new(known: &[Secret], writing: usize) -> Self {
        let writing = known[writing].clone();
        let mut all = vec![writing.clone()];
        all.extend(known.iter().filter(|k| **k != writing).cloned());
        Self {
            writing,
            known: all,
        }
    }

    /// The secret new tags and page tokens come from.
    pub fn writing(&self) -> &Secret {
        &self.writing
    }

    /// The tag new sessions of `principal` get.
    pub fn principal_tag(&self, tenant: &str, principal: &str) -> SlotTag {
        self.writing.principal_tag(tenant, principal)
    }

    /// Every tag `principal`'s sessions may have: the writing secret's first, then those of
    /// secrets being rotated out (their sessions live until they expire or move at a rotation).
    pub fn principal_tags(&self, tenant: &str, principal: &str) -> Vec<SlotTag> {
        let mut tags: Vec<SlotTag> = Vec::with_capacity(self.known.len());
        for tag in self
            .known
            .iter()
            .map(|k| k.principal_tag(tenant, principal))
        {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        tags
    }

    /// A page token, signed with the writing secret.
    pub fn page_token(
        &self,
        tenant: &str,
        principal: &str,
        cursor: &(u64, String),
        now_ms: u64,
    ) -> String {
        self.writing.page_token(tenant, principal, cursor, now_ms)
    }

    /// The cursor of a page token any known secret signed.
    pub fn open_page_token(
        &self,
        tenant: &str,
        principal: &str,
        token: &str,
        now_ms: u64,
    ) -> Result<(u64, String), &'static str> {
        let mut first = None;
        for key in &self.known {
            match key.open_page_token(tenant, principal, token, now_ms) {
                Ok(cursor) => return Ok(cursor),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or("page_token is not a token this service issued"))
    }
}

impl SessionStore {
    /// The secret kept in Valkey (`<prefix>_secret`) when none is configured: made by the first
    /// instance that needs it, or put back from memory by an instance that knows it when the key
    /// is gone (FLUSHALL, an unreplicated failover). Returns what the key holds now.
    pub(crate) async fn stored_secret(&self, mine: Option<&Secret>) -> Result<Secret, Error> {
        let fresh = match mine {
            Some(secret) => secret.0,
            None => {
                let mut fresh = [0u8; 32];
                getrandom::fill(&mut fresh).expect("the OS random number generator failed");
                fresh
            }
        };
        let (key, fresh_value) = (&self.secret_key, &fresh);
        let previous: Value = self
            .keyed("set_secret", key, |c| async move {
                c.set(
                    key,
                    Value::Bytes(fresh_value.to_vec().into()),
                    None,
                    Some(SetOptions::NX),
                    true,
                )
                .await
            })
            .await?;
        let held = match previous {
            Value::Null => {
                if mine.is_some() {
                    tracing::warn!(
                        key = %self.secret_key,
                        "the deployment secret was missing from valkey; put back the one this \
                         instance uses"
                    );
                }
                fresh.to_vec()
            }
            Value::Bytes(b) => b.to_vec(),
            Value::String(s) => s.as_bytes().to_vec(),
            other => {
                return Err(Error::Internal(format!(
                    "unexpected secret reply {other:?}"
                )));
            }
        };
        Secret::from_bytes(&held).ok_or_else(|| {
            Error::Internal(format!(
                "{} does not hold a 32-byte secret",
                self.secret_key
            ))
        })
    }

    /// Whether Valkey still holds a secret (`EXISTS`: the value is not sent again every time).
    pub(crate) async fn stored_secret_exists(&self) -> Result<bool, Error> {
        let key = &self.secret_key;
        let n: i64 = self
            .keyed("exists_secret", key, |c| async move { c.exists(key).await })
            .await?;
        Ok(n > 0)
    }

    /// The secret Valkey holds (`<prefix>_secret`), if any: read-only, for deployments that
    /// move from it to a configured secret without losing anyone's index.
    pub(crate) async fn stored_secret_if_any(&self) -> Result<Option<Secret>, Error> {
        let key = &self.secret_key;
        let held: Option<Bytes> = self
            .keyed("get_secret", key, |c| async move { c.get(key).await })
            .await?;
        Ok(held.and_then(|b| Secret::from_bytes(&b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A page token is input: anything a caller sends is refused or opened, never a panic,
        /// and only what this secret issued for this tenant and principal opens.
        #[test]
        fn page_tokens_open_only_as_issued(
            garbage in ".{0,200}",
            score in proptest::num::u64::ANY,
            handle in "[A-Za-z0-9_-]{0,40}",
            flip in proptest::num::usize::ANY,
        ) {
            let secret = Secret([7; 32]);
            let now = 1_800_000_000_000;
            let _ = secret.open_page_token("t", "ada", &garbage, now);
            let token = secret.page_token("t", "ada", &(score, handle.clone()), now);
            proptest::prop_assert_eq!(secret.open_page_token("t", "ada", &token, now), Ok((score, handle)));
            proptest::prop_assert!(secret.open_page_token("t", "bob", &token, now).is_err());
            proptest::prop_assert!(Secret([8; 32]).open_page_token("t", "ada", &token, now).is_err());
            let mut altered = token.into_bytes();
            let at = flip % altered.len();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            proptest::prop_assert!(secret.open_page_token("t", "ada", &altered, now).is_err());
        }
    }

    #[test]
    fn tags_are_keyed_per_tenant_and_principal() {
        let a = Secret([1; 32]);
        let b = Secret([2; 32]);
        assert_eq!(a.principal_tag("t", "ada"), a.principal_tag("t", "ada"));
        assert_ne!(a.principal_tag("t", "ada"), a.principal_tag("t", "bob"));
        assert_ne!(a.principal_tag("t", "ada"), a.principal_tag("u", "ada"));
        assert_ne!(a.principal_tag("t", "ada"), b.principal_tag("t", "ada"));
        assert_ne!(a.mac(&[b"ab", b"c"]), a.mac(&[b"a", b"bc"]));
    }

    #[test]
    fn page_tokens_are_bound_genuine_and_fresh() {
        let s = Secret([3; 32]);
        let cursor = (1_764_115_200_123u64, "h".repeat(22));
        let now = 1_764_115_300_000;
        let token = s.page_token("t", "ada", &cursor, now);
        assert_eq!(
            s.open_page_token("t", "ada", &token, now + 1000),
            Ok(cursor)
        );
        assert!(
            s.open_page_token("t", "bob", &token, now).is_err(),
            "another principal"
        );
        assert!(
            s.open_page_token("u", "ada", &token, now).is_err(),
            "another tenant"
        );
        assert!(
            s.open_page_token("t", "ada", &token, now + PAGE_TOKEN_TTL_MS + 1)
                .is_err()
        );
        assert!(
            Secret([4; 32])
                .open_page_token("t", "ada", &token, now)
                .is_err()
        );
        let mut forged = URL_SAFE_NO_PAD.decode(&token).unwrap();
        forged[3] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(forged);
        assert!(s.open_page_token("t", "ada", &forged, now).is_err());
        for garbage in ["", "garbage", "!!!!", &"A".repeat(400)] {
            assert!(s.open_page_token("t", "ada", garbage, now).is_err());
        }
    }
}
