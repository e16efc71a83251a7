//! The payment mint and token accounts (SPL Token): creating a mint and token accounts, minting,
//! and each party's payment account (its associated token account of `Config.mint`). The admin
//! commands, the demo, the bank and the test fixtures all go through these.

use anchor_spl::associated_token::{get_associated_token_address, spl_associated_token_account};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use crate::ledger::{Ledger, LedgerError, Receipt};
use crate::program::accounts::{fetch_config, FetchError};
use crate::program::instructions::{
    self as ix, SplBuildError, SPL_MINT_LEN, SPL_TOKEN_ACCOUNT_LEN,
};

/// Errors of the SPL helpers.
#[derive(Debug, thiserror::Error)]
pub enum SplError {
    /// A transaction or a read failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An account did not decode.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// An SPL instruction could not be built.
    #[error(transparent)]
    Build(#[from] SplBuildError),
    /// The program's `Config` (which names the payment mint) does not exist.
    #[error("the µPIB program is not initialised on this ledger (no Config account); run `mupib admin init` first")]
    NotInitialised,
}

/// Creates an SPL mint (`mint` is a new keypair) with `authority` as mint authority.
pub fn create_mint(
    ledger: &dyn Ledger,
    payer: &Keypair,
    mint: &Keypair,
    authority: &Pubkey,
    decimals: u8,
) -> Result<Receipt, SplError> {
    let rent = ledger.minimum_balance_for_rent_exemption(SPL_MINT_LEN)?;
    let instructions =
        ix::spl_create_mint(&payer.pubkey(), &mint.pubkey(), authority, decimals, rent)?;
    Ok(ledger.send_instructions(&instructions, &payer.pubkey(), &[payer, mint])?)
}

/// Creates an SPL token account (`account` is a new keypair) of `mint` owned by `owner`.
pub fn create_token_account(
    ledger: &dyn Ledger,
    payer: &Keypair,
    account: &Keypair,
    mint: &Pubkey,
    owner: &Pubkey,
) -> Result<Receipt, SplError> {
    let rent = ledger.minimum_balance_for_rent_exemption(SPL_TOKEN_ACCOUNT_LEN)?;
    let instructions =
        ix::spl_create_token_account(&payer.pubkey(), &account.pubkey(), mint, owner, rent)?;
    Ok(ledger.send_instructions(&instructions, &payer.pubkey(), &[payer, account])?)
}

/// Mints `amount` of `mint` to `account`; `authority` signs and pays.
pub fn mint_to(
    ledger: &dyn Ledger,
    authority: &Keypair,
    mint: &Pubkey,
    account: &Pubkey,
    amount: u64,
) -> Result<Receipt, SplError> {
    let instruction = ix::spl_mint_to(mint, account, &authority.pubkey(), amount)?;
    Ok(ledger.send_instructions(&[instruction], &authority.pubkey(), &[authority])?)
}

/// The payment account of `owner`: its associated token account of `mint`.
pub fn payment_account(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
    get_associated_token_address(owner, mint)
}

/// Creates `owner`'s payment account if it does not exist (`payer` pays the rent). Returns its
/// address.
pub fn ensure_payment_account(
    ledger: &dyn Ledger,
    payer: &Keypair,
    owner: &Pubkey,
    mint: &Pubkey,
) -> Result<Pubkey, SplError> {
    let address = payment_account(owner, mint);
    if ledger.get_account(&address)?.is_none() {
        let instruction =
            spl_associated_token_account::instruction::create_associated_token_account_idempotent(
                &payer.pubkey(),
                owner,
                mint,
                &spl_token_interface::ID,
            );
        ledger.send_instructions(&[instruction], &payer.pubkey(), &[payer])?;
    }
    Ok(address)
}

/// Mints `amount` of the payment mint into `owner`'s payment account (created if missing);
/// `mint_authority` signs and pays. Returns the account.
pub fn fund_payment_account(
    ledger: &dyn Ledger,
    mint_authority: &Keypair,
    owner: &Pubkey,
    amount: u64,
) -> Result<Pubkey, SplError> {
    let config = fetch_config(ledger)?.ok_or(SplError::NotInitialised)?;
    let account = ensure_payment_account(ledger, mint_authority, owner, &config.mint)?;
    mint_to(ledger, mint_authority, &config.mint, &account, amount)?;
    Ok(account)
}
