//! The receiving side of a server-to-server stream: STARTTLS, then each domain
//! pair the peer speaks for is authenticated by SASL EXTERNAL with a certificate
//! (XEP-0178) or by Server Dialback (XEP-0220), possibly several pairs on one
//! stream (piggybacking). Only stanzas of an authenticated pair are routed.
//! The machine also answers `db:verify` for keys this server issued.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use starling_xml::{Element, StreamEvent, StreamHeader, XmlError};
use subtle::ConstantTimeEq;

use super::{
    address_domain, dialback_domain, dialback_element, dialback_key, from_server_ns, stream_header,
    DIALBACK_FEATURE_NS, DIALBACK_NS,
};
use crate::error::{StreamError, StreamErrorCondition};
use crate::{ns, stream_checks};

/// What incoming server streams accept; shared by the listener's connections.
#[derive(Debug, Clone)]
pub struct AcceptConfig {
    /// Domains hosted here; a stream or dialback request for another is refused.
    pub domains: Vec<String>,
    /// The server secret dialback keys derive from (XEP-0185).
    pub secret: Vec<u8>,
    /// Nothing but STARTTLS before the stream is encrypted.
    pub tls_required: bool,
    /// A peer without a valid certificate may authenticate by dialback.
    pub allow_dialback: bool,
}

/// Dialback verifications one stream may have running at once.
pub const MAX_VERIFYING: usize = 8;

/// How a domain pair was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL EXTERNAL, or dialback answered at once from a valid certificate (XEP-0344).
    Certificate,
    /// Dialback verified with the peer's authoritative server.
    Dialback,
}

/// What the authoritative server said about a dialback key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialbackOutcome {
    Valid,
    Invalid,
    /// The authoritative server could not be reached or did not answer.
    Unreachable,
}

#[derive(Debug)]
pub enum Input {
    Event(StreamEvent),
    XmlError(XmlError),
    /// The stream was not opened and authenticated in time.
    NegotiationTimeout,
    /// The TLS handshake after `<proceed/>` completed.
    TlsEstablished,
    /// The answer to `Action::CheckCertificate`.
    CertificateChecked {
        domain: String,
        valid: bool,
    },
    /// The answer to `Action::VerifyDialback`.
    DialbackVerified {
        originating: String,
        receiving: String,
        outcome: DialbackOutcome,
    },
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Send(String),
    /// Flush, run the TLS handshake, then feed `Input::TlsEstablished`.
    StartTls,
    /// The next bytes start a new XML document.
    ResetParser,
    /// Validate the peer's TLS certificate for `domain` (RFC 6125), then feed
    /// `Input::CertificateChecked`.
    CheckCertificate {
        domain: String,
    },
    /// Ask the authoritative server of `originating` whether `key` is one it issued
    /// for this stream (`db:verify`), then feed `Input::DialbackVerified`.
    VerifyDialback {
        originating: String,
        receiving: String,
        key: String,
        stream_id: String,
    },
    /// Stanzas from `remote` to `local` are now accepted on this stream.
    Authenticated {
        remote: String,
        local: String,
        method: AuthMethod,
    },
    /// A stanza of an authenticated pair, in the internal namespace; route it.
    Route(Element),
    /// Flush what was sent and close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHeader,
    /// The header is answered; features wait for the certificate check of its `from`.
    AwaitingCertificateCheck,
    Negotiating,
    AwaitingTls,
    Closed,
}

/// A `db:result` waiting for a certificate check or for the authoritative server.
#[derive(Debug)]
struct PendingResult {
    originating: String,
    receiving: String,
    key: String,
}

pub struct S2sAccept {
    config: Arc<AcceptConfig>,
    state: State,
    header_sent: bool,
    encrypted: bool,
    stream_id: String,
    /// The local domain the peer opened the stream to.
    local: Option<String>,
    /// The peer's domain as its header states it, if it did.
    peer: Option<String>,
    certificate_valid_for: HashMap<String, bool>,
    pending: Vec<PendingResult>,
    /// Dialback keys out with their authoritative servers.
    verifying: usize,
    /// Authenticated (remote, local) pairs.
    pairs: Vec<(String, String)>,
}

