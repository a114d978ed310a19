//! Instant messaging against the real binary (RFC 6121, XEP-0160, XEP-0203,
//! XEP-0191): rosters and their versioning, the subscription state machine, presence
//! broadcast, probes and directed presence, offline storage, the delivery rules of
//! RFC 6121 §8.5, blocking, and what survives a restart or a crash.
//!
//! Nothing here sleeps: "nothing arrived" is proved by a ping round trip
//! (`Client::drain`), since the server handles each session's stanzas in order.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use starling_proto::datetime::parse_datetime;
use starling_xml::Element;

const BLOCKING: &str = "urn:xmpp:blocking";
const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
const DELAY: &str = "urn:xmpp:delay";

fn server_with(users: &[&str], extra_limits: &str) -> TestServer {
    let server = TestServer::start("", "", extra_limits, "");
    for user in users {
        server.adduser(&format!("{user}@localhost"));
    }
    server
}

fn xml(e: &Element) -> String {
    e.to_xml(CLIENT_NS)
}

fn dump(elements: &[Element]) -> String {
    elements.iter().map(xml).collect::<Vec<_>>().join("\n")
}

/// Send `stanza` and return everything that came back before a ping round trip.
async fn exchange(client: &mut Client, stanza: &str) -> Vec<Element> {
    client.send(stanza).await;
    client.drain().await
}

/// The one reply with this id among `elements`.
fn reply<'a>(elements: &'a [Element], id: &str) -> &'a Element {
    let replies: Vec<&Element> = elements
        .iter()
        .filter(|e| e.name == "iq" && e.attr("id") == Some(id))
        .collect();
    assert_eq!(replies.len(), 1, "one reply to {id}:\n{}", dump(elements));
    replies[0]
}

fn assert_result(elements: &[Element], id: &str) -> Element {
    let reply = reply(elements, id);
    assert_eq!(reply.attr("type"), Some("result"), "{}", xml(reply));
    reply.clone()
}

fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.child("error", CLIENT_NS)?;
    error
        .elements()
        .find(|c| c.ns == STANZAS_NS && c.name != "text")
        .map(|c| c.name.clone())
}

fn is_roster_push(e: &Element) -> bool {
    e.name == "iq" && e.attr("type") == Some("set") && e.child("query", ROSTER_NS).is_some()
}

/// The items of the roster pushes among `elements`, in order, after checking each
/// push is well-formed (RFC 6121 §2.1.6: one item, from the account or no 'from').
fn pushed_items(elements: &[Element], account: &str) -> Vec<Element> {
    elements
        .iter()
        .filter(|e| is_roster_push(e))
        .map(|push| {
            let from = push.attr("from");
            assert!(
                from.is_none() || from == Some(account),
                "push from the account itself: {}",
                xml(push)
            );
            let query = push.child("query", ROSTER_NS).expect("query");
            let items: Vec<&Element> = query.elements().collect();
            assert_eq!(items.len(), 1, "a push carries one item: {}", xml(push));
            items[0].clone()
        })
        .collect()
}

fn push_versions(elements: &[Element]) -> Vec<String> {
    elements
        .iter()
        .filter(|e| is_roster_push(e))
        .map(|p| {
            p.child("query", ROSTER_NS)
                .and_then(|q| q.attr("ver"))
                .expect("a versioned push")
                .to_string()
        })
        .collect()
}

fn groups(item: &Element) -> Vec<String> {
    item.elements()
        .filter(|e| e.is("group", ROSTER_NS))
        .map(Element::text)
        .collect()
}

fn presences<'a>(elements: &'a [Element], from: &str) -> Vec<&'a Element> {
    elements
        .iter()
        .filter(|e| e.name == "presence" && e.attr("from") == Some(from))
        .collect()
}

fn messages(elements: &[Element]) -> Vec<&Element> {
    elements.iter().filter(|e| e.name == "message").collect()
}

fn body(e: &Element) -> String {
    e.child("body", CLIENT_NS)
        .map(Element::text)
        .unwrap_or_default()
}

async fn roster_get(client: &mut Client, id: &str) -> Element {
    let received = exchange(
        client,
        &format!("<iq type='get' id='{id}'><query xmlns='{ROSTER_NS}'/></iq>"),
    )
    .await;
    assert_result(&received, id)
        .child("query", ROSTER_NS)
        .expect("a full roster")
        .clone()
}

fn roster_set(id: &str, item: &str) -> String {
    format!("<iq type='set' id='{id}'><query xmlns='{ROSTER_NS}'>{item}</query></iq>")
}

/// Send initial (or updated) presence and return what came back with it.
async fn available(client: &mut Client, presence: &str) -> Vec<Element> {
    exchange(client, presence).await
}

/// `subscriber` subscribes to `contact`'s presence and `contact` approves.
async fn subscribe(subscriber: &mut Client, contact: &mut Client) {
    let to = contact.bare_jid();
    exchange(
        subscriber,
        &format!("<presence to='{to}' type='subscribe'/>"),
    )
    .await;
    let to = subscriber.bare_jid();
    exchange(contact, &format!("<presence to='{to}' type='subscribed'/>")).await;
    subscriber.drain().await;
}

fn is_unavailable_from(e: &Element, from: &str) -> bool {
    e.name == "presence" && e.attr("type") == Some("unavailable") && e.attr("from") == Some(from)
}

