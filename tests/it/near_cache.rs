//! The near cache with two service instances on every topology: A caches, B writes.
//! Writes, deletes, rotations, expiry and touch on B are never served stale by A once their
//! invalidation has arrived; a killed tracking connection empties the cache before any further
//! hit; memory stays bounded; a server that refuses tracking turns the cache off.

use std::time::{Duration, Instant};

use session_proto::caller::Client;
use session_proto::{
    Consistency, CreateRequest, DeleteRequest, GetRequest, PutRequest, RotateRequest,
};
use test_support::{Deployment, Service, Shape, Valkey, attrs, create, secs, wait_until};
use tonic::Code;

const ON: (&str, &str) = ("VALKEY_SESSIONS_NEAR_CACHE__ENABLED", "true");

test_support::on_every_topology!(
    hot_gets_are_served_from_memory_without_valkey,
    changes_on_another_instance_are_never_served_stale,
    a_killed_tracking_connection_empties_the_cache,
    the_cache_stays_within_its_bounds,
);

async fn eventual(c: &mut Client, id: &str) -> Result<u64, Code> {
    c.get(GetRequest {
        id: id.into(),
        consistency: Consistency::Eventual as i32,
    })
    .await
    .map(|r| r.into_inner().session.unwrap().version)
    .map_err(|s| s.code())
}

/// Waits until A's near cache serves (every tracking connection is up) and stays so: replicas
/// are discovered after the first connection, and each new one suspends the cache until tracked.
async fn serving(service: &Service, c: &mut Client) {
    serving_once(service, c).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    serving_once(service, c).await;
}

