//! The tokio shell around one client connection: reads bytes, feeds the parser and
//! the sans-IO `C2sServer`, carries out its actions, and writes what the router queues.

use std::collections::VecDeque;
use std::sync::Arc;

use starling_proto::c2s::{Action, C2sServer, Input, RegistrationError};
use starling_proto::error::{StreamError, StreamErrorCondition};
use starling_proto::sasl::{ChannelBindings, SaslError};
use starling_proto::{ns, Jid};
use starling_store::{AccountStore, StoreError};
use starling_xml::{Limits, StreamParser};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::accepted_tls::AcceptedTls;
use crate::modules::register::scram_credentials;
use crate::presence::SessionChange;
use crate::sessions::{Outbound, SessionInbox};
use crate::transport::{read_and_parse, Transport};
use crate::Shared;

struct Connection {
    shared: Arc<Shared>,
    transport: Transport,
    parser: StreamParser,
    machine: C2sServer,
    session: Option<(Jid, SessionInbox)>,
    /// Output not yet written; kept small between bursts (see `flush`).
    write_buf: String,
    closing: bool,
}

/// Serve one accepted client connection until it closes.
pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, direct_tls: bool) {
    let _ = tcp.set_nodelay(true);
    let (transport, bindings) = if direct_tls {
        let handshake = tokio::time::timeout(
            shared.config.negotiation_timeout(),
            AcceptedTls::accept(shared.tls.direct.clone(), tcp),
        );
        match Box::pin(handshake).await {
            Ok(Ok((tls, handshake))) => {
                let bindings = shared.tls.channel_bindings(&handshake);
                (Transport::Accepted(Box::new(tls)), Some(bindings))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "direct TLS handshake failed");
                return;
            }
            Err(_) => return,
        }
    } else {
        (Transport::Plain(tcp), None)
    };
    let limits = Limits {
        max_stanza_bytes: shared.config.limits.max_stanza_bytes,
        ..Limits::default()
    };
    let mut connection = Connection {
        machine: C2sServer::new(shared.c2s.clone(), bindings),
        shared,
        transport,
        parser: StreamParser::new(limits),
        session: None,
        write_buf: String::new(),
        closing: false,
    };
    connection.run().await;
    connection.end_session().await;
}

impl Connection {
    /// Broadcasts the session's unavailable presence and removes it from the table.
    async fn end_session(&mut self) {
        if let Some((jid, inbox)) = self.session.take() {
            Box::pin(self.shared.router.presence.session_ended(&inbox.handle)).await;
            self.shared.router.sessions.unregister(&inbox.handle);
            tracing::debug!(%jid, "session ended");
        }
    }

