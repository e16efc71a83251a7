//! Trust models, paper eqs. (3)–(5), and the block-size update, eq. (7) (SPEC §4).
//!
//! The auditor keeps, per user, a cumulative invalid-token count γ and a block size W. After each
//! verified block with β invalid tokens, γ grows by β and the block size shrinks in proportion to
//! the fall in trust (eq. 7). Three auditor profiles give three trust curves, all with the same
//! end points — T(0) = (N+1)/(N+2) and T(N) = 1/(N+2) — and the ordering T2 ≤ T0 ≤ T1 on [0, N]
//! (eq. 6):
//!
//! | model | e | curve |
//! |---|---|---|
//! | [`TrustModel::Neutral`] | 0 | T0(γ) = (N − γ + 1) / (N + 2) — linear, eq. (3) |
//! | [`TrustModel::Optimistic`] | 1 | T1(γ) = 1 − ((N+1)/(N+2)) · exp(−(ln(1+N)/N) · (N − γ)) — eq. (4) |
//! | [`TrustModel::Pessimistic`] | 2 | T2(γ) = (1/(N+2)) · exp((ln(1+N)/N) · (N − γ)) — eq. (5) |
//!
//! # The scale N
//!
//! Eqs. (3)–(5) write the previous block size W_{i−1} where we write N. Proposition 1 and §6.1
//! ("at most W0,u attempts") only make sense with a *fixed* scale, N = W0,u: γ is cumulative, so
//! with N = W_{i−1} it leaves the domain [0, W_{i−1}] within a few blocks and trust collapses to 0.
//! The default is therefore [`TrustScale::Initial`] (N = W0,u); [`TrustScale::Previous`]
//! (N = W_{i−1}) is offered so the simulation can show the difference. Whichever scale is chosen,
//! both trust values of one update, T(γ_{i−1}) and T(γ_i), are evaluated with the same N.
//!
//! # Beyond the domain (γ > N)
//!
//! Trust is clamped to [0, 1]. Past the domain the neutral curve reaches 0 at γ = N + 1 and the
//! optimistic one just above γ = N (both clamp to 0, so the next update sets W = 0 and suspends the
//! user). The pessimistic curve is positive for every γ; it never clamps, but its ratio
//! T2(γ_i)/T2(γ_{i−1}) = exp(−δ·β_i) shrinks W geometrically until the floor of eq. (7) reaches 0.
//!
//! # Floating point
//!
//! Trust is a real-valued measure, computed in `f64`. The block size is an integer: a valid block
//! (β = 0) keeps W exactly, without touching floating point. The neutral update is computed in
//! exact integer arithmetic (the ratio of eq. 7 is a ratio of integers). For the exponential models
//! eq. (7) is rewritten as W_i = ⌊x_i⌋ = W_{i−1} − ⌈d_i⌉ with the decrement
//! d_i = W_{i−1}·(1 − T(γ_i)/T(γ_{i−1})) computed without cancellation (`exp_m1`), so that the
//! result is accurate even where trust barely moves (large N); the ceiling is guarded by a relative
//! epsilon ([`FLOOR_GUARD_RELATIVE`]) so that a decrement that is mathematically an integer but
//! lands an ulp above it is not rounded one too high.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest block size (and scale N) the update accepts: 2^53, the largest range in which every
/// integer is exactly representable as an `f64`. Real block sizes are orders of magnitude smaller.
pub const MAX_BLOCK_SIZE: u64 = 1 << 53;

/// Relative epsilon guarding the floor of eq. (7) for the exponential models:
/// W_i = W_{i−1} − ⌈d·(1 − ε)⌉ with d = W_{i−1}·(1 − T(γ_i)/T(γ_{i−1})).
///
/// The computed d carries a relative error of a few ulps (≈ 1e-15: one `exp`, one `exp_m1`, a few
/// products and quotients), so ε = 1e-12 absorbs it with three orders of margin. The price: a true
/// d whose fractional part lies within d·1e-12 above an integer rounds down to that integer. For
/// block sizes below 10^6 that is a window under 1e-6 tokens, far finer than any meaningful trust
/// change.
pub const FLOOR_GUARD_RELATIVE: f64 = 1e-12;

