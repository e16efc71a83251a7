//! Every PDA seed, domain tag, decision code and size limit of the program.
//!
//! The SDK reuses these constants (PDA helpers, commitments, decoders), so a change here is a
//! change of the on-chain interface.

use anchor_lang::prelude::*;

/// Seed of the singleton [`crate::state::Config`] PDA: `["config"]`.
#[constant]
pub const SEED_CONFIG: &[u8] = b"config";
/// Seed prefix of a [`crate::state::BankRegistration`] PDA: `["bank", bank]`.
#[constant]
pub const SEED_BANK: &[u8] = b"bank";
/// Seed prefix of an [`crate::state::AuditorRegistration`] PDA: `["auditor", auditor]`.
#[constant]
pub const SEED_AUDITOR: &[u8] = b"auditor";
/// Seed prefix of a [`crate::state::Batch`] PDA: `["batch", bank, auditor, batch_id.to_le_bytes()]`.
/// The auditor in the seeds is the only one that may redeem the batch's tokens: for any other
/// auditor the batch's address is not the one its seeds derive, so its tokens are `UNPUBLISHED`.
#[constant]
pub const SEED_BATCH: &[u8] = b"batch";
/// Seed prefix of a batch's escrow token account PDA: `["escrow", batch]`.
#[constant]
pub const SEED_ESCROW: &[u8] = b"escrow";
/// Seed prefix of a [`crate::state::Block`] PDA: `["block", auditor, block_id.to_le_bytes()]`.
#[constant]
pub const SEED_BLOCK: &[u8] = b"block";

/// Domain tag of a token commitment: `commitment = SHA-256(COMMITMENT_TAG || token_digest16)[..16]`.
#[constant]
pub const COMMITMENT_TAG: &[u8] = b"mupib:commitment:v1";
/// Length in bytes of a truncated token digest and of a commitment.
pub const COMMITMENT_LEN: usize = 16;

/// Decision `00`: the token's batch is missing or not sealed, or its serial is outside the batch.
#[constant]
pub const DECISION_UNPUBLISHED: u8 = 0b00;
/// Decision `01`: the token digest does not match the bank's commitment.
#[constant]
pub const DECISION_ALTERED: u8 = 0b01;
/// Decision `10`: the token was already spent (earlier, or earlier in the same block).
#[constant]
pub const DECISION_DUPLICATE: u8 = 0b10;
/// Decision `11`: the token is valid; its spent flag is now set and its value paid.
#[constant]
pub const DECISION_VALID: u8 = 0b11;
/// Marker of a block position that has not been decided yet.
#[constant]
pub const DECISION_UNDECIDED: u8 = 0xFF;

/// [`crate::state::Block::state`]: the block is being fed with chunks.
pub const BLOCK_STATE_OPEN: u8 = 1;
/// [`crate::state::Block::state`]: every position is decided; the block can be closed.
pub const BLOCK_STATE_VERIFIED: u8 = 2;

/// Largest account a program may create through a CPI on the real chain
/// (`MAX_PERMITTED_DATA_INCREASE`). Native runs do not enforce it, so the program does.
pub const MAX_PDA_ACCOUNT_SIZE: usize = 10_240;

/// Anchor account discriminator length.
pub const DISCRIMINATOR_LEN: usize = 8;

/// Largest number of tokens in one batch: header + 16 bytes of commitment + 1 spent bit per
/// token must fit [`MAX_PDA_ACCOUNT_SIZE`] (629 tokens → 10 231 bytes).
pub const MAX_BATCH_TOKENS: u32 = 629;

/// Largest number of tokens in one block: header + one decision byte per position must fit
/// [`MAX_PDA_ACCOUNT_SIZE`].
pub const MAX_BLOCK_TOKENS: u32 = 10_000;

/// Largest number of `(batch, escrow)` pairs one verification chunk may reference.
pub const MAX_BATCHES_PER_CHUNK: usize = 16;

/// How long after its expiry (and after the program's last resume) a sealed batch with unspent
/// tokens stays open: `batch_close` of such a batch succeeds only when the program is not paused
/// and `now > max(expires_at, Config.resumed_at) + BATCH_CLOSE_GRACE_SECS`.
///
/// Two days. An auditor accepts a token until its batch expires, so a block can still be under
/// verification at `expires_at`; verifying it takes a few transactions (seconds), but the auditor
/// may be retrying through an RPC outage, a fee spike or a restart, and an operator must be able
/// to notice and act. Two days cover a lost weekend day plus a day to react, and while the
/// program is paused no verification can run at all, hence the grace restarts at the resume.
/// The bank's cost is its escrow and rent locked two more days.
#[constant]
pub const BATCH_CLOSE_GRACE_SECS: i64 = 2 * 24 * 3600;
