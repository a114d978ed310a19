//! External components (XEP-0114): the table of configured and connected component
//! domains the router delivers to, and the tokio shell around one component
//! connection, which feeds the sans-IO `ComponentServer`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use starling_proto::component::{
    to_component_ns, Action, ComponentConfig, ComponentServer, Input, COMPONENT_ACCEPT_NS,
};
use starling_proto::error::{StreamError, StreamErrorCondition};
use starling_xml::{Element, Limits, StreamParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::listener::ConnectionLimits;
use crate::sessions::Outbound;
use crate::Shared;

/// One connected component, as the router sees it.
#[derive(Clone)]
pub struct ComponentHandle {
    pub domain: String,
    id: u64,
    queue: mpsc::Sender<Outbound>,
    overflowed: Arc<tokio::sync::Notify>,
}

impl ComponentHandle {
    /// Queue a stanza for the component; a full queue closes its connection.
    pub fn deliver(&self, stanza: Element) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.queue.try_send(Outbound::Stanza(Box::new(stanza)))
        {
            tracing::warn!(domain = %self.domain, "component queue full; closing it");
            self.overflowed.notify_one();
        }
    }

    fn close(&self, error: StreamError) {
        if self
            .queue
            .try_send(Outbound::Close(Box::new(error)))
            .is_err()
        {
            self.overflowed.notify_one();
        }
    }
}

struct ComponentInbox {
    handle: ComponentHandle,
    queue: mpsc::Receiver<Outbound>,
    overflowed: Arc<tokio::sync::Notify>,
}

pub struct ComponentTable {
    /// Configured domain → name for service discovery.
    configured: HashMap<String, Option<String>>,
    connected: RwLock<HashMap<String, ComponentHandle>>,
    replace_on_conflict: bool,
    queue_capacity: usize,
    next_id: AtomicU64,
}

impl ComponentTable {
    pub fn new(
        configured: HashMap<String, Option<String>>,
        replace_on_conflict: bool,
        queue_capacity: usize,
    ) -> Self {
        ComponentTable {
            configured,
            connected: RwLock::default(),
            replace_on_conflict,
            queue_capacity,
            next_id: AtomicU64::new(0),
        }
    }

    /// Whether `domain` belongs to a configured component, connected or not.
    pub fn is_component(&self, domain: &str) -> bool {
        self.configured.contains_key(domain)
    }

    pub fn connected(&self, domain: &str) -> Option<ComponentHandle> {
        self.connected
            .read()
            .expect("component table lock")
            .get(domain)
            .cloned()
    }

    /// Connected components with their configured names, sorted by domain.
    pub fn listing(&self) -> Vec<(String, Option<String>)> {
        let connected = self.connected.read().expect("component table lock");
        let mut listing: Vec<_> = connected
            .keys()
            .map(|domain| {
                (
                    domain.clone(),
                    self.configured.get(domain).cloned().flatten(),
                )
            })
            .collect();
        listing.sort();
        listing
    }

    /// Register a component that completed its handshake; an already connected
    /// domain is refused with `<conflict/>`, or replaced when so configured.
    fn register(&self, domain: &str) -> Result<ComponentInbox, StreamError> {
        let (queue, inbox) = mpsc::channel(self.queue_capacity);
        let overflowed = Arc::new(tokio::sync::Notify::new());
        let handle = ComponentHandle {
            domain: domain.to_string(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue,
            overflowed: overflowed.clone(),
        };
        let replaced = {
            let mut connected = self.connected.write().expect("component table lock");
            if connected.contains_key(domain) && !self.replace_on_conflict {
                return Err(StreamError::with_text(
                    StreamErrorCondition::Conflict,
                    "this component is already connected",
                ));
            }
            connected.insert(domain.to_string(), handle.clone())
        };
        if let Some(old) = replaced {
            old.close(StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new connection of this component",
            ));
        }
        Ok(ComponentInbox {
            handle,
            queue: inbox,
            overflowed,
        })
    }

    fn unregister(&self, handle: &ComponentHandle) {
        let mut connected = self.connected.write().expect("component table lock");
        if connected
            .get(&handle.domain)
            .is_some_and(|h| h.id == handle.id)
        {
            connected.remove(&handle.domain);
        }
    }
}

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "component accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = ConnectionLimits::try_acquire(&shared, peer.ip()) else {
            tracing::warn!(%peer, "connection limit reached; refusing a component");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            ComponentConnection::new(shared, tcp).run().await;
            drop(slot);
        });
    }
}

struct ComponentConnection {
    shared: Arc<Shared>,
    tcp: TcpStream,
    machine: ComponentServer,
    parser: StreamParser,
    inbox: Option<ComponentInbox>,
    write_buf: Vec<u8>,
    closing: bool,
}

