//! CPU time of processes from Linux's /proc, to report CPU per RPC of the service and the
//! load generator over exactly the measured interval.

use serde::Serialize;

/// User plus system CPU seconds of process `pid` (all threads), or None off Linux or if gone.
pub fn seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state(0) ... utime(11) stime(12), in clock ticks.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU of the service and of the generator across the measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Service CPU seconds (None without --server-pid).
    pub server_seconds: Option<f64>,
    /// Load generator CPU seconds.
    pub client_seconds: Option<f64>,
}

/// A CPU reading at the start of the measurement.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    server: Option<f64>,
    client: Option<f64>,
}

impl Mark {
    /// Reads both processes now.
    pub fn now(server_pid: Option<u32>) -> Self {
        Self {
            server: server_pid.and_then(seconds),
            client: seconds(std::process::id()),
        }
    }

    /// CPU used by each process since this mark.
    pub fn since(self, server_pid: Option<u32>) -> Usage {
        let now = Self::now(server_pid);
        let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        Usage {
            server_seconds: delta(self.server, now.server),
            client_seconds: delta(self.client, now.client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let before = seconds(std::process::id()).expect("/proc is readable");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = seconds(std::process::id()).unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
        assert!(seconds(u32::MAX).is_none());
    }
}
