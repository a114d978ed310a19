//! A real Prosody (Debian's 0.12) to federate with: one process per test, on a
//! loopback address of its own, with its own data, certificate and name
//! resolution, killed on drop.
//!
//! Name resolution: Debian's Prosody has lua-unbound, so it resolves through
//! libunbound (net.unbound), which by Prosody's default ignores /etc/hosts.
//! Each instance runs in a private mount namespace whose /etc/hosts and
//! /etc/resolv.conf are its own files, and is told to read the hosts file
//! (`hoststxt`) and to answer every other name NXDOMAIN at once (a static root
//! zone): without that, the two SRV lookups for a name outside unbound's
//! built-in zones (`.test` is one) each wait 12-17 s for the unreachable
//! nameserver before Prosody falls back to the A record.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::{write_pem, Issued};

/// How long Prosody may take to listen on both ports.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Peers find a domain's server through its A record, so s2s is on the default port.
pub const S2S_PORT: u16 = 5269;

pub struct ProsodyOptions<'a> {
    /// The VirtualHost.
    pub domain: &'a str,
    /// A loopback address of its own: c2s on ip:c2s_port, s2s on ip:5269.
    pub ip: Ipv4Addr,
    pub c2s_port: u16,
    /// Its certificate for `domain`.
    pub cert: &'a Issued,
    /// PEM of an extra CA to trust for s2s certificate validation.
    pub trusted_ca: Option<&'a str>,
    /// Names Prosody resolves (its own hosts file).
    pub hosts: &'a [(&'a str, Ipv4Addr)],
    /// `s2s_secure_auth`: refuse peers without a valid certificate (no dialback).
    pub require_valid_certificates: bool,
    /// (user, password), registered with prosodyctl before start.
    pub users: &'a [(&'a str, &'a str)],
}

/// A running Prosody, killed (and its directory removed) on drop. It is also
/// killed when the thread that started it exits (the parent-death signal is
/// per thread): keep it in the test's own thread, not in a pool thread.
pub struct Prosody {
    dir: tempfile::TempDir,
    child: Child,
    domain: String,
    c2s: SocketAddr,
    s2s: SocketAddr,
}

impl Prosody {
    pub fn start(options: ProsodyOptions) -> Prosody {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let c2s = SocketAddr::from((options.ip, options.c2s_port));
        let s2s = SocketAddr::from((options.ip, S2S_PORT));

        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (name, ip) in options.hosts {
            writeln!(hosts, "{ip} {name}").expect("string written");
        }
        std::fs::write(root.join("hosts"), hosts).expect("hosts written");
        // Nothing listens on port 53 there; the static root zone below means
        // it is never asked anyway, but no query may leave the machine.
        std::fs::write(root.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("resolv.conf written");
        let (cert, key) = write_pem(root, "prosody", options.cert);
        let cafile = options.trusted_ca.map(|pem| {
            let path = root.join("trusted-ca.pem");
            std::fs::write(&path, pem).expect("CA written");
            path
        });
        // Prosody looks for per-host certificates in <config dir>/certs and
        // logs an error when it is missing; an empty one keeps the log clean.
        std::fs::create_dir(root.join("certs")).expect("certs dir");
        std::fs::create_dir(root.join("data")).expect("data dir");
        let config = root.join("prosody.cfg.lua");
        std::fs::write(
            &config,
            config_text(&options, root, &cert, &key, cafile.as_deref()),
        )
        .expect("config written");
        // Prosody refuses to run as root: everything it reads or writes is its user's.
        run_ok(
            Command::new("chown")
                .args(["-R", "prosody:prosody"])
                .arg(root),
        );

        for (user, password) in options.users {
            run_ok(
                as_prosody(root)
                    .arg("prosodyctl")
                    .arg("--config")
                    .arg(&config)
                    .args(["register", user, options.domain, password]),
            );
        }

        let stdout = std::fs::File::create(root.join("stdout.log")).expect("stdout log");
        let stderr = stdout.try_clone().expect("stdout log cloned");
        // unshare without --fork and sh's final exec leave Prosody itself as
        // the child, so killing the child kills Prosody. --pdeathsig: a test
        // process killed before Drop runs takes Prosody with it instead of
        // leaving it on the address. Paths go in as positional parameters:
        // no shell quoting.
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf && \
                 exec setpriv --pdeathsig KILL --reuid=prosody --regid=prosody --init-groups \
                 env HOME=\"$3\" prosody --config \"$4\"",
            )
            .arg("sh")
            .arg(root.join("hosts"))
            .arg(root.join("resolv.conf"))
            .arg(root)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("unshare runs");
        let mut prosody = Prosody {
            dir,
            child,
            domain: options.domain.to_string(),
            c2s,
            s2s,
        };
        prosody.wait_ready();
        prosody
    }

