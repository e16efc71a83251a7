//! Client side of the µPIB program: PDAs ([`pda`]), instruction builders ([`instructions`]),
//! account decoders ([`accounts`]), event decoding ([`events`]) and the block packer
//! ([`packer`]) are pure (no I/O) except the `fetch_*` helpers; [`client`] runs
//! multi-transaction operations (publish a batch, verify a block) through a
//! [`crate::ledger::Ledger`], and [`scenario`] is the program-level demo scenario.

pub mod accounts;
pub mod client;
pub mod events;
pub mod instructions;
pub mod packer;
pub mod pda;
pub mod scenario;
