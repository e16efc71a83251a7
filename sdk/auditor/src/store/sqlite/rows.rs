//! Rows of the SQLite store and their conversions: checked integer casts (SQLite stores
//! `i64`), keys and ids from blobs, the column lists, and the reads that rebuild transaction and
//! block records from their rows.

use rusqlite::{params, Connection, ErrorCode};

use super::SqliteStore;
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

pub(super) fn pubkey(bytes: Vec<u8>) -> Result<Pubkey, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::OutOfRange("public key is not 32 bytes".into()))?;
    Ok(Pubkey::new_from_array(array))
}

pub(super) fn tx_id_bytes(id: &TransactionId) -> [u8; 32] {
    id.0
}

pub(super) fn tx_id(bytes: Vec<u8>) -> Result<TransactionId, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::OutOfRange("transaction id is not 32 bytes".into()))?;
    Ok(TransactionId(array))
}

pub(super) fn code(value: i64, what: &str) -> Result<u8, StoreError> {
    u8::try_from(value).map_err(|_| StoreError::OutOfRange(format!("{what} code {value}")))
}

/// A unique-constraint violation is a lost race, not a database failure.
pub(super) fn conflict_or(error: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation => {
            StoreError::Conflict(what())
        }
        _ => StoreError::Sqlite(error),
    }
}

pub(super) const USER_COLUMNS: &str =
    "user, version, initial_block_size, block_size, trust_model, trust_scale, \
    invalid_total, suspended, queued_tokens, queued_transactions, pending_block, next_seq, \
    blocks_valid, blocks_invalid, misbehaviour_count, risk_total, tokens_delivered, refunded_total";

pub(super) const TX_COLUMNS: &str =
    "user, seq, tx_id, vendor, status, reject_code, block_id, amount, payout, submission";

/// Raw block row: id, user, waiting seq, token count, block size, outcome.
pub(super) type BlockRow = (i64, Vec<u8>, Option<i64>, i64, i64, Option<String>);

/// Raw misbehaviour row: kind, user, vendor, transaction id, tokens.
pub(super) type MisbehaviourRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// Raw transaction row before its tokens are attached.
pub(super) type TxRow = (
    Vec<u8>,
    i64,
    Vec<u8>,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    Option<Vec<u8>>,
);

pub(super) fn tx_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TxRow> {
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
        row.get(9)?,
    ))
}

pub(super) fn scale_code(scale: mupib_protocol::trust::TrustScale) -> u8 {
    match scale {
        mupib_protocol::trust::TrustScale::Initial => 0,
        mupib_protocol::trust::TrustScale::Previous => 1,
    }
}

pub(super) fn scale_from(code: i64) -> Result<mupib_protocol::trust::TrustScale, StoreError> {
    match code {
        0 => Ok(mupib_protocol::trust::TrustScale::Initial),
        1 => Ok(mupib_protocol::trust::TrustScale::Previous),
        other => Err(StoreError::OutOfRange(format!("trust scale code {other}"))),
    }
}

pub(super) fn model_from(code: i64) -> Result<mupib_protocol::trust::TrustModel, StoreError> {
    mupib_protocol::trust::TrustModel::ALL
        .into_iter()
        .find(|m| i64::from(m.index()) == code)
        .ok_or_else(|| StoreError::OutOfRange(format!("trust model code {code}")))
}

impl SqliteStore {
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

    pub(super) fn finish_tx(
        conn: &Connection,
        row: TxRow,
    ) -> Result<TransactionRecord, StoreError> {
        let (user, seq, id, vendor, status, reject, block_id, amount, payout, submission) = row;
        let submission = submission
            .map(|bytes| {
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| StoreError::OutOfRange("submission digest length".into()))
            })
            .transpose()?;
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
            submission,
        })
    }

    pub(super) fn query_txs(
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

    pub(super) fn read_block(row: &rusqlite::Row<'_>) -> rusqlite::Result<BlockRow> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    }

    pub(super) fn block_record(
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
}