// ---------------------------------------------------------------------------
// 1. Roster get / set / remove (RFC 6121 §2.1–§2.5)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn roster_set_pushes_to_interested_resources_and_enforces_limits() {
    let server = server_with(
        &["alice", "bob"],
        "max_roster_items = 3\nmax_roster_text = 16\n",
    );
    let mut r1 = Client::login(&server, "alice", "one").await;
    let mut r2 = Client::login(&server, "alice", "two").await;
    let mut r3 = Client::login(&server, "alice", "three").await;
    let empty = roster_get(&mut r1, "g1").await;
    assert_eq!(empty.elements().count(), 0, "{}", xml(&empty));
    assert!(empty.attr("ver").is_some(), "versioning offered");
    roster_get(&mut r2, "g2").await;

    // Add with a name and two groups: a result, and a push to each interested resource.
    let set = roster_set(
        "s1",
        "<item jid='bob@localhost' name='Bob'><group>Friends</group><group>Work</group></item>",
    );
    let received = exchange(&mut r1, &set).await;
    let result = assert_result(&received, "s1");
    assert_eq!(result.elements().count(), 0, "an empty result");
    for received in [received, r2.drain().await] {
        let items = pushed_items(&received, "alice@localhost");
        assert_eq!(items.len(), 1, "{}", dump(&received));
        assert_eq!(items[0].attr("jid"), Some("bob@localhost"));
        assert_eq!(items[0].attr("name"), Some("Bob"));
        assert_eq!(items[0].attr("subscription"), Some("none"));
        assert_eq!(items[0].attr("ask"), None);
        assert_eq!(groups(&items[0]), ["Friends", "Work"]);
    }
    let received = r3.drain().await;
    assert!(
        received.iter().all(|e| !is_roster_push(e)),
        "a resource that never fetched the roster gets no push:\n{}",
        dump(&received)
    );

    // Get shows the item, with the version.
    let roster = roster_get(&mut r1, "g3").await;
    let items: Vec<&Element> = roster.elements().collect();
    assert_eq!(items.len(), 1, "{}", xml(&roster));
    assert_eq!(items[0].attr("jid"), Some("bob@localhost"));
    assert_eq!(items[0].attr("name"), Some("Bob"));
    assert_eq!(items[0].attr("subscription"), Some("none"));
    assert_eq!(groups(items[0]), ["Friends", "Work"]);
    assert!(roster.attr("ver").is_some());
    assert_ne!(roster.attr("ver"), empty.attr("ver"), "the version changed");

    // Update the name and groups.
    let set = roster_set(
        "s2",
        "<item jid='bob@localhost' name='Robert'><group>Friends</group></item>",
    );
    let received = exchange(&mut r1, &set).await;
    assert_result(&received, "s2");
    for received in [received, r2.drain().await] {
        let items = pushed_items(&received, "alice@localhost");
        assert_eq!(items.len(), 1, "{}", dump(&received));
        assert_eq!(items[0].attr("name"), Some("Robert"));
        assert_eq!(groups(&items[0]), ["Friends"]);
    }

    // Remove: a push with subscription='remove', and the roster is empty again.
    let remove = roster_set("s3", "<item jid='bob@localhost' subscription='remove'/>");
    let received = exchange(&mut r1, &remove).await;
    assert_result(&received, "s3");
    for received in [received, r2.drain().await] {
        let items = pushed_items(&received, "alice@localhost");
        assert_eq!(items.len(), 1, "{}", dump(&received));
        assert_eq!(items[0].attr("jid"), Some("bob@localhost"));
        assert_eq!(items[0].attr("subscription"), Some("remove"));
    }
    assert_eq!(roster_get(&mut r1, "g4").await.elements().count(), 0);

    // Removing an item that is not there (§2.5.3).
    r1.expect_stanza_error(
        &roster_set("s4", "<item jid='bob@localhost' subscription='remove'/>"),
        "s4",
        "item-not-found",
    )
    .await;

    // Bad sets (§2.3.3).
    r1.expect_stanza_error(
        &roster_set(
            "b1",
            "<item jid='carol@localhost'/><item jid='dave@localhost'/>",
        ),
        "b1",
        "bad-request",
    )
    .await;
    r1.expect_stanza_error(
        &roster_set(
            "b2",
            "<item jid='carol@localhost'><group>X</group><group>X</group></item>",
        ),
        "b2",
        "bad-request",
    )
    .await;
    r1.expect_stanza_error(
        &roster_set(
            "b3",
            "<item jid='carol@localhost' name='seventeen chars!!'/>",
        ),
        "b3",
        "not-acceptable",
    )
    .await;
    for (n, contact) in ["c1", "c2", "c3"].iter().enumerate() {
        let id = format!("fill{n}");
        let received = exchange(
            &mut r1,
            &roster_set(&id, &format!("<item jid='{contact}@localhost'/>")),
        )
        .await;
        assert_result(&received, &id);
    }
    r1.expect_stanza_error(
        &roster_set("b4", "<item jid='c4@localhost'/>"),
        "b4",
        "not-acceptable",
    )
    .await;
    // Updating an existing item of a full roster is still allowed.
    let received = exchange(
        &mut r1,
        &roster_set("u1", "<item jid='c1@localhost' name='one'/>"),
    )
    .await;
    assert_result(&received, "u1");
    assert_eq!(roster_get(&mut r1, "g5").await.elements().count(), 3);
    // r2 heard of the three additions and the update, and of none of the refused sets.
    let received = r2.drain().await;
    let jids: Vec<String> = pushed_items(&received, "alice@localhost")
        .iter()
        .map(|i| i.attr("jid").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        jids,
        [
            "c1@localhost",
            "c2@localhost",
            "c3@localhost",
            "c1@localhost"
        ]
    );

    // Another account's roster is not ours to read or change.
    r1.expect_stanza_error(
        "<iq type='set' id='f1' to='bob@localhost'><query xmlns='jabber:iq:roster'>\
         <item jid='mallory@localhost'/></query></iq>",
        "f1",
        "forbidden",
    )
    .await;
    r1.expect_stanza_error(
        "<iq type='get' id='f2' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>",
        "f2",
        "forbidden",
    )
    .await;
    let mut bob = Client::login(&server, "bob", "desk").await;
    assert_eq!(roster_get(&mut bob, "bg").await.elements().count(), 0);
}

