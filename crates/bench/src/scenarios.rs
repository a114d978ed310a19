//! The three scenarios: `login`, `idle` and `chat`. Each is bounded in count and
//! in time and prints one result line (two for `login`: a cold and a warm round).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use starling_proto::sasl::DerivedKeys;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::report::{latency_histogram, record, Line, ProcStats};
use crate::session::{BenchError, Session, SessionReader, SessionWriter, Target};

const CLIENT_NS: &str = "jabber:client";

/// How a quiet server is recognised before a round starts (see `wait_for_quiet_server`).
const QUIET_SAMPLE: Duration = Duration::from_millis(500);
const QUIET_CPU: f64 = 0.1;
const QUIET_WAIT: Duration = Duration::from_secs(60);

/// Where the scenarios run and what they may measure.
pub struct Bench {
    pub target: Target,
    pub tls: TlsConnector,
    /// The server process whose memory and CPU time are reported.
    pub server_pid: Option<u32>,
    /// SCRAM keys per account number, kept between logins as real clients do.
    keys: Mutex<HashMap<usize, DerivedKeys>>,
}

/// Sessions opened by `Bench::open_sessions`, with what it took.
struct Opened {
    sessions: Vec<Session>,
    latency: Histogram<u64>,
    failures: usize,
    elapsed: Duration,
}

/// After a login: send initial presence only, or fetch the roster first as a
/// full client does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterBind {
    Presence,
    RosterAndPresence,
}

