//! Runs a store script on the node that owns its keys: EVALSHA, and after NOSCRIPT (a node that
//! restarted, or a replica promoted since the scripts were loaded) SCRIPT LOAD on that node and
//! EVALSHA again. fred's `evalsha_with_reload` loads the script with SCRIPT LOAD on every
//! node of the cluster instead, which makes its router wait for every connection's replies: one
//! stopped (SIGSTOP) or dead node then stalls the whole client.

use std::sync::Arc;

use fred::{
    clients::Client,
    error::{Error as FredError, ErrorKind},
    interfaces::LuaInterface,
    types::{FromValue, Value, scripts::Script},
};

use super::valkey::Valkey;

/// SCRIPT LOAD of each script on every primary, so the first call is not a NOSCRIPT round trip.
/// A primary that cannot be reached is skipped: it gets the script on first use (EVAL).
pub(super) async fn load(valkey: &Arc<Valkey>, scripts: &[&Script]) -> Result<(), FredError> {
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
pub(super) async fn run<R: FromValue>(
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
