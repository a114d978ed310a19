//! A real ejabberd (Debian's 23.01) to federate with: one Erlang VM per test,
//! on a loopback address of its own, with its own data, certificate and name
//! resolution, killed on drop.
//!
//! The VM is started with `erl` directly, with what `ejabberdctl foreground`
//! would pass: ejabberdctl runs erl as a child of its shell instead of
//! exec'ing it, so killing the process we spawned would leave the VM holding
//! the address. ejabberdctl still registers the users, through Erlang
//! distribution on the instance's own address (no epmd, no shared node names).
//!
//! Name resolution: each instance runs in a private mount namespace whose
//! /etc/hosts and /etc/resolv.conf are its own files. ejabberd finds a peer
//! with two SRV queries through Erlang's own resolver (inet_res, nameservers
//! from the inetrc's resolv.conf), then the A record through libc's
//! getaddrinfo (nsswitch: files, so the namespace's hosts file). Nothing
//! answers on 127.0.0.1:53, so the SRV queries fail at once (connection
//! refused) and s2s goes to the hosts file's address, port 5269.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::{write_pem, Issued};

/// How long ejabberd may take to listen on both ports (1.3-2 s here, idle).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Peers find a domain's server through its A record, so s2s is on the default port.
pub const S2S_PORT: u16 = 5269;
/// Erlang distribution, on the instance's own address: ejabberdctl reaches
/// the node there.
const DIST_PORT: u16 = 4370;

pub struct EjabberdOptions<'a> {
    /// The virtual host.
    pub domain: &'a str,
    /// A loopback address of its own: c2s on ip:c2s_port, s2s on ip:5269.
    pub ip: Ipv4Addr,
    pub c2s_port: u16,
    /// Its certificate for `domain`.
    pub cert: &'a Issued,
    /// PEM of the CA to trust for s2s certificate validation (`ca_file`,
    /// replacing the system's CAs).
    pub trusted_ca: Option<&'a str>,
    /// Names ejabberd resolves (its own hosts file).
    pub hosts: &'a [(&'a str, Ipv4Addr)],
    /// Refuse peers without a valid certificate: no mod_s2s_dialback, so
    /// SASL EXTERNAL is the only way in and outgoing connections verify the
    /// peer's certificate.
    pub require_valid_certificates: bool,
    /// (user, password), registered with ejabberdctl once it runs; they log in
    /// with SCRAM-SHA-1.
    pub users: &'a [(&'a str, &'a str)],
}

/// A running ejabberd, killed (and its directory removed) on drop. It is also
/// killed when the thread that started it exits (the parent-death signal is
/// per thread): keep it in the test's own thread, not in a pool thread.
pub struct Ejabberd {
    dir: tempfile::TempDir,
    child: Child,
    domain: String,
    node: String,
    c2s: SocketAddr,
    s2s: SocketAddr,
}

impl Ejabberd {
    pub fn start(options: EjabberdOptions) -> Ejabberd {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let c2s = SocketAddr::from((options.ip, options.c2s_port));
        let s2s = SocketAddr::from((options.ip, S2S_PORT));

        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (name, ip) in options.hosts {
            writeln!(hosts, "{ip} {name}").expect("string written");
        }
        std::fs::write(root.join("hosts"), hosts).expect("hosts written");
        // Nothing listens on port 53 there: SRV queries are refused at once
        // and no query leaves the machine.
        std::fs::write(root.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("resolv.conf written");
        // Erlang's resolver settings (ERL_INETRC), Debian's: they take the
        // SRV queries' nameserver from /etc/resolv.conf, the one above.
        std::fs::copy("/etc/ejabberd/inetrc", root.join("inetrc")).expect("inetrc copied");
        let (cert, key) = write_pem(root, "ejabberd", options.cert);
        let ca_file = options.trusted_ca.map(|pem| {
            let path = root.join("trusted-ca.pem");
            std::fs::write(&path, pem).expect("CA written");
            path
        });
        std::fs::create_dir(root.join("spool")).expect("spool dir");
        std::fs::create_dir(root.join("logs")).expect("logs dir");
        let config = root.join("ejabberd.yml");
        std::fs::write(
            &config,
            config_text(&options, &cert, &key, ca_file.as_deref()),
        )
        .expect("config written");
        // ejabberdctl insists on its user: everything ejabberd reads or
        // writes, including the Erlang cookie it creates in HOME, is its own.
        run_ok(
            Command::new("chown")
                .args(["-R", "ejabberd:ejabberd"])
                .arg(root),
        );

        // An address as node host: unique per instance, and no name to resolve.
        let node = format!("ejabberd@{}", options.ip);
        let stdout = std::fs::File::create(root.join("stdout.log")).expect("stdout log");
        let stderr = stdout.try_clone().expect("stdout log cloned");
        // unshare without --fork, sh's exec, setpriv's and erl's leave the VM
        // itself as the child, so killing the child kills ejabberd.
        // --pdeathsig: a test process killed before Drop runs takes ejabberd
        // with it instead of leaving it on the address. Paths go in as
        // positional parameters: no shell quoting.
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf && \
                 shift 2 && exec setpriv --pdeathsig KILL --reuid=ejabberd --regid=ejabberd \
                 --init-groups erl \"$@\"",
            )
            .arg("sh")
            .arg(root.join("hosts"))
            .arg(root.join("resolv.conf"))
            .args(["-name", &node, "-noinput"])
            // Distribution on a fixed port instead of one registered with
            // epmd: the VM starts no epmd daemon, and ejabberdctl (told the
            // port through ERL_DIST_PORT) connects straight to it.
            .args([
                "-erl_epmd_port",
                &DIST_PORT.to_string(),
                "-start_epmd",
                "false",
            ])
            .args(["-kernel", "inet_dist_use_interface"])
            .arg(erlang_ip(options.ip))
            .args(["-mnesia", "dir"])
            .arg(quoted(&root.join("spool").display().to_string()))
            .args(["-s", "ejabberd"])
            .env("HOME", root)
            .env("EJABBERD_CONFIG_PATH", &config)
            .env("EJABBERD_LOG_PATH", root.join("logs/ejabberd.log"))
            .env("ERL_INETRC", root.join("inetrc"))
            .env("ERL_LIBS", erl_libs())
            // A crash dump, if any, lands in the temp dir.
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("unshare runs");
        let mut ejabberd = Ejabberd {
            dir,
            child,
            domain: options.domain.to_string(),
            node,
            c2s,
            s2s,
        };
        ejabberd.wait_ready();
        for (user, password) in options.users {
            ejabberd.ctl(&["register", user, options.domain, password]);
        }
        ejabberd
    }

