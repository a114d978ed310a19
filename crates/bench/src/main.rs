//! `starling-bench`: a load generator that speaks XMPP to any server on this
//! machine: `login`, `idle` and `chat` scenarios, one result line each.

mod report;
mod scenarios;
mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use starling_proto::sasl::Mechanism;

use crate::scenarios::{Bench, ChatOptions};
use crate::session::{Target, Transport};

#[derive(Parser)]
#[command(name = "starling-bench", version, about)]
struct Cli {
    /// The server's c2s address; loopback only.
    #[arg(long, default_value = "127.0.0.1:5222")]
    server: SocketAddr,
    /// The XMPP domain the accounts live in.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Account names; `{n}` is replaced by the account number.
    #[arg(long, default_value = "bench{n}")]
    user: String,
    #[arg(long, default_value = "bench")]
    password: String,
    /// The number of the first account used.
    #[arg(long, default_value_t = 1)]
    first: usize,
    #[arg(long, value_enum, default_value_t = Transport::Starttls)]
    transport: Transport,
    #[arg(long, default_value = "SCRAM-SHA-256", value_parser = parse_mechanism)]
    mechanism: Mechanism,
    /// Connect from 127.0.0.1 up to 127.0.0.K, for more connections than one
    /// source address has ports.
    #[arg(long, default_value_t = 1)]
    source_addresses: u8,
    /// Give up on any single network step after this long.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// The server's process id, to report its resident memory and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open sessions as fast as the server accepts them (connect, TLS, SASL,
    /// bind, initial presence): a cold round, then a warm one with SCRAM keys kept.
    Login {
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
    },
    /// Hold authenticated sessions (roster fetched, presence sent) for a while.
    Idle {
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// Online users in pairs exchange one-to-one messages.
    Chat {
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Messages per second offered in all; 0 sends as fast as the window allows.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Messages a sender may have in flight when `--rate 0`.
        #[arg(long, default_value_t = 8)]
        window: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        #[arg(long, default_value_t = 10)]
        drain_secs: u64,
    },
}

fn parse_mechanism(name: &str) -> Result<Mechanism, String> {
    match Mechanism::from_name(name) {
        Some(mechanism) if !mechanism.is_plus() => Ok(mechanism),
        Some(_) => Err("channel binding mechanisms are not supported".into()),
        None => Err(format!("unknown mechanism {name}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.server.ip().is_loopback() {
        eprintln!("{} is not a loopback address", cli.server);
        return ExitCode::FAILURE;
    }
    raise_open_files_limit();
    let sources = (1..=cli.source_addresses.max(1))
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    let target = Target {
        server: cli.server,
        domain: cli.domain,
        transport: cli.transport,
        mechanism: cli.mechanism,
        password: cli.password,
        user_pattern: cli.user,
        sources,
        timeout: Duration::from_secs(cli.timeout_secs),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let bench = Bench::new(target, session::tls_connector(), cli.server_pid);
        match cli.scenario {
            Scenario::Login {
                sessions,
                concurrency,
            } => bench.login_scenario(cli.first, sessions, concurrency).await,
            Scenario::Idle {
                sessions,
                concurrency,
                hold_secs,
            } => {
                bench
                    .idle_scenario(
                        cli.first,
                        sessions,
                        concurrency,
                        Duration::from_secs(hold_secs),
                    )
                    .await
            }
            Scenario::Chat {
                users,
                concurrency,
                rate,
                window,
                duration_secs,
                drain_secs,
            } => {
                let options = ChatOptions {
                    users,
                    concurrency,
                    rate,
                    window,
                    duration: Duration::from_secs(duration_secs),
                    drain: Duration::from_secs(drain_secs),
                };
                bench.chat_scenario(cli.first, options).await
            }
        }
    });
    ExitCode::SUCCESS
}

/// Many sessions need many descriptors: use the hard limit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
