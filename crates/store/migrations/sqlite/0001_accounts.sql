-- Keep in step with ../postgres: the test suite checks that both schemas have the same tables and columns.

CREATE TABLE accounts (
    domain     TEXT   NOT NULL,
    username   TEXT   NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL,
    PRIMARY KEY (domain, username)
);

CREATE TABLE scram_credentials (
    domain     TEXT   NOT NULL,
    username   TEXT   NOT NULL,
    -- ScramHash::name(): 'SHA-1', 'SHA-256', 'SHA-512'.
    hash       TEXT   NOT NULL,
    salt       BLOB   NOT NULL,
    iterations BIGINT NOT NULL,
    stored_key BLOB   NOT NULL,
    server_key BLOB   NOT NULL,
    PRIMARY KEY (domain, username, hash),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
