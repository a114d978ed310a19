use std::future::Future;

use crate::store::on_pool;
use crate::{Store, StoreError};

/// Blocked JIDs (XEP-0191).
pub trait BlocklistStore {
    /// All blocked JIDs, sorted bytewise.
    fn blocklist(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Blocks the JIDs not blocked yet, all or nothing; returns those added, in the order given.
    fn block(
        &self,
        user: &str,
        domain: &str,
        jids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Unblocks the given JIDs, all or nothing; returns those that were blocked, in the
    /// order given.
    fn unblock(
        &self,
        user: &str,
        domain: &str,
        jids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Unblocks everything; returns what was blocked, sorted bytewise.
    fn unblock_all(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

impl BlocklistStore for Store {
    async fn blocklist(&self, user: &str, domain: &str) -> Result<Vec<String>, StoreError> {
        let jids = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT jid FROM blocklist WHERE domain = $1 AND username = $2 ORDER BY jid",
            )
            .bind(domain)
            .bind(user)
            .fetch_all(pool)
            .await?
        });
        Ok(jids)
    }

    async fn block(
        &self,
        user: &str,
        domain: &str,
        jids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut added = Vec::new();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for jid in jids {
                // DO NOTHING leaves rows_affected at 0 for a JID already blocked (or repeated).
                let inserted = sqlx::query(
                    "INSERT INTO blocklist (domain, username, jid) VALUES ($1, $2, $3) \
                     ON CONFLICT (domain, username, jid) DO NOTHING",
                )
                .bind(domain)
                .bind(user)
                .bind(jid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted > 0 {
                    added.push(jid.clone());
                }
            }
            tx.commit().await?;
        });
        Ok(added)
    }

    async fn unblock(
        &self,
        user: &str,
        domain: &str,
        jids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for jid in jids {
                let deleted = sqlx::query(
                    "DELETE FROM blocklist WHERE domain = $1 AND username = $2 AND jid = $3",
                )
                .bind(domain)
                .bind(user)
                .bind(jid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if deleted > 0 {
                    removed.push(jid.clone());
                }
            }
            tx.commit().await?;
        });
        Ok(removed)
    }

    async fn unblock_all(&self, user: &str, domain: &str) -> Result<Vec<String>, StoreError> {
        let mut removed: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar("DELETE FROM blocklist WHERE domain = $1 AND username = $2 RETURNING jid")
                .bind(domain)
                .bind(user)
                .fetch_all(pool)
                .await?
        });
        // RETURNING has no ORDER BY.
        removed.sort_unstable();
        Ok(removed)
    }
}
