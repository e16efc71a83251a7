//! The µPIB SDK: what a vendor app, a bank or a wallet depends on.
//!
//! - [`protocol`]: identities and certificates, bank-signed tokens, payment transactions, the
//!   auditor's signed responses, decision codes, reject reasons, trust and risk, the auditor
//!   service's wire types (no Solana dependency beyond the key type);
//! - [`client`] (feature `chain`, default): the vendor's client of the auditor service, the
//!   user's wallet, the bank's resumable minting;
//! - [`chain`] (feature `chain`): the µPIB program's client, ledgers and chain flows.
//!
//! The auditor engine, its service and the paper's simulation are crates of their own
//! (`mupib-auditor`, `mupib-service`, `mupib-sim`); an app that only pays or sells never
//! compiles them. See `docs/DESIGN.md` for the layout.

pub use mupib_protocol as protocol;
pub use mupib_protocol::Pubkey;

#[cfg(feature = "chain")]
pub use mupib_chain as chain;
#[cfg(feature = "chain")]
pub use mupib_client as client;
