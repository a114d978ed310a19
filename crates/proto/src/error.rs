//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3) as typed values,
//! with the one conversion that turns them into XML.

use starling_xml::{Element, XmlError};

use crate::ns;

/// The defined stream error conditions of RFC 6120 §4.9.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamErrorCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost(String),
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamErrorCondition {
    pub fn name(&self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost(_) => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }
}

/// A stream error: the condition plus optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// The stream error for input the parser refused (RFC 6120 §4.9.3).
    pub fn from_xml_error(error: &XmlError) -> Self {
        let condition = match error {
            XmlError::NotWellFormed(_) => StreamErrorCondition::NotWellFormed,
            XmlError::RestrictedXml(_) => StreamErrorCondition::RestrictedXml,
            XmlError::TooLarge(_) | XmlError::LimitExceeded(_) => {
                StreamErrorCondition::PolicyViolation
            }
        };
        StreamError::with_text(condition, error.to_string())
    }

    /// `<stream:error>` with the condition element and optional text.
    pub fn to_element(&self) -> Element {
        let mut condition = Element::new(self.condition.name(), ns::STREAMS);
        if let StreamErrorCondition::SeeOtherHost(host) = &self.condition {
            condition = condition.with_text(host.clone());
        }
        let mut error = Element::new("error", ns::STREAM).with_child(condition);
        if let Some(text) = &self.text {
            error.push_child(Element::new("text", ns::STREAMS).with_text(text.clone()));
        }
        error
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.text {
            Some(text) => write!(f, "{} ({text})", self.condition.name()),
            None => f.write_str(self.condition.name()),
        }
    }
}

/// The error types of RFC 6120 §8.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl StanzaErrorType {
    pub fn name(self) -> &'static str {
        match self {
            StanzaErrorType::Auth => "auth",
            StanzaErrorType::Cancel => "cancel",
            StanzaErrorType::Continue => "continue",
            StanzaErrorType::Modify => "modify",
            StanzaErrorType::Wait => "wait",
        }
    }
}

/// The defined stanza error conditions of RFC 6120 §8.3.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StanzaErrorCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone(Option<String>),
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect(Option<String>),
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl StanzaErrorCondition {
    pub fn name(&self) -> &'static str {
        use StanzaErrorCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone(_) => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect(_) => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives in its examples for each condition.
    pub fn default_type(&self) -> StanzaErrorType {
        use StanzaErrorCondition::*;
        use StanzaErrorType::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect(_) => Modify,
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => Auth,
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone(_)
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => Cancel,
        }
    }
}

/// A stanza error as carried in `<error/>` of a stanza of type "error".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub error_type: StanzaErrorType,
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
    pub by: Option<String>,
}

impl StanzaError {
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError {
            error_type: condition.default_type(),
            condition,
            text: None,
            by: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_by(mut self, by: impl Into<String>) -> Self {
        self.by = Some(by.into());
        self
    }

    pub fn to_element(&self, stanza_ns: &str) -> Element {
        let mut condition = Element::new(self.condition.name(), ns::STANZAS);
        if let StanzaErrorCondition::Gone(Some(uri)) | StanzaErrorCondition::Redirect(Some(uri)) =
            &self.condition
        {
            condition = condition.with_text(uri.clone());
        }
        let mut error = Element::new("error", stanza_ns)
            .with_attr("type", self.error_type.name())
            .with_child(condition);
        if let Some(by) = &self.by {
            error.set_attr("by", by.clone());
        }
        if let Some(text) = &self.text {
            error.push_child(Element::new("text", ns::STANZAS).with_text(text.clone()));
        }
        error
    }

    /// The error reply to `stanza` (RFC 6120 §8.3.1): addresses swapped, type "error",
    /// the original payload kept. None for a stanza of type "error", which is never
    /// answered with another error, and for IQ results.
    pub fn reply_to(&self, stanza: &Element) -> Option<Element> {
        match stanza.attr("type") {
            Some("error") => return None,
            Some("result") if stanza.name == "iq" => return None,
            _ => {}
        }
        let mut reply = Element::new(stanza.name.clone(), stanza.ns.clone());
        if let Some(id) = stanza.attr("id") {
            reply.set_attr("id", id);
        }
        if let Some(from) = stanza.attr("from") {
            reply.set_attr("to", from);
        }
        if let Some(to) = stanza.attr("to") {
            reply.set_attr("from", to);
        }
        reply.set_attr("type", "error");
        for child in stanza.elements() {
            reply.push_child(child.clone());
        }
        reply.push_child(self.to_element(&stanza.ns));
        Some(reply)
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.condition.name(), self.error_type.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_serializes_with_condition_and_text() {
        let err = StreamError::with_text(StreamErrorCondition::HostUnknown, "no such host");
        assert_eq!(
            err.to_element().to_xml(ns::CLIENT),
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such host</text></stream:error>"
        );
    }

    #[test]
    fn stanza_error_reply_swaps_addresses_and_keeps_payload() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("id", "a1")
            .with_attr("type", "get")
            .with_attr("from", "juliet@example.com/balcony")
            .with_attr("to", "example.com")
            .with_child(Element::new("query", "urn:example:unknown"));
        let reply = StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
            .reply_to(&iq)
            .expect("a get is answered");
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("to"), Some("juliet@example.com/balcony"));
        assert_eq!(reply.attr("from"), Some("example.com"));
        assert_eq!(reply.attr("id"), Some("a1"));
        assert!(reply.child("query", "urn:example:unknown").is_some());
        let error = reply.child("error", ns::CLIENT).expect("error child");
        assert_eq!(error.attr("type"), Some("cancel"));
        assert!(error.child("service-unavailable", ns::STANZAS).is_some());
    }

    #[test]
    fn errors_and_results_are_never_answered_with_errors() {
        let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
        let error_msg = Element::new("message", ns::CLIENT).with_attr("type", "error");
        let result_iq = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        assert!(err.reply_to(&error_msg).is_none());
        assert!(err.reply_to(&result_iq).is_none());
    }

    #[test]
    fn condition_types_follow_rfc6120() {
        assert_eq!(
            StanzaErrorCondition::BadRequest.default_type(),
            StanzaErrorType::Modify
        );
        assert_eq!(
            StanzaErrorCondition::NotAuthorized.default_type(),
            StanzaErrorType::Auth
        );
        assert_eq!(
            StanzaErrorCondition::RemoteServerTimeout.default_type(),
            StanzaErrorType::Wait
        );
        assert_eq!(
            StanzaErrorCondition::ServiceUnavailable.default_type(),
            StanzaErrorType::Cancel
        );
    }
}
