//! The storage suite: every test in `backend_tests!` runs once against SQLite and once
//! against PostgreSQL (`STARLING_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; it must be reachable, these tests do not skip).

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqliteConnection};
use starling_proto::sasl::{ScramCredentials, ScramHash};
use starling_store::{AccountStore, Store, StoreError};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test.
#[derive(Debug, Clone)]
struct TestDb {
    backend: Backend,
    url: String,
}

impl TestDb {
    async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("open store")
    }

    /// Runs SQL behind the store's back, to plant data the API would refuse to write.
    async fn execute_raw(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// `(table, column)` of the application's tables, read from the database's catalog.
    async fn columns(&self) -> BTreeSet<(String, String)> {
        let rows: Vec<(String, String)> = match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(
                    "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     AND m.name NOT LIKE '\\_sqlx\\_%' ESCAPE '\\'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("t"), r.get("c")))
                .collect()
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(
                    "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx\\_%'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("t"), r.get("c")))
                .collect()
            }
        };
        rows.into_iter().collect()
    }
}

/// A provisioned database and what must outlive the test to clean it up.
struct Provisioned {
    db: TestDb,
    _dir: Option<TempDir>,
    postgres: Option<(String, String)>,
}

fn postgres_admin_url() -> String {
    std::env::var("STARLING_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `admin` with its database name replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin
        .split_once('?')
        .map_or((admin, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut url = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

async fn provision(backend: Backend) -> Provisioned {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("store.db").display());
            Provisioned {
                db: TestDb { backend, url },
                _dir: Some(dir),
                postgres: None,
            }
        }
        Backend::Postgres => {
            let admin = postgres_admin_url();
            // RandomState is seeded randomly per instance: a unique name without a rand crate.
            let name = format!("starling_test_{:016x}", RandomState::new().hash_one(0u8));
            let mut conn = PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required: {e}"));
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            Provisioned {
                db: TestDb {
                    backend,
                    url: with_database(&admin, &name),
                },
                _dir: None,
                postgres: Some((admin, name)),
            }
        }
    }
}

async fn release(provisioned: Provisioned) {
    if let Some((admin, name)) = provisioned.postgres {
        let mut conn = PgConnection::connect(&admin).await.unwrap();
        // FORCE: a panicking test may leave pool connections behind.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// Runs `test` on a fresh database of `backend` and removes the database afterwards,
/// also when the test panics.
async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let provisioned = provision(backend).await;
    let outcome = tokio::spawn(test(provisioned.db.clone())).await;
    release(provisioned).await;
    if let Err(error) = outcome {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("test task failed: {error}");
    }
}

/// Instantiates each listed test once per backend, as `sqlite::name` and `postgres::name`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::run(crate::Backend::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::run(crate::Backend::Postgres, super::$name).await
                }
            )*
        }
    };
}

backend_tests!(
    store_reports_its_backend,
    created_account_returns_its_credentials_for_each_hash,
    hashes_without_stored_credentials_return_none,
    duplicate_create_fails_with_account_exists_and_keeps_original_credentials,
    create_account_is_all_or_nothing,
    deleted_account_leaves_no_credentials_behind,
    set_credentials_replaces_every_stored_hash,
    set_credentials_is_all_or_nothing,
    set_credentials_on_unknown_account_returns_false_and_creates_nothing,
    list_accounts_is_sorted_bytewise_by_domain_then_user_and_filters_by_domain,
    credentials_survive_close_and_reopen,
    migrations_are_idempotent,
    corrupt_iteration_counts_are_reported_as_corrupt,
    fifty_concurrent_account_creations_all_succeed,
);

/// Recognisable credentials without the cost of PBKDF2; `seed` tells sets apart.
fn creds(hash: ScramHash, seed: u8) -> ScramCredentials {
    let len = match hash {
        ScramHash::Sha1 => 20,
        ScramHash::Sha256 => 32,
        ScramHash::Sha512 => 64,
    };
    ScramCredentials {
        hash,
        salt: vec![seed; 16],
        iterations: 4096 + u32::from(seed),
        stored_key: vec![seed ^ 0x55; len],
        server_key: vec![seed ^ 0xaa; len],
    }
}

fn all_creds(seed: u8) -> Vec<ScramCredentials> {
    ScramHash::ALL.into_iter().map(|h| creds(h, seed)).collect()
}

async fn store_reports_its_backend(db: TestDb) {
    let store = db.open().await;
    let expected = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(store.backend_name(), expected);
}

