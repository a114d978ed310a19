//! Client streams against the real binary: negotiation, authentication, binding,
//! routing, and every bad-input case with its exact stream error while another
//! logged-in session keeps working.

mod common;

use common::*;
use starling_proto::sasl::Mechanism;

async fn server_with_users(users: &[&str]) -> TestServer {
    let server = TestServer::default_config();
    for user in users {
        server.adduser(&format!("{user}@localhost"));
    }
    server
}

#[tokio::test]
async fn two_users_log_in_over_starttls_and_exchange_messages() {
    let server = server_with_users(&["alice", "bob"]).await;
    let mut alice = Client::login(&server, "alice", "laptop").await;
    let mut bob = Client::login(&server, "bob", "phone").await;
    assert_eq!(alice.jid.as_deref(), Some("alice@localhost/laptop"));
    alice.go_available().await;

    alice
        .send(
            "<message to='bob@localhost/phone' type='chat' id='m1'><body>to full</body></message>",
        )
        .await;
    let received = bob.wait_for(|e| e.name == "message").await;
    assert_eq!(received.attr("from"), Some("alice@localhost/laptop"));
    assert_eq!(received.attr("id"), Some("m1"));
    assert_eq!(
        received.child("body", CLIENT_NS).map(|b| b.text()),
        Some("to full".into())
    );

    bob.send("<message to='alice@localhost' type='chat' id='m2'><body>to bare</body></message>")
        .await;
    let received = alice.wait_for(|e| e.name == "message").await;
    assert_eq!(received.attr("from"), Some("bob@localhost/phone"));
    assert_eq!(
        received.child("body", CLIENT_NS).map(|b| b.text()),
        Some("to bare".into())
    );
}

#[tokio::test]
async fn every_scram_mechanism_and_plain_authenticate() {
    let server = server_with_users(&["carol"]).await;
    for mechanism in Mechanism::ALL {
        let mut client =
            Client::login_with(&server, "carol", "localhost", mechanism.name(), mechanism).await;
        client.assert_alive().await;
    }
}

#[tokio::test]
async fn direct_tls_listener_logs_in() {
    let server = server_with_users(&["dave"]).await;
    let mut client = Client::connect_direct_tls(server.direct_tls, &server.cert_path()).await;
    let features = client.open_stream("localhost").await;
    assert!(
        features.child("starttls", TLS_NS).is_none(),
        "no STARTTLS over TLS"
    );
    let mechanisms: Vec<String> = features
        .child("mechanisms", SASL_NS)
        .expect("mechanisms offered")
        .elements()
        .map(|m| m.text())
        .collect();
    assert!(mechanisms.contains(&"SCRAM-SHA-256-PLUS".to_string()));
    let answer = client
        .authenticate(Mechanism::ScramSha256Plus, "dave", PASSWORD)
        .await;
    assert!(answer.is("success", SASL_NS));
    client.open_stream("localhost").await;
    let bound = client.bind(None).await;
    let jid = bound
        .child("bind", BIND_NS)
        .and_then(|b| b.child("jid", BIND_NS))
        .expect("jid")
        .text();
    assert!(
        jid.starts_with("dave@localhost/"),
        "server-generated resource: {jid}"
    );
    client.jid = Some(jid);
    client.assert_alive().await;
}

#[tokio::test]
async fn features_before_tls_require_starttls_and_hide_mechanisms() {
    let server = TestServer::default_config();
    let mut client = Client::connect(server.c2s).await;
    let features = client.open_stream("localhost").await;
    let starttls = features
        .child("starttls", TLS_NS)
        .expect("STARTTLS offered");
    assert!(starttls.child("required", TLS_NS).is_some());
    assert!(features.child("mechanisms", SASL_NS).is_none());
}

#[tokio::test]
async fn auth_before_tls_fails_with_encryption_required() {
    let server = TestServer::default_config();
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client
        .send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>"
        ))
        .await;
    let failure = client.next_element().await;
    assert!(failure.is("failure", SASL_NS));
    assert!(failure.child("encryption-required", SASL_NS).is_some());
}

