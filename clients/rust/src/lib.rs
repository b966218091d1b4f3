//! A [`tower_sessions`](https://docs.rs/tower-sessions) `SessionStore` on valkey-sessions: axum
//! (or any tower) applications keep their session middleware and swap one line:
//!
//! ```ignore
//! let store = ValkeySessionStore::builder("http://sessions.internal:50051").connect_lazy()?;
//! let layer = SessionManagerLayer::new(store).with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
//! ```
//!
//! How it maps (docs/adapters.md in the repository):
//!
//! * **Ids**: tower-sessions' 128-bit random `Id` (22 characters of URL-safe base64) is proposed
//!   to the service at Create (`proposed_id`), so the cookie holds the service's id and every
//!   later request is one round trip. The service writes it with NX: a taken id is never
//!   overwritten; the store then draws another `Id` (the framework allows the store to change it).
//! * **Data**: each key of the session is one service attribute holding its JSON value, so
//!   sessions written by the other adapters (Express, Django, gorilla) read back here.
//! * **Expiry**: the record's expiry date (`Expiry::OnInactivity(d)`: now + d) becomes the
//!   session's idle timeout, clamped to 1 s ..= `max_idle_timeout` (24 h by default, the
//!   service's default maximum). The service refreshes it on reads.
//! * **Concurrency**: `load` remembers the version and the values it read; `save` sends only the
//!   keys that changed, with `expected_version`. On a conflict it re-reads and merges (a key
//!   changed by this request only wins, one changed by the other request only is kept, arrays and
//!   objects changed by both are merged item by item) and retries, so two concurrent requests that
//!   each add an item keep both. A true conflict (both set one scalar to different values) is an
//!   error, never a silent loss.
//! * **Login**: `Session::cycle_id` deletes the old id and creates the new one (the framework's
//!   own cycle); the old cookie is NOT_FOUND afterwards.
//! * **Faults**: the service unreachable is an `Error::Backend` (the middleware answers 500), never
//!   an empty session; a session deleted elsewhere (logout on another device) loads as `None`
//!   (the framework starts a new anonymous session) and a save to it is not resurrected.
//! * **Storage full**: a write Valkey refused for memory is an `Error::Backend` that
//!   [`is_storage_full`] recognises; a handler that saves itself answers 503 with
//!   [`STORAGE_FULL_MESSAGE`] and the user's cookie and session stay as they were.

use std::{collections::HashMap, fmt, time::Duration};

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;
use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_types::StatusExt;
use tower_sessions_core::{
    SessionStore,
    session::{Id, Record},
    session_store::{Error, Result},
};

/// Generated session.v1 messages and client.
#[allow(missing_docs, clippy::all)]
/// The session.v1 API (messages and client), from the workspace's one compilation of the proto.
pub use session_proto as proto;

use proto::{
    Consistency, CreateRequest, DeleteRequest, GetRequest, PutRequest,
    session_service_client::SessionServiceClient,
};

/// The key under which `load` keeps what it read (version and values) in the record, for
/// `save`'s delta and merge. Reserved: applications must not use it; it is never stored.
pub const BASE_KEY: &str = "__valkey_sessions_base";

/// How many times a save re-reads and merges after a version conflict before giving up.
const CONFLICT_RETRIES: usize = 8;

type Client = SessionServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Options of a [`ValkeySessionStore`].
pub struct Builder {
    url: String,
    token: Option<String>,
    token_over_plaintext: bool,
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    max_idle: Duration,
    strong_reads: bool,
    timeout: Duration,
}

impl Builder {
    /// A bearer token (the caller identity; it decides the tenant the sessions live in). A
    /// credential: with an `http://` URL, `connect_lazy` refuses it unless
    /// [`Self::allow_token_over_plaintext`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sends the token over a plaintext (`http://`) connection: only for a loopback sidecar or
    /// a network that encrypts by itself (a service mesh).
    pub fn allow_token_over_plaintext(mut self) -> Self {
        self.token_over_plaintext = true;
        self
    }

