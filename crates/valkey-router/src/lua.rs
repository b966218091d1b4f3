//! Runs a store script on the node that owns its keys: EVALSHA, and after NOSCRIPT (a node that
//! restarted, or a replica promoted since the scripts were loaded) SCRIPT LOAD on that node and
//! EVALSHA again. fred's `evalsha_with_reload` loads the script with SCRIPT LOAD on every
//! node of the cluster instead, which makes its router wait for every connection's replies: one
//! stopped (SIGSTOP) or dead node then stalls the whole client.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use fred::{
    clients::Client,
    error::{Error as FredError, ErrorKind},
    interfaces::LuaInterface,
    types::{FromValue, Value, scripts::Script},
};

use crate::valkey::Valkey;

/// SCRIPT LOAD of each script on every primary, so the first call is not a NOSCRIPT round trip.
/// A primary that cannot be reached is skipped: it gets the script on first use (EVAL).
pub async fn load(valkey: &Arc<Valkey>, scripts: &[&Script]) -> Result<(), FredError> {
    let table = valkey.table();
    for shard in table.shards() {
        let Ok(node) = valkey.nodes.get(&shard.primary) else {
            continue;
        };
        if !node.connected() {
            continue;
        }
        for script in scripts {
            if let Some(lua) = script.lua() {
                node.client().script_load::<String, _>(lua.clone()).await?;
            }
        }
    }
    Ok(())
}

/// EVALSHA, and after NOSCRIPT a SCRIPT LOAD on the same node and EVALSHA again, on the
/// connection `client` routes it to; the keys share one hash tag (store/keys.rs), so they are all
/// on `client`'s node. Not EVAL: the service's ACL user may not run ad-hoc scripts
/// (docs/security-infra.md).
pub async fn run<R: FromValue>(
    client: &Client,
    script: &Script,
    keys: &[String],
    args: Vec<Value>,
) -> Result<R, FredError> {
    match client
        .evalsha(script.sha1().clone(), keys.to_vec(), args.clone())
        .await
    {
        Err(e) if e.details().starts_with("NOSCRIPT") => {
            let lua = script
                .lua()
                .ok_or_else(|| FredError::new(ErrorKind::Unknown, "script without its source"))?;
            client.script_load::<String, _>(lua.clone()).await?;
            client
                .evalsha(script.sha1().clone(), keys.to_vec(), args)
                .await
        }
        result => result,
    }
}

/// [`run`] for a script whose last key, a principal's index, only sessions with a principal need
/// (put, delete): while the slot migrates, a command naming an index that does not exist is
/// refused with TRYAGAIN until the migration ends, so after a TRYAGAIN the script runs again
/// without it (`narrow`). A script that finds it needs the index after all answers `-6`, which
/// comes back as TRYAGAIN, and the next attempt names it again.
pub async fn run_index_optional<R: FromValue>(
    client: &Client,
    script: &Script,
    keys: &[String],
    args: Vec<Value>,
    narrow: &AtomicBool,
) -> Result<R, FredError> {
    let narrowed = narrow.load(Ordering::Relaxed) && keys.len() > 1;
    let named = if narrowed {
        &keys[..keys.len() - 1]
    } else {
        keys
    };
    match run::<Value>(client, script, named, args).await {
        Err(e) if e.details().starts_with("TRYAGAIN") && keys.len() > 1 => {
            narrow.store(true, Ordering::Relaxed);
            Err(e)
        }
        Ok(reply) if needs_index(&reply) => {
            narrow.store(false, Ordering::Relaxed);
            Err(FredError::new(
                ErrorKind::Unknown,
                "TRYAGAIN the session has a principal: the command needs its index",
            ))
        }
        result => result.and_then(R::from_value),
    }
}

/// A script's "run me again with the index" answer: `-6`, or `{-6}`.
fn needs_index(reply: &Value) -> bool {
    let code = match reply {
        Value::Array(items) => items.first(),
        other => Some(other),
    };
    code.and_then(Value::as_i64) == Some(-6)
}
