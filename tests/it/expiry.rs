//! Idle expiry kept alive by activity, the absolute cap, and refreshes that never resurrect.

use std::time::Duration;

use session_proto::{CreateRequest, DeleteRequest, GetRequest, PutRequest};
use test_support::{Service, Valkey, create, secs};
use tonic::Code;

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

#[tokio::test]
async fn gets_keep_a_session_alive_without_a_write_per_get() {
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let s = create(
        &mut c,
        CreateRequest {
            idle_timeout: secs(2),
            ..Default::default()
        },
    )
    .await;
    let first_expiry = ms(s.expires_at.as_ref().unwrap());

    // First half of the idle window: reads do not write.
    let touches = valkey.calls("evalsha");
    for _ in 0..5 {
        c.get(GetRequest {
            id: s.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap();
    }
    assert_eq!(
        valkey.calls("evalsha"),
        touches,
        "no refresh while more than half remains"
    );

    // Keep reading every 0.6 s for 4 s: twice the idle timeout.
    let mut refreshed = 0;
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let got = c
            .get(GetRequest {
                id: s.id.clone(),
                consistency: 0,
            })
            .await
            .expect("alive while read");
        if ms(got
            .into_inner()
            .session
            .unwrap()
            .expires_at
            .as_ref()
            .unwrap())
            > first_expiry
        {
            refreshed += 1;
        }
    }
    assert!(refreshed > 0, "reads moved the expiry");
    // A read refreshes only in the second half of the window: with reads every 0.6 s and a
    // 2 s window, every second or third read (3 of 7 when on time). A refresh on every read
    // would be 7.
    let touch_calls = valkey.calls("evalsha") - touches;
    assert!(
        (2..=4).contains(&touch_calls),
        "refreshes are rare: {touch_calls} for 7 reads"
    );
    let key = test_support::session_key(&s.id);
    assert_eq!(
        valkey.cli(&["EXISTS", &key]).trim(),
        "1",
        "the session's key"
    );

    // Then silence longer than the idle timeout: gone.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let e = c
        .get(GetRequest {
            id: s.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        valkey.cli(&["EXISTS", &key]).trim(),
        "0",
        "Valkey expired the key"
    );
}

#[tokio::test]
async fn puts_refresh_the_expiry() {
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let s = create(
        &mut c,
        CreateRequest {
            idle_timeout: secs(1),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let put = c
            .put(PutRequest {
                id: s.id.clone(),
                ..Default::default()
            })
            .await
            .expect("alive while written");
        let p = put.into_inner().session.unwrap();
        assert_eq!(
            ms(p.expires_at.as_ref().unwrap()),
            ms(p.last_accessed_at.as_ref().unwrap()) + 1000
        );
    }
}

#[tokio::test]
async fn the_absolute_cap_beats_activity() {
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let mut c = service.client().await;
    let s = create(
        &mut c,
        CreateRequest {
            idle_timeout: secs(2),
            absolute_timeout: secs(3),
            ..Default::default()
        },
    )
    .await;
    let cap = ms(s.absolute_expires_at.as_ref().unwrap());
    let mut alive = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(4000);
    while tokio::time::Instant::now() < deadline {
        match c
            .get(GetRequest {
                id: s.id.clone(),
                consistency: 0,
            })
            .await
        {
            Ok(r) => {
                let got = r.into_inner().session.unwrap();
                assert!(
                    ms(got.expires_at.as_ref().unwrap()) <= cap,
                    "expiry never passes the cap"
                );
                alive += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::NotFound);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                assert!(
                    now >= cap - 50,
                    "ended at the cap, not before ({} ms early)",
                    cap - now
                );
                break;
            }
        }
        let _ = c
            .put(PutRequest {
                id: s.id.clone(),
                ..Default::default()
            })
            .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(alive > 5);
    let e = c
        .get(GetRequest {
            id: s.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "activity could not keep it past the cap"
    );
}

#[tokio::test]
async fn a_refresh_never_brings_back_a_deleted_session() {
    let valkey = Valkey::standalone();
    let service = Service::start(&valkey.url(), &[]);
    let c = service.client().await;
    // Sessions read in the second half of their idle window (each read schedules a refresh)
    // and deleted at the same moment.
    let mut ids = Vec::new();
    for _ in 0..50 {
        let s = c
            .clone()
            .create(CreateRequest {
                idle_timeout: secs(2),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        ids.push(s.id);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut tasks = Vec::new();
    for id in &ids {
        let (mut a, mut b) = (c.clone(), c.clone());
        let (id1, id2) = (id.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let _ = a
                .get(GetRequest {
                    id: id1,
                    consistency: 0,
                })
                .await;
        }));
        tasks.push(tokio::spawn(async move {
            b.delete(DeleteRequest {
                id: id2,
                ..Default::default()
            })
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        valkey.cli(&["DBSIZE"]).trim(),
        "0",
        "no deleted session came back"
    );
}
