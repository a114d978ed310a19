//! XEP-0012 last activity: the server's uptime, and for an account either 0 while
//! it has a connected resource or the time since it last went offline, with the
//! status it left. Accounts answer only to themselves and to contacts allowed to
//! see their presence, since anything else would leak it (XEP-0012 §8).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_store::{LastActivityStore, RosterStore, Store, StoreError, Subscription};
use starling_xml::Element;

use super::{IqFuture, IqHandler, IqRequest, IqTarget, ModuleContext, Modules};
use crate::sessions::SessionTable;

pub const LAST: &str = "jabber:iq:last";

pub fn register(modules: &mut Modules, context: &ModuleContext) {
    modules.register_iq(
        IqTarget::Server,
        LAST,
        Arc::new(ServerUptime {
            started_at: context.started_at,
        }),
    );
    modules.register_iq(
        IqTarget::Account,
        LAST,
        Arc::new(AccountLast {
            store: context.store.clone(),
            sessions: context.sessions.clone(),
        }),
    );
    for target in [IqTarget::Server, IqTarget::Account] {
        modules.add_feature(target, LAST);
    }
}

/// Only a get is meaningful; nobody may set last activity (RFC 6120 §8.3.3.9).
fn check_get(request: &IqRequest<'_>) -> Result<(), StanzaError> {
    if request.is_set {
        return Err(StanzaError::new(StanzaErrorCondition::NotAllowed));
    }
    if request.payload.name != "query" {
        return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
    }
    Ok(())
}

fn seconds(secs: u64) -> Element {
    Element::new("query", LAST).with_attr("seconds", secs.to_string())
}

fn storage_failure(error: StoreError) -> StanzaError {
    tracing::error!(%error, "last activity storage failed");
    StanzaError::new(StanzaErrorCondition::InternalServerError)
}

struct ServerUptime {
    started_at: SystemTime,
}

impl IqHandler for ServerUptime {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            check_get(&request)?;
            // A clock stepped back before the start time reads as just started.
            let uptime = self.started_at.elapsed().map_or(0, |d| d.as_secs());
            Ok(Some(seconds(uptime)))
        })
    }
}

struct AccountLast {
    store: Store,
    sessions: Arc<SessionTable>,
}

impl AccountLast {
    /// The account itself, or a contact the account shares its presence with.
    async fn may_see_presence(&self, request: &IqRequest<'_>) -> Result<bool, StanzaError> {
        let requester = request.from.bare();
        if requester == *request.to {
            return Ok(true);
        }
        let Some(user) = request.to.node() else {
            return Ok(false);
        };
        let item = self
            .store
            .roster_item(user, request.to.domain(), requester.as_str())
            .await
            .map_err(storage_failure)?;
        Ok(item.is_some_and(|item| {
            matches!(item.subscription, Subscription::From | Subscription::Both)
        }))
    }
}

impl IqHandler for AccountLast {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> IqFuture<'a> {
        Box::pin(async move {
            check_get(&request)?;
            if !self.may_see_presence(&request).await? {
                return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
            }
            // XEP-0012 §4: any connected or available resource means "active now".
            if !self.sessions.sessions_of(request.to).is_empty() {
                return Ok(Some(seconds(0)));
            }
            let Some(user) = request.to.node() else {
                return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
            };
            let stored = self
                .store
                .last_activity(user, request.to.domain())
                .await
                .map_err(storage_failure)?;
            // Never logged out since activity was first recorded: nothing to tell, with
            // the same error as for an unknown account.
            let Some((ended_at_ms, status)) = stored else {
                return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
            };
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let idle = u64::try_from(now_ms.saturating_sub(ended_at_ms) / 1000).unwrap_or(0);
            let mut query = seconds(idle);
            if !status.is_empty() {
                query = query.with_text(status);
            }
            Ok(Some(query))
        })
    }
}

#[cfg(test)]
mod tests {
    use starling_proto::Jid;
    use starling_store::{AccountStore, RosterItem};

    use super::super::IqReply;
    use super::*;

    /// Juliet's account with Romeo on her roster under `subscription`, and Romeo's
    /// own account; the temporary directory must outlive the store.
    async fn juliet_with_romeo(subscription: Subscription) -> (tempfile::TempDir, AccountLast) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("last.db").display());
        let store = Store::open(&url).await.expect("store opens");
        for user in ["juliet", "romeo"] {
            store
                .create_account(user, "capulet.lit", &[])
                .await
                .expect("account created");
        }
        let romeo = RosterItem {
            jid: "romeo@capulet.lit".into(),
            name: None,
            subscription,
            ask: false,
            approved: false,
            groups: Vec::new(),
        };
        store
            .set_roster_item("juliet", "capulet.lit", &romeo)
            .await
            .expect("roster item stored");
        let last = AccountLast {
            store,
            sessions: Arc::new(SessionTable::new(8)),
        };
        (dir, last)
    }

    async fn ask(last: &AccountLast, from: &str) -> IqReply {
        let payload = Element::new("query", LAST);
        let iq = Element::new("iq", "jabber:client").with_child(payload.clone());
        let from = Jid::parse(from).expect("from");
        let to = Jid::parse("juliet@capulet.lit").expect("to");
        let follow_ups = std::sync::Mutex::new(Vec::new());
        let request = IqRequest {
            iq: &iq,
            payload: &payload,
            is_set: false,
            from: &from,
            to: &to,
            follow_ups: &follow_ups,
        };
        last.handle(request).await
    }

    fn condition(reply: IqReply) -> StanzaErrorCondition {
        reply.expect_err("an error").condition
    }

    #[tokio::test]
    async fn subscribed_contact_sees_time_since_logout_and_status() {
        let (_dir, last) = juliet_with_romeo(Subscription::From).await;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_millis() as i64;
        last.store
            .set_last_activity("juliet", "capulet.lit", now_ms - 903_000, "Heading Home")
            .await
            .expect("activity stored");
        let query = ask(&last, "romeo@capulet.lit/orchard")
            .await
            .expect("a result")
            .expect("a payload");
        let seconds: u64 = query
            .attr("seconds")
            .expect("seconds")
            .parse()
            .expect("number");
        assert!((903..910).contains(&seconds), "{seconds}");
        assert_eq!(query.text(), "Heading Home");
    }

    #[tokio::test]
    async fn connected_account_reports_zero() {
        let (_dir, last) = juliet_with_romeo(Subscription::Both).await;
        let _inbox = last
            .sessions
            .register(Jid::parse("juliet@capulet.lit/balcony").expect("jid"));
        let query = ask(&last, "romeo@capulet.lit/orchard")
            .await
            .expect("a result")
            .expect("a payload");
        assert_eq!(query.attr("seconds"), Some("0"));
        assert!(query.text().is_empty());
    }

    #[tokio::test]
    async fn contact_without_a_presence_subscription_is_forbidden() {
        let (_dir, last) = juliet_with_romeo(Subscription::To).await;
        let reply = ask(&last, "romeo@capulet.lit/orchard").await;
        assert_eq!(condition(reply), StanzaErrorCondition::Forbidden);
    }

    #[tokio::test]
    async fn nothing_recorded_is_service_unavailable() {
        let (_dir, last) = juliet_with_romeo(Subscription::Both).await;
        let reply = ask(&last, "juliet@capulet.lit/balcony").await;
        assert_eq!(condition(reply), StanzaErrorCondition::ServiceUnavailable);
    }
}
