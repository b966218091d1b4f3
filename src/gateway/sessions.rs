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

use super::{
    error::ApiError,
    todos::{self, Todo},
};
use crate::{
    client::{CallerOptions, Client},
    proto::{Consistency, CreateRequest, DeleteRequest, GetRequest, PutRequest, Session},
    session::SessionId,
};

/// Attempts of one edit before giving up with 409: with the backoff below, enough for a few
/// dozen parallel writes to one session (a browser sends a handful).
const MAX_ATTEMPTS: usize = 12;

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

    /// The session's todos, creating the session (or its list) on the first visit.
    pub async fn list(&self, cookie: Option<&str>) -> Result<TodoSession, ApiError> {
        if let Some(id) = cookie
            && let Some(session) = self.get(id, false).await?
            && let Some(Some(todos)) = stored_todos(&session)
        {
            return Ok(TodoSession {
                id: session.id,
                created: false,
                todos,
            });
        }
        let (session, ()) = self.edit(cookie, |_| Ok(())).await?;
        Ok(session)
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
        let request = self.request(DeleteRequest { id: id.to_owned() });
        self.client.clone().delete(request).await?;
        Ok(())
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
