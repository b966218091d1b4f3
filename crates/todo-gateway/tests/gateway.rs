//! The todo gateway over HTTP, against the real gateway, the real service and real Valkey.

use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};
use session_proto::{GetRequest, Session};
use test_support::{Service, Valkey, otlp, otlp::hex};
use tonic::Code;

/// Valkey, the service and the gateway, each a real process.
struct Stack {
    valkey: Valkey,
    service: Service,
    gateway: Service,
}

impl Stack {
    fn start() -> Self {
        Self::start_with(&[], &[])
    }

    fn start_with(service_env: &[(&str, &str)], gateway_env: &[(&str, &str)]) -> Self {
        let valkey = Valkey::standalone();
        let service = Service::start(&valkey.url(), service_env);
        let gateway = Service::gateway(service.addr, gateway_env);
        Stack {
            valkey,
            service,
            gateway,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr)
    }

    /// The stored todos behind a cookie value, read through gRPC.
    async fn stored(&self, id: &str) -> Result<Value, Code> {
        let session = self.session(id).await?;
        Ok(serde_json::from_slice(&session.attributes["todos"]).unwrap())
    }

    /// The stored session behind a cookie value, read through gRPC.
    async fn session(&self, id: &str) -> Result<Session, Code> {
        let mut client = self.service.client().await;
        let request = GetRequest {
            id: id.into(),
            consistency: 2,
        };
        match client.get(request).await {
            Ok(response) => Ok(response.into_inner().session.unwrap()),
            Err(status) => Err(status.code()),
        }
    }
}

/// A browser: keeps cookies between requests.
fn browser() -> Client {
    Client::builder().cookie_store(true).build().unwrap()
}

/// A client that never sends cookies, so each test sets them by hand.
fn bare() -> Client {
    Client::new()
}

/// The SESSION cookie a response sets: (value, the whole Set-Cookie line).
fn set_cookie(response: &Response) -> Option<(String, String)> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("SESSION="))
        .map(|line| {
            let value = line["SESSION=".len()..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
            (value, line.to_owned())
        })
}

/// The seeded todo's id (the same in every session).
const SEED: &str = "5eed000000000000";

/// The first change of a browser without a session (marking the seeded todo not done, which it
/// is): a GET stores nothing, this starts the session and sets the cookie.
fn first_change(client: &Client, stack_url: String) -> reqwest::RequestBuilder {
    client
        .patch(format!("{stack_url}/todos/{SEED}"))
        .json(&json!({"done": false}))
}

/// Starts a session through `client` (its cookie store keeps it): the cookie value.
async fn start_session(client: &Client, stack: &Stack) -> String {
    let response = first_change(client, stack.url("")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    set_cookie(&response)
        .expect("the first change sets SESSION")
        .0
}

async fn json_of(response: Response) -> Value {
    response.json().await.unwrap()
}

/// Asserts an error answer: the status and a JSON body with `error` and a non-empty `message`.
async fn assert_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body = json_of(response).await;
    assert!(body["error"].is_string(), "{body}");
    assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
    body
}

#[tokio::test]
async fn first_visit_shows_the_seed_and_the_first_change_stores_a_cookie_session() {
    let stack = Stack::start();
    let keys = || stack.valkey.cli(&["DBSIZE"]).trim().to_owned();
    let before = keys();
    // Cookieless GETs (a first visit, a crawler, a flood) show the seed and store nothing.
    let mut seen = None;
    for _ in 0..20 {
        let first = bare().get(stack.url("/todos")).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert!(set_cookie(&first).is_none(), "a GET starts no session");
        let todos = json_of(first).await;
        assert_eq!(todos.as_array().unwrap().len(), 1);
        assert_eq!(todos[0]["id"], SEED);
        assert_eq!(todos[0]["title"], "Hello World");
        assert_eq!(todos[0]["description"], "This is session test");
        assert_eq!(todos[0]["done"], false);
        seen = Some(todos);
    }
    assert_eq!(keys(), before, "nothing reached Valkey");
    let seen = seen.unwrap();

    // The first change starts the session: the cookie carries the service's id.
    let first = bare()
        .patch(stack.url(&format!("/todos/{SEED}")))
        .json(&json!({"done": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let (id, line) = set_cookie(&first).expect("the first change sets SESSION");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attribute), "{attribute} missing: {line}");
    }
    assert!(
        !line.contains("Secure"),
        "plain HTTP must not get Secure: {line}"
    );
    assert_eq!(id.len(), 55, "the cookie carries the service's session id");
    let mut todos = seen.clone();
    todos[0]["done"] = json!(true);

    // Stored in valkey-sessions, not in the gateway: the service returns the same list.
    assert_eq!(stack.stored(&id).await.unwrap(), todos);

    let again = bare()
        .get(stack.url("/todos"))
        .header(header::COOKIE, format!("SESSION={id}"))
        .send()
        .await
        .unwrap();
    assert!(
        set_cookie(&again).is_none(),
        "a known session keeps its cookie"
    );
    assert_eq!(json_of(again).await, todos);
}

