//! Model-based chaos: several clients run random Creates, Gets, Puts (with and without
//! expected_version), Deletes and Rotates against the service on the 3-shard TLS cluster while a
//! fault injector kills and restarts primaries and replicas, freezes nodes (SIGSTOP), migrates
//! slots, silences the service's connections to a node and black-holes a node (iptables in the
//! test's own network namespace: faults that send no RST). Every answer is checked against a
//! model of what must be true:
//! * no Get returns attribute values that were never written to that session;
//! * an acknowledged write is never lost: a strong Get started after the acknowledgement sees
//!   its version or a later one, and no two acknowledged writes of a session share a version;
//!   unless the test chose to lose it, by killing its primary (after freezing replication) and
//!   the write was not durable: then the lost versions must be the latest non-durable ones;
//! * a compare-and-set Put acknowledged is `expected_version + 1`; a rotation's version is above
//!   every write acknowledged before it started;
//! * a deleted or rotated-away id never comes back (strong Gets).
//!
//! * an eventual Get sees every write acknowledged more than [`STALENESS`] (3 s) before it;
//! * a Delete or Rotate whose answer did not say what it did is settled by a strong read
//!   ([`SETTLE`] after it), never dropped from the checks; a status other than the expected
//!   refusals (ABORTED, NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED) is a violation.
//!
//! Half the clients go through a second instance with the near cache on (the cloud default).
//! Only the sessions of the shard being lost on purpose are exempt from the checks while the
//! loss is re-read. Every fault kind runs at least once (in an order the seed shuffles, then at
//! random), and every LosePrimary must have lost acknowledged non-durable writes.
//!
//! Seeded: the seed is printed; `CHAOS_SEED=<n>` replays the same operations and faults (the
//! timing of real processes differs from run to run). `CHAOS_DURATION=10m` for a long run by
//! hand (default 40 s, the CI run, extended until every kind has run). See docs/reliability.md
//! for the figures of a long run.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::SmallRng, seq::SliceRandom};
use session_proto::caller::Client;
use session_proto::{
    Consistency, CreateRequest, DeleteRequest, Durability, GetRequest, PutRequest, RotateRequest,
    Session,
};
use test_support::{Deployment, netns::NetNs, wait_until};
use tonic::Code;
use tonic_types::StatusExt;

/// An acknowledged write of a session.
#[derive(Debug, Clone)]
struct Ack {
    end: Instant,
    version: u64,
    durable: bool,
}

/// An id a rotation ended.
#[derive(Debug, Clone)]
struct Retired {
    id: String,
    /// When the rotation was acknowledged.
    at: Instant,
    durable: bool,
}

/// A session and its successors under Rotate: one history of versions.
#[derive(Debug)]
struct Lineage {
    /// The id it lives under now.
    id: String,
    /// The version the current id started at (1, or the version of the rotation that made it):
    /// earlier writes went to ids rotated away, and a rotation rewrites the data, with its own
    /// durability.
    id_since: u64,
    /// Ids rotated away.
    retired: Vec<Retired>,
    deleted: Option<Instant>,
    /// Whether that delete was durable.
    deleted_durable: bool,
    /// An operation changed its identity with an unknown outcome (a Delete or Rotate that
    /// failed): its existence is no longer checked.
    uncertain: bool,
    /// Every value ever sent to it, acknowledged or not.
    written: HashSet<String>,
    acks: Vec<Ack>,
    /// Deletes and Rotates in flight: a Get may see their effect before they are acknowledged.
    pending: u32,
    /// When the last Delete or Rotate got its answer.
    settled_at: Option<Instant>,
    /// Operations in flight on it.
    busy: u32,
    /// Left alone by the clients while the injector finds out what a loss took from it.
    frozen: bool,
}

impl Lineage {
    fn live(&self) -> bool {
        self.deleted.is_none() && !self.uncertain && !self.frozen
    }

    /// Whether a Delete or Rotate ran during a Get that started at `start`.
    fn raced(&self, start: Instant) -> bool {
        self.pending > 0 || self.settled_at.is_some_and(|at| at > start)
    }

    fn required_before(&self, start: Instant) -> u64 {
        self.acks
            .iter()
            .filter(|a| a.end < start)
            .map(|a| a.version)
            .max()
            .unwrap_or(0)
    }
}

/// What is known, and what went wrong.
#[derive(Default)]
struct Model {
    lineages: Vec<Lineage>,
    by_id: HashMap<String, usize>,
    /// The slots of the shard whose writes the injector is losing on purpose: checks on its
    /// sessions wait until it has re-read what the loss took; the other shards stay checked.
    suspended: Vec<(u16, u16)>,
    violations: Vec<String>,
    ops: HashMap<&'static str, usize>,
    /// The longest RPC any client waited for, and what it was.
    slowest: (Duration, &'static str),
}

impl Model {
    fn count(&mut self, what: &'static str) {
        *self.ops.entry(what).or_default() += 1;
    }

    fn violation(&mut self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.push(what);
    }

    /// Counts a failed call; a status the service must never answer here is a violation.
    fn failed(&mut self, op: &'static str, e: &tonic::Status) {
        let what = outcome(op, e);
        if what == "other error" {
            self.violation(format!("{op} answered {:?}: {}", e.code(), e.message()));
        }
        self.count(what);
    }

