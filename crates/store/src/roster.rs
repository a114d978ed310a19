use std::future::Future;

use sqlx::Row;

use crate::store::{count_from_db, on_pool};
use crate::{Store, StoreError};

/// The subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    /// The value of the `subscription` attribute, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The inverse of [`Subscription::as_str`]; `None` for any other string.
    pub fn from_str_opt(s: &str) -> Option<Subscription> {
        match s {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            _ => None,
        }
    }
}

/// One contact on a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID, already normalized by the caller.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Pending-out: we sent a subscription request that is not answered yet.
    pub ask: bool,
    /// Pre-approved (RFC 6121 §3.4).
    pub approved: bool,
    /// Kept in the order given.
    pub groups: Vec<String>,
}

/// The current roster version and the changes since some version, each with the
/// version it was made at.
pub type RosterChanges = (u64, Vec<(u64, RosterChange)>);

/// One entry of an incremental roster sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterChange {
    Set(RosterItem),
    /// The contact's bare JID.
    Removed(String),
}

/// Rosters with versioning (RFC 6121 §2.6) and pending inbound subscription requests.
///
/// Every roster change bumps the per-account version in the same transaction, and the
/// bump is the transaction's first statement: it takes SQLite's write lock up front and
/// serializes changes to one roster on PostgreSQL, so versions commit in order.
pub trait RosterStore {
    /// Current roster version (0 for an empty, never-changed roster) and all items, sorted
    /// bytewise by jid.
    fn roster(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<(u64, Vec<RosterItem>), StoreError>> + Send;

    fn roster_item(
        &self,
        user: &str,
        domain: &str,
        jid: &str,
    ) -> impl Future<Output = Result<Option<RosterItem>, StoreError>> + Send;

    /// Inserts or replaces one item; bumps and returns the roster version (one transaction).
    fn set_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Like [`RosterStore::set_roster_item`], but a new item is only added while the
    /// roster holds fewer than `limit` other items; `None` when it is full. Counted and
    /// written in one transaction, so concurrent additions cannot pass the limit.
    fn set_roster_item_within(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
        limit: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Removes one item; returns the new version, or `None` when there was no such item
    /// (the version is unchanged).
    fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        jid: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// The current version and the changes after `since` in version order, at most one per
    /// jid (its latest), each with the version it was made at (RFC 6121 §2.6.3 pushes carry
    /// it), removals included; `None` if `since` is newer than the current version, in
    /// which case the caller sends the full roster.
    fn roster_changes_since(
        &self,
        user: &str,
        domain: &str,
        since: u64,
    ) -> impl Future<Output = Result<Option<RosterChanges>, StoreError>> + Send;

    fn roster_item_count(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores an inbound subscription request from the bare JID `from` (RFC 6121 §3.1.3).
    /// A newer request from the same contact replaces the stanza but keeps its place.
    fn add_subscription_request(
        &self,
        user: &str,
        domain: &str,
        from: &str,
        stanza_xml: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `false` when there was no request from `from`.
    fn remove_subscription_request(
        &self,
        user: &str,
        domain: &str,
        from: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `(contact, stanza_xml)` of every unanswered request, in order of arrival.
    fn subscription_requests(
        &self,
        user: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}

/// One row of an item (or tombstone) joined with one of its groups. Every field is
/// optional because the queries are outer joins.
struct ItemRow {
    jid: Option<String>,
    name: Option<String>,
    /// `None` marks a tombstone.
    subscription: Option<String>,
    ask: Option<bool>,
    approved: Option<bool>,
    group: Option<String>,
}

/// Decodes rows selecting `jid, name, subscription, ask, approved, group_name`
/// (expanded per backend).
macro_rules! item_rows {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|row| {
                Ok(ItemRow {
                    jid: row.try_get("jid")?,
                    name: row.try_get("name")?,
                    subscription: row.try_get("subscription")?,
                    ask: row.try_get("ask")?,
                    approved: row.try_get("approved")?,
                    group: row.try_get("group_name")?,
                })
            })
            .collect::<Result<Vec<ItemRow>, sqlx::Error>>()?
    };
}

/// Bumps the roster version within the transaction `$tx` and evaluates to the new one
/// (as stored, an `i64`).
macro_rules! bump_version {
    ($tx:ident, $user:expr, $domain:expr) => {{
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO roster_versions (domain, username, version) VALUES ($1, $2, 1) \
             ON CONFLICT (domain, username) DO UPDATE SET version = roster_versions.version + 1 \
             RETURNING version",
        )
        .bind($domain)
        .bind($user)
        .fetch_one(&mut *$tx)
        .await?;
        version
    }};
}

/// Inserts or replaces one roster item row and its groups within the transaction
/// `$tx`, at roster version `$version` (expanded per backend).
macro_rules! write_item {
    ($tx:ident, $user:expr, $domain:expr, $item:expr, $version:expr) => {
        sqlx::query(
            "INSERT INTO roster_items \
                 (domain, username, jid, name, subscription, ask, approved, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (domain, username, jid) DO UPDATE SET name = excluded.name, \
                 subscription = excluded.subscription, ask = excluded.ask, \
                 approved = excluded.approved, version = excluded.version",
        )
        .bind($domain)
        .bind($user)
        .bind(&$item.jid)
        .bind($item.name.as_deref())
        .bind($item.subscription.as_str())
        .bind($item.ask)
        .bind($item.approved)
        .bind($version)
        .execute(&mut *$tx)
        .await?;
        sqlx::query("DELETE FROM roster_groups WHERE domain = $1 AND username = $2 AND jid = $3")
            .bind($domain)
            .bind($user)
            .bind(&$item.jid)
            .execute(&mut *$tx)
            .await?;
        for (ordinal, group) in (0i64..).zip(&$item.groups) {
            sqlx::query(
                "INSERT INTO roster_groups (domain, username, jid, ordinal, group_name) \
                     VALUES ($1, $2, $3, $4, $5)",
            )
            .bind($domain)
            .bind($user)
            .bind(&$item.jid)
            .bind(ordinal)
            .bind(group)
            .execute(&mut *$tx)
            .await?;
        }
    };
}
pub(crate) use write_item;

impl Store {
    async fn write_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
        limit: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // First, so concurrent writers to this roster queue here before counting.
            let version = bump_version!(tx, user, domain);
            if let Some(limit) = limit {
                let others: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM roster_items \
                     WHERE domain = $1 AND username = $2 AND jid <> $3",
                )
                .bind(domain)
                .bind(user)
                .bind(&item.jid)
                .fetch_one(&mut *tx)
                .await?;
                if count_from_db(others)? >= limit {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            write_item!(tx, user, domain, item, version);
            // The contact is back: its earlier removal is superseded by this change.
            sqlx::query(
                "DELETE FROM roster_tombstones WHERE domain = $1 AND username = $2 AND jid = $3",
            )
            .bind(domain)
            .bind(user)
            .bind(&item.jid)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            version_from_db(version).map(Some)
        })
    }
}

impl RosterStore for Store {
    async fn roster(&self, user: &str, domain: &str) -> Result<(u64, Vec<RosterItem>), StoreError> {
        // One statement, so the version and the items come from the same snapshot.
        let (version, rows) = on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT v.version AS roster_version, i.jid, i.name, i.subscription, i.ask, \
                 i.approved, g.group_name \
                 FROM roster_versions v \
                 LEFT JOIN roster_items i ON i.domain = v.domain AND i.username = v.username \
                 LEFT JOIN roster_groups g \
                 ON g.domain = i.domain AND g.username = i.username AND g.jid = i.jid \
                 WHERE v.domain = $1 AND v.username = $2 \
                 ORDER BY i.jid, g.ordinal",
            )
            .bind(domain)
            .bind(user)
            .fetch_all(pool)
            .await?;
            let version: Option<i64> = rows.first().map(|r| r.try_get("roster_version")).transpose()?;
            (version, item_rows!(rows))
        });
        let version = version.map_or(Ok(0), version_from_db)?;
        Ok((version, items_only(fold_rows(rows)?)?))
    }

    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        jid: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT i.jid, i.name, i.subscription, i.ask, i.approved, g.group_name \
                 FROM roster_items i \
                 LEFT JOIN roster_groups g \
                 ON g.domain = i.domain AND g.username = i.username AND g.jid = i.jid \
                 WHERE i.domain = $1 AND i.username = $2 AND i.jid = $3 \
                 ORDER BY g.ordinal",
            )
            .bind(domain)
            .bind(user)
            .bind(jid)
            .fetch_all(pool)
            .await?;
            item_rows!(rows)
        });
        Ok(items_only(fold_rows(rows)?)?.pop())
    }

    async fn set_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> Result<u64, StoreError> {
        self.write_roster_item(user, domain, item, None)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an unlimited roster write was refused".into()))
    }

    async fn set_roster_item_within(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
        limit: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.write_roster_item(user, domain, item, Some(limit))
            .await
    }

    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        jid: &str,
    ) -> Result<Option<u64>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Bumped before the delete, as in set_roster_item, so both lock in the same
            // order; rolled back when there is nothing to remove.
            let version = bump_version!(tx, user, domain);
            let removed = sqlx::query(
                "DELETE FROM roster_items WHERE domain = $1 AND username = $2 AND jid = $3",
            )
            .bind(domain)
            .bind(user)
            .bind(jid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            sqlx::query(
                "INSERT INTO roster_tombstones (domain, username, jid, version) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (domain, username, jid) DO UPDATE SET version = excluded.version",
            )
            .bind(domain)
            .bind(user)
            .bind(jid)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            version_from_db(version).map(Some)
        })
    }

    async fn roster_changes_since(
        &self,
        user: &str,
        domain: &str,
        since: u64,
    ) -> Result<Option<RosterChanges>, StoreError> {
        // Stored versions fit in i64, so a larger `since` is unknown.
        let Ok(since_db) = i64::try_from(since) else {
            return Ok(None);
        };
        // One statement, so the version and the changes come from the same snapshot. A jid
        // is either an item or a tombstone, and each version belongs to one change.
        let (version, rows) = on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT v.version AS roster_version, c.version AS change_version, c.jid, c.name, \
                 c.subscription, c.ask, c.approved, g.group_name \
                 FROM roster_versions v \
                 LEFT JOIN ( \
                     SELECT domain, username, jid, version, name, subscription, ask, approved \
                     FROM roster_items \
                     UNION ALL \
                     SELECT domain, username, jid, version, NULL, NULL, NULL, NULL \
                     FROM roster_tombstones \
                 ) c ON c.domain = v.domain AND c.username = v.username AND c.version > $3 \
                 LEFT JOIN roster_groups g \
                 ON g.domain = c.domain AND g.username = c.username AND g.jid = c.jid \
                 WHERE v.domain = $1 AND v.username = $2 \
                 ORDER BY c.version, g.ordinal",
            )
            .bind(domain)
            .bind(user)
            .bind(since_db)
            .fetch_all(pool)
            .await?;
            let version: Option<i64> = rows.first().map(|r| r.try_get("roster_version")).transpose()?;
            let change_versions = rows
                .iter()
                .map(|r| Ok((r.try_get("jid")?, r.try_get("change_version")?)))
                .collect::<Result<Vec<(Option<String>, Option<i64>)>, sqlx::Error>>()?;
            (version, (change_versions, item_rows!(rows)))
        });
        let (change_versions, rows) = rows;
        let version = version.map_or(Ok(0), version_from_db)?;
        if since > version {
            return Ok(None);
        }
        let versions: std::collections::HashMap<String, i64> = change_versions
            .into_iter()
            .filter_map(|(jid, version)| Some((jid?, version?)))
            .collect();
        let changes = fold_rows(rows)?
            .into_iter()
            .map(|change| {
                let jid = match &change {
                    RosterChange::Set(item) => &item.jid,
                    RosterChange::Removed(jid) => jid,
                };
                let version = versions.get(jid).copied().ok_or_else(|| {
                    StoreError::Corrupt(format!("roster change {jid:?} without a version"))
                })?;
                Ok((version_from_db(version)?, change))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((version, changes)))
    }

    async fn roster_item_count(&self, user: &str, domain: &str) -> Result<u64, StoreError> {
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM roster_items WHERE domain = $1 AND username = $2")
                .bind(domain)
                .bind(user)
                .fetch_one(pool)
                .await?
        });
        count_from_db(count)
    }

    async fn add_subscription_request(
        &self,
        user: &str,
        domain: &str,
        from: &str,
        stanza_xml: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO subscription_requests (domain, username, contact, stanza_xml) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (domain, username, contact) DO UPDATE SET stanza_xml = excluded.stanza_xml",
            )
            .bind(domain)
            .bind(user)
            .bind(from)
            .bind(stanza_xml)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    async fn remove_subscription_request(
        &self,
        user: &str,
        domain: &str,
        from: &str,
    ) -> Result<bool, StoreError> {
        let removed = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM subscription_requests \
                 WHERE domain = $1 AND username = $2 AND contact = $3",
            )
            .bind(domain)
            .bind(user)
            .bind(from)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(removed > 0)
    }

    async fn subscription_requests(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT contact, stanza_xml FROM subscription_requests \
                 WHERE domain = $1 AND username = $2 ORDER BY id",
            )
            .bind(domain)
            .bind(user)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("contact")?, row.try_get("stanza_xml")?)))
                .collect()
        })
    }
}

