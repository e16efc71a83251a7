-- µPIB auditor state on PostgreSQL, schema version 1: the same records as the SQLite store
-- (migrations/auditor/0001–0002), shared by several auditor instances.
--
-- Amounts and counts are u64 in Rust and stored as BIGINT; the backend refuses values above
-- i64::MAX with an out-of-range error instead of wrapping (as the SQLite store does), and the
-- CHECKs below refuse negative values. The realized risk is an i128, stored exactly as
-- NUMERIC(39, 0). Keys (ed25519 public keys, transaction ids) are 32-byte BYTEA.
--
-- Concurrency (READ COMMITTED): every invariant the engine relies on is enforced by a
-- conditional write or a key, never by a read: the user row is compare-and-swapped on `version`,
-- block ids are claimed on the `meta` counter row, a token is seen once (primary key), a block is
-- decided once (`outcome IS NULL`), vendor balances change by relative increments.

-- Scalar per-user state (SPEC §4). `version` is bumped by every write: a writer updates
-- `WHERE user_key = $1 AND version = $2` (compare-and-swap), so two auditor instances can never
-- both apply a change to the same user.
CREATE TABLE users (
    user_key            BYTEA    PRIMARY KEY CHECK (octet_length(user_key) = 32),
    version             BIGINT   NOT NULL CHECK (version >= 0),
    initial_block_size  BIGINT   NOT NULL CHECK (initial_block_size >= 0),
    block_size          BIGINT   NOT NULL CHECK (block_size >= 0),
    trust_model         SMALLINT NOT NULL,
    trust_scale         SMALLINT NOT NULL,
    invalid_total       BIGINT   NOT NULL CHECK (invalid_total >= 0),
    suspended           BOOLEAN  NOT NULL,
    queued_tokens       BIGINT   NOT NULL CHECK (queued_tokens >= 0),
    queued_transactions BIGINT   NOT NULL CHECK (queued_transactions >= 0),
    pending_block       BIGINT   CHECK (pending_block >= 0),
    next_seq            BIGINT   NOT NULL CHECK (next_seq >= 0),
    blocks_valid        BIGINT   NOT NULL CHECK (blocks_valid >= 0),
    blocks_invalid      BIGINT   NOT NULL CHECK (blocks_invalid >= 0),
    misbehaviour_count  BIGINT   NOT NULL CHECK (misbehaviour_count >= 0),
    risk_total          NUMERIC(39, 0) NOT NULL, -- Σ realized risk in base units (i128)
    tokens_delivered    BIGINT   NOT NULL CHECK (tokens_delivered >= 0),
    refunded_total      BIGINT   NOT NULL CHECK (refunded_total >= 0)
);

-- Every transaction the auditor accepted or rejected, keyed by (user, per-user sequence).
-- The transaction id is indexed but not unique: in paper mode a replayed id is accepted.
-- `submission` is the SHA-256 of the submitted bytes (idempotent intake).
CREATE TABLE transactions (
    user_key    BYTEA    NOT NULL,
    seq         BIGINT   NOT NULL CHECK (seq >= 0),
    tx_id       BYTEA    NOT NULL CHECK (octet_length(tx_id) = 32),
    vendor      BYTEA    NOT NULL CHECK (octet_length(vendor) = 32),
    status      SMALLINT NOT NULL, -- 0 delivered, 1 waiting, 2 held, 3 rejected
    reject_code SMALLINT,
    block_id    BIGINT   CHECK (block_id >= 0),
    amount      BIGINT   NOT NULL CHECK (amount >= 0), -- Σ token values
    payout      BIGINT   NOT NULL CHECK (payout >= 0), -- vendor payout v·(1−ρ) accrued
    submission  BYTEA    CHECK (octet_length(submission) = 32),
    PRIMARY KEY (user_key, seq)
);
CREATE INDEX transactions_by_id ON transactions (tx_id);
CREATE INDEX transactions_by_block ON transactions (block_id) WHERE block_id IS NOT NULL;
-- The user's queue: accepted (delivered or held) and not yet in a block.
CREATE INDEX transactions_queue ON transactions (user_key, seq)
    WHERE block_id IS NULL AND status IN (0, 2);