async fn created_account_returns_its_credentials_for_each_hash(db: TestDb) {
    let store = db.open().await;
    assert!(!store.account_exists("alice", "example.org").await.unwrap());
    store
        .create_account("alice", "example.org", &all_creds(1))
        .await
        .unwrap();
    assert!(store.account_exists("alice", "example.org").await.unwrap());
    for hash in ScramHash::ALL {
        let stored = store
            .credentials("alice", "example.org", hash)
            .await
            .unwrap();
        assert_eq!(stored, Some(creds(hash, 1)), "{}", hash.name());
    }
    // Same user, other domain: a different account.
    assert!(!store.account_exists("alice", "example.com").await.unwrap());
    assert_eq!(
        store
            .credentials("alice", "example.com", ScramHash::Sha256)
            .await
            .unwrap(),
        None
    );
}

async fn hashes_without_stored_credentials_return_none(db: TestDb) {
    let store = db.open().await;
    store
        .create_account("bob", "example.org", &[creds(ScramHash::Sha256, 2)])
        .await
        .unwrap();
    let sha1 = store.credentials("bob", "example.org", ScramHash::Sha1);
    assert_eq!(sha1.await.unwrap(), None);
    let sha256 = store.credentials("bob", "example.org", ScramHash::Sha256);
    assert_eq!(sha256.await.unwrap(), Some(creds(ScramHash::Sha256, 2)));
}

async fn duplicate_create_fails_with_account_exists_and_keeps_original_credentials(db: TestDb) {
    let store = db.open().await;
    store
        .create_account("alice", "example.org", &all_creds(1))
        .await
        .unwrap();
    let again = store
        .create_account("alice", "example.org", &all_creds(2))
        .await;
    assert!(matches!(again, Err(StoreError::AccountExists)), "{again:?}");
    for hash in ScramHash::ALL {
        let stored = store
            .credentials("alice", "example.org", hash)
            .await
            .unwrap();
        assert_eq!(stored, Some(creds(hash, 1)));
    }
}

async fn create_account_is_all_or_nothing(db: TestDb) {
    let store = db.open().await;
    // Two credentials for one hash violate the primary key after the account row is in.
    let twice = [creds(ScramHash::Sha256, 1), creds(ScramHash::Sha256, 2)];
    let result = store.create_account("alice", "example.org", &twice).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert!(!store.account_exists("alice", "example.org").await.unwrap());
    store
        .create_account("alice", "example.org", &all_creds(3))
        .await
        .unwrap();
}

async fn deleted_account_leaves_no_credentials_behind(db: TestDb) {
    let store = db.open().await;
    store
        .create_account("alice", "example.org", &all_creds(1))
        .await
        .unwrap();
    assert!(store.delete_account("alice", "example.org").await.unwrap());
    assert!(!store.account_exists("alice", "example.org").await.unwrap());
    assert!(!store.delete_account("alice", "example.org").await.unwrap());

    store
        .create_account("alice", "example.org", &[creds(ScramHash::Sha512, 9)])
        .await
        .unwrap();
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let stored = store
            .credentials("alice", "example.org", hash)
            .await
            .unwrap();
        assert_eq!(stored, None, "{} outlived its account", hash.name());
    }
    let sha512 = store.credentials("alice", "example.org", ScramHash::Sha512);
    assert_eq!(sha512.await.unwrap(), Some(creds(ScramHash::Sha512, 9)));
}

async fn set_credentials_replaces_every_stored_hash(db: TestDb) {
    let store = db.open().await;
    let old = [creds(ScramHash::Sha1, 1), creds(ScramHash::Sha256, 1)];
    store
        .create_account("alice", "example.org", &old)
        .await
        .unwrap();
    let new = [creds(ScramHash::Sha256, 2), creds(ScramHash::Sha512, 2)];
    assert!(store
        .set_credentials("alice", "example.org", &new)
        .await
        .unwrap());
    let sha1 = store.credentials("alice", "example.org", ScramHash::Sha1);
    assert_eq!(sha1.await.unwrap(), None);
    for hash in [ScramHash::Sha256, ScramHash::Sha512] {
        let stored = store
            .credentials("alice", "example.org", hash)
            .await
            .unwrap();
        assert_eq!(stored, Some(creds(hash, 2)));
    }
}

async fn set_credentials_is_all_or_nothing(db: TestDb) {
    let store = db.open().await;
    store
        .create_account("alice", "example.org", &all_creds(1))
        .await
        .unwrap();
    // The second insert fails after the old rows were deleted; the deletion must roll back.
    let twice = [creds(ScramHash::Sha1, 2), creds(ScramHash::Sha1, 3)];
    let result = store.set_credentials("alice", "example.org", &twice).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    for hash in ScramHash::ALL {
        let stored = store
            .credentials("alice", "example.org", hash)
            .await
            .unwrap();
        assert_eq!(stored, Some(creds(hash, 1)));
    }
}

async fn set_credentials_on_unknown_account_returns_false_and_creates_nothing(db: TestDb) {
    let store = db.open().await;
    let changed = store
        .set_credentials("ghost", "example.org", &all_creds(1))
        .await
        .unwrap();
    assert!(!changed);
    assert!(!store.account_exists("ghost", "example.org").await.unwrap());
    let stored = store.credentials("ghost", "example.org", ScramHash::Sha256);
    assert_eq!(stored.await.unwrap(), None);
}