    /// Settles a Delete or Rotate of `id` whose outcome the answer did not tell, by a strong
    /// read made after it: gone means it ended the id (the lineage ends there, a non-durable end);
    /// there means it did not; unreadable leaves the lineage unchecked from here.
    fn resolve_gone(&mut self, l: usize, id: &str, read: Result<Option<u64>, String>, op: &str) {
        let lineage = &mut self.lineages[l];
        if lineage.id != id || lineage.deleted.is_some() {
            // Another client rotated or deleted it meanwhile: its answer is the one that counts.
            return;
        }
        match read {
            Ok(None) => {
                lineage.deleted = Some(Instant::now());
                lineage.deleted_durable = false;
                *self
                    .ops
                    .entry("unsure outcomes resolved: ended")
                    .or_default() += 1;
            }
            Ok(Some(_)) => {
                *self
                    .ops
                    .entry("unsure outcomes resolved: not applied")
                    .or_default() += 1;
            }
            Err(e) => {
                lineage.uncertain = true;
                eprintln!("lineage {l}: the outcome of a {op} stays unknown: {e}");
                *self.ops.entry("unsure outcomes unresolved").or_default() += 1;
            }
        }
    }

    /// Whether lineage `l` lives on the shard being lost on purpose.
    fn suspended(&self, l: usize) -> bool {
        !self.suspended.is_empty() && on_slots(&self.lineages[l].id, &self.suspended)
    }

    fn live(&self) -> usize {
        self.lineages.iter().filter(|l| l.live()).count()
    }

    fn pick(&self, rng: &mut SmallRng) -> Option<usize> {
        let live: Vec<usize> = (0..self.lineages.len())
            .filter(|&i| self.lineages[i].live())
            .collect();
        (!live.is_empty()).then(|| live[rng.random_range(0..live.len())])
    }

    fn check_attributes(&mut self, l: usize, session: &Session, how: &str) {
        if let Some(w) = session.attributes.get("w") {
            let w = String::from_utf8_lossy(w).into_owned();
            if !self.lineages[l].written.contains(&w) {
                self.violation(format!(
                    "{how} Get of lineage {l} returned the value {w:?}, never written to it"
                ));
            }
        }
    }
}

type Shared = Arc<Mutex<Model>>;

/// How far behind an eventual Get (a replica, the near cache) may be: what was acknowledged
/// longer ago than this must be seen. Replicas lag by milliseconds; a replica frozen or cut off
/// for up to 1.5 s serves what it had until it catches up.
const STALENESS: Duration = Duration::from_secs(3);

/// How long after a failed call its commands may still run (the longest freeze, 1.5 s, and the
/// command timeout it was bounded by, with a margin).
const SETTLE: Duration = Duration::from_secs(3);

fn durability(rng: &mut SmallRng) -> (Durability, bool) {
    if rng.random_bool(0.5) {
        (Durability::Replica, true)
    } else {
        (Durability::Primary, false)
    }
}

/// One client: random operations until stopped.
async fn client(mut c: Client, model: Shared, mut rng: SmallRng, me: usize, stop: Arc<AtomicBool>) {
    let mut seq = 0u64;
    let mut known: HashMap<usize, u64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let token = format!("c{me}-{seq}");
        let roll = rng.random_range(0..100);
        let pick = {
            let mut m = model.lock().unwrap();
            let pick = m.pick(&mut rng);
            if let Some(l) = pick {
                m.lineages[l].busy += 1;
            }
            pick
        };
        // Deletes only once there are sessions to spare: the sessions of a shard killed on
        // purpose must be alive to show what the loss took.
        let spare = model.lock().unwrap().live() > 30;
        // The RPC's own time (a settling read after it is the test's, not the service's).
        let mut took = Duration::ZERO;
        let what = match (roll, pick) {
            (0..8, _) | (_, None) => {
                create(&mut c, &model, &mut rng, token, &mut took).await;
                "create"
            }
            (8..45, Some(l)) => {
                get(&mut c, &model, &mut rng, l, &mut took).await;
                "get"
            }
            (85..92, Some(l)) if spare => {
                delete(&mut c, &model, &mut rng, l, &mut took).await;
                "delete"
            }
            (45..92, Some(l)) => {
                put(&mut c, &model, &mut rng, l, token, &mut known, &mut took).await;
                "put"
            }
            (_, Some(l)) => {
                rotate(&mut c, &model, &mut rng, l, &mut known, &mut took).await;
                "rotate"
            }
        };
        {
            let mut m = model.lock().unwrap();
            if took > m.slowest.0 {
                m.slowest = (took, what);
            }
        }
        if let Some(l) = pick {
            model.lock().unwrap().lineages[l].busy -= 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..4))).await;
    }
}

async fn create(
    c: &mut Client,
    model: &Shared,
    rng: &mut SmallRng,
    token: String,
    took: &mut Duration,
) {
    let (durability, durable) = durability(rng);
    let rpc_started = Instant::now();
    let reply = c
        .create(CreateRequest {
            attributes: test_support::attrs(&[("w", &token)]),
            durability: durability as i32,
            ..Default::default()
        })
        .await;
    *took = rpc_started.elapsed();
    let mut m = model.lock().unwrap();
    match reply {
        Ok(r) => {
            m.count("create ok");
            let s = r.into_inner().session.unwrap();
            if m.by_id.contains_key(&s.id) {
                m.violation(format!("Create returned an id already in use: {}", s.id));
                return;
            }
            let index = m.lineages.len();
            m.by_id.insert(s.id.clone(), index);
            m.lineages.push(Lineage {
                id: s.id,
                id_since: s.version,
                retired: Vec::new(),
                deleted: None,
                deleted_durable: false,
                uncertain: false,
                written: HashSet::from([token]),
                acks: vec![Ack {
                    end: Instant::now(),
                    version: s.version,
                    durable,
                }],
                pending: 0,
                settled_at: None,
                busy: 0,
                frozen: false,
            });
        }
        Err(e) => m.failed("create", &e),
    }
}

