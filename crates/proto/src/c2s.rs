//! The sans-IO negotiation machine of a client-to-server stream, server side
//! (RFC 6120 §4 streams, §5 STARTTLS, §6 SASL, §7 resource binding).
//!
//! The machine is fed parsed stream events and a few external facts (TLS is up,
//! credentials were looked up, a timer fired) and answers with actions: bytes to
//! write, "start TLS now", "reset the parser", "look up these credentials",
//! "this session is bound", "route this stanza", "close". It never touches a
//! socket, a clock or storage.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use starling_xml::{Element, StreamEvent, StreamHeader, XmlError, STREAM_NS};

use crate::error::{StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
use crate::jid::{prepare_localpart, prepare_resourcepart, Jid};
use crate::ns;
use crate::sasl::{
    ChannelBindings, Mechanism, SaslFailure, SaslServer, SaslServerConfig, ScramCredentials,
    ScramHash, ServerStep,
};
use crate::stream_checks;

/// XEP-0077 in-band registration: the IQ namespace and the stream feature.
pub const REGISTER_NS: &str = "jabber:iq:register";
pub const REGISTER_FEATURE_NS: &str = "http://jabber.org/features/iq-register";

/// What a c2s stream offers and enforces; one per listener, shared by its connections.
#[derive(Debug, Clone)]
pub struct C2sConfig {
    /// Domains this server hosts; a stream to any other gets `<host-unknown/>`.
    pub domains: Vec<String>,
    /// STARTTLS is offered (a certificate is configured).
    pub starttls_offered: bool,
    /// SASL is refused until the stream is encrypted.
    pub tls_required: bool,
    /// Mechanisms enabled by configuration, strongest first.
    pub mechanisms: Vec<Mechanism>,
    /// Failed authentications after which the connection is closed.
    pub max_auth_failures: u32,
    /// Delay before answering the n-th failure: n times this.
    pub auth_failure_delay: Duration,
    /// Server secret for SCRAM's fake salts of unknown users.
    pub secret: Vec<u8>,
    pub default_iterations: u32,
    /// Extra stream features offered once the session is authenticated (modules add these).
    pub session_features: Vec<Element>,
    /// XEP-0077: unauthenticated clients may create an account, over TLS only.
    pub allow_registration: bool,
}

/// Why the shell could not create an account for `Action::Register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationError {
    /// The username is taken.
    AccountExists,
    /// The password is refused by the PRECIS OpaqueString profile.
    UnusablePassword,
    /// Storage failed.
    Unavailable,
}

/// What the shell tells the machine.
#[derive(Debug)]
pub enum Input {
    Event(StreamEvent),
    /// The parser failed; the stream ends with the matching stream error.
    XmlError(XmlError),
    /// The TLS handshake after `<proceed/>` (or of a direct-TLS listener) completed.
    TlsEstablished(ChannelBindings),
    /// The answer to `Action::LookupCredentials`.
    Credentials(Option<ScramCredentials>),
    /// Storage could not answer `Action::LookupCredentials`.
    CredentialsUnavailable,
    /// The stream was not opened or authenticated in time.
    NegotiationTimeout,
    /// The answer to `Action::Register`.
    RegistrationResult(Result<(), RegistrationError>),
}

/// What the machine asks of the shell, in order.
#[derive(Debug, PartialEq)]
pub enum Action {
    Send(String),
    /// Stop reading, flush, run the TLS handshake, then feed `Input::TlsEstablished`.
    StartTls,
    /// The next bytes start a new XML document (stream restart).
    ResetParser,
    /// Wait this long before writing what follows (throttles password guessing).
    Delay(Duration),
    LookupCredentials {
        username: String,
        hash: ScramHash,
    },
    Authenticated {
        username: String,
        domain: String,
        mechanism: Mechanism,
    },
    /// Create this account (XEP-0077): derive and store SCRAM credentials for every
    /// hash, then feed `Input::RegistrationResult`. `username` is already prepared.
    Register {
        username: String,
        domain: String,
        password: String,
    },
    /// The session is bound to this full JID; the shell registers it (replacing
    /// an older session of the same full JID) before routing anything.
    Bound(Jid),
    /// A validated stanza from the bound client, `from` stamped; route it.
    Route(Element),
    /// Flush what was sent and close the TCP connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the (first or restarted) stream header.
    AwaitingHeader,
    /// Stream open, waiting for `<starttls/>` or `<auth/>`.
    Negotiating,
    /// `<proceed/>` sent; no input is valid until TLS is up.
    AwaitingTls,
    /// A SASL exchange is running.
    Authenticating,
    /// The SASL machine asked for credentials; waiting for the shell.
    AwaitingCredentials,
    /// A registration IQ was handed to the shell; waiting for its result.
    AwaitingRegistration,
    /// Authenticated, stream restarted, waiting for bind.
    Binding,
    Bound,
    Closed,
}

pub struct C2sServer {
    config: std::sync::Arc<C2sConfig>,
    state: State,
    header_sent: bool,
    encrypted: bool,
    channel_bindings: ChannelBindings,
    domain: Option<String>,
    authenticated: Option<String>,
    sasl: Option<(Mechanism, SaslServer)>,
    auth_failures: u32,
    jid: Option<Jid>,
    /// The registration IQ being carried out, answered on `Input::RegistrationResult`.
    pending_registration: Option<Element>,
    /// An account was registered on this stream; a second one is refused.
    registered: bool,
}

