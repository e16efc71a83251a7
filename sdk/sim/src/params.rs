//! The simulation's parameters (paper §7.1 and table 2) and their validation.

use serde::{Deserialize, Serialize};

use super::SimError;
use mupib_protocol::money::Withholding;
use mupib_protocol::trust::{TrustModel, TrustScale, MAX_BLOCK_SIZE};

/// Default horizon in slots (see `docs/simulation.md` for why).
pub const DEFAULT_SLOTS: u64 = 1_000;
/// Default Monte Carlo repetitions per point for the single-user figures (3–6, 9–12).
pub const DEFAULT_RUNS: u32 = 100;
/// Default Monte Carlo repetitions per point for the multi-user figures (7, 8): each run already
/// averages 1–100 users, so fewer runs give a comparable standard error.
pub const DEFAULT_RUNS_MULTI_USER: u32 = 10;
/// Default base seed.
pub const DEFAULT_SEED: u64 = 2024;
/// Largest product cost accepted, in tokens (a transaction of that many tokens is still cheap).
pub const MAX_COST: u64 = 100_000;
/// Largest number of users per run accepted.
pub const MAX_USERS: u32 = 1_000_000;
/// Largest number of vendors per run accepted.
pub const MAX_VENDORS: u32 = 10_000;

/// One simulated market: what a run simulates (paper §7.1's purchase, user, block-size and
/// auditor models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimParams {
    /// W0,u, every user's initial block size (table 2: 100).
    pub initial_block_size: u64,
    /// The vendors' product costs in tokens, one entry per vendor (table 2: one vendor, cost 5).
    /// A buying user picks a vendor uniformly at random and pays its cost.
    pub vendor_costs: Vec<u64>,
    /// p, the probability that a user buys one product in a slot (table 2: 0.4).
    pub purchase_probability: f64,
    /// q, the probability that a token is a double-spend (table 2: 0.2).
    pub double_spend_probability: f64,
    /// ρ, the auditor's withholding (table 2's "20" is 20 %).
    pub withholding: Withholding,
    /// Number of users n (table 2: 1). Users are independent and identically distributed.
    pub users: u32,
    /// The auditor's trust model e for every user.
    pub trust_model: TrustModel,
    /// The scale N of eqs. (3)–(5).
    pub trust_scale: TrustScale,
    /// Horizon T in slots.
    pub slots: u64,
}

impl SimParams {
    /// Table 2: W0 = 100, cost 5, p = 0.4, one user, one vendor, q = 0.2, ρ = 20 %; neutral model,
    /// N = W0, [`DEFAULT_SLOTS`] slots.
    pub fn table2() -> Self {
        SimParams {
            initial_block_size: 100,
            vendor_costs: vec![5],
            purchase_probability: 0.4,
            double_spend_probability: 0.2,
            withholding: Withholding::from_bps(2_000).unwrap_or(Withholding::ZERO),
            users: 1,
            trust_model: TrustModel::Neutral,
            trust_scale: TrustScale::Initial,
            slots: DEFAULT_SLOTS,
        }
    }

    /// Number of vendors m.
    pub fn vendors(&self) -> usize {
        self.vendor_costs.len()
    }

    /// Users × slots: the work of one run.
    pub fn user_slots(&self) -> u64 {
        u64::from(self.users).saturating_mul(self.slots)
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`SimError::Probability`] for p or q outside [0, 1] (or not finite);
    /// [`SimError::OutOfRange`] for a zero or oversized W0, cost, user count, vendor count or
    /// horizon.
    pub fn validate(&self) -> Result<(), SimError> {
        check_probability("p (purchase probability)", self.purchase_probability)?;
        check_probability(
            "q (double-spend probability)",
            self.double_spend_probability,
        )?;
        check_range(
            "W0 (initial block size)",
            self.initial_block_size,
            1,
            MAX_BLOCK_SIZE,
        )?;
        check_range(
            "number of users",
            u64::from(self.users),
            1,
            u64::from(MAX_USERS),
        )?;
        check_range("slots (horizon)", self.slots, 1, u64::MAX)?;
        let vendors = u64::try_from(self.vendor_costs.len()).unwrap_or(u64::MAX);
        check_range("number of vendors", vendors, 1, u64::from(MAX_VENDORS))?;
        for cost in &self.vendor_costs {
            check_range("product cost (tokens)", *cost, 1, MAX_COST)?;
        }
        Ok(())
    }
}

/// Monte Carlo settings: repetitions and the base seed. Run r of every point uses the random
/// streams of (seed, r), so points of a figure are compared on common random numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonteCarlo {
    /// Repetitions per point, or `None` for each figure's default ([`DEFAULT_RUNS`] or
    /// [`DEFAULT_RUNS_MULTI_USER`]).
    pub runs: Option<u32>,
    /// The base seed.
    pub seed: u64,
}

impl Default for MonteCarlo {
    fn default() -> Self {
        MonteCarlo {
            runs: None,
            seed: DEFAULT_SEED,
        }
    }
}

/// p or q must be a finite probability.
pub(crate) fn check_probability(name: &'static str, value: f64) -> Result<(), SimError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(SimError::Probability { name, value })
    }
}

/// A count within [min, max].
pub(crate) fn check_range(
    name: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), SimError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SimError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}