impl S2sAccept {
    pub fn new(config: Arc<AcceptConfig>, encrypted: bool) -> Self {
        S2sAccept {
            config,
            state: State::AwaitingHeader,
            header_sent: false,
            encrypted,
            stream_id: crate::c2s::random_token(16),
            local: None,
            peer: None,
            certificate_valid_for: HashMap::new(),
            pending: Vec::new(),
            verifying: 0,
            pairs: Vec::new(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// At least one domain pair is authenticated.
    pub fn is_authenticated(&self) -> bool {
        !self.pairs.is_empty()
    }

    /// The id of the current stream, which dialback keys are bound to.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The peer's domain as its stream header states it.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
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
                if self.pairs.is_empty() {
                    self.fail(
                        StreamError::new(StreamErrorCondition::ConnectionTimeout),
                        out,
                    );
                }
            }
            Input::TlsEstablished if self.state == State::AwaitingTls => {
                self.encrypted = true;
                self.header_sent = false;
                self.state = State::AwaitingHeader;
            }
            Input::TlsEstablished => {}
            Input::CertificateChecked { domain, valid } => {
                self.certificate_valid_for.insert(domain.clone(), valid);
                if self.state == State::AwaitingCertificateCheck
                    && self.peer.as_deref() == Some(domain.as_str())
                {
                    self.send_features(out);
                }
                let (ready, waiting) = std::mem::take(&mut self.pending)
                    .into_iter()
                    .partition(|p| p.originating == domain);
                self.pending = waiting;
                for result in ready {
                    self.decide_result(result, out);
                }
            }
            Input::DialbackVerified {
                originating,
                receiving,
                outcome,
            } => self.on_dialback_verified(originating, receiving, outcome, out),
        }
    }

