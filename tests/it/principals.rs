//! The sessions of a user: list, revoke, limit, the index kept right under churn,
//! expiry and failover, login as one Rotate, and ids of the first form — on standalone, the
//! serverless-shaped pair and the 3-shard cluster.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use session_core::SessionId;
use session_proto::caller::Client;
use session_proto::{
    Consistency, CreateRequest, DeleteRequest, GetRequest, ListSessionsRequest, PutRequest,
    RevokeSessionRequest, RevokeSessionsRequest, RotateRequest, SessionInfo,
};
use test_support::{Deployment, Service, Shape, attrs, create, secs, wait_until};
use tonic::Code;

fn start(shape: Shape, env: &[(&str, &str)]) -> (Deployment, Service) {
    let deployment = Deployment::start(shape);
    let service = deployment.start_service(env);
    (deployment, service)
}

test_support::on_every_topology!(
    list_pages_newest_first_with_handles_that_cannot_read,
    revoked_sessions_are_not_found_on_every_read_path,
    login_is_one_rotate_into_the_principal_slot,
    a_same_slot_rotate_is_one_round_trip,
    the_limit_holds_under_concurrent_logins,
    a_rejecting_limit_refuses_exactly_the_extra_logins,
    the_index_is_right_under_concurrent_churn_and_expiry,
    bad_input_about_principals_is_refused_clearly,
    ids_of_the_first_form_keep_working,
);

fn unique(name: &str) -> String {
    format!(
        "{name}-{}@example.com",
        &SessionId::generate().as_str()[12..24]
    )
}

async fn login(c: &mut Client, principal: &str, device: &str) -> String {
    create(
        c,
        CreateRequest {
            principal: principal.into(),
            attributes: attrs(&[("device", device), ("cart", "…")]),
            ..Default::default()
        },
    )
    .await
    .id
}

