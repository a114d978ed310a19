//! TLS between servers. Both directions present our certificate and ask for the
//! peer's, but never fail the handshake over it: a peer whose certificate does not
//! validate may still authenticate by dialback. Whether a certificate is valid for
//! a domain (RFC 6125, against the system roots and configured CAs) is decided
//! after the handshake, once the domain it must be valid for is known.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ResolvesServerCert;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::tls::{CertificateFiles, TlsError};

/// ALPN protocol name of XMPP server streams over direct TLS (XEP-0368).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

pub struct S2sTls {
    /// Incoming STARTTLS; asks for the peer's certificate.
    pub accept: Arc<ServerConfig>,
    /// Incoming direct TLS, with ALPN.
    pub accept_direct: Arc<ServerConfig>,
    /// Outgoing STARTTLS by local domain; each presents that domain's certificate.
    connect: HashMap<String, Arc<ClientConfig>>,
    /// Outgoing direct TLS, with ALPN, by local domain.
    connect_direct: HashMap<String, Arc<ClientConfig>>,
    /// `None` when there is nothing to trust: then no certificate validates.
    validator: Option<Arc<WebPkiServerVerifier>>,
}

impl S2sTls {
    /// `identities`: each local domain with the certificate it presents when connecting.
    pub fn new(
        certificates: Arc<dyn ResolvesServerCert>,
        identities: Vec<(String, &CertificateFiles)>,
        roots: RootCertStore,
    ) -> Result<S2sTls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let accept = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?
            .with_client_cert_verifier(Arc::new(DeferredVerification(provider.clone())))
            .with_cert_resolver(certificates);
        let mut accept_direct = accept.clone();
        accept_direct.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        let mut connect = HashMap::new();
        let mut connect_direct = HashMap::new();
        for (domain, files) in identities {
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DeferredVerification(provider.clone())))
                .with_client_auth_cert(files.chain.clone(), files.key.clone_key())?;
            let mut direct = config.clone();
            direct.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
            connect.insert(domain.clone(), Arc::new(config));
            connect_direct.insert(domain, Arc::new(direct));
        }
        let validator = if roots.is_empty() {
            None
        } else {
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
            Some(verifier)
        };
        Ok(S2sTls {
            accept: Arc::new(accept),
            accept_direct: Arc::new(accept_direct),
            connect,
            connect_direct,
            validator,
        })
    }

    /// The client configuration for connections from `local`.
    pub fn connect_config(&self, local: &str, direct_tls: bool) -> Option<Arc<ClientConfig>> {
        let configs = if direct_tls {
            &self.connect_direct
        } else {
            &self.connect
        };
        configs.get(local).cloned()
    }

    /// RFC 6125 / XEP-0178: the chain leads to a trusted root and the leaf names
    /// `domain` (a DNS-ID, wildcards included).
    pub fn certificate_valid_for(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        domain: &str,
    ) -> bool {
        let (Some(validator), Some([leaf, intermediates @ ..])) = (&self.validator, chain) else {
            return false;
        };
        let Ok(name) = ServerName::try_from(domain.to_string()) else {
            return false;
        };
        match validator.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now()) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(%domain, error = %e, "peer certificate does not validate");
                false
            }
        }
    }
}

/// The system's trusted roots plus the configured extra CAs.
pub fn trust_roots(extra_ca_files: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping a system CA certificate");
    }
    roots.add_parsable_certificates(native.certs);
    for path in extra_ca_files {
        for certificate in crate::tls::load_certs(path)? {
            roots.add(certificate)?;
        }
    }
    Ok(roots)
}

/// Checks the handshake signatures (the peer holds the key of the certificate it
/// shows) and leaves the certificate's validity to `S2sTls::certificate_valid_for`.
#[derive(Debug)]
struct DeferredVerification(Arc<CryptoProvider>);

impl DeferredVerification {
    fn check12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn check13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for DeferredVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for DeferredVerification {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes()
    }
}
