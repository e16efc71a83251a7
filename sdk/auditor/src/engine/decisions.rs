//! The chain's decisions (paper §4.2 steps 3–4, Fig. 1 messages 7–9): a block's verdicts,
//! trust and W update (eq. 7), risk (eqs. 10–12), the balanced money flows, refunds, and the
//! transactions held while the block was under verification.

use mupib_protocol::block::{BlockSubmission, BlockVerification};
use mupib_protocol::decision::{Decision, DecisionCounts, TokenDecision};
use mupib_protocol::money::{Amount, BlockSettlement, DeliveryStatus, SettlementTransaction};
use mupib_protocol::reject::RejectCode;
use mupib_protocol::risk::{block_risk_scaled, TransactionCounts};

use super::queries::decode_outcome;
use super::{checked_inc, count, unqueue, update_trust, Auditor};
use crate::error::EngineError;
use crate::outcome::{BlockOutcome, ChainPayment, EngineVerdict, TransactionVerdict};
use crate::store::{
    ChangeSet, Store, TransactionRecord, TransactionStatus, TransactionUpdate, UserState,
};

impl<S: Store> Auditor<S> {
    /// Applies the chain's per-token decisions for a block (messages 7/8/9; §4.2 steps 3–4):
    ///
    /// - valid block: the waiting transaction is delivered and its vendor paid; W is unchanged;
    /// - any invalid token: the waiting transaction is rejected and its valid tokens refunded to
    ///   the user; eq. 7 with β = invalid tokens of the whole block gives the new W (0 suspends);
    ///   the auditor carries the loss on invalid tokens it already paid for;
    /// - risk (eqs. 10–12) and the balanced money flows of the block are recorded;
    /// - transactions held while the block was under verification are then decided in arrival
    ///   order with the new W (deliver, complete the next block, or — suspended — reject).
    ///
    /// Idempotent: applying a decided block again returns the stored outcome and changes nothing.
    ///
    /// # Errors
    /// [`EngineError::UnknownBlock`], [`EngineError::DecisionCount`], store, trust, money and risk
    /// errors (nothing written).
    pub fn apply_decisions(
        &mut self,
        block_id: u64,
        decisions: &[Decision],
    ) -> Result<BlockOutcome, EngineError> {
        self.apply_block_decisions(block_id, decisions, None)
    }

    /// [`Self::apply_decisions`] with what the chain paid for the block: the payment is
    /// reconciled with the block's valid tokens (Σ v); a difference is recorded in the outcome
    /// ([`BlockOutcome::payment`]) as an alarm for the operator, never absorbed silently.
    ///
    /// # Errors
    /// As [`Self::apply_decisions`].
    pub fn apply_verification(
        &mut self,
        block_id: u64,
        verification: &BlockVerification,
    ) -> Result<BlockOutcome, EngineError> {
        self.apply_block_decisions(
            block_id,
            &verification.decisions,
            Some(verification.amount_paid),
        )
    }

