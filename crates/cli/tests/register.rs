//! XEP-0077 in-band registration against the real binary: off by default, account
//! creation over TLS only, its errors, password change and cancellation.

mod common;

use common::*;
use starling_proto::sasl::Mechanism;

const REGISTER_NS: &str = "jabber:iq:register";
const REGISTER_FEATURE_NS: &str = "http://jabber.org/features/iq-register";

fn server_with_registration() -> TestServer {
    TestServer::start("", "", "", "allow_registration = true")
}

fn accounts(server: &TestServer) -> Vec<String> {
    let output = server.admin(&["list-users"], None);
    assert!(output.status.success(), "list-users succeeds");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A stream after STARTTLS, not logged in; returns its features.
async fn tls_stream(server: &TestServer) -> (Client, starling_xml::Element) {
    let mut client = Client::connect(server.c2s).await;
    client.open_stream("localhost").await;
    client.starttls(&server.cert_path()).await;
    let features = client.open_stream("localhost").await;
    (client, features)
}

fn register_set(id: &str, username: &str, password: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><query xmlns='{REGISTER_NS}'>\
         <username>{username}</username><password>{password}</password></query></iq>"
    )
}

/// Whether `user` can log in with `password` (SCRAM-SHA-512, to cover every stored hash
/// beside the SHA-256 that `Client::login` uses).
async fn can_log_in(server: &TestServer, user: &str, password: &str) -> bool {
    let (mut client, _) = tls_stream(server).await;
    let answer = client
        .authenticate(Mechanism::ScramSha512, user, password)
        .await;
    answer.is("success", SASL_NS)
}

#[tokio::test]
async fn registration_is_off_by_default() {
    let server = TestServer::default_config();
    let (mut client, features) = tls_stream(&server).await;
    assert!(features.child("register", REGISTER_FEATURE_NS).is_none());
    client
        .expect_stanza_error(
            &format!("<iq type='get' id='r1'><query xmlns='{REGISTER_NS}'/></iq>"),
            "r1",
            "service-unavailable",
        )
        .await;
    client
        .expect_stanza_error(
            &register_set("r2", "mallory", PASSWORD),
            "r2",
            "service-unavailable",
        )
        .await;
    // The stream survives: logging in is still possible on it.
    let answer = client
        .authenticate(Mechanism::ScramSha256, "mallory", PASSWORD)
        .await;
    assert!(answer.is("failure", SASL_NS));
    assert!(accounts(&server).is_empty());
}

#[tokio::test]
async fn registered_account_logs_in_with_its_password() {
    let server = server_with_registration();
    let (mut client, features) = tls_stream(&server).await;
    assert!(features.child("register", REGISTER_FEATURE_NS).is_some());
    let form = client
        .expect_result(
            &format!("<iq type='get' id='r1' to='localhost'><query xmlns='{REGISTER_NS}'/></iq>"),
            "r1",
        )
        .await;
    let query = form.child("query", REGISTER_NS).expect("the form");
    for field in ["instructions", "username", "password"] {
        assert!(query.child(field, REGISTER_NS).is_some(), "{field}");
    }
    // The username is PRECIS-prepared: it is stored in lower case.
    client
        .expect_result(&register_set("r2", "Newbie", PASSWORD), "r2")
        .await;
    client
        .expect_stanza_error(
            &register_set("r3", "second", PASSWORD),
            "r3",
            "not-acceptable",
        )
        .await;
    assert_eq!(accounts(&server), vec!["newbie@localhost".to_string()]);

    // The same stream logs in with the new account.
    let answer = client
        .authenticate(Mechanism::ScramSha256Plus, "newbie", PASSWORD)
        .await;
    assert!(answer.is("success", SASL_NS));
    let mut session = Client::login(&server, "newbie", "phone").await;
    session.assert_alive().await;
    assert!(can_log_in(&server, "newbie", PASSWORD).await);
    assert!(
        !server.log().contains(PASSWORD),
        "the password is never logged"
    );
}

#[tokio::test]
async fn taken_and_invalid_usernames_and_empty_passwords_are_refused() {
    let server = server_with_registration();
    server.adduser("alice@localhost");
    let (mut client, _) = tls_stream(&server).await;
    client
        .expect_stanza_error(&register_set("r1", "alice", "other"), "r1", "conflict")
        .await;
    client
        .expect_stanza_error(
            &register_set("r2", "bad user", "secret"),
            "r2",
            "jid-malformed",
        )
        .await;
    // Failures count like failed logins (three by default); use a fresh stream.
    let (mut client, _) = tls_stream(&server).await;
    client
        .expect_stanza_error(&register_set("r3", "bob", ""), "r3", "not-acceptable")
        .await;
    assert_eq!(accounts(&server), vec!["alice@localhost".to_string()]);
    assert!(can_log_in(&server, "alice", PASSWORD).await);
}

#[tokio::test]
async fn registration_before_tls_is_neither_offered_nor_accepted() {
    let server = server_with_registration();
    let mut client = Client::connect(server.c2s).await;
    let features = client.open_stream("localhost").await;
    assert!(features.child("register", REGISTER_FEATURE_NS).is_none());
    client
        .expect_stanza_error(&register_set("r1", "eve", PASSWORD), "r1", "not-authorized")
        .await;
    assert!(accounts(&server).is_empty());
}

