//! Persistent storage for Starling.
//!
//! Each kind of data has its own trait ([`AccountStore`], ...), all implemented by one
//! [`Store`]. A `Store` runs on SQLite (the embedded default) or PostgreSQL with the same
//! schema; every query is written once, with `$N` placeholders both databases accept.

mod accounts;
mod store;

pub use accounts::AccountStore;
pub use store::{Store, StoreOptions};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("account already exists")]
    AccountExists,
    #[error("invalid storage URL: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}