// ---------------------------------------------------------------------------
// 2. Roster versioning (RFC 6121 §2.6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn roster_get_with_a_version_returns_only_the_changes_since() {
    let server = server_with(&["alice"], "");
    let mut alice = Client::login(&server, "alice", "desk").await;
    roster_get(&mut alice, "g0").await;
    // Another interested resource, already up to date through its own pushes.
    let mut other = Client::login(&server, "alice", "other").await;
    roster_get(&mut other, "o0").await;
    let received = exchange(
        &mut alice,
        &roster_set("s1", "<item jid='carol@localhost'/>"),
    )
    .await;
    let v1 = push_versions(&received).pop().expect("push");
    let received = exchange(
        &mut alice,
        &roster_set("s2", "<item jid='dave@localhost'/>"),
    )
    .await;
    let v2 = push_versions(&received).pop().expect("push");
    assert_ne!(v1, v2);

    // The current version: an empty result and nothing else (§2.6.3).
    let received = exchange(
        &mut alice,
        &format!("<iq type='get' id='v2'><query xmlns='{ROSTER_NS}' ver='{v2}'/></iq>"),
    )
    .await;
    let result = assert_result(&received, "v2");
    assert_eq!(result.elements().count(), 0, "{}", xml(&result));
    assert!(
        received.iter().all(|e| !is_roster_push(e)),
        "{}",
        dump(&received)
    );

    // An older version: an empty result, then pushes of exactly what changed since.
    let received = exchange(
        &mut alice,
        &roster_set("s3", "<item jid='carol@localhost' subscription='remove'/>"),
    )
    .await;
    let v3 = push_versions(&received).pop().expect("push");
    other.drain().await;
    let received = exchange(
        &mut alice,
        &format!("<iq type='get' id='v1'><query xmlns='{ROSTER_NS}' ver='{v1}'/></iq>"),
    )
    .await;
    let result = assert_result(&received, "v1");
    assert_eq!(result.elements().count(), 0, "{}", xml(&result));
    let items = pushed_items(&received, "alice@localhost");
    let changes: Vec<(Option<&str>, Option<&str>)> = items
        .iter()
        .map(|i| (i.attr("jid"), i.attr("subscription")))
        .collect();
    assert_eq!(
        changes,
        [
            (Some("dave@localhost"), Some("none")),
            (Some("carol@localhost"), Some("remove"))
        ],
        "{}",
        dump(&received)
    );
    assert_eq!(
        push_versions(&received).last(),
        Some(&v3),
        "the last push brings the client to the current version"
    );
    // Checked at the end, so the rest of the test still runs when these fail.
    let mut deviations = Vec::new();
    let result_at = received
        .iter()
        .position(|e| e.attr("id") == Some("v1"))
        .expect("result");
    let first_push = received.iter().position(is_roster_push).expect("pushes");
    if result_at > first_push {
        deviations.push(format!(
            "RFC 6121 §2.6.3: the empty IQ-result comes first, then the pushes:\n{}",
            dump(&received)
        ));
    }
    // Each push names the roster version after its own change (§2.6.3 example:
    // ver34 then ver42), so a client that stops halfway resumes from the right point.
    let versions = push_versions(&received);
    if versions.first() == versions.last() {
        deviations.push(format!(
            "RFC 6121 §2.6.3: interim pushes carry interim versions, got {versions:?}"
        ));
    }
    // The catch-up pushes answer this resource's request; the other resource
    // already had these changes pushed when they happened.
    let received = other.drain().await;
    if received.iter().any(is_roster_push) {
        deviations.push(format!(
            "RFC 6121 §2.6.3: catch-up pushes go to the requesting resource only, \
             another resource got:\n{}",
            dump(&received)
        ));
    }

    // A version the server never issued: the whole roster.
    for (id, ver) in [("vf", "999999999"), ("vx", "not-a-version")] {
        let received = exchange(
            &mut alice,
            &format!("<iq type='get' id='{id}'><query xmlns='{ROSTER_NS}' ver='{ver}'/></iq>"),
        )
        .await;
        let result = assert_result(&received, id);
        let query = result.child("query", ROSTER_NS).expect("the full roster");
        assert_eq!(query.attr("ver"), Some(v3.as_str()));
        let jids: Vec<&str> = query.elements().filter_map(|i| i.attr("jid")).collect();
        assert_eq!(jids, ["dave@localhost"]);
        assert!(received.iter().all(|e| !is_roster_push(e)));
    }
    assert!(deviations.is_empty(), "{}", deviations.join("\n"));
}

// ---------------------------------------------------------------------------
// 3. Subscriptions (RFC 6121 §3)
// ---------------------------------------------------------------------------

fn subscription_requests<'a>(elements: &'a [Element], from: &str) -> Vec<&'a Element> {
    elements
        .iter()
        .filter(|e| {
            e.name == "presence"
                && e.attr("type") == Some("subscribe")
                && e.attr("from") == Some(from)
        })
        .collect()
}

fn item_state(item: &Element) -> (Option<&str>, Option<&str>) {
    (item.attr("subscription"), item.attr("ask"))
}