/// Errors of the trust and block-size computations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The name is not one of the three trust models.
    #[error("unknown trust model {given:?}: use one of neutral, optimistic, pessimistic")]
    UnknownModel {
        /// The rejected input.
        given: String,
    },
    /// The name is not one of the two trust scales.
    #[error("unknown trust scale {given:?}: use initial (N = W0, the default) or previous (N = W_{{i-1}})")]
    UnknownScale {
        /// The rejected input.
        given: String,
    },
    /// γ_{i−1} + β_i does not fit in a u64.
    #[error("cumulative invalid count overflows: {previous} + {block} exceeds u64; the user's history is corrupt")]
    InvalidCountOverflow {
        /// γ_{i−1}.
        previous: u64,
        /// β_i.
        block: u64,
    },
    /// A block size or scale above [`MAX_BLOCK_SIZE`].
    #[error(
        "{what} {value} exceeds the maximum block size {max}: choose a smaller initial block size"
    )]
    BlockSizeTooLarge {
        /// Which quantity (initial or previous block size).
        what: &'static str,
        /// The rejected value.
        value: u64,
        /// [`MAX_BLOCK_SIZE`].
        max: u64,
    },
}

/// The auditor's trust profile, `e` in the paper (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustModel {
    /// e = 0, risk-neutral: linear trust, eq. (3).
    Neutral,
    /// e = 1, risk lover: convex trust that falls slowly at first, eq. (4).
    Optimistic,
    /// e = 2, risk averse: trust that falls fast at first, eq. (5).
    Pessimistic,
}

impl TrustModel {
    /// The three models in the paper's order e = 0, 1, 2.
    pub const ALL: [TrustModel; 3] = [
        TrustModel::Neutral,
        TrustModel::Optimistic,
        TrustModel::Pessimistic,
    ];

    /// The paper's index e (0 neutral, 1 optimistic, 2 pessimistic).
    pub const fn index(self) -> u8 {
        match self {
            TrustModel::Neutral => 0,
            TrustModel::Optimistic => 1,
            TrustModel::Pessimistic => 2,
        }
    }

    /// The lowercase name used in configuration, the CLI and CSV output.
    pub const fn name(self) -> &'static str {
        match self {
            TrustModel::Neutral => "neutral",
            TrustModel::Optimistic => "optimistic",
            TrustModel::Pessimistic => "pessimistic",
        }
    }

    /// T_e(γ) with scale N, eqs. (3)–(5), clamped to [0, 1]. Same as [`trust`].
    pub fn trust(self, scale_n: u64, invalid_total: u64) -> f64 {
        TrustCurve::new(self, scale_n).trust(invalid_total)
    }
}

impl fmt::Display for TrustModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TrustModel {
    type Err = TrustError;

    /// Parses `neutral`, `optimistic` or `pessimistic` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustModel::ALL
            .into_iter()
            .find(|model| model.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| TrustError::UnknownModel {
                given: s.to_owned(),
            })
    }
}

/// Which quantity plays the scale N in eqs. (3)–(5) (SPEC §4, "The scale N").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustScale {
    /// N = W0,u, the user's initial block size (default): the only reading under which
    /// Proposition 1 and §6.1's "at most W0,u attempts" hold, since γ is cumulative.
    #[default]
    Initial,
    /// N = W_{i−1}, the literal reading of eqs. (3)–(5). γ soon exceeds W_{i−1}, trust clamps to 0
    /// and the user is suspended after a few invalid blocks.
    Previous,
}

impl TrustScale {
    /// Both scales, default first.
    pub const ALL: [TrustScale; 2] = [TrustScale::Initial, TrustScale::Previous];

    /// The lowercase name used in configuration, the CLI and CSV output.
    pub const fn name(self) -> &'static str {
        match self {
            TrustScale::Initial => "initial",
            TrustScale::Previous => "previous",
        }
    }

    /// The scale N for an update from a block of size `previous_block_size` (W_{i−1}) of a user
    /// whose initial block size is `initial_block_size` (W0,u).
    pub const fn scale_n(self, initial_block_size: u64, previous_block_size: u64) -> u64 {
        match self {
            TrustScale::Initial => initial_block_size,
            TrustScale::Previous => previous_block_size,
        }
    }
}

impl fmt::Display for TrustScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TrustScale {
    type Err = TrustError;

