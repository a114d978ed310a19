//! One client connection driven as fast as the server allows: connect (from a
//! chosen loopback source address), STARTTLS or direct TLS or plain, SASL, bind,
//! roster, initial presence; then send and receive stanzas.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use starling_proto::sasl::{DerivedKeys, Mechanism, SaslClient};
use starling_xml::{Element, Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

const STREAM_NS: &str = "http://etherx.jabber.org/streams";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const CLIENT_NS: &str = "jabber:client";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Starttls,
    /// XEP-0368 direct TLS.
    Direct,
    Plain,
}

/// Where and how every session connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub domain: String,
    pub transport: Transport,
    pub mechanism: Mechanism,
    pub password: String,
    /// `{n}` is replaced by the account number.
    pub user_pattern: String,
    /// Loopback source addresses to spread connections over.
    pub sources: Vec<IpAddr>,
    pub timeout: Duration,
}

impl Target {
    pub fn user(&self, n: usize) -> String {
        self.user_pattern.replace("{n}", &n.to_string())
    }
}

pub type BenchError = String;

/// The connection, plain or with TLS layered on it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Io = Box<dyn Stream>;

/// Parses what one connection receives.
pub struct Incoming {
    parser: StreamParser,
    pending: VecDeque<StreamEvent>,
    buf: Vec<u8>,
}

impl Incoming {
    fn new() -> Self {
        Incoming {
            parser: StreamParser::new(Limits::default()),
            pending: VecDeque::new(),
            buf: vec![0; 16 * 1024],
        }
    }

    async fn next_event<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        timeout: Duration,
    ) -> Result<StreamEvent, BenchError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let n = tokio::time::timeout(timeout, io.read(&mut self.buf))
                .await
                .map_err(|_| "read timed out".to_string())?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            let mut events = Vec::new();
            self.parser
                .feed(&self.buf[..n], &mut events)
                .map_err(|e| format!("server XML: {e}"))?;
            self.pending.extend(events);
        }
    }

    async fn next_element<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        timeout: Duration,
    ) -> Result<Element, BenchError> {
        match self.next_event(io, timeout).await? {
            StreamEvent::Element(e) => Ok(e),
            StreamEvent::Open(_) => Err("unexpected stream header".into()),
            StreamEvent::Close => Err("the server closed the stream".into()),
        }
    }
}

/// A logged-in session.
pub struct Session {
    io: Io,
    incoming: Incoming,
    pub jid: String,
    /// The SCRAM keys of this login, for the next login of the same account.
    pub keys: Option<DerivedKeys>,
    timeout: Duration,
}

/// The receiving half of a split session.
pub struct SessionReader {
    io: ReadHalf<Io>,
    incoming: Incoming,
}

impl SessionReader {
    pub async fn next_element(&mut self, timeout: Duration) -> Result<Element, BenchError> {
        self.incoming.next_element(&mut self.io, timeout).await
    }
}

/// The sending half of a split session.
pub struct SessionWriter {
    io: WriteHalf<Io>,
    timeout: Duration,
}

impl SessionWriter {
    pub async fn send(&mut self, xml: &str) -> Result<(), BenchError> {
        write_with_timeout(&mut self.io, xml, self.timeout).await
    }

    pub async fn close(mut self) {
        let _ = self.send("</stream:stream>").await;
        let _ = self.io.shutdown().await;
    }
}

async fn write_with_timeout<W: AsyncWrite + Unpin>(
    io: &mut W,
    xml: &str,
    timeout: Duration,
) -> Result<(), BenchError> {
    tokio::time::timeout(timeout, io.write_all(xml.as_bytes()))
        .await
        .map_err(|_| "write timed out".to_string())?
        .map_err(|e| format!("write: {e}"))
}

impl Session {
    /// Connect as account `n` and log in up to a bound resource, with the SCRAM
    /// keys of an earlier login if there are any. Only loopback targets are
    /// accepted: this tool must not be pointed at other people's servers.
    pub async fn login(
        target: &Target,
        n: usize,
        tls: &TlsConnector,
        keys: Option<DerivedKeys>,
    ) -> Result<Session, BenchError> {
        if !target.server.ip().is_loopback() {
            return Err(format!("{} is not a loopback address", target.server));
        }
        let source = target.sources[n % target.sources.len()];
        let socket = if target.server.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let tcp = tokio::time::timeout(target.timeout, socket.connect(target.server))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut session = Session {
            io: Box::new(tcp),
            incoming: Incoming::new(),
            jid: String::new(),
            keys,
            timeout: target.timeout,
        };
        if target.transport == Transport::Direct {
            session.start_tls(tls, &target.domain).await?;
        }
        let mut features = session.open(&target.domain).await?;
        if target.transport == Transport::Starttls {
            session
                .send(&format!("<starttls xmlns='{TLS_NS}'/>"))
                .await?;
            let answer = session.next_element().await?;
            if answer.name != "proceed" {
                return Err(format!("STARTTLS refused: {}", answer.to_xml(CLIENT_NS)));
            }
            session.start_tls(tls, &target.domain).await?;
            features = session.open(&target.domain).await?;
        }
        let offered = features
            .child("mechanisms", SASL_NS)
            .map(|m| m.elements().map(|e| e.text()).collect::<Vec<_>>())
            .unwrap_or_default();
        if !offered.iter().any(|m| m == target.mechanism.name()) {
            return Err(format!(
                "{} is not offered (offered: {offered:?})",
                target.mechanism.name()
            ));
        }
        session
            .authenticate(target.mechanism, &target.user(n), &target.password)
            .await?;
        session.incoming.parser.reset();
        session.open(&target.domain).await?;
        session
            .send(&format!(
                "<iq type='set' id='bind'><bind xmlns='{BIND_NS}'><resource>bench</resource></bind></iq>"
            ))
            .await?;
        let bound = session.next_element().await?;
        session.jid = bound
            .child("bind", BIND_NS)
            .and_then(|b| b.child("jid", BIND_NS))
            .map(|j| j.text())
            .ok_or_else(|| format!("bind failed: {}", bound.to_xml(CLIENT_NS)))?;
        Ok(session)
    }