async fn get(c: &mut Client, model: &Shared, rng: &mut SmallRng, l: usize, took: &mut Duration) {
    let strong = rng.random_bool(0.5);
    // Sometimes an id rotated away or deleted: it must stay gone.
    let (id, gone_since) = {
        let m = model.lock().unwrap();
        let lineage = &m.lineages[l];
        match lineage.retired.last() {
            Some(old) if rng.random_bool(0.2) => (old.id.clone(), Some(old.at)),
            _ => (lineage.id.clone(), lineage.deleted),
        }
    };
    let consistency = if strong {
        Consistency::Strong
    } else {
        Consistency::Eventual
    };
    let start = Instant::now();
    let rpc_started = Instant::now();
    let reply = c
        .get(GetRequest {
            id: id.clone(),
            consistency: consistency as i32,
        })
        .await;
    *took = rpc_started.elapsed();
    let mut m = model.lock().unwrap();
    let how = if strong { "strong" } else { "eventual" };
    match reply {
        Ok(r) => {
            m.count("get ok");
            let s = r.into_inner().session.unwrap();
            m.check_attributes(l, &s, how);
            let checked = strong && !m.suspended(l) && !m.lineages[l].uncertain;
            let raced = m.lineages[l].raced(start);
            // Eventual reads (replicas, the near cache) may lag, by at most STALENESS.
            let fresh_before = start.checked_sub(STALENESS).unwrap_or(start);
            let stale_ok = m.lineages[l].required_before(fresh_before);
            if !strong
                && !m.suspended(l)
                && !m.lineages[l].uncertain
                && !raced
                && gone_since.is_none()
                && s.version < stale_ok
            {
                m.violation(format!(
                    "lineage {l}: eventual Get returned version {} though version {stale_ok} was \
                     acknowledged more than {STALENESS:?} before it",
                    s.version
                ));
            }
            if checked && gone_since.is_some_and(|at| at < start) {
                m.violation(format!(
                    "lineage {l}: the id {id} came back (version {}) after its delete or rotation",
                    s.version
                ));
            }
            let required = m.lineages[l].required_before(start);
            if checked && !raced && gone_since.is_none() && s.version < required {
                m.violation(format!(
                    "lineage {l}: strong Get returned version {} after version {required} was \
                     acknowledged",
                    s.version
                ));
            }
        }
        Err(e) if e.code() == Code::NotFound => {
            m.count("get not found");
            let lineage = &m.lineages[l];
            // Eventual too: a replica's miss falls back to the primary.
            let checked = !m.suspended(l) && !lineage.uncertain;
            let current = lineage.id == id;
            let before = lineage.deleted.is_none_or(|at| at > start);
            // Deleted or rotated while the Get ran: not found is a possible answer.
            let racing = lineage.deleted.is_some() || lineage.raced(start);
            let required = lineage.required_before(start);
            if checked && current && before && !racing {
                m.violation(format!(
                    "lineage {l}: strong Get of its current id {id} found nothing; acknowledged \
                     version {required}"
                ));
            }
        }
        Err(e) => m.failed("get", &e),
    }
}

async fn put(
    c: &mut Client,
    model: &Shared,
    rng: &mut SmallRng,
    l: usize,
    token: String,
    known: &mut HashMap<usize, u64>,
    took: &mut Duration,
) {
    let (durability, durable) = durability(rng);
    let expected = known.get(&l).copied().filter(|_| rng.random_bool(0.6));
    let id = {
        let mut m = model.lock().unwrap();
        m.lineages[l].written.insert(token.clone());
        m.lineages[l].id.clone()
    };
    let start = Instant::now();
    let rpc_started = Instant::now();
    let reply = c
        .put(PutRequest {
            id,
            set: test_support::attrs(&[("w", &token)]),
            expected_version: expected,
            durability: durability as i32,
            ..Default::default()
        })
        .await;
    *took = rpc_started.elapsed();
    let mut m = model.lock().unwrap();
    match reply {
        Ok(r) => {
            m.count("put ok");
            let s = r.into_inner().session.unwrap();
            known.insert(l, s.version);
            m.check_attributes(l, &s, "put");
            if let Some(e) = expected {
                if s.version != e + 1 {
                    m.violation(format!(
                        "lineage {l}: Put with expected_version {e} acknowledged version {}",
                        s.version
                    ));
                }
            }
            let duplicate = m.lineages[l].acks.iter().any(|a| a.version == s.version);
            if duplicate && !m.suspended(l) {
                m.violation(format!(
                    "lineage {l}: two acknowledged writes with version {}",
                    s.version
                ));
            }
            let required = m.lineages[l].required_before(start);
            if s.version <= required && !m.suspended(l) {
                m.violation(format!(
                    "lineage {l}: Put acknowledged version {} after version {required} was",
                    s.version
                ));
            }
            m.lineages[l].acks.push(Ack {
                end: Instant::now(),
                version: s.version,
                durable,
            });
        }
        Err(e) => {
            if let Some(current) = e
                .get_details_error_info()
                .and_then(|i| i.metadata.get("current_version").cloned())
            {
                known.insert(l, current.parse().unwrap_or(0));
            }
            m.failed("put", &e);
        }
    }
}

