//! Admission control for the session RPCs: a concurrency limit per caller identity and a global
//! one, both refusing at once (RESOURCE_EXHAUSTED) instead of queueing without bound, and a
//! deadline from `grpc-timeout` capped by the server default (DEADLINE_EXCEEDED; tonic's own
//! timeout says CANCELLED).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// The slots of each caller identity (`None`: anonymous).
type CallerSlots = HashMap<Option<Arc<str>>, Arc<Semaphore>>;

/// The concurrency limits and default deadline of the session RPCs.
#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Slots of each caller identity (anonymous callers share one), so one caller cannot take
    /// them all.
    per_caller: Arc<Mutex<CallerSlots>>,
    caller_limit: usize,
    default_deadline: Duration,
}

/// A request's slots: the caller's and the global one, given back when it ends.
pub(super) struct Permit {
    _caller: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `limit` session RPCs in flight, `caller_limit` of one caller, each given at most
    /// `default_deadline`.
    pub fn new(limit: usize, caller_limit: usize, default_deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            per_caller: Arc::default(),
            caller_limit,
            default_deadline,
        }
    }

    /// Resolves once no admitted request is in flight (graceful shutdown's drain).
    pub async fn drained(&self) {
        while self.permits.available_permits() < self.limit {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Slots for one request of `caller` and its deadline (the caller's `grpc-timeout`, capped
    /// by the default), or RESOURCE_EXHAUSTED at once when the caller's slots, or all of them,
    /// are taken.
    pub(super) fn admit(
        &self,
        headers: &http::HeaderMap,
        caller: Option<&Arc<str>>,
    ) -> Result<(Permit, Duration), Status> {
        let mine = {
            let mut table = self.per_caller.lock().expect("admission lock");
            table
                .entry(caller.cloned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.caller_limit)))
                .clone()
        };
        let Ok(caller_permit) = mine.try_acquire_owned() else {
            metrics::counter!("grpc_rejected_total", "reason" => "caller_concurrency").increment(1);
            return Err(Status::resource_exhausted(format!(
                "this caller is at its concurrency limit ({} requests in flight, \
                 grpc.caller_concurrency_limit); retry with backoff",
                self.caller_limit
            )));
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics::counter!("grpc_rejected_total", "reason" => "concurrency").increment(1);
            return Err(Status::resource_exhausted(format!(
                "server at its concurrency limit ({} requests in flight); retry with backoff",
                self.limit
            )));
        };
        let deadline =
            grpc_timeout(headers).map_or(self.default_deadline, |t| t.min(self.default_deadline));
        Ok((
            Permit {
                _caller: caller_permit,
                _global: permit,
            },
            deadline,
        ))
    }
}

/// The answer to a request still running at its deadline.
pub(super) fn deadline_exceeded(deadline: Duration) -> Status {
    metrics::counter!("grpc_rejected_total", "reason" => "deadline").increment(1);
    Status::deadline_exceeded(format!(
        "deadline of {} ms exceeded before the request completed",
        deadline.as_millis()
    ))
}

/// Parses the `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout() {
        let mut h = http::HeaderMap::new();
        for (raw, expected) in [
            ("100m", Some(Duration::from_millis(100))),
            ("2S", Some(Duration::from_secs(2))),
            ("1H", Some(Duration::from_secs(3600))),
            ("5u", Some(Duration::from_micros(5))),
            ("123456789S", None),
            ("S", None),
            ("10x", None),
            ("", None),
        ] {
            h.insert("grpc-timeout", raw.parse().unwrap());
            assert_eq!(grpc_timeout(&h), expected, "{raw}");
        }
    }
}
