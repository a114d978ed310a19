//! TLS: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only, a configured
//! certificate or one generated on first start, per-domain certificates chosen by
//! SNI, and the channel-binding data SCRAM-*-PLUS needs.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256, Sha384, Sha512};
use starling_proto::sasl::ChannelBindings;

use crate::accepted_tls::Handshake;
use crate::config::Config;
use crate::s2s::tls::S2sTls;

/// ALPN protocol name of XMPP client streams over direct TLS (XEP-0368).
const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

pub struct TlsSetup {
    /// For STARTTLS.
    pub starttls: Arc<ServerConfig>,
    /// For direct TLS, with ALPN.
    pub direct: Arc<ServerConfig>,
    pub certificates: Arc<Certificates>,
    pub s2s: S2sTls,
}

/// A certificate with its private key, as loaded from PEM files.
pub struct CertificateFiles {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl CertificateFiles {
    pub fn load(cert: &Path, key: &Path) -> Result<CertificateFiles, TlsError> {
        Ok(CertificateFiles {
            chain: load_certs(cert)?,
            key: load_key(key)?,
        })
    }
}

struct Certificate {
    certified: Arc<CertifiedKey>,
    /// `tls-server-end-point` channel binding data (RFC 5929 §4.1) of the leaf.
    end_point: Vec<u8>,
}

/// Our certificates: one per hosted domain where configured, chosen by the name
/// the peer asks for (SNI), and a default for every other name.
pub struct Certificates {
    by_domain: HashMap<String, Certificate>,
    default: Certificate,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("domains", &self.by_domain.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Certificates {
    fn new(
        default: &CertificateFiles,
        by_domain: &HashMap<String, CertificateFiles>,
    ) -> Result<Certificates, TlsError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let load = |files: &CertificateFiles| -> Result<Certificate, TlsError> {
            let key = provider
                .key_provider
                .load_private_key(files.key.clone_key())?;
            Ok(Certificate {
                end_point: end_point_hash(&files.chain[0]),
                certified: Arc::new(CertifiedKey::new(files.chain.clone(), key)),
            })
        };
        let mut loaded = HashMap::new();
        for (domain, files) in by_domain {
            loaded.insert(domain.clone(), load(files)?);
        }
        Ok(Certificates {
            by_domain: loaded,
            default: load(default)?,
        })
    }

    fn for_name(&self, name: Option<&str>) -> &Certificate {
        name.and_then(|name| self.by_domain.get(&name.to_ascii_lowercase()))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        crate::accepted_tls::note_server_name(client_hello.server_name());
        Some(self.for_name(client_hello.server_name()).certified.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key found")]
    NoKey(PathBuf),
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TlsSetup {
    pub fn from_config(config: &Config) -> Result<TlsSetup, TlsError> {
        let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => generate_if_missing(&config.data_dir.join("tls"), &config.domains)?,
        };
        let default = CertificateFiles::load(&cert_path, &key_path)?;
        let mut by_domain = HashMap::new();
        for (domain, files) in &config.tls.certificates {
            by_domain.insert(
                domain.clone(),
                CertificateFiles::load(&files.cert, &files.key)?,
            );
        }
        // Only peer servers' certificates are judged against roots.
        let roots = if config.s2s.enabled {
            crate::s2s::tls::trust_roots(&config.s2s.ca_files)?
        } else {
            rustls::RootCertStore::empty()
        };
        // Components' stanzas leave through s2s under their own domains too.
        TlsSetup::new(&default, &by_domain, &config.local_domains(), roots)
    }

    pub fn new(
        default: &CertificateFiles,
        by_domain: &HashMap<String, CertificateFiles>,
        domains: &[String],
        roots: rustls::RootCertStore,
    ) -> Result<TlsSetup, TlsError> {
        let certificates = Arc::new(Certificates::new(default, by_domain)?);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut starttls = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        // Client connections run on rustls' unbuffered API, which derives no
        // exported keys: it needs the exporter secret (see accepted_tls).
        starttls.key_log = Arc::new(crate::accepted_tls::ExporterSecretLog);
        let mut direct = starttls.clone();
        direct.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
        let client_identities = domains
            .iter()
            .map(|domain| (domain.clone(), by_domain.get(domain).unwrap_or(default)))
            .collect();
        let s2s = S2sTls::new(certificates.clone(), client_identities, roots)?;
        Ok(TlsSetup {
            starttls: Arc::new(starttls),
            direct: Arc::new(direct),
            certificates,
            s2s,
        })
    }

    /// The channel bindings of an accepted client connection. tls-exporter is only
    /// offered over TLS 1.3: over 1.2 it is unsafe without extended master secret (RFC 9266 §3).
    pub(crate) fn channel_bindings(&self, handshake: &Handshake) -> ChannelBindings {
        let tls_exporter = (handshake.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                let mut exporter = vec![0u8; 32];
                handshake
                    .export_keying_material(b"EXPORTER-Channel-Binding", &mut exporter)
                    .map(|()| exporter)
            })
            .flatten();
        ChannelBindings {
            tls_exporter,
            tls_server_end_point: Some(
                self.certificates
                    .for_name(handshake.server_name.as_deref())
                    .end_point
                    .clone(),
            ),
        }
    }
}

/// RFC 5929 §4.1: hash the certificate with its signature's hash, SHA-256 for MD5 and SHA-1.
fn end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    const SHA384_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let der = cert.as_ref();
    let algorithm = signature_algorithm_oid(der).unwrap_or_default();
    if SHA384_OIDS.contains(&algorithm) {
        Sha384::digest(der).to_vec()
    } else if SHA512_OIDS.contains(&algorithm) {
        Sha512::digest(der).to_vec()
    } else {
        Sha256::digest(der).to_vec()
    }
}

/// The OID of `Certificate.signatureAlgorithm` (the second element of the outer SEQUENCE).
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    fn header(data: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *data.first()?;
        let first = *data.get(1)? as usize;
        if first < 0x80 {
            return Some((tag, 2, first));
        }
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | *data.get(2 + i)? as usize;
        }
        Some((tag, 2 + count, len))
    }
    let (_, outer_header, _) = header(der)?;
    let rest = der.get(outer_header..)?;
    let (_, tbs_header, tbs_len) = header(rest)?;
    let algorithm = rest.get(tbs_header + tbs_len..)?;
    let (_, alg_header, _) = header(algorithm)?;
    let oid = algorithm.get(alg_header..)?;
    let (tag, oid_header, oid_len) = header(oid)?;
    (tag == 0x06).then(|| oid.get(oid_header..oid_header + oid_len))?
}

fn generate_if_missing(dir: &Path, domains: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let certified = rcgen::generate_simple_self_signed(domains.to_vec())?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, certified.cert.pem()).map_err(io_error(&cert_path))?;
    tracing::info!(path = %cert_path.display(), "generated a self-signed certificate");
    Ok((cert_path, key_path))
}

/// Write a file readable by its owner only (private keys, secrets).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(contents).map_err(io_error(path))
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(io_error(path))?
        .ok_or_else(|| TlsError::NoKey(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_reused_on_next_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = generate_if_missing(dir.path(), &["localhost".into()]).expect("generated");
        let pem = std::fs::read(&first.0).expect("cert written");
        let second = generate_if_missing(dir.path(), &["localhost".into()]).expect("reused");
        assert_eq!(std::fs::read(&second.0).expect("cert"), pem);
    }

    #[test]
    fn end_point_hash_of_ecdsa_sha256_certificate_is_sha256() {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("generated");
        let der = certified.cert.der();
        assert_eq!(
            signature_algorithm_oid(der),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );
        assert_eq!(end_point_hash(der), Sha256::digest(der.as_ref()).to_vec());
    }
}
