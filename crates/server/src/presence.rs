//! Rosters, subscriptions and presence (RFC 6121 §2–§4) for local accounts: the
//! roster IQ, the subscription state machine applied on both sides, presence
//! broadcast, probes and directed presence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::roster::{
    inbound, outbound, parse_roster_set, roster_item_element, roster_remove_element,
    SubscriptionKind, SubscriptionState, ROSTER_NS,
};
use starling_proto::{ns, Jid};
use starling_store::{
    LastActivityStore, RosterChange, RosterItem, RosterStore, Store, Subscription,
};
use starling_xml::Element;

use crate::blocking::Blocking;
use crate::components::ComponentTable;
use crate::modules::{FollowUp, IqFuture, IqHandler, IqRequest};
use crate::offline::unix_millis;
use crate::s2s::S2s;
use crate::sessions::{SessionHandle, SessionTable};

pub struct Presence {
    domains: Vec<String>,
    store: Store,
    sessions: Arc<SessionTable>,
    components: Arc<ComponentTable>,
    s2s: Arc<S2s>,
    blocking: Arc<Blocking>,
    max_roster_items: u64,
    max_roster_text: usize,
    next_push_id: AtomicU64,
}

/// What a presence stanza from a client did to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// The session sent its initial presence with this priority.
    BecameAvailable {
        priority: i8,
    },
    Other,
}

impl Presence {
    pub fn new(
        domains: Vec<String>,
        store: Store,
        sessions: Arc<SessionTable>,
        components: Arc<ComponentTable>,
        s2s: Arc<S2s>,
        blocking: Arc<Blocking>,
        limits: &crate::config::LimitsSection,
    ) -> Self {
        Presence {
            domains,
            store,
            sessions,
            components,
            s2s,
            blocking,
            max_roster_items: limits.max_roster_items,
            max_roster_text: limits.max_roster_text,
            next_push_id: AtomicU64::new(1),
        }
    }

