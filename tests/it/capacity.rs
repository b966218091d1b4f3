//! Valkey at its memory limit, on a real server with a small `maxmemory`: a write refused for
//! memory answers RESOURCE_EXHAUSTED with the reason VALKEY_OUT_OF_MEMORY and is counted, reads
//! keep working and nothing is lost; evictions show in the exported metrics within a probe
//! interval; and what a session costs in Valkey's memory (the figures of docs/capacity.md).

use std::{collections::HashMap, time::Duration};

use session_proto::{
    CreateRequest, ErrorReason, GetRequest, PutRequest, RotateRequest, caller::Client,
};
use test_support::{Service, Valkey, attrs, create, wait_until};
use tonic::Code;
use tonic_types::StatusExt;

/// One session of this size: 10 KB, as in the scenario of docs/capacity.md.
fn ten_kb() -> HashMap<String, Vec<u8>> {
    HashMap::from([("blob".to_string(), vec![b'x'; 10_000])])
}

fn small_valkey(policy: &str) -> Valkey {
    Valkey::start_with(
        ["--maxmemory", "8mb", "--maxmemory-policy", policy]
            .map(String::from)
            .to_vec(),
        None,
    )
}

fn info(valkey: &Valkey, field: &str) -> u64 {
    valkey
        .cli(&["INFO", "all"])
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:"))?.parse().ok())
        .unwrap_or_else(|| panic!("INFO has no {field}"))
}

fn assert_out_of_memory(what: &str, status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    let reason = status.get_details_error_info().map(|i| i.reason);
    assert_eq!(
        reason.as_deref(),
        Some(ErrorReason::ValkeyOutOfMemory.reason()),
        "{what}: {status:?}"
    );
    assert!(
        status.message().contains("out of memory") && status.message().contains("capacity"),
        "{what}: a message an operator can act on: {}",
        status.message()
    );
}