impl C2sServer {
    /// `encrypted` is true for a direct-TLS connection whose handshake already completed.
    pub fn new(config: std::sync::Arc<C2sConfig>, encrypted: Option<ChannelBindings>) -> Self {
        C2sServer {
            config,
            state: State::AwaitingHeader,
            header_sent: false,
            encrypted: encrypted.is_some(),
            channel_bindings: encrypted.unwrap_or_default(),
            domain: None,
            authenticated: None,
            sasl: None,
            auth_failures: 0,
            jid: None,
            pending_registration: None,
            registered: false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn is_bound(&self) -> bool {
        self.state == State::Bound
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The served domain the client opened its stream to.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    pub fn jid(&self) -> Option<&Jid> {
        self.jid.as_ref()
    }

    /// Feed one input; actions are appended to `out`.
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
            Input::XmlError(err) => self.fail(StreamError::from_xml_error(&err), out),
            Input::TlsEstablished(bindings) => {
                if self.state == State::AwaitingTls {
                    self.encrypted = true;
                    self.channel_bindings = bindings;
                    self.state = State::AwaitingHeader;
                    self.header_sent = false;
                }
            }
            Input::Credentials(creds) => {
                if self.state == State::AwaitingCredentials {
                    let step = match self.sasl.as_mut() {
                        Some((_, sasl)) => sasl.credentials(creds),
                        None => ServerStep::Failure(SaslFailure::TemporaryAuthFailure),
                    };
                    self.state = State::Authenticating;
                    self.on_sasl_step(step, out);
                }
            }
            Input::CredentialsUnavailable => {
                if self.state == State::AwaitingCredentials {
                    self.sasl = None;
                    self.state = State::Negotiating;
                    out.push(Action::Send(sasl_failure(
                        SaslFailure::TemporaryAuthFailure,
                    )));
                }
            }
            Input::RegistrationResult(result) => {
                if self.state == State::AwaitingRegistration {
                    self.state = State::Negotiating;
                    self.on_registration_result(result, out);
                }
            }
            Input::NegotiationTimeout => {
                if self.state != State::Bound {
                    self.fail(
                        StreamError::new(StreamErrorCondition::ConnectionTimeout),
                        out,
                    );
                }
            }
        }
    }

    /// Close the stream with `error` (sent after a header if none was sent yet).
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        self.ensure_header(out);
        let mut xml = error.to_element().to_xml(ns::CLIENT);
        xml.push_str("</stream:stream>");
        out.push(Action::Send(xml));
        out.push(Action::Close);
        self.state = State::Closed;
    }

    fn ensure_header(&mut self, out: &mut Vec<Action>) {
        if !self.header_sent {
            let domain = self
                .domain
                .clone()
                .or_else(|| self.config.domains.first().cloned())
                .unwrap_or_default();
            out.push(Action::Send(stream_header(&domain, None, None)));
            self.header_sent = true;
        }
    }

    fn on_header(&mut self, header: StreamHeader, out: &mut Vec<Action>) {
        if self.state != State::AwaitingHeader {
            self.fail(stream_checks::header_inside_stream(), out);
            return;
        }
        if let Err(error) = stream_checks::check_namespaces(&header, ns::CLIENT) {
            self.fail(error, out);
            return;
        }
        let served = stream_checks::addressed_domain(&header)
            .filter(|domain| self.config.domains.contains(domain));
        let Some(to) = served else {
            self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
            return;
        };
        // A restarted stream must stay on the domain negotiated first.
        if self.domain.as_ref().is_some_and(|domain| *domain != to) {
            self.fail(StreamError::new(StreamErrorCondition::HostUnknown), out);
            return;
        }
        self.domain = Some(to.clone());
        if !version_supported(header.attr("version")) {
            self.fail(
                StreamError::new(StreamErrorCondition::UnsupportedVersion),
                out,
            );
            return;
        }
        let client_from = header
            .attr("from")
            .and_then(|from| Jid::parse(from).ok())
            .map(|jid| jid.to_string());
        let lang = header.attr("xml:lang").map(str::to_string);
        let mut reply = stream_header(&to, client_from.as_deref(), lang.as_deref());
        self.header_sent = true;
        reply.push_str(&self.features().to_xml(ns::CLIENT));
        out.push(Action::Send(reply));
        self.state = if self.authenticated.is_some() {
            State::Binding
        } else {
            State::Negotiating
        };
    }

    fn offered_mechanisms(&self) -> Vec<Mechanism> {
        let plus_possible = !self.channel_bindings.available_types().is_empty();
        self.config
            .mechanisms
            .iter()
            .copied()
            .filter(|m| !m.is_plus() || plus_possible)
            .filter(|m| *m != Mechanism::Plain || self.encrypted)
            .collect()
    }

    fn features(&self) -> Element {
        let mut features = Element::new("features", STREAM_NS);
        if self.authenticated.is_some() {
            features.push_child(Element::new("bind", ns::BIND));
            features.push_child(
                Element::new("session", ns::SESSION)
                    .with_child(Element::new("optional", ns::SESSION)),
            );
            for feature in &self.config.session_features {
                features.push_child(feature.clone());
            }
            return features;
        }
        if !self.encrypted && self.config.starttls_offered {
            let mut starttls = Element::new("starttls", ns::TLS);
            if self.config.tls_required {
                starttls.push_child(Element::new("required", ns::TLS));
            }
            features.push_child(starttls);
        }
        if self.encrypted || !self.config.tls_required {
            let mut mechanisms = Element::new("mechanisms", ns::SASL);
            for mechanism in self.offered_mechanisms() {
                mechanisms
                    .push_child(Element::new("mechanism", ns::SASL).with_text(mechanism.name()));
            }
            features.push_child(mechanisms);
            let types = self.channel_bindings.available_types();
            if !types.is_empty() {
                let mut cb = Element::new("sasl-channel-binding", ns::SASL_CB);
                for cb_type in types {
                    cb.push_child(
                        Element::new("channel-binding", ns::SASL_CB)
                            .with_attr("type", cb_type.name()),
                    );
                }
                features.push_child(cb);
            }
        }
        if self.registration_offered() {
            features.push_child(Element::new("register", REGISTER_FEATURE_NS));
        }
        features
    }

