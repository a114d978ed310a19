//! Measures connect → bound over sequential logins against a freshly started
//! `starling` (STARTTLS, SCRAM-SHA-256, 4096 iterations, resource bind).
//!
//! cargo build --release -p starling && cargo run --release -p starling --example login_latency -- 100

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer};

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("a number of logins"))
        .unwrap_or(100);
    let server = TestServer::default_config();
    server.adduser("bench@localhost");
    let mut samples: Vec<Duration> = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let client = Client::login(&server, "bench", &format!("r{i}")).await;
        samples.push(started.elapsed());
        drop(client);
    }
    samples.sort();
    let total: Duration = samples.iter().sum();
    let percentile = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{count} logins: mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        total.as_secs_f64() * 1000.0 / count as f64,
        percentile(0.50).as_secs_f64() * 1000.0,
        percentile(0.95).as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
    );
}
