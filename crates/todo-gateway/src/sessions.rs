//! The gateway's use of valkey-sessions: one reused channel, a deadline and the trace context on
//! every call, and read-modify-write of the todo list guarded by the session's version.

use std::{collections::HashMap, time::Duration};

use opentelemetry::{global, propagation::Injector};
use tonic::{
    Code, Request,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    accounts::DEVICE_ATTRIBUTE,
    error::ApiError,
    todos::{self, Todo},
};
use session_core::SessionId;
use session_proto::{
    Consistency, CreateRequest, DeleteRequest, GetRequest, ListSessionsRequest, PutRequest,
    RevokeSessionRequest, RevokeSessionsRequest, RotateRequest, Session, SessionInfo,
    caller::{CallerOptions, Client},
};

/// Attempts of one edit before giving up with 409: with the backoff below, enough for a few
/// dozen parallel writes to one session (a browser sends a handful).
const MAX_ATTEMPTS: usize = 12;

/// Sessions of a user listed at once: the service's largest page.
const LIST_PAGE_SIZE: u32 = 100;

/// A browser whose session has a principal.
#[derive(Debug)]
pub struct SignedInSession {
    /// The session id (the cookie).
    pub id: String,
    /// The user.
    pub principal: String,
}

/// A session as the gateway sees it.
#[derive(Debug)]
pub struct TodoSession {
    /// The id, for the cookie.
    pub id: String,
    /// True when this request created the session (the cookie must be set).
    pub created: bool,
    /// The list, as stored after this request.
    pub todos: Vec<Todo>,
}

/// The session service, seen from the gateway.
#[derive(Clone)]
pub struct Sessions {
    client: Client,
    health: HealthClient<Channel>,
    timeout: Duration,
}

impl Sessions {
    /// A client over a lazily connected channel: the gateway starts even while the service is down.
    pub fn connect_lazy(
        url: &str,
        caller: &CallerOptions,
        timeout: Duration,
    ) -> Result<Self, String> {
        let endpoint = caller
            .endpoint(url)
            .map_err(|e| format!("SESSION_SERVICE_URL: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        Ok(Self {
            client: caller.client(channel.clone())?,
            health: HealthClient::new(channel),
            timeout,
        })
    }

    /// The session's todos. Without a live session (no cookie, or one that ended) this is the
    /// demo's seed and nothing is stored: a session starts with the first change, so cookieless
    /// GETs (crawlers, a flood) cost no Valkey memory.
    pub async fn list(&self, cookie: Option<&str>) -> Result<TodoSession, ApiError> {
        if let Some(id) = cookie
            && let Some(session) = self.get(id, false).await?
        {
            let todos = match stored_todos(&session) {
                Some(Some(todos)) => todos,
                _ => todos::seed(),
            };
            return Ok(TodoSession {
                id: session.id,
                created: false,
                todos,
            });
        }
        Ok(TodoSession {
            id: String::new(),
            created: false,
            todos: todos::seed(),
        })
    }

