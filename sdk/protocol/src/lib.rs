//! µPIB protocol: the messages and the pure rules every µPIB party shares (paper eqs. 1–13;
//! `docs/DESIGN.md` for the names). No Solana dependency beyond the public key type, no I/O.
//!
//! | module | what |
//! |---|---|
//! | [`cert`] | identities: roles, certificates, the registry, keypair files |
//! | [`token`] | bank-signed tokens (eq. 1), digest, commitment, [`token::TokenRef`] |
//! | [`transaction`] | payment transactions (eq. 2), their id, signature verification |
//! | [`response`] | the auditor's signed answers: deliver, wait, reject |
//! | [`decision`] | the chain's decision codes per token |
//! | [`reject`] | reject codes and reasons |
//! | [`batch`] | a bank's batch as intake checks tokens against it; the [`batch::BatchDirectory`] port |
//! | [`block`] | a block sent to the chain, and the [`block::BlockVerifier`] port |
//! | [`trust`] | trust models and the block-size update (eqs. 3–7) |
//! | [`risk`] | risk (eqs. 10–13) |
//! | [`money`] | withholding ρ, vendor payouts, a block's balanced money flows |
//! | [`payout`] | paying vendors on-chain: the [`payout::PayoutSender`] port, batches, their digest |
//! | [`wire`] | the auditor service's HTTP wire types, shared by the service and its clients |
//! | [`request`] | signed HTTP requests: how a vendor authenticates to the auditor service |
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod batch;
pub mod block;
pub mod cert;
pub mod decision;
pub mod money;
pub mod payout;
pub mod reject;
pub mod request;
pub mod response;
pub mod risk;
pub mod token;
pub mod transaction;
pub mod trust;
pub mod wire;

pub use solana_pubkey::Pubkey;