/// 2,000 Creates of 10 KB into 8 MB: once full, every write is RESOURCE_EXHAUSTED with the
/// reason, never INTERNAL; reads and the sessions already stored are unharmed.
#[tokio::test]
async fn noeviction_refuses_writes_with_resource_exhausted_and_loses_nothing() {
    let valkey = small_valkey("noeviction");
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let first = create(&mut c, CreateRequest::default()).await.id;
    let (mut created, mut refused) = (0, 0);
    for _ in 0..2000 {
        let request = CreateRequest {
            attributes: ten_kb(),
            ..Default::default()
        };
        match c.create(request).await {
            Ok(_) => created += 1,
            Err(status) => {
                assert_out_of_memory("Create", &status);
                refused += 1;
            }
        }
    }
    println!("noeviction, 8 MB, 2,000 Creates of 10 KB: {created} created, {refused} refused");
    assert!(
        refused > 0 && created > 0,
        "{created} created, {refused} refused"
    );

    let put = c
        .put(PutRequest {
            id: first.clone(),
            set: ten_kb(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_out_of_memory("Put", &put);
    let rotate = c
        .rotate(RotateRequest {
            id: first.clone(),
            principal: Some("ada".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_out_of_memory("Rotate (login)", &rotate);

    // Reads keep working, and the refused Put and login changed nothing.
    let read = c
        .get(GetRequest {
            id: first.clone(),
            consistency: 0,
        })
        .await
        .expect("a Get of a stored session works while Valkey is full")
        .into_inner()
        .session
        .expect("the session is there");
    assert_eq!(read.version, 1, "the refused Put wrote nothing");
    assert!(read.principal.is_empty(), "the refused login wrote nothing");

    let counted = service.metric("valkey_command_errors_total", "kind=\"out_of_memory\"");
    assert!(
        counted >= (refused + 2) as f64,
        "every refusal is counted: {counted} for {refused} Creates, a Put and a Rotate"
    );
    assert_eq!(
        service.metric("grpc_requests_total", "code=\"INTERNAL\""),
        0.0,
        "no INTERNAL answer"
    );
}

/// The same load under `volatile-lru` (ElastiCache's default, and what Serverless does at its
/// limit): the writes succeed, old sessions are evicted, and the exported eviction counter says
/// so within one probe interval.
#[tokio::test]
async fn evictions_are_exported_within_a_probe_interval() {
    let valkey = small_valkey("volatile-lru");
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let first = create(&mut c, CreateRequest::default()).await.id;
    for _ in 0..2000 {
        let request = CreateRequest {
            attributes: ten_kb(),
            ..Default::default()
        };
        c.create(request).await.expect("evicting, Valkey accepts");
    }
    let evicted = info(&valkey, "evicted_keys");
    println!("volatile-lru, 8 MB, 2,000 Creates of 10 KB: all created, {evicted} keys evicted");
    assert!(evicted > 0, "the load evicted keys");
    // The probe runs every second (valkey.health_interval): one interval, plus the probe's own
    // PING and INFO within the command timeout (1 s) on a loaded machine.
    wait_until(
        "the eviction counter to reach what the node reported",
        Duration::from_secs(2),
        || service.metric("valkey_evicted_keys_total", "node=") >= evicted as f64,
    );
    assert!(service.metric("valkey_memory_max_bytes", "node=") == (8 << 20) as f64);
    assert!(service.metric("valkey_memory_used_bytes", "node=") > 0.0);
    assert_eq!(
        service.metric("valkey_maxmemory_policy", "policy=\"volatile-lru\""),
        1.0
    );
    let put = c
        .put(PutRequest {
            id: first,
            set: attrs(&[("a", "b")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        put.code(),
        Code::NotFound,
        "the first session was evicted: its user is logged out, which the metric now shows"
    );
    // An operator changes the policy: one series per node is 1, the old one turns 0.
    valkey.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    wait_until("the new policy is exported", Duration::from_secs(5), || {
        service.metric("valkey_maxmemory_policy", "policy=\"noeviction\"") == 1.0
    });
    assert_eq!(
        service.metric("valkey_maxmemory_policy", "policy=\"volatile-lru\""),
        0.0,
        "the policy the node no longer has is not reported as current"
    );
}

/// Valkey memory per session by shape (`used_memory` before and after 2,000 sessions): the
/// figures of docs/capacity.md (`cargo test --test it -- capacity::bytes --nocapture`). Bounds
/// the overhead so the guide stays true.
#[tokio::test]
async fn bytes_per_session_by_shape() {
    let shapes: [(&str, usize, usize, &str); 5] = [
        ("1 x 100 B", 1, 100, ""),
        ("5 x 100 B", 5, 100, ""),
        ("5 x 100 B, signed in", 5, 100, "user"),
        ("5 x 1 KiB", 5, 1024, ""),
        ("1 x 10 KiB", 1, 10240, ""),
    ];
    println!("| session | payload bytes | Valkey bytes per session | overhead |");
    for (name, count, size, principal) in shapes {
        let valkey = Valkey::standalone();
        let service = Service::start(&valkey.url(), &[]);
        let mut c: Client = service.client().await;
        let attributes: HashMap<String, Vec<u8>> = (0..count)
            .map(|i| (format!("attr{i}"), vec![b'v'; size]))
            .collect();
        let payload: usize = attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        // One first session so that the deployment's secret and scripts are already in memory.
        create(&mut c, CreateRequest::default()).await;
        let before = info(&valkey, "used_memory");
        let n = 2000;
        for i in 0..n {
            let principal = if principal.is_empty() {
                String::new()
            } else {
                format!("{principal}-{i}")
            };
            let request = CreateRequest {
                attributes: attributes.clone(),
                principal,
                ..Default::default()
            };
            create(&mut c, request).await;
        }
        let per = (info(&valkey, "used_memory") - before) as usize / n;
        let overhead = per as i64 - payload as i64;
        println!("| {name} | {payload} | {per} | {overhead} |");
        assert!(
            per >= payload,
            "{name}: {per} bytes hold a {payload}-byte payload"
        );
        // Key, TTL and allocator bookkeeping, plus jemalloc's size classes (up to a quarter of a
        // large value); a principal's index entry on top for a signed-in session.
        let bound = 300 + payload as i64 / 4 + if principal.is_empty() { 0 } else { 300 };
        assert!(
            overhead < bound,
            "{name}: {overhead} bytes of overhead per session, over the {bound} docs/capacity.md allows"
        );
    }
}
