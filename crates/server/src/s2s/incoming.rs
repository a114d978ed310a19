//! Incoming server connections: the tokio shell around the sans-IO `S2sAccept`.
//! It runs TLS, judges the peer's certificate when the machine asks, verifies
//! dialback keys by connecting back to the authoritative server (in a task of its
//! own, so the stream keeps serving other pairs meanwhile), and routes stanzas.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use starling_proto::s2s::accept::{Action, Input, S2sAccept};
use starling_xml::{Limits, StreamParser};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::listener::ConnectionLimits;
use crate::transport::{read_and_parse, Transport};
use crate::Shared;

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, direct_tls: bool) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "server accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = ConnectionLimits::try_acquire(&shared, peer.ip()) else {
            tracing::warn!(%peer, "connection limit reached; refusing a server");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            Box::pin(serve(shared, tcp, direct_tls)).await;
            drop(slot);
        });
    }
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, direct_tls: bool) {
    let _ = tcp.set_nodelay(true);
    let transport = if direct_tls {
        let acceptor = TlsAcceptor::from(shared.tls.s2s.accept_direct.clone());
        let handshake =
            tokio::time::timeout(shared.config.negotiation_timeout(), acceptor.accept(tcp));
        match handshake.await {
            Ok(Ok(tls)) => Transport::Server(Box::new(tls)),
            _ => return,
        }
    } else {
        Transport::Plain(tcp)
    };
    let limits = Limits {
        max_stanza_bytes: shared.config.limits.max_stanza_bytes,
        ..Limits::default()
    };
    let (verified, verifications) = mpsc::channel(16);
    let mut connection = Incoming {
        machine: S2sAccept::new(shared.router.s2s.accept_config.clone(), direct_tls),
        shared,
        transport,
        parser: StreamParser::new(limits),
        write_buf: String::new(),
        closing: false,
        direct_tls,
        verified,
    };
    connection.run(verifications).await;
}

struct Incoming {
    shared: Arc<Shared>,
    transport: Transport,
    parser: StreamParser,
    machine: S2sAccept,
    write_buf: String,
    closing: bool,
    direct_tls: bool,
    /// Where verification tasks send their answers.
    verified: mpsc::Sender<Input>,
}

impl Incoming {
    async fn run(&mut self, mut verifications: mpsc::Receiver<Input>) {
        let negotiation_deadline = Instant::now() + self.shared.config.negotiation_timeout();
        let idle = Duration::from_secs(self.shared.config.s2s.idle_timeout_secs);
        let mut last_activity = Instant::now();
        let mut events = Vec::new();
        while !self.closing {
            let authenticated = self.machine.is_authenticated();
            let input = tokio::select! {
                parsed = read_and_parse(&mut self.transport, &mut self.parser, &mut events) => {
                    let Some(parsed) = parsed else { return };
                    last_activity = Instant::now();
                    let mut inputs: VecDeque<Input> = events.drain(..).map(Input::Event).collect();
                    if let Err(e) = parsed {
                        inputs.push_back(Input::XmlError(e));
                    }
                    Box::pin(self.process(inputs)).await;
                    continue;
                }
                Some(answer) = verifications.recv() => answer,
                () = tokio::time::sleep_until(negotiation_deadline), if !authenticated => {
                    Input::NegotiationTimeout
                }
                () = tokio::time::sleep_until(last_activity + idle), if authenticated => {
                    tracing::debug!(peer = ?self.machine.peer(), "closing an idle incoming server connection");
                    self.write_buf.push_str("</stream:stream>");
                    let _ = self.flush().await;
                    let _ = self.transport.shutdown().await;
                    return;
                }
            };
            Box::pin(self.process(VecDeque::from([input]))).await;
        }
    }

    async fn process(&mut self, mut inputs: VecDeque<Input>) {
        let mut actions = Vec::new();
        while let Some(input) = inputs.pop_front() {
            if self.closing {
                return;
            }
            self.machine.handle(input, &mut actions);
            for action in std::mem::take(&mut actions) {
                self.act(action, &mut inputs).await;
            }
        }
        if self.flush().await.is_err() {
            self.closing = true;
        }
    }

    async fn act(&mut self, action: Action, inputs: &mut VecDeque<Input>) {
        match action {
            Action::Send(xml) => self.write_buf.push_str(&xml),
            Action::StartTls => {
                if self.start_tls().await {
                    inputs.push_front(Input::TlsEstablished);
                } else {
                    self.closing = true;
                }
            }
            Action::ResetParser => {
                self.parser.reset();
                // Bytes pipelined behind a restart belong to the old stream.
                inputs.retain(|input| !matches!(input, Input::Event(_)));
            }
            Action::CheckCertificate { domain } => {
                let chain = match &self.transport {
                    Transport::Server(tls) => tls.get_ref().1.peer_certificates(),
                    _ => None,
                };
                let valid = self.shared.tls.s2s.certificate_valid_for(chain, &domain);
                inputs.push_front(Input::CertificateChecked { domain, valid });
            }
            Action::VerifyDialback {
                originating,
                receiving,
                key,
                stream_id,
            } => {
                let s2s = self.shared.router.s2s.clone();
                let answer = self.verified.clone();
                tokio::spawn(async move {
                    let outcome = super::outgoing::verify_dialback(
                        s2s,
                        receiving.clone(),
                        originating.clone(),
                        stream_id,
                        key,
                    )
                    .await;
                    let _ = answer
                        .send(Input::DialbackVerified {
                            originating,
                            receiving,
                            outcome,
                        })
                        .await;
                });
            }
            Action::Authenticated {
                remote,
                local,
                method,
            } => {
                let direct_tls = self.direct_tls;
                tracing::info!(%remote, %local, ?method, direct_tls, "incoming server connection authenticated");
            }
            Action::Route(stanza) => {
                if self.flush().await.is_err() {
                    self.closing = true;
                    return;
                }
                self.shared.router.route_from_remote(stanza).await;
            }
            Action::Close => {
                let _ = self.flush().await;
                let _ = self.transport.shutdown().await;
                self.closing = true;
            }
        }
    }

    async fn start_tls(&mut self) -> bool {
        if self.flush().await.is_err() {
            return false;
        }
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Upgrading)
        else {
            return false;
        };
        let acceptor = TlsAcceptor::from(self.shared.tls.s2s.accept.clone());
        let handshake = tokio::time::timeout(
            self.shared.config.negotiation_timeout(),
            acceptor.accept(tcp),
        );
        match handshake.await {
            Ok(Ok(tls)) => {
                self.transport = Transport::Server(Box::new(tls));
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "server STARTTLS handshake failed");
                false
            }
            Err(_) => false,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let timeout = self.shared.config.write_timeout();
        self.transport.write_out(&mut self.write_buf, timeout).await
    }
}