async fn delete(c: &mut Client, model: &Shared, rng: &mut SmallRng, l: usize, took: &mut Duration) {
    let (durability, durable) = durability(rng);
    let id = {
        let mut m = model.lock().unwrap();
        m.lineages[l].pending += 1;
        m.lineages[l].id.clone()
    };
    let rpc_started = Instant::now();
    let reply = c
        .delete(DeleteRequest {
            id: id.clone(),
            durability: durability as i32,
        })
        .await;
    *took = rpc_started.elapsed();
    // Not acknowledged, or nothing there: a strong read says whether the id is gone.
    let unsure = match &reply {
        Ok(r) => !r.get_ref().existed,
        Err(e) => e.code() != Code::Aborted,
    };
    let resolved = if unsure {
        Some(resolve(c, &id, reply.is_err()).await)
    } else {
        None
    };
    let mut m = model.lock().unwrap();
    let lineage = &mut m.lineages[l];
    lineage.pending -= 1;
    lineage.settled_at = Some(Instant::now());
    match &reply {
        Ok(r) if r.get_ref().existed => {
            lineage.deleted = Some(Instant::now());
            lineage.deleted_durable = durable;
            m.count("delete ok");
        }
        Ok(_) => m.count("delete of nothing"),
        Err(e) => m.failed("delete", e),
    }
    if let Some(resolved) = resolved {
        m.resolve_gone(l, &id, resolved, "delete");
    }
}

async fn rotate(
    c: &mut Client,
    model: &Shared,
    rng: &mut SmallRng,
    l: usize,
    known: &mut HashMap<usize, u64>,
    took: &mut Duration,
) {
    let (durability, durable) = durability(rng);
    let expected = known.get(&l).copied().filter(|_| rng.random_bool(0.5));
    let id = {
        let mut m = model.lock().unwrap();
        m.lineages[l].pending += 1;
        m.lineages[l].id.clone()
    };
    let start = Instant::now();
    let rpc_started = Instant::now();
    let reply = c
        .rotate(RotateRequest {
            id: id.clone(),
            expected_version: expected,
            durability: durability as i32,
            ..Default::default()
        })
        .await;
    *took = rpc_started.elapsed();
    // Applied or not (or applied to a new id no one knows): a strong read of the old id says.
    let resolved = match &reply {
        Err(e) if e.code() != Code::Aborted && e.code() != Code::NotFound => {
            Some(resolve(c, &id, true).await)
        }
        _ => None,
    };
    let mut m = model.lock().unwrap();
    m.lineages[l].pending -= 1;
    m.lineages[l].settled_at = Some(Instant::now());
    match reply {
        Ok(r) => {
            m.count("rotate ok");
            let s = r.into_inner().session.unwrap();
            m.check_attributes(l, &s, "rotate");
            let required = m.lineages[l].required_before(start);
            if s.version <= required && !m.suspended(l) {
                m.violation(format!(
                    "lineage {l}: rotation to version {} after version {required} was \
                     acknowledged",
                    s.version
                ));
            }
            let now = Instant::now();
            m.by_id.insert(s.id.clone(), l);
            let lineage = &mut m.lineages[l];
            lineage.retired.push(Retired {
                id,
                at: now,
                durable,
            });
            lineage.id = s.id;
            lineage.id_since = s.version;
            lineage.acks.push(Ack {
                end: now,
                version: s.version,
                durable,
            });
            known.insert(l, s.version);
        }
        Err(e) => {
            m.failed("rotate", &e);
            if let Some(resolved) = resolved {
                m.resolve_gone(l, &id, resolved, "rotate");
            }
        }
    }
}

fn outcome(op: &'static str, e: &tonic::Status) -> &'static str {
    let not_replicated = e
        .get_details_error_info()
        .is_some_and(|i| i.reason == "NOT_REPLICATED");
    match (op, e.code()) {
        (_, _) if not_replicated => "not replicated",
        (_, Code::Aborted) => "aborted",
        (_, Code::NotFound) => "not found",
        (_, Code::Unavailable) => "unavailable",
        (_, Code::DeadlineExceeded) => "deadline",
        (op, code) => {
            eprintln!("{op}: unexpected {code:?}: {}", e.message());
            "other error"
        }
    }
}

/// The faults, one at a time, each healed before the next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// kill -9 of a primary; its replica is promoted; the old primary comes back as a replica.
    KillPrimary,
    /// The same after cutting the replica off (`Cluster::kill_primary`): the writes of that
    /// moment are lost unless durable, on purpose.
    LosePrimary,
    /// kill -9 of a replica, restarted a moment later.
    KillReplica,
    /// SIGSTOP of a node (shorter than the node timeout: no failover), then SIGCONT.
    Freeze,
    /// Resharding of the slot of a session to another shard, under load.
    MigrateSlot,
    /// The service's established connections to a node go silent (their packets dropped, no
    /// RST); new connections work. The service must notice and reconnect on its own.
    SilenceConnections,
    /// Every packet to and from a node dropped (clients and cluster bus), shorter than the
    /// node timeout (no failover), then the path heals.
    BlackHole,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::KillPrimary,
        Fault::LosePrimary,
        Fault::KillReplica,
        Fault::Freeze,
        Fault::SilenceConnections,
        Fault::BlackHole,
        Fault::MigrateSlot,
    ];
}

