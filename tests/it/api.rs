//! The session.v1 contract through a real tonic client against the real binary, on every
//! topology: standalone, serverless-shaped TLS pair, and a 3-shard TLS cluster with replicas.

use std::collections::HashSet;

use session_proto::{
    Consistency, CreateRequest, DeleteRequest, GetRequest, PutRequest, RotateRequest,
};
use test_support::{Deployment, Service, Shape, attrs, create, secs};
use tonic::Code;
use tonic_types::StatusExt;

fn start(shape: Shape) -> (Deployment, Service) {
    let deployment = Deployment::start(shape);
    let service = deployment.start_service(&[]);
    (deployment, service)
}

/// Runs each scenario once per topology, as `<topology>::<scenario>`, and once more with the gRPC
/// hop secured (TLS and a token).
macro_rules! on_every_topology {
    ($($scenario:ident),* $(,)?) => {
        mod standalone {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::Standalone).await })*
        }
        mod serverless {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::Serverless).await })*
        }
        mod cluster {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::Cluster).await })*
        }
        /// The same contract over TLS with a bearer token on every call.
        mod secured {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::SecuredServerless).await })*
        }
    };
}

on_every_topology!(
    create_get_put_delete_round_trip,
    stale_expected_version_is_aborted_with_the_current_version,
    concurrent_puts_with_expected_version_lose_nothing,
    put_applies_a_delta,
    malformed_ids_are_invalid_and_unknown_ids_are_not_found,
    ids_are_unique_well_formed_and_each_session_is_one_tagged_key,
    limits_are_enforced_with_messages_naming_them,
    timeouts_are_validated,
    put_can_change_the_idle_timeout_and_the_principal,
    rotate_moves_the_session_to_a_new_id_and_ends_the_old_one,
);

