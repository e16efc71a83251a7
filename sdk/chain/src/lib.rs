//! µPIB on Solana: everything that talks to the µPIB program.
//!
//! | module | what |
//! |---|---|
//! | [`program`] | pure: PDAs, instruction builders, account and event decoders, the block packer |
//! | [`ledger`] | the [`ledger::Ledger`] trait; the embedded ledger and the JSON-RPC ledger |
//! | [`admin`] | initialise `Config`, register banks and auditors, pause |
//! | [`spl`] | the payment mint and payment accounts |
//! | [`batch`] | publish a batch (resumable) |
//! | [`batch_directory`] | the batches bound to an auditor, as intake reads them: [`batch_directory::LedgerBatches`] |
//! | [`verifier`] | verify a block (resumable): [`verifier::ChainVerifier`], the auditor's `BlockVerifier` |
//! | [`payouts`] | pay vendors exactly once: [`payouts::LedgerPayouts`], the auditor's `PayoutSender` |
//! | [`deploy`] | a fresh deployment on a test ledger (demo, benchmarks, tests) |
//!
//! One implementation per chain flow: the `mupib` commands, the demo, the auditor service and
//! the tests all publish through [`batch`], verify through [`verifier`] and pay through
//! [`payouts`].
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod batch;
pub mod batch_directory;
pub mod deploy;
pub mod ledger;
pub mod payouts;
pub mod program;
pub mod spl;
pub mod verifier;

use ed25519_dalek::SigningKey;
use solana_sdk::signature::Keypair;

/// The ed25519 signing key of a Solana keypair (the same key: a Solana keypair file is a µPIB
/// identity).
pub fn signing_key(keypair: &Keypair) -> SigningKey {
    SigningKey::from_bytes(keypair.secret_bytes())
}

// The decision codes are defined twice, on-chain and off-chain; they must agree.
const _: () = {
    use mupib::constants::{
        DECISION_ALTERED, DECISION_DUPLICATE, DECISION_UNPUBLISHED, DECISION_VALID,
    };
    use mupib_protocol::decision::Decision;
    assert!(Decision::Unpublished.code() == DECISION_UNPUBLISHED);
    assert!(Decision::Altered.code() == DECISION_ALTERED);
    assert!(Decision::Duplicate.code() == DECISION_DUPLICATE);
    assert!(Decision::Valid.code() == DECISION_VALID);
    // The engine bounds W0 by the program's block limit.
    assert!(mupib_protocol::block::MAX_BLOCK_TOKENS == mupib::constants::MAX_BLOCK_TOKENS as u64);
};