    /// What a client does right after binding: fetch the roster, send initial presence.
    pub async fn roster_and_presence(&mut self) -> Result<(), BenchError> {
        self.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq><presence/>")
            .await?;
        loop {
            let element = self.next_element().await?;
            if element.name == "iq" && element.attr("id") == Some("roster") {
                return Ok(());
            }
        }
    }

    async fn open(&mut self, domain: &str) -> Result<Element, BenchError> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='{CLIENT_NS}' xmlns:stream='{STREAM_NS}' to='{domain}' version='1.0'>"
        ))
        .await?;
        loop {
            match self.next_event().await? {
                StreamEvent::Open(_) => continue,
                StreamEvent::Element(e) if e.name == "features" => return Ok(e),
                StreamEvent::Element(e) => {
                    return Err(format!("expected features, got {}", e.to_xml(CLIENT_NS)))
                }
                StreamEvent::Close => return Err("the server closed the stream".into()),
            }
        }
    }

    async fn start_tls(&mut self, tls: &TlsConnector, domain: &str) -> Result<(), BenchError> {
        let plain = std::mem::replace(&mut self.io, Box::new(tokio::io::empty()));
        let name = ServerName::try_from(domain.to_string()).map_err(|e| e.to_string())?;
        let stream = tokio::time::timeout(self.timeout, tls.connect(name, plain))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        self.io = Box::new(stream);
        self.incoming.parser.reset();
        Ok(())
    }

    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<(), BenchError> {
        let mut sasl = SaslClient::new(mechanism, user, password, None)
            .map_err(|e| e.to_string())?
            .with_keys(self.keys.take());
        let initial = BASE64.encode(sasl.initial_response());
        self.send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='{}'>{initial}</auth>",
            mechanism.name()
        ))
        .await?;
        loop {
            let answer = self.next_element().await?;
            let data = BASE64
                .decode(answer.text().trim())
                .map_err(|e| format!("bad base64 from the server: {e}"))?;
            match answer.name.as_str() {
                "challenge" => {
                    let response = sasl.respond(&data).map_err(|e| e.to_string())?;
                    self.send(&format!(
                        "<response xmlns='{SASL_NS}'>{}</response>",
                        BASE64.encode(response)
                    ))
                    .await?;
                }
                "success" => {
                    let data = Some(data.as_slice()).filter(|d| !d.is_empty());
                    sasl.finish(data).map_err(|e| e.to_string())?;
                    self.keys = sasl.keys().cloned();
                    return Ok(());
                }
                _ => return Err(format!("{user}: {}", answer.to_xml(CLIENT_NS))),
            }
        }
    }

    pub async fn send(&mut self, xml: &str) -> Result<(), BenchError> {
        write_with_timeout(&mut self.io, xml, self.timeout).await
    }

    async fn next_event(&mut self) -> Result<StreamEvent, BenchError> {
        self.incoming.next_event(&mut self.io, self.timeout).await
    }

    /// The next stanza or stream-level element.
    pub async fn next_element(&mut self) -> Result<Element, BenchError> {
        self.incoming.next_element(&mut self.io, self.timeout).await
    }

    /// Separate halves, so one task can send while another receives.
    pub fn split(self) -> (SessionReader, SessionWriter) {
        let (read, write) = tokio::io::split(self.io);
        (
            SessionReader {
                io: read,
                incoming: self.incoming,
            },
            SessionWriter {
                io: write,
                timeout: self.timeout,
            },
        )
    }

    /// Close the stream politely and drop the connection.
    pub async fn close(mut self) {
        let _ = self.send("</stream:stream>").await;
        let _ = self.io.shutdown().await;
    }
}

/// Benchmarks run against local servers with self-signed certificates: the
/// certificate is not checked, the handshake and its cost are real.
pub fn tls_connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