    fn on_element(&mut self, element: Element, out: &mut Vec<Action>) {
        match self.state {
            State::Negotiating | State::Authenticating => self.on_negotiation_element(element, out),
            State::AwaitingCredentials | State::AwaitingTls | State::AwaitingRegistration => self
                .fail(
                    StreamError::with_text(
                        StreamErrorCondition::PolicyViolation,
                        "input while a negotiation step is pending",
                    ),
                    out,
                ),
            State::Binding => self.on_binding_element(element, out),
            State::Bound => self.on_stanza(element, out),
            State::AwaitingHeader | State::Closed => {}
        }
    }

    fn on_negotiation_element(&mut self, element: Element, out: &mut Vec<Action>) {
        if element.is("starttls", ns::TLS) {
            if self.encrypted || !self.config.starttls_offered || self.state != State::Negotiating {
                out.push(Action::Send(format!("<failure xmlns='{}'/>", ns::TLS)));
                self.fail(StreamError::new(StreamErrorCondition::PolicyViolation), out);
                return;
            }
            out.push(Action::Send(format!("<proceed xmlns='{}'/>", ns::TLS)));
            out.push(Action::StartTls);
            out.push(Action::ResetParser);
            self.state = State::AwaitingTls;
            return;
        }
        if element.ns == ns::SASL {
            match element.name.as_str() {
                "auth" if self.state == State::Negotiating => self.on_auth(&element, out),
                "response" if self.state == State::Authenticating => {
                    let step = match decode_sasl_payload(&element.text()) {
                        Ok(data) => match self.sasl.as_mut() {
                            Some((_, sasl)) => sasl.step(&data),
                            None => ServerStep::Failure(SaslFailure::MalformedRequest),
                        },
                        Err(failure) => ServerStep::Failure(failure),
                    };
                    self.on_sasl_step(step, out);
                }
                "abort" if self.state == State::Authenticating => {
                    self.on_sasl_step(ServerStep::Failure(SaslFailure::Aborted), out)
                }
                _ => self.on_sasl_step(ServerStep::Failure(SaslFailure::MalformedRequest), out),
            }
            return;
        }
        if self.state == State::Negotiating && self.is_registration_iq(&element) {
            self.on_registration_iq(element, out);
            return;
        }
        if is_stanza(&element) {
            self.fail(StreamError::new(StreamErrorCondition::NotAuthorized), out);
        } else {
            self.fail(
                StreamError::new(StreamErrorCondition::UnsupportedStanzaType),
                out,
            );
        }
    }

