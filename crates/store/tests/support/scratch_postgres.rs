//! A throwaway PostgreSQL database with a unique name, for the store tests and
//! the storage benchmark.

use std::hash::{BuildHasher, RandomState};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub struct ScratchDatabase {
    /// Where to connect to the new database.
    pub url: String,
    admin: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<random>` through the server at `admin`.
    pub async fn create(admin: &str, prefix: &str) -> Result<ScratchDatabase, sqlx::Error> {
        // RandomState is seeded randomly per instance: a unique name without a rand crate.
        let name = format!("{prefix}_{:016x}", RandomState::new().hash_one(0u8));
        let mut conn = PgConnection::connect(admin).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(ScratchDatabase {
            url: with_database(admin, &name),
            admin: admin.to_owned(),
            name,
        })
    }

    pub async fn drop(self) -> Result<(), sqlx::Error> {
        let mut conn = PgConnection::connect(&self.admin).await?;
        // FORCE: a failed run may leave pool connections behind.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await
    }
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
