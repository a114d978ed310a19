//! The storage suite: every test in `backend_tests!` runs once against SQLite and once
//! against PostgreSQL (`STARLING_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; it must be reachable, these tests do not skip).

use std::collections::BTreeSet;
use std::future::Future;

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqliteConnection};
use starling_proto::sasl::{ScramCredentials, ScramHash};
use starling_store::{
    AccountData, AccountStore, BlocklistStore, LastActivityStore, OfflineMessage, OfflineOutcome,
    OfflineStore, PrivateXmlStore, RosterChange, RosterItem, RosterStore, Store, StoreError,
    StoreOptions, Subscription, VcardStore,
};
use tempfile::TempDir;

#[path = "support/scratch_postgres.rs"]
mod scratch_postgres;

use scratch_postgres::ScratchDatabase;

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

    /// How many rows of `table` belong to the account, read behind the store's back.
    async fn rows_of(&self, table: &str, user: &str, domain: &str) -> i64 {
        let sql = AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE domain = '{domain}' AND username = '{user}'"
        ));
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }
}

/// A provisioned database and what must outlive the test to clean it up.
struct Provisioned {
    db: TestDb,
    _dir: Option<TempDir>,
    postgres: Option<ScratchDatabase>,
}

fn postgres_admin_url() -> String {
    std::env::var("STARLING_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
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
            let database = ScratchDatabase::create(&admin, "starling_test")
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required: {e}"));
            Provisioned {
                db: TestDb {
                    backend,
                    url: database.url.clone(),
                },
                _dir: None,
                postgres: Some(database),
            }
        }
    }
}

