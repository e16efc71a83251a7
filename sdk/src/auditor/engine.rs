//! The auditor engine: per-user queues, the delivery rule, block formation, applying the chain's
//! decisions, trust and block-size updates, suspension, payouts and intake checks
//! (SPEC §4; paper §3.2 "Block management", §4.2 steps 1–4, §5).
//!
//! The engine works on already-verified data ([`TransactionSummary`]): signatures and
//! certificates are checked by the layer above with [`crate::transaction`] and
//! [`crate::cert`]. A forged token that layer finds is reported with
//! [`Auditor::report_forgery`].
//!
//! Every step reads the store, computes one [`ChangeSet`] and writes it with one
//! [`Store::apply`]: a crash loses nothing and never pays twice. The engine keeps no state of
//! its own between steps, so several instances may share one store: a step that loses a race
//! fails with [`StoreError::Conflict`] (wrapped in [`EngineError::Store`]) having written
//! nothing, and the caller re-runs it.
//!
//! Decisions this module takes where the paper is silent:
//! - a transaction that arrives while its user's block is under verification is *held*
//!   (verdict `Wait`) and decided when that block's decisions are applied, against the new W
//!   (delivered, completing the next block, or rejected if the user is now suspended);
//! - misbehaviour detected at intake updates W at once (eq. 7 with β = offending tokens); if
//!   that suspends the user, the delivered transactions still queued are flushed into a block
//!   without a waiting transaction, so the chain pays for them ("queued ones are verified");
//! - a block normally exceeds W by less than one transaction; only after an intake penalty has
//!   shrunk W below the queue can the next block exceed it by more;
//! - a double-selling vendor is flagged; the user's trust is not touched, since a vendor can
//!   replay a user's signed transaction without the user's involvement.

use serde::{Deserialize, Serialize};

use super::chain::{BlockEntry, BlockSubmission, BlockVerifier, Decision, VerifierError};
use crate::money::{
    payout_of, Amount, BlockSettlement, DeliveryStatus, MoneyError, SettlementTransaction,
    Withholding,
};
use crate::response::{RejectReason, TokenDecision, Verdict};
use crate::risk::{block_risk_scaled, RiskError, ScaledRisk, TransactionCounts};
use crate::store::{
    BlockRecord, ChangeSet, MisbehaviourKind, MisbehaviourRecord, RejectCode, Store, StoreError,
    TokenEntry, TransactionRecord, TransactionStatus, TransactionUpdate, UserState, UserWrite,
    VendorPayout,
};
use crate::transaction::TransactionId;
use crate::trust::{next_block_size, TrustError, TrustModel, TrustScale, TrustState};
use crate::Pubkey;

/// Errors of the engine. None of them leaves a partial write behind.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed or a concurrent writer won (then re-run the step).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The trust update failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Money arithmetic failed (overflow or an unbalanced block).
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// Risk arithmetic failed.
    #[error(transparent)]
    Risk(#[from] RiskError),
    /// The chain could not verify a block (it stays pending).
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    /// A transaction without tokens.
    #[error("transaction {0:?} carries no tokens; a payment needs at least one token")]
    EmptyTransaction(TransactionId),
    /// The configuration is unusable.
    #[error("invalid auditor configuration: {0}")]
    Config(String),
    /// The user is already registered.
    #[error(
        "user {0} is already registered; its terms can only be set before its first transaction"
    )]
    AlreadyRegistered(Pubkey),
    /// No such block.
    #[error("block {0} is unknown to this auditor")]
    UnknownBlock(u64),
    /// The chain returned the wrong number of decisions.
    #[error("block {block_id} has {expected} tokens but {got} decisions were given; pass one decision per token")]
    DecisionCount {
        /// The block.
        block_id: u64,
        /// Tokens in the block.
        expected: u64,
        /// Decisions given.
        got: u64,
    },
    /// A count or amount overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// Stored state contradicts itself.
    #[error("inconsistent auditor state: {0}; restore the database from a backup")]
    Corrupt(String),
}

