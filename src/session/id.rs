//! Session ids: 256 random bits from the OS CSPRNG, URL-safe base64 without padding.

use std::{
    fmt,
    hash::{BuildHasher, RandomState},
    sync::LazyLock,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::Error;

/// Random bytes in an id: 256 bits.
const ID_BYTES: usize = 32;
/// Length of the encoded id: ceil(32 * 8 / 6).
pub const ID_LEN: usize = 43;

/// Per-process key for id fingerprints, so logs can correlate requests without the id itself
/// and fingerprints cannot be precomputed or linked across restarts.
static FINGERPRINT_KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A well-formed session id. It is a bearer secret: `Debug` prints only a keyed fingerprint and
/// there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        // The OS CSPRNG failing is not recoverable: continuing with a weaker id would be worse.
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Validates an id received from a caller, before any Valkey call.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() {
            return Err(Error::InvalidId("id is empty"));
        }
        if raw.len() != ID_LEN {
            return Err(Error::InvalidId(
                "id must be 43 characters of URL-safe base64",
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::InvalidId(
                "id may only contain A-Z, a-z, 0-9, '-' and '_'",
            ));
        }
        // Rejects non-canonical trailing bits, so one session has exactly one spelling.
        match URL_SAFE_NO_PAD.decode(raw) {
            Ok(bytes) if bytes.len() == ID_BYTES => Ok(Self(raw.to_owned())),
            _ => Err(Error::InvalidId("id is not a canonical 256-bit id")),
        }
    }

    /// The id itself, for the wire and the key; never for logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short keyed hash of the id, safe to log for correlation.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", FINGERPRINT_KEY.hash_one(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let ids: HashSet<String> = (0..1000)
            .map(|_| SessionId::generate().0)
            .inspect(|id| {
                assert_eq!(id.len(), ID_LEN);
                SessionId::parse(id).expect("a generated id parses");
            })
            .collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let good = SessionId::generate().0;
        for bad in [
            String::new(),
            good[..42].to_owned(),
            format!("{good}A"),
            format!("{{{}}}", &good[..41]),
            format!("{}/", &good[..42]),
            format!("{}+", &good[..42]),
            format!("{}=", &good[..42]),
        ] {
            assert!(SessionId::parse(&bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn debug_does_not_reveal_the_id() {
        let id = SessionId::generate();
        let shown = format!("{id:?}");
        assert!(!shown.contains(id.as_str()));
        assert_eq!(id.fingerprint(), id.clone().fingerprint());
    }
}
