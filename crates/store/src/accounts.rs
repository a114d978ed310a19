use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;
use starling_proto::sasl::{ScramCredentials, ScramHash};

use crate::store::on_pool;
use crate::{Store, StoreError};

/// Accounts of hosted domains and their SCRAM credentials (never passwords).
///
/// Write transactions begin with a write statement: SQLite then takes its write lock
/// up front, waiting out `busy_timeout`, instead of failing to upgrade a read snapshot.
pub trait AccountStore {
    /// Creates an account with its credentials (at most one per hash), all or nothing.
    /// Fails with [`StoreError::AccountExists`] if `(user, domain)` exists.
    fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &[ScramCredentials],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes an account and its credentials; `false` when there is no such account.
    fn delete_account(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces all stored credentials of an account in one transaction;
    /// `false` when there is no such account.
    fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &[ScramCredentials],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The account's credentials for `hash`, if it has any.
    fn credentials(
        &self,
        user: &str,
        domain: &str,
        hash: ScramHash,
    ) -> impl Future<Output = Result<Option<ScramCredentials>, StoreError>> + Send;

    fn account_exists(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `(user, domain)` pairs sorted bytewise by domain, then user; `domain: None` lists all.
    fn list_accounts(
        &self,
        domain: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}

/// Inserts each of `$credentials` within the transaction `$tx` (expanded per backend).
macro_rules! insert_credentials {
    ($tx:ident, $user:expr, $domain:expr, $credentials:expr) => {
        for c in $credentials {
            sqlx::query(
                "INSERT INTO scram_credentials \
                 (domain, username, hash, salt, iterations, stored_key, server_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind($domain)
            .bind($user)
            .bind(c.hash.name())
            .bind(c.salt.as_slice())
            .bind(i64::from(c.iterations))
            .bind(c.stored_key.as_slice())
            .bind(c.server_key.as_slice())
            .execute(&mut *$tx)
            .await?;
        }
    };
}
pub(crate) use insert_credentials;

impl AccountStore for Store {
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &[ScramCredentials],
    ) -> Result<(), StoreError> {
        let created_at = unix_now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO accounts (domain, username, created_at) VALUES ($1, $2, $3)")
                .bind(domain)
                .bind(user)
                .bind(created_at)
                .execute(&mut *tx)
                .await
                .map_err(account_insert_error)?;
            insert_credentials!(tx, user, domain, credentials);
            tx.commit().await?;
        });
        Ok(())
    }

    async fn delete_account(&self, user: &str, domain: &str) -> Result<bool, StoreError> {
        // Credentials go with the account through ON DELETE CASCADE.
        let result = on_pool!(self, pool => {
            sqlx::query("DELETE FROM accounts WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(user)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(result > 0)
    }

    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &[ScramCredentials],
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // A no-op write that tells whether the account exists and locks its row
            // (PostgreSQL) or the database (SQLite), so no delete can slip in before commit.
            let found = sqlx::query(
                "UPDATE accounts SET created_at = created_at WHERE domain = $1 AND username = $2",
            )
            .bind(domain)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if !found {
                return Ok(false);
            }
            sqlx::query("DELETE FROM scram_credentials WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            insert_credentials!(tx, user, domain, credentials);
            tx.commit().await?;
        });
        Ok(true)
    }

    async fn credentials(
        &self,
        user: &str,
        domain: &str,
        hash: ScramHash,
    ) -> Result<Option<ScramCredentials>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT hash, salt, iterations, stored_key, server_key FROM scram_credentials \
                 WHERE domain = $1 AND username = $2 AND hash = $3",
            )
            .bind(domain)
            .bind(user)
            .bind(hash.name())
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => decode_credentials(
                    row.try_get("hash")?,
                    row.try_get("salt")?,
                    row.try_get("iterations")?,
                    row.try_get("stored_key")?,
                    row.try_get("server_key")?,
                )
                .map(Some),
            }
        })
    }

    async fn account_exists(&self, user: &str, domain: &str) -> Result<bool, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query("SELECT 1 FROM accounts WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(user)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        Ok(row)
    }

    async fn list_accounts(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT username, domain FROM accounts \
                 WHERE $1 IS NULL OR domain = $1 ORDER BY domain, username",
            )
            .bind(domain)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("username")?, row.try_get("domain")?)))
                .collect()
        })
    }
}

/// A unique violation on `accounts` can only mean the account is already there.
pub(crate) fn account_insert_error(error: sqlx::Error) -> StoreError {
    match error.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::AccountExists,
        _ => StoreError::Database(error),
    }
}

/// Checks a stored row before handing it to SASL, which trusts its credentials.
pub(crate) fn decode_credentials(
    hash: String,
    salt: Vec<u8>,
    iterations: i64,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
) -> Result<ScramCredentials, StoreError> {
    let hash = ScramHash::from_name(&hash)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown SCRAM hash {hash:?}")))?;
    let iterations = u32::try_from(iterations)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            StoreError::Corrupt(format!("invalid SCRAM iteration count {iterations}"))
        })?;
    Ok(ScramCredentials {
        hash,
        salt,
        iterations,
        stored_key,
        server_key,
    })
}

pub(crate) fn unix_now() -> i64 {
    // A clock before 1970 is a broken clock; 0 keeps account creation working regardless.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