#[tokio::test]
async fn responses_carry_the_browser_security_headers() {
    let stack = Stack::start();
    for path in ["/", "/todos", "/healthz"] {
        let response = bare().get(stack.url(path)).send().await.unwrap();
        let header_of = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header_of("content-security-policy");
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "script-src 'sha256-",
            "style-src 'sha256-",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: {directive} missing in {csp}"
            );
        }
        assert_eq!(header_of("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header_of("x-frame-options"), "DENY", "{path}");
    }
}

/// A client that sends its headers too slowly (slowloris) is closed after the header-read
/// timeout instead of holding a connection for ever.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start_with(&[], &[("GATEWAY_HEADER_READ_TIMEOUT", "1s")]);
    let addr = stack.url("").trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /todos HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the connection was still open 5 s after half a request"
    );
    println!("half a request: closed after {:?}", start.elapsed());
}

#[tokio::test]
async fn secure_cookies_when_configured_for_https() {
    let stack = Stack::start_with(&[], &[("GATEWAY_COOKIE_SECURE", "true")]);
    let response = first_change(&bare(), stack.url("")).send().await.unwrap();
    let (_, line) = set_cookie(&response).unwrap();
    assert!(line.contains("Secure"), "{line}");
}

/// The Set-Cookie line of a first change with the given headers.
async fn first_cookie(url: String, headers: &[(&str, &str)]) -> String {
    let mut request = first_change(&bare(), url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    set_cookie(&response).unwrap().1
}

#[tokio::test]
async fn cookies_are_secure_whenever_the_browser_came_over_https() {
    let https = [("x-forwarded-proto", "https")];
    // Behind a trusted proxy: its X-Forwarded-Proto decides.
    let proxied = Stack::start_with(&[], &[("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")]);
    assert!(
        first_cookie(proxied.url(""), &https)
            .await
            .contains("Secure")
    );
    let plain = first_cookie(proxied.url(""), &[]).await;
    assert!(
        !plain.contains("Secure"),
        "plain HTTP from the proxy: {plain}"
    );
    // Anyone else's X-Forwarded-Proto is ignored.
    let direct = Stack::start();
    let spoofed = first_cookie(direct.url(""), &https).await;
    assert!(
        !spoofed.contains("Secure"),
        "an untrusted peer's header: {spoofed}"
    );
    // The cloud profile: always.
    let cloud = Stack::start_with(&[], &[("GATEWAY_PROFILE", "cloud")]);
    assert!(first_cookie(cloud.url(""), &[]).await.contains("Secure"));

    // Served over HTTPS by the gateway itself (h2 or HTTP/1.1), certificate from files.
    let dir = tempfile::tempdir().unwrap();
    let pki = test_support::secure::Pki::new(dir.path(), "gw");
    let cert = pki.server("gateway");
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let tls = Stack::start_with(
        &[],
        &[("GATEWAY_TLS_CERT_FILE", &c), ("GATEWAY_TLS_KEY_FILE", &k)],
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let client = Client::builder().add_root_certificate(ca).build().unwrap();
    let response = first_change(&client, format!("https://{}", tls.gateway.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookie(&response).unwrap().1.contains("Secure"));
}

#[tokio::test]
async fn state_changing_requests_from_a_foreign_origin_are_refused() {
    let stack = Stack::start_with(
        &[],
        &[("GATEWAY_ALLOWED_ORIGINS", "https://app.example.com")],
    );
    let browser = browser();
    let id = start_session(&browser, &stack).await;
    let own = format!("http://{}", stack.gateway.addr);
    let new = json!({"title": "t", "description": "d"});
    for (origin, fetch_site, expected) in [
        (Some("https://evil.example"), None, StatusCode::FORBIDDEN),
        (Some("null"), None, StatusCode::FORBIDDEN),
        (None, Some("cross-site"), StatusCode::FORBIDDEN),
        (Some(own.as_str()), None, StatusCode::CREATED),
        (Some("https://app.example.com"), None, StatusCode::CREATED),
        (None, None, StatusCode::CREATED),
    ] {
        let mut request = browser.post(stack.url("/todos")).json(&new);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.unwrap();
        if expected == StatusCode::FORBIDDEN {
            let body = assert_error(response, expected).await;
            assert_eq!(body["error"], "forbidden");
        } else {
            assert_eq!(response.status(), expected, "{origin:?} {fetch_site:?}");
        }
    }
    let stored = stack.stored(&id).await.unwrap();
    assert_eq!(
        stored.as_array().unwrap().len(),
        1 + 3,
        "only the allowed three were added"
    );
    for method in [reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response = browser
            .request(method, stack.url("/todos/whatever"))
            .header(header::ORIGIN, "https://evil.example")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let logout = browser
        .post(stack.url("/logout"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::FORBIDDEN);
    assert!(
        stack.stored(&id).await.is_ok(),
        "a forged logout ends nothing"
    );
}

#[tokio::test]
async fn the_gateway_authenticates_to_a_secured_service_like_any_caller() {
    let valkey = Valkey::standalone();
    let secured = test_support::secure::Secured::new(&[], "");
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let caller = secured.caller(Some(test_support::secure::GATEWAY_TOKEN));
    let url = format!("https://{}", service.addr);
    let ca = caller.ca_file.clone().unwrap().display().to_string();
    let token = caller.token_file.clone().unwrap().display().to_string();
    let gateway = Service::gateway(
        service.addr,
        &[
            ("SESSION_SERVICE_URL", &url),
            ("SESSION_SERVICE_CA_FILE", &ca),
            ("SESSION_SERVICE_TOKEN_FILE", &token),
        ],
    );
    let response = first_change(&browser(), format!("http://{}", gateway.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["title"], "Hello World");
    // Without its token the same gateway is refused by the service: never a silent success.
    let anonymous = Service::gateway(
        service.addr,
        &[
            ("SESSION_SERVICE_URL", &url),
            ("SESSION_SERVICE_CA_FILE", &ca),
        ],
    );
    let refused = first_change(&bare(), format!("http://{}", anonymous.addr))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_server_error(), "{}", refused.status());
}

#[tokio::test]
async fn add_toggle_edit_delete_round_trip() {
    let stack = Stack::start();
    let web = browser();
    let created = web
        .post(stack.url("/todos"))
        .json(&json!({"title": "Buy milk", "description": "two litres"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let todo = json_of(created).await;
    let id = todo["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (todo["title"].as_str(), todo["done"].as_bool()),
        (Some("Buy milk"), Some(false))
    );

    let list = json_of(web.get(stack.url("/todos")).send().await.unwrap()).await;
    let titles: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("Hello World"), json!("Buy milk")]);

    let path = stack.url(&format!("/todos/{id}"));
    let toggled = json_of(web.patch(&path).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(toggled["done"], true, "an empty patch toggles");
    let edited = web
        .patch(&path)
        .json(&json!({"title": "Buy oat milk", "done": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), StatusCode::OK);
    let edited = json_of(edited).await;
    assert_eq!(
        (edited["title"].as_str(), edited["done"].as_bool()),
        (Some("Buy oat milk"), Some(false))
    );
    assert_eq!(
        edited["description"], "two litres",
        "fields not sent are kept"
    );

    let deleted = web.delete(&path).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let list = json_of(web.get(stack.url("/todos")).send().await.unwrap()).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_error(
        web.delete(&path).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        web.patch(&path).json(&json!({})).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn forged_expired_and_logged_out_cookies_start_a_fresh_session() {
    let stack = Stack::start_with(
        &[("VALKEY_SESSIONS_SESSIONS__DEFAULT_IDLE_TIMEOUT", "1s")],
        &[],
    );
    let well_formed_unknown = "A".repeat(43);
    for forged in ["garbage", "{vs}/../x", well_formed_unknown.as_str(), ""] {
        let response = bare()
            .get(stack.url("/todos"))
            .header(header::COOKIE, format!("SESSION={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "cookie {forged:?}");
        assert!(set_cookie(&response).is_none(), "a GET starts nothing");
        assert_eq!(json_of(response).await[0]["title"], "Hello World");
        let changed = first_change(&bare(), stack.url(""))
            .header(header::COOKIE, format!("SESSION={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK, "cookie {forged:?}");
        let (id, _) = set_cookie(&changed).expect("a fresh session");
        assert_ne!(id, forged);
    }

    // Expired: the service forgot it (idle timeout 1 s), the gateway starts over.
    let expired = start_session(&bare(), &stack).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(stack.stored(&expired).await, Err(Code::NotFound));
    let added = bare()
        .post(stack.url("/todos"))
        .header(header::COOKIE, format!("SESSION={expired}"))
        .json(&json!({"title": "after expiry", "description": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let (fresh, _) = set_cookie(&added).expect("a new cookie replaces the expired one");
    assert_ne!(fresh, expired);
    assert_eq!(
        stack
            .stored(&fresh)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn logout_deletes_the_session_and_clears_the_cookie() {
    let stack = Stack::start();
    let id = start_session(&bare(), &stack).await;
    assert!(stack.stored(&id).await.is_ok());

    let out = bare()
        .post(stack.url("/logout"))
        .header(header::COOKIE, format!("SESSION={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let (value, line) = set_cookie(&out).expect("logout clears the cookie");
    assert!(value.is_empty() && line.contains("Max-Age=0"), "{line}");
    assert_eq!(stack.stored(&id).await, Err(Code::NotFound));

    // Logging out twice, or without a session, is fine.
    for cookie in [format!("SESSION={id}"), "SESSION=forged".into()] {
        let again = bare()
            .post(stack.url("/logout"))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NO_CONTENT);
    }
    let after = first_change(&bare(), stack.url(""))
        .header(header::COOKIE, format!("SESSION={id}"))
        .send()
        .await
        .unwrap();
    let (new_id, _) = set_cookie(&after).unwrap();
    assert_ne!(new_id, id, "the old id is not revived");
}

/// Parallel requests of one browser each read, change and write the whole list: without the
/// version check, they would overwrite each other's additions.
#[tokio::test]
async fn concurrent_additions_of_one_browser_are_all_kept() {
    let stack = Stack::start();
    let web = browser();
    start_session(&web, &stack).await;
    let mut expected = 1;
    let mut conflicts = 0.0;
    for round in 0..3 {
        let requests = (0..24).map(|i| {
            let web = web.clone();
            let url = stack.url("/todos");
            async move {
                web.post(url)
                    .json(&json!({"title": format!("r{round} t{i}"), "description": ""}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        });
        let statuses = futures::future::join_all(requests).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::CREATED),
            "{statuses:?}"
        );
        expected += 24;
        let list = json_of(web.get(stack.url("/todos")).send().await.unwrap()).await;
        assert_eq!(list.as_array().unwrap().len(), expected, "a todo was lost");
        conflicts = metric(
            &stack.service,
            "grpc_requests_total{method=\"Put\",code=\"ABORTED\"}",
        );
        if conflicts > 0.0 {
            break;
        }
    }
    assert!(
        conflicts > 0.0,
        "no version conflict happened, so the retry path was not exercised"
    );
}

fn metric(service: &Service, series: &str) -> f64 {
    service
        .scrape_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_json_error() {
    let stack = Stack::start();
    let web = browser();
    let url = stack.url("/todos");
    let long_title = format!(r#"{{"title":"{}","description":""}}"#, "x".repeat(201));
    let cases = [
        (r#"{"title":"#, StatusCode::BAD_REQUEST, "parse"),
        (
            r#"{"title":"x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "description",
        ),
        (
            r#"{"title":1,"description":""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "title",
        ),
        (
            r#"{"title":"x","description":"","owner":"me"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "owner",
        ),
        (
            &long_title,
            StatusCode::UNPROCESSABLE_ENTITY,
            "1 to 200 characters",
        ),
        (
            r#"{"title":"","description":""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "1 to 200 characters",
        ),
    ];
    for (body, status, named) in cases {
        let response = web
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let error = assert_error(response, status).await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
    }
    assert_error(
        web.post(&url).body("title=x").send().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let huge = json!({"title": "x", "description": "y".repeat(100 * 1024)});
    assert_error(
        web.post(&url).json(&huge).send().await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Nothing of that reached the list.
    let list = json_of(web.get(&url).send().await.unwrap()).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unavailable_session_service_is_a_503_never_a_hang() {
    let mut stack = Stack::start_with(&[], &[("GATEWAY_CALL_TIMEOUT", "500ms")]);
    let web = browser();
    start_session(&web, &stack).await;
    assert_eq!(
        web.get(stack.url("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // Valkey down, service up: the service says NOT_SERVING and its calls fail UNAVAILABLE.
    stack.valkey.kill();
    let start = Instant::now();
    loop {
        let ready = web.get(stack.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(json_of(ready).await["status"], "NOT_SERVING");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "readyz never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let todos = web.get(stack.url("/todos")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let retry_after = todos.headers().get(header::RETRY_AFTER).cloned();
    let body = assert_error(todos, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(retry_after.is_some(), "503 carries Retry-After");
    let message = body["message"].as_str().unwrap();
    for internal in ["valkey", "Unavailable:", "127.0.0.1", "Timeout"] {
        assert!(
            !message.contains(internal),
            "the service's own words stay in the log: {message}"
        );
    }
    stack.valkey.restart();

    // The service itself gone: still a quick 503, and liveness stays up.
    stack.service.signal("KILL");
    stack.service.wait_exit(Duration::from_secs(5));
    let started = Instant::now();
    let todos = web.get(stack.url("/todos")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_error(todos, StatusCode::SERVICE_UNAVAILABLE).await;
    let ready = web.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(ready).await["status"], "UNREACHABLE");
    let live = web.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
}

/// Valkey full (`noeviction` at `maxmemory`): a change is a 503 that says so, the browser keeps
/// its cookie and its session, and nothing was lost once memory is back.
#[tokio::test]
async fn a_full_session_store_is_a_503_and_the_browser_keeps_its_session() {
    let stack = Stack::start();
    let web = browser();
    let id = start_session(&web, &stack).await;
    let todos = stack.stored(&id).await.unwrap();
    stack
        .valkey
        .cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    stack.valkey.cli(&["CONFIG", "SET", "maxmemory", "1"]);

    let add = web
        .post(stack.url("/todos"))
        .json(&json!({"title": "not now", "description": ""}))
        .send()
        .await
        .unwrap();
    assert!(
        set_cookie(&add).is_none(),
        "the cookie is neither replaced nor cleared"
    );
    let body = assert_error(add, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"], "storage_full", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not saved"),
        "{body}"
    );
    let read = web.get(stack.url("/todos")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK, "reads keep working");
    assert!(set_cookie(&read).is_none(), "no fresh session while full");
    assert_eq!(json_of(read).await, todos);

    stack.valkey.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(
        stack.stored(&id).await.unwrap(),
        todos,
        "the session is intact"
    );
}

#[tokio::test]
async fn the_page_and_the_openapi_document_are_served() {
    let stack = Stack::start();
    let page = bare().get(stack.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/todos"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let doc = json_of(bare().get(stack.url("/openapi.json")).send().await.unwrap()).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(html.contains("/sessions") && html.contains("Log out other sessions"));
    for path in [
        "/todos",
        "/todos/{id}",
        "/login",
        "/logout",
        "/sessions",
        "/sessions/logout-others",
        "/sessions/{handle}",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
    assert_eq!(
        doc["components"]["schemas"]["NewTodo"]["properties"]["title"]["maxLength"],
        200
    );
}

/// The browser's trace continues through the gateway into the service: one trace, the gateway's
/// request span the parent of the service's RPC span.
#[tokio::test]
async fn trace_context_flows_from_the_browser_through_the_gateway_to_the_service() {
    let receiver = otlp::Receiver::start().await;
    let endpoint = receiver.endpoint.as_str();
    let otel = |name| {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", name),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    };
    let stack = Stack::start_with(&otel("sessions-under-test"), &otel("gateway-under-test"));

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let browser_span = "b7ad6b7169203331";
    let response = first_change(&bare(), stack.url(""))
        .header("traceparent", format!("00-{trace_id}-{browser_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (session_id, _) = set_cookie(&response).unwrap();

    let start = Instant::now();
    loop {
        let spans = receiver.spans();
        let gateway_span = spans.iter().find(|(service, span)| {
            service == "gateway-under-test" && hex(&span.trace_id) == trace_id
        });
        let rpc = spans.iter().find(|(service, span)| {
            service == "sessions-under-test"
                && span.name == "session.v1.SessionService/Create"
                && hex(&span.trace_id) == trace_id
        });
        if let (Some((_, gateway_span)), Some((_, rpc))) = (gateway_span, rpc) {
            assert_eq!(gateway_span.name, "PATCH /todos/{id}");
            assert_eq!(hex(&gateway_span.parent_span_id), browser_span);
            assert_eq!(
                rpc.parent_span_id, gateway_span.span_id,
                "the gateway's span is the parent"
            );
            assert!(
                !format!("{spans:?}").contains(&session_id),
                "a session id appears in an exported span"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "spans not exported: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const FIREFOX_ON_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_ON_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A browser with its own cookies and User-Agent.
fn browser_as(user_agent: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .user_agent(user_agent)
        .build()
        .unwrap()
}

/// Signs `client` (whose cookies it keeps) in as `username`; the new SESSION cookie.
async fn sign_in(stack: &Stack, client: &Client, username: &str) -> String {
    let response = client
        .post(stack.url("/login"))
        .json(&json!({ "username": username }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (id, _) = set_cookie(&response).expect("a login sets the new id");
    assert_eq!(json_of(response).await, json!({ "principal": username }));
    id
}

/// GET /sessions of a browser: the status and the body.
async fn sessions_of(stack: &Stack, client: &Client) -> (StatusCode, Value) {
    let response = client.get(stack.url("/sessions")).send().await.unwrap();
    assert!(
        set_cookie(&response).is_none(),
        "listing never sets a cookie"
    );
    (response.status(), json_of(response).await)
}

#[tokio::test]
async fn login_moves_the_session_and_its_todos_to_a_new_id() {
    let stack = Stack::start();
    let anonymous = start_session(&bare(), &stack).await;
    let cookie = format!("SESSION={anonymous}");
    let added = bare()
        .post(stack.url("/todos"))
        .header(header::COOKIE, &cookie)
        .json(&json!({"title": "before login", "description": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);

    let login = bare()
        .post(stack.url("/login"))
        .header(header::COOKIE, &cookie)
        .header(header::USER_AGENT, CHROME_ON_LINUX)
        .json(&json!({"username": "alice@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let (signed_in, line) = set_cookie(&login).expect("the login sets the new id");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attribute), "{attribute} missing: {line}");
    }
    assert_ne!(
        signed_in, anonymous,
        "a login moves the session to a new id"
    );
    assert_eq!(signed_in.len(), 55);
    assert_eq!(
        json_of(login).await,
        json!({"principal": "alice@example.com"})
    );

    // The old id is dead in the service; the new one holds the todos, the user and the device.
    assert_eq!(stack.session(&anonymous).await.unwrap_err(), Code::NotFound);
    let session = stack.session(&signed_in).await.unwrap();
    assert_eq!(session.principal, "alice@example.com");
    assert_eq!(session.attributes["device"], b"Chrome on Linux");
    let todos = bare()
        .get(stack.url("/todos"))
        .header(header::COOKIE, format!("SESSION={signed_in}"))
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&todos).is_none(), "the new id is a live session");
    let titles: Vec<Value> = json_of(todos)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("Hello World"), json!("before login")]);

    // The old cookie (planted or leaked before the login) is worth nothing: a fresh session.
    let old = bare()
        .get(stack.url("/todos"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&old).is_none(), "a GET starts nothing");
    assert_eq!(json_of(old).await.as_array().unwrap().len(), 1, "the seed");
    let old = first_change(&bare(), stack.url(""))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let (fresh, _) = set_cookie(&old).expect("the old cookie starts over");
    assert_ne!(fresh, signed_in);
    let (status, _) = sessions_of(&stack, &browser_with_cookie(&format!("SESSION={fresh}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Signing in again rotates again; todos keep working while signed in.
    let web = browser_as(FIREFOX_ON_WINDOWS);
    let first = sign_in(&stack, &web, "bob").await;
    let second = sign_in(&stack, &web, "bob").await;
    assert_ne!(first, second);
    assert_eq!(stack.session(&first).await.unwrap_err(), Code::NotFound);
    let added = web
        .post(stack.url("/todos"))
        .json(&json!({"title": "signed in", "description": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let session = stack.session(&second).await.unwrap();
    assert_eq!(
        (
            session.principal.as_str(),
            &session.attributes["device"][..]
        ),
        ("bob", &b"Firefox on Windows"[..])
    );
    assert_eq!(
        stack
            .stored(&second)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A client that sends `cookie` on every request (and keeps no cookies of its own).
fn browser_with_cookie(cookie: &str) -> Client {
    let mut headers = header::HeaderMap::new();
    headers.insert(header::COOKIE, cookie.parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

#[tokio::test]
async fn two_browsers_of_one_user_see_each_other_and_one_logs_out_the_other() {
    let stack = Stack::start();
    let laptop = browser_as(FIREFOX_ON_WINDOWS);
    let desktop = browser_as(CHROME_ON_LINUX);
    let stranger = browser_as(CHROME_ON_LINUX);
    for web in [&laptop, &desktop] {
        start_session(web, &stack).await;
    }
    sign_in(&stack, &laptop, "bob").await;
    let desktop_id = sign_in(&stack, &desktop, "bob").await;
    sign_in(&stack, &stranger, "carol").await;

    let (status, mine) = sessions_of(&stack, &laptop).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["principal"], "bob");
    let listed = mine["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "carol's session is not bob's: {mine}");
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{mine}");
    assert_eq!(current[0]["device"], "Firefox on Windows");
    let other = listed.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["device"], "Chrome on Linux");
    for session in listed {
        assert_eq!(session["handle"].as_str().unwrap().len(), 22);
        for field in ["last_active", "created"] {
            let at = session[field].as_str().unwrap();
            assert!(
                humantime::parse_rfc3339(at).is_ok(),
                "{field} is not RFC 3339: {at}"
            );
        }
        assert!(
            !session.to_string().contains(&desktop_id),
            "a listing never shows a session id"
        );
    }
    // The desktop sees the same two, with `current` on its own.
    let (_, theirs) = sessions_of(&stack, &desktop).await;
    let desktop_current = theirs["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap();
    assert_eq!(desktop_current["handle"], other["handle"]);
    assert_eq!(desktop_current["device"], "Chrome on Linux");

    // "Log out other sessions" on the laptop ends the desktop's session, and only that.
    let out = laptop
        .post(stack.url("/sessions/logout-others"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(json_of(out).await, json!({"revoked": 1}));
    assert_eq!(
        stack.session(&desktop_id).await.unwrap_err(),
        Code::NotFound
    );
    let (status, _) = sessions_of(&stack, &desktop).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the desktop is signed out"
    );
    let next = desktop.get(stack.url("/todos")).send().await.unwrap();
    assert!(set_cookie(&next).is_none(), "a GET starts nothing");
    assert_eq!(json_of(next).await[0]["title"], "Hello World");
    let fresh = start_session(&desktop, &stack).await;
    assert_ne!(fresh, desktop_id, "its next change starts a fresh session");
    assert_eq!(stack.session(&fresh).await.unwrap().principal, "");
    let (_, mine) = sessions_of(&stack, &laptop).await;
    assert_eq!(mine["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(mine["sessions"][0]["current"], true);
    let (_, carols) = sessions_of(&stack, &stranger).await;
    assert_eq!(carols["sessions"].as_array().unwrap().len(), 1, "{carols}");
    let carol_handle = carols["sessions"][0]["handle"].as_str().unwrap().to_owned();

    // One device by its handle: the desktop signs in again and the laptop ends just that one.
    sign_in(&stack, &desktop, "bob").await;
    let (_, mine) = sessions_of(&stack, &laptop).await;
    let desktop_handle = mine["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = |handle: &str| {
        laptop
            .delete(stack.url(&format!("/sessions/{handle}")))
            .send()
    };
    assert_eq!(
        revoke(&desktop_handle).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sessions_of(&stack, &desktop).await.0,
        StatusCode::UNAUTHORIZED
    );
    for foreign in [
        carol_handle.as_str(),
        desktop_handle.as_str(),
        "not-a-handle",
    ] {
        let body = assert_error(revoke(foreign).await.unwrap(), StatusCode::NOT_FOUND).await;
        assert_eq!(body["error"], "not_found");
    }
    assert_eq!(
        sessions_of(&stack, &stranger).await.0,
        StatusCode::OK,
        "another user's handle ends nothing"
    );
    // Its own handle: logged out, cookie cleared.
    let own = mine["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = revoke(&own).await.unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    let (value, line) = set_cookie(&ended).expect("ending its own session clears the cookie");
    assert!(value.is_empty() && line.contains("Max-Age=0"), "{line}");
    assert_eq!(
        sessions_of(&stack, &laptop).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sessions_need_a_signed_in_browser() {
    let stack = Stack::start();
    let anonymous = browser();
    start_session(&anonymous, &stack).await;
    for web in [&bare(), &anonymous] {
        let response = web.get(stack.url("/sessions")).send().await.unwrap();
        assert!(set_cookie(&response).is_none());
        let body = assert_error(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["error"], "unauthorized");
        let others = web
            .post(stack.url("/sessions/logout-others"))
            .send()
            .await
            .unwrap();
        assert_error(others, StatusCode::UNAUTHORIZED).await;
        let one = web
            .delete(stack.url(&format!("/sessions/{}", "A".repeat(22))))
            .send()
            .await
            .unwrap();
        assert_error(one, StatusCode::UNAUTHORIZED).await;
    }
    // Logging out ends the signed-in session like any other.
    let web = browser();
    sign_in(&stack, &web, "dave").await;
    assert_eq!(sessions_of(&stack, &web).await.0, StatusCode::OK);
    let out = web.post(stack.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(sessions_of(&stack, &web).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_usernames_are_refused_with_422() {
    let stack = Stack::start();
    let url = stack.url("/login");
    let long = "a".repeat(65);
    for (body, named) in [
        (json!({"username": ""}), "1 to 64"),
        (json!({"username": long}), "1 to 64"),
        (json!({"username": "al ice"}), "may only contain"),
        (json!({"username": "ålice"}), "may only contain"),
        (json!({"username": "a/b"}), "may only contain"),
        (json!({"username": 7}), "username"),
        (json!({}), "username"),
        (json!({"username": "x", "password": "y"}), "password"),
    ] {
        let response = bare().post(&url).json(&body).send().await.unwrap();
        assert!(set_cookie(&response).is_none(), "{body}: no session");
        let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
    }
    assert_error(
        bare().post(&url).body("username=x").send().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    // The longest and the odd-but-allowed names are fine.
    let web = browser();
    sign_in(&stack, &web, &"z".repeat(64)).await;
    sign_in(&stack, &web, "first.last-2_x@example.org").await;
}

#[tokio::test]
async fn a_user_at_a_refusing_session_limit_gets_409() {
    let stack = Stack::start_with(
        &[
            ("VALKEY_SESSIONS_SESSIONS__MAX_PER_PRINCIPAL", "1"),
            ("VALKEY_SESSIONS_SESSIONS__ON_LIMIT", "reject"),
        ],
        &[],
    );
    sign_in(&stack, &browser(), "erin").await;
    for web in [bare(), browser()] {
        // With no session (Create) and with an anonymous one (Rotate).
        first_change(&web, stack.url("")).send().await.unwrap();
        let refused = web
            .post(stack.url("/login"))
            .json(&json!({"username": "erin"}))
            .send()
            .await
            .unwrap();
        let body = assert_error(refused, StatusCode::CONFLICT).await;
        assert!(
            body["message"].as_str().unwrap().contains("too many"),
            "{body}"
        );
        // A refused login leaves the browser's session as it was.
        let after = web.get(stack.url("/todos")).send().await.unwrap();
        assert_eq!(after.status(), StatusCode::OK);
        assert_eq!(sessions_of(&stack, &web).await.0, StatusCode::UNAUTHORIZED);
    }
    let kept = browser();
    let kept_id = start_session(&kept, &stack).await;
    let refused = kept
        .post(stack.url("/login"))
        .json(&json!({"username": "erin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let after = kept.get(stack.url("/todos")).send().await.unwrap();
    assert!(set_cookie(&after).is_none());
    assert!(
        stack.session(&kept_id).await.is_ok(),
        "the anonymous session survived the refused login"
    );
}

#[tokio::test]
async fn signing_in_and_ending_sessions_from_a_foreign_origin_is_refused() {
    let stack = Stack::start();
    let web = browser();
    let id = sign_in(&stack, &web, "frank").await;
    let evil = "https://evil.example";
    let login = web
        .post(stack.url("/login"))
        .header(header::ORIGIN, evil)
        .json(&json!({"username": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_error(login, StatusCode::FORBIDDEN).await["error"],
        "forbidden"
    );
    let others = web
        .post(stack.url("/sessions/logout-others"))
        .header(header::ORIGIN, evil)
        .send()
        .await
        .unwrap();
    assert_error(others, StatusCode::FORBIDDEN).await;
    let (_, mine) = sessions_of(&stack, &web).await;
    let handle = mine["sessions"][0]["handle"].as_str().unwrap().to_owned();
    let one = web
        .delete(stack.url(&format!("/sessions/{handle}")))
        .header(header::ORIGIN, evil)
        .send()
        .await
        .unwrap();
    assert_error(one, StatusCode::FORBIDDEN).await;
    // Nothing changed: same id, same user, still listed.
    assert_eq!(stack.session(&id).await.unwrap().principal, "frank");
    let (status, mine) = sessions_of(&stack, &web).await;
    assert_eq!(
        (status, mine["sessions"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    // The same from the gateway's own origin works.
    let own = format!("http://{}", stack.gateway.addr);
    let login = web
        .post(stack.url("/login"))
        .header(header::ORIGIN, own)
        .json(&json!({"username": "frank"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
}
