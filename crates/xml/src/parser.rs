use rxml::error::EndOrError;
use rxml::{AttrMap, Event, Options, Parse, Parser, RawEvent, RawParser, WithOptions};

use crate::element::{Element, Node};
use crate::XML_NS;

/// Bytes allowed before the stream header's start tag is complete (XML
/// declaration included).
const MAX_HEADER_BYTES: usize = 8192;

/// The opening tag of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Local name, should be "stream".
    pub name: String,
    /// Namespace of the root element, should be [`crate::STREAM_NS`].
    pub ns: String,
    /// The default namespace declared on the root (the content namespace,
    /// e.g. "jabber:client"); `None` if not declared or declared empty.
    pub default_ns: Option<String>,
    /// Same key scheme as [`Element::attrs`].
    pub attrs: Vec<(String, String)>,
}

impl StreamHeader {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The root start tag is complete.
    Open(StreamHeader),
    /// A complete child of the root (a stanza or stream-level element).
    Element(Element),
    /// The root element ended.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// A feature RFC 6120 §11.1 prohibits: DTDs, processing instructions,
    /// comments, entity references other than the predefined ones.
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    /// A top-level element, a single token or the stream header is too large.
    #[error("stanza too large: {0}")]
    TooLarge(String),
    /// Nesting depth or attribute count over the limits.
    #[error("too deep or too many attributes: {0}")]
    LimitExceeded(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one top-level element, from its `<` to the end of its end tag.
    pub max_stanza_bytes: usize,
    /// Nesting depth below the stream root; a stanza itself is at depth 1.
    pub max_depth: usize,
    /// Attributes on one element (namespace declarations not counted).
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 262_144,
            max_depth: 64,
            max_attributes: 64,
        }
    }
}

