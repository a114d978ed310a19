//! XEP-0054 vcard-temp: each account's vCard, world-readable and written only by
//! its owner; the server's own vCard is empty.

use std::sync::Arc;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_store::{Store, StoreError, VcardStore};
use starling_xml::Element;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, ModuleContext, Modules};

pub const VCARD: &str = "vcard-temp";

/// The largest vCard stored, serialized; room for a modest avatar in PHOTO.
const MAX_VCARD_BYTES: usize = 64 * 1024;

pub fn register(modules: &mut Modules, context: &ModuleContext) {
    modules.register_iq(IqTarget::Server, VCARD, Arc::new(ServerVcard));
    modules.register_iq(
        IqTarget::Account,
        VCARD,
        Arc::new(AccountVcard {
            store: context.store.clone(),
        }),
    );
    for target in [IqTarget::Server, IqTarget::Account] {
        modules.add_feature(target, VCARD);
    }
}

fn empty_vcard() -> Element {
    Element::new("vCard", VCARD)
}

fn storage_failure(error: StoreError) -> StanzaError {
    tracing::error!(%error, "vCard storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

struct ServerVcard;

impl IqHandler for ServerVcard {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            if request.payload.name != "vCard" {
                return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
            }
            // No entity may change the server's vCard over XMPP (RFC 6120 §8.3.3.9).
            if request.is_set {
                return Err(StanzaError::new(StanzaErrorCondition::NotAllowed));
            }
            Ok(Some(empty_vcard()))
        })
    }
}

struct AccountVcard {
    store: Store,
}

impl IqHandler for AccountVcard {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            if request.payload.name != "vCard" {
                return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
            }
            let (Some(user), domain) = (request.to.node(), request.to.domain()) else {
                return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
            };
            let own = request.from.bare() == *request.to;
            if request.is_set {
                // XEP-0054 §3.2: only the owner updates a vCard.
                if !own {
                    return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
                }
                let xml = request.payload.to_xml("");
                // A permanent property of the request, so not-acceptable (modify) rather
                // than resource-constraint, whose "wait" type invites a useless retry.
                if xml.len() > MAX_VCARD_BYTES {
                    return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                        .with_text(format!("a vCard is limited to {MAX_VCARD_BYTES} bytes")));
                }
                self.store
                    .set_vcard(user, domain, &xml)
                    .await
                    .map_err(storage_failure)?;
                return Ok(None);
            }
            let stored = self
                .store
                .vcard(user, domain)
                .await
                .map_err(storage_failure)?;
            match stored {
                Some(xml) => Element::from_xml(&xml, "").map(Some).map_err(|error| {
                    tracing::error!(%error, "stored vCard does not parse");
                    StanzaError::new(StanzaErrorCondition::InternalServerError)
                }),
                // XEP-0054 §3.1 allows an empty vCard for one's own.
                None if own => Ok(Some(empty_vcard())),
                // XEP-0054 §3.3: the same error as for a missing account, so that
                // vCards cannot be used to harvest account names.
                None => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
            }
        })
    }
}
