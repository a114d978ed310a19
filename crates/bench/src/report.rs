//! What the scenarios print: one `key=value` line each, easy to read by eye and by
//! `bench/compare`; latency distributions; the measured server's memory and CPU time.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// One result line, keys in the order they were added.
#[derive(Default)]
pub struct Line(String);

impl Line {
    pub fn new(scenario: &str) -> Self {
        let mut line = Line::default();
        line.add("scenario", scenario);
        line
    }

    pub fn add(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={value}");
        self
    }

    pub fn add_rate(&mut self, key: &str, count: u64, elapsed: Duration) -> &mut Self {
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        };
        self.add(key, format!("{rate:.1}"))
    }

    /// p50, p95, p99 and max of a histogram of microseconds, printed in milliseconds.
    pub fn add_latency(&mut self, prefix: &str, histogram: &Histogram<u64>) -> &mut Self {
        let ms = |micros: u64| format!("{:.3}", micros as f64 / 1000.0);
        for (name, quantile) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            self.add(
                &format!("{prefix}_{name}_ms"),
                ms(histogram.value_at_quantile(quantile)),
            );
        }
        self.add(&format!("{prefix}_max_ms"), ms(histogram.max()))
    }

    pub fn add_server(&mut self, before: Option<ProcStats>, after: Option<ProcStats>) -> &mut Self {
        if let (Some(before), Some(after)) = (before, after) {
            self.add("server_rss_before_kb", before.rss_kb);
            self.add("server_rss_after_kb", after.rss_kb);
            self.add(
                "server_cpu_s",
                format!("{:.3}", after.cpu_seconds - before.cpu_seconds),
            );
        }
        self
    }

    pub fn print(&self) {
        println!("{}", self.0);
    }
}

/// A histogram for latencies in microseconds, from 1 µs to one hour.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// Resident memory and CPU time of the measured server, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    pub rss_kb: u64,
    pub cpu_seconds: f64,
}

impl ProcStats {
    pub fn read(pid: u32) -> Result<ProcStats, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let rss_kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        Ok(ProcStats {
            rss_kb,
            cpu_seconds: cpu_seconds_from_stat(&stat)
                .ok_or_else(|| format!("unreadable /proc/{pid}/stat"))?,
        })
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in seconds. The
/// command name (field 2) may hold spaces, so fields are counted after its `)`.
fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks_per_second > 0).then(|| (utime + stime) as f64 / ticks_per_second as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parens() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 0 0";
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(cpu_seconds_from_stat(stat), Some(300.0 / ticks));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let stats = ProcStats::read(std::process::id()).unwrap();
        assert!(stats.rss_kb > 0);
    }

    #[test]
    fn latency_line_reports_quantiles_in_milliseconds() {
        let mut histogram = latency_histogram();
        for micros in 1..=1000 {
            record(&mut histogram, Duration::from_micros(micros));
        }
        let mut line = Line::new("chat");
        line.add_latency("latency", &histogram);
        assert_eq!(
            line.0,
            "scenario=chat latency_p50_ms=0.500 latency_p95_ms=0.950 \
             latency_p99_ms=0.990 latency_max_ms=1.000"
        );
    }
}
