//! Admission control for the session RPCs: a global concurrency limit that refuses at once
//! (RESOURCE_EXHAUSTED) instead of queueing without bound, and a deadline from `grpc-timeout`
//! capped by the server default (DEADLINE_EXCEEDED; tonic's own timeout says CANCELLED).

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// The concurrency limit and default deadline of the session RPCs.
#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    default_deadline: Duration,
}

impl Admission {
    /// At most `limit` session RPCs in flight, each given at most `default_deadline`.
    pub fn new(limit: usize, default_deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            default_deadline,
        }
    }

    /// Resolves once no admitted request is in flight (graceful shutdown's drain).
    pub async fn drained(&self) {
        while self.permits.available_permits() < self.limit {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A slot for one request and its deadline (the caller's `grpc-timeout`, capped by the
    /// default), or RESOURCE_EXHAUSTED at once when every slot is taken.
    pub(super) fn admit(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<(OwnedSemaphorePermit, Duration), Status> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics::counter!("grpc_rejected_total", "reason" => "concurrency").increment(1);
            return Err(Status::resource_exhausted(format!(
                "server at its concurrency limit ({} requests in flight); retry with backoff",
                self.limit
            )));
        };
        let deadline =
            grpc_timeout(headers).map_or(self.default_deadline, |t| t.min(self.default_deadline));
        Ok((permit, deadline))
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
