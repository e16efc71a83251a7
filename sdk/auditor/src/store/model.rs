//! The records the auditor keeps (SPEC §4) and the atomic [`ChangeSet`] the engine writes.

use serde::{Deserialize, Serialize};

use mupib_protocol::payout::{SignedPayout, VendorPayout};
use mupib_protocol::reject::RejectCode;
use mupib_protocol::token::TokenId;
use mupib_protocol::token::TokenRef;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::trust::TrustState;
use mupib_protocol::Pubkey;

/// Where a stored transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionStatus {
    /// The vendor was told to deliver; its payout has accrued.
    Delivered,
    /// It completed a block and waits for the chain's decisions.
    Waiting,
    /// It arrived while the user's block was under verification; it is decided when that block's
    /// decisions are applied.
    Held,
    /// Rejected, with the reason.
    Rejected(RejectCode),
}

impl TransactionStatus {
    /// `delivered`, `waiting`, `held` or `rejected` (traces and reports).
    pub const fn name(self) -> &'static str {
        match self {
            TransactionStatus::Delivered => "delivered",
            TransactionStatus::Waiting => "waiting",
            TransactionStatus::Held => "held",
            TransactionStatus::Rejected(_) => "rejected",
        }
    }

    /// The reject code of a rejected transaction.
    pub const fn reject_code(self) -> Option<RejectCode> {
        match self {
            TransactionStatus::Rejected(code) => Some(code),
            _ => None,
        }
    }

    /// Database code (and reject code, if any).
    pub const fn code(self) -> (u8, Option<u8>) {
        match self {
            TransactionStatus::Delivered => (0, None),
            TransactionStatus::Waiting => (1, None),
            TransactionStatus::Held => (2, None),
            TransactionStatus::Rejected(reason) => (3, Some(reason.code())),
        }
    }

    /// From database codes.
    pub const fn from_code(status: u8, reason: Option<u8>) -> Option<Self> {
        Some(match (status, reason) {
            (0, None) => TransactionStatus::Delivered,
            (1, None) => TransactionStatus::Waiting,
            (2, None) => TransactionStatus::Held,
            (3, Some(reason)) => match RejectCode::from_code(reason) {
                Some(reason) => TransactionStatus::Rejected(reason),
                None => return None,
            },
            _ => return None,
        })
    }
}

/// A transaction as the auditor stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// The paying user.
    pub user: Pubkey,
    /// Per-user arrival sequence number (the storage key together with `user`).
    pub seq: u64,
    /// The transaction id (hash of the signed bytes).
    pub id: TransactionId,
    /// The vendor that presented it.
    pub vendor: Pubkey,
    /// Current status.
    pub status: TransactionStatus,
    /// The block it belongs to, once one is formed.
    pub block_id: Option<u64>,
    /// Σ token values.
    pub amount: u64,
    /// The vendor payout accrued for it, Σ v·(1−ρ) (0 until delivered).
    pub payout: u64,
    /// Its tokens in order (empty for transactions rejected at intake).
    pub tokens: Vec<TokenRef>,
    /// SHA-256 of the bytes it was submitted with (`None` for records of an older schema).
    pub submission: Option<[u8; 32]>,
}

/// The per-user scalar state (SPEC §4): everything except the queue's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// The user.
    pub user: Pubkey,
    /// Compare-and-swap version, bumped by every write.
    pub version: u64,
    /// Model, scale, W0,u, current W and γ.
    pub trust: TrustState,
    /// W = 0 (or zero trust): new transactions are refused.
    pub suspended: bool,
    /// Tokens accepted and not yet in a block (delivered and held).
    pub queued_tokens: u64,
    /// Transactions accepted and not yet in a block.
    pub queued_transactions: u64,
    /// The block under verification, if any.
    pub pending_block: Option<u64>,
    /// The next per-user transaction sequence number.
    pub next_seq: u64,
    /// Blocks the chain found valid.
    pub blocks_valid: u64,
    /// Blocks with at least one invalid token.
    pub blocks_invalid: u64,
    /// Misbehaviour detected at intake (double spending, forged tokens).
    pub misbehaviour_count: u64,
    /// Long-run realized risk Σ Rsk_n (eqs. 10–12) in base units: loss − margin summed over the
    /// user's decided blocks (negative: the auditor gained).
    pub risk_total: i128,
    /// Tokens delivered (paid to vendors) in total.
    pub tokens_delivered: u64,
    /// Value refunded to the user in total.
    pub refunded_total: u64,
}

/// A block of tokens sent to the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The auditor's block id (the on-chain `Block` PDA seed).
    pub block_id: u64,
    /// Whose tokens it holds.
    pub user: Pubkey,
    /// Sequence number of the transaction waiting on it (none for a block flushed at
    /// suspension).
    pub waiting_seq: Option<u64>,
    /// Tokens in the block.
    pub token_count: u64,
    /// W_{i−1}, the block size in force when it was formed.
    pub block_size: u64,
    /// The applied outcome, as JSON (the processed-decision marker); `None` while pending.
    pub outcome: Option<String>,
}

/// A vendor's payout account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VendorAccount {
    /// Σ v·(1−ρ) accrued for delivered tokens.
    pub accrued: u64,
    /// Paid on-chain by completed settlement batches.
    pub settled: u64,
    /// Reserved by settlement batches not completed yet.
    pub in_flight: u64,
    /// Times the vendor presented a transaction id already seen (double selling).
    pub double_sellings: u64,
}

