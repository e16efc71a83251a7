//! µPIB on-chain program: token commitments, spent flags, SPL escrow and block verification.
//!
//! Accounts and instructions are listed in `docs/DESIGN.md`; SPEC §3 gives the requirements.
//! Each instruction lives in `instructions/<noun>_<verb>.rs`; this file only dispatches.
#![deny(arithmetic_overflow)]
// Anchor's macros expand to cfgs and items this lint does not know about.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod commitment;
pub mod constants;
pub mod error;
pub mod events;
pub mod instructions;
pub mod state;

#[cfg(not(target_os = "solana"))]
pub mod native;

pub use commitment::commitment;
pub use instructions::*;

declare_id!("MuP1BmWzjKhs4QGqHpE7w5ZQd9yDVD8dy4xm3mKAkLE");

/// The program's instructions (one-line dispatch each).
#[program]
pub mod mupib {
    use super::*;

    /// Creates `Config`; the signer becomes the admin.
    pub fn config_init(ctx: Context<ConfigInit>, args: ConfigInitArgs) -> Result<()> {
        ConfigInit::config_init(ctx, args)
    }

    /// Pauses or resumes publishing and verification.
    pub fn config_set_paused(
        ctx: Context<ConfigSetPaused>,
        args: ConfigSetPausedArgs,
    ) -> Result<()> {
        ConfigSetPaused::config_set_paused(ctx, args)
    }

    /// Registers a bank.
    pub fn bank_register(ctx: Context<BankRegister>, args: BankRegisterArgs) -> Result<()> {
        BankRegister::bank_register(ctx, args)
    }

    /// Activates or deactivates a bank.
    pub fn bank_set_active(ctx: Context<BankSetActive>, args: BankSetActiveArgs) -> Result<()> {
        BankSetActive::bank_set_active(ctx, args)
    }

    /// Registers an auditor.
    pub fn auditor_register(
        ctx: Context<AuditorRegister>,
        args: AuditorRegisterArgs,
    ) -> Result<()> {
        AuditorRegister::auditor_register(ctx, args)
    }

    /// Activates or deactivates an auditor.
    pub fn auditor_set_active(
        ctx: Context<AuditorSetActive>,
        args: AuditorSetActiveArgs,
    ) -> Result<()> {
        AuditorSetActive::auditor_set_active(ctx, args)
    }

    /// Creates a batch and its funded escrow.
    pub fn batch_create(ctx: Context<BatchCreate>, args: BatchCreateArgs) -> Result<()> {
        BatchCreate::batch_create(ctx, args)
    }

    /// Writes a chunk of commitments.
    pub fn batch_publish(ctx: Context<BatchPublish>, args: BatchPublishArgs) -> Result<()> {
        BatchPublish::batch_publish(ctx, args)
    }

    /// Seals a fully published batch.
    pub fn batch_seal(ctx: Context<BatchSeal>) -> Result<()> {
        BatchSeal::batch_seal(ctx)
    }

    /// Closes a spent or unsealed batch, or an expired one after its grace period; escrow and
    /// rent back to the bank.
    pub fn batch_close(ctx: Context<BatchClose>) -> Result<()> {
        BatchClose::batch_close(ctx)
    }

    /// Opens a block.
    pub fn block_open(ctx: Context<BlockOpen>, args: BlockOpenArgs) -> Result<()> {
        BlockOpen::block_open(ctx, args)
    }

    /// Decides a chunk of a block and pays its valid tokens.
    pub fn block_verify_chunk<'info>(
        ctx: Context<'info, BlockVerifyChunk<'info>>,
        args: BlockVerifyChunkArgs,
    ) -> Result<()> {
        BlockVerifyChunk::block_verify_chunk(ctx, args)
    }

    /// Marks a fully decided block verified.
    pub fn block_finalize(ctx: Context<BlockFinalize>) -> Result<()> {
        BlockFinalize::block_finalize(ctx)
    }

    /// Closes a verified block; rent back to the auditor.
    pub fn block_close(ctx: Context<BlockClose>) -> Result<()> {
        BlockClose::block_close(ctx)
    }

    /// Records that the auditor's settlement batch `seq` lands (with its transfers).
    pub fn payout_record(ctx: Context<PayoutRecord>, args: PayoutRecordArgs) -> Result<()> {
        PayoutRecord::payout_record(ctx, args)
    }
}
