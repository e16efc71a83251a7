//! The clients of the µPIB roles: the vendor's client of the auditor service ([`vendor`]), the
//! user's wallet ([`wallet`]) and the bank's resumable minting and hand-outs ([`bank`]).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bank;
pub mod vendor;
pub mod wallet;