async fn release(provisioned: Provisioned) {
    if let Some(database) = provisioned.postgres {
        database.drop().await.unwrap();
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
    queries_beyond_the_connection_count_wait_their_turn_and_all_complete,
    queries_after_close_fail_instead_of_waiting,
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
    roster_items_are_set_read_updated_and_removed,
    roster_version_increments_per_change_and_survives_reopen,
    roster_changes_since_returns_latest_sets_and_removals_in_version_order,
    removing_a_missing_roster_item_returns_none_and_keeps_the_version,
    roster_item_count_follows_sets_and_removals,
    subscription_requests_are_one_per_contact_in_arrival_order,
    offline_messages_keep_arrival_order_and_survive_reopen,
    offline_limit_is_enforced_exactly,
    twenty_concurrent_offline_stores_against_a_limit_of_ten_store_exactly_ten,
    vcard_is_set_read_and_replaced,
    private_xml_is_set_read_and_replaced_per_qualified_name,
    blocklist_reports_only_actual_changes,
    last_activity_is_set_read_and_replaced,
    writes_on_a_missing_account_fail_and_store_nothing,
    deleting_an_account_deletes_all_of_its_data_and_only_its,
    exported_accounts_imported_again_are_identical,
    import_with_one_existing_account_stores_nothing,
    many_concurrent_writers_never_fail_with_a_locked_database,
    concurrent_additions_never_pass_the_roster_limit_and_updates_at_the_limit_succeed,
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

async fn queries_beyond_the_connection_count_wait_their_turn_and_all_complete(db: TestDb) {
    let options = StoreOptions {
        max_connections: Some(2),
        ..StoreOptions::default()
    };
    let store = Store::open_with(&db.url, options)
        .await
        .expect("open store");
    let mut queries = tokio::task::JoinSet::new();
    for n in 0..40 {
        let store = store.clone();
        queries.spawn(async move {
            let user = format!("user{n}");
            store
                .create_account(&user, "example.org", &[creds(ScramHash::Sha256, 1)])
                .await?;
            store.account_exists(&user, "example.org").await
        });
    }
    let mut created = 0;
    while let Some(outcome) = queries.join_next().await {
        assert!(outcome.expect("task").expect("query"), "account exists");
        created += 1;
    }
    assert_eq!(created, 40);
}

async fn queries_after_close_fail_instead_of_waiting(db: TestDb) {
    let store = db.open().await;
    store.close().await;
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.account_exists("juliet", "example.org"),
    )
    .await
    .expect("answered at once");
    assert!(
        matches!(outcome, Err(StoreError::Database(sqlx::Error::PoolClosed))),
        "{outcome:?}"
    );
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

const ALICE: (&str, &str) = ("alice", "example.org");

/// A store with the account `alice@example.org`.
async fn store_with_alice(db: &TestDb) -> Store {
    let store = db.open().await;
    store.create_account(ALICE.0, ALICE.1, &[]).await.unwrap();
    store
}

fn item(jid: &str, name: Option<&str>, subscription: Subscription, groups: &[&str]) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        name: name.map(str::to_owned),
        subscription,
        ask: false,
        approved: false,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn roster_items_are_set_read_updated_and_removed(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    assert_eq!(store.roster(user, domain).await.unwrap(), (0, vec![]));

    // Groups keep the order given, not sorted; names and groups may be any Unicode.
    let romeo = item(
        "romeo@example.net",
        Some("Roméo 🌹"),
        Subscription::Both,
        &["Vérone", "Amis", "友達"],
    );
    let mut nurse = item("nurse@example.com", None, Subscription::None, &[]);
    nurse.ask = true;
    nurse.approved = true;
    store.set_roster_item(user, domain, &romeo).await.unwrap();
    store.set_roster_item(user, domain, &nurse).await.unwrap();

    let (_, items) = store.roster(user, domain).await.unwrap();
    assert_eq!(items, vec![nurse.clone(), romeo.clone()], "sorted by jid");
    let stored = store.roster_item(user, domain, "romeo@example.net");
    assert_eq!(stored.await.unwrap(), Some(romeo.clone()));
    let missing = store.roster_item(user, domain, "tybalt@example.net");
    assert_eq!(missing.await.unwrap(), None);

    // Replacing an item replaces every field, groups included.
    let romeo2 = RosterItem {
        name: Some("R.".to_owned()),
        subscription: Subscription::To,
        ask: true,
        groups: strings(&["Montague"]),
        ..romeo.clone()
    };
    store.set_roster_item(user, domain, &romeo2).await.unwrap();
    let stored = store.roster_item(user, domain, "romeo@example.net");
    assert_eq!(stored.await.unwrap(), Some(romeo2.clone()));
    let romeo3 = RosterItem {
        name: None,
        groups: vec![],
        ..romeo2
    };
    store.set_roster_item(user, domain, &romeo3).await.unwrap();
    let stored = store.roster_item(user, domain, "romeo@example.net");
    assert_eq!(stored.await.unwrap(), Some(romeo3));

    assert!(store
        .remove_roster_item(user, domain, "romeo@example.net")
        .await
        .unwrap()
        .is_some());
    let stored = store.roster_item(user, domain, "romeo@example.net");
    assert_eq!(stored.await.unwrap(), None);
    assert_eq!(store.roster(user, domain).await.unwrap().1, vec![nurse]);

    // A removed contact can come back.
    store.set_roster_item(user, domain, &romeo).await.unwrap();
    let stored = store.roster_item(user, domain, "romeo@example.net");
    assert_eq!(stored.await.unwrap(), Some(romeo));

    for s in [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
    ] {
        assert_eq!(Subscription::from_str_opt(s.as_str()), Some(s));
    }
    assert_eq!(Subscription::from_str_opt("remove"), None);
}

async fn roster_version_increments_per_change_and_survives_reopen(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    let a = item("a@example.net", None, Subscription::None, &["x"]);
    let b = item("b@example.net", None, Subscription::None, &[]);
    assert_eq!(store.set_roster_item(user, domain, &a).await.unwrap(), 1);
    assert_eq!(store.set_roster_item(user, domain, &b).await.unwrap(), 2);
    assert_eq!(store.set_roster_item(user, domain, &a).await.unwrap(), 3);
    let removed = store.remove_roster_item(user, domain, "b@example.net");
    assert_eq!(removed.await.unwrap(), Some(4));
    assert_eq!(
        store.roster(user, domain).await.unwrap(),
        (4, vec![a.clone()])
    );
    // Versions are per account.
    store.create_account("bob", domain, &[]).await.unwrap();
    assert_eq!(store.set_roster_item("bob", domain, &a).await.unwrap(), 1);
    store.close().await;

    let store = db.open().await;
    assert_eq!(store.roster(user, domain).await.unwrap(), (4, vec![a]));
    assert_eq!(store.set_roster_item(user, domain, &b).await.unwrap(), 5);
}

async fn roster_changes_since_returns_latest_sets_and_removals_in_version_order(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    // Nothing ever changed: version 0 is current, anything newer is unknown.
    let since = |v| store.roster_changes_since(user, domain, v);
    assert_eq!(since(0).await.unwrap(), Some((0, vec![])));
    assert_eq!(since(1).await.unwrap(), None);

    let a = item(
        "a@example.net",
        Some("A"),
        Subscription::Both,
        &["g1", "g2"],
    );
    let b = item("b@example.net", None, Subscription::From, &[]);
    let c = item("c@example.net", None, Subscription::To, &["g"]);
    let a2 = item("a@example.net", Some("A2"), Subscription::Both, &["g2"]);
    store.set_roster_item(user, domain, &a).await.unwrap(); // 1
    store.set_roster_item(user, domain, &b).await.unwrap(); // 2
    store.set_roster_item(user, domain, &c).await.unwrap(); // 3
    store
        .remove_roster_item(user, domain, "b@example.net")
        .await
        .unwrap(); // 4
    store.set_roster_item(user, domain, &a2).await.unwrap(); // 5

    let since = |v| store.roster_changes_since(user, domain, v);
    assert_eq!(
        since(0).await.unwrap(),
        Some((
            5,
            vec![
                (3, RosterChange::Set(c.clone())),
                (4, RosterChange::Removed("b@example.net".to_owned())),
                (5, RosterChange::Set(a2.clone())),
            ]
        ))
    );
    assert_eq!(
        since(3).await.unwrap(),
        Some((
            5,
            vec![
                (4, RosterChange::Removed("b@example.net".to_owned())),
                (5, RosterChange::Set(a2.clone())),
            ]
        ))
    );
    assert_eq!(since(5).await.unwrap(), Some((5, vec![])));
    assert_eq!(since(6).await.unwrap(), None);
    assert_eq!(since(u64::MAX).await.unwrap(), None);

    // Re-adding a removed contact replaces its removal.
    store.set_roster_item(user, domain, &b).await.unwrap(); // 6
    store
        .remove_roster_item(user, domain, "c@example.net")
        .await
        .unwrap(); // 7
    let since = |v| store.roster_changes_since(user, domain, v);
    assert_eq!(
        since(3).await.unwrap(),
        Some((
            7,
            vec![
                (5, RosterChange::Set(a2)),
                (6, RosterChange::Set(b)),
                (7, RosterChange::Removed("c@example.net".to_owned())),
            ]
        ))
    );
}

async fn removing_a_missing_roster_item_returns_none_and_keeps_the_version(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    let remove = |jid| store.remove_roster_item(user, domain, jid);
    assert_eq!(remove("nobody@example.net").await.unwrap(), None);
    assert_eq!(store.roster(user, domain).await.unwrap(), (0, vec![]));
    let a = item("a@example.net", None, Subscription::None, &[]);
    store.set_roster_item(user, domain, &a).await.unwrap();
    let remove = |jid| store.remove_roster_item(user, domain, jid);
    assert_eq!(remove("nobody@example.net").await.unwrap(), None);
    assert_eq!(remove("a@example.net").await.unwrap(), Some(2));
    assert_eq!(remove("a@example.net").await.unwrap(), None);
    assert_eq!(store.roster(user, domain).await.unwrap(), (2, vec![]));
    let changes = store.roster_changes_since(user, domain, 1).await.unwrap();
    assert_eq!(
        changes,
        Some((
            2,
            vec![(2, RosterChange::Removed("a@example.net".to_owned()))]
        ))
    );
}

async fn roster_item_count_follows_sets_and_removals(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    assert_eq!(store.roster_item_count(user, domain).await.unwrap(), 0);
    for i in 0..5 {
        let contact = item(
            &format!("c{i}@example.net"),
            None,
            Subscription::None,
            &["g"],
        );
        store.set_roster_item(user, domain, &contact).await.unwrap();
    }
    // Replacing is not adding.
    let again = item("c0@example.net", Some("zero"), Subscription::Both, &[]);
    store.set_roster_item(user, domain, &again).await.unwrap();
    assert_eq!(store.roster_item_count(user, domain).await.unwrap(), 5);
    store
        .remove_roster_item(user, domain, "c3@example.net")
        .await
        .unwrap();
    assert_eq!(store.roster_item_count(user, domain).await.unwrap(), 4);
    assert_eq!(store.roster_item_count("bob", domain).await.unwrap(), 0);
}

async fn subscription_requests_are_one_per_contact_in_arrival_order(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    let add = |from, xml| store.add_subscription_request(user, domain, from, xml);
    add("zed@example.net", "<presence type='subscribe' id='1'/>")
        .await
        .unwrap();
    add("amy@example.net", "<presence type='subscribe' id='2'/>")
        .await
        .unwrap();
    add("mia@example.net", "<presence type='subscribe' id='3'/>")
        .await
        .unwrap();
    // A repeated request replaces the stored stanza and keeps its place.
    add("zed@example.net", "<presence type='subscribe' id='4'/>")
        .await
        .unwrap();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        store.subscription_requests(user, domain).await.unwrap(),
        pairs(&[
            ("zed@example.net", "<presence type='subscribe' id='4'/>"),
            ("amy@example.net", "<presence type='subscribe' id='2'/>"),
            ("mia@example.net", "<presence type='subscribe' id='3'/>"),
        ])
    );
    let remove = |from| store.remove_subscription_request(user, domain, from);
    assert!(remove("amy@example.net").await.unwrap());
    assert!(!remove("amy@example.net").await.unwrap());
    assert!(!remove("nobody@example.net").await.unwrap());
    let add = |from, xml| store.add_subscription_request(user, domain, from, xml);
    add("amy@example.net", "<presence type='subscribe' id='5'/>")
        .await
        .unwrap();
    assert_eq!(
        store.subscription_requests(user, domain).await.unwrap(),
        pairs(&[
            ("zed@example.net", "<presence type='subscribe' id='4'/>"),
            ("mia@example.net", "<presence type='subscribe' id='3'/>"),
            ("amy@example.net", "<presence type='subscribe' id='5'/>"),
        ])
    );
}

async fn offline_messages_keep_arrival_order_and_survive_reopen(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    assert_eq!(store.offline_messages(user, domain).await.unwrap(), vec![]);
    for i in 0..5 {
        let xml = format!("<message id='m{i}'><body>héllo {i}</body></message>");
        let outcome = store.store_offline(user, domain, &xml, 1_700_000_000_000 + i, 100);
        assert_eq!(outcome.await.unwrap(), OfflineOutcome::Stored);
    }
    assert_eq!(store.offline_count(user, domain).await.unwrap(), 5);
    store.close().await;

    let store = db.open().await;
    let messages = store.offline_messages(user, domain).await.unwrap();
    let bodies: Vec<(&str, i64)> = messages
        .iter()
        .map(|m| (m.stanza_xml.as_str(), m.stored_at_ms))
        .collect();
    assert_eq!(
        bodies,
        vec![
            (
                "<message id='m0'><body>héllo 0</body></message>",
                1_700_000_000_000
            ),
            (
                "<message id='m1'><body>héllo 1</body></message>",
                1_700_000_000_001
            ),
            (
                "<message id='m2'><body>héllo 2</body></message>",
                1_700_000_000_002
            ),
            (
                "<message id='m3'><body>héllo 3</body></message>",
                1_700_000_000_003
            ),
            (
                "<message id='m4'><body>héllo 4</body></message>",
                1_700_000_000_004
            ),
        ]
    );
    assert!(messages.windows(2).all(|w| w[0].id < w[1].id));

    // Delivered through the third; a message arriving meanwhile stays.
    let late = store.store_offline(user, domain, "<message id='late'/>", 7, 100);
    assert_eq!(late.await.unwrap(), OfflineOutcome::Stored);
    let deleted = store.delete_offline_through(user, domain, messages[2].id);
    assert_eq!(deleted.await.unwrap(), 3);
    let left = store.offline_messages(user, domain).await.unwrap();
    assert_eq!(&left[..2], &messages[3..]);
    assert_eq!(left[2].stanza_xml, "<message id='late'/>");
    assert!(left[2].id > messages[4].id);
    let deleted = store.delete_offline_through(user, domain, messages[2].id);
    assert_eq!(deleted.await.unwrap(), 0);
    let deleted = store.delete_offline_through(user, domain, i64::MAX);
    assert_eq!(deleted.await.unwrap(), 3);
    assert_eq!(store.offline_count(user, domain).await.unwrap(), 0);

    // Ids are not reused once the newest message is gone.
    let again = store.store_offline(user, domain, "<message id='again'/>", 8, 100);
    assert_eq!(again.await.unwrap(), OfflineOutcome::Stored);
    let again = store.offline_messages(user, domain).await.unwrap();
    assert!(again[0].id > left[2].id);
}

async fn offline_limit_is_enforced_exactly(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    store.create_account("bob", domain, &[]).await.unwrap();
    for i in 0..3 {
        let xml = format!("<m{i}/>");
        let outcome = store.store_offline(user, domain, &xml, i, 3);
        assert_eq!(outcome.await.unwrap(), OfflineOutcome::Stored);
    }
    let full = store.store_offline(user, domain, "<m3/>", 3, 3);
    assert_eq!(full.await.unwrap(), OfflineOutcome::QueueFull);
    assert_eq!(store.offline_count(user, domain).await.unwrap(), 3);
    // The limit is per account.
    let bob = store.store_offline("bob", domain, "<b/>", 0, 3);
    assert_eq!(bob.await.unwrap(), OfflineOutcome::Stored);
    // Delivering makes room again.
    let first: Vec<OfflineMessage> = store.offline_messages(user, domain).await.unwrap();
    store
        .delete_offline_through(user, domain, first[0].id)
        .await
        .unwrap();
    let room = store.store_offline(user, domain, "<m4/>", 4, 3);
    assert_eq!(room.await.unwrap(), OfflineOutcome::Stored);
    let zero = store.store_offline("bob", domain, "<b/>", 0, 0);
    assert_eq!(zero.await.unwrap(), OfflineOutcome::QueueFull);
    let xml: Vec<String> = store
        .offline_messages(user, domain)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.stanza_xml)
        .collect();
    assert_eq!(xml, strings(&["<m1/>", "<m2/>", "<m4/>"]));
}

