use std::future::Future;

use crate::store::on_pool;
use crate::{Store, StoreError};

/// vCards (XEP-0054), one per account, stored as the serialized `<vCard/>` element.
pub trait VcardStore {
    fn vcard(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Stores or replaces the account's vCard.
    fn set_vcard(
        &self,
        user: &str,
        domain: &str,
        vcard_xml: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl VcardStore for Store {
    async fn vcard(&self, user: &str, domain: &str) -> Result<Option<String>, StoreError> {
        let vcard = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT vcard_xml FROM vcards WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(user)
                .fetch_optional(pool)
                .await?
        });
        Ok(vcard)
    }

    async fn set_vcard(&self, user: &str, domain: &str, vcard_xml: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO vcards (domain, username, vcard_xml) VALUES ($1, $2, $3) \
                 ON CONFLICT (domain, username) DO UPDATE SET vcard_xml = excluded.vcard_xml",
            )
            .bind(domain)
            .bind(user)
            .bind(vcard_xml)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
