//! Reliability under faults (issue 14) on the 3-shard TLS cluster: losing the node the URL
//! names, readiness during a single-shard failover, failing fast while Valkey is known to be down.

mod support;

use std::time::{Duration, Instant};

use support::{
    Deployment, Shape, create,
    faults::{HealthWatch, Load},
};
use tonic_health::pb::health_check_response::ServingStatus;
use valkey_sessions::{client::Client, proto::CreateRequest};

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
            let put = valkey_sessions::proto::PutRequest {
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
#[tokio::test]
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
    support::wait_until(
        "the replica of the URL node's shard to be promoted",
        Duration::from_secs(30),
        || d.replica(0).cli(&["ROLE"]).starts_with("master"),
    );
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
    assert_eq!(health.current(), Some(ServingStatus::Serving));
    report.assert_nothing_lost(&mut c).await;
}
