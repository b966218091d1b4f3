//! The deployment secret (principal tags, page tokens): configured and shared, rotated without
//! losing anyone's sessions from ListSessions or RevokeSessions, put back when Valkey loses it,
//! and instances that disagree about it fail closed and say so (security finding 3).

use std::time::Duration;

use session_core::SessionId;
use session_proto::caller::Client;
use session_proto::{
    CreateRequest, GetRequest, ListSessionsRequest, RevokeSessionRequest, RevokeSessionsRequest,
    SessionInfo,
};
use test_support::{Deployment, Service, Shape, attrs, create, wait_until};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// Two deployment secrets, as `openssl rand -base64 32` prints them.
const OLD: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NEW: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const OTHER: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

/// Instances compare secrets this often (an instance that stopped counts for 2.6 s).
const INTERVAL: &str = "200ms";

fn instance(d: &Deployment, keys: Option<&str>) -> Service {
    let mut env = vec![("VALKEY_SESSIONS_SECRET__AGREEMENT_INTERVAL", INTERVAL)];
    if let Some(keys) = keys {
        env.push(("VALKEY_SESSIONS_SECRET__KEYS", keys));
    }
    d.start_service(&env)
}

async fn login(c: &mut Client, principal: &str, device: &str) -> String {
    create(
        c,
        CreateRequest {
            principal: principal.into(),
            attributes: attrs(&[("device", device)]),
            ..Default::default()
        },
    )
    .await
    .id
}

fn tag(id: &str) -> String {
    format!("{:?}", SessionId::parse(id).unwrap().tag().unwrap())
}

/// Every page of a principal's sessions, two at a time (pages cross the indexes' boundaries).
async fn list_all(c: &mut Client, principal: &str) -> Vec<SessionInfo> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_sessions(ListSessionsRequest {
                principal: principal.into(),
                page_size: 2,
                page_token: token.clone(),
                display_attributes: vec!["device".into()],
            })
            .await
            .expect("ListSessions")
            .into_inner();
        all.extend(page.sessions);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn devices(listed: &[SessionInfo]) -> Vec<String> {
    listed
        .iter()
        .map(|s| String::from_utf8_lossy(&s.display_attributes["device"]).into_owned())
        .collect()
}

async fn health(service: &Service) -> ServingStatus {
    let mut health = HealthClient::new(service.channel().await);
    let r = health
        .check(HealthCheckRequest {
            service: "session.v1.SessionService".into(),
        })
        .await
        .unwrap();
    ServingStatus::try_from(r.into_inner().status).unwrap()
}

