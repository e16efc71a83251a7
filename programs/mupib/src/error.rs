//! The program's errors (Anchor custom codes from 6000, in this order).

use anchor_lang::prelude::*;

/// Every error the µPIB program returns. Each message says what was wrong and what to do.
#[error_code]
pub enum MupibError {
    /// 6000
    #[msg("The program is paused by the admin: publishing and verification are suspended; retry after it is resumed")]
    Paused,
    /// 6001
    #[msg("The signer is not the program admin recorded in Config")]
    NotAdmin,
    /// 6002
    #[msg("The bank is not registered as active: ask the admin to register or re-activate it")]
    BankInactive,
    /// 6003
    #[msg("The auditor is not registered as active: ask the admin to register or re-activate it")]
    AuditorInactive,
    /// 6004
    #[msg("The token account's mint is not the payment mint recorded in Config")]
    WrongMint,
    /// 6005
    #[msg("The token account is not owned by the expected key (bank or auditor)")]
    WrongTokenAccountOwner,
    /// 6006
    #[msg("token_count must be between 1 and MAX_BATCH_TOKENS (629): split the tokens into several batches")]
    BatchTokenCountOutOfRange,
    /// 6007
    #[msg("Token value must be greater than zero")]
    ZeroTokenValue,
    /// 6008
    #[msg("expires_at must be later than issued_at and than the current time")]
    InvalidExpiry,
    /// 6009
    #[msg("Arithmetic overflow in an amount or a count: use smaller values")]
    ArithmeticOverflow,
    /// 6010
    #[msg("batch_id must not be lower than the bank's next_batch_id: batch ids are never reused")]
    BatchIdReused,
    /// 6011
    #[msg("The batch is already sealed: its commitments can no longer change")]
    BatchSealed,
    /// 6012
    #[msg("Commitments must be written in order: start must equal the batch's published count")]
    PublishOutOfOrder,
    /// 6013
    #[msg("The commitments go past the batch's token_count")]
    PublishPastRange,
    /// 6014
    #[msg("No commitments or entries given: send at least one")]
    EmptyChunk,
    /// 6015
    #[msg("The batch cannot be sealed before every commitment is written")]
    BatchIncomplete,
    /// 6016
    #[msg("The batch cannot be closed yet: it has not expired and not every token is spent; it becomes closable BATCH_CLOSE_GRACE_SECS (2 days) after max(expires_at, Config.resumed_at)")]
    BatchNotClosable,
    /// 6017
    #[msg("The account data is not a valid Batch")]
    BatchDataInvalid,
    /// 6018
    #[msg("The account data is not a valid Block")]
    BlockDataInvalid,
    /// 6019
    #[msg("token_count must be between 1 and MAX_BLOCK_TOKENS (10000): split the block")]
    BlockTokenCountOutOfRange,
    /// 6020
    #[msg("Only the auditor that opened this block may feed, finalize or close it")]
    NotBlockAuditor,
    /// 6021
    #[msg("The block is not open: it was already finalized")]
    BlockNotOpen,
    /// 6022
    #[msg("The block is not verified yet: finalize it before closing")]
    BlockNotVerified,
    /// 6023
    #[msg("The chunk's positions go past the block's token_count")]
    ChunkPastRange,
    /// 6024
    #[msg("Some positions of the block are still undecided: feed them before finalizing")]
    BlockIncomplete,
    /// 6025
    #[msg(
        "Remaining accounts must come in (batch, escrow) pairs, at most MAX_BATCHES_PER_CHUNK (16)"
    )]
    RemainingAccountsMalformed,
    /// 6026
    #[msg("An entry's batch_index points past the (batch, escrow) pairs given")]
    BatchIndexOutOfRange,
    /// 6027
    #[msg("The same batch account is given twice in one chunk: pass each batch once")]
    DuplicateBatchAccount,
    /// 6028
    #[msg("The escrow account is not the batch's escrow PDA [\"escrow\", batch]")]
    WrongEscrow,
    /// 6029
    #[msg("A sealed batch used for payment must be passed writable")]
    BatchNotWritable,
    /// 6030
    #[msg("An account invariant does not hold: this is a program bug, report it")]
    InvariantViolated,
    /// 6031
    #[msg("The payout batch's seq is not the auditor's next payout_seq: that batch already landed, or an earlier one has not; read AuditorRegistration.payout_seq and sign the batch with it")]
    PayoutSeqMismatch,
    /// 6032
    #[msg("A sealed batch with unspent tokens cannot be closed while the program is paused (verification is suspended): it becomes closable BATCH_CLOSE_GRACE_SECS (2 days) after max(expires_at, the time the admin resumes the program)")]
    BatchClosePaused,
    /// 6033
    #[msg("The batch has expired but is in its close grace period, so blocks under verification can finish: it becomes closable once now > max(expires_at, Config.resumed_at) + BATCH_CLOSE_GRACE_SECS (2 days)")]
    BatchCloseGrace,
    /// 6034
    #[msg("The batch account is not the PDA [\"batch\", bank, auditor, batch_id] of the given auditor: pass the auditor the batch is bound to")]
    WrongBatchAuditor,
}