/// The engine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditorConfig {
    /// ρ, the withholding on vendor payouts.
    pub withholding: Withholding,
    /// Default trust model e for new users (step 1).
    pub trust_model: TrustModel,
    /// Default trust scale N for new users.
    pub trust_scale: TrustScale,
    /// Default W0,u for new users.
    pub initial_block_size: u64,
    /// Paper mode: no intake detection (double spending, double selling, forged tokens do not
    /// count); only the chain detects, as in the paper's simulation.
    pub paper_mode: bool,
}

/// Per-user terms chosen by the auditor (paper §4.2 step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTerms {
    /// The trust model e.
    pub trust_model: TrustModel,
    /// The scale N.
    pub trust_scale: TrustScale,
    /// W0,u.
    pub initial_block_size: u64,
}

/// A payment transaction as the engine sees it, after signature verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSummary {
    /// Hash of the signed bytes.
    pub id: TransactionId,
    /// The paying user.
    pub user: Pubkey,
    /// The vendor presenting it.
    pub vendor: Pubkey,
    /// Its tokens in order.
    pub tokens: Vec<TokenEntry>,
}

impl From<&crate::transaction::VerifiedTransaction> for TransactionSummary {
    /// What the engine keeps of a transaction whose signatures the service verified.
    fn from(tx: &crate::transaction::VerifiedTransaction) -> Self {
        TransactionSummary {
            id: tx.id(),
            user: tx.user(),
            vendor: tx.vendor(),
            tokens: tx
                .tokens()
                .iter()
                .map(|t| TokenEntry {
                    id: t.id,
                    value: t.token.value,
                    digest: t.digest16,
                })
                .collect(),
        }
    }
}

/// The engine's answer about one transaction; the layer above signs it as an
/// `AuditorResponse` (`crate::response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EngineVerdict {
    /// Deliver now (messages 4/5 or 8/9).
    Deliver,
    /// Wait: the transaction completed a block, or the user's block is under verification.
    Wait,
    /// Rejected, with the reason.
    Reject(RejectCode),
}

/// The result of [`Auditor::intake`].
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeOutcome {
    /// The transaction.
    pub transaction_id: TransactionId,
    /// Its per-user sequence number in the store.
    pub seq: u64,
    /// The verdict for the vendor.
    pub verdict: EngineVerdict,
    /// Payout accrued to the vendor now (non-zero only for `Deliver`).
    pub payout: u64,
    /// A block formed by this step, to send to the chain.
    pub block: Option<BlockSubmission>,
    /// A trust update caused by misbehaviour detected at intake.
    pub trust_update: Option<TrustUpdate>,
    /// For `Reject(DoubleSpending)` the first token already seen, for `Reject(ForgedToken)` the
    /// first forged token (the signed response's reason names it).
    pub offending_token: Option<crate::token::TokenId>,
    /// The user's state after the step.
    pub user: UserState,
}

/// A trust and block-size update (eq. 7) as recorded in outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrustUpdate {
    /// W_{i−1}.
    pub block_size_before: u64,
    /// W_i.
    pub block_size: u64,
    /// γ_{i−1}.
    pub invalid_before: u64,
    /// γ_i.
    pub invalid_total: u64,
    /// T_e(γ_{i−1}), stored bit-exactly.
    #[serde(with = "f64_bits")]
    pub trust_before: f64,
    /// T_e(γ_i), stored bit-exactly.
    #[serde(with = "f64_bits")]
    pub trust_after: f64,
    /// The user is (now) suspended.
    pub suspended: bool,
}

/// The final word on one transaction, given when a block is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionVerdict {
    /// The transaction.
    pub transaction_id: TransactionId,
    /// Its per-user sequence number.
    pub seq: u64,
    /// The vendor to tell.
    pub vendor: Pubkey,
    /// Deliver, wait (it completed the next block) or reject.
    pub verdict: EngineVerdict,
    /// Payout accrued to the vendor by this step.
    pub payout: u64,
    /// Refund owed to the user by this step.
    pub refund: u64,
}

