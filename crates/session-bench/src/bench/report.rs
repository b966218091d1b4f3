//! Latency histograms per RPC, error counts by status, and their text and JSON renderings.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::Args;

/// What one task (or the whole run, once merged) observed.
pub struct Stats {
    /// Latency in microseconds of successful requests, per RPC name.
    pub latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Failed requests per gRPC status code name.
    pub errors: BTreeMap<String, u64>,
    /// With --rate: how late each request left against its schedule (the generator's own delay,
    /// part of every latency above).
    pub lag: Histogram<u64>,
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            latency: BTreeMap::new(),
            errors: BTreeMap::new(),
            lag: new_histogram(),
        }
    }

    /// Records how late a paced request was sent.
    pub fn record_lag(&mut self, lag: Duration) {
        self.lag.saturating_record(micros(lag));
    }

    /// Records one successful request.
    pub fn record(&mut self, rpc: &'static str, latency: Duration) {
        self.latency
            .entry(rpc)
            .or_insert_with(new_histogram)
            .saturating_record(micros(latency));
    }

    /// Records one failed request.
    pub fn fail(&mut self, code: tonic::Code) {
        *self.errors.entry(code_name(code)).or_default() += 1;
    }

    /// Adds another task's observations.
    pub fn merge(&mut self, other: Stats) {
        for (rpc, histogram) in other.latency {
            self.latency
                .entry(rpc)
                .or_insert_with(new_histogram)
                .add(histogram)
                .expect("histograms share their bounds");
        }
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        self.lag
            .add(other.lag)
            .expect("histograms share their bounds");
    }
}

/// A duration as histogram microseconds (at least 1: the histogram's lowest value).
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Summary of one latency distribution.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Successful requests.
    pub requests: u64,
    /// Successful requests per second of measurement.
    pub rps: f64,
    /// Percentiles and maximum in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest request.
    pub max_us: u64,
}

impl Summary {
    fn of(histogram: &Histogram<u64>, seconds: f64) -> Self {
        Self {
            requests: histogram.len(),
            rps: histogram.len() as f64 / seconds,
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// The whole result, as written with `--json`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// The options of the run.
    pub params: Params<'a>,
    /// Seconds of measurement.
    pub measured_seconds: f64,
    /// All RPCs together.
    pub total: Summary,
    /// Per RPC name.
    pub rpcs: BTreeMap<&'static str, Summary>,
    /// Failed requests per status code.
    pub errors: BTreeMap<String, u64>,
    /// With --rate: the generator's send delay against the schedule (included in the latencies).
    pub schedule_lag: Option<Summary>,
    /// CPU seconds of the service and the generator during the measurement.
    pub cpu: crate::cpu::Usage,
    /// Service CPU microseconds per successful RPC (with --server-pid).
    pub server_cpu_us_per_rpc: Option<f64>,
    /// Load generator CPU microseconds per successful RPC.
    pub client_cpu_us_per_rpc: Option<f64>,
}

/// The options that shape the figures.
#[derive(Debug, Serialize)]
pub struct Params<'a> {
    addr: &'a str,
    op: crate::args::Op,
    concurrency: usize,
    connections: usize,
    value_size: usize,
    attributes: usize,
    sessions: usize,
    rate: Option<u64>,
    strong: bool,
}

impl<'a> Report<'a> {
    /// Summarises `stats` measured over `measured`.
    pub fn new(args: &'a Args, stats: &Stats, measured: Duration, cpu: crate::cpu::Usage) -> Self {
        let seconds = measured.as_secs_f64().max(1e-9);
        let mut total = new_histogram();
        for histogram in stats.latency.values() {
            total.add(histogram).expect("histograms share their bounds");
        }
        let per_rpc = |seconds: Option<f64>| {
            seconds
                .filter(|_| !total.is_empty())
                .map(|s| s * 1e6 / total.len() as f64)
        };
        Self {
            schedule_lag: args
                .rate
                .filter(|_| !stats.lag.is_empty())
                .map(|_| Summary::of(&stats.lag, seconds)),
            server_cpu_us_per_rpc: per_rpc(cpu.server_seconds),
            client_cpu_us_per_rpc: per_rpc(cpu.client_seconds),
            cpu,
            params: Params {
                addr: &args.addr,
                op: args.op,
                concurrency: args.concurrency,
                connections: args.connections,
                value_size: args.value_size,
                attributes: args.attributes,
                sessions: args.sessions,
                rate: args.rate,
                strong: args.strong,
            },
            measured_seconds: seconds,
            total: Summary::of(&total, seconds),
            rpcs: stats
                .latency
                .iter()
                .map(|(rpc, h)| (*rpc, Summary::of(h, seconds)))
                .collect(),
            errors: stats.errors.clone(),
        }
    }

    /// The human-readable table.
    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = format!(
            "{:<8} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8}   (latency in ms)\n",
            "rpc", "requests", "rps", "p50", "p90", "p99", "p99.9", "max"
        );
        let rows = self
            .rpcs
            .iter()
            .map(|(name, s)| (*name, s))
            .chain(std::iter::once(("total", &self.total)));
        for (name, s) in rows {
            out += &format!(
                "{:<8} {:>10} {:>11.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}\n",
                name,
                s.requests,
                s.rps,
                ms(s.p50_us),
                ms(s.p90_us),
                ms(s.p99_us),
                ms(s.p999_us),
                ms(s.max_us)
            );
        }
        if self.errors.is_empty() {
            out += "errors: none\n";
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            out += &format!("errors: {}\n", list.join(" "));
        }
        if let Some(lag) = &self.schedule_lag {
            out += &format!(
                "generator send delay vs schedule (included above): p50 {:.3} p99 {:.3} ms\n",
                ms(lag.p50_us),
                ms(lag.p99_us)
            );
        }
        let cpu = |label: &str, us: Option<f64>| us.map(|us| format!("{label} CPU {us:.1} us/rpc"));
        let lines: Vec<String> = [
            cpu("service", self.server_cpu_us_per_rpc),
            cpu("generator", self.client_cpu_us_per_rpc),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !lines.is_empty() {
            out += &format!("{}\n", lines.join(", "));
        }
        out
    }
}

/// The canonical upper-case name of a status code, as in the gRPC spec.
fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}