    /// Applies `change` to the session's list and stores it; a concurrent edit of the same
    /// session makes the Put fail with ABORTED, and the change is replayed on a fresh read.
    pub async fn edit<T>(
        &self,
        cookie: Option<&str>,
        change: impl Fn(&mut Vec<Todo>) -> Result<T, ApiError>,
    ) -> Result<(TodoSession, T), ApiError> {
        let mut id = cookie.map(str::to_owned);
        for attempt in 0..MAX_ATTEMPTS {
            // The first read may come from a replica; a retry follows a conflict, so it must see
            // the version that won.
            let current = match &id {
                Some(id) => self.get(id, attempt > 0).await?,
                None => None,
            };
            let Some(session) = current else {
                let mut todos = todos::seed();
                let out = change(&mut todos)?;
                let id = self.create(&todos).await?;
                return Ok((
                    TodoSession {
                        id,
                        created: true,
                        todos,
                    },
                    out,
                ));
            };
            let mut todos = match stored_todos(&session) {
                Some(Some(todos)) => todos,
                Some(None) => {
                    tracing::warn!("session attribute `todos` is not a todo list; starting over");
                    todos::seed()
                }
                None => todos::seed(),
            };
            let out = change(&mut todos)?;
            match self.put(&session.id, &todos, session.version).await {
                Ok(()) => {
                    return Ok((
                        TodoSession {
                            id: session.id,
                            created: false,
                            todos,
                        },
                        out,
                    ));
                }
                Err(status) if status.code() == Code::Aborted => {
                    tracing::debug!(attempt, "version conflict; replaying the edit");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                // Expired or logged out between the read and the write: start a new session.
                Err(status) if status.code() == Code::NotFound => id = None,
                Err(status) => return Err(status.into()),
            }
        }
        Err(ApiError::Conflict(format!(
            "the session was changed concurrently {MAX_ATTEMPTS} times in a row; retry the request"
        )))
    }

    /// Deletes the session; an unknown or malformed id is already logged out.
    pub async fn delete(&self, cookie: Option<&str>) -> Result<(), ApiError> {
        let Some(id) = cookie.filter(|id| SessionId::parse(id).is_ok()) else {
            return Ok(());
        };
        let request = self.request(DeleteRequest {
            id: id.to_owned(),
            ..Default::default()
        });
        self.client.clone().delete(request).await?;
        Ok(())
    }

    /// Signs the browser in as `username`: stores the device label, then the login step
    /// Rotate{id, principal}, so the session (todos included) moves to a new id, returned for the
    /// cookie; a planted or leaked old id is worthless afterwards. A browser without a live
    /// session gets a new one, created with the principal (a fresh id already).
    pub async fn login(
        &self,
        cookie: Option<&str>,
        username: &str,
        device: &str,
    ) -> Result<String, ApiError> {
        if let Some(id) = cookie.filter(|id| SessionId::parse(id).is_ok()) {
            let request = self.request(PutRequest {
                id: id.to_owned(),
                set: HashMap::from([(DEVICE_ATTRIBUTE.to_owned(), device.as_bytes().to_vec())]),
                ..Default::default()
            });
            match self.client.clone().put(request).await {
                Ok(_) => {
                    if let Some(new_id) = self.rotate_to(id, username).await? {
                        return Ok(new_id);
                    }
                }
                // Expired or logged out meanwhile: a new session below.
                Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {}
                Err(status) => return Err(login_error(status, username)),
            }
        }
        let request = self.request(CreateRequest {
            attributes: HashMap::from([
                (todos::ATTRIBUTE.to_owned(), todos::encode(&todos::seed())),
                (DEVICE_ATTRIBUTE.to_owned(), device.as_bytes().to_vec()),
            ]),
            principal: username.to_owned(),
            ..Default::default()
        });
        let response = self
            .client
            .clone()
            .create(request)
            .await
            .map_err(|status| login_error(status, username))?;
        response
            .into_inner()
            .session
            .map(|s| s.id)
            .ok_or_else(|| ApiError::Upstream("Create returned no session".into()))
    }

    /// Rotate{id, principal}: the new id, or `None` when the session is gone. A Rotate that
    /// failed part-way is completed by retrying it with the same principal, so a transient
    /// failure is retried once.
    async fn rotate_to(&self, id: &str, principal: &str) -> Result<Option<String>, ApiError> {
        let mut retried = false;
        loop {
            let request = self.request(RotateRequest {
                id: id.to_owned(),
                expected_version: None,
                principal: Some(principal.to_owned()),
                ..Default::default()
            });
            match self.client.clone().rotate(request).await {
                Ok(response) => {
                    return response
                        .into_inner()
                        .session
                        .map(|s| Some(s.id))
                        .ok_or_else(|| ApiError::Upstream("Rotate returned no session".into()));
                }
                Err(status) if status.code() == Code::NotFound => {
                    if retried {
                        tracing::warn!("login: a retried Rotate found the session gone");
                    }
                    return Ok(None);
                }
                Err(status)
                    if !retried
                        && matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) =>
                {
                    tracing::debug!(code = ?status.code(), "login: Rotate failed; retrying once");
                    retried = true;
                    tokio::time::sleep(backoff(3)).await;
                }
                Err(status) => return Err(login_error(status, principal)),
            }
        }
    }

    /// The browser's session if it is signed in (its principal is set); 401 otherwise.
    pub async fn signed_in(&self, cookie: Option<&str>) -> Result<SignedInSession, ApiError> {
        let session = match cookie {
            Some(id) => self.get(id, false).await?,
            None => None,
        };
        match session {
            Some(session) if !session.principal.is_empty() => Ok(SignedInSession {
                id: session.id,
                principal: session.principal,
            }),
            _ => Err(ApiError::Unauthorized(
                "this browser is not signed in: POST /login first".into(),
            )),
        }
    }