    /// PEM CA certificates the service's certificate must chain to (`https://` URLs; default:
    /// the system roots).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// A client certificate and key (PEM) for mutual TLS.
    pub fn client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Longest idle timeout sent to the service (default 24 h, the service's default maximum);
    /// longer framework expiries (e.g. `Expiry::OnSessionEnd`'s two weeks) are clamped to it.
    pub fn max_idle_timeout(mut self, max: Duration) -> Self {
        self.max_idle = max;
        self
    }

    /// Read from replicas (eventual consistency) instead of the primary. Off by default: a web
    /// app expects to read its own writes on the next request.
    pub fn eventual_reads(mut self) -> Self {
        self.strong_reads = false;
        self
    }

    /// Deadline of each call (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn endpoint(&self) -> std::result::Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| format!("{}: {e}", self.url))?
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        if !self.url.starts_with("https://") {
            if self.ca_pem.is_some() || self.identity.is_some() {
                return Err("TLS material is configured but the URL is not https://".into());
            }
            return Ok(endpoint);
        }
        let mut tls = match &self.ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))
    }

    /// The store, connecting on first use (and reconnecting after failures) so an application
    /// can start while the service is still coming up.
    pub fn connect_lazy(self) -> std::result::Result<ValkeySessionStore, String> {
        if self.token.is_some() && !self.url.starts_with("https://") && !self.token_over_plaintext {
            return Err(
                "a bearer token needs TLS (an https:// URL): it would travel in clear; \
                        allow_token_over_plaintext() only where the network encrypts"
                    .into(),
            );
        }
        let bearer = match &self.token {
            Some(t) => {
                Bearer(Some(format!("Bearer {t}").parse().map_err(|_| {
                    "the token is not valid header text".to_string()
                })?))
            }
            None => Bearer(None),
        };
        let channel = self.endpoint()?.connect_lazy();
        Ok(ValkeySessionStore {
            client: SessionServiceClient::with_interceptor(channel, bearer),
            max_idle: self.max_idle,
            strong_reads: self.strong_reads,
        })
    }
}

/// A tower-sessions store on valkey-sessions. Cheap to clone (one shared HTTP/2 channel).
#[derive(Clone)]
pub struct ValkeySessionStore {
    client: Client,
    max_idle: Duration,
    strong_reads: bool,
}

impl fmt::Debug for ValkeySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValkeySessionStore")
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl ValkeySessionStore {
    /// Options for a service at `url` (`http://host:port`, or `https://` for TLS).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            token: None,
            token_over_plaintext: false,
            ca_pem: None,
            identity: None,
            max_idle: Duration::from_secs(24 * 3600),
            strong_reads: true,
            timeout: Duration::from_secs(2),
        }
    }

    fn idle_timeout(&self, expiry: OffsetDateTime) -> prost_types::Duration {
        let left = (expiry - OffsetDateTime::now_utc()).whole_milliseconds();
        let ms = (left.max(1000) as u128).min(self.max_idle.as_millis()) as u64;
        // Whole seconds: the service's bounds are in seconds and sub-second idle times are noise.
        let secs = ms.div_ceil(1000);
        prost_types::Duration {
            seconds: secs as i64,
            nanos: 0,
        }
    }

    async fn get(&self, id: &str) -> std::result::Result<Option<proto::Session>, Status> {
        let consistency = if self.strong_reads {
            Consistency::Strong
        } else {
            Consistency::Eventual
        };
        match self
            .client
            .clone()
            .get(GetRequest {
                id: id.to_owned(),
                consistency: consistency as i32,
            })
            .await
        {
            Ok(r) => Ok(r.into_inner().session),
            // Unknown, expired, deleted, or not an id the service accepts: no session.
            Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
            Err(s) => Err(s),
        }
    }
}

