//! The tonic `SessionService`: validate the request, call the store, map the result.
//! Nothing below this module knows about gRPC.

use std::{sync::Arc, time::Duration};

use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    auth::Caller,
    proto::{
        self, Consistency, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
        GetRequest, GetResponse, PutRequest, PutResponse, RotateRequest, RotateResponse,
    },
    session::{Error, Session, SessionId, expiry_ms, now_ms},
    store::{Delta, SessionStore},
    tenant::{Tenant, Tenants},
};

/// The gRPC face of the store.
pub struct SessionService {
    store: SessionStore,
    tenants: Tenants,
}

impl SessionService {
    /// A service over `store`; each request works in the tenant of its [`Caller`] (the default
    /// tenant when no auth layer put one there).
    pub fn new(store: SessionStore, tenants: Tenants) -> Self {
        Self { store, tenants }
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

        let now = now_ms();
        let mut session = Session {
            id: SessionId::generate(),
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
        for _ in 0..2 {
            if self.store.create(&tenant, &session).await? {
                tracing::debug!(session = %session.id.fingerprint(), "created");
                return Ok(Response::new(CreateResponse {
                    session: Some(to_proto(session)),
                }));
            }
            session.id = SessionId::generate();
        }
        Err(Error::Internal("could not allocate a unique session id".into()).into())
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        let strong = req.consistency == Consistency::Strong as i32;
        let (session, source) = self.store.get(&tenant, &id, strong).await?;
        metrics::counter!("session_gets_total", "source" => source.as_str()).increment(1);
        let session = session.ok_or(Error::NotFound)?;
        if session.needs_touch(now_ms()) {
            self.store.touch_in_background(&tenant, &id);
        }
        Ok(Response::new(GetResponse {
            session: Some(to_proto(session)),
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
        let session = self.store.put(&tenant, &id, delta).await?;
        Ok(Response::new(PutResponse {
            session: Some(to_proto(session)),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let tenant = self.tenant(&request);
        let id = SessionId::parse(&request.into_inner().id)?;
        let existed = self.store.delete(&tenant, &id).await?;
        Ok(Response::new(DeleteResponse { existed }))
    }

    async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        let tenant = self.tenant(&request);
        let req = request.into_inner();
        let id = SessionId::parse(&req.id)?;
        let session = self
            .store
            .rotate(&tenant, &id, req.expected_version)
            .await?;
        tracing::debug!(from = %id.fingerprint(), to = %session.id.fingerprint(), "rotated");
        Ok(Response::new(RotateResponse {
            session: Some(to_proto(session)),
        }))
    }
}

fn to_proto(s: Session) -> proto::Session {
    let expires = expiry_ms(
        s.last_accessed_at_ms,
        s.idle_timeout_ms,
        s.absolute_expires_at_ms,
    );
    proto::Session {
        id: s.id.as_str().to_owned(),
        attributes: s.attributes,
        principal: s.principal,
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
            Error::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                Status::internal(message)
            }
        }
    }
}
