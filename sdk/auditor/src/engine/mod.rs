//! The auditor engine: per-user queues, the delivery rule, block formation, applying the chain's
//! decisions, trust and block-size updates, suspension, payouts and intake checks
//! (SPEC §4; paper §3.2 "Block management", §4.2 steps 1–4, §5).
//!
//! The engine works on already-verified data ([`TransactionSummary`]): signatures and
//! certificates are checked by the layer above with [`mupib_protocol::transaction`] and
//! [`mupib_protocol::cert`]. A forged token that layer finds is reported with
//! [`Auditor::report_forgery`].
//!
//! Every step reads the store, computes one [`ChangeSet`] and writes it with one
//! [`Store::apply`]: a crash loses nothing and never pays twice. The engine keeps no state of
//! its own between steps, so several instances may share one store: a step that loses a race
//! fails with [`StoreError::Conflict`] (wrapped in [`EngineError::Store`]) having written
//! nothing, and the caller re-runs it.
//!
//! One file per operation: [`intake`](self::intake) (the delivery rule and the intake
//! checks), [`decisions`](self::decisions) (a block's decisions, held transactions), [`blocks`](self::blocks)
//! (block formation), [`group`](self::group) (group commit over [`staged`](self::staged)), [`drive`](self::drive) (intake and
//! verification in one call, `resume`).
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

mod blocks;
mod decisions;
mod drive;
mod group;
pub use group::GroupStep;
mod intake;
mod payouts;
mod queries;
mod staged;

use mupib_protocol::money::{payout_of, Amount};
use mupib_protocol::token::TokenRef;
use mupib_protocol::trust::TrustUpdate;
use mupib_protocol::Pubkey;

use crate::config::{check_terms, new_user, AuditorConfig, UserTerms};
use crate::error::EngineError;
use crate::outcome::{EngineVerdict, IntakeOutcome, TransactionSummary};
use crate::store::{
    ChangeSet, MisbehaviourKind, MisbehaviourRecord, Store, TransactionRecord, TransactionStatus,
    UserState, UserWrite,
};
use mupib_protocol::payout::VendorPayout;

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

    /// The store, mutably (tests that stage a store's state directly).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
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

    /// Loads the user (or a new one on the default terms) and takes its next sequence number:
    /// the start of every intake step. Returns the state to change, the version to
    /// compare-and-swap against (`None` for a new user) and the sequence number.
    fn begin_step(&self, user: &Pubkey) -> Result<(UserState, Option<u64>, u64), EngineError> {
        let (mut state, expected) = self.load_user(user)?;
        let seq = state.next_seq;
        state.next_seq = seq
            .checked_add(1)
            .ok_or(EngineError::Overflow("sequence"))?;
        Ok((state, expected, seq))
    }

    /// Delivers `tokens` tokens worth `amount` to `vendor`: the vendor accrues the payout
    /// ⌊amount·(1−ρ)⌋ ([`payout_of`]) and the user's delivered count grows. Returns the payout.
    fn deliver(
        &self,
        state: &mut UserState,
        change: &mut ChangeSet,
        vendor: Pubkey,
        amount: u64,
        tokens: u64,
    ) -> Result<u64, EngineError> {
        let payout = payout_of(Amount(amount), self.config.withholding).0;
        change.vendor_credits.push(VendorPayout {
            vendor,
            amount: payout,
        });
        state.tokens_delivered = state
            .tokens_delivered
            .checked_add(tokens)
            .ok_or(EngineError::Overflow("delivered tokens"))?;
        Ok(payout)
    }

    /// The stored record of `tx` when `tx` is a resubmission of it: the same transaction id
    /// with the same submitted bytes from the same vendor (an honest retry). Outside paper mode
    /// only; `None` otherwise.
    fn resubmitted(
        &self,
        tx: &TransactionSummary,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        if self.config.paper_mode {
            return Ok(None);
        }
        Ok(self.store.transaction_by_id(&tx.id)?.filter(|existing| {
            existing.vendor == tx.vendor
                && existing
                    .submission
                    .is_none_or(|digest| digest == tx.submission)
        }))
    }

    /// The answer to a resubmission: the stored transaction's verdict, nothing written.
    fn resubmission(&self, existing: TransactionRecord) -> Result<IntakeOutcome, EngineError> {
        let verdict = match existing.status {
            TransactionStatus::Delivered => EngineVerdict::Deliver,
            TransactionStatus::Waiting | TransactionStatus::Held => EngineVerdict::Wait,
            TransactionStatus::Rejected(code) => EngineVerdict::Reject(code),
        };
        let (user, _) = self.load_user(&existing.user)?;
        Ok(IntakeOutcome {
            transaction_id: existing.id,
            seq: existing.seq,
            verdict,
            payout: 0,
            block: None,
            trust_update: None,
            offending_token: None,
            user,
            resubmission: true,
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
}

fn sum_values(tokens: &[TokenRef]) -> Result<u64, EngineError> {
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

/// Eq. 7 with β = `invalid`: updates W and γ, suspends the user at W = 0. Returns the update as
/// outcomes record it and whether this update found the user out of trust.
fn update_trust(state: &mut UserState, invalid: u64) -> Result<(TrustUpdate, bool), EngineError> {
    let (block_size_before, invalid_before) = (state.trust.block_size, state.trust.invalid_total);
    let outcome = state.trust.apply_block(invalid)?;
    if outcome.suspended {
        state.suspended = true;
    }
    Ok((
        TrustUpdate::new(block_size_before, invalid_before, &outcome, state.suspended),
        outcome.suspended,
    ))
}

/// Takes one transaction of `tokens` tokens off the user's queue counters.
fn unqueue(state: &mut UserState, tokens: u64) -> Result<(), EngineError> {
    let corrupt =
        || EngineError::Corrupt(format!("queue counters of {} below its queue", state.user));
    state.queued_tokens = state
        .queued_tokens
        .checked_sub(tokens)
        .ok_or_else(corrupt)?;
    state.queued_transactions = state
        .queued_transactions
        .checked_sub(1)
        .ok_or_else(corrupt)?;
    Ok(())
}
