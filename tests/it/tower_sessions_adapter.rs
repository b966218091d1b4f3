//! The tower-sessions adapter (clients/rust, `tower-sessions-valkey-sessions`) the way axum apps
//! use it: a real axum router with `SessionManagerLayer`, driven over HTTP by reqwest with a
//! cookie jar, against the real service binary on a real valkey-server.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Path,
    http::StatusCode,
    routing::{get, post},
};
use reqwest::cookie::CookieStore;
use session_proto::{DeleteRequest, GetRequest};
use test_support::{Deployment, Service, Shape};
use tower_sessions::{Expiry, Session, SessionManagerLayer, session::Id};
use tower_sessions_valkey_sessions::{STORAGE_FULL_MESSAGE, ValkeySessionStore, is_storage_full};

type Failure = (StatusCode, String);

fn fail(e: impl std::fmt::Display) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn items(session: Session) -> Result<String, Failure> {
    let items: Vec<String> = session
        .get("items")
        .await
        .map_err(fail)?
        .unwrap_or_default();
    let user: Option<String> = session.get("user").await.map_err(fail)?;
    Ok(format!(
        "user={} items={}",
        user.unwrap_or_else(|| "-".into()),
        items.join(",")
    ))
}

async fn add(session: Session, Path(item): Path<String>) -> Result<String, Failure> {
    add_after(session, item, 0).await
}

/// `/slow/items/{item}`: reads, waits 300 ms, writes, so two concurrent requests both read
/// before either writes.
async fn add_slowly(session: Session, Path(item): Path<String>) -> Result<String, Failure> {
    add_after(session, item, 300).await
}

async fn add_after(session: Session, item: String, delay_ms: u64) -> Result<String, Failure> {
    let mut items: Vec<String> = session
        .get("items")
        .await
        .map_err(fail)?
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    items.push(item);
    session.insert("items", &items).await.map_err(fail)?;
    Ok(items.join(","))
}

async fn login(session: Session, Path(user): Path<String>) -> Result<String, Failure> {
    session.cycle_id().await.map_err(fail)?;
    session.insert("user", &user).await.map_err(fail)?;
    Ok(user)
}

async fn logout(session: Session) -> Result<&'static str, Failure> {
    session.flush().await.map_err(fail)?;
    Ok("bye")
}

async fn unserializable(session: Session) -> Result<&'static str, Failure> {
    let bad: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    session.insert("grid", bad).await.map_err(fail)?;
    Ok("stored")
}

async fn big(session: Session) -> Result<&'static str, Failure> {
    session
        .insert("blob", "x".repeat(2 << 20))
        .await
        .map_err(fail)?;
    Ok("stored")
}

/// `/saved/items/{item}`: adds an item and saves before answering, so that a refusal of the
/// write reaches the handler (the pattern the crate documents for a 503 when storage is full).
async fn add_and_save(session: Session, Path(item): Path<String>) -> Result<String, Failure> {
    let mut items: Vec<String> = session
        .get("items")
        .await
        .map_err(fail)?
        .unwrap_or_default();
    items.push(item);
    session.insert("items", &items).await.map_err(fail)?;
    session.save().await.map_err(|e| {
        if is_storage_full(&e) {
            (StatusCode::SERVICE_UNAVAILABLE, STORAGE_FULL_MESSAGE.into())
        } else {
            fail(e)
        }
    })?;
    Ok(items.join(","))
}

/// The app, on a free port, with its session layer on `store`.
async fn serve(store: ValkeySessionStore, idle: time::Duration) -> String {
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(idle));
    let app = Router::new()
        .route("/", get(items))
        .route("/items/{item}", post(add))
        .route("/slow/items/{item}", post(add_slowly))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/unserializable", post(unserializable))
        .route("/big", post(big))
        .route("/saved/items/{item}", post(add_and_save))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Browser {
    base: String,
    jar: Arc<reqwest::cookie::Jar>,
    http: reqwest::Client,
}

impl Browser {
    fn new(base: &str) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .unwrap();
        Self {
            base: base.to_owned(),
            jar,
            http,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// The session cookie's value (the session id), if any.
    fn id(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("id="))
            .map(str::to_owned)
    }

    /// A request carrying exactly `cookie`, outside the jar (an old or forged cookie).
    async fn get_with_cookie(&self, path: &str, cookie: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }
}