    /// Polls until both listeners accept connections. The log lines prove
    /// that this instance, not a leftover holding the address, is the one
    /// listening (ejabberd exits when it cannot bind).
    fn wait_ready(&mut self) {
        let listening = |addr: SocketAddr, module: &str| {
            format!("Start accepting TCP connections at {addr} for {module}")
        };
        let c2s_up = listening(self.c2s, "ejabberd_c2s");
        let s2s_up = listening(self.s2s, "ejabberd_s2s_in");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("ejabberd exited with {status}\n{}", self.output());
            }
            let log = self.log();
            if log.contains(&c2s_up)
                && log.contains(&s2s_up)
                && accepts(self.c2s)
                && accepts(self.s2s)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "ejabberd not listening on {} and {} after {START_TIMEOUT:?}\n{}",
                    self.c2s,
                    self.s2s,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs an ejabberdctl command against this node (as the ejabberd user,
    /// with the node's cookie).
    fn ctl(&self, args: &[&str]) {
        let root = self.dir.path();
        let output = Command::new("setpriv")
            .args(["--reuid=ejabberd", "--regid=ejabberd", "--init-groups"])
            .arg("ejabberdctl")
            .arg("--config-dir")
            .arg(root)
            .args(["--node", &self.node])
            .args(args)
            .env("HOME", root)
            .env("ERL_DIST_PORT", DIST_PORT.to_string())
            .output()
            .expect("ejabberdctl runs");
        assert!(
            output.status.success(),
            "ejabberdctl {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.output()
        );
    }

    /// Its log so far, info level: s2s lines name the authentication
    /// ("Accepted inbound s2s EXTERNAL authentication", "... dialback ...").
    /// The file is written in batches, up to about 100 ms behind: poll it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/ejabberd.log")).unwrap_or_default()
    }

    /// What the VM printed: the log too (ejabberd also logs to the console),
    /// and boot errors that never reach the log file. For failure messages.
    fn output(&self) -> String {
        let printed =
            std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        format!("--- ejabberd stdout/stderr ---\n{printed}")
    }

    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Its working directory (config, certificate, Mnesia spool, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    options: &EjabberdOptions,
    cert: &Path,
    key: &Path,
    ca_file: Option<&Path>,
) -> String {
    let path = |p: &Path| quoted(&p.display().to_string());
    let ca_file = ca_file
        .map(|ca| format!("ca_file: {}\n", path(ca)))
        .unwrap_or_default();
    // Without mod_s2s_dialback, ejabberd authenticates peers by certificate
    // only, both ways.
    let dialback = if options.require_valid_certificates {
        ""
    } else {
        "  mod_s2s_dialback: {}\n"
    };
    format!(
        r#"# Written by the Starling test harness.
hosts:
  - {domain}
loglevel: info
certfiles:
  - {cert}
  - {key}
{ca_file}listen:
  -
    port: {c2s_port}
    ip: "{ip}"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: {S2S_PORT}
    ip: "{ip}"
    module: ejabberd_s2s_in
s2s_use_starttls: required
auth_method: internal
# SCRAM-SHA-1 hashes: what the test client's SCRAM-SHA-1 logs in with.
auth_password_format: scram
auth_scram_hash: sha
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
  local:
    allow: local
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
{dialback}"#,
        domain = quoted(options.domain),
        cert = path(cert),
        key = path(key),
        c2s_port = options.c2s_port,
        ip = options.ip,
    )
}

/// A double-quoted string, as both YAML and Erlang read it.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An Erlang IPv4 tuple term, as `inet_dist_use_interface` takes it.
fn erlang_ip(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{{{a},{b},{c},{d}}}")
}

/// Where ejabberd's Erlang applications live: the ERL_LIBS that ejabberdctl
/// sets (an architecture directory on Debian).
fn erl_libs() -> String {
    let script = std::fs::read_to_string("/usr/sbin/ejabberdctl")
        .expect("ejabberdctl (scripts/install-test-deps installs ejabberd)");
    script
        .lines()
        .find_map(|line| line.strip_prefix("ERL_LIBS="))
        .map(|value| value.trim_matches(['\'', '"']).to_string())
        .expect("ERL_LIBS in ejabberdctl")
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