/// Counts of the chain's decisions for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecisionCounts {
    /// `0b11`.
    pub valid: u64,
    /// `0b01`.
    pub altered: u64,
    /// `0b10`.
    pub duplicate: u64,
    /// `0b00`.
    pub unpublished: u64,
}

/// The result of [`Auditor::apply_decisions`]; stored as the block's processed marker, so
/// applying the same block again returns it unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockOutcome {
    /// The block.
    pub block_id: u64,
    /// Its user.
    pub user: Pubkey,
    /// The chain's decisions, counted.
    pub decisions: DecisionCounts,
    /// Final verdicts: the waiting transaction first (if any), then held transactions decided
    /// now, in arrival order.
    pub verdicts: Vec<TransactionVerdict>,
    /// The block's money flows (balanced).
    pub settlement: BlockSettlement,
    /// The eq. 7 update (W unchanged for a valid block).
    pub trust: TrustUpdate,
    /// Realized risk of the block in base units, loss − margin (eqs. 10–12 with exact payouts).
    pub risk: i128,
    /// Eq. 12's expression v·Σ_{i<p}(β_i − ρ|tr_i|) over the transactions delivered before the
    /// block formed, for every block, valid or not (what Proposition 2 averages), in base units.
    pub delivered_risk: i128,
    /// Eqs. 10–12 exactly from [`crate::risk`] when every token has the same value.
    pub paper_risk: Option<ScaledRisk>,
    /// The next block, if held transactions completed one.
    pub next_block: Option<BlockSubmission>,
    /// The block's invalid tokens with their decisions, in block order (what a rejection names).
    pub invalid: Vec<TokenDecision>,
}

impl IntakeOutcome {
    /// The verdict to sign as an [`crate::response::AuditorResponse`] for the vendor of `tx`.
    pub fn response_verdict(&self, tx: &TransactionSummary) -> Verdict {
        match self.verdict {
            EngineVerdict::Deliver => Verdict::Deliver,
            EngineVerdict::Wait => Verdict::Wait,
            EngineVerdict::Reject(code) => Verdict::Reject(reject_reason(
                code,
                tx.user,
                tx.vendor,
                tx.id,
                self.offending_token,
                self.block.as_ref().map(|b| b.block_id),
                &[],
            )),
        }
    }
}

impl BlockOutcome {
    /// The final verdict to sign for one of this outcome's [`TransactionVerdict`]s.
    pub fn response_verdict(&self, verdict: &TransactionVerdict) -> Verdict {
        match verdict.verdict {
            EngineVerdict::Deliver => Verdict::Deliver,
            EngineVerdict::Wait => Verdict::Wait,
            EngineVerdict::Reject(code) => Verdict::Reject(reject_reason(
                code,
                self.user,
                verdict.vendor,
                verdict.transaction_id,
                None,
                Some(self.block_id),
                &self.invalid,
            )),
        }
    }
}

/// The detailed reason for a rejection code.
fn reject_reason(
    code: RejectCode,
    user: Pubkey,
    vendor: Pubkey,
    transaction_id: TransactionId,
    token: Option<crate::token::TokenId>,
    block_id: Option<u64>,
    invalid: &[TokenDecision],
) -> RejectReason {
    match (code, token) {
        (RejectCode::UserSuspended, _) => RejectReason::UserSuspended { user },
        (RejectCode::DoubleSelling, _) => RejectReason::DoubleSelling {
            vendor,
            transaction_id,
        },
        (RejectCode::DoubleSpending, Some(token)) => RejectReason::DoubleSpendingAtIntake { token },
        (RejectCode::ForgedToken, Some(token)) => RejectReason::ForgedToken { token },
        (RejectCode::InvalidBlock, _) => RejectReason::InvalidTokensInBlock {
            block_id: block_id.unwrap_or(0),
            decisions: invalid.to_vec(),
        },
        (RejectCode::DoubleSpending | RejectCode::ForgedToken, None) => RejectReason::Malformed {
            detail: format!("{code:?} without the offending token"),
        },
    }
}

/// [`Auditor::process`]'s result: the intake and every block decided along the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// The intake.
    pub intake: IntakeOutcome,
    /// Blocks decided, in order.
    pub blocks: Vec<BlockOutcome>,
}

