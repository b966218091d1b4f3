//! The sessions of a principal: creating into the principal's slot with its index and limit,
//! rotating (one script in the slot) or moving to another slot at login (seal, then create),
//! listing by page and revoking. Layout and the reasoning: docs/key-layout.md.

use bytes::Bytes;
use fred::types::Value;

use session_core::{Error, OnLimit, Session, SessionId, SlotTag, Tenant, now_ms};

use crate::{SessionStore, codec};

/// Sessions revoked per script call of RevokeSessions: big principals take several calls, none
/// of them a long block of the server.
const REVOKE_BATCH: usize = 500;

/// One page of ListSessions.
#[derive(Debug)]
pub struct Listed {
    /// The sessions on this page, newest activity first.
    pub entries: Vec<SessionEntry>,
    /// Where the next page starts (score, handle); `None` on the last page.
    pub next: Option<(u64, String)>,
}

/// A session as listed: metadata only, never the id.
#[derive(Debug)]
pub struct SessionEntry {
    /// The handle (revokes it, cannot read it).
    pub handle: String,
    /// Its version.
    pub version: u64,
    /// Creation time (ms).
    pub created_at_ms: u64,
    /// Last activity (ms).
    pub last_accessed_at_ms: u64,
    /// Idle timeout (ms).
    pub idle_timeout_ms: u64,
    /// Absolute cap (ms), if any.
    pub absolute_expires_at_ms: Option<u64>,
    /// The requested display attributes it has.
    pub attributes: Vec<(String, Vec<u8>)>,
    /// Where it is in its index (recent activity): the order pages follow.
    pub score: u64,
}

/// A ListSessions request, resolved.
#[derive(Debug)]
pub struct Page<'a> {
    /// The principal.
    pub principal: &'a str,
    /// Entries wanted.
    pub size: usize,
    /// Start after this (score, handle); `None` for the first page.
    pub after: Option<(u64, String)>,
    /// Display attribute names.
    pub attributes: &'a [String],
}

impl SessionStore {
    /// The slot tag new sessions of a principal get in `tenant`.
    pub async fn principal_tag(&self, tenant: &Tenant, principal: &str) -> Result<SlotTag, Error> {
        Ok(self.keys().await?.principal_tag(&tenant.name, principal))
    }

    /// Every slot tag a principal's sessions may have in `tenant` (more than one while a
    /// deployment secret is being rotated out), the one new sessions get first.
    pub async fn principal_tags(
        &self,
        tenant: &Tenant,
        principal: &str,
    ) -> Result<Vec<SlotTag>, Error> {
        Ok(self.keys().await?.principal_tags(&tenant.name, principal))
    }

    /// Stores a new session of a principal and indexes it, enforcing the principal's limit.
    /// `Ok(false)` means the id is taken (a CSPRNG collision).
    #[tracing::instrument(level = "debug", name = "valkey.create_indexed", skip_all, fields(session = %session.id.fingerprint()))]
    pub async fn create_indexed(&self, tenant: &Tenant, session: &Session) -> Result<bool, Error> {
        let tag = session
            .id
            .tag()
            .ok_or_else(|| Error::Internal("indexed sessions have tagged ids".into()))?;
        let lifetimes = &tenant.lifetimes;
        let keys = [tenant.keys.session(&session.id), tenant.keys.index(&tag)];
        let args = vec![
            Value::Bytes(Bytes::from(codec::encode(session))),
            Value::from(session.expires_at_ms() as i64),
            Value::from(session.id.handle()),
            Value::from(session.last_accessed_at_ms as i64),
            Value::from(lifetimes.max_per_principal as i64),
            Value::from(match lifetimes.on_limit {
                OnLimit::RevokeOldest => "revoke",
                OnLimit::Reject => "reject",
            }),
            Value::from(tenant.keys.members(&tag)),
        ];
        // Waits for a replica when it revoked older sessions (where reads go to replicas) or
        // when the store is durable.
        let reply: Vec<Value> = self
            .eval_revoking(
                "evalsha_create",
                &self.scripts.create,
                &keys,
                args,
                |r: &Vec<Value>| code(r) == Some(1),
                |r: &Vec<Value>| code(r) == Some(1) && number(r) > 0,
            )
            .await?;
        match code(&reply) {
            Some(1) => {
                let revoked = number(&reply);
                if let Some(Value::Array(handles)) = reply.get(2) {
                    for h in handles {
                        self.forget(&tenant.keys.session_by_handle(&tag, &text(Some(h))));
                    }
                }
                if revoked > 0 {
                    metrics::counter!("session_limit_revocations_total").increment(revoked);
                }
                Ok(true)
            }
            Some(0) => Ok(false),
            Some(-4) => Err(Error::LimitExceeded(format!(
                "the principal has {} live sessions, the limit (sessions.max_per_principal); \
                 log out another session first",
                number(&reply)
            ))),
            _ => Err(unexpected("create", &reply)),
        }
    }