async fn twenty_concurrent_offline_stores_against_a_limit_of_ten_store_exactly_ten(db: TestDb) {
    let store = store_with_alice(&db).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let xml = format!("<message id='c{i}'/>");
                store.store_offline(ALICE.0, ALICE.1, &xml, i, 10).await
            })
        })
        .collect();
    let mut stored = 0;
    let mut full = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            OfflineOutcome::Stored => stored += 1,
            OfflineOutcome::QueueFull => full += 1,
        }
    }
    assert_eq!((stored, full), (10, 10));
    assert_eq!(store.offline_count(ALICE.0, ALICE.1).await.unwrap(), 10);
}

async fn vcard_is_set_read_and_replaced(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    assert_eq!(store.vcard(user, domain).await.unwrap(), None);
    let first = "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>";
    store.set_vcard(user, domain, first).await.unwrap();
    assert_eq!(
        store.vcard(user, domain).await.unwrap().as_deref(),
        Some(first)
    );
    let second = "<vCard xmlns='vcard-temp'><FN>Alïce 🐇</FN></vCard>";
    store.set_vcard(user, domain, second).await.unwrap();
    assert_eq!(
        store.vcard(user, domain).await.unwrap().as_deref(),
        Some(second)
    );
    assert_eq!(store.vcard(user, "example.com").await.unwrap(), None);
}

