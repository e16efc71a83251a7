//! Writing one [`ChangeSet`] inside an open PostgreSQL transaction, in the SQLite store's order
//! and with its test-hook steps: the user row (inserted, or compare-and-swapped on its version),
//! the block id claim and the new block, transactions and their tokens, seen and released
//! tokens, the block decision, vendor credits and flags, user refunds and misbehaviour records.

use postgres::Transaction;

use super::pool::Sql;
use super::rows::{conflict_or, scale_code, to_i64, USER_COLUMNS};
use super::{PostgresStore, StepHook};
use crate::store::model::*;
use crate::store::StoreError;

/// The columns a user write binds, `$1 … $18` (the risk as exact decimal text).
const USER_VALUES: &str =
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, CAST($16::text AS NUMERIC(39, 0)), $17, $18";

impl PostgresStore {
    pub(super) fn apply_in(
        sql: &mut Sql<'_, Transaction<'_>>,
        change: &ChangeSet,
        hook: &mut Option<StepHook>,
    ) -> Result<(), StoreError> {
        Self::step(hook, "begin");
        if let Some(write) = &change.user {
            Self::write_user(sql, write)?;
        }
        Self::step(hook, "user");
        if let Some(claim) = change.block_id_claim {
            let next = to_i64(claim, "block id")?;
            let rows = sql.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'next_block_id' AND value = $1",
                &[&next],
            )?;
            if rows != 1 {
                return Err(StoreError::Conflict(format!(
                    "block id {claim} already claimed"
                )));
            }
        }
        if let Some(block) = &change.new_block {
            sql.execute(
                "INSERT INTO blocks (block_id, user_key, waiting_seq, token_count, block_size, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &to_i64(block.block_id, "block id")?,
                    &&block.user.to_bytes()[..],
                    &block.waiting_seq.map(|w| to_i64(w, "waiting seq")).transpose()?,
                    &to_i64(block.token_count, "token count")?,
                    &to_i64(block.block_size, "block size")?,
                    &block.outcome,
                ],
            )
            .map_err(|e| conflict_or(e, || format!("block {} exists", block.block_id)))?;
        }
        Self::step(hook, "block");
        for record in &change.new_transactions {
            Self::insert_transaction(sql, record)?;
        }
        Self::step(hook, "transactions");
        for update in &change.transaction_updates {
            let (status, reject) = update.status.code();
            let rows = sql.execute(
                "UPDATE transactions SET status = $3, reject_code = $4, block_id = $5, payout = $6 \
                 WHERE user_key = $1 AND seq = $2",
                &[
                    &&update.user.to_bytes()[..],
                    &to_i64(update.seq, "seq")?,
                    &i16::from(status),
                    &reject.map(i16::from),
                    &update.block_id.map(|b| to_i64(b, "block id")).transpose()?,
                    &to_i64(update.payout, "payout")?,
                ],
            )?;
            if rows != 1 {
                return Err(StoreError::NotFound(format!(
                    "transaction {}#{}",
                    update.user, update.seq
                )));
            }
        }
        Self::step(hook, "updates");
        for token in &change.seen_tokens {
            sql.execute(
                "INSERT INTO seen_tokens (bank, batch_id, serial) VALUES ($1, $2, $3)",
                &[
                    &&token.bank.to_bytes()[..],
                    &to_i64(token.batch_id, "batch id")?,
                    &i64::from(token.serial),
                ],
            )
            .map_err(|e| conflict_or(e, || format!("token {token:?} already seen")))?;
        }
        for token in &change.released_tokens {
            sql.execute(
                "DELETE FROM seen_tokens WHERE bank = $1 AND batch_id = $2 AND serial = $3",
                &[
                    &&token.bank.to_bytes()[..],
                    &to_i64(token.batch_id, "batch id")?,
                    &i64::from(token.serial),
                ],
            )?;
        }
        Self::step(hook, "tokens");
        if let Some((block_id, outcome)) = &change.block_decided {
            let rows = sql.execute(
                "UPDATE blocks SET outcome = $2 WHERE block_id = $1 AND outcome IS NULL",
                &[&to_i64(*block_id, "block id")?, outcome],
            )?;
            if rows != 1 {
                return Err(StoreError::Conflict(format!(
                    "block {block_id} is unknown or already decided"
                )));
            }
        }
        Self::step(hook, "decided");
        for credit in &change.vendor_credits {
            sql.execute(
                "INSERT INTO vendors (vendor, accrued, settled, in_flight, double_sellings) \
                 VALUES ($1, $2, 0, 0, 0) \
                 ON CONFLICT (vendor) DO UPDATE SET accrued = vendors.accrued + EXCLUDED.accrued",
                &[
                    &&credit.vendor.to_bytes()[..],
                    &to_i64(credit.amount, "payout")?,
                ],
            )?;
        }
        for vendor in &change.vendor_flags {
            sql.execute(
                "INSERT INTO vendors (vendor, accrued, settled, in_flight, double_sellings) \
                 VALUES ($1, 0, 0, 0, 1) \
                 ON CONFLICT (vendor) DO UPDATE SET double_sellings = vendors.double_sellings + 1",
                &[&&vendor.to_bytes()[..]],
            )?;
        }
        Self::step(hook, "payouts");
        for (user, amount) in &change.user_refunds {
            sql.execute(
                "INSERT INTO user_refunds (user_key, amount) VALUES ($1, $2) \
                 ON CONFLICT (user_key) DO UPDATE SET amount = user_refunds.amount + EXCLUDED.amount",
                &[&&user.to_bytes()[..], &to_i64(*amount, "refund")?],
            )?;
        }
        for record in &change.misbehaviour {
            sql.execute(
                "INSERT INTO misbehaviour (kind, user_key, vendor, tx_id, tokens) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &i16::from(record.kind.code()),
                    &&record.user.to_bytes()[..],
                    &&record.vendor.to_bytes()[..],
                    &&record.transaction_id.0[..],
                    &to_i64(record.tokens, "tokens")?,
                ],
            )?;
        }
        Self::step(hook, "commit");
        Ok(())
    }

    /// The user row: an insert that must not find the user, or a compare-and-swap on the
    /// version the engine read (zero rows: another writer got there first).
    fn write_user(sql: &mut Sql<'_, Transaction<'_>>, write: &UserWrite) -> Result<(), StoreError> {
        let s = &write.state;
        let user = s.user.to_bytes();
        let risk = s.risk_total.to_string();
        let version = to_i64(s.version, "version")?;
        let initial = to_i64(s.trust.initial_block_size, "W0")?;
        let block_size = to_i64(s.trust.block_size, "W")?;
        let model = i16::from(s.trust.model.index());
        let scale = scale_code(s.trust.scale);
        let gamma = to_i64(s.trust.invalid_total, "gamma")?;
        let queued_tokens = to_i64(s.queued_tokens, "queued tokens")?;
        let queued_transactions = to_i64(s.queued_transactions, "queued transactions")?;
        let pending = s
            .pending_block
            .map(|b| to_i64(b, "pending block"))
            .transpose()?;
        let next_seq = to_i64(s.next_seq, "next seq")?;
        let valid = to_i64(s.blocks_valid, "blocks valid")?;
        let invalid = to_i64(s.blocks_invalid, "blocks invalid")?;
        let misbehaviour = to_i64(s.misbehaviour_count, "misbehaviour")?;
        let delivered = to_i64(s.tokens_delivered, "tokens delivered")?;
        let refunded = to_i64(s.refunded_total, "refunded")?;
        let user_bytes: &[u8] = &user;
        let mut values: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
            &user_bytes,
            &version,
            &initial,
            &block_size,
            &model,
            &scale,
            &gamma,
            &s.suspended,
            &queued_tokens,
            &queued_transactions,
            &pending,
            &next_seq,
            &valid,
            &invalid,
            &misbehaviour,
            &risk,
            &delivered,
            &refunded,
        ];
        match write.expected_version {
            None => {
                sql.execute(
                    &format!("INSERT INTO users ({USER_COLUMNS_PLAIN}) VALUES ({USER_VALUES})"),
                    &values,
                )
                .map_err(|e| conflict_or(e, || format!("user {} already exists", s.user)))?;
            }
            Some(expected) => {
                let expected_i64 = to_i64(expected, "version")?;
                values.push(&expected_i64);
                let rows = sql.execute(
                    &format!(
                        "UPDATE users SET ({USER_COLUMNS_PLAIN}) = ROW({USER_VALUES}) \
                         WHERE user_key = $1 AND version = $19"
                    ),
                    &values,
                )?;
                if rows != 1 {
                    return Err(StoreError::Conflict(format!(
                        "user {} is not at version {expected}",
                        s.user
                    )));
                }
            }
        }
        Ok(())
    }

    fn insert_transaction(
        sql: &mut Sql<'_, Transaction<'_>>,
        record: &TransactionRecord,
    ) -> Result<(), StoreError> {
        let (status, reject) = record.status.code();
        let user = record.user.to_bytes();
        let seq = to_i64(record.seq, "seq")?;
        sql.execute(
            "INSERT INTO transactions (user_key, seq, tx_id, vendor, status, reject_code, block_id, \
             amount, payout, submission) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &&user[..],
                &seq,
                &&record.id.0[..],
                &&record.vendor.to_bytes()[..],
                &i16::from(status),
                &reject.map(i16::from),
                &record.block_id.map(|b| to_i64(b, "block id")).transpose()?,
                &to_i64(record.amount, "amount")?,
                &to_i64(record.payout, "payout")?,
                &record.submission.as_ref().map(|digest| &digest[..]),
            ],
        )
        .map_err(|e| {
            conflict_or(e, || {
                format!("transaction {}#{} exists", record.user, record.seq)
            })
        })?;
        for (position, token) in record.tokens.iter().enumerate() {
            sql.execute(
                "INSERT INTO transaction_tokens (user_key, seq, position, bank, batch_id, serial, \
                 value, digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &&user[..],
                    &seq,
                    &i32::try_from(position)
                        .map_err(|_| StoreError::OutOfRange("token position".into()))?,
                    &&token.id.bank.to_bytes()[..],
                    &to_i64(token.id.batch_id, "batch id")?,
                    &i64::from(token.id.serial),
                    &to_i64(token.value, "token value")?,
                    &&token.digest[..],
                ],
            )?;
        }
        Ok(())
    }
}

/// The user columns as written (the read list casts the risk to text).
const USER_COLUMNS_PLAIN: &str =
    "user_key, version, initial_block_size, block_size, trust_model, trust_scale, \
    invalid_total, suspended, queued_tokens, queued_transactions, pending_block, next_seq, \
    blocks_valid, blocks_invalid, misbehaviour_count, risk_total, tokens_delivered, refunded_total";

// The read list is the written one with the risk cast: keep them in step.
const _: () = assert!(USER_COLUMNS.len() == USER_COLUMNS_PLAIN.len() + "::text".len());
