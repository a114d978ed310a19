//! Server-to-server streams (RFC 6120 with XEP-0178 and XEP-0220): the sans-IO
//! machines of the receiving side (`accept`) and the initiating side (`connect`),
//! and what both share: the stream header, dialback keys and namespace mapping.
//!
//! Stanzas travel in `jabber:server` on the wire and in `jabber:client` inside the
//! server, so the router and modules see one namespace whatever the stream.

pub mod accept;
pub mod connect;
#[cfg(test)]
mod machines_tests;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use starling_xml::{Element, STREAM_NS};

use crate::c2s::escape_attr;
use crate::component::rename_ns;
use crate::ns;

pub const DIALBACK_NS: &str = "jabber:server:dialback";
/// The stream feature advertising dialback (XEP-0220 §2.5), with its error support.
pub const DIALBACK_FEATURE_NS: &str = "urn:xmpp:features:dialback";

/// XEP-0185 §3: HMAC-SHA256 keyed with the hex SHA-256 of our secret, over the
/// receiving server, the originating server and the stream id, in lowercase hex.
/// Any of our processes derives the same key, so verification needs no state.
pub fn dialback_key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let key = hex(&Sha256::digest(secret));
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Our stream header on a server stream, declaring the dialback prefix (XEP-0220 §2.1).
pub fn stream_header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    let mut header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{STREAM_NS}' \
         xmlns:db='{DIALBACK_NS}' version='1.0' from='{}'",
        ns::SERVER,
        escape_attr(from)
    );
    if let Some(to) = to {
        header.push_str(&format!(" to='{}'", escape_attr(to)));
    }
    if let Some(id) = id {
        header.push_str(&format!(" id='{}'", escape_attr(id)));
    }
    header.push('>');
    header
}

/// A dialback element (`db:result` or `db:verify`) with the prefix peers expect;
/// `content` is XML (a hex key or an error element).
pub fn dialback_element(
    name: &str,
    from: &str,
    to: &str,
    id: Option<&str>,
    kind: Option<&str>,
    content: Option<&str>,
) -> String {
    let mut xml = format!(
        "<db:{name} from='{}' to='{}'",
        escape_attr(from),
        escape_attr(to)
    );
    if let Some(id) = id {
        xml.push_str(&format!(" id='{}'", escape_attr(id)));
    }
    if let Some(kind) = kind {
        xml.push_str(&format!(" type='{kind}'"));
    }
    match content {
        Some(content) => xml.push_str(&format!(">{content}</db:{name}>")),
        None => xml.push_str("/>"),
    }
    xml
}

/// A stanza as received on a server stream, moved to the internal namespace.
pub fn from_server_ns(mut stanza: Element) -> Element {
    rename_ns(&mut stanza, ns::SERVER, ns::CLIENT);
    stanza
}

/// A stanza as written on a server stream.
pub fn to_server_ns(mut stanza: Element) -> Element {
    rename_ns(&mut stanza, ns::CLIENT, ns::SERVER);
    stanza
}

/// The domain of a stanza address, or `None` when it is missing or not a JID.
fn address_domain(stanza: &Element, attr: &str) -> Option<String> {
    stanza
        .attr(attr)
        .and_then(|value| crate::Jid::parse(value).ok())
        .map(|jid| jid.domain().to_string())
}

/// A domain from a dialback attribute, normalized like a JID's domain.
fn dialback_domain(element: &Element, attr: &str) -> Option<String> {
    element
        .attr(attr)
        .and_then(crate::stream_checks::bare_domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialback_key_matches_the_xep_0185_example() {
        let key = dialback_key(
            b"s3cr3tf0rd14lb4ck",
            "xmpp.example.com",
            "example.org",
            "D60000229F",
        );
        assert_eq!(
            key,
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
    }

    #[test]
    fn dialback_keys_differ_per_stream_and_pair() {
        let key = dialback_key(b"secret", "b.example", "a.example", "id1");
        assert_ne!(
            key,
            dialback_key(b"secret", "b.example", "a.example", "id2")
        );
        assert_ne!(
            key,
            dialback_key(b"secret", "c.example", "a.example", "id1")
        );
        assert_ne!(key, dialback_key(b"other", "b.example", "a.example", "id1"));
    }

    #[test]
    fn stanzas_change_namespace_both_ways_but_payloads_keep_theirs() {
        let stanza = Element::from_xml(
            "<message to='a@b'><body>hi</body><x xmlns='urn:example'/></message>",
            ns::SERVER,
        )
        .expect("parses");
        let internal = from_server_ns(stanza);
        assert_eq!(internal.ns, ns::CLIENT);
        assert_eq!(
            internal.child("body", ns::CLIENT).map(Element::text),
            Some("hi".into())
        );
        assert!(internal.child("x", "urn:example").is_some());
        let wire = to_server_ns(internal).to_xml(ns::SERVER);
        assert!(wire.starts_with("<message "), "{wire}");
    }
}