fn backend(what: &str, status: Status) -> Error {
    let full = status.code() == Code::ResourceExhausted
        && status.get_details_error_info().is_some_and(|info| {
            info.reason == proto::ErrorReason::ValkeyOutOfMemory.reason()
                && info.domain == proto::ERROR_DOMAIN
        });
    let prefix = if full { STORAGE_FULL } else { "" };
    Error::Backend(format!(
        "{prefix}valkey-sessions {what}: {:?}: {}",
        status.code(),
        status.message()
    ))
}

/// Starts the `Error::Backend` message of a write the service refused because Valkey is at its
/// memory limit (RESOURCE_EXHAUSTED, reason `VALKEY_OUT_OF_MEMORY`): nothing was written.
pub const STORAGE_FULL: &str = "session storage is full: ";

/// What to tell a user whose change was refused for memory (the body of a 503).
pub const STORAGE_FULL_MESSAGE: &str = "session storage is full: your change was not saved and your session is intact; try again later";

/// Whether a session operation failed because the service's Valkey is out of memory, so the
/// application can answer 503 with [`STORAGE_FULL_MESSAGE`] instead of tower-sessions' 500.
///
/// tower-sessions' middleware saves after the handler and answers a failed save with an empty
/// 500, so a handler that wants the 503 saves itself (`session.save().await`) and maps the error
/// with this; a 5xx from the handler is never saved over, and the cookie is left alone.
pub fn is_storage_full(err: &tower_sessions_core::session::Error) -> bool {
    matches!(err, tower_sessions_core::session::Error::Store(Error::Backend(m)) if m.starts_with(STORAGE_FULL))
}

/// What `load` read: the version and the decoded values.
struct Base {
    version: u64,
    data: HashMap<String, Value>,
}

impl Base {
    fn to_value(&self) -> Value {
        serde_json::json!({ "v": self.version, "d": self.data })
    }

    fn from_value(v: &Value) -> Option<Self> {
        Some(Self {
            version: v.get("v")?.as_u64()?,
            data: serde_json::from_value(v.get("d")?.clone()).ok()?,
        })
    }
}

fn decode(attributes: HashMap<String, Vec<u8>>) -> Result<HashMap<String, Value>> {
    attributes
        .into_iter()
        .map(|(name, bytes)| {
            serde_json::from_slice(&bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Decode(format!("attribute {name:?} is not JSON: {e}")))
        })
        .collect()
}

fn encode(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))
}

