//! XMPP protocol core: JIDs (RFC 7622), namespaces, stream and stanza errors,
//! SASL, and the sans-IO negotiation state machines.

pub mod c2s;
pub mod component;
pub mod datetime;
pub mod error;
pub mod jid;
pub mod ns;
pub mod roster;
pub mod s2s;
pub mod sasl;
pub mod stream_checks;

pub use jid::{Jid, JidError};
