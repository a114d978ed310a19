//! Modules register handlers with the core; the router dispatches to them.
//! A feature (a XEP) is one module file that registers its IQ namespaces and its
//! service-discovery features here; nothing else in the tree changes.

mod disco;
mod last;
mod ping;
mod private_xml;
pub(crate) mod register;
mod time;
mod vcard;
mod version;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use starling_proto::error::{StanzaError, StreamError};
use starling_proto::Jid;
use starling_store::Store;
use starling_xml::Element;

use crate::blocking::{Blocking, BlockingHandler, BLOCKING_NS};
use crate::components::ComponentTable;
use crate::config::Config;
use crate::presence::{Presence, RosterHandler};
use crate::sessions::SessionTable;

/// The result payload (None for an empty result) or the stanza error.
pub type IqReply = Result<Option<Element>, StanzaError>;
pub type IqFuture<'a> = Pin<Box<dyn Future<Output = IqReply> + Send + 'a>>;

/// Who an IQ is addressed to: the server (a served domain) or an account's bare JID,
/// which the server answers on the account's behalf (RFC 6120 §10.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqTarget {
    Server,
    Account,
}

/// One IQ get or set the router hands to a module.
pub struct IqRequest<'a> {
    pub iq: &'a Element,
    /// The single child element.
    pub payload: &'a Element,
    pub is_set: bool,
    /// The sender, stamped and validated by its session.
    pub from: &'a Jid,
    /// The addressed server domain or account bare JID.
    pub to: &'a Jid,
    /// What must follow the IQ result, in order.
    pub follow_ups: &'a Mutex<Vec<FollowUp>>,
}

/// An effect that must come after an IQ result reaches the requester.
#[derive(Debug)]
pub enum FollowUp {
    /// A stanza for the requester, such as a roster push of an incremental roster
    /// sync (RFC 6121 §2.6.3).
    Stanza(Element),
    /// Close every session of an account, such as one just cancelled (XEP-0077 §3.2).
    CloseSessions { account: Jid, error: StreamError },
}

pub trait IqHandler: Send + Sync {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a>;
}

/// What modules are built from.
pub struct ModuleContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub sessions: Arc<SessionTable>,
    pub components: Arc<ComponentTable>,
    pub presence: Arc<Presence>,
    pub blocking: Arc<Blocking>,
    pub started_at: SystemTime,
}

/// The handlers and features modules registered.
#[derive(Default)]
pub struct Modules {
    iq_handlers: HashMap<(IqTarget, String), Arc<dyn IqHandler>>,
    server_features: Vec<String>,
    account_features: Vec<String>,
}

impl Modules {
    /// The modules every server runs.
    pub fn standard(context: &ModuleContext) -> Arc<Modules> {
        let mut modules = Modules::default();
        ping::register(&mut modules);
        version::register(&mut modules);
        time::register(&mut modules);
        last::register(&mut modules, context);
        vcard::register(&mut modules, context);
        private_xml::register(&mut modules, context);
        register::register(&mut modules, context);
        register_im(&mut modules, context);
        // Disco reads the registry itself, so it is built last, from what the others registered.
        disco::register(&mut modules, context);
        Arc::new(modules)
    }

    /// Handle IQs with a payload in `namespace` sent to `target`; `feature` is
    /// advertised in service discovery for that target.
    pub fn register_iq(&mut self, target: IqTarget, namespace: &str, handler: Arc<dyn IqHandler>) {
        self.iq_handlers
            .insert((target, namespace.to_string()), handler);
    }

    pub fn add_feature(&mut self, target: IqTarget, feature: &str) {
        let features = match target {
            IqTarget::Server => &mut self.server_features,
            IqTarget::Account => &mut self.account_features,
        };
        if !features.iter().any(|f| f == feature) {
            features.push(feature.to_string());
        }
    }

    pub fn features(&self, target: IqTarget) -> &[String] {
        match target {
            IqTarget::Server => &self.server_features,
            IqTarget::Account => &self.account_features,
        }
    }

    pub fn iq_handler(&self, target: IqTarget, namespace: &str) -> Option<Arc<dyn IqHandler>> {
        self.iq_handlers
            .get(&(target, namespace.to_string()))
            .cloned()
    }
}

/// The RFC 6121 roster and XEP-0191 blocking, whose state the router also consults.
fn register_im(modules: &mut Modules, context: &ModuleContext) {
    modules.register_iq(
        IqTarget::Account,
        starling_proto::roster::ROSTER_NS,
        Arc::new(RosterHandler(context.presence.clone())),
    );
    modules.register_iq(
        IqTarget::Account,
        BLOCKING_NS,
        Arc::new(BlockingHandler {
            blocking: context.blocking.clone(),
            presence: context.presence.clone(),
            sessions: context.sessions.clone(),
            store: context.store.clone(),
        }),
    );
    modules.add_feature(IqTarget::Account, BLOCKING_NS);
    modules.add_feature(IqTarget::Server, BLOCKING_NS);
}
