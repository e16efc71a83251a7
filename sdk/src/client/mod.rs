//! SDK clients of the µPIB roles: the auditor's chain verifier ([`verifier`]).
pub mod verifier;

pub use verifier::{ChainVerification, ChainVerifier, ChainVerifierError, ChainVerifierOptions};
pub mod bank;
pub mod vendor;
pub mod wallet;
