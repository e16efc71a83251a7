//! Program-derived addresses of the µPIB program. Every seed comes from
//! `mupib::constants::SEED_*`; none is retyped here.

use mupib::constants::{SEED_AUDITOR, SEED_BANK, SEED_BATCH, SEED_BLOCK, SEED_CONFIG, SEED_ESCROW};
use solana_sdk::pubkey::Pubkey;

/// The µPIB program id.
pub fn program_id() -> Pubkey {
    mupib::ID
}

/// `["config"]`: the program's singleton configuration.
pub fn config() -> (Pubkey, u8) {
    Pubkey::find_program_address(&[SEED_CONFIG], &mupib::ID)
}

/// `["bank", bank]`: a bank's registration.
pub fn bank_registration(bank: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[SEED_BANK, bank.as_ref()], &mupib::ID)
}

/// `["auditor", auditor]`: an auditor's registration.
pub fn auditor_registration(auditor: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[SEED_AUDITOR, auditor.as_ref()], &mupib::ID)
}

/// `["batch", bank, auditor, batch_id_le]`: a bank's batch of tokens, redeemable by `auditor`
/// only (for any other auditor the program finds no batch at this address).
pub fn batch(bank: &Pubkey, auditor: &Pubkey, batch_id: u64) -> (Pubkey, u8) {
    Pubkey::find_program_address(
        &[
            SEED_BATCH,
            bank.as_ref(),
            auditor.as_ref(),
            &batch_id.to_le_bytes(),
        ],
        &mupib::ID,
    )
}

/// `["escrow", batch]`: the SPL token account holding a batch's escrow.
pub fn escrow(batch: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[SEED_ESCROW, batch.as_ref()], &mupib::ID)
}

/// `["block", auditor, block_id_le]`: a block under verification.
pub fn block(auditor: &Pubkey, block_id: u64) -> (Pubkey, u8) {
    Pubkey::find_program_address(
        &[SEED_BLOCK, auditor.as_ref(), &block_id.to_le_bytes()],
        &mupib::ID,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_depend_on_every_seed_component() {
        let bank = Pubkey::new_unique();
        let other = Pubkey::new_unique();
        let auditor = Pubkey::new_unique();
        assert_ne!(batch(&bank, &auditor, 1).0, batch(&bank, &auditor, 2).0);
        assert_ne!(batch(&bank, &auditor, 1).0, batch(&other, &auditor, 1).0);
        assert_ne!(batch(&bank, &auditor, 1).0, batch(&bank, &other, 1).0);
        assert_ne!(bank_registration(&bank).0, auditor_registration(&bank).0);
        assert_ne!(block(&bank, 1).0, batch(&bank, &auditor, 1).0);
        let (b, _) = batch(&bank, &auditor, 7);
        assert_ne!(escrow(&b).0, b);
        // Re-derivation with the stored bump gives the same address (the program checks it).
        let (address, bump) = config();
        let again = Pubkey::create_program_address(&[SEED_CONFIG, &[bump]], &mupib::ID);
        assert_eq!(again.ok(), Some(address));
    }
}
