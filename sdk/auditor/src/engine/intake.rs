//! Intake (paper §4.2 steps 1–2, Fig. 1 messages 3–5): the delivery rule, and the checks beyond
//! the paper — double selling, double spending, forged tokens, suspended users.

use mupib_protocol::block::BlockSubmission;
use mupib_protocol::reject::RejectCode;
use mupib_protocol::token::{TokenId, TokenRef};
use mupib_protocol::trust::TrustUpdate;

use super::{checked_inc, count, misbehaviour, sum_values, update_trust, Auditor};
use crate::error::EngineError;
use crate::outcome::{EngineVerdict, IntakeOutcome, TransactionSummary};
use crate::store::{
    ChangeSet, MisbehaviourKind, Store, TransactionRecord, TransactionStatus, UserState,
};

impl<S: Store> Auditor<S> {
    /// Receives a verified transaction (message 3) and answers it (messages 4/5), applying the
    /// delivery rule:
    ///
    /// 1. intake checks (not in paper mode): a transaction id already seen → reject
    ///    `DoubleSelling` and flag the vendor (the user's trust is not touched: a vendor can
    ///    replay a user's signed transaction without the user); a suspended user → reject
    ///    `UserSuspended`; a token already seen, or twice in the transaction → reject
    ///    `DoubleSpending`, β = those tokens count in eq. 7 at once;
    /// 2. while the user's block is under verification the transaction is held (verdict
    ///    `Wait`) and decided when that block's decisions are applied, against the updated W:
    ///    the auditor never delivers on a trust it is about to revise;
    /// 3. queued tokens + this transaction's < W → `Deliver`, the vendor accrues ⌊amount·(1−ρ)⌋;
    /// 4. otherwise the queue and this transaction form a block (whole transactions, so the block
    ///    exceeds W by less than one transaction) and this transaction waits (`Wait`).
    ///
    /// # Errors
    /// [`EngineError::EmptyTransaction`]; store, trust and arithmetic errors (nothing written).
    pub fn intake(&mut self, tx: &TransactionSummary) -> Result<IntakeOutcome, EngineError> {
        if tx.tokens.is_empty() {
            return Err(EngineError::EmptyTransaction(tx.id));
        }
        if let Some(existing) = self.resubmitted(tx)? {
            return self.resubmission(existing);
        }
        let amount = sum_values(&tx.tokens)?;
        let token_count = count(tx.tokens.len())?;
        let (mut state, expected, seq) = self.begin_step(&tx.user)?;
        let mut change = ChangeSet::default();

        if !self.config.paper_mode && self.store.transaction_by_id(&tx.id)?.is_some() {
            change.vendor_flags.push(tx.vendor);
            change
                .misbehaviour
                .push(misbehaviour(MisbehaviourKind::DoubleSelling, tx, 0));
            return self.reject(
                state,
                expected,
                change,
                tx,
                seq,
                amount,
                RejectCode::DoubleSelling,
                None,
                None,
            );
        }
        if state.suspended {
            return self.reject(
                state,
                expected,
                change,
                tx,
                seq,
                amount,
                RejectCode::UserSuspended,
                None,
                None,
            );
        }
        if !self.config.paper_mode {
            let (offending, first_offending) = self.offending_tokens(&tx.tokens)?;
            if offending > 0 {
                change.misbehaviour.push(misbehaviour(
                    MisbehaviourKind::DoubleSpending,
                    tx,
                    offending,
                ));
                let (update, block) = self.penalize(&mut state, offending, &mut change)?;
                let mut outcome = self.reject(
                    state,
                    expected,
                    change,
                    tx,
                    seq,
                    amount,
                    RejectCode::DoubleSpending,
                    Some(update),
                    block,
                )?;
                outcome.offending_token = first_offending;
                return Ok(outcome);
            }
            change.seen_tokens.extend(tx.tokens.iter().map(|t| t.id));
        }

        let mut record = TransactionRecord {
            user: tx.user,
            seq,
            id: tx.id,
            vendor: tx.vendor,
            status: TransactionStatus::Held,
            block_id: None,
            amount,
            payout: 0,
            tokens: tx.tokens.clone(),
            submission: Some(tx.submission),
        };
        let mut block = None;
        let verdict;
        let queued_after = state
            .queued_tokens
            .checked_add(token_count)
            .ok_or(EngineError::Overflow("queued tokens"))?;
        if state.pending_block.is_some() {
            verdict = EngineVerdict::Wait;
            state.queued_tokens = queued_after;
            state.queued_transactions =
                checked_inc(state.queued_transactions, "queued transactions")?;
        } else if queued_after < state.trust.block_size {
            verdict = EngineVerdict::Deliver;
            record.status = TransactionStatus::Delivered;
            record.payout =
                self.deliver(&mut state, &mut change, tx.vendor, amount, token_count)?;
            state.queued_tokens = queued_after;
            state.queued_transactions =
                checked_inc(state.queued_transactions, "queued transactions")?;
        } else {
            verdict = EngineVerdict::Wait;
            record.status = TransactionStatus::Waiting;
            let queue = self.store.queue(&tx.user)?;
            let submission =
                self.form_block(&mut state, &mut change, &queue, Some(&record), Some(seq))?;
            record.block_id = Some(submission.block_id);
            block = Some(submission);
        }
        let payout = record.payout;
        change.new_transactions.push(record);
        let user = self.commit_user(state, expected, change)?;
        Ok(IntakeOutcome {
            transaction_id: tx.id,
            seq,
            verdict,
            payout,
            block,
            trust_update: None,
            offending_token: None,
            user,
            resubmission: false,
        })
    }

