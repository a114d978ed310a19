//! Offline-message writes per second on each storage backend: concurrent writers
//! store realistic `<message>` stanzas through `OfflineStore::store_offline`, as the
//! server does for each message to an offline user.
//!
//! ```sh
//! cargo run --release -p starling-store --example offline_writes -- \
//!     [--messages N] [--writers W] [--backend sqlite|postgres|both] [--postgres-url URL]
//! ```
//!
//! SQLite writes to a temporary file; PostgreSQL to a database `starling_bench_<random>`
//! created through the admin URL and dropped at the end.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use starling_proto::datetime::format_datetime;
use starling_proto::sasl::{ScramCredentials, ScramHash};
use starling_store::{AccountStore, OfflineOutcome, OfflineStore, Store};
use tokio::sync::Barrier;

#[path = "../tests/support/scratch_postgres.rs"]
mod scratch_postgres;

use scratch_postgres::ScratchDatabase;

const USAGE: &str = "usage: offline_writes [--messages N] [--writers W] \
                     [--backend sqlite|postgres|both] [--postgres-url URL]";
const ACCOUNTS: usize = 100;
const DOMAIN: &str = "localhost";
/// Above any queue this benchmark builds, so no write is refused.
const QUEUE_LIMIT: u64 = u64::MAX;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug)]
struct Options {
    messages: usize,
    writers: usize,
    backends: Vec<Backend>,
    postgres_url: String,
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        messages: 20_000,
        writers: 16,
        backends: vec![Backend::Sqlite, Backend::Postgres],
        postgres_url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => options.messages = positive(&flag, &value)?,
            "--writers" => options.writers = positive(&flag, &value)?,
            "--backend" => {
                options.backends = match value.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => return Err(format!("unknown backend {other:?}")),
                }
            }
            "--postgres-url" => options.postgres_url = value,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(options)
}

fn positive(flag: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{flag} takes a positive integer, not {value:?}"))
}

#[tokio::main]
async fn main() {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("{problem}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!(
        "{:<9} {:>9} {:>8} {:>10} {:>10} {:>8} {:>8}",
        "backend", "messages", "writers", "elapsed_s", "writes/s", "p50_ms", "p99_ms"
    );
    for &backend in &options.backends {
        let outcome = match backend {
            Backend::Sqlite => bench_sqlite(&options).await,
            Backend::Postgres => bench_postgres(&options).await,
        };
        match outcome {
            Ok(report) => report.print(backend, &options),
            Err(e) => {
                eprintln!("{}: {e}", backend.name());
                std::process::exit(1);
            }
        }
    }
}

async fn bench_sqlite(options: &Options) -> Result<Report, BoxError> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    run(&url, options).await
}

async fn bench_postgres(options: &Options) -> Result<Report, BoxError> {
    let database = ScratchDatabase::create(&options.postgres_url, "starling_bench").await?;
    let outcome = run(&database.url, options).await;
    database.drop().await?;
    outcome
}

/// Opens the store the way the server does (default pool settings), creates the
/// recipients, then times `options.writers` concurrent writers.
async fn run(url: &str, options: &Options) -> Result<Report, BoxError> {
    let store = Store::open(url).await?;
    // The keys are never checked here, so skip PBKDF2.
    let credentials = [ScramCredentials {
        hash: ScramHash::Sha256,
        salt: vec![7; 16],
        iterations: 4096,
        stored_key: vec![1; 32],
        server_key: vec![2; 32],
    }];
    for account in 0..ACCOUNTS {
        store
            .create_account(&recipient(account), DOMAIN, &credentials)
            .await?;
    }

    // Every writer waits here so that the clock starts with all of them ready.
    let start_line = Arc::new(Barrier::new(options.writers + 1));
    let writers: Vec<_> = (0..options.writers)
        .map(|writer| {
            let store = store.clone();
            let start_line = start_line.clone();
            let count = share_of(options.messages, options.writers, writer);
            let accounts = accounts_of(writer, options.writers);
            tokio::spawn(async move {
                start_line.wait().await;
                write_messages(&store, writer, count, &accounts).await
            })
        })
        .collect();
    start_line.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(options.messages);
    for writer in writers {
        latencies.extend(writer.await??);
    }
    let elapsed = started.elapsed();

    let mut stored = 0;
    for account in 0..ACCOUNTS {
        stored += store.offline_count(&recipient(account), DOMAIN).await?;
    }
    store.close().await;
    if stored != options.messages as u64 {
        return Err(format!("{stored} messages stored, {} written", options.messages).into());
    }
    latencies.sort_unstable();
    Ok(Report { elapsed, latencies })
}

fn recipient(account: usize) -> String {
    format!("user{account}")
}

/// How many of `total` messages `writer` writes: an even split, the remainder to the first.
fn share_of(total: usize, writers: usize, writer: usize) -> usize {
    total / writers + usize::from(writer < total % writers)
}

/// The recipients `writer` cycles through: its own slice of the accounts, so writers
/// never contend for one account's lock, unless there are more writers than accounts.
fn accounts_of(writer: usize, writers: usize) -> Vec<usize> {
    let own: Vec<usize> = (writer..ACCOUNTS).step_by(writers).collect();
    if own.is_empty() {
        vec![writer % ACCOUNTS]
    } else {
        own
    }
}

async fn write_messages(
    store: &Store,
    writer: usize,
    count: usize,
    accounts: &[usize],
) -> Result<Vec<Duration>, BoxError> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let account = accounts[i % accounts.len()];
        let now = SystemTime::now();
        let stored_at_ms = i64::try_from(now.duration_since(UNIX_EPOCH)?.as_millis())?;
        let stanza = message_xml(writer, i, account, now);
        let started = Instant::now();
        let outcome = store
            .store_offline(
                &recipient(account),
                DOMAIN,
                &stanza,
                stored_at_ms,
                QUEUE_LIMIT,
            )
            .await?;
        latencies.push(started.elapsed());
        if outcome != OfflineOutcome::Stored {
            return Err(format!("the store refused a message: {outcome:?}").into());
        }
    }
    Ok(latencies)
}

/// About 300 bytes, shaped like what the server stores: a chat message with a chat
/// state, stamped with XEP-0203 delay.
fn message_xml(writer: usize, index: usize, account: usize, now: SystemTime) -> String {
    format!(
        "<message xmlns='jabber:client' from='sender{writer}@example.org/phone' \
         to='{}@{DOMAIN}' type='chat' id='msg-{writer}-{index}'>\
         <body>Are we still on for lunch tomorrow?</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/>\
         <delay xmlns='urn:xmpp:delay' from='{DOMAIN}' stamp='{}'/></message>",
        recipient(account),
        format_datetime(now)
    )
}

struct Report {
    elapsed: Duration,
    /// Sorted ascending.
    latencies: Vec<Duration>,
}

impl Report {
    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, percent: usize) -> f64 {
        let rank = (self.latencies.len() * percent).div_ceil(100).max(1);
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }

    fn print(&self, backend: Backend, options: &Options) {
        let seconds = self.elapsed.as_secs_f64();
        println!(
            "{:<9} {:>9} {:>8} {:>10.3} {:>10.0} {:>8.2} {:>8.2}",
            backend.name(),
            options.messages,
            options.writers,
            seconds,
            options.messages as f64 / seconds,
            self.percentile_ms(50),
            self.percentile_ms(99)
        );
    }
}