    /// The loop an idle connection waits in. Handling what arrives is boxed: its
    /// future is large and needed only while working, not while waiting.
    async fn run(&mut self) {
        let mut events = Vec::new();
        // One timer, so an idle connection's future holds one: until the session is
        // bound it is the negotiation deadline, then the quiet timer. The quiet timer
        // is re-armed from `last_read` only when it fires, so reads never touch the
        // timer wheel.
        let timer = tokio::time::sleep(self.shared.config.negotiation_timeout());
        tokio::pin!(timer);
        let mut last_read = Instant::now();
        let mut quiet_armed = false;
        let mut released = false;
        while !self.closing {
            let bound = self.machine.is_bound();
            if bound && !quiet_armed {
                quiet_armed = true;
                timer.as_mut().reset(last_read + QUIET_AFTER);
            }
            let input = tokio::select! {
                parsed = read_and_parse(&mut self.transport, &mut self.parser, &mut events) => {
                    let Some(parsed) = parsed else { return };
                    last_read = Instant::now();
                    if released {
                        released = false;
                        timer.as_mut().reset(last_read + QUIET_AFTER);
                    }
                    let mut inputs: VecDeque<Input> = events.drain(..).map(Input::Event).collect();
                    // Events parsed before an error still count.
                    if let Err(e) = parsed {
                        inputs.push_back(Input::XmlError(e));
                    }
                    Box::pin(self.process(inputs)).await;
                    continue;
                }
                () = &mut timer, if !bound || !released => {
                    if !bound {
                        Input::NegotiationTimeout
                    } else {
                        let due = last_read + QUIET_AFTER;
                        if Instant::now() >= due {
                            // Mid-stanza nothing is released; either way, wait for the next read.
                            self.parser.release_buffers();
                            released = true;
                            events = Vec::new();
                            if self.write_buf.is_empty() {
                                self.write_buf = String::new();
                            }
                            if let Some((_, inbox)) = &self.session {
                                inbox.release_buffers();
                            }
                            self.transport.release_buffers();
                        } else {
                            timer.as_mut().reset(due);
                        }
                        continue;
                    }
                }
                outbound = recv_outbound(&mut self.session) => match outbound {
                    Some(Outbound::Stanza(stanza)) => {
                        stanza.write_to(&mut self.write_buf, ns::CLIENT);
                        // Whatever else is queued goes out in the same write.
                        Box::pin(self.write_queued()).await;
                        if self.flush().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Outbound::Close(error)) => {
                        Box::pin(self.fail(*error)).await;
                        continue;
                    }
                    None => {
                        Box::pin(self.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "too slow to read what was sent"))).await;
                        continue;
                    }
                },
            };
            Box::pin(self.process(VecDeque::from([input]))).await;
        }
    }

    async fn fail(&mut self, error: StreamError) {
        let mut actions = Vec::new();
        self.machine.fail(error, &mut actions);
        self.act(actions, &mut VecDeque::new()).await;
    }

    /// Feed inputs to the machine, carrying out actions; some actions produce new inputs.
    async fn process(&mut self, mut inputs: VecDeque<Input>) {
        let mut actions = Vec::new();
        while let Some(input) = inputs.pop_front() {
            if self.closing {
                return;
            }
            actions.clear();
            self.machine.handle(input, &mut actions);
            let reset = actions.contains(&Action::ResetParser);
            self.act(std::mem::take(&mut actions), &mut inputs).await;
            self.write_queued().await;
            if reset {
                // Anything pipelined behind a stream restart belongs to the old stream.
                inputs.retain(|i| !matches!(i, Input::Event(_)));
            }
        }
        if self.flush().await.is_err() {
            self.closing = true;
        }
    }

    /// Moves what the router queued for this session (mostly answers to the stanza
    /// just handled) into the write buffer, so a client that pipelines many stanzas
    /// is answered as it goes instead of overflowing its own queue.
    async fn write_queued(&mut self) {
        while let Some(outbound) = self
            .session
            .as_mut()
            .and_then(|(_, inbox)| inbox.try_recv())
        {
            match outbound {
                Outbound::Stanza(stanza) => stanza.write_to(&mut self.write_buf, ns::CLIENT),
                Outbound::Close(error) => {
                    self.fail(*error).await;
                    return;
                }
            }
        }
        if self.write_buf.len() >= WRITE_BATCH_BYTES && self.flush().await.is_err() {
            self.closing = true;
        }
    }

    async fn act(&mut self, actions: Vec<Action>, inputs: &mut VecDeque<Input>) {
        for action in actions {
            match action {
                Action::Send(xml) => self.write_buf.push_str(&xml),
                Action::StartTls => match self.start_tls().await {
                    Some(bindings) => inputs.push_back(Input::TlsEstablished(bindings)),
                    None => {
                        self.closing = true;
                        return;
                    }
                },
                Action::ResetParser => self.parser.reset(),
                Action::Delay(delay) => {
                    if self.flush().await.is_err() {
                        self.closing = true;
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
                Action::LookupCredentials { username, hash } => {
                    let domain = self.machine_domain();
                    match self
                        .shared
                        .store
                        .credentials(&username, &domain, hash)
                        .await
                    {
                        Ok(creds) => inputs.push_back(Input::Credentials(creds)),
                        Err(e) => {
                            tracing::error!(error = %e, "credential lookup failed");
                            inputs.push_back(Input::CredentialsUnavailable);
                        }
                    }
                }
                Action::Register {
                    username,
                    domain,
                    password,
                } => {
                    let result = self.register(&username, &domain, password).await;
                    // Answered before anything the client pipelined behind its request.
                    inputs.push_front(Input::RegistrationResult(result));
                }
                Action::Authenticated {
                    username,
                    domain,
                    mechanism,
                } => {
                    tracing::info!(user = %username, %domain, mechanism = mechanism.name(), "authenticated");
                }
                Action::Bound(jid) => {
                    let inbox = self.shared.router.sessions.register(jid.clone());
                    tracing::info!(%jid, "session bound");
                    self.session = Some((jid, inbox));
                }
                Action::Route(stanza) => {
                    if self.flush().await.is_err() {
                        self.closing = true;
                        return;
                    }
                    let Some((_, inbox)) = &self.session else {
                        continue;
                    };
                    let handle = inbox.handle.clone();
                    let change = self.shared.router.route_from_session(&handle, stanza).await;
                    if let SessionChange::BecameAvailable { priority } = change {
                        if priority >= 0 && !self.deliver_offline(&handle.jid.bare()).await {
                            self.closing = true;
                            return;
                        }
                    }
                }
                Action::Close => {
                    // Before the client sees its stream end: from then on, what is
                    // routed to the account goes to its other resources or offline.
                    self.end_session().await;
                    let _ = self.flush().await;
                    // A client that stops reading cannot hold the connection open.
                    let shutdown = self.transport.shutdown();
                    let _ =
                        tokio::time::timeout(self.shared.config.write_timeout(), shutdown).await;
                    self.closing = true;
                    return;
                }
            }
        }
    }

    /// XEP-0160: stored messages go out before anything queued after them, and are
    /// deleted only once written. False when the connection failed.
    async fn deliver_offline(&mut self, account: &Jid) -> bool {
        let shared = self.shared.clone();
        let Some(batch) = shared.router.offline.pending(account).await else {
            return true;
        };
        for message in &batch.messages {
            message.write_to(&mut self.write_buf, ns::CLIENT);
        }
        if self.flush().await.is_err() {
            return false;
        }
        batch.delivered().await;
        true
    }

    /// XEP-0077 account creation: only derived SCRAM keys are stored, never the password.
    async fn register(
        &self,
        username: &str,
        domain: &str,
        password: String,
    ) -> Result<(), RegistrationError> {
        let iterations = self.shared.config.auth.scram_iterations;
        let credentials = match scram_credentials(password, iterations).await {
            Ok(credentials) => credentials,
            Err(SaslError::InvalidPassword) => return Err(RegistrationError::UnusablePassword),
            Err(e) => {
                tracing::error!(error = %e, "deriving credentials failed");
                return Err(RegistrationError::Unavailable);
            }
        };
        match self
            .shared
            .store
            .create_account(username, domain, &credentials)
            .await
        {
            Ok(()) => {
                tracing::info!(user = %username, %domain, "account registered in-band");
                Ok(())
            }
            Err(StoreError::AccountExists) => Err(RegistrationError::AccountExists),
            Err(e) => {
                tracing::error!(error = %e, "account registration failed");
                Err(RegistrationError::Unavailable)
            }
        }
    }

    fn machine_domain(&self) -> String {
        self.machine
            .domain()
            .map(str::to_string)
            .unwrap_or_default()
    }

    async fn start_tls(&mut self) -> Option<ChannelBindings> {
        if self.flush().await.is_err() {
            return None;
        }
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Upgrading)
        else {
            return None;
        };
        let handshake = tokio::time::timeout(
            self.shared.config.negotiation_timeout(),
            AcceptedTls::accept(self.shared.tls.starttls.clone(), tcp),
        );
        match Box::pin(handshake).await {
            Ok(Ok((tls, handshake))) => {
                let bindings = self.shared.tls.channel_bindings(&handshake);
                self.transport = Transport::Accepted(Box::new(tls));
                Some(bindings)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "STARTTLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let timeout = self.shared.config.write_timeout();
        let result = self.transport.write_out(&mut self.write_buf, timeout).await;
        // Most connections are idle most of the time: a burst's buffer is not kept.
        if self.write_buf.capacity() > KEPT_WRITE_CAPACITY {
            self.write_buf.shrink_to(KEPT_WRITE_CAPACITY);
        }
        result
    }
}

/// A bound connection that has received nothing for this long releases its
/// parser's and buffers' memory until it next receives; most sessions of a
/// server are idle most of the time.
const QUIET_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Write buffer capacity kept after a flush: a few ordinary stanzas.
const KEPT_WRITE_CAPACITY: usize = 2048;

/// Buffered output is written once it reaches this size, even mid-batch.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// The next item for a bound session; never resolves before binding. Closes the
/// session (None) when its queue overflowed.
async fn recv_outbound(session: &mut Option<(Jid, SessionInbox)>) -> Option<Outbound> {
    match session {
        Some((_, inbox)) => inbox.recv().await,
        None => std::future::pending().await,
    }
}
