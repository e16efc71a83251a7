//! The program admin's operations (SPEC §3 "Admin config; registration of banks and auditors;
//! pause"): initialise `Config`, register banks and auditors, pause and resume. The `mupib
//! admin` commands, the demo and the test fixtures all go through these.

use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use crate::ledger::{Ledger, LedgerError, Receipt};
use crate::program::instructions as ix;

/// `config_init`: creates `Config` with `mint` as the payment mint; `admin` becomes the admin.
pub fn init_config(
    ledger: &dyn Ledger,
    admin: &Keypair,
    mint: &Pubkey,
) -> Result<Receipt, LedgerError> {
    let key = admin.pubkey();
    ledger.send_instructions(&[ix::config_init(&key, mint)], &key, &[admin])
}

/// `config_set_paused`: pauses or resumes publishing and verification.
pub fn set_paused(
    ledger: &dyn Ledger,
    admin: &Keypair,
    paused: bool,
) -> Result<Receipt, LedgerError> {
    let key = admin.pubkey();
    ledger.send_instructions(&[ix::config_set_paused(&key, paused)], &key, &[admin])
}

/// `bank_register`: registers `bank`.
pub fn register_bank(
    ledger: &dyn Ledger,
    admin: &Keypair,
    bank: &Pubkey,
) -> Result<Receipt, LedgerError> {
    let key = admin.pubkey();
    ledger.send_instructions(&[ix::bank_register(&key, bank)], &key, &[admin])
}

/// `auditor_register`: registers `auditor`.
pub fn register_auditor(
    ledger: &dyn Ledger,
    admin: &Keypair,
    auditor: &Pubkey,
) -> Result<Receipt, LedgerError> {
    let key = admin.pubkey();
    ledger.send_instructions(&[ix::auditor_register(&key, auditor)], &key, &[admin])
}
