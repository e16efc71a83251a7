//! One event per state change, carrying the amounts and the post-state.
//!
//! On the real chain events are emitted with `emit!` (`sol_log_data`, a `Program data: <base64>`
//! log line). Natively (the embedded ledger, tests) neither `sol_log_data` nor `msg!` reach the
//! bank's log collector, so [`emit_event`] writes the same base64 payload through the runtime's
//! syscall stubs (`sol_log`), where it appears as `Program log: Program data: <base64>`;
//! decoders accept both forms.

use anchor_lang::prelude::*;

/// Emits `event` (see the module documentation for the native form).
pub fn emit_event<E: anchor_lang::Event>(event: E) {
    #[cfg(target_os = "solana")]
    {
        emit!(event);
    }
    #[cfg(not(target_os = "solana"))]
    {
        use anchor_lang::__private::base64::{engine::general_purpose::STANDARD, Engine};
        let line = format!(
            "Program data: {}",
            STANDARD.encode(anchor_lang::Event::data(&event))
        );
        solana_sysvar::program_stubs::sol_log(&line);
    }
}

/// `config_init`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigInitialized {
    /// Admin key.
    pub admin: Pubkey,
    /// Payment mint.
    pub mint: Pubkey,
}

/// `config_set_paused`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PausedSet {
    /// Post-state of the pause switch.
    pub paused: bool,
    /// Post-state: unix time of the last resume (0 if never resumed).
    pub resumed_at: i64,
}

/// `bank_register`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankRegistered {
    /// Bank key.
    pub bank: Pubkey,
}

/// `bank_set_active`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankActiveSet {
    /// Bank key.
    pub bank: Pubkey,
    /// Post-state.
    pub active: bool,
}

/// `auditor_register`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditorRegistered {
    /// Auditor key.
    pub auditor: Pubkey,
}

/// `auditor_set_active`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditorActiveSet {
    /// Auditor key.
    pub auditor: Pubkey,
    /// Post-state.
    pub active: bool,
}

/// `batch_create`: the batch exists and its escrow holds `escrow_amount`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchCreated {
    /// Batch PDA.
    pub batch: Pubkey,
    /// Bank.
    pub bank: Pubkey,
    /// The auditor the batch is bound to (the only one that may redeem its tokens).
    pub auditor: Pubkey,
    /// Batch id.
    pub batch_id: u64,
    /// Number of tokens.
    pub token_count: u32,
    /// Value per token.
    pub value: u64,
    /// Issue time.
    pub issued_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Escrow balance after funding (`token_count × value`).
    pub escrow_amount: u64,
}

/// `batch_publish`: commitments `[start, start + count)` written.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPublished {
    /// Batch PDA.
    pub batch: Pubkey,
    /// First serial written.
    pub start: u32,
    /// Number of commitments written.
    pub count: u32,
    /// Post-state: commitments written so far.
    pub published: u32,
}

/// `batch_seal`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSealed {
    /// Batch PDA.
    pub batch: Pubkey,
    /// Number of tokens now redeemable.
    pub token_count: u32,
}

/// `batch_close`: unspent escrow and rent returned to the bank.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchClosed {
    /// Batch PDA (now closed).
    pub batch: Pubkey,
    /// Bank.
    pub bank: Pubkey,
    /// Batch id.
    pub batch_id: u64,
    /// Tokens spent over the batch's life.
    pub spent_count: u32,
    /// Unspent escrow amount returned to the bank's token account.
    pub refunded_amount: u64,
}

/// `payout_record`: the auditor's settlement batch `seq` landed (its SPL transfers are in the
/// same transaction).
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRecorded {
    /// The auditor.
    pub auditor: Pubkey,
    /// The batch's sequence number (post-state: the next batch must carry `seq + 1`).
    pub seq: u64,
    /// The batch's digest, now `AuditorRegistration.payout_digest`.
    pub digest: [u8; 32],
}

/// `block_open`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOpened {
    /// Block PDA.
    pub block: Pubkey,
    /// Auditor.
    pub auditor: Pubkey,
    /// User.
    pub user: Pubkey,
    /// Block id.
    pub block_id: u64,
    /// Number of positions.
    pub token_count: u32,
}

/// `block_verify_chunk`: the decisions of positions `[start, start + decisions.len())`.
/// A position that was already decided before this chunk is reported with its earlier decision
/// and is not counted again in the chunk counts or `amount_paid`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockChunkVerified {
    /// Block PDA.
    pub block: Pubkey,
    /// First position of the chunk.
    pub start: u32,
    /// Decision byte per position of the chunk (`DECISION_*`).
    pub decisions: Vec<u8>,
    /// Positions newly decided valid in this chunk.
    pub valid: u32,
    /// Positions newly decided altered in this chunk.
    pub altered: u32,
    /// Positions newly decided duplicate in this chunk.
    pub duplicate: u32,
    /// Positions newly decided unpublished in this chunk.
    pub unpublished: u32,
    /// Amount paid to the auditor by this chunk.
    pub amount_paid: u64,
    /// Post-state: positions decided in the block.
    pub decided: u32,
    /// Post-state: total paid for the block.
    pub block_amount_paid: u64,
}

/// `block_finalize`: the block's final counts.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFinalized {
    /// Block PDA.
    pub block: Pubkey,
    /// Auditor.
    pub auditor: Pubkey,
    /// User.
    pub user: Pubkey,
    /// Block id.
    pub block_id: u64,
    /// Number of positions.
    pub token_count: u32,
    /// Valid tokens.
    pub valid: u32,
    /// Altered tokens.
    pub altered: u32,
    /// Duplicate tokens.
    pub duplicate: u32,
    /// Unpublished tokens.
    pub unpublished: u32,
    /// Total paid for the block.
    pub amount_paid: u64,
}

/// `block_close`.
#[event]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockClosed {
    /// Block PDA (now closed).
    pub block: Pubkey,
    /// Auditor that received the rent.
    pub auditor: Pubkey,
}
