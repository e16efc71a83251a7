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
//! Group commit: [`Auditor::intake_batch`], [`Auditor::apply_decisions_batch`] and
//! [`Auditor::apply_decisions_and_intake_batch`] compute several steps exactly as the
//! one-at-a-time calls would — against a private in-memory view of the store plus the change
//! sets staged so far — and write all their change sets with one [`Store::apply_all`] (one
//! database transaction, one fsync). Nothing of a group may be released before that call
//! returns; a failed group wrote nothing.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::chain::{BlockEntry, BlockSubmission, BlockVerifier, Decision, VerifierError};
use crate::money::{
    payout_of, Amount, BlockSettlement, DeliveryStatus, MoneyError, SettlementTransaction,
    Withholding,
};
use crate::response::{RejectReason, TokenDecision, Verdict};
use crate::risk::{block_risk_scaled, RiskError, ScaledRisk, TransactionCounts};
use crate::store::{
    BlockRecord, ChangeSet, MisbehaviourKind, MisbehaviourRecord, RejectCode, SettlementBatch,
    Store, StoreError, TokenEntry, TransactionRecord, TransactionStatus, TransactionUpdate,
    UserState, UserWrite, VendorAccount, VendorPayout,
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

    /// Group commit of a batch of intakes: computes each transaction's intake exactly as
    /// [`Self::intake`] called on them one after the other would (a later transaction sees what
    /// the earlier ones did: tokens seen, transaction ids, the user's queue, W and suspension,
    /// block ids, vendor balances), then writes all their change sets with ONE
    /// [`Store::apply_all`] — one database transaction, one fsync on the durable store.
    ///
    /// The result has one entry per transaction, in order: the outcome, or the error
    /// [`Self::intake`] would have returned for it (that transaction then wrote nothing, and the
    /// ones after it are computed without it, as in a sequential run).
    ///
    /// **Durability contract**: the outcomes describe state that exists only once this call
    /// returns `Ok`. The caller must not release any response of the batch before that; if the
    /// call fails, nothing of the batch was written (the engine keeps no state of its own), and
    /// the whole batch may be re-run (e.g. after a [`StoreError::Conflict`] with another
    /// instance).
    ///
    /// On a pruning [`crate::store::MemoryStore`] (which forgets rejected transactions at once)
    /// a transaction id rejected earlier in the same batch is still recognised as double
    /// selling, where the sequential path would have forgotten it.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn intake_batch(
        &mut self,
        txs: &[TransactionSummary],
    ) -> Result<Vec<Result<IntakeOutcome, EngineError>>, EngineError> {
        Ok(self.apply_decisions_and_intake_batch(&[], txs)?.1)
    }

    /// One group commit for a round of block decisions followed by a batch of intakes: what
    /// [`Self::apply_decisions_batch`] on `blocks` and then [`Self::intake_batch`] on `txs` would
    /// compute, written with ONE [`Store::apply_all`] (the service's steady state: the decisions
    /// the chain returned during batch k are committed with batch k+1's intakes, one fsync for
    /// both). Returns the block outcomes and the intake outcomes, one entry each, in order.
    ///
    /// **Durability contract**: release no response (intake or final) of the group before this
    /// call returns `Ok`; on error nothing of the group was written and it may be re-run.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn apply_decisions_and_intake_batch(
        &mut self,
        blocks: &[(u64, Vec<Decision>)],
        txs: &[TransactionSummary],
    ) -> Result<
        (
            Vec<Result<BlockOutcome, EngineError>>,
            Vec<Result<IntakeOutcome, EngineError>>,
        ),
        EngineError,
    > {
        let mut staged = Auditor {
            store: Staged::new(&self.store),
            config: self.config,
        };
        let decided: Vec<_> = blocks
            .iter()
            .map(|(block_id, decisions)| staged.apply_decisions(*block_id, decisions))
            .collect();
        let intakes: Vec<_> = txs.iter().map(|tx| staged.intake(tx)).collect();
        let changes = staged.store.into_changes();
        self.store.apply_all(&changes)?;
        Ok((decided, intakes))
    }

    /// Group commit of the chain's decisions for several blocks: each block's decisions are
    /// applied exactly as [`Self::apply_decisions`] called on the blocks in the given order would
    /// (a later block sees what the earlier ones changed: users, held transactions, block ids),
    /// and all their change sets are written with ONE [`Store::apply_all`].
    ///
    /// Blocks that held transactions complete ([`BlockOutcome::next_block`]) are formed in the
    /// same commit; send them to the chain only after this call returned `Ok`.
    ///
    /// One entry per block: its outcome, or the error [`Self::apply_decisions`] would have
    /// returned for it (nothing of that block is written). **Durability contract** as for
    /// [`Self::intake_batch`]: release no final response before this call returns `Ok`; on
    /// error nothing of the group was written and the group may be re-run.
    ///
    /// # Errors
    /// [`EngineError::Store`] if the group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn apply_decisions_batch(
        &mut self,
        blocks: &[(u64, Vec<Decision>)],
    ) -> Result<Vec<Result<BlockOutcome, EngineError>>, EngineError> {
        Ok(self.apply_decisions_and_intake_batch(blocks, &[])?.0)
    }

    /// [`Self::intake_batch`] (one commit), then, for every block the batch formed, in order,
    /// verification on `verifier` and [`Self::apply_decisions`] (one commit per block, and the
    /// blocks their held transactions complete), as [`Self::process`] does after an intake.
    ///
    /// Blocks are sent to the chain only after the batch's commit returned, so a block id is
    /// never submitted before its formation is durable. Unlike [`Self::process`] called
    /// transaction by transaction, the chain is not consulted in the middle of the batch: a
    /// user's transactions that arrive in the batch after one of them formed a block are held
    /// (`Wait`) and get their final verdict in that block's [`BlockOutcome::verdicts`] — the
    /// same rule as for transactions arriving while a block is on the chain.
    ///
    /// One entry per transaction: its intake and the blocks decided after it, or the error that
    /// [`Self::intake`] or the chain step gave for it (a failed chain step leaves its block
    /// pending for [`Self::resume`]; the intake stays committed, as with [`Self::process`]).
    ///
    /// # Errors
    /// [`EngineError::Store`] if the batch's group commit fails (nothing written).
    #[allow(clippy::type_complexity)]
    pub fn process_batch(
        &mut self,
        txs: &[TransactionSummary],
        verifier: &mut dyn BlockVerifier,
    ) -> Result<Vec<Result<Processed, EngineError>>, EngineError> {
        let intakes = self.intake_batch(txs)?;
        let mut out = Vec::with_capacity(intakes.len());
        for intake in intakes {
            out.push(intake.and_then(|intake| {
                let blocks = self.verify_chain(intake.block.clone(), verifier)?;
                Ok(Processed { intake, blocks })
            }));
        }
        Ok(out)
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

/// The store view of a batch of intakes being group-committed: the durable store underneath,
/// plus the change sets of the batch's earlier intakes, staged in memory and not yet written.
/// Every read the engine makes answers as the store would after those change sets were applied
/// one by one, so an intake computed against the view equals the intake a sequential run would
/// compute. [`Store::apply`] checks the change set against the view (compare-and-swap, seen
/// tokens, block id claim) and stages it; the batch's caller writes all staged change sets with
/// one [`Store::apply_all`], which checks them again against the durable state.
///
/// Settlement mutations are refused: they are not part of intake and never staged.
struct Staged<'a, S: Store> {
    base: &'a S,
    /// Staged change sets, in order.
    changes: Vec<ChangeSet>,
    /// Latest user states.
    users: HashMap<Pubkey, UserState>,
    /// Tokens whose seen flag the batch changed (true: marked, false: released).
    tokens: HashMap<crate::token::TokenId, bool>,
    /// Full records the batch created or loaded from the base queue, per user and seq, with
    /// the batch's updates applied.
    txs: HashMap<Pubkey, BTreeMap<u64, TransactionRecord>>,
    /// Every staged transaction update, latest per (user, seq), for base records not loaded.
    updates: HashMap<(Pubkey, u64), TransactionUpdate>,
    /// First staged transaction per id.
    ids: HashMap<TransactionId, (Pubkey, u64)>,
    /// Blocks formed in the batch.
    blocks: BTreeMap<u64, BlockRecord>,
    /// Outcomes written in the batch.
    decided: HashMap<u64, String>,
    /// The block id counter after the batch's claims.
    next_block_id: Option<u64>,
}

