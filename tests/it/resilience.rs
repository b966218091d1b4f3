//! Failure behaviour: Valkey down, secrets kept out of logs, bad configuration.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use session_proto::{
    CreateRequest, DeleteRequest, GetRequest, ListSessionsRequest, PutRequest,
    RevokeSessionRequest, RevokeSessionsRequest, RotateRequest,
};
use test_support::{Service, Valkey, attrs, create};
use tonic::Code;

#[tokio::test]
async fn valkey_down_is_unavailable_fast_and_recovers_without_restart() {
    let mut valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;

    valkey.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let e = c
            .get(GetRequest {
                id: id.clone(),
                consistency: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(
            e.message().contains("retry"),
            "actionable message: {}",
            e.message()
        );
        assert!(
            start.elapsed() < COMMAND_TIMEOUT + MARGIN,
            "within the command timeout, not a hang: {:?}",
            start.elapsed()
        );
        let e = c.create(CreateRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        let e = c
            .put(PutRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }

    valkey.restart();
    let start = Instant::now();
    loop {
        match c.create(CreateRequest::default()).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "did not recover: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    println!("recovered {:?} after restart", start.elapsed());
}

/// The command timeout the service runs with (the default): the bound of every RPC.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The test's own margin on a loaded 2-core machine (the service's is 50 ms).
const MARGIN: Duration = Duration::from_millis(250);

/// A frozen Valkey (SIGSTOP: the connection open, nothing answers) is the timeout path, not a
/// refused connection: every RPC answers UNAVAILABLE within the command timeout.
#[tokio::test]
async fn a_frozen_valkey_is_unavailable_within_the_command_timeout() {
    let valkey = Valkey::standalone();
    let service = Service::start(
        &valkey.url(),
        &[("VALKEY_SESSIONS_NEAR_CACHE__ENABLED", "false")],
    );
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    valkey.pause();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let start = Instant::now();
        let e = c
            .get(GetRequest {
                id: id.clone(),
                consistency: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        slowest = slowest.max(start.elapsed());
    }
    valkey.resume();
    println!("frozen Valkey: the slowest of 3 Gets answered UNAVAILABLE after {slowest:?}");
    assert!(
        slowest < COMMAND_TIMEOUT + MARGIN,
        "UNAVAILABLE within the command timeout: {slowest:?}"
    );
}

#[tokio::test]
async fn a_service_started_before_valkey_serves_once_valkey_is_up() {
    let port = test_support::free_port();
    let service = Service::start(&format!("redis://127.0.0.1:{port}"), &[]);
    let mut c = service.client().await;
    let e = c.create(CreateRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let _valkey = Valkey::start_on(port, Vec::new(), None).expect("valkey on the reserved port");
    let start = Instant::now();
    loop {
        match c.create(CreateRequest::default()).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "never connected: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    println!(
        "first connection {:?} after valkey started",
        start.elapsed()
    );
}

#[tokio::test]
async fn session_ids_never_reach_the_logs() {
    let valkey = Valkey::standalone();
    // The most verbose level a user could pick.
    let service = Service::start(&valkey.url(), &[("RUST_LOG", "trace")]);
    let mut c = service.client().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let s = create(
            &mut c,
            CreateRequest {
                attributes: attrs(&[("k", "v")]),
                principal: "p".into(),
                ..Default::default()
            },
        )
        .await;
        c.get(GetRequest {
            id: s.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap();
        c.put(PutRequest {
            id: s.id.clone(),
            set: attrs(&[("k", "w")]),
            expected_version: Some(9),
            ..Default::default()
        })
        .await
        .unwrap_err();
        c.delete(DeleteRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        c.get(GetRequest {
            id: s.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap_err();
        ids.push(s.id);
    }
    // The principal-wide RPCs and a login handle ids too.
    let anonymous = create(&mut c, CreateRequest::default()).await.id;
    let signed_in = c
        .rotate(RotateRequest {
            id: anonymous.clone(),
            principal: Some("p".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .id;
    let listed = c
        .list_sessions(ListSessionsRequest {
            principal: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.revoke_session(RevokeSessionRequest {
        principal: "p".into(),
        handle: listed.sessions[0].handle.clone(),
    })
    .await
    .unwrap();
    c.revoke_sessions(RevokeSessionsRequest {
        principal: "p".into(),
        except_id: Some(signed_in.clone()),
    })
    .await
    .unwrap();
    ids.extend([anonymous, signed_in]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = service.logs();
    assert!(logs.lines().count() > 20, "trace logging produced output");
    for id in &ids {
        // The secret is the random part after the slot tag: no 12 characters of it (72 bits,
        // no accidental match) may appear, whole or in part.
        let random = id.rsplit('.').next().unwrap();
        for at in 0..=random.len() - 12 {
            let fragment = &random[at..at + 12];
            assert!(
                !logs.contains(fragment),
                "12 characters of a session id reached the logs: {fragment}"
            );
        }
    }
}

#[test]
fn bad_configuration_exits_with_an_error_naming_the_key() {
    let bin = env!("CARGO_BIN_EXE_valkey-sessions");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("VALKEY_READ_FROM", "sometimes")], "VALKEY_READ_FROM"),
        (&[("VALKEY_URL", "http://x")], "valkey.url"),
        (&[("VALKEY_SESSIONS_PROFILE", "cloud")], "valkey.url"),
        (
            &[
                ("VALKEY_SESSIONS_PROFILE", "cloud"),
                ("VALKEY_URL", "redis://127.0.0.1:1"),
            ],
            "TLS",
        ),
        (
            &[("VALKEY_SESSIONS_LIMITS__MAX_VALUE_BYTES", "lots")],
            "max_value_bytes",
        ),
        (
            &[("VALKEY_SESSIONS_VALKEY__POOL_SIZE", "0")],
            "valkey.pool_size",
        ),
        (
            &[("VALKEY_CA_FILE", "/nonexistent/ca.pem")],
            "valkey.ca_file",
        ),
        (&[("GRPC_LISTEN", "not-an-address")], "GRPC_LISTEN"),
        (
            &[("VALKEY_SESSIONS_VALKEY__DURABILITY_TIMEOUT", "2s")],
            "valkey.durability_timeout",
        ),
        (
            &[("VALKEY_SESSIONS_VALKEY__DURABILITY", "sometimes")],
            "durability",
        ),
    ];
    for (env, expected) in cases {
        let out = Command::new(bin)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.to_lowercase().contains(&expected.to_lowercase()),
            "{env:?}: {stderr}"
        );
    }
    let help = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "VALKEY_URL",
        "VALKEY_CA_FILE",
        "VALKEY_READ_FROM",
        "GRPC_LISTEN",
        "SESSION_HOST",
        "METRICS_LISTEN",
    ] {
        assert!(help.contains(var), "--help documents {var}");
    }
}

/// A request above the server's message limit is RESOURCE_EXHAUSTED, as the gRPC status-code
/// specification says (tonic's own answer is OUT_OF_RANGE), with a message saying why; the
/// service keeps serving and counts it under that code.
#[tokio::test]
async fn a_64_mib_request_is_resource_exhausted_not_out_of_range() {
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client_with_limit(128 << 20).await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    let mut set = std::collections::HashMap::new();
    set.insert("big".to_string(), vec![b'x'; 64 << 20]);
    let started = Instant::now();
    let e = c
        .put(PutRequest {
            id: id.clone(),
            set,
            ..Default::default()
        })
        .await
        .unwrap_err();
    println!(
        "64 MiB Put: {:?} in {:?}: {}",
        e.code(),
        started.elapsed(),
        e.message()
    );
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("too large"), "{}", e.message());
    c.get(GetRequest { id, consistency: 0 })
        .await
        .expect("the service keeps serving");
    let metrics = service.scrape_metrics();
    assert!(
        metrics.contains("method=\"Put\",code=\"RESOURCE_EXHAUSTED\"")
            || metrics.contains("code=\"RESOURCE_EXHAUSTED\",method=\"Put\""),
        "counted as RESOURCE_EXHAUSTED: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("grpc_requests_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