    fn on_auth(&mut self, element: &Element, out: &mut Vec<Action>) {
        if !self.encrypted && self.config.tls_required {
            self.on_sasl_step(ServerStep::Failure(SaslFailure::EncryptionRequired), out);
            return;
        }
        let offered = self.offered_mechanisms();
        let mechanism = element
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| offered.contains(m));
        let Some(mechanism) = mechanism else {
            let failure = match element.attr("mechanism").and_then(Mechanism::from_name) {
                Some(Mechanism::Plain) if !self.encrypted => SaslFailure::EncryptionRequired,
                _ => SaslFailure::InvalidMechanism,
            };
            self.on_sasl_step(ServerStep::Failure(failure), out);
            return;
        };
        let initial = match decode_sasl_payload(&element.text()) {
            Ok(data) => data,
            Err(failure) => {
                self.on_sasl_step(ServerStep::Failure(failure), out);
                return;
            }
        };
        let sasl_config = SaslServerConfig {
            domain: self.domain.clone().unwrap_or_default(),
            channel_bindings: self.channel_bindings.clone(),
            plus_advertised: offered.iter().any(|m| m.is_plus()),
            secret: self.config.secret.clone(),
            default_iterations: self.config.default_iterations,
            plain_hash: ScramHash::Sha256,
        };
        let mut sasl = SaslServer::new(mechanism, sasl_config);
        self.state = State::Authenticating;
        let step = if initial.is_empty() && mechanism != Mechanism::Plain {
            // An empty initial response asks for an empty challenge (RFC 6120 §6.4.2).
            ServerStep::Challenge(Vec::new())
        } else {
            sasl.step(&initial)
        };
        self.sasl = Some((mechanism, sasl));
        self.on_sasl_step(step, out);
    }

    fn on_sasl_step(&mut self, step: ServerStep, out: &mut Vec<Action>) {
        match step {
            ServerStep::NeedCredentials { username, hash } => {
                self.state = State::AwaitingCredentials;
                out.push(Action::LookupCredentials { username, hash });
            }
            ServerStep::Challenge(data) => {
                self.state = State::Authenticating;
                out.push(Action::Send(format!(
                    "<challenge xmlns='{}'>{}</challenge>",
                    ns::SASL,
                    encode_sasl_payload(&data)
                )));
            }
            ServerStep::Success {
                username,
                additional_data,
            } => {
                let Some((mechanism, _)) = self.sasl.take() else {
                    return;
                };
                let payload = additional_data
                    .map(|data| encode_sasl_payload(&data))
                    .unwrap_or_default();
                out.push(Action::Send(format!(
                    "<success xmlns='{}'>{payload}</success>",
                    ns::SASL
                )));
                out.push(Action::ResetParser);
                out.push(Action::Authenticated {
                    username: username.clone(),
                    domain: self.domain.clone().unwrap_or_default(),
                    mechanism,
                });
                self.authenticated = Some(username);
                self.state = State::AwaitingHeader;
                self.header_sent = false;
            }
            ServerStep::Failure(failure) => {
                self.sasl = None;
                self.state = State::Negotiating;
                if failure != SaslFailure::Aborted {
                    self.count_failure(out);
                }
                out.push(Action::Send(sasl_failure(failure)));
                self.enforce_failure_limit(out);
            }
        }
    }

    /// Counts a failed attempt (authentication or registration); the answer that
    /// follows waits n-1 times the configured delay.
    fn count_failure(&mut self, out: &mut Vec<Action>) {
        self.auth_failures += 1;
        out.push(Action::Delay(
            self.config.auth_failure_delay * (self.auth_failures - 1),
        ));
    }

    fn enforce_failure_limit(&mut self, out: &mut Vec<Action>) {
        if self.auth_failures >= self.config.max_auth_failures {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "too many failed attempts",
                ),
                out,
            );
        }
    }

    /// XEP-0077 §9: the password travels inside the stream, so only an encrypted one
    /// may register.
    fn registration_offered(&self) -> bool {
        self.config.allow_registration && self.encrypted && self.authenticated.is_none()
    }

    fn is_registration_iq(&self, element: &Element) -> bool {
        element.is("iq", ns::CLIENT)
            && matches!(element.attr("type"), Some("get" | "set"))
            && element.child("query", REGISTER_NS).is_some()
    }

    /// XEP-0077 §3.1 before authentication: the form, or a new account.
    fn on_registration_iq(&mut self, iq: Element, out: &mut Vec<Action>) {
        // Replies carry neither addresses (the client has no JID yet) nor the
        // request's payload, which would echo the password.
        let mut stub = without_addresses(&iq);
        stub.children.clear();
        if !self.config.allow_registration {
            let error = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
            send_iq_error(&stub, error, out);
            return;
        }
        if !self.registration_offered() {
            let error = StanzaError::new(StanzaErrorCondition::NotAuthorized)
                .with_text("registration requires an encrypted stream");
            send_iq_error(&stub, error, out);
            return;
        }
        let Some(query) = iq.child("query", REGISTER_NS) else {
            return;
        };
        if iq.attr("type") == Some("get") {
            let form = Element::new("query", REGISTER_NS)
                .with_child(
                    Element::new("instructions", REGISTER_NS)
                        .with_text("Choose a username and password for this server."),
                )
                .with_child(Element::new("username", REGISTER_NS))
                .with_child(Element::new("password", REGISTER_NS));
            let result = iq_result(&stub).with_child(form);
            out.push(Action::Send(result.to_xml(ns::CLIENT)));
            return;
        }
        if query.child("remove", REGISTER_NS).is_some() {
            // XEP-0077 §3.2: an unauthenticated stream has no account to cancel.
            let error = StanzaError::new(StanzaErrorCondition::RegistrationRequired);
            send_iq_error(&stub, error, out);
            return;
        }
        if self.registered {
            // XEP-0077 §3.1.1 allows refusing a second identity; log in to use the first.
            let error = StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text("one account may be registered per stream");
            send_iq_error(&stub, error, out);
            return;
        }
        let field = |name: &str| {
            query
                .child(name, REGISTER_NS)
                .map(|e| e.text())
                .filter(|text| !text.is_empty())
        };
        // XEP-0077 §3.1: a missing or empty field is not-acceptable.
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            let error = StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text("a username and a password are required");
            self.reject_registration(&stub, error, out);
            return;
        };
        let Ok(username) = prepare_localpart(&username) else {
            let error = StanzaError::new(StanzaErrorCondition::JidMalformed)
                .with_text("the username is not a valid JID localpart");
            self.reject_registration(&stub, error, out);
            return;
        };
        self.pending_registration = Some(stub);
        self.state = State::AwaitingRegistration;
        out.push(Action::Register {
            username,
            domain: self.domain.clone().unwrap_or_default(),
            password,
        });
    }

    fn on_registration_result(
        &mut self,
        result: Result<(), RegistrationError>,
        out: &mut Vec<Action>,
    ) {
        let Some(stub) = self.pending_registration.take() else {
            return;
        };
        let error = match result {
            Ok(()) => {
                self.registered = true;
                out.push(Action::Send(iq_result(&stub).to_xml(ns::CLIENT)));
                return;
            }
            Err(RegistrationError::AccountExists) => {
                StanzaError::new(StanzaErrorCondition::Conflict)
            }
            Err(RegistrationError::UnusablePassword) => {
                StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text("the password contains characters that are not allowed")
            }
            Err(RegistrationError::Unavailable) => {
                send_iq_error(
                    &stub,
                    StanzaError::new(StanzaErrorCondition::InternalServerError),
                    out,
                );
                return;
            }
        };
        self.reject_registration(&stub, error, out);
    }

    /// A refused registration counts like a failed authentication, so neither can be
    /// used to probe usernames or burn key derivations without limit.
    fn reject_registration(&mut self, stub: &Element, error: StanzaError, out: &mut Vec<Action>) {
        self.count_failure(out);
        send_iq_error(stub, error, out);
        self.enforce_failure_limit(out);
    }

    fn on_binding_element(&mut self, element: Element, out: &mut Vec<Action>) {
        if !is_stanza(&element) {
            self.fail(
                StreamError::new(StreamErrorCondition::UnsupportedStanzaType),
                out,
            );
            return;
        }
        let Some(bind) = element
            .child("bind", ns::BIND)
            .filter(|_| element.name == "iq" && element.attr("type") == Some("set"))
        else {
            self.fail(
                StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "bind a resource first",
                ),
                out,
            );
            return;
        };
        let requested = bind.child("resource", ns::BIND).map(|r| r.text());
        let resource = match requested.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => match prepare_resourcepart(r) {
                Ok(r) => r,
                Err(_) => {
                    let error = StanzaError::new(StanzaErrorCondition::BadRequest)
                        .with_text("invalid resource");
                    if let Some(reply) = error.reply_to(&without_addresses(&element)) {
                        out.push(Action::Send(reply.to_xml(ns::CLIENT)));
                    }
                    return;
                }
            },
            _ => generate_resource(),
        };
        let username = self.authenticated.clone().unwrap_or_default();
        let domain = self.domain.clone().unwrap_or_default();
        let jid = match Jid::new(Some(&username), &domain, Some(&resource)) {
            Ok(jid) => jid,
            Err(_) => {
                let error = StanzaError::new(StanzaErrorCondition::BadRequest);
                if let Some(reply) = error.reply_to(&without_addresses(&element)) {
                    out.push(Action::Send(reply.to_xml(ns::CLIENT)));
                }
                return;
            }
        };
        let mut result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        if let Some(id) = element.attr("id") {
            result.set_attr("id", id);
        }
        result.push_child(
            Element::new("bind", ns::BIND)
                .with_child(Element::new("jid", ns::BIND).with_text(jid.to_string())),
        );
        out.push(Action::Bound(jid.clone()));
        out.push(Action::Send(result.to_xml(ns::CLIENT)));
        self.jid = Some(jid);
        self.state = State::Bound;
    }

    fn on_stanza(&mut self, mut element: Element, out: &mut Vec<Action>) {
        if !is_stanza(&element) {
            self.fail(
                StreamError::new(StreamErrorCondition::UnsupportedStanzaType),
                out,
            );
            return;
        }
        let Some(jid) = self.jid.clone() else {
            return;
        };
        if let Some(from) = element.attr("from") {
            let owned = Jid::parse(from)
                .map(|from| from == jid || from == jid.bare())
                .unwrap_or(false);
            if !owned {
                self.fail(StreamError::new(StreamErrorCondition::InvalidFrom), out);
                return;
            }
        }
        element.set_attr("from", jid.to_string());
        // Legacy session establishment (RFC 3921) is a no-op that old clients still send.
        if element.name == "iq"
            && element.attr("type") == Some("set")
            && element.child("session", ns::SESSION).is_some()
            && element
                .attr("to")
                .is_none_or(|to| Some(to) == self.domain.as_deref())
        {
            let mut result = Element::new("iq", ns::CLIENT)
                .with_attr("type", "result")
                .with_attr("to", jid.to_string());
            if let Some(id) = element.attr("id") {
                result.set_attr("id", id);
            }
            out.push(Action::Send(result.to_xml(ns::CLIENT)));
            return;
        }
        out.push(Action::Route(element));
    }
}

