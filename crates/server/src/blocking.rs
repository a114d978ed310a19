//! XEP-0191 blocking command: the blocklist IQ, pushes to interested resources,
//! presence side effects, and the cached check the router applies to every
//! stanza between a local account and anyone else.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::{ns, Jid};
use starling_store::{BlocklistStore, RosterStore, Store, Subscription};
use starling_xml::Element;

use crate::modules::{IqFuture, IqHandler, IqRequest};
use crate::presence::Presence;
use crate::sessions::SessionTable;

pub const BLOCKING_NS: &str = "urn:xmpp:blocking";
pub const BLOCKING_ERRORS_NS: &str = "urn:xmpp:blocking:errors";

pub struct Blocking {
    store: Store,
    /// Blocklists of accounts looked up so far, replaced on every change.
    cache: RwLock<HashMap<Jid, Arc<Vec<Jid>>>>,
}

impl Blocking {
    pub fn new(store: Store) -> Self {
        Blocking {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Whether `owner` (a local bare JID) blocks `other`: an item matches the full
    /// JID, the bare JID, the domain, or the domain with the resource (XEP-0191 §3.3).
    pub async fn is_blocked(&self, owner: &Jid, other: &Jid) -> bool {
        let list = self.list(owner).await;
        list.iter().any(|item| blocks(item, other))
    }

    async fn list(&self, owner: &Jid) -> Arc<Vec<Jid>> {
        if let Some(list) = self.cache.read().expect("blocklist cache").get(owner) {
            return list.clone();
        }
        let Some(node) = owner.node() else {
            return Arc::default();
        };
        let list: Vec<Jid> = match self.store.blocklist(node, owner.domain()).await {
            Ok(jids) => jids.iter().filter_map(|j| Jid::parse(j).ok()).collect(),
            Err(e) => {
                // Failing open would deliver what the user blocked; failing closed only delays.
                tracing::error!(error = %e, "reading a blocklist failed");
                return Arc::default();
            }
        };
        let list = Arc::new(list);
        self.cache
            .write()
            .expect("blocklist cache")
            .insert(owner.clone(), list.clone());
        list
    }

    fn forget(&self, owner: &Jid) {
        self.cache.write().expect("blocklist cache").remove(owner);
    }

    /// The error for a stanza a user sends to someone they block (XEP-0191 §3.4).
    pub fn blocked_error() -> StanzaError {
        StanzaError::new(StanzaErrorCondition::NotAcceptable)
    }
}

fn blocks(item: &Jid, other: &Jid) -> bool {
    if item == other {
        return true;
    }
    match (item.node(), item.resource()) {
        (Some(_), None) => *item == other.bare(),
        (None, None) => item.domain() == other.domain(),
        (None, Some(resource)) => {
            item.domain() == other.domain()
                && other.node().is_none()
                && other.resource() == Some(resource)
        }
        (Some(_), Some(_)) => false,
    }
}

/// Adds the XEP-0191 `<blocked/>` application condition to an error reply.
pub fn mark_blocked(mut reply: Element) -> Element {
    if let Some(error) = reply.child_mut("error", ns::CLIENT) {
        error.push_child(Element::new("blocked", BLOCKING_ERRORS_NS));
    }
    reply
}

pub struct BlockingHandler {
    pub blocking: Arc<Blocking>,
    pub presence: Arc<Presence>,
    pub sessions: Arc<SessionTable>,
    pub store: Store,
}

impl IqHandler for BlockingHandler {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(self.handle_request(request))
    }
}

impl BlockingHandler {
    async fn handle_request(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        if request.from.bare() != *user {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let node = user.node().unwrap_or_default();
        let payload = request.payload;
        match (request.is_set, payload.name.as_str()) {
            (false, "blocklist") => {
                if let Some(session) = self.sessions.session(request.from) {
                    session.update_presence(|state| state.blocklist_interested = true);
                }
                let jids = self
                    .store
                    .blocklist(node, user.domain())
                    .await
                    .map_err(internal)?;
                let mut list = Element::new("blocklist", BLOCKING_NS);
                for jid in jids {
                    list.push_child(Element::new("item", BLOCKING_NS).with_attr("jid", jid));
                }
                Ok(Some(list))
            }
            (true, "block") => {
                let jids = item_jids(payload)?;
                if jids.is_empty() {
                    return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
                        .with_text("block needs at least one item"));
                }
                let added = self
                    .store
                    .block(node, user.domain(), &jids)
                    .await
                    .map_err(internal)?;
                self.blocking.forget(user);
                for jid in &added {
                    if let Ok(contact) = Jid::parse(jid) {
                        if self.shares_presence_with(user, &contact).await {
                            self.presence
                                .send_current_presence(user, &contact, false)
                                .await;
                        }
                    }
                }
                self.push(user, "block", &added);
                Ok(None)
            }
            (true, "unblock") => {
                let jids = item_jids(payload)?;
                let removed = if jids.is_empty() {
                    self.store.unblock_all(node, user.domain()).await
                } else {
                    self.store.unblock(node, user.domain(), &jids).await
                }
                .map_err(internal)?;
                self.blocking.forget(user);
                for jid in &removed {
                    if let Ok(contact) = Jid::parse(jid) {
                        if self.shares_presence_with(user, &contact).await {
                            self.presence
                                .send_current_presence(user, &contact, true)
                                .await;
                        }
                    }
                }
                self.push(user, "unblock", &removed);
                Ok(None)
            }
            _ => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
    }

    async fn shares_presence_with(&self, user: &Jid, contact: &Jid) -> bool {
        let Some(node) = user.node() else {
            return false;
        };
        matches!(
            self.store.roster_item(node, user.domain(), contact.bare().as_str()).await,
            Ok(Some(item)) if matches!(item.subscription, Subscription::From | Subscription::Both)
        )
    }

    /// XEP-0191 §3.3/§3.4: every resource that asked for the list hears of changes.
    fn push(&self, user: &Jid, kind: &str, jids: &[String]) {
        if jids.is_empty() {
            return;
        }
        let mut change = Element::new(kind, BLOCKING_NS);
        for jid in jids {
            change.push_child(Element::new("item", BLOCKING_NS).with_attr("jid", jid.clone()));
        }
        for session in self.sessions.sessions_of(user) {
            if session.presence().blocklist_interested {
                session.deliver(
                    Element::new("iq", ns::CLIENT)
                        .with_attr("type", "set")
                        .with_attr("id", format!("block-push-{kind}"))
                        .with_attr("to", session.jid.to_string())
                        .with_child(change.clone()),
                );
            }
        }
    }
}

fn item_jids(payload: &Element) -> Result<Vec<String>, StanzaError> {
    payload
        .elements()
        .filter(|e| e.is("item", BLOCKING_NS))
        .map(|item| {
            let jid = item
                .attr("jid")
                .ok_or_else(|| StanzaError::new(StanzaErrorCondition::BadRequest))?;
            Jid::parse(jid)
                .map(|jid| jid.to_string())
                .map_err(|_| StanzaError::new(StanzaErrorCondition::JidMalformed))
        })
        .collect()
}

fn internal(e: starling_store::StoreError) -> StanzaError {
    tracing::error!(error = %e, "blocklist storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).expect("valid JID")
    }

    #[test]
    fn bare_item_blocks_every_resource_and_nothing_else() {
        let item = jid("romeo@example.net");
        assert!(blocks(&item, &jid("romeo@example.net")));
        assert!(blocks(&item, &jid("romeo@example.net/orchard")));
        assert!(!blocks(&item, &jid("benvolio@example.net")));
        assert!(!blocks(&item, &jid("example.net")));
    }

    #[test]
    fn domain_item_blocks_the_whole_domain() {
        let item = jid("example.net");
        assert!(blocks(&item, &jid("romeo@example.net/orchard")));
        assert!(blocks(&item, &jid("example.net")));
        assert!(!blocks(&item, &jid("romeo@example.org")));
    }

    #[test]
    fn full_item_blocks_only_that_resource() {
        let item = jid("romeo@example.net/orchard");
        assert!(blocks(&item, &jid("romeo@example.net/orchard")));
        assert!(!blocks(&item, &jid("romeo@example.net/garden")));
        assert!(!blocks(&item, &jid("romeo@example.net")));
    }
}