    /// Close the stream with `error` (after our header if none was sent yet).
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        self.ensure_header(out);
        let mut xml = error.to_element().to_xml(ns::SERVER);
        xml.push_str("</stream:stream>");
        out.push(Action::Send(xml));
        out.push(Action::Close);
        self.state = State::Closed;
    }

    fn ensure_header(&mut self, out: &mut Vec<Action>) {
        if !self.header_sent {
            let from = self
                .local
                .clone()
                .or_else(|| self.config.domains.first().cloned())
                .unwrap_or_default();
            out.push(Action::Send(stream_header(
                &from,
                self.peer.as_deref(),
                Some(&self.stream_id),
            )));
            self.header_sent = true;
        }
    }

    fn on_header(&mut self, header: StreamHeader, out: &mut Vec<Action>) {
        if self.state != State::AwaitingHeader {
            self.fail(stream_checks::header_inside_stream(), out);
            return;
        }
        self.stream_id = crate::c2s::random_token(16);
        if let Err(error) = stream_checks::check_namespaces(&header, ns::SERVER) {
            self.fail(error, out);
            return;
        }
        let local = stream_checks::addressed_domain(&header)
            .filter(|domain| self.config.domains.contains(domain));
        let Some(local) = local else {
            self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
            return;
        };
        let peer = header.attr("from").and_then(stream_checks::bare_domain);
        if peer.is_some() && self.peer.is_some() && peer != self.peer {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidFrom,
                    "the restarted stream names another domain",
                ),
                out,
            );
            return;
        }
        self.local = Some(local);
        if peer.is_some() {
            self.peer = peer;
        }
        self.ensure_header(out);
        match &self.peer {
            Some(peer)
                if self.encrypted
                    && self.pairs.is_empty()
                    && !self.certificate_valid_for.contains_key(peer) =>
            {
                out.push(Action::CheckCertificate {
                    domain: peer.clone(),
                });
                self.state = State::AwaitingCertificateCheck;
            }
            _ => self.send_features(out),
        }
    }

    fn send_features(&mut self, out: &mut Vec<Action>) {
        let mut features = String::from("<stream:features>");
        if !self.encrypted {
            features.push_str(&format!("<starttls xmlns='{}'>", ns::TLS));
            if self.config.tls_required {
                features.push_str("<required/>");
            }
            features.push_str("</starttls>");
        }
        let peer_certified = self
            .peer
            .as_ref()
            .is_some_and(|peer| self.certificate_valid_for.get(peer) == Some(&true));
        if self.encrypted && self.pairs.is_empty() && peer_certified {
            features.push_str(&format!(
                "<mechanisms xmlns='{}'><mechanism>EXTERNAL</mechanism></mechanisms>",
                ns::SASL
            ));
        }
        if self.encrypted || !self.config.tls_required {
            features.push_str(&format!(
                "<dialback xmlns='{DIALBACK_FEATURE_NS}'><errors/></dialback>"
            ));
        }
        features.push_str("</stream:features>");
        out.push(Action::Send(features));
        self.state = State::Negotiating;
    }

    fn on_element(&mut self, element: Element, out: &mut Vec<Action>) {
        if self.state == State::AwaitingTls {
            self.fail(
                StreamError::with_text(StreamErrorCondition::PolicyViolation, "TLS comes next"),
                out,
            );
            return;
        }
        if element.is("starttls", ns::TLS) {
            self.on_starttls(out);
        } else if element.is("auth", ns::SASL) {
            self.on_sasl_auth(&element, out);
        } else if element.is("result", DIALBACK_NS) {
            self.on_dialback_result(&element, out);
        } else if element.is("verify", DIALBACK_NS) {
            self.on_dialback_verify(&element, out);
        } else if element.ns == ns::SERVER
            && matches!(element.name.as_str(), "message" | "presence" | "iq")
        {
            self.on_stanza(element, out);
        } else if element.ns == ns::SERVER || !self.pairs.is_empty() {
            self.fail(
                StreamError::new(StreamErrorCondition::UnsupportedStanzaType),
                out,
            );
        } else {
            self.fail(StreamError::new(StreamErrorCondition::NotAuthorized), out);
        }
    }

    /// Dialback over a plain stream where TLS is required ends the stream.
    fn refused_without_tls(&mut self, out: &mut Vec<Action>) -> bool {
        let refused = self.config.tls_required && !self.encrypted;
        if refused {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "dialback only over TLS",
                ),
                out,
            );
        }
        refused
    }

    fn on_starttls(&mut self, out: &mut Vec<Action>) {
        if self.encrypted {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "the stream is already encrypted",
                ),
                out,
            );
            return;
        }
        out.push(Action::Send(format!("<proceed xmlns='{}'/>", ns::TLS)));
        out.push(Action::StartTls);
        out.push(Action::ResetParser);
        self.state = State::AwaitingTls;
    }

    /// XEP-0178: EXTERNAL authenticates the header's `from` when its certificate is valid.
    fn on_sasl_auth(&mut self, auth: &Element, out: &mut Vec<Action>) {
        let failure = |condition: &str| {
            Action::Send(format!(
                "<failure xmlns='{}'><{condition}/></failure>",
                ns::SASL
            ))
        };
        let (Some(peer), Some(local)) = (self.peer.clone(), self.local.clone()) else {
            out.push(failure("not-authorized"));
            return;
        };
        let offered = self.encrypted
            && self.pairs.is_empty()
            && self.certificate_valid_for.get(&peer) == Some(&true);
        if auth.attr("mechanism") != Some("EXTERNAL") || !offered {
            out.push(failure("invalid-mechanism"));
            return;
        }
        let given = auth.text();
        let given = given.trim();
        if !given.is_empty() && given != "=" {
            let authzid = base64::engine::general_purpose::STANDARD
                .decode(given)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| crate::Jid::parse(&text).ok());
            if authzid.as_ref().map(|jid| jid.domain()) != Some(peer.as_str()) {
                out.push(failure("invalid-authzid"));
                return;
            }
        }
        out.push(Action::Send(format!("<success xmlns='{}'/>", ns::SASL)));
        self.authorize(peer, local, AuthMethod::Certificate, out);
        out.push(Action::ResetParser);
        self.header_sent = false;
        self.state = State::AwaitingHeader;
    }

    fn on_dialback_result(&mut self, result: &Element, out: &mut Vec<Action>) {
        if result.attr("type").is_some() {
            // Answers belong on our outgoing streams, not here.
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::UnsupportedStanzaType,
                    "a dialback answer on a receiving stream",
                ),
                out,
            );
            return;
        }
        if self.refused_without_tls(out) {
            return;
        }
        let (Some(originating), Some(receiving)) = (
            dialback_domain(result, "from"),
            dialback_domain(result, "to"),
        ) else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    "db:result needs 'from' and 'to' domains",
                ),
                out,
            );
            return;
        };
        if !self.config.domains.contains(&receiving) {
            out.push(Action::Send(dialback_error(
                "result",
                &receiving,
                &originating,
                None,
                "item-not-found",
            )));
            return;
        }
        if self.peer.as_ref().is_some_and(|peer| *peer != originating) && self.pairs.is_empty() {
            // The first pair must be the one the stream header announced.
            self.fail(StreamError::new(StreamErrorCondition::InvalidFrom), out);
            return;
        }
        let pending = PendingResult {
            originating: originating.clone(),
            receiving,
            key: result.text().trim().to_string(),
        };
        if self.certificate_valid_for.contains_key(&originating) || !self.encrypted {
            self.decide_result(pending, out);
        } else {
            self.pending.push(pending);
            if self
                .pending
                .iter()
                .filter(|p| p.originating == originating)
                .count()
                == 1
            {
                out.push(Action::CheckCertificate {
                    domain: originating,
                });
            }
        }
    }

    /// With a valid certificate for the originating domain dialback is answered at
    /// once (XEP-0344 §2.3); otherwise the authoritative server is asked.
    fn decide_result(&mut self, result: PendingResult, out: &mut Vec<Action>) {
        let certified = self.certificate_valid_for.get(&result.originating) == Some(&true);
        if certified
            || self
                .pairs
                .contains(&(result.originating.clone(), result.receiving.clone()))
        {
            out.push(Action::Send(dialback_element(
                "result",
                &result.receiving,
                &result.originating,
                None,
                Some("valid"),
                None,
            )));
            self.authorize(
                result.originating,
                result.receiving,
                AuthMethod::Certificate,
                out,
            );
            return;
        }
        if !self.config.allow_dialback {
            out.push(Action::Send(dialback_error(
                "result",
                &result.receiving,
                &result.originating,
                None,
                "not-authorized",
            )));
            return;
        }
        if self.verifying >= MAX_VERIFYING {
            // Each verification is a connection we open: a peer does not get to
            // make us open many.
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "too many dialback requests at once",
                ),
                out,
            );
            return;
        }
        self.verifying += 1;
        out.push(Action::VerifyDialback {
            originating: result.originating,
            receiving: result.receiving,
            key: result.key,
            stream_id: self.stream_id.clone(),
        });
    }

    fn on_dialback_verified(
        &mut self,
        originating: String,
        receiving: String,
        outcome: DialbackOutcome,
        out: &mut Vec<Action>,
    ) {
        self.verifying = self.verifying.saturating_sub(1);
        match outcome {
            DialbackOutcome::Valid => {
                out.push(Action::Send(dialback_element(
                    "result",
                    &receiving,
                    &originating,
                    None,
                    Some("valid"),
                    None,
                )));
                self.authorize(originating, receiving, AuthMethod::Dialback, out);
            }
            DialbackOutcome::Invalid => {
                // XEP-0220 §2.2.1: a bogus key ends the stream.
                out.push(Action::Send(dialback_element(
                    "result",
                    &receiving,
                    &originating,
                    None,
                    Some("invalid"),
                    None,
                )));
                self.fail(
                    StreamError::with_text(
                        StreamErrorCondition::NotAuthorized,
                        "the dialback key is not valid",
                    ),
                    out,
                );
            }
            DialbackOutcome::Unreachable => out.push(Action::Send(dialback_error(
                "result",
                &receiving,
                &originating,
                None,
                "remote-server-not-found",
            ))),
        }
    }

    /// We are the authoritative server: is this a key we issued?
    fn on_dialback_verify(&mut self, verify: &Element, out: &mut Vec<Action>) {
        if verify.attr("type").is_some() {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::UnsupportedStanzaType,
                    "a verification answer on a receiving stream",
                ),
                out,
            );
            return;
        }
        if self.refused_without_tls(out) {
            return;
        }
        let (Some(receiving), Some(originating), Some(id)) = (
            dialback_domain(verify, "from"),
            dialback_domain(verify, "to"),
            verify.attr("id"),
        ) else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    "db:verify needs 'from', 'to' and 'id'",
                ),
                out,
            );
            return;
        };
        if !self.config.domains.contains(&originating) {
            out.push(Action::Send(dialback_error(
                "verify",
                &originating,
                &receiving,
                Some(id),
                "item-not-found",
            )));
            return;
        }
        let expected = dialback_key(&self.config.secret, &receiving, &originating, id);
        let given = verify.text();
        let valid = bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes()));
        out.push(Action::Send(dialback_element(
            "verify",
            &originating,
            &receiving,
            Some(id),
            Some(if valid { "valid" } else { "invalid" }),
            None,
        )));
    }

    fn authorize(
        &mut self,
        remote: String,
        local: String,
        method: AuthMethod,
        out: &mut Vec<Action>,
    ) {
        let pair = (remote.clone(), local.clone());
        if !self.pairs.contains(&pair) {
            self.pairs.push(pair);
            out.push(Action::Authenticated {
                remote,
                local,
                method,
            });
        }
    }

    /// RFC 6120 §13.7.1: only stanzas of an authenticated pair are routed.
    fn on_stanza(&mut self, stanza: Element, out: &mut Vec<Action>) {
        if self.pairs.is_empty() {
            self.fail(StreamError::new(StreamErrorCondition::NotAuthorized), out);
            return;
        }
        let (Some(from), Some(to)) = (
            address_domain(&stanza, "from"),
            address_domain(&stanza, "to"),
        ) else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    "stanzas between servers carry valid 'from' and 'to' addresses",
                ),
                out,
            );
            return;
        };
        if !self.pairs.iter().any(|(remote, _)| *remote == from) {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::InvalidFrom,
                    format!("{from} is not authenticated on this stream"),
                ),
                out,
            );
            return;
        }
        if !self.pairs.contains(&(from.clone(), to.clone())) {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    format!("{from} is not authenticated to send to {to}"),
                ),
                out,
            );
            return;
        }
        out.push(Action::Route(from_server_ns(stanza)));
    }
}

/// A dialback error (XEP-0220 §2.4): not a stream error, the stream goes on.
fn dialback_error(name: &str, from: &str, to: &str, id: Option<&str>, condition: &str) -> String {
    let error = format!(
        "<error type='cancel'><{condition} xmlns='{}'/></error>",
        ns::STANZAS
    );
    dialback_element(name, from, to, id, Some("error"), Some(&error))
}
