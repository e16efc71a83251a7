//! The engine's errors. None of them leaves a partial write behind.

use mupib_protocol::block::VerifierError;
use mupib_protocol::money::MoneyError;
use mupib_protocol::risk::RiskError;
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::trust::TrustError;
use mupib_protocol::Pubkey;

use crate::store::StoreError;

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
