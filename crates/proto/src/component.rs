//! The sans-IO accept side of an external component stream (XEP-0114).
//!
//! A component opens a stream in `jabber:component:accept` addressed to its own
//! domain, proves it knows the shared secret with `<handshake/>` (hex SHA-1 of the
//! stream id and the secret), and then exchanges stanzas for any JID at its domain.
//! The machine validates and answers; the shell registers the component with the
//! router once the handshake succeeds and routes what it is handed.

use std::collections::HashMap;
use std::sync::Arc;

use sha1::{Digest, Sha1};
use starling_xml::{Element, Node, StreamEvent, StreamHeader, XmlError, STREAM_NS};
use subtle::ConstantTimeEq;

use crate::error::{StreamError, StreamErrorCondition};
use crate::jid::Jid;
use crate::ns;
use crate::stream_checks;

pub const COMPONENT_ACCEPT_NS: &str = "jabber:component:accept";

/// The components a listener accepts: domain → shared secret.
#[derive(Debug, Clone, Default)]
pub struct ComponentConfig {
    pub secrets: HashMap<String, String>,
}

#[derive(Debug)]
pub enum Input {
    Event(StreamEvent),
    XmlError(XmlError),
    /// The component did not complete its handshake in time.
    NegotiationTimeout,
    /// The answer to `Action::Authenticated`: registered with the router, or
    /// refused because the domain is already connected.
    Registered(Result<(), StreamError>),
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Send(String),
    /// The handshake is right: register `domain` with the router, then feed
    /// `Input::Registered`.
    Authenticated {
        domain: String,
    },
    /// A validated stanza from the component; route it.
    Route(Element),
    /// Flush what was sent and close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHeader,
    AwaitingHandshake,
    AwaitingRegistration,
    Connected,
    Closed,
}

pub struct ComponentServer {
    config: Arc<ComponentConfig>,
    state: State,
    stream_id: String,
    domain: Option<String>,
    header_sent: bool,
}

impl ComponentServer {
    pub fn new(config: Arc<ComponentConfig>) -> Self {
        ComponentServer {
            config,
            state: State::AwaitingHeader,
            stream_id: crate::c2s::random_token(16),
            domain: None,
            header_sent: false,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The component's domain once its stream is open.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    pub fn handle(&mut self, input: Input, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        match input {
            Input::Event(StreamEvent::Open(header)) => self.on_header(header, out),
            Input::Event(StreamEvent::Element(element)) => self.on_element(element, out),
            Input::Event(StreamEvent::Close) => {
                self.ensure_header(out);
                out.push(Action::Send("</stream:stream>".into()));
                out.push(Action::Close);
                self.state = State::Closed;
            }
            Input::XmlError(error) => self.fail(StreamError::from_xml_error(&error), out),
            Input::NegotiationTimeout => {
                if self.state != State::Connected {
                    self.fail(
                        StreamError::new(StreamErrorCondition::ConnectionTimeout),
                        out,
                    );
                }
            }
            Input::Registered(Ok(())) if self.state == State::AwaitingRegistration => {
                out.push(Action::Send("<handshake/>".into()));
                self.state = State::Connected;
            }
            Input::Registered(Err(error)) if self.state == State::AwaitingRegistration => {
                self.fail(error, out);
            }
            Input::Registered(_) => {}
        }
    }

