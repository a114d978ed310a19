use std::future::Future;

use crate::store::on_pool;
use crate::{Store, StoreError};

/// Private XML storage (XEP-0049): serialized elements keyed by their qualified name,
/// `"{namespace}name"`.
pub trait PrivateXmlStore {
    fn private_xml(
        &self,
        user: &str,
        domain: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Stores or replaces the element under `key`.
    fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        key: &str,
        xml: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl PrivateXmlStore for Store {
    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let xml = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT xml FROM private_xml WHERE domain = $1 AND username = $2 AND qname = $3",
            )
            .bind(domain)
            .bind(user)
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        Ok(xml)
    }

    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        key: &str,
        xml: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO private_xml (domain, username, qname, xml) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (domain, username, qname) DO UPDATE SET xml = excluded.xml",
            )
            .bind(domain)
            .bind(user)
            .bind(key)
            .bind(xml)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
