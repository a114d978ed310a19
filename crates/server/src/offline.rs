//! XEP-0160 offline messages: a chat or normal message for an account with no
//! available resource is stored with a XEP-0203 delay stamp, and delivered in
//! order when a resource of non-negative priority becomes available.

use std::hash::{Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use starling_proto::datetime::format_datetime;
use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::{ns, Jid};
use starling_store::{OfflineOutcome, OfflineStore, Store};
use starling_xml::Element;

pub const DELAY_NS: &str = "urn:xmpp:delay";

/// Deliveries of one account are serialized so two resources coming online at
/// once do not both replay the same messages; a few stripes bound the locks.
const DELIVERY_STRIPES: usize = 64;

pub struct Offline {
    store: Store,
    limit: u64,
    delivery_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Offline {
    pub fn new(store: Store, limit: u64) -> Self {
        Offline {
            store,
            limit,
            delivery_locks: (0..DELIVERY_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Store `message` for `to` (a local account); the error to bounce when it cannot be.
    pub async fn store(&self, to: &Jid, message: &Element) -> Result<(), StanzaError> {
        let Some(user) = to.node() else {
            return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        };
        let now = SystemTime::now();
        let mut stamped = message.clone();
        stamped.push_child(
            Element::new("delay", DELAY_NS)
                .with_attr("from", to.domain())
                .with_attr("stamp", format_datetime(now)),
        );
        let xml = stamped.to_xml(ns::CLIENT);
        let outcome = self
            .store
            .store_offline(user, to.domain(), &xml, unix_millis(now), self.limit)
            .await;
        match outcome {
            Ok(OfflineOutcome::Stored) => Ok(()),
            Ok(OfflineOutcome::QueueFull) => {
                Err(StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                    .with_text("the recipient's offline message queue is full"))
            }
            Err(e) => {
                tracing::error!(error = %e, "storing an offline message failed");
                Err(StanzaError::new(StanzaErrorCondition::InternalServerError))
            }
        }
    }

    /// The stored messages of `account` in arrival order, held for this delivery
    /// until `OfflineBatch::delivered`; dropping the batch keeps them stored.
    pub async fn pending(&self, account: &Jid) -> Option<OfflineBatch<'_>> {
        let user = account.node()?;
        let serialized = self.delivery_locks[stripe(account)].lock().await;
        let messages = match self.store.offline_messages(user, account.domain()).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::error!(error = %e, "reading offline messages failed");
                return None;
            }
        };
        let last_id = messages.last()?.id;
        let elements = messages
            .iter()
            .filter_map(|m| match Element::from_xml(&m.stanza_xml, ns::CLIENT) {
                Ok(element) => Some(element),
                Err(e) => {
                    tracing::error!(id = m.id, error = %e, "skipping an unreadable offline message");
                    None
                }
            })
            .collect();
        Some(OfflineBatch {
            offline: self,
            account: account.clone(),
            last_id,
            messages: elements,
            _serialized: serialized,
        })
    }
}

/// Offline messages being delivered; deleted only once written to the client.
pub struct OfflineBatch<'a> {
    offline: &'a Offline,
    account: Jid,
    last_id: i64,
    pub messages: Vec<Element>,
    _serialized: tokio::sync::MutexGuard<'a, ()>,
}

impl OfflineBatch<'_> {
    pub async fn delivered(self) {
        let user = self.account.node().unwrap_or_default();
        if let Err(e) = self
            .offline
            .store
            .delete_offline_through(user, self.account.domain(), self.last_id)
            .await
        {
            tracing::error!(error = %e, "deleting delivered offline messages failed");
        }
    }
}

fn stripe(account: &Jid) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    account.hash(&mut hasher);
    (hasher.finish() % DELIVERY_STRIPES as u64) as usize
}

pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