    /// The user's sessions, most recently active first (the first 100), with their device label.
    pub async fn list_user_sessions(&self, principal: &str) -> Result<Vec<SessionInfo>, ApiError> {
        let request = self.request(ListSessionsRequest {
            principal: principal.to_owned(),
            page_size: LIST_PAGE_SIZE,
            page_token: String::new(),
            display_attributes: vec![DEVICE_ATTRIBUTE.to_owned()],
        });
        let response = self.client.clone().list_sessions(request).await?;
        Ok(response.into_inner().sessions)
    }

    /// Ends every session of the user but `keep_id`; how many were ended.
    pub async fn revoke_others(&self, principal: &str, keep_id: &str) -> Result<u32, ApiError> {
        let request = self.request(RevokeSessionsRequest {
            principal: principal.to_owned(),
            except_id: Some(keep_id.to_owned()),
        });
        let response = self.client.clone().revoke_sessions(request).await?;
        Ok(response.into_inner().revoked)
    }

    /// Ends the user's session named by `handle`; 404 when the user has no such session.
    pub async fn revoke(&self, principal: &str, handle: &str) -> Result<(), ApiError> {
        let request = self.request(RevokeSessionRequest {
            principal: principal.to_owned(),
            handle: handle.to_owned(),
        });
        match self.client.clone().revoke_session(request).await {
            Ok(_) => Ok(()),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => Err(
                ApiError::NotFound("the signed-in user has no such session".into()),
            ),
            Err(status) => Err(status.into()),
        }
    }

    /// The session service's own health (SERVING only while it reaches Valkey).
    pub async fn ready(&self) -> Result<ServingStatus, ApiError> {
        let request = self.request(HealthCheckRequest {
            service: "session.v1.SessionService".into(),
        });
        let response = self.health.clone().check(request).await?;
        Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
    }

    /// The stored session, or `None` when the cookie names no live session.
    async fn get(&self, id: &str, strong: bool) -> Result<Option<Session>, ApiError> {
        // A forged cookie is not worth a round trip.
        if SessionId::parse(id).is_err() {
            return Ok(None);
        }
        let consistency = if strong {
            Consistency::Strong
        } else {
            Consistency::Eventual
        };
        let request = self.request(GetRequest {
            id: id.to_owned(),
            consistency: consistency as i32,
        });
        match self.client.clone().get(request).await {
            Ok(response) => Ok(response.into_inner().session),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                Ok(None)
            }
            Err(status) => Err(status.into()),
        }
    }

    async fn create(&self, todos: &[Todo]) -> Result<String, ApiError> {
        let request = self.request(CreateRequest {
            attributes: HashMap::from([(todos::ATTRIBUTE.to_owned(), todos::encode(todos))]),
            ..Default::default()
        });
        let response = self.client.clone().create(request).await?;
        response
            .into_inner()
            .session
            .map(|s| s.id)
            .ok_or_else(|| ApiError::Upstream("Create returned no session".into()))
    }

    async fn put(&self, id: &str, todos: &[Todo], version: u64) -> Result<(), tonic::Status> {
        let request = self.request(PutRequest {
            id: id.to_owned(),
            set: HashMap::from([(todos::ATTRIBUTE.to_owned(), todos::encode(todos))]),
            expected_version: Some(version),
            ..Default::default()
        });
        self.client.clone().put(request).await.map(drop)
    }

    /// A request with the gateway's deadline and the current span as the remote parent.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        let context = tracing::Span::current().context();
        global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MetadataInjector(request.metadata_mut()))
        });
        request
    }
}

/// A login's failure: the service refusing a session over the user's limit
/// (`sessions.on_limit = "reject"`) is the user's problem (409), not an outage.
fn login_error(status: tonic::Status, username: &str) -> ApiError {
    if status.code() == Code::ResourceExhausted && status.message().contains("max_per_principal") {
        return ApiError::Conflict(format!(
            "{username} is signed in on too many devices; log out another session first"
        ));
    }
    status.into()
}

/// `None`: no list stored yet; `Some(None)`: something unreadable is stored under the name.
fn stored_todos(session: &Session) -> Option<Option<Vec<Todo>>> {
    session
        .attributes
        .get(todos::ATTRIBUTE)
        .map(|bytes| todos::decode(bytes))
}

/// Full jitter over an exponential window (2 ms doubling, capped at 64 ms), so colliding
/// requests of one session spread out instead of colliding again in lockstep.
fn backoff(attempt: usize) -> Duration {
    let window_us = 2_000u64 << attempt.min(5);
    let mut bytes = [0u8; 8];
    let random = getrandom::fill(&mut bytes).map_or(window_us / 2, |()| u64::from_le_bytes(bytes));
    Duration::from_micros(random % window_us)
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}
