//! `tokio-xmpp-chat`: an interop test client for Starling built on the
//! independent `tokio-xmpp` crate.
//!
//! It logs in over STARTTLS to an explicit address (no DNS/SRV), then runs an
//! ordered list of steps (`--send`, `--expect`, `--ping`) and prints one line
//! per completed step on stdout. Any error or timeout is reported on stderr
//! and makes the process exit with status 1.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};

const USAGE: &str = "usage: tokio-xmpp-chat --addr HOST:PORT --jid USER@DOMAIN[/RESOURCE] \
--password P [--timeout SECS] [--no-presence] [--verbose] \
[--send TO_JID BODY | --expect FROM_BARE_JID BODY | --ping]...";

/// One step of the scenario, run in command-line order.
#[derive(Debug)]
enum Step {
    Send { to: Jid, body: String },
    Expect { from: BareJid, body: String },
    Ping,
}

#[derive(Debug)]
struct Args {
    addr: String,
    jid: Jid,
    password: String,
    timeout: Duration,
    presence: bool,
    verbose: bool,
    steps: Vec<Step>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut addr = None;
    let mut jid = None;
    let mut password = None;
    let mut timeout = Duration::from_secs(20);
    let mut presence = true;
    let mut verbose = false;
    let mut steps = Vec::new();

    fn value(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
        it.next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
    }
    fn parse_jid(s: &str) -> Result<Jid, String> {
        Jid::new(s).map_err(|e| format!("invalid JID {s:?}: {e}"))
    }

    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => addr = Some(value(&mut it, "--addr")?),
            "--jid" => jid = Some(parse_jid(&value(&mut it, "--jid")?)?),
            "--password" => password = Some(value(&mut it, "--password")?),
            "--timeout" => {
                let v = value(&mut it, "--timeout")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("invalid --timeout {v:?}"))?;
                timeout = Duration::from_secs_f64(secs);
            }
            "--no-presence" => presence = false,
            "--verbose" => verbose = true,
            "--send" => {
                let to = parse_jid(&value(&mut it, "--send")?)?;
                let body = value(&mut it, "--send")?;
                steps.push(Step::Send { to, body });
            }
            "--expect" => {
                let from = parse_jid(&value(&mut it, "--expect")?)?;
                if from.is_full() {
                    return Err(format!("--expect needs a bare JID, got {from}"));
                }
                let from = from.into_bare();
                let body = value(&mut it, "--expect")?;
                steps.push(Step::Expect { from, body });
            }
            "--ping" => steps.push(Step::Ping),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }

    let jid = jid.ok_or_else(|| format!("--jid is required\n{USAGE}"))?;
    if jid.node().is_none() {
        return Err(format!("--jid needs a local part, got {jid}"));
    }
    Ok(Args {
        addr: addr.ok_or_else(|| format!("--addr is required\n{USAGE}"))?,
        jid,
        password: password.ok_or_else(|| format!("--password is required\n{USAGE}"))?,
        timeout,
        presence,
        verbose,
        steps,
    })
}

/// `log` backend for tokio-xmpp's diagnostics.
///
/// tokio-xmpp's `Client` never reports connection or authentication failures
/// through its API: its reconnect loop logs `Failed to connect: ...` at error
/// level and retries with backoff. This logger forwards every error record to
/// the main task so such failures end the run immediately with their reason.
/// Warnings (and, with `--verbose`, everything including the raw XML
/// `SEND`/`RECV` traces) are printed to stderr.
struct Logger {
    verbose: bool,
    errors: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.verbose || metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = format!("{}", record.args());
        eprintln!("[{} {}] {}", record.level(), record.target(), msg);
        if record.level() == log::Level::Error {
            if let Some(tx) = self.errors.lock().unwrap().as_ref() {
                // We give up instead of letting tokio-xmpp retry.
                let reason = msg.split(". Retrying in").next().unwrap_or(&msg);
                let _ = tx.send(reason.to_owned());
            }
        }
    }

    fn flush(&self) {}
}

fn install_logger(verbose: bool) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let logger = LOGGER.get_or_init(|| Logger {
        verbose,
        errors: Mutex::new(Some(tx)),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(if verbose {
            log::LevelFilter::Trace
        } else {
            log::LevelFilter::Warn
        });
    }
    rx
}

/// The running session: the client, tokio-xmpp's error reports, chat
/// messages received but not yet consumed by an `--expect` step.
struct Session {
    client: Client,
    errors: mpsc::UnboundedReceiver<String>,
    timeout: Duration,
    inbox: VecDeque<Message>,
    next_id: u64,
}

impl Session {
    /// Waits for the next event from tokio-xmpp, failing on a logged error
    /// or when `deadline` passes. `what` describes the wait for messages.
    async fn next_event(&mut self, deadline: Instant, what: &str) -> Result<Event, String> {
        tokio::select! {
            ev = self.client.next() => ev.ok_or_else(|| format!("client stream ended while {what}")),
            Some(err) = self.errors.recv() => Err(format!("tokio-xmpp error while {what}: {err}")),
            _ = tokio::time::sleep_until(deadline) => {
                Err(format!("timed out after {:?} while {what}", self.timeout))
            }
        }
    }

