//! Faults that send no RST, for real: each test runs in a network namespace of its own
//! (test_support::netns), where iptables drops the packets of established connections, of a
//! whole node, or of an address a DNS name stopped pointing to. The kernel then tells the
//! service nothing; only its own timeouts can. Each test prints its measured window (the
//! figures of docs/reliability.md): time until every session succeeded again, failed RPCs,
//! and the slowest answer.

use std::time::{Duration, Instant};

use session_proto::{CreateRequest, GetRequest, caller::Client};
use test_support::{
    Deployment, Service, Shape, Valkey, create,
    faults::{HealthWatch, Load, Report},
    netns::NetNs,
    wait_until,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// The command timeout the tests run with (the default): the deadline of every RPC.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// What an RPC may take beyond its deadline: the 50 ms, plus the test client's own
/// round trip and scheduling on a loaded 2-core machine.
const LATE: Duration = Duration::from_millis(150);

/// Silent connections replaced, and RPCs served again, within this of the fault.
const RECOVERY: Duration = Duration::from_secs(3);

async fn sessions(c: &mut Client, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(create(c, CreateRequest::default()).await.id);
    }
    ids
}

/// A standalone Valkey, the service on it (near cache off: every read goes to Valkey, where the
/// faults are), a client and 20 sessions.
async fn standalone_with_sessions() -> (Valkey, Service, Client, Vec<String>) {
    let valkey = Valkey::standalone();
    let service = Service::start(
        &valkey.url(),
        &[("VALKEY_SESSIONS_NEAR_CACHE__ENABLED", "false")],
    );
    let mut c = service.client().await;
    let ids = sessions(&mut c, 20).await;
    (valkey, service, c, ids)
}

