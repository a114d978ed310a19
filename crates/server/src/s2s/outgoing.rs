//! Outgoing server connections: find the peer (static override, SRV, A/AAAA), open
//! the stream, STARTTLS and authenticate with the sans-IO `S2sConnect`, then write
//! the domain pair's queued stanzas until the connection idles out or fails. The
//! same negotiation carries dialback verification requests (`db:verify`).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use starling_proto::error::{StanzaError, StanzaErrorCondition};
use starling_proto::ns;
use starling_proto::s2s::accept::{AuthMethod, DialbackOutcome};
use starling_proto::s2s::connect::{Action, ConnectConfig, Input, Purpose, S2sConnect};
use starling_proto::s2s::to_server_ns;
use starling_xml::{Element, Limits, StreamParser};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::resolve::Endpoint;
use super::{DomainPair, S2s};
use crate::config::S2sAuthentication;
use crate::transport::{read_and_parse, Transport};
use crate::Shared;

/// One TCP connection attempt may take this long before the next address is tried.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(10);

/// The life of one domain pair's connection: set up, write, and on failure
/// bounce what waits (RFC 6120 §8.3.3: remote-server-not-found or -timeout).
pub async fn run(s2s: Arc<S2s>, pair: DomainPair, id: u64, mut queue: mpsc::Receiver<Element>) {
    let Some(shared) = s2s.shared() else {
        return;
    };
    let (local, remote) = pair.clone();
    let deadline = Instant::now() + Duration::from_secs(s2s.settings.connect_timeout_secs);
    let setup = tokio::time::timeout_at(deadline, connect(&s2s, &shared, &local, &remote, None));
    let failure = match Box::pin(setup).await {
        Ok(Ok(Negotiated::Ready(stream, method))) => {
            let direct_tls = stream.direct_tls;
            tracing::info!(%local, %remote, ?method, direct_tls, "outgoing server connection ready");
            stream.serve(&s2s, &mut queue).await;
            s2s.forget(&pair, id);
            queue.close();
            // Whatever was queued behind the end goes out on a new connection.
            while let Ok(stanza) = queue.try_recv() {
                Box::pin(s2s.send(stanza)).await;
            }
            return;
        }
        Ok(Ok(Negotiated::Verified(_))) => {
            StanzaError::new(StanzaErrorCondition::RemoteServerNotFound)
        }
        Ok(Err(reason)) => {
            tracing::info!(%local, %remote, %reason, "cannot connect to server");
            StanzaError::new(StanzaErrorCondition::RemoteServerNotFound)
                .with_text(format!("cannot reach {remote}: {reason}"))
        }
        Err(_) => {
            tracing::info!(%local, %remote, "server connection timed out");
            StanzaError::new(StanzaErrorCondition::RemoteServerTimeout)
                .with_text(format!("{remote} did not answer in time"))
        }
    };
    s2s.forget(&pair, id);
    queue.close();
    while let Ok(stanza) = queue.try_recv() {
        s2s.bounce(&stanza, failure.clone()).await;
    }
}

/// Ask `authoritative` whether it issued `key` for our stream `stream_id`
/// (XEP-0220 §2.1.2), from our domain `receiving`.
pub async fn verify_dialback(
    s2s: Arc<S2s>,
    receiving: String,
    authoritative: String,
    stream_id: String,
    key: String,
) -> DialbackOutcome {
    let Some(shared) = s2s.shared() else {
        return DialbackOutcome::Unreachable;
    };
    let timeout = Duration::from_secs(s2s.settings.connect_timeout_secs);
    let purpose = Purpose::Verify { stream_id, key };
    let verify = connect(&s2s, &shared, &receiving, &authoritative, Some(purpose));
    match tokio::time::timeout(timeout, Box::pin(verify)).await {
        Ok(Ok(Negotiated::Verified(outcome))) => outcome,
        Ok(Ok(Negotiated::Ready(..))) => DialbackOutcome::Unreachable,
        Ok(Err(reason)) => {
            tracing::info!(%authoritative, %reason, "dialback verification failed");
            DialbackOutcome::Unreachable
        }
        Err(_) => DialbackOutcome::Unreachable,
    }
}

enum Negotiated {
    Ready(Box<Stream>, AuthMethod),
    Verified(DialbackOutcome),
}

