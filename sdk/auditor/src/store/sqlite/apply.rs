//! Writing one [`ChangeSet`] inside an open SQLite transaction: the user row (inserted, or
//! compare-and-swapped on its version), the block id claim and the new block, transactions and
//! their tokens, seen and released tokens, the block decision, vendor credits and flags, user
//! refunds and misbehaviour records, with a test-hook step after each part.

use rusqlite::params;

use super::rows::{conflict_or, scale_code, to_i64, tx_id_bytes, TX_COLUMNS, USER_COLUMNS};
use super::{SqliteStore, StepHook};
use crate::store::model::*;
use crate::store::StoreError;

impl SqliteStore {
    pub(super) fn apply_in(
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
                "INSERT INTO transactions ({TX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
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
                record.submission.map(|digest| digest.to_vec()),
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