async fn serving_once(service: &Service, c: &mut Client) {
    let probe = create(c, CreateRequest::default()).await.id;
    let start = Instant::now();
    loop {
        let before = service.metric("session_gets_total", "source=\"cache\"");
        eventual(c, &probe).await.unwrap();
        eventual(c, &probe).await.unwrap();
        if service.metric("session_gets_total", "source=\"cache\"") > before {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the near cache never served:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reads(d: &Deployment) -> u64 {
    d.calls("get")
}

async fn hot_gets_are_served_from_memory_without_valkey(shape: Shape) {
    let d = Deployment::start(shape);
    let a = d.start_service(&[ON]);
    let mut c = a.client().await;
    serving(&a, &mut c).await;
    let id = create(
        &mut c,
        CreateRequest {
            attributes: attrs(&[("k", "v")]),
            ..Default::default()
        },
    )
    .await
    .id;
    eventual(&mut c, &id).await.unwrap();
    let before = reads(&d);
    let hits = a.metric("session_gets_total", "source=\"cache\"");
    for _ in 0..200 {
        assert_eq!(eventual(&mut c, &id).await, Ok(1));
    }
    assert_eq!(reads(&d), before, "200 hot Gets, no Valkey read");
    assert!(a.metric("session_gets_total", "source=\"cache\"") - hits >= 199.0);
    // Strong Gets never use it.
    let strong = c
        .get(GetRequest {
            id: id.clone(),
            consistency: Consistency::Strong as i32,
        })
        .await;
    assert!(strong.is_ok());
    assert_eq!(reads(&d), before + 1, "a strong Get goes to the primary");
}

/// Longest a write on another instance may stay unseen by this one's near cache.
const STALE_BOUND: Duration = Duration::from_millis(250);

async fn changes_on_another_instance_are_never_served_stale(shape: Shape) {
    let d = Deployment::start(shape);
    let a = d.start_service(&[ON]);
    let b = d.start_service(&[]);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    serving(&a, &mut ca).await;

    // Writes on B: A sees each new version, and once seen never an older one.
    let id = create(&mut cb, CreateRequest::default()).await.id;
    let mut delays = Vec::new();
    for version in 2..=30u64 {
        eventual(&mut ca, &id).await.unwrap();
        cb.put(PutRequest {
            id: id.clone(),
            set: attrs(&[("n", &version.to_string())]),
            ..Default::default()
        })
        .await
        .unwrap();
        let written = Instant::now();
        loop {
            let seen = eventual(&mut ca, &id).await.unwrap();
            if seen == version {
                delays.push(written.elapsed());
                break;
            }
            assert!(seen < version);
            // Measured: 3-4 ms at the median, 5-8 ms at most (the Put's acknowledgement, the
            // invalidation message, a replica's lag and this loop's own Gets); 250 ms is the
            // margin of a loaded 2-core machine, not a staleness the cache may have.
            assert!(
                written.elapsed() < STALE_BOUND,
                "stale for {STALE_BOUND:?}: v{seen} < v{version}"
            );
        }
        for _ in 0..3 {
            assert_eq!(
                eventual(&mut ca, &id).await,
                Ok(version),
                "never older once seen"
            );
        }
    }
    delays.sort();
    println!(
        "{shape:?}: write on B to A serving it: p50 {:?}, max {:?}",
        delays[delays.len() / 2],
        delays.last().unwrap()
    );
    assert!(
        delays[delays.len() / 2] < Duration::from_millis(50),
        "the median write is served within 50 ms: {delays:?}"
    );

    // Read-your-writes on one instance: A's own Put is visible to A's next Get at once.
    let put = ca
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("own", "1")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    // Strong is the contract for read-your-writes across replicas; the cache must not hide it.
    let mine = ca
        .get(GetRequest {
            id: id.clone(),
            consistency: Consistency::Strong as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(mine.version, put.version);
    let after = eventual(&mut ca, &id).await.unwrap();
    assert!(after >= put.version - 1, "no older than before A's write");

    // Delete and Rotate on B: A answers NOT_FOUND for the old ids, for good.
    for rotate in [false, true] {
        let id = create(&mut cb, CreateRequest::default()).await.id;
        eventual(&mut ca, &id).await.unwrap();
        eventual(&mut ca, &id).await.unwrap();
        if rotate {
            cb.rotate(RotateRequest {
                id: id.clone(),
                expected_version: None,
                principal: None,
                ..Default::default()
            })
            .await
            .unwrap();
        } else {
            cb.delete(DeleteRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let start = Instant::now();
        while eventual(&mut ca, &id).await != Err(Code::NotFound) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "a removed id kept being served"
            );
        }
        for _ in 0..10 {
            assert_eq!(eventual(&mut ca, &id).await, Err(Code::NotFound));
        }
    }

    // Expiry: a cached session is not served past its expiry.
    let short = create(
        &mut cb,
        CreateRequest {
            idle_timeout: secs(2),
            ..Default::default()
        },
    )
    .await
    .id;
    eventual(&mut ca, &short).await.unwrap();
    eventual(&mut ca, &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(eventual(&mut ca, &short).await, Err(Code::NotFound));

    // Touch: a cached hit in the second half of the idle window still refreshes the expiry.
    let touched = create(
        &mut cb,
        CreateRequest {
            idle_timeout: secs(4),
            ..Default::default()
        },
    )
    .await
    .id;
    eventual(&mut ca, &touched).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let touches = d.calls("evalsha");
    eventual(&mut ca, &touched).await.unwrap();
    wait_until("the touch of a cached hit", Duration::from_secs(5), || {
        d.calls("evalsha") > touches
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        eventual(&mut ca, &touched).await.is_ok(),
        "alive thanks to the touch"
    );
}

/// The tracking connections of the service: CLIENT LIST flags contain `t`.
fn tracking_ids(node: &Valkey) -> Vec<String> {
    node.cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.starts_with("flags=") && f.contains('t'))
        })
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect()
}

async fn a_killed_tracking_connection_empties_the_cache(shape: Shape) {
    let d = Deployment::start(shape);
    let a = d.start_service(&[ON]);
    let b = d.start_service(&[]);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    serving(&a, &mut ca).await;
    let id = create(&mut cb, CreateRequest::default()).await.id;
    eventual(&mut ca, &id).await.unwrap();
    assert_eq!(eventual(&mut ca, &id).await, Ok(1));
    let flushes = a.metric("near_cache_flushes_total", "");
    let mut killed = 0;
    let mut before = Vec::new();
    for node in &d.nodes {
        for client in tracking_ids(node) {
            node.cli(&["CLIENT", "KILL", "ID", &client]);
            before.push(client);
            killed += 1;
        }
    }
    assert!(
        killed >= d.primaries.len(),
        "one tracking connection per node at least"
    );
    // Changed while A is not listening.
    cb.put(PutRequest {
        id: id.clone(),
        set: attrs(&[("x", "1")]),
        ..Default::default()
    })
    .await
    .unwrap();
    // A keeps answering Gets while its tracking is down: none from its cache (a replica may
    // still lag the Put by a moment, the cache must not serve at all).
    let reconnected = || {
        d.nodes
            .iter()
            .map(|n| {
                tracking_ids(n)
                    .into_iter()
                    .filter(|c| !before.contains(c))
                    .count()
            })
            .sum::<usize>()
            >= killed
    };
    let hits = a.metric("session_gets_total", "source=\"cache\"");
    let (down_since, mut reads_while_down) = (Instant::now(), 0);
    // At least one: the first follows the Put at once, well before a reconnect (70 ms and more).
    loop {
        let v = eventual(&mut ca, &id).await;
        assert!(matches!(v, Ok(1 | 2)), "{v:?}");
        reads_while_down += 1;
        if reconnected() {
            break;
        }
        assert!(
            down_since.elapsed() < Duration::from_secs(40),
            "tracking never reconnected"
        );
    }
    assert_eq!(
        a.metric("session_gets_total", "source=\"cache\""),
        hits,
        "a Get while tracking was down was served from the cache"
    );
    println!(
        "{reads_while_down} Gets while tracking was down ({:?}), none from the cache",
        down_since.elapsed()
    );
    assert!(
        a.metric("near_cache_flushes_total", "") > flushes,
        "the loss emptied the cache"
    );
    // After the reconnect: never the old version.
    let start = Instant::now();
    loop {
        let v = eventual(&mut ca, &id).await.unwrap();
        if v == 2 {
            break;
        }
        // Only a lagging replica (not the cache) may still answer 1, and not for long.
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "stale after the reconnect"
        );
    }
}

async fn the_cache_stays_within_its_bounds(shape: Shape) {
    let d = Deployment::start(shape);
    let a = d.start_service(&[ON, ("VALKEY_SESSIONS_NEAR_CACHE__MAX_ENTRIES", "100")]);
    let mut c = a.client().await;
    serving(&a, &mut c).await;
    let mut ids = Vec::new();
    for _ in 0..400 {
        ids.push(create(&mut c, CreateRequest::default()).await.id);
    }
    for id in &ids {
        eventual(&mut c, id).await.unwrap();
        eventual(&mut c, id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let entries = a.metric("near_cache_entries", "");
    assert!(entries <= 100.0, "max_entries 100, holds {entries}");
    assert!(entries > 0.0);
}

#[tokio::test]
async fn a_server_refusing_tracking_turns_the_cache_off() {
    let valkey = Valkey::standalone();
    let out = valkey.cli(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">pw",
        "~*",
        "+@all",
        "-client|tracking",
    ]);
    assert_eq!(out.trim(), "OK");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "pw").unwrap();
    let file = file.display().to_string();
    let a = Service::start(
        &valkey.url(),
        &[
            ON,
            ("VALKEY_USERNAME", "app"),
            ("VALKEY_PASSWORD_FILE", &file),
        ],
    );
    wait_until(
        "the cache to turn itself off",
        Duration::from_secs(10),
        || a.logs().contains("near cache off"),
    );
    let mut c = a.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;
    for _ in 0..5 {
        assert_eq!(eventual(&mut c, &id).await, Ok(1));
    }
    assert_eq!(a.metric("session_gets_total", "source=\"cache\""), 0.0);
    assert_eq!(a.metric("near_cache_enabled", ""), 0.0);
}