fn iq_result(request: &Element) -> Element {
    let mut result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = request.attr("id") {
        result.set_attr("id", id);
    }
    result
}

fn send_iq_error(request: &Element, error: StanzaError, out: &mut Vec<Action>) {
    if let Some(reply) = error.reply_to(request) {
        out.push(Action::Send(reply.to_xml(ns::CLIENT)));
    }
}

fn without_addresses(element: &Element) -> Element {
    let mut copy = element.clone();
    copy.remove_attr("from");
    copy.remove_attr("to");
    copy
}

fn is_stanza(element: &Element) -> bool {
    element.ns == ns::CLIENT && matches!(element.name.as_str(), "message" | "presence" | "iq")
}

/// RFC 6120 §4.7.5: a missing version means pre-1.0, which we do not speak; any 1.x
/// (or higher major, answered with 1.0) is accepted.
fn version_supported(version: Option<&str>) -> bool {
    let Some(version) = version else {
        return false;
    };
    let Some((major, minor)) = version.split_once('.') else {
        return false;
    };
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(major), Ok(_)) => major >= 1,
        _ => false,
    }
}

/// The opening tag of our side of the stream, with a fresh unguessable id.
pub fn stream_header(domain: &str, to: Option<&str>, lang: Option<&str>) -> String {
    let mut header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{}' from='{}' version='1.0' xml:lang='{}'",
        ns::CLIENT,
        STREAM_NS,
        random_token(16),
        escape_attr(domain),
        escape_attr(lang.unwrap_or("en")),
    );
    if let Some(to) = to {
        header.push_str(&format!(" to='{}'", escape_attr(to)));
    }
    header.push('>');
    header
}

pub(crate) fn escape_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn generate_resource() -> String {
    format!("starling-{}", random_token(8))
}

fn sasl_failure(failure: SaslFailure) -> String {
    format!(
        "<failure xmlns='{}'><{}/></failure>",
        ns::SASL,
        failure.condition()
    )
}

/// RFC 6120 §6.4.2: "=" is an empty payload; anything else must be valid base64.
fn decode_sasl_payload(text: &str) -> Result<Vec<u8>, SaslFailure> {
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64
        .decode(text)
        .map_err(|_| SaslFailure::IncorrectEncoding)
}

