//! Rows of the PostgreSQL store and their conversions: checked integer casts (u64 values live in
//! `BIGINT`, refused above `i64::MAX` as in the SQLite store), keys and ids from `BYTEA`, the
//! i128 risk through exact `NUMERIC` text, the mapping of server errors to [`StoreError`], and
//! the reads that rebuild transaction and block records (a transaction and its tokens in one
//! statement, so one snapshot).

use postgres::error::SqlState;
use postgres::{GenericClient, Row};

use super::pool::Sql;
use crate::store::model::*;
use crate::store::StoreError;
use mupib_protocol::token::{TokenDigest16, TokenId, TokenRef};
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::OutOfRange(format!("{what} = {value} exceeds i64::MAX")))
}

pub(super) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::OutOfRange(format!("{what} = {value} is negative")))
}

pub(super) fn pubkey(bytes: &[u8]) -> Result<Pubkey, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::OutOfRange("public key is not 32 bytes".into()))?;
    Ok(Pubkey::new_from_array(array))
}

pub(super) fn tx_id(bytes: &[u8]) -> Result<TransactionId, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::OutOfRange("transaction id is not 32 bytes".into()))?;
    Ok(TransactionId(array))
}

pub(super) fn code(value: i16, what: &str) -> Result<u8, StoreError> {
    u8::try_from(value).map_err(|_| StoreError::OutOfRange(format!("{what} code {value}")))
}

pub(super) fn scale_code(scale: mupib_protocol::trust::TrustScale) -> i16 {
    match scale {
        mupib_protocol::trust::TrustScale::Initial => 0,
        mupib_protocol::trust::TrustScale::Previous => 1,
    }
}

pub(super) fn scale_from(code: i16) -> Result<mupib_protocol::trust::TrustScale, StoreError> {
    match code {
        0 => Ok(mupib_protocol::trust::TrustScale::Initial),
        1 => Ok(mupib_protocol::trust::TrustScale::Previous),
        other => Err(StoreError::OutOfRange(format!("trust scale code {other}"))),
    }
}

pub(super) fn model_from(code: i16) -> Result<mupib_protocol::trust::TrustModel, StoreError> {
    mupib_protocol::trust::TrustModel::ALL
        .into_iter()
        .find(|m| i16::from(m.index()) == code)
        .ok_or_else(|| StoreError::OutOfRange(format!("trust model code {code}")))
}

/// The SQLSTATEs that mean "another writer won; re-read and re-run the step": a unique key taken
/// (23505), a serialization failure (40001), a deadlock the server broke by aborting this
/// transaction (40P01), a lock not obtained in time (55P03).
fn lost_race(code: &SqlState) -> bool {
    [
        SqlState::UNIQUE_VIOLATION,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
    ]
    .contains(code)
}

/// What the server said, without the connection parameters (the URL holds the password).
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// A lost race is a [`StoreError::Conflict`] (nothing was written; the caller re-runs the step),
/// an arithmetic overflow in the database an [`StoreError::OutOfRange`], anything else
/// [`StoreError::Server`].
impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        match error.code() {
            Some(code) if lost_race(code) => StoreError::Conflict(describe(&error)),
            Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => StoreError::OutOfRange(describe(&error)),
            _ => StoreError::Server(describe(&error)),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> Self {
        StoreError::Server(format!("no connection from the pool: {error}"))
    }
}

/// A unique-key violation of this statement is the named lost race; other errors as usual.
pub(super) fn conflict_or(error: postgres::Error, what: impl FnOnce() -> String) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(what())
    } else {
        StoreError::from(error)
    }
}

pub(super) const USER_COLUMNS: &str =
    "user_key, version, initial_block_size, block_size, trust_model, trust_scale, \
    invalid_total, suspended, queued_tokens, queued_transactions, pending_block, next_seq, \
    blocks_valid, blocks_invalid, misbehaviour_count, risk_total::text, tokens_delivered, refunded_total";

/// A transaction's columns and its tokens' (absent for a transaction without tokens), one row per
/// token, ordered so that a transaction's rows are consecutive and its tokens in position order.
const TX_WITH_TOKENS: &str =
    "SELECT t.user_key, t.seq, t.tx_id, t.vendor, t.status, t.reject_code, t.block_id, t.amount, \
     t.payout, t.submission, k.bank, k.batch_id, k.serial, k.value, k.digest \
     FROM transactions t LEFT JOIN transaction_tokens k ON k.user_key = t.user_key AND k.seq = t.seq";

/// The statement reading transactions with their tokens under `condition` (over `t`).
pub(super) fn transactions_where(condition: &str) -> String {
    format!("{TX_WITH_TOKENS} WHERE {condition} ORDER BY t.seq, t.user_key, k.position")
}

