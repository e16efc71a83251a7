-- µPIB auditor state, schema version 1.
-- Amounts and counts are u64 in Rust and stored as INTEGER (i64); the backend refuses values
-- above i64::MAX instead of wrapping. Keys (ed25519 public keys, transaction ids) are BLOBs.

-- Scalar per-user state (SPEC §4): block sizes, trust model and scale, cumulative invalid count γ,
-- suspension, queue summary, block under verification, risk account and counters.
-- `version` is bumped by every write: a writer updates `WHERE user = ? AND version = ?`
-- (compare-and-swap), so two auditor instances can never both apply a change to the same user.
CREATE TABLE users (
    user                BLOB    PRIMARY KEY NOT NULL,
    version             INTEGER NOT NULL,
    initial_block_size  INTEGER NOT NULL,
    block_size          INTEGER NOT NULL,
    trust_model         INTEGER NOT NULL,
    trust_scale         INTEGER NOT NULL,
    invalid_total       INTEGER NOT NULL,
    suspended           INTEGER NOT NULL,
    queued_tokens       INTEGER NOT NULL,
    queued_transactions INTEGER NOT NULL,
    pending_block       INTEGER,
    next_seq            INTEGER NOT NULL,
    blocks_valid        INTEGER NOT NULL,
    blocks_invalid      INTEGER NOT NULL,
    misbehaviour_count  INTEGER NOT NULL,
    risk_total          TEXT    NOT NULL, -- i128 as decimal text: Σ realized risk in base units
    tokens_delivered    INTEGER NOT NULL,
    refunded_total      INTEGER NOT NULL
) WITHOUT ROWID;

-- Every transaction the auditor accepted or rejected, keyed by (user, per-user sequence).
-- The transaction id is indexed but not unique: in paper mode a replayed id is accepted.
CREATE TABLE transactions (
    user        BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    tx_id       BLOB    NOT NULL,
    vendor      BLOB    NOT NULL,
    status      INTEGER NOT NULL, -- 0 delivered, 1 waiting, 2 held, 3 rejected
    reject_code INTEGER,
    block_id    INTEGER,
    amount      INTEGER NOT NULL, -- Σ token values
    payout      INTEGER NOT NULL, -- vendor payout v·(1−ρ) accrued (0 until delivered)
    PRIMARY KEY (user, seq)
) WITHOUT ROWID;
CREATE INDEX transactions_by_id ON transactions (tx_id);
CREATE INDEX transactions_by_block ON transactions (block_id) WHERE block_id IS NOT NULL;
-- The user's queue: accepted (delivered or held) and not yet in a block.
CREATE INDEX transactions_queue ON transactions (user, seq) WHERE block_id IS NULL AND status IN (0, 2);

CREATE TABLE transaction_tokens (
    user     BLOB    NOT NULL,
    seq      INTEGER NOT NULL,
    position INTEGER NOT NULL,
    bank     BLOB    NOT NULL,
    batch_id INTEGER NOT NULL,
    serial   INTEGER NOT NULL,
    value    INTEGER NOT NULL,
    digest   BLOB    NOT NULL,
    PRIMARY KEY (user, seq, position)
) WITHOUT ROWID;

-- Tokens seen at intake (double spending within the auditor's view).
CREATE TABLE seen_tokens (
    bank     BLOB    NOT NULL,
    batch_id INTEGER NOT NULL,
    serial   INTEGER NOT NULL,
    PRIMARY KEY (bank, batch_id, serial)
) WITHOUT ROWID;

-- Blocks sent to the chain. `outcome` (JSON of the engine's BlockOutcome) is the
-- processed-decision marker: written in the same transaction as the payouts and refunds.
CREATE TABLE blocks (
    block_id    INTEGER PRIMARY KEY NOT NULL,
    user        BLOB    NOT NULL,
    waiting_seq INTEGER,
    token_count INTEGER NOT NULL,
    block_size  INTEGER NOT NULL, -- W_{i−1} when the block was formed
    outcome     TEXT
);
CREATE INDEX blocks_pending ON blocks (block_id) WHERE outcome IS NULL;

-- Vendor accounts: payouts accrue, settlement batches move them on-chain.
CREATE TABLE vendors (
    vendor          BLOB    PRIMARY KEY NOT NULL,
    accrued         INTEGER NOT NULL,
    settled         INTEGER NOT NULL,
    in_flight       INTEGER NOT NULL,
    double_sellings INTEGER NOT NULL
) WITHOUT ROWID;

-- Refunds owed to users (valid tokens of rejected waiting transactions).
CREATE TABLE user_refunds (
    user   BLOB    PRIMARY KEY NOT NULL,
    amount INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE misbehaviour (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind   INTEGER NOT NULL, -- 0 double spending, 1 double selling, 2 forged token
    user   BLOB    NOT NULL,
    vendor BLOB    NOT NULL,
    tx_id  BLOB    NOT NULL,
    tokens INTEGER NOT NULL
);

-- Settlement batches (idempotency key → items). status 0 in flight, 1 completed, 2 aborted.
CREATE TABLE settlements (
    key       TEXT    PRIMARY KEY NOT NULL,
    status    INTEGER NOT NULL,
    reference TEXT
) WITHOUT ROWID;
CREATE TABLE settlement_items (
    key    TEXT    NOT NULL,
    vendor BLOB    NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (key, vendor)
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT    PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('next_block_id', 1);
