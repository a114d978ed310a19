//! The one router: every stanza from a session goes through `Router::route`, which
//! applies RFC 6120 §10 and RFC 6121 §8 (the server itself, a local bare or full JID,
//! a remote domain). It knows sessions only through the session table.

use std::sync::Arc;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::{ns, Jid};
use starling_store::{AccountStore, Store};
use starling_xml::Element;

use crate::blocking::{mark_blocked, Blocking};
use crate::components::ComponentTable;
use crate::modules::{FollowUp, IqRequest, IqTarget, Modules};
use crate::offline::Offline;
use crate::presence::{Presence, SessionChange};
use crate::s2s::S2s;
use crate::sessions::{SessionHandle, SessionTable};

pub struct Router {
    pub sessions: Arc<SessionTable>,
    pub components: Arc<ComponentTable>,
    pub presence: Arc<Presence>,
    pub offline: Arc<Offline>,
    pub blocking: Arc<Blocking>,
    pub domains: Vec<String>,
    pub store: Store,
    pub modules: Arc<Modules>,
    pub s2s: Arc<S2s>,
}

impl Router {
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// Route a stanza from a bound session, whose `from` the session stamped and validated.
    pub async fn route_from_session(
        &self,
        session: &SessionHandle,
        stanza: Element,
    ) -> SessionChange {
        let to = match stanza.attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(to)) => Some(to),
            Some(Err(e)) => {
                let error = StanzaError::new(StanzaErrorCondition::JidMalformed)
                    .with_text(format!("invalid 'to' address: {e}"));
                self.bounce(&stanza, error).await;
                return SessionChange::Other;
            }
        };
        let user = session.jid.bare();
        // XEP-0191 §3.4: nothing goes out to an entity the user blocks.
        if let Some(to) = &to {
            if to.bare() != user && self.blocking.is_blocked(&user, to).await {
                if stanza.name != "presence" {
                    if let Some(reply) = Blocking::blocked_error().reply_to(&stanza) {
                        self.deliver_reply(mark_blocked(reply)).await;
                    }
                }
                return SessionChange::Other;
            }
        }
        if stanza.name == "presence" {
            return self.presence.handle_client_presence(session, stanza).await;
        }
        // RFC 6120 §10.3: no 'to' means the sender's own account.
        let to = to.unwrap_or(user);
        self.route_to(stanza, &to).await;
        SessionChange::Other
    }

    /// Route a stanza from a connected component, whose `from` (at the component's
    /// domain) and `to` its connection validated.
    pub async fn route_from_component(&self, stanza: Element) {
        let Some(to) = stanza.attr("to").and_then(|to| Jid::parse(to).ok()) else {
            return;
        };
        self.route_to(stanza, &to).await;
    }

    /// Route a stanza from another server, whose `from` and `to` the server stream
    /// checked against the authenticated domain pair.
    pub async fn route_from_remote(&self, stanza: Element) {
        let Some(to) = stanza.attr("to").and_then(|to| Jid::parse(to).ok()) else {
            return;
        };
        self.route_to(stanza, &to).await;
    }

    async fn route_to(&self, stanza: Element, to: &Jid) {
        if self.components.is_component(to.domain()) {
            match self.components.connected(to.domain()) {
                Some(component) => component.deliver(stanza),
                // XEP-0114 leaves this to the server; as for an unavailable entity
                // (RFC 6120 §10.5.3), presence is dropped and the rest refused.
                None if stanza.name != "presence" => {
                    self.bounce(
                        &stanza,
                        StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
                            .with_text("the service is not connected"),
                    )
                    .await
                }
                None => {}
            }
            return;
        }
        if !self.serves(to.domain()) {
            self.s2s.send(stanza).await;
            return;
        }
        if to.node().is_none() {
            self.to_server(stanza, to).await;
            return;
        }
        let from = stanza.attr("from").and_then(|f| Jid::parse(f).ok());
        if let Some(from) = &from {
            // XEP-0191 §3.3: the blocked get no answer but service-unavailable.
            if from.bare() != to.bare() && self.blocking.is_blocked(&to.bare(), from).await {
                if stanza.name != "presence" {
                    self.bounce(
                        &stanza,
                        StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                    )
                    .await;
                }
                return;
            }
        }
        if stanza.name == "presence" {
            self.presence.to_account(stanza, to).await;
        } else if to.is_bare() {
            self.to_bare_jid(stanza, to).await;
        } else {
            self.to_full_jid(stanza, to).await;
        }
    }

    /// RFC 6120 §10.4: the server itself answers.
    async fn to_server(&self, stanza: Element, to: &Jid) {
        match stanza.name.as_str() {
            "iq" if to.resource().is_none() => self.handle_iq(stanza, to).await,
            "iq" => {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await
            }
            _ => {}
        }
    }

    async fn handle_iq(&self, iq: Element, to: &Jid) {
        let Some(kind) = IqKind::of(&iq) else {
            self.bounce(&iq, StanzaError::new(StanzaErrorCondition::BadRequest))
                .await;
            return;
        };
        if !matches!(kind, IqKind::Get | IqKind::Set) {
            return;
        }
        let mut payloads = iq.elements();
        let (Some(payload), None) = (payloads.next(), payloads.next()) else {
            let error = StanzaError::new(StanzaErrorCondition::BadRequest)
                .with_text("an IQ request carries exactly one child element");
            self.bounce(&iq, error).await;
            return;
        };
        let target = if to.node().is_some() {
            IqTarget::Account
        } else {
            IqTarget::Server
        };
        let from = iq.attr("from").and_then(|f| Jid::parse(f).ok());
        let follow_ups = std::sync::Mutex::new(Vec::new());
        let reply = match (self.modules.iq_handler(target, &payload.ns), &from) {
            (Some(handler), Some(from)) => {
                let request = IqRequest {
                    iq: &iq,
                    payload,
                    is_set: kind == IqKind::Set,
                    from,
                    to,
                    follow_ups: &follow_ups,
                };
                handler.handle(request).await
            }
            _ => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
        };
        match reply {
            Ok(payload) => {
                let mut result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
                if let Some(id) = iq.attr("id") {
                    result.set_attr("id", id);
                }
                result.set_attr("from", to.to_string());
                if let Some(from) = iq.attr("from") {
                    result.set_attr("to", from);
                }
                if let Some(payload) = payload {
                    result.push_child(payload);
                }
                self.deliver_reply(result).await;
                let follow_ups = std::mem::take(&mut *follow_ups.lock().expect("follow-ups"));
                for follow_up in follow_ups {
                    match follow_up {
                        FollowUp::Stanza(stanza) => self.deliver_reply(stanza).await,
                        FollowUp::CloseSessions { account, error } => {
                            for session in self.sessions.sessions_of(&account) {
                                session.close(error.clone());
                            }
                        }
                    }
                }
            }
            Err(error) => self.bounce(&iq, error).await,
        }
    }

    /// RFC 6121 §8.5.2 (and §8.5.1 for an account that does not exist).
    async fn to_bare_jid(&self, stanza: Element, to: &Jid) {
        if !self.account_exists(to).await {
            let answer = match stanza.name.as_str() {
                "iq" => true,
                "message" => !matches!(stanza.attr("type"), Some("headline" | "error")),
                _ => false,
            };
            if answer {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await;
            }
            return;
        }
        if stanza.name == "iq" {
            // RFC 6120 §10.5.4: the server answers IQs to a bare JID on the account's behalf.
            self.handle_iq(stanza, to).await;
            return;
        }
        let kind = stanza.attr("type").unwrap_or("normal").to_string();
        // Chat, normal and headline go to every available resource of non-negative
        // priority (the "all non-negative resources" choice of RFC 6121 §8.5.2.1.1).
        let recipients: Vec<SessionHandle> = self
            .sessions
            .available_sessions(to)
            .into_iter()
            .filter(|s| s.presence().priority >= 0)
            .collect();
        match kind.as_str() {
            "groupchat" => {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await
            }
            "error" => {}
            _ if !recipients.is_empty() => {
                for session in &recipients {
                    session.deliver(stanza.clone());
                }
            }
            "headline" => {}
            _ => {
                if let Err(error) = self.offline.store(to, &stanza).await {
                    self.bounce(&stanza, error).await;
                }
            }
        }
    }

    /// RFC 6121 §8.5.3.
    async fn to_full_jid(&self, stanza: Element, to: &Jid) {
        if let Some(session) = self.sessions.session(to) {
            session.deliver(stanza);
            return;
        }
        match stanza.name.as_str() {
            "message" => match stanza.attr("type").unwrap_or("normal") {
                "normal" | "chat" | "headline" => {
                    Box::pin(self.to_bare_jid(stanza, &to.bare())).await
                }
                "groupchat" => {
                    self.bounce(
                        &stanza,
                        StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                    )
                    .await
                }
                _ => {}
            },
            "iq" => {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await
            }
            _ => {}
        }
    }

    async fn account_exists(&self, jid: &Jid) -> bool {
        let Some(node) = jid.node() else {
            return false;
        };
        if !self.sessions.sessions_of(jid).is_empty() {
            return true;
        }
        match self.store.account_exists(node, jid.domain()).await {
            Ok(exists) => exists,
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                false
            }
        }
    }

    /// Send the error reply of `stanza` back to its sender.
    async fn bounce(&self, stanza: &Element, error: StanzaError) {
        if let Some(reply) = error.reply_to(stanza) {
            self.deliver_reply(reply).await;
        }
    }

    /// Replies generated by the server go straight to the full JID they answer.
    pub(crate) async fn deliver_reply(&self, reply: Element) {
        let Some(to) = reply.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        if let Some(session) = self.sessions.session(&to) {
            session.deliver(reply);
        } else if let Some(component) = self.components.connected(to.domain()) {
            component.deliver(reply);
        } else if self.s2s.is_remote(to.domain()) {
            Box::pin(self.s2s.send(reply)).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IqKind {
    Get,
    Set,
    Result,
    Error,
}

impl IqKind {
    fn of(iq: &Element) -> Option<IqKind> {
        iq.attr("id")?;
        match iq.attr("type")? {
            "get" => Some(IqKind::Get),
            "set" => Some(IqKind::Set),
            "result" => Some(IqKind::Result),
            "error" => Some(IqKind::Error),
            _ => None,
        }
    }
}