    /// Polls until both listeners accept connections. The log lines prove
    /// that this instance, not a leftover holding the address, is the one
    /// listening: Prosody keeps running when it cannot bind.
    fn wait_ready(&mut self) {
        let c2s_up = format!(
            "Activated service 'c2s' on [{}]:{}",
            self.c2s.ip(),
            self.c2s.port()
        );
        let s2s_up = format!(
            "Activated service 's2s' on [{}]:{}",
            self.s2s.ip(),
            self.s2s.port()
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("Prosody exited with {status}\n{}", self.output());
            }
            let log = self.log();
            if log.contains("Failed to open server port") {
                panic!("Prosody could not listen\n{}", self.output());
            }
            if log.contains(&c2s_up)
                && log.contains(&s2s_up)
                && accepts(self.c2s)
                && accepts(self.s2s)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "Prosody not listening on {} and {} after {START_TIMEOUT:?}\n{}",
                    self.c2s,
                    self.s2s,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far, debug level.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }

    /// Its log plus what it printed (config errors go there), for failure messages.
    fn output(&self) -> String {
        let printed =
            std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        format!(
            "--- prosody stdout/stderr ---\n{printed}\n--- prosody.log ---\n{}",
            self.log()
        )
    }

    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Its working directory (config, certificate, data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    options: &ProsodyOptions,
    root: &Path,
    cert: &Path,
    key: &Path,
    cafile: Option<&Path>,
) -> String {
    let path = |p: &Path| lua_string(&p.display().to_string());
    let ip = lua_string(&options.ip.to_string());
    let cafile = cafile
        .map(|ca| format!(", cafile = {}", path(ca)))
        .unwrap_or_default();
    format!(
        r#"-- Written by the Starling test harness.
pidfile = {pidfile}
data_path = {data}
log = {{ debug = {log} }}
-- In the foreground as the harness's child: no mod_posix.
daemonize = false
network_backend = "epoll"
modules_enabled = {{ "tls", "dialback", "saslauth", "roster", "presence", "disco", "ping" }}
modules_disabled = {{ "posix" }}
c2s_interfaces = {{ {ip} }}
c2s_ports = {{ {c2s_port} }}
s2s_interfaces = {{ {ip} }}
s2s_ports = {{ {S2S_PORT} }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure}
authentication = "internal_hashed"
storage = "internal"
ssl = {{ certificate = {cert}, key = {key}{cafile} }}
-- libunbound: the namespace's /etc/hosts, and NXDOMAIN for everything else
-- (SRV lookups fail at once, so s2s falls back to the A record, port 5269).
unbound = {{ hoststxt = "/etc/hosts", options = {{ ["local-zone"] = ". static" }} }}
VirtualHost {domain}
"#,
        pidfile = path(&root.join("prosody.pid")),
        data = path(&root.join("data")),
        log = path(&root.join("prosody.log")),
        c2s_port = options.c2s_port,
        secure = options.require_valid_certificates,
        cert = path(cert),
        key = path(key),
        domain = lua_string(options.domain),
    )
}

fn lua_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A command run as the prosody user, keeping our open-files limit (no PAM).
fn as_prosody(home: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=prosody", "--regid=prosody", "--init-groups", "env"])
        .arg(format!("HOME={}", home.display()));
    command
}

fn run_ok(command: &mut Command) {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
