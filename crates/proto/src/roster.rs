//! Rosters and presence subscriptions (RFC 6121 §2, §3), sans-IO.
//!
//! [`outbound`] and [`inbound`] implement the subscription state tables of
//! RFC 6121 Appendix A (A.2 for stanzas the user sends, A.3 for stanzas sent to
//! the user) plus subscription pre-approval (§3.4). They only decide; the caller
//! stores, routes, delivers and pushes as the returned outcome says.
//!
//! A roster item's visible state is its 'subscription' and 'ask' attributes and
//! the 'approved' flag. A pending inbound request is never shown in the roster
//! (A.1), so a change of it alone needs no roster push.

use starling_xml::Element;

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::Jid;

pub const ROSTER_NS: &str = "jabber:iq:roster";

/// RFC 6121 Appendix A.1: the nine defined subscription states. "Out" is a
/// pending outbound request (ask='subscribe'), "In" a pending inbound one.
/// The pre-approval flag (§3.4) is kept alongside, not in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionState {
    None,
    NoneOut,
    NoneIn,
    NoneOutIn,
    To,
    ToIn,
    From,
    FromOut,
    Both,
}

impl SubscriptionState {
    /// The roster item's 'subscription' attribute.
    pub fn subscription_attr(self) -> &'static str {
        use SubscriptionState::*;
        match self {
            None | NoneOut | NoneIn | NoneOutIn => "none",
            To | ToIn => "to",
            From | FromOut => "from",
            Both => "both",
        }
    }

    /// Pending outbound request: shown as ask='subscribe'.
    pub fn ask(self) -> bool {
        use SubscriptionState::*;
        matches!(self, NoneOut | NoneOutIn | FromOut)
    }

    /// Pending inbound request, not shown in the roster.
    pub fn pending_in(self) -> bool {
        use SubscriptionState::*;
        matches!(self, NoneIn | NoneOutIn | ToIn)
    }

    /// Rebuilds the state from what storage keeps. `None` for combinations A.1
    /// does not define (e.g. "to" with ask, or "both" with a pending request).
    pub fn from_parts(subscription: &str, ask: bool, pending_in: bool) -> Option<Self> {
        use SubscriptionState::*;
        Some(match (subscription, ask, pending_in) {
            ("none", false, false) => None,
            ("none", true, false) => NoneOut,
            ("none", false, true) => NoneIn,
            ("none", true, true) => NoneOutIn,
            ("to", false, false) => To,
            ("to", false, true) => ToIn,
            ("from", false, false) => From,
            ("from", true, false) => FromOut,
            ("both", false, false) => Both,
            _ => return Option::None,
        })
    }

    /// The user receives the contact's presence.
    pub fn is_subscribed_to(self) -> bool {
        use SubscriptionState::*;
        matches!(self, To | ToIn | Both)
    }

    /// The contact receives the user's presence.
    pub fn is_subscribed_from(self) -> bool {
        use SubscriptionState::*;
        matches!(self, From | FromOut | Both)
    }

    /// What a roster push shows of the state.
    fn visible(self) -> (&'static str, bool) {
        (self.subscription_attr(), self.ask())
    }
}

/// The subscription-related presence types (RFC 6121 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubscriptionKind {
    /// From a presence 'type' attribute; `None` for any other type.
    pub fn from_type(presence_type: &str) -> Option<Self> {
        match presence_type {
            "subscribe" => Some(SubscriptionKind::Subscribe),
            "subscribed" => Some(SubscriptionKind::Subscribed),
            "unsubscribe" => Some(SubscriptionKind::Unsubscribe),
            "unsubscribed" => Some(SubscriptionKind::Unsubscribed),
            _ => None,
        }
    }

    pub fn as_type(self) -> &'static str {
        match self {
            SubscriptionKind::Subscribe => "subscribe",
            SubscriptionKind::Subscribed => "subscribed",
            SubscriptionKind::Unsubscribe => "unsubscribe",
            SubscriptionKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// What to do with a subscription stanza the user sent (RFC 6121 §3.x.2, A.2, §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundOutcome {
    pub state: SubscriptionState,
    /// The pre-approval flag after the stanza.
    pub approved: bool,
    /// Route the stanza (stamped with the user's bare JID) to the contact.
    pub route: bool,
    /// The visible item changed or was created: store it and push it.
    pub roster_push: bool,
    /// The contact had no roster item and now needs one (no name, no groups).
    pub create_item: bool,
    /// A stored inbound request is now answered: remove it.
    pub drop_request: bool,
}

