//! Test harness: starts the real `starling` binary on ephemeral ports with a
//! temporary data directory, and a small XMPP client that speaks raw XML over TCP
//! and TLS so tests can send anything, well-formed or not.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use starling_proto::sasl::{ChannelBindingType, Mechanism, SaslClient};
use starling_xml::{Element, Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const CLIENT_NS: &str = "jabber:client";
pub const STREAMS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const ROSTER_NS: &str = "jabber:iq:roster";
pub const PASSWORD: &str = "correct horse battery staple";
/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The binary under test; examples (built beside it in target/*/examples) find it one level up.
pub fn starling_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_starling") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("current executable");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target directory");
            dir.join("starling")
        }
    }
}

/// A running `starling serve` process, killed on drop.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub c2s: std::net::SocketAddr,
    pub direct_tls: std::net::SocketAddr,
    /// The component listener, when the config hosts components.
    pub components: Option<std::net::SocketAddr>,
    /// The server-to-server listener, when federation is enabled.
    pub s2s: Option<std::net::SocketAddr>,
    /// What clients trust for this server's certificate, when it is not the
    /// generated one (a test CA).
    pub trust: Option<PathBuf>,
    child: Child,
}

impl TestServer {
    /// Start with the default test config plus `extra` TOML appended to its sections.
    pub fn start(
        extra_top: &str,
        extra_c2s: &str,
        extra_limits: &str,
        extra_auth: &str,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("starling.toml");
        let config = format!(
            "domains = [\"localhost\", \"example.test\"]\ndata_dir = \"{}\"\n{extra_top}\n\
             [c2s]\nlisten = [\"127.0.0.1:0\"]\ndirect_tls_listen = [\"127.0.0.1:0\"]\n{extra_c2s}\n\
             [limits]\n{extra_limits}\n[auth]\nfailure_delay_ms = 10\n{extra_auth}\n\
             [s2s]\nlisten = [\"127.0.0.1:0\"]\n",
            dir.path().join("data").display()
        );
        std::fs::write(&config_path, config).expect("config written");
        Self::start_with(dir, config_path)
    }

    pub fn default_config() -> TestServer {
        Self::start("", "", "", "")
    }

    pub fn start_with(dir: tempfile::TempDir, config_path: PathBuf) -> TestServer {
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let mut child = Command::new(starling_bin())
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .env("STARLING_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starling starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut c2s = None;
        let mut direct_tls = None;
        let mut components = None;
        let mut s2s = None;
        while c2s.is_none() || direct_tls.is_none() {
            let line = lines
                .next()
                .expect("starling printed its listeners before exiting")
                .expect("stdout readable");
            if let Some(addr) = line.strip_prefix("c2s listening on ") {
                c2s = Some(addr.parse().expect("address"));
            } else if let Some(addr) = line.strip_prefix("c2s direct TLS listening on ") {
                direct_tls = Some(addr.parse().expect("address"));
            } else if let Some(addr) = line.strip_prefix("components listening on ") {
                components = Some(addr.parse().expect("address"));
            } else if let Some(addr) = line.strip_prefix("s2s listening on ") {
                s2s = Some(addr.parse().expect("address"));
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestServer {
            dir,
            config_path,
            c2s: c2s.expect("c2s address"),
            direct_tls: direct_tls.expect("direct TLS address"),
            components,
            s2s,
            trust: None,
            child,
        }
    }

    /// Run a `starling` admin command against this server's config.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut child = Command::new(starling_bin())
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env("STARLING_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starling admin command starts");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("stdin written");
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().expect("admin command finishes")
    }

    pub fn adduser(&self, jid: &str) {
        let output = self.admin(&["adduser", jid], Some(&format!("{PASSWORD}\n")));
        assert!(
            output.status.success(),
            "adduser {jid} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// What the server logged so far (info level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cert_path(&self) -> PathBuf {
        match &self.trust {
            Some(trust) => trust.clone(),
            None => self.dir.path().join("data").join("tls").join("cert.pem"),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw XMPP client: writes whatever it is told and parses what comes back.
pub struct Client {
    io: Option<Box<dyn Io>>,
    tcp: Option<TcpStream>,
    parser: StreamParser,
    events: std::collections::VecDeque<StreamEvent>,
    pub channel_bindings: Option<(Vec<u8>, Vec<u8>)>,
    pub jid: Option<String>,
}

pub fn tls_connector(cert: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(cert).expect("server certificate readable");
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("certificate added");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connected");
        Client {
            io: None,
            tcp: Some(tcp),
            parser: StreamParser::new(Limits::default()),
            events: Default::default(),
            channel_bindings: None,
            jid: None,
        }
    }

    pub async fn send(&mut self, data: &str) {
        let result = match (&mut self.io, &mut self.tcp) {
            (Some(io), _) => io.write_all(data.as_bytes()).await,
            (None, Some(tcp)) => tcp.write_all(data.as_bytes()).await,
            _ => panic!("no connection"),
        };
        result.expect("write succeeds");
    }

    /// Send bytes, ignoring a write error (the server may already have closed).
    pub async fn send_bytes_lossy(&mut self, data: &[u8]) {
        let _ = match (&mut self.io, &mut self.tcp) {
            (Some(io), _) => io.write_all(data).await,
            (None, Some(tcp)) => tcp.write_all(data).await,
            _ => panic!("no connection"),
        };
    }

    async fn read_some(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let n = match (&mut self.io, &mut self.tcp) {
            (Some(io), _) => io.read(&mut buf).await,
            (None, Some(tcp)) => tcp.read(&mut buf).await,
            _ => panic!("no connection"),
        };
        match n {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(buf[..n].to_vec()),
        }
    }

    /// The next stream event, or None when the connection closed.
    pub async fn next_event(&mut self) -> Option<StreamEvent> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(event) = self.events.pop_front() {
                    return Some(event);
                }
                let data = self.read_some().await?;
                let mut out = Vec::new();
                self.parser
                    .feed(&data, &mut out)
                    .expect("the server sends well-formed XML");
                self.events.extend(out);
            }
        })
        .await
        .expect("server answered in time")
    }

    pub async fn next_element(&mut self) -> Element {
        loop {
            match self.next_event().await {
                Some(StreamEvent::Element(e)) => return e,
                Some(StreamEvent::Open(_)) => continue,
                other => panic!("expected an element, got {other:?}"),
            }
        }
    }

    /// Wait for the element for which `pred` holds, skipping others.
    pub async fn wait_for(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let element = self.next_element().await;
            if pred(&element) {
                return element;
            }
        }
    }

    /// Expect the stream to end with this stream error condition, then
    /// `</stream:stream>`, then the TCP close.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        let error = loop {
            match self.next_event().await {
                Some(StreamEvent::Element(e)) if e.is("error", starling_xml::STREAM_NS) => break e,
                Some(StreamEvent::Element(_)) | Some(StreamEvent::Open(_)) => continue,
                other => panic!("expected <stream:error><{condition}/>, got {other:?}"),
            }
        };
        assert!(
            error.child(condition, STREAMS_NS).is_some(),
            "expected <{condition}/>, got {}",
            error.to_xml(CLIENT_NS)
        );
        assert_eq!(self.next_event().await, Some(StreamEvent::Close));
        assert_eq!(
            self.next_event().await,
            None,
            "connection closed after the error"
        );
    }

    pub async fn open_stream(&mut self, to: &str) -> Element {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
        ))
        .await;
        match self.next_event().await {
            Some(StreamEvent::Open(_)) => {}
            other => panic!("expected a stream header, got {other:?}"),
        }
        let features = self.next_element().await;
        assert!(features.is("features", starling_xml::STREAM_NS));
        features
    }

    pub async fn starttls(&mut self, cert: &Path) {
        self.starttls_as(cert, "localhost").await;
    }

    /// STARTTLS expecting a certificate for `name`.
    pub async fn starttls_as(&mut self, cert: &Path, name: &str) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let proceed = self.next_element().await;
        assert!(proceed.is("proceed", TLS_NS), "{proceed:?}");
        let tcp = self.tcp.take().expect("plain connection");
        let name = ServerName::try_from(name.to_string()).expect("name");
        let tls = tls_connector(cert)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        self.set_tls(tls);
    }

    /// STARTTLS presenting a client certificate, trusting `ca_pem` for `name`
    /// (a server-to-server peer).
    pub async fn starttls_with_client_certificate(
        &mut self,
        ca_pem: &str,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) {
        use rustls::pki_types::pem::PemObject;
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let proceed = self.next_element().await;
        assert!(proceed.is("proceed", TLS_NS), "{proceed:?}");
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(ca_pem.as_bytes()) {
            roots.add(cert).expect("CA added");
        }
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("PEM key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(rustls_pemfile_certs(cert_pem.as_bytes()), key)
            .expect("client certificate");
        let tcp = self.tcp.take().expect("plain connection");
        let name = ServerName::try_from(name.to_string()).expect("name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        self.set_tls(tls);
    }

    /// The next bytes start a new stream (after SASL success on a raw stream).
    pub fn reset_parser(&mut self) {
        self.parser.reset();
    }

    fn set_tls(&mut self, tls: tokio_rustls::client::TlsStream<TcpStream>) {
        let conn = tls.get_ref().1;
        let exporter = conn
            .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .unwrap_or_default();
        let cert = conn.peer_certificates().expect("server certificate")[0].clone();
        use sha2::Digest;
        let end_point = sha2::Sha256::digest(cert.as_ref()).to_vec();
        self.channel_bindings = Some((exporter, end_point));
        self.io = Some(Box::new(tls));
        self.parser.reset();
    }

    pub async fn connect_direct_tls(addr: std::net::SocketAddr, cert: &Path) -> Client {
        let mut client = Client::connect(addr).await;
        let tcp = client.tcp.take().expect("tcp");
        let tls = tls_connector(cert)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        client.set_tls(tls);
        client
    }

    /// SASL with `mechanism`; returns the server's answer element (success or failure).
    pub async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Element {
        let cb = if mechanism.is_plus() {
            let (exporter, end_point) = self.channel_bindings.clone().expect("TLS is up");
            Some(if matches!(mechanism, Mechanism::ScramSha1Plus) {
                (ChannelBindingType::TlsServerEndPoint, end_point)
            } else {
                (ChannelBindingType::TlsExporter, exporter)
            })
        } else {
            None
        };
        let mut sasl = SaslClient::new(mechanism, user, password, cb).expect("client");
        let initial = b64(&sasl.initial_response());
        self.send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='{}'>{initial}</auth>",
            mechanism.name()
        ))
        .await;
        loop {
            let answer = self.next_element().await;
            if answer.is("challenge", SASL_NS) {
                let challenge = unb64(&answer.text());
                let response = sasl.respond(&challenge).expect("valid challenge");
                self.send(&format!(
                    "<response xmlns='{SASL_NS}'>{}</response>",
                    b64(&response)
                ))
                .await;
                continue;
            }
            if answer.is("success", SASL_NS) {
                let data = unb64(&answer.text());
                sasl.finish(Some(&data).filter(|d| !d.is_empty()).map(|d| d.as_slice()))
                    .expect("server signature verifies");
                self.parser.reset();
            }
            return answer;
        }
    }

    pub async fn bind(&mut self, resource: Option<&str>) -> Element {
        let resource = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>{resource}</bind></iq>"
        ))
        .await;
        self.wait_for(|e| e.attr("id") == Some("bind1")).await
    }

    /// STARTTLS, SCRAM-SHA-256, bind: a logged-in session.
    pub async fn login(server: &TestServer, user: &str, resource: &str) -> Client {
        Self::login_with(server, user, "localhost", resource, Mechanism::ScramSha256).await
    }

    pub async fn login_with(
        server: &TestServer,
        user: &str,
        domain: &str,
        resource: &str,
        mechanism: Mechanism,
    ) -> Client {
        let mut client = Client::connect(server.c2s).await;
        client.open_stream(domain).await;
        client.starttls_as(&server.cert_path(), domain).await;
        client.open_stream(domain).await;
        let answer = client.authenticate(mechanism, user, PASSWORD).await;
        assert!(
            answer.is("success", SASL_NS),
            "{}",
            answer.to_xml(CLIENT_NS)
        );
        client.open_stream(domain).await;
        let bound = client.bind(Some(resource)).await;
        assert_eq!(
            bound.attr("type"),
            Some("result"),
            "{}",
            bound.to_xml(CLIENT_NS)
        );
        let jid = bound
            .child("bind", BIND_NS)
            .and_then(|b| b.child("jid", BIND_NS))
            .expect("bound JID")
            .text();
        client.jid = Some(jid);
        client
    }

    /// Send `xml` (whose id is `id`) and return the error reply with its condition
    /// checked to be `condition`.
    pub async fn expect_stanza_error(&mut self, xml: &str, id: &str, condition: &str) -> Element {
        self.send(xml).await;
        let reply = self.wait_for(|e| e.attr("id") == Some(id)).await;
        assert_eq!(
            reply.attr("type"),
            Some("error"),
            "{}",
            reply.to_xml(CLIENT_NS)
        );
        let error = reply.child("error", CLIENT_NS).expect("error child");
        assert!(
            error.child(condition, STANZAS_NS).is_some(),
            "expected <{condition}/>: {}",
            reply.to_xml(CLIENT_NS)
        );
        reply
    }

    /// Send initial presence and wait for the server to reflect it back to this
    /// resource (RFC 6121 §4.2.2), so the session is available when this returns.
    pub async fn go_available(&mut self) {
        self.send("<presence/>").await;
        let me = self.jid.clone().expect("bound");
        self.wait_for(|e| {
            e.name == "presence" && e.attr("from") == Some(me.as_str()) && e.attr("type").is_none()
        })
        .await;
    }

    /// Send an IQ whose id is `id` and return its result, failing on anything else.
    pub async fn expect_result(&mut self, xml: &str, id: &str) -> Element {
        self.send(xml).await;
        let reply = self.wait_for(|e| e.attr("id") == Some(id)).await;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            reply.to_xml(CLIENT_NS)
        );
        reply
    }

    /// The full roster (RFC 6121 §2.1.3): the result's `<query/>`.
    pub async fn roster(&mut self) -> Element {
        let id = rand_id();
        let get = format!("<iq type='get' id='{id}'><query xmlns='{ROSTER_NS}'/></iq>");
        let result = self.expect_result(&get, &id).await;
        result
            .child("query", ROSTER_NS)
            .expect("a full roster")
            .clone()
    }

    /// A ping round trip to the server: proves the session still works.
    pub async fn assert_alive(&mut self) {
        let id = format!("ping-{}", rand_id());
        self.send(&format!(
            "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let reply = self.wait_for(|e| e.attr("id") == Some(id.as_str())).await;
        assert_eq!(reply.attr("type"), Some("result"));
    }
}

pub fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    if data.is_empty() {
        "=".into()
    } else {
        base64::engine::general_purpose::STANDARD.encode(data)
    }
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Vec::new();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64 from the server")
}

impl TestServer {
    /// Keep the data directory and config, stop this process with `stop`, and
    /// serve the same directory again from a new process.
    fn restart_after(mut self, stop: impl FnOnce(&mut Child)) -> TestServer {
        stop(&mut self.child);
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("temp dir");
        let dir = std::mem::replace(&mut self.dir, placeholder);
        let config_path = self.config_path.clone();
        let trust = self.trust.take();
        drop(self);
        let mut server = TestServer::start_with(dir, config_path);
        server.trust = trust;
        server
    }

    /// A clean restart: SIGTERM (graceful shutdown), wait for exit, start again.
    pub fn restart_after_sigterm(self) -> TestServer {
        self.restart_after(|child| {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("kill -TERM runs");
            assert!(status.success(), "kill -TERM succeeded");
        })
    }

    /// A crash: SIGKILL (`Child::kill`), no chance to flush anything, start again.
    pub fn restart_after_sigkill(self) -> TestServer {
        self.restart_after(|child| child.kill().expect("SIGKILL sent"))
    }
}

impl Client {
    /// Everything that arrives before the result of a ping sent now (the pong
    /// itself excluded). The server handles a session's stanzas in order, so this
    /// holds whatever earlier stanzas caused to be sent to this session.
    pub async fn drain(&mut self) -> Vec<Element> {
        let id = format!("drain-{}", rand_id());
        let domain = self
            .jid
            .as_deref()
            .and_then(|jid| jid.split(['@', '/']).nth(1))
            .unwrap_or("localhost")
            .to_string();
        self.send(&format!(
            "<iq type='get' id='{id}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let mut received = Vec::new();
        loop {
            let element = self.next_element().await;
            if element.attr("id") == Some(id.as_str()) && element.name == "iq" {
                assert_eq!(element.attr("type"), Some("result"), "ping answered");
                return received;
            }
            received.push(element);
        }
    }

    /// Close the stream cleanly (`</stream:stream>`) and wait for the server to
    /// close the connection.
    pub async fn close(mut self) {
        self.send("</stream:stream>").await;
        while self.next_event().await.is_some() {}
    }

    pub fn bare_jid(&self) -> String {
        let jid = self.jid.as_deref().expect("bound");
        jid.split('/').next().unwrap_or(jid).to_string()
    }
}
