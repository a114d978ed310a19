//! Namespace names used across the protocol core.

pub use starling_xml::STREAM_NS as STREAM;

pub const CLIENT: &str = "jabber:client";
pub const SERVER: &str = "jabber:server";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
pub const PING: &str = "urn:xmpp:ping";
