//! The session table: every bound client session on this node, by bare JID, with
//! what the router needs to know of its presence. It knows sessions only as handles
//! with a bounded queue, never sockets; a clustered table can replace it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use starling_proto::error::{StreamError, StreamErrorCondition};
use starling_proto::Jid;
use starling_xml::Element;
use tokio::sync::mpsc;

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

#[derive(Clone)]
pub struct SessionHandle {
    pub jid: Jid,
    id: u64,
    queue: mpsc::Sender<Outbound>,
    /// Set when the queue overflowed; the session closes itself as too slow.
    overflowed: Arc<tokio::sync::Notify>,
    presence: Arc<Mutex<PresenceState>>,
}

impl SessionHandle {
    /// Queue a stanza for the client; a full queue closes the session rather than grow.
    pub fn deliver(&self, stanza: Element) {
        match self.queue.try_send(Outbound::Stanza(Box::new(stanza))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.overflowed.notify_one();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// End the session's stream with `error` once what was queued before is written.
    pub fn close(&self, error: StreamError) {
        if self
            .queue
            .try_send(Outbound::Close(Box::new(error)))
            .is_err()
        {
            self.overflowed.notify_one();
        }
    }

    pub fn presence(&self) -> PresenceState {
        self.presence.lock().expect("presence lock").clone()
    }

    pub fn update_presence<T>(&self, change: impl FnOnce(&mut PresenceState) -> T) -> T {
        change(&mut self.presence.lock().expect("presence lock"))
    }

    pub fn is_available(&self) -> bool {
        self.presence.lock().expect("presence lock").available
    }
}

/// The receiving half a connection task keeps for its registered session.
pub struct SessionInbox {
    pub handle: SessionHandle,
    pub queue: mpsc::Receiver<Outbound>,
    pub overflowed: Arc<tokio::sync::Notify>,
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
        let (queue, inbox) = mpsc::channel(self.queue_capacity);
        let overflowed = Arc::new(tokio::sync::Notify::new());
        let handle = SessionHandle {
            jid: jid.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue,
            overflowed: overflowed.clone(),
            presence: Arc::default(),
        };
        let replaced = {
            let mut sessions = self.sessions.write().expect("session table lock");
            let resources = sessions.entry(jid.bare()).or_default();
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
        SessionInbox {
            handle,
            queue: inbox,
            overflowed,
        }
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
