//! SQLite [`Store`] (the default): WAL journal, `synchronous = FULL` (a committed step survives
//! power loss), numbered migrations from `migrations/auditor/`, schema version tracked in
//! `schema_migrations`. Every [`Store::apply`] and settlement call is one `BEGIN IMMEDIATE`
//! transaction.

use std::path::Path;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::model::*;
use super::{Store, StoreError};
use mupib_protocol::token::TokenDigest16;
use mupib_protocol::token::TokenId;
use mupib_protocol::token::TokenRef;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

/// The numbered migrations, in order. Append only: never edit a released migration.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    include_str!("../../../../migrations/auditor/0001_init.sql"),
)];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// A test hook called with the name of each step inside a write transaction (see
/// [`SqliteStore::set_step_hook`]).
pub type StepHook = Box<dyn FnMut(&'static str) + Send>;

/// SQLite-backed auditor state.
pub struct SqliteStore {
    conn: Connection,
    hook: Option<StepHook>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::OutOfRange(format!("{what} = {value} exceeds i64::MAX")))
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::OutOfRange(format!("{what} = {value} is negative")))
}

fn pubkey(bytes: Vec<u8>) -> Result<Pubkey, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::OutOfRange("public key is not 32 bytes".into()))?;
    Ok(Pubkey::new_from_array(array))
}

fn tx_id_bytes(id: &TransactionId) -> [u8; 32] {
    id.0
}

fn tx_id(bytes: Vec<u8>) -> Result<TransactionId, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::OutOfRange("transaction id is not 32 bytes".into()))?;
    Ok(TransactionId(array))
}

fn code(value: i64, what: &str) -> Result<u8, StoreError> {
    u8::try_from(value).map_err(|_| StoreError::OutOfRange(format!("{what} code {value}")))
}

/// A unique-constraint violation is a lost race, not a database failure.
fn conflict_or(error: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation => {
            StoreError::Conflict(what())
        }
        _ => StoreError::Sqlite(error),
    }
}

const USER_COLUMNS: &str =
    "user, version, initial_block_size, block_size, trust_model, trust_scale, \
    invalid_total, suspended, queued_tokens, queued_transactions, pending_block, next_seq, \
    blocks_valid, blocks_invalid, misbehaviour_count, risk_total, tokens_delivered, refunded_total";

const TX_COLUMNS: &str = "user, seq, tx_id, vendor, status, reject_code, block_id, amount, payout";

/// Raw block row: id, user, waiting seq, token count, block size, outcome.
type BlockRow = (i64, Vec<u8>, Option<i64>, i64, i64, Option<String>);

