//! A throwaway PKI for federation tests: one CA per test, leaf certificates
//! for server domains (usable both to serve and to authenticate as a client,
//! as s2s needs), and self-signed leaves that no CA vouches for.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A certificate authority whose certificate tests hand to peers as a trust anchor.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    /// PKCS#8.
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key generated");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "Starling test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        let cert = params.self_signed(&key).expect("CA certificate signed");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// A leaf for `domains` (its DNS SANs; the first is also the CN), signed by this CA.
    pub fn issue(&self, domains: &[&str]) -> Issued {
        let key = KeyPair::generate().expect("leaf key generated");
        let params = leaf_params(domains);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf signed");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A leaf like [`TestCa::issue`]'s, but signed by its own key: valid in form,
/// trusted by nobody.
pub fn self_signed(domains: &[&str]) -> Issued {
    let key = KeyPair::generate().expect("leaf key generated");
    let cert = leaf_params(domains)
        .self_signed(&key)
        .expect("self-signed leaf");
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes `<name>.crt` and `<name>.key` into `dir`; returns (certificate, key).
pub fn write_pem(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &issued.cert_pem).expect("certificate written");
    std::fs::write(&key, &issued.key_pem).expect("key written");
    (cert, key)
}

fn leaf_params(domains: &[&str]) -> CertificateParams {
    let names: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf parameters");
    if let Some(first) = domains.first() {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // s2s peers present the same certificate as TLS server and as TLS client.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Lets OpenSSL (Prosody) link the leaf to the CA by key identifier.
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    params
}

/// From yesterday (tolerates clock skew between processes) for a year. The
/// `time` crate is not a dependency here, so dates are built from rcgen's
/// `date_time_ymd` plus std durations.
fn set_validity(params: &mut CertificateParams) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    params.not_before = date_time_ymd(1970, 1, 1) + (now - DAY);
    params.not_after = params.not_before + 365 * DAY;
}
