//! The engine's settings and a user's terms (paper §4.2 step 1: the auditor chooses e, N and
//! W0,u for each user).

use mupib_protocol::block::{MAX_BLOCK_TOKENS, MAX_INITIAL_BLOCK_SIZE};
use mupib_protocol::money::Withholding;
use mupib_protocol::transaction::MAX_TOKENS_PER_TRANSACTION;
use mupib_protocol::trust::{TrustModel, TrustScale, TrustState};
use mupib_protocol::Pubkey;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::store::UserState;

/// The engine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditorConfig {
    /// ρ, the withholding on vendor payouts.
    pub withholding: Withholding,
    /// Default trust model e for new users (step 1).
    pub trust_model: TrustModel,
    /// Default trust scale N for new users.
    pub trust_scale: TrustScale,
    /// Default W0,u for new users.
    pub initial_block_size: u64,
    /// Paper mode: no intake detection (double spending, double selling, forged tokens do not
    /// count); only the chain detects, as in the paper's simulation.
    pub paper_mode: bool,
}

/// Per-user terms chosen by the auditor (paper §4.2 step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTerms {
    /// The trust model e.
    pub trust_model: TrustModel,
    /// The scale N.
    pub trust_scale: TrustScale,
    /// W0,u.
    pub initial_block_size: u64,
}

pub(crate) fn check_terms(initial_block_size: u64) -> Result<(), EngineError> {
    if initial_block_size == 0 || initial_block_size > MAX_INITIAL_BLOCK_SIZE {
        return Err(EngineError::Config(format!(
            "initial block size {initial_block_size} must be between 1 and {MAX_INITIAL_BLOCK_SIZE}: \
             a block holds up to W − 1 queued tokens plus one transaction of up to \
             {MAX_TOKENS_PER_TRANSACTION} tokens, and the chain verifies at most \
             {MAX_BLOCK_TOKENS} tokens per block"
        )));
    }
    Ok(())
}

pub(crate) fn new_user(user: Pubkey, terms: UserTerms) -> Result<UserState, EngineError> {
    check_terms(terms.initial_block_size)?;
    Ok(UserState {
        user,
        version: 0,
        trust: TrustState::new(
            terms.trust_model,
            terms.trust_scale,
            terms.initial_block_size,
        )?,
        suspended: false,
        queued_tokens: 0,
        queued_transactions: 0,
        pending_block: None,
        next_seq: 0,
        blocks_valid: 0,
        blocks_invalid: 0,
        misbehaviour_count: 0,
        risk_total: 0,
        tokens_delivered: 0,
        refunded_total: 0,
    })
}