/// Folds rows, ordered so that each jid's rows are adjacent and its groups in order, into
/// one change per jid. Rows without a jid (an outer join that found nothing) are skipped.
fn fold_rows(rows: Vec<ItemRow>) -> Result<Vec<RosterChange>, StoreError> {
    let mut changes: Vec<RosterChange> = Vec::new();
    for row in rows {
        let Some(jid) = row.jid else { continue };
        if let Some(RosterChange::Set(item)) = changes.last_mut() {
            if item.jid == jid {
                item.groups.extend(row.group);
                continue;
            }
        }
        let Some(subscription) = row.subscription else {
            changes.push(RosterChange::Removed(jid));
            continue;
        };
        let subscription = Subscription::from_str_opt(&subscription).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown roster subscription {subscription:?}"))
        })?;
        let flag = |value: Option<bool>, column: &str| {
            value.ok_or_else(|| StoreError::Corrupt(format!("roster item without {column}")))
        };
        changes.push(RosterChange::Set(RosterItem {
            jid,
            name: row.name,
            subscription,
            ask: flag(row.ask, "ask")?,
            approved: flag(row.approved, "approved")?,
            groups: row.group.into_iter().collect(),
        }));
    }
    Ok(changes)
}

/// The items of `changes`, which come from a query on `roster_items` only.
fn items_only(changes: Vec<RosterChange>) -> Result<Vec<RosterItem>, StoreError> {
    changes
        .into_iter()
        .map(|change| match change {
            RosterChange::Set(item) => Ok(item),
            RosterChange::Removed(jid) => Err(StoreError::Corrupt(format!(
                "roster item {jid:?} without a subscription"
            ))),
        })
        .collect()
}

fn version_from_db(version: i64) -> Result<u64, StoreError> {
    u64::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("negative roster version {version}")))
}
