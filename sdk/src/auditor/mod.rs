//! The auditor engine (SPEC §4; paper §3.2 "Block management", §4.2 steps 1–4, §5).
//!
//! - [`engine`]: [`Auditor`] — per-user queues, the delivery rule, block formation, applying the
//!   chain's decisions, trust and W updates (eq. 7), suspension, payout accrual, risk
//!   (eqs. 10–12), intake checks beyond the paper, and paper mode.
//! - [`chain`]: the [`BlockVerifier`] trait the engine reaches the chain through, and
//!   [`SimulatedChain`], which decides from ground truth with the program's rules.
//!
//! The engine answers with [`EngineVerdict`]s; signing them as `AuditorResponse`s with the
//! auditor key ([`crate::response`]) is the job of the service layer above, which also owns
//! signature and certificate verification. The engine is deterministic and synchronous: the
//! service can split a step in two ([`Auditor::intake`], then [`Auditor::apply_decisions`] when
//! the chain answers) or use [`Auditor::process`] with a verifier.

pub mod chain;
pub mod engine;

pub use chain::{
    BlockEntry, BlockSubmission, BlockVerifier, Decision, SimulatedChain, VerifierError,
};
pub use engine::{
    Auditor, AuditorConfig, BlockOutcome, DecisionCounts, EngineError, EngineVerdict,
    IntakeOutcome, Processed, TransactionSummary, TransactionVerdict, TrustUpdate, UserTerms,
};
