//! Instruments for fault tests: a health watcher (a `Watch` stream, every change timestamped)
//! and a load of compare-and-set Puts and Gets that measures how long each session stayed
//! unavailable and checks afterwards that no acknowledged write was lost.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use session_proto::{Consistency, GetRequest, PutRequest, caller::Client};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::Service;

/// Every status a health `Watch` stream reported, with when it arrived.
pub struct HealthWatch {
    seen: Arc<Mutex<Vec<(Instant, ServingStatus)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthWatch {
    /// Watches the session service's health on `service` (the stream's first status included).
    pub async fn start(service: &Service) -> Self {
        let mut health = HealthClient::new(service.channel().await);
        let mut stream = health
            .watch(HealthCheckRequest {
                service: "session.v1.SessionService".into(),
            })
            .await
            .expect("health Watch")
            .into_inner();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(update)) = stream.next().await {
                let status = ServingStatus::try_from(update.status).unwrap_or_default();
                sink.lock().unwrap().push((Instant::now(), status));
            }
        });
        Self { seen, task }
    }

    /// The latest status.
    pub fn current(&self) -> Option<ServingStatus> {
        self.seen.lock().unwrap().last().map(|s| s.1)
    }

    /// Waits until the latest status is `want`; returns how long that took.
    pub async fn wait_for(&self, want: ServingStatus, limit: Duration) -> Duration {
        let start = Instant::now();
        while self.current() != Some(want) {
            assert!(
                start.elapsed() < limit,
                "health did not become {want:?} within {limit:?}: {:?}",
                self.history(start)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// Statuses seen at or after `since`, with their offset from it.
    pub fn history(&self, since: Instant) -> Vec<(Duration, ServingStatus)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(at, s)| (*at - since, *s))
            .collect()
    }

    /// How long the status was NOT_SERVING between `since` and now.
    pub fn not_serving_for(&self, since: Instant) -> Duration {
        let seen = self.seen.lock().unwrap();
        let mut total = Duration::ZERO;
        let mut state = seen
            .iter()
            .rev()
            .find(|(at, _)| *at < since)
            .map(|s| s.1)
            .unwrap_or(ServingStatus::Unknown);
        let mut from = since;
        for (at, status) in seen.iter().filter(|(at, _)| *at >= since) {
            if state != ServingStatus::Serving {
                total += *at - from;
            }
            state = *status;
            from = *at;
        }
        if state != ServingStatus::Serving {
            total += from.elapsed();
        }
        total
    }
}

impl Drop for HealthWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One RPC of the load.
#[derive(Debug, Clone)]
pub struct Op {
    /// Index of the session in the load's id list.
    pub session: usize,
    /// "put" or "get".
    pub kind: &'static str,
    pub start: Instant,
    pub end: Instant,
    pub code: Code,
    pub message: String,
}

/// What the load knows was acknowledged: per session, the last version and value a Put returned.
/// Every acknowledged Put of each session, in the order the acknowledgements came.
type Acked = HashMap<usize, Vec<(u64, String)>>;

