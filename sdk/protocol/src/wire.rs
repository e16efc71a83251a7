//! The auditor service's HTTP wire types (paper Fig. 1, messages 3–5 and 8/9): what the service
//! sends and what its clients (`VendorClient`, the `mupib` commands) read. One definition, used
//! on both sides.
//!
//! Every failed request answers [`ErrorBody`]: `{ "error": { "code", "message" } }`. Request
//! bodies ([`RevokeRequest`], and `PaymentTransaction` in `crate::transaction`) refuse unknown
//! fields.

use serde::{Deserialize, Serialize};

use crate::cert::b58;
use crate::decision::DecisionCounts;
use crate::response::AuditorResponse;
use crate::trust::{TrustModel, TrustUpdate};
use crate::Pubkey;

/// Longest long-poll the service grants in one request (seconds); longer waits loop.
pub const MAX_LONG_POLL_SECS: u64 = 60;

/// The service's answer about one transaction: the signed response and whether it is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitAnswer {
    /// The auditor's signed response.
    pub response: AuditorResponse,
    /// `true` for deliver and reject (nothing will change), `false` for wait.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// One entry of a batch submission's answer: an answer or an error, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchItem {
    /// The transaction was answered.
    Answered(SubmitAnswer),
    /// The transaction was refused before the engine saw it.
    Refused(ErrorBody),
}

/// The JSON error body of every failed request: `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `malformed_json`, `payload_too_large`, `unknown_identity`.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// What the auditor discloses about a user (trust, block size, suspension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    /// The user.
    #[serde(with = "b58::pubkey")]
    pub user: Pubkey,
    /// Trust model e (`neutral`, `optimistic`, `pessimistic`).
    pub trust_model: TrustModel,
    /// Trust T_e(γ) now (paper eqs. 3–5).
    pub trust: f64,
    /// Current block size W.
    pub block_size: u64,
    /// W0,u.
    pub initial_block_size: u64,
    /// γ, cumulative invalid tokens.
    pub invalid_total: u64,
    /// Suspended (W = 0): new payments are refused.
    pub suspended: bool,
    /// Tokens queued in the block under construction.
    pub queued_tokens: u64,
    /// The block under verification, if any.
    pub pending_block: Option<u64>,
    /// Blocks verified valid.
    pub blocks_valid: u64,
    /// Blocks with invalid tokens.
    pub blocks_invalid: u64,
    /// Misbehaviour detected at intake.
    pub misbehaviour_count: u64,
    /// Refunds owed to the user, in base units.
    pub refunded_total: u64,
}

/// A vendor's payout account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VendorView {
    /// The vendor.
    pub vendor: String,
    /// Σ payouts accrued, v·(1−ρ) per delivered token.
    pub accrued: u64,
    /// Paid on-chain.
    pub settled: u64,
    /// Reserved in a settlement batch not yet confirmed.
    pub in_flight: u64,
    /// Still to pay.
    pub settleable: u64,
    /// Times this vendor presented a transaction twice (flagged).
    pub double_sellings: u64,
}

/// A transaction's trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransactionTrace {
    /// The id.
    pub transaction_id: String,
    /// The user.
    pub user: String,
    /// The vendor.
    pub vendor: String,
    /// `delivered`, `waiting`, `held` or `rejected`.
    pub status: String,
    /// For `rejected`, the reason code.
    pub reject_code: Option<String>,
    /// The block it is in.
    pub block_id: Option<u64>,
    /// Σ token values.
    pub amount: u64,
    /// The vendor payout accrued.
    pub payout: u64,
    /// Its tokens (`bank:batch:serial`; empty when rejected at intake).
    pub tokens: Vec<String>,
    /// The current signed answer.
    pub answer: Option<SubmitAnswer>,
}

/// One use of a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenUse {
    /// The transaction that carried it.
    pub transaction_id: String,
    /// That transaction's status.
    pub status: String,
    /// Its block.
    pub block_id: Option<u64>,
    /// The chain's decision for the token, once its block is verified.
    pub decision: Option<String>,
}

/// A token's trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenTrace {
    /// `bank:batch:serial`.
    pub token: String,
    /// Seen at intake (a second use is double spending).
    pub seen: bool,
    /// Accepted transactions that carried it.
    pub uses: Vec<TokenUse>,
}

/// A block's trace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockTrace {
    /// The block id.
    pub block_id: u64,
    /// Its user.
    pub user: String,
    /// `pending` or `verified`.
    pub state: String,
    /// Tokens in it.
    pub token_count: u64,
    /// W when it formed.
    pub block_size: u64,
    /// Its transactions in block order.
    pub transactions: Vec<TransactionTrace>,
    /// Decision counts once verified.
    pub decisions: Option<DecisionCounts>,
    /// Invalid tokens and their decisions (`bank:batch:serial` → name).
    pub invalid: Vec<(String, String)>,
    /// The eq. 7 update once verified.
    pub trust: Option<TrustUpdate>,
    /// Realized risk in base units (as text: i128).
    pub risk: Option<String>,
    /// What the escrows paid the auditor for the block, once verified.
    #[serde(default)]
    pub amount_paid: Option<u64>,
    /// What the block's valid tokens are worth (Σ v); differs from `amount_paid` only in an
    /// alarm (`payment_mismatch`).
    #[serde(default)]
    pub expected_paid: Option<u64>,
    /// ALARM: the chain paid a different amount than the valid tokens are worth.
    #[serde(default)]
    pub payment_mismatch: bool,
}

/// The service's status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusView {
    /// The auditor's key.
    pub auditor: String,
    /// Blocks formed but not decided yet.
    pub pending_blocks: Vec<u64>,
    /// The next block id.
    pub next_block_id: u64,
    /// Vendors owed money not yet settled: (vendor, amount).
    pub pending_payouts: Vec<(String, u64)>,
    /// The most recent settlement batches: (key, signature, done).
    pub settlements: Vec<(String, Option<String>, bool)>,
    /// Why the last settlement run stopped early, in words (`None`: it went through).
    #[serde(default)]
    pub settlement_blocked: Option<String>,
    /// Vendors the last settlement run could not pay: (vendor, amount, reason).
    #[serde(default)]
    pub unpayable_vendors: Vec<(String, u64, String)>,
    /// Misbehaviour records.
    pub misbehaviour: usize,
}

/// `POST /v1/registry/revoke` (operator only): revoke a key at once, for every new request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The key to revoke (base58).
    #[serde(with = "b58::pubkey")]
    pub key: Pubkey,
}

/// The answer to a [`RevokeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeAnswer {
    /// The revoked key.
    #[serde(with = "b58::pubkey")]
    pub key: Pubkey,
    /// `false` if the key was already revoked.
    pub newly_revoked: bool,
    /// Whether the revocation is kept across restarts (the service has a data directory).
    pub durable: bool,
}