    /// Records a transaction the verification layer rejected because the bank signature of the
    /// tokens `forged` failed: the transaction is stored as rejected and, outside paper mode,
    /// the forged tokens count as invalid tokens in eq. 7 (β = `forged.len()`) and a
    /// misbehaviour record is written. In paper mode the rejection is stored without penalty.
    ///
    /// # Errors
    /// As [`Self::intake`].
    pub fn report_forgery(
        &mut self,
        tx: &TransactionSummary,
        forged: &[TokenId],
    ) -> Result<IntakeOutcome, EngineError> {
        if let Some(existing) = self.resubmitted(tx)? {
            return self.resubmission(existing);
        }
        let forged_tokens = count(forged.len())?;
        let amount = sum_values(&tx.tokens)?;
        let (mut state, expected, seq) = self.begin_step(&tx.user)?;
        let mut change = ChangeSet::default();
        let mut update = None;
        let mut block = None;
        if !self.config.paper_mode && forged_tokens > 0 {
            change.misbehaviour.push(misbehaviour(
                MisbehaviourKind::ForgedToken,
                tx,
                forged_tokens,
            ));
            let (trust, flushed) = self.penalize(&mut state, forged_tokens, &mut change)?;
            update = Some(trust);
            block = flushed;
        }
        let mut outcome = self.reject(
            state,
            expected,
            change,
            tx,
            seq,
            amount,
            RejectCode::ForgedToken,
            update,
            block,
        )?;
        outcome.offending_token = forged.first().copied();
        Ok(outcome)
    }

    /// Tokens of `tokens` already seen, or repeated within the transaction.
    fn offending_tokens(&self, tokens: &[TokenRef]) -> Result<(u64, Option<TokenId>), EngineError> {
        let mut offending: u64 = 0;
        let mut first = None;
        for (index, token) in tokens.iter().enumerate() {
            let repeated = tokens[..index].iter().any(|earlier| earlier.id == token.id);
            if repeated || self.store.token_seen(&token.id)? {
                offending = checked_inc(offending, "offending tokens")?;
                first = first.or(Some(token.id));
            }
        }
        Ok((offending, first))
    }

    /// Misbehaviour detected at intake: β = `invalid` counts in eq. 7 now. At W = 0 the user is
    /// suspended, and if delivered transactions are queued with no block under verification,
    /// they are flushed into a block (no waiting transaction) so that the chain pays for them.
    fn penalize(
        &self,
        state: &mut UserState,
        invalid: u64,
        change: &mut ChangeSet,
    ) -> Result<(TrustUpdate, Option<BlockSubmission>), EngineError> {
        let (update, now_suspended) = update_trust(state, invalid)?;
        state.misbehaviour_count = checked_inc(state.misbehaviour_count, "misbehaviour count")?;
        let mut flushed = None;
        if now_suspended && state.pending_block.is_none() && state.queued_transactions > 0 {
            let queue = self.store.queue(&state.user)?;
            flushed = Some(self.form_block(state, change, &queue, None, None)?);
        }
        Ok((update, flushed))
    }

    /// Stores a rejected transaction (no tokens kept, nothing paid) with the user's state.
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        state: UserState,
        expected: Option<u64>,
        mut change: ChangeSet,
        tx: &TransactionSummary,
        seq: u64,
        amount: u64,
        reason: RejectCode,
        trust_update: Option<TrustUpdate>,
        block: Option<BlockSubmission>,
    ) -> Result<IntakeOutcome, EngineError> {
        change.new_transactions.push(TransactionRecord {
            user: tx.user,
            seq,
            id: tx.id,
            vendor: tx.vendor,
            status: TransactionStatus::Rejected(reason),
            block_id: None,
            amount,
            payout: 0,
            tokens: Vec::new(),
            submission: Some(tx.submission),
        });
        let user = self.commit_user(state, expected, change)?;
        Ok(IntakeOutcome {
            transaction_id: tx.id,
            seq,
            verdict: EngineVerdict::Reject(reason),
            payout: 0,
            block,
            trust_update,
            offending_token: None,
            user,
            resubmission: false,
        })
    }
}
