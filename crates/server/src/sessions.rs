//! The session table: every bound client session on this node, by bare JID, with
//! what the router needs to know of its presence. It knows sessions only as handles
//! with a bounded queue, never sockets; a clustered table can replace it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use starling_proto::error::{StreamError, StreamErrorCondition};
use starling_proto::Jid;
use starling_xml::Element;
use tokio::sync::Notify;

/// What a session's connection task receives from the rest of the server.
#[derive(Debug)]
/// Boxed so that a queue, which allocates its slots in blocks, stays small for
/// the many sessions that are idle.
pub enum Outbound {
    Stanza(Box<Element>),
    /// End the stream with this error (e.g. `<conflict/>` when replaced).
    Close(Box<StreamError>),
}

/// What the router knows of one session's presence (RFC 6121 §4).
#[derive(Debug, Default, Clone)]
pub struct PresenceState {
    /// Initial presence was sent and no unavailable since.
    pub available: bool,
    pub priority: i8,
    /// The last available presence broadcast, answered to probes.
    pub last: Option<Element>,
    /// Entities the session sent directed available presence to (RFC 6121 §4.6),
    /// told when it goes unavailable.
    pub directed: HashSet<Jid>,
    /// The session asked for the roster, so it gets roster pushes (RFC 6121 §2.1.6).
    pub interested: bool,
    /// The session asked for the blocklist, so it gets blocklist pushes (XEP-0191 §3.2).
    pub blocklist_interested: bool,
}

/// What a session's handles and its connection share, in one allocation. The
/// queue is a plain deque rather than a channel: a channel holds a block of slots
/// from the start, and most sessions are idle most of the time.
struct SessionShared {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    /// Wakes the connection: something was queued, or the queue overflowed.
    wake: Notify,
    /// Set when the queue overflowed; the session closes itself as too slow.
    overflowed: AtomicBool,
    presence: Mutex<PresenceState>,
}

#[derive(Clone)]
pub struct SessionHandle {
    pub jid: Jid,
    id: u64,
    shared: Arc<SessionShared>,
}

impl SessionHandle {
    /// Queue a stanza for the client; a full queue closes the session rather than grow.
    pub fn deliver(&self, stanza: Element) {
        if !self.push(Outbound::Stanza(Box::new(stanza))) {
            tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
        }
    }

    /// End the session's stream with `error` once what was queued before is written.
    pub fn close(&self, error: StreamError) {
        self.push(Outbound::Close(Box::new(error)));
    }

    /// False when the queue was full: the session is then marked as overflowed.
    fn push(&self, outbound: Outbound) -> bool {
        let shared = &self.shared;
        let queued = {
            let mut queue = shared.queue.lock().expect("session queue lock");
            let room = queue.len() < shared.capacity;
            if room {
                queue.push_back(outbound);
            }
            room
        };
        if !queued {
            shared.overflowed.store(true, Ordering::Release);
        }
        shared.wake.notify_one();
        queued
    }

    pub fn presence(&self) -> PresenceState {
        self.shared.presence.lock().expect("presence lock").clone()
    }

    pub fn update_presence<T>(&self, change: impl FnOnce(&mut PresenceState) -> T) -> T {
        change(&mut self.shared.presence.lock().expect("presence lock"))
    }

    pub fn is_available(&self) -> bool {
        self.shared
            .presence
            .lock()
            .expect("presence lock")
            .available
    }
}

/// The receiving end a connection task keeps for its registered session.
pub struct SessionInbox {
    pub handle: SessionHandle,
}

impl SessionInbox {
    /// The next queued item, waiting for one; `None` once the queue overflowed.
    pub async fn recv(&self) -> Option<Outbound> {
        loop {
            if self.overflowed() {
                return None;
            }
            if let Some(outbound) = self.try_recv() {
                return Some(outbound);
            }
            // A push between the check above and this wait leaves a permit behind.
            self.handle.shared.wake.notified().await;
        }
    }

    /// The next queued item, if there is one.
    pub fn try_recv(&self) -> Option<Outbound> {
        self.handle
            .shared
            .queue
            .lock()
            .expect("session queue lock")
            .pop_front()
    }

    pub fn overflowed(&self) -> bool {
        self.handle.shared.overflowed.load(Ordering::Acquire)
    }

    /// Frees the queue's storage while it is empty, for a session gone quiet.
    pub fn release_buffers(&self) {
        let mut queue = self.handle.shared.queue.lock().expect("session queue lock");
        if queue.is_empty() {
            *queue = VecDeque::new();
        }
    }
}

pub struct SessionTable {
    sessions: RwLock<HashMap<Jid, Vec<SessionHandle>>>,
    next_id: AtomicU64,
    queue_capacity: usize,
}