    fn apply_block_decisions(
        &mut self,
        block_id: u64,
        decisions: &[Decision],
        amount_paid: Option<u64>,
    ) -> Result<BlockOutcome, EngineError> {
        let (block, txs) = self
            .store
            .block(block_id)?
            .ok_or(EngineError::UnknownBlock(block_id))?;
        if let Some(stored) = &block.outcome {
            return decode_outcome(block_id, stored);
        }
        let given = count(decisions.len())?;
        if given != block.token_count {
            return Err(EngineError::DecisionCount {
                block_id,
                expected: block.token_count,
                got: given,
            });
        }
        let mut state = self.store.user(&block.user)?.ok_or_else(|| {
            EngineError::Corrupt(format!("block {block_id} of unknown user {}", block.user))
        })?;
        let expected = Some(state.version);
        if state.pending_block != Some(block_id) {
            return Err(EngineError::Corrupt(format!(
                "block {block_id} is not the block under verification of {}",
                block.user
            )));
        }
        let withholding = self.config.withholding;
        let mut change = ChangeSet::default();

        let Tally {
            decision_counts,
            settlement_txs,
            risk_counts,
            uniform_value,
            invalid: invalid_list,
        } = tally(block_id, block.waiting_seq, &txs, decisions)?;
        let settlement = BlockSettlement::settle(&settlement_txs, withholding)?;

        // Eq. 7 with β = the block's invalid tokens (a valid block keeps W).
        let (trust, _) = update_trust(&mut state, settlement.invalid_tokens)?;

        // The waiting transaction's final verdict; risk of what was delivered before.
        let mut verdicts = Vec::new();
        let mut delivered_risk: i128 = 0;
        for (tx, stx) in txs.iter().zip(&settlement_txs) {
            if stx.status == DeliveryStatus::Delivered {
                let loss = i128::from(stx.face_value.0) - i128::from(stx.valid_value.0);
                let margin = i128::from(tx.amount) - i128::from(tx.payout);
                delivered_risk = delivered_risk
                    .checked_add(loss - margin)
                    .ok_or(EngineError::Overflow("risk"))?;
                continue;
            }
            let (status, verdict, payout, refund) = if settlement.block_valid {
                let payout =
                    self.deliver(&mut state, &mut change, tx.vendor, tx.amount, stx.tokens)?;
                (
                    TransactionStatus::Delivered,
                    EngineVerdict::Deliver,
                    payout,
                    0,
                )
            } else {
                let refund = stx.valid_value.0;
                if refund > 0 {
                    change.user_refunds.push((tx.user, refund));
                    state.refunded_total = state
                        .refunded_total
                        .checked_add(refund)
                        .ok_or(EngineError::Overflow("refunds"))?;
                }
                let reason = RejectCode::InvalidBlock;
                (
                    TransactionStatus::Rejected(reason),
                    EngineVerdict::Reject(reason),
                    0,
                    refund,
                )
            };
            change.transaction_updates.push(TransactionUpdate {
                user: tx.user,
                seq: tx.seq,
                status,
                block_id: Some(block_id),
                payout,
            });
            verdicts.push(TransactionVerdict {
                transaction_id: tx.id,
                seq: tx.seq,
                vendor: tx.vendor,
                verdict,
                payout,
                refund,
            });
        }
        let risk = settlement.realized_risk();
        let paper_risk = match uniform_value {
            Some(value) => Some(block_risk_scaled(&risk_counts, value, withholding)?),
            None => None,
        };
        state.risk_total = state
            .risk_total
            .checked_add(risk)
            .ok_or(EngineError::Overflow("risk"))?;
        if settlement.block_valid {
            state.blocks_valid = checked_inc(state.blocks_valid, "blocks")?;
        } else {
            state.blocks_invalid = checked_inc(state.blocks_invalid, "blocks")?;
        }
        state.pending_block = None;

        let next_block = self.decide_held(&mut state, &mut change, &mut verdicts)?;
        let outcome = BlockOutcome {
            block_id,
            user: block.user,
            decisions: decision_counts,
            verdicts,
            settlement,
            trust,
            risk,
            delivered_risk,
            paper_risk,
            next_block,
            invalid: invalid_list,
            payment: amount_paid.map(|paid| ChainPayment {
                expected: settlement.escrow_paid.0,
                paid,
            }),
        };
        let encoded = serde_json::to_string(&outcome).map_err(|e| {
            EngineError::Corrupt(format!("cannot encode outcome of block {block_id}: {e}"))
        })?;
        change.block_decided = Some((block_id, encoded));
        self.commit_user(state, expected, change)?;
        Ok(outcome)
    }