fn in_queue(tx: &TransactionRecord) -> bool {
    matches!(
        tx.status,
        TransactionStatus::Delivered | TransactionStatus::Held
    ) && tx.block_id.is_none()
}

fn apply_update(record: &mut TransactionRecord, update: &TransactionUpdate) {
    record.status = update.status;
    record.block_id = update.block_id;
    record.payout = update.payout;
}

impl<'a, S: Store> Staged<'a, S> {
    fn new(base: &'a S) -> Self {
        Staged {
            base,
            changes: Vec::new(),
            users: HashMap::new(),
            tokens: HashMap::new(),
            txs: HashMap::new(),
            updates: HashMap::new(),
            ids: HashMap::new(),
            blocks: BTreeMap::new(),
            decided: HashMap::new(),
            next_block_id: None,
        }
    }

    fn into_changes(self) -> Vec<ChangeSet> {
        self.changes
    }

    /// A base record as the batch left it.
    fn overlaid(&self, mut record: TransactionRecord) -> TransactionRecord {
        if let Some(known) = self.txs.get(&record.user).and_then(|m| m.get(&record.seq)) {
            return known.clone();
        }
        if let Some(update) = self.updates.get(&(record.user, record.seq)) {
            apply_update(&mut record, update);
        }
        record
    }