/// Incremental parser for one XML stream, fed bytes as they arrive.
#[derive(Debug)]
pub struct StreamParser {
    limits: Limits,
    /// `None` while released between top-level elements (see `release_buffers`).
    parser: Option<Box<Parser>>,
    /// The bytes of the document up to the end of the root start tag, to bring a
    /// released parser back to where it was.
    header_bytes: Vec<u8>,
    /// rxml's namespace resolver drops declarations, so the root start tag is
    /// also run through a raw parser to learn the declared default namespace.
    /// `None` once the root start tag has been seen.
    header_sniffer: Option<RawParser>,
    default_ns: Option<String>,
    opened: bool,
    /// Bytes consumed by rxml since the document began.
    consumed: usize,
    /// Bytes covered by the events emitted so far; events are consecutive, so
    /// `consumed - accounted` is the unfinished token rxml is buffering.
    accounted: usize,
    /// Bytes of the events of the top-level element being built.
    stanza_bytes: usize,
    /// Open elements below the root; the first is the stanza.
    stack: Vec<Element>,
    /// Between top-level elements (and before the root) only whitespace may
    /// precede the next `<`. rxml holds text back until it sees a `<`, so
    /// garbage would otherwise go unreported until then.
    awaiting_tag: bool,
    error: Option<XmlError>,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            parser: Some(Box::new(new_rxml_parser(&limits))),
            header_bytes: Vec::new(),
            header_sniffer: Some(RawParser::with_options(rxml_options(&limits))),
            default_ns: None,
            opened: false,
            consumed: 0,
            accounted: 0,
            stanza_bytes: 0,
            stack: Vec::new(),
            awaiting_tag: true,
            error: None,
        }
    }

    /// Feed received bytes; complete events are appended to `out` (also those
    /// completed before an error in the same call). After an error the parser
    /// is dead and keeps returning that error.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.feed_inner(data, out);
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    /// Forget everything for a stream restart (after STARTTLS / SASL
    /// success): the next bytes start a new document.
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Frees the parser's buffers while the stream is between top-level
    /// elements, for a connection that has gone quiet; the next `feed` rebuilds
    /// them from the stream header. Whitespace waiting for the next element is
    /// dropped. Returns whether anything was released.
    pub fn release_buffers(&mut self) -> bool {
        let between_elements = self.opened && self.stack.is_empty() && self.awaiting_tag;
        if !between_elements || self.error.is_some() || self.parser.is_none() {
            return false;
        }
        self.parser = None;
        self.accounted = self.consumed;
        self.stack = Vec::new();
        true
    }

    /// The rxml parser, rebuilt after `release_buffers` by feeding it the stream
    /// header again (its events were reported when it first arrived).
    fn rxml(&mut self) -> Result<&mut Parser, XmlError> {
        if self.parser.is_none() {
            let mut parser = new_rxml_parser(&self.limits);
            let mut header = self.header_bytes.as_slice();
            loop {
                match parser.parse(&mut header, false) {
                    Ok(Some(Event::StartElement(..))) => break,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(EndOrError::NeedMoreData) => {
                        return Err(XmlError::NotWellFormed("stream header cut short".into()))
                    }
                    Err(EndOrError::Error(e)) => return Err(classify(e)),
                }
            }
            self.parser = Some(Box::new(parser));
        }
        Ok(self.parser.as_mut().expect("parser present"))
    }

    /// Keeps the document's bytes until the root start tag has been parsed.
    fn keep_header_bytes(&mut self, data: &[u8]) {
        if !self.opened {
            let room = (MAX_HEADER_BYTES + 1).saturating_sub(self.header_bytes.len());
            self.header_bytes
                .extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn feed_inner(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
        self.sniff_header(data);
        self.keep_header_bytes(data);
        let mut buf = data;
        loop {
            let before = buf.len();
            let result = self.rxml()?.parse(&mut buf, false);
            self.consumed += before - buf.len();
            match result {
                Ok(Some(ev)) => {
                    self.accounted += ev.metrics().len();
                    self.handle(ev, out)?;
                    self.check_size()?;
                    self.awaiting_tag = self.stack.is_empty();
                }
                Ok(None) => break,
                Err(EndOrError::NeedMoreData) => {
                    debug_assert!(buf.is_empty(), "rxml wants more data with input left");
                    break;
                }
                Err(EndOrError::Error(e)) => return Err(classify(e)),
            }
        }
        self.check_text_outside_elements(data)?;
        self.check_size()
    }

    /// The bytes rxml buffers after its last event are the tail of `data` (or
    /// all of it, continuing earlier calls); outside any element they must be
    /// whitespace up to the next `<`.
    fn check_text_outside_elements(&mut self, data: &[u8]) -> Result<(), XmlError> {
        if !self.awaiting_tag || !self.stack.is_empty() {
            return Ok(());
        }
        let pending = (self.consumed - self.accounted).min(data.len());
        for &byte in &data[data.len() - pending..] {
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'<' => {
                    self.awaiting_tag = false;
                    return Ok(());
                }
                _ => {
                    return Err(XmlError::NotWellFormed(if self.opened {
                        "text between top-level elements".into()
                    } else {
                        "text before the stream header".into()
                    }))
                }
            }
        }
        Ok(())
    }

    fn sniff_header(&mut self, data: &[u8]) {
        let Some(raw) = self.header_sniffer.as_mut() else {
            return;
        };
        let mut buf = data;
        loop {
            match raw.parse(&mut buf, false) {
                Ok(Some(RawEvent::Attribute(_, (None, name), value))) if name == "xmlns" => {
                    self.default_ns = (!value.is_empty()).then_some(value);
                }
                Ok(Some(RawEvent::ElementHeadClose(_))) | Ok(None) => break,
                Ok(Some(_)) => {}
                Err(EndOrError::NeedMoreData) => return,
                // The main parser sees the same bytes and reports the error.
                Err(EndOrError::Error(_)) => break,
            }
        }
        self.header_sniffer = None;
    }

    /// Enforces the size limits including the token rxml is still buffering,
    /// so that an element that never ends is rejected once it passes the
    /// limit rather than when it completes.
    fn check_size(&self) -> Result<(), XmlError> {
        let pending = self.consumed - self.accounted;
        if !self.opened {
            if self.consumed > MAX_HEADER_BYTES {
                return Err(header_too_large());
            }
        } else if self.stanza_bytes + pending > self.limits.max_stanza_bytes {
            return Err(XmlError::TooLarge(format!(
                "element over {} bytes",
                self.limits.max_stanza_bytes
            )));
        }
        Ok(())
    }

    fn handle(&mut self, ev: Event, out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(metrics, (ns, name), attrs) => {
                if attrs.len() > self.limits.max_attributes {
                    return Err(XmlError::LimitExceeded(format!(
                        "{} attributes on <{}>, limit {}",
                        attrs.len(),
                        name.as_str(),
                        self.limits.max_attributes
                    )));
                }
                if !self.opened {
                    // The header tag may have completed within the chunk
                    // that took it past the limit.
                    if self.consumed > MAX_HEADER_BYTES {
                        return Err(header_too_large());
                    }
                    self.opened = true;
                    // rxml reports the start tag as soon as its `>` is consumed.
                    self.header_bytes.truncate(self.consumed);
                    self.header_bytes.shrink_to_fit();
                    out.push(StreamEvent::Open(StreamHeader {
                        name: name.as_str().to_owned(),
                        ns: ns.as_str().to_owned(),
                        default_ns: self.default_ns.take(),
                        attrs: convert_attrs(attrs),
                    }));
                    return Ok(());
                }
                if self.stack.len() >= self.limits.max_depth {
                    return Err(XmlError::LimitExceeded(format!(
                        "nesting deeper than {}",
                        self.limits.max_depth
                    )));
                }
                self.stanza_bytes += metrics.len();
                self.stack.push(Element {
                    name: name.as_str().to_owned(),
                    ns: ns.as_str().to_owned(),
                    attrs: convert_attrs(attrs),
                    children: Vec::new(),
                });
            }
            Event::Text(metrics, text) => match self.stack.last_mut() {
                Some(parent) => {
                    self.stanza_bytes += metrics.len();
                    push_text(parent, text);
                }
                None if is_xml_whitespace(&text) => {}
                None => {
                    return Err(XmlError::NotWellFormed(
                        "text between top-level elements".into(),
                    ))
                }
            },
            Event::EndElement(metrics) => match self.stack.pop() {
                Some(done) => {
                    self.stanza_bytes += metrics.len();
                    match self.stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(done)),
                        None => {
                            // The final check, covering a stanza that arrived whole.
                            self.check_size()?;
                            self.stanza_bytes = 0;
                            out.push(StreamEvent::Element(done));
                        }
                    }
                }
                None => out.push(StreamEvent::Close),
            },
        }
        Ok(())
    }
}

