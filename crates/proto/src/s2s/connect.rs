//! The initiating side of a server-to-server stream: open the stream, STARTTLS,
//! then authenticate the domain pair by SASL EXTERNAL where the peer offers it
//! (XEP-0178) and by Server Dialback otherwise (XEP-0220). A second use of the same
//! machine only asks an authoritative server to verify a dialback key.

use std::sync::Arc;

use base64::Engine;
use starling_xml::{Element, StreamEvent, StreamHeader, XmlError, STREAM_NS};

use super::accept::{AuthMethod, DialbackOutcome};
use super::{dialback_domain, dialback_element, dialback_key, stream_header, DIALBACK_NS};
use crate::error::{StreamError, StreamErrorCondition};
use crate::{ns, stream_checks};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Authenticate `local` → `remote` to send stanzas.
    Send,
    /// Ask `remote`, the authoritative server, whether `key` is one it issued for the
    /// stream `stream_id` it opened to `local` (XEP-0220 §2.1.2).
    Verify { stream_id: String, key: String },
}

#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub local: String,
    pub remote: String,
    pub secret: Vec<u8>,
    /// Refuse to go on without TLS.
    pub tls_required: bool,
    /// Dialback may authenticate us, and a peer certificate that does not validate
    /// is acceptable (dialback proves the peer through DNS instead).
    pub allow_dialback: bool,
    pub purpose: Purpose,
}

#[derive(Debug)]
pub enum Input {
    Event(StreamEvent),
    XmlError(XmlError),
    /// The TLS handshake completed; whether the peer's certificate is valid for
    /// the remote domain (RFC 6125).
    TlsEstablished {
        peer_certificate_valid: bool,
    },
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Send(String),
    /// Flush, run the TLS handshake as a client, then feed `Input::TlsEstablished`.
    StartTls,
    ResetParser,
    /// The pair is authenticated: stanzas may be written now.
    Ready(AuthMethod),
    /// The answer to a `Purpose::Verify` connection.
    Verified(DialbackOutcome),
    /// Authentication failed or the peer ended the stream; nothing will be sent.
    Failed(String),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHeader,
    AwaitingFeatures,
    AwaitingProceed,
    AwaitingTls,
    AwaitingSasl,
    AwaitingDialback,
    AwaitingVerify,
    Ready,
    Closed,
}

pub struct S2sConnect {
    config: Arc<ConnectConfig>,
    state: State,
    encrypted: bool,
    peer_certificate_valid: bool,
    sasl_succeeded: bool,
    external_failed: bool,
    stream_id: Option<String>,
    /// Features of the current stream, for falling back from SASL to dialback.
    features: Option<Element>,
}

impl S2sConnect {
    /// `encrypted` for a direct-TLS connection whose handshake completed, with the
    /// validity of the peer's certificate.
    pub fn new(config: Arc<ConnectConfig>, encrypted: Option<bool>) -> Self {
        S2sConnect {
            config,
            state: State::AwaitingHeader,
            encrypted: encrypted.is_some(),
            peer_certificate_valid: encrypted.unwrap_or(false),
            sasl_succeeded: false,
            external_failed: false,
            stream_id: None,
            features: None,
        }
    }

    /// Opens the stream; call once, first.
    pub fn start(&mut self, out: &mut Vec<Action>) {
        if self.encrypted && !self.peer_certificate_valid && !self.config.allow_dialback {
            self.give_up("the peer's certificate is not valid", out);
            return;
        }
        self.send_header(out);
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn handle(&mut self, input: Input, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        match input {
            Input::Event(StreamEvent::Open(header)) => self.on_header(header, out),
            Input::Event(StreamEvent::Element(element)) => self.on_element(element, out),
            Input::Event(StreamEvent::Close) => {
                self.give_up("the peer closed the stream", out);
            }
            Input::XmlError(error) => {
                let error = StreamError::from_xml_error(&error);
                self.fail(error, out);
            }
            Input::TlsEstablished {
                peer_certificate_valid,
            } if self.state == State::AwaitingTls => {
                self.encrypted = true;
                self.peer_certificate_valid = peer_certificate_valid;
                if !peer_certificate_valid && !self.config.allow_dialback {
                    self.give_up("the peer's certificate is not valid", out);
                    return;
                }
                self.send_header(out);
            }
            Input::TlsEstablished { .. } => {}
        }
    }

    /// Close the stream with `error`.
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        let text = format!("stream error {}", error.condition.name());
        let mut xml = error.to_element().to_xml(ns::SERVER);
        xml.push_str("</stream:stream>");
        out.push(Action::Send(xml));
        self.close_with(text, out);
    }

