-- Keep in step with ../postgres: the test suite checks that both schemas have the same tables and columns.
-- Rosters (RFC 6121), offline messages (XEP-0160), vCards (XEP-0054), private XML (XEP-0049),
-- blocking (XEP-0191) and last activity (XEP-0012). XML is stored as the server serialized it.
-- Every table cascades from `accounts`, so deleting an account deletes its data.

-- One row per roster that has ever changed; bumped in the same transaction as each change.
CREATE TABLE roster_versions (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    version  BIGINT NOT NULL,
    PRIMARY KEY (domain, username),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

CREATE TABLE roster_items (
    domain       TEXT NOT NULL,
    username     TEXT NOT NULL,
    jid          TEXT NOT NULL,
    name         TEXT,
    -- Subscription::as_str(): 'none', 'to', 'from', 'both'.
    subscription TEXT    NOT NULL,
    ask          BOOLEAN NOT NULL,
    approved     BOOLEAN NOT NULL,
    -- The roster version of the item's last change.
    version      BIGINT  NOT NULL,
    PRIMARY KEY (domain, username, jid),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
CREATE INDEX roster_items_by_version ON roster_items (domain, username, version);

CREATE TABLE roster_groups (
    domain     TEXT NOT NULL,
    username   TEXT NOT NULL,
    jid        TEXT NOT NULL,
    -- Position in the item's group list, from 0.
    ordinal    BIGINT NOT NULL,
    group_name TEXT   NOT NULL,
    PRIMARY KEY (domain, username, jid, ordinal),
    FOREIGN KEY (domain, username, jid) REFERENCES roster_items (domain, username, jid) ON DELETE CASCADE,
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

-- Removed items, for RFC 6121 §2.6 incremental sync; a jid is either here or in roster_items.
CREATE TABLE roster_tombstones (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    -- The roster version of the removal.
    version  BIGINT NOT NULL,
    PRIMARY KEY (domain, username, jid),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
CREATE INDEX roster_tombstones_by_version ON roster_tombstones (domain, username, version);

-- Unanswered inbound subscription requests (RFC 6121 §3.1.3); `id` orders them by arrival.
CREATE TABLE subscription_requests (
    -- AUTOINCREMENT: ids are never reused, even after the newest row is deleted.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    domain     TEXT NOT NULL,
    username   TEXT NOT NULL,
    contact    TEXT NOT NULL,
    stanza_xml TEXT NOT NULL,
    UNIQUE (domain, username, contact),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

CREATE TABLE offline_messages (
    -- AUTOINCREMENT: ids are never reused, even after the newest row is deleted.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    domain     TEXT NOT NULL,
    username   TEXT NOT NULL,
    stanza_xml TEXT   NOT NULL,
    -- Unix milliseconds.
    stored_at  BIGINT NOT NULL,
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
CREATE INDEX offline_messages_by_user ON offline_messages (domain, username, id);

CREATE TABLE vcards (
    domain    TEXT NOT NULL,
    username  TEXT NOT NULL,
    vcard_xml TEXT NOT NULL,
    PRIMARY KEY (domain, username),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

CREATE TABLE private_xml (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    -- The element's qualified name, "{namespace}name".
    qname    TEXT NOT NULL,
    xml      TEXT NOT NULL,
    PRIMARY KEY (domain, username, qname),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

CREATE TABLE blocklist (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    PRIMARY KEY (domain, username, jid),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

CREATE TABLE last_activity (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    -- Unix milliseconds.
    ended_at BIGINT NOT NULL,
    status   TEXT   NOT NULL,
    PRIMARY KEY (domain, username),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