#[tokio::test]
async fn subscription_request_approval_mutual_subscription_and_pre_approval() {
    let server = server_with(&["alice", "bob", "carol"], "");
    let mut alice = Client::login(&server, "alice", "desk").await;
    roster_get(&mut alice, "ga").await;
    alice.go_available().await;

    // Alice adds Bob and asks for his presence while he is offline.
    let received = exchange(
        &mut alice,
        &roster_set("add", "<item jid='bob@localhost' name='Bob'/>"),
    )
    .await;
    assert_result(&received, "add");
    let received = exchange(
        &mut alice,
        "<presence to='bob@localhost' type='subscribe' id='sub1'/>",
    )
    .await;
    let items = pushed_items(&received, "alice@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(item_state(&items[0]), (Some("none"), Some("subscribe")));
    assert_eq!(items[0].attr("name"), Some("Bob"), "the name is kept");
    // A duplicate while the request is pending.
    alice
        .send("<presence to='bob@localhost' type='subscribe' id='sub2'/>")
        .await;
    alice.drain().await;

    // Bob comes online: the stored request is delivered, once.
    let mut bob = Client::login(&server, "bob", "one").await;
    roster_get(&mut bob, "gb").await;
    let received = available(&mut bob, "<presence/>").await;
    assert_eq!(
        subscription_requests(&received, "alice@localhost").len(),
        1,
        "{}",
        dump(&received)
    );
    // Still pending at his next login: delivered again, once.
    bob.close().await;
    let mut bob = Client::login(&server, "bob", "two").await;
    roster_get(&mut bob, "gb2").await;
    let received = available(&mut bob, "<presence/>").await;
    assert_eq!(
        subscription_requests(&received, "alice@localhost").len(),
        1,
        "{}",
        dump(&received)
    );
    // A duplicate while he is online and the request is pending is not delivered (A.3.1).
    exchange(
        &mut alice,
        "<presence to='bob@localhost' type='subscribe'/>",
    )
    .await;
    let received = bob.drain().await;
    assert!(
        subscription_requests(&received, "alice@localhost").is_empty(),
        "{}",
        dump(&received)
    );
    alice.drain().await;

    // Bob approves: his roster has Alice as 'from'; Alice's has Bob as 'to' and she
    // gets the approval and his presence.
    let received = exchange(
        &mut bob,
        "<presence to='alice@localhost' type='subscribed'/>",
    )
    .await;
    let items = pushed_items(&received, "bob@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(items[0].attr("jid"), Some("alice@localhost"));
    assert_eq!(item_state(&items[0]), (Some("from"), None));
    let received = alice.drain().await;
    let items = pushed_items(&received, "alice@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(item_state(&items[0]), (Some("to"), None));
    assert!(
        received.iter().any(|e| e.name == "presence"
            && e.attr("type") == Some("subscribed")
            && e.attr("from") == Some("bob@localhost")),
        "{}",
        dump(&received)
    );
    let bob_presence = presences(&received, "bob@localhost/two");
    assert_eq!(bob_presence.len(), 1, "{}", dump(&received));
    assert_eq!(bob_presence[0].attr("type"), None, "available");

    // Bob subscribes back; Alice approves: both are 'both'.
    let received = exchange(
        &mut bob,
        "<presence to='alice@localhost' type='subscribe'/>",
    )
    .await;
    let items = pushed_items(&received, "bob@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(item_state(&items[0]), (Some("from"), Some("subscribe")));
    let received = alice.drain().await;
    assert_eq!(
        subscription_requests(&received, "bob@localhost").len(),
        1,
        "{}",
        dump(&received)
    );
    let received = exchange(
        &mut alice,
        "<presence to='bob@localhost' type='subscribed'/>",
    )
    .await;
    let items = pushed_items(&received, "alice@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(item_state(&items[0]), (Some("both"), None));
    let received = bob.drain().await;
    let items = pushed_items(&received, "bob@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(item_state(&items[0]), (Some("both"), None));
    let alice_presence = presences(&received, "alice@localhost/desk");
    assert_eq!(alice_presence.len(), 1, "{}", dump(&received));
    assert_eq!(alice_presence[0].attr("type"), None);

    // Each sees the other's presence updates.
    alice.send("<presence><show>away</show></presence>").await;
    let update = bob
        .wait_for(|e| e.name == "presence" && e.attr("from") == Some("alice@localhost/desk"))
        .await;
    assert_eq!(
        update
            .child("show", CLIENT_NS)
            .map(Element::text)
            .as_deref(),
        Some("away")
    );
    bob.send("<presence><status>reading</status></presence>")
        .await;
    let update = alice
        .wait_for(|e| e.name == "presence" && e.attr("from") == Some("bob@localhost/two"))
        .await;
    assert_eq!(
        update
            .child("status", CLIENT_NS)
            .map(Element::text)
            .as_deref(),
        Some("reading")
    );

    // Pre-approval (§3.4): Bob approves Carol before she asks.
    let received = exchange(
        &mut bob,
        "<presence to='carol@localhost' type='subscribed'/>",
    )
    .await;
    let items = pushed_items(&received, "bob@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(items[0].attr("jid"), Some("carol@localhost"));
    assert_eq!(item_state(&items[0]), (Some("none"), None));
    assert_eq!(items[0].attr("approved"), Some("true"));
    let mut carol = Client::login(&server, "carol", "pad").await;
    roster_get(&mut carol, "gc").await;
    carol.go_available().await;
    let received = exchange(
        &mut carol,
        "<presence to='bob@localhost' type='subscribe'/>",
    )
    .await;
    let items = pushed_items(&received, "carol@localhost");
    assert_eq!(
        items.last().map(item_state),
        Some((Some("to"), None)),
        "{}",
        dump(&received)
    );
    assert!(received.iter().any(|e| e.name == "presence"
        && e.attr("type") == Some("subscribed")
        && e.attr("from") == Some("bob@localhost")));
    assert_eq!(presences(&received, "bob@localhost/two").len(), 1);
    let received = bob.drain().await;
    assert!(
        subscription_requests(&received, "carol@localhost").is_empty(),
        "a pre-approved request is not shown to the user:\n{}",
        dump(&received)
    );
    let items = pushed_items(&received, "bob@localhost");
    assert_eq!(items.len(), 1, "{}", dump(&received));
    assert_eq!(item_state(&items[0]), (Some("from"), None));
    assert_eq!(items[0].attr("approved"), None);
}

// ---------------------------------------------------------------------------
// 4. Presence (RFC 6121 §4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn presence_broadcast_probes_unavailable_and_directed_presence() {
    let server = server_with(&["alice", "bob", "erin", "carol"], "");
    let mut phone = Client::login(&server, "alice", "phone").await;
    let mut bob = Client::login(&server, "bob", "res").await;
    let mut erin = Client::login(&server, "erin", "res").await;
    let mut carol = Client::login(&server, "carol", "res").await;
    // Bob and Alice: both; Erin is subscribed to Alice ('from' on Alice's side);
    // Carol is a stranger.
    subscribe(&mut phone, &mut bob).await;
    subscribe(&mut bob, &mut phone).await;
    subscribe(&mut erin, &mut phone).await;
    available(&mut bob, "<presence><status>at work</status></presence>").await;
    available(&mut erin, "<presence><status>erin here</status></presence>").await;
    available(&mut carol, "<presence/>").await;
    available(&mut phone, "<presence/>").await;
    for client in [&mut bob, &mut erin, &mut carol] {
        client.drain().await;
    }

    // Initial presence of a second resource.
    let mut desk = Client::login(&server, "alice", "desk").await;
    let received = available(&mut desk, "<presence><show>chat</show></presence>").await;
    // Probes: Bob's current presence; not Erin's (Alice is not subscribed to her).
    let from_bob = presences(&received, "bob@localhost/res");
    assert_eq!(from_bob.len(), 1, "{}", dump(&received));
    assert_eq!(
        from_bob[0]
            .child("status", CLIENT_NS)
            .map(Element::text)
            .as_deref(),
        Some("at work")
    );
    assert!(presences(&received, "erin@localhost/res").is_empty());
    assert!(presences(&received, "carol@localhost/res").is_empty());
    assert_eq!(presences(&received, "alice@localhost/phone").len(), 1);
    for (client, who) in [
        (&mut bob, "bob"),
        (&mut erin, "erin"),
        (&mut phone, "phone"),
    ] {
        let received = client.drain().await;
        let from_desk = presences(&received, "alice@localhost/desk");
        assert_eq!(from_desk.len(), 1, "{who}:\n{}", dump(&received));
        assert_eq!(from_desk[0].attr("type"), None);
        assert_eq!(
            from_desk[0]
                .child("show", CLIENT_NS)
                .map(Element::text)
                .as_deref(),
            Some("chat")
        );
    }
    let received = carol.drain().await;
    assert!(
        presences(&received, "alice@localhost/desk").is_empty(),
        "no presence for a non-contact:\n{}",
        dump(&received)
    );

    // A clean close: unavailable from the full JID to the contacts and own resources.
    desk.close().await;
    for client in [&mut bob, &mut erin, &mut phone] {
        client
            .wait_for(|e| is_unavailable_from(e, "alice@localhost/desk"))
            .await;
    }
    assert!(presences(&carol.drain().await, "alice@localhost/desk").is_empty());

    // An unclean drop of the connection.
    drop(phone);
    for client in [&mut bob, &mut erin] {
        client
            .wait_for(|e| is_unavailable_from(e, "alice@localhost/phone"))
            .await;
    }
    assert!(presences(&carol.drain().await, "alice@localhost/phone").is_empty());

    // Directed presence to a non-contact, then unavailable reaches it too.
    let mut lap = Client::login(&server, "alice", "lap").await;
    available(&mut lap, "<presence/>").await;
    exchange(
        &mut lap,
        "<presence to='carol@localhost/res'><status>hi carol</status></presence>",
    )
    .await;
    let received = carol.drain().await;
    let directed = presences(&received, "alice@localhost/lap");
    assert_eq!(directed.len(), 1, "{}", dump(&received));
    assert_eq!(directed[0].attr("type"), None);
    lap.send("<presence type='unavailable'/>").await;
    lap.drain().await;
    for client in [&mut bob, &mut erin, &mut carol] {
        client
            .wait_for(|e| is_unavailable_from(e, "alice@localhost/lap"))
            .await;
    }
}

// ---------------------------------------------------------------------------
// 5. Offline messages (XEP-0160, XEP-0203)
// ---------------------------------------------------------------------------

fn assert_delayed(message: &Element, sent_after: SystemTime) {
    let delay = message
        .child("delay", DELAY)
        .unwrap_or_else(|| panic!("a delay stamp: {}", xml(message)));
    assert_eq!(delay.attr("from"), Some("localhost"), "{}", xml(message));
    let stamp = delay
        .attr("stamp")
        .and_then(parse_datetime)
        .unwrap_or_else(|| panic!("a parseable stamp: {}", xml(message)));
    let now = SystemTime::now();
    // Second precision at least; allow a little slack either side.
    assert!(
        stamp + Duration::from_secs(2) >= sent_after && stamp <= now + Duration::from_secs(2),
        "stamp within the test: {}",
        xml(message)
    );
}

#[tokio::test]
async fn offline_messages_are_delivered_once_in_order_with_delay_stamps() {
    let server = server_with(&["alice", "bob"], "");
    let start = SystemTime::now();
    let mut bob = Client::login(&server, "bob", "desk").await;
    bob.go_available().await;
    for n in 1..=3 {
        bob.send(&format!(
            "<message to='alice@localhost' type='chat' id='m{n}'><body>message {n}</body></message>"
        ))
        .await;
    }
    let received = bob.drain().await;
    assert!(
        messages(&received).is_empty(),
        "no errors: {}",
        dump(&received)
    );

    let mut alice = Client::login(&server, "alice", "phone").await;
    let received = available(&mut alice, "<presence/>").await;
    let stored = messages(&received);
    let bodies: Vec<String> = stored.iter().map(|m| body(m)).collect();
    assert_eq!(
        bodies,
        ["message 1", "message 2", "message 3"],
        "{}",
        dump(&received)
    );
    for (n, message) in stored.iter().enumerate() {
        assert_eq!(message.attr("from"), Some("bob@localhost/desk"));
        assert_eq!(message.attr("type"), Some("chat"));
        assert_eq!(message.attr("id"), Some(format!("m{}", n + 1).as_str()));
        assert_delayed(message, start);
    }
    alice.close().await;

    // Exactly once.
    let mut alice = Client::login(&server, "alice", "phone").await;
    let received = available(&mut alice, "<presence/>").await;
    assert!(messages(&received).is_empty(), "{}", dump(&received));
}

#[tokio::test]
async fn negative_priority_resources_neither_receive_nor_collect_offline_messages() {
    let server = server_with(&["alice", "bob"], "");
    let mut bob = Client::login(&server, "bob", "desk").await;
    bob.go_available().await;
    exchange(
        &mut bob,
        "<message to='alice@localhost' type='chat'><body>one</body></message>",
    )
    .await;

    let mut hidden = Client::login(&server, "alice", "hidden").await;
    let received = available(&mut hidden, "<presence><priority>-1</priority></presence>").await;
    assert!(
        messages(&received).is_empty(),
        "offline messages wait for a non-negative resource:\n{}",
        dump(&received)
    );
    // With only a negative-priority resource, chat to the bare JID is stored.
    let received = exchange(
        &mut bob,
        "<message to='alice@localhost' type='chat'><body>two</body></message>",
    )
    .await;
    assert!(messages(&received).is_empty(), "{}", dump(&received));
    assert!(messages(&hidden.drain().await).is_empty());

    let mut shown = Client::login(&server, "alice", "shown").await;
    let received = available(&mut shown, "<presence><priority>0</priority></presence>").await;
    let bodies: Vec<String> = messages(&received).iter().map(|m| body(m)).collect();
    assert_eq!(bodies, ["one", "two"], "{}", dump(&received));
    assert!(messages(&hidden.drain().await).is_empty());
}

#[tokio::test]
async fn headline_to_offline_is_dropped_and_groupchat_to_bare_is_refused() {
    let server = server_with(&["alice", "bob"], "");
    let mut bob = Client::login(&server, "bob", "desk").await;
    bob.go_available().await;
    let received = exchange(
        &mut bob,
        "<message to='alice@localhost' type='headline' id='h1'><body>news</body></message>",
    )
    .await;
    assert!(
        received.is_empty(),
        "a headline is dropped without an error:\n{}",
        dump(&received)
    );
    let reply = bob
        .expect_stanza_error(
            "<message to='alice@localhost' type='groupchat' id='gc1'><body>room</body></message>",
            "gc1",
            "service-unavailable",
        )
        .await;
    assert_eq!(reply.attr("from"), Some("alice@localhost"));

    let mut alice = Client::login(&server, "alice", "phone").await;
    let received = available(&mut alice, "<presence/>").await;
    assert!(messages(&received).is_empty(), "{}", dump(&received));
}

#[tokio::test]
async fn full_offline_queue_refuses_with_resource_constraint_and_keeps_the_rest() {
    let server = server_with(&["alice", "bob"], "max_offline_messages = 3\n");
    let mut bob = Client::login(&server, "bob", "desk").await;
    bob.go_available().await;
    for n in 1..=3 {
        let received = exchange(
            &mut bob,
            &format!(
                "<message to='alice@localhost' type='chat' id='q{n}'><body>{n}</body></message>"
            ),
        )
        .await;
        assert!(received.is_empty(), "{}", dump(&received));
    }
    bob.expect_stanza_error(
        "<message to='alice@localhost' type='chat' id='q4'><body>4</body></message>",
        "q4",
        "resource-constraint",
    )
    .await;

    let mut alice = Client::login(&server, "alice", "phone").await;
    let received = available(&mut alice, "<presence/>").await;
    let bodies: Vec<String> = messages(&received).iter().map(|m| body(m)).collect();
    assert_eq!(bodies, ["1", "2", "3"], "{}", dump(&received));
}

// ---------------------------------------------------------------------------
// 6. Delivery rules (RFC 6121 §8.5)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Delivered to exactly these resources of bob.
    Delivered(&'static [&'static str]),
    /// Stored for the offline account, delivered at its next login.
    Stored,
    /// A stanza error with this condition comes back to the sender.
    Error(&'static str),
    /// The server answers an IQ itself with a result from the bare JID.
    Answered,
    /// Nothing comes back and nothing is delivered.
    Dropped,
}

const BOTH: &[&str] = &["home", "work"];
const HOME: &[&str] = &["home"];

fn stanza(kind: &str, id: &str, to: &str) -> String {
    match kind {
        "iq-get" => format!(
            "<iq type='get' id='{id}' to='{to}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ),
        "iq-get-unknown" => {
            format!("<iq type='get' id='{id}' to='{to}'><query xmlns='urn:example:unknown'/></iq>")
        }
        "iq-set" => format!(
            "<iq type='set' id='{id}' to='{to}'><query xmlns='urn:example:unknown'/></iq>"
        ),
        "iq-result" => format!("<iq type='result' id='{id}' to='{to}'/>"),
        "iq-error" => format!(
            "<iq type='error' id='{id}' to='{to}'><error type='cancel'>\
             <feature-not-implemented xmlns='{STANZAS_NS}'/></error></iq>"
        ),
        message_type => format!(
            "<message type='{message_type}' id='{id}' to='{to}'><body>{id}</body></message>"
        ),
    }
}

#[tokio::test]
async fn delivery_follows_rfc6121_section_8_5() {
    use Outcome::*;
    let server = server_with(&["alice", "bob", "offline"], "");
    let mut alice = Client::login(&server, "alice", "desk").await;
    alice.go_available().await;
    let mut home = Client::login(&server, "bob", "home").await;
    let mut work = Client::login(&server, "bob", "work").await;
    let mut neg = Client::login(&server, "bob", "neg").await;
    available(&mut home, "<presence/>").await;
    available(&mut work, "<presence><priority>5</priority></presence>").await;
    available(&mut neg, "<presence><priority>-1</priority></presence>").await;
    for client in [&mut home, &mut work, &mut neg] {
        client.drain().await;
    }

    const NOBODY: &str = "nobody@localhost";
    const NOBODY_FULL: &str = "nobody@localhost/x";
    const OFFLINE: &str = "offline@localhost";
    const OFFLINE_FULL: &str = "offline@localhost/x";
    const BOB: &str = "bob@localhost";
    const BOB_HOME: &str = "bob@localhost/home";
    const BOB_NEG: &str = "bob@localhost/neg";
    const BOB_GONE: &str = "bob@localhost/gone";
    #[rustfmt::skip]
    let rows: &[(&str, &str, Outcome)] = &[
        // §8.5.1: no such account (the server chose to answer rather than ignore).
        ("normal", NOBODY, Error("service-unavailable")),
        ("chat", NOBODY, Error("service-unavailable")),
        ("headline", NOBODY, Dropped),
        ("groupchat", NOBODY, Error("service-unavailable")),
        ("error", NOBODY, Dropped),
        ("chat", NOBODY_FULL, Error("service-unavailable")),
        ("headline", NOBODY_FULL, Dropped),
        ("iq-get", NOBODY, Error("service-unavailable")),
        ("iq-get", NOBODY_FULL, Error("service-unavailable")),
        ("iq-result", NOBODY, Dropped),
        ("iq-error", NOBODY_FULL, Dropped),
        // §8.5.2.2: bare JID, no available resource.
        ("normal", OFFLINE, Stored),
        ("chat", OFFLINE, Stored),
        ("headline", OFFLINE, Dropped),
        ("groupchat", OFFLINE, Error("service-unavailable")),
        ("error", OFFLINE, Dropped),
        ("iq-get", OFFLINE, Answered),
        ("iq-get-unknown", OFFLINE, Error("service-unavailable")),
        ("iq-result", OFFLINE, Dropped),
        ("iq-error", OFFLINE, Dropped),
        // §8.5.3.2: full JID, no such resource (account offline).
        ("normal", OFFLINE_FULL, Stored),
        ("chat", OFFLINE_FULL, Stored),
        ("headline", OFFLINE_FULL, Dropped),
        ("groupchat", OFFLINE_FULL, Error("service-unavailable")),
        ("error", OFFLINE_FULL, Dropped),
        ("iq-get", OFFLINE_FULL, Error("service-unavailable")),
        ("iq-set", OFFLINE_FULL, Error("service-unavailable")),
        ("iq-result", OFFLINE_FULL, Dropped),
        ("iq-error", OFFLINE_FULL, Dropped),
        // §8.5.2.1: bare JID, available resources (non-negative ones only).
        ("normal", BOB, Delivered(BOTH)),
        ("chat", BOB, Delivered(BOTH)),
        ("headline", BOB, Delivered(BOTH)),
        ("groupchat", BOB, Error("service-unavailable")),
        ("error", BOB, Dropped),
        ("iq-get", BOB, Answered),
        ("iq-set", BOB, Error("service-unavailable")),
        ("iq-result", BOB, Dropped),
        ("iq-error", BOB, Dropped),
        // §8.5.3.1: full JID of an available resource: everything is delivered.
        ("normal", BOB_HOME, Delivered(HOME)),
        ("chat", BOB_HOME, Delivered(HOME)),
        ("headline", BOB_HOME, Delivered(HOME)),
        ("groupchat", BOB_HOME, Delivered(HOME)),
        ("error", BOB_HOME, Delivered(HOME)),
        ("iq-get", BOB_HOME, Delivered(HOME)),
        ("iq-result", BOB_HOME, Delivered(HOME)),
        ("iq-error", BOB_HOME, Delivered(HOME)),
        ("chat", BOB_NEG, Delivered(&["neg"])),
        // §8.5.3.2: full JID with no matching resource while others are available.
        ("normal", BOB_GONE, Delivered(BOTH)),
        ("chat", BOB_GONE, Delivered(BOTH)),
        ("headline", BOB_GONE, Delivered(BOTH)),
        ("groupchat", BOB_GONE, Error("service-unavailable")),
        ("error", BOB_GONE, Dropped),
        ("iq-get", BOB_GONE, Error("service-unavailable")),
        ("iq-set", BOB_GONE, Error("service-unavailable")),
        ("iq-result", BOB_GONE, Dropped),
        ("iq-error", BOB_GONE, Dropped),
    ];

    let mut failures = Vec::new();
    let mut expect_stored = Vec::new();
    for (n, (kind, to, outcome)) in rows.iter().enumerate() {
        let id = format!("row{n}");
        let label = format!("{kind} to {to} (expected {outcome:?})");
        let back: Vec<Element> = exchange(&mut alice, &stanza(kind, &id, to))
            .await
            .into_iter()
            .filter(|e| e.attr("id") == Some(id.as_str()))
            .collect();
        let mut delivered = Vec::new();
        for (name, client) in [("home", &mut home), ("work", &mut work), ("neg", &mut neg)] {
            let got = client
                .drain()
                .await
                .into_iter()
                .filter(|e| e.attr("id") == Some(id.as_str()))
                .count();
            for _ in 0..got {
                delivered.push(name);
            }
        }
        let ok = match outcome {
            Delivered(expected) => back.is_empty() && delivered == *expected,
            Stored | Dropped => {
                if matches!(outcome, Stored) {
                    expect_stored.push(id.clone());
                }
                back.is_empty() && delivered.is_empty()
            }
            Error(condition) => {
                delivered.is_empty()
                    && back.len() == 1
                    && back[0].attr("type") == Some("error")
                    && error_condition(&back[0]).as_deref() == Some(*condition)
            }
            Answered => {
                delivered.is_empty()
                    && back.len() == 1
                    && back[0].attr("type") == Some("result")
                    && back[0].attr("from") == Some(*to)
            }
        };
        if !ok {
            failures.push(format!(
                "{label}: sender got [{}], delivered to {delivered:?}",
                dump(&back)
            ));
        }
    }

    // What was stored reaches the account at its next login, in order.
    let mut offline = Client::login(&server, "offline", "x").await;
    let received = available(&mut offline, "<presence/>").await;
    let stored: Vec<String> = messages(&received)
        .iter()
        .filter_map(|m| m.attr("id").map(str::to_string))
        .collect();
    if stored != expect_stored {
        failures.push(format!(
            "stored offline: expected {expect_stored:?}, got {stored:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// 7. Blocking (XEP-0191)
// ---------------------------------------------------------------------------

fn block_pushes<'a>(elements: &'a [Element], kind: &str) -> Vec<&'a Element> {
    elements
        .iter()
        .filter(|e| e.name == "iq" && e.attr("type") == Some("set"))
        .filter_map(|e| e.child(kind, BLOCKING))
        .collect()
}

fn item_jids(list: &Element) -> Vec<String> {
    list.elements()
        .filter(|e| e.is("item", BLOCKING))
        .filter_map(|e| e.attr("jid").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn blocking_stops_traffic_both_ways_until_unblocked() {
    let server = server_with(&["alice", "bob", "carol"], "");
    let mut desk = Client::login(&server, "alice", "desk").await;
    let mut phone = Client::login(&server, "alice", "phone").await;
    let mut bob = Client::login(&server, "bob", "res").await;
    subscribe(&mut desk, &mut bob).await;
    subscribe(&mut bob, &mut desk).await;
    available(&mut desk, "<presence/>").await;
    available(&mut phone, "<presence/>").await;
    available(&mut bob, "<presence/>").await;
    for client in [&mut desk, &mut phone, &mut bob] {
        client.drain().await;
    }

    let received = exchange(
        &mut desk,
        &format!("<iq type='get' id='bl1'><blocklist xmlns='{BLOCKING}'/></iq>"),
    )
    .await;
    let list = assert_result(&received, "bl1");
    let list = list.child("blocklist", BLOCKING).expect("blocklist");
    assert!(item_jids(list).is_empty(), "{}", xml(list));

    // Block Bob: a push to the interested resource, and Bob (who has a 'from'
    // subscription) sees Alice go unavailable.
    let received = exchange(
        &mut desk,
        &format!("<iq type='set' id='b1'><block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block></iq>"),
    )
    .await;
    assert_result(&received, "b1");
    let pushes = block_pushes(&received, "block");
    assert_eq!(pushes.len(), 1, "{}", dump(&received));
    assert_eq!(item_jids(pushes[0]), ["bob@localhost"]);
    let received = phone.drain().await;
    assert!(
        block_pushes(&received, "block").is_empty(),
        "the phone never asked for the blocklist:\n{}",
        dump(&received)
    );
    let received = bob.drain().await;
    for resource in ["alice@localhost/desk", "alice@localhost/phone"] {
        assert!(
            received.iter().any(|e| is_unavailable_from(e, resource)),
            "unavailable from {resource}:\n{}",
            dump(&received)
        );
    }

    // Bob's message: service-unavailable to him, nothing to Alice.
    let reply = bob
        .expect_stanza_error(
            "<message to='alice@localhost' type='chat' id='x1'><body>hello?</body></message>",
            "x1",
            "service-unavailable",
        )
        .await;
    assert!(reply.child("error", CLIENT_NS).is_some());
    bob.expect_stanza_error(
        "<message to='alice@localhost/desk' type='chat' id='x2'><body>hello?</body></message>",
        "x2",
        "service-unavailable",
    )
    .await;
    // Alice's message: not-acceptable with <blocked/>.
    let reply = desk
        .expect_stanza_error(
            "<message to='bob@localhost' type='chat' id='x3'><body>hi</body></message>",
            "x3",
            "not-acceptable",
        )
        .await;
    let error = reply.child("error", CLIENT_NS).expect("error");
    assert!(
        error.child("blocked", BLOCKING_ERRORS).is_some(),
        "{}",
        xml(&reply)
    );
    // Bob's presence no longer reaches Alice.
    bob.send("<presence><status>still here</status></presence>")
        .await;
    bob.drain().await;
    for client in [&mut desk, &mut phone] {
        let received = client.drain().await;
        assert!(
            messages(&received).is_empty() && presences(&received, "bob@localhost/res").is_empty(),
            "nothing from a blocked contact:\n{}",
            dump(&received)
        );
    }

    // Unblock: a push, Bob gets Alice's presence again, and messages flow.
    let received = exchange(
        &mut desk,
        &format!("<iq type='set' id='u1'><unblock xmlns='{BLOCKING}'><item jid='bob@localhost'/></unblock></iq>"),
    )
    .await;
    assert_result(&received, "u1");
    let pushes = block_pushes(&received, "unblock");
    assert_eq!(pushes.len(), 1, "{}", dump(&received));
    assert_eq!(item_jids(pushes[0]), ["bob@localhost"]);
    let received = bob.drain().await;
    assert_eq!(presences(&received, "alice@localhost/desk").len(), 1);
    bob.send("<message to='alice@localhost/desk' type='chat' id='x4'><body>back</body></message>")
        .await;
    let message = desk.wait_for(|e| e.name == "message").await;
    assert_eq!(message.attr("id"), Some("x4"));
    desk.send("<message to='bob@localhost' type='chat' id='x5'><body>yes</body></message>")
        .await;
    let message = bob.wait_for(|e| e.name == "message").await;
    assert_eq!(message.attr("id"), Some("x5"));

    // Unblock all.
    let received = exchange(
        &mut desk,
        &format!("<iq type='set' id='b2'><block xmlns='{BLOCKING}'><item jid='bob@localhost'/><item jid='carol@localhost'/></block></iq>"),
    )
    .await;
    assert_result(&received, "b2");
    let received = exchange(
        &mut desk,
        &format!("<iq type='set' id='u2'><unblock xmlns='{BLOCKING}'/></iq>"),
    )
    .await;
    assert_result(&received, "u2");
    assert_eq!(
        block_pushes(&received, "unblock").len(),
        1,
        "{}",
        dump(&received)
    );
    let received = exchange(
        &mut desk,
        &format!("<iq type='get' id='bl2'><blocklist xmlns='{BLOCKING}'/></iq>"),
    )
    .await;
    let list = assert_result(&received, "bl2");
    assert!(item_jids(list.child("blocklist", BLOCKING).expect("list")).is_empty());
    bob.send("<message to='alice@localhost/desk' type='chat' id='x6'><body>again</body></message>")
        .await;
    let message = desk.wait_for(|e| e.name == "message").await;
    assert_eq!(message.attr("id"), Some("x6"));
}

// ---------------------------------------------------------------------------
// 8. Durability across a clean restart and a crash
// ---------------------------------------------------------------------------

async fn store_message_and_subscription_request(server: &TestServer) {
    let mut bob = Client::login(server, "bob", "desk").await;
    bob.go_available().await;
    bob.send("<message to='alice@localhost' type='chat' id='kept'><body>survive</body></message>")
        .await;
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    // The ping is answered only after both were handled (and stored).
    let received = bob.drain().await;
    assert!(messages(&received).is_empty(), "{}", dump(&received));
}

async fn assert_message_and_request_delivered(server: &TestServer) {
    let mut alice = Client::login(server, "alice", "phone").await;
    let received = available(&mut alice, "<presence/>").await;
    let stored = messages(&received);
    assert_eq!(stored.len(), 1, "{}", dump(&received));
    assert_eq!(stored[0].attr("id"), Some("kept"));
    assert_eq!(body(stored[0]), "survive");
    assert!(stored[0].child("delay", DELAY).is_some());
    assert_eq!(
        subscription_requests(&received, "bob@localhost").len(),
        1,
        "{}",
        dump(&received)
    );
}

#[tokio::test]
async fn offline_messages_and_subscription_requests_survive_a_clean_restart() {
    let server = server_with(&["alice", "bob"], "");
    store_message_and_subscription_request(&server).await;
    let server = server.restart_after_sigterm();
    assert_message_and_request_delivered(&server).await;
}

#[tokio::test]
async fn offline_messages_and_subscription_requests_survive_kill_9() {
    let server = server_with(&["alice", "bob"], "");
    store_message_and_subscription_request(&server).await;
    let server = server.restart_after_sigkill();
    assert_message_and_request_delivered(&server).await;
}
