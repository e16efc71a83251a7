//! One Monte Carlo run: a market of users and vendors over slotted time, driving the real auditor
//! engine ([`Auditor`] over a pruning [`MemoryStore`], paper mode) against a [`SimulatedChain`]
//! that decides from ground truth.
//!
//! # The model (paper §7.1)
//!
//! - Time is slotted, t = 1..T. In every slot each user, independently, buys one product with
//!   probability p, from a vendor chosen uniformly among the m vendors, and pays its cost c_m in
//!   tokens (one transaction of c_m tokens).
//! - Each token is a double-spend with probability q, independently: the user presents a copy of
//!   a token it already spent elsewhere (spent on-chain at set-up), so the chain returns
//!   `DUPLICATE` for it; every other token is fresh, published and sealed by the bank, and the
//!   chain returns `VALID`.
//! - The auditor runs in paper mode (no intake detection: only the chain detects), with the
//!   figure's trust model and scale, W0,u and withholding ρ. The chain answers within the slot:
//!   a block formed by a transaction is verified and its decisions applied before the next
//!   purchase, so no transaction is ever held behind a block under verification.
//! - A suspended user (W = 0) is visible to vendors, who do not sell to it: its purchases are
//!   counted as refused and not presented to the engine (the engine would refuse them).
//!
//! # Randomness
//!
//! User u of run r draws from its own ChaCha8 stream: key = (base seed, r), stream = u. Every
//! slot draws the purchase, then (if buying) the vendor and one uniform per token, whatever the
//! engine's state, so two runs with the same (seed, r) and different models, q or W0 see exactly
//! the same purchases, and a token that is a double-spend at q is one at every q' > q (common
//! random numbers: comparisons between points are far less noisy than independent runs).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::params::SimParams;
use super::SimError;
use mupib_auditor::store::MemoryStore;
use mupib_auditor::{Auditor, AuditorConfig, BlockOutcome, SimulatedChain, TransactionSummary};
use mupib_protocol::block::{BlockSubmission, BlockVerifier};
use mupib_protocol::risk::ScaledRisk;
use mupib_protocol::token::TokenId;
use mupib_protocol::token::{TokenDigest16, TokenRef};
use mupib_protocol::transaction::TransactionId;
use mupib_protocol::Pubkey;

/// Value v of one token in the payment mint's base units. 10 000 makes every payout
/// v·(1 − ρ) exact for ρ in whole basis points, so the engine's realized risk equals eqs. 10–12.
pub const TOKEN_VALUE: u64 = 10_000;

/// Fresh tokens are published in batches of this many.
const FRESH_BATCH_TOKENS: u32 = 4_096;

/// Batch 0 holds each user's token "spent elsewhere" (serial = user index).
const ELSEWHERE_BATCH: u64 = 0;

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// The run index r.
    pub run: u32,
    /// Users × slots simulated.
    pub user_slots: u64,
    /// Purchases presented to the engine (transactions).
    pub transactions: u64,
    /// Purchases not made because the user was suspended.
    pub refused_purchases: u64,
    /// Tokens presented to the engine.
    pub tokens: u64,
    /// Of those, double-spends (ground truth).
    pub double_spent_tokens: u64,
    /// Double-spent tokens that were in blocks decided within the horizon (ground truth).
    pub double_spent_in_decided_blocks: u64,
    /// `DUPLICATE` decisions the chain returned (must equal the line above).
    pub duplicate_decisions: u64,
    /// Tokens in blocks decided within the horizon.
    pub tokens_in_decided_blocks: u64,
    /// Blocks decided.
    pub blocks: u64,
    /// Blocks with at least one invalid token.
    pub invalid_blocks: u64,
    /// Times a user's W changed (eq. 7 with β > 0 and positive trust).
    pub block_size_changes: u64,
    /// Users suspended (W = 0) at the end of the horizon.
    pub suspended_users: u32,
    /// Per user, the mean block size (1/T)·Σ_{t=1..T} W_u(t), W_u(t) the block size in force at
    /// the end of slot t (0 once suspended).
    pub mean_block_size: Vec<f64>,
    /// Σ over decided blocks of eqs. (10)–(12), exact, in units of v/10 000 base units (the
    /// engine's [`mupib_protocol::risk::ScaledRisk`]).
    pub risk_scaled_total: i128,
    /// Σ over decided blocks of the engine's realized risk (loss − margin) in base units.
    pub realized_risk_total: i128,
}