async fn private_xml_is_set_read_and_replaced_per_qualified_name(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    let bookmarks = "{storage:bookmarks}storage";
    let prefs = "{storage:rosternotes}storage";
    assert_eq!(
        store.private_xml(user, domain, bookmarks).await.unwrap(),
        None
    );
    let xml1 = "<storage xmlns='storage:bookmarks'/>";
    let xml2 =
        "<storage xmlns='storage:bookmarks'><url name='ü' url='https://example.org'/></storage>";
    let notes = "<storage xmlns='storage:rosternotes'/>";
    store
        .set_private_xml(user, domain, bookmarks, xml1)
        .await
        .unwrap();
    store
        .set_private_xml(user, domain, prefs, notes)
        .await
        .unwrap();
    store
        .set_private_xml(user, domain, bookmarks, xml2)
        .await
        .unwrap();
    let get = |key| store.private_xml(user, domain, key);
    assert_eq!(get(bookmarks).await.unwrap().as_deref(), Some(xml2));
    assert_eq!(get(prefs).await.unwrap().as_deref(), Some(notes));
    assert_eq!(get("{storage:bookmarks}other").await.unwrap(), None);
}

async fn blocklist_reports_only_actual_changes(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    assert_eq!(
        store.blocklist(user, domain).await.unwrap(),
        Vec::<String>::new()
    );
    let added = store
        .block(
            user,
            domain,
            &strings(&["spam@example.net", "evil.example"]),
        )
        .await
        .unwrap();
    assert_eq!(added, strings(&["spam@example.net", "evil.example"]));
    // Already blocked, or repeated within one call: added once.
    let added = store
        .block(
            user,
            domain,
            &strings(&["evil.example", "troll@example.com", "troll@example.com"]),
        )
        .await
        .unwrap();
    assert_eq!(added, strings(&["troll@example.com"]));
    assert_eq!(
        store.blocklist(user, domain).await.unwrap(),
        strings(&["evil.example", "spam@example.net", "troll@example.com"])
    );
    let removed = store
        .unblock(
            user,
            domain,
            &strings(&["spam@example.net", "never@example.org"]),
        )
        .await
        .unwrap();
    assert_eq!(removed, strings(&["spam@example.net"]));
    assert_eq!(
        store.blocklist(user, domain).await.unwrap(),
        strings(&["evil.example", "troll@example.com"])
    );
    let removed = store.unblock_all(user, domain).await.unwrap();
    assert_eq!(removed, strings(&["evil.example", "troll@example.com"]));
    assert_eq!(
        store.unblock_all(user, domain).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.blocklist(user, domain).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.block(user, domain, &[]).await.unwrap(),
        Vec::<String>::new()
    );
}

