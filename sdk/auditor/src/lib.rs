//! The µPIB auditor (SPEC §4; paper §3.2 "Block management", §4.2 steps 1–4, §5): per-user
//! queues, the delivery rule, block formation, the chain's decisions, trust and W updates
//! (eq. 7), suspension, payout accrual, risk (eqs. 10–12), intake checks beyond the paper, and
//! paper mode; its durable state behind the [`store::Store`] trait.
//!
//! | module | what |
//! |---|---|
//! | [`engine`] | [`Auditor`], one file per operation (intake, decisions, blocks, group commit) |
//! | [`config`] | [`AuditorConfig`], [`UserTerms`] |
//! | [`outcome`] | what the engine answers: [`IntakeOutcome`], [`BlockOutcome`], … |
//! | [`error`] | [`EngineError`] |
//! | [`store`] | the [`store::Store`] trait, SQLite and in-memory backends, the conformance suite |
//! | [`settlement`] | paying vendors on-chain exactly once, through the `PayoutSender` port |
//! | [`simulated`] | [`SimulatedChain`]: a `BlockVerifier` deciding from ground truth |
//!
//! The engine answers with [`EngineVerdict`]s; signing them as `AuditorResponse`s with the
//! auditor key ([`mupib_protocol::response`]) is the job of the service layer above, which also
//! owns signature and certificate verification. The engine is deterministic and synchronous:
//! the service can split a step in two ([`Auditor::intake`], then [`Auditor::apply_decisions`]
//! when the chain answers) or use [`Auditor::process`] with a verifier.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod engine;
pub mod error;
pub mod outcome;
pub mod settlement;
pub mod simulated;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{AuditorConfig, UserTerms};
pub use engine::{Auditor, GroupStep};
pub use error::EngineError;
pub use outcome::{
    BlockOutcome, ChainPayment, EngineVerdict, IntakeOutcome, Processed, TransactionSummary,
    TransactionVerdict,
};
pub use simulated::SimulatedChain;