    /// A presence stanza from a local client, `from` already stamped.
    pub async fn handle_client_presence(
        &self,
        session: &SessionHandle,
        stanza: Element,
    ) -> SessionChange {
        let kind = stanza.attr("type").map(str::to_string);
        let to = match stanza.attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(to)) => Some(to),
            Some(Err(_)) => {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::JidMalformed),
                );
                return SessionChange::Other;
            }
        };
        match (kind.as_deref(), to) {
            (None | Some("unavailable"), None) => self.broadcast(session, stanza).await,
            (Some(kind), Some(to)) if SubscriptionKind::from_type(kind).is_some() => {
                let kind = SubscriptionKind::from_type(kind).expect("checked above");
                self.outbound_subscription(&session.jid.bare(), &to.bare(), kind, &stanza)
                    .await;
                SessionChange::Other
            }
            (None | Some("unavailable"), Some(to)) => {
                self.directed(session, &to, stanza).await;
                SessionChange::Other
            }
            (Some("error"), Some(to)) => {
                self.deliver_to(&to, stanza).await;
                SessionChange::Other
            }
            // Probes are the server's business (RFC 6121 §4.3), and anything else is not presence.
            _ => SessionChange::Other,
        }
    }

    /// The session ended: an available session goes unavailable on the client's behalf.
    pub async fn session_ended(&self, session: &SessionHandle) {
        if !session.is_available() {
            return;
        }
        let unavailable = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", session.jid.to_string());
        self.broadcast(session, unavailable).await;
    }

    /// RFC 6121 §4.2 and §4.5: initial, updated and unavailable presence.
    async fn broadcast(&self, session: &SessionHandle, mut stanza: Element) -> SessionChange {
        let user = session.jid.bare();
        let available = stanza.attr("type").is_none();
        let priority = stanza
            .child("priority", ns::CLIENT)
            .and_then(|p| p.text().trim().parse::<i8>().ok())
            .unwrap_or(0);
        stanza.set_attr("from", session.jid.to_string());
        stanza.remove_attr("to");
        let (was_available, directed) = session.update_presence(|state| {
            let was = state.available;
            state.available = available;
            state.priority = priority;
            state.last = available.then(|| stanza.clone());
            let directed = if available {
                Vec::new()
            } else {
                state.directed.drain().collect()
            };
            (was, directed)
        });
        if !available && !was_available {
            return SessionChange::Other;
        }
        let roster = self.roster_of(&user).await;
        for item in &roster {
            let Ok(contact) = Jid::parse(&item.jid) else {
                continue;
            };
            if matches!(item.subscription, Subscription::From | Subscription::Both) {
                let mut copy = stanza.clone();
                copy.set_attr("to", contact.to_string());
                self.deliver_to(&contact, copy).await;
            }
        }
        for target in directed {
            let mut copy = stanza.clone();
            copy.set_attr("to", target.to_string());
            self.deliver_to(&target, copy).await;
        }
        // The user's own resources, the sender included (RFC 6121 §4.2.2, §4.4.2).
        for own in self.sessions.available_sessions(&user) {
            let mut copy = stanza.clone();
            copy.set_attr("to", own.jid.to_string());
            own.deliver(copy);
        }
        if !available {
            if !self.sessions.has_available_session(&user) {
                self.record_last_activity(&user, &stanza).await;
            }
            return SessionChange::Other;
        }
        if was_available {
            return SessionChange::Other;
        }
        // Initial presence: learn the contacts' presence, see the other resources,
        // and hear pending subscription requests again (RFC 6121 §3.1.3, §4.2.2).
        for item in &roster {
            if matches!(item.subscription, Subscription::To | Subscription::Both) {
                if let Ok(contact) = Jid::parse(&item.jid) {
                    self.probe(&user, &contact, &session.jid).await;
                }
            }
        }
        for other in self.sessions.available_sessions(&user) {
            if other.jid == session.jid {
                continue;
            }
            if let Some(mut last) = other.presence().last {
                last.set_attr("to", session.jid.to_string());
                session.deliver(last);
            }
        }
        self.resend_subscription_requests(&user, session).await;
        SessionChange::BecameAvailable { priority }
    }

    async fn record_last_activity(&self, user: &Jid, unavailable: &Element) {
        let status = unavailable
            .child("status", ns::CLIENT)
            .map(|s| s.text())
            .unwrap_or_default();
        let (Some(node), domain) = (user.node(), user.domain()) else {
            return;
        };
        let now = unix_millis(SystemTime::now());
        if let Err(e) = self
            .store
            .set_last_activity(node, domain, now, &status)
            .await
        {
            tracing::error!(error = %e, "recording last activity failed");
        }
    }

    /// RFC 6121 §4.6: directed presence, remembered so unavailable reaches it too.
    async fn directed(&self, session: &SessionHandle, to: &Jid, mut stanza: Element) {
        let available = stanza.attr("type").is_none();
        session.update_presence(|state| {
            if available && state.available {
                state.directed.insert(to.clone());
            } else {
                state.directed.remove(to);
            }
        });
        stanza.set_attr("to", to.to_string());
        self.deliver_to(to, stanza).await;
    }

    /// Ask a contact's server for the contact's presence, on behalf of `user`; the
    /// answers go to the resource that came online.
    async fn probe(&self, user: &Jid, contact: &Jid, answer_to: &Jid) {
        if !self.is_local_account(contact) {
            // A component answers probes for its own JIDs (RFC 6121 §4.3.1).
            let probe = Element::new("presence", ns::CLIENT)
                .with_attr("type", "probe")
                .with_attr("from", user.to_string())
                .with_attr("to", contact.to_string());
            self.deliver_to(contact, probe).await;
            return;
        }
        let allowed = match self.roster_item(contact, user).await {
            Some(item) => matches!(item.subscription, Subscription::From | Subscription::Both),
            None => false,
        };
        if !allowed {
            // RFC 6121 §4.3.2: never reveal presence without a subscription.
            return;
        }
        let available = self.sessions.available_sessions(contact);
        if available.is_empty() {
            let mut unavailable = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", contact.to_string())
                .with_attr("to", answer_to.to_string());
            if let Some(node) = contact.node() {
                if let Ok(Some((at_ms, status))) =
                    self.store.last_activity(node, contact.domain()).await
                {
                    if !status.is_empty() {
                        unavailable
                            .push_child(Element::new("status", ns::CLIENT).with_text(status));
                    }
                    let stamp = SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_millis(at_ms.max(0) as u64);
                    unavailable.push_child(
                        Element::new("delay", crate::offline::DELAY_NS)
                            .with_attr("from", contact.domain())
                            .with_attr("stamp", starling_proto::datetime::format_datetime(stamp)),
                    );
                }
            }
            self.deliver_to(answer_to, unavailable).await;
            return;
        }
        for resource in available {
            if let Some(mut last) = resource.presence().last {
                last.set_attr("to", answer_to.to_string());
                self.deliver_to(answer_to, last).await;
            }
        }
    }

    async fn resend_subscription_requests(&self, user: &Jid, session: &SessionHandle) {
        let Some(node) = user.node() else {
            return;
        };
        let requests = match self.store.subscription_requests(node, user.domain()).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!(error = %e, "reading subscription requests failed");
                return;
            }
        };
        for (_, xml) in requests {
            match Element::from_xml(&xml, ns::CLIENT) {
                Ok(request) => session.deliver(request),
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable subscription request")
                }
            }
        }
    }

    /// A presence stanza for a local account from anyone (RFC 6121 §4.3, §3).
    pub async fn to_account(&self, stanza: Element, to: &Jid) {
        let Some(from) = stanza.attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return;
        };
        if self.blocking.is_blocked(&to.bare(), &from).await {
            return;
        }
        match stanza.attr("type") {
            Some("probe") => self.probe(&from.bare(), &to.bare(), &from).await,
            Some(kind) if SubscriptionKind::from_type(kind).is_some() => {
                let kind = SubscriptionKind::from_type(kind).expect("checked above");
                self.inbound_subscription(&to.bare(), &from.bare(), kind, &stanza)
                    .await;
            }
            _ => {
                if to.is_bare() {
                    for session in self.sessions.available_sessions(to) {
                        session.deliver(stanza.clone());
                    }
                } else if let Some(session) = self.sessions.session(to) {
                    session.deliver(stanza);
                }
            }
        }
    }

    /// Deliver presence to a local account, through its blocking and subscription
    /// rules, or to a connected component or another server, which keep their own.
    async fn deliver_to(&self, to: &Jid, stanza: Element) {
        if self.is_local_account(to) {
            Box::pin(self.to_account(stanza, to)).await;
        } else if let Some(component) = self.components.connected(to.domain()) {
            component.deliver(stanza);
        } else if self.s2s.is_remote(to.domain()) {
            Box::pin(self.s2s.send(stanza)).await;
        }
    }

    fn is_local_account(&self, jid: &Jid) -> bool {
        jid.node().is_some() && self.domains.iter().any(|d| d == jid.domain())
    }

    /// RFC 6121 §3, user side: a subscription stanza the user sent to `contact`.
    async fn outbound_subscription(
        &self,
        user: &Jid,
        contact: &Jid,
        kind: SubscriptionKind,
        stanza: &Element,
    ) {
        if user == contact {
            return;
        }
        let (item, pending_in) = self.subscription_of(user, contact).await;
        let state = current_state(item.as_ref(), pending_in);
        let approved = item.as_ref().is_some_and(|i| i.approved);
        let outcome = outbound(state, approved, kind);
        if outcome.roster_push {
            let mut updated = item.unwrap_or_else(|| new_item(contact));
            apply_state(&mut updated, outcome.state, outcome.approved);
            // The contact must not learn of a change the user's roster does not hold.
            if self.save_item(user, &updated).await.is_err() {
                return;
            }
        }
        if outcome.drop_request {
            self.forget_request(user, contact).await;
        }
        if !outcome.route {
            return;
        }
        // Subscription stanzas carry the bare JID (RFC 6121 §3.1.2).
        let mut routed = Element::new("presence", ns::CLIENT)
            .with_attr("type", kind.as_type())
            .with_attr("from", user.to_string())
            .with_attr("to", contact.to_string());
        if let Some(id) = stanza.attr("id") {
            routed.set_attr("id", id);
        }
        for child in stanza.elements() {
            routed.push_child(child.clone());
        }
        self.deliver_to(contact, routed).await;
        match kind {
            SubscriptionKind::Subscribed => self.send_current_presence(user, contact, true).await,
            SubscriptionKind::Unsubscribed => {
                self.send_current_presence(user, contact, false).await
            }
            SubscriptionKind::Subscribe | SubscriptionKind::Unsubscribe => {}
        }
    }

    /// RFC 6121 §3, contact side: a subscription stanza `from` sent to local `user`.
    async fn inbound_subscription(
        &self,
        user: &Jid,
        from: &Jid,
        kind: SubscriptionKind,
        stanza: &Element,
    ) {
        let Some(node) = user.node() else {
            return;
        };
        match starling_store::AccountStore::account_exists(&self.store, node, user.domain()).await {
            Ok(true) => {}
            Ok(false) => {
                // RFC 6121 §3.1.3: a request to a non-existent account is declined.
                if kind == SubscriptionKind::Subscribe {
                    let decline = Element::new("presence", ns::CLIENT)
                        .with_attr("type", "unsubscribed")
                        .with_attr("from", user.to_string())
                        .with_attr("to", from.to_string());
                    Box::pin(self.deliver_to(from, decline)).await;
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return;
            }
        }
        let (item, pending_in) = self.subscription_of(user, from).await;
        let state = current_state(item.as_ref(), pending_in);
        let approved = item.as_ref().is_some_and(|i| i.approved);
        let outcome = inbound(state, approved, kind);
        if let (true, Some(new_state)) = (outcome.roster_push, outcome.state) {
            let mut updated = item.unwrap_or_else(|| new_item(from));
            apply_state(&mut updated, new_state, outcome.approved);
            if self.save_item(user, &updated).await.is_err() {
                return;
            }
        }
        let mut delivered = Element::new("presence", ns::CLIENT)
            .with_attr("type", kind.as_type())
            .with_attr("from", from.to_string())
            .with_attr("to", user.to_string());
        if let Some(id) = stanza.attr("id") {
            delivered.set_attr("id", id);
        }
        for child in stanza.elements() {
            delivered.push_child(child.clone());
        }
        if outcome.store_request {
            let xml = delivered.to_xml(ns::CLIENT);
            if let Err(e) = self
                .store
                .add_subscription_request(node, user.domain(), &from.to_string(), &xml)
                .await
            {
                tracing::error!(error = %e, "storing a subscription request failed");
            }
        }
        if outcome.drop_request {
            self.forget_request(user, from).await;
        }
        if outcome.deliver {
            for session in self.sessions.available_sessions(user) {
                session.deliver(delivered.clone());
            }
        }
        if let Some(reply) = outcome.auto_reply {
            let answer = Element::new("presence", ns::CLIENT)
                .with_attr("type", reply.as_type())
                .with_attr("from", user.to_string())
                .with_attr("to", from.to_string());
            Box::pin(self.deliver_to(from, answer)).await;
            if reply == SubscriptionKind::Subscribed {
                self.send_current_presence(user, from, true).await;
            }
        }
    }

    /// Send `contact` the presence of each of `user`'s available resources, or
    /// their unavailable presence.
    pub async fn send_current_presence(&self, user: &Jid, contact: &Jid, available: bool) {
        for session in self.sessions.available_sessions(user) {
            let presence = if available {
                session.presence().last
            } else {
                Some(
                    Element::new("presence", ns::CLIENT)
                        .with_attr("type", "unavailable")
                        .with_attr("from", session.jid.to_string()),
                )
            };
            if let Some(mut presence) = presence {
                presence.set_attr("to", contact.to_string());
                Box::pin(self.deliver_to(contact, presence)).await;
            }
        }
    }

    /// XEP-0077 §3.2: an account being cancelled ends every subscription both ways
    /// and declines every pending request, as if it removed each contact (RFC 6121
    /// §2.5.2), so no contact keeps a subscription to an account that is gone.
    pub async fn cancel_subscriptions(&self, user: &Jid) {
        let Some(node) = user.node() else {
            return;
        };
        for item in self.roster_of(user).await {
            match Jid::parse(&item.jid) {
                Ok(contact) => {
                    if let Err(e) = self.roster_remove(user, node, &contact).await {
                        tracing::error!(%user, %contact, condition = ?e.condition, "cancelling a subscription failed");
                    }
                }
                Err(e) => {
                    tracing::error!(%user, jid = item.jid, error = %e, "skipping an unreadable roster item")
                }
            }
        }
        let requests = match self.store.subscription_requests(node, user.domain()).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!(error = %e, "reading subscription requests failed");
                return;
            }
        };
        for (requester, _) in requests {
            let Ok(requester) = Jid::parse(&requester) else {
                continue;
            };
            let unsubscribed = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unsubscribed")
                .with_attr("from", user.to_string())
                .with_attr("to", requester.to_string());
            self.deliver_to(&requester, unsubscribed).await;
            self.forget_request(user, &requester).await;
        }
    }

    async fn forget_request(&self, user: &Jid, contact: &Jid) {
        if let Some(node) = user.node() {
            if let Err(e) = self
                .store
                .remove_subscription_request(node, user.domain(), contact.as_str())
                .await
            {
                tracing::error!(error = %e, "removing a subscription request failed");
            }
        }
    }

    async fn subscription_of(&self, user: &Jid, contact: &Jid) -> (Option<RosterItem>, bool) {
        let item = self.roster_item(user, contact).await;
        let Some(node) = user.node() else {
            return (item, false);
        };
        let pending_in = match self.store.subscription_requests(node, user.domain()).await {
            Ok(requests) => requests.iter().any(|(from, _)| from == contact.as_str()),
            Err(e) => {
                tracing::error!(error = %e, "reading subscription requests failed");
                false
            }
        };
        (item, pending_in)
    }

    async fn roster_item(&self, user: &Jid, contact: &Jid) -> Option<RosterItem> {
        let node = user.node()?;
        match self
            .store
            .roster_item(node, user.domain(), contact.as_str())
            .await
        {
            Ok(item) => item,
            Err(e) => {
                tracing::error!(error = %e, "reading a roster item failed");
                None
            }
        }
    }

    async fn roster_of(&self, user: &Jid) -> Vec<RosterItem> {
        let Some(node) = user.node() else {
            return Vec::new();
        };
        match self.store.roster(node, user.domain()).await {
            Ok((_, items)) => items,
            Err(e) => {
                tracing::error!(error = %e, "reading a roster failed");
                Vec::new()
            }
        }
    }

    /// Store an item and push it to the account's interested resources (RFC 6121
    /// §2.1.6). An error means nothing changed: the caller must not act as if it had.
    async fn save_item(&self, user: &Jid, item: &RosterItem) -> Result<(), StanzaError> {
        let node = user.node().unwrap_or_default();
        let version = self
            .store
            .set_roster_item(node, user.domain(), item)
            .await
            .map_err(internal)?;
        self.push(user, version, item_element(item));
        Ok(())
    }

    fn push(&self, user: &Jid, version: u64, item: Element) {
        for session in self.sessions.sessions_of(user) {
            if session.presence().interested {
                session.deliver(self.push_to(&session.jid, version, item.clone()));
            }
        }
    }

    /// A roster push (RFC 6121 §2.1.6) of one item to one resource.
    fn push_to(&self, resource: &Jid, version: u64, item: Element) -> Element {
        let id = self.next_push_id.fetch_add(1, Ordering::Relaxed);
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push{id}"))
            .with_attr("to", resource.to_string())
            .with_child(
                Element::new("query", ROSTER_NS)
                    .with_attr("ver", version.to_string())
                    .with_child(item),
            )
    }

    fn bounce(&self, stanza: &Element, error: StanzaError) {
        let Some(reply) = error.reply_to(stanza) else {
            return;
        };
        if let Some(session) = reply
            .attr("to")
            .and_then(|to| Jid::parse(to).ok())
            .and_then(|to| self.sessions.session(&to))
        {
            session.deliver(reply);
        }
    }

    /// jabber:iq:roster get and set from the account itself (RFC 6121 §2.1.3, §2.3–§2.6).
    async fn roster_iq(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        if request.from.bare() != *request.to {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let user = request.to;
        let node = user.node().unwrap_or_default();
        if !request.is_set {
            if let Some(session) = self.sessions.session(request.from) {
                session.update_presence(|state| state.interested = true);
            }
            return self.roster_get(&request, node).await;
        }
        let update = parse_roster_set(request.payload, self.max_roster_text)?;
        let contact = update.jid.bare();
        if update.remove {
            return self.roster_remove(user, node, &contact).await;
        }
        let mut item = self
            .roster_item(user, &contact)
            .await
            .unwrap_or_else(|| new_item(&contact));
        item.name = update.name;
        item.groups = update.groups;
        let version = self
            .store
            .set_roster_item_within(node, user.domain(), &item, self.max_roster_items)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text("the roster is full")
            })?;
        self.push(user, version, item_element(&item));
        Ok(None)
    }

    async fn roster_get(
        &self,
        request: &IqRequest<'_>,
        node: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        let since = request
            .payload
            .attr("ver")
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(since) = since {
            let changes = self
                .store
                .roster_changes_since(node, user.domain(), since)
                .await
                .map_err(internal)?;
            if let Some((_, changes)) = changes {
                // RFC 6121 §2.6.3: an empty result, then each change as a push to
                // the requesting resource, carrying the version of that change.
                let mut follow_ups = request.follow_ups.lock().expect("follow-ups");
                for (version, change) in changes {
                    let item = match change {
                        RosterChange::Set(item) => item_element(&item),
                        RosterChange::Removed(jid) => roster_remove_element(&jid),
                    };
                    follow_ups.push(FollowUp::Stanza(self.push_to(request.from, version, item)));
                }
                return Ok(None);
            }
        }
        let (version, items) = self
            .store
            .roster(node, user.domain())
            .await
            .map_err(internal)?;
        let mut query = Element::new("query", ROSTER_NS).with_attr("ver", version.to_string());
        for item in &items {
            query.push_child(item_element(item));
        }
        Ok(Some(query))
    }

    /// RFC 6121 §2.5.2: removing an item cancels the subscriptions both ways.
    async fn roster_remove(
        &self,
        user: &Jid,
        node: &str,
        contact: &Jid,
    ) -> Result<Option<Element>, StanzaError> {
        let (item, pending_in) = self.subscription_of(user, contact).await;
        let Some(item) = item else {
            return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        };
        let version = self
            .store
            .remove_roster_item(node, user.domain(), contact.as_str())
            .await
            .map_err(internal)?;
        if let Some(version) = version {
            self.push(user, version, roster_remove_element(contact.as_str()));
        }
        let presence = |kind: &str| {
            Element::new("presence", ns::CLIENT)
                .with_attr("type", kind.to_string())
                .with_attr("from", user.to_string())
                .with_attr("to", contact.to_string())
        };
        if matches!(item.subscription, Subscription::To | Subscription::Both) || item.ask {
            self.deliver_to(contact, presence("unsubscribe")).await;
        }
        if matches!(item.subscription, Subscription::From | Subscription::Both) || pending_in {
            self.deliver_to(contact, presence("unsubscribed")).await;
            self.send_current_presence(user, contact, false).await;
        }
        if pending_in {
            self.forget_request(user, contact).await;
        }
        Ok(None)
    }
}