    /// Parses `initial` (also `w0`) or `previous` (also `w-prev`), ASCII case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        if given.eq_ignore_ascii_case("initial") || given.eq_ignore_ascii_case("w0") {
            Ok(TrustScale::Initial)
        } else if given.eq_ignore_ascii_case("previous") || given.eq_ignore_ascii_case("w-prev") {
            Ok(TrustScale::Previous)
        } else {
            Err(TrustError::UnknownScale {
                given: s.to_owned(),
            })
        }
    }
}

/// One trust curve T_e(·) with its constants precomputed for a scale N (eqs. 3–5).
///
/// Cheap to build (one `ln_1p`) and allocation-free; hold one when evaluating many γ for the
/// same N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustCurve {
    model: TrustModel,
    /// N as a float.
    scale: f64,
    /// δ = ln(1 + N) / N (δ1 = δ2 in the paper); its limit 1 at N = 0.
    delta: f64,
    /// (N + 1) / (N + 2), T(0) and γ2 of eq. (4).
    top: f64,
    /// 1 / (N + 2), T(N) and γ1 of eq. (5).
    bottom: f64,
}

impl TrustCurve {
    /// The curve of `model` with scale `scale_n` (N). N = 0 is allowed (a degenerate curve with
    /// T(0) = 1/2, δ taken as its limit 1); N above 2^53 loses integer precision in `f64`.
    pub fn new(model: TrustModel, scale_n: u64) -> Self {
        // Exact for N ≤ 2^53; callers of the block-size update are held to MAX_BLOCK_SIZE.
        let scale = scale_n as f64;
        let delta = if scale_n == 0 {
            1.0
        } else {
            scale.ln_1p() / scale
        };
        TrustCurve {
            model,
            scale,
            delta,
            top: (scale + 1.0) / (scale + 2.0),
            bottom: 1.0 / (scale + 2.0),
        }
    }

    /// The model of this curve.
    pub const fn model(&self) -> TrustModel {
        self.model
    }

    /// T_e(γ), eqs. (3)–(5), clamped to [0, 1] (SPEC §4).
    pub fn trust(&self, invalid_total: u64) -> f64 {
        let remaining = self.scale - invalid_total as f64; // N − γ
        let raw = match self.model {
            // eq. (3): (N − γ + 1) / (N + 2)
            TrustModel::Neutral => (remaining + 1.0) / (self.scale + 2.0),
            // eq. (4): 1 − γ2·exp(−δ2·(N − γ)), γ2 = (N+1)/(N+2), δ2 = ln(1+N)/N
            TrustModel::Optimistic => 1.0 - self.top * (-self.delta * remaining).exp(),
            // eq. (5): γ1·exp(δ1·(N − γ)), γ1 = 1/(N+2), δ1 = ln(1+N)/N
            TrustModel::Pessimistic => self.bottom * (self.delta * remaining).exp(),
        };
        if raw.is_nan() {
            0.0
        } else {
            raw.clamp(0.0, 1.0)
        }
    }
}

impl TrustCurve {
    /// 1 − T(γ + β)/T(γ) for unclamped trust values, without cancellation: the relative fall of
    /// trust that eq. (7) applies to the block size.
    ///
    /// - neutral: β / (N + 1 − γ);
    /// - optimistic: with a = ((N+1)/(N+2))·exp(−δ(N − γ)), T1(γ) = 1 − a and
    ///   T1(γ+β) = 1 − a·exp(δβ), so the fall is a·expm1(δβ) / (1 − a);
    /// - pessimistic: T2(γ+β)/T2(γ) = exp(−δβ), so the fall is −expm1(−δβ).
    ///
    /// Only meaningful while both trust values are positive (the caller checks).
    pub fn relative_fall(&self, invalid_before: u64, block_invalid: u64) -> f64 {
        let step = self.delta * block_invalid as f64;
        let remaining = self.scale - invalid_before as f64; // N − γ
        match self.model {
            TrustModel::Neutral => block_invalid as f64 / (remaining + 1.0),
            TrustModel::Optimistic => {
                let a = self.top * (-self.delta * remaining).exp();
                a * step.exp_m1() / (1.0 - a)
            }
            TrustModel::Pessimistic => -(-step).exp_m1(),
        }
    }
}

