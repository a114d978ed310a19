//! Client connections' TLS on rustls' unbuffered API. The buffered connection
//! keeps a 4 KiB read buffer for as long as the connection lives, a third of an
//! idle session's memory. Here received records are read into one buffer per
//! thread, and a connection keeps received bytes only while a record is still
//! incomplete; the same goes for encrypted bytes the socket has not taken.
//!
//! The unbuffered connection does not report the server name the client asked
//! for, nor export keying material, and channel binding needs both. Both are
//! learned during the handshake, which runs synchronously inside
//! `process_tls_records` on this thread: the certificate resolver notes the
//! name ([`note_server_name`]) and a key log keeps the exporter secret
//! ([`ExporterSecretLog`]), and the handshake takes them right after each call.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::crypto::tls13::OkmBlock;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{ProtocolVersion, ServerConfig, SupportedCipherSuite};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// rustls accepts handshake messages of up to 64 KiB; one more whole record fits
/// behind them.
const RECEIVE_BYTES: usize = 0x1_0000 + MAX_RECORD_BYTES;
/// A TLS record's header and the most ciphertext it may carry (RFC 8446 §5.2).
const MAX_RECORD_BYTES: usize = 5 + (1 << 14) + 256;
/// Above this much unsent ciphertext, writes wait for the socket.
const UNSENT_HIGH_WATER: usize = 64 * 1024;

thread_local! {
    static RECEIVE_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; RECEIVE_BYTES].into_boxed_slice());
    static NOTED_SERVER_NAME: RefCell<Option<String>> = const { RefCell::new(None) };
    static NOTED_EXPORTER_SECRET: RefCell<Option<OkmBlock>> = const { RefCell::new(None) };
}

/// Called by the certificate resolver with the name the client asked for.
pub(crate) fn note_server_name(name: Option<&str>) {
    NOTED_SERVER_NAME.set(name.map(str::to_owned));
}

/// Keeps the TLS 1.3 exporter secret of the handshake running on this thread.
#[derive(Debug)]
pub(crate) struct ExporterSecretLog;

impl rustls::KeyLog for ExporterSecretLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == EXPORTER_SECRET {
            NOTED_EXPORTER_SECRET.set(Some(OkmBlock::new(secret)));
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == EXPORTER_SECRET
    }
}

const EXPORTER_SECRET: &str = "EXPORTER_SECRET";

/// What the handshake established beyond the keys.
pub(crate) struct Handshake {
    /// The name the client asked for (SNI).
    pub server_name: Option<String>,
    exporter_secret: Option<OkmBlock>,
    protocol: Option<ProtocolVersion>,
    suite: Option<SupportedCipherSuite>,
}

impl Handshake {
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.protocol
    }

    /// RFC 8446 §7.5 TLS-Exporter with an empty context, as rustls'
    /// `export_keying_material(.., None)`; TLS 1.3 only.
    pub fn export_keying_material(&self, label: &[u8], out: &mut [u8]) -> Option<()> {
        let Some(SupportedCipherSuite::Tls13(suite)) = self.suite else {
            return None;
        };
        let hkdf = suite.hkdf_provider;
        let hash = suite.common.hash_provider;
        let empty_hash = hash.hash(b"");
        let exporter = hkdf.expander_for_okm(self.exporter_secret.as_ref()?);
        // Derive-Secret(exporter secret, label, ""), kept in an OkmBlock, which
        // zeroes itself when dropped.
        let derived = expand_label(
            &*exporter,
            label,
            empty_hash.as_ref(),
            exporter.hash_len(),
            |expander, info| Some(expander.expand_block(info)),
        )?;
        // HKDF-Expand-Label(derived, "exporter", Hash(""), length)
        expand_label(
            &*hkdf.expander_for_okm(&derived),
            b"exporter",
            empty_hash.as_ref(),
            out.len(),
            |expander, info| expander.expand_slice(info, out).ok(),
        )
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1): `expand` runs HKDF-Expand with the label
/// structure for an output of `length` bytes.
fn expand_label<T>(
    expander: &dyn rustls::crypto::tls13::HkdfExpander,
    label: &[u8],
    context: &[u8],
    length: usize,
    expand: impl FnOnce(&dyn rustls::crypto::tls13::HkdfExpander, &[&[u8]]) -> Option<T>,
) -> Option<T> {
    let length = u16::try_from(length).ok()?.to_be_bytes();
    let label_length = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
    let context_length = [u8::try_from(context.len()).ok()?];
    let info: [&[u8]; 6] = [
        &length,
        &label_length,
        b"tls13 ",
        label,
        &context_length,
        context,
    ];
    expand(expander, &info)
}

