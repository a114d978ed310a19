//! `starling`: run the server and administer its accounts.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bulk;

// jemalloc returns idle sessions' memory better than glibc malloc (bench/compare idle).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use starling_proto::sasl::{ScramCredentials, ScramHash};
use starling_proto::Jid;
use starling_server::{portable, Config, Server};
use starling_store::{AccountStore, Store, StoreError};

#[derive(Parser)]
#[command(name = "starling", version, about = "The Starling XMPP server")]
struct Cli {
    /// Configuration file; without it the embedded defaults serve `localhost`.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Create an account.
    Adduser {
        /// The account's JID, e.g. alice@localhost.
        #[arg(required_unless_present = "bulk")]
        jid: Option<String>,
        /// Read the password from the first line of this file instead of asking.
        #[arg(long, conflicts_with = "bulk")]
        password_file: Option<PathBuf>,
        /// Create every account of FILE (`user@domain password` per line) at once:
        /// all of them or none.
        #[arg(long, value_name = "FILE", conflicts_with = "jid")]
        bulk: Option<PathBuf>,
    },
    /// Delete an account.
    Deluser { jid: String },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List accounts, optionally of one domain.
    ListUsers { domain: Option<String> },
    /// Check a configuration file and report every problem with its line.
    CheckConfig { file: PathBuf },
    /// Bring the database schema up to date (the server also does at start) and exit.
    Migrate,
    /// Write every account with its credentials and data to FILE.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Xep0227)]
        format: ExportFormat,
        file: PathBuf,
    },
    /// Create the accounts of a XEP-0227 file (as `export` or Prosody write it):
    /// all of them or, on any error, none.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// XEP-0227 portable import/export format.
    Xep0227,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STARLING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Command::CheckConfig { file } = &cli.command {
        return check_config(file);
    }
    let config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(errors) => {
                for error in errors {
                    eprintln!("{}: {error}", path.display());
                }
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("starling: {message}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors {
                eprintln!("{}: {error}", file.display());
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve => serve(config).await,
        Command::Adduser {
            bulk: Some(file), ..
        } => {
            let accounts = bulk::read_accounts(&file, &config)?;
            let store = open_store(&config).await?;
            match store.import_accounts(&accounts).await {
                Ok(()) => {
                    println!("created {} accounts", accounts.len());
                    Ok(())
                }
                Err(StoreError::AccountExists) => {
                    Err("an account of the file already exists; none were created".into())
                }
                Err(e) => Err(format!("{e}; none were created")),
            }
        }
        Command::Adduser {
            jid, password_file, ..
        } => {
            let Some(jid) = jid else {
                return Err("adduser needs a JID or --bulk FILE".into());
            };
            let (user, domain) = account(&config, &jid)?;
            let password = read_password(password_file.as_deref(), true)?;
            let creds = credentials(&password, config.auth.scram_iterations)?;
            let store = open_store(&config).await?;
            match store.create_account(&user, &domain, &creds).await {
                Ok(()) => {
                    println!("created {user}@{domain}");
                    Ok(())
                }
                Err(StoreError::AccountExists) => Err(format!("{user}@{domain} already exists")),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Deluser { jid } => {
            let (user, domain) = account(&config, &jid)?;
            let store = open_store(&config).await?;
            if store
                .delete_account(&user, &domain)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("deleted {user}@{domain}");
                Ok(())
            } else {
                Err(format!("no account {user}@{domain}"))
            }
        }
        Command::Passwd { jid, password_file } => {
            let (user, domain) = account(&config, &jid)?;
            let store = open_store(&config).await?;
            if !store
                .account_exists(&user, &domain)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no account {user}@{domain}"));
            }
            let password = read_password(password_file.as_deref(), true)?;
            let creds = credentials(&password, config.auth.scram_iterations)?;
            store
                .set_credentials(&user, &domain, &creds)
                .await
                .map_err(|e| e.to_string())?;
            println!("password changed for {user}@{domain}");
            Ok(())
        }
        Command::ListUsers { domain } => {
            let store = open_store(&config).await?;
            let accounts = store
                .list_accounts(domain.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            for (user, domain) in accounts {
                println!("{user}@{domain}");
            }
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("{} schema is up to date", store.backend_name());
            Ok(())
        }
        Command::Export {
            format: ExportFormat::Xep0227,
            file,
        } => export(&config, &file).await,
        Command::Import { files } => import(&config, &files).await,
        Command::CheckConfig { .. } => unreachable!("handled before the runtime starts"),
    }
}

async fn export(config: &Config, file: &Path) -> Result<(), String> {
    let store = open_store(config).await?;
    let accounts = store.export_accounts().await.map_err(|e| e.to_string())?;
    let document = portable::write_xep0227(&accounts)?;
    // Credentials are in the file: readable by the owner only, and never half-written.
    let partial = file.with_extension("partial");
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        out.write_all(document.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&partial, file)
    };
    write().map_err(|e| format!("{}: {e}", file.display()))?;
    println!("exported {} accounts to {}", accounts.len(), file.display());
    Ok(())
}