/// Raw misbehaviour row: kind, user, vendor, transaction id, tokens.
type MisbehaviourRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// Raw transaction row before its tokens are attached.
type TxRow = (
    Vec<u8>,
    i64,
    Vec<u8>,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

fn tx_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TxRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, sets WAL and `synchronous = FULL`, and runs
    /// pending migrations.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the file cannot be opened; [`StoreError::SchemaTooNew`] if it was
    /// written by a newer version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn, hook: None })
    }

    /// The schema version of the open database.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    /// Installs a hook called with the name of each step inside write transactions
    /// (`"begin"`, `"user"`, `"block"`, `"transactions"`, `"updates"`, `"tokens"`, `"decided"`,
    /// `"payouts"`, `"commit"`, and `"settlement:*"`). Used by the crash tests to abort the
    /// process at a chosen step; production code leaves it unset.
    #[doc(hidden)]
    pub fn set_step_hook(&mut self, hook: Option<StepHook>) {
        self.hook = hook;
    }

    /// Every row of every table, sorted, as text: two equal dumps mean equal states (crash tests).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    #[doc(hidden)]
    pub fn dump(&self) -> Result<String, StoreError> {
        let tables = [
            "users",
            "transactions",
            "transaction_tokens",
            "seen_tokens",
            "blocks",
            "vendors",
            "user_refunds",
            "misbehaviour",
            "settlements",
            "settlement_items",
            "meta",
            "schema_migrations",
        ];
        let mut out = String::new();
        for table in tables {
            let mut statement = self.conn.prepare(&format!("SELECT * FROM {table}"))?;
            let columns = statement.column_count();
            let mut rows: Vec<String> = statement
                .query_map([], |row| {
                    let mut line = String::new();
                    for index in 0..columns {
                        let value: rusqlite::types::Value = row.get(index)?;
                        line.push_str(&format!("{value:?}|"));
                    }
                    Ok(line)
                })?
                .collect::<Result<_, _>>()?;
            rows.sort();
            out.push_str(&format!("[{table}]\n"));
            for row in rows {
                out.push_str(&row);
                out.push('\n');
            }
        }
        Ok(out)
    }

    fn step(hook: &mut Option<StepHook>, name: &'static str) {
        if let Some(hook) = hook.as_mut() {
            hook(name);
        }
    }

    fn load_tokens(conn: &Connection, user: &[u8], seq: i64) -> Result<Vec<TokenRef>, StoreError> {
        let mut statement = conn.prepare_cached(
            "SELECT bank, batch_id, serial, value, digest FROM transaction_tokens \
             WHERE user = ?1 AND seq = ?2 ORDER BY position",
        )?;
        let rows = statement.query_map(params![user, seq], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        let mut tokens = Vec::new();
        for row in rows {
            let (bank, batch_id, serial, value, digest) = row?;
            let digest: TokenDigest16 = digest
                .try_into()
                .map_err(|_| StoreError::OutOfRange("token digest is not 16 bytes".into()))?;
            tokens.push(TokenRef {
                id: TokenId {
                    bank: pubkey(bank)?,
                    batch_id: to_u64(batch_id, "batch id")?,
                    serial: u32::try_from(serial)
                        .map_err(|_| StoreError::OutOfRange(format!("serial {serial}")))?,
                },
                value: to_u64(value, "token value")?,
                digest,
            });
        }
        Ok(tokens)
    }

    fn finish_tx(conn: &Connection, row: TxRow) -> Result<TransactionRecord, StoreError> {
        let (user, seq, id, vendor, status, reject, block_id, amount, payout) = row;
        let reject = reject.map(|r| code(r, "reject")).transpose()?;
        let status =
            TransactionStatus::from_code(code(status, "status")?, reject).ok_or_else(|| {
                StoreError::OutOfRange(format!("transaction status {status}/{reject:?}"))
            })?;
        let tokens = Self::load_tokens(conn, &user, seq)?;
        Ok(TransactionRecord {
            user: pubkey(user)?,
            seq: to_u64(seq, "seq")?,
            id: tx_id(id)?,
            vendor: pubkey(vendor)?,
            status,
            block_id: block_id.map(|b| to_u64(b, "block id")).transpose()?,
            amount: to_u64(amount, "amount")?,
            payout: to_u64(payout, "payout")?,
            tokens,
        })
    }

    fn query_txs(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows: Vec<TxRow> = statement
            .query_map(params, tx_row)?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|row| Self::finish_tx(&self.conn, row))
            .collect()
    }

    fn read_block(row: &rusqlite::Row<'_>) -> rusqlite::Result<BlockRow> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    }

    fn block_record(
        raw: (i64, Vec<u8>, Option<i64>, i64, i64, Option<String>),
    ) -> Result<BlockRecord, StoreError> {
        let (block_id, user, waiting, token_count, block_size, outcome) = raw;
        Ok(BlockRecord {
            block_id: to_u64(block_id, "block id")?,
            user: pubkey(user)?,
            waiting_seq: waiting.map(|w| to_u64(w, "waiting seq")).transpose()?,
            token_count: to_u64(token_count, "token count")?,
            block_size: to_u64(block_size, "block size")?,
            outcome,
        })
    }

    fn settlement_in(conn: &Connection, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        let head: Option<(i64, Option<String>)> = conn
            .query_row(
                "SELECT status, reference FROM settlements WHERE key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((status, reference)) = head else {
            return Ok(None);
        };
        let status = match status {
            0 => SettlementStatus::InFlight,
            1 => SettlementStatus::Completed,
            2 => SettlementStatus::Aborted,
            other => return Err(StoreError::OutOfRange(format!("settlement status {other}"))),
        };
        let mut statement = conn.prepare_cached(
            "SELECT vendor, amount FROM settlement_items WHERE key = ?1 ORDER BY vendor",
        )?;
        let raw: Vec<(Vec<u8>, i64)> = statement
            .query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut items = Vec::with_capacity(raw.len());
        for (vendor, amount) in raw {
            items.push(VendorPayout {
                vendor: pubkey(vendor)?,
                amount: to_u64(amount, "settlement amount")?,
            });
        }
        items.sort_by_key(|item| item.vendor);
        Ok(Some(SettlementBatch {
            key: key.to_owned(),
            status,
            items,
            reference,
        }))
    }

    fn vendor_in(conn: &Connection, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        let row: Option<(i64, i64, i64, i64)> = conn
            .query_row(
                "SELECT accrued, settled, in_flight, double_sellings FROM vendors WHERE vendor = ?1",
                params![vendor.to_bytes()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(match row {
            None => VendorAccount::default(),
            Some((accrued, settled, in_flight, flags)) => VendorAccount {
                accrued: to_u64(accrued, "accrued")?,
                settled: to_u64(settled, "settled")?,
                in_flight: to_u64(in_flight, "in flight")?,
                double_sellings: to_u64(flags, "double sellings")?,
            },
        })
    }

    /// Moves a batch from in-flight to `status` (1 completed, 2 aborted) in one transaction.
    fn close_settlement(
        &mut self,
        key: &str,
        reference: Option<&str>,
    ) -> Result<SettlementBatch, StoreError> {
        let completing = reference.is_some();
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let batch = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            match (batch.status, completing) {
                (SettlementStatus::Completed, true) | (SettlementStatus::Aborted, false) => {
                    return Ok(batch)
                }
                (SettlementStatus::Aborted, true) => {
                    return Err(StoreError::Settlement {
                        key: key.to_owned(),
                        reason: "was aborted; start a new batch with a new key".into(),
                    })
                }
                (SettlementStatus::Completed, false) => {
                    return Err(StoreError::Settlement {
                        key: key.to_owned(),
                        reason: "is completed (paid on-chain) and cannot be aborted".into(),
                    })
                }
                (SettlementStatus::InFlight, _) => {}
            }
            for item in &batch.items {
                let amount = to_i64(item.amount, "settlement amount")?;
                let sql = if completing {
                    "UPDATE vendors SET in_flight = in_flight - ?2, settled = settled + ?2 WHERE vendor = ?1"
                } else {
                    "UPDATE vendors SET in_flight = in_flight - ?2 WHERE vendor = ?1"
                };
                tx.execute(sql, params![item.vendor.to_bytes(), amount])?;
            }
            Self::step(&mut hook, "settlement:vendors");
            tx.execute(
                "UPDATE settlements SET status = ?2, reference = ?3 WHERE key = ?1",
                params![key, if completing { 1 } else { 2 }, reference],
            )?;
            let done = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(&mut hook, "commit");
            tx.commit()?;
            Ok(done)
        })();
        self.hook = hook;
        result
    }

    fn apply_in(
        tx: &rusqlite::Transaction<'_>,
        change: &ChangeSet,
        hook: &mut Option<StepHook>,
    ) -> Result<(), StoreError> {
        Self::step(hook, "begin");
        if let Some(write) = &change.user {
            let s = &write.state;
            let user = s.user.to_bytes();
            let values = params![
                user,
                to_i64(s.version, "version")?,
                to_i64(s.trust.initial_block_size, "W0")?,
                to_i64(s.trust.block_size, "W")?,
                i64::from(s.trust.model.index()),
                i64::from(scale_code(s.trust.scale)),
                to_i64(s.trust.invalid_total, "gamma")?,
                s.suspended,
                to_i64(s.queued_tokens, "queued tokens")?,
                to_i64(s.queued_transactions, "queued transactions")?,
                s.pending_block
                    .map(|b| to_i64(b, "pending block"))
                    .transpose()?,
                to_i64(s.next_seq, "next seq")?,
                to_i64(s.blocks_valid, "blocks valid")?,
                to_i64(s.blocks_invalid, "blocks invalid")?,
                to_i64(s.misbehaviour_count, "misbehaviour")?,
                s.risk_total.to_string(),
                to_i64(s.tokens_delivered, "tokens delivered")?,
                to_i64(s.refunded_total, "refunded")?,
            ];
            match write.expected_version {
                None => {
                    tx.execute(
                        &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
                        values,
                    )
                    .map_err(|e| conflict_or(e, || format!("user {} already exists", s.user)))?;
                }
                Some(expected) => {
                    let rows = tx.execute(
                        "UPDATE users SET version = ?2, initial_block_size = ?3, block_size = ?4, trust_model = ?5, \
                         trust_scale = ?6, invalid_total = ?7, suspended = ?8, queued_tokens = ?9, \
                         queued_transactions = ?10, pending_block = ?11, next_seq = ?12, blocks_valid = ?13, \
                         blocks_invalid = ?14, misbehaviour_count = ?15, risk_total = ?16, tokens_delivered = ?17, \
                         refunded_total = ?18 WHERE user = ?1 AND version = ?19",
                        rusqlite::params_from_iter(
                            values.iter().copied().chain(std::iter::once(&to_i64(expected, "version")? as &dyn rusqlite::ToSql)),
                        ),
                    )?;
                    if rows != 1 {
                        return Err(StoreError::Conflict(format!(
                            "user {} is not at version {expected}",
                            s.user
                        )));
                    }
                }
            }
        }
        Self::step(hook, "user");
        if let Some(claim) = change.block_id_claim {
            let next = to_i64(claim, "block id")?;
            let rows = tx.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'next_block_id' AND value = ?1",
                params![next],
            )?;
            if rows != 1 {
                return Err(StoreError::Conflict(format!(
                    "block id {claim} already claimed"
                )));
            }
        }
        if let Some(block) = &change.new_block {
            tx.execute(
                "INSERT INTO blocks (block_id, user, waiting_seq, token_count, block_size, outcome) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    to_i64(block.block_id, "block id")?,
                    block.user.to_bytes(),
                    block.waiting_seq.map(|w| to_i64(w, "waiting seq")).transpose()?,
                    to_i64(block.token_count, "token count")?,
                    to_i64(block.block_size, "block size")?,
                    block.outcome,
                ],
            )
            .map_err(|e| conflict_or(e, || format!("block {} exists", block.block_id)))?;
        }
        Self::step(hook, "block");
        for record in &change.new_transactions {
            let (status, reject) = record.status.code();
            let user = record.user.to_bytes();
            let seq = to_i64(record.seq, "seq")?;
            tx.prepare_cached(&format!(
                "INSERT INTO transactions ({TX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                user,
                seq,
                tx_id_bytes(&record.id),
                record.vendor.to_bytes(),
                status,
                reject,
                record.block_id.map(|b| to_i64(b, "block id")).transpose()?,
                to_i64(record.amount, "amount")?,
                to_i64(record.payout, "payout")?,
            ])
            .map_err(|e| conflict_or(e, || format!("transaction {}#{} exists", record.user, record.seq)))?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO transaction_tokens (user, seq, position, bank, batch_id, serial, value, digest) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (position, token) in record.tokens.iter().enumerate() {
                insert.execute(params![
                    user,
                    seq,
                    i64::try_from(position)
                        .map_err(|_| StoreError::OutOfRange("position".into()))?,
                    token.id.bank.to_bytes(),
                    to_i64(token.id.batch_id, "batch id")?,
                    i64::from(token.id.serial),
                    to_i64(token.value, "token value")?,
                    token.digest,
                ])?;
            }
        }
        Self::step(hook, "transactions");
        for update in &change.transaction_updates {
            let (status, reject) = update.status.code();
            let rows = tx
                .prepare_cached(
                    "UPDATE transactions SET status = ?3, reject_code = ?4, block_id = ?5, payout = ?6 \
                     WHERE user = ?1 AND seq = ?2",
                )?
                .execute(params![
                    update.user.to_bytes(),
                    to_i64(update.seq, "seq")?,
                    status,
                    reject,
                    update.block_id.map(|b| to_i64(b, "block id")).transpose()?,
                    to_i64(update.payout, "payout")?,
                ])?;
            if rows != 1 {
                return Err(StoreError::NotFound(format!(
                    "transaction {}#{}",
                    update.user, update.seq
                )));
            }
        }
        Self::step(hook, "updates");
        for token in &change.seen_tokens {
            tx.prepare_cached(
                "INSERT INTO seen_tokens (bank, batch_id, serial) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                token.bank.to_bytes(),
                to_i64(token.batch_id, "batch id")?,
                i64::from(token.serial)
            ])
            .map_err(|e| conflict_or(e, || format!("token {token:?} already seen")))?;
        }
        for token in &change.released_tokens {
            tx.prepare_cached(
                "DELETE FROM seen_tokens WHERE bank = ?1 AND batch_id = ?2 AND serial = ?3",
            )?
            .execute(params![
                token.bank.to_bytes(),
                to_i64(token.batch_id, "batch id")?,
                i64::from(token.serial)
            ])?;
        }
        Self::step(hook, "tokens");
        if let Some((block_id, outcome)) = &change.block_decided {
            let rows = tx.execute(
                "UPDATE blocks SET outcome = ?2 WHERE block_id = ?1 AND outcome IS NULL",
                params![to_i64(*block_id, "block id")?, outcome],
            )?;
            if rows != 1 {
                return Err(StoreError::Conflict(format!(
                    "block {block_id} is unknown or already decided"
                )));
            }
        }
        Self::step(hook, "decided");
        for credit in &change.vendor_credits {
            tx.prepare_cached(
                "INSERT INTO vendors (vendor, accrued, settled, in_flight, double_sellings) VALUES (?1, ?2, 0, 0, 0) \
                 ON CONFLICT (vendor) DO UPDATE SET accrued = accrued + excluded.accrued",
            )?
            .execute(params![credit.vendor.to_bytes(), to_i64(credit.amount, "payout")?])?;
        }
        for vendor in &change.vendor_flags {
            tx.prepare_cached(
                "INSERT INTO vendors (vendor, accrued, settled, in_flight, double_sellings) VALUES (?1, 0, 0, 0, 1) \
                 ON CONFLICT (vendor) DO UPDATE SET double_sellings = double_sellings + 1",
            )?
            .execute(params![vendor.to_bytes()])?;
        }
        Self::step(hook, "payouts");
        for (user, amount) in &change.user_refunds {
            tx.prepare_cached(
                "INSERT INTO user_refunds (user, amount) VALUES (?1, ?2) \
                 ON CONFLICT (user) DO UPDATE SET amount = amount + excluded.amount",
            )?
            .execute(params![user.to_bytes(), to_i64(*amount, "refund")?])?;
        }
        for record in &change.misbehaviour {
            tx.prepare_cached(
                "INSERT INTO misbehaviour (kind, user, vendor, tx_id, tokens) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                record.kind.code(),
                record.user.to_bytes(),
                record.vendor.to_bytes(),
                tx_id_bytes(&record.transaction_id),
                to_i64(record.tokens, "tokens")?,
            ])?;
        }
        Self::step(hook, "commit");
        Ok(())
    }
}