    /// Decides the transactions held while the block was under verification, in arrival order,
    /// with the updated W; returns the block they complete, if any.
    fn decide_held(
        &self,
        state: &mut UserState,
        change: &mut ChangeSet,
        verdicts: &mut Vec<TransactionVerdict>,
    ) -> Result<Option<BlockSubmission>, EngineError> {
        if state.queued_transactions == 0 {
            return Ok(None);
        }
        let queue = self.store.queue(&state.user)?;
        let mut members: Vec<TransactionRecord> = Vec::with_capacity(queue.len());
        let mut queued: u64 = 0;
        let mut waiting_seq = None;
        for tx in queue {
            if waiting_seq.is_some() {
                break; // stays held for the block just formed
            }
            let tokens = count(tx.tokens.len())?;
            if tx.status != TransactionStatus::Held {
                // Already delivered (not normally queued while a block is pending): keep it.
                queued = queued
                    .checked_add(tokens)
                    .ok_or(EngineError::Overflow("queued tokens"))?;
                members.push(tx);
                continue;
            }
            let (status, verdict, payout) = if state.suspended {
                unqueue(state, tokens)?;
                if !self.config.paper_mode {
                    // Never sent to the chain: the user keeps these tokens.
                    change
                        .released_tokens
                        .extend(tx.tokens.iter().map(|t| t.id));
                }
                let reason = RejectCode::UserSuspended;
                change.transaction_updates.push(TransactionUpdate {
                    user: tx.user,
                    seq: tx.seq,
                    status: TransactionStatus::Rejected(reason),
                    block_id: None,
                    payout: 0,
                });
                (
                    TransactionStatus::Rejected(reason),
                    EngineVerdict::Reject(reason),
                    0,
                )
            } else {
                let after = queued
                    .checked_add(tokens)
                    .ok_or(EngineError::Overflow("queued tokens"))?;
                if after < state.trust.block_size {
                    let payout = self.deliver(state, change, tx.vendor, tx.amount, tokens)?;
                    queued = after;
                    (TransactionStatus::Delivered, EngineVerdict::Deliver, payout)
                } else {
                    waiting_seq = Some(tx.seq);
                    (TransactionStatus::Waiting, EngineVerdict::Wait, 0)
                }
            };
            verdicts.push(TransactionVerdict {
                transaction_id: tx.id,
                seq: tx.seq,
                vendor: tx.vendor,
                verdict,
                payout,
                refund: 0,
            });
            if let TransactionStatus::Rejected(_) = status {
                continue;
            }
            let mut member = tx;
            member.status = status;
            member.payout = payout;
            if status == TransactionStatus::Delivered {
                // Delivered now, stays queued until a block forms: record its new status.
                change.transaction_updates.push(TransactionUpdate {
                    user: member.user,
                    seq: member.seq,
                    status,
                    block_id: None,
                    payout,
                });
            }
            members.push(member);
        }
        if waiting_seq.is_some() || (state.suspended && !members.is_empty()) {
            // Drop the status-only updates of the members: form_block records them with the block.
            change.transaction_updates.retain(|u| {
                u.block_id.is_some() || !members.iter().any(|m| m.seq == u.seq && m.user == u.user)
            });
            let block = self.form_block(state, change, &members, None, waiting_seq)?;
            return Ok(Some(block));
        }
        Ok(None)
    }
}

/// A block's decisions counted per transaction, in block order.
struct Tally {
    decision_counts: DecisionCounts,
    settlement_txs: Vec<SettlementTransaction>,
    risk_counts: Vec<TransactionCounts>,
    /// The token value v when every token of the block has the same one (eqs. 10–12 apply).
    uniform_value: Option<u64>,
    invalid: Vec<TokenDecision>,
}

/// Matches the chain's `decisions` (block order) to the block's transactions `txs`.
fn tally(
    block_id: u64,
    waiting_seq: Option<u64>,
    txs: &[TransactionRecord],
    decisions: &[Decision],
) -> Result<Tally, EngineError> {
    let mut decision_counts = DecisionCounts::default();
    let mut settlement_txs = Vec::with_capacity(txs.len());
    let mut risk_counts = Vec::with_capacity(txs.len());
    let mut uniform_value = txs.first().and_then(|t| t.tokens.first()).map(|t| t.value);
    let mut position = 0usize;
    let mut invalid_list = Vec::new();
    for tx in txs {
        let end = position
            .checked_add(tx.tokens.len())
            .filter(|end| *end <= decisions.len())
            .ok_or_else(|| {
                EngineError::Corrupt(format!("block {block_id} members exceed its size"))
            })?;
        let mut invalid: u64 = 0;
        let mut valid_value = Amount::ZERO;
        for (token, decision) in tx.tokens.iter().zip(&decisions[position..end]) {
            decision_counts = decision_counts
                .with(*decision)
                .ok_or(EngineError::Overflow("decisions"))?;
            if decision.is_valid() {
                valid_value = valid_value.checked_add(Amount(token.value))?;
            } else {
                invalid = checked_inc(invalid, "invalid tokens")?;
                invalid_list.push(TokenDecision {
                    token: token.id,
                    decision: *decision,
                });
            }
            if uniform_value != Some(token.value) {
                uniform_value = None;
            }
        }
        position = end;
        let tokens = count(tx.tokens.len())?;
        let is_waiting = Some(tx.seq) == waiting_seq;
        settlement_txs.push(SettlementTransaction {
            tokens,
            invalid_tokens: invalid,
            face_value: Amount(tx.amount),
            valid_value,
            status: if is_waiting {
                DeliveryStatus::Waiting
            } else {
                DeliveryStatus::Delivered
            },
        });
        risk_counts.push(TransactionCounts::new(tokens, invalid));
    }
    Ok(Tally {
        decision_counts,
        settlement_txs,
        risk_counts,
        uniform_value,
        invalid: invalid_list,
    })
}