    /// Close the stream with `error` (after a header if none was sent yet).
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        self.ensure_header(out);
        let mut xml = error.to_element().to_xml(COMPONENT_ACCEPT_NS);
        xml.push_str("</stream:stream>");
        out.push(Action::Send(xml));
        out.push(Action::Close);
        self.state = State::Closed;
    }

    fn ensure_header(&mut self, out: &mut Vec<Action>) {
        if !self.header_sent {
            out.push(Action::Send(self.header()));
            self.header_sent = true;
        }
    }

    fn header(&self) -> String {
        let from = self
            .domain
            .as_deref()
            .map(|d| format!(" from='{d}'"))
            .unwrap_or_default();
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_ACCEPT_NS}' \
             xmlns:stream='{STREAM_NS}' id='{}'{from}>",
            self.stream_id
        )
    }

    fn on_header(&mut self, header: StreamHeader, out: &mut Vec<Action>) {
        if self.state != State::AwaitingHeader {
            self.fail(stream_checks::header_inside_stream(), out);
            return;
        }
        if let Err(error) = stream_checks::check_namespaces(&header, COMPONENT_ACCEPT_NS) {
            self.fail(error, out);
            return;
        }
        let domain = stream_checks::addressed_domain(&header)
            .filter(|domain| self.config.secrets.contains_key(domain));
        let Some(domain) = domain else {
            self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
            return;
        };
        self.domain = Some(domain);
        self.ensure_header(out);
        self.state = State::AwaitingHandshake;
    }

    fn on_element(&mut self, element: Element, out: &mut Vec<Action>) {
        match self.state {
            State::AwaitingHandshake => self.on_handshake(element, out),
            State::Connected => self.on_stanza(element, out),
            State::AwaitingRegistration => self.fail(
                StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "stanzas before the handshake is confirmed",
                ),
                out,
            ),
            State::AwaitingHeader | State::Closed => {}
        }
    }

    fn on_handshake(&mut self, element: Element, out: &mut Vec<Action>) {
        if !element.is("handshake", COMPONENT_ACCEPT_NS) {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "the handshake comes first",
                ),
                out,
            );
            return;
        }
        let domain = self.domain.clone().unwrap_or_default();
        let secret = self
            .config
            .secrets
            .get(&domain)
            .cloned()
            .unwrap_or_default();
        let expected = handshake_digest(&self.stream_id, &secret);
        let given = element.text().trim().to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            self.fail(StreamError::new(StreamErrorCondition::NotAuthorized), out);
            return;
        }
        out.push(Action::Authenticated { domain });
        self.state = State::AwaitingRegistration;
    }

    fn on_stanza(&mut self, mut stanza: Element, out: &mut Vec<Action>) {
        if stanza.ns != COMPONENT_ACCEPT_NS
            || !matches!(stanza.name.as_str(), "message" | "presence" | "iq")
        {
            self.fail(
                StreamError::new(StreamErrorCondition::UnsupportedStanzaType),
                out,
            );
            return;
        }
        let domain = self.domain.as_deref().unwrap_or_default();
        let from = stanza.attr("from").and_then(|from| Jid::parse(from).ok());
        let Some(from) = from.filter(|jid| jid.domain() == domain) else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidFrom,
                    format!("a component speaks only for JIDs at {domain}"),
                ),
                out,
            );
            return;
        };
        let to = stanza.attr("to").and_then(|to| Jid::parse(to).ok());
        let Some(to) = to else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    "a stanza from a component needs a valid 'to'",
                ),
                out,
            );
            return;
        };
        stanza.set_attr("from", from.to_string());
        stanza.set_attr("to", to.to_string());
        rename_ns(&mut stanza, COMPONENT_ACCEPT_NS, ns::CLIENT);
        out.push(Action::Route(stanza));
    }
}

/// A stanza as the router holds it (`jabber:client`) in the component stream's
/// content namespace, for writing to the component.
pub fn to_component_ns(mut stanza: Element) -> Element {
    rename_ns(&mut stanza, ns::CLIENT, COMPONENT_ACCEPT_NS);
    stanza
}

/// The stanza and its descendants in namespace `from` move to `to`; payloads in
/// their own namespaces are left as they are.
pub(crate) fn rename_ns(element: &mut Element, from: &str, to: &str) {
    if element.ns == from {
        element.ns = to.to_string();
    }
    for child in &mut element.children {
        if let Node::Element(child) = child {
            rename_ns(child, from, to);
        }
    }
}

/// XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> ComponentServer {
        let mut secrets = HashMap::new();
        secrets.insert("irc.example.org".to_string(), "s3cret".to_string());
        ComponentServer::new(Arc::new(ComponentConfig { secrets }))
    }

    fn header(to: &str, default_ns: &str) -> Input {
        Input::Event(StreamEvent::Open(StreamHeader {
            name: "stream".into(),
            ns: STREAM_NS.into(),
            default_ns: Some(default_ns.into()),
            attrs: vec![("to".into(), to.into())],
        }))
    }

    fn feed(machine: &mut ComponentServer, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        machine.handle(input, &mut out);
        out
    }

    fn element(xml: &str) -> Input {
        Input::Event(StreamEvent::Element(
            Element::from_xml(xml, COMPONENT_ACCEPT_NS).expect("test XML"),
        ))
    }

    fn assert_stream_error(actions: &[Action], condition: &str) {
        let sent: String = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(xml) => Some(xml.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            sent.contains(&format!("<{condition} ")),
            "{condition}: {sent}"
        );
        assert!(sent.ends_with("</stream:stream>"), "{sent}");
        assert_eq!(actions.last(), Some(&Action::Close));
    }

    /// Opens the stream and returns the stream id the machine announced.
    fn open(machine: &mut ComponentServer) -> String {
        let actions = feed(machine, header("irc.example.org", COMPONENT_ACCEPT_NS));
        let [Action::Send(reply)] = actions.as_slice() else {
            panic!("one header: {actions:?}")
        };
        assert!(reply.contains("from='irc.example.org'"), "{reply}");
        assert!(
            !reply.contains("version='1.0' "),
            "XEP-0114 streams carry no version: {reply}"
        );
        reply
            .split("id='")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("stream id")
            .to_string()
    }

    fn connected() -> ComponentServer {
        let mut machine = machine();
        let id = open(&mut machine);
        let digest = handshake_digest(&id, "s3cret");
        let actions = feed(
            &mut machine,
            element(&format!("<handshake>{digest}</handshake>")),
        );
        assert_eq!(
            actions,
            vec![Action::Authenticated {
                domain: "irc.example.org".into()
            }]
        );
        let actions = feed(&mut machine, Input::Registered(Ok(())));
        assert_eq!(actions, vec![Action::Send("<handshake/>".into())]);
        assert!(machine.is_connected());
        machine
    }

    #[test]
    fn handshake_digest_is_lowercase_hex_sha1_of_id_and_secret() {
        // Computed independently: hashlib.sha1(b"3BF96D32secret").hexdigest().
        assert_eq!(
            handshake_digest("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
    }

    #[test]
    fn right_secret_connects_after_the_router_accepts_the_domain() {
        connected();
    }

    #[test]
    fn wrong_secret_gets_not_authorized() {
        let mut machine = machine();
        let id = open(&mut machine);
        let digest = handshake_digest(&id, "guess");
        let actions = feed(
            &mut machine,
            element(&format!("<handshake>{digest}</handshake>")),
        );
        assert_stream_error(&actions, "not-authorized");
    }

    #[test]
    fn unknown_domain_gets_host_unknown() {
        let mut machine = machine();
        let actions = feed(
            &mut machine,
            header("mail.example.org", COMPONENT_ACCEPT_NS),
        );
        assert_stream_error(&actions, "host-unknown");
    }

    #[test]
    fn client_namespace_gets_invalid_namespace() {
        let mut machine = machine();
        let actions = feed(&mut machine, header("irc.example.org", ns::CLIENT));
        assert_stream_error(&actions, "invalid-namespace");
    }

    #[test]
    fn stanzas_before_the_handshake_get_not_authorized() {
        let mut machine = machine();
        open(&mut machine);
        let actions = feed(
            &mut machine,
            element("<message from='x@irc.example.org' to='alice@localhost'/>"),
        );
        assert_stream_error(&actions, "not-authorized");
    }

    #[test]
    fn an_already_connected_domain_is_refused_with_conflict() {
        let mut machine = machine();
        let id = open(&mut machine);
        let digest = handshake_digest(&id, "s3cret");
        feed(
            &mut machine,
            element(&format!("<handshake>{digest}</handshake>")),
        );
        let actions = feed(
            &mut machine,
            Input::Registered(Err(StreamError::new(StreamErrorCondition::Conflict))),
        );
        assert_stream_error(&actions, "conflict");
    }

    #[test]
    fn stanzas_from_the_domain_are_routed_in_the_client_namespace() {
        let mut machine = connected();
        let actions = feed(
            &mut machine,
            element(
                "<message from='#chan%irc.net@irc.example.org/nick' to='alice@localhost' type='groupchat'>\
                 <body>hi</body><x xmlns='urn:example'><body/></x></message>",
            ),
        );
        let [Action::Route(stanza)] = actions.as_slice() else {
            panic!("routed: {actions:?}")
        };
        assert_eq!(stanza.ns, ns::CLIENT);
        assert!(stanza.child("body", ns::CLIENT).is_some());
        let extension = stanza.child("x", "urn:example").expect("payload kept");
        assert!(extension.child("body", "urn:example").is_some());
        let back = to_component_ns(stanza.clone());
        assert!(back.to_xml(COMPONENT_ACCEPT_NS).starts_with("<message "));
    }

    #[test]
    fn stanzas_from_another_domain_get_invalid_from() {
        for from in ["alice@localhost", "irc.example.org.evil", ""] {
            let mut machine = connected();
            let actions = feed(
                &mut machine,
                element(&format!("<message from='{from}' to='alice@localhost'/>")),
            );
            assert_stream_error(&actions, "invalid-from");
        }
    }

    #[test]
    fn stanzas_without_a_valid_to_get_improper_addressing() {
        let mut machine = connected();
        let actions = feed(
            &mut machine,
            element("<message from='bot@irc.example.org'/>"),
        );
        assert_stream_error(&actions, "improper-addressing");
    }

    #[test]
    fn other_elements_get_unsupported_stanza_type() {
        let mut machine = connected();
        let actions = feed(&mut machine, element("<handshake/>"));
        assert_stream_error(&actions, "unsupported-stanza-type");
    }

    #[test]
    fn silence_before_the_handshake_gets_connection_timeout() {
        let mut machine = machine();
        open(&mut machine);
        let actions = feed(&mut machine, Input::NegotiationTimeout);
        assert_stream_error(&actions, "connection-timeout");
        let mut machine = connected();
        assert!(feed(&mut machine, Input::NegotiationTimeout).is_empty());
    }
}