/// The deployment's shards as node-index pairs; which one is primary changes with failovers.
struct Cluster {
    d: Deployment,
    pairs: Vec<(usize, usize)>,
}

impl Cluster {
    fn roles(&self, shard: usize) -> (usize, usize) {
        let (a, b) = self.pairs[shard];
        if self.d.nodes[a].is_running() && self.d.nodes[a].cli(&["ROLE"]).starts_with("master") {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// Every node up and agreeing that the cluster is whole, every replica listed.
    fn settle(&self) {
        wait_until("the cluster to settle", Duration::from_secs(60), || {
            self.d.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && (n.cli(&["ROLE"]).starts_with("master")
                        || n.cli(&["INFO", "replication"])
                            .contains("master_link_status:up"))
            }) && (0..self.pairs.len()).all(|s| {
                let (p, r) = self.roles(s);
                self.d.nodes[p].cli(&["ROLE"]).starts_with("master")
                    && self.d.nodes[r].cli(&["ROLE"]).starts_with("slave")
            })
        });
    }

    /// The slots the node owns, from its own CLUSTER NODES line.
    fn slots_of(&self, node: usize) -> Vec<(u16, u16)> {
        let nodes = self.d.nodes[node].cli(&["CLUSTER", "NODES"]);
        let Some(line) = nodes.lines().find(|l| l.contains("myself")) else {
            return Vec::new();
        };
        line.split(' ')
            .skip(8)
            .filter(|f| !f.starts_with('['))
            .filter_map(|f| match f.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => f.parse().ok().map(|s| (s, s)),
            })
            .collect()
    }

    /// Kills the shard's primary; with `provoke_loss`, first makes sure the writes of the next
    /// moments cannot reach the replica: the replica is frozen and 48 MiB of filler written to
    /// the primary fill the sockets between them (loopback buffers grow to 32 + 4 MiB here), so
    /// what the clients write next waits in the primary's output buffer, and dies with it.
    /// (Pausing the replica's writes, CLIENT PAUSE WRITE, lost nothing in our runs.) Returns
    /// once the replica is promoted, with the killed node (to restart) and the filler key (to
    /// delete once healed).
    fn kill_primary(
        &mut self,
        shard: usize,
        provoke_loss: bool,
        before_kill: impl FnOnce(),
    ) -> (usize, Option<String>) {
        let (p, r) = self.roles(shard);
        let mut filler_key = None;
        if provoke_loss {
            self.d.nodes[r].pause();
            let slots = self.slots_of(p);
            let filler = (0..)
                .map(|n| format!("chaos-filler:{{{n}}}"))
                .find(|k| {
                    let slot = fred::util::redis_keyslot(k.as_bytes());
                    slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
                })
                .expect("a key of the shard");
            for _ in 0..48 {
                self.d.nodes[p].cli(&[
                    "EVAL",
                    "return redis.call('APPEND', KEYS[1], string.rep('x', 1048576))",
                    "1",
                    &filler,
                ]);
            }
            filler_key = Some(filler);
            std::thread::sleep(Duration::from_millis(700));
        }
        before_kill();
        self.d.nodes[p].kill();
        if provoke_loss {
            self.d.nodes[r].resume();
        }
        wait_until(
            "the replica to be promoted",
            Duration::from_secs(30),
            || self.d.nodes[r].cli(&["ROLE"]).starts_with("master"),
        );
        (p, filler_key)
    }

    /// Deletes a key wherever it lives (the other primaries answer MOVED).
    fn delete_everywhere(&self, key: &str) {
        for s in 0..self.pairs.len() {
            self.d.nodes[self.roles(s).0].cli(&["DEL", key]);
        }
    }

    fn migrate(&self, key: &str, rng: &mut SmallRng) -> Option<String> {
        let slot = self.d.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .to_string();
        let n: u16 = slot.parse().ok()?;
        let from = (0..self.pairs.len())
            .map(|s| self.roles(s).0)
            .find(|&p| self.slots_of(p).iter().any(|(a, b)| (*a..=*b).contains(&n)))?;
        let to = (0..self.pairs.len())
            .map(|s| self.roles(s).0)
            .filter(|&p| p != from)
            .nth(rng.random_range(0..self.pairs.len() - 1))?;
        let (src, dst) = (&self.d.nodes[from], &self.d.nodes[to]);
        let src_id = src.cli(&["CLUSTER", "MYID"]).trim().to_string();
        let dst_id = dst.cli(&["CLUSTER", "MYID"]).trim().to_string();
        dst.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id]);
        src.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id]);
        std::thread::sleep(Duration::from_millis(300));
        loop {
            let keys = src.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", "", "", "0", "5000", "KEYS"];
            let port = dst.port.to_string();
            args[2] = &port;
            args.extend(keys.iter().copied());
            let out = src.cli(&args);
            assert!(
                out.trim() == "OK" || out.trim() == "NOKEY",
                "MIGRATE: {out}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        for s in 0..self.pairs.len() {
            let (p, r) = self.roles(s);
            self.d.nodes[p].cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]);
            let _ = r;
        }
        Some(format!("slot {slot} from node {from} to node {to}"))
    }
}

/// A strong read of `id` that settles an operation whose answer did not say what it did. After a
/// failed call it first waits out [`SETTLE`]: a command the service gave up on may still sit in
/// a frozen node's socket and run when it resumes (another connection's read could overtake it).
async fn resolve(c: &mut Client, id: &str, failed: bool) -> Result<Option<u64>, String> {
    if failed {
        tokio::time::sleep(SETTLE).await;
    }
    read_strong(c, id).await
}

