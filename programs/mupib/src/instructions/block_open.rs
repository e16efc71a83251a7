//! `block_open(block_id, user, token_count)`: a registered auditor creates a `Block` whose
//! `token_count` positions are all undecided.

use anchor_lang::prelude::*;

use crate::constants::{
    DECISION_UNDECIDED, MAX_BLOCK_TOKENS, SEED_AUDITOR, SEED_BLOCK, SEED_CONFIG,
};
use crate::error::MupibError;
use crate::events::{emit_event, BlockOpened};
use crate::state::{AuditorRegistration, Block, BlockState, Config, BLOCK_HEADER_LEN};

/// Arguments of `block_open`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlockOpenArgs {
    /// Auditor-chosen id, part of the PDA seeds.
    pub block_id: u64,
    /// The user whose tokens the block holds.
    pub user: Pubkey,
    /// Number of positions, `1 ..= MAX_BLOCK_TOKENS`.
    pub token_count: u32,
}

/// Accounts of `block_open`.
#[derive(Accounts)]
#[instruction(args: BlockOpenArgs)]
pub struct BlockOpen<'info> {
    /// The auditor, pays the rent.
    #[account(mut)]
    pub auditor: Signer<'info>,
    /// `["config"]`.
    #[account(seeds = [SEED_CONFIG], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// `["auditor", auditor]`: the auditor must be registered and active.
    #[account(
        mut,
        seeds = [SEED_AUDITOR, auditor.key().as_ref()],
        bump = auditor_registration.bump,
        has_one = auditor,
    )]
    pub auditor_registration: Account<'info, AuditorRegistration>,
    /// `["block", auditor, block_id_le]`, created here.
    #[account(
        init,
        payer = auditor,
        space = Block::space_for_create(args.token_count),
        seeds = [SEED_BLOCK, auditor.key().as_ref(), args.block_id.to_le_bytes().as_ref()],
        bump,
    )]
    pub block: AccountLoader<'info, Block>,
    /// System program.
    pub system_program: Program<'info, System>,
}

impl BlockOpen<'_> {
    /// Checks pause, auditor status and the block size.
    pub fn validate(&self, args: &BlockOpenArgs) -> Result<()> {
        self.config.require_not_paused()?;
        self.auditor_registration.require_active()?;
        require!(
            args.token_count >= 1 && args.token_count <= MAX_BLOCK_TOKENS,
            MupibError::BlockTokenCountOutOfRange
        );
        Ok(())
    }

    /// Creates the block with every position undecided.
    pub fn block_open(ctx: Context<Self>, args: BlockOpenArgs) -> Result<()> {
        ctx.accounts.validate(&args)?;
        let accounts = &mut *ctx.accounts;
        {
            let mut block = accounts.block.load_init()?;
            *block = Block {
                auditor: accounts.auditor.key(),
                user: args.user,
                block_id: args.block_id,
                amount_paid: 0,
                token_count: args.token_count,
                decided: 0,
                valid_count: 0,
                altered_count: 0,
                duplicate_count: 0,
                unpublished_count: 0,
                state: BlockState::Open.into(),
                bump: ctx.bumps.block,
                reserved: [0; 6],
            };
            block.invariant()?;
        }
        {
            // The discriminator is written on exit, so the decision bytes are set through the raw
            // data.
            let block_info = accounts.block.to_account_info();
            let mut data = block_info.try_borrow_mut_data()?;
            let end = Block::space(args.token_count);
            data.get_mut(BLOCK_HEADER_LEN..end)
                .ok_or(error!(MupibError::BlockDataInvalid))?
                .fill(DECISION_UNDECIDED);
        }
        let registration = &mut accounts.auditor_registration;
        registration.record_block_opened()?;
        registration.invariant()?;

        emit_event(BlockOpened {
            block: accounts.block.key(),
            auditor: accounts.auditor.key(),
            user: args.user,
            block_id: args.block_id,
            token_count: args.token_count,
        });
        Ok(())
    }
}