impl VendorAccount {
    /// `accrued − settled − in_flight`: what a new settlement batch may take.
    pub fn settleable(&self) -> u64 {
        self.accrued
            .saturating_sub(self.settled)
            .saturating_sub(self.in_flight)
    }
}

/// State of a settlement batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettlementStatus {
    /// Reserved; the transfers may or may not have been sent.
    InFlight,
    /// Paid on-chain.
    Completed,
    /// Given up; amounts returned to the settleable balance.
    Aborted,
}

/// A settlement batch under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBatch {
    /// Idempotency key (the settlement uses the hex of the batch digest).
    pub key: String,
    /// The payout sequence number the batch consumes on-chain.
    pub seq: u64,
    /// Status.
    pub status: SettlementStatus,
    /// Items, ordered by vendor key.
    pub items: Vec<VendorPayout>,
    /// The transaction last signed for it (kept so that it can be sent again after a crash).
    pub signed: Option<SignedPayout>,
    /// The on-chain reference once completed.
    pub reference: Option<String>,
}

impl SettlementBatch {
    /// Whether closing this batch — completing it (`completing`, paid on-chain) or aborting it
    /// — has anything to write: `Ok(true)` while it is in flight; `Ok(false)` when it is already
    /// closed that way (the call is idempotent); an error when it was closed the other way.
    /// Every store applies this one rule.
    ///
    /// # Errors
    /// [`super::StoreError::Settlement`]: completing an aborted batch, aborting a completed one.
    pub fn needs_closing(&self, completing: bool) -> Result<bool, super::StoreError> {
        let refused = |reason: &str| super::StoreError::Settlement {
            key: self.key.clone(),
            reason: reason.into(),
        };
        match (self.status, completing) {
            (SettlementStatus::InFlight, _) => Ok(true),
            (SettlementStatus::Completed, true) | (SettlementStatus::Aborted, false) => Ok(false),
            (SettlementStatus::Aborted, true) => {
                Err(refused("was aborted; start a new batch with a new key"))
            }
            (SettlementStatus::Completed, false) => Err(refused(
                "is completed (paid on-chain) and cannot be aborted",
            )),
        }
    }
}

/// Kinds of misbehaviour detected at intake (beyond the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MisbehaviourKind {
    /// The user presented tokens the auditor has already seen.
    DoubleSpending,
    /// The vendor presented a transaction id already seen.
    DoubleSelling,
    /// A token's bank signature failed.
    ForgedToken,
}

impl MisbehaviourKind {
    /// Database code.
    pub const fn code(self) -> u8 {
        match self {
            MisbehaviourKind::DoubleSpending => 0,
            MisbehaviourKind::DoubleSelling => 1,
            MisbehaviourKind::ForgedToken => 2,
        }
    }

    /// From a database code.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => MisbehaviourKind::DoubleSpending,
            1 => MisbehaviourKind::DoubleSelling,
            2 => MisbehaviourKind::ForgedToken,
            _ => return None,
        })
    }
}

/// A misbehaviour record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisbehaviourRecord {
    /// What happened.
    pub kind: MisbehaviourKind,
    /// The user of the transaction.
    pub user: Pubkey,
    /// The vendor that presented it.
    pub vendor: Pubkey,
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// Offending tokens (0 for double selling).
    pub tokens: u64,
}

/// A write of the per-user state, guarded by compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWrite {
    /// The new state; the store writes it with `version = expected_version + 1` (or 0 for a new
    /// user) — the engine sets `state.version` accordingly.
    pub state: UserState,
    /// `None`: the user must not exist yet. `Some(v)`: the stored version must be `v`.
    pub expected_version: Option<u64>,
}

/// Everything one engine step changes, written by [`super::Store::apply`] in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeSet {
    /// Per-user state (compare-and-swap).
    pub user: Option<UserWrite>,
    /// New transactions (with their tokens).
    pub new_transactions: Vec<TransactionRecord>,
    /// Status / block changes of stored transactions: (user, seq, status, block id, payout).
    pub transaction_updates: Vec<TransactionUpdate>,
    /// Tokens to mark as seen (a token already marked is a [`super::StoreError::Conflict`]).
    pub seen_tokens: Vec<TokenId>,
    /// Tokens to forget (returned unused to the user: a held transaction rejected before any block).
    pub released_tokens: Vec<TokenId>,
    /// A newly formed block.
    pub new_block: Option<BlockRecord>,
    /// Claims block id `n` (the store's counter must equal `n`; it becomes `n + 1`).
    pub block_id_claim: Option<u64>,
    /// A block's outcome (JSON): must still be pending; written as its processed marker.
    pub block_decided: Option<(u64, String)>,
    /// Vendor payout accruals (relative increments).
    pub vendor_credits: Vec<VendorPayout>,
    /// Vendors flagged for double selling (relative increments of their counter).
    pub vendor_flags: Vec<Pubkey>,
    /// User refunds (relative increments): (user, amount).
    pub user_refunds: Vec<(Pubkey, u64)>,
    /// Misbehaviour records to append.
    pub misbehaviour: Vec<MisbehaviourRecord>,
}

/// A change to one stored transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionUpdate {
    /// The user.
    pub user: Pubkey,
    /// The transaction's per-user sequence number.
    pub seq: u64,
    /// The new status.
    pub status: TransactionStatus,
    /// The block it now belongs to.
    pub block_id: Option<u64>,
    /// The payout accrued for it.
    pub payout: u64,
}