/// Decides what a subscription stanza the user sends to a contact does.
///
/// `state` is `None` when the contact has no roster item and no inbound request
/// is stored. A.1 counts "None + Pending In" as one state whether or not an item
/// exists, so a stored request without an item is passed as
/// `Some(SubscriptionState::NoneIn)`; the caller then creates the item only if
/// `roster_push` is set.
pub fn outbound(
    state: Option<SubscriptionState>,
    approved: bool,
    kind: SubscriptionKind,
) -> OutboundOutcome {
    use SubscriptionKind::*;
    use SubscriptionState as S;
    let Some(old) = state else {
        return match kind {
            // §3.1.2: the server creates the item with ask='subscribe' and routes.
            Subscribe => changed_out(S::None, false, S::NoneOut, false, true, true),
            // §3.4.2 step 4: pre-approval of a contact not in the roster creates
            // a "None" item with approved='true'; nothing is routed.
            Subscribed => changed_out(S::None, false, S::None, true, false, true),
            // A.2.2 "None": routed, no state change (and no item is created).
            Unsubscribe => changed_out(S::None, false, S::None, false, true, false),
            // A.2.4 "None": not routed, no state change.
            Unsubscribed => changed_out(S::None, false, S::None, false, false, false),
        };
    };
    let (new, approved_after, route) = match kind {
        // A.2.1: every row routes, including the ones without a state change
        // (e.g. "None + Pending Out", "Both"), so a repeated request is routed
        // again and the contact's server answers it (A.3.1 suppresses duplicates).
        Subscribe => {
            let new = match old {
                S::None => S::NoneOut,
                S::NoneIn => S::NoneOutIn,
                S::From => S::FromOut,
                other => other,
            };
            (new, approved, true)
        }
        // A.2.2: every row routes.
        Unsubscribe => {
            let new = match old {
                S::NoneOut | S::To => S::None,
                S::NoneOutIn | S::ToIn => S::NoneIn,
                S::FromOut | S::Both => S::From,
                other => other,
            };
            (new, approved, true)
        }
        Subscribed => match old {
            // A.2.3 / §3.4.2 step 2: a normal approval of a pending request.
            S::NoneIn => (S::From, false, true),
            S::NoneOutIn => (S::FromOut, false, true),
            S::ToIn => (S::Both, false, true),
            // §3.4.2 step 3: no pending request yet, so this is a pre-approval;
            // it is noted, not routed.
            S::None | S::NoneOut | S::To => (old, true, false),
            // §3.4.2 step 1 / A.2.3: the contact is already subscribed; ignore.
            S::From | S::FromOut | S::Both => (old, approved, false),
        },
        Unsubscribed => {
            let (new, route) = match old {
                S::NoneIn => (S::None, true),
                S::NoneOutIn => (S::NoneOut, true),
                S::ToIn => (S::To, true),
                S::From => (S::None, true),
                S::FromOut => (S::NoneOut, true),
                S::Both => (S::To, true),
                other => (other, false),
            };
            // Refusing (or revoking) the contact's subscription also withdraws a
            // pre-approval, which otherwise would let the next request through.
            (new, false, route)
        }
    };
    changed_out(old, approved, new, approved_after, route, false)
}

fn changed_out(
    old: SubscriptionState,
    old_approved: bool,
    state: SubscriptionState,
    approved: bool,
    route: bool,
    create_item: bool,
) -> OutboundOutcome {
    OutboundOutcome {
        state,
        approved,
        route,
        roster_push: create_item || old.visible() != state.visible() || old_approved != approved,
        create_item,
        drop_request: old.pending_in() && !state.pending_in(),
    }
}

/// What to do with a subscription stanza a contact sent to the user (A.3, §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    /// `None`: the contact still has no roster item.
    pub state: Option<SubscriptionState>,
    /// The pre-approval flag after the stanza.
    pub approved: bool,
    /// Deliver the stanza to the user's available resources.
    pub deliver: bool,
    /// Answer the contact on the user's behalf with this type.
    pub auto_reply: Option<SubscriptionKind>,
    /// The visible item changed: store it and push it.
    pub roster_push: bool,
    /// Keep the request until the user answers it (delivered again at login).
    pub store_request: bool,
    /// A stored inbound request is now answered or withdrawn: remove it.
    pub drop_request: bool,
}