/// Puts (with expected_version) and eventual Gets over a set of sessions from `workers` tasks
/// until finished; every RPC is recorded.
pub struct Load {
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Op>>>,
    acked: Arc<Mutex<Acked>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load; each worker takes every `workers`-th session in turn.
    ///
    /// Over 80 lines on purpose: the worker's loop (pick, write or read, record the outcome) is
    /// one model step of the fault tests and is read as one.
    pub fn start(client: &Client, ids: Vec<String>, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(Mutex::new(Vec::new()));
        let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(HashMap::new()));
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mine: Vec<(usize, String)> = ids
                .iter()
                .cloned()
                .enumerate()
                .filter(|(i, _)| i % workers == w)
                .collect();
            let (stop, ops, acked, mut c) =
                (stop.clone(), ops.clone(), acked.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                let mut known: HashMap<usize, u64> = HashMap::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (i, id) in &mine {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        n += 1;
                        let value = format!("{w}-{n}");
                        let start = Instant::now();
                        let put = c
                            .put(PutRequest {
                                id: id.clone(),
                                set: super::attrs(&[("i", &value)]),
                                expected_version: known.get(i).copied(),
                                ..Default::default()
                            })
                            .await;
                        let (code, message) = match put {
                            Ok(r) => {
                                let v = r.into_inner().session.unwrap().version;
                                known.insert(*i, v);
                                acked
                                    .lock()
                                    .unwrap()
                                    .entry(*i)
                                    .or_default()
                                    .push((v, value));
                                (Code::Ok, String::new())
                            }
                            Err(s) => {
                                // A stale version: learn the current one from the detail.
                                if let Some(info) = s.get_details_error_info() {
                                    if let Some(v) = info.metadata.get("current_version") {
                                        known.insert(*i, v.parse().unwrap_or(0));
                                    }
                                }
                                (s.code(), s.message().to_owned())
                            }
                        };
                        ops.lock().unwrap().push(Op {
                            session: *i,
                            kind: "put",
                            start,
                            end: Instant::now(),
                            code,
                            message,
                        });
                        let start = Instant::now();
                        let got = c
                            .get(GetRequest {
                                id: id.clone(),
                                consistency: Consistency::Eventual as i32,
                            })
                            .await;
                        let (code, message) = match got {
                            Ok(_) => (Code::Ok, String::new()),
                            Err(s) => (s.code(), s.message().to_owned()),
                        };
                        ops.lock().unwrap().push(Op {
                            session: *i,
                            kind: "get",
                            start,
                            end: Instant::now(),
                            code,
                            message,
                        });
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }));
        }
        Self {
            ids,
            stop,
            ops,
            acked,
            tasks,
        }
    }

    /// Operations that succeeded so far.
    pub fn ok_count(&self) -> usize {
        self.ops
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.code == Code::Ok)
            .count()
    }

    /// Stops the workers and returns what they saw.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let ops = std::mem::take(&mut *self.ops.lock().unwrap());
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        Report {
            ids: self.ids,
            ops,
            acked,
        }
    }
}

/// What a load saw.
pub struct Report {
    pub ids: Vec<String>,
    pub ops: Vec<Op>,
    acked: Acked,
}

impl Report {
    /// RPCs on the given sessions (indexes into the id list).
    pub fn on_sessions(&self, sessions: &[usize]) -> Report {
        Report {
            ids: self.ids.clone(),
            ops: self
                .ops
                .iter()
                .filter(|o| sessions.contains(&o.session))
                .cloned()
                .collect(),
            acked: self.acked.clone(),
        }
    }

    /// Failed RPCs (ABORTED version conflicts are answers, not failures).
    pub fn failures(&self) -> Vec<&Op> {
        self.ops
            .iter()
            .filter(|o| !matches!(o.code, Code::Ok | Code::Aborted))
            .collect()
    }

    /// The distinct codes of the failures.
    pub fn failure_codes(&self) -> Vec<Code> {
        let mut codes: Vec<Code> = self.failures().iter().map(|o| o.code).collect();
        codes.sort_by_key(|c| *c as i32);
        codes.dedup();
        codes
    }

    /// The longest time any one session was unavailable: from the start of a failed RPC to the
    /// end of the next successful RPC on that session (to the end of the run if none followed),
    /// or a single RPC that took that long to succeed.
    pub fn longest_outage(&self) -> Duration {
        self.longest_outage_of(&["put", "get"])
    }

    /// [`Self::longest_outage`] counting only RPCs of the given kinds ("put", "get"): eventual
    /// Gets are served by replicas while a primary is down, Puts are not.
    pub fn longest_outage_of(&self, kinds: &[&str]) -> Duration {
        let mut longest = self
            .ops
            .iter()
            .filter(|o| kinds.contains(&o.kind) && matches!(o.code, Code::Ok | Code::Aborted))
            .map(|o| o.end - o.start)
            .max()
            .unwrap_or_default();
        let mut failing_since: HashMap<usize, Instant> = HashMap::new();
        let mut ops: Vec<&Op> = self
            .ops
            .iter()
            .filter(|o| kinds.contains(&o.kind))
            .collect();
        ops.sort_by_key(|o| o.end);
        let end = ops.last().map(|o| o.end);
        for op in ops {
            if matches!(op.code, Code::Ok | Code::Aborted) {
                if let Some(since) = failing_since.remove(&op.session) {
                    longest = longest.max(op.end - since);
                }
            } else {
                failing_since.entry(op.session).or_insert(op.start);
            }
        }
        for since in failing_since.values() {
            longest = longest.max(end.unwrap() - *since);
        }
        longest
    }

