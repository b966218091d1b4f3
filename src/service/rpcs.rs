//! The RPCs of the session API on the domain: validate the request, call the store, build the
//! response. Errors stay domain errors; [`super::status`] maps them once.

use super::*;

impl SessionService {
    pub(super) async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Error> {
        let tenant = self.tenant(&request);
        let (limits, lifetimes) = (&tenant.limits, &tenant.lifetimes);
        let req = request.into_inner();
        limits.check_principal(&req.principal)?;
        limits.check_entries("attributes", &req.attributes)?;
        limits.check_totals(&req.attributes)?;
        let (idle, absolute) = Self::lifetimes(lifetimes, req.idle_timeout, req.absolute_timeout)?;

        // A caller-proposed id (session middleware that picks its own ids): validated, written
        // with NX (never overwrites), its own slot, in no principal's index (docs/adapters.md).
        let proposed = req
            .proposed_id
            .as_deref()
            .map(SessionId::proposed)
            .transpose()?;
        if proposed.is_some() && !req.principal.is_empty() {
            return Err(Error::InvalidArgument(
                "proposed_id cannot be combined with principal: a session with a proposed id is \
                 anonymous; log in with Rotate{id, principal}, which gives it a server-generated id"
                    .into(),
            ));
        }

        // A principal's sessions live in its slot, with its index; anonymous ones anywhere.
        let tag = if req.principal.is_empty() {
            None
        } else {
            Some(self.store.principal_tag(&tenant, &req.principal).await?)
        };
        let fresh = || match &tag {
            Some(tag) => SessionId::generate_in(tag),
            None => SessionId::generate(),
        };
        let now = now_ms();
        let mut session = Session {
            id: proposed.clone().unwrap_or_else(fresh),
            attributes: req.attributes,
            principal: req.principal,
            version: 1,
            created_at_ms: now,
            last_accessed_at_ms: now,
            idle_timeout_ms: idle.as_millis() as u64,
            absolute_expires_at_ms: absolute.map(|a| now + a.as_millis() as u64),
        };
        // SET NX refuses an existing key: a 256-bit collision is practically impossible, but a
        // retry with a fresh id is cheaper than reasoning about it.
        let store = self.store_for(req.durability);
        for _ in 0..2 {
            let created = if tag.is_some() {
                store.create_indexed(&tenant, &session).await?
            } else {
                store.create(&tenant, &session).await?
            };
            if created {
                tracing::debug!(session = %session.id.fingerprint(), "created");
                return Ok(Response::new(CreateResponse {
                    session: Some(to_proto(session)),
                }));
            }
            if proposed.is_some() {
                // Never retried with another id: the caller's cookie already names this one.
                return Err(Error::AlreadyExists);
            }
            session.id = fresh();
        }
        Err(Error::Internal(
            "could not allocate a unique session id".into(),
        ))
    }

