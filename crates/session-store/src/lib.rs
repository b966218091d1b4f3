//! Valkey storage of sessions: one key per session, one round trip per operation. Commands reach
//! their node through valkey-router; this crate knows sessions, scripts, the codec, principals,
//! the near cache and how the service authenticates to Valkey.

mod agreement;
mod client;
mod codec;
pub mod config;
mod credentials;
mod durability;
pub mod iam;
pub mod near_cache;
mod principals;
mod secret;
pub mod tracking;

pub use client::{ClientError, build};
pub use principals::{Listed, Page, SessionEntry};
pub use secret::{Keys, Secret};
pub use valkey_router::{Probe, Valkey};

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use fred::{
    prelude::{Client, KeysInterface},
    types::{Expiration, FromValue, SetOptions, Value, scripts::Script},
};
use tracing::Instrument;

use session_core::{Error, Session, SessionId, Tenant, now_ms};
use valkey_router::{Lane, RouteError};

use crate::config::ReadFrom;

/// Which node answered a Get; exported as a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSource {
    /// A read replica.
    Replica,
    /// The primary, asked directly.
    Primary,
    /// The primary, after the replica missed or failed.
    Fallback,
    /// This instance's near cache.
    Cache,
}

impl ReadSource {
    /// Every source, in discriminant order.
    pub const ALL: [Self; 4] = [Self::Replica, Self::Primary, Self::Fallback, Self::Cache];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replica => "replica",
            Self::Primary => "primary",
            Self::Fallback => "fallback",
            Self::Cache => "cache",
        }
    }
}

/// A Put delta, already validated by the caller.
#[derive(Debug, Default)]
pub struct Delta {
    /// Attributes to add or replace.
    pub set: Vec<(String, Vec<u8>)>,
    /// Attribute names to remove.
    pub remove: Vec<String>,
    /// Required current version, if any.
    pub expected_version: Option<u64>,
    /// New inactivity timeout, if any.
    pub idle_timeout_ms: Option<u64>,
    /// New principal, if any.
    pub principal: Option<String>,
}

/// The Lua scripts, loaded once per primary and called by SHA (EVAL on the key's node where it
/// does not know them yet: valkey-router's lua.rs).
struct Scripts {
    put: Script,
    touch: Script,
    create: Script,
    delete: Script,
    rotate: Script,
    seal: Script,
    unseal: Script,
    list: Script,
    revoke: Script,
    revoke_all: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            put: Script::from_lua(include_str!("scripts/put.lua")),
            touch: Script::from_lua(include_str!("scripts/touch.lua")),
            create: Script::from_lua(include_str!("scripts/create.lua")),
            delete: Script::from_lua(include_str!("scripts/delete.lua")),
            rotate: Script::from_lua(include_str!("scripts/rotate.lua")),
            seal: Script::from_lua(include_str!("scripts/seal.lua")),
            unseal: Script::from_lua(include_str!("scripts/unseal.lua")),
            list: Script::from_lua(include_str!("scripts/list.lua")),
            revoke: Script::from_lua(include_str!("scripts/revoke.lua")),
            revoke_all: Script::from_lua(include_str!("scripts/revoke_all.lua")),
        }
    }

    fn all(&self) -> [&Script; 10] {
        [
            &self.put,
            &self.touch,
            &self.create,
            &self.delete,
            &self.rotate,
            &self.seal,
            &self.unseal,
            &self.list,
            &self.revoke,
            &self.revoke_all,
        ]
    }
}

/// Sessions in Valkey.
#[derive(Clone)]
pub struct SessionStore {
    valkey: Arc<Valkey>,
    read_from: ReadFrom,
    scripts: Arc<Scripts>,
    secret_key: String,
    secrets: Arc<agreement::Keyring>,
    near: Option<Arc<near_cache::NearCache>>,
    /// Set on a store for durable writes: how long a write waits for a replica (WAIT).
    durable: Option<Duration>,
}

impl SessionStore {
    /// A store over a (possibly not yet connected) Valkey. Every operation names its tenant,
    /// whose key space and limits it uses; `key_prefix` is where the deployment's secret lives.
    pub fn new(valkey: Arc<Valkey>, read_from: ReadFrom, key_prefix: &str) -> Self {
        Self {
            valkey,
            read_from,
            scripts: Arc::new(Scripts::new()),
            secret_key: format!("{key_prefix}_secret"),
            secrets: Arc::new(agreement::Keyring::new(
                Vec::new(),
                format!("{key_prefix}_secrets"),
                config::DEFAULT_AGREEMENT_INTERVAL,
            )),
            near: None,
            durable: None,
        }
    }