async fn found(c: &mut Client, id: &str) -> bool {
    match c
        .get(GetRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
    {
        Ok(_) => true,
        Err(e) if e.code() == Code::NotFound => false,
        Err(e) => panic!("Get: {e:?}"),
    }
}

fn writes_with(service: &Service, times: usize) -> bool {
    service.logs().matches("deployment secret chosen").count() >= times
}

#[tokio::test]
async fn a_rotation_keeps_every_session_listed_and_revocable_and_a_stranger_fails_closed() {
    let d = Deployment::start(Shape::Standalone);
    let old = instance(&d, Some(OLD));
    let mut c_old = old.client().await;
    let mut ids = Vec::new();
    for device in ["o1", "o2", "o3"] {
        ids.push(login(&mut c_old, "ada", device).await);
    }
    let old_tag = tag(&ids[0]);

    // The rotation in one step: new instances list the new secret first, the old one second.
    // While an instance without the new secret runs, they write with the old one: no split.
    let new = instance(&d, Some(&format!("{NEW}\n{OLD}")));
    let mut c_new = new.client().await;
    for device in ["n1", "n2"] {
        let id = login(&mut c_new, "ada", device).await;
        assert_eq!(
            tag(&id),
            old_tag,
            "the old secret writes while an old instance runs"
        );
        ids.push(id);
    }
    assert_eq!(
        list_all(&mut c_old, "ada").await.len(),
        5,
        "the old instance lists what the new one created"
    );

    // The old instance gone: the new secret writes; the old sessions stay listed.
    drop(c_old);
    drop(old);
    wait_until("the new secret to write", Duration::from_secs(10), || {
        writes_with(&new, 2)
    });
    for device in ["b1", "b2"] {
        let id = login(&mut c_new, "ada", device).await;
        assert_ne!(tag(&id), old_tag, "the new secret tags new sessions");
        ids.push(id);
    }
    let listed = list_all(&mut c_new, "ada").await;
    let mut handles: Vec<&str> = listed.iter().map(|s| s.handle.as_str()).collect();
    handles.sort();
    handles.dedup();
    assert_eq!(
        handles.len(),
        7,
        "every session once: {:?}",
        devices(&listed)
    );
    assert_eq!(
        &devices(&listed)[..2],
        ["b2", "b1"],
        "newest activity first across both indexes"
    );
    let last = |s: &SessionInfo| s.last_accessed_at.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(
        listed.windows(2).all(|w| last(&w[0]) >= last(&w[1])),
        "one order over both indexes: {:?}",
        devices(&listed)
    );

    // A session of the old secret revoked by handle, then all of them.
    let o1 = listed
        .iter()
        .find(|s| s.display_attributes["device"] == b"o1")
        .unwrap();
    c_new
        .revoke_session(RevokeSessionRequest {
            principal: "ada".into(),
            handle: o1.handle.clone(),
        })
        .await
        .expect("a handle of the old secret's index");
    assert!(!found(&mut c_new, &ids[0]).await);
    let revoked = c_new
        .revoke_sessions(RevokeSessionsRequest {
            principal: "ada".into(),
            except_id: None,
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked, 6, "log out everywhere reaches both indexes");
    for id in &ids {
        assert!(!found(&mut c_new, id).await, "revoked");
    }

    // An instance with only the old secret (the fleet now writes the new one), and one with a
    // secret nobody knows: both refuse what needs the secret and say so; the fleet is untouched.
    for keys in [OLD, OTHER] {
        let stranger = instance(&d, Some(keys));
        let mut c = stranger.client().await;
        let e = c
            .list_sessions(ListSessionsRequest {
                principal: "ada".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert_eq!(
            e.get_details_error_info().map(|i| i.reason),
            Some("DEPLOYMENT_SECRET_DISAGREEMENT".into()),
            "{e:?}"
        );
        assert!(e.message().contains("another instance"), "{}", e.message());
        let e = c
            .create(CreateRequest {
                principal: "bob".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::Unavailable,
            "a login would split bob: {e:?}"
        );
        let stranger_health = async {
            for _ in 0..50 {
                if health(&stranger).await == ServingStatus::NotServing {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(stranger_health.await, "NOT_SERVING while it disagrees");
        assert_eq!(stranger.metric("session_secret_agreement", ""), 0.0);
        assert!(stranger.logs().contains("deployment secrets disagree"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(health(&new).await, ServingStatus::Serving);
        assert_eq!(new.metric("session_secret_agreement", ""), 1.0);
        login(&mut c_new, "ada", "still").await;
        assert_eq!(list_all(&mut c_new, "ada").await.len(), 1);
        c_new
            .revoke_sessions(RevokeSessionsRequest {
                principal: "ada".into(),
                except_id: None,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_secret_kept_in_valkey_is_put_back_when_lost_and_a_configured_one_takes_over() {
    let d = Deployment::start(Shape::Standalone);
    let first = instance(&d, None);
    let mut c1 = first.client().await;
    let kept = login(&mut c1, "grace", "a").await;

    // FLUSHALL or an unreplicated failover loses the key: the instance that knows the secret
    // puts it back, so the next instance derives the same tags instead of making a new one.
    let valkey = d.primary(0);
    valkey.cli(&["DEL", "vs:_secret", "vs:_secrets"]);
    wait_until("the secret to be put back", Duration::from_secs(5), || {
        valkey.cli(&["EXISTS", "vs:_secret"]).trim() == "1"
    });
    let second = instance(&d, None);
    let mut c2 = second.client().await;
    let id = login(&mut c2, "grace", "b").await;
    assert_eq!(tag(&id), tag(&kept), "the same secret after the loss");
    assert_eq!(list_all(&mut c2, "grace").await.len(), 2);
    drop(c2);
    drop(second);

    // Moving to a configured secret: the one in Valkey keeps being read, and written while an
    // instance that knows only it runs.
    let configured = instance(&d, Some(NEW));
    let mut c3 = configured.client().await;
    let id = login(&mut c3, "grace", "c").await;
    assert_eq!(
        tag(&id),
        tag(&kept),
        "valkey's secret writes while `first` runs"
    );
    assert_eq!(list_all(&mut c1, "grace").await.len(), 3);
    drop(c1);
    drop(first);
    wait_until(
        "the configured secret to write",
        Duration::from_secs(10),
        || writes_with(&configured, 2),
    );
    let id = login(&mut c3, "grace", "d").await;
    assert_ne!(tag(&id), tag(&kept));
    assert_eq!(
        devices(&list_all(&mut c3, "grace").await),
        ["d", "c", "b", "a"]
    );
}
