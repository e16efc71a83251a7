//! Decoders of the µPIB program's accounts and of SPL token accounts.
//!
//! The byte layouts are the program's own (`mupib::state::Batch::view`, `Block::view`,
//! Anchor's `AccountDeserialize`), so a layout change in the program cannot silently diverge
//! from the SDK. Every decoder checks the account's owner first.

use anchor_lang::AccountDeserialize;
use mupib::constants::{COMMITMENT_LEN, DECISION_UNDECIDED};
use mupib::state::{AuditorRegistration, BankRegistration, Batch, Block, Config};
use solana_sdk::account::Account;
use solana_sdk::program_pack::Pack;
use solana_sdk::pubkey::Pubkey;

use crate::ledger::{Ledger, LedgerError};

/// Why an account could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The account belongs to another program than the one whose layout was expected.
    #[error(
        "{what} account is owned by {found}, expected {expected}: the address is not a {what}"
    )]
    WrongOwner {
        /// What was expected.
        what: &'static str,
        /// Expected owner program.
        expected: Pubkey,
        /// Actual owner.
        found: Pubkey,
    },
    /// The data does not have the expected layout.
    #[error("account data is not a valid {what}: {reason}")]
    Invalid {
        /// What was expected.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// Errors of the `fetch_*` helpers: the ledger failed or the account did not decode.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The account exists but is not what was expected.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

fn check_owner(
    account: &Account,
    expected: &Pubkey,
    what: &'static str,
) -> Result<(), DecodeError> {
    if account.owner != *expected {
        return Err(DecodeError::WrongOwner {
            what,
            expected: *expected,
            found: account.owner,
        });
    }
    Ok(())
}

fn anchor_account<T: AccountDeserialize>(
    account: &Account,
    what: &'static str,
) -> Result<T, DecodeError> {
    check_owner(account, &mupib::ID, what)?;
    T::try_deserialize(&mut account.data.as_slice()).map_err(|e| DecodeError::Invalid {
        what,
        reason: e.to_string(),
    })
}

/// Decodes the `Config` account.
pub fn decode_config(account: &Account) -> Result<Config, DecodeError> {
    anchor_account(account, "Config")
}

/// Decodes a `BankRegistration` account.
pub fn decode_bank_registration(account: &Account) -> Result<BankRegistration, DecodeError> {
    anchor_account(account, "BankRegistration")
}

/// Decodes an `AuditorRegistration` account.
pub fn decode_auditor_registration(account: &Account) -> Result<AuditorRegistration, DecodeError> {
    anchor_account(account, "AuditorRegistration")
}

/// A decoded `Batch`: its header, commitments and spent bitmap.
#[derive(Debug, Clone)]
pub struct BatchState {
    /// The zero-copy header (bank, batch_id, value, times, counts, sealed, bumps).
    pub header: Batch,
    commitments: Vec<u8>,
    spent: Vec<u8>,
}

impl BatchState {
    /// The commitment of `serial`, `None` when `serial ≥ token_count`.
    pub fn commitment(&self, serial: u32) -> Option<[u8; COMMITMENT_LEN]> {
        let bytes = mupib::state::commitment_at(&self.commitments, serial)?;
        <[u8; COMMITMENT_LEN]>::try_from(bytes).ok()
    }

    /// Whether `serial` is spent, `None` when `serial ≥ token_count`.
    pub fn is_spent(&self, serial: u32) -> Option<bool> {
        if serial >= self.header.token_count {
            return None;
        }
        Some(mupib::state::is_spent(&self.spent, serial))
    }

    /// Whether every commitment is written and the batch is redeemable.
    pub fn is_sealed(&self) -> bool {
        self.header.is_sealed()
    }
}

/// Decodes a `Batch` account.
pub fn decode_batch(account: &Account) -> Result<BatchState, DecodeError> {
    check_owner(account, &mupib::ID, "Batch")?;
    let view = Batch::view(&account.data).map_err(|e| DecodeError::Invalid {
        what: "Batch",
        reason: e.to_string(),
    })?;
    Ok(BatchState {
        header: *view.header,
        commitments: view.commitments.to_vec(),
        spent: view.spent.to_vec(),
    })
}

/// A decoded `Block`: its header and one decision byte per position.
#[derive(Debug, Clone)]
pub struct BlockState {
    /// The zero-copy header (auditor, user, counts, amount paid, state, bump).
    pub header: Block,
    /// Decision byte per position (`DECISION_*`, `DECISION_UNDECIDED` = not decided yet).
    pub decisions: Vec<u8>,
}

impl BlockState {
    /// The decision of `position`, `None` when out of range or not decided yet.
    pub fn decision(&self, position: u32) -> Option<u8> {
        let index = usize::try_from(position).ok()?;
        self.decisions
            .get(index)
            .copied()
            .filter(|d| *d != DECISION_UNDECIDED)
    }
}

/// Decodes a `Block` account.
pub fn decode_block(account: &Account) -> Result<BlockState, DecodeError> {
    check_owner(account, &mupib::ID, "Block")?;
    let (header, decisions) = Block::view(&account.data).map_err(|e| DecodeError::Invalid {
        what: "Block",
        reason: e.to_string(),
    })?;
    Ok(BlockState {
        header: *header,
        decisions: decisions.to_vec(),
    })
}

/// The fields of an SPL token account µPIB uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenAccountState {
    /// The mint.
    pub mint: Pubkey,
    /// The owner (authority).
    pub owner: Pubkey,
    /// Balance in base units.
    pub amount: u64,
}

