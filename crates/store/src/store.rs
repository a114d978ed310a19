use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Connection pool settings for [`Store::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Upper bound on open connections; `None` picks the backend's default
    /// (4 for SQLite, which has a single writer anyway, 8 for PostgreSQL).
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
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`. The body is expanded
/// once per backend, so a query written once is type-checked against both drivers.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

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
            let pool = SqlitePoolOptions::new()
                .max_connections(
                    options
                        .max_connections
                        .unwrap_or(SQLITE_DEFAULT_CONNECTIONS),
                )
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Pool::Sqlite(pool)
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
        on_pool!(self, pool => pool.close().await)
    }
}

/// Converts a `COUNT(*)`, which is never negative; the check only guards against a broken driver.
pub(crate) fn count_from_db(count: i64) -> Result<u64, StoreError> {
    u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("negative count {count}")))
}