/// An accepted TLS connection of a client.
pub(crate) struct AcceptedTls {
    tcp: TcpStream,
    connection: UnbufferedServerConnection,
    /// Received bytes that do not make a whole record yet; empty almost always.
    received: Vec<u8>,
    /// Application data decrypted during the handshake, delivered by the next read.
    early_plaintext: Vec<u8>,
    /// Encrypted bytes the socket has not taken yet.
    unsent: Vec<u8>,
    close_notify_queued: bool,
}

/// What one round of processing received records ended with.
enum Ended {
    /// Application data was delivered.
    Delivered,
    HandshakeDone,
    /// The peer closed the connection (with or without close_notify).
    Closed,
}

/// What one call into rustls leads to.
enum Step {
    Continue,
    Delivered,
    NeedInput,
    Closed,
}

/// What the certificate resolver and the key log noted during the handshake.
#[derive(Default)]
struct Noted {
    server_name: Option<String>,
    exporter_secret: Option<OkmBlock>,
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Appends what `write` produces to `buffer`. Asked first with no room, rustls
/// says exactly how much it needs, so only that much is zeroed and a connection
/// keeps no more than it has to send.
fn append(
    buffer: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = buffer.len();
    let mut room = 0;
    loop {
        buffer.resize(start + room, 0);
        match write(&mut buffer[start..]) {
            Ok(written) => {
                buffer.truncate(start + written);
                return Ok(());
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                buffer.truncate(start);
                return Err(io::Error::other("TLS could not encode a record"));
            }
        }
    }
}

/// `append`'s view of what encoding a handshake record returned.
fn encoded(result: Result<usize, EncodeError>) -> Result<usize, Option<usize>> {
    match result {
        Ok(written) => Ok(written),
        Err(EncodeError::InsufficientSize(size)) => Err(Some(size.required_size)),
        Err(_) => Err(None),
    }
}

/// `append`'s view of what encrypting application data or an alert returned.
fn encrypted(result: Result<usize, EncryptError>) -> Result<usize, Option<usize>> {
    match result {
        Ok(written) => Ok(written),
        Err(EncryptError::InsufficientSize(size)) => Err(Some(size.required_size)),
        Err(_) => Err(None),
    }
}

impl AcceptedTls {
    /// Runs the server side of a handshake on `tcp`.
    pub async fn accept(
        config: Arc<ServerConfig>,
        tcp: TcpStream,
    ) -> io::Result<(AcceptedTls, Handshake)> {
        let connection = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut tls = AcceptedTls {
            tcp,
            connection,
            received: Vec::new(),
            early_plaintext: Vec::new(),
            unsent: Vec::new(),
            close_notify_queued: false,
        };
        let mut noted = Noted::default();
        let ended =
            std::future::poll_fn(|cx| tls.poll_process(cx, Some(&mut noted), &mut |_| {})).await?;
        if !matches!(ended, Ended::HandshakeDone) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let handshake = Handshake {
            server_name: noted.server_name,
            exporter_secret: noted.exporter_secret,
            protocol: tls.connection.protocol_version(),
            suite: tls.connection.negotiated_cipher_suite(),
        };
        Ok((tls, handshake))
    }

    /// Waits for application data and hands each decrypted record to `deliver`.
    /// `Ok(false)` once the peer closed the connection.
    pub fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<bool>> {
        if !self.early_plaintext.is_empty() {
            deliver(&std::mem::take(&mut self.early_plaintext));
            return Poll::Ready(Ok(true));
        }
        let ended = ready!(self.poll_process(cx, None, deliver))?;
        Poll::Ready(Ok(!matches!(ended, Ended::Closed)))
    }

    /// Frees the buffers of a connection gone quiet.
    pub fn release_buffers(&mut self) {
        if self.unsent.is_empty() {
            self.unsent = Vec::new();
        }
        if self.received.is_empty() {
            self.received = Vec::new();
        }
    }

