//! The tokio shell of Starling: listeners, TLS, connection tasks, the router and
//! the session table. Protocol decisions live in `starling-proto`.

mod accepted_tls;
mod blocking;
pub mod components;
pub mod config;
mod connection;
mod listener;
pub mod modules;
mod offline;
pub mod portable;
mod presence;
pub mod router;
pub mod s2s;
pub mod sessions;
pub mod tls;
mod transport;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use starling_proto::c2s::C2sConfig;
use starling_proto::component::ComponentConfig;
use starling_store::Store;

pub use config::{Config, ConfigError};

use crate::blocking::Blocking;
use crate::components::ComponentTable;
use crate::listener::ConnectionLimits;
use crate::modules::{ModuleContext, Modules};
use crate::offline::Offline;
use crate::presence::Presence;
use crate::router::Router;
use crate::s2s::S2s;
use crate::sessions::SessionTable;
use crate::tls::TlsSetup;

/// What every connection task shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub c2s: Arc<C2sConfig>,
    pub component_config: Arc<ComponentConfig>,
    pub components: Arc<ComponentTable>,
    pub tls: TlsSetup,
    pub store: Store,
    pub router: Router,
    limits: ConnectionLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("storage: {0}")]
    Store(#[from] starling_store::StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A running server: the addresses it listens on, and a way to stop it.
pub struct Server {
    pub c2s_addrs: Vec<SocketAddr>,
    pub direct_tls_addrs: Vec<SocketAddr>,
    pub component_addrs: Vec<SocketAddr>,
    pub s2s_addrs: Vec<SocketAddr>,
    pub s2s_direct_tls_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Open storage, load or generate the certificate, and bind every listener.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        let secret = load_or_create_secret(&config.data_dir)?;
        let tls = TlsSetup::from_config(&config)?;
        let store = Store::open_with(&config.storage_url(), config.store_options()).await?;
        let c2s = Arc::new(C2sConfig {
            domains: config.domains.clone(),
            starttls_offered: true,
            tls_required: config.c2s.tls_required,
            mechanisms: config.mechanisms(),
            max_auth_failures: config.auth.max_failures,
            auth_failure_delay: Duration::from_millis(config.auth.failure_delay_ms),
            secret: secret.clone(),
            default_iterations: config.auth.scram_iterations,
            // RFC 6121 §2.6 roster versioning and §3.4 subscription pre-approval.
            session_features: vec![
                starling_xml::Element::new("ver", "urn:xmpp:features:rosterver"),
                starling_xml::Element::new("sub", "urn:xmpp:features:pre-approval"),
            ],
            allow_registration: config.auth.allow_registration,
        });
        let component_config = Arc::new(components::component_config(&config));
        let config = Arc::new(config);
        let sessions = Arc::new(SessionTable::new(config.c2s.outbound_queue));
        let components = Arc::new(ComponentTable::new(
            config
                .components
                .hosted
                .iter()
                .map(|c| (c.domain.clone(), c.name.clone()))
                .collect(),
            config.components.replace_on_conflict,
            config.c2s.outbound_queue,
        ));
        let blocking = Arc::new(Blocking::new(store.clone()));
        let s2s = Arc::new(S2s::new(
            config.s2s.clone(),
            config.local_domains(),
            secret.clone(),
        ));
        let presence = Arc::new(Presence::new(
            config.domains.clone(),
            store.clone(),
            sessions.clone(),
            components.clone(),
            s2s.clone(),
            blocking.clone(),
            &config.limits,
        ));
        let offline = Arc::new(Offline::new(
            store.clone(),
            config.limits.max_offline_messages,
        ));
        let modules = Modules::standard(&ModuleContext {
            config: config.clone(),
            store: store.clone(),
            sessions: sessions.clone(),
            components: components.clone(),
            presence: presence.clone(),
            blocking: blocking.clone(),
            started_at: std::time::SystemTime::now(),
        });
        let router = Router {
            domains: config.domains.clone(),
            store: store.clone(),
            modules,
            sessions,
            components: components.clone(),
            presence,
            offline,
            blocking,
            s2s: s2s.clone(),
        };
        let limits = ConnectionLimits::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let mut listeners = Vec::new();
        for (addr, direct) in config
            .c2s
            .listen
            .iter()
            .map(|a| (*a, false))
            .chain(config.c2s.direct_tls_listen.iter().map(|a| (*a, true)))
        {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Bind(addr, e))?;
            listeners.push((listener, direct));
        }
        let mut s2s_listeners = Vec::new();
        if config.s2s.enabled {
            for (addr, direct) in config
                .s2s
                .listen
                .iter()
                .map(|a| (*a, false))
                .chain(config.s2s.direct_tls_listen.iter().map(|a| (*a, true)))
            {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError::Bind(addr, e))?;
                s2s_listeners.push((listener, direct));
            }
        }
        // Without hosted components there is nothing to accept.
        let mut component_listeners = Vec::new();
        if !config.components.hosted.is_empty() {
            for addr in &config.components.listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError::Bind(*addr, e))?;
                component_listeners.push(listener);
            }
        }
        let shared = Arc::new(Shared {
            config,
            c2s,
            component_config,
            components,
            tls,
            store,
            router,
            limits,
        });
        s2s.attach(&shared);
        let mut server = Server {
            c2s_addrs: Vec::new(),
            direct_tls_addrs: Vec::new(),
            component_addrs: Vec::new(),
            s2s_addrs: Vec::new(),
            s2s_direct_tls_addrs: Vec::new(),
            shared: shared.clone(),
            tasks: Vec::new(),
        };
        for (listener, direct) in listeners {
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Bind(SocketAddr::from(([0, 0, 0, 0], 0)), e))?;
            if direct {
                server.direct_tls_addrs.push(addr);
            } else {
                server.c2s_addrs.push(addr);
            }
            server.tasks.push(tokio::spawn(listener::accept_loop(
                shared.clone(),
                listener,
                direct,
            )));
        }
        for (listener, direct) in s2s_listeners {
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Bind(SocketAddr::from(([0, 0, 0, 0], 0)), e))?;
            if direct {
                server.s2s_direct_tls_addrs.push(addr);
            } else {
                server.s2s_addrs.push(addr);
            }
            server.tasks.push(tokio::spawn(s2s::accept_loop(
                shared.clone(),
                listener,
                direct,
            )));
        }
        for listener in component_listeners {
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Bind(SocketAddr::from(([127, 0, 0, 1], 0)), e))?;
            server.component_addrs.push(addr);
            server.tasks.push(tokio::spawn(components::accept_loop(
                shared.clone(),
                listener,
            )));
        }
        Ok(server)
    }

    pub fn session_count(&self) -> usize {
        self.shared.router.sessions.session_count()
    }

    /// Stop accepting connections and close storage.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.store.close().await;
    }
}

/// The server secret (SCRAM fake salts, dialback keys) survives restarts, so keys
/// issued before a restart still verify after it.
fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, StartError> {
    let path = data_dir.join("secret");
    let error = |e: std::io::Error| StartError::DataDir(path.display().to_string(), e);
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source is available");
    tls::write_private(&path, &secret).map_err(|e| error(std::io::Error::other(e.to_string())))?;
    Ok(secret)
}
