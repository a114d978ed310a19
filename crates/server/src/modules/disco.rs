//! XEP-0030 service discovery: the server's and accounts' identities and the
//! features every other module registered.

use std::sync::Arc;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use crate::components::ComponentTable;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, ModuleContext, Modules};

pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub fn register(modules: &mut Modules, context: &ModuleContext) {
    for target in [IqTarget::Server, IqTarget::Account] {
        modules.add_feature(target, DISCO_INFO);
        modules.add_feature(target, DISCO_ITEMS);
    }
    for target in [IqTarget::Server, IqTarget::Account] {
        let (category, kind) = match target {
            IqTarget::Server => ("server", "im"),
            IqTarget::Account => ("account", "registered"),
        };
        let mut features = modules.features(target).to_vec();
        features.sort();
        let info = Arc::new(DiscoInfo {
            category,
            kind,
            features,
        });
        modules.register_iq(target, DISCO_INFO, info);
        // The server lists the connected components (XEP-0114 services); accounts list nothing.
        let components = (target == IqTarget::Server).then(|| context.components.clone());
        modules.register_iq(target, DISCO_ITEMS, Arc::new(DiscoItems { components }));
    }
}

struct DiscoInfo {
    category: &'static str,
    kind: &'static str,
    features: Vec<String>,
}

impl IqHandler for DiscoInfo {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            if request.is_set {
                return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
            }
            // Nodes are not offered yet, so any node is unknown.
            if request.payload.attr("node").is_some() {
                return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
            }
            let mut query = Element::new("query", DISCO_INFO).with_child(
                Element::new("identity", DISCO_INFO)
                    .with_attr("category", self.category)
                    .with_attr("type", self.kind)
                    .with_attr("name", "Starling"),
            );
            for feature in &self.features {
                query.push_child(
                    Element::new("feature", DISCO_INFO).with_attr("var", feature.clone()),
                );
            }
            Ok(Some(query))
        })
    }
}

struct DiscoItems {
    components: Option<Arc<ComponentTable>>,
}

impl IqHandler for DiscoItems {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            if request.is_set {
                return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
            }
            if request.payload.attr("node").is_some() {
                return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
            }
            let mut query = Element::new("query", DISCO_ITEMS);
            let listing = self
                .components
                .as_ref()
                .map(|c| c.listing())
                .unwrap_or_default();
            for (domain, name) in listing {
                let mut item = Element::new("item", DISCO_ITEMS).with_attr("jid", domain);
                if let Some(name) = name {
                    item.set_attr("name", name);
                }
                query.push_child(item);
            }
            Ok(Some(query))
        })
    }
}
