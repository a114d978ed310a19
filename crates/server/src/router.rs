//! The one router: every stanza from a session goes through `Router::route`, which
//! applies RFC 6120 §10 (local domain, local bare or full JID, remote domain).
//! It knows sessions only as handles with a bounded queue, never sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use starling_proto::error::{StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
use starling_proto::{ns, Jid};
use starling_store::{AccountStore, Store};
use starling_xml::Element;
use tokio::sync::mpsc;

use crate::modules::Modules;

/// What a session's connection task receives from the rest of the server.
#[derive(Debug)]
pub enum Outbound {
    Stanza(Element),
    /// End the stream with this error (e.g. `<conflict/>` when replaced).
    Close(StreamError),
}

#[derive(Clone)]
pub struct SessionHandle {
    pub jid: Jid,
    id: u64,
    queue: mpsc::Sender<Outbound>,
    /// Set when the queue overflowed; the session closes itself as too slow.
    overflowed: Arc<tokio::sync::Notify>,
}

impl SessionHandle {
    fn deliver(&self, stanza: Element) {
        match self.queue.try_send(Outbound::Stanza(stanza)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.overflowed.notify_one();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The receiving half a connection task keeps for its registered session.
pub struct SessionInbox {
    pub id: u64,
    pub queue: mpsc::Receiver<Outbound>,
    pub overflowed: Arc<tokio::sync::Notify>,
}

pub struct Router {
    sessions: RwLock<HashMap<Jid, Vec<SessionHandle>>>,
    next_id: AtomicU64,
    domains: Vec<String>,
    store: Store,
    modules: Modules,
    queue_capacity: usize,
}

impl Router {
    pub fn new(
        domains: Vec<String>,
        store: Store,
        modules: Modules,
        queue_capacity: usize,
    ) -> Self {
        Router {
            sessions: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            domains,
            store,
            modules,
            queue_capacity,
        }
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// Register a bound session. An existing session with the same full JID is
    /// told to close with `<conflict/>` (RFC 6120 §7.7.2.2: the newer one wins).
    pub fn register(&self, jid: Jid) -> SessionInbox {
        let (queue, inbox) = mpsc::channel(self.queue_capacity);
        let overflowed = Arc::new(tokio::sync::Notify::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = SessionHandle {
            jid: jid.clone(),
            id,
            queue,
            overflowed: overflowed.clone(),
        };
        let replaced = {
            let mut sessions = self.sessions.write().expect("session table lock");
            let resources = sessions.entry(jid.bare()).or_default();
            let replaced = resources
                .iter()
                .position(|s| s.jid == jid)
                .map(|index| resources.remove(index));
            resources.push(handle);
            replaced
        };
        if let Some(old) = replaced {
            let conflict = StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new session with the same resource",
            );
            if old.queue.try_send(Outbound::Close(conflict)).is_err() {
                old.overflowed.notify_one();
            }
        }
        SessionInbox {
            id,
            queue: inbox,
            overflowed,
        }
    }

    pub fn unregister(&self, jid: &Jid, id: u64) {
        let mut sessions = self.sessions.write().expect("session table lock");
        if let Some(resources) = sessions.get_mut(&jid.bare()) {
            resources.retain(|s| s.id != id);
            if resources.is_empty() {
                sessions.remove(&jid.bare());
            }
        }
    }

    fn sessions_of(&self, bare: &Jid) -> Vec<SessionHandle> {
        self.sessions
            .read()
            .expect("session table lock")
            .get(bare)
            .cloned()
            .unwrap_or_default()
    }

    pub fn session_count(&self) -> usize {
        self.sessions
            .read()
            .expect("session table lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Route a stanza whose `from` the session already stamped and validated.
    pub async fn route(&self, stanza: Element) {
        let to = match stanza.attr("to") {
            None => None,
            Some(to) => match Jid::parse(to) {
                Ok(jid) => Some(jid),
                Err(e) => {
                    let error = StanzaError::new(StanzaErrorCondition::JidMalformed)
                        .with_text(format!("invalid 'to' address: {e}"));
                    self.bounce(&stanza, error).await;
                    return;
                }
            },
        };
        let from = stanza.attr("from").and_then(|f| Jid::parse(f).ok());
        // RFC 6120 §10.3: no 'to' means the sender's own account.
        let Some(to) = to.or_else(|| from.as_ref().map(Jid::bare)) else {
            return;
        };
        if !self.serves(to.domain()) {
            let error = StanzaError::new(StanzaErrorCondition::RemoteServerNotFound)
                .with_text("server-to-server connections are not enabled");
            self.bounce(&stanza, error).await;
            return;
        }
        if to.node().is_none() {
            self.to_server(stanza, &to).await;
        } else if to.is_bare() {
            self.to_bare_jid(stanza, &to).await;
        } else {
            self.to_full_jid(stanza, &to).await;
        }
    }

    /// RFC 6120 §10.4.1 / §8.5: the server itself (or a full JID at the domain,
    /// which names no session here) answers.
    async fn to_server(&self, stanza: Element, to: &Jid) {
        match stanza.name.as_str() {
            "iq" => self.handle_iq(stanza, to).await,
            "message" if to.resource().is_none() => {}
            "presence" => {}
            _ => {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await
            }
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
        let reply = match self.modules.iq_handler(&payload.ns) {
            Some(handler) => handler.handle(&iq, to).await,
            None => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
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
            }
            Err(error) => self.bounce(&iq, error).await,
        }
    }

    async fn to_bare_jid(&self, stanza: Element, to: &Jid) {
        if stanza.name == "iq" {
            // RFC 6120 §10.5.4: the server answers IQs to a bare JID on the account's behalf.
            if self.account_exists(to).await {
                self.handle_iq(stanza, to).await;
            } else {
                self.bounce(
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await;
            }
            return;
        }
        let sessions = self.sessions_of(to);
        if !sessions.is_empty() {
            for session in &sessions {
                session.deliver(stanza.clone());
            }
            return;
        }
        if stanza.name == "message" {
            match stanza.attr("type").unwrap_or("normal") {
                "headline" | "error" => {}
                _ => {
                    let error = StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
                        .with_text("the recipient is not online");
                    self.bounce(&stanza, error).await;
                }
            }
        }
    }

    async fn to_full_jid(&self, stanza: Element, to: &Jid) {
        let session = self
            .sessions_of(&to.bare())
            .into_iter()
            .find(|s| &s.jid == to);
        if let Some(session) = session {
            session.deliver(stanza);
            return;
        }
        // RFC 6120 §8.5.3.2: no such resource.
        match stanza.name.as_str() {
            "message" => match stanza.attr("type").unwrap_or("normal") {
                "normal" | "chat" => Box::pin(self.to_bare_jid(stanza, &to.bare())).await,
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
    async fn deliver_reply(&self, reply: Element) {
        let Some(to) = reply.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        if let Some(session) = self
            .sessions_of(&to.bare())
            .into_iter()
            .find(|s| s.jid == to)
        {
            session.deliver(reply);
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