impl RunStats {
    /// The average over users of their mean block size (figures 7 and 8; for one user, its mean
    /// block size).
    pub fn average_mean_block_size(&self) -> f64 {
        if self.mean_block_size.is_empty() {
            return 0.0;
        }
        self.mean_block_size.iter().sum::<f64>() / self.mean_block_size.len() as f64
    }

    /// The average risk per decided block, eqs. (10)–(12), in token values v (Σ_n Rsk_n over all
    /// users' blocks / number of blocks). `None` when no block was decided within the horizon.
    pub fn average_risk(&self) -> Option<f64> {
        if self.blocks == 0 {
            return None;
        }
        Some(self.total_risk_tokens() / self.blocks as f64)
    }

    /// Σ_n Rsk_n over every user's decided blocks (the long-run risk of §5, summed over users),
    /// in token values v.
    pub fn total_risk_tokens(&self) -> f64 {
        ScaledRisk(self.risk_scaled_total).to_f64() / TOKEN_VALUE as f64
    }
}

/// Deterministic, distinct keys for the actors of a run.
fn actor_key(role: u8, index: u32) -> Pubkey {
    let mut bytes = [0u8; 32];
    bytes[0] = role;
    bytes[1..5].copy_from_slice(&index.to_le_bytes());
    bytes[31] = 0x5E;
    Pubkey::new_from_array(bytes)
}

/// The digest the bank "signed" for (batch, serial): the chain compares digests only.
fn digest_of(batch_id: u64, serial: u32) -> TokenDigest16 {
    let mut digest = [0u8; 16];
    digest[..8].copy_from_slice(&batch_id.to_le_bytes());
    digest[8..12].copy_from_slice(&serial.to_le_bytes());
    digest[12..].copy_from_slice(b"sim!");
    digest
}

/// The random stream of user `user` in run `run` under base seed `seed`.
pub fn user_rng(seed: u64, run: u32, user: u32) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..12].copy_from_slice(&run.to_le_bytes());
    key[16..24].copy_from_slice(b"mupibsim");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(u64::from(user));
    rng
}

/// The bank's token supply on the simulated chain.
struct Bank {
    key: Pubkey,
    batch_id: u64,
    next_serial: u32,
}

impl Bank {
    /// A fresh, published token (a new batch is published when the current one is used up).
    fn fresh_token(&mut self, chain: &mut SimulatedChain) -> TokenRef {
        if self.next_serial == FRESH_BATCH_TOKENS {
            self.batch_id = self.batch_id.saturating_add(1);
            self.next_serial = 0;
            publish(chain, self.key, self.batch_id, FRESH_BATCH_TOKENS);
        }
        let serial = self.next_serial;
        self.next_serial += 1; // < FRESH_BATCH_TOKENS
        token_entry(self.key, self.batch_id, serial)
    }
}

fn publish(chain: &mut SimulatedChain, bank: Pubkey, batch_id: u64, tokens: u32) {
    let digests = (0..tokens)
        .map(|serial| digest_of(batch_id, serial))
        .collect();
    chain.publish_batch(bank, batch_id, TOKEN_VALUE, digests);
}

fn token_entry(bank: Pubkey, batch_id: u64, serial: u32) -> TokenRef {
    TokenRef {
        id: TokenId {
            bank,
            batch_id,
            serial,
        },
        value: TOKEN_VALUE,
        digest: digest_of(batch_id, serial),
    }
}