/// T_e(γ) for model `model`, scale N = `scale_n`, cumulative invalid count γ = `invalid_total`:
/// eqs. (3)–(5) exactly as SPEC §4 writes them, clamped to [0, 1].
pub fn trust(model: TrustModel, scale_n: u64, invalid_total: u64) -> f64 {
    TrustCurve::new(model, scale_n).trust(invalid_total)
}

/// The inputs of one block-size update, eq. (7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSizeUpdate {
    /// The auditor's trust model e.
    pub model: TrustModel,
    /// Which quantity is the scale N.
    pub scale: TrustScale,
    /// W0,u, the user's initial block size.
    pub initial_block_size: u64,
    /// W_{i−1}, the block size in force when block i was formed.
    pub previous_block_size: u64,
    /// γ_{i−1}, the cumulative invalid count before block i.
    pub previous_invalid_total: u64,
    /// β_i, the invalid tokens the chain found in block i.
    pub block_invalid: u64,
}

/// The result of one block-size update, eq. (7).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlockSizeOutcome {
    /// W_i = max(0, ⌊x_i⌋), never above W_{i−1}.
    pub block_size: u64,
    /// γ_i = γ_{i−1} + β_i.
    pub invalid_total: u64,
    /// The scale N used for both trust values.
    pub scale_n: u64,
    /// T_e(γ_{i−1}).
    pub trust_before: f64,
    /// T_e(γ_i).
    pub trust_after: f64,
    /// W_i = 0 (which includes a zero trust before or after the update): the user is suspended.
    pub suspended: bool,
}

impl BlockSizeUpdate {
    /// Applies eq. (7): γ_i = γ_{i−1} + β_i, x_i = W_{i−1}·T(γ_i)/T(γ_{i−1}), W_i = max(0, ⌊x_i⌋).
    ///
    /// - β_i = 0 (a valid block) with positive trust: W_i = W_{i−1} exactly, no floating point.
    /// - T(γ_{i−1}) = 0 or W_{i−1} = 0: W_i = 0 (the user was already out of trust).
    /// - Neutral model: x_i = W_{i−1}·(N + 1 − γ_i)/(N + 1 − γ_{i−1}), floored in exact integer
    ///   arithmetic in every case (0 once γ_{i−1} or γ_i ≥ N + 1, where T0 clamps to 0); the
    ///   reported `f64` trust values are for display and may round at N near 2^53.
    /// - Exponential models (β_i ≥ 1, both trust values positive): W_i = W_{i−1} − ⌈d_i⌉ with
    ///   d_i = W_{i−1}·(1 − T(γ_i)/T(γ_{i−1})) in `f64` without cancellation, the ceiling guarded
    ///   by [`FLOOR_GUARD_RELATIVE`], and at least one token (T is strictly decreasing, so
    ///   x_i < W_{i−1} exactly and ⌊x_i⌋ ≤ W_{i−1} − 1).
    ///
    /// Every block with an invalid token and positive trust therefore shrinks W by at least one
    /// token, so a user reaches W = 0 after at most W_{i−1} such blocks (Proposition 1).
    ///
    /// `suspended` is set exactly when W_i = 0.
    ///
    /// # Errors
    /// [`TrustError::InvalidCountOverflow`] if γ_{i−1} + β_i overflows;
    /// [`TrustError::BlockSizeTooLarge`] if W0 or W_{i−1} exceeds [`MAX_BLOCK_SIZE`].
    pub fn apply(&self) -> Result<BlockSizeOutcome, TrustError> {
        for (what, value) in [
            ("initial block size", self.initial_block_size),
            ("previous block size", self.previous_block_size),
        ] {
            if value > MAX_BLOCK_SIZE {
                return Err(TrustError::BlockSizeTooLarge {
                    what,
                    value,
                    max: MAX_BLOCK_SIZE,
                });
            }
        }
        let previous = self.previous_invalid_total;
        let invalid_total =
            previous
                .checked_add(self.block_invalid)
                .ok_or(TrustError::InvalidCountOverflow {
                    previous,
                    block: self.block_invalid,
                })?;
        let scale_n = self
            .scale
            .scale_n(self.initial_block_size, self.previous_block_size);
        let curve = TrustCurve::new(self.model, scale_n);
        let trust_before = curve.trust(previous);
        let trust_after = curve.trust(invalid_total);
        let block_size =
            self.updated_block_size(&curve, scale_n, invalid_total, trust_before, trust_after);
        Ok(BlockSizeOutcome {
            block_size,
            invalid_total,
            scale_n,
            trust_before,
            trust_after,
            suspended: block_size == 0,
        })
    }

