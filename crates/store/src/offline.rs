use std::future::Future;

use sqlx::Row;

use crate::store::{count_from_db, on_pool};
use crate::{Store, StoreError};

/// A message stored for an offline user (XEP-0160).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Increases with arrival; pass the last delivered one to
    /// [`OfflineStore::delete_offline_through`].
    pub id: i64,
    pub stanza_xml: String,
    /// Unix milliseconds.
    pub stored_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineOutcome {
    Stored,
    /// The user already has as many messages as allowed; nothing was stored.
    QueueFull,
}

/// Offline message queues (XEP-0160).
pub trait OfflineStore {
    /// Appends a message unless the user already has `limit` messages (checked and
    /// inserted in one transaction, so concurrent senders cannot exceed it).
    fn store_offline(
        &self,
        user: &str,
        domain: &str,
        stanza_xml: &str,
        stored_at_ms: i64,
        limit: u64,
    ) -> impl Future<Output = Result<OfflineOutcome, StoreError>> + Send;

    /// All stored messages in arrival order.
    fn offline_messages(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Vec<OfflineMessage>, StoreError>> + Send;

    /// Deletes the messages with `id <= up_to_id` (once delivered); returns how many.
    fn delete_offline_through(
        &self,
        user: &str,
        domain: &str,
        up_to_id: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn offline_count(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl OfflineStore for Store {
    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        stanza_xml: &str,
        stored_at_ms: i64,
        limit: u64,
    ) -> Result<OfflineOutcome, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // A no-op write on the account row serializes this user's senders: it takes
            // SQLite's write lock and the row lock on PostgreSQL, where a plain count would
            // let two transactions both see room for one more. A missing account then
            // fails the insert's foreign key.
            sqlx::query(
                "UPDATE accounts SET created_at = created_at WHERE domain = $1 AND username = $2",
            )
            .bind(domain)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM offline_messages WHERE domain = $1 AND username = $2",
            )
            .bind(domain)
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
            if count_from_db(count)? >= limit {
                tx.rollback().await?;
                return Ok(OfflineOutcome::QueueFull);
            }
            sqlx::query(
                "INSERT INTO offline_messages (domain, username, stanza_xml, stored_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(domain)
            .bind(user)
            .bind(stanza_xml)
            .bind(stored_at_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(OfflineOutcome::Stored)
    }

    async fn offline_messages(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Vec<OfflineMessage>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, stanza_xml, stored_at FROM offline_messages \
                 WHERE domain = $1 AND username = $2 ORDER BY id",
            )
            .bind(domain)
            .bind(user)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(OfflineMessage {
                        id: row.try_get("id")?,
                        stanza_xml: row.try_get("stanza_xml")?,
                        stored_at_ms: row.try_get("stored_at")?,
                    })
                })
                .collect()
        })
    }

    async fn delete_offline_through(
        &self,
        user: &str,
        domain: &str,
        up_to_id: i64,
    ) -> Result<u64, StoreError> {
        let deleted = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM offline_messages WHERE domain = $1 AND username = $2 AND id <= $3",
            )
            .bind(domain)
            .bind(user)
            .bind(up_to_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(deleted)
    }

    async fn offline_count(&self, user: &str, domain: &str) -> Result<u64, StoreError> {
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM offline_messages WHERE domain = $1 AND username = $2",
            )
            .bind(domain)
            .bind(user)
            .fetch_one(pool)
            .await?
        });
        count_from_db(count)
    }
}
