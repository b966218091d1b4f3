//! The tonic `SessionService`: validate the request, call the store, map the result
//! ([`rpcs`]), with errors mapped to statuses once ([`status`]). Nothing below this module
//! knows about gRPC.

mod rpcs;
mod status;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use session_core::{
    Error, HANDLE_LEN, Lifetimes, Limits, Session, SessionId, Tenant, Tenants, expiry_ms, now_ms,
};
use session_proto::{
    self as proto, Consistency, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    Durability, GetRequest, GetResponse, ListSessionsRequest, ListSessionsResponse, PutRequest,
    PutResponse, RevokeSessionRequest, RevokeSessionResponse, RevokeSessionsRequest,
    RevokeSessionsResponse, RotateRequest, RotateResponse, SessionInfo,
};
use session_store::{
    Delta, Page, ReadSource, SessionEntry, SessionStore,
    config::{self, DEFAULT_DURABILITY_TIMEOUT},
};

use status::status;
use tonic::{Request, Response, Status};

use crate::auth::Caller;

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
            durable: store.durable(DEFAULT_DURABILITY_TIMEOUT),
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

    /// The idle timeout and absolute lifetime a Create asks for, or the tenant's defaults;
    /// within the tenant's caps.
    fn lifetimes(
        lifetimes: &Lifetimes,
        idle: Option<prost_types::Duration>,
        absolute: Option<prost_types::Duration>,
    ) -> Result<(Duration, Option<Duration>), Error> {
        let idle = Self::timeout(
            "idle_timeout",
            idle,
            Some(lifetimes.default_idle_timeout),
            lifetimes.max_idle_timeout,
        )?
        .unwrap_or(lifetimes.default_idle_timeout);
        let absolute = Self::timeout(
            "absolute_timeout",
            absolute,
            lifetimes.default_absolute_timeout,
            lifetimes.max_absolute_timeout,
        )?;
        Ok((idle, absolute))
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

#[tonic::async_trait]
impl proto::session_service_server::SessionService for SessionService {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        SessionService::create(self, request).await.map_err(status)
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        SessionService::get(self, request).await.map_err(status)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        SessionService::put(self, request).await.map_err(status)
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        SessionService::delete(self, request).await.map_err(status)
    }

    async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        SessionService::rotate(self, request).await.map_err(status)
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        SessionService::list_sessions(self, request)
            .await
            .map_err(status)
    }

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        SessionService::revoke_session(self, request)
            .await
            .map_err(status)
    }

    async fn revoke_sessions(
        &self,
        request: Request<RevokeSessionsRequest>,
    ) -> Result<Response<RevokeSessionsResponse>, Status> {
        SessionService::revoke_sessions(self, request)
            .await
            .map_err(status)
    }
}
