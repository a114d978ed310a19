//! XEP-0049 private XML storage: per-account elements only the account itself can
//! read or write, stored under their qualified name.

use std::sync::Arc;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_store::{PrivateXmlStore, Store, StoreError};
use starling_xml::Element;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, ModuleContext, Modules};

pub const PRIVATE: &str = "jabber:iq:private";

/// The most private XML one set may store, serialized.
const MAX_PRIVATE_BYTES: usize = 64 * 1024;

pub fn register(modules: &mut Modules, context: &ModuleContext) {
    modules.register_iq(
        IqTarget::Account,
        PRIVATE,
        Arc::new(PrivateXml {
            store: context.store.clone(),
        }),
    );
    modules.add_feature(IqTarget::Account, PRIVATE);
}

/// Namespaces XEP-0049 §2.3 reserves, plus none at all: stored data must be
/// scoped by a namespace of its own.
fn is_reserved(ns: &str) -> bool {
    ns.is_empty()
        || ns.starts_with("jabber:")
        || ns.starts_with("http://jabber.org/")
        || ns == "vcard-temp"
}

/// The storage key of an element: its qualified name.
fn key(element: &Element) -> String {
    format!("{{{}}}{}", element.ns, element.name)
}

fn storage_failure(error: StoreError) -> StanzaError {
    tracing::error!(%error, "private XML storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

struct PrivateXml {
    store: Store,
}

impl IqHandler for PrivateXml {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            // XEP-0049 §2.3 prefers forbidden for another user's data.
            if request.from.bare() != *request.to {
                return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
            }
            let (Some(user), domain) = (request.to.node(), request.to.domain()) else {
                return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
            };
            if request.payload.name != "query" {
                return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
            }
            let children: Vec<&Element> = request.payload.elements().collect();
            // XEP-0049 §2.3: a query without a child MUST get not-acceptable.
            let Some(first) = children.first() else {
                return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text("the query must contain an element to store or retrieve"));
            };
            if is_reserved(&first.ns) {
                return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text("reserved namespace"));
            }
            // A get names one element; a set may carry several, all of one namespace.
            if (!request.is_set && children.len() > 1)
                || children.iter().any(|child| child.ns != first.ns)
            {
                return Err(StanzaError::new(StanzaErrorCondition::BadRequest)
                    .with_text("one namespace per request"));
            }

            if request.is_set {
                let serialized: Vec<(String, String)> = children
                    .iter()
                    .map(|child| (key(child), child.to_xml("")))
                    .collect();
                let total: usize = serialized.iter().map(|(_, xml)| xml.len()).sum();
                // Permanent, so not-acceptable (modify) rather than resource-constraint (wait).
                if total > MAX_PRIVATE_BYTES {
                    return Err(
                        StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text(format!(
                            "private XML is limited to {MAX_PRIVATE_BYTES} bytes"
                        )),
                    );
                }
                for (key, xml) in &serialized {
                    self.store
                        .set_private_xml(user, domain, key, xml)
                        .await
                        .map_err(storage_failure)?;
                }
                return Ok(None);
            }

            let stored = self
                .store
                .private_xml(user, domain, &key(first))
                .await
                .map_err(storage_failure)?;
            let element = match stored {
                Some(xml) => Element::from_xml(&xml, "").map_err(|error| {
                    tracing::error!(%error, "stored private XML does not parse");
                    StanzaError::new(StanzaErrorCondition::InternalServerError)
                })?,
                // Nothing stored: the empty element as asked for (XEP-0049 §2.3).
                None => Element::new(first.name.clone(), first.ns.clone()),
            };
            Ok(Some(Element::new("query", PRIVATE).with_child(element)))
        })
    }
}
