//! A canary, with fred alone (no valkey-sessions code): the slot-migration defect of fred
//! 10.1.0 that this crate (route.rs) works around. It PASSES while fred still loses a key whose
//! slot is migrated under load, and FAILS the day a fred release follows ASK correctly: then
//! this crate's reason to exist is gone (lib.rs), and session-store can use fred's cluster
//! client. `RUST_LOG=fred=debug cargo test -p valkey-router --test fred_follows_ask -- --nocapture`
//! shows fred's own account.
//!
//! The cause, read in fred 10.1.0's source and confirmed by this test's counters:
//! 1. On `ASK`, fred's router (`router/commands.rs`, `process_ask`) sends `ASKING` to the node
//!    named in the redirection, then re-sends the command with `hasher = Custom(slot)` but without
//!    `cluster_node`, so it is routed by the slot table, back to the OLD owner, which answers
//!    `ASK` again (source: 2 ASK errors, target: 1 ASKING and no command).
//! 2. `send_asking_with_policy` gets the command's remaining attempts; at 0 it returns
//!    `Routing: Max attempts reached.` and `process_ask` hands that error to the router loop,
//!    which treats every error as fatal: it disconnects from every node and the client's
//!    connection task ENDS. No reconnect policy runs (it lives inside that task), so every later
//!    command of that client, for any key on any shard, waits in the command channel until its
//!    timeout, until someone calls `connect()` again. With fred's defaults (3 attempts,
//!    5 redirections) the second ASK of one command is enough.
//! 3. Also read in the source (not provoked here): `send_asking_with_policy` reads the reply to
//!    `ASKING` straight off a connection that may have other commands in flight, so under load it
//!    can take another command's reply and give that command the `OK` of `ASKING`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use fred::{
    prelude::*,
    rustls::{ClientConfig, RootCertStore, pki_types::CertificateDer},
    types::config::{TlsConfig, TlsConnector, TlsHostMapping},
};
use rustls_pki_types::pem::PemObject;
use test_support::{Deployment, Shape};

/// fred's defaults, plus TLS for the test cluster and a command timeout so nothing hangs.
fn fred_client(d: &Deployment) -> Client {
    let mut config = Config::from_url(&d.url()).unwrap();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&d.tls.as_ref().unwrap().ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(fred::rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.tls = Some(TlsConfig {
        connector: TlsConnector::from(tls),
        hostnames: TlsHostMapping::None,
    });
    Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(1))
        .build()
        .unwrap()
}

#[tokio::test]
async fn fred_still_cannot_follow_ask_so_the_router_is_needed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let d = Deployment::start(Shape::Cluster);
    let client = fred_client(&d);
    client.init().await.unwrap();
    let key = "vs:{migrating-session}";
    let _: () = client.set(key, 0, None, None, false).await.unwrap();
    let slot = d
        .primary(0)
        .cli(&["CLUSTER", "KEYSLOT", key])
        .trim()
        .to_string();
    let from = (0..3)
        .find(|&i| d.primary(i).cli(&["EXISTS", key]).trim() == "1")
        .unwrap();
    let (src, dst) = (d.primary(from), d.primary((from + 1) % 3));
    let src_id = src.cli(&["CLUSTER", "MYID"]).trim().to_string();
    let dst_id = dst.cli(&["CLUSTER", "MYID"]).trim().to_string();

    // One writer, SET then GET of the key, as a session service would do.
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::<(Instant, Result<(), String>)>::new()));
    let load = {
        let (stop, log, client) = (stop.clone(), log.clone(), client.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let set: Result<(), _> = client.set(key, i, None, None, false).await;
                let get: Result<Option<u64>, _> = client.get(key).await;
                let outcome = set
                    .map_err(|e| format!("SET: {e}"))
                    .and(get.map(|_| ()).map_err(|e| format!("GET: {e}")));
                log.lock().unwrap().push((Instant::now(), outcome));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The steps of `valkey-cli --cluster reshard` for one slot holding one key.
    let t0 = Instant::now();
    assert_eq!(
        dst.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id])
            .trim(),
        "OK"
    );
    assert_eq!(
        src.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id])
            .trim(),
        "OK"
    );
    let port = dst.port.to_string();
    let migrated = src.cli(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key]);
    assert_eq!(migrated.trim(), "OK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        d.primary(i)
            .cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]);
    }
    let moved = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let log = log.lock().unwrap();
    let failures: Vec<_> = log.iter().filter(|(_, r)| r.is_err()).collect();
    for (at, outcome) in failures.iter().take(8) {
        println!(
            "  {:>8.3?} after the migration started: {outcome:?}",
            *at - t0
        );
    }
    let ok_after_start = log.iter().filter(|(at, r)| r.is_ok() && *at > t0).count();
    println!(
        "slot moved {moved:?} after the start; {} of {} SET+GET rounds failed, {ok_after_start} \
         succeeded after the start; source: {} ASK errors, target: {} ASKING, {} SET; \
         fred still reports is_connected: {}",
        failures.len(),
        log.len(),
        src.cli(&["INFO", "errorstats"])
            .lines()
            .find_map(|l| l.strip_prefix("errorstat_ASK:count="))
            .unwrap_or("0"),
        dst.calls("asking"),
        dst.calls("set"),
        client.is_connected(),
    );
    let (at, outcome) = log.last().unwrap();
    assert!(
        outcome.is_err(),
        "fred now follows ASK: 5 s after the slot moved the key is writable through fred alone \
         ({:?} after the start). valkey-router exists only because fred 10.1 could not (its \
         lib.rs): switch session-store to fred's cluster client, keep the faults and chaos tests \
         green, and delete the crate",
        *at - t0
    );
}
