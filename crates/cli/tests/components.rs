//! External components (XEP-0114) against the real server: the handshake and its
//! failures, routing both ways, service discovery, and what a disconnected
//! component's users get.

mod common;

use common::*;
use starling_proto::component::{handshake_digest, COMPONENT_ACCEPT_NS};
use starling_xml::{Element, StreamEvent};

const DOMAIN: &str = "echo.localhost";
const SECRET: &str = "sh4red-secret";

fn server() -> TestServer {
    let server = TestServer::start(
        &format!(
            "[components]\nlisten = [\"127.0.0.1:0\"]\n\
             [[components.hosted]]\ndomain = \"{DOMAIN}\"\nsecret = \"{SECRET}\"\nname = \"Echo service\"\n\
             [[components.hosted]]\ndomain = \"offline.localhost\"\nsecret = \"other\"\n"
        ),
        "",
        "",
        "",
    );
    server.adduser("alice@localhost");
    server
}

fn header(to: &str) -> String {
    format!(
        "<stream:stream xmlns='{COMPONENT_ACCEPT_NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>"
    )
}

/// Opens a component stream and returns the stream id the server announced.
async fn open(component: &mut Client, to: &str) -> String {
    component.send(&header(to)).await;
    match component.next_event().await {
        Some(StreamEvent::Open(header)) => header.attr("id").expect("stream id").to_string(),
        other => panic!("expected the server's stream header, got {other:?}"),
    }
}

async fn connect_component(server: &TestServer) -> Client {
    let mut component = Client::connect(server.components.expect("component listener")).await;
    let id = open(&mut component, DOMAIN).await;
    component
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, SECRET)
        ))
        .await;
    let answer = component.next_element().await;
    assert!(
        answer.is("handshake", COMPONENT_ACCEPT_NS),
        "{}",
        answer.to_xml(COMPONENT_ACCEPT_NS)
    );
    component
}

fn body(stanza: &Element) -> Option<String> {
    stanza
        .elements()
        .find(|e| e.name == "body")
        .map(Element::text)
}