/// Per-user state the simulation keeps beside the engine.
struct SimUser {
    key: Pubkey,
    rng: ChaCha8Rng,
    /// The token this user already spent elsewhere; every double-spend presents a copy of it.
    spent_elsewhere: TokenRef,
    /// The block size in force (mirrors the engine's state after each step).
    block_size: u64,
    suspended: bool,
    /// Σ_t W(t) so far.
    block_size_sum: u128,
    /// Double-spent tokens accepted into the queue since the last block formed.
    queued_double_spent: u64,
}

/// Runs one repetition of `params` with the random streams of (`seed`, `run`).
///
/// # Errors
/// [`SimError::OutOfRange`] / [`SimError::Probability`] for invalid parameters;
/// [`SimError::Engine`] if the engine fails (it never should: that is a bug to report).
pub fn run_once(params: &SimParams, seed: u64, run: u32) -> Result<RunStats, SimError> {
    params.validate()?;
    let config = AuditorConfig {
        withholding: params.withholding,
        trust_model: params.trust_model,
        trust_scale: params.trust_scale,
        initial_block_size: params.initial_block_size,
        paper_mode: true,
    };
    let engine_error = |slot: u64, source| SimError::Engine { run, slot, source };
    let mut auditor =
        Auditor::new(MemoryStore::pruning(), config).map_err(|e| engine_error(0, e))?;
    let mut chain = SimulatedChain::forgetful();

    // Set-up: the bank publishes each user's "elsewhere" token and it is spent on-chain before
    // the horizon starts (another auditor verified it), then the first fresh batch.
    let mut bank = Bank {
        key: actor_key(3, 0),
        batch_id: 1,
        next_serial: 0,
    };
    publish(&mut chain, bank.key, ELSEWHERE_BATCH, params.users);
    let elsewhere: Vec<TokenRef> = (0..params.users)
        .map(|u| token_entry(bank.key, ELSEWHERE_BATCH, u))
        .collect();
    chain
        .verify(&BlockSubmission {
            block_id: u64::MAX,
            user: actor_key(4, 0),
            entries: elsewhere,
        })
        .map_err(|e| engine_error(0, e.into()))?;
    publish(&mut chain, bank.key, bank.batch_id, FRESH_BATCH_TOKENS);

    let vendors: Vec<Pubkey> = (0..params.vendor_costs.len())
        .map(|v| actor_key(2, u32::try_from(v).unwrap_or(u32::MAX)))
        .collect();
    let mut users: Vec<SimUser> = (0..params.users)
        .map(|u| SimUser {
            key: actor_key(1, u),
            rng: user_rng(seed, run, u),
            spent_elsewhere: token_entry(bank.key, ELSEWHERE_BATCH, u),
            block_size: params.initial_block_size,
            suspended: false,
            block_size_sum: 0,
            queued_double_spent: 0,
        })
        .collect();

    let mut stats = RunStats {
        run,
        user_slots: params.user_slots(),
        transactions: 0,
        refused_purchases: 0,
        tokens: 0,
        double_spent_tokens: 0,
        double_spent_in_decided_blocks: 0,
        duplicate_decisions: 0,
        tokens_in_decided_blocks: 0,
        blocks: 0,
        invalid_blocks: 0,
        block_size_changes: 0,
        suspended_users: 0,
        mean_block_size: Vec::new(),
        risk_scaled_total: 0,
        realized_risk_total: 0,
    };
    let p = params.purchase_probability;
    let q = params.double_spend_probability;
    let mut next_tx: u64 = 0;
    let mut tokens: Vec<TokenRef> = Vec::new();

    for slot in 1..=params.slots {
        for user in &mut users {
            let buys = user.rng.gen::<f64>() < p;
            if buys {
                let vendor = if vendors.len() > 1 {
                    user.rng.gen_range(0..vendors.len())
                } else {
                    0
                };
                let cost = params.vendor_costs[vendor];
                // Draw every token whether or not the user may buy: streams stay aligned.
                tokens.clear();
                let mut double_spent: u64 = 0;
                for _ in 0..cost {
                    if user.rng.gen::<f64>() < q {
                        double_spent = double_spent.saturating_add(1);
                        tokens.push(user.spent_elsewhere);
                    } else {
                        tokens.push(bank.fresh_token(&mut chain));
                    }
                }
                if user.suspended {
                    stats.refused_purchases = stats.refused_purchases.saturating_add(1);
                } else {
                    next_tx = next_tx.saturating_add(1);
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&next_tx.to_le_bytes());
                    id[8..12].copy_from_slice(&run.to_le_bytes());
                    let summary = TransactionSummary {
                        id: TransactionId(id),
                        user: user.key,
                        vendor: vendors[vendor],
                        tokens: std::mem::take(&mut tokens),
                        submission: id,
                    };
                    let processed = auditor
                        .process(&summary, &mut chain)
                        .map_err(|e| engine_error(slot, e))?;
                    tokens = summary.tokens;
                    stats.transactions = stats.transactions.saturating_add(1);
                    stats.tokens = stats.tokens.saturating_add(cost);
                    stats.double_spent_tokens =
                        stats.double_spent_tokens.saturating_add(double_spent);
                    user.queued_double_spent =
                        user.queued_double_spent.saturating_add(double_spent);
                    if processed.intake.block.is_some() {
                        // The queue, this transaction included, went into the block.
                        stats.double_spent_in_decided_blocks = stats
                            .double_spent_in_decided_blocks
                            .saturating_add(user.queued_double_spent);
                        user.queued_double_spent = 0;
                    }
                    user.block_size = processed.intake.user.trust.block_size;
                    user.suspended = processed.intake.user.suspended;
                    for block in &processed.blocks {
                        record_block(&mut stats, block)?;
                        user.block_size = block.trust.block_size;
                        user.suspended = block.trust.suspended;
                    }
                    if user.block_size == 0 {
                        user.suspended = true;
                    }
                }
            }
            let in_force = if user.suspended { 0 } else { user.block_size };
            user.block_size_sum = user.block_size_sum.saturating_add(u128::from(in_force));
        }
    }

    let horizon = params.slots as f64;
    stats.mean_block_size = users
        .iter()
        .map(|u| u.block_size_sum as f64 / horizon)
        .collect();
    stats.suspended_users =
        u32::try_from(users.iter().filter(|u| u.suspended).count()).unwrap_or(u32::MAX);
    if stats.duplicate_decisions != stats.double_spent_in_decided_blocks {
        return Err(SimError::GroundTruth {
            run,
            duplicates: stats.duplicate_decisions,
            double_spent: stats.double_spent_in_decided_blocks,
        });
    }
    Ok(stats)
}

