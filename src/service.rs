//! The tonic `SessionService`: validate the request, call the store, map the result.
//! Nothing below this module knows about gRPC.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    auth::Caller,
    config,
    proto::{
        self, Consistency, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
        Durability, GetRequest, GetResponse, ListSessionsRequest, ListSessionsResponse, PutRequest,
        PutResponse, RevokeSessionRequest, RevokeSessionResponse, RevokeSessionsRequest,
        RevokeSessionsResponse, RotateRequest, RotateResponse, SessionInfo,
    },
    session::{Error, HANDLE_LEN, Limits, Session, SessionId, expiry_ms, now_ms},
    store::{Delta, Page, ReadSource, SessionEntry, SessionStore},
    tenant::{Tenant, Tenants},
};

/// The gRPC face of the store.
pub struct SessionService {
    store: SessionStore,
    /// The same store with writes acknowledged once a replica has them.
    durable: SessionStore,
    /// The durability of requests that do not ask for one.
    default_durability: config::Durability,
    tenants: Tenants,
}

impl SessionService {
    /// A service over `store`; each request works in the tenant of its [`Caller`] (the default
    /// tenant when no auth layer put one there). Writes are acknowledged by the primary unless a
    /// request asks otherwise (see [`Self::with_durability`]).
    pub fn new(store: SessionStore, tenants: Tenants) -> Self {
        Self {
            durable: store.durable(config::DEFAULT_DURABILITY_TIMEOUT),
            store,
            default_durability: config::Durability::Primary,
            tenants,
        }
    }

    /// Sets the durability of requests that do not ask for one, and how long a durable write
    /// waits for a replica.
    pub fn with_durability(mut self, default: config::Durability, timeout: Duration) -> Self {
        self.default_durability = default;
        self.durable = self.store.durable(timeout);
        self
    }

    /// The store that writes with the durability a request asks for (`durability` field).
    fn store_for(&self, requested: i32) -> &SessionStore {
        let replica = match Durability::try_from(requested).unwrap_or_default() {
            Durability::Unspecified => self.default_durability == config::Durability::Replica,
            Durability::Primary => false,
            Durability::Replica => true,
        };
        if replica { &self.durable } else { &self.store }
    }

    fn tenant<T>(&self, request: &Request<T>) -> Arc<Tenant> {
        request
            .extensions()
            .get::<Caller>()
            .map(|c| c.tenant.clone())
            .unwrap_or_else(|| self.tenants.default_tenant().clone())
    }

    fn timeout(
        field: &str,
        requested: Option<prost_types::Duration>,
        default: Option<Duration>,
        max: Duration,
    ) -> Result<Option<Duration>, Error> {
        let Some(requested) = requested else {
            return Ok(default);
        };
        let value = Duration::try_from(requested)
            .map_err(|_| Error::InvalidArgument(format!("{field} must be a positive duration")))?;
        if value < Duration::from_secs(1) || value > max {
            return Err(Error::InvalidArgument(format!(
                "{field} must be between 1s and {}s, got {:.3}s",
                max.as_secs(),
                value.as_secs_f64()
            )));
        }
        Ok(Some(value))
    }

    /// A principal named by a request about a principal's sessions: required, and within limits.
    fn principal<'a>(limits: &Limits, principal: &'a str) -> Result<&'a str, Error> {
        if principal.is_empty() {
            return Err(Error::InvalidArgument(
                "principal is required: the user whose sessions these are".into(),
            ));
        }
        limits.check_principal(principal)?;
        Ok(principal)
    }
}

/// Most sessions on one ListSessions page, and the default.
const MAX_PAGE_SIZE: u32 = 100;
const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most display attributes one ListSessions may ask for.
const MAX_DISPLAY_ATTRIBUTES: usize = 8;

/// A Put's delta applied in memory, for a Put that moves the session to its new principal's
/// slot: the same rules as `scripts/put.lua`.
fn apply(session: &mut Session, delta: &Delta, limits: &Limits) -> Result<(), Error> {
    if let Some(expected) = delta.expected_version.filter(|v| *v + 1 != session.version) {
        return Err(Error::VersionConflict {
            expected,
            current: session.version - 1,
        });
    }
    for (name, value) in &delta.set {
        session.attributes.insert(name.clone(), value.clone());
    }
    for name in &delta.remove {
        session.attributes.remove(name);
    }
    if let Some(idle) = delta.idle_timeout_ms {
        session.idle_timeout_ms = idle;
    }
    limits.check_totals(&session.attributes)
}