fn scale_code(scale: mupib_protocol::trust::TrustScale) -> u8 {
    match scale {
        mupib_protocol::trust::TrustScale::Initial => 0,
        mupib_protocol::trust::TrustScale::Previous => 1,
    }
}

fn scale_from(code: i64) -> Result<mupib_protocol::trust::TrustScale, StoreError> {
    match code {
        0 => Ok(mupib_protocol::trust::TrustScale::Initial),
        1 => Ok(mupib_protocol::trust::TrustScale::Previous),
        other => Err(StoreError::OutOfRange(format!("trust scale code {other}"))),
    }
}

fn model_from(code: i64) -> Result<mupib_protocol::trust::TrustModel, StoreError> {
    mupib_protocol::trust::TrustModel::ALL
        .into_iter()
        .find(|m| i64::from(m.index()) == code)
        .ok_or_else(|| StoreError::OutOfRange(format!("trust model code {code}")))
}

/// Applies the migrations above the database's version, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s', 'now'))",
            params![version],
        )?;
        tx.commit()?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE user = ?1"))?;
        let row = statement
            .query_row(params![user.to_bytes()], |r| {
                let mut ints = [0i64; 14];
                let indexes = [1usize, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 16, 17];
                for (slot, index) in ints.iter_mut().zip(indexes) {
                    *slot = r.get(index)?;
                }
                Ok((
                    ints,
                    r.get::<_, bool>(7)?,
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, String>(15)?,
                ))
            })
            .optional()?;
        let Some((ints, suspended, pending, risk)) = row else {
            return Ok(None);
        };
        let [version, w0, w, model, scale, gamma, queued_tokens, queued_txs, next_seq, valid, invalid, misbehaviour, delivered, refunded] =
            ints;
        Ok(Some(UserState {
            user: *user,
            version: to_u64(version, "version")?,
            trust: mupib_protocol::trust::TrustState {
                model: model_from(model)?,
                scale: scale_from(scale)?,
                initial_block_size: to_u64(w0, "W0")?,
                block_size: to_u64(w, "W")?,
                invalid_total: to_u64(gamma, "gamma")?,
            },
            suspended,
            queued_tokens: to_u64(queued_tokens, "queued tokens")?,
            queued_transactions: to_u64(queued_txs, "queued transactions")?,
            pending_block: pending.map(|p| to_u64(p, "pending block")).transpose()?,
            next_seq: to_u64(next_seq, "next seq")?,
            blocks_valid: to_u64(valid, "blocks valid")?,
            blocks_invalid: to_u64(invalid, "blocks invalid")?,
            misbehaviour_count: to_u64(misbehaviour, "misbehaviour")?,
            risk_total: risk
                .parse()
                .map_err(|_| StoreError::OutOfRange(format!("risk total {risk:?}")))?,
            tokens_delivered: to_u64(delivered, "tokens delivered")?,
            refunded_total: to_u64(refunded, "refunded")?,
        }))
    }

    fn token_seen(&self, token: &TokenId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM seen_tokens WHERE bank = ?1 AND batch_id = ?2 AND serial = ?3",
            )?
            .exists(params![
                token.bank.to_bytes(),
                to_i64(token.batch_id, "batch id")?,
                i64::from(token.serial)
            ])?)
    }

    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        Ok(self
            .query_txs(
                &format!("SELECT {TX_COLUMNS} FROM transactions WHERE tx_id = ?1 ORDER BY seq, user LIMIT 1"),
                params![tx_id_bytes(id)],
            )?
            .into_iter()
            .next())
    }

    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        self.query_txs(
            &format!(
                "SELECT {TX_COLUMNS} FROM transactions WHERE user = ?1 AND block_id IS NULL AND status IN (0, 2) ORDER BY seq"
            ),
            params![user.to_bytes()],
        )
    }

    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        let id = to_i64(block_id, "block id")?;
        let raw = self
            .conn
            .prepare_cached(
                "SELECT block_id, user, waiting_seq, token_count, block_size, outcome FROM blocks WHERE block_id = ?1",
            )?
            .query_row(params![id], Self::read_block)
            .optional()?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let record = Self::block_record(raw)?;
        let txs = self.query_txs(
            &format!("SELECT {TX_COLUMNS} FROM transactions WHERE block_id = ?1 ORDER BY seq"),
            params![id],
        )?;
        Ok(Some((record, txs)))
    }

    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT block_id, user, waiting_seq, token_count, block_size, outcome FROM blocks \
             WHERE outcome IS NULL ORDER BY block_id",
        )?;
        let raw: Vec<_> = statement
            .query_map([], Self::read_block)?
            .collect::<Result<_, _>>()?;
        raw.into_iter().map(Self::block_record).collect()
    }

    fn next_block_id(&self) -> Result<u64, StoreError> {
        let value: i64 = self.conn.query_row(
            "SELECT value FROM meta WHERE key = 'next_block_id'",
            [],
            |r| r.get(0),
        )?;
        to_u64(value, "next block id")
    }

    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            Self::apply_in(&tx, change, &mut hook)?;
            tx.commit()?;
            Ok(())
        })();
        self.hook = hook;
        result
    }

    /// One `BEGIN IMMEDIATE … COMMIT` around every change set of the group: with
    /// `synchronous = FULL` the group costs one fsync. Each change set runs the same checked
    /// statements as [`Store::apply`] and sees the earlier ones' writes (same connection); any
    /// failure rolls the whole group back. Test-hook steps: each change set's steps, then
    /// `"group:next"` between change sets and `"group:commit"` before the commit.
    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (index, change) in changes.iter().enumerate() {
                if index > 0 {
                    Self::step(&mut hook, "group:next");
                }
                Self::apply_in(&tx, change, &mut hook)?;
            }
            Self::step(&mut hook, "group:commit");
            tx.commit()?;
            Ok(())
        })();
        self.hook = hook;
        result
    }

    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        Self::vendor_in(&self.conn, vendor)
    }

    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        let amount: Option<i64> = self
            .conn
            .query_row(
                "SELECT amount FROM user_refunds WHERE user = ?1",
                params![user.to_bytes()],
                |r| r.get(0),
            )
            .optional()?;
        to_u64(amount.unwrap_or(0), "refund")
    }

    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT kind, user, vendor, tx_id, tokens FROM misbehaviour ORDER BY id",
        )?;
        let raw: Vec<MisbehaviourRow> = statement
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        raw.into_iter()
            .map(|(kind, user, vendor, id, tokens)| {
                Ok(MisbehaviourRecord {
                    kind: MisbehaviourKind::from_code(code(kind, "misbehaviour")?).ok_or_else(
                        || StoreError::OutOfRange(format!("misbehaviour kind {kind}")),
                    )?,
                    user: pubkey(user)?,
                    vendor: pubkey(vendor)?,
                    transaction_id: tx_id(id)?,
                    tokens: to_u64(tokens, "tokens")?,
                })
            })
            .collect()
    }

    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT vendor, accrued - settled - in_flight FROM vendors \
             WHERE accrued - settled - in_flight > 0 ORDER BY vendor",
        )?;
        let raw: Vec<(Vec<u8>, i64)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = raw
            .into_iter()
            .map(|(vendor, amount)| {
                Ok(VendorPayout {
                    vendor: pubkey(vendor)?,
                    amount: to_u64(amount, "settleable")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|item| item.vendor);
        Ok(out)
    }

    fn begin_settlement(
        &mut self,
        key: &str,
        items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        let items = super::normalize_items(key, items)?;
        let mut hook = self.hook.take();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(existing) = Self::settlement_in(&tx, key)? {
                return super::same_batch(&existing, &items);
            }
            for item in &items {
                let account = Self::vendor_in(&tx, &item.vendor)?;
                super::check_settleable(key, item, &account)?;
            }
            tx.execute(
                "INSERT INTO settlements (key, status, reference) VALUES (?1, 0, NULL)",
                params![key],
            )?;
            for item in &items {
                let amount = to_i64(item.amount, "settlement amount")?;
                tx.execute(
                    "INSERT INTO settlement_items (key, vendor, amount) VALUES (?1, ?2, ?3)",
                    params![key, item.vendor.to_bytes(), amount],
                )?;
                tx.execute(
                    "UPDATE vendors SET in_flight = in_flight + ?2 WHERE vendor = ?1",
                    params![item.vendor.to_bytes(), amount],
                )?;
            }
            Self::step(&mut hook, "settlement:begin");
            let batch = Self::settlement_in(&tx, key)?
                .ok_or_else(|| StoreError::NotFound(format!("settlement {key}")))?;
            Self::step(&mut hook, "commit");
            tx.commit()?;
            Ok(batch)
        })();
        self.hook = hook;
        result
    }

    fn complete_settlement(
        &mut self,
        key: &str,
        reference: &str,
    ) -> Result<SettlementBatch, StoreError> {
        self.close_settlement(key, Some(reference))
    }

    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError> {
        self.close_settlement(key, None)
    }

    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        Self::settlement_in(&self.conn, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_database_uses_wal_and_full_synchronous_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("a.db")).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
            [],
        )
        .unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::SchemaTooNew {
                found: 99,
                supported: SCHEMA_VERSION
            })
        ));
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (index, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i64::try_from(index).unwrap() + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