CREATE TABLE transaction_tokens (
    user_key BYTEA    NOT NULL,
    seq      BIGINT   NOT NULL,
    position INTEGER  NOT NULL CHECK (position >= 0),
    bank     BYTEA    NOT NULL CHECK (octet_length(bank) = 32),
    batch_id BIGINT   NOT NULL CHECK (batch_id >= 0),
    serial   BIGINT   NOT NULL CHECK (serial BETWEEN 0 AND 4294967295),
    value    BIGINT   NOT NULL CHECK (value >= 0),
    digest   BYTEA    NOT NULL CHECK (octet_length(digest) = 16),
    PRIMARY KEY (user_key, seq, position)
);

-- Tokens seen at intake (double spending within the auditor's view): a second insert of the same
-- token is a unique violation, so two instances can never both accept it.
CREATE TABLE seen_tokens (
    bank     BYTEA  NOT NULL,
    batch_id BIGINT NOT NULL,
    serial   BIGINT NOT NULL,
    PRIMARY KEY (bank, batch_id, serial)
);

-- Blocks sent to the chain. `outcome` (the engine's BlockOutcome as JSON text, byte for byte) is
-- the processed-decision marker, written once: `UPDATE … WHERE outcome IS NULL`.
CREATE TABLE blocks (
    block_id    BIGINT PRIMARY KEY CHECK (block_id >= 0),
    user_key    BYTEA  NOT NULL,
    waiting_seq BIGINT CHECK (waiting_seq >= 0),
    token_count BIGINT NOT NULL CHECK (token_count >= 0),
    block_size  BIGINT NOT NULL CHECK (block_size >= 0), -- W_{i−1} when the block was formed
    outcome     TEXT
);
CREATE INDEX blocks_pending ON blocks (block_id) WHERE outcome IS NULL;

-- Vendor accounts: payouts accrue (relative increments), settlement batches move them on-chain.
CREATE TABLE vendors (
    vendor          BYTEA  PRIMARY KEY CHECK (octet_length(vendor) = 32),
    accrued         BIGINT NOT NULL CHECK (accrued >= 0),
    settled         BIGINT NOT NULL CHECK (settled >= 0),
    in_flight       BIGINT NOT NULL CHECK (in_flight >= 0),
    double_sellings BIGINT NOT NULL CHECK (double_sellings >= 0)
);

-- Refunds owed to users (valid tokens of rejected waiting transactions).
CREATE TABLE user_refunds (
    user_key BYTEA  PRIMARY KEY CHECK (octet_length(user_key) = 32),
    amount   BIGINT NOT NULL CHECK (amount >= 0)
);

-- Misbehaviour records, oldest first by `id` (a surrogate: identity values are not rolled back,
-- so only their order means anything).
CREATE TABLE misbehaviour (
    id       BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind     SMALLINT NOT NULL, -- 0 double spending, 1 double selling, 2 forged token
    user_key BYTEA    NOT NULL,
    vendor   BYTEA    NOT NULL,
    tx_id    BYTEA    NOT NULL,
    tokens   BIGINT   NOT NULL CHECK (tokens >= 0)
);

-- Settlement batches (idempotency key → payout sequence number, items, the signed transaction).
-- status 0 in flight, 1 completed, 2 aborted.
CREATE TABLE settlements (
    key       TEXT     PRIMARY KEY,
    status    SMALLINT NOT NULL,
    reference TEXT,
    seq       BIGINT   NOT NULL CHECK (seq >= 0),
    signature TEXT,
    signed_tx BYTEA
);
CREATE INDEX settlements_open ON settlements (seq) WHERE status = 0;
CREATE TABLE settlement_items (
    key    TEXT   NOT NULL REFERENCES settlements (key),
    vendor BYTEA  NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    PRIMARY KEY (key, vendor)
);

-- Counters: `next_block_id` is claimed by compare-and-swap (`value = $n` → `value + 1`).
CREATE TABLE meta (
    key   TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('next_block_id', 1);