/// Every page of a principal's sessions.
async fn list_all(c: &mut Client, principal: &str, page_size: u32) -> Vec<SessionInfo> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_sessions(ListSessionsRequest {
                principal: principal.into(),
                page_size,
                page_token: token.clone(),
                display_attributes: vec!["device".into()],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.sessions.len() <= page_size as usize);
        all.extend(page.sessions);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn handle(id: &str) -> String {
    SessionId::parse(id).unwrap().handle()
}

async fn get(c: &mut Client, id: &str, consistency: Consistency) -> Result<(), Code> {
    c.get(GetRequest {
        id: id.into(),
        consistency: consistency as i32,
    })
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn list_pages_newest_first_with_handles_that_cannot_read(shape: Shape) {
    let (_d, service) = start(shape, &[]);
    let mut c = service.client().await;
    let p = unique("ada");
    let mut ids = Vec::new();
    for device in ["laptop", "phone", "tablet", "watch", "tv"] {
        ids.push(login(&mut c, &p, device).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let _anonymous = create(&mut c, CreateRequest::default()).await;
    let _other = login(&mut c, &unique("bob"), "laptop").await;
    // Activity moves a session to the front.
    c.put(PutRequest {
        id: ids[1].clone(),
        set: attrs(&[("seen", "1")]),
        ..Default::default()
    })
    .await
    .unwrap();

    let first = c
        .list_sessions(ListSessionsRequest {
            principal: p.clone(),
            page_size: 2,
            display_attributes: vec!["device".into(), "location".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.sessions.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let devices = |s: &[SessionInfo]| -> Vec<String> {
        s.iter()
            .map(|i| String::from_utf8(i.display_attributes["device"].clone()).unwrap())
            .collect()
    };
    assert_eq!(
        devices(&first.sessions),
        ["phone", "tv"],
        "newest activity first"
    );
    assert_eq!(first.sessions[0].version, 2);
    assert!(
        !first.sessions[0].display_attributes.contains_key("cart"),
        "only what was asked"
    );
    // Only what a "your devices" page needs: an attribute off the display list (it could hold
    // a CSRF or OAuth token) is refused, not read from every session of the user.
    let refused = c
        .list_sessions(ListSessionsRequest {
            principal: p.clone(),
            display_attributes: vec!["cart".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("limits.display_attributes"),
        "{}",
        refused.message()
    );
    let all = list_all(&mut c, &p, 2).await;
    assert_eq!(devices(&all), ["phone", "tv", "watch", "tablet", "laptop"]);
    let by_handle: HashMap<String, &String> = ids.iter().map(|id| (handle(id), id)).collect();
    for info in &all {
        assert!(
            by_handle.contains_key(&info.handle),
            "a handle names a listed session"
        );
        assert!(!ids.contains(&info.handle), "a handle is not an id");
        assert!(info.expires_at.unwrap().seconds > info.last_accessed_at.unwrap().seconds);
        // A handle cannot read or write the session: it is not an id (refused) or names no
        // session (22 characters parse as an id a caller may propose, whose key is elsewhere).
        let err = c
            .get(GetRequest {
                id: info.handle.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::NotFound),
            "{err:?}"
        );
    }
    assert_eq!(list_all(&mut c, &p, 100).await.len(), 5);
    let empty = list_all(&mut c, &unique("nobody"), 10).await;
    assert!(
        empty.is_empty(),
        "an unknown principal has an empty list, not an error"
    );
}

async fn revoked_sessions_are_not_found_on_every_read_path(shape: Shape) {
    let (_d, service) = start(shape, &[]);
    let mut c = service.client().await;
    let p = unique("eve");
    let laptop = login(&mut c, &p, "laptop").await;
    let phone = login(&mut c, &p, "phone").await;
    let tablet = login(&mut c, &p, "tablet").await;
    let tv = login(&mut c, &p, "tv").await;

    let one = c
        .revoke_session(RevokeSessionRequest {
            principal: p.clone(),
            handle: handle(&phone),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.revoked, 1);
    for consistency in [Consistency::Strong, Consistency::Eventual] {
        assert_eq!(get(&mut c, &phone, consistency).await, Err(Code::NotFound));
    }
    let again = c
        .revoke_session(RevokeSessionRequest {
            principal: p.clone(),
            handle: handle(&phone),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    let others = c
        .revoke_sessions(RevokeSessionsRequest {
            principal: p.clone(),
            except_id: Some(laptop.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(others.revoked, 2, "tablet and tv");
    for id in [&tablet, &tv] {
        for consistency in [Consistency::Strong, Consistency::Eventual] {
            assert_eq!(get(&mut c, id, consistency).await, Err(Code::NotFound));
        }
    }
    assert_eq!(get(&mut c, &laptop, Consistency::Eventual).await, Ok(()));
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 1);
    let everywhere = c
        .revoke_sessions(RevokeSessionsRequest {
            principal: p.clone(),
            except_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everywhere.revoked, 1);
    assert_eq!(
        get(&mut c, &laptop, Consistency::Eventual).await,
        Err(Code::NotFound)
    );
    assert!(list_all(&mut c, &p, 10).await.is_empty());
}

async fn login_is_one_rotate_into_the_principal_slot(shape: Shape) {
    let (_d, service) = start(shape, &[]);
    let mut c = service.client().await;
    let p = unique("ann");
    let existing = login(&mut c, &p, "desktop").await;
    let anonymous = create(
        &mut c,
        CreateRequest {
            attributes: attrs(&[("cart", "2 items")]),
            ..Default::default()
        },
    )
    .await;
    let logged_in = c
        .rotate(RotateRequest {
            id: anonymous.id.clone(),
            expected_version: Some(1),
            principal: Some(p.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(logged_in.principal, p);
    assert_eq!(
        logged_in.attributes, anonymous.attributes,
        "the cart survives the login"
    );
    assert_eq!(logged_in.version, 2);
    assert_eq!(&logged_in.id[..11], &existing[..11], "the principal's slot");
    for consistency in [Consistency::Strong, Consistency::Eventual] {
        assert_eq!(
            get(&mut c, &anonymous.id, consistency).await,
            Err(Code::NotFound)
        );
    }
    let listed: HashSet<String> = list_all(&mut c, &p, 10)
        .await
        .into_iter()
        .map(|i| i.handle)
        .collect();
    assert_eq!(
        listed,
        HashSet::from([handle(&existing), handle(&logged_in.id)])
    );
    // A Put that gives a session a principal is a login too.
    let other = create(&mut c, CreateRequest::default()).await;
    let put = c
        .put(PutRequest {
            id: other.id.clone(),
            principal: Some(p.clone()),
            set: attrs(&[("device", "phone")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_ne!(put.id, other.id);
    assert_eq!(&put.id[..11], &existing[..11]);
    assert_eq!(
        get(&mut c, &other.id, Consistency::Strong).await,
        Err(Code::NotFound)
    );
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 3);
    // Logging out of the principal (Put principal "") keeps the id, leaves the index.
    let out = c
        .put(PutRequest {
            id: put.id.clone(),
            principal: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(out.id, put.id);
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 2);
}

/// The commands clients sent to the primaries while `during` ran (MONITOR; commands a script
/// runs inside and the service's background PINGs and topology reads left out).
async fn client_commands<F: std::future::Future>(
    d: &Deployment,
    during: F,
) -> (Vec<String>, F::Output) {
    let mut monitors = Vec::new();
    for &p in &d.primaries {
        let node = &d.nodes[p];
        let mut cmd = tokio::process::Command::new("valkey-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &node.port.to_string()]);
        if let Some(tls) = &d.tls {
            cmd.args(["--tls", "--cacert", &tls.ca.display().to_string()]);
        }
        monitors.push(
            cmd.arg("MONITOR")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = during.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut commands = Vec::new();
    for mut m in monitors {
        m.start_kill().unwrap();
        let output = m.wait_with_output().await.unwrap();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some((_, rest)) = line.split_once(" [") else {
                continue;
            };
            if rest.contains(" lua]") {
                continue;
            }
            let command = rest.split('"').nth(1).unwrap_or("").to_lowercase();
            if ![
                "ping", "cluster", "info", "readonly", "client", "hello", "auth",
            ]
            .contains(&command.as_str())
            {
                commands.push(command);
            }
        }
    }
    (commands, out)
}

async fn a_same_slot_rotate_is_one_round_trip(shape: Shape) {
    let (d, service) = start(shape, &[]);
    let mut c = service.client().await;
    let p = unique("ray");
    let id = login(&mut c, &p, "laptop").await;
    let (commands, rotated) = client_commands(&d, async {
        c.rotate(RotateRequest {
            id: id.clone(),
            expected_version: None,
            principal: None,
            ..Default::default()
        })
        .await
    })
    .await;
    let rotated = rotated.unwrap().into_inner().session.unwrap();
    assert_eq!(
        commands,
        ["evalsha"],
        "one script, nothing else: one Valkey round trip"
    );
    assert_eq!(
        get(&mut c, &id, Consistency::Strong).await,
        Err(Code::NotFound)
    );
    let listed: Vec<String> = list_all(&mut c, &p, 10)
        .await
        .into_iter()
        .map(|i| i.handle)
        .collect();
    assert_eq!(
        listed,
        [handle(&rotated.id)],
        "the index follows the rotation atomically"
    );
}

async fn the_limit_holds_under_concurrent_logins(shape: Shape) {
    let (_d, service) = start(
        shape,
        &[("VALKEY_SESSIONS_SESSIONS__MAX_PER_PRINCIPAL", "3")],
    );
    let p = unique("max");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut c = service.client().await;
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                login(&mut c, &p, &format!("device-{i}")).await
            } else {
                let anonymous = create(&mut c, CreateRequest::default()).await;
                c.rotate(RotateRequest {
                    id: anonymous.id,
                    expected_version: None,
                    principal: Some(p),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .session
                .unwrap()
                .id
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let mut c = service.client().await;
    let mut live = 0;
    for id in &ids {
        if get(&mut c, id, Consistency::Strong).await.is_ok() {
            live += 1;
        }
    }
    assert_eq!(live, 3, "exactly the limit survives, never N+1");
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 3);
}

async fn a_rejecting_limit_refuses_exactly_the_extra_logins(shape: Shape) {
    let (_d, service) = start(
        shape,
        &[
            ("VALKEY_SESSIONS_SESSIONS__MAX_PER_PRINCIPAL", "2"),
            ("VALKEY_SESSIONS_SESSIONS__ON_LIMIT", "reject"),
        ],
    );
    let p = unique("rej");
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let mut c = service.client().await;
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            c.create(CreateRequest {
                principal: p,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|s| s.code())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(code) => assert_eq!(code, Code::ResourceExhausted),
        }
    }
    assert_eq!(ok, 2);
    let mut c = service.client().await;
    // A login by Rotate is refused too, and the anonymous session survives the refusal.
    let anonymous = create(&mut c, CreateRequest::default()).await;
    let refused = c
        .rotate(RotateRequest {
            id: anonymous.id.clone(),
            expected_version: None,
            principal: Some(p.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        get(&mut c, &anonymous.id, Consistency::Strong).await,
        Ok(())
    );
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 2);
}

async fn the_index_is_right_under_concurrent_churn_and_expiry(shape: Shape) {
    let (d, service) = start(shape, &[]);
    let p = unique("churn");
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let mut c = service.client().await;
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for round in 0..15 {
                // Some sessions expire on their own within the test.
                let idle = if round % 5 == 0 { 1 } else { 600 };
                let id = create(
                    &mut c,
                    CreateRequest {
                        principal: p.clone(),
                        idle_timeout: secs(idle),
                        ..Default::default()
                    },
                )
                .await
                .id;
                match (worker + round) % 4 {
                    0 => {
                        c.delete(DeleteRequest {
                            id: id.clone(),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    }
                    1 => {
                        let r = c
                            .rotate(RotateRequest {
                                id,
                                expected_version: None,
                                principal: None,
                                ..Default::default()
                            })
                            .await
                            .unwrap();
                        mine.push(r.into_inner().session.unwrap().id);
                    }
                    2 => {
                        c.put(PutRequest {
                            id: id.clone(),
                            set: attrs(&[("n", "1")]),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                        mine.push(id);
                    }
                    _ => mine.push(id),
                }
            }
            mine
        }));
    }
    let mut candidates = Vec::new();
    for t in tasks {
        candidates.extend(t.await.unwrap());
    }
    // Let the 1-second sessions expire.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = service.client().await;
    let check = |c: &mut Client| {
        let (candidates, p) = (candidates.clone(), p.clone());
        let mut c = c.clone();
        async move {
            let mut live = HashSet::new();
            for id in &candidates {
                if get(&mut c, id, Consistency::Strong).await.is_ok() {
                    live.insert(handle(id));
                }
            }
            let listed: Vec<String> = list_all(&mut c, &p, 7)
                .await
                .into_iter()
                .map(|i| i.handle)
                .collect();
            let listed_set: HashSet<String> = listed.iter().cloned().collect();
            assert_eq!(listed.len(), listed_set.len(), "no session listed twice");
            assert_eq!(listed_set, live, "listed = exactly the live sessions");
            live.len()
        }
    };
    let live = check(&mut c).await;
    assert!(live > 20, "most sessions live ({live})");
    if shape == Shape::Cluster {
        // A primary failover of the principal's shard: the index moves with its sessions.
        let tag = &candidates[0][..11];
        let slot: u16 = d
            .primary(0)
            .cli(&["CLUSTER", "KEYSLOT", tag])
            .trim()
            .parse()
            .unwrap();
        let shard = (slot as usize / 5461).min(2);
        let replica = d.replica(shard);
        wait_until("replica in sync", Duration::from_secs(10), || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]).trim(), "OK");
        wait_until("the failover", Duration::from_secs(15), || {
            replica.cli(&["ROLE"]).starts_with("master")
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let ok = c
                .list_sessions(ListSessionsRequest {
                    principal: p.clone(),
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .is_ok();
            if ok || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(check(&mut c).await, live, "the same after the failover");
    }
}

async fn bad_input_about_principals_is_refused_clearly(shape: Shape) {
    let (_d, service) = start(shape, &[]);
    let mut c = service.client().await;
    let p = unique("bad");
    let q = unique("other");
    let mine = login(&mut c, &p, "laptop").await;
    let theirs = login(&mut c, &q, "laptop").await;
    let list = |principal: &str, token: &str, size: u32| ListSessionsRequest {
        principal: principal.into(),
        page_size: size,
        page_token: token.into(),
        display_attributes: vec![],
    };
    for (request, what) in [
        (list("", "", 10), "empty principal"),
        (
            list(&"p".repeat(257), "", 10),
            "principal over the length limit",
        ),
        (list(&p, "garbage", 10), "a forged page token"),
        (list(&p, "", 101), "a page size over 100"),
    ] {
        let err = c.list_sessions(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(!err.message().is_empty());
    }
    // A genuine token of another principal is refused too.
    login(&mut c, &q, "phone").await;
    let page = c.list_sessions(list(&q, "", 1)).await.unwrap().into_inner();
    assert!(!page.next_page_token.is_empty());
    let err = c
        .list_sessions(list(&p, &page.next_page_token, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A handle of another principal: NOT_FOUND, and it is untouched.
    let err = c
        .revoke_session(RevokeSessionRequest {
            principal: p.clone(),
            handle: handle(&theirs),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(get(&mut c, &theirs, Consistency::Strong).await, Ok(()));
    let err = c
        .revoke_session(RevokeSessionRequest {
            principal: p.clone(),
            handle: "not a handle".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // except_id of another principal keeps nothing of this one's; a malformed one is refused.
    let err = c
        .revoke_sessions(RevokeSessionsRequest {
            principal: p.clone(),
            except_id: Some("nope".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let all = c
        .revoke_sessions(RevokeSessionsRequest {
            principal: p.clone(),
            except_id: Some(theirs.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.revoked, 1);
    assert_eq!(
        get(&mut c, &mine, Consistency::Strong).await,
        Err(Code::NotFound)
    );
    assert_eq!(get(&mut c, &theirs, Consistency::Strong).await, Ok(()));
}

/// A session stored by an earlier version: key `vs:{<43-char id>}`, format 1.
fn legacy_session(principal: &str) -> (String, Vec<u8>) {
    use base64::Engine;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).unwrap();
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut blob = vec![1u8];
    for field in [1u64, now, now, 600_000, 0] {
        blob.extend_from_slice(&field.to_be_bytes());
    }
    blob.extend_from_slice(&(principal.len() as u32).to_be_bytes());
    blob.extend_from_slice(principal.as_bytes());
    blob.extend_from_slice(&1u32.to_be_bytes());
    for part in [&b"cart"[..], b"3 items"] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    (id, blob)
}

async fn ids_of_the_first_form_keep_working(shape: Shape) {
    let (d, service) = start(shape, &[]);
    let mut c = service.client().await;
    let p = unique("old");
    let (id, blob) = legacy_session(&p);
    let key = format!("vs:{{{id}}}");
    let slot: u16 = d
        .primary(0)
        .cli(&["CLUSTER", "KEYSLOT", &key])
        .trim()
        .parse()
        .unwrap_or(0);
    let owner = if shape == Shape::Cluster {
        (slot as usize / 5461).min(2)
    } else {
        0
    };
    let mut cmd = std::process::Command::new("valkey-cli");
    let node = d.primary(owner);
    cmd.args(["-h", "127.0.0.1", "-p", &node.port.to_string()]);
    if let Some(tls) = &d.tls {
        cmd.args(["--tls", "--cacert", &tls.ca.display().to_string()]);
    }
    // -x: the last argument from stdin, binary-safe.
    let mut child = cmd
        .args(["-x", "SET", &key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&blob).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    node.cli(&["PEXPIRE", &key, "600000"]);

    let got = c
        .get(GetRequest {
            id: id.clone(),
            consistency: Consistency::Strong as i32,
        })
        .await
        .expect("a 43-character id still reads")
        .into_inner()
        .session
        .unwrap();
    assert_eq!(got.attributes, attrs(&[("cart", "3 items")]));
    let put = c
        .put(PutRequest {
            id: id.clone(),
            set: attrs(&[("seen", "yes")]),
            expected_version: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!((put.id.as_str(), put.version), (id.as_str(), 2));
    // Rotating it moves it into its principal's slot, where it is listed from then on.
    assert!(
        list_all(&mut c, &p, 10).await.is_empty(),
        "old ids are not indexed"
    );
    let rotated = c
        .rotate(RotateRequest {
            id: id.clone(),
            expected_version: Some(2),
            principal: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(rotated.id.len(), 55);
    assert_eq!(rotated.principal, p);
    assert_eq!(
        get(&mut c, &id, Consistency::Strong).await,
        Err(Code::NotFound)
    );
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 1);
}

/// The login that moves a session to its principal's slot takes two steps on two shards. Cut it
/// between them (the principal's primary stops taking writes): the old id is unusable at once,
/// nothing is lost, and retrying the same login completes it; nobody else can complete it.
#[tokio::test]
async fn a_login_cut_between_its_two_steps_leaves_no_old_id_and_completes_on_retry() {
    let (d, service) = start(Shape::Cluster, &[]);
    let mut c = service.client().await;
    let p = unique("cut");
    let shard_of = |id: &str| -> usize {
        let slot: usize = d
            .primary(0)
            .cli(&["CLUSTER", "KEYSLOT", &id[..11]])
            .trim()
            .parse()
            .unwrap();
        (slot / 5461).min(2)
    };
    let principal_shard = shard_of(&login(&mut c, &p, "desktop").await);
    let anonymous = loop {
        let s = create(
            &mut c,
            CreateRequest {
                attributes: attrs(&[("cart", "5 items")]),
                ..Default::default()
            },
        )
        .await;
        if shard_of(&s.id) != principal_shard {
            break s;
        }
    };
    let login_as = |principal: &str| RotateRequest {
        id: anonymous.id.clone(),
        expected_version: None,
        principal: Some(principal.into()),
        ..Default::default()
    };
    let paused = d
        .primary(principal_shard)
        .cli(&["CLIENT", "PAUSE", "2500", "WRITE"]);
    assert_eq!(paused.trim(), "OK");
    let cut = c.rotate(login_as(&p)).await.unwrap_err();
    assert!(
        matches!(cut.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{cut:?}"
    );
    for consistency in [Consistency::Strong, Consistency::Eventual] {
        assert_eq!(
            get(&mut c, &anonymous.id, consistency).await,
            Err(Code::NotFound),
            "the old id is unusable from the first step"
        );
    }
    tokio::time::sleep(Duration::from_millis(2700)).await;
    // Someone holding the old id cannot complete the login into another principal.
    let hijack = c.rotate(login_as("mallory@example.com")).await.unwrap_err();
    assert_eq!(hijack.code(), Code::NotFound);
    let done = c
        .rotate(login_as(&p))
        .await
        .expect("retrying the same login completes it")
        .into_inner()
        .session
        .unwrap();
    assert_eq!(done.attributes, anonymous.attributes, "nothing lost");
    assert_eq!(done.principal, p);
    assert_eq!(shard_of(&done.id), principal_shard);
    assert_eq!(get(&mut c, &done.id, Consistency::Strong).await, Ok(()));
    assert_eq!(list_all(&mut c, &p, 10).await.len(), 2);
}