fn header_too_large() -> XmlError {
    XmlError::TooLarge(format!("stream header over {MAX_HEADER_BYTES} bytes"))
}

/// The longest element or attribute name or attribute value; longer text is
/// handed over in chunks of this size. The longest JID is 3071 bytes (RFC 7622
/// §3.1). rxml reserves this much for every parser, so it is kept well below the
/// stanza limit: idle connections should not hold stanza-sized buffers.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

fn rxml_options(limits: &Limits) -> Options {
    Options {
        max_token_length: limits.max_stanza_bytes.clamp(1024, MAX_TOKEN_BYTES),
        ..Options::default()
    }
}

fn new_rxml_parser(limits: &Limits) -> Parser {
    Parser::with_options(rxml_options(limits))
}

fn convert_attrs(attrs: AttrMap) -> Vec<(String, String)> {
    attrs
        .into_iter()
        .map(|((ns, name), value)| {
            let key = match ns.as_str() {
                "" => name.as_str().to_owned(),
                XML_NS => format!("xml:{}", name.as_str()),
                uri => format!("{{{uri}}}{}", name.as_str()),
            };
            (key, value)
        })
        .collect()
}

/// Appends text, merging with a preceding text node because rxml may split
/// one run of character data into several events.
fn push_text(parent: &mut Element, text: String) {
    if text.is_empty() {
        return;
    }
    match parent.children.last_mut() {
        Some(Node::Text(prev)) => prev.push_str(&text),
        _ => parent.children.push(Node::Text(text)),
    }
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Maps rxml's errors onto the RFC 6120 stream error conditions.
fn classify(e: rxml::Error) -> XmlError {
    use rxml::Error as E;
    let msg = e.to_string();
    match e {
        // Token buffer or event length overflow.
        E::RestrictedXml("long name or reference" | "event too long") => XmlError::TooLarge(msg),
        // XML declaration with a version other than 1.0, a non-UTF-8
        // encoding or standalone='no': not a §11.1 feature, just input we
        // cannot accept.
        E::RestrictedXml(m) if m.starts_with("only ") => XmlError::NotWellFormed(msg),
        // Comments and processing instructions.
        E::RestrictedXml(_) => XmlError::RestrictedXml(msg),
        E::UndeclaredEntity => XmlError::RestrictedXml(msg),
        // `<!` not followed by `--` or `[CDATA[`: a markup declaration such
        // as `<!DOCTYPE`, `<!ENTITY` (rxml does not look further).
        E::InvalidSyntax("malformed cdata or comment section start") => {
            XmlError::RestrictedXml(msg)
        }
        _ => XmlError::NotWellFormed(msg),
    }
}
