//! Admission control for the session RPCs: a global concurrency limit that refuses at once
//! (RESOURCE_EXHAUSTED) instead of queueing without bound, and a deadline from `grpc-timeout`
//! capped by the server default (DEADLINE_EXCEEDED; tonic's own timeout says CANCELLED).

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::Status;
use tower::{Layer, Service};

use super::SESSION_PATH;

/// Builds [`Admission`] services sharing one pool of permits.
#[derive(Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    default_deadline: Duration,
}

impl AdmissionLayer {
    /// At most `limit` session RPCs at once, each bounded by `default_deadline`.
    pub fn new(limit: usize, default_deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            default_deadline,
        }
    }

    /// Resolves once no session RPC is in flight: the drain condition at shutdown (long-lived
    /// health Watch streams would otherwise hold a graceful shutdown open forever).
    pub async fn drained(&self) {
        while self.permits.available_permits() < self.limit {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// The admission service.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Admission<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The clone is the one that was not polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !request.uri().path().starts_with(SESSION_PATH) {
            return Box::pin(inner.call(request));
        }
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            metrics::counter!("grpc_rejected_total", "reason" => "concurrency").increment(1);
            let status = Status::resource_exhausted(format!(
                "server at its concurrency limit ({} requests in flight); retry with backoff",
                self.layer.limit
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let deadline = grpc_timeout(request.headers()).map_or(self.layer.default_deadline, |t| {
            t.min(self.layer.default_deadline)
        });
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(deadline, inner.call(request)).await {
                Ok(result) => result,
                Err(_) => {
                    metrics::counter!("grpc_rejected_total", "reason" => "deadline").increment(1);
                    Ok(Status::deadline_exceeded(format!(
                        "deadline of {} ms exceeded before the request completed",
                        deadline.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
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
