//! The requests: connections, the working set, and the worker loop.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, stream};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use session_proto::{
    Consistency, CreateRequest, DeleteRequest, GetRequest, ListSessionsRequest, PutRequest,
    RevokeSessionsRequest, caller::Client,
};
use tokio::time::Instant;

use crate::{
    args::{Args, Op},
    report::Stats,
};

/// Everything the workers share.
pub struct Workload {
    clients: Vec<Client>,
    ids: Vec<String>,
    principals: Vec<String>,
    page_size: u32,
    peer: Option<Client>,
    attributes: HashMap<String, Vec<u8>>,
    value: Vec<u8>,
    op: Op,
    consistency: Consistency,
    /// Next working-set session `--op delete` removes.
    deleted: AtomicUsize,
}

/// Opens `connections` HTTP/2 connections to the service.
pub async fn connect(args: &Args) -> Result<Vec<Client>, String> {
    let endpoint = args
        .caller
        .endpoint(&args.addr)
        .map_err(|e| format!("--addr {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // `connect` per client: each gets its own TCP connection.
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connecting to {}: {e}", args.addr))?;
        clients.push(args.caller.client(channel)?);
    }
    Ok(clients)
}

impl Workload {
    /// Creates the working set of `args.sessions` sessions.
    pub async fn populate(args: &Args, clients: Vec<Client>) -> Result<Self, String> {
        let value = vec![b'v'; args.value_size];
        let attributes: HashMap<String, Vec<u8>> = (0..args.attributes)
            .map(|i| (format!("attr{i}"), value.clone()))
            .collect();
        let principals: Vec<String> = (0..args.principals).map(|i| format!("bench-{i}")).collect();
        let created: Vec<Result<String, tonic::Status>> = stream::iter(0..args.sessions)
            .map(|i| {
                let mut client = clients[i % clients.len()].clone();
                let request = CreateRequest {
                    attributes: attributes.clone(),
                    principal: if principals.is_empty() {
                        String::new()
                    } else {
                        principals[i % principals.len()].clone()
                    },
                    ..Default::default()
                };
                async move {
                    let response = client.create(request).await?.into_inner();
                    Ok(response.session.map(|s| s.id).unwrap_or_default())
                }
            })
            .buffer_unordered(args.concurrency.clamp(1, 128))
            .collect()
            .await;
        let ids = created
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|status| format!("creating the working set: {status}"))?;
        let peer = match &args.peer {
            Some(url) => {
                let channel = args
                    .caller
                    .endpoint(url)
                    .map_err(|e| format!("--peer {e}"))?
                    .connect()
                    .await
                    .map_err(|e| format!("connecting to {url}: {e}"))?;
                Some(args.caller.client(channel)?)
            }
            None => None,
        };
        Ok(Self {
            clients,
            ids,
            principals,
            page_size: args.page_size,
            peer,
            attributes,
            value,
            op: args.op,
            consistency: if args.strong {
                Consistency::Strong
            } else {
                Consistency::Eventual
            },
            deleted: AtomicUsize::new(0),
        })
    }

    /// Sessions in the working set.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// One worker: sends requests until `end` (or the shared budget runs out) and records those
    /// scheduled after `measure_from`. With `pace`, requests are scheduled at fixed intervals and
    /// latency counts from the scheduled time; `phase` offsets this worker's schedule so the
    /// workers' requests interleave instead of all leaving at the same instants.
    pub async fn worker(
        self: Arc<Self>,
        task: usize,
        measure_from: Instant,
        end: Instant,
        pace: Option<Duration>,
        phase: Duration,
        budget: Arc<AtomicU64>,
    ) -> Stats {
        let mut client = self.clients[task % self.clients.len()].clone();
        let mut rng = SmallRng::seed_from_u64(0x5e55_1035 ^ task as u64);
        let mut stats = Stats::new();
        let mut next = Instant::now() + phase;
        loop {
            let scheduled = match pace {
                Some(pace) => {
                    next += pace;
                    tokio::time::sleep_until(next).await;
                    next
                }
                None => Instant::now(),
            };
            if scheduled >= end {
                break;
            }
            let measured = scheduled >= measure_from;
            if measured
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_err()
            {
                break;
            }
            let op = match self.op {
                Op::Mixed => match rng.random_range(0..100) {
                    0..80 => Op::Get,
                    80..95 => Op::Put,
                    _ => Op::Create,
                },
                op => op,
            };
            let id = match (op, self.ids.len()) {
                (Op::List, _) => &self.principals[rng.random_range(0..self.principals.len())],
                (Op::RevokeAll, _) => match self.deleted.fetch_add(1, Ordering::Relaxed) {
                    next if next < self.principals.len() => &self.principals[next],
                    _ => break,
                },
                (_, 0) => "",
                (Op::Delete, n) => match self.deleted.fetch_add(1, Ordering::Relaxed) {
                    next if next < n => &self.ids[next],
                    _ => break,
                },
                (_, n) => &self.ids[rng.random_range(0..n)],
            };
            if measured && pace.is_some() {
                stats.record_lag(scheduled.elapsed());
            }
            self.one(&mut client, op, id, scheduled, measured, &mut stats)
                .await;
        }
        stats
    }

    /// Over 80 lines on purpose: one match arm per operation of the mix, each a complete request
    /// and its accounting; split up, the arms would be read apart from the dispatch.
    async fn one(
        &self,
        client: &mut Client,
        op: Op,
        id: &str,
        scheduled: Instant,
        measured: bool,
        stats: &mut Stats,
    ) {
        let outcome = match op {
            Op::Get => client
                .get(GetRequest {
                    id: id.to_owned(),
                    consistency: self.consistency as i32,
                })
                .await
                .map(|_| "get"),
            Op::Put => client
                .put(PutRequest {
                    id: id.to_owned(),
                    set: HashMap::from([("attr0".to_owned(), self.value.clone())]),
                    ..Default::default()
                })
                .await
                .map(|_| "put"),
            Op::Delete => client
                .delete(DeleteRequest {
                    id: id.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| "delete"),
            Op::Coherence => {
                let Some(peer) = &self.peer else { return };
                let written = peer
                    .clone()
                    .put(PutRequest {
                        id: id.to_owned(),
                        set: HashMap::from([("attr0".to_owned(), self.value.clone())]),
                        ..Default::default()
                    })
                    .await;
                let version = match written {
                    Ok(r) => r.into_inner().session.map_or(0, |s| s.version),
                    Err(status) => {
                        stats.fail(status.code());
                        return;
                    }
                };
                let acknowledged = Instant::now();
                loop {
                    let seen = client
                        .get(GetRequest {
                            id: id.to_owned(),
                            consistency: Consistency::Eventual as i32,
                        })
                        .await
                        .map(|r| r.into_inner().session.map_or(0, |s| s.version));
                    match seen {
                        Ok(v) if v >= version => break Ok("coherence"),
                        Ok(_) if acknowledged.elapsed() < Duration::from_secs(5) => continue,
                        Ok(_) => break Err(tonic::Status::deadline_exceeded("stale for 5 s")),
                        Err(status) => break Err(status),
                    }
                }
                .map(|rpc| {
                    if measured {
                        stats.record(rpc, acknowledged.elapsed());
                    }
                })
                .unwrap_or_else(|status| stats.fail(status.code()));
                return;
            }
            // `id` is a principal for these two.
            Op::List => client
                .list_sessions(ListSessionsRequest {
                    principal: id.to_owned(),
                    page_size: self.page_size,
                    ..Default::default()
                })
                .await
                .map(|_| "list"),
            Op::RevokeAll => client
                .revoke_sessions(RevokeSessionsRequest {
                    principal: id.to_owned(),
                    except_id: None,
                })
                .await
                .map(|_| "revoke-all"),
            Op::Create if self.op == Op::Mixed => {
                // Create then Delete: the mix's sign-up and logout, the working set stays put.
                let created = self.create(client).await;
                let id = match created {
                    Ok(id) => id,
                    Err(status) => {
                        stats.fail(status.code());
                        return;
                    }
                };
                if measured {
                    stats.record("create", scheduled.elapsed());
                }
                let deleting = Instant::now();
                client
                    .delete(DeleteRequest {
                        id,
                        ..Default::default()
                    })
                    .await
                    .map(|_| "delete")
                    .map(|rpc| {
                        if measured {
                            stats.record(rpc, deleting.elapsed());
                        }
                    })
                    .unwrap_or_else(|status| stats.fail(status.code()));
                return;
            }
            Op::Create | Op::Mixed => self.create(client).await.map(|_| "create"),
        };
        match outcome {
            Ok(rpc) if measured => stats.record(rpc, scheduled.elapsed()),
            Ok(_) => {}
            Err(status) => {
                if measured {
                    stats.fail(status.code());
                }
            }
        }
    }

    async fn create(&self, client: &mut Client) -> Result<String, tonic::Status> {
        let response = client
            .create(CreateRequest {
                attributes: self.attributes.clone(),
                ..Default::default()
            })
            .await?;
        Ok(response
            .into_inner()
            .session
            .map(|s| s.id)
            .unwrap_or_default())
    }
}