    /// W_i from eq. (7), given the two trust values (already computed by [`Self::apply`]).
    fn updated_block_size(
        &self,
        curve: &TrustCurve,
        scale_n: u64,
        invalid_total: u64,
        trust_before: f64,
        trust_after: f64,
    ) -> u64 {
        let previous_size = self.previous_block_size;
        if let TrustModel::Neutral = self.model {
            // Exact integers throughout, including γ ≥ N + 1 (T0 = 0) and β = 0 (ratio 1).
            return neutral_block_size(
                previous_size,
                scale_n,
                self.previous_invalid_total,
                invalid_total,
            );
        }
        if previous_size == 0 || trust_before <= 0.0 {
            return 0;
        }
        // A valid block: eq. (7) gives x_i = W_{i−1} exactly.
        if self.block_invalid == 0 {
            return previous_size;
        }
        if trust_after <= 0.0 {
            return 0;
        }
        // β_i ≥ 1 and both trust values positive: T(γ_i) < T(γ_{i−1}), ⌊x_i⌋ = W − ⌈d⌉, d ∈ (0, W).
        let decrement = curve.relative_fall(self.previous_invalid_total, self.block_invalid)
            * previous_size as f64;
        let steps = (decrement * (1.0 - FLOOR_GUARD_RELATIVE)).ceil();
        if steps.is_nan() || steps >= previous_size as f64 {
            0
        } else if steps <= 1.0 {
            previous_size - 1 // previous_size ≥ 1 here
        } else {
            // 1 < steps < W_{i−1} ≤ 2^53: an exactly representable integer.
            previous_size - steps as u64
        }
    }
}

/// Neutral eq. (7) in integers: ⌊W·(N + 1 − γ_i)/(N + 1 − γ_{i−1})⌋, 0 once γ_i ≥ N + 1.
fn neutral_block_size(
    previous_size: u64,
    scale_n: u64,
    previous_invalid: u64,
    invalid_total: u64,
) -> u64 {
    let top = u128::from(scale_n) + 1;
    let before = top.saturating_sub(u128::from(previous_invalid));
    let after = top.saturating_sub(u128::from(invalid_total));
    if before == 0 || after == 0 {
        return 0;
    }
    // W ≤ 2^53 and after ≤ 2^53 + 1: the product fits in u128; the quotient is ≤ W (after ≤ before).
    let quotient = u128::from(previous_size) * after / before;
    u64::try_from(quotient).map_or(previous_size, |size| size.min(previous_size))
}

/// Eq. (7) as a free function: see [`BlockSizeUpdate::apply`].
///
/// `initial_block_size` is W0,u, `previous_block_size` W_{i−1}, `previous_invalid_total` γ_{i−1},
/// `block_invalid` β_i.
///
/// # Errors
/// As [`BlockSizeUpdate::apply`].
pub fn next_block_size(
    model: TrustModel,
    scale: TrustScale,
    initial_block_size: u64,
    previous_block_size: u64,
    previous_invalid_total: u64,
    block_invalid: u64,
) -> Result<BlockSizeOutcome, TrustError> {
    BlockSizeUpdate {
        model,
        scale,
        initial_block_size,
        previous_block_size,
        previous_invalid_total,
        block_invalid,
    }
    .apply()
}

/// A user's trust state as the auditor keeps it (SPEC §4): model, scale, W0,u, W and γ.
///
/// A convenience over [`next_block_size`] for the engine and the simulation; allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// The auditor's trust model for this user.
    pub model: TrustModel,
    /// The scale N in use.
    pub scale: TrustScale,
    /// W0,u.
    pub initial_block_size: u64,
    /// The current block size W (W_{i} after i blocks).
    pub block_size: u64,
    /// γ, the cumulative invalid-token count.
    pub invalid_total: u64,
}