    /// How long after `fault` every session had succeeded again: per session, the end of its
    /// first successful RPC that started after `fault`; the latest of those.
    pub fn recovery(&self, fault: Instant) -> Duration {
        let mut first_ok: HashMap<usize, Instant> = HashMap::new();
        for op in self.ops.iter().filter(|o| o.start >= fault) {
            if matches!(op.code, Code::Ok | Code::Aborted) {
                let at = first_ok.entry(op.session).or_insert(op.end);
                *at = (*at).min(op.end);
            }
        }
        let sessions: std::collections::HashSet<usize> =
            self.ops.iter().map(|o| o.session).collect();
        assert_eq!(
            first_ok.len(),
            sessions.len(),
            "some sessions never succeeded again after the fault: {}",
            self.summary()
        );
        first_ok
            .values()
            .map(|at| at.saturating_duration_since(fault))
            .max()
            .unwrap_or_default()
    }

    /// The longest RPC, successful or not: how late any answer came.
    pub fn slowest(&self) -> Duration {
        self.ops
            .iter()
            .map(|o| o.end - o.start)
            .max()
            .unwrap_or_default()
    }

    /// The longest successful RPC.
    pub fn slowest_success(&self) -> Duration {
        self.ops
            .iter()
            .filter(|o| matches!(o.code, Code::Ok | Code::Aborted))
            .map(|o| o.end - o.start)
            .max()
            .unwrap_or_default()
    }

    /// A one-line account for the test output.
    pub fn summary(&self) -> String {
        let failures = self.failures();
        let first = failures
            .first()
            .map(|o| o.message.clone())
            .unwrap_or_default();
        format!(
            "{} RPCs, {} failed {:?}, slowest success {:?}, longest outage of one session: \
             writes {:?}, reads {:?}{}",
            self.ops.len(),
            failures.len(),
            self.failure_codes(),
            self.slowest_success(),
            self.longest_outage_of(&["put"]),
            self.longest_outage_of(&["get"]),
            if first.is_empty() {
                String::new()
            } else {
                format!(" (first: {first})")
            }
        )
    }

    /// Checks with strong Gets that every acknowledged Put is still there: the version is at
    /// least the acknowledged one, and if equal the value is the acknowledged one.
    pub async fn assert_nothing_lost(&self, c: &mut Client) {
        for (i, id) in self.ids.iter().enumerate() {
            let Some(acks) = self.acked.get(&i) else {
                continue;
            };
            // Every acknowledgement, not just the last: a write lost in a failover lets a later
            // compare-and-set Put be acknowledged with the lost version again.
            for pair in acks.windows(2) {
                let ((earlier, value), (later, _)) = (&pair[0], &pair[1]);
                assert!(
                    later > earlier,
                    "session {i}: acknowledged version {earlier} ({value:?}) was lost: a later \
                     write was acknowledged as version {later}"
                );
            }
            let (version, value) = acks.last().expect("at least one");
            let s = c
                .get(GetRequest {
                    id: id.clone(),
                    consistency: Consistency::Strong as i32,
                })
                .await
                .unwrap_or_else(|e| panic!("session {i} lost: {e:?}"))
                .into_inner()
                .session
                .unwrap();
            assert!(
                s.version >= *version,
                "session {i}: acknowledged version {version} lost, now {}",
                s.version
            );
            if s.version == *version {
                assert_eq!(
                    s.attributes
                        .get("i")
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                    Some(value.clone()),
                    "session {i}: the acknowledged value of version {version} is not the stored one"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write lost in a failover whose version a later write was acknowledged with again: the
    /// last acknowledgement alone looks fine, every acknowledgement does not.
    #[tokio::test]
    #[should_panic(expected = "acknowledged version 5 (\"w1\") was lost")]
    async fn a_lost_write_whose_version_came_back_is_caught() {
        let report = Report {
            ids: vec!["never-read".into()],
            ops: Vec::new(),
            acked: HashMap::from([(
                0,
                vec![(4, "w0".into()), (5, "w1".into()), (5, "w2".into())],
            )]),
        };
        // Never connected: the check fails before it reads anything.
        let channel = tonic::transport::Channel::from_static("http://127.0.0.1:9").connect_lazy();
        let mut c = session_proto::caller::CallerOptions::default()
            .client(channel)
            .unwrap();
        report.assert_nothing_lost(&mut c).await;
    }
}
