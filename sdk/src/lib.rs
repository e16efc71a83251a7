//! µPIB SDK: the off-chain half of the trust-aware micro-payment infrastructure.
//!
//! The off-chain core (no Solana dependency): identities and certificates ([`cert`]), bank-signed
//! tokens ([`token`], paper eq. 1), payment transactions ([`transaction`], eq. 2), auditor
//! responses ([`response`]), the trust models and block-size update ([`trust`], eqs. 3–7), risk
//! ([`risk`], eqs. 10–13), money arithmetic ([`money`]), the auditor engine ([`auditor`]) and its
//! durable state ([`store`]).
//!
//! With the default `chain` feature: program clients ([`program`]: PDAs, instruction builders,
//! account and event decoders, the block packer) and ledgers ([`ledger`]: the embedded ledger).
//! See `docs/DESIGN.md` for the names shared with the program and the CLI.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auditor;
pub mod cert;
pub mod money;
pub mod response;
pub mod risk;
pub mod sim;
pub mod store;
pub mod token;
pub mod transaction;
pub mod trust;

#[cfg(feature = "chain")]
pub mod client;
#[cfg(feature = "chain")]
pub mod ledger;
#[cfg(feature = "chain")]
pub mod program;

pub use solana_pubkey::Pubkey;