#[tokio::test]
async fn messages_iq_and_presence_flow_both_ways_between_users_and_a_component() {
    let server = server();
    let mut component = connect_component(&server).await;
    let mut alice = Client::login(&server, "alice", "laptop").await;
    alice.go_available().await;

    alice
        .send(&format!(
            "<message to='bot@{DOMAIN}' type='chat' id='m1'><body>hello bot</body></message>"
        ))
        .await;
    let received = component.next_element().await;
    assert_eq!(received.name, "message");
    assert_eq!(received.ns, COMPONENT_ACCEPT_NS);
    assert_eq!(received.attr("from"), Some("alice@localhost/laptop"));
    assert_eq!(body(&received).as_deref(), Some("hello bot"));

    component
        .send(&format!(
            "<message from='bot@{DOMAIN}/x' to='alice@localhost/laptop' type='chat'><body>hello alice</body></message>"
        ))
        .await;
    let reply = alice.wait_for(|e| e.name == "message").await;
    assert_eq!(reply.attr("from"), Some(format!("bot@{DOMAIN}/x").as_str()));
    assert_eq!(body(&reply).as_deref(), Some("hello alice"));

    // Alice subscribes; the component approves and is then seen online.
    alice
        .send(&format!("<presence to='{DOMAIN}' type='subscribe'/>"))
        .await;
    let request = component.next_element().await;
    assert_eq!(request.attr("type"), Some("subscribe"));
    assert_eq!(request.attr("from"), Some("alice@localhost"));
    component
        .send(&format!(
            "<presence from='{DOMAIN}' to='alice@localhost' type='subscribed'/>\
             <presence from='{DOMAIN}' to='alice@localhost'/>"
        ))
        .await;
    alice
        .wait_for(|e| {
            e.name == "presence" && e.attr("from") == Some(DOMAIN) && e.attr("type").is_none()
        })
        .await;
    alice
        .send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = alice.wait_for(|e| e.attr("id") == Some("r")).await;
    let item = roster
        .child("query", "jabber:iq:roster")
        .and_then(|q| q.elements().find(|i| i.attr("jid") == Some(DOMAIN)))
        .expect("the component on the roster")
        .clone();
    assert_eq!(item.attr("subscription"), Some("to"));

    // Her next resource to come online asks the component for its presence.
    let mut phone = Client::login(&server, "alice", "phone").await;
    phone.send("<presence/>").await;
    let probe = component
        .wait_for(|e| e.name == "presence" && e.attr("type") == Some("probe"))
        .await;
    assert_eq!(probe.attr("from"), Some("alice@localhost"));
    assert_eq!(probe.attr("to"), Some(DOMAIN));
    component
        .send(&format!(
            "<presence from='{DOMAIN}' to='alice@localhost/phone'><status>here</status></presence>"
        ))
        .await;
    phone
        .wait_for(|e| e.name == "presence" && e.attr("from") == Some(DOMAIN))
        .await;

    // The component's IQ to a user's bare JID is answered by the server for her.
    component
        .send(&format!(
            "<iq type='get' id='v1' from='{DOMAIN}' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let answer = component.wait_for(|e| e.attr("id") == Some("v1")).await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        answer.to_xml(COMPONENT_ACCEPT_NS)
    );

    // Service discovery lists the connected component with its name only.
    let items = alice
        .expect_result(
            "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
            "d",
        )
        .await;
    let listed: Vec<(Option<&str>, Option<&str>)> = items
        .child("query", "http://jabber.org/protocol/disco#items")
        .expect("items")
        .elements()
        .map(|i| (i.attr("jid"), i.attr("name")))
        .collect();
    assert_eq!(listed, vec![(Some(DOMAIN), Some("Echo service"))]);
}

#[tokio::test]
async fn a_disconnected_component_leaves_users_with_service_unavailable() {
    let server = server();
    let component = connect_component(&server).await;
    // A clean close: the server has let the component go once the close completes.
    component.close().await;
    let mut alice = Client::login(&server, "alice", "laptop").await;
    for (id, stanza) in [
        ("m", format!("<message to='bot@{DOMAIN}' id='m' type='chat'><body>x</body></message>")),
        ("q", format!("<iq to='{DOMAIN}' id='q' type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")),
    ] {
        alice
            .expect_stanza_error(&stanza, id, "service-unavailable")
            .await;
    }
    alice
        .expect_stanza_error(
            "<message to='x@offline.localhost' id='o' type='chat'><body>x</body></message>",
            "o",
            "service-unavailable",
        )
        .await;
    // Presence to it is dropped without an answer.
    alice
        .send(&format!("<presence to='{DOMAIN}' type='subscribe'/>"))
        .await;
    let after = alice.drain().await;
    assert!(
        after.iter().all(|e| e.attr("type") != Some("error")),
        "{after:?}"
    );
}

#[tokio::test]
async fn wrong_secret_unknown_domain_and_garbage_get_their_stream_errors() {
    let server = server();
    let addr = server.components.expect("component listener");

    let mut wrong = Client::connect(addr).await;
    let id = open(&mut wrong, DOMAIN).await;
    wrong
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, "guess")
        ))
        .await;
    wrong.expect_stream_error("not-authorized").await;

    let mut unknown = Client::connect(addr).await;
    unknown.send(&header("mail.localhost")).await;
    unknown.expect_stream_error("host-unknown").await;

    let mut garbage = Client::connect(addr).await;
    open(&mut garbage, DOMAIN).await;
    garbage.send("<handshake>abc</handshak>").await;
    garbage.expect_stream_error("not-well-formed").await;

    let mut early = Client::connect(addr).await;
    open(&mut early, DOMAIN).await;
    early
        .send("<message from='bot@echo.localhost' to='alice@localhost'/>")
        .await;
    early.expect_stream_error("not-authorized").await;

    // After all that, the real component still connects.
    connect_component(&server).await;
}

#[tokio::test]
async fn a_second_connection_of_a_connected_component_gets_conflict() {
    let server = server();
    let mut first = connect_component(&server).await;
    let mut second = Client::connect(server.components.expect("listener")).await;
    let id = open(&mut second, DOMAIN).await;
    second
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, SECRET)
        ))
        .await;
    second.expect_stream_error("conflict").await;
    // The first one keeps working.
    first
        .send(&format!(
            "<iq type='get' id='p' from='{DOMAIN}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    let pong = first.wait_for(|e| e.attr("id") == Some("p")).await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test]
async fn a_component_speaking_for_another_domain_is_cut_off_and_nothing_is_routed() {
    let server = server();
    let mut component = connect_component(&server).await;
    let mut alice = Client::login(&server, "alice", "laptop").await;
    alice.go_available().await;
    component
        .send("<message from='admin@localhost' to='alice@localhost/laptop' type='chat'><body>forged</body></message>")
        .await;
    component.expect_stream_error("invalid-from").await;
    let received = alice.drain().await;
    assert!(
        received.iter().all(|e| e.name != "message"),
        "a forged message arrived: {received:?}"
    );
    alice.assert_alive().await;
}
