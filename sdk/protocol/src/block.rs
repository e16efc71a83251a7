//! A block of tokens as the auditor sends it to the chain, and the port the engine verifies
//! blocks through (paper Fig. 1, messages 6/7; SPEC §4 "Block management").
//!
//! [`BlockVerifier`] is implemented by the chain crate's `ChainVerifier` (the µPIB program on a
//! ledger) and by the auditor crate's `SimulatedChain` (ground truth, for the simulation and
//! fast tests).

use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::token::TokenRef;
use crate::transaction::MAX_TOKENS_PER_TRANSACTION;
use crate::Pubkey;

/// Most tokens the program verifies in one block (`mupib::constants::MAX_BLOCK_TOKENS`; the
/// chain crate asserts they are equal).
pub const MAX_BLOCK_TOKENS: u64 = 10_000;

/// The largest initial block size W0 whose blocks the chain can always verify: a block holds
/// the queue (below W ≤ W0) plus the transaction that reaches W, of at most
/// [`MAX_TOKENS_PER_TRANSACTION`] tokens, so W0 − 1 + 128 ≤ [`MAX_BLOCK_TOKENS`].
pub const MAX_INITIAL_BLOCK_SIZE: u64 = MAX_BLOCK_TOKENS + 1 - MAX_TOKENS_PER_TRANSACTION as u64;

/// A block formed by the engine, ready for the chain (block id, user, entries in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSubmission {
    /// The auditor's block id.
    pub block_id: u64,
    /// Whose tokens these are.
    pub user: Pubkey,
    /// The tokens in block order (transactions in arrival order, tokens in transaction order).
    pub entries: Vec<TokenRef>,
}

/// Errors of a chain backend.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The chain could not be reached or refused the block; the block stays pending in the
    /// store and can be resubmitted (`Auditor::resume`): verification is idempotent on-chain.
    #[error(
        "block {block_id} could not be verified: {reason}; it stays pending, resubmit it later"
    )]
    Unavailable {
        /// The block.
        block_id: u64,
        /// What went wrong.
        reason: String,
    },
}

/// What the chain answered for a block: one decision per entry, in order, and what its escrows
/// paid the auditor for it (the program's `Block.amount_paid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockVerification {
    /// One decision per entry, in block order.
    pub decisions: Vec<Decision>,
    /// Base units the escrows paid the auditor for the block's valid tokens.
    pub amount_paid: u64,
}

/// Submits a block and returns the chain's verification (messages 6/7).
pub trait BlockVerifier {
    /// Verifies `block`. Must be idempotent per block id (the program skips positions already
    /// decided), so a block resubmitted after a crash gets the same decisions and payment.
    fn verify(&mut self, block: &BlockSubmission) -> Result<BlockVerification, VerifierError>;
}