impl ComponentConnection {
    fn new(shared: Arc<Shared>, tcp: TcpStream) -> Self {
        let limits = Limits {
            max_stanza_bytes: shared.config.limits.max_stanza_bytes,
            ..Limits::default()
        };
        ComponentConnection {
            machine: ComponentServer::new(shared.component_config.clone()),
            shared,
            tcp,
            parser: StreamParser::new(limits),
            inbox: None,
            write_buf: Vec::with_capacity(4096),
            closing: false,
        }
    }

    async fn run(mut self) {
        let deadline = Instant::now() + self.shared.config.negotiation_timeout();
        let mut read_buf = vec![0u8; 16 * 1024];
        let mut events = Vec::new();
        while !self.closing {
            let connected = self.machine.is_connected();
            tokio::select! {
                read = self.tcp.read(&mut read_buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        events.clear();
                        let result = self.parser.feed(&read_buf[..n], &mut events);
                        let mut inputs: VecDeque<Input> = events.drain(..).map(Input::Event).collect();
                        if let Err(e) = result {
                            inputs.push_back(Input::XmlError(e));
                        }
                        self.process(inputs).await;
                    }
                },
                _ = tokio::time::sleep_until(deadline), if !connected => {
                    self.process(VecDeque::from([Input::NegotiationTimeout])).await;
                }
                outbound = next_outbound(&mut self.inbox) => match outbound {
                    Some(Outbound::Stanza(stanza)) => {
                        self.write_stanza(*stanza);
                        self.flush().await;
                    }
                    Some(Outbound::Close(error)) => self.fail(*error).await,
                    None => self.fail(StreamError::with_text(StreamErrorCondition::PolicyViolation, "too slow to read what was sent")).await,
                },
            }
        }
        self.unregister();
    }

    fn unregister(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            self.shared.components.unregister(&inbox.handle);
            tracing::info!(domain = %inbox.handle.domain, "component disconnected");
        }
    }

    fn write_stanza(&mut self, stanza: Element) {
        let xml = to_component_ns(stanza).to_xml(COMPONENT_ACCEPT_NS);
        self.write_buf.extend_from_slice(xml.as_bytes());
    }

    async fn fail(&mut self, error: StreamError) {
        let mut actions = Vec::new();
        self.machine.fail(error, &mut actions);
        self.act(actions, &mut VecDeque::new()).await;
        self.flush().await;
    }

    async fn process(&mut self, mut inputs: VecDeque<Input>) {
        while let Some(input) = inputs.pop_front() {
            if self.closing {
                break;
            }
            let mut actions = Vec::new();
            self.machine.handle(input, &mut actions);
            self.act(actions, &mut inputs).await;
            // Answers to what the component sent, written as they are produced.
            while let Some(Ok(outbound)) = self.inbox.as_mut().map(|i| i.queue.try_recv()) {
                match outbound {
                    Outbound::Stanza(stanza) => self.write_stanza(*stanza),
                    Outbound::Close(error) => {
                        self.fail(*error).await;
                        return;
                    }
                }
            }
        }
        self.flush().await;
    }

    async fn act(&mut self, actions: Vec<Action>, inputs: &mut VecDeque<Input>) {
        for action in actions {
            match action {
                Action::Send(xml) => self.write_buf.extend_from_slice(xml.as_bytes()),
                Action::Authenticated { domain } => {
                    let registered = self.shared.components.register(&domain);
                    let answer = registered.map(|inbox| {
                        tracing::info!(%domain, "component connected");
                        self.inbox = Some(inbox);
                    });
                    inputs.push_front(Input::Registered(answer));
                }
                Action::Route(stanza) => self.shared.router.route_from_component(stanza).await,
                Action::Close => {
                    // Out of the table before the peer sees the close, so whatever
                    // follows is answered as for a disconnected component.
                    self.unregister();
                    self.flush().await;
                    let _ = self.tcp.shutdown().await;
                    self.closing = true;
                }
            }
        }
    }

    async fn flush(&mut self) {
        if self.write_buf.is_empty() {
            return;
        }
        let write = tokio::time::timeout(
            self.shared.config.write_timeout(),
            self.tcp.write_all(&self.write_buf),
        );
        if !matches!(write.await, Ok(Ok(()))) {
            self.closing = true;
        }
        self.write_buf.clear();
    }
}

async fn next_outbound(inbox: &mut Option<ComponentInbox>) -> Option<Outbound> {
    match inbox {
        Some(inbox) => tokio::select! {
            item = inbox.queue.recv() => item,
            _ = inbox.overflowed.notified() => None,
        },
        None => std::future::pending().await,
    }
}

/// The component settings of the configuration, for the sans-IO machine.
pub fn component_config(config: &crate::Config) -> ComponentConfig {
    ComponentConfig {
        secrets: config
            .components
            .hosted
            .iter()
            .map(|c| (c.domain.clone(), c.secret.clone()))
            .collect(),
    }
}