async fn setup(idle: time::Duration) -> (Deployment, Service, String) {
    let deployment = Deployment::start(Shape::Standalone);
    let service = deployment.start_service(&[]);
    let store = ValkeySessionStore::builder(service.url())
        .connect_lazy()
        .unwrap();
    let base = serve(store, idle).await;
    (deployment, service, base)
}

#[tokio::test]
async fn a_session_survives_requests_and_its_id_is_the_service_id() {
    let (_d, service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    assert_eq!(b.get("/").await, (StatusCode::OK, "user=- items=".into()));
    assert!(b.id().is_none(), "an untouched session sets no cookie");
    assert_eq!(b.post("/items/apple").await.0, StatusCode::OK);
    assert_eq!(b.post("/items/pear").await.0, StatusCode::OK);
    assert_eq!(b.get("/").await.1, "user=- items=apple,pear");
    let id = b.id().expect("a session cookie");
    assert_eq!(id.len(), 22, "tower-sessions' own id");
    // The cookie's id is the service's id: one Get, no mapping.
    let mut c = service.client().await;
    let s = c
        .get(GetRequest {
            id: id.clone(),
            consistency: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(s.attributes["items"], br#"["apple","pear"]"#);
    assert!(
        !s.attributes
            .contains_key(tower_sessions_valkey_sessions::BASE_KEY)
    );
    let idle = s.idle_timeout.unwrap().seconds;
    assert!(
        (1795..=1800).contains(&idle),
        "expiry maps to the idle timeout: {idle}"
    );
    assert!(!service.logs().contains(&id), "ids are never logged");
}

#[tokio::test]
async fn a_session_expires_after_its_idle_timeout() {
    let (_d, _service, base) = setup(time::Duration::seconds(2)).await;
    let b = Browser::new(&base);
    b.post("/items/apple").await;
    assert_eq!(b.get("/").await.1, "user=- items=apple");
    let id = b.id().unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // The cookie (if the client still sent it) names a session the service no longer has.
    let r = b.get_with_cookie("/", &format!("id={id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "user=- items=");
}

#[tokio::test]
async fn logout_destroys_the_session_and_login_gives_a_new_id() {
    let (_d, service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    b.post("/items/apple").await;
    let before = b.id().unwrap();
    assert_eq!(b.post("/login/ada").await, (StatusCode::OK, "ada".into()));
    let after = b.id().unwrap();
    assert_ne!(before, after, "login cycles the id");
    assert_eq!(b.get("/").await.1, "user=ada items=apple", "data kept");
    // The old cookie no longer works.
    let old = b.get_with_cookie("/", &format!("id={before}")).await;
    assert_eq!(old.text().await.unwrap(), "user=- items=");
    let mut c = service.client().await;
    let gone = c
        .get(GetRequest {
            id: before,
            consistency: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);

    assert_eq!(b.post("/logout").await.0, StatusCode::OK);
    assert_eq!(b.get("/").await.1, "user=- items=");
    let gone = c
        .get(GetRequest {
            id: after.clone(),
            consistency: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "logout deletes it");
    let r = b.get_with_cookie("/", &format!("id={after}")).await;
    assert_eq!(r.text().await.unwrap(), "user=- items=");
}

#[tokio::test]
async fn two_concurrent_requests_each_adding_an_item_keep_both() {
    let (_d, _service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    b.post("/items/first").await;
    for round in 0..3 {
        let (x, y) = (format!("a{round}"), format!("b{round}"));
        let (px, py) = (format!("/slow/items/{x}"), format!("/slow/items/{y}"));
        let (r1, r2) = tokio::join!(b.post(&px), b.post(&py));
        assert_eq!(
            (r1.0, r2.0),
            (StatusCode::OK, StatusCode::OK),
            "{r1:?} {r2:?}"
        );
        let listed = b.get("/").await.1;
        assert!(listed.contains(&x) && listed.contains(&y), "{listed}");
    }
    assert_eq!(
        b.get("/").await.1.matches(',').count(),
        6,
        "first + 6 items, none lost"
    );
}

#[tokio::test]
async fn bad_cookies_start_a_new_session_without_an_error_page() {
    let (_d, _service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    let unknown = Id::default().to_string();
    for cookie in [
        "id=not-a-valid-id".to_string(),
        "id=".to_string(),
        format!("id={}", "A".repeat(5000)),
        "id=AAAA.BBBB{}".to_string(),
        format!("id={unknown}"),
    ] {
        let r = b.get_with_cookie("/", &cookie).await;
        assert_eq!(r.status(), StatusCode::OK, "{cookie}");
        assert_eq!(r.text().await.unwrap(), "user=- items=");
    }
}

#[tokio::test]
async fn a_session_deleted_by_another_device_between_two_requests_is_gone() {
    let (_d, service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    b.post("/login/ada").await;
    b.post("/items/apple").await;
    let id = b.id().unwrap();
    // "Log out everywhere" from another device: the service deletes the session.
    let mut c = service.client().await;
    assert!(
        c.delete(DeleteRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .existed
    );
    assert_eq!(b.get("/").await, (StatusCode::OK, "user=- items=".into()));
    // A write from the stale cookie starts a new anonymous session; the old one stays dead.
    b.post("/items/pear").await;
    assert_eq!(b.get("/").await.1, "user=- items=pear");
    assert_ne!(b.id().unwrap(), id);
}

#[tokio::test]
async fn attributes_that_cannot_be_stored_are_clear_errors() {
    let (_d, _service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    b.post("/items/apple").await;
    let (status, body) = b.post("/unserializable").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("key must be a string"), "{body}");
    // Over the service's value limit: the service's RESOURCE_EXHAUSTED, surfaced by the
    // middleware as a 500, and the session keeps its data.
    let (status, _) = b.post("/big").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(b.get("/").await.1, "user=- items=apple");
}

/// Valkey at its memory limit (`maxmemory` below what it holds, `noeviction`): a write is a 503
/// with a clear body, the cookie is neither replaced nor cleared, and the session keeps what it
/// had; once memory is back, the same write succeeds.
#[tokio::test]
async fn storage_full_is_a_503_and_the_session_is_kept() {
    let (d, _service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    assert_eq!(b.post("/saved/items/apple").await.1, "apple");
    let id = b.id().unwrap();
    let valkey = &d.nodes[0];
    valkey.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    valkey.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let r = b.get_with_cookie("/", &format!("id={id}")).await;
    assert_eq!(r.status(), StatusCode::OK, "reads keep working");
    let r = reqwest::Client::new()
        .post(format!("{base}/saved/items/pear"))
        .header("cookie", format!("id={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "the cookie is neither replaced nor cleared"
    );
    assert_eq!(r.text().await.unwrap(), STORAGE_FULL_MESSAGE);
    assert_eq!(b.get("/").await.1, "user=- items=apple");
    assert_eq!(b.id().as_deref(), Some(id.as_str()));
    valkey.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(b.post("/saved/items/pear").await.1, "apple,pear");
}

#[tokio::test]
async fn the_service_unavailable_is_an_error_not_an_empty_session() {
    let (_d, mut service, base) = setup(time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    b.post("/items/apple").await;
    let id = b.id().unwrap();
    service.signal("KILL");
    service.wait_exit(Duration::from_secs(5));
    let r = b.get_with_cookie("/", &format!("id={id}")).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no new session replaces the user's"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("valkey-sessions Get"), "{body}");
    // A write fails the same way.
    assert_eq!(
        b.post("/items/pear").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn works_over_tls_with_a_bearer_token() {
    let deployment = Deployment::start(Shape::SecuredServerless);
    let service = deployment.start_service(&[]);
    let ca = std::fs::read(service.caller.ca_file.as_ref().unwrap()).unwrap();
    let token = std::fs::read_to_string(service.caller.token_file.as_ref().unwrap()).unwrap();
    let store = ValkeySessionStore::builder(service.url())
        .ca_pem(ca)
        .token(token.trim())
        .connect_lazy()
        .unwrap();
    let base = serve(store, time::Duration::minutes(30)).await;
    let b = Browser::new(&base);
    b.post("/items/apple").await;
    b.post("/login/ada").await;
    assert_eq!(
        b.get("/").await,
        (StatusCode::OK, "user=ada items=apple".into())
    );
    // Without the token the service refuses: an error, not a session.
    let bare = ValkeySessionStore::builder(service.url())
        .ca_pem(std::fs::read(service.caller.ca_file.as_ref().unwrap()).unwrap())
        .connect_lazy()
        .unwrap();
    let other = Browser::new(&serve(bare, time::Duration::minutes(30)).await);
    assert_eq!(
        other.post("/items/x").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