    /// The same store with the deployment's secrets configured (newest first) instead of kept in
    /// Valkey, its agreement with the other instances checked every `interval`.
    pub fn with_secrets(mut self, configured: Vec<Secret>, interval: Duration) -> Self {
        self.secrets = Arc::new(agreement::Keyring::new(
            configured,
            format!("{}s", self.secret_key),
            interval,
        ));
        self
    }

    /// Whether the deployment's secrets are configured (and so checked from start-up on).
    pub fn secrets_configured(&self) -> bool {
        self.secrets.configured()
    }

    /// The same store, but every write it makes is acknowledged only once a replica has it too
    /// (waiting up to `timeout`); otherwise the operation fails with [`Error::NotReplicated`].
    pub fn durable(&self, timeout: Duration) -> Self {
        Self {
            durable: Some(timeout),
            ..self.clone()
        }
    }

    /// Serves eventual Gets from `cache` while it is coherent.
    pub fn with_near_cache(mut self, cache: Arc<near_cache::NearCache>) -> Self {
        self.near = Some(cache);
        self
    }

    /// Drops a key from the near cache at once: this instance changed it.
    pub(crate) fn forget(&self, key: &str) {
        if let Some(near) = &self.near {
            near.invalidate(key);
        }
    }

    /// The connection to Valkey, for health probes, tracking and shutdown.
    pub fn valkey(&self) -> &Arc<Valkey> {
        &self.valkey
    }

    /// Loads the scripts on every primary so the first Put is not a NOSCRIPT round trip.
    pub async fn load_scripts(&self) -> Result<(), Error> {
        valkey_router::load_scripts(&self.valkey, &self.scripts.all())
            .await
            .map_err(map_err)
    }