/// Decides what a subscription stanza from a contact to the user does.
///
/// `state` follows the convention of [`outbound`]: `None` is no roster item and
/// no stored request, a stored request without an item is `Some(NoneIn)`.
pub fn inbound(
    state: Option<SubscriptionState>,
    approved: bool,
    kind: SubscriptionKind,
) -> InboundOutcome {
    use SubscriptionKind::*;
    use SubscriptionState as S;
    let Some(old) = state else {
        return InboundOutcome {
            state: None,
            approved,
            // §3.1.3 / A.1 "None + Pending In": a request from a contact not in
            // the roster is delivered and noted, but no item is created until
            // the user approves it. Anything else from a stranger is ignored
            // (A.3.2-A.3.4 "None" rows: not delivered).
            deliver: kind == Subscribe,
            auto_reply: None,
            roster_push: false,
            store_request: kind == Subscribe,
            drop_request: false,
        };
    };
    let (new, approved_after, deliver, auto_reply) = match kind {
        Subscribe => match old {
            // A.3.1 rows marked with an auto-reply: the contact is already
            // subscribed, so the server answers 'subscribed' itself (§3.1.3).
            S::From | S::FromOut | S::Both => (old, approved, false, Some(Subscribed)),
            // §3.4: a pre-approved request is approved without asking the user.
            _ if approved => (with_from(old), false, false, Some(Subscribed)),
            S::None => (S::NoneIn, approved, true, None),
            S::NoneOut => (S::NoneOutIn, approved, true, None),
            S::To => (S::ToIn, approved, true, None),
            // A.3.1: a duplicate of a pending request is not delivered again.
            S::NoneIn | S::NoneOutIn | S::ToIn => (old, approved, false, None),
        },
        // A.3.2: delivered exactly when the state changes.
        Unsubscribe => {
            let new = match old {
                S::NoneIn | S::From => S::None,
                S::NoneOutIn | S::FromOut => S::NoneOut,
                S::ToIn | S::Both => S::To,
                other => other,
            };
            (new, approved, new != old, None)
        }
        // A.3.3: only an answer to our pending request counts (§3.1.6: otherwise
        // the server MUST NOT deliver it).
        Subscribed => {
            let new = match old {
                S::NoneOut => S::To,
                S::NoneOutIn => S::ToIn,
                S::FromOut => S::Both,
                other => other,
            };
            (new, approved, new != old, None)
        }
        // A.3.4: delivered exactly when the state changes.
        Unsubscribed => {
            let new = match old {
                S::NoneOut | S::To => S::None,
                S::NoneOutIn | S::ToIn => S::NoneIn,
                S::FromOut | S::Both => S::From,
                other => other,
            };
            (new, approved, new != old, None)
        }
    };
    InboundOutcome {
        state: Some(new),
        approved: approved_after,
        deliver,
        auto_reply,
        roster_push: old.visible() != new.visible() || approved != approved_after,
        store_request: !old.pending_in() && new.pending_in(),
        drop_request: old.pending_in() && !new.pending_in(),
    }
}

/// The state once the contact is subscribed to the user's presence; any
/// pending inbound request is thereby answered.
fn with_from(state: SubscriptionState) -> SubscriptionState {
    use SubscriptionState::*;
    match state {
        None | NoneIn | From => From,
        NoneOut | NoneOutIn | FromOut => FromOut,
        To | ToIn | Both => Both,
    }
}

/// A validated roster set (RFC 6121 §2.3, §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItemUpdate {
    /// Bare JID of the contact.
    pub jid: Jid,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// subscription='remove' (§2.5): delete the item; name and groups are empty.
    pub remove: bool,
}

