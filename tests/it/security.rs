//! The gRPC hop secured: TLS and mutual TLS handshakes, certificate rotation on
//! disk, bearer tokens and caller identities, tenants, and the start-up checks — each against
//! the real binary and a real valkey-server.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use session_proto::caller::{CallerOptions, Client};
use session_proto::{CreateRequest, DeleteRequest, GetRequest, PutRequest, RotateRequest};
use test_support::{
    Service, Valkey, attrs, create,
    secure::{GATEWAY_TOKEN, Pki, Secured, write_tokens},
    wait_until,
};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How soon a certificate or tokens file changed on disk takes effect: the tests reload every
/// 200 ms; 2 s is that plus the test's margin (the default interval is 5 s for certificates and
/// 2 s for tokens).
const RELOAD_BOUND: Duration = Duration::from_secs(2);

/// Valkey data commands seen by a standalone server: a rejected call must not add any.
fn data_calls(valkey: &Valkey) -> u64 {
    ["get", "set", "evalsha", "eval", "del"]
        .iter()
        .map(|c| valkey.calls(c))
        .sum()
}

async fn create_id(c: &mut Client) -> String {
    create(
        c,
        CreateRequest {
            attributes: attrs(&[("user", "ada")]),
            ..Default::default()
        },
    )
    .await
    .id
}

fn get(id: &str) -> GetRequest {
    GetRequest {
        id: id.into(),
        ..Default::default()
    }
}

/// Polls an async condition until it holds, up to `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tls_serves_and_a_plaintext_peer_on_either_side_is_refused_cleanly() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(&[], "");
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let mut c = service.client().await;
    let id = create_id(&mut c).await;
    assert!(c.get(get(&id)).await.is_ok());

    // A plaintext client against the TLS port: an error, no hang, no crash.
    let plain = CallerOptions {
        token_file: secured.caller(Some(GATEWAY_TOKEN)).token_file,
        // The client would refuse on its own; the server's refusal is what is tested here.
        allow_token_over_plaintext: true,
        ..Default::default()
    };
    let start = Instant::now();
    let refused = async {
        let channel = plain
            .endpoint(&format!("http://{}", service.addr))?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        plain
            .client(channel)?
            .get(get(&id))
            .await
            .map_err(|s| s.to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("a plaintext client gets an answer, not a hang");
    assert!(
        outcome.is_err(),
        "plaintext must not be served on the TLS port"
    );
    assert!(start.elapsed() < Duration::from_secs(10));

    // A TLS client against a plaintext port: an error too.
    let plain_service = Service::start(&valkey.url(), &[]);
    let tls_caller = secured.caller(None);
    let against_plain = tokio::time::timeout(Duration::from_secs(10), async {
        tls_caller
            .endpoint(&format!("https://{}", plain_service.addr))?
            .connect()
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .expect("no hang");
    assert!(against_plain.is_err(), "TLS against a plaintext port fails");

    // Everyone else is still served.
    assert!(c.get(get(&id)).await.is_ok());
    assert!(service.metric("grpc_tls_handshake_failures_total", "") >= 1.0);
    assert!(
        service.metric("grpc_tls_certificate_expiration_timestamp_seconds", "") > 1.7e9,
        "the served certificate's not_after is exported"
    );
}

/// Sockets that connect and never send a ClientHello (from one host) cannot hold up anyone
/// else's connection: the accept loop never waits, one peer gets a bounded share of the
/// handshakes in progress, and the rest of its sockets are closed at once.
#[tokio::test]
async fn silent_sockets_do_not_block_other_callers_handshakes() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(&[], "");
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let mut silent = Vec::new();
    for _ in 0..400 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(service.addr).await.unwrap());
    }
    let start = Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(3), async {
        let mut c = service.client().await;
        create_id(&mut c).await
    })
    .await;
    assert!(
        served.is_ok(),
        "a caller waited behind {} silent sockets of another host",
        silent.len()
    );
    println!(
        "a new caller served in {:?} with {} silent sockets of another host open",
        start.elapsed(),
        silent.len()
    );
    assert!(
        service.metric("grpc_tls_handshake_failures_total", "") >= 300.0,
        "the other host's sockets beyond its share were closed at once"
    );
}

