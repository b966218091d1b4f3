//! Caller-proposed ids at Create (`CreateRequest.proposed_id`, docs/adapters.md): the session
//! middleware adapters use them so a framework's own id (tower-sessions' 128-bit `Id`,
//! express-session's `genid`) is the service's id, with no extra round trip per request.
//! Valid, too short, bad alphabet, taken, combined with a principal; own slot and key form of the
//! first-form ids; never logged. Real valkey-server and service processes.

use session_proto::{
    CreateRequest, DeleteRequest, GetRequest, ListSessionsRequest, PutRequest, RotateRequest,
};
use test_support::{Deployment, Service, Shape, attrs, create, secs};
use tonic::Code;

fn start(shape: Shape) -> (Deployment, Service) {
    let deployment = Deployment::start(shape);
    let service = deployment.start_service(&[]);
    (deployment, service)
}

/// 16 random bytes as tower-sessions spells its `Id`: 22 characters of URL-safe base64.
fn random_id(bytes: usize) -> String {
    use base64::Engine;
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn proposing(id: &str) -> CreateRequest {
    CreateRequest {
        attributes: attrs(&[("cart", "1")]),
        idle_timeout: secs(60),
        proposed_id: Some(id.to_owned()),
        ..Default::default()
    }
}

async fn a_valid_proposed_id_is_the_session_id_in_its_own_slot(shape: Shape) {
    let (deployment, service) = start(shape);
    let mut c = service.client().await;
    for id in [random_id(16), random_id(32), random_id(96)] {
        let created = create(&mut c, proposing(&id)).await;
        assert_eq!(created.id, id);
        assert_eq!(created.version, 1);
        let got = c
            .get(GetRequest {
                id: id.clone(),
                consistency: 2,
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        assert_eq!(got.attributes, attrs(&[("cart", "1")]));
        let put = c
            .put(PutRequest {
                id: id.clone(),
                set: attrs(&[("cart", "2")]),
                expected_version: Some(1),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        assert_eq!((put.id.as_str(), put.version), (id.as_str(), 2));
        // The key form of the first-form ids: `vs:{<id>}`, alone in its slot.
        let keys: Vec<String> = deployment.keys().into_iter().map(|(_, k)| k).collect();
        assert!(keys.contains(&format!("vs:{{{id}}}")), "{keys:?}");
    }
    // Rotation (login) gives it a server-generated, tagged id and ends the proposed one.
    let id = random_id(16);
    create(&mut c, proposing(&id)).await;
    let rotated = c
        .rotate(RotateRequest {
            id: id.clone(),
            principal: Some("ada@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(rotated.id.len(), 55);
    assert_eq!(rotated.attributes, attrs(&[("cart", "1")]));
    let old = c
        .get(GetRequest {
            id: id.clone(),
            consistency: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::NotFound);
    let listed = c
        .list_sessions(ListSessionsRequest {
            principal: "ada@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 1, "the rotated session is indexed");
    assert!(
        c.delete(DeleteRequest {
            id: rotated.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .existed
    );
    assert!(
        !service.logs().contains(&id),
        "a proposed id is never logged"
    );
}

mod standalone {
    #[tokio::test]
    async fn a_valid_proposed_id_is_the_session_id_in_its_own_slot() {
        super::a_valid_proposed_id_is_the_session_id_in_its_own_slot(super::Shape::Standalone).await
    }
}

mod cluster {
    #[tokio::test]
    async fn a_valid_proposed_id_is_the_session_id_in_its_own_slot() {
        super::a_valid_proposed_id_is_the_session_id_in_its_own_slot(super::Shape::Cluster).await
    }
}

#[tokio::test]
async fn proposed_ids_too_short_or_of_a_bad_alphabet_are_refused_before_valkey() {
    let (deployment, service) = start(Shape::Standalone);
    let mut c = service.client().await;
    let good = random_id(16);
    let sets_before = deployment.calls("set");
    let cases = [
        (good[..21].to_owned(), "characters"),
        (String::new(), "characters"),
        ("x".repeat(129), "characters"),
        (
            format!("{}.{}", &good[..11], &good[..12]),
            "may only contain",
        ),
        (format!("{good}=="), "may only contain"),
        (format!("{}+/", &good), "may only contain"),
        (format!("{}é", &good), "may only contain"),
        (format!("{} ", &good), "may only contain"),
        ("A".repeat(43), "random"),
        ("0123456".repeat(4), "random"),
    ];
    for (id, why) in &cases {
        let err = c.create(proposing(id)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{id:?}: {err:?}");
        assert!(
            err.message().contains("proposed_id") && err.message().contains(why),
            "{id:?}: {}",
            err.message()
        );
        if id.len() >= 8 {
            assert!(!err.message().contains(id.as_str()), "not echoed");
        }
    }
    // With a principal: refused (a proposed-id session is in no principal's index).
    let err = c
        .create(CreateRequest {
            principal: "ada@example.com".into(),
            ..proposing(&good)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("Rotate"), "{}", err.message());
    assert_eq!(
        deployment.calls("set"),
        sets_before,
        "nothing reached Valkey"
    );
    assert_eq!(deployment.dbsize(), 0);
}

#[tokio::test]
async fn a_taken_proposed_id_is_already_exists_and_never_overwrites() {
    let (_deployment, service) = start(Shape::Standalone);
    let mut c = service.client().await;
    let id = random_id(16);
    create(&mut c, proposing(&id)).await;
    c.put(PutRequest {
        id: id.clone(),
        set: attrs(&[("user", "ada")]),
        ..Default::default()
    })
    .await
    .unwrap();

    let err = c
        .create(CreateRequest {
            attributes: attrs(&[("user", "mallory")]),
            proposed_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(!err.message().contains(&id));
    let kept = c
        .get(GetRequest {
            id: id.clone(),
            consistency: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(kept.version, 2, "untouched");
    assert_eq!(kept.attributes["user"], b"ada");

    // Concurrent proposals of one fresh id: exactly one wins.
    let contested = random_id(16);
    let tries = (0..8).map(|_| {
        let mut c = c.clone();
        let contested = contested.clone();
        async move { c.create(proposing(&contested)).await.map(|_| ()) }
    });
    let results = futures::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == Code::AlreadyExists)
    );

    // After a Delete the id may be proposed again (the adapters' logout then a new visit).
    c.delete(DeleteRequest {
        id: id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(create(&mut c, proposing(&id)).await.version, 1);
    assert!(!service.logs().contains(&id), "never logged");
}
