//! What the engine answers: the verdict of an intake, the outcome of a decided block, and the
//! transaction summary it takes in. The service signs these as `AuditorResponse`s.

use mupib_protocol::block::BlockSubmission;
use mupib_protocol::decision::{DecisionCounts, TokenDecision};
use mupib_protocol::money::BlockSettlement;
use mupib_protocol::reject::{RejectCode, RejectContext, RejectReason};
use mupib_protocol::response::Verdict;
use mupib_protocol::risk::ScaledRisk;
use mupib_protocol::token::{TokenId, TokenRef};
use mupib_protocol::transaction::{TransactionId, VerifiedTransaction};
use mupib_protocol::trust::TrustUpdate;
use mupib_protocol::Pubkey;
use serde::{Deserialize, Serialize};

use crate::store::UserState;

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
    pub tokens: Vec<TokenRef>,
    /// SHA-256 of the bytes it was submitted with (`PaymentTransaction::submission_digest`):
    /// the same id with the same bytes is a resubmission, answered from the store.
    pub submission: [u8; 32],
}

impl From<&VerifiedTransaction> for TransactionSummary {
    /// What the engine keeps of a transaction whose signatures the service verified.
    fn from(tx: &VerifiedTransaction) -> Self {
        TransactionSummary {
            id: tx.id(),
            user: tx.user(),
            vendor: tx.vendor(),
            tokens: tx.tokens().to_vec(),
            submission: tx.submission_digest(),
        }
    }
}

/// The engine's answer about one transaction; the layer above signs it as an
/// `AuditorResponse` (`mupib_protocol::response`).
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
    pub offending_token: Option<TokenId>,
    /// The user's state after the step.
    pub user: UserState,
    /// The same transaction was submitted before with the same bytes: nothing was written,
    /// `verdict` is the stored one, and the answer to give is the stored answer.
    pub resubmission: bool,
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
    /// Eqs. 10–12 exactly from [`mupib_protocol::risk`] when every token has the same value.
    pub paper_risk: Option<ScaledRisk>,
    /// The next block, if held transactions completed one.
    pub next_block: Option<BlockSubmission>,
    /// The block's invalid tokens with their decisions, in block order (what a rejection names).
    pub invalid: Vec<TokenDecision>,
    /// What the chain paid for the block against what its valid tokens are worth (`None` when
    /// the decisions came without the payment, e.g. from a test).
    #[serde(default)]
    pub payment: Option<ChainPayment>,
}

/// The chain's payment for a block, reconciled with the engine's own account of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPayment {
    /// Σ v over the block's valid tokens, from the bank-signed token values: what the escrows
    /// must have paid.
    pub expected: u64,
    /// What the escrows paid the auditor (the program's `Block.amount_paid`).
    pub paid: u64,
}

impl ChainPayment {
    /// The chain paid exactly what the valid tokens are worth.
    pub fn reconciled(&self) -> bool {
        self.expected == self.paid
    }
}

impl BlockOutcome {
    /// The chain paid a different amount than the block's valid tokens are worth: an alarm.
    pub fn payment_mismatch(&self) -> bool {
        self.payment.is_some_and(|p| !p.reconciled())
    }
}

impl IntakeOutcome {
    /// The verdict to sign as an [`mupib_protocol::response::AuditorResponse`] for the vendor of
    /// `tx`.
    pub fn response_verdict(&self, tx: &TransactionSummary) -> Verdict {
        match self.verdict {
            EngineVerdict::Deliver => Verdict::Deliver,
            EngineVerdict::Wait => Verdict::Wait,
            EngineVerdict::Reject(code) => Verdict::Reject(RejectReason::for_code(
                code,
                &RejectContext {
                    user: tx.user,
                    vendor: tx.vendor,
                    transaction_id: tx.id,
                    token: self.offending_token,
                    block_id: self.block.as_ref().map(|b| b.block_id),
                    invalid: &[],
                },
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
            EngineVerdict::Reject(code) => Verdict::Reject(RejectReason::for_code(
                code,
                &RejectContext {
                    user: self.user,
                    vendor: verdict.vendor,
                    transaction_id: verdict.transaction_id,
                    token: None,
                    block_id: Some(self.block_id),
                    invalid: &self.invalid,
                },
            )),
        }
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
