//! The HTTP API: handlers, the SESSION cookie and the OpenAPI description.

use axum::{
    Json,
    extract::{FromRequest, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::security::Cookies;
use serde::Serialize;
use tonic_health::pb::health_check_response::ServingStatus;
use utoipa::{OpenApi, ToSchema};

use super::{
    AppState,
    error::{ApiError, BodyErrors, CsrfErrors, ErrorBody, SessionErrors},
    sessions::TodoSession,
    todos::{self, NewTodo, Todo, TodoPatch},
};

/// Spring Session's cookie name, so the demo reads like the application it replaces.
pub const COOKIE: &str = "SESSION";

/// A JSON body whose rejections are [`ApiError`]s (JSON bodies, not axum's plain text).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// The API's OpenAPI 3.1 description, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "todo-gateway",
        description = "The todo demo of valkey-sessions: a cookie session (`SESSION`) kept in \
                       valkey-sessions over gRPC. A missing, forged or expired cookie starts a new \
                       session."
    ),
    paths(list_todos, add_todo, edit_todo, delete_todo, logout, healthz, readyz),
    components(schemas(Todo, NewTodo, TodoPatch, ErrorBody, Health))
)]
pub struct ApiDoc;

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `SERVING`, `NOT_SERVING`, `UNKNOWN` or `UNREACHABLE`.
    pub status: String,
}

/// The session's todos; the first visit stores and returns the demo todo.
#[utoipa::path(
    get, path = "/todos",
    params(("SESSION" = Option<String>, Cookie, description = "Session id; absent or unknown starts a new session")),
    responses(
        (status = 200, description = "The todos of this session", body = [Todo]),
        SessionErrors,
    )
)]
pub async fn list_todos(
    State(state): State<AppState>,
    cookies: Cookies,
) -> Result<Response, ApiError> {
    let session = state.sessions.list(cookie(&cookies.jar)).await?;
    let jar = state.remember(cookies, &session);
    Ok((jar, Json(session.todos)).into_response())
}

/// Appends a todo.
#[utoipa::path(
    post, path = "/todos",
    params(("SESSION" = Option<String>, Cookie, description = "Session id; absent or unknown starts a new session")),
    request_body = NewTodo,
    responses(
        (status = 201, description = "The stored todo", body = Todo),
        BodyErrors,
        CsrfErrors,
        SessionErrors,
    )
)]
pub async fn add_todo(
    State(state): State<AppState>,
    cookies: Cookies,
    Body(new): Body<NewTodo>,
) -> Result<Response, ApiError> {
    let (jar, todo) = state.edit(cookies, |list| todos::add(list, &new)).await?;
    Ok((StatusCode::CREATED, jar, Json(todo)).into_response())
}

/// Edits a todo; an empty object toggles `done`.
#[utoipa::path(
    patch, path = "/todos/{id}",
    params(
        ("id" = String, Path, description = "The todo's id"),
        ("SESSION" = Option<String>, Cookie, description = "Session id"),
    ),
    request_body = TodoPatch,
    responses(
        (status = 200, description = "The todo as stored", body = Todo),
        BodyErrors,
        CsrfErrors,
        (status = 404, description = "No such todo in this session", body = ErrorBody),
        SessionErrors,
    )
)]
pub async fn edit_todo(
    State(state): State<AppState>,
    cookies: Cookies,
    Path(id): Path<String>,
    Body(patch): Body<TodoPatch>,
) -> Result<Response, ApiError> {
    let (jar, todo) = state
        .edit(cookies, |list| todos::edit(list, &id, &patch))
        .await?;
    Ok((jar, Json(todo)).into_response())
}

/// Removes a todo.
#[utoipa::path(
    delete, path = "/todos/{id}",
    params(
        ("id" = String, Path, description = "The todo's id"),
        ("SESSION" = Option<String>, Cookie, description = "Session id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        CsrfErrors,
        (status = 404, description = "No such todo in this session", body = ErrorBody),
        SessionErrors,
    )
)]
pub async fn delete_todo(
    State(state): State<AppState>,
    cookies: Cookies,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jar, ()) = state.edit(cookies, |list| todos::remove(list, &id)).await?;
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

/// Deletes the session and clears the cookie.
#[utoipa::path(
    post, path = "/logout",
    params(("SESSION" = Option<String>, Cookie, description = "Session id")),
    responses(
        (status = 204, description = "Logged out; the cookie is cleared with Max-Age=0"),
        CsrfErrors,
        (status = 503, description = "The session service is unavailable", body = ErrorBody),
    )
)]
pub async fn logout(State(state): State<AppState>, cookies: Cookies) -> Result<Response, ApiError> {
    state.sessions.delete(cookie(&cookies.jar)).await?;
    let jar = cookies
        .jar
        .remove(session_cookie(String::new(), cookies.secure));
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

/// Liveness: the gateway process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the session service reports SERVING (it reaches Valkey).
#[utoipa::path(
    get, path = "/readyz",
    responses(
        (status = 200, description = "The session service is SERVING", body = Health),
        (status = 503, description = "The session service is not serving or unreachable", body = Health),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (code, status) = match state.sessions.ready().await {
        Ok(ServingStatus::Serving) => (StatusCode::OK, "SERVING"),
        Ok(ServingStatus::NotServing) => (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING"),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNREACHABLE"),
    };
    let body = Health {
        status: status.into(),
    };
    (code, Json(body)).into_response()
}

/// The OpenAPI document.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

fn cookie(jar: &CookieJar) -> Option<&str> {
    jar.get(COOKIE).map(Cookie::value)
}

/// The SESSION cookie carrying `value`, with the attributes a session cookie needs: `Secure`
/// whenever the browser came over HTTPS.
fn session_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .build()
}

impl AppState {
    /// Runs `change` on the session's list; the jar gains the cookie if a session was started.
    async fn edit<T>(
        &self,
        cookies: Cookies,
        change: impl Fn(&mut Vec<Todo>) -> Result<T, ApiError>,
    ) -> Result<(CookieJar, T), ApiError> {
        let (session, out) = self.sessions.edit(cookie(&cookies.jar), change).await?;
        Ok((self.remember(cookies, &session), out))
    }

    /// Sets the cookie when this request started the session.
    fn remember(&self, cookies: Cookies, session: &TodoSession) -> CookieJar {
        if session.created {
            cookies
                .jar
                .add(session_cookie(session.id.clone(), cookies.secure))
        } else {
            cookies.jar
        }
    }
}
