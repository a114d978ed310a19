//! starling-bench against the real server: every scenario completes with the
//! figures it promises, and failures are counted rather than hidden.

#[path = "../../cli/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::Command;

use common::TestServer;

const PASSWORD: &str = "bench-secret";

/// A server with accounts bench1..=bench`count`, no per-address connection limit.
fn server_with_accounts(count: usize) -> TestServer {
    let server = TestServer::start("", "", "max_connections_per_ip = 1000", "");
    let list = server.dir.path().join("accounts.txt");
    let lines: String = (1..=count)
        .map(|n| format!("bench{n}@localhost {PASSWORD}\n"))
        .collect();
    std::fs::write(&list, lines).unwrap();
    let out = server.admin(&["adduser", "--bulk", list.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

/// Runs starling-bench and returns its result lines as key/value maps.
fn bench(
    server: &TestServer,
    address: std::net::SocketAddr,
    args: &[&str],
) -> Vec<HashMap<String, String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_starling-bench"))
        .args(["--server", &address.to_string(), "--domain", "localhost"])
        .args(["--password", PASSWORD, "--timeout-secs", "20"])
        .args(["--server-pid", &server.pid().to_string()])
        .args(args)
        .output()
        .expect("starling-bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            line.split(' ')
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=value");
                    (key.to_owned(), value.to_owned())
                })
                .collect()
        })
        .collect()
}

fn number(line: &HashMap<String, String>, key: &str) -> f64 {
    line.get(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn login_opens_every_session_cold_then_warm_and_reads_the_server_from_proc() {
    let server = server_with_accounts(20);
    let lines = bench(
        &server,
        server.c2s,
        &["login", "--sessions", "20", "--concurrency", "5"],
    );
    assert_eq!(lines.len(), 2);
    for (line, round) in lines.iter().zip(["cold", "warm"]) {
        assert_eq!(line["round"], round);
        assert_eq!(number(line, "sessions"), 20.0);
        assert_eq!(number(line, "failures"), 0.0);
        assert!(number(line, "sessions_per_s") > 0.0);
        assert!(number(line, "bound_p50_ms") <= number(line, "bound_max_ms"));
        assert!(number(line, "server_rss_after_kb") > 0.0);
    }
}

#[test]
fn login_over_direct_tls_with_scram_sha_1_works_and_a_wrong_password_is_counted() {
    let server = server_with_accounts(4);
    let direct = ["--transport", "direct", "--mechanism", "SCRAM-SHA-1"];
    let lines = bench(
        &server,
        server.direct_tls,
        &[&direct[..], &["login", "--sessions", "4"]].concat(),
    );
    assert_eq!(number(&lines[0], "sessions"), 4.0);
    let out = Command::new(env!("CARGO_BIN_EXE_starling-bench"))
        .args(["--server", &server.c2s.to_string(), "--domain", "localhost"])
        .args(["--password", "wrong", "login", "--sessions", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("sessions=0 failures=3"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-authorized"));
}

#[test]
fn idle_holds_sessions_and_reports_memory_per_session() {
    let server = server_with_accounts(10);
    let lines = bench(
        &server,
        server.c2s,
        &["idle", "--sessions", "10", "--hold-secs", "0"],
    );
    assert_eq!(number(&lines[0], "sessions"), 10.0);
    assert!(lines[0].contains_key("server_bytes_per_session"));
}

#[test]
fn chat_delivers_every_message_at_a_fixed_rate_and_as_fast_as_possible() {
    let server = server_with_accounts(6);
    for rate in ["300", "0"] {
        let lines = bench(
            &server,
            server.c2s,
            &[
                "chat",
                "--users",
                "6",
                "--rate",
                rate,
                "--duration-secs",
                "1",
            ],
        );
        let line = &lines[0];
        assert!(number(line, "sent") > 0.0, "{line:?}");
        assert_eq!(number(line, "delivered"), number(line, "sent"), "{line:?}");
        assert_eq!(number(line, "lost"), 0.0);
        assert_eq!(number(line, "errors"), 0.0);
        assert_eq!(line["drained"], "true");
        assert!(number(line, "latency_p99_ms") > 0.0);
    }
}

#[test]
fn only_loopback_servers_are_accepted() {
    let out = Command::new(env!("CARGO_BIN_EXE_starling-bench"))
        .args(["--server", "192.0.2.1:5222", "login", "--sessions", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}