/// The auditor engine over a store.
#[derive(Debug)]
pub struct Auditor<S: Store> {
    store: S,
    config: AuditorConfig,
}

impl<S: Store> Auditor<S> {
    /// An engine over `store`.
    ///
    /// # Errors
    /// [`EngineError::Config`] if the default W0 is zero or above the trust module's maximum.
    pub fn new(store: S, config: AuditorConfig) -> Result<Self, EngineError> {
        check_terms(config.initial_block_size)?;
        Ok(Auditor { store, config })
    }

    /// The configuration.
    pub fn config(&self) -> &AuditorConfig {
        &self.config
    }

    /// The store (read access for reports).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (settlement operations).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The user's state, if known (trust, W, suspension: what vendors and the bank may see).
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn user(&self, user: &Pubkey) -> Result<Option<UserState>, EngineError> {
        Ok(self.store.user(user)?)
    }

    /// Registers a user with chosen terms (step 1) before its first transaction.
    ///
    /// # Errors
    /// [`EngineError::AlreadyRegistered`], [`EngineError::Config`], [`EngineError::Store`].
    pub fn register_user(
        &mut self,
        user: Pubkey,
        terms: UserTerms,
    ) -> Result<UserState, EngineError> {
        check_terms(terms.initial_block_size)?;
        if self.store.user(&user)?.is_some() {
            return Err(EngineError::AlreadyRegistered(user));
        }
        let state = new_user(user, terms)?;
        let change = ChangeSet {
            user: Some(UserWrite {
                state,
                expected_version: None,
            }),
            ..ChangeSet::default()
        };
        self.store.apply(&change)?;
        Ok(state)
    }

