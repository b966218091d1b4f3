//! Session ids: a slot tag, then 256 random bits from the OS CSPRNG, URL-safe base64 without
//! padding (`<tag 11>.<random 43>`, 55 characters). The tag decides the Valkey slot: random for an
//! anonymous session, derived from the principal (keyed) once one is set, so a principal's
//! sessions and its index share a slot. Ids of the first form (43 characters, the random part
//! alone, its own slot) stay valid until they expire.
//!
//! A caller may propose the id at Create (session middleware that chooses its own ids,
//! docs/adapters.md): 22..=128 characters of the URL-safe alphabet without a '.', kept in its own
//! slot exactly like an id of the first form. Untagged ids are therefore parsed by length range
//! and alphabet only; their key holds the id verbatim, so one spelling is one session.

use std::{
    fmt,
    hash::{BuildHasher, RandomState},
    sync::LazyLock,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::Error;

/// Random bytes in an id: 256 bits.
const ID_BYTES: usize = 32;
/// Length of the random part: ceil(32 * 8 / 6); also the whole length of a legacy id.
pub const ID_LEN: usize = 43;
/// Bytes behind a slot tag: 64 bits, so random tags spread evenly over the 16384 slots.
pub const TAG_BYTES: usize = 8;
/// Length of an encoded slot tag: ceil(8 * 8 / 6).
pub const TAG_LEN: usize = 11;
/// Length of a tagged id: tag, '.', random part.
pub const TAGGED_ID_LEN: usize = TAG_LEN + 1 + ID_LEN;
/// Shortest caller-proposed id: 22 characters of a 64-letter alphabet carry 132 bits, the
/// least that holds 128 random bits.
pub const PROPOSED_MIN_LEN: usize = 22;
/// Longest caller-proposed (untagged) id.
pub const PROPOSED_MAX_LEN: usize = 128;
/// Fewest distinct characters in a proposed id: a random 22-character string has fewer with a
/// probability below 1e-10, a constant or patterned one ("aaaa…", "abab…") is refused.
const PROPOSED_MIN_DISTINCT: usize = 8;
/// Longest period a proposed id may not repeat with ("abcdefgh" again and again): a random
/// 22-character string repeats itself with a period up to 16 with a probability below 1e-10.
const PROPOSED_MAX_PERIOD: usize = 16;

/// Whether `raw` repeats itself with a period of at most [`PROPOSED_MAX_PERIOD`].
fn periodic(raw: &[u8]) -> bool {
    (1..=PROPOSED_MAX_PERIOD.min(raw.len() - 1))
        .any(|p| raw.iter().zip(&raw[p..]).all(|(a, b)| a == b))
}

/// Whether at least half of the neighbours count up or down ("0123456789abcdef…"): each pair
/// of a random string does so with a probability of about 1/32.
fn sequential(raw: &[u8]) -> bool {
    let steps = raw.windows(2).filter(|w| w[1].abs_diff(w[0]) == 1).count();
    steps * 2 >= raw.len() - 1
}

/// Bytes of the id's hash in a handle: 128 bits, 22 characters.
const HANDLE_BYTES: usize = 16;
/// Length of a handle.
pub const HANDLE_LEN: usize = 22;

/// Per-process key for id fingerprints, so logs can correlate requests without the id itself
/// and fingerprints cannot be precomputed or linked across restarts.
static FINGERPRINT_KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A well-formed session id. It is a bearer secret: `Debug` prints only a keyed fingerprint and
/// there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

/// A slot tag: 11 characters of URL-safe base64 (64 bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotTag(String);

impl SlotTag {
    /// A random tag, for an anonymous session.
    pub fn random() -> Self {
        Self::from_bytes(random::<TAG_BYTES>())
    }

    /// The tag of 8 bytes (e.g. the first bytes of a keyed hash of a principal).
    pub fn from_bytes(bytes: [u8; TAG_BYTES]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The tag as it appears in ids and keys.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS CSPRNG failing is not recoverable: continuing with a weaker id would be worse.
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes
}

impl SessionId {
    /// A fresh anonymous id: a random slot tag and 256 random bits.
    pub fn generate() -> Self {
        Self::generate_in(&SlotTag::random())
    }

    /// A fresh id in the slot of `tag`.
    pub fn generate_in(tag: &SlotTag) -> Self {
        Self(format!(
            "{}.{}",
            tag.as_str(),
            URL_SAFE_NO_PAD.encode(random::<ID_BYTES>())
        ))
    }

    /// Validates an id received from a caller, before any Valkey call.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() {
            return Err(Error::InvalidId("id is empty"));
        }
        let url_safe = |part: &str| {
            part.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if raw.len() == TAGGED_ID_LEN && raw.as_bytes()[TAG_LEN] == b'.' {
            let (tag, secret) = (&raw[..TAG_LEN], &raw[TAG_LEN + 1..]);
            if !url_safe(tag) || !url_safe(secret) {
                return Err(Error::InvalidId(
                    "id may only contain A-Z, a-z, 0-9, '-', '_' and one '.'",
                ));
            }
            // Rejects non-canonical trailing bits, so one session has exactly one spelling (the
            // key holds the id's hash).
            let canonical = |part: &str, len: usize| {
                let mut bytes = [0u8; ID_BYTES + 3];
                URL_SAFE_NO_PAD
                    .decode_slice(part, &mut bytes)
                    .is_ok_and(|n| n == len)
            };
            if !canonical(secret, ID_BYTES) || !canonical(tag, TAG_BYTES) {
                return Err(Error::InvalidId("id is not a canonical session id"));
            }
            return Ok(Self(raw.to_owned()));
        }
        // The first form (43 characters) and caller-proposed ids: untagged, own slot, the key
        // holds the id verbatim.
        if !(PROPOSED_MIN_LEN..=PROPOSED_MAX_LEN).contains(&raw.len()) {
            return Err(Error::InvalidId(
                "id must be 55 characters (tag, '.', 43 characters of URL-safe base64), or 22..128 without a '.'",
            ));
        }
        if !url_safe(raw) {
            return Err(Error::InvalidId(
                "id may only contain A-Z, a-z, 0-9, '-', '_' and one '.'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Validates an id proposed by a caller at Create: 22..=128 characters of the URL-safe
    /// alphabet, no '.', at least 8 distinct characters, not repeating itself with a short
    /// period, not counting up or down. The message never echoes the id.
    pub fn proposed(raw: &str) -> Result<Self, Error> {
        let bad = |why: &str| Err(Error::InvalidArgument(format!("proposed_id {why}")));
        if !(PROPOSED_MIN_LEN..=PROPOSED_MAX_LEN).contains(&raw.len()) {
            return bad(&format!(
                "must be {PROPOSED_MIN_LEN}..{PROPOSED_MAX_LEN} characters (at least 128 random bits), got {}",
                raw.len()
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad(
                "may only contain A-Z, a-z, 0-9, '-' and '_' (URL-safe base64, no padding)",
            );
        }
        let mut seen = [false; 256];
        raw.bytes().for_each(|b| seen[b as usize] = true);
        if seen.iter().filter(|s| **s).count() < PROPOSED_MIN_DISTINCT
            || periodic(raw.as_bytes())
            || sequential(raw.as_bytes())
        {
            return bad("does not look random: draw it from a CSPRNG");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slot tag; `None` for an id of the first (untagged, 43-character) form.
    pub fn tag(&self) -> Option<SlotTag> {
        self.tag_str().map(|tag| SlotTag(tag.to_owned()))
    }

    /// [`Self::tag`], borrowed.
    pub fn tag_str(&self) -> Option<&str> {
        (self.0.len() == TAGGED_ID_LEN).then(|| &self.0[..TAG_LEN])
    }

    /// The handle of this session: a one-way hash of the id, which names its key and lets a
    /// principal's session be listed and revoked, but cannot be turned back into the id.
    pub fn handle(&self) -> String {
        let mut handle = String::with_capacity(HANDLE_LEN);
        self.push_handle(&mut handle);
        handle
    }

    /// Appends [`Self::handle`] to `out` (a key being built, without another allocation).
    pub fn push_handle(&self, out: &mut String) {
        use sha2::{Digest, Sha256};
        URL_SAFE_NO_PAD.encode_string(&Sha256::digest(self.0.as_bytes())[..HANDLE_BYTES], out);
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

    proptest::proptest! {
        /// Ids, proposed ids and handles come from callers: any string is parsed or refused,
        /// never a panic, and the error never echoes it.
        #[test]
        fn any_string_is_an_id_or_a_clear_refusal(raw in ".{0,200}") {
            if let Err(e) = SessionId::parse(&raw) {
                proptest::prop_assert!(raw.len() < 4 || !e.to_string().contains(&raw));
            }
            if let Ok(id) = SessionId::proposed(&raw) {
                proptest::prop_assert_eq!(SessionId::parse(&raw).unwrap(), id);
            }
        }

        /// What the service generates, it reads back; a handle is never the id.
        #[test]
        fn generated_ids_round_trip(_n in 0u8..32) {
            let id = SessionId::generate();
            proptest::prop_assert_eq!(SessionId::parse(id.as_str()).unwrap(), id.clone());
            proptest::prop_assert_ne!(id.handle(), id.as_str().to_owned());
        }
    }
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let ids: HashSet<String> = (0..1000)
            .map(|_| SessionId::generate().0)
            .inspect(|id| {
                assert_eq!(id.len(), TAGGED_ID_LEN);
                let parsed = SessionId::parse(id).expect("a generated id parses");
                assert_eq!(parsed.tag().unwrap().as_str(), &id[..TAG_LEN]);
                assert_eq!(parsed.handle().len(), HANDLE_LEN);
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        let tag = SlotTag::from_bytes([7; TAG_BYTES]);
        let a = SessionId::generate_in(&tag);
        assert_eq!(a.tag(), Some(tag.clone()));
        assert_ne!(a, SessionId::generate_in(&tag));
    }

    #[test]
    fn ids_of_the_first_form_stay_valid() {
        let legacy = URL_SAFE_NO_PAD.encode([42u8; ID_BYTES]);
        let id = SessionId::parse(&legacy).expect("43-character ids still parse");
        assert!(id.tag().is_none());
        assert_ne!(id.handle(), legacy);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let good = SessionId::generate().0;
        let legacy = URL_SAFE_NO_PAD.encode([1u8; ID_BYTES]);
        for bad in [
            String::new(),
            good[..54].to_owned(),
            format!("{good}A"),
            good.replace('.', "!"),
            format!("{}/{}", &good[..11], &good[12..]),
            format!("{{{}}}", &good[..53]),
            format!("{}+", &good[..54]),
            format!("{}=", &good[..54]),
            legacy[..21].to_owned(),
            "A".repeat(129),
            format!("{}/", &legacy[..42]),
            format!("{}.{}", &legacy[..11], &legacy[..43]).replace(&legacy[..1], "!"),
        ] {
            assert!(SessionId::parse(&bad).is_err(), "{bad:?} must be rejected");
        }
        // Non-canonical trailing bits in the tag: the last character of an 8-byte tag has its
        // two low bits zero.
        let mut noncanonical = good.clone().into_bytes();
        noncanonical[10] = b'B';
        let noncanonical = String::from_utf8(noncanonical).unwrap();
        assert!(SessionId::parse(&noncanonical).is_err() || noncanonical[10..11] == good[10..11]);
    }

    #[test]
    fn proposed_ids_are_checked_for_length_alphabet_and_variety() {
        let tower =
            URL_SAFE_NO_PAD.encode(0x1234_5678_9abc_def0_0fed_cba9_8765_4321u128.to_le_bytes());
        assert_eq!(tower.len(), PROPOSED_MIN_LEN);
        for good in [
            tower.clone(),
            URL_SAFE_NO_PAD.encode(random::<32>()),
            URL_SAFE_NO_PAD.encode(random::<96>()),
        ] {
            let id = SessionId::proposed(&good).expect("valid proposal");
            assert!(id.tag().is_none(), "own slot, like the first form");
            assert_eq!(SessionId::parse(&good).unwrap(), id, "readable afterwards");
        }
        for bad in [
            tower[..21].to_owned(),
            "aB3-_xYz9".repeat(15),
            format!("{}.", &tower),
            format!("{}=", &tower),
            format!("{}+/", &tower),
            "A".repeat(40),
            "abababababababababababab".to_owned(),
            // Patterned with enough distinct characters: counting up, or repeating.
            "0123456789abcdefghijklmnop".to_owned(),
            "ZYXWVUTSRQPONMLKJIHGFEDCBA".to_owned(),
            "aB3-_xYz9".repeat(14),
            "abcdefgh".repeat(4),
            SessionId::generate().0,
        ] {
            let err = SessionId::proposed(&bad).expect_err(&bad);
            assert!(
                !err.to_string().contains(&bad),
                "the message does not echo the id"
            );
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
