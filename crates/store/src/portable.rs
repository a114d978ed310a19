//! Whole accounts in and out of the store, for portable export and import
//! (XEP-0227). The file format lives with the caller; this module moves every
//! stored kind of data of an account, and imports a whole file in one transaction.

use sqlx::Row;
use starling_proto::sasl::ScramCredentials;

use crate::accounts::decode_credentials;
use crate::store::on_pool;
use crate::{
    AccountStore, BlocklistStore, OfflineStore, RosterItem, RosterStore, Store, StoreError,
    VcardStore,
};

/// Everything stored for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountData {
    pub user: String,
    pub domain: String,
    pub credentials: Vec<ScramCredentials>,
    /// Sorted bytewise by jid, as [`RosterStore::roster`] returns them.
    pub roster: Vec<RosterItem>,
    /// `(contact, stanza_xml)` of each unanswered inbound request, oldest first.
    pub subscription_requests: Vec<(String, String)>,
    /// `(stanza_xml, stored_at_ms)`, oldest first.
    pub offline_messages: Vec<(String, i64)>,
    pub vcard: Option<String>,
    /// `(qname, xml)` with qname as `{namespace}name`, sorted by qname.
    pub private_xml: Vec<(String, String)>,
    pub blocklist: Vec<String>,
}

impl Store {
    /// Every account with all its data, ordered by domain and user.
    pub async fn export_accounts(&self) -> Result<Vec<AccountData>, StoreError> {
        let mut accounts = Vec::new();
        for (user, domain) in self.list_accounts(None).await? {
            accounts.push(self.export_account(&user, &domain).await?);
        }
        Ok(accounts)
    }

    async fn export_account(&self, user: &str, domain: &str) -> Result<AccountData, StoreError> {
        let credentials = on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT hash, salt, iterations, stored_key, server_key FROM scram_credentials \
                 WHERE domain = $1 AND username = $2 ORDER BY hash",
            )
            .bind(domain)
            .bind(user)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|row| {
                    decode_credentials(
                        row.try_get("hash")?,
                        row.try_get("salt")?,
                        row.try_get("iterations")?,
                        row.try_get("stored_key")?,
                        row.try_get("server_key")?,
                    )
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        });
        let private_xml = on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT qname, xml FROM private_xml WHERE domain = $1 AND username = $2 \
                 ORDER BY qname",
            )
            .bind(domain)
            .bind(user)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("qname")?, row.try_get("xml")?)))
                .collect::<Result<Vec<_>, StoreError>>()?
        });
        Ok(AccountData {
            user: user.to_string(),
            domain: domain.to_string(),
            credentials,
            roster: self.roster(user, domain).await?.1,
            subscription_requests: self.subscription_requests(user, domain).await?,
            offline_messages: self
                .offline_messages(user, domain)
                .await?
                .into_iter()
                .map(|m| (m.stanza_xml, m.stored_at_ms))
                .collect(),
            vcard: self.vcard(user, domain).await?,
            private_xml,
            blocklist: self.blocklist(user, domain).await?,
        })
    }

    /// Creates every account with all its data in one transaction: either all of
    /// it is stored or, on any error (such as an account that already exists),
    /// nothing is.
    pub async fn import_accounts(&self, accounts: &[AccountData]) -> Result<(), StoreError> {
        let created_at = crate::accounts::unix_now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for account in accounts {
                let (user, domain) = (account.user.as_str(), account.domain.as_str());
                sqlx::query(
                    "INSERT INTO accounts (domain, username, created_at) VALUES ($1, $2, $3)",
                )
                .bind(domain)
                .bind(user)
                .bind(created_at)
                .execute(&mut *tx)
                .await
                .map_err(crate::accounts::account_insert_error)?;
                crate::accounts::insert_credentials!(tx, user, domain, &account.credentials);
                if !account.roster.is_empty() {
                    // Imported items are the roster's first version.
                    sqlx::query(
                        "INSERT INTO roster_versions (domain, username, version) VALUES ($1, $2, 1)",
                    )
                    .bind(domain)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                }
                for item in &account.roster {
                    crate::roster::write_item!(tx, user, domain, item, 1i64);
                }
                for (contact, xml) in &account.subscription_requests {
                    sqlx::query(
                        "INSERT INTO subscription_requests (domain, username, contact, stanza_xml) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(domain)
                    .bind(user)
                    .bind(contact)
                    .bind(xml)
                    .execute(&mut *tx)
                    .await?;
                }
                for (xml, stored_at_ms) in &account.offline_messages {
                    sqlx::query(
                        "INSERT INTO offline_messages (domain, username, stanza_xml, stored_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(domain)
                    .bind(user)
                    .bind(xml)
                    .bind(stored_at_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(vcard) = &account.vcard {
                    sqlx::query(
                        "INSERT INTO vcards (domain, username, vcard_xml) VALUES ($1, $2, $3)",
                    )
                    .bind(domain)
                    .bind(user)
                    .bind(vcard)
                    .execute(&mut *tx)
                    .await?;
                }
                for (qname, xml) in &account.private_xml {
                    sqlx::query(
                        "INSERT INTO private_xml (domain, username, qname, xml) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(domain)
                    .bind(user)
                    .bind(qname)
                    .bind(xml)
                    .execute(&mut *tx)
                    .await?;
                }
                for jid in &account.blocklist {
                    sqlx::query("INSERT INTO blocklist (domain, username, jid) VALUES ($1, $2, $3)")
                        .bind(domain)
                        .bind(user)
                        .bind(jid)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
