//! Persistent storage for Starling.
//!
//! Each kind of data has its own trait ([`AccountStore`], [`RosterStore`], [`OfflineStore`],
//! [`VcardStore`], [`PrivateXmlStore`], [`BlocklistStore`], [`LastActivityStore`]), all
//! implemented by one [`Store`]. A `Store` runs on SQLite (the embedded default) or PostgreSQL with the same
//! schema; every query is written once, with `$N` placeholders both databases accept.

mod accounts;
mod blocklist;
mod last_activity;
mod offline;
mod portable;
mod private_xml;
mod roster;
mod store;
mod vcard;

pub use accounts::AccountStore;
pub use blocklist::BlocklistStore;
pub use last_activity::LastActivityStore;
pub use offline::{OfflineMessage, OfflineOutcome, OfflineStore};
pub use portable::AccountData;
pub use private_xml::PrivateXmlStore;
pub use roster::{RosterChange, RosterItem, RosterStore, Subscription};
pub use store::{Store, StoreOptions};
pub use vcard::VcardStore;

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