async fn create_get_put_delete_round_trip(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;

    let created = create(
        &mut c,
        CreateRequest {
            attributes: attrs(&[("user", "ada"), ("cart", "3 items")]),
            principal: "ada@example.com".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(created.version, 1);
    assert_eq!(created.principal, "ada@example.com");
    assert_eq!(
        created.attributes,
        attrs(&[("user", "ada"), ("cart", "3 items")])
    );
    assert_eq!(
        created.idle_timeout.unwrap().seconds,
        30 * 60,
        "default idle timeout"
    );
    let created_at = created.created_at.unwrap();
    assert_eq!(
        created
            .absolute_expires_at
            .as_ref()
            .map(|t| t.seconds - created_at.seconds),
        Some(7 * 24 * 3600),
        "a 7-day absolute cap by default: a stolen id does not live for ever"
    );
    assert_eq!(created.last_accessed_at.unwrap(), created_at);
    assert_eq!(
        created.expires_at.unwrap().seconds,
        created_at.seconds + 1800
    );

    for consistency in [
        Consistency::Unspecified,
        Consistency::Eventual,
        Consistency::Strong,
    ] {
        let got = c
            .get(GetRequest {
                id: created.id.clone(),
                consistency: consistency as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        assert_eq!(
            got, created,
            "{consistency:?} read returns what was created"
        );
    }

    let put = c
        .put(PutRequest {
            id: created.id.clone(),
            set: attrs(&[("cart", "4 items"), ("theme", "dark")]),
            remove: vec!["user".into()],
            expected_version: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(put.version, 2);
    assert_eq!(
        put.attributes,
        attrs(&[("cart", "4 items"), ("theme", "dark")])
    );
    assert_eq!(put.created_at, created.created_at);

    let got = c
        .get(GetRequest {
            id: created.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(got, put);

    let deleted = c
        .delete(DeleteRequest {
            id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.existed);
    let again = c
        .delete(DeleteRequest {
            id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.existed, "delete is idempotent");
    let gone = c
        .get(GetRequest {
            id: created.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let put_gone = c
        .put(PutRequest {
            id: created.id,
            set: attrs(&[("a", "b")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(put_gone.code(), Code::NotFound);
}

async fn stale_expected_version_is_aborted_with_the_current_version(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;
    let id = create(&mut c, CreateRequest::default()).await.id;

    let v2 = c
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("n", "1")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        v2.version, 2,
        "a Put without expected_version always applies"
    );

    let stale = c
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("n", "lost")]),
            expected_version: Some(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert!(
        stale.message().contains("current version is 2"),
        "{}",
        stale.message()
    );
    let info = stale
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ABORTED carries an ErrorInfo detail");
    assert_eq!(info.reason, "VERSION_CONFLICT");
    assert_eq!(info.domain, "valkey-sessions");
    assert_eq!(info.metadata["current_version"], "2");

    let unchanged = c
        .get(GetRequest {
            id: id.clone(),
            consistency: Consistency::Strong as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(unchanged.version, 2);
    assert_eq!(
        unchanged.attributes,
        attrs(&[("n", "1")]),
        "an aborted Put changes nothing"
    );

    let v3 = c
        .put(PutRequest {
            id,
            set: attrs(&[("n", "2")]),
            expected_version: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(v3.version, 3);
}

async fn concurrent_puts_with_expected_version_lose_nothing(shape: Shape) {
    let (_deployment, service) = start(shape);
    let c = service.client().await;
    let id = c
        .clone()
        .create(CreateRequest::default())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
        .id;

    // 8 writers each add 5 attributes with read-modify-write and retry on ABORTED.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = c.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut aborted = 0;
            for i in 0..5 {
                loop {
                    let current = c
                        .get(GetRequest {
                            id: id.clone(),
                            consistency: Consistency::Strong as i32,
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .session
                        .unwrap();
                    let r = c
                        .put(PutRequest {
                            id: id.clone(),
                            set: attrs(&[(&format!("w{w}-{i}"), "x")]),
                            expected_version: Some(current.version),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(_) => break,
                        Err(s) if s.code() == Code::Aborted => aborted += 1,
                        Err(s) => panic!("unexpected {s:?}"),
                    }
                }
            }
            aborted
        }));
    }
    let mut aborted = 0;
    for t in tasks {
        aborted += t.await.unwrap();
    }
    let mut c = c;
    let s = c
        .get(GetRequest { id, consistency: 2 })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        s.attributes.len(),
        40,
        "every writer's attributes are there"
    );
    assert_eq!(s.version, 41);
    println!("concurrent writers: {aborted} ABORTED retries");
}

async fn put_applies_a_delta(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;
    let id = create(
        &mut c,
        CreateRequest {
            attributes: attrs(&[("a", "1"), ("b", "2")]),
            ..Default::default()
        },
    )
    .await
    .id;

    let s = c
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("b", "two"), ("c", "3")]),
            remove: vec!["a".into(), "never-there".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        s.attributes,
        attrs(&[("b", "two"), ("c", "3")]),
        "replace, add, remove; absent removes ignored"
    );

    let binary = vec![0u8, 255, 1, 128, b'{', b'}'];
    let s = c
        .put(PutRequest {
            id: id.clone(),
            set: [
                ("bin".to_string(), binary.clone()),
                ("empty".to_string(), vec![]),
            ]
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(s.attributes["bin"], binary, "values are opaque bytes");
    assert_eq!(s.attributes["empty"], Vec::<u8>::new());

    let both = c
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("c", "x")]),
            remove: vec!["c".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    assert!(
        both.message().contains("both set and remove"),
        "{}",
        both.message()
    );

    let empty = c
        .put(PutRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        empty.session.unwrap().version,
        s.version + 1,
        "an empty delta still counts as a write"
    );
}

async fn malformed_ids_are_invalid_and_unknown_ids_are_not_found(shape: Shape) {
    let (deployment, service) = start(shape);
    let mut c = service.client().await;
    let good = create(&mut c, CreateRequest::default()).await.id;
    let gets_before = deployment.calls("get");

    let malformed = [
        String::new(),
        "short".to_string(),
        format!("{good}A"),
        format!("{{{}}}", &good[..41]),
        format!("{}/", &good[..42]),
        format!("{}+", &good[..42]),
        format!("{}é", &good[..41]),
        "a".repeat(10_000),
    ];
    for id in &malformed {
        let get = c
            .get(GetRequest {
                id: id.clone(),
                consistency: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(get.code(), Code::InvalidArgument, "get {id:?}");
        assert!(
            get.message().contains("invalid session id"),
            "{}",
            get.message()
        );
        let put = c
            .put(PutRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(put.code(), Code::InvalidArgument, "put {id:?}");
        let del = c
            .delete(DeleteRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(del.code(), Code::InvalidArgument, "delete {id:?}");
    }
    assert_eq!(
        deployment.calls("get"),
        gets_before,
        "malformed ids never reach Valkey"
    );

    let unknown = "A".repeat(43);
    let get = c
        .get(GetRequest {
            id: unknown.clone(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);
    let put = c
        .put(PutRequest {
            id: unknown.clone(),
            set: attrs(&[("a", "b")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(put.code(), Code::NotFound);
    assert!(
        !c.delete(DeleteRequest {
            id: unknown,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .existed
    );
}

async fn ids_are_unique_well_formed_and_each_session_is_one_tagged_key(shape: Shape) {
    let (deployment, service) = start(shape);
    let mut c = service.client().await;
    let mut ids = HashSet::new();
    for _ in 0..200 {
        let id = create(&mut c, CreateRequest::default()).await.id;
        assert_eq!(id.len(), 55, "{id}");
        assert_eq!(&id[11..12], ".", "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
            "{id}"
        );
        ids.insert(id);
    }
    assert_eq!(ids.len(), 200);

    let keys = deployment.keys();
    assert_eq!(keys.len(), 200, "exactly one key per session");
    if shape == Shape::Cluster {
        for i in 0..3 {
            let held = keys
                .iter()
                .filter(|(node, _)| node.port == deployment.primary(i).port)
                .count();
            assert!(
                held > 30,
                "keys spread over every shard: primary {i} holds {held}"
            );
        }
    }
    // The key is the slot tag and a one-way handle of the id: never the id itself.
    let by_key: std::collections::HashMap<String, &String> = ids
        .iter()
        .map(|id| {
            let handle = session_core::SessionId::parse(id).unwrap().handle();
            (format!("vs:{{{}}}.{handle}", &id[..11]), id)
        })
        .collect();
    for (valkey, key) in &keys {
        let id = by_key.get(key).expect("vs:{tag}.handle of a created id");
        assert!(
            !key.contains(&id[12..]),
            "the secret part never appears in a key"
        );
        let ttl: i64 = valkey.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(
            ttl > 0 && ttl <= 1_800_000,
            "every key expires by itself, got {ttl}"
        );
    }
}

async fn limits_are_enforced_with_messages_naming_them(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;

    let long_name = "n".repeat(257);
    let e = c
        .create(CreateRequest {
            attributes: attrs(&[(&long_name, "v")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_name_bytes"), "{}", e.message());

    let e = c
        .create(CreateRequest {
            attributes: attrs(&[("", "v")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let too_big = [("big".to_string(), vec![7u8; (1 << 20) + 1])].into();
    let e = c
        .create(CreateRequest {
            attributes: too_big,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_value_bytes"), "{}", e.message());

    let e = c
        .create(CreateRequest {
            principal: "p".repeat(257),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_principal_bytes"));

    let many: std::collections::HashMap<String, Vec<u8>> =
        (0..1025).map(|i| (format!("a{i}"), vec![])).collect();
    let e = c
        .create(CreateRequest {
            attributes: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_attributes"), "{}", e.message());

    // An honest session right at 4 MiB passes the transport and the store, and reads back whole.
    let mib = 1usize << 20;
    let honest: std::collections::HashMap<String, Vec<u8>> = (0..4)
        .map(|i| (format!("v{i}"), vec![i as u8; mib - 2]))
        .collect();
    let s = c
        .create(CreateRequest {
            attributes: honest,
            ..Default::default()
        })
        .await
        .expect("a 4 MiB session is accepted")
        .into_inner()
        .session
        .unwrap();
    let got = c
        .get(GetRequest {
            id: s.id.clone(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.session.unwrap().attributes["v3"].len(), mib - 2);

    // Growing past the total through Puts is RESOURCE_EXHAUSTED and changes nothing.
    let e = c
        .put(PutRequest {
            id: s.id.clone(),
            set: attrs(&[("one-more", "byte")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_session_bytes"), "{}", e.message());
    let after = c
        .get(GetRequest {
            id: s.id.clone(),
            consistency: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.session.unwrap().version, 1);

    // Replacing a value keeps the total within bounds.
    let ok = c
        .put(PutRequest {
            id: s.id.clone(),
            set: [("v0".to_string(), vec![1u8; 10])].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().session.unwrap().version, 2);

    // Puts that push the count over the limit.
    let small = create(&mut c, CreateRequest::default()).await.id;
    let half: std::collections::HashMap<String, Vec<u8>> =
        (0..600).map(|i| (format!("x{i}"), vec![])).collect();
    c.put(PutRequest {
        id: small.clone(),
        set: half,
        ..Default::default()
    })
    .await
    .unwrap();
    let more: std::collections::HashMap<String, Vec<u8>> =
        (0..600).map(|i| (format!("y{i}"), vec![])).collect();
    let e = c
        .put(PutRequest {
            id: small,
            set: more,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_attributes"));
}

async fn timeouts_are_validated(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;
    for (idle, abs) in [(0, 0), (-5, 0), (100 * 24 * 3600, 0), (0, -1)] {
        let req = CreateRequest {
            idle_timeout: (idle != 0).then_some(prost_types::Duration {
                seconds: idle,
                nanos: 0,
            }),
            absolute_timeout: (abs != 0).then_some(prost_types::Duration {
                seconds: abs,
                nanos: 0,
            }),
            ..Default::default()
        };
        let req = if idle == 0 && abs == 0 {
            CreateRequest {
                idle_timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 5,
                }),
                ..req
            }
        } else {
            req
        };
        let e = c.create(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "idle {idle} abs {abs}");
        assert!(e.message().contains("timeout"), "{}", e.message());
    }
    let s = create(
        &mut c,
        CreateRequest {
            idle_timeout: secs(600),
            absolute_timeout: secs(60),
            ..Default::default()
        },
    )
    .await;
    let created = s.created_at.unwrap().seconds;
    assert_eq!(s.absolute_expires_at.unwrap().seconds, created + 60);
    assert_eq!(
        s.expires_at.unwrap().seconds,
        created + 60,
        "the cap wins over the idle timeout"
    );
}

async fn put_can_change_the_idle_timeout_and_the_principal(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;
    let s = create(
        &mut c,
        CreateRequest {
            absolute_timeout: secs(7200),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(s.principal, "");

    let login = c
        .put(PutRequest {
            id: s.id.clone(),
            principal: Some("ada@example.com".into()),
            idle_timeout: secs(3600),
            set: attrs(&[("role", "admin")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(login.principal, "ada@example.com");
    // Gaining a principal is a login: the session moved to a new id in the principal's slot.
    assert_ne!(login.id, s.id);
    assert_eq!(login.version, 2);
    let gone = c
        .get(GetRequest {
            id: s.id.clone(),
            consistency: Consistency::Strong as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        Code::NotFound,
        "the anonymous id ended at login"
    );
    let s = login.clone();
    assert_eq!(login.idle_timeout.unwrap().seconds, 3600);
    let last = login.last_accessed_at.unwrap().seconds;
    assert_eq!(login.expires_at.unwrap().seconds, last + 3600);
    assert_eq!(login.attributes, attrs(&[("role", "admin")]));

    let kept = c
        .put(PutRequest {
            id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        kept.principal, "ada@example.com",
        "absent fields keep their value"
    );
    assert_eq!(kept.idle_timeout.unwrap().seconds, 3600);

    let capped = c
        .put(PutRequest {
            id: s.id.clone(),
            idle_timeout: secs(20 * 3600),
            principal: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(capped.principal, "", "logout makes the session anonymous");
    assert_eq!(
        capped.expires_at, s.absolute_expires_at,
        "the cap still wins"
    );

    for (idle, principal) in [(0i64, None), (1_000_000, None), (60, Some("p".repeat(257)))] {
        let e = c
            .put(PutRequest {
                id: s.id.clone(),
                idle_timeout: secs(idle),
                principal,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "idle {idle}");
    }
}

async fn rotate_moves_the_session_to_a_new_id_and_ends_the_old_one(shape: Shape) {
    let (_deployment, service) = start(shape);
    let mut c = service.client().await;
    let created = create(
        &mut c,
        CreateRequest {
            attributes: attrs(&[("cart", "3 items")]),
            principal: "ada".into(),
            absolute_timeout: secs(3600),
            ..Default::default()
        },
    )
    .await;
    let rotate = |id: &str, expected_version| RotateRequest {
        id: id.to_owned(),
        expected_version,
        principal: None,
        ..Default::default()
    };

    let stale = c.rotate(rotate(&created.id, Some(7))).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    let rotated = c
        .rotate(rotate(&created.id, Some(1)))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_ne!(rotated.id, created.id);
    assert_eq!(rotated.id.len(), 55);
    assert_eq!(
        rotated.id[..11],
        created.id[..11],
        "a rotation stays in its slot"
    );
    assert_eq!(rotated.version, 2);
    assert_eq!(rotated.attributes, created.attributes);
    assert_eq!(rotated.principal, "ada");
    assert_eq!(rotated.created_at, created.created_at);
    assert_eq!(rotated.idle_timeout, created.idle_timeout);
    assert_eq!(rotated.absolute_expires_at, created.absolute_expires_at);

    // Strong: a replica may show the old id for the replication lag (docs/cloud.md).
    let old = c
        .get(GetRequest {
            id: created.id.clone(),
            consistency: Consistency::Strong as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::NotFound, "the old id is over");
    for consistency in [Consistency::Strong, Consistency::Eventual] {
        let new = c
            .get(GetRequest {
                id: rotated.id.clone(),
                consistency: consistency as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        assert_eq!(new, rotated, "read-your-writes on the new id");
    }
    // The new id is a full session: writable with its version, rotatable again.
    let put = c
        .put(PutRequest {
            id: rotated.id.clone(),
            set: attrs(&[("logged_in", "yes")]),
            expected_version: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(put.version, 3);
    let again = c
        .rotate(rotate(&rotated.id, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.session.unwrap().version, 4);

    for (id, code) in [
        (created.id.as_str(), Code::NotFound),
        (rotated.id.as_str(), Code::NotFound),
        ("not-an-id", Code::InvalidArgument),
    ] {
        let err = c.rotate(rotate(id, None)).await.unwrap_err();
        assert_eq!(err.code(), code, "{id}: {err:?}");
    }
}

/// A Put racing a Rotate is never lost: it lands before the rotation (which then fails with
/// ABORTED and leaves the old id) or fails NOT_FOUND after it.
#[tokio::test]
async fn puts_racing_a_rotation_are_never_lost() {
    let (_deployment, service) = start(Shape::Standalone);
    let mut c = service.client().await;
    let (mut aborted, mut rotated) = (0, 0);
    for round in 0..20 {
        let id = create(&mut c, CreateRequest::default()).await.id;
        let puts = (0..8).map(|i| {
            let mut c = c.clone();
            let id = id.clone();
            async move {
                // Staggered, so some rounds race the rotation and some come after it.
                tokio::time::sleep(std::time::Duration::from_micros(round * 150 * i)).await;
                let name = format!("w{i}");
                let put = PutRequest {
                    id,
                    set: attrs(&[(name.as_str(), "x")]),
                    ..Default::default()
                };
                c.put(put).await.map(|_| name)
            }
        });
        let mut rotator = c.clone();
        let rotation = rotator.rotate(RotateRequest {
            principal: None,
            id: id.clone(),
            expected_version: None,
            ..Default::default()
        });
        let (rotation, puts) = tokio::join!(rotation, futures::future::join_all(puts));
        let written: Vec<String> = puts.into_iter().filter_map(Result::ok).collect();
        let holder = match rotation {
            Ok(response) => {
                rotated += 1;
                response.into_inner().session.unwrap().id
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "round {round}: {status:?}");
                aborted += 1;
                id
            }
        };
        let stored = c
            .get(GetRequest {
                id: holder,
                consistency: Consistency::Strong as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        for name in &written {
            assert!(
                stored.attributes.contains_key(name),
                "round {round}: acknowledged write {name} lost"
            );
        }
    }
    println!("rotations: {rotated} succeeded, {aborted} aborted by a racing Put");
}