    fn load_user(&self, user: &Pubkey) -> Result<(UserState, Option<u64>), EngineError> {
        match self.store.user(user)? {
            Some(state) => Ok((state, Some(state.version))),
            None => Ok((
                new_user(
                    *user,
                    UserTerms {
                        trust_model: self.config.trust_model,
                        trust_scale: self.config.trust_scale,
                        initial_block_size: self.config.initial_block_size,
                    },
                )?,
                None,
            )),
        }
    }

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
        let amount = sum_values(&tx.tokens)?;
        let token_count =
            u64::try_from(tx.tokens.len()).map_err(|_| EngineError::Overflow("token count"))?;
        let (mut state, expected) = self.load_user(&tx.user)?;
        let mut change = ChangeSet::default();
        let seq = state.next_seq;
        state.next_seq = seq
            .checked_add(1)
            .ok_or(EngineError::Overflow("sequence"))?;

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
            record.payout = payout_of(Amount(amount), self.config.withholding).0;
            change.vendor_credits.push(VendorPayout {
                vendor: tx.vendor,
                amount: record.payout,
            });
            state.tokens_delivered = state
                .tokens_delivered
                .checked_add(token_count)
                .ok_or(EngineError::Overflow("delivered tokens"))?;
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
        forged: &[crate::token::TokenId],
    ) -> Result<IntakeOutcome, EngineError> {
        let forged_tokens = count(forged.len())?;
        let amount = sum_values(&tx.tokens)?;
        let (mut state, expected) = self.load_user(&tx.user)?;
        let mut change = ChangeSet::default();
        let seq = state.next_seq;
        state.next_seq = seq
            .checked_add(1)
            .ok_or(EngineError::Overflow("sequence"))?;
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
    fn offending_tokens(
        &self,
        tokens: &[TokenEntry],
    ) -> Result<(u64, Option<crate::token::TokenId>), EngineError> {
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
        let before = state.trust;
        let outcome = next_block_size(
            before.model,
            before.scale,
            before.initial_block_size,
            before.block_size,
            before.invalid_total,
            invalid,
        )?;
        state.trust.block_size = outcome.block_size;
        state.trust.invalid_total = outcome.invalid_total;
        state.misbehaviour_count = checked_inc(state.misbehaviour_count, "misbehaviour count")?;
        let mut flushed = None;
        if outcome.suspended {
            state.suspended = true;
            if state.pending_block.is_none() && state.queued_transactions > 0 {
                let queue = self.store.queue(&state.user)?;
                flushed = Some(self.form_block(state, change, &queue, None, None)?);
            }
        }
        let update = TrustUpdate {
            block_size_before: before.block_size,
            block_size: outcome.block_size,
            invalid_before: before.invalid_total,
            invalid_total: outcome.invalid_total,
            trust_before: outcome.trust_before,
            trust_after: outcome.trust_after,
            suspended: state.suspended,
        };
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
        })
    }

    /// Writes the change set with the user's new state (compare-and-swap on its version).
    fn commit_user(
        &mut self,
        mut state: UserState,
        expected: Option<u64>,
        mut change: ChangeSet,
    ) -> Result<UserState, EngineError> {
        state.version = match expected {
            None => 0,
            Some(version) => version
                .checked_add(1)
                .ok_or(EngineError::Overflow("user version"))?,
        };
        change.user = Some(UserWrite {
            state,
            expected_version: expected,
        });
        self.store.apply(&change)?;
        Ok(state)
    }

    /// Rebuilds the submission of a stored block (to resubmit it after a restart).
    ///
    /// # Errors
    /// [`EngineError::UnknownBlock`], [`EngineError::Store`].
    pub fn submission(&self, block_id: u64) -> Result<BlockSubmission, EngineError> {
        let (block, txs) = self
            .store
            .block(block_id)?
            .ok_or(EngineError::UnknownBlock(block_id))?;
        Ok(BlockSubmission {
            block_id,
            user: block.user,
            entries: txs
                .iter()
                .flat_map(|tx| tx.tokens.iter())
                .map(|t| BlockEntry {
                    token: t.id,
                    digest: t.digest,
                })
                .collect(),
        })
    }

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
        let (block, txs) = self
            .store
            .block(block_id)?
            .ok_or(EngineError::UnknownBlock(block_id))?;
        if let Some(stored) = &block.outcome {
            return serde_json::from_str(stored).map_err(|e| {
                EngineError::Corrupt(format!("stored outcome of block {block_id}: {e}"))
            });
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

        // Per-transaction counts and values, in block order.
        let mut decision_counts = DecisionCounts::default();
        let mut settlement_txs = Vec::with_capacity(txs.len());
        let mut risk_counts = Vec::with_capacity(txs.len());
        let mut uniform_value = txs.first().and_then(|t| t.tokens.first()).map(|t| t.value);
        let mut position = 0usize;
        let mut invalid_list = Vec::new();
        for tx in &txs {
            let end = position
                .checked_add(tx.tokens.len())
                .filter(|end| *end <= decisions.len())
                .ok_or_else(|| {
                    EngineError::Corrupt(format!("block {block_id} members exceed its size"))
                })?;
            let mut invalid: u64 = 0;
            let mut valid_value = Amount::ZERO;
            for (token, decision) in tx.tokens.iter().zip(&decisions[position..end]) {
                match decision {
                    Decision::Valid => {
                        decision_counts.valid = checked_inc(decision_counts.valid, "decisions")?;
                        valid_value = valid_value.checked_add(Amount(token.value))?;
                    }
                    Decision::Altered => {
                        decision_counts.altered = checked_inc(decision_counts.altered, "decisions")?
                    }
                    Decision::Duplicate => {
                        decision_counts.duplicate =
                            checked_inc(decision_counts.duplicate, "decisions")?
                    }
                    Decision::Unpublished => {
                        decision_counts.unpublished =
                            checked_inc(decision_counts.unpublished, "decisions")?
                    }
                }
                if !decision.is_valid() {
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
            let is_waiting = Some(tx.seq) == block.waiting_seq;
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
        let settlement = BlockSettlement::settle(&settlement_txs, withholding)?;

        // Eq. 7 with β = the block's invalid tokens (a valid block keeps W).
        let before = state.trust;
        let outcome = next_block_size(
            before.model,
            before.scale,
            before.initial_block_size,
            before.block_size,
            before.invalid_total,
            settlement.invalid_tokens,
        )?;
        state.trust.block_size = outcome.block_size;
        state.trust.invalid_total = outcome.invalid_total;
        if outcome.suspended {
            state.suspended = true;
        }
        let trust = TrustUpdate {
            block_size_before: before.block_size,
            block_size: outcome.block_size,
            invalid_before: before.invalid_total,
            invalid_total: outcome.invalid_total,
            trust_before: outcome.trust_before,
            trust_after: outcome.trust_after,
            suspended: state.suspended,
        };

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
                let payout = payout_of(stx.face_value, withholding).0;
                change.vendor_credits.push(VendorPayout {
                    vendor: tx.vendor,
                    amount: payout,
                });
                state.tokens_delivered = state
                    .tokens_delivered
                    .checked_add(stx.tokens)
                    .ok_or(EngineError::Overflow("delivered tokens"))?;
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
                let corrupt = || {
                    EngineError::Corrupt(format!(
                        "queue counters of {} below its queue",
                        state.user
                    ))
                };
                state.queued_tokens = state
                    .queued_tokens
                    .checked_sub(tokens)
                    .ok_or_else(corrupt)?;
                state.queued_transactions = state
                    .queued_transactions
                    .checked_sub(1)
                    .ok_or_else(corrupt)?;
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
                    let payout = payout_of(Amount(tx.amount), self.config.withholding).0;
                    change.vendor_credits.push(VendorPayout {
                        vendor: tx.vendor,
                        amount: payout,
                    });
                    state.tokens_delivered = state
                        .tokens_delivered
                        .checked_add(tokens)
                        .ok_or(EngineError::Overflow("delivered tokens"))?;
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

    /// Intake followed, for every block formed, by verification on `verifier` and
    /// [`Self::apply_decisions`] (including blocks completed by held transactions).
    ///
    /// # Errors
    /// As [`Self::intake`] and [`Self::apply_decisions`]; a verifier failure leaves the block
    /// pending ([`Self::resume`] retries it).
    pub fn process(
        &mut self,
        tx: &TransactionSummary,
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Processed, EngineError> {
        let intake = self.intake(tx)?;
        let blocks = self.verify_chain(intake.block.clone(), verifier)?;
        Ok(Processed { intake, blocks })
    }

    /// A forgery report followed by verification of a block it flushed (see [`Self::process`]).
    ///
    /// # Errors
    /// As [`Self::process`].
    pub fn process_forgery(
        &mut self,
        tx: &TransactionSummary,
        forged: &[crate::token::TokenId],
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Processed, EngineError> {
        let intake = self.report_forgery(tx, forged)?;
        let blocks = self.verify_chain(intake.block.clone(), verifier)?;
        Ok(Processed { intake, blocks })
    }

    fn verify_chain(
        &mut self,
        mut next: Option<BlockSubmission>,
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Vec<BlockOutcome>, EngineError> {
        let mut blocks = Vec::new();
        while let Some(submission) = next {
            let decisions = verifier.verify(&submission)?;
            let outcome = self.apply_decisions(submission.block_id, &decisions)?;
            next = outcome.next_block.clone();
            blocks.push(outcome);
        }
        Ok(blocks)
    }

    /// After a restart: resubmits every block still pending in the store and applies the
    /// decisions (the chain's verification is idempotent per block).
    ///
    /// # Errors
    /// As [`Self::apply_decisions`]; a verifier failure leaves the remaining blocks pending.
    pub fn resume(
        &mut self,
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Vec<BlockOutcome>, EngineError> {
        let mut outcomes = Vec::new();
        for block in self.store.pending_blocks()? {
            // A block decided while resuming an earlier one is skipped by apply's marker.
            let submission = self.submission(block.block_id)?;
            outcomes.extend(self.verify_chain(Some(submission), verifier)?);
        }
        Ok(outcomes)
    }

    /// Forms a block: `stored` are queue transactions already in the store (block order, with the
    /// status and payout they must have once in the block), `new_waiting` the transaction being
    /// taken in now (stored by the caller, with the returned block id). Claims a block id, records
    /// the block, moves the stored members into it and takes them off the queue counters.
    fn form_block(
        &self,
        state: &mut UserState,
        change: &mut ChangeSet,
        stored: &[TransactionRecord],
        new_waiting: Option<&TransactionRecord>,
        waiting_seq: Option<u64>,
    ) -> Result<BlockSubmission, EngineError> {
        let block_id = self.store.next_block_id()?;
        let capacity = stored.iter().map(|m| m.tokens.len()).sum::<usize>()
            + new_waiting.map_or(0, |w| w.tokens.len());
        let mut entries = Vec::with_capacity(capacity);
        for member in stored {
            entries.extend(member.tokens.iter().map(|t| BlockEntry {
                token: t.id,
                digest: t.digest,
            }));
            let tokens = count(member.tokens.len())?;
            let corrupt = || {
                EngineError::Corrupt(format!("queue counters of {} below its queue", state.user))
            };
            state.queued_tokens = state
                .queued_tokens
                .checked_sub(tokens)
                .ok_or_else(corrupt)?;
            state.queued_transactions = state
                .queued_transactions
                .checked_sub(1)
                .ok_or_else(corrupt)?;
            change.transaction_updates.push(TransactionUpdate {
                user: member.user,
                seq: member.seq,
                status: member.status,
                block_id: Some(block_id),
                payout: member.payout,
            });
        }
        if let Some(waiting) = new_waiting {
            entries.extend(waiting.tokens.iter().map(|t| BlockEntry {
                token: t.id,
                digest: t.digest,
            }));
        }
        change.block_id_claim = Some(block_id);
        change.new_block = Some(BlockRecord {
            block_id,
            user: state.user,
            waiting_seq,
            token_count: count(entries.len())?,
            block_size: state.trust.block_size,
            outcome: None,
        });
        state.pending_block = Some(block_id);
        Ok(BlockSubmission {
            block_id,
            user: state.user,
            entries,
        })
    }
}

fn check_terms(initial_block_size: u64) -> Result<(), EngineError> {
    if initial_block_size == 0 || initial_block_size > crate::trust::MAX_BLOCK_SIZE {
        return Err(EngineError::Config(format!(
            "initial block size {initial_block_size} must be between 1 and {}",
            crate::trust::MAX_BLOCK_SIZE
        )));
    }
    Ok(())
}

fn new_user(user: Pubkey, terms: UserTerms) -> Result<UserState, EngineError> {
    check_terms(terms.initial_block_size)?;
    Ok(UserState {
        user,
        version: 0,
        trust: TrustState::new(
            terms.trust_model,
            terms.trust_scale,
            terms.initial_block_size,
        )?,
        suspended: false,
        queued_tokens: 0,
        queued_transactions: 0,
        pending_block: None,
        next_seq: 0,
        blocks_valid: 0,
        blocks_invalid: 0,
        misbehaviour_count: 0,
        risk_total: 0,
        tokens_delivered: 0,
        refunded_total: 0,
    })
}

fn sum_values(tokens: &[TokenEntry]) -> Result<u64, EngineError> {
    tokens
        .iter()
        .try_fold(0u64, |sum, t| sum.checked_add(t.value))
        .ok_or(EngineError::Overflow("transaction amount"))
}

fn checked_inc(value: u64, what: &'static str) -> Result<u64, EngineError> {
    value.checked_add(1).ok_or(EngineError::Overflow(what))
}

fn count(len: usize) -> Result<u64, EngineError> {
    u64::try_from(len).map_err(|_| EngineError::Overflow("count"))
}

fn misbehaviour(
    kind: MisbehaviourKind,
    tx: &TransactionSummary,
    tokens: u64,
) -> MisbehaviourRecord {
    MisbehaviourRecord {
        kind,
        user: tx.user,
        vendor: tx.vendor,
        transaction_id: tx.id,
        tokens,
    }
}

/// Serializes an `f64` as its bit pattern, so a stored outcome reads back bit-exactly.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(deserializer)?))
    }
}