#[tokio::test]
async fn wrong_password_fails_and_repeated_failures_disconnect() {
    let server = server_with_users(&["erin"]).await;
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    for _ in 0..3 {
        let answer = client
            .authenticate(Mechanism::ScramSha256, "erin", "wrong password")
            .await;
        assert!(
            answer.is("failure", SASL_NS),
            "{}",
            answer.to_xml(CLIENT_NS)
        );
        assert!(answer.child("not-authorized", SASL_NS).is_some());
    }
    client.expect_stream_error("policy-violation").await;
}

#[tokio::test]
async fn unknown_user_fails_like_a_wrong_password() {
    let server = TestServer::default_config();
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    let answer = client
        .authenticate(Mechanism::ScramSha256, "nobody", PASSWORD)
        .await;
    assert!(answer.child("not-authorized", SASL_NS).is_some());
}

#[tokio::test]
async fn unknown_mechanism_gets_invalid_mechanism() {
    let server = TestServer::default_config();
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    client
        .send(&format!("<auth xmlns='{SASL_NS}' mechanism='CRAM-MD5'/>"))
        .await;
    let failure = client.next_element().await;
    assert!(failure.child("invalid-mechanism", SASL_NS).is_some());
}

#[tokio::test]
async fn abort_gets_aborted_failure() {
    let server = server_with_users(&["fay"]).await;
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    client
        .send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'/>"
        ))
        .await;
    let challenge = client.next_element().await;
    assert!(challenge.is("challenge", SASL_NS));
    client.send(&format!("<abort xmlns='{SASL_NS}'/>")).await;
    let failure = client.next_element().await;
    assert!(failure.child("aborted", SASL_NS).is_some());
}

#[tokio::test]
async fn bad_base64_gets_incorrect_encoding() {
    let server = TestServer::default_config();
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    client
        .send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'>!!not base64!!</auth>"
        ))
        .await;
    let failure = client.next_element().await;
    assert!(failure.child("incorrect-encoding", SASL_NS).is_some());
}

#[tokio::test]
async fn binding_the_same_resource_replaces_the_older_session_with_conflict() {
    let server = server_with_users(&["gus"]).await;
    let mut first = Client::login(&server, "gus", "desk").await;
    let mut second = Client::login(&server, "gus", "desk").await;
    first.expect_stream_error("conflict").await;
    second.assert_alive().await;
}

#[tokio::test]
async fn ping_is_answered_and_unknown_iq_gets_service_unavailable() {
    let server = server_with_users(&["hal"]).await;
    let mut client = Client::login(&server, "hal", "r").await;
    client.assert_alive().await;
    client
        .expect_stanza_error(
            "<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:unknown'/></iq>",
            "u1",
            "service-unavailable",
        )
        .await;
}

#[tokio::test]
async fn iq_with_two_payloads_gets_bad_request() {
    let server = server_with_users(&["ida"]).await;
    let mut client = Client::login(&server, "ida", "r").await;
    client
        .expect_stanza_error(
            "<iq type='get' id='b1' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
            "b1",
            "bad-request",
        )
        .await;
}

#[tokio::test]
async fn message_to_unknown_user_bounces_service_unavailable() {
    let server = server_with_users(&["jan"]).await;
    let mut client = Client::login(&server, "jan", "r").await;
    for to in ["nobody@localhost", "nobody@localhost/res"] {
        let xml = format!("<message to='{to}' type='chat' id='o-{to}'><body>hi</body></message>");
        let reply = client
            .expect_stanza_error(&xml, &format!("o-{to}"), "service-unavailable")
            .await;
        assert_eq!(reply.attr("from"), Some(to));
    }
}

#[tokio::test]
async fn malformed_to_gets_jid_malformed() {
    let server = server_with_users(&["lee"]).await;
    let mut client = Client::login(&server, "lee", "r").await;
    client
        .expect_stanza_error(
            "<message to='a@b@localhost' id='j1'><body>x</body></message>",
            "j1",
            "jid-malformed",
        )
        .await;
}

#[tokio::test]
async fn stanza_to_remote_domain_gets_remote_server_not_found() {
    let server = server_with_users(&["max"]).await;
    let mut client = Client::login(&server, "max", "r").await;
    client
        .expect_stanza_error(
            "<message to='someone@remote.example' id='r1'><body>x</body></message>",
            "r1",
            "remote-server-not-found",
        )
        .await;
}

