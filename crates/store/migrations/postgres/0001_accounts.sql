-- Keep in step with ../sqlite: the test suite checks that both schemas have the same tables and columns.
-- Text keys use the "C" collation so that ordering and comparison are bytewise, as in SQLite,
-- whatever locale the database was created with.

CREATE TABLE accounts (
    domain     TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL,
    PRIMARY KEY (domain, username)
);

CREATE TABLE scram_credentials (
    domain     TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    -- ScramHash::name(): 'SHA-1', 'SHA-256', 'SHA-512'.
    hash       TEXT   NOT NULL,
    salt       BYTEA  NOT NULL,
    -- BIGINT rather than INTEGER: PostgreSQL's INTEGER cannot hold every u32.
    iterations BIGINT NOT NULL,
    stored_key BYTEA  NOT NULL,
    server_key BYTEA  NOT NULL,
    PRIMARY KEY (domain, username, hash),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