/// Runs a load over `ids` around `fault` (which returns when the fault is in place), for `hold`
/// after it; returns the report and the instant the fault began.
async fn under_load(
    c: &Client,
    ids: &[String],
    fault: impl FnOnce(),
    hold: Duration,
) -> (Report, Instant) {
    let load = Load::start(c, ids.to_vec(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = Instant::now();
    fault();
    tokio::time::sleep(hold).await;
    (load.finish().await, at)
}

fn print_window(what: &str, report: &Report, recovery: Duration) {
    println!(
        "{what}: every session served again after {:?}; {} of {} RPCs failed {:?}; slowest RPC {:?}",
        recovery,
        report.failures().len(),
        report.ops.len(),
        report.failure_codes(),
        report.slowest()
    );
}

fn assert_within_deadline(what: &str, report: &Report) {
    assert!(
        report.slowest() <= COMMAND_TIMEOUT + LATE,
        "{what}: an RPC answered after {:?}, beyond its deadline of {COMMAND_TIMEOUT:?}: {}",
        report.slowest(),
        report.summary()
    );
    for code in report.failure_codes() {
        assert_eq!(code, Code::Unavailable, "{what}: {}", report.summary());
    }
}

/// The established connections to a standalone Valkey go silent while new ones would work
/// (a flow cut by a firewall or a NAT): the service notices within the command timeout, opens
/// new connections and serves again within 3 s; no answer comes later than the deadline.
#[test]
fn silent_connections_to_a_standalone_valkey_are_replaced() {
    NetNs::run(|ns| async move {
        let (valkey, service, mut c, ids) = standalone_with_sessions().await;
        let mut silenced = 0;
        let (report, at) = under_load(
            &c,
            &ids,
            || silenced = ns.silence_connections_to(valkey.port),
            Duration::from_secs(5),
        )
        .await;
        assert!(silenced > 0, "no connection to Valkey was found to silence");
        let recovery = report.recovery(at + Duration::from_millis(1));
        print_window("standalone, silent connections", &report, recovery);
        assert!(recovery <= RECOVERY, "{}", report.summary());
        assert_within_deadline("standalone, silent connections", &report);
        assert!(
            service.metric("valkey_reconnects_total", "cause=\"silent\"") >= 1.0,
            "the reconnect is counted as a silent connection:\n{}",
            service.scrape_metrics()
        );
        report.assert_nothing_lost(&mut c).await;
    });
}

/// The near cache's tracking connection goes silent: invalidations may be lost, so the cache
/// is emptied (and stops serving) within 3 s, then serves again once tracking is back.
#[test]
fn a_silent_tracking_connection_empties_the_near_cache() {
    NetNs::run(|ns| async move {
        let valkey = Valkey::standalone();
        let service = Service::start(
            &valkey.url(),
            &[("VALKEY_SESSIONS_NEAR_CACHE__ENABLED", "true")],
        );
        let mut c = service.client().await;
        wait_until("the near cache serves", Duration::from_secs(10), || {
            service.metric("near_cache_enabled", "") == 1.0
        });
        let id = create(&mut c, CreateRequest::default()).await.id;
        let get = GetRequest {
            id: id.clone(),
            ..Default::default()
        };
        c.get(get.clone()).await.unwrap();
        let lost = "reason=\"tracking_connection_lost\"";
        let before = service.metric("near_cache_flushes_total", lost);
        let at = Instant::now();
        assert!(ns.silence_connections_to(valkey.port) > 0);
        let metrics = &service;
        let emptied = loop {
            if metrics.metric("near_cache_flushes_total", lost) > before {
                break at.elapsed();
            }
            assert!(
                at.elapsed() < RECOVERY,
                "the near cache still trusted a silent tracking connection after {RECOVERY:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!("standalone, silent tracking connection: near cache emptied after {emptied:?}");
        // Back once a new tracking connection is up; reads are served meanwhile.
        wait_until(
            "the near cache serves again",
            Duration::from_secs(10),
            || {
                service.metric("near_cache_entries", "") >= 0.0
                    && service.logs().matches("near cache serving").count() >= 2
            },
        );
        c.get(get).await.unwrap();
    });
}

/// Old and new connections dropped alike (a dead path): every RPC answers UNAVAILABLE within
/// its deadline, health turns NOT_SERVING, and once the path heals every session is served
/// again within 3 s.
#[test]
fn a_dead_path_is_unavailable_within_the_deadline_and_heals() {
    NetNs::run(|ns| async move {
        let (valkey, service, c, ids) = standalone_with_sessions().await;
        let health = HealthWatch::start(&service).await;
        health
            .wait_for(ServingStatus::Serving, Duration::from_secs(10))
            .await;
        let load = Load::start(&c, ids.clone(), 4);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cut = Instant::now();
        ns.black_hole("127.0.0.1", valkey.port);
        let unhealthy = health
            .wait_for(ServingStatus::NotServing, Duration::from_secs(10))
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let healed = Instant::now();
        ns.heal();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let report = load.finish().await;
        let recovery = report.recovery(healed + Duration::from_millis(1));
        println!("standalone, dead path: health NOT_SERVING after {unhealthy:?}");
        print_window("standalone, dead path (after it healed)", &report, recovery);
        assert!(
            !report.failures().is_empty(),
            "the dead path failed nothing: {}",
            report.summary()
        );
        assert!(recovery <= RECOVERY, "{}", report.summary());
        assert_within_deadline("standalone, dead path", &report);
        health
            .wait_for(ServingStatus::Serving, Duration::from_secs(5))
            .await;
        assert!(cut.elapsed() > Duration::from_secs(3));
    });
}

/// The name in the URL moves to another node (a node replaced behind its DNS name) and the old
/// address goes silent: the service resolves the name again on reconnect and serves Creates
/// and Gets from the new node within 5 s.
#[test]
fn an_address_change_behind_the_name_is_followed() {
    NetNs::run(|ns| async move {
        let old = Valkey::standalone();
        let new = Valkey::start_at("127.0.0.2", old.port, Vec::new(), None)
            .expect("a second valkey-server on 127.0.0.2");
        ns.set_hosts("127.0.0.1 localhost\n127.0.0.1 valkey.test\n");
        let url = format!("redis://valkey.test:{}", old.port);
        let service = Service::start_in(
            &ns,
            &url,
            &[("VALKEY_SESSIONS_NEAR_CACHE__ENABLED", "false")],
        );
        let mut c = service.client().await;
        create(&mut c, CreateRequest::default()).await;
        assert_eq!(old.cli(&["DBSIZE"]).trim(), "1");

        // A Create and a strong Get of it, in a loop, each recorded.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, mut client) = (stop.clone(), c.clone());
        let loop_task = tokio::spawn(async move {
            let mut ops = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                let ok = match client.create(CreateRequest::default()).await {
                    Ok(r) => {
                        let id = r.into_inner().session.unwrap().id;
                        client
                            .get(GetRequest {
                                id,
                                consistency: session_proto::Consistency::Strong as i32,
                            })
                            .await
                            .is_ok()
                    }
                    Err(_) => false,
                };
                ops.push((start, Instant::now(), ok));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ops
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let moved = Instant::now();
        ns.set_hosts("127.0.0.1 localhost\n127.0.0.2 valkey.test\n");
        ns.black_hole("127.0.0.1", old.port);
        tokio::time::sleep(Duration::from_secs(7)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let ops = loop_task.await.unwrap();
        let after: Vec<_> = ops.iter().filter(|(start, _, _)| *start > moved).collect();
        let followed = after
            .iter()
            .find(|(_, _, ok)| *ok)
            .map(|(_, end, _)| *end - moved)
            .expect("never served after the address changed");
        let failed = after.iter().filter(|(_, _, ok)| !ok).count();
        let slowest = ops.iter().map(|(s, e, _)| *e - *s).max().unwrap();
        println!(
            "standalone, address change: served from the new node after {followed:?}; \
             {failed} of {} Create+Get pairs failed; slowest pair {slowest:?}",
            after.len()
        );
        assert!(followed <= Duration::from_secs(5), "{followed:?}");
        let last = after.iter().rev().take(10);
        assert!(
            last.into_iter().all(|(_, _, ok)| *ok),
            "not steady after the move"
        );
        assert!(
            new.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap() > 0,
            "the new node has the sessions created since"
        );
    });
}

/// A node that answers, but only after twice the command timeout (clients paused): its RPCs
/// are UNAVAILABLE within the deadline, and nothing piles up (the service's connections and
/// commands in flight stay bounded).
#[test]
fn a_slow_node_costs_its_rpcs_the_deadline_and_no_more() {
    NetNs::run(|_ns| async move {
        let (valkey, service, c, ids) = standalone_with_sessions().await;
        let rss = || rss_kib(service.pid());
        let before = rss();
        let (report, at) = under_load(
            &c,
            &ids,
            || slow_for(&valkey, SLOW_FOR),
            SLOW_FOR + Duration::from_secs(2),
        )
        .await;
        let recovery = report.recovery(at + SLOW_FOR);
        print_window(
            "standalone, slow node (answers after 2 s, for 4 s; served again after it)",
            &report,
            recovery,
        );
        let grown = rss().saturating_sub(before);
        println!("standalone, slow node: the service's memory grew by {grown} KiB");
        assert!(grown < 20 * 1024, "memory grew by {grown} KiB");
        assert!(!report.failures().is_empty(), "{}", report.summary());
        assert_within_deadline("standalone, slow node", &report);
        let clients: u64 = valkey
            .cli(&["INFO", "clients"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("connected_clients:")?.parse().ok())
            .unwrap();
        assert!(clients <= 8, "{clients} connections after the slow node");
    });
}

/// A slow node for this long: every command waits up to twice the command timeout.
const SLOW_FOR: Duration = Duration::from_secs(4);

/// Makes `node` slow for `total`: its clients paused 2 s at a time, again and again
/// (`CLIENT PAUSE ALL`; the cluster bus is not paused, so no failover).
fn slow_for(node: &Valkey, total: Duration) {
    let pause = (2 * COMMAND_TIMEOUT).as_millis().to_string();
    let to = node.cli_args();
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < total {
            let answer = test_support::cli(&to, &["CLIENT", "PAUSE", &pause, "ALL"]);
            assert_eq!(answer.trim(), "OK", "CLIENT PAUSE");
            std::thread::sleep(2 * COMMAND_TIMEOUT);
        }
    });
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// On the 3-shard TLS cluster: one primary slow (answers after twice the command timeout):
/// the other shards' RPCs are unaffected, its own are UNAVAILABLE within the deadline.
#[test]
fn a_slow_primary_costs_only_its_own_shard() {
    NetNs::run(|_ns| async move {
        let d = Deployment::cluster_with(&["--cluster-require-full-coverage", "no"]);
        let service = d.start_service(&[]);
        let mut c = service.client().await;
        let ids = sessions(&mut c, 30).await;
        let slow = d.primary(0);
        let on_slow: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| slow.cli(&["EXISTS", &test_support::session_key(id)]).trim() == "1")
            .map(|(i, _)| i)
            .collect();
        let (report, at) = under_load(
            &c,
            &ids,
            || slow_for(slow, SLOW_FOR),
            SLOW_FOR + Duration::from_secs(2),
        )
        .await;
        let others: Vec<usize> = (0..ids.len()).filter(|i| !on_slow.contains(i)).collect();
        let (mine, theirs) = (report.on_sessions(&on_slow), report.on_sessions(&others));
        print_window(
            "cluster, slow primary (its shard; served again after it)",
            &mine,
            mine.recovery(at + SLOW_FOR),
        );
        print_window(
            "cluster, slow primary (other shards)",
            &theirs,
            theirs.recovery(at + SLOW_FOR),
        );
        assert!(
            !on_slow.is_empty() && !mine.failures().is_empty(),
            "{}",
            mine.summary()
        );
        assert!(
            theirs.failures().is_empty(),
            "other shards failed: {}",
            theirs.summary()
        );
        assert_within_deadline("cluster, slow primary", &mine);
    });
}

/// On the 3-shard TLS cluster with replicas: the connections to every primary go silent at
/// once; every shard is served again within 3 s.
#[test]
fn silent_connections_to_every_primary_of_a_cluster_are_replaced() {
    NetNs::run(|ns| async move {
        let d = Deployment::start(Shape::Cluster);
        let service = d.start_service(&[]);
        let mut c = service.client().await;
        let ids = sessions(&mut c, 30).await;
        let ports: Vec<u16> = (0..3).map(|i| d.primary(i).port).collect();
        let (report, at) = under_load(
            &c,
            &ids,
            || {
                let n: usize = ports.iter().map(|p| ns.silence_connections_to(*p)).sum();
                assert!(n >= 3, "{n} connections silenced");
            },
            Duration::from_secs(5),
        )
        .await;
        let recovery = report.recovery(at + Duration::from_millis(1));
        print_window(
            "cluster, silent connections to every primary",
            &report,
            recovery,
        );
        assert!(recovery <= RECOVERY, "{}", report.summary());
        assert_within_deadline("cluster, silent connections", &report);
        report.assert_nothing_lost(&mut c).await;
    });
}

/// On the 3-shard TLS cluster: one primary black-holed whole (clients and cluster bus): the
/// cluster fails it over; the other shards are served throughout and within the deadline,
/// its own sessions as soon as the replica is promoted.
#[test]
fn a_black_holed_primary_is_failed_over_and_the_other_shards_are_unaffected() {
    NetNs::run(|ns| async move {
        // Valkey's default (full coverage required) would refuse every shard until the
        // promotion; tests/slow/faults.rs covers that setting.
        let d = Deployment::cluster_with(&["--cluster-require-full-coverage", "no"]);
        let service = d.start_service(&[]);
        let mut c = service.client().await;
        let ids = sessions(&mut c, 30).await;
        let victim = d.primary(0);
        let bus: u16 = victim
            .arg("--cluster-port")
            .and_then(|p| p.parse().ok())
            .expect("the node's cluster bus port");
        let key_of = |id: &String| test_support::session_key(id);
        let on_victim: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| victim.cli(&["EXISTS", &key_of(id)]).trim() == "1")
            .map(|(i, _)| i)
            .collect();
        let (report, at) = under_load(
            &c,
            &ids,
            || {
                ns.black_hole("127.0.0.1", victim.port);
                ns.black_hole("127.0.0.1", bus);
            },
            Duration::from_secs(12),
        )
        .await;
        let others: Vec<usize> = (0..ids.len()).filter(|i| !on_victim.contains(i)).collect();
        let other_report = report.on_sessions(&others);
        let victim_report = report.on_sessions(&on_victim);
        let recovery = report.recovery(at + Duration::from_millis(1));
        print_window(
            "cluster, primary black-holed (all sessions)",
            &report,
            recovery,
        );
        print_window(
            "cluster, primary black-holed (other shards)",
            &other_report,
            other_report.recovery(at + Duration::from_millis(1)),
        );
        assert!(!on_victim.is_empty(), "no session on the black-holed shard");
        assert!(
            other_report.failures().is_empty(),
            "other shards failed: {}",
            other_report.summary()
        );
        assert_within_deadline("cluster, primary black-holed", &victim_report);
        assert_within_deadline("cluster, primary black-holed", &other_report);
        // Its sessions are served again once the replica took over (node timeout 2 s).
        victim_report.recovery(at + Duration::from_millis(1));
    });
}

/// A caller that vanishes without closing (its host gone, its flow dropped): the server's HTTP/2
/// keepalive PING goes unanswered and the connection is closed, instead of being held until
/// TCP gives up.
#[test]
fn a_vanished_caller_is_closed_by_http2_keepalive() {
    NetNs::run(|ns| async move {
        let valkey = Valkey::standalone();
        let service = Service::start(
            &valkey.url(),
            &[
                ("VALKEY_SESSIONS_GRPC__KEEPALIVE_INTERVAL", "1s"),
                ("VALKEY_SESSIONS_GRPC__KEEPALIVE_TIMEOUT", "1s"),
            ],
        );
        let mut c = service.client().await;
        create(&mut c, CreateRequest::default()).await;
        let open = || service.metric("grpc_connections", "");
        assert_eq!(open(), 1.0, "{}", service.scrape_metrics());
        let at = Instant::now();
        assert_eq!(ns.silence_connections_to(service.addr.port()), 1);
        let closed = loop {
            if open() == 0.0 {
                break at.elapsed();
            }
            assert!(
                at.elapsed() < Duration::from_secs(10),
                "the vanished caller's connection is still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!("a vanished caller: its connection closed after {closed:?} (keepalive 1 s + 1 s)");
        drop(c);
    });
}
