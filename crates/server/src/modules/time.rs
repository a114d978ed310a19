//! XEP-0202 entity time: the server's clock, always reported in UTC so the host's
//! time zone is not revealed (XEP-0082 §7).

use std::sync::Arc;
use std::time::SystemTime;

use starling_proto::datetime::format_datetime;
use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, Modules};

pub const TIME: &str = "urn:xmpp:time";

pub fn register(modules: &mut Modules) {
    modules.register_iq(IqTarget::Server, TIME, Arc::new(Time));
    modules.add_feature(IqTarget::Server, TIME);
}

struct Time;

impl IqHandler for Time {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            // Nobody sets the server's clock over XMPP (RFC 6120 §8.3.3.9).
            if request.is_set {
                return Err(StanzaError::new(StanzaErrorCondition::NotAllowed));
            }
            Ok(Some(
                Element::new("time", TIME)
                    .with_child(Element::new("tzo", TIME).with_text("+00:00"))
                    .with_child(
                        Element::new("utc", TIME).with_text(format_datetime(SystemTime::now())),
                    ),
            ))
        })
    }
}