/// A strong read that retries while the service is unavailable: `Some(version)`, or `None` when
/// not found; `Err` when it never answered.
async fn read_strong(c: &mut Client, id: &str) -> Result<Option<u64>, String> {
    let mut last = String::new();
    for _ in 0..50 {
        let reply = c
            .get(GetRequest {
                id: id.to_owned(),
                consistency: Consistency::Strong as i32,
            })
            .await;
        match reply {
            Ok(r) => return Ok(Some(r.into_inner().session.unwrap().version)),
            Err(e) if e.code() == Code::NotFound => return Ok(None),
            Err(e) => {
                last = e.message().to_owned();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(last)
}

fn on_slots(id: &str, slots: &[(u16, u16)]) -> bool {
    let slot = fred::util::redis_keyslot(test_support::session_key(id).as_bytes());
    slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
}

/// Sets aside the sessions of the shard about to be killed: what the kill takes from them can
/// then be told from what later writes would have changed.
fn freeze(model: &Shared, slots: &[(u16, u16)]) {
    let mut m = model.lock().unwrap();
    for l in m.lineages.iter_mut().filter(|l| on_slots(&l.id, slots)) {
        l.frozen = true;
    }
}

/// After a loss on purpose: re-read every session the killed shard held and accept the loss of
/// its latest non-durable writes (and of non-durable deletes and rotations), and only those.
async fn rebase(
    c: &mut Client,
    model: &Shared,
    slots: &[(u16, u16)],
    window_start: Instant,
) -> usize {
    let mut lost_writes = 0;
    let on_shard = |id: &str| on_slots(id, slots);
    // Operations that were in flight on the frozen sessions finish first.
    let waiting = Instant::now();
    while model
        .lock()
        .unwrap()
        .lineages
        .iter()
        .any(|l| l.frozen && l.busy > 0)
        && waiting.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let candidates: Vec<(usize, String, Vec<Retired>)> = {
        let m = model.lock().unwrap();
        m.lineages
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.uncertain)
            .map(|(i, l)| {
                let retired = l
                    .retired
                    .iter()
                    .filter(|r| r.at >= window_start && on_shard(&r.id))
                    .cloned()
                    .collect();
                (i, l.id.clone(), retired)
            })
            .filter(|(_, id, retired): &(usize, String, Vec<Retired>)| {
                on_shard(id) || !retired.is_empty()
            })
            .collect()
    };
    *model
        .lock()
        .unwrap()
        .ops
        .entry("sessions re-read after a loss")
        .or_default() += candidates.len();
    'lineages: for (l, id, retired) in candidates {
        // Rotations away from the shard during the window: their delete of the old id may be
        // lost, and the old id back, unless the rotation was durable.
        for r in retired {
            let back = read_strong(c, &r.id).await;
            let mut m = model.lock().unwrap();
            if matches!(back, Ok(Some(_))) {
                if r.durable {
                    m.violation(format!(
                        "lineage {l}: the id {} of a durable rotation is back after the loss",
                        r.id
                    ));
                }
                m.lineages[l].uncertain = true;
                continue 'lineages;
            }
        }
        if !on_shard(&id) {
            continue;
        }
        let read_at = Instant::now();
        let found = read_strong(c, &id).await;
        let mut m = model.lock().unwrap();
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                m.violation(format!("lineage {l}: unreadable after the loss: {e}"));
                continue;
            }
        };
        let lineage = &mut m.lineages[l];
        // Changed while it was read: no conclusion.
        if lineage.raced(read_at) || lineage.id != id || lineage.uncertain {
            *m.ops.entry("re-reads inconclusive (raced)").or_default() += 1;
            continue;
        }
        if let Some(deleted_at) = lineage.deleted {
            if found.is_some() {
                let kept = lineage.deleted_durable || deleted_at < window_start;
                lineage.uncertain = true;
                if kept {
                    m.violation(format!(
                        "lineage {l}: its delete (durable or older than the loss) is undone"
                    ));
                }
            }
            continue;
        }
        let have = found.unwrap_or(0);
        // Only writes under the current id: the rotation that made it copied the data, with its
        // own durability.
        let since = lineage.id_since;
        let lost: Vec<Ack> = lineage
            .acks
            .iter()
            .filter(|a| a.version > have && a.version >= since && a.end < read_at)
            .cloned()
            .collect();
        let illegal: Vec<&Ack> = lost
            .iter()
            .filter(|a| a.durable || a.end < window_start)
            .collect();
        let message = (!illegal.is_empty()).then(|| {
            format!(
                "lineage {l}: after the loss it has version {found:?}; lost acknowledged \
                 writes that were durable or older than the loss window: {illegal:?}"
            )
        });
        lineage
            .acks
            .retain(|a| !(a.version > have && a.version >= since && a.end < read_at));
        if found.is_none() {
            lineage.uncertain = true;
        }
        *m.ops.entry("writes lost on purpose").or_default() += lost.len();
        lost_writes += lost.len();
        if let Some(message) = message {
            m.violation(message);
        }
    }
    lost_writes
}

/// The CI run's length: long enough for every fault kind once (about 30 s) and a few more.
const DEFAULT_DURATION: &str = "40s";

fn parse_duration(raw: &str) -> Duration {
    humantime::parse_duration(raw).unwrap_or_else(|e| panic!("CHAOS_DURATION={raw:?}: {e}"))
}

