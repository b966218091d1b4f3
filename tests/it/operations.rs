//! The operations surface: health that tells the truth, reflection, metrics, traces, graceful
//! shutdown, deadlines and the concurrency limit, all against real Valkey.

use std::time::{Duration, Instant};

use session_proto::{CreateRequest, GetRequest};
use test_support::{Service, Valkey, create, otlp, otlp::hex};
use tokio_stream::StreamExt;
use tonic::{Code, Request};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SERVICE: &str = "session.v1.SessionService";

async fn status(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    let r = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    ServingStatus::try_from(r.into_inner().status).unwrap()
}

async fn wait_status(
    health: &mut HealthClient<tonic::transport::Channel>,
    want: ServingStatus,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if status(health, SERVICE).await == want && status(health, "").await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "health did not become {want:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How soon health follows Valkey going down or coming back.
const HEALTH_BOUND: Duration = Duration::from_secs(3);

#[tokio::test]
async fn health_follows_valkey_down_and_back_without_a_restart() {
    let mut valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut health = HealthClient::new(service.channel().await);
    wait_status(&mut health, ServingStatus::Serving, Duration::from_secs(5)).await;

    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    // docs/runbook.md says about 2 s (a health probe a second, its command timeout 1 s); 3 s leaves
    // the test's own margin on a loaded machine.
    valkey.kill();
    let down = wait_status(&mut health, ServingStatus::NotServing, HEALTH_BOUND).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert_eq!(
        seen.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "Watch streams see it"
    );

    valkey.restart();
    let up = wait_status(&mut health, ServingStatus::Serving, HEALTH_BOUND).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert_eq!(seen.unwrap().unwrap().status, ServingStatus::Serving as i32);
    println!("health: NOT_SERVING {down:?} after valkey died, SERVING {up:?} after it came back");

    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_and_describes_the_api_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let channel = service.channel().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let requests = tokio_stream::iter([
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "session.v1.SessionService".into(),
                ),
            ),
        },
    ]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    match responses
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1::server_reflection_response::MessageResponse::ListServicesResponse(list) => {
            let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
            assert!(names.contains(&"session.v1.SessionService"), "{names:?}");
            assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    match responses
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files) => {
            assert!(
                !files.file_descriptor_proto.is_empty(),
                "describe works without proto files"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let requests = tokio_stream::iter([v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    }]);
    let mut responses = alpha
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        responses
            .next()
            .await
            .unwrap()
            .unwrap()
            .message_response
            .unwrap(),
        v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(_)
    ));
}

#[tokio::test]
async fn metrics_count_requests_latency_valkey_commands_and_connections() {
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    for _ in 0..3 {
        c.get(GetRequest {
            id: id.clone(),
            consistency: 0,
        })
        .await
        .unwrap();
    }
    c.get(GetRequest {
        id: "bad".into(),
        consistency: 0,
    })
    .await
    .unwrap_err();
    let body = service.scrape_metrics();
    for expected in [
        r#"grpc_requests_total{method="Get",code="OK"} 3"#,
        r#"grpc_requests_total{method="Get",code="INVALID_ARGUMENT"} 1"#,
        r#"grpc_requests_total{method="Create",code="OK"} 1"#,
        r#"grpc_request_duration_seconds_bucket{method="Get",le="#,
        r#"valkey_command_duration_seconds_bucket{command="get",le="#,
        r#"session_gets_total{source="primary"} 3"#,
        "grpc_connections 1",
        "valkey_up 1",
    ] {
        assert!(body.contains(expected), "missing {expected}\n{body}");
    }
}

