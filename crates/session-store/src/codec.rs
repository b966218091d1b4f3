//! The binary layout of a stored session (one Valkey string), shared with the Lua scripts.
//!
//! ```text
//! u8  format (= 1)
//! u64 version | u64 created_ms | u64 last_accessed_ms | u64 idle_ms | u64 absolute_ms (0 = none)
//! u32 principal_len | principal
//! u32 count | count * (u32 name_len | name | u32 value_len | value)
//! ```
//! Integers are big-endian. The fixed header lets the touch script rewrite `last_accessed_ms`
//! in place (`SETRANGE` at [`LAST_ACCESSED_OFFSET`]) without reading the attributes.

use session_core::{Attributes, Error, Session, SessionId};

/// Format byte of this layout; scripts refuse anything else.
pub const FORMAT: u8 = 1;
/// Format byte of a forwarding record: the trace a session leaves under its old id when it moves
/// to another slot (`scripts/seal.lua`); never a live session.
pub const MOVED: u8 = 2;
/// Byte offset of `last_accessed_ms`, used by `scripts/touch.lua`.
#[cfg(test)]
pub const LAST_ACCESSED_OFFSET: usize = 17;
const HEADER_LEN: usize = 1 + 5 * 8;

/// Encodes a session for storage.
pub fn encode(session: &Session) -> Vec<u8> {
    let payload: usize = session
        .attributes
        .iter()
        .map(|(n, v)| 8 + n.len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(HEADER_LEN + 8 + session.principal.len() + payload);
    out.push(FORMAT);
    for field in [
        session.version,
        session.created_at_ms,
        session.last_accessed_at_ms,
        session.idle_timeout_ms,
        session.absolute_expires_at_ms.unwrap_or(0),
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    put_bytes(&mut out, session.principal.as_bytes());
    out.extend_from_slice(&(session.attributes.len() as u32).to_be_bytes());
    for (name, value) in &session.attributes {
        put_bytes(&mut out, name.as_bytes());
        put_bytes(&mut out, value);
    }
    out
}

/// Decodes a stored session.
pub fn decode(id: SessionId, blob: &[u8]) -> Result<Session, Error> {
    let mut r = Reader { buf: blob, pos: 0 };
    let format = r.take(1)?[0];
    if format != FORMAT {
        return Err(corrupt(format!("unknown format {format}")));
    }
    let version = r.u64()?;
    let created_at_ms = r.u64()?;
    let last_accessed_at_ms = r.u64()?;
    let idle_timeout_ms = r.u64()?;
    let absolute = r.u64()?;
    let principal = r.string()?;
    let count = r.u32()? as usize;
    // Bounded by what the blob can hold, so a corrupt count cannot force a huge allocation.
    let mut attributes = Attributes::with_capacity(count.min(blob.len() / 8));
    for _ in 0..count {
        let name = r.string()?;
        let value = r.bytes()?.to_vec();
        attributes.insert(name, value);
    }
    if r.pos != blob.len() {
        return Err(corrupt("trailing bytes".into()));
    }
    Ok(Session {
        id,
        attributes,
        principal,
        version,
        created_at_ms,
        last_accessed_at_ms,
        idle_timeout_ms,
        absolute_expires_at_ms: (absolute != 0).then_some(absolute),
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn corrupt(what: String) -> Error {
    Error::Internal(format!("stored session is corrupt: {what}"))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| corrupt("truncated".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, Error> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("name is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            id: SessionId::generate(),
            attributes: Attributes::from([
                ("cart".into(), vec![0, 159, 146, 150]),
                ("user".into(), b"ada".to_vec()),
                ("empty".into(), vec![]),
            ]),
            principal: "ada@example.com".into(),
            version: 7,
            created_at_ms: 1_700_000_000_000,
            last_accessed_at_ms: 1_700_000_100_000,
            idle_timeout_ms: 1_800_000,
            absolute_expires_at_ms: Some(1_700_086_400_000),
        }
    }

    proptest::proptest! {
        /// Whatever Valkey holds under a session key (a corrupt value, another program's
        /// string), decoding answers an error, never a panic.
        #[test]
        fn any_bytes_decode_to_a_session_or_an_error(blob in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(SessionId::generate(), &blob);
        }

        /// Every session encodes to bytes that decode back to it.
        #[test]
        fn every_session_round_trips(
            attributes in proptest::collection::btree_map("[a-z_]{1,16}", proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8),
            principal in "[a-z@.]{0,24}",
            times in proptest::array::uniform5(proptest::num::u64::ANY),
        ) {
            let s = Session {
                id: SessionId::generate(),
                attributes: attributes.into_iter().collect(),
                principal,
                version: times[0],
                created_at_ms: times[1],
                last_accessed_at_ms: times[2],
                idle_timeout_ms: times[3],
                absolute_expires_at_ms: Some(times[4]).filter(|&t| t > 0),
            };
            let blob = encode(&s);
            proptest::prop_assert_eq!(decode(s.id.clone(), &blob).unwrap(), s.clone());
            // A truncated value is an error, not a shorter session.
            for cut in [1, blob.len() / 2, blob.len() - 1] {
                proptest::prop_assert!(decode(s.id.clone(), &blob[..cut]).is_err());
            }
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(decode(s.id.clone(), &encode(&s)).unwrap(), s);
        let uncapped = Session {
            absolute_expires_at_ms: None,
            attributes: Attributes::new(),
            ..sample()
        };
        assert_eq!(
            decode(uncapped.id.clone(), &encode(&uncapped)).unwrap(),
            uncapped
        );
    }

    #[test]
    fn last_accessed_sits_at_the_documented_offset() {
        let s = sample();
        let blob = encode(&s);
        let at = &blob[LAST_ACCESSED_OFFSET..LAST_ACCESSED_OFFSET + 8];
        assert_eq!(
            u64::from_be_bytes(at.try_into().unwrap()),
            s.last_accessed_at_ms
        );
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let blob = encode(&sample());
        for cut in [0, 1, 20, 41, 50, blob.len() - 1] {
            assert!(decode(SessionId::generate(), &blob[..cut]).is_err());
        }
        let mut wrong = blob.clone();
        wrong[0] = 9;
        assert!(decode(SessionId::generate(), &wrong).is_err());
        let mut huge_count = encode(&Session {
            attributes: Attributes::new(),
            ..sample()
        });
        let n = huge_count.len();
        huge_count[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(SessionId::generate(), &huge_count).is_err());
    }
}
