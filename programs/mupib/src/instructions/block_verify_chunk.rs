//! `block_verify_chunk(start, entries)`: the auditor that opened a block has the chain decide
//! positions `[start, start + entries.len())`.
//!
//! Each undecided position is decided in the order of SPEC §2:
//! 1. `UNPUBLISHED` (`00`): the batch account is not a program-owned, sealed `Batch` at its PDA
//!    `["batch", bank, auditor, batch_id]` derived with the *block's* auditor (a batch bound to
//!    another auditor is unpublished for this one: copying token digests from another
//!    auditor's pending transaction redeems nothing), or `serial ≥ token_count`;
//! 2. `ALTERED` (`01`): `SHA-256(COMMITMENT_TAG || token_digest)[..16]` differs from the stored
//!    commitment;
//! 3. `DUPLICATE` (`10`): the spent bit is already set (spent earlier, or earlier in this block);
//! 4. `VALID` (`11`): the spent bit is set now and the token's value is paid.
//!
//! Valid tokens are aggregated per batch and paid with one SPL `transfer_checked` per batch from
//! the batch's escrow (signed by the batch PDA) to the auditor's token account, in the same
//! instruction as the spent bits: a token is paid exactly once. Already decided positions are
//! skipped, so replaying a chunk changes nothing and pays nothing.
//!
//! Remaining accounts: `(batch, escrow)` pairs; `TokenEntry::batch_index` is the pair index.
//! A batch that does not exist is passed as is (its tokens are `UNPUBLISHED`).
//!
//! Per token the program does one SHA-256 (over 35 bytes), reads 16 commitment bytes and one
//! bitmap byte, and writes at most one bitmap byte and one decision byte.

use anchor_lang::prelude::*;
use anchor_spl::token::{self, Mint, Token, TokenAccount, TransferChecked};

use crate::commitment::commitment;
use crate::constants::{
    DECISION_UNDECIDED, MAX_BATCHES_PER_CHUNK, SEED_AUDITOR, SEED_BATCH, SEED_CONFIG, SEED_ESCROW,
};
use crate::error::MupibError;
use crate::events::{emit_event, BlockChunkVerified};
use crate::state::decision::add_u32;
use crate::state::{
    commitment_at, is_spent, AuditorRegistration, Batch, Block, Config, Decision, DecisionCounts,
};

/// One token to verify: 21 bytes borsh-encoded.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    /// Index of the token's `(batch, escrow)` pair in the remaining accounts.
    pub batch_index: u8,
    /// The token's serial inside its batch.
    pub serial: u32,
    /// First 16 bytes of the token digest.
    pub token_digest: [u8; 16],
}

/// Serialized size of a [`TokenEntry`].
pub const TOKEN_ENTRY_LEN: usize = 21;

/// Arguments of `block_verify_chunk`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlockVerifyChunkArgs {
    /// Block position of `entries[0]`.
    pub start: u32,
    /// Tokens at positions `start, start + 1, …`.
    pub entries: Vec<TokenEntry>,
}

/// Accounts of `block_verify_chunk` (then the `(batch, escrow)` pairs as remaining accounts).
#[derive(Accounts)]
pub struct BlockVerifyChunk<'info> {
    /// The auditor that opened the block.
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
    /// The block being fed.
    #[account(mut, has_one = auditor @ MupibError::NotBlockAuditor)]
    pub block: AccountLoader<'info, Block>,
    /// `Config.mint`.
    #[account(address = config.mint @ MupibError::WrongMint)]
    pub mint: Account<'info, Mint>,
    /// The auditor's token account of `Config.mint`, credited for valid tokens.
    #[account(
        mut,
        constraint = auditor_token.mint == config.mint @ MupibError::WrongMint,
        constraint = auditor_token.owner == auditor.key() @ MupibError::WrongTokenAccountOwner,
    )]
    pub auditor_token: Account<'info, TokenAccount>,
    /// SPL Token program.
    pub token_program: Program<'info, Token>,
}