async fn import(config: &Config, files: &[PathBuf]) -> Result<(), String> {
    let parsed = portable::read_xep0227(files, config)
        .map_err(|issue| format!("{issue}; nothing was imported"))?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    let store = open_store(config).await?;
    for account in &parsed.accounts {
        if store
            .account_exists(&account.user, &account.domain)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "{}@{} already exists here; nothing was imported",
                account.user, account.domain
            ));
        }
    }
    store
        .import_accounts(&parsed.accounts)
        .await
        .map_err(|e| format!("{e}; nothing was imported"))?;
    println!(
        "imported {} accounts from {} files",
        parsed.accounts.len(),
        files.len()
    );
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    let server = Server::start(config).await.map_err(|e| e.to_string())?;
    // Tests and scripts read these lines to find the ports; c2s comes last.
    for addr in &server.component_addrs {
        println!("components listening on {addr}");
    }
    for addr in &server.s2s_addrs {
        println!("s2s listening on {addr}");
    }
    for addr in &server.s2s_direct_tls_addrs {
        println!("s2s direct TLS listening on {addr}");
    }
    for addr in &server.c2s_addrs {
        println!("c2s listening on {addr}");
    }
    for addr in &server.direct_tls_addrs {
        println!("c2s direct TLS listening on {addr}");
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn open_store(config: &Config) -> Result<Store, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    Store::open_with(&config.storage_url(), config.store_options())
        .await
        .map_err(|e| format!("storage: {e}"))
}

/// A bare JID at a served domain, as (localpart, domain).
fn account(config: &Config, jid: &str) -> Result<(String, String), String> {
    let jid = Jid::parse(jid).map_err(|e| format!("invalid JID {jid:?}: {e}"))?;
    let (Some(user), None) = (jid.node(), jid.resource()) else {
        return Err(format!("{jid} is not an account JID (user@domain)"));
    };
    if !config.serves(jid.domain()) {
        return Err(format!(
            "{} is not a domain this server serves",
            jid.domain()
        ));
    }
    Ok((user.to_string(), jid.domain().to_string()))
}

fn credentials(password: &str, iterations: u32) -> Result<Vec<ScramCredentials>, String> {
    ScramHash::ALL
        .into_iter()
        .map(|hash| ScramCredentials::generate(hash, password, iterations))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unusable password: {e}"))
}

fn read_password(file: Option<&Path>, confirm: bool) -> Result<String, String> {
    let password = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            text.lines().next().unwrap_or_default().to_string()
        }
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
            if confirm {
                let second =
                    rpassword::prompt_password("Password again: ").map_err(|e| e.to_string())?;
                if first != second {
                    return Err("the passwords differ".into());
                }
            }
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(password)
}
