//! Credentials towards Valkey: an ACL user and password from a file on every
//! connection (replicas and reconnects included), a rotated password, a wrong one, and
//! ElastiCache IAM tokens rotating under load against a real valkey-server whose ACL password is
//! changed to each new token.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aws_credential_types::Credentials;
use session_proto::{Consistency, CreateRequest, GetRequest};
use session_store::iam::{TokenRequest, token};
use test_support::{Deployment, Service, Shape, Valkey, attrs, create, wait_until};
use tonic::Code;

fn acl_user(node: &Valkey, user: &str, passwords: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", user, "reset", "on", "~vs:*", "+@all"];
    let rules: Vec<String> = passwords.iter().map(|p| format!(">{p}")).collect();
    args.extend(rules.iter().map(String::as_str));
    let out = node.cli(&args);
    assert_eq!(out.trim(), "OK", "ACL SETUSER: {out}");
}

fn connections_of(node: &Valkey, user: &str) -> usize {
    node.cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains(&format!(" user={user} ")))
        .count()
}

#[tokio::test]
async fn a_password_file_authenticates_every_connection_and_its_rotation_is_picked_up() {
    let d = Deployment::start(Shape::Serverless);
    for node in &d.nodes {
        acl_user(node, "app", &["first-password"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "first-password\n").unwrap();
    let file_s = file.display().to_string();
    let service = d.start_service(&[
        ("VALKEY_USERNAME", "app"),
        ("VALKEY_PASSWORD_FILE", &file_s),
    ]);
    let mut c = service.client().await;
    let s = create(
        &mut c,
        CreateRequest {
            attributes: attrs(&[("user", "ada")]),
            ..Default::default()
        },
    )
    .await;
    let eventual = GetRequest {
        id: s.id.clone(),
        consistency: Consistency::Eventual as i32,
    };
    wait_until(
        "the replica holds the session",
        Duration::from_secs(10),
        || d.replica(0).cli(&["DBSIZE"]).trim() == "1",
    );
    let replica_gets = d.replica(0).calls("get");
    for _ in 0..20 {
        c.get(eventual.clone()).await.unwrap();
    }
    assert!(
        d.replica(0).calls("get") > replica_gets,
        "replica reads, as user app"
    );
    assert!(connections_of(d.primary(0), "app") >= 1);
    assert!(
        connections_of(d.replica(0), "app") >= 1,
        "the replica connection authenticated"
    );

    // Rotate: the new password in the file and in Valkey, the old one revoked, every connection
    // dropped; the reconnects read the file again.
    std::fs::write(&file, "second-password\n").unwrap();
    for node in &d.nodes {
        acl_user(node, "app", &["second-password"]);
        node.cli(&["CLIENT", "KILL", "USER", "app"]);
    }
    let start = Instant::now();
    loop {
        if c.get(eventual.clone()).await.is_ok()
            && connections_of(d.primary(0), "app") >= 1
            && connections_of(d.replica(0), "app") >= 1
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reconnected with the rotated password"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..50 {
        c.get(eventual.clone())
            .await
            .expect("serving with the rotated password");
    }
    assert!(
        !service.logs().contains("first-password") && !service.logs().contains("second-password")
    );
}

#[tokio::test]
async fn a_wrong_password_is_not_serving_and_says_authentication_failed() {
    let valkey = Valkey::standalone();
    acl_user(&valkey, "app", &["right"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "wrong").unwrap();
    let file_s = file.display().to_string();
    let service = Service::start(
        &valkey.url(),
        &[
            ("VALKEY_USERNAME", "app"),
            ("VALKEY_PASSWORD_FILE", &file_s),
        ],
    );
    wait_until(
        "the log to say authentication failed",
        Duration::from_secs(10),
        || service.logs().contains("authentication failed"),
    );
    let mut c = service.client().await;
    let err = c.create(CreateRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        service.metric("valkey_up", ""),
        0.0,
        "health reports Valkey down"
    );
}

/// Keeps the ACL user's passwords at the tokens signed in the last few seconds (and the next
/// one), the way ElastiCache accepts any unexpired token: a service that signs fresh tokens
/// keeps connecting, one that reuses an old token is refused.
fn rotate_acl_passwords(
    valkey_port: u16,
    request: TokenRequest,
    creds: Credentials,
    stop: Arc<AtomicBool>,
) {
    let node = Valkey::existing(valkey_port);
    while !stop.load(Ordering::Relaxed) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let tokens: Vec<String> = (now - 4..=now + 1)
            .map(|s| token(&request, &creds, UNIX_EPOCH + Duration::from_secs(s)).unwrap())
            .collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        acl_user(&node, &request.user, &refs);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_tokens_are_refreshed_and_used_for_reconnects_with_zero_failed_rpcs() {
    let valkey = Valkey::standalone();
    let request = TokenRequest {
        user: "iam-user".into(),
        cache_name: "sessions-cache".into(),
        region: "eu-west-1".into(),
        serverless: true,
    };
    let (key_id, secret) = ("AKIDTESTTEST", "test/secret/key/for/a/local/valkey/only");
    let creds = Credentials::new(key_id, secret, None, None, "test");
    let stop = Arc::new(AtomicBool::new(false));
    let updater = {
        let (port, request, creds, stop) =
            (valkey.port, request.clone(), creds.clone(), stop.clone());
        std::thread::spawn(move || rotate_acl_passwords(port, request, creds, stop))
    };
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().display().to_string();
    let service = Service::start(
        &valkey.url(),
        &[
            ("VALKEY_SESSIONS_VALKEY__AUTH", "iam"),
            ("VALKEY_USERNAME", "iam-user"),
            ("VALKEY_SESSIONS_VALKEY__IAM__CACHE_NAME", "sessions-cache"),
            ("VALKEY_SESSIONS_VALKEY__IAM__REGION", "eu-west-1"),
            ("VALKEY_SESSIONS_VALKEY__IAM__REFRESH_INTERVAL", "2s"),
            // The standard chain's first source: the environment (ECS gives the task role).
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", &home_s),
        ],
    );
    let mut c = service.client().await;
    let start = Instant::now();
    loop {
        if c.create(CreateRequest::default()).await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "connected with an IAM token:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Load for 9 s; every 3 s every connection is dropped, so the reconnects must present a
    // token signed within the last few seconds.
    let refreshes_before = service.metric("valkey_iam_token_refreshes_total", "");
    let (mut ok, mut failed) = (0u64, Vec::new());
    let began = Instant::now();
    let mut next_kill = Duration::from_secs(3);
    let mut kills = 0;
    while began.elapsed() < Duration::from_secs(9) {
        if began.elapsed() >= next_kill {
            valkey.cli(&["CLIENT", "KILL", "USER", "iam-user"]);
            next_kill += Duration::from_secs(3);
            kills += 1;
        }
        match c.create(CreateRequest::default()).await {
            Ok(r) => {
                let id = r.into_inner().session.unwrap().id;
                match c
                    .get(GetRequest {
                        id,
                        consistency: Consistency::Strong as i32,
                    })
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            Err(e) => failed.push(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refreshes = service.metric("valkey_iam_token_refreshes_total", "") - refreshes_before;
    stop.store(true, Ordering::Relaxed);
    updater.join().unwrap();
    println!(
        "IAM: {ok} create+get rounds, {} failed, {refreshes} token refreshes, {kills} forced reconnects",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "no failed RPC across the rotations: {failed:?}"
    );
    assert!(kills >= 2);
    assert!(
        refreshes >= 3.0,
        "at least three tokens signed during the run ({refreshes})"
    );
    assert!(
        connections_of(&valkey, "iam-user") >= 1,
        "reconnected as the IAM user"
    );
    // An old token is refused: the window is real, so the service really used fresh ones.
    let old = token(
        &request,
        &creds,
        SystemTime::now() - Duration::from_secs(60),
    )
    .unwrap();
    let refused = valkey.cli(&["AUTH", "iam-user", &old]);
    assert!(refused.contains("WRONGPASS"), "{refused}");
    assert!(
        !service.logs().contains("X-Amz-Signature"),
        "tokens are never logged"
    );
}