impl<'info> BlockVerifyChunk<'info> {
    /// Checks pause, auditor status and the shape of the remaining accounts; returns the
    /// number of `(batch, escrow)` pairs.
    pub fn validate(&self, remaining: &[AccountInfo]) -> Result<usize> {
        self.config.require_not_paused()?;
        self.auditor_registration.require_active()?;
        require!(
            remaining.len().is_multiple_of(2) && remaining.len() / 2 <= MAX_BATCHES_PER_CHUNK,
            MupibError::RemainingAccountsMalformed
        );
        let pairs = remaining.len() / 2;
        for i in 0..pairs {
            for j in (i + 1)..pairs {
                require_keys_neq!(
                    *remaining[2 * i].key,
                    *remaining[2 * j].key,
                    MupibError::DuplicateBatchAccount
                );
            }
        }
        Ok(pairs)
    }

    /// Decides the chunk, pays the valid tokens, records and emits the decisions.
    pub fn block_verify_chunk(ctx: Context<'info, Self>, args: BlockVerifyChunkArgs) -> Result<()> {
        let remaining = ctx.remaining_accounts;
        let pair_count = ctx.accounts.validate(remaining)?;
        require!(!args.entries.is_empty(), MupibError::EmptyChunk);

        let auditor_key = ctx.accounts.auditor.key();
        let mut pairs = Vec::with_capacity(pair_count);
        for pair in remaining.chunks_exact(2) {
            pairs.push(PairState::inspect(&pair[0], &pair[1], &auditor_key)?);
        }

        let block_info = ctx.accounts.block.to_account_info();
        let mut chunk_decisions = Vec::with_capacity(args.entries.len());
        let mut counts = DecisionCounts::default();
        let mut amount_paid = 0u64;
        let (decided, block_amount_paid) = {
            let mut data = block_info.try_borrow_mut_data()?;
            let (header, decisions) = Block::view_mut(&mut data)?;
            require!(header.is_open(), MupibError::BlockNotOpen);
            let count = u32::try_from(args.entries.len())
                .map_err(|_| error!(MupibError::ArithmeticOverflow))?;
            let end = args
                .start
                .checked_add(count)
                .ok_or(error!(MupibError::ArithmeticOverflow))?;
            require!(end <= header.token_count, MupibError::ChunkPastRange);

            let positions = decisions
                .get_mut(args.start as usize..end as usize)
                .ok_or(error!(MupibError::ChunkPastRange))?;
            for (slot, entry) in positions.iter_mut().zip(args.entries.iter()) {
                if *slot != DECISION_UNDECIDED {
                    chunk_decisions.push(*slot);
                    continue;
                }
                let index = usize::from(entry.batch_index);
                let pair = pairs
                    .get_mut(index)
                    .ok_or(error!(MupibError::BatchIndexOutOfRange))?;
                let decision = if pair.redeemable {
                    decide(&remaining[2 * index], entry)?
                } else {
                    Decision::Unpublished
                };
                if decision == Decision::Valid {
                    pair.paid_tokens = add_u32(pair.paid_tokens, 1)?;
                }
                counts.record(decision)?;
                *slot = decision.into();
                chunk_decisions.push(decision.into());
            }

            for pair in pairs.iter().filter(|pair| pair.paid_tokens > 0) {
                let amount = u64::from(pair.paid_tokens)
                    .checked_mul(pair.value)
                    .ok_or(error!(MupibError::ArithmeticOverflow))?;
                amount_paid = amount_paid
                    .checked_add(amount)
                    .ok_or(error!(MupibError::ArithmeticOverflow))?;
            }
            header.record_decisions(&counts, amount_paid)?;
            header.invariant()?;
            (header.decided, header.amount_paid)
        };

        let accounts = &mut *ctx.accounts;
        for (index, pair) in pairs.iter().enumerate() {
            if pair.paid_tokens == 0 {
                continue;
            }
            let amount = u64::from(pair.paid_tokens)
                .checked_mul(pair.value)
                .ok_or(error!(MupibError::ArithmeticOverflow))?;
            let batch_id_le = pair.batch_id.to_le_bytes();
            let bump_seed = [pair.bump];
            let signer_seeds: &[&[&[u8]]] = &[&[
                SEED_BATCH,
                pair.bank.as_ref(),
                auditor_key.as_ref(),
                &batch_id_le,
                &bump_seed,
            ]];
            token::transfer_checked(
                CpiContext::new_with_signer(
                    accounts.token_program.key(),
                    TransferChecked {
                        from: remaining[2 * index + 1].clone(),
                        mint: accounts.mint.to_account_info(),
                        to: accounts.auditor_token.to_account_info(),
                        authority: remaining[2 * index].clone(),
                    },
                    signer_seeds,
                ),
                amount,
                accounts.mint.decimals,
            )?;
        }

        let registration = &mut accounts.auditor_registration;
        registration.record_payment(counts.valid, amount_paid)?;
        registration.invariant()?;

        emit_event(BlockChunkVerified {
            block: block_info.key(),
            start: args.start,
            decisions: chunk_decisions,
            valid: counts.valid,
            altered: counts.altered,
            duplicate: counts.duplicate,
            unpublished: counts.unpublished,
            amount_paid,
            decided,
            block_amount_paid,
        });
        Ok(())
    }
}