fn internal(e: starling_store::StoreError) -> StanzaError {
    tracing::error!(error = %e, "roster storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

/// The RFC 6121 state of a stored item plus whether a request from the contact is pending.
fn current_state(item: Option<&RosterItem>, pending_in: bool) -> Option<SubscriptionState> {
    match item {
        Some(item) => {
            SubscriptionState::from_parts(item.subscription.as_str(), item.ask, pending_in)
        }
        None if pending_in => Some(SubscriptionState::NoneIn),
        None => None,
    }
}

fn new_item(contact: &Jid) -> RosterItem {
    RosterItem {
        jid: contact.bare().to_string(),
        name: None,
        subscription: Subscription::None,
        ask: false,
        approved: false,
        groups: Vec::new(),
    }
}

fn apply_state(item: &mut RosterItem, state: SubscriptionState, approved: bool) {
    item.subscription = match state.subscription_attr() {
        "to" => Subscription::To,
        "from" => Subscription::From,
        "both" => Subscription::Both,
        _ => Subscription::None,
    };
    item.ask = state.ask();
    item.approved = approved;
}

fn item_element(item: &RosterItem) -> Element {
    let state = SubscriptionState::from_parts(item.subscription.as_str(), item.ask, false)
        .unwrap_or(SubscriptionState::None);
    let element = roster_item_element(&item.jid, item.name.as_deref(), state, &item.groups);
    if item.approved {
        element.with_attr("approved", "true")
    } else {
        element
    }
}

/// The roster IQ handler a module registers.
pub struct RosterHandler(pub Arc<Presence>);

impl IqHandler for RosterHandler {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(self.0.roster_iq(request))
    }
}