async fn last_activity_is_set_read_and_replaced(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    assert_eq!(store.last_activity(user, domain).await.unwrap(), None);
    store
        .set_last_activity(user, domain, 1_700_000_000_123, "")
        .await
        .unwrap();
    assert_eq!(
        store.last_activity(user, domain).await.unwrap(),
        Some((1_700_000_000_123, String::new()))
    );
    store
        .set_last_activity(user, domain, 1_700_000_100_000, "Parti déjeuner 🍽")
        .await
        .unwrap();
    assert_eq!(
        store.last_activity(user, domain).await.unwrap(),
        Some((1_700_000_100_000, "Parti déjeuner 🍽".to_owned()))
    );
}

async fn writes_on_a_missing_account_fail_and_store_nothing(db: TestDb) {
    let store = db.open().await;
    let (user, domain) = ("ghost", "example.org");
    let contact = item("a@example.net", None, Subscription::None, &["g"]);
    fn failed<T: std::fmt::Debug>(result: Result<T, StoreError>) {
        assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    }
    failed(store.set_roster_item(user, domain, &contact).await);
    failed(
        store
            .remove_roster_item(user, domain, "a@example.net")
            .await,
    );
    failed(
        store
            .add_subscription_request(user, domain, "a@example.net", "<p/>")
            .await,
    );
    failed(store.store_offline(user, domain, "<m/>", 0, 10).await);
    failed(store.set_vcard(user, domain, "<vCard/>").await);
    failed(
        store
            .set_private_xml(user, domain, "{a}b", "<b xmlns='a'/>")
            .await,
    );
    failed(
        store
            .block(user, domain, &strings(&["x@example.net"]))
            .await,
    );
    failed(store.set_last_activity(user, domain, 1, "").await);

    assert_eq!(store.roster(user, domain).await.unwrap(), (0, vec![]));
    assert_eq!(
        store.subscription_requests(user, domain).await.unwrap(),
        vec![]
    );
    assert_eq!(store.offline_count(user, domain).await.unwrap(), 0);
    assert_eq!(store.vcard(user, domain).await.unwrap(), None);
    assert_eq!(store.private_xml(user, domain, "{a}b").await.unwrap(), None);
    assert_eq!(
        store.blocklist(user, domain).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.last_activity(user, domain).await.unwrap(), None);
    assert!(!store.account_exists(user, domain).await.unwrap());
}

