//! XEP-0199: a ping to the server or to an account is answered with an empty result.

use std::sync::Arc;

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::ns;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, Modules};

pub fn register(modules: &mut Modules) {
    for target in [IqTarget::Server, IqTarget::Account] {
        modules.register_iq(target, ns::PING, Arc::new(Ping));
        modules.add_feature(target, ns::PING);
    }
}

struct Ping;

impl IqHandler for Ping {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        let is_set = request.is_set;
        Box::pin(async move {
            if is_set {
                Err(StanzaError::new(StanzaErrorCondition::BadRequest))
            } else {
                Ok(None)
            }
        })
    }
}