/// Validates the `<query/>` of a roster set. `max_len` bounds the name and each
/// group, in UTF-8 octets.
pub fn parse_roster_set(query: &Element, max_len: usize) -> Result<RosterItemUpdate, StanzaError> {
    let bad_request =
        |text: &str| StanzaError::new(StanzaErrorCondition::BadRequest).with_text(text);
    let not_acceptable =
        |text: &str| StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text(text);
    if !query.is("query", ROSTER_NS) {
        return Err(bad_request("expected a jabber:iq:roster query"));
    }
    // §2.3.3: a roster set carries exactly one item.
    let mut items = query.elements().filter(|e| e.is("item", ROSTER_NS));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(bad_request("a roster set needs exactly one item"));
    };
    let raw_jid = item
        .attr("jid")
        .ok_or_else(|| bad_request("the item has no jid"))?;
    let jid = Jid::parse(raw_jid).map_err(|e| {
        StanzaError::new(StanzaErrorCondition::JidMalformed).with_text(e.to_string())
    })?;
    // Roster items are contacts, addressed by bare JID (§2.1.1); silently
    // stripping a resource would make the client's view differ from ours.
    if !jid.is_bare() {
        return Err(bad_request("a roster item's jid must be a bare JID"));
    }
    // §2.1.2.5: in a roster set every 'subscription' value other than "remove"
    // is ignored; 'ask' and 'approved' are likewise the server's to set.
    if item.attr("subscription") == Some("remove") {
        return Ok(RosterItemUpdate {
            jid,
            name: None,
            groups: Vec::new(),
            remove: true,
        });
    }
    // An empty name means no handle; storing "" would push name=''.
    let name = item.attr("name").filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.len() > max_len) {
        return Err(not_acceptable("the item's name is too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for group in item.elements().filter(|e| e.is("group", ROSTER_NS)) {
        let group = group.text();
        // §2.3.3 lists an empty group under not-acceptable: a client removes an
        // item from all groups by sending no <group/> at all.
        if group.is_empty() {
            return Err(not_acceptable("a group name is empty"));
        }
        if group.len() > max_len {
            return Err(not_acceptable("a group name is too long"));
        }
        if groups.contains(&group) {
            return Err(bad_request("a group is listed twice"));
        }
        groups.push(group);
    }
    Ok(RosterItemUpdate {
        jid,
        name: name.map(str::to_owned),
        groups,
        remove: false,
    })
}

/// One `<item/>` of a roster result or push (§2.1.2).
pub fn roster_item_element(
    jid: &str,
    name: Option<&str>,
    state: SubscriptionState,
    groups: &[String],
) -> Element {
    let mut item = Element::new("item", ROSTER_NS)
        .with_attr("jid", jid)
        .with_attr("subscription", state.subscription_attr());
    if let Some(name) = name {
        item.set_attr("name", name);
    }
    if state.ask() {
        item.set_attr("ask", "subscribe");
    }
    for group in groups {
        item.push_child(Element::new("group", ROSTER_NS).with_text(group.clone()));
    }
    item
}

/// The `<item/>` of a roster push announcing a removal (§2.5.2).
pub fn roster_remove_element(jid: &str) -> Element {
    Element::new("item", ROSTER_NS)
        .with_attr("jid", jid)
        .with_attr("subscription", "remove")
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionKind::*;
    use SubscriptionState as S;

    /// The nine states, in the order of the RFC's tables.
    const ALL: [S; 9] = [
        S::None,
        S::NoneOut,
        S::NoneIn,
        S::NoneOutIn,
        S::To,
        S::ToIn,
        S::From,
        S::FromOut,
        S::Both,
    ];

    /// One row of an A.2 table: existing state, routed?, new state.
    type OutRow = (S, bool, S);
    /// One row of an A.3 table: existing state, delivered?, new state.
    type InRow = (S, bool, S);

    fn check_outbound_table(kind: SubscriptionKind, table: &[OutRow]) {
        assert_eq!(table.len(), 9, "one row per defined state");
        for &(old, route, new) in table {
            let out = outbound(Some(old), false, kind);
            assert_eq!(out.route, route, "{kind:?} from {old:?}: route");
            assert_eq!(out.state, new, "{kind:?} from {old:?}: new state");
            assert!(!out.create_item, "{kind:?} from {old:?}: item exists");
            assert_eq!(
                out.roster_push,
                old.visible() != new.visible() || out.approved,
                "{kind:?} from {old:?}: push"
            );
            assert_eq!(out.drop_request, old.pending_in() && !new.pending_in());
        }
    }

    fn check_inbound_table(kind: SubscriptionKind, table: &[InRow]) {
        assert_eq!(table.len(), 9, "one row per defined state");
        for &(old, deliver, new) in table {
            let out = inbound(Some(old), false, kind);
            assert_eq!(out.deliver, deliver, "{kind:?} from {old:?}: deliver");
            assert_eq!(out.state, Some(new), "{kind:?} from {old:?}: new state");
            assert!(!out.approved);
            assert_eq!(
                out.roster_push,
                old.visible() != new.visible(),
                "{kind:?} from {old:?}: push"
            );
            assert_eq!(out.store_request, !old.pending_in() && new.pending_in());
            assert_eq!(out.drop_request, old.pending_in() && !new.pending_in());
        }
    }

    #[test]
    fn outbound_subscribe_follows_a_2_1() {
        check_outbound_table(
            Subscribe,
            &[
                (S::None, true, S::NoneOut),
                (S::NoneOut, true, S::NoneOut),
                (S::NoneIn, true, S::NoneOutIn),
                (S::NoneOutIn, true, S::NoneOutIn),
                (S::To, true, S::To),
                (S::ToIn, true, S::ToIn),
                (S::From, true, S::FromOut),
                (S::FromOut, true, S::FromOut),
                (S::Both, true, S::Both),
            ],
        );
    }

    #[test]
    fn outbound_unsubscribe_follows_a_2_2() {
        check_outbound_table(
            Unsubscribe,
            &[
                (S::None, true, S::None),
                (S::NoneOut, true, S::None),
                (S::NoneIn, true, S::NoneIn),
                (S::NoneOutIn, true, S::NoneIn),
                (S::To, true, S::None),
                (S::ToIn, true, S::NoneIn),
                (S::From, true, S::From),
                (S::FromOut, true, S::From),
                (S::Both, true, S::From),
            ],
        );
    }

    #[test]
    fn outbound_subscribed_follows_a_2_3_with_pre_approval() {
        // Rows without a pending request become pre-approvals (§3.4.2), checked
        // through the push column: approved changes, the state does not.
        check_outbound_table(
            Subscribed,
            &[
                (S::None, false, S::None),
                (S::NoneOut, false, S::NoneOut),
                (S::NoneIn, true, S::From),
                (S::NoneOutIn, true, S::FromOut),
                (S::To, false, S::To),
                (S::ToIn, true, S::Both),
                (S::From, false, S::From),
                (S::FromOut, false, S::FromOut),
                (S::Both, false, S::Both),
            ],
        );
    }

    #[test]
    fn outbound_unsubscribed_follows_a_2_4() {
        check_outbound_table(
            Unsubscribed,
            &[
                (S::None, false, S::None),
                (S::NoneOut, false, S::NoneOut),
                (S::NoneIn, true, S::None),
                (S::NoneOutIn, true, S::NoneOut),
                (S::To, false, S::To),
                (S::ToIn, true, S::To),
                (S::From, true, S::None),
                (S::FromOut, true, S::NoneOut),
                (S::Both, true, S::To),
            ],
        );
    }

    #[test]
    fn inbound_subscribe_follows_a_3_1() {
        check_inbound_table(
            Subscribe,
            &[
                (S::None, true, S::NoneIn),
                (S::NoneOut, true, S::NoneOutIn),
                (S::NoneIn, false, S::NoneIn),
                (S::NoneOutIn, false, S::NoneOutIn),
                (S::To, true, S::ToIn),
                (S::ToIn, false, S::ToIn),
                (S::From, false, S::From),
                (S::FromOut, false, S::FromOut),
                (S::Both, false, S::Both),
            ],
        );
        for state in ALL {
            let expected = state.is_subscribed_from().then_some(Subscribed);
            assert_eq!(inbound(Some(state), false, Subscribe).auto_reply, expected);
        }
    }

    #[test]
    fn inbound_unsubscribe_follows_a_3_2() {
        check_inbound_table(
            Unsubscribe,
            &[
                (S::None, false, S::None),
                (S::NoneOut, false, S::NoneOut),
                (S::NoneIn, true, S::None),
                (S::NoneOutIn, true, S::NoneOut),
                (S::To, false, S::To),
                (S::ToIn, true, S::To),
                (S::From, true, S::None),
                (S::FromOut, true, S::NoneOut),
                (S::Both, true, S::To),
            ],
        );
    }

    #[test]
    fn inbound_subscribed_follows_a_3_3() {
        check_inbound_table(
            Subscribed,
            &[
                (S::None, false, S::None),
                (S::NoneOut, true, S::To),
                (S::NoneIn, false, S::NoneIn),
                (S::NoneOutIn, true, S::ToIn),
                (S::To, false, S::To),
                (S::ToIn, false, S::ToIn),
                (S::From, false, S::From),
                (S::FromOut, true, S::Both),
                (S::Both, false, S::Both),
            ],
        );
    }

    #[test]
    fn inbound_unsubscribed_follows_a_3_4() {
        check_inbound_table(
            Unsubscribed,
            &[
                (S::None, false, S::None),
                (S::NoneOut, true, S::None),
                (S::NoneIn, false, S::NoneIn),
                (S::NoneOutIn, true, S::NoneIn),
                (S::To, true, S::None),
                (S::ToIn, true, S::NoneIn),
                (S::From, false, S::From),
                (S::FromOut, true, S::From),
                (S::Both, true, S::From),
            ],
        );
    }

    #[test]
    fn only_inbound_subscribe_auto_replies_without_pre_approval() {
        for kind in [Subscribed, Unsubscribe, Unsubscribed] {
            for state in ALL {
                assert_eq!(inbound(Some(state), false, kind).auto_reply, None);
            }
        }
    }

    #[test]
    fn outbound_without_item_creates_one_only_for_subscribe_and_pre_approval() {
        let subscribe = outbound(None, false, Subscribe);
        assert_eq!(
            subscribe,
            OutboundOutcome {
                state: S::NoneOut,
                approved: false,
                route: true,
                roster_push: true,
                create_item: true,
                drop_request: false,
            }
        );
        let pre_approve = outbound(None, false, Subscribed);
        assert_eq!(
            pre_approve,
            OutboundOutcome {
                state: S::None,
                approved: true,
                route: false,
                roster_push: true,
                create_item: true,
                drop_request: false,
            }
        );
        let unsubscribe = outbound(None, false, Unsubscribe);
        assert!(unsubscribe.route && !unsubscribe.create_item && !unsubscribe.roster_push);
        let unsubscribed = outbound(None, false, Unsubscribed);
        assert!(!unsubscribed.route && !unsubscribed.create_item && !unsubscribed.roster_push);
    }

    #[test]
    fn inbound_subscribe_from_stranger_is_stored_and_delivered_without_item() {
        let out = inbound(None, false, Subscribe);
        assert_eq!(
            out,
            InboundOutcome {
                state: None,
                approved: false,
                deliver: true,
                auto_reply: None,
                roster_push: false,
                store_request: true,
                drop_request: false,
            }
        );
    }

    #[test]
    fn other_inbound_types_from_stranger_are_ignored() {
        for kind in [Subscribed, Unsubscribe, Unsubscribed] {
            let out = inbound(None, false, kind);
            assert_eq!(out.state, None);
            assert!(!out.deliver && !out.roster_push && !out.store_request);
            assert_eq!(out.auto_reply, None);
        }
    }

    #[test]
    fn approving_request_without_item_makes_from_item() {
        // The stranger's request was stored without an item: NoneIn.
        let out = outbound(Some(S::NoneIn), false, Subscribed);
        assert_eq!(out.state, S::From);
        assert!(out.route && out.roster_push && out.drop_request);
        assert_eq!(out.state.subscription_attr(), "from");
    }

    #[test]
    fn declining_request_without_item_creates_nothing() {
        let out = outbound(Some(S::NoneIn), false, Unsubscribed);
        assert_eq!(out.state, S::None);
        assert!(out.route && out.drop_request);
        assert!(!out.roster_push && !out.create_item);
        let withdrawn = inbound(Some(S::NoneIn), false, Unsubscribe);
        assert!(withdrawn.deliver && withdrawn.drop_request && !withdrawn.roster_push);
    }

    #[test]
    fn pre_approval_is_noted_not_routed() {
        for state in [S::None, S::NoneOut, S::To] {
            let out = outbound(Some(state), false, Subscribed);
            assert_eq!(out.state, state);
            assert!(out.approved && !out.route && out.roster_push);
            let again = outbound(Some(state), true, Subscribed);
            assert!(again.approved && !again.route && !again.roster_push);
        }
    }

    #[test]
    fn pre_approved_subscribe_is_answered_by_server() {
        for (old, new) in [
            (S::None, S::From),
            (S::NoneOut, S::FromOut),
            (S::To, S::Both),
        ] {
            let out = inbound(Some(old), true, Subscribe);
            assert_eq!(
                out,
                InboundOutcome {
                    state: Some(new),
                    approved: false,
                    deliver: false,
                    auto_reply: Some(Subscribed),
                    roster_push: true,
                    store_request: false,
                    drop_request: false,
                }
            );
        }
    }

    #[test]
    fn pre_approval_survives_unrelated_inbound_stanzas() {
        for kind in [Subscribed, Unsubscribe, Unsubscribed] {
            for state in [S::None, S::NoneOut, S::To] {
                assert!(inbound(Some(state), true, kind).approved);
            }
        }
    }

    #[test]
    fn unsubscribed_cancels_pre_approval() {
        let out = outbound(Some(S::None), true, Unsubscribed);
        assert!(!out.approved && !out.route && out.roster_push);
        assert_eq!(out.state, S::None);
    }

    #[test]
    fn approved_is_kept_by_outbound_subscribe_and_unsubscribe() {
        assert!(outbound(Some(S::None), true, Subscribe).approved);
        assert!(outbound(Some(S::NoneOut), true, Unsubscribe).approved);
    }

    #[test]
    fn state_round_trips_through_storage_parts() {
        for state in ALL {
            let rebuilt = SubscriptionState::from_parts(
                state.subscription_attr(),
                state.ask(),
                state.pending_in(),
            );
            assert_eq!(rebuilt, Some(state));
        }
        assert_eq!(SubscriptionState::from_parts("to", true, false), None);
        assert_eq!(SubscriptionState::from_parts("from", false, true), None);
        assert_eq!(SubscriptionState::from_parts("both", true, false), None);
        assert_eq!(SubscriptionState::from_parts("remove", false, false), None);
    }

    #[test]
    fn subscribed_to_and_from_match_subscription_attr() {
        for state in ALL {
            let attr = state.subscription_attr();
            assert_eq!(state.is_subscribed_to(), attr == "to" || attr == "both");
            assert_eq!(state.is_subscribed_from(), attr == "from" || attr == "both");
        }
    }

    #[test]
    fn kind_round_trips_presence_type() {
        for kind in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
            assert_eq!(SubscriptionKind::from_type(kind.as_type()), Some(kind));
        }
        assert_eq!(SubscriptionKind::from_type("unavailable"), None);
        assert_eq!(SubscriptionKind::from_type("probe"), None);
    }

    fn query(items: Vec<Element>) -> Element {
        items
            .into_iter()
            .fold(Element::new("query", ROSTER_NS), Element::with_child)
    }

    fn item(jid: &str) -> Element {
        Element::new("item", ROSTER_NS).with_attr("jid", jid)
    }

    fn group(name: &str) -> Element {
        Element::new("group", ROSTER_NS).with_text(name)
    }

    fn condition(result: Result<RosterItemUpdate, StanzaError>) -> StanzaErrorCondition {
        result.expect_err("the roster set is invalid").condition
    }

    #[test]
    fn roster_set_parses_name_and_groups() {
        let set = query(vec![item("Romeo@Example.net")
            .with_attr("name", "Romeo")
            .with_child(group("Friends"))
            .with_child(group("Lovers"))]);
        let update = parse_roster_set(&set, 100).expect("valid");
        assert_eq!(
            update,
            RosterItemUpdate {
                jid: Jid::parse("romeo@example.net").expect("valid jid"),
                name: Some("Romeo".to_owned()),
                groups: vec!["Friends".to_owned(), "Lovers".to_owned()],
                remove: false,
            }
        );
    }

    #[test]
    fn roster_set_ignores_client_subscription_ask_and_approved() {
        let set = query(vec![item("romeo@example.net")
            .with_attr("subscription", "both")
            .with_attr("ask", "subscribe")
            .with_attr("approved", "true")]);
        let update = parse_roster_set(&set, 100).expect("valid");
        assert!(!update.remove);
        assert_eq!(update.name, None);
    }

    #[test]
    fn roster_set_remove_drops_name_and_groups() {
        let set = query(vec![item("romeo@example.net")
            .with_attr("subscription", "remove")
            .with_attr("name", "Romeo")
            .with_child(group("Friends"))]);
        let update = parse_roster_set(&set, 100).expect("valid");
        assert!(update.remove);
        assert_eq!(update.name, None);
        assert!(update.groups.is_empty());
    }

    #[test]
    fn roster_set_without_exactly_one_item_is_bad_request() {
        let none = query(vec![]);
        let two = query(vec![item("a@example.net"), item("b@example.net")]);
        assert_eq!(
            condition(parse_roster_set(&none, 100)),
            StanzaErrorCondition::BadRequest
        );
        assert_eq!(
            condition(parse_roster_set(&two, 100)),
            StanzaErrorCondition::BadRequest
        );
    }

    #[test]
    fn roster_set_outside_roster_namespace_is_bad_request() {
        let set = Element::new("query", "jabber:iq:private").with_child(item("a@example.net"));
        assert_eq!(
            condition(parse_roster_set(&set, 100)),
            StanzaErrorCondition::BadRequest
        );
    }

    #[test]
    fn roster_set_item_without_jid_is_bad_request() {
        let set = query(vec![Element::new("item", ROSTER_NS).with_attr("name", "x")]);
        assert_eq!(
            condition(parse_roster_set(&set, 100)),
            StanzaErrorCondition::BadRequest
        );
    }

    #[test]
    fn roster_set_invalid_jid_is_jid_malformed() {
        let set = query(vec![item("@example.net")]);
        assert_eq!(
            condition(parse_roster_set(&set, 100)),
            StanzaErrorCondition::JidMalformed
        );
    }

    #[test]
    fn roster_set_full_jid_is_bad_request() {
        let set = query(vec![item("romeo@example.net/orchard")]);
        assert_eq!(
            condition(parse_roster_set(&set, 100)),
            StanzaErrorCondition::BadRequest
        );
    }

    #[test]
    fn roster_set_duplicate_group_is_bad_request() {
        let set = query(vec![item("romeo@example.net")
            .with_child(group("Friends"))
            .with_child(group("Friends"))]);
        assert_eq!(
            condition(parse_roster_set(&set, 100)),
            StanzaErrorCondition::BadRequest
        );
    }

    #[test]
    fn roster_set_empty_group_is_not_acceptable() {
        let set = query(vec![item("romeo@example.net").with_child(group(""))]);
        assert_eq!(
            condition(parse_roster_set(&set, 100)),
            StanzaErrorCondition::NotAcceptable
        );
    }

    #[test]
    fn roster_set_overlong_name_or_group_is_not_acceptable() {
        let long_name = query(vec![item("romeo@example.net").with_attr("name", "abcdef")]);
        let long_group = query(vec![item("romeo@example.net").with_child(group("abcdef"))]);
        assert_eq!(
            condition(parse_roster_set(&long_name, 5)),
            StanzaErrorCondition::NotAcceptable
        );
        assert_eq!(
            condition(parse_roster_set(&long_group, 5)),
            StanzaErrorCondition::NotAcceptable
        );
        let at_limit = query(vec![item("romeo@example.net")
            .with_attr("name", "abcde")
            .with_child(group("abcde"))]);
        assert!(parse_roster_set(&at_limit, 5).is_ok());
    }

    #[test]
    fn roster_item_shows_ask_only_for_pending_out() {
        let item = roster_item_element(
            "romeo@example.net",
            Some("Romeo"),
            S::FromOut,
            &["Friends".to_owned()],
        );
        assert_eq!(
            item.to_xml(ROSTER_NS),
            "<item jid='romeo@example.net' subscription='from' name='Romeo' ask='subscribe'>\
             <group>Friends</group></item>"
        );
        let pending_in = roster_item_element("romeo@example.net", None, S::ToIn, &[]);
        assert_eq!(
            pending_in.to_xml(ROSTER_NS),
            "<item jid='romeo@example.net' subscription='to'/>"
        );
    }

    #[test]
    fn roster_remove_item_has_subscription_remove() {
        assert_eq!(
            roster_remove_element("romeo@example.net").to_xml(ROSTER_NS),
            "<item jid='romeo@example.net' subscription='remove'/>"
        );
    }
}