async fn list_accounts_is_sorted_bytewise_by_domain_then_user_and_filters_by_domain(db: TestDb) {
    let store = db.open().await;
    // Locale collations would put "ab" before "a-c" and "b" before "Z"; bytewise order does not.
    let accounts = [
        ("ab", "b.example"),
        ("a-c", "b.example"),
        ("zed", "a.example"),
        ("b", "a.example"),
        ("Z", "a.example"),
        ("x", "c.example"),
    ];
    for (user, domain) in accounts {
        store.create_account(user, domain, &[]).await.unwrap();
    }
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(u, d)| (u.to_string(), d.to_string()))
            .collect()
    };
    assert_eq!(
        store.list_accounts(None).await.unwrap(),
        pairs(&[
            ("Z", "a.example"),
            ("b", "a.example"),
            ("zed", "a.example"),
            ("a-c", "b.example"),
            ("ab", "b.example"),
            ("x", "c.example"),
        ])
    );
    assert_eq!(
        store.list_accounts(Some("b.example")).await.unwrap(),
        pairs(&[("a-c", "b.example"), ("ab", "b.example")])
    );
    assert_eq!(
        store.list_accounts(Some("nowhere.example")).await.unwrap(),
        vec![]
    );
}

async fn credentials_survive_close_and_reopen(db: TestDb) {
    let store = db.open().await;
    store
        .create_account("alice", "example.org", &all_creds(1))
        .await
        .unwrap();
    store.close().await;

    let store = db.open().await;
    for hash in ScramHash::ALL {
        let stored = store
            .credentials("alice", "example.org", hash)
            .await
            .unwrap();
        assert_eq!(stored, Some(creds(hash, 1)));
    }
}

async fn migrations_are_idempotent(db: TestDb) {
    let first = db.open().await;
    first
        .create_account("alice", "example.org", &all_creds(1))
        .await
        .unwrap();
    // Opening again, even while the first store is still open, must neither fail nor
    // disturb the data.
    let second = db.open().await;
    assert!(second.account_exists("alice", "example.org").await.unwrap());
    first.close().await;
    second.close().await;
    let third = db.open().await;
    assert_eq!(
        third.list_accounts(None).await.unwrap(),
        vec![("alice".to_owned(), "example.org".to_owned())]
    );
}

async fn corrupt_iteration_counts_are_reported_as_corrupt(db: TestDb) {
    let store = db.open().await;
    for (user, iterations) in [("zero", 0i64), ("negative", -1), ("huge", 1 << 40)] {
        store
            .create_account(user, "example.org", &[creds(ScramHash::Sha256, 1)])
            .await
            .unwrap();
        db.execute_raw(&format!(
            "UPDATE scram_credentials SET iterations = {iterations} WHERE username = '{user}'"
        ))
        .await;
        let result = store
            .credentials(user, "example.org", ScramHash::Sha256)
            .await;
        assert!(
            matches!(result, Err(StoreError::Corrupt(_))),
            "{iterations}: {result:?}"
        );
    }
}

async fn fifty_concurrent_account_creations_all_succeed(db: TestDb) {
    let store = db.open().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let user = format!("user{i:02}");
                store
                    .create_account(&user, "example.org", &all_creds(i))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let listed = store.list_accounts(Some("example.org")).await.unwrap();
    assert_eq!(listed.len(), 50);
    let stored = store
        .credentials("user49", "example.org", ScramHash::Sha512)
        .await
        .unwrap();
    assert_eq!(stored, Some(creds(ScramHash::Sha512, 49)));
}

#[tokio::test]
async fn sqlite_database_is_in_wal_mode() {
    run(Backend::Sqlite, |db| async move {
        db.open().await;
        let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_schemas_have_the_same_tables_and_columns() {
    let sqlite = provision(Backend::Sqlite).await;
    let postgres = provision(Backend::Postgres).await;
    let (sqlite_db, postgres_db) = (sqlite.db.clone(), postgres.db.clone());
    let outcome = tokio::spawn(async move {
        sqlite_db.open().await.close().await;
        postgres_db.open().await.close().await;
        let sqlite_columns = sqlite_db.columns().await;
        assert!(sqlite_columns.contains(&("scram_credentials".into(), "server_key".into())));
        assert_eq!(sqlite_columns, postgres_db.columns().await);
    })
    .await;
    release(sqlite).await;
    release(postgres).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn unsupported_url_scheme_is_an_invalid_url_and_hides_the_rest() {
    let result = Store::open("mysql://root:secret@localhost/db").await;
    match result {
        Err(StoreError::InvalidUrl(message)) => assert!(!message.contains("secret"), "{message}"),
        other => panic!("expected InvalidUrl, got {:?}", other.map(|_| ())),
    }
}