pub(super) fn user_state(user: &Pubkey, row: &Row) -> Result<UserState, StoreError> {
    let int = |index: usize, what: &str| -> Result<u64, StoreError> {
        to_u64(row.try_get::<_, i64>(index)?, what)
    };
    let risk: String = row.try_get(15)?;
    Ok(UserState {
        user: *user,
        version: int(1, "version")?,
        trust: mupib_protocol::trust::TrustState {
            model: model_from(row.try_get(4)?)?,
            scale: scale_from(row.try_get(5)?)?,
            initial_block_size: int(2, "W0")?,
            block_size: int(3, "W")?,
            invalid_total: int(6, "gamma")?,
        },
        suspended: row.try_get(7)?,
        queued_tokens: int(8, "queued tokens")?,
        queued_transactions: int(9, "queued transactions")?,
        pending_block: row
            .try_get::<_, Option<i64>>(10)?
            .map(|p| to_u64(p, "pending block"))
            .transpose()?,
        next_seq: int(11, "next seq")?,
        blocks_valid: int(12, "blocks valid")?,
        blocks_invalid: int(13, "blocks invalid")?,
        misbehaviour_count: int(14, "misbehaviour")?,
        risk_total: risk
            .parse()
            .map_err(|_| StoreError::OutOfRange(format!("risk total {risk:?}")))?,
        tokens_delivered: int(16, "tokens delivered")?,
        refunded_total: int(17, "refunded")?,
    })
}

fn transaction_head(row: &Row) -> Result<TransactionRecord, StoreError> {
    let status: i16 = row.try_get(4)?;
    let reject = row
        .try_get::<_, Option<i16>>(5)?
        .map(|r| code(r, "reject"))
        .transpose()?;
    let status = TransactionStatus::from_code(code(status, "status")?, reject)
        .ok_or_else(|| StoreError::OutOfRange(format!("transaction status {status}/{reject:?}")))?;
    let submission = row
        .try_get::<_, Option<&[u8]>>(9)?
        .map(|bytes| {
            <[u8; 32]>::try_from(bytes)
                .map_err(|_| StoreError::OutOfRange("submission digest length".into()))
        })
        .transpose()?;
    Ok(TransactionRecord {
        user: pubkey(row.try_get(0)?)?,
        seq: to_u64(row.try_get(1)?, "seq")?,
        id: tx_id(row.try_get(2)?)?,
        vendor: pubkey(row.try_get(3)?)?,
        status,
        block_id: row
            .try_get::<_, Option<i64>>(6)?
            .map(|b| to_u64(b, "block id"))
            .transpose()?,
        amount: to_u64(row.try_get(7)?, "amount")?,
        payout: to_u64(row.try_get(8)?, "payout")?,
        tokens: Vec::new(),
        submission,
    })
}

fn token(row: &Row) -> Result<Option<TokenRef>, StoreError> {
    let Some(bank) = row.try_get::<_, Option<&[u8]>>(10)? else {
        return Ok(None);
    };
    let serial: i64 = row.try_get(12)?;
    let digest: TokenDigest16 = row
        .try_get::<_, &[u8]>(14)?
        .try_into()
        .map_err(|_| StoreError::OutOfRange("token digest is not 16 bytes".into()))?;
    Ok(Some(TokenRef {
        id: TokenId {
            bank: pubkey(bank)?,
            batch_id: to_u64(row.try_get(11)?, "batch id")?,
            serial: u32::try_from(serial)
                .map_err(|_| StoreError::OutOfRange(format!("serial {serial}")))?,
        },
        value: to_u64(row.try_get(13)?, "token value")?,
        digest,
    }))
}

/// Runs a [`transactions_where`] statement and folds its rows into records.
pub(super) fn query_transactions<C: GenericClient>(
    sql: &mut Sql<'_, C>,
    statement: &str,
    params: &super::pool::Params<'_>,
) -> Result<Vec<TransactionRecord>, StoreError> {
    let mut records: Vec<TransactionRecord> = Vec::new();
    for row in sql.query(statement, params)? {
        let head = transaction_head(&row)?;
        let same = records
            .last()
            .is_some_and(|last| last.user == head.user && last.seq == head.seq);
        if !same {
            records.push(head);
        }
        if let (Some(token), Some(record)) = (token(&row)?, records.last_mut()) {
            record.tokens.push(token);
        }
    }
    Ok(records)
}

pub(super) const BLOCK_COLUMNS: &str =
    "block_id, user_key, waiting_seq, token_count, block_size, outcome";

pub(super) fn block_record(row: &Row) -> Result<BlockRecord, StoreError> {
    Ok(BlockRecord {
        block_id: to_u64(row.try_get(0)?, "block id")?,
        user: pubkey(row.try_get(1)?)?,
        waiting_seq: row
            .try_get::<_, Option<i64>>(2)?
            .map(|w| to_u64(w, "waiting seq"))
            .transpose()?,
        token_count: to_u64(row.try_get(3)?, "token count")?,
        block_size: to_u64(row.try_get(4)?, "block size")?,
        outcome: row.try_get(5)?,
    })
}