fn encode_sasl_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_string()
    } else {
        BASE64.encode(data)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sasl::{ChannelBindingType, SaslClient};

    const PASSWORD: &str = "pencil";

    fn config() -> Arc<C2sConfig> {
        Arc::new(C2sConfig {
            domains: vec!["localhost".into()],
            starttls_offered: true,
            tls_required: true,
            mechanisms: Mechanism::ALL.to_vec(),
            max_auth_failures: 2,
            auth_failure_delay: Duration::from_millis(100),
            secret: vec![7; 32],
            default_iterations: 4096,
            session_features: Vec::new(),
            allow_registration: false,
        })
    }

    fn bindings() -> ChannelBindings {
        ChannelBindings {
            tls_exporter: Some(vec![1; 32]),
            tls_server_end_point: Some(vec![2; 32]),
        }
    }

    fn header(to: &str) -> StreamHeader {
        StreamHeader {
            name: "stream".into(),
            ns: STREAM_NS.into(),
            default_ns: Some(ns::CLIENT.into()),
            attrs: vec![("to".into(), to.into()), ("version".into(), "1.0".into())],
        }
    }

    fn feed(machine: &mut C2sServer, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        machine.handle(input, &mut out);
        out
    }

    fn sent(actions: &[Action]) -> String {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    fn assert_stream_error(actions: &[Action], condition: &str) {
        let text = sent(actions);
        assert!(
            text.contains(&format!("<{condition} xmlns='{}'/>", ns::STREAMS)),
            "expected {condition} in {text}"
        );
        assert!(text.ends_with("</stream:stream>"), "{text}");
        assert_eq!(actions.last(), Some(&Action::Close));
    }

    fn element(xml_name: &str, namespace: &str) -> Element {
        Element::new(xml_name, namespace)
    }

    /// Drive a machine through TLS and a SCRAM-SHA-256 login for "juliet".
    fn authenticated_machine() -> C2sServer {
        authenticated_machine_with(config())
    }

    fn authenticated_machine_with(config: Arc<C2sConfig>) -> C2sServer {
        let mut machine = C2sServer::new(config, Some(bindings()));
        feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        let creds =
            ScramCredentials::derive(ScramHash::Sha256, PASSWORD, b"saltsalt", 4096).expect("keys");
        let mut client = SaslClient::new(
            Mechanism::ScramSha256Plus,
            "juliet",
            PASSWORD,
            Some((ChannelBindingType::TlsExporter, vec![1; 32])),
        )
        .expect("client");
        let auth = element("auth", ns::SASL)
            .with_attr("mechanism", "SCRAM-SHA-256-PLUS")
            .with_text(BASE64.encode(client.initial_response()));
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(auth)));
        assert_eq!(
            actions,
            vec![Action::LookupCredentials {
                username: "juliet".into(),
                hash: ScramHash::Sha256
            }]
        );
        let actions = feed(&mut machine, Input::Credentials(Some(creds)));
        let challenge = sent(&actions);
        let payload = challenge
            .strip_prefix(&format!("<challenge xmlns='{}'>", ns::SASL))
            .and_then(|s| s.strip_suffix("</challenge>"))
            .expect("a challenge");
        let response = client
            .respond(&BASE64.decode(payload).expect("base64"))
            .expect("valid server-first");
        let response = element("response", ns::SASL).with_text(BASE64.encode(response));
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(response)));
        assert!(sent(&actions).starts_with(&format!("<success xmlns='{}'>", ns::SASL)));
        assert!(actions.contains(&Action::ResetParser));
        assert!(actions.contains(&Action::Authenticated {
            username: "juliet".into(),
            domain: "localhost".into(),
            mechanism: Mechanism::ScramSha256Plus,
        }));
        machine
    }

    fn bound_machine() -> C2sServer {
        let mut machine = authenticated_machine();
        let actions = feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        assert!(sent(&actions).contains(&format!("<bind xmlns='{}'/>", ns::BIND)));
        let bind = element("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "b1")
            .with_child(
                element("bind", ns::BIND)
                    .with_child(element("resource", ns::BIND).with_text("balcony")),
            );
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(bind)));
        let jid = Jid::parse("juliet@localhost/balcony").expect("jid");
        assert_eq!(actions[0], Action::Bound(jid));
        assert!(sent(&actions).contains("<jid>juliet@localhost/balcony</jid>"));
        machine
    }

    #[test]
    fn features_before_tls_offer_required_starttls_only() {
        let mut machine = C2sServer::new(config(), None);
        let actions = feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        let text = sent(&actions);
        assert!(text
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"));
        assert!(!text.contains("mechanisms"));
    }

    #[test]
    fn starttls_proceeds_then_restarts_with_mechanisms_and_channel_bindings() {
        let mut machine = C2sServer::new(config(), None);
        feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        let actions = feed(
            &mut machine,
            Input::Event(StreamEvent::Element(element("starttls", ns::TLS))),
        );
        assert_eq!(
            actions,
            vec![
                Action::Send(format!("<proceed xmlns='{}'/>", ns::TLS)),
                Action::StartTls,
                Action::ResetParser
            ]
        );
        feed(&mut machine, Input::TlsEstablished(bindings()));
        let text = sent(&feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        ));
        assert!(text.contains("<mechanism>SCRAM-SHA-512-PLUS</mechanism>"));
        assert!(text.contains("<mechanism>PLAIN</mechanism>"));
        assert!(text.contains("<channel-binding type='tls-exporter'/>"));
        assert!(!text.contains("starttls"));
    }

    #[test]
    fn plus_mechanisms_are_hidden_without_channel_binding_data() {
        let mut machine = C2sServer::new(config(), Some(ChannelBindings::default()));
        let text = sent(&feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        ));
        assert!(text.contains("<mechanism>SCRAM-SHA-256</mechanism>"));
        assert!(!text.contains("-PLUS"));
    }

    #[test]
    fn wrong_stream_namespace_is_invalid_namespace_after_our_header() {
        let mut machine = C2sServer::new(config(), None);
        let mut bad = header("localhost");
        bad.ns = "urn:wrong".into();
        let actions = feed(&mut machine, Input::Event(StreamEvent::Open(bad)));
        assert!(sent(&actions).starts_with("<?xml version='1.0'?><stream:stream"));
        assert_stream_error(&actions, "invalid-namespace");
        assert!(machine.is_closed());
    }

    #[test]
    fn unknown_domain_is_host_unknown() {
        let mut machine = C2sServer::new(config(), None);
        let actions = feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("other.example"))),
        );
        assert_stream_error(&actions, "host-unknown");
    }

    #[test]
    fn missing_version_is_unsupported_version() {
        let mut machine = C2sServer::new(config(), None);
        let mut old = header("localhost");
        old.attrs.retain(|(k, _)| k != "version");
        let actions = feed(&mut machine, Input::Event(StreamEvent::Open(old)));
        assert_stream_error(&actions, "unsupported-version");
    }

    #[test]
    fn xml_errors_map_to_stream_errors() {
        let cases = [
            (XmlError::NotWellFormed("x".into()), "not-well-formed"),
            (XmlError::RestrictedXml("x".into()), "restricted-xml"),
            (XmlError::TooLarge("x".into()), "policy-violation"),
            (XmlError::LimitExceeded("x".into()), "policy-violation"),
        ];
        for (error, condition) in cases {
            let mut machine = C2sServer::new(config(), None);
            let actions = feed(&mut machine, Input::XmlError(error));
            assert_stream_error(&actions, condition);
        }
    }

    #[test]
    fn stanza_before_authentication_is_not_authorized() {
        let mut machine = C2sServer::new(config(), Some(bindings()));
        feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        let message = element("message", ns::CLIENT).with_attr("to", "romeo@localhost");
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(message)));
        assert_stream_error(&actions, "not-authorized");
    }

    #[test]
    fn auth_before_tls_fails_with_encryption_required() {
        let mut machine = C2sServer::new(config(), None);
        feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        let auth = element("auth", ns::SASL).with_attr("mechanism", "PLAIN");
        let text = sent(&feed(
            &mut machine,
            Input::Event(StreamEvent::Element(auth)),
        ));
        assert!(text.contains("<encryption-required/>"), "{text}");
    }

    #[test]
    fn repeated_failures_are_delayed_then_disconnected() {
        let mut machine = C2sServer::new(config(), Some(bindings()));
        feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        );
        let auth = element("auth", ns::SASL).with_attr("mechanism", "CRAM-MD5");
        let first = feed(
            &mut machine,
            Input::Event(StreamEvent::Element(auth.clone())),
        );
        assert_eq!(first[0], Action::Delay(Duration::ZERO));
        assert!(sent(&first).contains("<invalid-mechanism/>"));
        let second = feed(&mut machine, Input::Event(StreamEvent::Element(auth)));
        assert_eq!(second[0], Action::Delay(Duration::from_millis(100)));
        assert_stream_error(&second, "policy-violation");
    }

    #[test]
    fn scram_login_binds_and_stamps_from() {
        let mut machine = bound_machine();
        let message = element("message", ns::CLIENT).with_attr("to", "romeo@localhost");
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(message)));
        let [Action::Route(routed)] = actions.as_slice() else {
            panic!("expected a route: {actions:?}");
        };
        assert_eq!(routed.attr("from"), Some("juliet@localhost/balcony"));
    }

    #[test]
    fn forged_from_is_invalid_from() {
        let mut machine = bound_machine();
        let message = element("message", ns::CLIENT)
            .with_attr("from", "romeo@localhost/garden")
            .with_attr("to", "juliet@localhost");
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(message)));
        assert_stream_error(&actions, "invalid-from");
    }

    #[test]
    fn own_bare_jid_as_from_is_accepted_and_restamped() {
        let mut machine = bound_machine();
        let message = element("message", ns::CLIENT).with_attr("from", "juliet@localhost");
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(message)));
        let [Action::Route(routed)] = actions.as_slice() else {
            panic!("expected a route: {actions:?}");
        };
        assert_eq!(routed.attr("from"), Some("juliet@localhost/balcony"));
    }

    #[test]
    fn unknown_top_level_element_after_bind_is_unsupported_stanza_type() {
        let mut machine = bound_machine();
        let actions = feed(
            &mut machine,
            Input::Event(StreamEvent::Element(element("foo", "urn:example"))),
        );
        assert_stream_error(&actions, "unsupported-stanza-type");
    }

    #[test]
    fn negotiation_timeout_closes_unbound_streams_only() {
        let mut machine = C2sServer::new(config(), None);
        assert_stream_error(
            &feed(&mut machine, Input::NegotiationTimeout),
            "connection-timeout",
        );
        let mut bound = bound_machine();
        assert!(feed(&mut bound, Input::NegotiationTimeout).is_empty());
    }

    #[test]
    fn legacy_session_request_is_answered_locally() {
        let mut machine = bound_machine();
        let session = element("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "s1")
            .with_child(element("session", ns::SESSION));
        let text = sent(&feed(
            &mut machine,
            Input::Event(StreamEvent::Element(session)),
        ));
        assert!(
            text.contains("type='result'") && text.contains("id='s1'"),
            "{text}"
        );
    }

    #[test]
    fn client_close_is_answered_with_close() {
        let mut machine = bound_machine();
        let actions = feed(&mut machine, Input::Event(StreamEvent::Close));
        assert_eq!(
            actions,
            vec![Action::Send("</stream:stream>".into()), Action::Close]
        );
    }

    fn registration_config() -> Arc<C2sConfig> {
        let mut config = (*config()).clone();
        config.allow_registration = true;
        Arc::new(config)
    }

    /// A machine with its stream open, encrypted or not.
    fn opened(config: Arc<C2sConfig>, encrypted: bool) -> (C2sServer, String) {
        let mut machine = C2sServer::new(config, encrypted.then(bindings));
        let features = sent(&feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        ));
        (machine, features)
    }

    fn register_iq(kind: &str, id: &str, fields: &[(&str, &str)]) -> Input {
        let mut query = element("query", REGISTER_NS);
        for (name, value) in fields {
            query.push_child(element(name, REGISTER_NS).with_text(*value));
        }
        Input::Event(StreamEvent::Element(
            element("iq", ns::CLIENT)
                .with_attr("type", kind)
                .with_attr("id", id)
                .with_child(query),
        ))
    }

    fn assert_iq_error(actions: &[Action], id: &str, condition: &str) {
        let text = sent(actions);
        assert!(
            text.contains(&format!("id='{id}'")) && text.contains("type='error'"),
            "{text}"
        );
        assert!(
            text.contains(&format!("<{condition} xmlns='{}'/>", ns::STANZAS)),
            "expected {condition} in {text}"
        );
        assert!(
            !text.contains("</stream:stream>"),
            "not a stream error: {text}"
        );
    }

    #[test]
    fn disabled_registration_is_service_unavailable_not_a_stream_error() {
        let (mut machine, features) = opened(config(), true);
        assert!(!features.contains(REGISTER_FEATURE_NS));
        let actions = feed(&mut machine, register_iq("get", "r1", &[]));
        assert_iq_error(&actions, "r1", "service-unavailable");
        let actions = feed(
            &mut machine,
            register_iq("set", "r2", &[("username", "juliet"), ("password", "x")]),
        );
        assert_iq_error(&actions, "r2", "service-unavailable");
        assert!(!machine.is_closed());
    }

    #[test]
    fn registration_is_offered_and_accepted_over_tls_only() {
        let (mut plain, features) = opened(registration_config(), false);
        assert!(!features.contains(REGISTER_FEATURE_NS));
        let actions = feed(
            &mut plain,
            register_iq("set", "r1", &[("username", "juliet"), ("password", "x")]),
        );
        assert_iq_error(&actions, "r1", "not-authorized");
        assert!(!actions.iter().any(|a| matches!(a, Action::Register { .. })));

        let (_, features) = opened(registration_config(), true);
        assert!(features.contains(&format!("<register xmlns='{REGISTER_FEATURE_NS}'/>")));
    }

    #[test]
    fn registration_form_asks_for_username_and_password() {
        let (mut machine, _) = opened(registration_config(), true);
        let text = sent(&feed(&mut machine, register_iq("get", "r1", &[])));
        assert!(
            text.contains("type='result'") && text.contains("id='r1'"),
            "{text}"
        );
        for field in ["<instructions>", "<username/>", "<password/>"] {
            assert!(text.contains(field), "{field} in {text}");
        }
    }

    #[test]
    fn registration_hands_the_prepared_account_to_the_shell_once_per_stream() {
        let (mut machine, _) = opened(registration_config(), true);
        let actions = feed(
            &mut machine,
            register_iq(
                "set",
                "r1",
                &[("username", "Juliet"), ("password", "pencil")],
            ),
        );
        assert_eq!(
            actions,
            vec![Action::Register {
                username: "juliet".into(),
                domain: "localhost".into(),
                password: "pencil".into(),
            }]
        );
        let text = sent(&feed(&mut machine, Input::RegistrationResult(Ok(()))));
        assert_eq!(text, "<iq type='result' id='r1'/>");
        let actions = feed(
            &mut machine,
            register_iq("set", "r2", &[("username", "romeo"), ("password", "x")]),
        );
        assert_iq_error(&actions, "r2", "not-acceptable");
        assert!(!actions.iter().any(|a| matches!(a, Action::Register { .. })));
    }

    #[test]
    fn registration_errors_do_not_echo_the_password() {
        type Fields<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Fields, Option<RegistrationError>, &str); 6] = [
            (&[("username", "juliet")], None, "not-acceptable"),
            (
                &[("username", "juliet"), ("password", "")],
                None,
                "not-acceptable",
            ),
            (
                &[("username", "a@b"), ("password", "pencil")],
                None,
                "jid-malformed",
            ),
            (
                &[("username", "juliet"), ("password", "pencil")],
                Some(RegistrationError::AccountExists),
                "conflict",
            ),
            (
                &[("username", "juliet"), ("password", "pencil")],
                Some(RegistrationError::UnusablePassword),
                "not-acceptable",
            ),
            (
                &[("username", "juliet"), ("password", "pencil")],
                Some(RegistrationError::Unavailable),
                "internal-server-error",
            ),
        ];
        for (fields, shell_error, condition) in cases {
            let (mut machine, _) = opened(registration_config(), true);
            let mut actions = feed(&mut machine, register_iq("set", "r1", fields));
            if let Some(error) = shell_error {
                assert!(matches!(actions[..], [Action::Register { .. }]));
                actions = feed(&mut machine, Input::RegistrationResult(Err(error)));
            }
            assert_iq_error(&actions, "r1", condition);
            assert!(!sent(&actions).contains("pencil"));
            assert!(!machine.is_closed());
        }
    }

    #[test]
    fn refused_registrations_count_toward_the_failure_limit() {
        let (mut machine, _) = opened(registration_config(), true);
        let first = feed(&mut machine, register_iq("set", "r1", &[]));
        assert_eq!(first[0], Action::Delay(Duration::ZERO));
        let second = feed(&mut machine, register_iq("set", "r2", &[]));
        assert_eq!(second[0], Action::Delay(Duration::from_millis(100)));
        assert_stream_error(&second, "policy-violation");
    }

    #[test]
    fn input_while_a_registration_is_pending_is_a_policy_violation() {
        let (mut machine, _) = opened(registration_config(), true);
        feed(
            &mut machine,
            register_iq("set", "r1", &[("username", "juliet"), ("password", "x")]),
        );
        let actions = feed(&mut machine, register_iq("get", "r2", &[]));
        assert_stream_error(&actions, "policy-violation");
    }

    #[test]
    fn cancelling_before_authentication_is_registration_required() {
        let (mut machine, _) = opened(registration_config(), true);
        let query = element("query", REGISTER_NS).with_child(element("remove", REGISTER_NS));
        let iq = element("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "u1")
            .with_child(query);
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(iq)));
        assert_iq_error(&actions, "u1", "registration-required");
    }

    #[test]
    fn other_iqs_before_authentication_stay_not_authorized() {
        let (mut machine, _) = opened(registration_config(), true);
        let ping = element("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "p1")
            .with_child(element("ping", ns::PING));
        let actions = feed(&mut machine, Input::Event(StreamEvent::Element(ping)));
        assert_stream_error(&actions, "not-authorized");
    }

    #[test]
    fn authenticated_streams_do_not_offer_registration() {
        let mut machine = authenticated_machine_with(registration_config());
        let text = sent(&feed(
            &mut machine,
            Input::Event(StreamEvent::Open(header("localhost"))),
        ));
        assert!(!text.contains(REGISTER_FEATURE_NS));
    }

    #[test]
    fn stream_ids_are_fresh() {
        assert_ne!(
            stream_header("a", None, None),
            stream_header("a", None, None)
        );
    }
}
