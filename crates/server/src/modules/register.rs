//! XEP-0077 in-band registration once logged in: an account reads its registration,
//! changes its password (§3.3) or cancels itself (§3.2). Creating an account happens
//! before login, in stream negotiation (`starling_proto::c2s`), carried out by the
//! connection with [`scram_credentials`].

use std::sync::{Arc, Mutex};

use starling_proto::c2s::REGISTER_NS;
use starling_proto::error::{StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
use starling_proto::jid::prepare_localpart;
use starling_proto::sasl::{SaslError, ScramCredentials, ScramHash};
use starling_proto::Jid;
use starling_store::{AccountStore, Store, StoreError};
use starling_xml::Element;

use super::{FollowUp, IqFuture, IqHandler, IqRequest, IqTarget, ModuleContext, Modules};
use crate::presence::Presence;

pub fn register(modules: &mut Modules, context: &ModuleContext) {
    let handler = Arc::new(Registration {
        store: context.store.clone(),
        presence: context.presence.clone(),
        password_change: context.config.auth.allow_registration,
        iterations: context.config.auth.scram_iterations,
    });
    // Clients address these to their server (XEP-0077 examples) or to no one, which
    // RFC 6120 §10.3 turns into their own bare JID.
    for target in [IqTarget::Server, IqTarget::Account] {
        modules.register_iq(target, REGISTER_NS, handler.clone());
        modules.add_feature(target, REGISTER_NS);
    }
}

/// The stored SCRAM credentials of `password` for every hash. PBKDF2 is slow by
/// design, so it runs off the async workers.
pub(crate) async fn scram_credentials(
    password: String,
    iterations: u32,
) -> Result<Vec<ScramCredentials>, SaslError> {
    tokio::task::spawn_blocking(move || {
        ScramHash::ALL
            .into_iter()
            .map(|hash| ScramCredentials::generate(hash, &password, iterations))
            .collect()
    })
    .await
    .expect("credential derivation does not panic")
}

struct Registration {
    store: Store,
    presence: Arc<Presence>,
    /// Password changes follow `[auth] allow_registration`.
    password_change: bool,
    iterations: u32,
}

fn error(condition: StanzaErrorCondition) -> StanzaError {
    StanzaError::new(condition)
}

fn storage_failure(error: StoreError) -> StanzaError {
    tracing::error!(%error, "account storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

impl IqHandler for Registration {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            let query = request.payload;
            if query.name != "query" {
                return Err(error(StanzaErrorCondition::BadRequest));
            }
            let account = request.from.bare();
            let own = *request.to == account
                || (request.to.node().is_none() && request.to.domain() == account.domain());
            let (true, Some(user)) = (own, account.node()) else {
                return Err(error(StanzaErrorCondition::Forbidden));
            };
            let domain = account.domain();
            if !request.is_set {
                return Ok(Some(
                    Element::new("query", REGISTER_NS)
                        .with_child(Element::new("registered", REGISTER_NS))
                        .with_child(Element::new("username", REGISTER_NS).with_text(user)),
                ));
            }
            let changed = if query.child("remove", REGISTER_NS).is_some() {
                // XEP-0077 §3.2: <remove/> must be the only child.
                if query.elements().count() != 1 {
                    return Err(error(StanzaErrorCondition::BadRequest));
                }
                self.cancel(&account, user, request.follow_ups).await?
            } else {
                self.change_password(query, user, domain).await?
            };
            if changed {
                Ok(None)
            } else {
                // The account was cancelled while this session lives on.
                Err(error(StanzaErrorCondition::RegistrationRequired))
            }
        })
    }
}

impl Registration {
    /// XEP-0077 §3.2: cancel the subscriptions, delete the account with all its data,
    /// then, after the result, end every session of the account with `<not-authorized/>`.
    async fn cancel(
        &self,
        account: &Jid,
        user: &str,
        follow_ups: &Mutex<Vec<FollowUp>>,
    ) -> Result<bool, StanzaError> {
        if !self
            .store
            .account_exists(user, account.domain())
            .await
            .map_err(storage_failure)?
        {
            return Ok(false);
        }
        self.presence.cancel_subscriptions(account).await;
        let deleted = self
            .store
            .delete_account(user, account.domain())
            .await
            .map_err(storage_failure)?;
        if deleted {
            tracing::info!(%account, "account cancelled in-band");
            follow_ups
                .lock()
                .expect("follow-ups")
                .push(FollowUp::CloseSessions {
                    account: account.clone(),
                    error: StreamError::with_text(
                        StreamErrorCondition::NotAuthorized,
                        "the account was cancelled",
                    ),
                });
        }
        Ok(deleted)
    }

    /// XEP-0077 §3.3; false when the account no longer exists.
    async fn change_password(
        &self,
        query: &Element,
        user: &str,
        domain: &str,
    ) -> Result<bool, StanzaError> {
        if !self.password_change {
            return Err(error(StanzaErrorCondition::NotAllowed));
        }
        let field = |name: &str| query.child(name, REGISTER_NS).map(|e| e.text());
        let Some(username) = field("username") else {
            return Err(error(StanzaErrorCondition::BadRequest));
        };
        if prepare_localpart(&username).ok().as_deref() != Some(user) {
            return Err(error(StanzaErrorCondition::Forbidden)
                .with_text("the username is not this account's"));
        }
        // XEP-0077 §3.3: an empty password never replaces the existing one.
        let Some(password) = field("password").filter(|p| !p.is_empty()) else {
            return Err(error(StanzaErrorCondition::NotAcceptable));
        };
        let credentials = match scram_credentials(password, self.iterations).await {
            Ok(credentials) => credentials,
            Err(SaslError::InvalidPassword) => {
                return Err(error(StanzaErrorCondition::NotAcceptable)
                    .with_text("the password contains characters that are not allowed"))
            }
            Err(e) => {
                tracing::error!(error = %e, "deriving credentials failed");
                return Err(error(StanzaErrorCondition::InternalServerError));
            }
        };
        let changed = self
            .store
            .set_credentials(user, domain, &credentials)
            .await
            .map_err(storage_failure)?;
        if changed {
            tracing::info!(user, domain, "password changed in-band");
        }
        Ok(changed)
    }
}