/// The server advertises a bounded number of concurrent streams per connection (HTTP/2
/// SETTINGS), so one connection cannot open RPCs without limit.
#[tokio::test]
async fn http2_streams_per_connection_are_bounded() {
    let valkey = Valkey::standalone();
    let service = Service::start(
        &valkey.url(),
        &[("VALKEY_SESSIONS_GRPC__MAX_CONCURRENT_STREAMS", "50")],
    );
    let tcp = tokio::net::TcpStream::connect(service.addr).await.unwrap();
    let (_requests, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let start = Instant::now();
    // The connection future reads the server's SETTINGS as it is polled.
    while connection.max_concurrent_send_streams() != 50 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the server advertises {} concurrent streams, not 50",
            connection.max_concurrent_send_streams()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), &mut connection).await;
    }
}

/// Connections are closed at their maximum age (after a grace for the RPCs in flight): the
/// bound on how long a revoked token or certificate keeps working on an open connection. The
/// caller reconnects (and authenticates again) on its next RPC.
#[tokio::test]
async fn connections_are_closed_at_their_maximum_age() {
    let valkey = Valkey::standalone();
    let service = Service::start(
        &valkey.url(),
        &[
            ("VALKEY_SESSIONS_GRPC__MAX_CONNECTION_AGE", "1s"),
            ("VALKEY_SESSIONS_GRPC__MAX_CONNECTION_AGE_GRACE", "1s"),
        ],
    );
    let mut c = service.client().await;
    let id = create_id(&mut c).await;
    assert_eq!(service.metric("grpc_connections", ""), 1.0);
    let start = Instant::now();
    wait_until(
        "the aged connection is closed",
        Duration::from_secs(8),
        || service.metric("grpc_connections", "") == 0.0,
    );
    println!(
        "a connection of max age 1 s (+1 s grace) closed after {:?}",
        start.elapsed()
    );
    eventually(
        "a new connection serves",
        Duration::from_secs(5),
        || async { c.clone().get(get(&id)).await.is_ok() },
    )
    .await;
}