#[tonic::async_trait]
impl proto::session_service_server::SessionService for SessionService {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let tenant = self.tenant(&request);
        let (limits, lifetimes) = (&tenant.limits, &tenant.lifetimes);
        let req = request.into_inner();
        limits.check_principal(&req.principal)?;
        limits.check_entries("attributes", &req.attributes)?;
        limits.check_totals(&req.attributes)?;
        let idle = Self::timeout(
            "idle_timeout",
            req.idle_timeout,
            Some(lifetimes.default_idle_timeout),
            lifetimes.max_idle_timeout,
        )?
        .unwrap_or(lifetimes.default_idle_timeout);
        let absolute = Self::timeout(
            "absolute_timeout",
            req.absolute_timeout,
            lifetimes.default_absolute_timeout,
            lifetimes.max_absolute_timeout,
        )?;

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
            )
            .into());
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
                return Err(Error::AlreadyExists.into());
            }
            session.id = fresh();
        }
        Err(Error::Internal("could not allocate a unique session id".into()).into())
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
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

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
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
                ))
                .into());
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

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        let existed = self.store_for(req.durability).delete(&tenant, &id).await?;
        Ok(Response::new(DeleteResponse { existed }))
    }

    async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
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
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let principal = Self::principal(&tenant.limits, &req.principal)?;
        let size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            n => {
                return Err(Error::InvalidArgument(format!(
                    "page_size must be 1..={MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"
                ))
                .into());
            }
        };
        if req.display_attributes.len() > MAX_DISPLAY_ATTRIBUTES {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_DISPLAY_ATTRIBUTES} display_attributes, got {}",
                req.display_attributes.len()
            ))
            .into());
        }
        for name in &req.display_attributes {
            tenant.limits.check_name("display_attributes", name)?;
        }
        let secret = self.store.secret().await?;
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

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
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
            )
            .into());
        }
        if !self.store.revoke(&tenant, principal, &req.handle).await? {
            return Err(Error::NotFound.into());
        }
        Ok(Response::new(RevokeSessionResponse { revoked: 1 }))
    }

    async fn revoke_sessions(
        &self,
        request: Request<RevokeSessionsRequest>,
    ) -> Result<Response<RevokeSessionsResponse>, Status> {
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

fn to_info(e: SessionEntry) -> SessionInfo {
    SessionInfo {
        created_at: Some(timestamp(e.created_at_ms)),
        last_accessed_at: Some(timestamp(e.last_accessed_at_ms)),
        expires_at: Some(timestamp(expiry_ms(
            e.last_accessed_at_ms,
            e.idle_timeout_ms,
            e.absolute_expires_at_ms,
        ))),
        version: e.version,
        display_attributes: e.attributes.into_iter().collect(),
        handle: e.handle,
    }
}

fn to_proto(s: Session) -> proto::Session {
    let mut proto = header_to_proto(&s);
    proto.attributes = s.attributes;
    proto.principal = s.principal;
    proto
}

/// [`to_proto`] of a session the near cache may share: moved when this is its only holder,
/// copied otherwise.
fn shared_to_proto(s: Arc<Session>) -> proto::Session {
    match Arc::try_unwrap(s) {
        Ok(owned) => to_proto(owned),
        Err(shared) => {
            let mut proto = header_to_proto(&shared);
            proto.attributes = shared.attributes.clone();
            proto.principal = shared.principal.clone();
            proto
        }
    }
}

/// Everything of a session but its attributes and principal.
fn header_to_proto(s: &Session) -> proto::Session {
    let expires = expiry_ms(
        s.last_accessed_at_ms,
        s.idle_timeout_ms,
        s.absolute_expires_at_ms,
    );
    proto::Session {
        id: s.id.as_str().to_owned(),
        attributes: HashMap::new(),
        principal: String::new(),
        created_at: Some(timestamp(s.created_at_ms)),
        last_accessed_at: Some(timestamp(s.last_accessed_at_ms)),
        expires_at: Some(timestamp(expires)),
        idle_timeout: Some(
            Duration::from_millis(s.idle_timeout_ms)
                .try_into()
                .unwrap_or_default(),
        ),
        absolute_expires_at: s.absolute_expires_at_ms.map(timestamp),
        version: s.version,
    }
}

/// Counts a Get by where it was answered from. The handles are kept: a hot Get then skips the
/// recorder's registry lookup (a hash of name and labels under a lock).
fn count_get(source: ReadSource) {
    static COUNTERS: [OnceLock<metrics::Counter>; ReadSource::ALL.len()] =
        [const { OnceLock::new() }; ReadSource::ALL.len()];
    COUNTERS[source as usize]
        .get_or_init(|| metrics::counter!("session_gets_total", "source" => source.as_str()))
        .increment(1);
}

fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidId(_) | Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::NotFound => Status::not_found(message),
            Error::AlreadyExists => Status::already_exists(message),
            Error::VersionConflict { current, .. } => Status::with_error_details(
                tonic::Code::Aborted,
                message,
                ErrorDetails::with_error_info(
                    "VERSION_CONFLICT",
                    "valkey-sessions",
                    [("current_version".to_string(), current.to_string())],
                ),
            ),
            Error::LimitExceeded(_) => Status::resource_exhausted(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::NotReplicated { timeout, .. } => Status::with_error_details(
                tonic::Code::Unavailable,
                message,
                ErrorDetails::with_error_info(
                    "NOT_REPLICATED",
                    "valkey-sessions",
                    [
                        ("applied".to_string(), "true".to_string()),
                        ("timeout_ms".to_string(), timeout.as_millis().to_string()),
                    ],
                ),
            ),
            Error::Unreachable { retry_after, .. } => Status::with_error_details(
                tonic::Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Error::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                Status::internal(message)
            }
        }
    }
}