impl TrustState {
    /// A new user with block size W0,u and γ = 0.
    ///
    /// # Errors
    /// [`TrustError::BlockSizeTooLarge`] if `initial_block_size` exceeds [`MAX_BLOCK_SIZE`].
    pub fn new(
        model: TrustModel,
        scale: TrustScale,
        initial_block_size: u64,
    ) -> Result<Self, TrustError> {
        if initial_block_size > MAX_BLOCK_SIZE {
            return Err(TrustError::BlockSizeTooLarge {
                what: "initial block size",
                value: initial_block_size,
                max: MAX_BLOCK_SIZE,
            });
        }
        Ok(TrustState {
            model,
            scale,
            initial_block_size,
            block_size: initial_block_size,
            invalid_total: 0,
        })
    }

    /// The scale N the next update will use.
    pub const fn scale_n(&self) -> u64 {
        self.scale.scale_n(self.initial_block_size, self.block_size)
    }

    /// The current trust T_e(γ) at the scale the next update will use.
    pub fn trust(&self) -> f64 {
        trust(self.model, self.scale_n(), self.invalid_total)
    }

    /// W = 0 or zero trust: new transactions must be refused.
    pub fn is_suspended(&self) -> bool {
        self.block_size == 0 || self.trust() <= 0.0
    }

    /// Applies a verified block with `block_invalid` (β_i) invalid tokens; on success the state
    /// holds W_i and γ_i. On error the state is unchanged.
    ///
    /// # Errors
    /// As [`BlockSizeUpdate::apply`].
    pub fn apply_block(&mut self, block_invalid: u64) -> Result<BlockSizeOutcome, TrustError> {
        let outcome = next_block_size(
            self.model,
            self.scale,
            self.initial_block_size,
            self.block_size,
            self.invalid_total,
            block_invalid,
        )?;
        self.block_size = outcome.block_size;
        self.invalid_total = outcome.invalid_total;
        Ok(outcome)
    }
}

/// A trust and block-size update (eq. 7) as the auditor records and reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrustUpdate {
    /// W_{i−1}.
    pub block_size_before: u64,
    /// W_i.
    pub block_size: u64,
    /// γ_{i−1}.
    pub invalid_before: u64,
    /// γ_i.
    pub invalid_total: u64,
    /// T_e(γ_{i−1}), stored bit-exactly.
    #[serde(with = "f64_bits")]
    pub trust_before: f64,
    /// T_e(γ_i), stored bit-exactly.
    #[serde(with = "f64_bits")]
    pub trust_after: f64,
    /// The user is (now) suspended.
    pub suspended: bool,
}

impl TrustUpdate {
    /// The update `outcome` made to a state that had W_{i−1} = `block_size_before` and
    /// γ_{i−1} = `invalid_before`; `suspended` is the user's suspension after it.
    pub fn new(
        block_size_before: u64,
        invalid_before: u64,
        outcome: &BlockSizeOutcome,
        suspended: bool,
    ) -> Self {
        TrustUpdate {
            block_size_before,
            block_size: outcome.block_size,
            invalid_before,
            invalid_total: outcome.invalid_total,
            trust_before: outcome.trust_before,
            trust_after: outcome.trust_after,
            suspended,
        }
    }
}

