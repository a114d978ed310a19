//! The one TOML configuration file. Every option has a safe default; `config.example.toml`
//! at the repository root documents them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use starling_proto::jid::prepare_domain;
use starling_proto::sasl::Mechanism;
use starling_store::StoreOptions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Domains served by this server.
    pub domains: Vec<String>,
    /// Where the database, generated certificate and server secret live.
    pub data_dir: PathBuf,
    /// Storage URL; defaults to a SQLite file in `data_dir`.
    pub storage: Option<String>,
    pub database: DatabaseSection,
    pub c2s: C2sSection,
    pub tls: TlsSection,
    pub limits: LimitsSection,
    pub auth: AuthSection,
    pub components: ComponentsSection,
    pub s2s: S2sSection,
}

/// Federation with other servers (RFC 6120 server-to-server streams).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sSection {
    /// Off: stanzas for other domains bounce with `remote-server-not-found`.
    pub enabled: bool,
    /// STARTTLS listeners for other servers (port 5269 by convention).
    pub listen: Vec<SocketAddr>,
    /// Direct TLS listeners (XEP-0368, port 5270 by convention).
    pub direct_tls_listen: Vec<SocketAddr>,
    /// Nothing but STARTTLS before a server stream is encrypted.
    pub tls_required: bool,
    /// How peers prove who they are: "certificates" (a certificate valid for the
    /// domain) or "dialback" (a valid certificate, else Server Dialback).
    pub authentication: S2sAuthentication,
    /// PEM files of CAs trusted for peer certificates besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Seconds a stanza may wait for its connection before it bounces with
    /// `remote-server-timeout`.
    pub connect_timeout_secs: u64,
    /// Seconds without traffic after which a server connection is closed.
    pub idle_timeout_secs: u64,
    /// Stanzas queued for one remote domain; beyond it they bounce.
    pub outbound_queue: usize,
    /// Where to connect for a domain, instead of DNS: domain → "host:port".
    pub hosts: HashMap<String, String>,
    /// The DNS server to ask (UDP), instead of those of /etc/resolv.conf.
    pub nameserver: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum S2sAuthentication {
    Certificates,
    Dialback,
}

impl Default for S2sSection {
    fn default() -> Self {
        S2sSection {
            enabled: true,
            listen: vec!["0.0.0.0:5269".parse().expect("literal address")],
            direct_tls_listen: Vec::new(),
            tls_required: true,
            authentication: S2sAuthentication::Dialback,
            ca_files: Vec::new(),
            connect_timeout_secs: 30,
            idle_timeout_secs: 600,
            outbound_queue: 4096,
            hosts: HashMap::new(),
            nameserver: None,
        }
    }
}

impl S2sSection {
    /// The configured connection point for `domain`, split into host and port.
    pub fn host_override(&self, domain: &str) -> Option<(String, u16)> {
        self.hosts
            .get(domain)
            .and_then(|target| split_host_port(target))
    }
}