/// Runs in a network namespace of its own (test_support::netns) for the faults that send no
/// RST; skipped, saying so, where none can be made.
#[test]
fn chaos_against_a_model() {
    NetNs::run(|ns| chaos(Arc::new(ns)));
}

async fn chaos(ns: Arc<NetNs>) {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("CHAOS_SEED is a number"))
        .unwrap_or_else(|| SmallRng::from_os_rng().random());
    let duration =
        parse_duration(&std::env::var("CHAOS_DURATION").unwrap_or(DEFAULT_DURATION.into()));
    println!("chaos: CHAOS_SEED={seed} CHAOS_DURATION={duration:?}");

    let d = tokio::task::block_in_place(|| {
        Deployment::cluster_with(&["--cluster-require-full-coverage", "no"])
    });
    let pairs = d
        .primaries
        .iter()
        .copied()
        .zip(d.replicas.iter().copied())
        .collect();
    let service = d.start_service(&[("RUST_LOG", "info")]);
    // The cloud default: a second instance with the near cache on, serving half the clients.
    let near = d.start_service(&[
        ("RUST_LOG", "info"),
        ("VALKEY_SESSIONS_NEAR_CACHE__ENABLED", "true"),
    ]);
    let model: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for me in 0..4 {
        let c = if me < 2 {
            service.client().await
        } else {
            near.client().await
        };
        let rng = SmallRng::seed_from_u64(seed.wrapping_add(me as u64 + 1));
        clients.push(tokio::spawn(client(
            c,
            model.clone(),
            rng,
            me,
            stop.clone(),
        )));
    }

    // The injector: blocking (valkey-cli, sleeps), on its own thread, one fault at a time.
    let runtime = tokio::runtime::Handle::current();
    let mut checker = service.client().await;
    let injector = {
        let (model, stop) = (model.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut cluster = Cluster { d, pairs };
            let mut rng = SmallRng::seed_from_u64(seed);
            let started = Instant::now();
            let mut log = Vec::new();
            std::thread::sleep(Duration::from_secs(1));
            let mut index = 0u64;
            let mut kinds_run: HashSet<String> = HashSet::new();
            // Every kind once first, in an order the seed shuffles; then drawn at random until the
            // run's length is reached.
            let mut first: Vec<Fault> = Fault::ALL.to_vec();
            first.shuffle(&mut rng);
            first.reverse();
            while (started.elapsed() < duration || !first.is_empty())
                && started.elapsed() < duration * 4
            {
                // The schedule comes from the seed alone; what a fault draws (it may depend on
                // the model's state, which timing shapes) from a generator of its own.
                let drawn = Fault::ALL[rng.random_range(0..Fault::ALL.len())];
                let fault = first.pop().unwrap_or(drawn);
                let shard = rng.random_range(0..cluster.pairs.len());
                let pause_after = Duration::from_millis(rng.random_range(200..1000));
                index += 1;
                let mut rng =
                    SmallRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let at = started.elapsed();
                let what = match fault {
                    Fault::KillPrimary | Fault::LosePrimary => {
                        let lose = matches!(fault, Fault::LosePrimary);
                        let slots = cluster.slots_of(cluster.roles(shard).0);
                        // Writes acknowledged a moment before may not have reached the replica.
                        let window_start = Instant::now() - Duration::from_millis(200);
                        model.lock().unwrap().suspended = slots.clone();
                        let (killed, filler) =
                            cluster.kill_primary(shard, lose, || freeze(&model, &slots));
                        let lost =
                            runtime.block_on(rebase(&mut checker, &model, &slots, window_start));
                        {
                            let mut m = model.lock().unwrap();
                            m.suspended.clear();
                            m.lineages.iter_mut().for_each(|l| l.frozen = false);
                            // Replication was frozen under load: a loss that took nothing did
                            // not test what survives it.
                            if lose && lost == 0 {
                                m.violation(format!(
                                    "LosePrimary of shard {shard} lost no acknowledged write: the \
                                     loss was not provoked"
                                ));
                            }
                        }
                        std::thread::sleep(Duration::from_millis(500));
                        cluster.d.nodes[killed].restart();
                        cluster.settle();
                        if let Some(filler) = filler {
                            cluster.delete_everywhere(&filler);
                        }
                        format!("{fault:?} of shard {shard} ({lost} writes lost on purpose)")
                    }
                    Fault::KillReplica => {
                        let (_, r) = cluster.roles(shard);
                        cluster.d.nodes[r].kill();
                        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                        cluster.d.nodes[r].restart();
                        cluster.settle();
                        format!("{fault:?} of shard {shard}")
                    }
                    Fault::Freeze => {
                        let (p, r) = cluster.roles(shard);
                        let node = if rng.random_bool(0.5) { p } else { r };
                        let pause = Duration::from_millis(rng.random_range(300..1500));
                        cluster.d.nodes[node].pause();
                        std::thread::sleep(pause);
                        cluster.d.nodes[node].resume();
                        cluster.settle();
                        format!("{fault:?} of node {node} for {pause:?}")
                    }
                    Fault::SilenceConnections => {
                        let (p, r) = cluster.roles(shard);
                        let node = if rng.random_bool(0.5) { p } else { r };
                        let hold = Duration::from_millis(rng.random_range(1000..2500));
                        let silenced = ns.silence_connections_to(cluster.d.nodes[node].port);
                        std::thread::sleep(hold);
                        ns.heal();
                        cluster.settle();
                        format!("{fault:?} of node {node} ({silenced} connections) for {hold:?}")
                    }
                    Fault::BlackHole => {
                        let (p, r) = cluster.roles(shard);
                        let node = if rng.random_bool(0.5) { p } else { r };
                        let hold = Duration::from_millis(rng.random_range(300..1500));
                        let valkey = &cluster.d.nodes[node];
                        let bus: u16 = valkey
                            .arg("--cluster-port")
                            .and_then(|b| b.parse().ok())
                            .expect("bus port");
                        ns.black_hole(&valkey.host, valkey.port);
                        ns.black_hole(&valkey.host, bus);
                        std::thread::sleep(hold);
                        ns.heal();
                        cluster.settle();
                        format!("{fault:?} of node {node} for {hold:?}")
                    }
                    Fault::MigrateSlot => {
                        let id = {
                            let m = model.lock().unwrap();
                            m.pick(&mut rng).map(|l| m.lineages[l].id.clone())
                        };
                        match id.and_then(|id| {
                            cluster.migrate(&test_support::session_key(&id), &mut rng)
                        }) {
                            Some(moved) => {
                                cluster.settle();
                                format!("{fault:?}: {moved}")
                            }
                            None => {
                                // Nothing to migrate yet: it stays due.
                                if !kinds_run.contains("MigrateSlot") {
                                    first.push(Fault::MigrateSlot);
                                }
                                continue;
                            }
                        }
                    }
                };
                println!(
                    "chaos: at {at:>8.1?}: {what} (healed after {:.1?})",
                    started.elapsed() - at
                );
                kinds_run.insert(format!("{fault:?}"));
                log.push(what);
                std::thread::sleep(pause_after);
            }
            stop.store(true, Ordering::Relaxed);
            for kind in Fault::ALL {
                if !kinds_run.contains(&format!("{kind:?}")) {
                    model
                        .lock()
                        .unwrap()
                        .violation(format!("the fault {kind:?} never ran"));
                }
            }
            (cluster, log)
        })
    };
    let (cluster, faults) = tokio::task::spawn_blocking(move || injector.join().unwrap())
        .await
        .unwrap();
    for c in clients {
        c.await.unwrap();
    }

    // Last word: every session the model is sure of, read strongly.
    let mut c = service.client().await;
    let lineages: Vec<(usize, String, Vec<String>, bool, u64)> = {
        let m = model.lock().unwrap();
        m.lineages
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.uncertain)
            .map(|(i, l)| {
                let required = l.required_before(Instant::now());
                let old = l.retired.iter().map(|r| r.id.clone()).collect();
                (i, l.id.clone(), old, l.deleted.is_some(), required)
            })
            .collect()
    };
    for (l, id, old, deleted, required) in lineages {
        let strong = |id: String| GetRequest {
            id,
            consistency: Consistency::Strong as i32,
        };
        for gone in old {
            if c.get(strong(gone.clone())).await.is_ok() {
                model
                    .lock()
                    .unwrap()
                    .violation(format!("lineage {l}: rotated-away id {gone} is back"));
            }
        }
        match c.get(strong(id.clone())).await {
            Ok(r) if deleted => model.lock().unwrap().violation(format!(
                "lineage {l}: deleted, yet found with version {}",
                r.into_inner().session.unwrap().version
            )),
            Ok(r) => {
                let s = r.into_inner().session.unwrap();
                let mut m = model.lock().unwrap();
                m.check_attributes(l, &s, "final");
                if s.version < required {
                    m.violation(format!(
                        "lineage {l}: final version {} below acknowledged {required}",
                        s.version
                    ));
                }
            }
            Err(e) if e.code() == Code::NotFound && !deleted => model.lock().unwrap().violation(
                format!("lineage {l}: lost (acknowledged version {required})"),
            ),
            Err(e) if e.code() == Code::NotFound => {}
            Err(e) => model
                .lock()
                .unwrap()
                .violation(format!("lineage {l}: final read failed: {e:?}")),
        }
    }

    let m = model.lock().unwrap();
    let mut ops: Vec<_> = m.ops.iter().collect();
    ops.sort();
    let total: usize = m.ops.values().sum();
    println!(
        "chaos: seed {seed}, {:?} of faults: {} faults, {} sessions, {total} operations: {ops:?}; \
         slowest RPC {:?} ({})",
        duration,
        faults.len(),
        m.lineages.len(),
        m.slowest.0,
        m.slowest.1
    );
    drop(cluster);
    // One deadline per RPC (the command timeout, 1 s), whatever the fault: kills, freezes,
    // migrations (ASK, TRYAGAIN), failovers, black holes. The margin is the test's own: four
    // clients, six nodes and the service on two cores.
    assert!(
        m.slowest.0 <= Duration::from_millis(1250),
        "CHAOS_SEED={seed}: a {} answered after {:?}, beyond its 1 s deadline",
        m.slowest.1,
        m.slowest.0
    );
    assert!(
        m.violations.is_empty(),
        "CHAOS_SEED={seed}: {} violations: {:#?}",
        m.violations.len(),
        m.violations
    );
    let ok: usize = m
        .ops
        .iter()
        .filter(|(k, _)| k.ends_with(" ok"))
        .map(|(_, n)| n)
        .sum();
    assert!(ok > 200, "the clients got work done: {ops:?}");
    assert!(!faults.is_empty(), "faults were injected");
}