/// Decodes an SPL token account (owner must be the SPL Token program).
pub fn decode_token_account(account: &Account) -> Result<TokenAccountState, DecodeError> {
    check_owner(account, &spl_token_interface::ID, "SPL token account")?;
    let state = spl_token_interface::state::Account::unpack(&account.data).map_err(|e| {
        DecodeError::Invalid {
            what: "SPL token account",
            reason: e.to_string(),
        }
    })?;
    Ok(TokenAccountState {
        mint: state.mint,
        owner: state.owner,
        amount: state.amount,
    })
}

fn fetch<T>(
    ledger: &dyn Ledger,
    address: &Pubkey,
    decode: fn(&Account) -> Result<T, DecodeError>,
) -> Result<Option<T>, FetchError> {
    match ledger.get_account(address)? {
        Some(account) => Ok(Some(decode(&account)?)),
        None => Ok(None),
    }
}

/// Reads and decodes the `Config` account.
pub fn fetch_config(ledger: &dyn Ledger) -> Result<Option<Config>, FetchError> {
    fetch(ledger, &super::pda::config().0, decode_config)
}

/// Reads and decodes a batch.
pub fn fetch_batch(
    ledger: &dyn Ledger,
    address: &Pubkey,
) -> Result<Option<BatchState>, FetchError> {
    fetch(ledger, address, decode_batch)
}

/// Reads and decodes a block.
pub fn fetch_block(
    ledger: &dyn Ledger,
    address: &Pubkey,
) -> Result<Option<BlockState>, FetchError> {
    fetch(ledger, address, decode_block)
}

/// Reads and decodes a bank registration.
pub fn fetch_bank_registration(
    ledger: &dyn Ledger,
    bank: &Pubkey,
) -> Result<Option<BankRegistration>, FetchError> {
    fetch(
        ledger,
        &super::pda::bank_registration(bank).0,
        decode_bank_registration,
    )
}

/// Reads and decodes an auditor registration.
pub fn fetch_auditor_registration(
    ledger: &dyn Ledger,
    auditor: &Pubkey,
) -> Result<Option<AuditorRegistration>, FetchError> {
    fetch(
        ledger,
        &super::pda::auditor_registration(auditor).0,
        decode_auditor_registration,
    )
}

/// The token balance of an SPL token account (0 when the account does not exist).
pub fn token_balance(ledger: &dyn Ledger, address: &Pubkey) -> Result<u64, FetchError> {
    Ok(fetch(ledger, address, decode_token_account)?
        .map(|t| t.amount)
        .unwrap_or(0))
}