    /// Loads the base queue of `user` into the known records (a cache of base data).
    fn load_queue(&mut self, user: &Pubkey) -> Result<(), StoreError> {
        let base = self.base.queue(user)?;
        let known = self.txs.entry(*user).or_default();
        for record in base {
            if !known.contains_key(&record.seq) {
                let mut record = record;
                if let Some(update) = self.updates.get(&(record.user, record.seq)) {
                    apply_update(&mut record, update);
                }
                known.insert(record.seq, record);
            }
        }
        Ok(())
    }

    /// The checks [`Store::apply`] makes, against what the batch staged (no mutation, no read
    /// of the durable store: the engine has just read it, and [`Store::apply_all`] checks every
    /// change set against the durable state again at commit).
    fn validate(&self, change: &ChangeSet) -> Result<(), StoreError> {
        if let Some(write) = &change.user {
            if let Some(current) = self.users.get(&write.state.user) {
                if Some(current.version) != write.expected_version {
                    return Err(StoreError::Conflict(format!(
                        "user {} version {}, expected {:?}",
                        write.state.user, current.version, write.expected_version
                    )));
                }
            }
        }
        let mut fresh = HashSet::with_capacity(change.seen_tokens.len());
        for token in &change.seen_tokens {
            if self.tokens.get(token) == Some(&true) || !fresh.insert(*token) {
                return Err(StoreError::Conflict(format!(
                    "token {token:?} already seen"
                )));
            }
        }
        if let (Some(claim), Some(next)) = (change.block_id_claim, self.next_block_id) {
            if claim != next {
                return Err(StoreError::Conflict(format!(
                    "block id {claim} claimed, next is {next}"
                )));
            }
        }
        if let Some((block_id, _)) = &change.block_decided {
            if self.decided.contains_key(block_id) {
                return Err(StoreError::Conflict(format!(
                    "block {block_id} already decided"
                )));
            }
        }
        Ok(())
    }

    fn block_record(&self, block_id: u64) -> Result<Option<BlockRecord>, StoreError> {
        let mut record = match self.blocks.get(&block_id) {
            Some(record) => Some(record.clone()),
            None => self.base.block(block_id)?.map(|(record, _)| record),
        };
        if let (Some(record), Some(outcome)) = (record.as_mut(), self.decided.get(&block_id)) {
            record.outcome = Some(outcome.clone());
        }
        Ok(record)
    }

    fn settlement_refused(key: &str) -> StoreError {
        StoreError::Settlement {
            key: key.to_owned(),
            reason: "settlement cannot run inside a batch of intakes; call it on the store".into(),
        }
    }
}

