//! The HTTP API: handlers, the SESSION cookie and the OpenAPI description.

use axum::{
    Json,
    extract::{FromRequest, Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::security::Cookies;
use serde::Serialize;
use tonic_health::pb::health_check_response::ServingStatus;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
};

use crate::{
    AppState,
    accounts::{self, Login, Revoked, SessionView, SignedIn, UserSessions},
    error::{ApiError, BodyErrors, CsrfErrors, ErrorBody, SessionErrors},
    sessions::TodoSession,
    todos::{self, NewTodo, Todo, TodoPatch},
};
use session_core::SessionId;

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
                       session. Signing in is a demo: a username, no password."
    ),
    paths(
        list_todos,
        add_todo,
        edit_todo,
        delete_todo,
        login,
        logout,
        list_sessions,
        logout_other_sessions,
        revoke_session,
        healthz,
        readyz
    ),
    components(schemas(
        Todo,
        NewTodo,
        TodoPatch,
        Login,
        SignedIn,
        UserSessions,
        SessionView,
        Revoked,
        ErrorBody,
        Health
    )),
    modifiers(&SignedInCookie)
)]
pub struct ApiDoc;

/// The security scheme of the routes that need a signed-in browser: its SESSION cookie (the
/// other routes take the cookie as an optional parameter: without one they start a session).
struct SignedInCookie;

impl Modify for SignedInCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE,
                "The SESSION cookie of a signed-in browser (set by POST /login)",
            ))),
        );
    }
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `SERVING`, `NOT_SERVING`, `UNKNOWN` or `UNREACHABLE`.
    pub status: String,
}

/// The session's todos; without a session, the demo todo (nothing is stored until a change).
#[utoipa::path(
    get, path = "/todos",
    params(("SESSION" = Option<String>, Cookie, description = "Session id; absent or unknown shows the demo todo and stores nothing")),
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

/// Signs the browser in as a user. A demo: there is no password, whoever names a user is that
/// user. The session (todos included) moves to a new id (the login step Rotate{id, principal}),
/// so a session id planted or seen before the login is worthless; the response sets it as the
/// new SESSION cookie. Signing in again, or as another user, moves it again.
#[utoipa::path(
    post, path = "/login",
    params(("SESSION" = Option<String>, Cookie, description = "Session id; absent or unknown starts a new session")),
    request_body = Login,
    responses(
        (status = 200, description = "Signed in; the SESSION cookie carries the session's new id", body = SignedIn),
        BodyErrors,
        CsrfErrors,
        (status = 409, description = "The user is at the service's session limit and the service refuses more (sessions.on_limit = \"reject\")", body = ErrorBody),
        (status = 503, description = "The session service is unavailable, or the session store is full; retry after the Retry-After delay", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    cookies: Cookies,
    Body(login): Body<Login>,
) -> Result<Response, ApiError> {
    accounts::check_username(&login.username)?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let device = accounts::device_label(user_agent);
    let id = state
        .sessions
        .login(cookie(&cookies.jar), &login.username, &device)
        .await?;
    let jar = cookies.jar.add(session_cookie(id, cookies.secure));
    let body = SignedIn {
        principal: login.username,
    };
    Ok((jar, Json(body)).into_response())
}

/// The signed-in user and their sessions (browsers and devices), most recently active first;
/// `current` marks this browser's.
#[utoipa::path(
    get, path = "/sessions",
    security(("session" = [])),
    responses(
        (status = 200, description = "The signed-in user's sessions (the 100 most recently active)", body = UserSessions),
        (status = 401, description = "This browser is not signed in", body = ErrorBody),
        (status = 503, description = "The session service is unavailable, or the session store is full; retry after the Retry-After delay", body = ErrorBody),
    )
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    cookies: Cookies,
) -> Result<Json<UserSessions>, ApiError> {
    let me = state.sessions.signed_in(cookie(&cookies.jar)).await?;
    let own = own_handle(&me.id);
    let sessions = state.sessions.list_user_sessions(&me.principal).await?;
    Ok(Json(UserSessions {
        principal: me.principal,
        sessions: sessions
            .into_iter()
            .map(|info| accounts::view(info, &own))
            .collect(),
    }))
}

/// Ends every other session of the signed-in user ("log out other sessions"); this browser
/// stays signed in.
#[utoipa::path(
    post, path = "/sessions/logout-others",
    security(("session" = [])),
    responses(
        (status = 200, description = "The other sessions are ended", body = Revoked),
        (status = 401, description = "This browser is not signed in", body = ErrorBody),
        CsrfErrors,
        (status = 503, description = "The session service is unavailable, or the session store is full; retry after the Retry-After delay", body = ErrorBody),
    )
)]
pub async fn logout_other_sessions(
    State(state): State<AppState>,
    cookies: Cookies,
) -> Result<Json<Revoked>, ApiError> {
    let me = state.sessions.signed_in(cookie(&cookies.jar)).await?;
    let revoked = state.sessions.revoke_others(&me.principal, &me.id).await?;
    Ok(Json(Revoked { revoked }))
}

/// Ends one session of the signed-in user by its handle ("log out that device"). Ending this
/// browser's own session logs it out and clears the cookie.
#[utoipa::path(
    delete, path = "/sessions/{handle}",
    params(("handle" = String, Path, description = "The session's handle from GET /sessions")),
    security(("session" = [])),
    responses(
        (status = 204, description = "The session is ended"),
        (status = 401, description = "This browser is not signed in", body = ErrorBody),
        CsrfErrors,
        (status = 404, description = "The signed-in user has no session with this handle", body = ErrorBody),
        (status = 503, description = "The session service is unavailable, or the session store is full; retry after the Retry-After delay", body = ErrorBody),
    )
)]
pub async fn revoke_session(
    State(state): State<AppState>,
    cookies: Cookies,
    Path(handle): Path<String>,
) -> Result<Response, ApiError> {
    let me = state.sessions.signed_in(cookie(&cookies.jar)).await?;
    state.sessions.revoke(&me.principal, &handle).await?;
    if handle == own_handle(&me.id) {
        let jar = cookies
            .jar
            .remove(session_cookie(String::new(), cookies.secure));
        return Ok((StatusCode::NO_CONTENT, jar).into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The handle of the browser's own session, to tell it apart in the user's list.
fn own_handle(id: &str) -> String {
    SessionId::parse(id)
        .map(|id| id.handle())
        .unwrap_or_default()
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
