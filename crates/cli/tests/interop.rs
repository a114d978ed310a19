//! Interop with independent clients: they log in to the real binary, bind and chat.

mod common;

use common::*;

fn run_python(script: &str, args: &[&str]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/");
    let output = std::process::Command::new("python3")
        .arg(format!("{path}{script}"))
        .args(args)
        .output()
        .expect("python3 runs (install it with .ci/run or scripts/test)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A server with the accounts alice and bob, and the host, port and CA file
/// arguments the scripts start with.
fn server_for_alice_and_bob() -> (TestServer, [String; 3]) {
    let server = TestServer::default_config();
    server.adduser("alice@localhost");
    server.adduser("bob@localhost");
    let cert = server.cert_path().to_str().expect("utf-8").to_owned();
    let arguments = ["127.0.0.1".to_owned(), server.c2s.port().to_string(), cert];
    (server, arguments)
}

#[test]
fn slixmpp_clients_log_in_with_scram_and_exchange_messages() {
    let (_server, [host, port, cert]) = server_for_alice_and_bob();
    let stdout = run_python(
        "slixmpp_chat.py",
        &[
            &host,
            &port,
            &cert,
            "alice@localhost/slix",
            "bob@localhost/slix",
            PASSWORD,
        ],
    );
    println!("{stdout}");
    assert!(
        stdout.contains("mechanism SCRAM-SHA-"),
        "negotiated SCRAM: {stdout}"
    );
    assert!(stdout.trim_end().ends_with("OK"));
}

/// The mechanism the server logged for `user`'s authentication.
fn logged_mechanism(server: &TestServer, user: &str) -> String {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("authenticated") && l.contains(&format!("user={user} ")))
        .unwrap_or_else(|| panic!("no authentication of {user} in the log:\n{log}"));
    line.split("mechanism=")
        .nth(1)
        .expect("mechanism field")
        .trim_matches('"')
        .to_string()
}

fn tokio_xmpp_chat_binary() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
    let binary = target.join("debug").join("tokio-xmpp-chat");
    assert!(
        binary.exists(),
        "{} is missing: scripts/test builds it (cargo build --manifest-path interop/tokio-xmpp/Cargo.toml)",
        binary.display()
    );
    binary
}

#[test]
fn slixmpp_and_tokio_xmpp_exchange_messages_with_each_other() {
    let (server, [host, port, cert]) = server_for_alice_and_bob();
    let binary = tokio_xmpp_chat_binary();
    let stdout = run_python(
        "slixmpp_tokio_xmpp.py",
        &[
            &host,
            &port,
            &cert,
            binary.to_str().expect("utf-8"),
            PASSWORD,
        ],
    );
    println!("{stdout}");
    assert!(
        stdout.contains("received alice@localhost/slix hello from slixmpp"),
        "{stdout}"
    );
    assert!(stdout.contains("pong localhost"), "{stdout}");
    assert!(stdout.trim_end().ends_with("OK"));
    let slixmpp = logged_mechanism(&server, "alice");
    let tokio_xmpp = logged_mechanism(&server, "bob");
    println!("slixmpp negotiated {slixmpp}; tokio-xmpp negotiated {tokio_xmpp}");
    assert!(slixmpp.starts_with("SCRAM-SHA-"), "{slixmpp}");
    assert_eq!(
        tokio_xmpp, "SCRAM-SHA-256-PLUS",
        "tokio-xmpp over TLS 1.3 binds the channel"
    );
}

#[test]
fn slixmpp_and_aioxmpp_users_subscribe_chat_offline_and_see_a_cut_connection() {
    let (_server, [host, port, cert]) = server_for_alice_and_bob();
    let stdout = run_python(
        "im_story.py",
        &[
            &host,
            &port,
            &cert,
            "alice@localhost/slix",
            "bob@localhost/aio",
            PASSWORD,
        ],
    );
    println!("{stdout}");
    assert!(stdout.contains("alice received the three messages in order with delay stamps"));
    assert!(stdout.trim_end().ends_with("OK"));
}

/// A server hosting one component, with alice's account: the server, its c2s port
/// and its component port.
fn server_with_component(domain: &str, secret: &str, name: &str) -> (TestServer, String, String) {
    let server = TestServer::start(
        &format!(
            "[components]\nlisten = [\"127.0.0.1:0\"]\n\
             [[components.hosted]]\ndomain = \"{domain}\"\nsecret = \"{secret}\"\nname = \"{name}\"\n"
        ),
        "",
        "",
        "",
    );
    server.adduser("alice@localhost");
    let c2s = server.c2s.port().to_string();
    let component = server
        .components
        .expect("component listener")
        .port()
        .to_string();
    (server, c2s, component)
}

#[test]
fn slixmpp_component_echoes_appears_online_and_is_missed_when_gone() {
    let (server, c2s, component) =
        server_with_component("echo.localhost", "sh4red", "Echo service");
    let cert = server.cert_path();
    let stdout = run_python(
        "component_echo.py",
        &[
            "127.0.0.1",
            &c2s,
            &component,
            cert.to_str().expect("utf-8"),
            "alice@localhost/slix",
            PASSWORD,
            "echo.localhost",
            "sh4red",
        ],
    );
    println!("{stdout}");
    assert!(stdout.contains("with the component gone: service-unavailable"));
    assert!(stdout.trim_end().ends_with("OK"));
}

#[test]
fn biboumi_gateway_carries_messages_between_an_xmpp_user_and_an_irc_channel() {
    let (server, c2s, component) = server_with_component("irc.localhost", "gateway-secret", "IRC");
    let work = tempfile::tempdir().expect("temp dir");
    let cert = server.cert_path();
    let stdout = run_python(
        "biboumi_irc.py",
        &[
            work.path().to_str().expect("utf-8"),
            "127.0.0.1",
            &c2s,
            &component,
            cert.to_str().expect("utf-8"),
            "alice@localhost/slix",
            PASSWORD,
            "irc.localhost",
            "gateway-secret",
        ],
    );
    println!("{stdout}");
    assert!(stdout.contains("XMPP received the IRC message"));
    assert!(stdout.trim_end().ends_with("OK"));
}
