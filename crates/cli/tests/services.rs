//! Server and account services against the real binary: service discovery, software
//! version, entity time, last activity, vCards and private XML storage, including
//! their access rules and that stored data survives a restart.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use starling_proto::datetime::parse_datetime;
use starling_xml::Element;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const VERSION: &str = "jabber:iq:version";
const TIME: &str = "urn:xmpp:time";
const LAST: &str = "jabber:iq:last";
const VCARD: &str = "vcard-temp";
const PRIVATE: &str = "jabber:iq:private";

fn server_with_users(users: &[&str]) -> TestServer {
    let server = TestServer::default_config();
    for user in users {
        server.adduser(&format!("{user}@localhost"));
    }
    server
}

fn features(reply: &Element) -> Vec<String> {
    reply
        .child("query", DISCO_INFO)
        .expect("disco#info query")
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.attr("var").map(str::to_string))
        .collect()
}

fn vcard_set(id: &str, to: Option<&str>, fn_text: &str) -> String {
    let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
    format!(
        "<iq type='set' id='{id}'{to}><vCard xmlns='vcard-temp'><FN>{fn_text}</FN>\
         <NICKNAME>nick</NICKNAME></vCard></iq>"
    )
}

fn fn_of(reply: &Element) -> Option<String> {
    reply
        .child("vCard", VCARD)
        .expect("vCard payload")
        .child("FN", VCARD)
        .map(Element::text)
}

/// The private XML payload of a result: the one element inside the query.
fn private_payload(reply: &Element) -> Element {
    let query = reply.child("query", PRIVATE).expect("private query");
    let mut children = query.elements();
    let element = children.next().expect("stored element").clone();
    assert!(children.next().is_none(), "{}", query.to_xml(CLIENT_NS));
    element
}

#[tokio::test]
async fn server_disco_info_lists_server_identity_and_every_feature() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            &format!("<iq type='get' id='d1' to='localhost'><query xmlns='{DISCO_INFO}'/></iq>"),
            "d1",
        )
        .await;
    let query = reply.child("query", DISCO_INFO).expect("query");
    let identity = query.child("identity", DISCO_INFO).expect("identity");
    assert_eq!(identity.attr("category"), Some("server"));
    assert_eq!(identity.attr("type"), Some("im"));
    let features = features(&reply);
    for feature in [
        "urn:xmpp:ping",
        VERSION,
        TIME,
        LAST,
        VCARD,
        DISCO_INFO,
        "http://jabber.org/protocol/disco#items",
    ] {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature} missing from {features:?}"
        );
    }
    assert!(!features.iter().any(|f| f == PRIVATE), "{features:?}");
}

#[tokio::test]
async fn account_disco_info_lists_account_features() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            &format!(
                "<iq type='get' id='d2' to='alice@localhost'><query xmlns='{DISCO_INFO}'/></iq>"
            ),
            "d2",
        )
        .await;
    let features = features(&reply);
    for feature in [VCARD, PRIVATE, LAST, "urn:xmpp:ping", DISCO_INFO] {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature} missing from {features:?}"
        );
    }
    assert!(!features.iter().any(|f| f == VERSION), "{features:?}");
}

#[tokio::test]
async fn version_answers_with_name_and_version_and_no_os() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            &format!("<iq type='get' id='v1' to='localhost'><query xmlns='{VERSION}'/></iq>"),
            "v1",
        )
        .await;
    assert_eq!(reply.attr("from"), Some("localhost"));
    let query = reply.child("query", VERSION).expect("version query");
    assert_eq!(
        query.child("name", VERSION).map(Element::text).as_deref(),
        Some("Starling")
    );
    assert_eq!(
        query
            .child("version", VERSION)
            .map(Element::text)
            .as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(query.child("os", VERSION).is_none());

    alice
        .expect_stanza_error(
            &format!("<iq type='set' id='v2' to='localhost'><query xmlns='{VERSION}'/></iq>"),
            "v2",
            "not-allowed",
        )
        .await;
}

#[tokio::test]
async fn time_answers_with_utc_close_to_now() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            &format!("<iq type='get' id='t1' to='localhost'><time xmlns='{TIME}'/></iq>"),
            "t1",
        )
        .await;
    let time = reply.child("time", TIME).expect("time payload");
    assert_eq!(
        time.child("tzo", TIME).map(Element::text).as_deref(),
        Some("+00:00")
    );
    let utc = time.child("utc", TIME).expect("utc").text();
    assert!(utc.ends_with('Z'), "{utc}");
    let reported = parse_datetime(&utc).expect("XEP-0082 DateTime");
    let now = SystemTime::now();
    let skew = now
        .duration_since(reported)
        .or_else(|_| reported.duration_since(now))
        .expect("comparable times");
    assert!(skew < Duration::from_secs(600), "{utc} is {skew:?} off");
}

