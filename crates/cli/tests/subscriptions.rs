//! RFC 6121 Appendix A against the real server: for each of the nine subscription
//! states of a user's roster item and each of the four subscription stanzas, sent
//! by the user (A.2) and received from the contact (A.3), the server reaches the
//! state, routes or delivers, and auto-replies exactly as the tables say. The
//! expected outcomes come from `starling_proto::roster`, whose unit tests hold the
//! tables row by row; this proves the server applies them end to end.

mod common;

use common::*;
use starling_proto::roster::{inbound, outbound, SubscriptionKind, SubscriptionState};
use starling_xml::Element;

const STATES: [SubscriptionState; 9] = [
    SubscriptionState::None,
    SubscriptionState::NoneOut,
    SubscriptionState::NoneIn,
    SubscriptionState::NoneOutIn,
    SubscriptionState::To,
    SubscriptionState::ToIn,
    SubscriptionState::From,
    SubscriptionState::FromOut,
    SubscriptionState::Both,
];

const KINDS: [SubscriptionKind; 4] = [
    SubscriptionKind::Subscribe,
    SubscriptionKind::Subscribed,
    SubscriptionKind::Unsubscribe,
    SubscriptionKind::Unsubscribed,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The user sends the stanza to the contact (A.2).
    Outbound,
    /// The contact sends the stanza to the user (A.3).
    Inbound,
}

/// What the user's roster shows of the contact: subscription, ask, approved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    subscription: String,
    ask: bool,
    approved: bool,
}

async fn send_subscription(from: &mut Client, to: &str, kind: SubscriptionKind) {
    from.send(&format!("<presence to='{to}' type='{}'/>", kind.as_type()))
        .await;
    // The sender's stanzas are handled in order: once the ping is answered, the
    // subscription stanza was routed and delivered.
    from.assert_alive().await;
}

async fn roster_item(client: &mut Client, contact: &str) -> Option<Shown> {
    let query = client.roster().await;
    let item = query
        .elements()
        .find(|item| item.attr("jid") == Some(contact))
        .map(|item| Shown {
            subscription: item.attr("subscription").unwrap_or("none").to_string(),
            ask: item.attr("ask") == Some("subscribe"),
            approved: item.attr("approved") == Some("true"),
        });
    item
}

fn shown(state: SubscriptionState, approved: bool) -> Shown {
    Shown {
        subscription: state.subscription_attr().to_string(),
        ask: state.ask(),
        approved,
    }
}

fn received(stanzas: &[Element], from: &str, kind: SubscriptionKind) -> usize {
    stanzas
        .iter()
        .filter(|e| {
            e.name == "presence"
                && e.attr("from") == Some(from)
                && e.attr("type") == Some(kind.as_type())
        })
        .count()
}

/// The contact's state towards the user when the user is in `state`: each pair is
/// built by the same stanzas on both sides, so the two states mirror each other.
/// `None` is the contact without a roster item for the user.
fn mirror(state: SubscriptionState) -> Option<SubscriptionState> {
    use SubscriptionState as S;
    match state {
        S::None => None,
        S::NoneOut => Some(S::NoneIn),
        S::NoneIn => Some(S::NoneOut),
        S::NoneOutIn => Some(S::NoneOutIn),
        S::To => Some(S::From),
        S::ToIn => Some(S::FromOut),
        S::From => Some(S::To),
        S::FromOut => Some(S::ToIn),
        S::Both => Some(S::Both),
    }
}

/// Drive a fresh pair (user, contact) into `state` as the user sees it.
async fn reach(user: &mut Client, contact: &mut Client, state: SubscriptionState) {
    use SubscriptionKind::*;
    use SubscriptionState as S;
    let (u, c) = (user.bare_jid(), contact.bare_jid());
    let add = format!(
        "<iq type='set' id='add-{c}'><query xmlns='{ROSTER_NS}'><item jid='{c}'/></query></iq>"
    );
    if matches!(state, S::None | S::NoneOut | S::NoneIn | S::NoneOutIn) {
        user.send(&add).await;
        user.wait_for(|e| e.attr("id") == Some(format!("add-{c}").as_str()))
            .await;
    }
    if matches!(state, S::NoneOut | S::NoneOutIn | S::To | S::ToIn | S::Both) {
        send_subscription(user, &c, Subscribe).await;
    }
    if matches!(state, S::To | S::ToIn | S::Both) {
        send_subscription(contact, &u, Subscribed).await;
    }
    if matches!(
        state,
        S::NoneIn | S::NoneOutIn | S::ToIn | S::From | S::FromOut | S::Both
    ) {
        send_subscription(contact, &u, Subscribe).await;
    }
    if matches!(state, S::From | S::FromOut | S::Both) {
        send_subscription(user, &c, Subscribed).await;
    }
    if state == S::FromOut {
        send_subscription(user, &c, Subscribe).await;
    }
    assert_eq!(
        roster_item(user, &c).await,
        Some(shown(state, false)),
        "setting up {state:?}"
    );
}