#[tokio::test]
async fn second_domain_is_served_with_its_own_users() {
    let server = TestServer::default_config();
    server.adduser("nia@example.test");
    server.adduser("nia@localhost");
    let mut at_example =
        Client::login_with(&server, "nia", "example.test", "r", Mechanism::ScramSha256).await;
    assert_eq!(at_example.jid.as_deref(), Some("nia@example.test/r"));
    let mut at_localhost = Client::login(&server, "nia", "r").await;
    at_localhost
        .send("<message to='nia@example.test/r' id='x1'><body>across domains</body></message>")
        .await;
    let received = at_example.wait_for(|e| e.name == "message").await;
    assert_eq!(received.attr("from"), Some("nia@localhost/r"));
}

/// A bad-input case: what to send after opening a plain stream, and the error.
struct BadInput {
    name: &'static str,
    /// Sent instead of a normal stream header when `raw` is true.
    raw: bool,
    payload: String,
    condition: &'static str,
}

fn plain_stream_cases() -> Vec<BadInput> {
    let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
    let raw = |name, payload: &str, condition| BadInput {
        name,
        raw: true,
        payload: payload.to_string(),
        condition,
    };
    let after = |name, payload: &str, condition| BadInput {
        name,
        raw: true,
        payload: format!("{header}{payload}"),
        condition,
    };
    vec![
        raw("garbage instead of XML", "HELLO\r\n\r\n", "not-well-formed"),
        raw(
            "wrong stream namespace",
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        raw(
            "wrong content namespace",
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        raw(
            "unknown host",
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>",
            "host-unknown",
        ),
        raw(
            "missing to",
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
            "host-unknown",
        ),
        raw(
            "pre-1.0 stream",
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
            "unsupported-version",
        ),
        raw(
            "doctype",
            "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
            "restricted-xml",
        ),
        after("comment", "<!-- hello -->", "restricted-xml"),
        after("processing instruction", "<?php echo 1; ?>", "restricted-xml"),
        after(
            "undefined entity",
            "<message to='a@localhost'><body>&ent;</body></message>",
            "restricted-xml",
        ),
        after("mismatched tags", "<message><body></message>", "not-well-formed"),
        after("control character", "<message><body>\u{1}</body></message>", "not-well-formed"),
        after("undeclared prefix", "<foo:bar/>", "not-well-formed"),
        after(
            "stanza before authentication",
            "<message to='a@localhost'><body>x</body></message>",
            "not-authorized",
        ),
        after("unknown top-level element", "<foo xmlns='urn:example'/>", "unsupported-stanza-type"),
        after(
            "oversized stanza",
            &format!("<message><body>{}</body></message>", "x".repeat(300 * 1024)),
            "policy-violation",
        ),
    ]
}

#[tokio::test]
async fn each_bad_input_gets_its_stream_error_and_other_sessions_keep_working() {
    let server = server_with_users(&["olga"]).await;
    let mut witness = Client::login(&server, "olga", "witness").await;
    for case in plain_stream_cases() {
        let mut client = Client::connect(server.c2s).await;
        assert!(case.raw);
        client.send_bytes_lossy(case.payload.as_bytes()).await;
        let name = case.name;
        let result = tokio::spawn(async move {
            client.expect_stream_error(case.condition).await;
        })
        .await;
        assert!(
            result.is_ok(),
            "case {name:?} did not end with the expected error"
        );
        witness.assert_alive().await;
    }
}

#[tokio::test]
async fn bound_session_bad_inputs_get_their_stream_errors() {
    let server = server_with_users(&["pat", "quinn"]).await;
    let mut witness = Client::login(&server, "quinn", "witness").await;
    let cases: [(&str, String, &str); 4] = [
        (
            "forged from",
            "<message from='quinn@localhost/witness' to='pat@localhost'><body>x</body></message>"
                .into(),
            "invalid-from",
        ),
        (
            "oversized stanza",
            format!("<message><body>{}</body></message>", "y".repeat(300 * 1024)),
            "policy-violation",
        ),
        (
            "unknown top-level element",
            "<foo xmlns='jabber:client'/>".into(),
            "unsupported-stanza-type",
        ),
        (
            "not well-formed",
            "<message></iq>".into(),
            "not-well-formed",
        ),
    ];
    for (name, payload, condition) in cases {
        let mut client = Client::login(&server, "pat", name).await;
        client.send_bytes_lossy(payload.as_bytes()).await;
        client.expect_stream_error(condition).await;
        witness.assert_alive().await;
    }
}

#[tokio::test]
async fn client_closing_the_stream_gets_the_closing_tag() {
    let server = server_with_users(&["rex"]).await;
    let mut client = Client::login(&server, "rex", "r").await;
    client.send("</stream:stream>").await;
    assert_eq!(
        client.next_event().await,
        Some(starling_xml::StreamEvent::Close)
    );
    assert_eq!(client.next_event().await, None);
}

#[tokio::test]
async fn whitespace_keepalives_are_ignored() {
    let server = server_with_users(&["sam"]).await;
    let mut client = Client::login(&server, "sam", "r").await;
    client.send(" \n \n").await;
    client.assert_alive().await;
}

#[tokio::test]
async fn silent_client_gets_connection_timeout() {
    let server = TestServer::start("", "negotiation_timeout_secs = 1", "", "");
    let mut client = Client::connect(server.c2s).await;
    client.expect_stream_error("connection-timeout").await;
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.expect_stream_error("connection-timeout").await;
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_are_refused_with_policy_violation() {
    let mut server = TestServer::start("", "", "max_connections_per_ip = 2", "");
    let mut first = Client::connect(server.c2s).await;
    first.open_stream("localhost").await;
    let mut second = Client::connect(server.c2s).await;
    second.open_stream("localhost").await;
    let mut third = Client::connect(server.c2s).await;
    third.expect_stream_error("policy-violation").await;
    drop(first);
    assert!(server.is_running());
}

#[tokio::test]
async fn bind_with_invalid_resource_gets_bad_request() {
    let server = server_with_users(&["tia"]).await;
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    client.open_stream("localhost").await;
    let answer = client
        .authenticate(Mechanism::ScramSha256, "tia", PASSWORD)
        .await;
    assert!(answer.is("success", SASL_NS));
    let features = client.open_stream("localhost").await;
    assert!(features.child("bind", BIND_NS).is_some());
    let reply = client.bind(Some(&"r".repeat(1100))).await;
    assert_eq!(reply.attr("type"), Some("error"));
    let error = reply.child("error", CLIENT_NS).expect("error child");
    assert!(error.child("bad-request", STANZAS_NS).is_some());
}

#[tokio::test]
async fn client_that_stops_reading_is_disconnected_and_the_sender_keeps_working() {
    let server = TestServer::start("", "outbound_queue = 8\nwrite_timeout_secs = 1", "", "");
    server.adduser("ursa@localhost");
    server.adduser("vera@localhost");
    let mut slow = Client::login(&server, "ursa", "slow").await;
    let mut sender = Client::login(&server, "vera", "fast").await;
    let body = "z".repeat(50_000);
    // Headlines to a vanished resource are dropped, so the sender gets no bounces to read.
    for i in 0..400 {
        sender
            .send(&format!(
                "<message to='ursa@localhost/slow' type='headline' id='h{i}'><body>{body}</body></message>"
            ))
            .await;
    }
    // Far more than the socket buffers hold: the server must give up on the reader.
    while slow.next_event().await.is_some() {}
    sender.assert_alive().await;
}

#[tokio::test]
async fn a_pipelined_burst_of_stanzas_is_answered_in_full_and_in_order() {
    let server = TestServer::default_config();
    server.adduser("alice@localhost");
    let mut alice = Client::login(&server, "alice", "laptop").await;
    // More requests than a session's outbound queue holds (1024), in one write.
    let burst: String = (0..3000)
        .map(|n| {
            format!("<iq type='get' id='p{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        })
        .collect();
    alice.send(&burst).await;
    for n in 0..3000 {
        let reply = alice.next_element().await;
        assert_eq!(reply.attr("id"), Some(format!("p{n}").as_str()));
        assert_eq!(reply.attr("type"), Some("result"));
    }
    alice.assert_alive().await;
}
