//! What every kind of stream checks in a received stream header (RFC 6120 §4.7,
//! §4.8.1); the c2s and component machines differ only in the content namespace
//! and in which domains they serve.

use starling_xml::{StreamHeader, STREAM_NS};

use crate::error::{StreamError, StreamErrorCondition};
use crate::jid::Jid;

/// A second header once the stream is open.
pub fn header_inside_stream() -> StreamError {
    StreamError::with_text(
        StreamErrorCondition::NotWellFormed,
        "a stream header inside the stream",
    )
}

/// `<stream:stream>` in the streams namespace, with `content_ns` as its default
/// namespace; anything else is `<invalid-namespace/>`.
pub fn check_namespaces(header: &StreamHeader, content_ns: &str) -> Result<(), StreamError> {
    if header.name == "stream"
        && header.ns == STREAM_NS
        && header.default_ns.as_deref() == Some(content_ns)
    {
        Ok(())
    } else {
        Err(StreamError::new(StreamErrorCondition::InvalidNamespace))
    }
}

/// The header's `to` when it is a bare domain, normalized as a JID so that any
/// spelling of a configured domain matches it.
pub fn addressed_domain(header: &StreamHeader) -> Option<String> {
    header.attr("to").and_then(bare_domain)
}

/// `value` when it is a bare domain, normalized as a JID's domain.
pub fn bare_domain(value: &str) -> Option<String> {
    Jid::parse(value)
        .ok()
        .filter(|jid| jid.node().is_none() && jid.resource().is_none())
        .map(|jid| jid.domain().to_string())
}