impl SessionTable {
    pub fn new(queue_capacity: usize) -> Self {
        SessionTable {
            sessions: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue_capacity,
        }
    }

    /// Register a bound session. An existing session with the same full JID is
    /// told to close with `<conflict/>` (RFC 6120 §7.7.2.2: the newer one wins).
    pub fn register(&self, jid: Jid) -> SessionInbox {
        let handle = SessionHandle {
            jid: jid.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(SessionShared {
                queue: Mutex::new(VecDeque::new()),
                capacity: self.queue_capacity,
                wake: Notify::new(),
                overflowed: AtomicBool::new(false),
                presence: Mutex::default(),
            }),
        };
        let replaced = {
            let mut sessions = self.sessions.write().expect("session table lock");
            // Most accounts have one session: room for exactly one to start with.
            let resources = sessions
                .entry(jid.bare())
                .or_insert_with(|| Vec::with_capacity(1));
            let replaced = resources
                .iter()
                .position(|s| s.jid == jid)
                .map(|index| resources.remove(index));
            resources.push(handle.clone());
            replaced
        };
        if let Some(old) = replaced {
            let conflict = StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new session with the same resource",
            );
            old.close(conflict);
        }
        SessionInbox { handle }
    }

    /// Remove a session; false when it was already replaced by a newer one.
    pub fn unregister(&self, handle: &SessionHandle) -> bool {
        let mut sessions = self.sessions.write().expect("session table lock");
        let bare = handle.jid.bare();
        let Some(resources) = sessions.get_mut(&bare) else {
            return false;
        };
        let before = resources.len();
        resources.retain(|s| s.id != handle.id);
        let removed = resources.len() != before;
        if resources.is_empty() {
            sessions.remove(&bare);
        }
        removed
    }

    /// All sessions of an account.
    pub fn sessions_of(&self, bare: &Jid) -> Vec<SessionHandle> {
        self.sessions
            .read()
            .expect("session table lock")
            .get(bare)
            .cloned()
            .unwrap_or_default()
    }

    pub fn session(&self, full: &Jid) -> Option<SessionHandle> {
        self.sessions
            .read()
            .expect("session table lock")
            .get(&full.bare())
            .and_then(|resources| resources.iter().find(|s| &s.jid == full).cloned())
    }

    /// Sessions that sent available presence (RFC 6121 §1.5 "available resources").
    pub fn available_sessions(&self, bare: &Jid) -> Vec<SessionHandle> {
        let mut sessions = self.sessions_of(bare);
        sessions.retain(SessionHandle::is_available);
        sessions
    }

    pub fn has_available_session(&self, bare: &Jid) -> bool {
        !self.available_sessions(bare).is_empty()
    }

    pub fn session_count(&self) -> usize {
        self.sessions
            .read()
            .expect("session table lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Element {
        Element::new("message", starling_proto::ns::CLIENT).with_attr("id", n.to_string())
    }

    fn id(outbound: Option<Outbound>) -> String {
        match outbound {
            Some(Outbound::Stanza(stanza)) => stanza.attr("id").expect("id").to_owned(),
            _ => panic!("expected a stanza"),
        }
    }

    #[tokio::test]
    async fn queued_stanzas_arrive_in_order_and_a_waiting_receiver_is_woken() {
        let table = Arc::new(SessionTable::new(8));
        let inbox = table.register(Jid::parse("juliet@capulet.lit/balcony").expect("jid"));
        let handle = inbox.handle.clone();
        let waiting = tokio::spawn(async move {
            let first = id(inbox.recv().await);
            let second = id(inbox.recv().await);
            (first, second)
        });
        tokio::task::yield_now().await;
        handle.deliver(message(1));
        handle.deliver(message(2));
        let received = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(received, ("1".to_owned(), "2".to_owned()));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_more_and_ends_the_session() {
        let table = SessionTable::new(2);
        let inbox = table.register(Jid::parse("juliet@capulet.lit/balcony").expect("jid"));
        for n in 0..3 {
            inbox.handle.deliver(message(n));
        }
        assert!(inbox.overflowed());
        assert!(
            inbox.recv().await.is_none(),
            "an overflowed session stops receiving"
        );
        assert_eq!(id(inbox.try_recv()), "0");
        assert_eq!(id(inbox.try_recv()), "1");
        assert!(
            inbox.try_recv().is_none(),
            "the third stanza was not queued"
        );
    }

    #[test]
    fn releasing_buffers_keeps_what_is_queued() {
        let table = SessionTable::new(8);
        let inbox = table.register(Jid::parse("juliet@capulet.lit/balcony").expect("jid"));
        inbox.handle.deliver(message(1));
        inbox.release_buffers();
        assert_eq!(id(inbox.try_recv()), "1");
        inbox.release_buffers();
        assert!(inbox.try_recv().is_none());
    }
}