#[tokio::test]
async fn last_activity_of_the_server_is_its_uptime() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            &format!("<iq type='get' id='l1' to='localhost'><query xmlns='{LAST}'/></iq>"),
            "l1",
        )
        .await;
    let query = reply.child("query", LAST).expect("last query");
    let seconds: u64 = query
        .attr("seconds")
        .expect("seconds")
        .parse()
        .expect("a non-negative integer");
    assert!(seconds < 600, "{seconds}");
    assert!(query.text().is_empty());
}

#[tokio::test]
async fn last_activity_of_oneself_while_online_is_zero() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            &format!("<iq type='get' id='l2' to='alice@localhost'><query xmlns='{LAST}'/></iq>"),
            "l2",
        )
        .await;
    assert_eq!(
        reply.child("query", LAST).and_then(|q| q.attr("seconds")),
        Some("0")
    );
}

#[tokio::test]
async fn last_activity_of_a_stranger_is_forbidden() {
    let server = server_with_users(&["alice", "bob"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let _bob = Client::login(&server, "bob", "phone").await;
    alice
        .expect_stanza_error(
            &format!("<iq type='get' id='l3' to='bob@localhost'><query xmlns='{LAST}'/></iq>"),
            "l3",
            "forbidden",
        )
        .await;
    alice.assert_alive().await;
}

#[tokio::test]
async fn vcard_set_then_get_round_trips_unicode() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let empty = alice
        .expect_result(
            "<iq type='get' id='c0'><vCard xmlns='vcard-temp'/></iq>",
            "c0",
        )
        .await;
    let vcard = empty
        .child("vCard", VCARD)
        .expect("empty vCard before any set");
    assert!(vcard.children.is_empty(), "{}", vcard.to_xml(CLIENT_NS));

    let name = "Алиса Ŀiddell 🐦 &amp; co";
    alice
        .expect_result(&vcard_set("c1", None, name), "c1")
        .await;
    let reply = alice
        .expect_result(
            "<iq type='get' id='c2'><vCard xmlns='vcard-temp'/></iq>",
            "c2",
        )
        .await;
    assert_eq!(fn_of(&reply).as_deref(), Some("Алиса Ŀiddell 🐦 & co"));
    let nickname = reply
        .child("vCard", VCARD)
        .and_then(|v| v.child("NICKNAME", VCARD))
        .map(Element::text);
    assert_eq!(nickname.as_deref(), Some("nick"));

    // A set replaces the whole vCard.
    alice
        .expect_result(
            "<iq type='set' id='c3'><vCard xmlns='vcard-temp'><FN>Second</FN></vCard></iq>",
            "c3",
        )
        .await;
    let reply = alice
        .expect_result(
            "<iq type='get' id='c4' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
            "c4",
        )
        .await;
    assert_eq!(fn_of(&reply).as_deref(), Some("Second"));
    assert!(reply
        .child("vCard", VCARD)
        .and_then(|v| v.child("NICKNAME", VCARD))
        .is_none());
}

#[tokio::test]
async fn vcard_set_on_another_account_is_forbidden() {
    let server = server_with_users(&["alice", "bob"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    alice
        .expect_stanza_error(
            &vcard_set("c5", Some("bob@localhost"), "Mallory"),
            "c5",
            "forbidden",
        )
        .await;
    let mut bob = Client::login(&server, "bob", "phone").await;
    let reply = bob
        .expect_result(
            "<iq type='get' id='c6'><vCard xmlns='vcard-temp'/></iq>",
            "c6",
        )
        .await;
    assert_eq!(fn_of(&reply), None, "bob's vCard is untouched");
}

#[tokio::test]
async fn vcard_of_another_user_is_readable() {
    let server = server_with_users(&["alice", "bob", "carol"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    alice
        .expect_result(&vcard_set("c7", None, "Alice"), "c7")
        .await;
    let mut bob = Client::login(&server, "bob", "phone").await;
    let reply = bob
        .expect_result(
            "<iq type='get' id='c8' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
            "c8",
        )
        .await;
    assert_eq!(reply.attr("from"), Some("alice@localhost"));
    assert_eq!(fn_of(&reply).as_deref(), Some("Alice"));

    // XEP-0054 §3.3: no vCard and no account give the same error.
    for to in ["carol@localhost", "nobody@localhost"] {
        bob.expect_stanza_error(
            &format!("<iq type='get' id='c9' to='{to}'><vCard xmlns='vcard-temp'/></iq>"),
            "c9",
            "service-unavailable",
        )
        .await;
    }
}

#[tokio::test]
async fn server_vcard_is_empty_and_read_only() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            "<iq type='get' id='s1' to='localhost'><vCard xmlns='vcard-temp'/></iq>",
            "s1",
        )
        .await;
    assert!(reply.child("vCard", VCARD).is_some());
    alice
        .expect_stanza_error(
            &vcard_set("s2", Some("localhost"), "Owned"),
            "s2",
            "not-allowed",
        )
        .await;
}

#[tokio::test]
async fn oversized_vcard_is_not_acceptable() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let photo = "A".repeat(70 * 1024);
    alice
        .expect_stanza_error(
            &format!(
                "<iq type='set' id='c10'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>\
                 <BINVAL>{photo}</BINVAL></PHOTO></vCard></iq>"
            ),
            "c10",
            "not-acceptable",
        )
        .await;
    let reply = alice
        .expect_result(
            "<iq type='get' id='c11'><vCard xmlns='vcard-temp'/></iq>",
            "c11",
        )
        .await;
    assert!(reply
        .child("vCard", VCARD)
        .is_some_and(|v| v.children.is_empty()));
}

#[tokio::test]
async fn private_xml_stores_and_retrieves_by_namespace() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice.expect_result("<iq type='get' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>",
        "p1",
    )
    .await;
    let empty = private_payload(&reply);
    assert!(empty.is("prefs", "urn:example:prefs") && empty.children.is_empty());

    alice
        .expect_result(
            "<iq type='set' id='p2'><query xmlns='jabber:iq:private'>\
         <prefs xmlns='urn:example:prefs' v='2'><nick>Ålice</nick></prefs></query></iq>",
            "p2",
        )
        .await;
    alice
        .expect_result(
            "<iq type='set' id='p3'><query xmlns='jabber:iq:private'>\
         <other xmlns='urn:example:other'>unrelated</other></query></iq>",
            "p3",
        )
        .await;
    let reply = alice
        .expect_result(
            "<iq type='get' id='p4' to='alice@localhost'><query xmlns='jabber:iq:private'>\
         <prefs xmlns='urn:example:prefs'/></query></iq>",
            "p4",
        )
        .await;
    let prefs = private_payload(&reply);
    assert!(prefs.is("prefs", "urn:example:prefs"));
    assert_eq!(prefs.attr("v"), Some("2"));
    assert_eq!(
        prefs
            .child("nick", "urn:example:prefs")
            .map(Element::text)
            .as_deref(),
        Some("Ålice")
    );

    alice
        .expect_stanza_error(
            "<iq type='get' id='p5'><query xmlns='jabber:iq:private'/></iq>",
            "p5",
            "not-acceptable",
        )
        .await;
}

#[tokio::test]
async fn private_xml_refuses_reserved_namespaces() {
    let server = server_with_users(&["alice"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    for (id, payload) in [
        ("r1", "<roster xmlns='jabber:iq:roster'/>"),
        ("r2", "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>"),
        ("r3", "<x xmlns='http://jabber.org/protocol/muc'/>"),
        ("r4", "<inherits/>"),
    ] {
        alice
            .expect_stanza_error(
                &format!("<iq type='set' id='{id}'><query xmlns='jabber:iq:private'>{payload}</query></iq>"),
                id,
                "not-acceptable",
            )
            .await;
    }
}

#[tokio::test]
async fn private_xml_of_another_account_is_forbidden() {
    let server = server_with_users(&["alice", "bob"]);
    let mut alice = Client::login(&server, "alice", "desk").await;
    for (id, kind) in [("o1", "get"), ("o2", "set")] {
        alice
            .expect_stanza_error(
                &format!(
                    "<iq type='{kind}' id='{id}' to='bob@localhost'><query xmlns='jabber:iq:private'>\
                     <prefs xmlns='urn:example:prefs'/></query></iq>"
                ),
                id,
                "forbidden",
            )
            .await;
    }
}

#[tokio::test]
async fn vcard_and_private_xml_survive_a_restart() {
    let mut server = server_with_users(&["alice"]);
    {
        let mut alice = Client::login(&server, "alice", "desk").await;
        alice
            .expect_result(&vcard_set("x1", None, "Persistent Ålice"), "x1")
            .await;
        alice
            .expect_result(
                "<iq type='set' id='x2'><query xmlns='jabber:iq:private'>\
             <prefs xmlns='urn:example:prefs'>kept</prefs></query></iq>",
                "x2",
            )
            .await;
    }
    // Keep the data directory while the first process is killed, then serve it again.
    let placeholder = tempfile::tempdir().expect("temp dir");
    let dir = std::mem::replace(&mut server.dir, placeholder);
    let config_path = server.config_path.clone();
    drop(server);
    let server = TestServer::start_with(dir, config_path);

    let mut alice = Client::login(&server, "alice", "desk").await;
    let reply = alice
        .expect_result(
            "<iq type='get' id='x3'><vCard xmlns='vcard-temp'/></iq>",
            "x3",
        )
        .await;
    assert_eq!(fn_of(&reply).as_deref(), Some("Persistent Ålice"));
    let reply = alice
        .expect_result(
            "<iq type='get' id='x4'><query xmlns='jabber:iq:private'>\
         <prefs xmlns='urn:example:prefs'/></query></iq>",
            "x4",
        )
        .await;
    assert_eq!(private_payload(&reply).text(), "kept");
}
