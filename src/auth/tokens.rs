//! Bearer tokens, known only by their SHA-256 hashes. The file is TOML:
//!
//! ```toml
//! [[token]]
//! identity = "todo-gateway"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! A hash is enough for tokens with 128 bits or more of entropy: nothing can be guessed from it,
//! and SHA-256 keeps the per-request cost in nanoseconds (a password hash would cost
//! milliseconds per RPC).

use std::{path::Path, sync::Arc};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest token accepted; anything longer is refused before hashing.
pub const MAX_TOKEN_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    identity: String,
    sha256: String,
}

/// The hashes of the valid tokens and the identity each one names.
#[derive(Debug, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Arc<str>)>,
}

impl TokenTable {
    /// Reads and checks a tokens file; the error names the file and the entry.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the TOML text of a tokens file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.token.is_empty() {
            // A file emptied by mistake (a failed secret sync) would refuse every caller at the
            // next reload; refused here, the table in use stays.
            return Err("no [[token]] entries: a tokens file must name at least one token".into());
        }
        let mut entries: Vec<([u8; 32], Arc<str>)> = Vec::with_capacity(file.token.len());
        for (i, entry) in file.token.into_iter().enumerate() {
            if entry.identity.is_empty() {
                return Err(format!("token {}: identity is empty", i + 1));
            }
            let mut hash = [0u8; 32];
            hex::decode_to_slice(entry.sha256.trim(), &mut hash).map_err(|_| {
                format!(
                    "token {} ({}): sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)",
                    i + 1,
                    entry.identity
                )
            })?;
            // One token, two identities: which one a request gets would depend on the order of
            // the file.
            if let Some(j) = entries.iter().position(|(h, _)| *h == hash) {
                return Err(format!(
                    "token {} ({}) has the same sha256 as token {} ({}): a token names one identity",
                    i + 1,
                    entry.identity,
                    j + 1,
                    entries[j].1
                ));
            }
            entries.push((hash, entry.identity.into()));
        }
        Ok(Self { entries })
    }

    /// The identity a token names, if it is valid. Every entry is compared, in constant time, so
    /// the time taken says nothing about which entry (or how much of one) matched.
    pub fn verify(&self, token: &str) -> Option<Arc<str>> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, identity) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(identity.clone());
            }
        }
        found
    }

    /// How many tokens are configured.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The hex SHA-256 of a token, as the tokens file wants it.
#[cfg(test)]
pub fn hash_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The tokens file is read at every change: any text is a table or an error naming the
        /// problem, never a panic; a table verifies exactly the tokens it lists.
        #[test]
        fn any_text_is_a_table_or_an_error(text in ".{0,300}", tokens in proptest::collection::btree_set("[A-Za-z0-9]{16,40}", 1..6)) {
            let _ = TokenTable::parse(&text);
            let file: String = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| format!("[[token]]\nidentity = \"id{i}\"\nsha256 = \"{}\"\n", hash_hex(t)))
                .collect();
            let table = TokenTable::parse(&file).unwrap();
            for (i, t) in tokens.iter().enumerate() {
                let expected = format!("id{i}");
                let found = table.verify(t);
                proptest::prop_assert_eq!(found.as_deref(), Some(expected.as_str()));
                let other = format!("{t}x");
                proptest::prop_assert_eq!(table.verify(&other), None);
            }
        }
    }

    #[test]
    fn tokens_are_known_by_hash_only() {
        let text = format!(
            "[[token]]\nidentity = \"gw\"\nsha256 = \"{}\"\n[[token]]\nidentity = \"ops\"\nsha256 = \"{}\"\n",
            hash_hex("s3cret-token-1"),
            hash_hex("s3cret-token-2")
        );
        let table = TokenTable::parse(&text).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.verify("s3cret-token-1").as_deref(), Some("gw"));
        assert_eq!(table.verify("s3cret-token-2").as_deref(), Some("ops"));
        assert_eq!(table.verify("s3cret-token-3"), None);
        assert_eq!(table.verify(""), None);
        assert_eq!(table.verify(&"x".repeat(MAX_TOKEN_BYTES + 1)), None);
        assert!(!text.contains("s3cret"), "the file holds no token in clear");
    }

    #[test]
    fn a_duplicate_hash_or_an_empty_file_is_refused() {
        let twice = format!(
            "[[token]]\nidentity = \"gw\"\nsha256 = \"{h}\"\n[[token]]\nidentity = \"ops\"\nsha256 = \"{h}\"\n",
            h = hash_hex("s3cret-token-1")
        );
        let e = TokenTable::parse(&twice).unwrap_err();
        assert!(
            e.contains("token 2 (ops) has the same sha256 as token 1 (gw)"),
            "{e}"
        );
        for empty in ["", "# no tokens yet\n", "token = []\n"] {
            let e = TokenTable::parse(empty).unwrap_err();
            assert!(e.contains("no [[token]] entries"), "{empty:?}: {e}");
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err =
            TokenTable::parse("[[token]]\nidentity = \"gw\"\nsha256 = \"abc\"\n").unwrap_err();
        assert!(err.contains("64 hex digits") && err.contains("gw"), "{err}");
        assert!(TokenTable::parse("[[token]]\nidentity = \"\"\nsha256 = \"\"").is_err());
        assert!(TokenTable::parse("not toml [").is_err());
        assert!(TokenTable::parse("[[token]]\nname = \"x\"").is_err());
    }
}