/// Whether a new resource of the user hears the contact's stored request at login
/// (RFC 6121 §3.1.3), which is how a pending inbound subscription shows.
async fn pending_in(server: &TestServer, user: &str, contact: &str) -> bool {
    let mut probe = Client::login(server, user, "pending-probe").await;
    probe.go_available().await;
    let heard = probe.drain().await;
    received(&heard, contact, SubscriptionKind::Subscribe) > 0
}

async fn run_row(
    server: &TestServer,
    row: usize,
    state: SubscriptionState,
    kind: SubscriptionKind,
    direction: Direction,
) {
    let (u_name, c_name) = (format!("u{row}"), format!("c{row}"));
    server.adduser(&format!("{u_name}@localhost"));
    server.adduser(&format!("{c_name}@localhost"));
    let mut user = Client::login(server, &u_name, "r").await;
    let mut contact = Client::login(server, &c_name, "r").await;
    user.go_available().await;
    contact.go_available().await;
    let (u, c) = (user.bare_jid(), contact.bare_jid());
    reach(&mut user, &mut contact, state).await;
    user.drain().await;
    contact.drain().await;

    let label = format!("{direction:?} {kind:?} in {state:?}");
    match direction {
        Direction::Outbound => {
            let expected = outbound(Some(state), false, kind);
            send_subscription(&mut user, &c, kind).await;
            // What is routed reaches the contact's client only if the contact's own
            // inbound rules (A.3) deliver it.
            let delivered = expected.route && inbound(mirror(state), false, kind).deliver;
            let at_contact = contact.drain().await;
            assert_eq!(
                received(&at_contact, &u, kind),
                usize::from(delivered),
                "{label}: routed to and delivered at the contact"
            );
            assert_eq!(
                roster_item(&mut user, &c).await,
                Some(shown(expected.state, expected.approved)),
                "{label}: the user's item"
            );
            assert_eq!(
                pending_in(server, &u_name, &c).await,
                expected.state.pending_in(),
                "{label}: pending in"
            );
        }
        Direction::Inbound => {
            let expected = inbound(Some(state), false, kind);
            send_subscription(&mut contact, &u, kind).await;
            let at_user = user.drain().await;
            assert_eq!(
                received(&at_user, &c, kind),
                usize::from(expected.deliver),
                "{label}: delivered to the user"
            );
            // The auto-reply meets the contact's inbound rules in the state the
            // contact's own stanza left it in.
            let contact_state = outbound(mirror(state), false, kind).state;
            let at_contact = contact.drain().await;
            for reply in KINDS {
                let delivered = expected.auto_reply == Some(reply)
                    && inbound(Some(contact_state), false, reply).deliver;
                assert_eq!(
                    received(&at_contact, &u, reply),
                    usize::from(delivered),
                    "{label}: auto-reply {reply:?}"
                );
            }
            let expected_state = expected.state.expect("the item exists in every state");
            assert_eq!(
                roster_item(&mut user, &c).await,
                Some(shown(expected_state, expected.approved)),
                "{label}: the user's item"
            );
            assert_eq!(
                pending_in(server, &u_name, &c).await,
                expected_state.pending_in(),
                "{label}: pending in"
            );
        }
    }
}

async fn every_row(direction: Direction) {
    let server = TestServer::default_config();
    let mut row = 0;
    for state in STATES {
        for kind in KINDS {
            row += 1;
            run_row(&server, row, state, kind, direction).await;
        }
    }
}

#[tokio::test]
async fn outbound_subscription_stanzas_follow_rfc6121_appendix_a2_in_every_state() {
    every_row(Direction::Outbound).await;
}

#[tokio::test]
async fn inbound_subscription_stanzas_follow_rfc6121_appendix_a3_in_every_state() {
    every_row(Direction::Inbound).await;
}
