use std::fmt::Write as _;

use crate::parser::{Limits, StreamEvent, StreamParser, XmlError};
use crate::{STREAM_NS, XML_NS};

/// An XML element with its namespace resolved.
///
/// Attribute keys: plain name for unnamespaced attributes, `xml:lang` (and
/// `xml:<local>`) for the XML namespace, `{namespace-uri}local` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Namespace URI, `""` if none.
    pub ns: String,
    /// Attributes in document order (parsed elements: sorted by namespace, then name).
    pub attrs: Vec<(String, String)>,
    /// Child elements and text, in document order.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    pub fn with_child(mut self, child: Element) -> Self {
        self.push_child(child);
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, replacing an existing one with the same key.
    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((key, value)),
        }
    }

    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(pos).1)
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// First child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Child elements only, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Concatenated direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serialize; `parent_ns` is the default namespace in scope where it is
    /// written (e.g. "jabber:client" for stanzas on a c2s stream): `xmlns` is
    /// emitted only when `ns` differs.
    ///
    /// Elements in [`STREAM_NS`] are written with the `stream:` prefix that
    /// the stream header declares, and leave the default namespace unchanged.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        let stream_prefixed = self.ns == STREAM_NS;
        out.push('<');
        if stream_prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        let inner_ns = if stream_prefixed {
            parent_ns
        } else {
            if self.ns != parent_ns {
                out.push_str(" xmlns='");
                escape_attr(&self.ns, out);
                out.push('\'');
            }
            &self.ns
        };

        // Generated prefixes, indexed by number; empty (no allocation) in the
        // common case of no namespaced attributes.
        let mut prefixed: Vec<&str> = Vec::new();
        for (key, value) in &self.attrs {
            out.push(' ');
            match split_ns_key(key) {
                Some((uri, local)) if uri == XML_NS => {
                    out.push_str("xml:");
                    out.push_str(local);
                }
                Some((uri, local)) => {
                    let idx = match prefixed.iter().position(|u| *u == uri) {
                        Some(i) => i,
                        None => {
                            prefixed.push(uri);
                            prefixed.len() - 1
                        }
                    };
                    // Writing to a String cannot fail.
                    let _ = write!(out, "ns{idx}:{local}");
                }
                None => out.push_str(key),
            }
            out.push_str("='");
            escape_attr(value, out);
            out.push('\'');
        }
        for (idx, uri) in prefixed.iter().enumerate() {
            let _ = write!(out, " xmlns:ns{idx}='");
            escape_attr(uri, out);
            out.push('\'');
        }

        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, inner_ns),
                Node::Text(t) => escape_text(t, out),
            }
        }
        out.push_str("</");
        if stream_prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        out.push('>');
    }

    pub fn to_xml(&self, parent_ns: &str) -> String {
        let mut out = String::new();
        self.write_to(&mut out, parent_ns);
        out
    }

    /// Parse exactly one element, written as it would appear on a stream whose
    /// default namespace is `parent_ns` (the `stream:` prefix is bound).
    /// Uses default [`Limits`].
    pub fn from_xml(xml: &str, parent_ns: &str) -> Result<Element, XmlError> {
        let mut parser = StreamParser::new(Limits::default());
        let mut header = format!("<stream:stream xmlns:stream='{STREAM_NS}'");
        if !parent_ns.is_empty() {
            header.push_str(" xmlns='");
            escape_attr(parent_ns, &mut header);
            header.push('\'');
        }
        header.push('>');
        let mut events = Vec::new();
        parser.feed(header.as_bytes(), &mut events)?;
        parser.feed(xml.as_bytes(), &mut events)?;
        parser.feed(b"</stream:stream>", &mut events)?;
        let mut elements = events.into_iter().filter_map(|ev| match ev {
            StreamEvent::Element(e) => Some(e),
            _ => None,
        });
        match (elements.next(), elements.next()) {
            (Some(e), None) => Ok(e),
            _ => Err(XmlError::NotWellFormed(
                "expected exactly one element".into(),
            )),
        }
    }
}

/// Splits a `{uri}local` attribute key. The last `}` is the separator
/// because local names cannot contain one but URIs may.
fn split_ns_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix('{')?;
    let end = rest.rfind('}')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Escapes text content. `\r` is written as a reference because a literal
/// one would be normalized to `\n` by the reader.
fn escape_text(s: &str, out: &mut String) {
    escape(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Escapes an attribute value (written in single quotes). Whitespace other
/// than space is written as references because attribute-value
/// normalization would turn it into spaces.
fn escape_attr(s: &str, out: &mut String) {
    escape(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' => Some("&quot;"),
        b'\'' => Some("&apos;"),
        b'\t' => Some("&#9;"),
        b'\n' => Some("&#10;"),
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Copies `s` to `out` in runs, replacing the ASCII bytes `map` names; ASCII
/// bytes never occur inside multi-byte UTF-8 sequences, so slicing is safe.
fn escape(s: &str, out: &mut String, map: impl Fn(u8) -> Option<&'static str>) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if let Some(rep) = map(b) {
            out.push_str(&s[start..i]);
            out.push_str(rep);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}