    /// Moves a session to a new id. Within its slot (its principal does not change) this is one
    /// atomic script; to another slot (it gains a principal, or had an id of the first form) it
    /// is `seal` then create, and the old id is unusable from the first step. `change` applies
    /// a Put's delta on the way; `principal: None` keeps the current one.
    pub async fn rotate(
        &self,
        tenant: &Tenant,
        old: &SessionId,
        expected_version: Option<u64>,
        principal: Option<&str>,
        change: impl FnOnce(&mut Session) -> Result<(), Error>,
    ) -> Result<Session, Error> {
        let target = match principal {
            Some(p) if !p.is_empty() => Some(self.principal_tag(tenant, p).await?),
            _ => None,
        };
        match (old.tag(), &target) {
            // Same slot: the principal keeps (or clears, or regains) this tag.
            (Some(tag), Some(t)) if &tag == t => {
                self.rotate_in_slot(tenant, old, &tag, expected_version, principal)
                    .await
            }
            (Some(tag), None) => {
                self.rotate_in_slot(tenant, old, &tag, expected_version, principal)
                    .await
            }
            _ => {
                self.move_to_slot(tenant, old, expected_version, principal, change)
                    .await
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "valkey.rotate", skip_all, fields(session = %old.fingerprint()))]
    async fn rotate_in_slot(
        &self,
        tenant: &Tenant,
        old: &SessionId,
        tag: &SlotTag,
        expected_version: Option<u64>,
        principal: Option<&str>,
    ) -> Result<Session, Error> {
        loop {
            let new = SessionId::generate_in(tag);
            let reply: Vec<Value> = self
                .eval_write(
                    "evalsha_rotate",
                    &self.scripts.rotate,
                    &[
                        tenant.keys.session(old),
                        tenant.keys.session(&new),
                        tenant.keys.index(tag),
                    ],
                    vec![
                        Value::from(now_ms() as i64),
                        optional(expected_version),
                        Value::from(old.handle()),
                        Value::from(new.handle()),
                        Value::from(principal.map(|p| format!("={p}")).unwrap_or_default()),
                    ],
                    |r: &Vec<Value>| code(r) == Some(1),
                )
                .await?;
            self.forget(&tenant.keys.session(old));
            return match code(&reply) {
                Some(1) => blob(&reply).and_then(|b| codec::decode(new, b)),
                Some(0) => Err(Error::NotFound),
                Some(-1) => Err(conflict(expected_version, &reply)),
                // A 256-bit collision: practically impossible, harmless to handle.
                Some(-5) => continue,
                _ => Err(unexpected("rotate", &reply)),
            };
        }
    }

    #[tracing::instrument(level = "debug", name = "valkey.move", skip_all, fields(session = %old.fingerprint()))]
    async fn move_to_slot(
        &self,
        tenant: &Tenant,
        old: &SessionId,
        expected_version: Option<u64>,
        principal: Option<&str>,
        change: impl FnOnce(&mut Session) -> Result<(), Error>,
    ) -> Result<Session, Error> {
        let principal = match principal {
            Some(p) => p.to_owned(),
            // An id of the first form keeps its principal: read it to know the target slot.
            None => match self.get(tenant, old, true).await?.0 {
                Some(s) => s.principal.clone(),
                None => return Err(Error::NotFound),
            },
        };
        let new = if principal.is_empty() {
            SessionId::generate()
        } else {
            SessionId::generate_in(&self.principal_tag(tenant, &principal).await?)
        };
        let (old_keys, new, stored) = self
            .seal(tenant, old, new, &principal, expected_version)
            .await?;
        let mut session = codec::decode(new.clone(), &stored)?;
        let now = now_ms();
        session.version += 1;
        session.last_accessed_at_ms = now;
        session.principal = principal.clone();
        if let Err(e) = change(&mut session) {
            self.unseal(&old_keys, old, &new, now).await;
            return Err(e);
        }
        let created = if principal.is_empty() {
            self.create(tenant, &session).await
        } else {
            self.create_indexed(tenant, &session).await
        };
        match created {
            Ok(true) => Ok(session),
            // Already written by the attempt that sealed: this retry completes nothing new.
            Ok(false) => match self.get(tenant, &new, true).await?.0 {
                Some(done) => Ok(std::sync::Arc::unwrap_or_clone(done)),
                None => Err(Error::NotFound),
            },
            // Refused, nothing of the new session written: the old id works again.
            Err(e @ (Error::LimitExceeded(_) | Error::OutOfMemory(_))) => {
                self.unseal(&old_keys, old, &new, now).await;
                Err(e)
            }
            // Unavailable part-way: the old id is sealed; retrying the same call completes it.
            Err(e) => Err(e),
        }
    }

    /// Seals the old id (the first step of a move): the old key then forwards to `new`. Returns
    /// the old id's keys, the id the session moves to (that of an earlier, unfinished move of
    /// the same principal, if any) and the stored session.
    async fn seal(
        &self,
        tenant: &Tenant,
        old: &SessionId,
        new: SessionId,
        principal: &str,
        expected_version: Option<u64>,
    ) -> Result<(Vec<String>, SessionId, Vec<u8>), Error> {
        // An id of the first form has no index: a key of its slot that never exists stands in.
        let old_keys = vec![
            tenant.keys.session(old),
            match old.tag() {
                Some(tag) => tenant.keys.index(&tag),
                None => format!("{}:i", tenant.keys.session(old)),
            },
        ];
        let reply: Vec<Value> = self
            .eval_write(
                "evalsha_seal",
                &self.scripts.seal,
                &old_keys,
                vec![
                    Value::from(now_ms() as i64),
                    optional(expected_version),
                    Value::from(old.handle()),
                    Value::from(new.as_str()),
                    Value::from(principal),
                ],
                |r: &Vec<Value>| code(r) == Some(1),
            )
            .await?;
        self.forget(&old_keys[0]);
        let (new, stored) = match code(&reply) {
            Some(1) => (new, blob(&reply)?.to_vec()),
            // Sealed before by a move that did not finish: complete it, for the same principal
            // only (a planted id must not lead anyone else into the new session).
            Some(2) => {
                let recorded = text(reply.get(2));
                if recorded != principal {
                    return Err(Error::NotFound);
                }
                let id = SessionId::parse(&text(reply.get(1)))
                    .map_err(|_| Error::Internal("a forwarding record holds a bad id".into()))?;
                let stored = match reply.get(3) {
                    Some(Value::Bytes(b)) => b.to_vec(),
                    Some(Value::String(s)) => s.as_bytes().to_vec(),
                    _ => return Err(unexpected("seal", &reply)),
                };
                (id, stored)
            }
            Some(0) => return Err(Error::NotFound),
            Some(-1) => return Err(conflict(expected_version, &reply)),
            _ => return Err(unexpected("seal", &reply)),
        };
        Ok((old_keys, new, stored))
    }

    /// Undoes a seal whose move cannot complete, so the old id keeps working; best effort (the
    /// caller reports the error that stopped the move, not this one's).
    async fn unseal(&self, old_keys: &[String], old: &SessionId, new: &SessionId, now: u64) {
        let args = vec![
            Value::from(new.as_str()),
            Value::from(old.handle()),
            Value::from(now as i64),
        ];
        let _: Result<i64, _> = self
            .eval_write(
                "evalsha_unseal",
                &self.scripts.unseal,
                old_keys,
                args,
                |n: &i64| *n > 0,
            )
            .await;
    }

    /// One page of a principal's sessions, newest activity first, over every index the
    /// principal has (one, or one per secret while a deployment secret is rotated out).
    #[tracing::instrument(level = "debug", name = "valkey.list", skip_all)]
    pub async fn list(&self, tenant: &Tenant, page: Page<'_>) -> Result<Listed, Error> {
        let mut pages = Vec::new();
        for tag in self.principal_tags(tenant, page.principal).await? {
            pages.push(self.list_index(tenant, &tag, &page).await?);
        }
        Ok(merge(pages, page.size))
    }

    /// One page of one index of a principal.
    async fn list_index(
        &self,
        tenant: &Tenant,
        tag: &SlotTag,
        page: &Page<'_>,
    ) -> Result<Listed, Error> {
        let (score, handle) = match &page.after {
            Some((score, handle)) => (score.to_string(), handle.clone()),
            None => (String::new(), String::new()),
        };
        let mut args = vec![
            Value::from(tenant.keys.members(tag)),
            Value::from(page.size as i64),
            Value::from(score),
            Value::from(handle),
            Value::from(page.principal),
        ];
        args.extend(page.attributes.iter().map(|a| Value::from(a.as_str())));
        let reply: Vec<Value> = self
            .eval(
                "evalsha_list",
                &self.scripts.list,
                &[tenant.keys.index(tag)],
                args,
            )
            .await?;
        Ok(listed(&reply))
    }

    /// Revokes one session of a principal by handle; `false` when the principal has no such
    /// live session.
    #[tracing::instrument(level = "debug", name = "valkey.revoke", skip_all)]
    pub async fn revoke(
        &self,
        tenant: &Tenant,
        principal: &str,
        handle: &str,
    ) -> Result<bool, Error> {
        for tag in self.principal_tags(tenant, principal).await? {
            let index = tenant.keys.index(&tag);
            let revoked: i64 = self
                .eval_revoking(
                    "evalsha_revoke",
                    &self.scripts.revoke,
                    &[index, tenant.keys.session_by_handle(&tag, handle)],
                    vec![Value::from(handle), Value::from(principal)],
                    |n: &i64| *n > 0,
                    |n: &i64| *n > 0,
                )
                .await?;
            self.forget(&tenant.keys.session_by_handle(&tag, handle));
            if revoked > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Revokes every session of a principal but `except`, in every index it has; returns how
    /// many.
    #[tracing::instrument(level = "debug", name = "valkey.revoke_all", skip_all)]
    pub async fn revoke_all(
        &self,
        tenant: &Tenant,
        principal: &str,
        except: Option<&SessionId>,
    ) -> Result<u64, Error> {
        let mut total = 0;
        for tag in self.principal_tags(tenant, principal).await? {
            total += self.revoke_index(tenant, &tag, principal, except).await?;
        }
        Ok(total)
    }

    /// Revokes every session of one index of a principal but `except`.
    async fn revoke_index(
        &self,
        tenant: &Tenant,
        tag: &SlotTag,
        principal: &str,
        except: Option<&SessionId>,
    ) -> Result<u64, Error> {
        let tag = tag.clone();
        let index = tenant.keys.index(&tag);
        let keep = except
            .filter(|id| id.tag().as_ref() == Some(&tag))
            .map(SessionId::handle)
            .unwrap_or_default();
        let mut total = 0;
        loop {
            // Each batch waits for the replica where reads go to replicas: a batch that did not
            // revoke anything has nothing to wait for.
            let revoked = |r: &Vec<Value>| r.first().and_then(Value::as_i64).unwrap_or(0) > 0;
            let reply: Vec<Value> = self
                .eval_revoking(
                    "evalsha_revoke_all",
                    &self.scripts.revoke_all,
                    std::slice::from_ref(&index),
                    vec![
                        Value::from(tenant.keys.members(&tag)),
                        Value::from(keep.as_str()),
                        Value::from(principal),
                        Value::from(REVOKE_BATCH as i64),
                    ],
                    revoked,
                    revoked,
                )
                .await?;
            let field = |i: usize| reply.get(i).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
            total += field(0);
            if let Some(Value::Array(handles)) = reply.get(3) {
                for h in handles {
                    self.forget(&tenant.keys.session_by_handle(&tag, &text(Some(h))));
                }
            }
            // Stop when done, or when nothing moved (entries of a tag-sharing principal stay).
            if field(2) == 0 || field(1) == 0 {
                break;
            }
        }
        Ok(total)
    }
}

/// Reads the list script's reply (`[next score, next handle, rows]`, each row `[handle, version,
/// created, last accessed, idle, absolute, [name, value, ...]]`): what it cannot read is left
/// out, never a panic.
fn listed(reply: &[Value]) -> Listed {
    let next_score = text(reply.first());
    let next = (!next_score.is_empty())
        .then(|| Some((next_score.parse().ok()?, text(reply.get(1)))))
        .flatten();
    let Some(Value::Array(rows)) = reply.get(2) else {
        return Listed {
            entries: Vec::new(),
            next,
        };
    };
    let entries = rows
        .iter()
        .filter_map(|row| {
            let Value::Array(f) = row else { return None };
            let n = |i: usize| f.get(i).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
            let attributes = match f.get(6) {
                Some(Value::Array(kv)) => kv
                    .chunks(2)
                    .filter_map(|pair| match pair {
                        [name, value] => Some((text(Some(name)), bytes_of(value))),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(SessionEntry {
                handle: text(f.first()),
                version: n(1),
                created_at_ms: n(2),
                last_accessed_at_ms: n(3),
                idle_timeout_ms: n(4),
                absolute_expires_at_ms: Some(n(5)).filter(|&a| a > 0),
                attributes,
                score: n(7),
            })
        })
        .collect();
    Listed { entries, next }
}

/// One page out of pages of several indexes, each listed after the same cursor: ordered as one
/// index would be (score, then handle, both descending), and never past the point where an
/// index stopped early (it may hold entries before the others' next ones).
fn merge(pages: Vec<Listed>, size: usize) -> Listed {
    let position = |e: &SessionEntry| (e.score, e.handle.clone());
    // The earliest point any index stopped at: nothing after it is known to be complete.
    let limit = pages.iter().filter_map(|p| p.next.clone()).max();
    let mut entries: Vec<SessionEntry> = pages
        .into_iter()
        .flat_map(|p| p.entries)
        .filter(|e| limit.as_ref().is_none_or(|l| position(e) >= *l))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(position(e)));
    let next = if entries.len() > size {
        entries.truncate(size);
        entries.last().map(position)
    } else {
        limit
    };
    Listed { entries, next }
}

fn code(reply: &[Value]) -> Option<i64> {
    reply.first().and_then(Value::as_i64)
}

fn number(reply: &[Value]) -> u64 {
    reply.get(1).and_then(Value::as_i64).unwrap_or(0).max(0) as u64
}

fn blob(reply: &[Value]) -> Result<&[u8], Error> {
    match reply.get(1) {
        Some(Value::Bytes(b)) => Ok(b),
        Some(Value::String(s)) => Ok(s.as_bytes()),
        _ => Err(unexpected("script", reply)),
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.to_string(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Integer(i)) => i.to_string(),
        _ => String::new(),
    }
}

fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) => b.to_vec(),
        Value::String(s) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

fn optional(version: Option<u64>) -> Value {
    Value::from(version.map(|v| v.to_string()).unwrap_or_default())
}

fn conflict(expected: Option<u64>, reply: &[Value]) -> Error {
    Error::VersionConflict {
        expected: expected.unwrap_or_default(),
        current: number(reply),
    }
}

fn unexpected(script: &str, reply: &[Value]) -> Error {
    Error::Internal(format!("{script} script returned {reply:?}"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Any reply shape a script (or a server that is not Valkey) could send.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            ".{0,12}".prop_map(|s| Value::String(s.into())),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| Value::Bytes(b.into())),
        ];
        leaf.prop_recursive(3, 48, 8, |inner| {
            proptest::collection::vec(inner, 0..8).prop_map(Value::Array)
        })
    }

    proptest! {
        /// The list script's reply is read defensively: any shape is a (possibly empty) page,
        /// never a panic.
        #[test]
        fn any_reply_is_a_page(reply in proptest::collection::vec(value(), 0..4)) {
            let page = listed(&reply);
            prop_assert!(page.entries.len() <= 8);
        }
    }

    #[test]
    fn a_well_formed_reply_is_read_in_full() {
        let row = Value::Array(vec![
            "h1".into(),
            3.into(),
            10.into(),
            20.into(),
            30.into(),
            0.into(),
            Value::Array(vec![
                "device".into(),
                Value::Bytes(Bytes::from_static(b"laptop")),
            ]),
        ]);
        let page = listed(&["20".into(), "h1".into(), Value::Array(vec![row])]);
        assert_eq!(page.next, Some((20, "h1".to_owned())));
        assert_eq!(page.entries.len(), 1);
        let entry = &page.entries[0];
        assert_eq!((entry.handle.as_str(), entry.version), ("h1", 3));
        assert_eq!(entry.absolute_expires_at_ms, None);
        assert_eq!(
            entry.attributes,
            vec![("device".to_owned(), b"laptop".to_vec())]
        );
    }
}
