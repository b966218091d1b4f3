//! Reliability under faults: losing the node the URL names, readiness during a
//! single-shard failover (3-shard TLS cluster), failing fast while Valkey is known to be down.

use std::time::{Duration, Instant};

use session_proto::caller::Client;
use session_proto::{CreateRequest, DeleteRequest, GetRequest, PutRequest, RotateRequest};
use test_support::{
    Deployment, Shape, create,
    faults::{HealthWatch, Load},
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

async fn sessions(c: &mut Client, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(create(c, CreateRequest::default()).await.id);
    }
    ids
}

/// Waits until every session answers a Put; returns how long that took.
async fn all_writable(c: &mut Client, ids: &[String], limit: Duration) -> Duration {
    let start = Instant::now();
    'again: loop {
        for id in ids {
            let put = session_proto::PutRequest {
                id: id.clone(),
                ..Default::default()
            };
            if let Err(e) = c.put(put).await {
                assert!(
                    start.elapsed() < limit,
                    "not every session writable after {limit:?}: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'again;
            }
        }
        return start.elapsed();
    }
}

/// The URL names one primary; fred used to rediscover the cluster only through it, so its shard
/// stayed unreachable (and health NOT_SERVING) until it came back. Any surviving node must do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_the_url_names_keeps_every_shard_reachable() {
    let mut d = Deployment::start(Shape::Cluster);
    let service = d.start_service(&[]);
    let mut c = service.client().await;
    let ids = sessions(&mut c, 60).await;
    let health = HealthWatch::start(&service).await;
    health
        .wait_for(ServingStatus::Serving, Duration::from_secs(10))
        .await;

    let load = Load::start(&c, ids.clone(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url_node = d.primaries[0];
    assert!(
        d.url().ends_with(&format!(":{}", d.nodes[url_node].port)),
        "the killed node is the one the URL names"
    );
    let killed = Instant::now();
    d.nodes[url_node].kill();
    // Blocking waits leave the runtime's other worker to the load.
    tokio::task::block_in_place(|| {
        test_support::wait_until(
            "the replica of the URL node's shard to be promoted",
            Duration::from_secs(30),
            || d.replica(0).cli(&["ROLE"]).starts_with("master"),
        )
    });
    let promoted = killed.elapsed();
    let writable = all_writable(&mut c, &ids, Duration::from_secs(15)).await + promoted;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish().await;
    let not_serving = health.not_serving_for(killed);
    println!(
        "kill -9 of the URL node: replica promoted after {promoted:?}, every shard writable \
         {writable:?} after the kill; load: {}; health NOT_SERVING for {not_serving:?}: {:?}",
        report.summary(),
        health.history(killed),
    );
    assert!(
        writable < Duration::from_secs(10),
        "every shard writable again soon after the promotion: {writable:?}"
    );
    assert_eq!(
        not_serving,
        Duration::ZERO,
        "health stays SERVING: the other shards are reachable"
    );
    assert_eq!(health.current(), Some(ServingStatus::Serving));
    report.assert_nothing_lost(&mut c).await;
}

/// The index of the primary holding each session.
fn shard_of(d: &Deployment, ids: &[String]) -> Vec<usize> {
    ids.iter()
        .map(|id| {
            let key = test_support::session_key(id);
            (0..d.primaries.len())
                .find(|&i| d.primary(i).cli(&["EXISTS", &key]).trim() == "1")
                .expect("a primary holds the session")
        })
        .collect()
}

/// The value of a gauge in the service's metrics.
fn gauge(service: &test_support::Service, name: &str) -> Option<f64> {
    let metrics = tokio::task::block_in_place(|| service.scrape_metrics());
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// A sharded store is ready while any shard is reachable: during a single-shard failover, two
/// service instances watched through `Watch` stay SERVING, the other shards' sessions are served
/// without a single failure, and the failed shard's requests fail at once instead of timing out.
/// (`cluster-require-full-coverage no`: with Valkey's default the other shards refuse too, below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_shard_failover_keeps_every_instance_serving_and_the_other_shards_served() {
    single_shard_failover(false).await;
}

/// With Valkey's default `cluster-require-full-coverage yes`, every shard answers CLUSTERDOWN
/// while a slot has no primary: from the moment the cluster marks the dead primary FAIL until
/// it has promoted its replica. Valkey refuses, not the service: health stays SERVING, the
/// refusal is all the other shards' sessions see, and it ends with the promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_full_coverage_required_valkey_refuses_every_shard_until_the_promotion() {
    single_shard_failover(true).await;
}

