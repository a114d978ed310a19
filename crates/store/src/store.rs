use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqliteConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Connection pool settings for [`Store::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections: SQLite's are all opened at once and held, PostgreSQL's are opened
    /// as needed up to this bound. `None` picks the backend's default (4 for SQLite,
    /// which has a single writer anyway, 8 for PostgreSQL).
    pub max_connections: Option<u32>,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: None,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

const SQLITE_DEFAULT_CONNECTIONS: u32 = 4;
const POSTGRES_DEFAULT_CONNECTIONS: u32 = 8;

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(Arc<SqliteConnections>),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to something to run queries on: a SQLite connection
/// held for the body, or the PostgreSQL pool. The body is expanded once per backend, so
/// a query written once is type-checked against both drivers; it may use `$pool` once.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(connections) => {
                // `begin()` on a connection is a method of this trait.
                #[allow(unused_imports)]
                use sqlx::Connection as _;
                let mut connection = connections.acquire().await?;
                let $pool = &mut *connection;
                $body
            }
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// SQLite connections held open for the store's lifetime, each used by one query or
/// transaction at a time. sqlx's pool pings a connection's worker thread when it hands
/// the connection out and again when it takes it back, so every query cost three
/// round trips to that thread; here it costs one. SQLite connections are local files
/// that do not go stale, so there is nothing for those pings to find.
#[derive(Debug)]
pub(crate) struct SqliteConnections {
    /// `None` once the store is closed.
    connections: Box<[Mutex<Option<SqliteConnection>>]>,
    /// Where a query that finds every connection busy queues.
    next: AtomicUsize,
    acquire_timeout: Duration,
}

impl SqliteConnections {
    async fn open(
        options: &SqliteConnectOptions,
        count: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut connections = Vec::new();
        for _ in 0..count.max(1) {
            connections.push(Mutex::new(Some(options.connect().await?)));
        }
        Ok(SqliteConnections {
            connections: connections.into_boxed_slice(),
            next: AtomicUsize::new(0),
            acquire_timeout,
        })
    }

    /// A free connection, or the next one in turn once it is free.
    pub(crate) async fn acquire(
        &self,
    ) -> Result<MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        let free = self.connections.iter().find_map(|c| c.try_lock().ok());
        let guard = match free {
            Some(guard) => guard,
            None => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
                tokio::time::timeout(self.acquire_timeout, self.connections[turn].lock())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?
            }
        };
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| sqlx::Error::PoolClosed.into())
    }

    /// Closes every connection once its current query is done.
    async fn close(&self) {
        for connection in self.connections.iter() {
            if let Some(connection) = connection.lock().await.take() {
                let _ = connection.close().await;
            }
        }
    }
}

/// Handle to the database; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
}

impl Store {
    /// Opens the database at `url` with default [`StoreOptions`] and brings its schema up to date.
    ///
    /// Accepted URLs: `sqlite:///abs/path.db`, `sqlite://relative/path.db`, `sqlite:relative.db`,
    /// `postgres://user@host:port/db` and `postgresql://...`. A missing SQLite file is created.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// Like [`Store::open`], with explicit pool settings.
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let pool = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
                .create_if_missing(true)
                // WAL lets readers proceed while a writer commits; NORMAL is durable in WAL
                // mode except for the last transactions before a power loss.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                // Writers queue for the single write lock instead of failing with "database is locked".
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let connections = SqliteConnections::open(
                &connect,
                options
                    .max_connections
                    .unwrap_or(SQLITE_DEFAULT_CONNECTIONS),
                options.acquire_timeout,
            )
            .await?;
            SQLITE_MIGRATIONS
                .run_direct(None, &mut *connections.acquire().await?, false)
                .await?;
            Pool::Sqlite(Arc::new(connections))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(
                    options
                        .max_connections
                        .unwrap_or(POSTGRES_DEFAULT_CONNECTIONS),
                )
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            // Only the scheme is echoed: the rest of a URL may carry a password.
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            return Err(StoreError::InvalidUrl(format!(
                "unsupported scheme {scheme:?}, expected sqlite: or postgres:"
            )));
        };
        Ok(Store { pool })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes all connections, waiting for those in use to be returned. Every clone of this
    /// store is closed too.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(connections) => connections.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Converts a `COUNT(*)`, which is never negative; the check only guards against a broken driver.
pub(crate) fn count_from_db(count: i64) -> Result<u64, StoreError> {
    u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("negative count {count}")))
}
