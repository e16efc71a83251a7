//! Pure instruction builders, one per µPIB program instruction, plus the few SPL Token
//! instructions a bank or an auditor needs to set up its accounts.
//!
//! Account lists come from the program's Anchor-generated `mupib::accounts::X` structs and
//! instruction data from `mupib::instruction::X`, so they cannot drift from the program.

use anchor_lang::{InstructionData, ToAccountMetas};
use mupib::instructions::{
    AuditorRegisterArgs, AuditorSetActiveArgs, BankRegisterArgs, BankSetActiveArgs,
    BatchCreateArgs, BatchPublishArgs, BlockOpenArgs, BlockVerifyChunkArgs, ConfigInitArgs,
    ConfigSetPausedArgs, PayoutRecordArgs,
};
use solana_sdk::instruction::{AccountMeta, Instruction};
use solana_sdk::pubkey::Pubkey;

use super::pda;

fn build(accounts: Vec<AccountMeta>, data: Vec<u8>) -> Instruction {
    Instruction {
        program_id: mupib::ID,
        accounts,
        data,
    }
}

fn system_program() -> Pubkey {
    solana_system_interface::program::ID
}

fn token_program() -> Pubkey {
    spl_token_interface::ID
}

/// `config_init(mint)`: the admin creates the program's `Config`.
pub fn config_init(admin: &Pubkey, mint: &Pubkey) -> Instruction {
    let accounts = mupib::accounts::ConfigInit {
        admin: *admin,
        config: pda::config().0,
        mint: *mint,
        system_program: system_program(),
    };
    let data = mupib::instruction::ConfigInit {
        args: ConfigInitArgs { mint: *mint },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `config_set_paused(paused)`: the admin pauses or resumes publishing and verification.
pub fn config_set_paused(admin: &Pubkey, paused: bool) -> Instruction {
    let accounts = mupib::accounts::ConfigSetPaused {
        admin: *admin,
        config: pda::config().0,
    };
    let data = mupib::instruction::ConfigSetPaused {
        args: ConfigSetPausedArgs { paused },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `bank_register(bank)`: the admin registers a bank.
pub fn bank_register(admin: &Pubkey, bank: &Pubkey) -> Instruction {
    let accounts = mupib::accounts::BankRegister {
        admin: *admin,
        config: pda::config().0,
        bank_registration: pda::bank_registration(bank).0,
        system_program: system_program(),
    };
    let data = mupib::instruction::BankRegister {
        args: BankRegisterArgs { bank: *bank },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `bank_set_active(active)`: the admin suspends or re-activates a bank.
pub fn bank_set_active(admin: &Pubkey, bank: &Pubkey, active: bool) -> Instruction {
    let accounts = mupib::accounts::BankSetActive {
        admin: *admin,
        config: pda::config().0,
        bank_registration: pda::bank_registration(bank).0,
    };
    let data = mupib::instruction::BankSetActive {
        args: BankSetActiveArgs { active },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `auditor_register(auditor)`: the admin registers an auditor.
pub fn auditor_register(admin: &Pubkey, auditor: &Pubkey) -> Instruction {
    let accounts = mupib::accounts::AuditorRegister {
        admin: *admin,
        config: pda::config().0,
        auditor_registration: pda::auditor_registration(auditor).0,
        system_program: system_program(),
    };
    let data = mupib::instruction::AuditorRegister {
        args: AuditorRegisterArgs { auditor: *auditor },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `auditor_set_active(active)`: the admin suspends or re-activates an auditor.
pub fn auditor_set_active(admin: &Pubkey, auditor: &Pubkey, active: bool) -> Instruction {
    let accounts = mupib::accounts::AuditorSetActive {
        admin: *admin,
        config: pda::config().0,
        auditor_registration: pda::auditor_registration(auditor).0,
    };
    let data = mupib::instruction::AuditorSetActive {
        args: AuditorSetActiveArgs { active },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `batch_create(batch_id, auditor, token_count, value, issued_at, expires_at)`: the bank creates
/// a batch bound to `args.auditor` and its escrow, funded with `token_count × value` from
/// `bank_token`.
pub fn batch_create(
    bank: &Pubkey,
    mint: &Pubkey,
    bank_token: &Pubkey,
    args: BatchCreateArgs,
) -> Instruction {
    let batch = pda::batch(bank, &args.auditor, args.batch_id).0;
    let accounts = mupib::accounts::BatchCreate {
        bank: *bank,
        config: pda::config().0,
        bank_registration: pda::bank_registration(bank).0,
        auditor_registration: pda::auditor_registration(&args.auditor).0,
        batch,
        escrow: pda::escrow(&batch).0,
        mint: *mint,
        bank_token: *bank_token,
        token_program: token_program(),
        system_program: system_program(),
    };
    let data = mupib::instruction::BatchCreate { args };
    build(accounts.to_account_metas(None), data.data())
}

/// `batch_publish(start, commitments)`: the bank writes the commitments of serials
/// `[start, start + commitments.len())` into its batch `batch_id` bound to `auditor`.
pub fn batch_publish(
    bank: &Pubkey,
    auditor: &Pubkey,
    batch_id: u64,
    start: u32,
    commitments: Vec<[u8; 16]>,
) -> Instruction {
    let accounts = mupib::accounts::BatchPublish {
        bank: *bank,
        config: pda::config().0,
        bank_registration: pda::bank_registration(bank).0,
        batch: pda::batch(bank, auditor, batch_id).0,
    };
    let data = mupib::instruction::BatchPublish {
        args: BatchPublishArgs { start, commitments },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// `batch_seal()`: the bank seals its fully published batch `batch_id` bound to `auditor`.
pub fn batch_seal(bank: &Pubkey, auditor: &Pubkey, batch_id: u64) -> Instruction {
    let accounts = mupib::accounts::BatchSeal {
        bank: *bank,
        config: pda::config().0,
        bank_registration: pda::bank_registration(bank).0,
        batch: pda::batch(bank, auditor, batch_id).0,
    };
    build(
        accounts.to_account_metas(None),
        mupib::instruction::BatchSeal {}.data(),
    )
}

/// `batch_close()`: the bank closes its batch `batch_id` bound to `auditor` (fully spent, never
/// sealed, or expired and past its grace period); unspent escrow goes to `bank_token`, rent to
/// the bank.
pub fn batch_close(
    bank: &Pubkey,
    auditor: &Pubkey,
    batch_id: u64,
    mint: &Pubkey,
    bank_token: &Pubkey,
) -> Instruction {
    let batch = pda::batch(bank, auditor, batch_id).0;
    let accounts = mupib::accounts::BatchClose {
        bank: *bank,
        config: pda::config().0,
        bank_registration: pda::bank_registration(bank).0,
        auditor: *auditor,
        batch,
        escrow: pda::escrow(&batch).0,
        mint: *mint,
        bank_token: *bank_token,
        token_program: token_program(),
    };
    build(
        accounts.to_account_metas(None),
        mupib::instruction::BatchClose {}.data(),
    )
}

/// `block_open(block_id, user, token_count)`: the auditor opens a block.
pub fn block_open(auditor: &Pubkey, args: BlockOpenArgs) -> Instruction {
    let accounts = mupib::accounts::BlockOpen {
        auditor: *auditor,
        config: pda::config().0,
        auditor_registration: pda::auditor_registration(auditor).0,
        block: pda::block(auditor, args.block_id).0,
        system_program: system_program(),
    };
    let data = mupib::instruction::BlockOpen { args };
    build(accounts.to_account_metas(None), data.data())
}

/// A batch referenced by a verification chunk, identified by its bank, the auditor it is bound
/// to and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchRef {
    /// The batch's bank.
    pub bank: Pubkey,
    /// The auditor the batch is bound to (a verifying auditor refers to batches bound to
    /// itself: any other is unpublished for it).
    pub auditor: Pubkey,
    /// The batch id.
    pub batch_id: u64,
}

impl BatchRef {
    /// The batch PDA and its escrow PDA, in the order the program expects them.
    pub fn accounts(&self) -> (Pubkey, Pubkey) {
        let batch = pda::batch(&self.bank, &self.auditor, self.batch_id).0;
        (batch, pda::escrow(&batch).0)
    }
}

/// `block_verify_chunk(start, entries)`: the auditor submits positions
/// `[start, start + entries.len())`; `entries[i].batch_index` indexes `batches`, whose
/// `(batch, escrow)` pairs are appended as remaining accounts.
pub fn block_verify_chunk(
    auditor: &Pubkey,
    block_id: u64,
    mint: &Pubkey,
    auditor_token: &Pubkey,
    args: BlockVerifyChunkArgs,
    batches: &[BatchRef],
) -> Instruction {
    let accounts = mupib::accounts::BlockVerifyChunk {
        auditor: *auditor,
        config: pda::config().0,
        auditor_registration: pda::auditor_registration(auditor).0,
        block: pda::block(auditor, block_id).0,
        mint: *mint,
        auditor_token: *auditor_token,
        token_program: token_program(),
    };
    let mut metas = accounts.to_account_metas(None);
    for batch in batches {
        let (batch, escrow) = batch.accounts();
        metas.push(AccountMeta::new(batch, false));
        metas.push(AccountMeta::new(escrow, false));
    }
    let data = mupib::instruction::BlockVerifyChunk { args };
    build(metas, data.data())
}

/// `block_finalize()`: the auditor marks a fully decided block verified.
pub fn block_finalize(auditor: &Pubkey, block_id: u64) -> Instruction {
    let accounts = mupib::accounts::BlockFinalize {
        auditor: *auditor,
        config: pda::config().0,
        auditor_registration: pda::auditor_registration(auditor).0,
        block: pda::block(auditor, block_id).0,
    };
    build(
        accounts.to_account_metas(None),
        mupib::instruction::BlockFinalize {}.data(),
    )
}

/// `block_close()`: the auditor closes a verified block and takes back its rent.
pub fn block_close(auditor: &Pubkey, block_id: u64) -> Instruction {
    let accounts = mupib::accounts::BlockClose {
        auditor: *auditor,
        block: pda::block(auditor, block_id).0,
    };
    build(
        accounts.to_account_metas(None),
        mupib::instruction::BlockClose {}.data(),
    )
}

/// `payout_record(seq, digest)`: the auditor records that its settlement batch `seq` lands (put
/// it first in the settlement transaction, before the batch's transfers).
pub fn payout_record(auditor: &Pubkey, seq: u64, digest: [u8; 32]) -> Instruction {
    let accounts = mupib::accounts::PayoutRecord {
        auditor: *auditor,
        auditor_registration: pda::auditor_registration(auditor).0,
    };
    let data = mupib::instruction::PayoutRecord {
        args: PayoutRecordArgs { seq, digest },
    };
    build(accounts.to_account_metas(None), data.data())
}

/// Errors of the SPL setup builders.
#[derive(Debug, thiserror::Error)]
pub enum SplBuildError {
    /// The SPL Token interface refused the arguments.
    #[error("cannot build the SPL Token instruction: {0}")]
    Spl(String),
}

fn spl<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, SplBuildError> {
    result.map_err(|e| SplBuildError::Spl(e.to_string()))
}

/// Size of an SPL mint account.
pub const SPL_MINT_LEN: usize = spl_token_interface::state::Mint::LEN;
/// Size of an SPL token account.
pub const SPL_TOKEN_ACCOUNT_LEN: usize = spl_token_interface::state::Account::LEN;

use solana_sdk::program_pack::Pack;

/// Creates and initialises an SPL mint at `mint` (a new keypair that must sign), paid by
/// `payer`; `rent_lamports` is the rent-exempt minimum for [`SPL_MINT_LEN`] bytes.
pub fn spl_create_mint(
    payer: &Pubkey,
    mint: &Pubkey,
    mint_authority: &Pubkey,
    decimals: u8,
    rent_lamports: u64,
) -> Result<Vec<Instruction>, SplBuildError> {
    let space = u64::try_from(SPL_MINT_LEN).map_err(|e| SplBuildError::Spl(e.to_string()))?;
    Ok(vec![
        solana_system_interface::instruction::create_account(
            payer,
            mint,
            rent_lamports,
            space,
            &token_program(),
        ),
        spl(spl_token_interface::instruction::initialize_mint2(
            &token_program(),
            mint,
            mint_authority,
            None,
            decimals,
        ))?,
    ])
}

/// Creates and initialises an SPL token account at `account` (a new keypair that must sign)
/// for `mint` owned by `owner`; `rent_lamports` is the minimum for [`SPL_TOKEN_ACCOUNT_LEN`].
pub fn spl_create_token_account(
    payer: &Pubkey,
    account: &Pubkey,
    mint: &Pubkey,
    owner: &Pubkey,
    rent_lamports: u64,
) -> Result<Vec<Instruction>, SplBuildError> {
    let space =
        u64::try_from(SPL_TOKEN_ACCOUNT_LEN).map_err(|e| SplBuildError::Spl(e.to_string()))?;
    Ok(vec![
        solana_system_interface::instruction::create_account(
            payer,
            account,
            rent_lamports,
            space,
            &token_program(),
        ),
        spl(spl_token_interface::instruction::initialize_account3(
            &token_program(),
            account,
            mint,
            owner,
        ))?,
    ])
}

/// SPL `transfer_checked` of `amount` (`decimals` of `mint`) from `source` to `destination`,
/// signed by `authority` (a settlement transfer).
pub fn spl_transfer_checked(
    source: &Pubkey,
    mint: &Pubkey,
    destination: &Pubkey,
    authority: &Pubkey,
    amount: u64,
    decimals: u8,
) -> Result<Instruction, SplBuildError> {
    spl(spl_token_interface::instruction::transfer_checked(
        &token_program(),
        source,
        mint,
        destination,
        authority,
        &[],
        amount,
        decimals,
    ))
}

/// Mints `amount` base units of `mint` to `account` (signed by the mint authority).
pub fn spl_mint_to(
    mint: &Pubkey,
    account: &Pubkey,
    mint_authority: &Pubkey,
    amount: u64,
) -> Result<Instruction, SplBuildError> {
    spl(spl_token_interface::instruction::mint_to(
        &token_program(),
        mint,
        account,
        mint_authority,
        &[],
        amount,
    ))
}
