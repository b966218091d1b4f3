//! Replica reads and failover on the TLS cluster topologies, proven from the nodes' own counters.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use session_proto::caller::Client;
use session_proto::{Consistency, CreateRequest, DeleteRequest, GetRequest, PutRequest};
use test_support::{Deployment, Shape, attrs, create, wait_until};
use tonic::Code;

async fn create_n(c: &mut Client, n: usize, principal: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let s = create(
            c,
            CreateRequest {
                attributes: attrs(&[("n", &i.to_string())]),
                principal: principal.into(),
                ..Default::default()
            },
        )
        .await;
        ids.push(s.id);
    }
    ids
}

async fn get(c: &mut Client, id: &str, consistency: Consistency) -> Result<u64, tonic::Status> {
    c.get(GetRequest {
        id: id.into(),
        consistency: consistency as i32,
    })
    .await
    .map(|r| r.into_inner().session.unwrap().version)
}

fn replica_gets(d: &Deployment) -> u64 {
    (0..d.replicas.len())
        .map(|i| d.replica(i).calls("get"))
        .sum()
}

fn primary_gets(d: &Deployment) -> u64 {
    (0..d.primaries.len())
        .map(|i| d.primary(i).calls("get"))
        .sum()
}

async fn eventual_reads_hit_replicas_and_strong_reads_hit_primaries(shape: Shape) {
    let d = Deployment::start(shape);
    let service = d.start_service(&[]);
    let mut c = service.client().await;
    let ids = create_n(&mut c, 100, "").await;
    // Steady state first: replication of the new keys and the service's view of the replicas
    // can lag on a loaded machine; a replica miss is then (correctly) answered by the primary.
    let replicated = || {
        (0..d.replicas.len())
            .map(|i| {
                d.replica(i)
                    .cli(&["DBSIZE"])
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum::<usize>()
            >= ids.len()
    };
    wait_until(
        "the replicas hold every session",
        Duration::from_secs(10),
        replicated,
    );
    let settled = Instant::now();
    loop {
        let before = replica_gets(&d);
        for id in &ids {
            get(&mut c, id, Consistency::Eventual).await.unwrap();
        }
        if replica_gets(&d) - before == ids.len() as u64 {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(10),
            "eventual Gets never all reached replicas"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (r0, p0) = (replica_gets(&d), primary_gets(&d));
    for id in ids.iter().cycle().take(300) {
        get(&mut c, id, Consistency::Eventual).await.unwrap();
    }
    let (r1, p1) = (replica_gets(&d), primary_gets(&d));
    println!(
        "{shape:?}: eventual Gets: replica {} primary {}",
        r1 - r0,
        p1 - p0
    );
    assert_eq!(r1 - r0, 300, "every eventual Get was served by a replica");
    assert_eq!(p1 - p0, 0, "no eventual Get reached a primary");

    for id in ids.iter().cycle().take(300) {
        get(&mut c, id, Consistency::Strong).await.unwrap();
    }
    let (r2, p2) = (replica_gets(&d), primary_gets(&d));
    assert_eq!(r2 - r1, 0, "no strong Get reached a replica");
    assert_eq!(p2 - p1, 300, "every strong Get was served by a primary");
}

#[tokio::test]
async fn serverless_eventual_reads_hit_the_replica_and_strong_reads_the_primary() {
    eventual_reads_hit_replicas_and_strong_reads_hit_primaries(Shape::Serverless).await;
}

#[tokio::test]
async fn host_name_announcing_cluster_with_a_dns_only_certificate_serves_replica_reads() {
    eventual_reads_hit_replicas_and_strong_reads_hit_primaries(Shape::ServerlessHostnames).await;
}

#[tokio::test]
async fn cluster_eventual_reads_hit_replicas_and_strong_reads_primaries() {
    eventual_reads_hit_replicas_and_strong_reads_hit_primaries(Shape::Cluster).await;
}

#[tokio::test]
async fn read_from_primary_never_touches_the_replica() {
    let d = Deployment::start(Shape::Serverless);
    let service = d.start_service(&[("VALKEY_READ_FROM", "primary")]);
    let mut c = service.client().await;
    let ids = create_n(&mut c, 20, "").await;
    let r0 = replica_gets(&d);
    for id in &ids {
        get(&mut c, id, Consistency::Eventual).await.unwrap();
    }
    assert_eq!(replica_gets(&d), r0);
}

#[tokio::test]
async fn reads_right_after_writes_are_never_not_found_even_when_the_replica_lags() {
    let d = Deployment::start(Shape::Serverless);
    let service = d.start_service(&[]);
    let c = service.client().await;
    // Hold back replication on the replica: fresh writes are not there yet.
    assert_eq!(
        d.replica(0)
            .cli(&["CLIENT", "PAUSE", "3000", "WRITE"])
            .trim(),
        "OK"
    );
    let p0 = primary_gets(&d);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let id = create(&mut c, CreateRequest::default()).await.id;
            get(&mut c, &id, Consistency::Eventual)
                .await
                .expect("read-your-writes")
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
    let fallbacks = primary_gets(&d) - p0;
    println!("lagging replica: {fallbacks} of 100 Gets fell back to the primary");
    assert!(
        fallbacks > 0,
        "the replica really lagged, so the fallback was exercised"
    );
    let metrics = service.scrape_metrics();
    assert!(
        metrics.contains("source=\"fallback\""),
        "fallbacks are counted:\n{metrics}"
    );
}

#[tokio::test]
async fn a_dead_replica_costs_a_fallback_and_reads_return_when_it_is_back() {
    let mut d = Deployment::start(Shape::Serverless);
    let service = d.start_service(&[]);
    let mut c = service.client().await;
    let ids = create_n(&mut c, 20, "").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let replica = d.replicas[0];
    d.nodes[replica].kill();
    let mut slowest = Duration::ZERO;
    for id in ids.iter().cycle().take(100) {
        let start = Instant::now();
        get(&mut c, id, Consistency::Eventual)
            .await
            .expect("Gets keep working through the primary");
        slowest = slowest.max(start.elapsed());
    }
    println!("replica down: 100 of 100 Gets answered, slowest {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a dead replica costs a fallback, not a hang"
    );
    // Writes are unaffected.
    c.put(PutRequest {
        id: ids[0].clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    d.nodes[replica].restart();
    d.wait_for_replicas();
    let back = Instant::now();
    let mut returned = false;
    while back.elapsed() < Duration::from_secs(20) {
        let before = d.replica(0).calls("get");
        for id in ids.iter().take(10) {
            get(&mut c, id, Consistency::Eventual).await.unwrap();
        }
        if d.replica(0).calls("get") > before {
            returned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "replica back: reads returned to it after {:?}",
        back.elapsed()
    );
    assert!(
        returned,
        "reads returned to the restarted replica without a service restart"
    );
}

#[tokio::test]
async fn three_shards_serve_hundreds_of_sessions_with_principals_without_crossslot() {
    let d = Deployment::start(Shape::Cluster);
    let service = d.start_service(&[]);
    let c = service.client().await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            // A principal's sessions share one slot (its tag), and which shard that is depends on
            // the deployment's secret: 25 principals per task spread over the three shards.
            let principal = |i: usize| format!("user-{t}-{}@example.com", i / 3);
            let mut ids = Vec::with_capacity(75);
            for p in 0..25 {
                ids.extend(create_n(&mut c, 3, &principal(3 * p)).await);
            }
            for (i, id) in ids.iter().enumerate() {
                let s = c
                    .put(PutRequest {
                        id: id.clone(),
                        set: attrs(&[("step", "2")]),
                        remove: vec!["n".into()],
                        expected_version: Some(1),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .session
                    .unwrap();
                assert_eq!(s.principal, principal(i));
                if i % 2 == 0 {
                    assert_eq!(get(&mut c, id, Consistency::Strong).await.unwrap(), 2);
                } else {
                    // An eventual read may come from a replica a moment behind the Put: it
                    // must converge, not be read-your-writes.
                    let started = Instant::now();
                    while get(&mut c, id, Consistency::Eventual).await.unwrap() != 2 {
                        assert!(
                            started.elapsed() < Duration::from_secs(2),
                            "replica converges"
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            for id in ids.iter().step_by(2) {
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
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Session keys only: each principal also has its index (`vs:{tag}:i`) and the deployment
    // its secret (`vs:_secret`).
    let sessions = d.keys().iter().filter(|(_, k)| k.contains("}.")).count();
    assert_eq!(
        sessions,
        4 * 75 - 4 * 38,
        "deleted sessions are gone, the rest are there"
    );
    for i in 0..3 {
        let keys: u64 = d.primary(i).cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(keys > 20, "primary {i} holds sessions: {keys}");
    }
    for node in &d.nodes {
        let errors = node.cli(&["INFO", "errorstats"]);
        assert!(
            !errors.contains("CROSSSLOT"),
            "port {}: {errors}",
            node.port
        );
    }
}

/// Runs Puts and Gets over `ids` until stopped; records when errors happened.
struct Load {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<(Instant, Code)>>>,
    ok: Arc<Mutex<u64>>,
    slowest: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(c: &Client, ids: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let ok = Arc::new(Mutex::new(0));
        let slowest = Arc::new(Mutex::new(Duration::ZERO));
        let (s, e, o, w, mut c) = (
            stop.clone(),
            errors.clone(),
            ok.clone(),
            slowest.clone(),
            c.clone(),
        );
        let task = tokio::spawn(async move {
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let id = ids[i % ids.len()].clone();
                i += 1;
                let started = Instant::now();
                let put = c
                    .put(PutRequest {
                        id: id.clone(),
                        set: attrs(&[("i", &i.to_string())]),
                        ..Default::default()
                    })
                    .await;
                let got = get(&mut c, &id, Consistency::Eventual).await;
                let took = started.elapsed();
                {
                    let mut worst = w.lock().unwrap();
                    *worst = (*worst).max(took);
                }
                for (op, r) in [("put", put.map(|_| ())), ("get", got.map(|_| ()))] {
                    match r {
                        Ok(()) => *o.lock().unwrap() += 1,
                        Err(status) => {
                            eprintln!("load error on {op}: {}", status.message());
                            e.lock().unwrap().push((Instant::now(), status.code()))
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Load {
            stop,
            errors,
            ok,
            slowest,
            task,
        }
    }

    /// Stops and returns (error window, error count, codes seen, slowest Put+Get pair).
    async fn finish(self) -> (Duration, usize, Vec<Code>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let errors = self.errors.lock().unwrap();
        let window = match (errors.first(), errors.last()) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => Duration::ZERO,
        };
        let mut codes: Vec<Code> = errors.iter().map(|e| e.1).collect();
        codes.dedup();
        let slowest = *self.slowest.lock().unwrap();
        (window, errors.len(), codes, slowest)
    }
}

async fn all_ok(c: &mut Client, ids: &[String]) -> bool {
    for (i, id) in ids.iter().enumerate() {
        let put = PutRequest {
            id: id.clone(),
            ..Default::default()
        };
        if let Err(e) = c.put(put).await {
            eprintln!("session {i} not writable: {}", e.message());
            return false;
        }
    }
    true
}

// Multi-threaded: the blocking waits below must not stop the load that measures the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_by_cluster_failover_and_by_killing_a_primary_needs_no_restart() {
    let mut d = Deployment::start(Shape::Cluster);
    let service = d.start_service(&[]);
    let mut c = service.client().await;
    let ids = create_n(&mut c, 60, "").await;

    // 1. A planned failover: the replica of shard 0 takes over.
    let load = Load::start(&c, ids.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.replica(0).cli(&["CLUSTER", "FAILOVER"]).trim(), "OK");
    tokio::task::block_in_place(|| {
        wait_until(
            "replica of shard 0 to become primary",
            Duration::from_secs(15),
            || d.replica(0).cli(&["ROLE"]).starts_with("master"),
        )
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ok_before = *load.ok.lock().unwrap();
    let (window, count, codes, slowest) = load.finish().await;
    println!(
        "CLUSTER FAILOVER: error window {window:?}, {count} errors {codes:?}, {ok_before} ops ok, \
         slowest Put+Get {slowest:?}"
    );
    assert!(
        window < Duration::from_secs(5),
        "planned failover window {window:?}"
    );
    assert!(
        all_ok(&mut c, &ids).await,
        "every session writable after a planned failover"
    );

    // 2. A hard kill of the primary of shard 1: its replica is promoted by the cluster. What
    // every session holds now (written a while ago, so replicated) must survive it.
    let mut before = Vec::with_capacity(ids.len());
    for id in &ids {
        before.push(
            c.get(GetRequest {
                id: id.clone(),
                consistency: Consistency::Strong as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap(),
        );
    }
    let load = Load::start(&c, ids.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = d.primaries[1];
    let killed_at = Instant::now();
    d.nodes[killed].kill();
    tokio::task::block_in_place(|| {
        wait_until(
            "replica of shard 1 to be promoted",
            Duration::from_secs(30),
            || d.replica(1).cli(&["ROLE"]).starts_with("master"),
        )
    });
    let promoted = killed_at.elapsed();
    let recovered = Instant::now();
    let mut c2 = c.clone();
    while !all_ok(&mut c2, &ids).await {
        assert!(
            recovered.elapsed() < Duration::from_secs(20),
            "service did not recover after promotion"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (window, count, codes, slowest) = load.finish().await;
    println!(
        "kill -9 primary: promoted after {promoted:?}, all sessions writable after {recovered_after:?}, \
         error window {window:?}, {count} errors {codes:?}, slowest Put+Get {slowest:?}"
    );
    for code in codes {
        assert!(
            matches!(code, Code::Unavailable | Code::DeadlineExceeded),
            "only retryable errors: {code:?}"
        );
    }
    // Sessions written before the kill were replicated: each is still there, at the version it
    // had or a later one, with the attribute it was created with.
    for (i, (id, was)) in ids.iter().zip(&before).enumerate() {
        let now = c
            .get(GetRequest {
                id: id.clone(),
                consistency: Consistency::Strong as i32,
            })
            .await
            .unwrap_or_else(|e| panic!("session {i} lost by the failover: {e:?}"))
            .into_inner()
            .session
            .unwrap();
        assert!(
            now.version >= was.version,
            "session {i}: version {} before the kill, {} after",
            was.version,
            now.version
        );
        assert_eq!(
            now.attributes.get("n"),
            was.attributes.get("n"),
            "session {i}: its attribute survived"
        );
    }
}

#[tokio::test]
async fn a_cluster_whose_certificate_is_not_trusted_is_refused() {
    let d = Deployment::start(Shape::Serverless);
    let other = tempfile::tempdir().unwrap();
    let foreign = test_support::certs::generate(other.path(), true);
    let ca = foreign.ca.display().to_string();
    let service = d.start_service(&[("VALKEY_CA_FILE", &ca)]);
    let mut c = service.client().await;
    let e = c.create(CreateRequest::default()).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unavailable,
        "no session is written over an unverified connection: {e:?}"
    );
    assert_eq!(d.dbsize(), 0);
}

/// Resharding one slot under load, with the steps `valkey-cli --cluster reshard` takes. While the
/// slot is migrating and the session has already moved, the old owner answers ASK and the
/// service must follow it to the new owner (fred 10.1.0 cannot: tests/fred_slot_migration.rs);
/// once the slot has moved, MOVED. No session may be unavailable for a second, nothing is lost.
/// Multi-threaded, so the (blocking) valkey-cli calls do not pause the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_slot_under_load_serves_through_ask_and_moved_and_loses_nothing() {
    let d = Deployment::start(Shape::Cluster);
    let service = d.start_service(&[]);
    let mut c = service.client().await;
    let ids = create_n(&mut c, 30, "").await;

    // Move the slot of the first session from its primary to another one.
    let key = test_support::session_key(&ids[0]);
    let slot = d
        .primary(0)
        .cli(&["CLUSTER", "KEYSLOT", &key])
        .trim()
        .to_string();
    let from = (0..3)
        .find(|&i| d.primary(i).cli(&["EXISTS", &key]).trim() == "1")
        .expect("some primary holds the key");
    let to = (from + 1) % 3;
    let (src, dst) = (d.primary(from), d.primary(to));
    let src_id = src.cli(&["CLUSTER", "MYID"]).trim().to_string();
    let dst_id = dst.cli(&["CLUSTER", "MYID"]).trim().to_string();

    let load = test_support::faults::Load::start(&c, ids.clone(), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let setslot = |node: &test_support::Valkey, args: &[&str]| {
        let mut all = vec!["CLUSTER", "SETSLOT", &slot];
        all.extend_from_slice(args);
        assert_eq!(node.cli(&all).trim(), "OK", "{all:?}");
    };
    setslot(dst, &["IMPORTING", &src_id]);
    setslot(src, &["MIGRATING", &dst_id]);
    // Migrating, the key still on the old owner: it answers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = dst.port.to_string();
    let migrated = src.cli(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", &key]);
    assert_eq!(migrated.trim(), "OK", "MIGRATE: {migrated}");
    let asking_from = Instant::now();
    // The key is on the new owner, the slot still on the old one: every command is an ASK.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asking_until = Instant::now();
    for i in 0..3 {
        setslot(d.primary(i), &["NODE", &dst_id]);
    }
    let moved = started.elapsed();
    // The slot has moved: MOVED until the slot table is re-read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = load.finish().await;
    let served_through_ask = report
        .ops
        .iter()
        .filter(|o| o.session == 0 && o.code == Code::Ok)
        .filter(|o| o.start >= asking_from && o.end <= asking_until)
        .count();
    println!(
        "slot migration: slot moved {moved:?} after the start; {served_through_ask} RPCs on the \
         migrated session served through ASK in 1.5 s; {}",
        report.summary()
    );
    assert!(
        served_through_ask >= 3,
        "the migrated session is served while its slot is migrating: {served_through_ask} RPCs"
    );
    assert!(
        report.longest_outage() < Duration::from_secs(1)
            && report.longest_outage_of(&["put"]) < Duration::from_secs(1),
        "no session unavailable (nor unwritable) for a second: {}",
        report.summary()
    );
    for code in report.failure_codes() {
        assert_eq!(
            code,
            Code::Unavailable,
            "only retryable errors: {}",
            report.summary()
        );
    }
    report.assert_nothing_lost(&mut c).await;
    assert_eq!(
        dst.cli(&["EXISTS", &key]).trim(),
        "1",
        "the session now lives on the new shard"
    );
    let metrics = service.scrape_metrics();
    // MOVED is counted only when a command reaches the old owner before the periodic topology
    // refresh (every 3 s) has seen the new one: usual, not certain.
    assert!(
        metrics.contains("valkey_redirects_total{kind=\"ask\"}"),
        "redirections are counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("redirects"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