/// Adds one decided block's counts and risk to the run's totals.
fn record_block(stats: &mut RunStats, block: &BlockOutcome) -> Result<(), SimError> {
    let overflow = || SimError::Overflow("risk total");
    stats.blocks = stats.blocks.saturating_add(1);
    if !block.settlement.block_valid {
        stats.invalid_blocks = stats.invalid_blocks.saturating_add(1);
    }
    if block.trust.block_size != block.trust.block_size_before {
        stats.block_size_changes = stats.block_size_changes.saturating_add(1);
    }
    stats.duplicate_decisions = stats
        .duplicate_decisions
        .saturating_add(block.decisions.duplicate);
    stats.tokens_in_decided_blocks = stats
        .tokens_in_decided_blocks
        .saturating_add(block.settlement.tokens);
    // Eqs. (10)–(12) exactly; every token has value v, so the engine always computes them.
    let scaled = match block.paper_risk {
        Some(risk) => risk.0,
        None => block.risk.checked_mul(10_000).ok_or_else(overflow)?,
    };
    stats.risk_scaled_total = stats
        .risk_scaled_total
        .checked_add(scaled)
        .ok_or_else(overflow)?;
    stats.realized_risk_total = stats
        .realized_risk_total
        .checked_add(block.risk)
        .ok_or_else(overflow)?;
    Ok(())
}