async fn single_shard_failover(full_coverage: bool) {
    let coverage = if full_coverage { "yes" } else { "no" };
    let mut d = Deployment::cluster_with(&["--cluster-require-full-coverage", coverage]);
    let (a, b) = (d.start_service(&[]), d.start_service(&[]));
    let mut ca = a.client().await;
    let cb = b.client().await;
    let ids = sessions(&mut ca, 60).await;
    let shards = tokio::task::block_in_place(|| shard_of(&d, &ids));
    let (health_a, health_b) = (HealthWatch::start(&a).await, HealthWatch::start(&b).await);
    for h in [&health_a, &health_b] {
        h.wait_for(ServingStatus::Serving, Duration::from_secs(10))
            .await;
    }
    let (load_a, load_b) = (
        Load::start(&ca, ids.clone(), 3),
        Load::start(&cb, ids.clone(), 3),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Shard 1: not the node the URL names (that case is the test above).
    let killed = Instant::now();
    d.nodes[d.primaries[1]].kill();
    let noticed = loop {
        if gauge(&a, "valkey_shards_up") == Some(2.0) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the probe never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Known down: the dead shard's requests fail at once, with a retry hint.
    let dead: Vec<usize> = (0..ids.len()).filter(|&i| shards[i] == 1).collect();
    let mut slowest_refusal = Duration::ZERO;
    let mut refused = 0;
    for &i in dead.iter().take(10) {
        let started = Instant::now();
        let put = session_proto::PutRequest {
            id: ids[i].clone(),
            ..Default::default()
        };
        let answer = ca.put(put).await;
        // Every request is timed, refused or not: "at once" is the claim for all of them.
        slowest_refusal = slowest_refusal.max(started.elapsed());
        if let Err(e) = answer
            && e.get_details_retry_info().is_some()
        {
            refused += 1;
        }
    }
    tokio::task::block_in_place(|| {
        test_support::wait_until(
            "the replica of shard 1 to be promoted",
            Duration::from_secs(30),
            || d.replica(1).cli(&["ROLE"]).starts_with("master"),
        )
    });
    let promoted = killed.elapsed();
    let writable = all_writable(&mut ca, &ids, Duration::from_secs(15)).await + promoted;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ra, rb) = (load_a.finish().await, load_b.finish().await);
    let others: Vec<usize> = (0..ids.len()).filter(|&i| shards[i] != 1).collect();
    println!(
        "single-shard failover (cluster-require-full-coverage {coverage}): probe noticed after {noticed:?}, {refused} of {} requests for the \
         dead shard refused at once (slowest {slowest_refusal:?}), promoted after {promoted:?}, \
         every shard writable {writable:?} after the kill; NOT_SERVING: instance A {:?}, B {:?}; \
         other shards: A {}; B {}; dead shard: A {}",
        dead.len().min(10),
        health_a.not_serving_for(killed),
        health_b.not_serving_for(killed),
        ra.on_sessions(&others).summary(),
        rb.on_sessions(&others).summary(),
        ra.on_sessions(&dead).summary(),
    );
    for (name, h) in [("A", &health_a), ("B", &health_b)] {
        assert_eq!(
            h.not_serving_for(killed),
            Duration::ZERO,
            "instance {name} stays SERVING: {:?}",
            h.history(killed)
        );
    }
    for r in [&ra, &rb] {
        let served = r.on_sessions(&others);
        if full_coverage {
            for f in served.failures() {
                assert!(
                    f.message.contains("CLUSTERDOWN"),
                    "only Valkey's own refusal: {}",
                    f.message
                );
            }
            assert!(
                served.longest_outage() < Duration::from_secs(5),
                "{}",
                served.summary()
            );
        } else {
            assert!(
                served.failures().is_empty(),
                "the other shards' sessions are served throughout: {}",
                served.summary()
            );
        }
    }
    assert!(
        refused == dead.len().min(10),
        "every request for the dead shard is refused with a retry hint: {refused}"
    );
    assert!(
        slowest_refusal < Duration::from_millis(50),
        "refused at once: {slowest_refusal:?}"
    );
    assert!(writable < Duration::from_secs(10), "{writable:?}");
    ra.assert_nothing_lost(&mut ca).await;
}

/// While the probe knows Valkey is down, every RPC fails at once (UNAVAILABLE, a RetryInfo
/// detail, a message saying so) instead of waiting for the command timeout, and the service
/// serves again as soon as the probe sees Valkey back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_valkey_is_known_down_every_rpc_fails_at_once_and_recovers_with_the_probe() {
    let mut valkey = test_support::Valkey::standalone();
    let service = test_support::Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    let health = HealthWatch::start(&service).await;
    health
        .wait_for(ServingStatus::Serving, Duration::from_secs(10))
        .await;

    let killed = Instant::now();
    valkey.kill();
    let noticed = health
        .wait_for(ServingStatus::NotServing, Duration::from_secs(5))
        .await;
    let mut slowest = Duration::ZERO;
    let mut count = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let results = [
            c.create(CreateRequest::default()).await.map(|_| ()),
            c.get(GetRequest {
                id: id.clone(),
                consistency: 0,
            })
            .await
            .map(|_| ()),
            c.put(PutRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            c.delete(DeleteRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            c.rotate(RotateRequest {
                id: id.clone(),
                expected_version: None,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ];
        slowest = slowest.max(started.elapsed() / results.len() as u32);
        for r in results {
            let e = r.expect_err("Valkey is down");
            assert_eq!(e.code(), Code::Unavailable, "{e:?}");
            let hint = e.get_details_retry_info().expect("a RetryInfo detail");
            assert!(hint.retry_delay.is_some(), "{hint:?}");
            assert!(e.message().contains("failing fast"), "{}", e.message());
            count += 1;
        }
    }

    valkey.restart();
    let restarted = Instant::now();
    let back = health
        .wait_for(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let first = Instant::now();
    create(&mut c, CreateRequest::default()).await;
    let served_after = first.elapsed();
    println!(
        "valkey down: probe noticed {noticed:?} after the kill; {count} RPCs failed fast, the \
         slowest in {slowest:?}; valkey restarted: SERVING {back:?} later, first RPC answered in \
         {served_after:?} (total {:?} from restart)",
        restarted.elapsed()
    );
    assert!(
        slowest < Duration::from_millis(50),
        "every failure within 50 ms once the probe has noticed: {slowest:?}"
    );
    let _ = killed;
}
