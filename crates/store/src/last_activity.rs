use std::future::Future;

use sqlx::Row;

use crate::store::on_pool;
use crate::{Store, StoreError};

/// Last activity (XEP-0012): when the account's last session ended and the status of its
/// last unavailable presence.
pub trait LastActivityStore {
    /// `(unix milliseconds, status)`; the status may be empty.
    fn last_activity(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send;

    /// Records or replaces the account's last activity.
    fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        at_ms: i64,
        status: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl LastActivityStore for Store {
    async fn last_activity(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT ended_at, status FROM last_activity WHERE domain = $1 AND username = $2",
            )
            .bind(domain)
            .bind(user)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some((row.try_get("ended_at")?, row.try_get("status")?))),
            }
        })
    }

    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        at_ms: i64,
        status: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO last_activity (domain, username, ended_at, status) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (domain, username) \
                 DO UPDATE SET ended_at = excluded.ended_at, status = excluded.status",
            )
            .bind(domain)
            .bind(user)
            .bind(at_ms)
            .bind(status)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