/// Try each place the remote domain may be reached until one negotiates; a refusal
/// after connecting ends the attempt (it would be the same server elsewhere).
async fn connect(
    s2s: &Arc<S2s>,
    shared: &Arc<Shared>,
    local: &str,
    remote: &str,
    verify: Option<Purpose>,
) -> Result<Negotiated, String> {
    let endpoints = endpoints(s2s, remote).await;
    if endpoints.is_empty() {
        return Err("no server found for the domain".into());
    }
    let config = Arc::new(ConnectConfig {
        local: local.to_string(),
        remote: remote.to_string(),
        secret: s2s.accept_config.secret.clone(),
        tls_required: s2s.settings.tls_required,
        allow_dialback: s2s.settings.authentication == S2sAuthentication::Dialback,
        purpose: verify.unwrap_or(Purpose::Send),
    });
    let mut last_error = String::from("no address");
    for endpoint in endpoints {
        let addresses = match &s2s.resolver {
            Some(resolver) => resolver.addresses(&endpoint).await,
            None => endpoint
                .host
                .parse()
                .map(|ip| vec![std::net::SocketAddr::new(ip, endpoint.port)])
                .unwrap_or_default(),
        };
        for address in addresses {
            let tcp = match tokio::time::timeout(CONNECT_ATTEMPT, TcpStream::connect(address)).await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    last_error = format!("{address}: {e}");
                    continue;
                }
                Err(_) => {
                    last_error = format!("{address}: connection timed out");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let stream = if endpoint.direct_tls {
                match Stream::direct_tls(shared.clone(), config.clone(), tcp).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        last_error = format!("{address}: {e}");
                        continue;
                    }
                }
            } else {
                Stream::plain(shared.clone(), config.clone(), tcp)
            };
            return stream.negotiate().await;
        }
    }
    Err(last_error)
}

/// The configured override, else what DNS says.
async fn endpoints(s2s: &S2s, remote: &str) -> Vec<Endpoint> {
    if let Some((host, port)) = s2s.settings.host_override(remote) {
        return vec![Endpoint {
            host,
            port,
            direct_tls: false,
        }];
    }
    match &s2s.resolver {
        Some(resolver) => resolver.endpoints(remote).await,
        None => Vec::new(),
    }
}

struct Stream {
    shared: Arc<Shared>,
    config: Arc<ConnectConfig>,
    transport: Transport,
    parser: StreamParser,
    machine: S2sConnect,
    write_buf: String,
    direct_tls: bool,
}

impl Stream {
    fn plain(shared: Arc<Shared>, config: Arc<ConnectConfig>, tcp: TcpStream) -> Stream {
        Stream::new(shared, config, Transport::Plain(tcp), None)
    }

    async fn direct_tls(
        shared: Arc<Shared>,
        config: Arc<ConnectConfig>,
        tcp: TcpStream,
    ) -> Result<Stream, String> {
        let (tls, valid) = tls_handshake(&shared, &config, tcp, true).await?;
        Ok(Stream::new(
            shared,
            config,
            Transport::Client(tls),
            Some(valid),
        ))
    }

    fn new(
        shared: Arc<Shared>,
        config: Arc<ConnectConfig>,
        transport: Transport,
        encrypted: Option<bool>,
    ) -> Stream {
        let limits = Limits {
            max_stanza_bytes: shared.config.limits.max_stanza_bytes,
            ..Limits::default()
        };
        Stream {
            machine: S2sConnect::new(config.clone(), encrypted),
            shared,
            config,
            transport,
            parser: StreamParser::new(limits),
            write_buf: String::new(),
            direct_tls: encrypted.is_some(),
        }
    }