/// The record's data without the reserved base entry.
fn app_data(record: &Record) -> HashMap<String, Value> {
    record
        .data
        .iter()
        .filter(|(k, _)| k.as_str() != BASE_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Both concurrent requests set one scalar to different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// Three-way merge of one value changed concurrently: `None` is "absent". `Err` is a true
/// conflict (both sides set a scalar to different values).
pub fn merge(
    base: Option<&Value>,
    theirs: Option<&Value>,
    mine: Option<&Value>,
) -> std::result::Result<Option<Value>, Conflict> {
    if mine == base {
        return Ok(theirs.cloned());
    }
    if theirs == base || theirs == mine {
        return Ok(mine.cloned());
    }
    match (base, theirs, mine) {
        (base, Some(Value::Object(t)), Some(Value::Object(m))) => {
            let empty = serde_json::Map::new();
            let b = match base {
                Some(Value::Object(b)) => b,
                _ => &empty,
            };
            let mut out = serde_json::Map::new();
            let keys: std::collections::BTreeSet<&String> =
                b.keys().chain(t.keys()).chain(m.keys()).collect();
            for k in keys {
                if let Some(v) = merge(b.get(k), t.get(k), m.get(k))? {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        (base, Some(Value::Array(t)), Some(Value::Array(m))) => {
            let b: &[Value] = match base {
                Some(Value::Array(b)) => b,
                _ => &[],
            };
            // Items this request removed leave; items it added join the other side's list.
            let mut out: Vec<Value> = t
                .iter()
                .filter(|v| !b.contains(v) || m.contains(v))
                .cloned()
                .collect();
            for v in m {
                if !b.contains(v) && !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Some(Value::Array(out)))
        }
        _ => Err(Conflict),
    }
}

#[async_trait]
impl SessionStore for ValkeySessionStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        let data = app_data(record);
        let attributes = data
            .iter()
            .map(|(k, v)| Ok((k.clone(), encode(v)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        for _ in 0..3 {
            let request = CreateRequest {
                attributes: attributes.clone(),
                idle_timeout: Some(self.idle_timeout(record.expiry_date)),
                proposed_id: Some(record.id.to_string()),
                ..Default::default()
            };
            match self.client.clone().create(request).await {
                Ok(r) => {
                    let version = r.into_inner().session.map_or(1, |s| s.version);
                    record
                        .data
                        .insert(BASE_KEY.into(), Base { version, data }.to_value());
                    return Ok(());
                }
                // Taken (or, with a probability below 1e-10, refused as not random-looking):
                // draw another id; the framework lets the store change it.
                Err(s)
                    if matches!(s.code(), Code::AlreadyExists | Code::InvalidArgument)
                        && s.message().contains("proposed_id") =>
                {
                    record.id = Id::default();
                }
                Err(s) => return Err(backend("Create", s)),
            }
        }
        Err(Error::Backend(
            "valkey-sessions Create: no free id after 3 tries".into(),
        ))
    }

    /// Over 80 lines on purpose: the optimistic-concurrency loop (base, delta, Put, on conflict
    /// re-read and merge) is one algorithm, documented at the top of this file.
    async fn save(&self, record: &Record) -> Result<()> {
        let id = record.id.to_string();
        let mine = app_data(record);
        let idle = self.idle_timeout(record.expiry_date);
        // Without a base (the application cleared the session), read what is stored.
        let mut base = match record.data.get(BASE_KEY).and_then(Base::from_value) {
            Some(base) => base,
            None => match self.get(&id).await.map_err(|s| backend("Get", s))? {
                Some(s) => Base {
                    version: s.version,
                    data: decode(s.attributes)?,
                },
                None => return Ok(()),
            },
        };
        let mut target = mine;
        for _ in 0..CONFLICT_RETRIES {
            let mut set = HashMap::new();
            for (k, v) in &target {
                if base.data.get(k) != Some(v) {
                    set.insert(k.clone(), encode(v)?);
                }
            }
            let remove: Vec<String> = base
                .data
                .keys()
                .filter(|k| !target.contains_key(*k))
                .cloned()
                .collect();
            let put = PutRequest {
                id: id.clone(),
                set,
                remove,
                expected_version: Some(base.version),
                idle_timeout: Some(idle),
                principal: None,
                ..Default::default()
            };
            match self.client.clone().put(put).await {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (logout elsewhere, revoked, expired): not resurrected.
                Err(s) if s.code() == Code::NotFound => {
                    tracing::debug!("session ended while the request ran; the save is dropped");
                    return Ok(());
                }
                Err(s)
                    if s.code() == Code::Aborted
                        && s.get_error_details().error_info().is_some_and(|i| {
                            i.reason == proto::ErrorReason::VersionConflict.reason()
                        }) =>
                {
                    let Some(current) = self.get(&id).await.map_err(|s| backend("Get", s))? else {
                        return Ok(());
                    };
                    let theirs = decode(current.attributes)?;
                    let keys: std::collections::BTreeSet<String> = base
                        .data
                        .keys()
                        .chain(theirs.keys())
                        .chain(target.keys())
                        .cloned()
                        .collect();
                    let mut merged = HashMap::new();
                    for k in keys {
                        let v = merge(base.data.get(&k), theirs.get(&k), target.get(&k)).map_err(|Conflict| {
                            Error::Backend(format!(
                                "concurrent requests set session key {k:?} to different values; this request's change was not saved"
                            ))
                        })?;
                        if let Some(v) = v {
                            merged.insert(k, v);
                        }
                    }
                    target = merged;
                    base = Base {
                        version: current.version,
                        data: theirs,
                    };
                }
                Err(s) => return Err(backend("Put", s)),
            }
        }
        Err(Error::Backend(format!(
            "valkey-sessions Put: still conflicting after {CONFLICT_RETRIES} merges"
        )))
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(session) = self
            .get(&id.to_string())
            .await
            .map_err(|s| backend("Get", s))?
        else {
            return Ok(None);
        };
        let data = decode(session.attributes)?;
        let expiry_date = session
            .expires_at
            .and_then(|t| {
                OffsetDateTime::from_unix_timestamp_nanos(
                    t.seconds as i128 * 1_000_000_000 + t.nanos as i128,
                )
                .ok()
            })
            .unwrap_or_else(OffsetDateTime::now_utc);
        let mut record_data = data.clone();
        record_data.insert(
            BASE_KEY.into(),
            Base {
                version: session.version,
                data,
            }
            .to_value(),
        );
        Ok(Some(Record {
            id: *id,
            data: record_data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        match self
            .client
            .clone()
            .delete(DeleteRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::InvalidArgument => Ok(()),
            Err(s) => Err(backend("Delete", s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_keep_both_sides_changes() {
        let (b, t, m) = (json!(["a"]), json!(["a", "b"]), json!(["a", "c"]));
        assert_eq!(
            merge(Some(&b), Some(&t), Some(&m)),
            Ok(Some(json!(["a", "b", "c"])))
        );
        let removed = json!([]);
        assert_eq!(
            merge(Some(&b), Some(&t), Some(&removed)),
            Ok(Some(json!(["b"])))
        );
        let (b, t, m) = (json!({"x": 1}), json!({"x": 1, "y": 2}), json!({"x": 3}));
        assert_eq!(
            merge(Some(&b), Some(&t), Some(&m)),
            Ok(Some(json!({"x": 3, "y": 2})))
        );
        assert_eq!(merge(None, None, Some(&json!(1))), Ok(Some(json!(1))));
        assert_eq!(
            merge(Some(&json!(1)), None, Some(&json!(1))),
            Ok(None),
            "deleted by them"
        );
        assert_eq!(
            merge(Some(&json!(1)), Some(&json!(2)), Some(&json!(3))),
            Err(Conflict)
        );
        assert_eq!(
            merge(None, Some(&json!(2)), Some(&json!(2))),
            Ok(Some(json!(2)))
        );
    }

    #[test]
    fn a_token_needs_tls_unless_the_network_encrypts() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let refused = ValkeySessionStore::builder("http://127.0.0.1:1")
                .token("a-secret-token")
                .connect_lazy()
                .unwrap_err();
            assert!(refused.contains("needs TLS"), "{refused}");
            ValkeySessionStore::builder("http://127.0.0.1:1")
                .token("a-secret-token")
                .allow_token_over_plaintext()
                .connect_lazy()
                .unwrap();
        });
    }

    #[test]
    fn idle_timeouts_are_clamped() {
        // A lazy channel spawns its worker: build the store inside a runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(async {
            ValkeySessionStore::builder("http://127.0.0.1:1")
                .max_idle_timeout(Duration::from_secs(3600))
                .connect_lazy()
                .unwrap()
        });
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            store.idle_timeout(now - time::Duration::hours(1)).seconds,
            1
        );
        assert_eq!(
            store.idle_timeout(now + time::Duration::weeks(2)).seconds,
            3600
        );
        let s = store
            .idle_timeout(now + time::Duration::minutes(30))
            .seconds;
        assert!((1799..=1800).contains(&s), "{s}");
    }
}