/// With mutual TLS and authentication optional, a certificate of the CA that names no identity
/// (no URI or DNS SAN) is not an anonymous caller with every RPC: PERMISSION_DENIED.
#[tokio::test]
async fn a_client_certificate_without_an_identity_is_not_anonymous() {
    let valkey = Valkey::standalone();
    let secured = Secured::mtls(&[], "");
    let service = Service::start_secured(
        &valkey.url(),
        &secured,
        &[("VALKEY_SESSIONS_AUTH__REQUIRED", "false")],
    );
    assert!(
        service.logs().contains("\"auth_required\":false"),
        "authentication is optional here"
    );
    let nameless = secured.pki.client_without_identity("nameless");
    let mut c = service
        .client_as(&secured.cert_caller(&nameless))
        .await
        .expect("the handshake succeeds: the CA issued it");
    let denied = c.create(CreateRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

#[tokio::test]
async fn mutual_tls_refuses_missing_foreign_and_expired_client_certificates() {
    let valkey = Valkey::standalone();
    let secured = Secured::mtls(
        &[],
        "[[auth.callers]]\nidentity = \"spiffe://example.org/ns/web/sa/checkout\"\n",
    );
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let good = secured
        .pki
        .client("checkout", "spiffe://example.org/ns/web/sa/checkout", false);
    let expired = secured
        .pki
        .client("expired", "spiffe://example.org/ns/web/sa/checkout", true);
    let stranger = secured
        .pki
        .client("stranger", "spiffe://example.org/ns/web/sa/stranger", false);
    let foreign_pki = Pki::new(secured.dir.path(), "foreign");
    let foreign = foreign_pki.client("foreign", "spiffe://example.org/ns/web/sa/checkout", false);

    // The certificate names the caller: no token needed.
    let mut c = service
        .client_as(&secured.cert_caller(&good))
        .await
        .expect("a valid client certificate is accepted");
    let id = create_id(&mut c).await;
    assert!(c.get(get(&id)).await.is_ok());

    // Missing, foreign-CA and expired certificates fail in the handshake: with TLS 1.3 the
    // client learns it on its first call at the latest. No call reaches the service.
    let before = data_calls(&valkey);
    let failures_before = service.metric("grpc_tls_handshake_failures_total", "");
    for (what, caller) in [
        ("no certificate", secured.caller(Some(GATEWAY_TOKEN))),
        (
            "a certificate from another CA",
            secured.cert_caller(&foreign),
        ),
        ("an expired certificate", secured.cert_caller(&expired)),
    ] {
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            let mut client = service.client_as(&caller).await?;
            client.get(get(&id)).await.map_err(|s| s.to_string())
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: refused, not hanging"));
        assert!(result.is_err(), "{what} must be refused");
    }
    assert_eq!(
        data_calls(&valkey),
        before,
        "refused callers cost no Valkey call"
    );
    wait_until(
        "three refused handshakes counted",
        Duration::from_secs(5),
        || service.metric("grpc_tls_handshake_failures_total", "") >= failures_before + 3.0,
    );

    // A valid certificate of an identity that is not a configured caller: PERMISSION_DENIED.
    let mut s = service
        .client_as(&secured.cert_caller(&stranger))
        .await
        .unwrap();
    let err = s.get(get(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        c.get(get(&id)).await.is_ok(),
        "the good caller is still served"
    );
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections_and_open_ones_keep_working() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(&[], "");
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let mut open = service.client().await;
    let id = create_id(&mut open).await;

    // A client keeps calling on its open connection throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let caller = {
        let (stop, ok, failed, id) = (stop.clone(), ok.clone(), failed.clone(), id.clone());
        let mut c = open.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(get(&id)).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Rotate to a certificate of another CA, the way cert-manager swaps a secret.
    let next_pki = Pki::new(secured.dir.path(), "next");
    let next = next_pki.server("next-server");
    std::fs::copy(&next.key, &secured.server.key).unwrap();
    std::fs::copy(&next.cert, &secured.server.cert).unwrap();
    let trusts_next = CallerOptions {
        ca_file: Some(next_pki.ca.clone()),
        ..secured.caller(Some(GATEWAY_TOKEN))
    };
    let rotated_at = Instant::now();
    loop {
        if let Ok(mut c) = service.client_as(&trusts_next).await
            && c.get(get(&id)).await.is_ok()
        {
            break;
        }
        assert!(
            rotated_at.elapsed() < RELOAD_BOUND,
            "the new certificate serves new connections within {RELOAD_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = rotated_at.elapsed();
    assert!(
        service
            .client_as(&secured.caller(Some(GATEWAY_TOKEN)))
            .await
            .is_err()
            || service
                .client_as(&secured.caller(Some(GATEWAY_TOKEN)))
                .await
                .unwrap()
                .get(get(&id))
                .await
                .is_err(),
        "new connections no longer get the old certificate"
    );

    // Garbage in the certificate file: the last good certificate stays, an error is counted.
    std::fs::write(
        &secured.server.cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    wait_until(
        "the bad reload to be counted",
        Duration::from_secs(10),
        || service.metric("grpc_tls_reloads_total", "outcome=\"error\"") >= 1.0,
    );
    let mut after = service.client_as(&trusts_next).await.unwrap();
    assert!(
        after.get(get(&id)).await.is_ok(),
        "still serving with the last good certificate"
    );
    assert!(
        service.logs().contains("reload failed"),
        "the failed reload is logged"
    );

    stop.store(true, Ordering::Relaxed);
    caller.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "the open connection never failed"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 5,
        "the open connection kept being used"
    );
    assert!(service.metric("grpc_tls_reloads_total", "outcome=\"ok\"") >= 1.0);
    eprintln!("certificate rotation took effect after {took:?}");
}

#[tokio::test]
async fn tokens_authenticate_authorise_and_reload_without_touching_valkey() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(
        &[
            ("reader", "reader-token-0123456789abcdef"),
            ("nobody", "nobody-token-0123456789abcdef"),
        ],
        "[[auth.callers]]\nidentity = \"reader\"\nmethods = [\"Get\"]\n",
    );
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let mut gw = service.client().await;
    let id = create_id(&mut gw).await;

    let as_token = |t: Option<&str>| secured.caller(t);
    let before = data_calls(&valkey);
    let cases: Vec<(&str, CallerOptions, Code)> = vec![
        ("no token", as_token(None), Code::Unauthenticated),
        (
            "a garbage token",
            as_token(Some("garbage")),
            Code::Unauthenticated,
        ),
        (
            "a token of an unknown caller",
            as_token(Some("nobody-token-0123456789abcdef")),
            Code::PermissionDenied,
        ),
    ];
    for (what, caller, code) in cases {
        let mut c = service.client_as(&caller).await.unwrap();
        let err = c.get(get(&id)).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(
            !err.message().contains("garbage"),
            "the token is never echoed"
        );
    }
    let mut reader = service
        .client_as(&as_token(Some("reader-token-0123456789abcdef")))
        .await
        .unwrap();
    let err = reader
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("x", "y")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("Put"));
    // Oversized metadata: a clear error for that call, the service keeps serving.
    let huge = "x".repeat(64 * 1024);
    let mut big = service.client_as(&as_token(Some(&huge))).await.unwrap();
    assert!(big.get(get(&id)).await.is_err());
    assert_eq!(
        data_calls(&valkey),
        before,
        "no rejected call reached Valkey"
    );
    assert!(
        reader.get(get(&id)).await.is_ok(),
        "Get is allowed to the reader"
    );

    for reason in [
        "missing_credentials",
        "invalid_token",
        "unknown_identity",
        "method_not_allowed",
    ] {
        assert!(
            service.metric("grpc_auth_rejected_total", &format!("reason=\"{reason}\"")) >= 1.0,
            "{reason} is counted"
        );
    }
    let exposition = service.scrape_metrics();
    let logs = service.logs();
    for secret in [
        GATEWAY_TOKEN,
        "reader-token-0123456789abcdef",
        "nobody-token",
    ] {
        assert!(
            !exposition.contains(secret) && !logs.contains(secret),
            "a token leaked"
        );
    }

    // Revoke the reader and add a new token: takes effect without a restart.
    write_tokens(
        &secured.tokens_file,
        &[
            ("gateway", GATEWAY_TOKEN),
            ("reader", "rotated-reader-token-0123456789"),
        ],
    );
    let rotated = as_token(Some("rotated-reader-token-0123456789"));
    let revoked = as_token(Some("reader-token-0123456789abcdef"));
    eventually(
        "the tokens file change to take effect",
        RELOAD_BOUND,
        || async {
            let mut old = service.client_as(&revoked).await.unwrap();
            let mut new = service.client_as(&rotated).await.unwrap();
            old.get(get(&id)).await.is_err() && new.get(get(&id)).await.is_ok()
        },
    )
    .await;
    // A broken tokens file keeps the last good table.
    std::fs::write(&secured.tokens_file, "[[token]\nnot toml").unwrap();
    wait_until(
        "the bad tokens file to be counted",
        Duration::from_secs(10),
        || service.metric("grpc_auth_token_reloads_total", "outcome=\"error\"") >= 1.0,
    );
    let mut new = service.client_as(&rotated).await.unwrap();
    assert!(new.get(get(&id)).await.is_ok());
    assert!(gw.get(get(&id)).await.is_ok());
    // So does an emptied one (a failed secret sync): it would refuse every caller.
    std::fs::write(&secured.tokens_file, "").unwrap();
    wait_until(
        "the empty tokens file to be counted",
        Duration::from_secs(10),
        || service.metric("grpc_auth_token_reloads_total", "outcome=\"error\"") >= 2.0,
    );
    assert!(new.get(get(&id)).await.is_ok());
    assert!(gw.get(get(&id)).await.is_ok());
}

/// One caller cannot take every slot: past `grpc.caller_concurrency_limit` requests in flight
/// its next ones are RESOURCE_EXHAUSTED at once, while another caller is still admitted.
#[tokio::test]
async fn one_caller_cannot_starve_the_others() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(
        &[("reader", "reader-token-0123456789abcdef")],
        "[[auth.callers]]\nidentity = \"reader\"\nmethods = [\"Get\"]\n",
    );
    let service = Service::start_secured(
        &valkey.url(),
        &secured,
        &[("VALKEY_SESSIONS_GRPC__CALLER_CONCURRENCY_LIMIT", "2")],
    );
    let mut gateway = service.client().await;
    let id = create_id(&mut gateway).await;
    let reader = service
        .client_as(&secured.caller(Some("reader-token-0123456789abcdef")))
        .await
        .unwrap();
    // Valkey frozen: every admitted Get holds its slots for the command timeout.
    valkey.pause();
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let mut c = gateway.clone();
            let id = id.clone();
            tokio::spawn(async move { c.get(get(&id)).await.map(|_| ()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut r = reader.clone();
    let other = r.get(get(&id)).await;
    let codes: Vec<Code> = futures_codes(flood).await;
    valkey.resume();
    let refused = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!(refused, 4, "two admitted, four refused at once: {codes:?}");
    assert_ne!(
        other.as_ref().err().map(|e| e.code()),
        Some(Code::ResourceExhausted),
        "another caller is still admitted: {other:?}"
    );
}

async fn futures_codes(
    tasks: Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>>,
) -> Vec<Code> {
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(match t.await.unwrap() {
            Ok(()) => Code::Ok,
            Err(s) => s.code(),
        });
    }
    codes
}

#[tokio::test]
async fn tenants_never_see_each_other_and_have_their_own_limits() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(
        &[("shop", "shop-token-0123456789abcdef0123")],
        "[[auth.callers]]\nidentity = \"shop\"\ntenant = \"shop\"\n\n\
         [tenants.shop.limits]\nmax_value_bytes = 16\n\n\
         [tenants.shop.sessions]\ndefault_idle_timeout = \"5m\"\n",
    );
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    let mut default = service.client().await;
    let mut shop = service
        .client_as(&secured.caller(Some("shop-token-0123456789abcdef0123")))
        .await
        .unwrap();

    let theirs = create_id(&mut default).await;
    let mine = create(&mut shop, CreateRequest::default()).await;
    assert_eq!(
        mine.idle_timeout.unwrap().seconds,
        300,
        "the tenant's lifetime default"
    );
    // Keys are `<prefix>{tag}.<handle>` (docs/key-layout.md): the default tenant keeps the
    // single-tenant prefix, the shop tenant has its own.
    let key = |prefix: &str, id: &str| {
        let parsed = session_core::SessionId::parse(id).unwrap();
        format!("{prefix}{{{}}}.{}", &id[..11], parsed.handle())
    };
    let keys = valkey.cli(&["KEYS", "*"]);
    assert!(
        keys.contains(&key("vs:", &theirs)),
        "default tenant: {keys}"
    );
    assert!(keys.contains(&key("vs:shop:", &mine.id)), "{keys}");

    // Every operation on the other tenant's id: NOT_FOUND, never PERMISSION_DENIED.
    let code = shop.get(get(&theirs)).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);
    let put = PutRequest {
        id: theirs.clone(),
        set: attrs(&[("x", "y")]),
        ..Default::default()
    };
    assert_eq!(shop.put(put).await.unwrap_err().code(), Code::NotFound);
    let rotate = RotateRequest {
        id: theirs.clone(),
        ..Default::default()
    };
    assert_eq!(
        shop.rotate(rotate).await.unwrap_err().code(),
        Code::NotFound
    );
    let deleted = shop
        .delete(DeleteRequest {
            id: theirs.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!deleted.existed);
    assert_eq!(
        default.get(get(&mine.id)).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(
        default.get(get(&theirs)).await.is_ok(),
        "untouched by the other tenant"
    );

    // The tenant's own limit, the global one elsewhere.
    let big = CreateRequest {
        attributes: attrs(&[("v", "seventeen bytes!!")]),
        ..Default::default()
    };
    assert_eq!(
        shop.create(big.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert!(default.create(big).await.is_ok());
}

#[tokio::test]
async fn health_stays_open_and_reflection_follows_the_profile() {
    let valkey = Valkey::standalone();
    let secured = Secured::new(&[], "[grpc]\nreflection = false\n");
    let service = Service::start_secured(&valkey.url(), &secured, &[]);
    // No token: health answers (probes carry no credentials); the session API does not.
    let anonymous = secured.caller(None);
    let channel = anonymous
        .endpoint(&service.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone());
    eventually("SERVING", Duration::from_secs(10), || {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == 1)
        }
    })
    .await;
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let err = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unimplemented,
        "reflection is off: {err:?}"
    );
}

#[test]
fn bad_security_settings_stop_the_start_with_exit_2_naming_the_file_or_key() {
    let bin = env!("CARGO_BIN_EXE_valkey-sessions");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let server = pki.server("server");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let bad_tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &bad_tokens,
        "[[token]]\nidentity = \"x\"\nsha256 = \"short\"\n",
    )
    .unwrap();
    let (cert, key, garbage_s, tokens_s) = (
        server.cert.display().to_string(),
        server.key.display().to_string(),
        garbage.display().to_string(),
        bad_tokens.display().to_string(),
    );
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("GRPC_TLS_CERT_FILE", &garbage_s),
                ("GRPC_TLS_KEY_FILE", &key),
            ],
            "garbage.pem",
        ),
        (
            vec![
                ("GRPC_TLS_CERT_FILE", &cert),
                ("GRPC_TLS_KEY_FILE", &garbage_s),
            ],
            "garbage.pem",
        ),
        (vec![("GRPC_TLS_CERT_FILE", &cert)], "GRPC_TLS_KEY_FILE"),
        (
            vec![
                ("GRPC_TLS_CERT_FILE", "/nonexistent.pem"),
                ("GRPC_TLS_KEY_FILE", &key),
            ],
            "grpc.tls.cert_file",
        ),
        (vec![("GRPC_AUTH_TOKENS_FILE", &tokens_s)], "64 hex digits"),
        (
            vec![("VALKEY_SESSIONS_AUTH__REQUIRED", "true")],
            "no way to authenticate",
        ),
        (
            vec![
                ("VALKEY_SESSIONS_PROFILE", "cloud"),
                ("VALKEY_URL", "rediss://127.0.0.1:1"),
            ],
            "TRUSTED_NETWORK",
        ),
        // TLS alone in cloud: anyone who reaches the port would have every RPC.
        (
            vec![
                ("VALKEY_SESSIONS_PROFILE", "cloud"),
                ("VALKEY_URL", "rediss://127.0.0.1:1"),
                ("GRPC_TLS_CERT_FILE", &cert),
                ("GRPC_TLS_KEY_FILE", &key),
            ],
            "auth.required",
        ),
        (
            vec![("VALKEY_SESSIONS_VALKEY__AUTH", "iam")],
            "valkey.username",
        ),
        (
            vec![("VALKEY_PASSWORD_FILE", "/nonexistent")],
            "valkey.password_file",
        ),
    ];
    for (env, expected) in cases {
        let out = Command::new(bin)
            .env_clear()
            .env("VALKEY_URL", "redis://127.0.0.1:1")
            .env("GRPC_LISTEN", "127.0.0.1:0")
            .env("METRICS_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{env:?} must be refused: {stderr}"
        );
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}