fn split_host_port(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// External components (XEP-0114): transports and other services on their own domains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsSection {
    /// Where components connect; loopback by default, as the protocol has no TLS.
    pub listen: Vec<SocketAddr>,
    /// A second connection for a connected domain replaces the first instead of
    /// being refused with `<conflict/>`.
    pub replace_on_conflict: bool,
    pub hosted: Vec<HostedComponent>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostedComponent {
    pub domain: String,
    pub secret: String,
    /// Shown in the server's service discovery items.
    #[serde(default)]
    pub name: Option<String>,
}

impl Default for ComponentsSection {
    fn default() -> Self {
        ComponentsSection {
            listen: vec!["127.0.0.1:5347".parse().expect("literal address")],
            replace_on_conflict: false,
            hosted: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sSection {
    /// STARTTLS listeners (port 5222 by convention).
    pub listen: Vec<SocketAddr>,
    /// Direct TLS listeners (XEP-0368, port 5223 by convention).
    pub direct_tls_listen: Vec<SocketAddr>,
    /// Refuse authentication before the stream is encrypted.
    pub tls_required: bool,
    /// Seconds a client has to open its stream, authenticate and bind.
    pub negotiation_timeout_secs: u64,
    /// Stanzas queued for one client before it is disconnected as too slow.
    pub outbound_queue: usize,
    /// Seconds a write may wait on a client that does not read before the
    /// connection is dropped.
    pub write_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// Connections in the pool; unset picks the backend's default.
    pub max_connections: Option<u32>,
    /// Seconds a query waits for a free connection before it fails.
    pub acquire_timeout_secs: u64,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            max_connections: None,
            acquire_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; with `key`. When absent a self-signed certificate is
    /// generated in `data_dir/tls` on first start.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Certificates of particular hosted domains, chosen by SNI: domain → files.
    pub certificates: HashMap<String, CertificatePaths>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatePaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_stanza_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Items in one roster; adding more is refused with `not-acceptable`.
    pub max_roster_items: u64,
    /// Bytes of a roster item's name or of one group name.
    pub max_roster_text: usize,
    /// Messages kept for an offline user; more are bounced with `resource-constraint`.
    pub max_offline_messages: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// SASL mechanisms offered, by name.
    pub mechanisms: Vec<String>,
    /// PBKDF2 iterations for newly stored SCRAM keys.
    pub scram_iterations: u32,
    /// Failed attempts after which the connection is closed.
    pub max_failures: u32,
    /// The n-th failure is answered after n-1 times this many milliseconds.
    pub failure_delay_ms: u64,
    /// XEP-0077: clients may create accounts over TLS and change their password.
    pub allow_registration: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("data"),
            storage: None,
            database: DatabaseSection::default(),
            c2s: C2sSection::default(),
            tls: TlsSection::default(),
            limits: LimitsSection::default(),
            auth: AuthSection::default(),
            components: ComponentsSection::default(),
            s2s: S2sSection::default(),
        }
    }
}

impl Default for C2sSection {
    fn default() -> Self {
        C2sSection {
            listen: vec!["0.0.0.0:5222".parse().expect("literal address")],
            direct_tls_listen: vec!["0.0.0.0:5223".parse().expect("literal address")],
            tls_required: true,
            negotiation_timeout_secs: 60,
            outbound_queue: 1024,
            write_timeout_secs: 60,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_stanza_bytes: 256 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            max_roster_items: 1000,
            max_roster_text: 1024,
            max_offline_messages: 500,
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mechanisms: Mechanism::ALL
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            scram_iterations: 4096,
            max_failures: 3,
            failure_delay_ms: 1000,
            allow_registration: false,
        }
    }
}

/// A configuration problem, with the line it is on where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                line: None,
                message: format!("cannot read {}: {e}", path.display()),
            }]
        })?;
        Config::parse(&text)
    }

    /// Parse and validate; every problem found is reported, each with its line.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            vec![ConfigError {
                line: e.span().map(|span| line_of(text, span.start)),
                message: e.message().to_string(),
            }]
        })?;
        let errors = config.validate(text);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn validate(&mut self, text: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| {
            errors.push(ConfigError {
                line: line_of_key(text, key),
                message,
            })
        };
        if self.domains.is_empty() {
            error("domains", "at least one domain must be served".into());
        }
        let mut prepared = Vec::new();
        for domain in &self.domains {
            match prepare_domain(domain) {
                Ok(d) => prepared.push(d),
                Err(e) => error("domains", format!("invalid domain {domain:?}: {e}")),
            }
        }
        self.domains = prepared;
        let mut components = Vec::new();
        for component in &mut self.components.hosted {
            match prepare_domain(&component.domain) {
                Ok(d) if self.domains.contains(&d) || components.contains(&d) => error(
                    "hosted",
                    format!("component domain {d:?} is already served"),
                ),
                Ok(d) => {
                    components.push(d.clone());
                    component.domain = d;
                }
                Err(e) => error(
                    "hosted",
                    format!("invalid component domain {:?}: {e}", component.domain),
                ),
            }
            if component.secret.is_empty() {
                error("secret", "a component secret must not be empty".into());
            }
        }
        let mut hosts = HashMap::new();
        for (written, target) in &self.s2s.hosts {
            let key = format!("{written:?}");
            let domain = match prepare_domain(written) {
                Ok(d) => d,
                Err(e) => {
                    error(&key, format!("invalid domain {written:?}: {e}"));
                    continue;
                }
            };
            if split_host_port(target).is_none() {
                error(&key, format!("{domain}: {target:?} is not \"host:port\""));
            }
            hosts.insert(domain, target.clone());
        }
        self.s2s.hosts = hosts;
        let mut certificates = HashMap::new();
        for (domain, paths) in &self.tls.certificates {
            match prepare_domain(domain) {
                Ok(d) if self.domains.contains(&d) => {
                    certificates.insert(d, paths.clone());
                }
                Ok(d) => error(
                    "certificates",
                    format!("a certificate for {d:?}, which is not a served domain"),
                ),
                Err(e) => error("certificates", format!("invalid domain {domain:?}: {e}")),
            }
        }
        self.tls.certificates = certificates;
        if self.s2s.connect_timeout_secs == 0 || self.s2s.idle_timeout_secs == 0 {
            error(
                "connect_timeout_secs",
                "s2s connect_timeout_secs and idle_timeout_secs must be at least 1".into(),
            );
        }
        if self.s2s.outbound_queue == 0 {
            error("outbound_queue", "outbound_queue must be at least 1".into());
        }
        for name in &self.auth.mechanisms {
            if Mechanism::from_name(name).is_none() {
                error("mechanisms", format!("unknown SASL mechanism {name:?}"));
            }
        }
        if self.auth.mechanisms.is_empty() {
            error(
                "mechanisms",
                "at least one SASL mechanism must be enabled".into(),
            );
        }
        if self.auth.scram_iterations < 4096 {
            error(
                "scram_iterations",
                "scram_iterations below 4096 is too weak (RFC 7677)".into(),
            );
        }
        if self.auth.max_failures == 0 {
            error("max_failures", "max_failures must be at least 1".into());
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            error("cert", "tls.cert and tls.key go together".into());
        }
        if self.limits.max_stanza_bytes < 10_000 {
            error(
                "max_stanza_bytes",
                "max_stanza_bytes below 10000 breaks ordinary clients (RFC 6120 §13.12)".into(),
            );
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_ip == 0 {
            error(
                "max_connections",
                "connection limits must be at least 1".into(),
            );
        }
        if self.limits.max_roster_items == 0 || self.limits.max_roster_text == 0 {
            error(
                "max_roster_items",
                "roster limits must be at least 1".into(),
            );
        }
        if self.c2s.outbound_queue == 0 {
            error("outbound_queue", "outbound_queue must be at least 1".into());
        }
        if self.c2s.write_timeout_secs == 0 {
            error(
                "write_timeout_secs",
                "write_timeout_secs must be at least 1".into(),
            );
        }
        if self.database.max_connections == Some(0) || self.database.acquire_timeout_secs == 0 {
            error(
                "max_connections",
                "database max_connections and acquire_timeout_secs must be at least 1".into(),
            );
        }
        if let Some(url) = &self.storage {
            if !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                error(
                    "storage",
                    "storage must be a sqlite:// or postgres:// URL".into(),
                );
            }
        }
        if self.c2s.negotiation_timeout_secs == 0 {
            error(
                "negotiation_timeout_secs",
                "negotiation_timeout_secs must be at least 1".into(),
            );
        }
        errors
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_secs(self.database.acquire_timeout_secs),
        }
    }

    pub fn storage_url(&self) -> String {
        match &self.storage {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("starling.db").display()),
        }
    }

    pub fn mechanisms(&self) -> Vec<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(|m| self.auth.mechanisms.iter().any(|name| name == m.name()))
            .collect()
    }

    pub fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.c2s.negotiation_timeout_secs)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.c2s.write_timeout_secs)
    }

    /// Domains answered here: the served ones and the components'. Stanzas for
    /// any other domain leave through server-to-server connections.
    pub fn local_domains(&self) -> Vec<String> {
        self.domains
            .iter()
            .chain(self.components.hosted.iter().map(|c| &c.domain))
            .cloned()
            .collect()
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` is assigned, for semantic errors the TOML parser cannot place.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_working_defaults() {
        let config = Config::parse("").expect("defaults are valid");
        assert_eq!(config.domains, vec!["localhost".to_string()]);
        assert!(config.c2s.tls_required);
        assert!(!config.auth.allow_registration);
        assert_eq!(config.limits.max_stanza_bytes, 262_144);
        assert_eq!(config.mechanisms().len(), 7);
        assert!(config.storage_url().starts_with("sqlite://"));
    }

    #[test]
    fn syntax_error_reports_its_line() {
        let errors = Config::parse("domains = [\"a.example\"]\n\n[c2s]\ntls_required = maybe\n")
            .expect_err("invalid value");
        assert_eq!(errors[0].line, Some(4));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let errors =
            Config::parse("domains = [\"a.example\"]\nfrobnicate = 1\n").expect_err("unknown key");
        assert_eq!(errors[0].line, Some(2));
        assert!(errors[0].message.contains("frobnicate"));
    }

    #[test]
    fn semantic_errors_are_all_reported_with_lines() {
        let text = "domains = [\"bad domain!\"]\n[auth]\nmechanisms = [\"CRAM-MD5\"]\nscram_iterations = 10\n";
        let errors = Config::parse(text).expect_err("three problems");
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(1), Some(3), Some(4)]);
    }

    #[test]
    fn s2s_host_overrides_are_parsed_and_checked() {
        let config = Config::parse(
            "[s2s]\nauthentication = \"certificates\"\n[s2s.hosts]\n\"B.example\" = \"127.0.0.3:5269\"\n\"c.example\" = \"[::1]:5270\"\n",
        )
        .expect("valid");
        assert_eq!(
            config.s2s.host_override("b.example"),
            Some(("127.0.0.3".into(), 5269))
        );
        assert_eq!(
            config.s2s.host_override("c.example"),
            Some(("::1".into(), 5270))
        );
        assert_eq!(config.s2s.authentication, S2sAuthentication::Certificates);
        let errors =
            Config::parse("[s2s.hosts]\n\"b.example\" = \"nowhere\"\n").expect_err("no port");
        assert_eq!(errors[0].line, Some(2));
    }

    #[test]
    fn domains_are_normalized() {
        let config = Config::parse("domains = [\"Example.COM\"]").expect("valid");
        assert_eq!(config.domains, vec!["example.com".to_string()]);
    }
}