    /// Feeds received records to rustls until the handshake is done (with
    /// `handshake`, which collects what was noted) or application data was
    /// delivered, reading the socket as needed. What rustls produces to send is
    /// queued in `unsent` and sent as the socket takes it.
    fn poll_process(
        &mut self,
        cx: &mut Context<'_>,
        mut handshake: Option<&mut Noted>,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<Ended>> {
        self.with_received(|this, buffer, filled| {
            let mut delivered = false;
            loop {
                // A socket that takes nothing now must not stop us from reading.
                if let Poll::Ready(Err(e)) = this.poll_send_unsent(cx) {
                    break Poll::Ready(Err(e));
                }
                if handshake.is_some() {
                    NOTED_SERVER_NAME.take();
                    NOTED_EXPORTER_SECRET.take();
                }
                let step = this.step(&mut buffer[..*filled], handshake.is_some(), deliver);
                if let Some(noted) = handshake.as_deref_mut() {
                    if let Some(name) = NOTED_SERVER_NAME.take() {
                        noted.server_name = Some(name);
                    }
                    if let Some(secret) = NOTED_EXPORTER_SECRET.take() {
                        noted.exporter_secret = Some(secret);
                    }
                }
                let (discard, step) = match step {
                    Ok(done) => done,
                    Err(e) => break Poll::Ready(Err(e)),
                };
                buffer.copy_within(discard..*filled, 0);
                *filled -= discard;
                match step {
                    Step::Continue => {}
                    Step::Delivered => delivered = true,
                    // What came before the close is handed over first; the next
                    // call finds the connection closed.
                    Step::Closed if delivered => break Poll::Ready(Ok(Ended::Delivered)),
                    Step::Closed => break Poll::Ready(Ok(Ended::Closed)),
                    // rustls has nothing more to send: the last flight is out once
                    // the socket took it.
                    Step::NeedInput if handshake.is_some() && !this.connection.is_handshaking() => {
                        match this.poll_send_unsent(cx) {
                            Poll::Ready(Ok(())) => break Poll::Ready(Ok(Ended::HandshakeDone)),
                            Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                            Poll::Pending => break Poll::Pending,
                        }
                    }
                    Step::NeedInput if delivered => break Poll::Ready(Ok(Ended::Delivered)),
                    Step::NeedInput => {
                        if *filled == buffer.len() {
                            break Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "TLS message too large",
                            )));
                        }
                        match this.poll_read_socket(cx, &mut buffer[*filled..]) {
                            Poll::Pending => break Poll::Pending,
                            Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                            Poll::Ready(Ok(0)) => break Poll::Ready(Ok(Ended::Closed)),
                            Poll::Ready(Ok(read)) => *filled += read,
                        }
                    }
                }
            }
        })
    }

    /// Runs `work` over the thread's receive buffer, holding this connection's
    /// received bytes (rustls must see the same bytes on every call), with how
    /// many that is; whatever is left in it afterwards is kept here.
    fn with_received<T>(&mut self, work: impl FnOnce(&mut Self, &mut [u8], &mut usize) -> T) -> T {
        RECEIVE_BUFFER.with_borrow_mut(|buffer| {
            let mut filled = self.received.len();
            buffer[..filled].copy_from_slice(&self.received);
            let result = work(self, buffer, &mut filled);
            self.received.clear();
            self.received.extend_from_slice(&buffer[..filled]);
            result
        })
    }

    /// One call into rustls over the received bytes. Returns how many of them
    /// it consumed, and what comes next.
    fn step(
        &mut self,
        received: &mut [u8],
        handshaking: bool,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> io::Result<(usize, Step)> {
        let AcceptedTls {
            connection,
            unsent,
            early_plaintext,
            ..
        } = self;
        let status = connection.process_tls_records(received);
        let discard = status.discard;
        let step = match status.state.map_err(tls_error)? {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(tls_error)?;
                    if handshaking {
                        early_plaintext.extend_from_slice(record.payload);
                    } else {
                        deliver(record.payload);
                    }
                }
                Step::Delivered
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                append(unsent, |out| encoded(encode.encode(out)))?;
                Step::Continue
            }
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Step::Continue
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => Step::NeedInput,
            ConnectionState::PeerClosed | ConnectionState::Closed => Step::Closed,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS state",
                ))
            }
        };
        Ok((discard, step))
    }

    /// Encrypts `data` (or, without data, a close_notify alert) into `unsent`.
    fn encrypt(&mut self, data: Option<&[u8]>) -> io::Result<()> {
        self.with_received(|this, buffer, filled| loop {
            let AcceptedTls {
                connection, unsent, ..
            } = &mut *this;
            let status = connection.process_tls_records(&mut buffer[..*filled]);
            let discard = status.discard;
            let outcome = match status.state {
                Err(e) => Err(tls_error(e)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match data {
                    Some(data) => append(unsent, |out| encrypted(traffic.encrypt(data, out))),
                    None => append(unsent, |out| encrypted(traffic.queue_close_notify(out))),
                }
                .map(|()| true),
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    append(unsent, |out| encoded(encode.encode(out))).map(|()| false)
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(false)
                }
                Ok(ConnectionState::PeerClosed) => Ok(false),
                Ok(ConnectionState::Closed) => Err(io::ErrorKind::BrokenPipe.into()),
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS state while writing",
                )),
            };
            buffer.copy_within(discard..*filled, 0);
            *filled -= discard;
            match outcome {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        })
    }

    fn poll_send_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent.is_empty() {
            let written = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.unsent))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent.drain(..written);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_read_socket(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            match self.tcp.try_read(into) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncWrite for AcceptedTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unsent.len() >= UNSENT_HIGH_WATER {
            ready!(this.poll_send_unsent(cx))?;
        }
        this.encrypt(Some(data))?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_queued {
            this.close_notify_queued = true;
            this.encrypt(None)?;
        }
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::tls::{CertificateFiles, TlsSetup};

    const WAIT: Duration = Duration::from_secs(10);

    /// Our client-connection TLS setup for `localhost` and `chat.example`, and a
    /// client configuration trusting it.
    fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "chat.example".to_owned(),
        ])
        .expect("certificate");
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let files = CertificateFiles {
            chain: vec![cert.clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        };
        let setup =
            TlsSetup::new(&files, &HashMap::new(), &[], RootCertStore::empty()).expect("setup");
        let mut roots = RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        (setup.starttls, Arc::new(client))
    }

    async fn connected(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (
        AcceptedTls,
        Handshake,
        tokio_rustls::client::TlsStream<TcpStream>,
    ) {
        let (server, client) = configs(versions);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let connect = async move {
            let tcp = TcpStream::connect(address).await.expect("connect");
            let name = ServerName::try_from("chat.example").expect("name");
            TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .expect("client handshake")
        };
        let accept = async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            AcceptedTls::accept(server, tcp)
                .await
                .expect("server handshake")
        };
        let (client, (server, handshake)) =
            tokio::time::timeout(WAIT, async { tokio::join!(connect, accept) })
                .await
                .expect("handshake in time");
        (server, handshake, client)
    }

    /// Reads until `count` bytes arrived, or the peer closed.
    async fn read_at_least(server: &mut AcceptedTls, count: usize) -> (Vec<u8>, bool) {
        let mut received = Vec::new();
        let mut open = true;
        while open && received.len() < count {
            open = tokio::time::timeout(
                WAIT,
                std::future::poll_fn(|cx| {
                    server.poll_read_records(cx, &mut |bytes| received.extend_from_slice(bytes))
                }),
            )
            .await
            .expect("data in time")
            .expect("read");
        }
        (received, open)
    }

    async fn send(to: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) {
        to.write_all(bytes).await.expect("write");
        to.flush().await.expect("flush");
    }

    fn pattern(length: usize) -> Vec<u8> {
        (0..length).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn tls13_handshake_notes_the_requested_name_and_exports_the_clients_keying_material() {
        let (_server, handshake, client) = connected(&[&rustls::version::TLS13]).await;
        assert_eq!(handshake.server_name.as_deref(), Some("chat.example"));
        assert_eq!(handshake.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        let mut ours = [0u8; 32];
        handshake
            .export_keying_material(b"EXPORTER-Channel-Binding", &mut ours)
            .expect("exported");
        let theirs = client
            .get_ref()
            .1
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .expect("client exported");
        assert_eq!(ours, theirs);
    }

    #[tokio::test]
    async fn tls12_connections_carry_data_both_ways_and_export_nothing() {
        let (mut server, handshake, mut client) = connected(&[&rustls::version::TLS12]).await;
        assert_eq!(handshake.protocol_version(), Some(ProtocolVersion::TLSv1_2));
        assert!(handshake
            .export_keying_material(b"EXPORTER-Channel-Binding", &mut [0u8; 32])
            .is_none());
        client
            .write_all(b"<stream:stream>")
            .await
            .expect("client write");
        client.flush().await.expect("client flush");
        assert_eq!(read_at_least(&mut server, 15).await.0, b"<stream:stream>");
        server
            .write_all(b"<stream:features/>")
            .await
            .expect("write");
        server.flush().await.expect("flush");
        let mut answer = [0u8; 18];
        client.read_exact(&mut answer).await.expect("client read");
        assert_eq!(&answer, b"<stream:features/>");
    }

    #[tokio::test]
    async fn large_writes_arrive_whole_and_in_order_both_ways() {
        let (mut server, _, client) = connected(&[&rustls::version::TLS13]).await;
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let upload = pattern(200_000);
        let sent = upload.clone();
        let uploading = tokio::spawn(async move {
            client_write.write_all(&sent).await.expect("client write");
            client_write.flush().await.expect("client flush");
            client_write
        });
        let (received, _) = read_at_least(&mut server, upload.len()).await;
        assert_eq!(received, upload);
        let _client_write = uploading.await.expect("upload");
        let download = pattern(300_000);
        let expected = download.clone();
        let downloading = tokio::spawn(async move {
            let mut received = vec![0u8; expected.len()];
            client_read
                .read_exact(&mut received)
                .await
                .expect("client read");
            assert_eq!(received, expected);
        });
        send(&mut server, &download).await;
        tokio::time::timeout(WAIT, downloading)
            .await
            .expect("download in time")
            .expect("download");
    }

    #[tokio::test]
    async fn data_sent_with_the_clients_finished_message_is_delivered() {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        // rustls sends plaintext written before the handshake ends together with
        // its Finished message.
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("chat.example").expect("name");
            let mut connection = ClientConnection::new(client_config, name).expect("client");
            let mut socket = std::net::TcpStream::connect(address).expect("connect");
            connection
                .writer()
                .write_all(b"<stream:stream>")
                .expect("queue");
            while connection.is_handshaking() || connection.wants_write() {
                connection.complete_io(&mut socket).expect("client io");
            }
            let mut answer = [0u8; 2];
            let mut stream = rustls::Stream::new(&mut connection, &mut socket);
            stream.read_exact(&mut answer).expect("client read");
            answer
        });
        let (tcp, _) = listener.accept().await.expect("accept");
        let (mut server, _) = AcceptedTls::accept(server_config, tcp)
            .await
            .expect("handshake");
        assert_eq!(read_at_least(&mut server, 15).await.0, b"<stream:stream>");
        send(&mut server, b"ok").await;
        let answer = tokio::task::spawn_blocking(move || client.join().expect("client"))
            .await
            .expect("join");
        assert_eq!(&answer, b"ok");
    }

    #[tokio::test]
    async fn a_key_update_from_the_client_is_followed_and_data_keeps_flowing() {
        let (mut server, _, mut client) = connected(&[&rustls::version::TLS13]).await;
        send(&mut client, b"before").await;
        assert_eq!(read_at_least(&mut server, 6).await.0, b"before");
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("key update");
        send(&mut client, b"after").await;
        assert_eq!(read_at_least(&mut server, 5).await.0, b"after");
        send(&mut server, b"answer").await;
        let mut answer = [0u8; 6];
        tokio::time::timeout(WAIT, client.read_exact(&mut answer))
            .await
            .expect("answer in time")
            .expect("client read");
        assert_eq!(&answer, b"answer");
    }

    #[tokio::test]
    async fn close_notify_ends_the_connection() {
        let (mut server, _, mut client) = connected(&[&rustls::version::TLS13]).await;
        client.write_all(b"bye").await.expect("client write");
        client.shutdown().await.expect("client close");
        let (received, open) = read_at_least(&mut server, 4).await;
        assert_eq!(received, b"bye");
        assert!(!open, "the connection ended");
    }

    #[tokio::test]
    async fn plaintext_instead_of_a_client_hello_fails_the_handshake() {
        let (server, _) = configs(&[&rustls::version::TLS13]);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut client = TcpStream::connect(address).await.expect("connect");
        client
            .write_all(b"<stream:stream to='localhost' version='1.0'>")
            .await
            .expect("write");
        let (tcp, _) = listener.accept().await.expect("accept");
        let outcome = tokio::time::timeout(WAIT, AcceptedTls::accept(server, tcp))
            .await
            .expect("answered in time");
        let error = outcome.err().expect("the handshake fails");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