    /// Handles an event that is not the one being waited for. Chat messages
    /// are kept for later `--expect` steps; a second `Online` means the
    /// connection was lost and re-established, which a test must not hide.
    fn stash(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Stanza(Stanza::Message(msg)) => {
                if msg.type_ == MessageType::Error {
                    eprintln!(
                        "note: received error message from {}: {:?}",
                        msg.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
                        msg.payloads
                    );
                }
                self.inbox.push_back(msg);
                Ok(())
            }
            Event::Stanza(_) => Ok(()),
            Event::Online { bound_jid, .. } => Err(format!(
                "connection was lost and re-established (now bound as {bound_jid})"
            )),
            Event::Disconnected(e) => Err(format!("disconnected: {e}")),
        }
    }

    async fn login(&mut self) -> Result<Jid, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.next_event(deadline, "logging in").await? {
                Event::Online { bound_jid, .. } => return Ok(bound_jid),
                Event::Disconnected(e) => return Err(format!("disconnected during login: {e}")),
                Event::Stanza(_) => {}
            }
        }
    }

    async fn send(&mut self, stanza: Stanza, what: &str) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.client.send_stanza(stanza)).await {
            Ok(Ok(_token)) => Ok(()),
            Ok(Err(e)) => Err(format!("sending {what} failed: {e}")),
            Err(_) => Err(format!(
                "timed out after {:?} while sending {what}",
                self.timeout
            )),
        }
    }

    async fn run_step(&mut self, step: &Step) -> Result<String, String> {
        match step {
            Step::Send { to, body } => {
                let msg = Message::chat(to.clone()).with_body(Lang::default(), body.clone());
                self.send(msg.into(), "message").await?;
                Ok(format!("sent {to} {body}"))
            }
            Step::Expect { from, body } => {
                let what = format!("waiting for a chat message {body:?} from {from}");
                let deadline = Instant::now() + self.timeout;
                loop {
                    let pos = self.inbox.iter().position(|m| {
                        m.type_ == MessageType::Chat
                            && m.from.as_ref().is_some_and(|f| f.to_bare() == *from)
                            && m.bodies.values().any(|b| b == body)
                    });
                    if let Some(pos) = pos {
                        let msg = self.inbox.remove(pos).expect("position is in range");
                        let sender = msg.from.expect("matched on from");
                        return Ok(format!("received {sender} {body}"));
                    }
                    // Unmatched messages are not needed any more.
                    self.inbox.clear();
                    let ev = self.next_event(deadline, &what).await?;
                    self.stash(ev)?;
                }
            }
            Step::Ping => {
                let domain = Jid::new(self.client_domain()?.as_str())
                    .map_err(|e| format!("server domain is not a JID: {e}"))?;
                self.next_id += 1;
                let id = format!("ping-{}", self.next_id);
                let iq = Iq::from_get(id.clone(), Ping).with_to(domain.clone());
                self.send(iq.into(), "ping").await?;
                let what = format!("waiting for the ping result (id {id}) from {domain}");
                let deadline = Instant::now() + self.timeout;
                loop {
                    match self.next_event(deadline, &what).await? {
                        Event::Stanza(Stanza::Iq(iq)) if iq.id() == id => {
                            let from_ok = match iq.from() {
                                Some(f) => *f == domain,
                                None => {
                                    eprintln!("note: ping result has no 'from' attribute");
                                    true
                                }
                            };
                            if !from_ok {
                                return Err(format!(
                                    "ping response came from {}, expected {domain}",
                                    iq.from().map(|f| f.to_string()).unwrap_or_default()
                                ));
                            }
                            return match iq {
                                Iq::Result { .. } => Ok(format!("pong {domain}")),
                                Iq::Error { error, .. } => Err(format!(
                                    "ping failed: {:?} ({:?}) {:?}",
                                    error.defined_condition, error.type_, error.texts
                                )),
                                other => Err(format!("unexpected iq in reply to ping: {other:?}")),
                            };
                        }
                        ev => self.stash(ev)?,
                    }
                }
            }
        }
    }

    fn client_domain(&self) -> Result<String, String> {
        self.client
            .bound_jid()
            .map(|j| j.domain().as_str().to_owned())
            .ok_or_else(|| "not bound".to_string())
    }
}

/// tokio-xmpp's `DnsConfig::Addr` only takes a literal `IP:PORT`; resolve
/// `HOST:PORT` ourselves (no SRV) when it is not one.
async fn resolve_addr(addr: &str) -> Result<String, String> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(addr.to_owned());
    }
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve --addr {addr}: {e}"))?;
    addrs
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| format!("--addr {addr} resolved to no address"))
}

async fn run(args: Args) -> Result<(), String> {
    let errors = install_logger(args.verbose);
    let addr = resolve_addr(&args.addr).await?;

    let client = Client::new_starttls(
        args.jid.clone(),
        args.password.clone(),
        DnsConfig::addr(&addr),
        Timeouts::tight(),
    );
    let mut session = Session {
        client,
        errors,
        timeout: args.timeout,
        inbox: VecDeque::new(),
        next_id: 0,
    };

    let bound = session.login().await?;
    println!("bound {bound}");
    // tokio-xmpp 6 does not expose which SASL mechanism it used, so no
    // `mechanism` line is printed.

    if args.presence {
        // Be an available resource so that messages to the bare JID are
        // delivered to this session (RFC 6121 §8.5.2.1).
        session
            .send(Presence::available().into(), "initial presence")
            .await?;
    }

    for step in &args.steps {
        let line = session.run_step(step).await?;
        println!("{line}");
    }
    println!("OK");

    let timeout = session.timeout;
    match tokio::time::timeout(timeout, session.client.send_end()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: closing the stream failed: {e}"),
        Err(_) => eprintln!("warning: timed out after {timeout:?} closing the stream"),
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