#[tokio::test]
async fn traces_continue_the_callers_trace_and_never_carry_session_ids() {
    let receiver = otlp::Receiver::start().await;
    let valkey = Valkey::standalone();
    let endpoint = receiver.endpoint.clone();
    let service = Service::start(
        &valkey.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "sessions-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let mut request = Request::new(GetRequest {
        id: id.clone(),
        consistency: 0,
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").parse().unwrap(),
    );
    c.get(request).await.unwrap();

    let start = Instant::now();
    let (rpc, valkey_span) = loop {
        let spans: Vec<_> = receiver
            .spans()
            .into_iter()
            .map(|(service, span)| {
                assert_eq!(service, "sessions-under-test");
                span
            })
            .collect();
        let rpc = spans
            .iter()
            .find(|s| s.name == "session.v1.SessionService/Get" && hex(&s.trace_id) == trace_id)
            .cloned();
        if let Some(rpc) = rpc {
            let child = spans
                .iter()
                .find(|s| s.name == "valkey.get" && s.parent_span_id == rpc.span_id)
                .cloned();
            if let Some(child) = child {
                let dump = format!("{spans:?}");
                assert!(
                    !dump.contains(&id),
                    "the session id appears in an exported span"
                );
                break (rpc, child);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "spans not exported: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        hex(&rpc.parent_span_id),
        parent_span,
        "the caller's span is the parent"
    );
    assert_eq!(hex(&valkey_span.trace_id), trace_id);
}

#[tokio::test]
async fn sigterm_turns_health_off_finishes_in_flight_requests_and_exits_zero() {
    let valkey = Valkey::standalone();
    let mut service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let mut health = HealthClient::new(service.channel().await);
    wait_status(&mut health, ServingStatus::Serving, Duration::from_secs(5)).await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();

    // Valkey answers only after 700 ms: the Get is in flight when SIGTERM arrives.
    valkey.cli(&["CLIENT", "PAUSE", "700", "ALL"]);
    let in_flight = tokio::spawn(async move {
        let start = Instant::now();
        let r = c.get(GetRequest { id, consistency: 0 }).await;
        (r.map(|_| ()), start.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let term = Instant::now();
    service.signal("TERM");

    let turned = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await
        .unwrap();
    assert_eq!(
        turned.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "NOT_SERVING first"
    );
    let (result, took) = in_flight.await.unwrap();
    assert!(result.is_ok(), "the in-flight request finished: {result:?}");
    assert!(
        took >= Duration::from_millis(400),
        "it really was in flight ({took:?})"
    );
    let code = service.wait_exit(Duration::from_secs(12));
    assert_eq!(
        code,
        Some(0),
        "exit 0 within the drain time:\n{}",
        service.logs()
    );
    println!("SIGTERM to exit: {:?}", term.elapsed());
}

#[tokio::test]
async fn deadlines_and_the_concurrency_limit_answer_instead_of_queueing() {
    let valkey = Valkey::standalone();
    let service = Service::start(
        &valkey.url(),
        &[
            ("VALKEY_SESSIONS_GRPC__CONCURRENCY_LIMIT", "4"),
            ("VALKEY_SESSIONS_VALKEY__COMMAND_TIMEOUT", "3s"),
        ],
    );
    let c = service.client().await;
    let id = c
        .clone()
        .create(CreateRequest::default())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .id;

    valkey.cli(&["CLIENT", "PAUSE", "1500", "ALL"]);
    // A caller's deadline is honoured: DEADLINE_EXCEEDED after ~200 ms, not after Valkey's pause.
    let mut short = Request::new(GetRequest {
        id: id.clone(),
        consistency: 0,
    });
    short.set_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let e = c.clone().get(short).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );

    // Twenty concurrent requests against a limit of 4: the excess is refused at once.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = c.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = c.get(GetRequest { id, consistency: 0 }).await;
            (r.map(|_| ()).map_err(|s| s.code()), start.elapsed())
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (r, took) = t.await.unwrap();
        if let Err(code) = r {
            assert_eq!(code, Code::ResourceExhausted);
            assert!(
                took < Duration::from_millis(500),
                "refused fast, not queued: {took:?}"
            );
            refused += 1;
        }
    }
    assert!(
        refused >= 10,
        "the limit refused the excess: {refused} of 20"
    );
    assert!(
        service
            .scrape_metrics()
            .contains(r#"grpc_rejected_total{reason="concurrency"}"#)
    );
}

#[tokio::test]
async fn logs_are_structured_json_when_asked_and_text_locally() {
    let valkey = Valkey::standalone();
    let json = Service::start(&valkey.url(), &[("RUST_LOG", "info")]);
    let logs = json.logs();
    for line in logs.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(value.get("level").is_some() && value.get("timestamp").is_some());
    }
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_valkey-sessions"));
    cmd.env_clear()
        .env("VALKEY_URL", valkey.url())
        .env("GRPC_LISTEN", "127.0.0.1:0")
        .env("METRICS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    let mut text = Service::spawn(cmd);
    let logs = text.logs();
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{logs}"
    );
    assert!(
        logs.contains("INFO") && logs.contains("grpc listening"),
        "{logs}"
    );
    text.signal("INT");
    assert_eq!(
        text.wait_exit(Duration::from_secs(12)),
        Some(0),
        "SIGINT is a graceful stop too"
    );
}

/// Runs the `health-probe` binary against `addr` and returns whether it reported SERVING.
fn probe(addr: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_health-probe"))
        .args(["--addr", addr, "--timeout", "2s"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn health_probe_binary_exits_zero_only_while_serving() {
    let mut valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let addr = format!("http://{}", service.addr);
    let mut health = HealthClient::new(service.channel().await);
    wait_status(&mut health, ServingStatus::Serving, Duration::from_secs(5)).await;
    let (ok, stderr) = probe(&addr);
    assert!(ok, "probe failed while SERVING: {stderr}");

    valkey.kill();
    wait_status(
        &mut health,
        ServingStatus::NotServing,
        Duration::from_secs(5),
    )
    .await;
    let (ok, stderr) = probe(&addr);
    assert!(!ok, "probe passed while NOT_SERVING");
    assert!(stderr.contains("NOT_SERVING"), "{stderr}");

    drop(service);
    let started = Instant::now();
    let (ok, stderr) = probe(&addr);
    assert!(!ok, "probe passed with nothing listening");
    assert!(started.elapsed() < Duration::from_secs(3), "{stderr}");
}