    /// Run the machine until the pair is ready, the key verified, or it failed.
    async fn negotiate(mut self) -> Result<Negotiated, String> {
        let mut actions = Vec::new();
        self.machine.start(&mut actions);
        let mut inputs = std::collections::VecDeque::new();
        let mut events = Vec::new();
        loop {
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Send(xml) => self.write_buf.push_str(&xml),
                    Action::StartTls => {
                        self.flush().await.map_err(|e| e.to_string())?;
                        let Transport::Plain(tcp) =
                            std::mem::replace(&mut self.transport, Transport::Upgrading)
                        else {
                            return Err("STARTTLS twice".into());
                        };
                        let (tls, valid) =
                            tls_handshake(&self.shared, &self.config, tcp, false).await?;
                        self.transport = Transport::Client(tls);
                        inputs.push_back(Input::TlsEstablished {
                            peer_certificate_valid: valid,
                        });
                    }
                    Action::ResetParser => self.parser.reset(),
                    Action::Ready(method) => {
                        self.flush().await.map_err(|e| e.to_string())?;
                        return Ok(Negotiated::Ready(Box::new(self), method));
                    }
                    Action::Verified(outcome) => {
                        let _ = self.flush().await;
                        let _ = self.transport.shutdown().await;
                        return Ok(Negotiated::Verified(outcome));
                    }
                    Action::Failed(reason) => {
                        let _ = self.flush().await;
                        let _ = self.transport.shutdown().await;
                        return Err(reason);
                    }
                    Action::Close => {
                        let _ = self.flush().await;
                        let _ = self.transport.shutdown().await;
                        return Err("the stream closed".into());
                    }
                }
            }
            if let Some(input) = inputs.pop_front() {
                self.machine.handle(input, &mut actions);
                continue;
            }
            self.flush().await.map_err(|e| e.to_string())?;
            match read_and_parse(&mut self.transport, &mut self.parser, &mut events).await {
                None => return Err("the connection closed during negotiation".into()),
                Some(parsed) => {
                    inputs.extend(events.drain(..).map(Input::Event));
                    if let Err(e) = parsed {
                        inputs.push_back(Input::XmlError(e));
                    }
                }
            }
        }
    }

    /// Write the pair's stanzas until the connection is idle for the configured
    /// time or fails.
    async fn serve(mut self, s2s: &S2s, queue: &mut mpsc::Receiver<Element>) {
        let idle = Duration::from_secs(s2s.settings.idle_timeout_secs);
        let mut events = Vec::new();
        let mut last_activity = Instant::now();
        while !self.machine.is_closed() {
            tokio::select! {
                stanza = queue.recv() => {
                    let Some(stanza) = stanza else { break };
                    self.write(stanza);
                    while let Ok(more) = queue.try_recv() {
                        self.write(more);
                    }
                    if self.flush().await.is_err() {
                        break;
                    }
                    last_activity = Instant::now();
                }
                parsed = read_and_parse(&mut self.transport, &mut self.parser, &mut events) => {
                    let Some(parsed) = parsed else { break };
                    let mut inputs: Vec<Input> = events.drain(..).map(Input::Event).collect();
                    if let Err(e) = parsed {
                        inputs.push(Input::XmlError(e));
                    }
                    let mut actions = Vec::new();
                    for input in inputs {
                        self.machine.handle(input, &mut actions);
                    }
                    for action in actions {
                        if let Action::Send(xml) = action {
                            self.write_buf.push_str(&xml);
                        }
                    }
                    let _ = self.flush().await;
                }
                () = tokio::time::sleep_until(last_activity + idle) => {
                    tracing::debug!(remote = %self.config.remote, "closing an idle server connection");
                    break;
                }
            }
        }
        if !self.machine.is_closed() {
            self.write_buf.push_str("</stream:stream>");
        }
        let _ = self.flush().await;
        let _ = self.transport.shutdown().await;
    }

    fn write(&mut self, stanza: Element) {
        to_server_ns(stanza).write_to(&mut self.write_buf, ns::SERVER);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let timeout = self.shared.config.write_timeout();
        self.transport.write_out(&mut self.write_buf, timeout).await
    }
}

/// TLS as a client, presenting our certificate for the local domain; the peer's
/// certificate is judged for the remote domain afterwards.
async fn tls_handshake(
    shared: &Shared,
    config: &ConnectConfig,
    tcp: TcpStream,
    direct: bool,
) -> Result<(Box<tokio_rustls::client::TlsStream<TcpStream>>, bool), String> {
    let client = shared
        .tls
        .s2s
        .connect_config(&config.local, direct)
        .ok_or_else(|| format!("no certificate for {}", config.local))?;
    let name = ServerName::try_from(config.remote.clone()).map_err(|e| e.to_string())?;
    let handshake = TlsConnector::from(client).connect(name, tcp);
    let tls = tokio::time::timeout(shared.config.negotiation_timeout(), handshake)
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let valid = shared
        .tls
        .s2s
        .certificate_valid_for(tls.get_ref().1.peer_certificates(), &config.remote);
    Ok((Box::new(tls), valid))
}