/// What the chunk knows about one `(batch, escrow)` pair.
struct PairState {
    /// A program-owned, sealed `Batch` at its PDA: its tokens can be decided beyond `UNPUBLISHED`.
    redeemable: bool,
    bank: Pubkey,
    batch_id: u64,
    bump: u8,
    value: u64,
    /// Tokens of this batch decided valid by this chunk.
    paid_tokens: u32,
}

impl PairState {
    const UNPUBLISHED: PairState = PairState {
        redeemable: false,
        bank: Pubkey::new_from_array([0; 32]),
        batch_id: 0,
        bump: 0,
        value: 0,
        paid_tokens: 0,
    };

    /// Inspects a pair once per chunk: owner, discriminator, seal, PDA (bound to `auditor`),
    /// escrow PDA, writability.
    fn inspect(
        batch_info: &AccountInfo,
        escrow_info: &AccountInfo,
        auditor: &Pubkey,
    ) -> Result<PairState> {
        if batch_info.owner != &crate::ID {
            return Ok(Self::UNPUBLISHED);
        }
        let data = batch_info.try_borrow_data()?;
        let Ok(view) = Batch::view(&data) else {
            return Ok(Self::UNPUBLISHED);
        };
        let header = view.header;
        if !header.is_sealed() {
            return Ok(Self::UNPUBLISHED);
        }
        let batch_id_le = header.batch_id.to_le_bytes();
        let expected = Pubkey::create_program_address(
            &[
                SEED_BATCH,
                header.bank.as_ref(),
                auditor.as_ref(),
                &batch_id_le,
                &[header.bump],
            ],
            &crate::ID,
        );
        if expected.ok().as_ref() != Some(batch_info.key) {
            return Ok(Self::UNPUBLISHED);
        }
        let escrow = Pubkey::create_program_address(
            &[SEED_ESCROW, batch_info.key.as_ref(), &[header.escrow_bump]],
            &crate::ID,
        );
        require!(
            escrow.ok().as_ref() == Some(escrow_info.key),
            MupibError::WrongEscrow
        );
        require!(batch_info.is_writable, MupibError::BatchNotWritable);
        Ok(PairState {
            redeemable: true,
            bank: header.bank,
            batch_id: header.batch_id,
            bump: header.bump,
            value: header.value,
            paid_tokens: 0,
        })
    }
}

/// Decides one token of a redeemable batch, setting its spent bit if valid.
fn decide(batch_info: &AccountInfo, entry: &TokenEntry) -> Result<Decision> {
    let mut data = batch_info.try_borrow_mut_data()?;
    let mut view = Batch::view_mut(&mut data)?;
    if entry.serial >= view.header.token_count {
        return Ok(Decision::Unpublished);
    }
    let stored = commitment_at(view.commitments, entry.serial)
        .ok_or(error!(MupibError::BatchDataInvalid))?;
    if stored != commitment(&entry.token_digest).as_slice() {
        return Ok(Decision::Altered);
    }
    if is_spent(view.spent, entry.serial) {
        return Ok(Decision::Duplicate);
    }
    view.mark_spent(entry.serial)?;
    view.header.invariant()?;
    Ok(Decision::Valid)
}
