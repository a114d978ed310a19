//! XML for XMPP streams: an incremental parser that turns received bytes into
//! stream events (header, one element per stanza, close) while enforcing the
//! RFC 6120 §11 restrictions and size limits, and a small element tree with a
//! serializer.

mod element;
mod parser;

pub use element::{Element, Node};
pub use parser::{Limits, StreamEvent, StreamHeader, StreamParser, XmlError};

/// Namespace of the stream root and of `stream:` elements (features, errors).
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";
/// Namespace bound to the `xml` prefix (`xml:lang`).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
