//! Durable writes on request (DURABILITY_REPLICA, or `valkey.durability = "replica"`): the
//! service acknowledges a write only once a replica has it (WAIT on the connection that carried
//! it), and says so plainly when none did in time; against a real primary/replica pair.

use std::time::{Duration, Instant};

use session_proto::caller::Client;
use session_proto::{
    Consistency, CreateRequest, DeleteRequest, Durability, GetRequest, PutRequest, RotateRequest,
};
use test_support::{Deployment, Shape, create};
use tonic::Code;
use tonic_types::StatusExt;

fn put(id: &str, value: &str, durability: Durability) -> PutRequest {
    PutRequest {
        id: id.into(),
        set: test_support::attrs(&[("v", value)]),
        durability: durability as i32,
        ..Default::default()
    }
}

async fn strong_version(c: &mut Client, id: &str) -> Option<u64> {
    c.get(GetRequest {
        id: id.into(),
        consistency: Consistency::Strong as i32,
    })
    .await
    .ok()
    .map(|r| r.into_inner().session.unwrap().version)
}

/// Latencies of `n` sequential Puts, sorted.
async fn put_latencies(
    c: &mut Client,
    id: &str,
    n: usize,
    durability: Durability,
) -> Vec<Duration> {
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        c.put(put(id, &i.to_string(), durability)).await.unwrap();
        all.push(started.elapsed());
    }
    all.sort();
    all
}

fn describe(sorted: &[Duration]) -> String {
    let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    format!("mean {mean:?}, p50 {:?}, p99 {:?}", pct(0.5), pct(0.99))
}

fn assert_not_replicated(e: &tonic::Status) {
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let info = e.get_details_error_info().expect("an ErrorInfo detail");
    assert_eq!(info.reason, "NOT_REPLICATED", "{info:?}");
    assert_eq!(
        info.metadata.get("applied").map(String::as_str),
        Some("true")
    );
    assert!(
        e.message().contains("applied on the primary"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_wait_for_a_replica_and_say_so_when_none_acknowledges() {
    let d = Deployment::start(Shape::Serverless);
    let service = d.start_service(&[]);
    let mut c = service.client().await;

    // A healthy replica: acknowledged, after one WAIT per write on the primary.
    let waits = d.primary(0).calls("wait");
    let id = c
        .create(CreateRequest {
            durability: Durability::Replica as i32,
            ..Default::default()
        })
        .await
        .expect("durable Create")
        .into_inner()
        .session
        .unwrap()
        .id;
    c.put(put(&id, "1", Durability::Replica))
        .await
        .expect("durable Put");
    assert_eq!(
        d.primary(0).calls("wait") - waits,
        2,
        "one WAIT per durable write"
    );
    c.put(put(&id, "2", Durability::Primary)).await.unwrap();
    assert_eq!(d.primary(0).calls("wait") - waits, 2, "none for the others");

    // The cost, sequentially on loopback.
    let primary = put_latencies(&mut c, &id, 300, Durability::Primary).await;
    let replica = put_latencies(&mut c, &id, 300, Durability::Replica).await;
    println!(
        "300 sequential Puts: DURABILITY_PRIMARY {}; DURABILITY_REPLICA {}",
        describe(&primary),
        describe(&replica)
    );

    // The replica frozen: no acknowledgement. The write was applied all the same.
    let rotated = create(&mut c, CreateRequest::default()).await.id;
    d.replica(0).pause();
    let before = strong_version(&mut c, &id).await.unwrap();
    let started = Instant::now();
    let e = c
        .put(put(&id, "unreplicated", Durability::Replica))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_not_replicated(&e);
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
        "waited for the durability timeout (200 ms): {waited:?}"
    );
    assert_eq!(
        strong_version(&mut c, &id).await,
        Some(before + 1),
        "the write was applied on the primary"
    );
    let started = Instant::now();
    c.put(put(&id, "fast", Durability::Primary)).await.unwrap();
    let undurable = started.elapsed();
    assert!(
        undurable < Duration::from_millis(100),
        "writes that do not ask are not held up: {undurable:?}"
    );
    let e = c
        .create(CreateRequest {
            durability: Durability::Replica as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_not_replicated(&e);
    let e = c
        .rotate(RotateRequest {
            id: rotated.clone(),
            durability: Durability::Replica as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_not_replicated(&e);
    // A rotation within its slot is one atomic script: applied, the old id is ended; the new
    // id is not handed out (proto: RotateRequest.durability).
    assert_eq!(
        strong_version(&mut c, &rotated).await,
        None,
        "the unacknowledged rotation was applied"
    );
    let e = c
        .delete(DeleteRequest {
            id: id.clone(),
            durability: Durability::Replica as i32,
        })
        .await
        .unwrap_err();
    assert_not_replicated(&e);
    assert_eq!(
        strong_version(&mut c, &id).await,
        None,
        "the delete was applied"
    );

    // The primary frozen while it holds the WAIT (the replica still frozen): its answer never
    // comes, and the call still ends with the durability timeout, not when the primary wakes.
    let id = create(&mut c, CreateRequest::default()).await.id;
    let mut other = service.client().await;
    let (waiting_id, started) = (id.clone(), Instant::now());
    let pending = tokio::spawn(async move {
        let reply = other
            .put(put(&waiting_id, "primary frozen", Durability::Replica))
            .await;
        (reply, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    d.primary(0).pause();
    let (reply, frozen_wait) = pending.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    d.primary(0).resume();
    assert_not_replicated(&reply.unwrap_err());
    assert!(
        frozen_wait < Duration::from_millis(600),
        "a WAIT the primary never answers ends with the durability timeout (200 ms), not when \
         the primary wakes (1.5 s): {frozen_wait:?}"
    );

    // Back: acknowledged again.
    d.replica(0).resume();
    let started = Instant::now();
    loop {
        match c.put(put(&id, "again", Durability::Replica)).await {
            Ok(_) => break,
            Err(e) => {
                assert_not_replicated(&e);
                assert!(started.elapsed() < Duration::from_secs(10), "{e:?}");
            }
        }
    }
    println!(
        "durable Put with the replica frozen: NOT_REPLICATED after {waited:?} (a non-durable \
         Put meanwhile: {undurable:?}); acknowledged again {:?} after the replica resumed",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_configured_durability_applies_to_requests_that_do_not_ask() {
    let d = Deployment::start(Shape::Serverless);
    let service = d.start_service(&[
        ("VALKEY_SESSIONS_VALKEY__DURABILITY", "replica"),
        ("VALKEY_SESSIONS_VALKEY__DURABILITY_TIMEOUT", "100ms"),
    ]);
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    d.replica(0).pause();
    let started = Instant::now();
    let e = c
        .put(put(&id, "x", Durability::Unspecified))
        .await
        .unwrap_err();
    assert_not_replicated(&e);
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    c.put(put(&id, "y", Durability::Primary))
        .await
        .expect("a request may ask for less");
    d.replica(0).resume();
}