impl Bench {
    pub fn new(target: Target, tls: TlsConnector, server_pid: Option<u32>) -> Arc<Self> {
        Arc::new(Bench {
            target,
            tls,
            server_pid,
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn server_stats(&self) -> Option<ProcStats> {
        let pid = self.server_pid?;
        match ProcStats::read(pid) {
            Ok(stats) => Some(stats),
            Err(e) => {
                eprintln!("cannot read the server's statistics: {e}");
                None
            }
        }
    }

    /// Waits, up to `QUIET_WAIT`, until the server uses under `QUIET_CPU` of a core
    /// over `QUIET_SAMPLE`: work left from the previous round (logouts, closing
    /// streams) must not be counted in the next one.
    async fn wait_for_quiet_server(&self) {
        let deadline = Instant::now() + QUIET_WAIT;
        let Some(mut last) = self.server_stats() else {
            return;
        };
        while Instant::now() < deadline {
            tokio::time::sleep(QUIET_SAMPLE).await;
            let Some(now) = self.server_stats() else {
                return;
            };
            let busy = (now.cpu_seconds - last.cpu_seconds) / QUIET_SAMPLE.as_secs_f64();
            if busy < QUIET_CPU {
                return;
            }
            last = now;
        }
        eprintln!("the server is still busy after {QUIET_WAIT:?}; measuring anyway");
    }

    /// Logs in accounts `first..first + count` over `concurrency` connections at a
    /// time; the latency runs from connect to the bound resource.
    async fn open_sessions(
        self: &Arc<Self>,
        first: usize,
        count: usize,
        concurrency: usize,
        after_bind: AfterBind,
    ) -> Opened {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.clamp(1, count.max(1)) {
            let bench = Arc::clone(self);
            let next = Arc::clone(&next);
            workers.spawn(async move {
                let mut sessions = Vec::new();
                let mut latency = latency_histogram();
                let mut failures = 0;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let account = first + index;
                    let begun = Instant::now();
                    match bench.login(account, after_bind).await {
                        Ok(session) => {
                            record(&mut latency, begun.elapsed());
                            sessions.push(session);
                        }
                        Err(e) => {
                            failures += 1;
                            if failures <= 3 {
                                eprintln!("{}: {e}", bench.target.user(account));
                            }
                        }
                    }
                }
                (sessions, latency, failures)
            });
        }
        let mut opened = Opened {
            sessions: Vec::with_capacity(count),
            latency: latency_histogram(),
            failures: 0,
            elapsed: Duration::ZERO,
        };
        while let Some(result) = workers.join_next().await {
            let (sessions, latency, failures) = result.expect("login worker panicked");
            opened.sessions.extend(sessions);
            opened
                .latency
                .add(&latency)
                .expect("histograms with equal bounds");
            opened.failures += failures;
        }
        opened.elapsed = started.elapsed();
        opened
    }

    async fn login(&self, account: usize, after_bind: AfterBind) -> Result<Session, BenchError> {
        let keys = self.keys.lock().expect("key cache").get(&account).cloned();
        let mut session = Session::login(&self.target, account, &self.tls, keys).await?;
        if let Some(keys) = &session.keys {
            self.keys
                .lock()
                .expect("key cache")
                .insert(account, keys.clone());
        }
        match after_bind {
            AfterBind::Presence => session.send("<presence/>").await?,
            AfterBind::RosterAndPresence => session.roster_and_presence().await?,
        }
        Ok(session)
    }

    /// `login`: open sessions as fast as the server takes them, twice. The cold
    /// round derives every account's SCRAM keys (PBKDF2 on the client); the warm
    /// round reuses them, as a reconnecting client does, so that it measures
    /// the server rather than the load generator's hashing.
    pub async fn login_scenario(
        self: &Arc<Self>,
        first: usize,
        sessions: usize,
        concurrency: usize,
    ) {
        for round in ["cold", "warm"] {
            self.wait_for_quiet_server().await;
            let before = self.server_stats();
            let opened = self
                .open_sessions(first, sessions, concurrency, AfterBind::Presence)
                .await;
            let after = self.server_stats();
            Line::new("login")
                .add("round", round)
                .add("sessions", opened.sessions.len())
                .add("failures", opened.failures)
                .add("elapsed_s", format!("{:.3}", opened.elapsed.as_secs_f64()))
                .add_rate(
                    "sessions_per_s",
                    opened.sessions.len() as u64,
                    opened.elapsed,
                )
                .add_latency("bound", &opened.latency)
                .add_server(before, after)
                .print();
            close_all(opened.sessions).await;
        }
    }

    /// `idle`: hold authenticated sessions (roster fetched, presence sent) and
    /// report how much the server's resident memory grew per session.
    pub async fn idle_scenario(
        self: &Arc<Self>,
        first: usize,
        sessions: usize,
        concurrency: usize,
        hold: Duration,
    ) {
        self.wait_for_quiet_server().await;
        let before = self.server_stats();
        let opened = self
            .open_sessions(first, sessions, concurrency, AfterBind::RosterAndPresence)
            .await;
        tokio::time::sleep(hold).await;
        let after = self.server_stats();
        let mut line = Line::new("idle");
        line.add("sessions", opened.sessions.len())
            .add("failures", opened.failures)
            .add("hold_s", hold.as_secs())
            .add_rate(
                "sessions_per_s",
                opened.sessions.len() as u64,
                opened.elapsed,
            );
        if let (Some(before), Some(after)) = (before, after) {
            let grown = after.rss_kb.saturating_sub(before.rss_kb) * 1024;
            line.add(
                "server_bytes_per_session",
                grown / opened.sessions.len().max(1) as u64,
            );
        }
        line.add_server(before, after).print();
        close_all(opened.sessions).await;
    }

    /// `chat`: `users` online users in pairs send each other messages, at
    /// `rate` messages per second in all, or as fast as `window` messages in
    /// flight per sender allow when `rate` is zero.
    pub async fn chat_scenario(self: &Arc<Self>, first: usize, chat: ChatOptions) {
        let users = chat.users & !1;
        if users == 0 {
            eprintln!("chat needs at least two users");
            return;
        }
        let opened = self
            .open_sessions(first, users, chat.concurrency, AfterBind::RosterAndPresence)
            .await;
        if opened.failures > 0 {
            eprintln!("{} users could not log in", opened.failures);
            close_all(opened.sessions).await;
            return;
        }
        let peers: Vec<String> = opened
            .sessions
            .iter()
            .map(|s| s.jid.split('/').next().unwrap_or_default().to_owned())
            .collect();
        let counters = Arc::new(ChatCounters::new(users, chat.window));
        let epoch = Instant::now();
        let (stop, stopped) = watch::channel(false);
        let mut readers = JoinSet::new();
        let mut writers = Vec::with_capacity(users);
        for session in opened.sessions {
            let (reader, writer) = session.split();
            readers.spawn(receive(
                reader,
                Arc::clone(&counters),
                epoch,
                stopped.clone(),
            ));
            writers.push(writer);
        }
        self.wait_for_quiet_server().await;
        let before = self.server_stats();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + chat.duration;
        let mut senders = JoinSet::new();
        for (index, writer) in writers.into_iter().enumerate() {
            let plan = SendPlan {
                index,
                to: peers[index ^ 1].clone(),
                users,
                rate: chat.rate,
                deadline,
                epoch,
            };
            senders.spawn(send(writer, plan, Arc::clone(&counters)));
        }
        let mut writers = Vec::with_capacity(users);
        let mut send_errors = 0u64;
        while let Some(result) = senders.join_next().await {
            let (writer, errors) = result.expect("sender panicked");
            writers.extend(writer);
            send_errors += errors;
        }
        let sent = counters.sent.load(Ordering::Relaxed);
        let drained = tokio::time::timeout(chat.drain, async {
            while counters.received.load(Ordering::Relaxed) < sent {
                counters.arrival.notified().await;
            }
        })
        .await
        .is_ok();
        let after = self.server_stats();
        let _ = stop.send(true);
        let mut latency = latency_histogram();
        while let Some(result) = readers.join_next().await {
            latency
                .add(result.expect("receiver panicked"))
                .expect("histograms with equal bounds");
        }
        let received = counters.received.load(Ordering::Relaxed);
        let last_arrival = Duration::from_nanos(counters.last_arrival_ns.load(Ordering::Relaxed));
        let elapsed = (epoch + last_arrival).saturating_duration_since(started);
        let mut line = Line::new("chat");
        line.add("users", users)
            .add("offered_rate", chat.rate)
            .add("duration_s", chat.duration.as_secs())
            .add("sent", sent)
            .add("delivered", received)
            .add("lost", sent.saturating_sub(received))
            .add(
                "errors",
                counters.errors.load(Ordering::Relaxed) + send_errors,
            )
            .add("drained", drained)
            .add_rate("delivered_per_s", received, elapsed)
            .add_latency("latency", &latency);
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = a.cpu_seconds - b.cpu_seconds;
            let per_cpu_second = if cpu > 0.0 {
                received as f64 / cpu
            } else {
                0.0
            };
            line.add("delivered_per_cpu_s", format!("{per_cpu_second:.0}"));
        }
        line.add_server(before, after).print();
        let mut closing = JoinSet::new();
        for writer in writers {
            closing.spawn(writer.close());
        }
        while closing.join_next().await.is_some() {}
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ChatOptions {
    pub users: usize,
    pub concurrency: usize,
    /// Messages per second offered in all; zero for as fast as the window allows.
    pub rate: u64,
    pub window: usize,
    pub duration: Duration,
    /// How long to wait, after the last send, for messages still on their way.
    pub drain: Duration,
}

struct ChatCounters {
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    last_arrival_ns: AtomicU64,
    arrival: Notify,
    /// Per sender, how many more messages it may have in flight.
    windows: Vec<Semaphore>,
}

impl ChatCounters {
    fn new(users: usize, window: usize) -> Self {
        ChatCounters {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_arrival_ns: AtomicU64::new(0),
            arrival: Notify::new(),
            windows: (0..users).map(|_| Semaphore::new(window.max(1))).collect(),
        }
    }
}

struct SendPlan {
    index: usize,
    to: String,
    users: usize,
    rate: u64,
    deadline: tokio::time::Instant,
    epoch: Instant,
}

/// One user's sending loop. Returns the writer (unless it failed) and the number
/// of failed sends.
async fn send(
    mut writer: SessionWriter,
    plan: SendPlan,
    counters: Arc<ChatCounters>,
) -> (Option<SessionWriter>, u64) {
    let mut ticks = (plan.rate > 0).then(|| {
        let period = Duration::from_secs_f64(plan.users as f64 / plan.rate as f64);
        // Spread the senders evenly over one period.
        let offset = period.mul_f64(plan.index as f64 / plan.users as f64);
        tokio::time::interval_at(tokio::time::Instant::now() + offset, period)
    });
    let mut sequence = 0u64;
    loop {
        match &mut ticks {
            Some(ticks) => {
                if tokio::time::timeout_at(plan.deadline, ticks.tick())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            None => {
                let window = &counters.windows[plan.index];
                match tokio::time::timeout_at(plan.deadline, window.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => break,
                }
            }
        }
        let sent_at = plan.epoch.elapsed().as_nanos();
        let stanza = format!(
            "<message to='{}' type='chat'><body>{} {sequence} {sent_at}</body></message>",
            plan.to, plan.index
        );
        if let Err(e) = writer.send(&stanza).await {
            eprintln!("sender {}: {e}", plan.index);
            return (None, 1);
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
        sequence += 1;
    }
    (Some(writer), 0)
}

/// One user's receiving loop, until told to stop; returns its latencies.
async fn receive(
    mut reader: SessionReader,
    counters: Arc<ChatCounters>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut latency = latency_histogram();
    loop {
        let element = tokio::select! {
            element = reader.next_element(Duration::from_secs(3600)) => element,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Ok(element) = element else { break };
        if element.name != "message" {
            continue;
        }
        if element.attr("type") == Some("error") {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let body = element.child("body", CLIENT_NS).map(|b| b.text());
        let Some((sender, sent_at)) = body.as_deref().and_then(parse_body) else {
            continue;
        };
        let now = epoch.elapsed();
        record(&mut latency, now.saturating_sub(sent_at));
        counters.last_arrival_ns.fetch_max(
            u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(window) = counters.windows.get(sender) {
            window.add_permits(1);
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        counters.arrival.notify_one();
    }
    latency
}

/// `<sender> <sequence> <nanoseconds since the epoch>` of a bench message body.
fn parse_body(body: &str) -> Option<(usize, Duration)> {
    let mut parts = body.split(' ');
    let sender = parts.next()?.parse().ok()?;
    let _sequence: u64 = parts.next()?.parse().ok()?;
    let nanos: u64 = parts.next()?.parse().ok()?;
    Some((sender, Duration::from_nanos(nanos)))
}

async fn close_all(sessions: Vec<Session>) {
    let mut closing = JoinSet::new();
    for session in sessions {
        closing.spawn(session.close());
    }
    while closing.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bodies_carry_sender_and_send_time() {
        assert_eq!(
            parse_body("7 12 1500"),
            Some((7, Duration::from_nanos(1500)))
        );
        assert_eq!(parse_body("hello"), None);
        assert_eq!(parse_body("7 x 1500"), None);
    }
}