    fn give_up(&mut self, reason: &str, out: &mut Vec<Action>) {
        out.push(Action::Send("</stream:stream>".into()));
        self.close_with(reason.to_string(), out);
    }

    fn close_with(&mut self, reason: String, out: &mut Vec<Action>) {
        if self.state != State::Ready {
            match self.config.purpose {
                Purpose::Send => out.push(Action::Failed(reason)),
                Purpose::Verify { .. } => out.push(Action::Verified(DialbackOutcome::Unreachable)),
            }
        }
        out.push(Action::Close);
        self.state = State::Closed;
    }

    fn send_header(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Send(stream_header(
            &self.config.local,
            Some(&self.config.remote),
            None,
        )));
        self.state = State::AwaitingHeader;
    }

    fn on_header(&mut self, header: StreamHeader, out: &mut Vec<Action>) {
        if self.state != State::AwaitingHeader {
            self.fail(stream_checks::header_inside_stream(), out);
            return;
        }
        if let Err(error) = stream_checks::check_namespaces(&header, ns::SERVER) {
            self.fail(error, out);
            return;
        }
        let Some(id) = header.attr("id").filter(|id| !id.is_empty()) else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidXml,
                    "the stream header has no id",
                ),
                out,
            );
            return;
        };
        self.stream_id = Some(id.to_string());
        self.state = State::AwaitingFeatures;
    }

    fn on_element(&mut self, element: Element, out: &mut Vec<Action>) {
        if element.is("error", STREAM_NS) {
            let condition = element
                .elements()
                .find(|child| child.ns == ns::STREAMS && child.name != "text")
                .map(|child| child.name.clone())
                .unwrap_or_else(|| "undefined-condition".into());
            out.push(Action::Send("</stream:stream>".into()));
            self.close_with(format!("the peer sent stream error {condition}"), out);
            return;
        }
        match self.state {
            State::AwaitingFeatures if element.is("features", STREAM_NS) => {
                self.on_features(element, out)
            }
            State::AwaitingProceed if element.is("proceed", ns::TLS) => {
                out.push(Action::StartTls);
                out.push(Action::ResetParser);
                self.state = State::AwaitingTls;
            }
            State::AwaitingProceed if element.is("failure", ns::TLS) => {
                self.give_up("the peer refused STARTTLS", out);
            }
            State::AwaitingSasl if element.is("success", ns::SASL) => {
                self.sasl_succeeded = true;
                out.push(Action::ResetParser);
                self.send_header(out);
            }
            State::AwaitingSasl if element.is("failure", ns::SASL) => {
                self.external_failed = true;
                match self.features.take() {
                    Some(features) => self.on_features(features, out),
                    None => self.give_up("SASL EXTERNAL failed", out),
                }
            }
            State::AwaitingDialback | State::Ready if element.is("result", DIALBACK_NS) => {
                self.on_dialback_result(&element, out)
            }
            State::AwaitingVerify if element.is("verify", DIALBACK_NS) => {
                self.on_dialback_verify(&element, out)
            }
            State::Ready => self.fail(
                StreamError::with_text(
                    StreamErrorCondition::UnsupportedStanzaType,
                    "stanzas travel the other way on this stream",
                ),
                out,
            ),
            _ => self.fail(
                StreamError::with_text(
                    StreamErrorCondition::UnsupportedStanzaType,
                    format!("unexpected <{}/> during negotiation", element.name),
                ),
                out,
            ),
        }
    }

    fn on_features(&mut self, features: Element, out: &mut Vec<Action>) {
        if !self.encrypted {
            if features.child("starttls", ns::TLS).is_some() {
                out.push(Action::Send(format!("<starttls xmlns='{}'/>", ns::TLS)));
                self.state = State::AwaitingProceed;
                return;
            }
            if self.config.tls_required {
                self.fail(
                    StreamError::with_text(
                        StreamErrorCondition::PolicyViolation,
                        "this server federates only over TLS",
                    ),
                    out,
                );
                return;
            }
        }
        if let Purpose::Verify { stream_id, key } = &self.config.purpose {
            out.push(Action::Send(dialback_element(
                "verify",
                &self.config.local,
                &self.config.remote,
                Some(stream_id),
                None,
                Some(key),
            )));
            self.state = State::AwaitingVerify;
            return;
        }
        if self.sasl_succeeded {
            out.push(Action::Ready(AuthMethod::Certificate));
            self.state = State::Ready;
            return;
        }
        let offers_external = features
            .child("mechanisms", ns::SASL)
            .is_some_and(|mechanisms| {
                mechanisms
                    .elements()
                    .any(|m| m.name == "mechanism" && m.text().trim() == "EXTERNAL")
            });
        if offers_external && !self.external_failed {
            let authzid =
                base64::engine::general_purpose::STANDARD.encode(self.config.local.as_bytes());
            out.push(Action::Send(format!(
                "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
                ns::SASL
            )));
            self.features = Some(features);
            self.state = State::AwaitingSasl;
            return;
        }
        if !self.config.allow_dialback {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "the peer does not accept our certificate and dialback is disabled",
                ),
                out,
            );
            return;
        }
        let stream_id = self.stream_id.clone().unwrap_or_default();
        let key = dialback_key(
            &self.config.secret,
            &self.config.remote,
            &self.config.local,
            &stream_id,
        );
        out.push(Action::Send(dialback_element(
            "result",
            &self.config.local,
            &self.config.remote,
            None,
            None,
            Some(&key),
        )));
        self.state = State::AwaitingDialback;
    }

    fn on_dialback_result(&mut self, result: &Element, out: &mut Vec<Action>) {
        let ours = dialback_domain(result, "from").as_deref() == Some(self.config.remote.as_str())
            && dialback_domain(result, "to").as_deref() == Some(self.config.local.as_str());
        if !ours {
            // XEP-0220 §3.1: answers must match a request sent on this stream.
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidFrom,
                    "a dialback answer for a pair we did not ask for",
                ),
                out,
            );
            return;
        }
        if self.state == State::Ready {
            return;
        }
        match result.attr("type") {
            Some("valid") => {
                out.push(Action::Ready(AuthMethod::Dialback));
                self.state = State::Ready;
            }
            Some(kind) => {
                let kind = kind.to_string();
                self.give_up(&format!("dialback answered {kind}"), out);
            }
            None => self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidXml,
                    "a dialback answer without a type",
                ),
                out,
            ),
        }
    }

    fn on_dialback_verify(&mut self, verify: &Element, out: &mut Vec<Action>) {
        let Purpose::Verify { stream_id, .. } = &self.config.purpose else {
            return;
        };
        if verify.attr("id") != Some(stream_id.as_str()) {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidXml,
                    "a verification answer for another stream",
                ),
                out,
            );
            return;
        }
        let outcome = match verify.attr("type") {
            Some("valid") => DialbackOutcome::Valid,
            Some("invalid") => DialbackOutcome::Invalid,
            _ => DialbackOutcome::Unreachable,
        };
        out.push(Action::Verified(outcome));
        out.push(Action::Send("</stream:stream>".into()));
        out.push(Action::Close);
        self.state = State::Closed;
    }
}
