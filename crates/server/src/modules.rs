//! Modules register handlers with the core; the router dispatches to them.
//! A feature (a XEP) is one module that registers its IQ namespaces here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use starling_proto::error::StanzaError;
use starling_proto::{ns, Jid};
use starling_xml::Element;

/// The result payload (None for an empty result) or the stanza error.
pub type IqReply = Result<Option<Element>, StanzaError>;
pub type IqFuture<'a> = Pin<Box<dyn Future<Output = IqReply> + Send + 'a>>;

pub trait IqHandler: Send + Sync {
    /// Answer a get or set IQ addressed to `to` (the server or an account's bare JID).
    fn handle<'a>(&'a self, iq: &'a Element, to: &'a Jid) -> IqFuture<'a>;
}

#[derive(Default, Clone)]
pub struct Modules {
    iq_handlers: HashMap<String, Arc<dyn IqHandler>>,
}

impl Modules {
    /// The modules every server runs.
    pub fn standard() -> Modules {
        let mut modules = Modules::default();
        modules.register_iq(ns::PING, Arc::new(Ping));
        modules
    }

    pub fn register_iq(&mut self, namespace: &str, handler: Arc<dyn IqHandler>) {
        self.iq_handlers.insert(namespace.to_string(), handler);
    }

    pub fn iq_handler(&self, namespace: &str) -> Option<Arc<dyn IqHandler>> {
        self.iq_handlers.get(namespace).cloned()
    }
}

/// XEP-0199: a ping to the server or an account is answered with an empty result.
struct Ping;

impl IqHandler for Ping {
    fn handle<'a>(&'a self, iq: &'a Element, _to: &'a Jid) -> IqFuture<'a> {
        let is_get = iq.attr("type") == Some("get");
        Box::pin(async move {
            if is_get {
                Ok(None)
            } else {
                Err(StanzaError::new(
                    starling_proto::error::StanzaErrorCondition::BadRequest,
                ))
            }
        })
    }
}