    /// Stores a new session; fails only if the id is taken (a CSPRNG collision, never in practice).
    #[tracing::instrument(level = "debug", name = "valkey.create", skip_all, fields(session = %session.id.fingerprint()))]
    pub async fn create(&self, tenant: &Tenant, session: &Session) -> Result<bool, Error> {
        let key = tenant.keys.session(&session.id);
        let blob = Bytes::from(codec::encode(session));
        let expires = session.expires_at_ms() as i64;
        let (key, blob) = (&key, &blob);
        let reply: Option<String> = self
            .keyed_write("set", key, Option::is_some, |c| async move {
                c.set(
                    key,
                    blob.clone(),
                    Some(Expiration::PXAT(expires)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
            })
            .await?;
        Ok(reply.is_some())
    }

    /// Reads a session: from the near cache when it holds it (never for `strong`), else from
    /// Valkey (see [`Self::fetch`]).
    pub async fn get(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        strong: bool,
    ) -> Result<(Option<Arc<Session>>, ReadSource), Error> {
        let key = tenant.keys.session(id);
        if !strong && let Some(session) = self.near.as_ref().and_then(|n| n.get(&key)) {
            return Ok((Some(session), ReadSource::Cache));
        }
        // Boxed: a hit's future stays small, and only a miss pays for the Valkey path's state.
        Box::pin(self.fetch(key, id, strong)).await
    }

    /// Reads a session from Valkey. `strong` forces the primary; otherwise replicas serve it
    /// where configured, and a replica miss or error falls back to the primary
    /// (read-your-writes). What it reads fills the near cache.
    #[tracing::instrument(level = "debug", name = "valkey.get", skip_all, fields(session = %id.fingerprint()))]
    async fn fetch(
        &self,
        key: String,
        id: &SessionId,
        strong: bool,
    ) -> Result<(Option<Arc<Session>>, ReadSource), Error> {
        let generation = self.near.as_ref().map(|n| n.generation(&key));
        let k = &key;
        let primary = || self.keyed("get", k, |c| async move { c.get(k).await });
        let (blob, source) = if strong || self.read_from == ReadFrom::Primary {
            let blob: Option<Bytes> = primary().await?;
            (blob, ReadSource::Primary)
        } else {
            // A miss may be replication lag and an error may be a dead replica: either way the
            // primary has the answer.
            let replica = self
                .valkey
                .replica(k, |c| async move { c.get::<Option<Bytes>, _>(k).await });
            match timed("get_replica", replica).await {
                Ok(Some(blob)) => (Some(blob), ReadSource::Replica),
                Ok(None) | Err(_) => {
                    let blob: Option<Bytes> = primary().await?;
                    (blob, ReadSource::Fallback)
                }
            }
        };
        let size = blob.as_ref().map_or(0, Bytes::len);
        let session = match blob {
            Some(blob) if blob.first() == Some(&codec::MOVED) => None,
            Some(blob) => Some(codec::decode(id.clone(), &blob)?),
            None => None,
        };
        // A replica may still hold a key whose time is up: expiry is the primary's decision.
        let live = session
            .filter(|s| s.expires_at_ms() > now_ms())
            .map(Arc::new);
        if let (Some(near), Some(generation), Some(session)) = (&self.near, generation, &live) {
            near.insert(&key, session, size, generation);
        }
        Ok((live, source))
    }

    /// Applies a delta atomically with one script call.
    #[tracing::instrument(level = "debug", name = "valkey.put", skip_all, fields(session = %id.fingerprint()))]
    pub async fn put(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        delta: Delta,
    ) -> Result<Session, Error> {
        let mut keys = vec![tenant.keys.session(id)];
        let handle = match id.tag() {
            Some(tag) => {
                keys.push(tenant.keys.index(&tag));
                id.handle()
            }
            None => String::new(),
        };
        let limits = &tenant.limits;
        let mut args: Vec<Value> = Vec::with_capacity(8 + 2 * delta.set.len() + delta.remove.len());
        args.push((now_ms() as i64).into());
        args.push(match delta.expected_version {
            Some(v) => Value::from(v.to_string()),
            None => Value::from(""),
        });
        args.push((limits.max_session_bytes as i64).into());
        args.push((limits.max_attributes as i64).into());
        args.push(match delta.idle_timeout_ms {
            Some(ms) => Value::from(ms as i64),
            None => Value::from(""),
        });
        args.push(match delta.principal {
            Some(p) => Value::from(format!("={p}")),
            None => Value::from(""),
        });
        args.push(handle.into());
        args.push((delta.set.len() as i64).into());
        for (name, value) in delta.set {
            args.push(name.into());
            args.push(Bytes::from(value).into());
        }
        args.extend(delta.remove.into_iter().map(Value::from));

        self.forget(&keys[0]);
        let reply: Vec<Value> = self
            .eval_write_index_optional(
                "evalsha_put",
                &self.scripts.put,
                &keys,
                args,
                |r: &Vec<Value>| script_wrote(r),
            )
            .await?;
        // Again after the write: a read that raced it must not leave the old value cached.
        self.forget(&keys[0]);
        let code = reply.first().and_then(Value::as_i64);
        let number = || reply.get(1).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
        match code {
            Some(1) => match reply.get(1) {
                Some(Value::Bytes(blob)) => codec::decode(id.clone(), blob),
                Some(Value::String(blob)) => codec::decode(id.clone(), blob.as_bytes()),
                other => Err(Error::Internal(format!("put script returned {other:?}"))),
            },
            Some(0) => Err(Error::NotFound),
            Some(-1) => Err(Error::VersionConflict {
                expected: delta.expected_version.unwrap_or_default(),
                current: number(),
            }),
            Some(-2) => Err(limits.too_large(number() as usize)),
            Some(-3) => Err(limits.too_many(number() as usize)),
            _ => Err(Error::Internal(format!("put script returned {reply:?}"))),
        }
    }

    /// Refreshes a session's expiry in the background after a read; failures only cost the
    /// refresh, which the next read in the second half of the idle window tries again.
    pub fn touch_in_background(&self, tenant: &Tenant, id: &SessionId, indexed: bool) {
        let store = self.clone();
        let mut keys = vec![tenant.keys.session(id)];
        self.forget(&keys[0]);
        let mut args = vec![Value::from(now_ms() as i64)];
        if let (true, Some(tag)) = (indexed, id.tag()) {
            keys.push(tenant.keys.index(&tag));
            args.push(id.handle().into());
        }
        let keys_after = keys[0].clone();
        let span = tracing::debug_span!("valkey.touch", session = %id.fingerprint());
        tokio::spawn(
            async move {
                let result: Result<i64, _> = store
                    .eval("evalsha_touch", &store.scripts.touch, &keys, args)
                    .await;
                store.forget(&keys_after);
                let outcome = match &result {
                    Ok(1) => "refreshed",
                    Ok(_) => "skipped",
                    Err(_) => "error",
                };
                metrics::counter!("session_touches_total", "outcome" => outcome).increment(1);
                if let Err(e) = result {
                    tracing::warn!(error = %e, "expiry refresh failed");
                }
            }
            .instrument(span),
        );
    }

    /// Deletes a session; returns whether it existed.
    #[tracing::instrument(level = "debug", name = "valkey.delete", skip_all, fields(session = %id.fingerprint()))]
    pub async fn delete(&self, tenant: &Tenant, id: &SessionId) -> Result<bool, Error> {
        let key = tenant.keys.session(id);
        self.forget(&key);
        let Some(tag) = id.tag() else {
            let k = &key;
            let removed: i64 = self
                .keyed_write("del", k, |n| *n > 0, |c| async move { c.del(k).await })
                .await?;
            self.forget(&key);
            return Ok(removed > 0);
        };
        let existed: i64 = self
            .eval_write_index_optional(
                "evalsha_delete",
                &self.scripts.delete,
                &[key.clone(), tenant.keys.index(&tag)],
                vec![Value::from(id.handle())],
                |n| *n > 0,
            )
            .await?;
        self.forget(&key);
        Ok(existed > 0)
    }

    /// Runs a command on the primary that owns `key`, following cluster redirections and failing
    /// fast while that primary is known down (valkey-router); every keyed primary command goes
    /// through here.
    async fn keyed<T, F, Fut>(&self, command: &'static str, key: &str, call: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, fred::error::Error>>,
    {
        let (value, _) = timed(command, self.valkey.keyed(key, Lane::Shared, call)).await?;
        Ok(value)
    }

    /// [`Self::keyed`] for a write: on a durable store, once `wrote` says the reply is of a write
    /// that happened, waits for a replica on the connection that carried it.
    async fn keyed_write<T, F, Fut>(
        &self,
        command: &'static str,
        key: &str,
        wrote: impl Fn(&T) -> bool,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, fred::error::Error>>,
    {
        let Some(timeout) = self.durable else {
            return self.keyed(command, key, call).await;
        };
        let (value, client) = timed(command, self.valkey.keyed(key, Lane::Durable, call)).await?;
        if wrote(&value) {
            // The WAIT shares the RPC's deadline: what is left of it, if less than the timeout.
            durability::replicated(&client, timeout, self.valkey.remaining()).await?;
        }
        Ok(value)
    }

    /// A write that may revoke sessions: where reads go to replicas, once `revoked` says it did,
    /// waits (best effort) until the shard's replica has it, so a revoked id is NOT_FOUND on the
    /// replica read path too once the call returns. A durable store waits anyway (`wrote`).
    async fn keyed_revoking<T, F, Fut>(
        &self,
        command: &'static str,
        key: &str,
        wrote: impl Fn(&T) -> bool,
        revoked: impl Fn(&T) -> bool,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, fred::error::Error>>,
    {
        if self.durable.is_some() {
            return self.keyed_write(command, key, wrote, call).await;
        }
        if self.read_from != ReadFrom::Replica {
            return self.keyed(command, key, call).await;
        }
        // The durable lane: WAIT blocks its connection, and must follow the write on it.
        let (value, client) = timed(command, self.valkey.keyed(key, Lane::Durable, call)).await?;
        if revoked(&value) {
            durability::revocation_replicated(&client, self.valkey.remaining()).await;
        }
        Ok(value)
    }

    /// Runs a store script on the node of its keys (which share one hash tag).
    async fn eval<T: FromValue>(
        &self,
        command: &'static str,
        script: &Script,
        keys: &[String],
        args: Vec<Value>,
    ) -> Result<T, Error> {
        let args = &args;
        self.keyed(command, &keys[0], |c| async move {
            valkey_router::run_script(&c, script, keys, args.clone()).await
        })
        .await
    }

    /// [`Self::eval`] of a writing script, durable on a durable store (see `keyed_write`).
    async fn eval_write<T: FromValue>(
        &self,
        command: &'static str,
        script: &Script,
        keys: &[String],
        args: Vec<Value>,
        wrote: impl Fn(&T) -> bool,
    ) -> Result<T, Error> {
        let args = &args;
        self.keyed_write(command, &keys[0], wrote, |c| async move {
            valkey_router::run_script(&c, script, keys, args.clone()).await
        })
        .await
    }

    /// [`Self::eval_write`] of a script whose last key, the index, only sessions with a principal
    /// need (valkey-router's lua.rs: left out after a TRYAGAIN while the slot migrates).
    async fn eval_write_index_optional<T: FromValue>(
        &self,
        command: &'static str,
        script: &Script,
        keys: &[String],
        args: Vec<Value>,
        wrote: impl Fn(&T) -> bool,
    ) -> Result<T, Error> {
        let (args, narrow) = (&args, &std::sync::atomic::AtomicBool::new(false));
        self.keyed_write(command, &keys[0], wrote, |c| async move {
            valkey_router::run_script_index_optional(&c, script, keys, args.clone(), narrow).await
        })
        .await
    }

    /// [`Self::eval`] of a script that may revoke sessions (see `keyed_revoking`).
    async fn eval_revoking<T: FromValue>(
        &self,
        command: &'static str,
        script: &Script,
        keys: &[String],
        args: Vec<Value>,
        wrote: impl Fn(&T) -> bool,
        revoked: impl Fn(&T) -> bool,
    ) -> Result<T, Error> {
        let args = &args;
        self.keyed_revoking(command, &keys[0], wrote, revoked, |c| async move {
            valkey_router::run_script(&c, script, keys, args.clone()).await
        })
        .await
    }

    /// PINGs every node; the health probe.
    pub async fn probe(&self) -> Probe {
        self.valkey.probe().await
    }
}

/// Whether a store script's reply (`{code, ...}`) says it wrote: code 1.
fn script_wrote(reply: &[Value]) -> bool {
    reply.first().and_then(Value::as_i64) == Some(1)
}

/// Runs one Valkey command, recording its latency and, on failure, its error kind.
async fn timed<T, E: Into<RouteError>>(
    command: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    let start = std::time::Instant::now();
    let result = call.await;
    metrics::histogram!("valkey_command_duration_seconds", "command" => command)
        .record(start.elapsed().as_secs_f64());
    result.map_err(|e| {
        let error = match e.into() {
            RouteError::Fred(e) => map_err(e),
            RouteError::Down { what, retry_after } => Error::Unreachable { what, retry_after },
        };
        let kind = match error {
            Error::Unavailable(_) => "unavailable",
            Error::Unreachable { .. } => "fail_fast",
            Error::OutOfMemory(_) => "out_of_memory",
            _ => "other",
        };
        metrics::counter!("valkey_command_errors_total", "command" => command, "kind" => kind)
            .increment(1);
        error
    })
}

/// The one mapping of fred errors into the domain.
fn map_err(e: fred::error::Error) -> Error {
    use fred::error::ErrorKind;
    match e.kind() {
        // Said plainly: a wrong password must not look like a generic timeout in the logs.
        _ if valkey_router::is_auth_failure(&e) => Error::Unavailable(valkey_router::describe(&e)),
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Cluster
        | ErrorKind::Routing
        | ErrorKind::Tls => Error::Unavailable(e.to_string()),
        // A write at `maxmemory` under `noeviction`; from a script, the error names the script
        // after the same text.
        _ if is_out_of_memory(&e) => Error::OutOfMemory(e.details().to_owned()),
        _ if e.details().starts_with("CLUSTERDOWN")
            || e.details().starts_with("LOADING")
            || e.details().starts_with("TRYAGAIN")
            || e.details().starts_with("MASTERDOWN") =>
        {
            Error::Unavailable(e.to_string())
        }
        _ => Error::Internal(e.to_string()),
    }
}

/// Whether Valkey refused a command for memory (`OOM command not allowed when used memory >
/// 'maxmemory'`).
fn is_out_of_memory(e: &fred::error::Error) -> bool {
    e.details().starts_with("OOM ") || e.details().contains("OOM command not allowed")
}

#[cfg(test)]
mod tests {
    use super::ReadSource;

    #[test]
    fn an_oom_refusal_is_out_of_memory_not_internal() {
        use fred::error::{Error as FredError, ErrorKind};
        for text in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "ERR Error running script (call to f_0123): @user_script:12: OOM command not allowed when used memory > 'maxmemory'.",
        ] {
            let mapped = super::map_err(FredError::new(ErrorKind::Unknown, text));
            assert!(
                matches!(mapped, session_core::Error::OutOfMemory(_)),
                "{text}: {mapped:?}"
            );
        }
        let other = super::map_err(FredError::new(ErrorKind::Unknown, "ERR wrong number"));
        assert!(matches!(other, session_core::Error::Internal(_)));
    }

    #[test]
    fn read_sources_are_listed_in_discriminant_order() {
        // Metric handles are kept in an array indexed by `source as usize`.
        for (i, source) in ReadSource::ALL.iter().enumerate() {
            assert_eq!(*source as usize, i, "{}", source.as_str());
        }
        // A new variant stops this match from compiling: it belongs in ALL too.
        match ReadSource::Cache {
            ReadSource::Replica
            | ReadSource::Primary
            | ReadSource::Fallback
            | ReadSource::Cache => {}
        }
    }
}