/// Gives `user` a row in every table of the IM schema.
async fn fill_account(store: &Store, user: &str, domain: &str) {
    let contact = item(
        "a@example.net",
        Some("A"),
        Subscription::Both,
        &["g1", "g2"],
    );
    let gone = item("b@example.net", None, Subscription::None, &[]);
    store.set_roster_item(user, domain, &contact).await.unwrap();
    store.set_roster_item(user, domain, &gone).await.unwrap();
    store
        .remove_roster_item(user, domain, "b@example.net")
        .await
        .unwrap();
    store
        .add_subscription_request(user, domain, "c@example.net", "<presence/>")
        .await
        .unwrap();
    store
        .store_offline(user, domain, "<message/>", 1, 10)
        .await
        .unwrap();
    store.set_vcard(user, domain, "<vCard/>").await.unwrap();
    store
        .set_private_xml(user, domain, "{a}b", "<b xmlns='a'/>")
        .await
        .unwrap();
    store
        .block(user, domain, &strings(&["d@example.net"]))
        .await
        .unwrap();
    store
        .set_last_activity(user, domain, 5, "bye")
        .await
        .unwrap();
}

async fn deleting_an_account_deletes_all_of_its_data_and_only_its(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    store
        .create_account("bob", domain, &all_creds(1))
        .await
        .unwrap();
    fill_account(&store, user, domain).await;
    fill_account(&store, "bob", domain).await;
    // Every table but `accounts` itself, so a table added later is checked too.
    let tables: BTreeSet<String> = db
        .columns()
        .await
        .into_iter()
        .map(|(table, _)| table)
        .filter(|table| table != "accounts")
        .collect();
    assert!(tables.contains("roster_tombstones"), "{tables:?}");
    for table in &tables {
        if table != "scram_credentials" {
            assert!(
                db.rows_of(table, user, domain).await > 0,
                "{table} unfilled"
            );
        }
    }
    let bob_before: Vec<i64> = {
        let mut counts = Vec::new();
        for table in &tables {
            counts.push(db.rows_of(table, "bob", domain).await);
        }
        counts
    };

    assert!(store.delete_account(user, domain).await.unwrap());
    for table in &tables {
        assert_eq!(
            db.rows_of(table, user, domain).await,
            0,
            "{table} kept data"
        );
        let bob = db.rows_of(table, "bob", domain).await;
        let before = bob_before[tables.iter().position(|t| t == table).unwrap()];
        assert_eq!(bob, before, "{table} lost bob's data");
    }

    // A new account of the same name starts empty.
    store.create_account(user, domain, &[]).await.unwrap();
    assert_eq!(store.roster(user, domain).await.unwrap(), (0, vec![]));
    let changes = store.roster_changes_since(user, domain, 0).await.unwrap();
    assert_eq!(changes, Some((0, vec![])));
    assert_eq!(store.offline_count(user, domain).await.unwrap(), 0);
    assert_eq!(
        store.blocklist(user, domain).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.last_activity(user, domain).await.unwrap(), None);
    assert_eq!(
        store.vcard("bob", domain).await.unwrap().as_deref(),
        Some("<vCard/>")
    );
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
        assert!(sqlite_columns.contains(&("roster_groups".into(), "group_name".into())));
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

async fn exported_accounts_imported_again_are_identical(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    store
        .set_credentials(user, domain, &all_creds(1))
        .await
        .unwrap();
    store
        .create_account("bob", "example.com", &all_creds(2))
        .await
        .unwrap();
    fill_account(&store, user, domain).await;
    fill_account(&store, "bob", "example.com").await;
    store
        .store_offline(user, domain, "<message id='2'/>", 7, 10)
        .await
        .unwrap();
    let exported = store.export_accounts().await.unwrap();
    assert_eq!(exported.len(), 2);
    let alice = &exported[1];
    assert_eq!((alice.user.as_str(), alice.domain.as_str()), ALICE);
    assert_eq!(alice.credentials.len(), 3);
    assert_eq!(alice.roster[0].groups, strings(&["g1", "g2"]));
    assert_eq!(
        alice.offline_messages,
        vec![
            ("<message/>".to_string(), 1),
            ("<message id='2'/>".to_string(), 7)
        ]
    );
    assert_eq!(
        alice.private_xml,
        vec![("{a}b".to_string(), "<b xmlns='a'/>".to_string())]
    );

    for account in &exported {
        store
            .delete_account(&account.user, &account.domain)
            .await
            .unwrap();
    }
    store.import_accounts(&exported).await.unwrap();
    assert_eq!(store.export_accounts().await.unwrap(), exported);
    // The imported roster is a first version that later changes build on.
    let (version, _) = store.roster(user, domain).await.unwrap();
    assert_eq!(version, 1);
    let next = store
        .set_roster_item(
            user,
            domain,
            &item("e@example.net", None, Subscription::None, &[]),
        )
        .await
        .unwrap();
    assert_eq!(next, 2);
}

async fn import_with_one_existing_account_stores_nothing(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    store
        .set_credentials(user, domain, &all_creds(1))
        .await
        .unwrap();
    let newcomer = AccountData {
        user: "carol".into(),
        domain: domain.into(),
        credentials: all_creds(3),
        roster: vec![item("a@example.net", None, Subscription::To, &[])],
        offline_messages: vec![("<message/>".into(), 1)],
        vcard: Some("<vCard/>".into()),
        ..AccountData::default()
    };
    let clash = AccountData {
        user: user.into(),
        domain: domain.into(),
        ..AccountData::default()
    };
    let outcome = store.import_accounts(&[newcomer, clash]).await;
    assert!(
        matches!(outcome, Err(StoreError::AccountExists)),
        "{outcome:?}"
    );
    assert!(!store.account_exists("carol", domain).await.unwrap());
    for table in [
        "roster_items",
        "offline_messages",
        "vcards",
        "scram_credentials",
    ] {
        assert_eq!(db.rows_of(table, "carol", domain).await, 0, "{table}");
    }
    assert_eq!(
        store
            .credentials(user, domain, ScramHash::Sha256)
            .await
            .unwrap(),
        Some(creds(ScramHash::Sha256, 1))
    );
}

/// Sixty sessions writing at once: SQLite serializes them behind its busy
/// timeout instead of failing with "database is locked".
async fn many_concurrent_writers_never_fail_with_a_locked_database(db: TestDb) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    let mut tasks = Vec::new();
    for n in 0..60 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..5 {
                let jid = format!("c{n}-{k}@example.net");
                store
                    .set_roster_item(user, domain, &item(&jid, None, Subscription::None, &[]))
                    .await
                    .expect("roster write");
                store
                    .store_offline(user, domain, &format!("<message id='{n}-{k}'/>"), 1, 10_000)
                    .await
                    .expect("offline write");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.roster_item_count(user, domain).await.unwrap(), 300);
    assert_eq!(store.offline_count(user, domain).await.unwrap(), 300);
    assert_eq!(store.roster(user, domain).await.unwrap().0, 300);
}

async fn concurrent_additions_never_pass_the_roster_limit_and_updates_at_the_limit_succeed(
    db: TestDb,
) {
    let store = store_with_alice(&db).await;
    let (user, domain) = ALICE;
    let mut tasks = Vec::new();
    for n in 0..30 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let contact = item(&format!("c{n}@example.net"), None, Subscription::None, &[]);
            store
                .set_roster_item_within(user, domain, &contact, 10)
                .await
                .expect("roster write")
        }));
    }
    let mut added = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            added += 1;
        }
    }
    assert_eq!(added, 10);
    assert_eq!(store.roster_item_count(user, domain).await.unwrap(), 10);
    let (version, items) = store.roster(user, domain).await.unwrap();
    // A refused addition leaves the version where it was.
    assert_eq!(version, 10);
    let renamed = item(&items[0].jid, Some("renamed"), Subscription::None, &[]);
    assert_eq!(
        store
            .set_roster_item_within(user, domain, &renamed, 10)
            .await
            .unwrap(),
        Some(11)
    );
}