#[tokio::test]
async fn password_change_replaces_the_old_password() {
    let server = server_with_registration();
    server.adduser("alice@localhost");
    let mut alice = Client::login(&server, "alice", "laptop").await;
    let disco = alice
        .expect_result(
            "<iq type='get' id='d1' to='localhost'>\
         <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            "d1",
        )
        .await;
    assert!(
        disco
            .to_xml(CLIENT_NS)
            .contains(&format!("var='{REGISTER_NS}'")),
        "{}",
        disco.to_xml(CLIENT_NS)
    );
    let info = alice
        .expect_result(
            &format!("<iq type='get' id='g1'><query xmlns='{REGISTER_NS}'/></iq>"),
            "g1",
        )
        .await;
    let query = info.child("query", REGISTER_NS).expect("query");
    assert!(query.child("registered", REGISTER_NS).is_some());
    assert_eq!(
        query.child("username", REGISTER_NS).map(|u| u.text()),
        Some("alice".into())
    );
    alice
        .expect_stanza_error(
            &format!(
                "<iq type='set' id='c0' to='localhost'><query xmlns='{REGISTER_NS}'>\
                 <username>bob</username><password>stolen</password></query></iq>"
            ),
            "c0",
            "forbidden",
        )
        .await;
    alice
        .expect_stanza_error(&register_set("c1", "alice", ""), "c1", "not-acceptable")
        .await;
    let change = format!(
        "<iq type='set' id='c2' to='localhost'><query xmlns='{REGISTER_NS}'>\
         <username>alice</username><password>brand new secret</password></query></iq>"
    );
    alice.expect_result(&change, "c2").await;
    alice.assert_alive().await;
    assert!(!can_log_in(&server, "alice", PASSWORD).await);
    assert!(can_log_in(&server, "alice", "brand new secret").await);
}

#[tokio::test]
async fn password_change_is_not_allowed_when_registration_is_off() {
    let server = TestServer::default_config();
    server.adduser("alice@localhost");
    let mut alice = Client::login(&server, "alice", "laptop").await;
    alice
        .expect_stanza_error(
            &register_set("c1", "alice", "brand new secret"),
            "c1",
            "not-allowed",
        )
        .await;
    assert!(can_log_in(&server, "alice", PASSWORD).await);
}

/// `subscriber` asks for `contact`'s presence and `contact` approves; both drain
/// what the exchange sent them.
async fn subscribe(subscriber: &mut Client, contact: &mut Client) {
    let to = contact.bare_jid();
    subscriber
        .send(&format!("<presence to='{to}' type='subscribe'/>"))
        .await;
    subscriber.drain().await;
    let to = subscriber.bare_jid();
    contact
        .send(&format!("<presence to='{to}' type='subscribed'/>"))
        .await;
    contact.drain().await;
    subscriber.drain().await;
}

fn is_presence(e: &starling_xml::Element, kind: &str, from: &str) -> bool {
    e.name == "presence" && e.attr("type") == Some(kind) && e.attr("from") == Some(from)
}

#[tokio::test]
async fn cancellation_deletes_the_account_ends_its_sessions_and_its_subscriptions() {
    let server = TestServer::default_config();
    server.adduser("alice@localhost");
    server.adduser("bob@localhost");
    let mut alice = Client::login(&server, "alice", "laptop").await;
    let mut alice_phone = Client::login(&server, "alice", "phone").await;
    let mut bob = Client::login(&server, "bob", "desk").await;
    for client in [&mut alice, &mut alice_phone, &mut bob] {
        client.go_available().await;
    }
    subscribe(&mut alice, &mut bob).await;
    subscribe(&mut bob, &mut alice).await;
    alice_phone.drain().await;
    bob.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    bob.wait_for(|e| e.attr("id") == Some("r0")).await;

    let remove =
        format!("<iq type='set' id='u1'><query xmlns='{REGISTER_NS}'><remove/></query></iq>");
    alice.send(&remove).await;
    let result = alice.wait_for(|e| e.attr("id") == Some("u1")).await;
    assert_eq!(
        result.attr("type"),
        Some("result"),
        "{}",
        result.to_xml(CLIENT_NS)
    );
    alice.expect_stream_error("not-authorized").await;
    alice_phone.expect_stream_error("not-authorized").await;

    // Bob loses both subscriptions and sees both of Alice's resources go.
    let mut expected = vec![
        ("unsubscribe", "alice@localhost"),
        ("unsubscribed", "alice@localhost"),
        ("unavailable", "alice@localhost/laptop"),
        ("unavailable", "alice@localhost/phone"),
    ];
    while !expected.is_empty() {
        let e = bob.next_element().await;
        expected.retain(|(kind, from)| !is_presence(&e, kind, from));
    }
    bob.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = bob.wait_for(|e| e.attr("id") == Some("r1")).await;
    let item = roster
        .child("query", "jabber:iq:roster")
        .and_then(|q| {
            q.elements()
                .find(|i| i.attr("jid") == Some("alice@localhost"))
        })
        .expect("bob keeps alice in his roster")
        .clone();
    assert_eq!(item.attr("subscription"), Some("none"));
    assert_eq!(item.attr("ask"), None);

    assert_eq!(accounts(&server), vec!["bob@localhost".to_string()]);
    assert!(!can_log_in(&server, "alice", PASSWORD).await);
    bob.assert_alive().await;
}
