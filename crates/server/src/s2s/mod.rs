//! Federation: the table of outgoing server connections, one per domain pair,
//! which stanzas for remote domains are queued on while it is being set up, and
//! the listeners other servers connect to. Protocol decisions live in
//! `starling_proto::s2s`; this is the tokio shell around them.

mod incoming;
mod outgoing;
pub mod resolve;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::s2s::accept::AcceptConfig;
use starling_proto::Jid;
use starling_xml::Element;
use tokio::sync::mpsc;

use crate::config::{S2sAuthentication, S2sSection};
use crate::Shared;

pub use incoming::accept_loop;

/// A remote domain as seen from one of ours.
type DomainPair = (String, String);

struct OutgoingHandle {
    id: u64,
    queue: mpsc::Sender<Element>,
}

pub struct S2s {
    settings: S2sSection,
    /// Domains answered here (served and component domains): never remote.
    local_domains: Vec<String>,
    accept_config: Arc<AcceptConfig>,
    resolver: Option<resolve::Resolver>,
    outgoing: Mutex<HashMap<DomainPair, OutgoingHandle>>,
    next_id: AtomicU64,
    /// Set once the server is assembled; connection tasks need all of it.
    shared: OnceLock<Weak<Shared>>,
}

impl S2s {
    pub fn new(settings: S2sSection, local_domains: Vec<String>, secret: Vec<u8>) -> S2s {
        let resolver = match (settings.enabled, settings.nameserver) {
            (false, _) => None,
            (true, Some(nameserver)) => Some(resolve::Resolver::with_nameserver(nameserver)),
            (true, None) => match resolve::Resolver::from_system() {
                Ok(resolver) => Some(resolver),
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver: only [s2s.hosts] domains are reachable");
                    None
                }
            },
        };
        let accept_config = Arc::new(AcceptConfig {
            domains: local_domains.clone(),
            secret,
            tls_required: settings.tls_required,
            allow_dialback: settings.authentication == S2sAuthentication::Dialback,
        });
        S2s {
            settings,
            local_domains,
            accept_config,
            resolver,
            outgoing: Mutex::default(),
            next_id: AtomicU64::new(0),
            shared: OnceLock::new(),
        }
    }

    pub(crate) fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get().and_then(Weak::upgrade)
    }

    /// Whether stanzas for `domain` leave this server.
    pub fn is_remote(&self, domain: &str) -> bool {
        !self.local_domains.iter().any(|local| local == domain)
    }

    /// Queue a stanza for its remote domain, opening the connection for its domain
    /// pair when there is none.
    pub async fn send(self: &Arc<Self>, stanza: Element) {
        if !self.settings.enabled {
            let error = StanzaError::new(StanzaErrorCondition::RemoteServerNotFound)
                .with_text("server-to-server connections are not enabled");
            self.bounce(&stanza, error).await;
            return;
        }
        let domain_of = |attr| {
            stanza
                .attr(attr)
                .and_then(|jid| Jid::parse(jid).ok())
                .map(|jid| jid.domain().to_string())
        };
        let (Some(local), Some(remote)) = (domain_of("from"), domain_of("to")) else {
            return;
        };
        if self.is_remote(&local) {
            tracing::warn!(%local, %remote, "not relaying a stanza between two remote domains");
            return;
        }
        let pair = (local, remote);
        let mut stanza = stanza;
        let full = {
            let mut table = self.outgoing.lock().expect("s2s table lock");
            loop {
                let handle = match table.get(&pair) {
                    Some(handle) => handle,
                    None => {
                        let handle = self.open(&pair);
                        table.entry(pair.clone()).or_insert(handle)
                    }
                };
                match handle.queue.try_send(stanza) {
                    Ok(()) => break None,
                    Err(mpsc::error::TrySendError::Full(back)) => break Some(back),
                    // The connection ended since; a new one takes the stanza.
                    Err(mpsc::error::TrySendError::Closed(back)) => {
                        table.remove(&pair);
                        stanza = back;
                    }
                }
            }
        };
        if let Some(stanza) = full {
            let error = StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                .with_text("too many stanzas waiting for this server");
            self.bounce(&stanza, error).await;
        }
    }

    /// Start the connection task of a domain pair; its queue takes stanzas at once.
    fn open(self: &Arc<Self>, pair: &DomainPair) -> OutgoingHandle {
        let (queue, inbox) = mpsc::channel(self.settings.outbound_queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(outgoing::run(self.clone(), pair.clone(), id, inbox));
        OutgoingHandle { id, queue }
    }

    /// The connection `id` of `pair` ended: later stanzas open a new one.
    fn forget(&self, pair: &DomainPair, id: u64) {
        let mut table = self.outgoing.lock().expect("s2s table lock");
        if table.get(pair).is_some_and(|handle| handle.id == id) {
            table.remove(pair);
        }
    }

    /// Return a stanza to its local sender with `error`; presence is dropped.
    async fn bounce(&self, stanza: &Element, error: StanzaError) {
        if stanza.name == "presence" {
            return;
        }
        let (Some(reply), Some(shared)) = (error.reply_to(stanza), self.shared()) else {
            return;
        };
        shared.router.deliver_reply(reply).await;
    }
}
