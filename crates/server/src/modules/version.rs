//! XEP-0092 software version: the server's name and version. No `<os/>`, so the
//! host's operating system is never revealed (XEP-0092 §5).

use std::sync::Arc;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, Modules};

pub const VERSION: &str = "jabber:iq:version";

pub fn register(modules: &mut Modules) {
    modules.register_iq(IqTarget::Server, VERSION, Arc::new(Version));
    modules.add_feature(IqTarget::Server, VERSION);
}

struct Version;

impl IqHandler for Version {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            // The version is read-only for everyone (RFC 6120 §8.3.3.9).
            if request.is_set {
                return Err(StanzaError::new(StanzaErrorCondition::NotAllowed));
            }
            Ok(Some(
                Element::new("query", VERSION)
                    .with_child(Element::new("name", VERSION).with_text("Starling"))
                    .with_child(
                        Element::new("version", VERSION).with_text(env!("CARGO_PKG_VERSION")),
                    ),
            ))
        })
    }
}
