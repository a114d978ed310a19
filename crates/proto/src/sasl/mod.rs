//! SASL mechanisms (RFC 6120 §6): SCRAM-SHA-1/256/512 with and without
//! channel binding (RFC 5802, RFC 7677, RFC 9266) and PLAIN, server and client side.
//!
//! Both sides are sans-IO: they take decoded SASL payloads and return the next
//! payload or outcome; the caller does base64, XML and the credential lookup.

mod client;
mod credentials;
mod plain;
mod scram;
mod server;

pub use client::{DerivedKeys, SaslClient};
pub use credentials::{ScramCredentials, ScramHash};
pub use server::{SaslServer, SaslServerConfig, ServerStep};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    ScramSha512,
    ScramSha512Plus,
    Plain,
}

impl Mechanism {
    /// Strongest first: the order in which to offer and to prefer them.
    pub const ALL: [Mechanism; 7] = [
        Mechanism::ScramSha512Plus,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha512Plus => "SCRAM-SHA-512-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The hash of a SCRAM mechanism; `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            Mechanism::ScramSha512 | Mechanism::ScramSha512Plus => Some(ScramHash::Sha512),
            Mechanism::Plain => None,
        }
    }

    /// Whether the mechanism uses channel binding.
    pub fn is_plus(self) -> bool {
        matches!(
            self,
            Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus | Mechanism::ScramSha512Plus
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBindingType {
    /// RFC 9266, the preferred type for TLS 1.3.
    TlsExporter,
    /// RFC 5929: the hash of the server's certificate.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }
}

/// Channel-binding data the TLS layer computed for this connection.
#[derive(Debug, Clone, Default)]
pub struct ChannelBindings {
    pub tls_exporter: Option<Vec<u8>>,
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// The types with data available, preferred first.
    pub fn available_types(&self) -> Vec<ChannelBindingType> {
        let mut types = Vec::new();
        if self.tls_exporter.is_some() {
            types.push(ChannelBindingType::TlsExporter);
        }
        if self.tls_server_end_point.is_some() {
            types.push(ChannelBindingType::TlsServerEndPoint);
        }
        types
    }

    pub fn get(&self, ty: ChannelBindingType) -> Option<&[u8]> {
        match ty {
            ChannelBindingType::TlsExporter => self.tls_exporter.as_deref(),
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point.as_deref(),
        }
    }
}

/// The SASL failure conditions of RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    const ALL: [SaslFailure; 11] = [
        SaslFailure::Aborted,
        SaslFailure::AccountDisabled,
        SaslFailure::CredentialsExpired,
        SaslFailure::EncryptionRequired,
        SaslFailure::IncorrectEncoding,
        SaslFailure::InvalidAuthzid,
        SaslFailure::InvalidMechanism,
        SaslFailure::MalformedRequest,
        SaslFailure::MechanismTooWeak,
        SaslFailure::NotAuthorized,
        SaslFailure::TemporaryAuthFailure,
    ];

    /// The name of the condition element inside `<failure/>`.
    pub fn condition(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// The failure named by a condition element, for the client side.
    pub fn from_condition(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.condition() == name)
    }
}

/// Errors of the client side and of credential derivation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the username is empty")]
    InvalidUsername,
    #[error("the password violates the OpaqueString profile")]
    InvalidPassword,
    #[error("the iteration count must be at least 1")]
    InvalidIterations,
    #[error("a -PLUS mechanism needs channel-binding data and only it may use it")]
    ChannelBindingMismatch,
    #[error("the system random number generator failed")]
    RandomUnavailable,
    #[error("the server's message is malformed")]
    MalformedChallenge,
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("the server reported an error: {0}")]
    ServerError(String),
    #[error("the server's signature is wrong: it does not know the password")]
    ServerSignatureMismatch,
    #[error("the SASL exchange is not at a step where this call is valid")]
    OutOfOrder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip_and_are_ordered_strongest_first() {
        let names: Vec<_> = Mechanism::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            [
                "SCRAM-SHA-512-PLUS",
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-512",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "PLAIN"
            ]
        );
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(m.is_plus(), m.name().ends_with("-PLUS"));
            assert_eq!(
                m.scram_hash().map(|h| h.name()),
                m.name()
                    .strip_prefix("SCRAM-")
                    .map(|rest| rest.trim_end_matches("-PLUS"))
            );
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    }

    #[test]
    fn channel_binding_types_and_availability() {
        for ty in [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ] {
            assert_eq!(ChannelBindingType::from_name(ty.name()), Some(ty));
        }
        assert_eq!(ChannelBindingType::from_name("tls-unique"), None);
        let bindings = ChannelBindings {
            tls_exporter: None,
            tls_server_end_point: Some(vec![1]),
        };
        assert_eq!(
            bindings.available_types(),
            [ChannelBindingType::TlsServerEndPoint]
        );
        assert_eq!(bindings.get(ChannelBindingType::TlsExporter), None);
        assert!(ChannelBindings::default().available_types().is_empty());
    }

    #[test]
    fn failure_conditions_round_trip() {
        assert_eq!(SaslFailure::NotAuthorized.condition(), "not-authorized");
        assert_eq!(
            SaslFailure::TemporaryAuthFailure.condition(),
            "temporary-auth-failure"
        );
        for f in SaslFailure::ALL {
            assert_eq!(SaslFailure::from_condition(f.condition()), Some(f));
        }
        assert_eq!(SaslFailure::from_condition("bad-auth"), None);
    }
}
