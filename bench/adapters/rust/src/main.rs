//! `adapter-bench-app --store valkey-sessions --url http://127.0.0.1:50051`
//! `adapter-bench-app --store redis --url redis://127.0.0.1:6379`
//!
//! The same axum app on either store: `GET /init` writes a small session (a user object and a
//! 10-item cart), `GET /read` reads it and renders a line of HTML ("read the session, render").
//! Listens on a free loopback port and prints it on stdout.

use axum::{Router, http::StatusCode, response::Html, routing::get};
use serde_json::{Value, json};
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::{RedisStore, fred::prelude::*};
use tower_sessions_valkey_sessions::ValkeySessionStore;

type Failure = (StatusCode, String);

fn fail(e: impl std::fmt::Display) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn init(session: Session) -> Result<&'static str, Failure> {
    session
        .insert("user", json!({"name": "bench", "roles": ["reader"]}))
        .await
        .map_err(fail)?;
    session
        .insert("cart", (0..10).collect::<Vec<u32>>())
        .await
        .map_err(fail)?;
    Ok("ok")
}

async fn read(session: Session) -> Result<Html<String>, Failure> {
    let user: Value = session.get("user").await.map_err(fail)?.unwrap_or_default();
    let cart: Vec<u32> = session.get("cart").await.map_err(fail)?.unwrap_or_default();
    Ok(Html(format!(
        "<html><body><p>{}</p><p>{} items</p></body></html>",
        user["name"].as_str().unwrap_or("-"),
        cart.len()
    )))
}

async fn serve<S: SessionStore + Clone>(store: S) {
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
    let app = Router::new()
        .route("/init", get(init))
        .route("/read", get(read))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    axum::serve(listener, app).await.unwrap();
}

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| {
            panic!("usage: adapter-bench-app --store valkey-sessions|redis --url URL [--pool N]")
        })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url");
    match arg(&args, "--store").as_str() {
        "valkey-sessions" => serve(ValkeySessionStore::builder(url).connect_lazy().unwrap()).await,
        "redis" => {
            // The store's README/example setup: a fred Pool (6 connections there; --pool N here).
            let size = args
                .iter()
                .position(|a| a == "--pool")
                .and_then(|i| args.get(i + 1))
                .map_or(6, |n| n.parse().unwrap());
            let pool = Pool::new(Config::from_url(&url).unwrap(), None, None, None, size).unwrap();
            pool.init().await.unwrap();
            serve(RedisStore::new(pool)).await
        }
        other => panic!("unknown store {other}"),
    }
}