/// Serializes an `f64` as its bit pattern, so a stored outcome reads back bit-exactly.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_model_names_round_trip() {
        for model in TrustModel::ALL {
            assert_eq!(model.to_string().parse::<TrustModel>().unwrap(), model);
            let json = serde_json::to_string(&model).unwrap();
            assert_eq!(json, format!("\"{}\"", model.name()));
            assert_eq!(serde_json::from_str::<TrustModel>(&json).unwrap(), model);
        }
        assert_eq!(TrustModel::Neutral.index(), 0);
        assert_eq!(TrustModel::Optimistic.index(), 1);
        assert_eq!(TrustModel::Pessimistic.index(), 2);
        assert_eq!(
            "Pessimistic".parse::<TrustModel>().unwrap(),
            TrustModel::Pessimistic
        );
        assert!(matches!(
            "cautious".parse::<TrustModel>(),
            Err(TrustError::UnknownModel { .. })
        ));
    }

    #[test]
    fn trust_scale_names_and_default() {
        assert_eq!(TrustScale::default(), TrustScale::Initial);
        for scale in TrustScale::ALL {
            assert_eq!(scale.to_string().parse::<TrustScale>().unwrap(), scale);
        }
        assert!("latest".parse::<TrustScale>().is_err());
        assert_eq!(TrustScale::Initial.scale_n(100, 40), 100);
        assert_eq!(TrustScale::Previous.scale_n(100, 40), 40);
    }

    #[test]
    fn trust_neutral_hand_values() {
        // N = 10: T0(γ) = (11 − γ)/12.
        assert!((trust(TrustModel::Neutral, 10, 0) - 11.0 / 12.0).abs() < 1e-15);
        assert!((trust(TrustModel::Neutral, 10, 5) - 6.0 / 12.0).abs() < 1e-15);
        assert!((trust(TrustModel::Neutral, 10, 10) - 1.0 / 12.0).abs() < 1e-15);
        assert_eq!(trust(TrustModel::Neutral, 10, 11), 0.0);
        assert_eq!(trust(TrustModel::Neutral, 10, 500), 0.0);
    }

    #[test]
    fn trust_exponential_hand_values() {
        // N = 3: δ = ln 4 / 3, so exp(δ·k) = 4^(k/3).
        // Pessimistic T2(1) = (1/5)·4^(2/3) = 0.2 · 2.5198421 = 0.50396842.
        assert!((trust(TrustModel::Pessimistic, 3, 1) - 0.2 * 4f64.powf(2.0 / 3.0)).abs() < 1e-12);
        assert!((trust(TrustModel::Pessimistic, 3, 1) - 0.503_968_42).abs() < 1e-8);
        // Optimistic T1(1) = 1 − (4/5)·4^(−2/3) = 1 − 0.8·0.39685026 = 0.68251979.
        assert!((trust(TrustModel::Optimistic, 3, 1) - 0.682_519_79).abs() < 1e-8);
        // Beyond N the optimistic curve goes negative and clamps: T1(4) = 1 − 0.8·4^(1/3) < 0.
        assert_eq!(trust(TrustModel::Optimistic, 3, 4), 0.0);
        // The pessimistic one stays positive: T2(6) = 0.2·4^(−1) = 0.05.
        assert!((trust(TrustModel::Pessimistic, 3, 6) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn trust_degenerate_scale_zero() {
        for model in TrustModel::ALL {
            assert!((trust(model, 0, 0) - 0.5).abs() < 1e-15, "{model}");
        }
    }

    #[test]
    fn trust_valid_block_keeps_size_without_float() {
        for model in TrustModel::ALL {
            let out = next_block_size(model, TrustScale::Initial, 100, 73, 4, 0).unwrap();
            assert_eq!(out.block_size, 73);
            assert_eq!(out.invalid_total, 4);
            assert!(!out.suspended);
        }
    }

    #[test]
    fn trust_neutral_exact_integer_quotient() {
        // N = W0 = 10, W = 10, γ 1 → 6: x = 10·(11−6)/(11−1) = 5 exactly (float could give 4.999…).
        let out = next_block_size(TrustModel::Neutral, TrustScale::Initial, 10, 10, 1, 5).unwrap();
        assert_eq!(out.block_size, 5);
        assert_eq!(out.invalid_total, 6);
    }

    #[test]
    fn trust_overflowing_invalid_count_is_an_error() {
        let err = next_block_size(
            TrustModel::Neutral,
            TrustScale::Initial,
            10,
            10,
            u64::MAX,
            1,
        );
        assert_eq!(
            err,
            Err(TrustError::InvalidCountOverflow {
                previous: u64::MAX,
                block: 1
            })
        );
    }

    #[test]
    fn trust_oversized_block_is_an_error() {
        let err = next_block_size(
            TrustModel::Optimistic,
            TrustScale::Initial,
            MAX_BLOCK_SIZE + 1,
            10,
            0,
            1,
        );
        assert!(matches!(err, Err(TrustError::BlockSizeTooLarge { .. })));
        assert!(TrustState::new(TrustModel::Neutral, TrustScale::Initial, u64::MAX).is_err());
    }

    #[test]
    fn trust_state_failed_update_leaves_state_unchanged() {
        let mut state = TrustState::new(TrustModel::Neutral, TrustScale::Initial, 10).unwrap();
        state.invalid_total = u64::MAX;
        let before = state;
        assert!(state.apply_block(1).is_err());
        assert_eq!(state, before);
    }
}