impl<S: Store> Store for Staged<'_, S> {
    fn user(&self, user: &Pubkey) -> Result<Option<UserState>, StoreError> {
        match self.users.get(user) {
            Some(state) => Ok(Some(*state)),
            None => self.base.user(user),
        }
    }

    fn token_seen(&self, token: &crate::token::TokenId) -> Result<bool, StoreError> {
        match self.tokens.get(token) {
            Some(seen) => Ok(*seen),
            None => self.base.token_seen(token),
        }
    }

    fn transaction_by_id(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        if let Some(record) = self.base.transaction_by_id(id)? {
            return Ok(Some(self.overlaid(record)));
        }
        Ok(self
            .ids
            .get(id)
            .and_then(|(user, seq)| self.txs.get(user).and_then(|m| m.get(seq)))
            .cloned())
    }

    fn queue(&self, user: &Pubkey) -> Result<Vec<TransactionRecord>, StoreError> {
        let mut queue: BTreeMap<u64, TransactionRecord> = self
            .base
            .queue(user)?
            .into_iter()
            .map(|record| (record.seq, self.overlaid(record)))
            .collect();
        if let Some(known) = self.txs.get(user) {
            for (seq, record) in known {
                queue.insert(*seq, record.clone());
            }
        }
        Ok(queue.into_values().filter(in_queue).collect())
    }

    fn block(
        &self,
        block_id: u64,
    ) -> Result<Option<(BlockRecord, Vec<TransactionRecord>)>, StoreError> {
        let Some(record) = self.block_record(block_id)? else {
            return Ok(None);
        };
        let mut members: BTreeMap<u64, TransactionRecord> = BTreeMap::new();
        if let Some((_, base_members)) = self.base.block(block_id)? {
            for member in base_members {
                let member = self.overlaid(member);
                members.insert(member.seq, member);
            }
        }
        if let Some(known) = self.txs.get(&record.user) {
            for (seq, tx) in known {
                if tx.block_id == Some(block_id) {
                    members.insert(*seq, tx.clone());
                } else {
                    members.remove(seq);
                }
            }
        }
        let members = members
            .into_values()
            .filter(|m| m.block_id == Some(block_id))
            .collect();
        Ok(Some((record, members)))
    }

    fn pending_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let mut pending: BTreeMap<u64, BlockRecord> = self
            .base
            .pending_blocks()?
            .into_iter()
            .map(|b| (b.block_id, b))
            .collect();
        for (id, record) in &self.blocks {
            pending.insert(*id, record.clone());
        }
        for id in self.decided.keys() {
            pending.remove(id);
        }
        Ok(pending.into_values().collect())
    }

    fn next_block_id(&self) -> Result<u64, StoreError> {
        match self.next_block_id {
            Some(next) => Ok(next),
            None => self.base.next_block_id(),
        }
    }

    fn apply(&mut self, change: &ChangeSet) -> Result<(), StoreError> {
        self.validate(change)?;
        for update in &change.transaction_updates {
            let known = self
                .txs
                .get(&update.user)
                .is_some_and(|m| m.contains_key(&update.seq))
                || change
                    .new_transactions
                    .iter()
                    .any(|t| (t.user, t.seq) == (update.user, update.seq));
            if !known {
                self.load_queue(&update.user)?;
            }
        }
        // Checked: from here on nothing fails, so a refused change set stages nothing.
        if let Some(claim) = change.block_id_claim {
            self.next_block_id = Some(claim.saturating_add(1));
        }
        if let Some(write) = &change.user {
            self.users.insert(write.state.user, write.state);
        }
        if let Some(block) = &change.new_block {
            self.blocks.insert(block.block_id, block.clone());
        }
        for tx in &change.new_transactions {
            self.ids.entry(tx.id).or_insert((tx.user, tx.seq));
            self.txs
                .entry(tx.user)
                .or_default()
                .insert(tx.seq, tx.clone());
        }
        for update in &change.transaction_updates {
            self.updates.insert((update.user, update.seq), *update);
            if let Some(record) = self
                .txs
                .get_mut(&update.user)
                .and_then(|m| m.get_mut(&update.seq))
            {
                apply_update(record, update);
            }
        }
        for token in &change.seen_tokens {
            self.tokens.insert(*token, true);
        }
        for token in &change.released_tokens {
            self.tokens.insert(*token, false);
        }
        if let Some((block_id, outcome)) = &change.block_decided {
            self.decided.insert(*block_id, outcome.clone());
        }
        self.changes.push(change.clone());
        Ok(())
    }

    fn apply_all(&mut self, changes: &[ChangeSet]) -> Result<(), StoreError> {
        // Staging is cheap to undo: stage on a copy of the staged part, keep it if all pass.
        let snapshot = (
            self.changes.len(),
            self.users.clone(),
            self.tokens.clone(),
            self.txs.clone(),
            self.updates.clone(),
            self.ids.clone(),
            self.blocks.clone(),
            self.decided.clone(),
            self.next_block_id,
        );
        for change in changes {
            if let Err(error) = self.apply(change) {
                let (len, users, tokens, txs, updates, ids, blocks, decided, next) = snapshot;
                self.changes.truncate(len);
                self.users = users;
                self.tokens = tokens;
                self.txs = txs;
                self.updates = updates;
                self.ids = ids;
                self.blocks = blocks;
                self.decided = decided;
                self.next_block_id = next;
                return Err(error);
            }
        }
        Ok(())
    }

    fn vendor(&self, vendor: &Pubkey) -> Result<VendorAccount, StoreError> {
        let mut account = self.base.vendor(vendor)?;
        for change in &self.changes {
            for credit in change.vendor_credits.iter().filter(|c| c.vendor == *vendor) {
                account.accrued = account
                    .accrued
                    .checked_add(credit.amount)
                    .ok_or_else(|| StoreError::OutOfRange(format!("vendor {vendor} accrual")))?;
            }
            for _ in change.vendor_flags.iter().filter(|v| *v == vendor) {
                account.double_sellings = account.double_sellings.saturating_add(1);
            }
        }
        Ok(account)
    }

    fn user_refund(&self, user: &Pubkey) -> Result<u64, StoreError> {
        let mut refund = self.base.user_refund(user)?;
        for change in &self.changes {
            for (_, amount) in change.user_refunds.iter().filter(|(u, _)| u == user) {
                refund = refund
                    .checked_add(*amount)
                    .ok_or_else(|| StoreError::OutOfRange(format!("user {user} refund")))?;
            }
        }
        Ok(refund)
    }

    fn misbehaviour(&self) -> Result<Vec<MisbehaviourRecord>, StoreError> {
        let mut records = self.base.misbehaviour()?;
        for change in &self.changes {
            records.extend(change.misbehaviour.iter().cloned());
        }
        Ok(records)
    }

    fn pending_payouts(&self) -> Result<Vec<VendorPayout>, StoreError> {
        let mut vendors: BTreeSet<Pubkey> = self
            .base
            .pending_payouts()?
            .into_iter()
            .map(|p| p.vendor)
            .collect();
        for change in &self.changes {
            vendors.extend(change.vendor_credits.iter().map(|c| c.vendor));
        }
        let mut out = Vec::with_capacity(vendors.len());
        for vendor in vendors {
            let amount = self.vendor(&vendor)?.settleable();
            if amount > 0 {
                out.push(VendorPayout { vendor, amount });
            }
        }
        Ok(out)
    }

    fn begin_settlement(
        &mut self,
        key: &str,
        _items: &[VendorPayout],
    ) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn complete_settlement(
        &mut self,
        key: &str,
        _reference: &str,
    ) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn abort_settlement(&mut self, key: &str) -> Result<SettlementBatch, StoreError> {
        Err(Self::settlement_refused(key))
    }

    fn settlement(&self, key: &str) -> Result<Option<SettlementBatch>, StoreError> {
        self.base.settlement(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auditor::SimulatedChain;
    use crate::store::MemoryStore;
    use crate::token::TokenId;
    use crate::trust::{TrustModel, TrustScale};

    fn key(n: u8) -> Pubkey {
        Pubkey::new_from_array([n; 32])
    }

    fn token(serial: u32) -> TokenEntry {
        TokenEntry {
            id: TokenId {
                bank: key(250),
                batch_id: 1,
                serial,
            },
            value: 100,
            digest: [u8::try_from(serial % 200).expect("small"); 16],
        }
    }

    fn tx(n: u8, user: u8, serials: std::ops::Range<u32>) -> TransactionSummary {
        TransactionSummary {
            id: TransactionId([n; 32]),
            user: key(user),
            vendor: key(50 + n % 3),
            tokens: serials.map(token).collect(),
        }
    }

    /// Everything the view answers about the scenario, through the `Store` reads.
    fn reads<S: Store>(store: &S, txs: &[TransactionSummary], blocks: u64) -> String {
        let mut out = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n",
            store.next_block_id().expect("next"),
            store.pending_blocks().expect("pending"),
            store.misbehaviour().expect("misbehaviour"),
            store.pending_payouts().expect("payouts"),
        );
        for user in [1u8, 2] {
            out.push_str(&format!(
                "{:?}\n{:?}\n{:?}\n",
                store.user(&key(user)).expect("user"),
                store.queue(&key(user)).expect("queue"),
                store.user_refund(&key(user)).expect("refund"),
            ));
        }
        for vendor in 50..53u8 {
            out.push_str(&format!(
                "{:?}\n",
                store.vendor(&key(vendor)).expect("vendor")
            ));
        }
        for block in 1..=blocks {
            out.push_str(&format!("{:?}\n", store.block(block).expect("block")));
        }
        for tx in txs {
            out.push_str(&format!(
                "{:?}\n",
                store.transaction_by_id(&tx.id).expect("tx")
            ));
            for token in &tx.tokens {
                out.push_str(&format!("{}", store.token_seen(&token.id).expect("seen")));
            }
        }
        out
    }

    /// The staged view answers every read exactly as the store does once the same change sets
    /// are applied: after intakes that form blocks (new blocks, queue members moved into them),
    /// and after decisions on blocks formed BEFORE the view (updates of stored block members
    /// that are not in any queue, the processed marker, an invalid block's refund, held
    /// transactions decided, a next block formed), including deciding one block twice.
    #[test]
    fn staged_view_reads_equal_the_store_after_apply() {
        let config = AuditorConfig {
            withholding: Withholding::from_bps(2000).expect("bps"),
            trust_model: TrustModel::Pessimistic,
            trust_scale: TrustScale::Initial,
            initial_block_size: 4,
            paper_mode: false,
        };
        let mut chain = SimulatedChain::new();
        chain.publish_batch(
            key(250),
            1,
            100,
            (0..100)
                .map(|s| [u8::try_from(s % 200).expect("small"); 16])
                .collect(),
        );
        let mut base = Auditor::new(MemoryStore::new(), config).expect("auditor");
        // User 1: block 1 (valid) pending with one held transaction; user 2: block 2 pending,
        // with an unpublished token (invalid), and two held transactions.
        let mut txs = vec![
            tx(1, 1, 0..2),
            tx(2, 1, 2..4),
            tx(3, 1, 4..6),
            tx(4, 2, 10..13),
            tx(5, 2, 13..14),
            tx(6, 2, 14..17),
            tx(7, 2, 17..20),
        ];
        let mut forged = tx(8, 2, 0..0);
        forged.tokens = vec![TokenEntry {
            id: TokenId {
                bank: key(250),
                batch_id: 999,
                serial: 1,
            },
            value: 100,
            digest: [9; 16],
        }];
        txs.insert(4, forged);
        for t in &txs {
            base.intake(t).expect("intake");
        }
        let pending = base.store().pending_blocks().expect("pending");
        assert_eq!(pending.len(), 2);
        let mut group = Vec::new();
        for block in &pending {
            let submission = base.submission(block.block_id).expect("submission");
            group.push((block.block_id, chain.verify(&submission).expect("verify")));
        }
        group.push(group[0].clone()); // decided twice: the second returns the stored outcome

        // Sequential reference.
        let mut reference = Auditor::new(base.store().clone(), config).expect("auditor");
        let expected: Vec<_> = group
            .iter()
            .map(|(id, d)| format!("{:?}", reference.apply_decisions(*id, d)))
            .collect();

        // The view: decisions staged over the base store, read before any commit.
        let mut staged = Auditor {
            store: Staged::new(base.store()),
            config,
        };
        let got: Vec<_> = group
            .iter()
            .map(|(id, d)| format!("{:?}", staged.apply_decisions(*id, d)))
            .collect();
        assert_eq!(got, expected);
        let blocks = reference.store().next_block_id().expect("next");
        assert!(blocks >= 3, "held transactions formed a next block");
        assert_eq!(
            reads(&staged.store, &txs, blocks),
            reads(reference.store(), &txs, blocks)
        );
        // Then intakes on top of the staged decisions, staged too.
        let more = [tx(20, 1, 30..33), tx(21, 2, 40..42), tx(22, 1, 33..35)];
        for t in &more {
            let a = format!("{:?}", reference.intake(t));
            let b = format!("{:?}", staged.intake(t));
            assert_eq!(a, b);
        }
        let all: Vec<_> = txs.iter().chain(more.iter()).cloned().collect();
        let blocks = reference.store().next_block_id().expect("next");
        assert_eq!(
            reads(&staged.store, &all, blocks),
            reads(reference.store(), &all, blocks)
        );
        // Writing the staged change sets in one group gives the reference state.
        let changes = staged.store.into_changes();
        base.store_mut().apply_all(&changes).expect("group commit");
        assert_eq!(
            reads(base.store(), &all, blocks),
            reads(reference.store(), &all, blocks)
        );
        // Settlement never runs inside a group.
        let mut view = Staged::new(base.store());
        assert!(matches!(
            view.begin_settlement("k", &[]),
            Err(StoreError::Settlement { .. })
        ));
    }
}