    pub(super) async fn get(
        &self,
        request: Request<GetRequest>,
    ) -> Result<Response<GetResponse>, Error> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        let strong = req.consistency == Consistency::Strong as i32;
        let (session, source) = self.store.get(&tenant, &id, strong).await?;
        count_get(source);
        let session = session.ok_or(Error::NotFound)?;
        if session.needs_touch(now_ms()) {
            self.store
                .touch_in_background(&tenant, &id, !session.principal.is_empty());
        }
        Ok(Response::new(GetResponse {
            session: Some(shared_to_proto(session)),
        }))
    }

    pub(super) async fn put(
        &self,
        request: Request<PutRequest>,
    ) -> Result<Response<PutResponse>, Error> {
        let tenant = self.tenant(&request);
        let limits = &tenant.limits;
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        limits.check_entries("set", &req.set)?;
        for name in &req.remove {
            limits.check_name("remove", name)?;
            if req.set.contains_key(name) {
                return Err(Error::InvalidArgument(format!(
                    "attribute {name:?} is in both set and remove; send one or the other"
                )));
            }
        }
        if let Some(principal) = &req.principal {
            limits.check_principal(principal)?;
        }
        let idle = Self::timeout(
            "idle_timeout",
            req.idle_timeout,
            None,
            tenant.lifetimes.max_idle_timeout,
        )?;
        let delta = Delta {
            set: req.set.into_iter().collect(),
            remove: req.remove,
            expected_version: req.expected_version,
            idle_timeout_ms: idle.map(|d| d.as_millis() as u64),
            principal: req.principal,
        };
        // A new principal whose sessions live in another slot: a login, so the session moves
        // (new id in the response), exactly like Rotate{id, principal}.
        let moves = match delta.principal.as_deref() {
            Some(p) if !p.is_empty() => {
                id.tag() != Some(self.store.principal_tag(&tenant, p).await?)
            }
            _ => false,
        };
        let store = self.store_for(req.durability);
        let session = if moves {
            let principal = delta.principal.clone();
            store
                .rotate(
                    &tenant,
                    &id,
                    delta.expected_version,
                    principal.as_deref(),
                    |s| apply(s, &delta, limits),
                )
                .await?
        } else {
            store.put(&tenant, &id, delta).await?
        };
        Ok(Response::new(PutResponse {
            session: Some(to_proto(session)),
        }))
    }

    pub(super) async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Error> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        let existed = self.store_for(req.durability).delete(&tenant, &id).await?;
        Ok(Response::new(DeleteResponse { existed }))
    }

    pub(super) async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Error> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        if let Some(principal) = &req.principal {
            tenant.limits.check_principal(principal)?;
        }
        let session = self
            .store_for(req.durability)
            .rotate(
                &tenant,
                &id,
                req.expected_version,
                req.principal.as_deref(),
                |_| Ok(()),
            )
            .await?;
        tracing::debug!(from = %id.fingerprint(), to = %session.id.fingerprint(), "rotated");
        Ok(Response::new(RotateResponse {
            session: Some(to_proto(session)),
        }))
    }
    pub(super) async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Error> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let principal = Self::principal(&tenant.limits, &req.principal)?;
        let size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            n => {
                return Err(Error::InvalidArgument(format!(
                    "page_size must be 1..={MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"
                )));
            }
        };
        if req.display_attributes.len() > MAX_DISPLAY_ATTRIBUTES {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_DISPLAY_ATTRIBUTES} display_attributes, got {}",
                req.display_attributes.len()
            )));
        }
        for name in &req.display_attributes {
            tenant.limits.check_display(name)?;
        }
        let secret = self.store.keys().await?;
        let now = now_ms();
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(
                secret
                    .open_page_token(&tenant.name, principal, &req.page_token, now)
                    .map_err(|e| Error::InvalidArgument(e.into()))?,
            )
        };
        let listed = self
            .store
            .list(
                &tenant,
                Page {
                    principal,
                    size: size as usize,
                    after,
                    attributes: &req.display_attributes,
                },
            )
            .await?;
        let next_page_token = listed
            .next
            .map(|cursor| secret.page_token(&tenant.name, principal, &cursor, now))
            .unwrap_or_default();
        Ok(Response::new(ListSessionsResponse {
            sessions: listed.entries.into_iter().map(to_info).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Error> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let principal = Self::principal(&tenant.limits, &req.principal)?;
        if req.handle.len() != HANDLE_LEN
            || !req
                .handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::InvalidArgument(
                "handle must be a handle from ListSessions (22 characters)".into(),
            ));
        }
        if !self.store.revoke(&tenant, principal, &req.handle).await? {
            return Err(Error::NotFound);
        }
        Ok(Response::new(RevokeSessionResponse { revoked: 1 }))
    }

    pub(super) async fn revoke_sessions(
        &self,
        request: Request<RevokeSessionsRequest>,
    ) -> Result<Response<RevokeSessionsResponse>, Error> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let principal = Self::principal(&tenant.limits, &req.principal)?;
        let except = req.except_id.as_deref().map(SessionId::parse).transpose()?;
        let revoked = self
            .store
            .revoke_all(&tenant, principal, except.as_ref())
            .await?;
        Ok(Response::new(RevokeSessionsResponse {
            revoked: revoked.min(u32::MAX as u64) as u32,
        }))
    }
}
