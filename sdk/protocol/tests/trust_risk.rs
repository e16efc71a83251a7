//! Trust models (eqs. 3–6), the block-size update (eq. 7), risk (eqs. 10–13) and money flows:
//! boundary values, ordering and monotonicity properties, worked examples computed by hand,
//! suspension, the two trust scales, and money balance over thousands of random blocks.
#![allow(clippy::unwrap_used)]

use mupib_protocol::money::{
    payout_of, Amount, BlockSettlement, DeliveryStatus, MoneyError, SettlementTransaction,
    Withholding,
};
use mupib_protocol::risk::{
    block_risk, block_risk_scaled, expected_block_risk, invalid_block_risk,
    proposition2_average_risk, RiskAccount, ScaledRisk, TransactionCounts,
};
use mupib_protocol::trust::{
    next_block_size, trust, BlockSizeOutcome, TrustModel, TrustScale, TrustState, MAX_BLOCK_SIZE,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const NEUTRAL: TrustModel = TrustModel::Neutral;
const OPTIMISTIC: TrustModel = TrustModel::Optimistic;
const PESSIMISTIC: TrustModel = TrustModel::Pessimistic;

fn close(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= relative * expected.abs().max(1e-300)
}

fn update(model: TrustModel, w0: u64, w: u64, gamma: u64, beta: u64) -> BlockSizeOutcome {
    next_block_size(model, TrustScale::Initial, w0, w, gamma, beta).unwrap()
}

/// Blocks of `beta` invalid tokens each until W = 0; panics (test failure) past 10 000 blocks.
fn blocks_to_suspension(model: TrustModel, scale: TrustScale, w0: u64, beta: u64) -> u64 {
    let mut state = TrustState::new(model, scale, w0).unwrap();
    let mut blocks = 0;
    while state.block_size > 0 {
        let before = state.block_size;
        let out = state.apply_block(beta).unwrap();
        assert!(
            out.block_size < before,
            "{model} {scale} W0={w0} β={beta}: W did not fall"
        );
        blocks += 1;
        assert!(blocks <= 10_000, "no suspension");
    }
    blocks
}

// ---------------------------------------------------------------- trust models, eqs. (3)–(6)

#[test]
fn trust_boundary_values_for_all_models() {
    for n in [1u64, 2, 3, 5, 10, 20, 50, 100, 1_000, 1_000_000] {
        let nf = n as f64;
        for model in TrustModel::ALL {
            // T(0) = (N+1)/(N+2): all tokens valid so far.
            assert!(
                close(trust(model, n, 0), (nf + 1.0) / (nf + 2.0), 1e-12),
                "{model} N={n} T(0)={}",
                trust(model, n, 0)
            );
            // T(N) = 1/(N+2): N invalid tokens.
            assert!(
                close(trust(model, n, n), 1.0 / (nf + 2.0), 1e-9),
                "{model} N={n} T(N)={}",
                trust(model, n, n)
            );
        }
    }
}

#[test]
fn trust_past_the_domain_clamps_to_zero_except_pessimistic() {
    for n in [1u64, 10, 100] {
        assert_eq!(trust(NEUTRAL, n, n + 1), 0.0);
        assert_eq!(trust(OPTIMISTIC, n, n + 1), 0.0);
        assert_eq!(trust(NEUTRAL, n, u64::MAX), 0.0);
        assert_eq!(trust(OPTIMISTIC, n, u64::MAX), 0.0);
        let t2 = trust(PESSIMISTIC, n, n + 1);
        assert!(t2 > 0.0 && t2 < 1.0 / (n as f64 + 2.0));
        assert_eq!(trust(PESSIMISTIC, n, u64::MAX), 0.0); // underflows, clamps to 0
    }
}

proptest! {
    #[test]
    fn trust_ordering_pessimistic_le_neutral_le_optimistic(n in 1u64..200_000, frac in 0.0f64..=1.0) {
        let gamma = ((n as f64) * frac).floor() as u64; // γ ∈ [0, N]
        let t0 = trust(NEUTRAL, n, gamma);
        let t1 = trust(OPTIMISTIC, n, gamma);
        let t2 = trust(PESSIMISTIC, n, gamma);
        prop_assert!(t2 <= t0 + 1e-12, "T2={t2} T0={t0} N={n} γ={gamma}");
        prop_assert!(t0 <= t1 + 1e-12, "T0={t0} T1={t1} N={n} γ={gamma}");
        for t in [t0, t1, t2] {
            prop_assert!((0.0..=1.0).contains(&t));
        }
    }

    #[test]
    fn trust_each_model_is_non_increasing(n in 0u64..100_000, gamma in 0u64..300_000, step in 1u64..50) {
        for model in TrustModel::ALL {
            let now = trust(model, n, gamma);
            let later = trust(model, n, gamma + step);
            prop_assert!(later <= now, "{model} N={n} γ={gamma}: {later} > {now}");
        }
    }

    #[test]
    fn trust_strictly_decreasing_inside_domain(n in 1u64..100_000, frac in 0.0f64..1.0) {
        let gamma = ((n as f64) * frac).floor() as u64; // γ < N
        for model in TrustModel::ALL {
            prop_assert!(trust(model, n, gamma + 1) < trust(model, n, gamma), "{model} N={n} γ={gamma}");
        }
    }
}

// ------------------------------------------------------------------ block-size update, eq. (7)

#[test]
fn eq7_neutral_worked_example() {
    // N = W0 = 10, T0(γ) = (11 − γ)/12, x = W·(11 − γ_i)/(11 − γ_{i−1}).
    // β=2: γ 0→2, x = 10·9/11 = 8.18 → 8
    let a = update(NEUTRAL, 10, 10, 0, 2);
    assert_eq!((a.block_size, a.invalid_total), (8, 2));
    assert!(close(a.trust_before, 11.0 / 12.0, 1e-15) && close(a.trust_after, 9.0 / 12.0, 1e-15));
    // β=3: γ 2→5, x = 8·6/9 = 5.33 → 5
    let b = update(NEUTRAL, 10, 8, 2, 3);
    assert_eq!((b.block_size, b.invalid_total), (5, 5));
    // β=0: valid block, W stays 5
    assert_eq!(update(NEUTRAL, 10, 5, 5, 0).block_size, 5);
    // β=4: γ 5→9, x = 5·2/6 = 1.67 → 1
    assert_eq!(update(NEUTRAL, 10, 5, 5, 4).block_size, 1);
    // β=1: γ 9→10, x = 1·1/2 = 0.5 → 0: suspended
    let e = update(NEUTRAL, 10, 1, 9, 1);
    assert_eq!(e.block_size, 0);
    assert!(e.suspended);
    assert!(!a.suspended && !b.suspended);
}

#[test]
fn eq7_optimistic_worked_example() {
    // N = W0 = 10, δ = ln 11 / 10 = 0.239790, T1(γ) = 1 − (11/12)·11^(−(10−γ)/10).
    // T1(0) = 1 − (11/12)/11 = 11/12 = 0.916667
    // T1(2) = 1 − 0.916667·11^(−0.8) = 1 − 0.916667·0.146854 = 0.865384
    // β=2: x = 10·0.865384/0.916667 = 9.4406 → 9
    let a = update(OPTIMISTIC, 10, 10, 0, 2);
    assert_eq!(a.block_size, 9);
    assert!((a.trust_after - 0.865_384).abs() < 1e-6);
    // T1(5) = 1 − 0.916667·11^(−0.5) = 1 − 0.916667·0.301511 = 0.723615
    // β=3: x = 9·0.723615/0.865384 = 7.5256 → 7
    let b = update(OPTIMISTIC, 10, 9, 2, 3);
    assert_eq!(b.block_size, 7);
    assert!((b.trust_after - 0.723_615).abs() < 1e-6);
    // T1(9) = 1 − 0.916667·11^(−0.1) = 1 − 0.916667·0.786948 = 0.278627
    // β=4: x = 7·0.278627/0.723615 = 2.695 → 2  (the convex curve drops fast near the end)
    assert_eq!(update(OPTIMISTIC, 10, 7, 5, 4).block_size, 2);
    // T1(10) = 1/12 = 0.083333; β=1: x = 2·0.083333/0.278627 = 0.598 → 0: suspended
    let e = update(OPTIMISTIC, 10, 2, 9, 1);
    assert_eq!(e.block_size, 0);
    assert!(e.suspended);
}

#[test]
fn eq7_pessimistic_worked_example() {
    // N = W0 = 100, δ = ln 101 / 100 = 0.0461512; T2(γ_i)/T2(γ_{i−1}) = exp(−δβ) = 101^(−β/100).
    // β=5:  ratio 101^(−0.05) = 0.793933, x = 100·0.793933 = 79.39 → 79
    // β=5:  x = 79·0.793933 = 62.72 → 62
    // β=10: ratio 101^(−0.1) = 0.630330, x = 62·0.630330 = 39.08 → 39
    // β=0:  39
    // β=20: ratio 101^(−0.2) = 0.397316, x = 39·0.397316 = 15.50 → 15
    let mut state = TrustState::new(PESSIMISTIC, TrustScale::Initial, 100).unwrap();
    let mut sizes = Vec::new();
    for beta in [5, 5, 10, 0, 20] {
        sizes.push(state.apply_block(beta).unwrap().block_size);
    }
    assert_eq!(sizes, [79, 62, 39, 39, 15]);
    assert_eq!(state.invalid_total, 40);
}

#[test]
fn eq7_floor_guard_keeps_exact_integer_quotients() {
    // Eq. (7) in the form the code computes it: ⌊x⌋ = W − ⌈d⌉, d = W·(1 − T(γ_i)/T(γ_{i−1})).
    // Pessimistic, N = W0 = 80, γ 0 → 20: ratio 81^(−20/80) = 1/3 exactly, so
    // W = 30 → d = 20, x = 10; W = 9 → d = 6, x = 3; W = 15 → x = 5; W = 78 → x = 26.
    // In f64 (glibc) d comes out as 20.000000000000004, 6.000000000000001, 10.000000000000002,
    // 52.00000000000001: an unguarded ceiling would give 9, 2, 4 and 25.
    for (w, expected) in [(30, 10), (9, 3), (15, 5), (78, 26)] {
        let out = update(PESSIMISTIC, 80, w, 0, 20);
        assert_eq!(out.block_size, expected, "W={w}");
        assert!(!out.suspended);
    }
    // N = W0 = 48, γ 0 → 24: ratio 49^(−1/2) = 1/7; W = 35 → d = 30 (f64 30.000000000000004), x = 5.
    assert_eq!(update(PESSIMISTIC, 48, 35, 0, 24).block_size, 5);
    // N = W0 = 24, γ 0 → 12: ratio 25^(−1/2) = 1/5; W = 20 → x = 4, W = 5 → x = 1 (not 0).
    assert_eq!(update(PESSIMISTIC, 24, 20, 0, 12).block_size, 4);
    assert_eq!(update(PESSIMISTIC, 24, 5, 0, 12).block_size, 1);
    // Same with some history (γ_{i−1} = 2): T2(14)/T2(2) = 25^(−1/2) = 1/5 again.
    assert_eq!(update(PESSIMISTIC, 24, 20, 2, 12).block_size, 4);
    // Neutral, exact integers: N = 10, W = 10, γ 1 → 6: x = 10·5/10 = 5.
    assert_eq!(update(NEUTRAL, 10, 10, 1, 5).block_size, 5);
}

#[test]
fn eq7_valid_block_keeps_large_block_sizes_exactly() {
    for w in [
        MAX_BLOCK_SIZE,
        MAX_BLOCK_SIZE - 1,
        1_000_000_000_000_007,
        123_456_789_012_345,
        1,
    ] {
        for model in TrustModel::ALL {
            for scale in TrustScale::ALL {
                // γ within the domain [0, N]: trust is positive, so the block size must stay.
                for gamma in [0, 1, 17].into_iter().filter(|&gamma| gamma <= w) {
                    let out = next_block_size(model, scale, w, w, gamma, 0).unwrap();
                    assert_eq!(out.block_size, w, "{model} {scale} W={w} γ={gamma}");
                    assert_eq!(out.invalid_total, gamma);
                }
            }
        }
    }
}

#[test]
fn eq7_invalid_block_at_the_largest_block_size() {
    let w = MAX_BLOCK_SIZE; // 2^53
                            // Neutral, exact integers: x = 2^53·(2^53 + 1 − 1)/(2^53 + 1) = 2^53 − 1 + 1/(2^53 + 1) → 2^53 − 1.
    assert_eq!(update(NEUTRAL, w, w, 0, 1).block_size, w - 1);
    // γ 0 → 2^52: x = 2^53·(2^52 + 1)/(2^53 + 1) = 2^52 + 0.5 − … → 2^52 (2^52 + 0.49999…).
    assert_eq!(update(NEUTRAL, w, w, 0, 1 << 52).block_size, 1 << 52);
    // The exponential models: trust fell, so W falls by at least one token, never to 0 here.
    for model in [OPTIMISTIC, PESSIMISTIC] {
        let out = update(model, w, w, 0, 1);
        assert!(
            out.block_size < w && out.block_size > 0,
            "{model}: {}",
            out.block_size
        );
    }
    assert!(next_block_size(NEUTRAL, TrustScale::Initial, w, w + 1, 0, 1).is_err());
}

#[test]
fn trust_state_serde_round_trip() {
    let mut state = TrustState::new(OPTIMISTIC, TrustScale::Previous, 64).unwrap();
    state.apply_block(3).unwrap();
    let json = serde_json::to_string(&state).unwrap();
    assert!(
        json.contains("\"optimistic\"") && json.contains("\"previous\""),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<TrustState>(&json).unwrap(), state);
}

proptest! {
    #[test]
    fn eq7_valid_block_keeps_w(
        w0 in 1u64..=MAX_BLOCK_SIZE,
        w_frac in 0.0f64..=1.0,
        gamma in 0u64..1_000,
        model_index in 0usize..3,
    ) {
        let model = TrustModel::ALL[model_index];
        let w = ((w0 as f64) * w_frac).floor().max(1.0) as u64;
        let out = update(model, w0, w, gamma, 0);
        if trust(model, w0, gamma) > 0.0 {
            prop_assert_eq!(out.block_size, w);
        } else {
            prop_assert_eq!(out.block_size, 0);
        }
    }

    #[test]
    fn eq7_result_is_the_floor_of_x(
        w0 in 1u64..1_000_000,
        w_frac in 0.0f64..=1.0,
        gamma_frac in 0.0f64..1.5,
        beta in 1u64..500,
        model_index in 0usize..3,
        previous in any::<bool>(),
    ) {
        let model = TrustModel::ALL[model_index];
        let scale = if previous { TrustScale::Previous } else { TrustScale::Initial };
        let w = ((w0 as f64) * w_frac).floor().max(1.0) as u64;
        let gamma = ((w0 as f64) * gamma_frac).floor() as u64;
        let out = next_block_size(model, scale, w0, w, gamma, beta).unwrap();
        let n = scale.scale_n(w0, w);
        // x_i as eq. (7) writes it, straight from the trust functions.
        let before = trust(model, n, gamma);
        let after = trust(model, n, gamma + beta);
        prop_assert_eq!(out.trust_before, before);
        prop_assert_eq!(out.trust_after, after);
        prop_assert_eq!(out.invalid_total, gamma + beta);
        prop_assert!(out.block_size <= w);
        prop_assert_eq!(out.suspended, out.block_size == 0);
        if before <= 0.0 {
            prop_assert_eq!(out.block_size, 0);
        } else {
            let x = w as f64 * after / before;
            // W_i = ⌊x⌋ up to the float error of x (a few ulps, well under 1e-9 relative)
            prop_assert!(out.block_size as f64 <= x * (1.0 + 1e-9) + 1e-9, "W={} x={x}", out.block_size);
            prop_assert!((out.block_size + 1) as f64 > x * (1.0 - 1e-9), "W={} x={x}", out.block_size);
            if after < before {
                prop_assert!(out.block_size < w, "trust fell but W stayed");
            }
        }
    }
}

#[test]
fn eq7_suspension_reached_and_sticky() {
    for model in TrustModel::ALL {
        let mut state = TrustState::new(model, TrustScale::Initial, 100).unwrap();
        let mut blocks = 0;
        while !state.is_suspended() {
            state.apply_block(1).unwrap();
            blocks += 1;
        }
        // Each block with an invalid token shrinks W by ≥ 1: at most W0 blocks (Proposition 1).
        assert!(blocks <= 100, "{model}: {blocks} blocks");
        assert_eq!(state.block_size, 0);
        // Suspended stays suspended, even after a "valid" block.
        let out = state.apply_block(0).unwrap();
        assert_eq!(out.block_size, 0);
        assert!(out.suspended);
    }
    // Hand-checked counts for W0 = 100, β = 1 per block:
    // neutral: W_i = ⌊W·(101−i)/(102−i)⌋ = 100 − i → exactly 100 blocks;
    assert_eq!(
        blocks_to_suspension(NEUTRAL, TrustScale::Initial, 100, 1),
        100
    );
    // pessimistic: the ratio 101^(−0.01) = 0.95490 shrinks W geometrically, then by one a block
    // once W·0.0451 < 1 — far fewer blocks.
    assert!(blocks_to_suspension(PESSIMISTIC, TrustScale::Initial, 100, 1) < 60);
}

#[test]
fn proposition1_pessimistic_suspends_first_optimistic_last() {
    // Proposition 1.2: n2 ≤ n0 ≤ n1, counted in blocks of β invalid tokens each (scale N = W0).
    for w0 in (1..=120).step_by(7) {
        for beta in 1..=6 {
            let n0 = blocks_to_suspension(NEUTRAL, TrustScale::Initial, w0, beta);
            let n1 = blocks_to_suspension(OPTIMISTIC, TrustScale::Initial, w0, beta);
            let n2 = blocks_to_suspension(PESSIMISTIC, TrustScale::Initial, w0, beta);
            assert!(
                n2 <= n0 && n0 <= n1,
                "W0={w0} β={beta}: n2={n2} n0={n0} n1={n1}"
            );
            // Never more than ⌈(N + 1)/β⌉ blocks: by then γ > N and T0, T1 are 0.
            assert!(n1 <= (w0 + 1).div_ceil(beta), "W0={w0} β={beta}: n1={n1}");
        }
    }
}

#[test]
fn scale_previous_worked_example_and_faster_suspension() {
    // N = W_{i−1}, neutral, W0 = 10:
    // block 1, N = 10, β=2: γ 0→2, x = 10·(11−2)/(11−0) = 8.18 → 8 (same as N = W0)
    // block 2, N = 8,  β=3: γ 2→5, T = (8−2+1)/10 = 0.7 → (8−5+1)/10 = 0.4, x = 8·4/7 = 4.57 → 4
    //                       (N = W0 gives 5)
    // block 3, N = 4,  β=1: T(5) = (4−5+1)/6 = 0: trust already 0 → W = 0, suspended
    //                       (N = W0: x = 5·5/6 = 4.17 → 4)
    let mut previous = TrustState::new(NEUTRAL, TrustScale::Previous, 10).unwrap();
    assert_eq!(previous.apply_block(2).unwrap().block_size, 8);
    let b = previous.apply_block(3).unwrap();
    assert_eq!((b.block_size, b.scale_n), (4, 8));
    assert!(close(b.trust_before, 0.7, 1e-15) && close(b.trust_after, 0.4, 1e-15));
    let c = previous.apply_block(1).unwrap();
    assert_eq!((c.block_size, c.scale_n, c.trust_before), (0, 4, 0.0));
    assert!(c.suspended);

    let mut initial = TrustState::new(NEUTRAL, TrustScale::Initial, 10).unwrap();
    let sizes: Vec<u64> = [2, 3, 1]
        .iter()
        .map(|&beta| initial.apply_block(beta).unwrap().block_size)
        .collect();
    assert_eq!(sizes, [8, 5, 4]);

    // In general N = W_{i−1} never suspends later than N = W0 (γ leaves [0, W_{i−1}] early).
    for model in TrustModel::ALL {
        for w0 in (1..=120).step_by(7) {
            for beta in 1..=6 {
                let fixed = blocks_to_suspension(model, TrustScale::Initial, w0, beta);
                let moving = blocks_to_suspension(model, TrustScale::Previous, w0, beta);
                assert!(
                    moving <= fixed,
                    "{model} W0={w0} β={beta}: {moving} > {fixed}"
                );
            }
        }
    }
}

// ------------------------------------------------------------------------ risk, eqs. (10)–(13)

fn bps(value: u16) -> Withholding {
    Withholding::from_bps(value).unwrap()
}

fn counts(tokens: u64, invalid: u64) -> TransactionCounts {
    TransactionCounts::new(tokens, invalid)
}

#[test]
fn risk_worked_cases_eqs_10_to_12() {
    let rho = bps(2000); // ρ = 20 %
                         // Valid block, W = 12 in 4 transactions of 3, v = 5: eq. (10) −12·5·0.2 = −12.
    let valid = [counts(3, 0); 4];
    assert_eq!(block_risk(&valid, 5, rho).unwrap(), -12.0);
    // Invalid block, v = 5: tr1 = 3 (β 2), tr2 = 3 (β 0), tr3 = 3 (β 1), tr4 waiting = 3 (β 3).
    // eq. (11): paid 9·5·0.8 = 36, received (1 + 3 + 2)·5 = 30, Rsk = 36 − 30 = 6.
    // eq. (12): 5·((2 − 0.6) + (0 − 0.6) + (1 − 0.6)) = 5·1.2 = 6.
    let invalid = [counts(3, 2), counts(3, 0), counts(3, 1), counts(3, 3)];
    assert!((block_risk(&invalid, 5, rho).unwrap() - 6.0).abs() < 1e-12);
    assert_eq!(
        block_risk_scaled(&invalid, 5, rho).unwrap(),
        ScaledRisk(60_000)
    );
    assert!((invalid_block_risk(&invalid[..3], 5, rho) - 6.0).abs() < 1e-12);
    // Long-run risk: −12 + 6 = −6.
    let mut account = RiskAccount::new();
    account.record(&valid, 5, rho).unwrap();
    account.record(&invalid, 5, rho).unwrap();
    assert_eq!(account.total(), -6.0);
    assert_eq!((account.blocks, account.invalid_blocks), (2, 1));
}

#[test]
fn risk_monte_carlo_matches_proposition2() {
    // Prop. 2's setting: W = 100, t = 5 → p = 20 transactions; each holds one invalid token with
    // probability π = 0.15; v = 1, ρ = 5 % (tρ = 0.25). 200 000 blocks, seeded.
    let (w, t, pi, v) = (100u64, 5u64, 0.15f64, 1u64);
    let rho = bps(500);
    let p = w.div_ceil(t) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0013);
    let blocks = 200_000u32;
    let (mut sum_full, mut sq_full, mut sum_eq12, mut sq_eq12) = (0.0, 0.0, 0.0, 0.0);
    let mut block = vec![counts(t, 0); p];
    for _ in 0..blocks {
        for tx in block.iter_mut() {
            tx.invalid_tokens = u64::from(rng.gen_bool(pi));
        }
        let full = block_risk(&block, v, rho).unwrap(); // eqs. (10)–(12)
        let eq12 = invalid_block_risk(&block[..p - 1], v, rho); // eq. (12) on every block
        sum_full += full;
        sq_full += full * full;
        sum_eq12 += eq12;
        sq_eq12 += eq12 * eq12;
    }
    let n = f64::from(blocks);
    let mean_full = sum_full / n;
    let mean_eq12 = sum_eq12 / n;
    let se_full = ((sq_full / n - mean_full * mean_full) / n).sqrt();
    let se_eq12 = ((sq_eq12 / n - mean_eq12 * mean_eq12) / n).sqrt();
    // eq. (13): 1·(0.15 − 0.25)·19 = −1.9
    let oracle = proposition2_average_risk(1.0, pi, t, rho.fraction(), w).unwrap();
    assert!((oracle + 1.9).abs() < 1e-12);
    // Tolerance: 5 standard errors (≈ 0.008 here).
    assert!(
        (mean_eq12 - oracle).abs() < 5.0 * se_eq12,
        "eq12 mean {mean_eq12} vs {oracle} ± {se_eq12}"
    );
    // With tr_p's margin in valid blocks: −1.9 − 5·0.05·0.85^20 = −1.9 − 0.25·0.038760 = −1.90969
    let exact = expected_block_risk(1.0, pi, t, rho.fraction(), w).unwrap();
    assert!((exact - (-1.9 - 0.25 * 0.85f64.powi(20))).abs() < 1e-12);
    assert!(
        (mean_full - exact).abs() < 5.0 * se_full,
        "full mean {mean_full} vs {exact} ± {se_full}"
    );
}

// ---------------------------------------------------------------------------- money flows

/// One random transaction of a block: tokens, invalid tokens, token value, delivered?
fn arb_transaction() -> impl Strategy<Value = (u64, u64, u64, bool)> {
    (
        prop_oneof![20 => 1u64..50, 1 => 1u64..=u64::MAX],
        0.0f64..=1.0,
        prop_oneof![20 => 1u64..1_000_000, 1 => 1u64..=u64::MAX],
        any::<bool>(),
    )
        .prop_map(|(tokens, invalid_frac, value, delivered)| {
            let invalid = if invalid_frac < 0.6 {
                0
            } else {
                ((tokens as f64) * (invalid_frac - 0.6) / 0.4).floor() as u64
            };
            (tokens, invalid.min(tokens), value, delivered)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn money_balances_for_every_block(
        raw in proptest::collection::vec(arb_transaction(), 1..20),
        withholding_bps in 0u16..=10_000,
    ) {
        let withholding = bps(withholding_bps);
        // The paper's block: every transaction but the last delivered at once, the last waiting.
        // Half the time, also try arbitrary statuses (several waiting, none waiting).
        let last = raw.len() - 1;
        let mut txs = Vec::new();
        for (i, &(tokens, invalid, value, delivered)) in raw.iter().enumerate() {
            let status = if raw.len() % 2 == 0 || !delivered {
                if i == last { DeliveryStatus::Waiting } else { DeliveryStatus::Delivered }
            } else if delivered {
                DeliveryStatus::Delivered
            } else {
                DeliveryStatus::Waiting
            };
            match SettlementTransaction::uniform(tokens, invalid, Amount(value), status) {
                Ok(tx) => txs.push(tx),
                // A face value beyond u64 is refused with an error (the transaction is left out).
                Err(MoneyError::Overflow { .. }) => {
                    prop_assert!(u128::from(tokens) * u128::from(value) > u128::from(u64::MAX));
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
            }
        }

        // Independent u128 model of the flows.
        let block_valid = txs.iter().all(|tx| tx.invalid_tokens == 0);
        let (mut escrow, mut payouts, mut refunds, mut margin, mut loss) = (0u128, 0u128, 0u128, 0u128, 0u128);
        for tx in &txs {
            let face = u128::from(tx.face_value.get());
            let valid = u128::from(tx.valid_value.get());
            escrow += valid;
            if tx.status == DeliveryStatus::Delivered || block_valid {
                let payout = face * u128::from(10_000 - withholding_bps) / 10_000;
                payouts += payout;
                margin += face - payout;
                loss += face - valid;
            } else {
                refunds += valid;
            }
        }
        let fits = [escrow, payouts, refunds, margin, loss].iter().all(|&x| x <= u128::from(u64::MAX));
        match BlockSettlement::settle(&txs, withholding) {
            Ok(s) => {
                prop_assert!(fits);
                prop_assert_eq!(s.check_balance(), Ok(()));
                prop_assert_eq!(s.block_valid, block_valid);
                prop_assert_eq!(u128::from(s.escrow_paid.get()), escrow);
                prop_assert_eq!(u128::from(s.vendor_payouts.get()), payouts);
                prop_assert_eq!(u128::from(s.refunds.get()), refunds);
                prop_assert_eq!(u128::from(s.margin.get()), margin);
                prop_assert_eq!(u128::from(s.loss.get()), loss);
                // escrow = payouts + refunds + margin − loss
                prop_assert_eq!(escrow + loss, payouts + refunds + margin);
                if block_valid {
                    prop_assert_eq!(s.loss, Amount::ZERO);
                    prop_assert_eq!(s.refunds, Amount::ZERO);
                }
            }
            Err(MoneyError::Overflow { .. }) => prop_assert!(!fits, "spurious overflow"),
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
        }
    }

    #[test]
    fn money_realized_risk_matches_eq12_up_to_rounding(
        shape in proptest::collection::vec((1u64..30, 0u64..4), 1..25),
        value in 1u64..100_000,
        withholding_bps in 0u16..=10_000,
    ) {
        // The paper's block: tr_1..tr_{p−1} delivered, tr_p waiting, one token value v.
        let withholding = bps(withholding_bps);
        let last = shape.len() - 1;
        let block: Vec<TransactionCounts> =
            shape.iter().map(|&(t, b)| counts(t, b.min(t))).collect();
        let txs: Vec<SettlementTransaction> = block
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let status = if i == last { DeliveryStatus::Waiting } else { DeliveryStatus::Delivered };
                SettlementTransaction::uniform(c.tokens, c.invalid_tokens, Amount(value), status).unwrap()
            })
            .collect();
        let s = BlockSettlement::settle(&txs, withholding).unwrap();
        let scaled = block_risk_scaled(&block, value, withholding).unwrap().0;
        let paid = if s.block_valid { block.len() } else { last } as i128;
        // Payouts round down, so realized risk ≤ eq. (12) risk, by less than one unit per payout.
        let realized_scaled = s.realized_risk() * 10_000;
        prop_assert!(realized_scaled <= scaled, "realized {} > eq12 {}", realized_scaled, scaled);
        prop_assert!(scaled - realized_scaled < 10_000 * paid.max(1));
    }

    #[test]
    fn money_payout_never_exceeds_face_and_rounds_down(face in any::<u64>(), withholding_bps in 0u16..=10_000) {
        let payout = payout_of(Amount(face), bps(withholding_bps)).get();
        prop_assert!(payout <= face);
        let exact_times_10000 = u128::from(face) * u128::from(10_000 - withholding_bps);
        prop_assert!(u128::from(payout) * 10_000 <= exact_times_10000);
        prop_assert!((u128::from(payout) + 1) * 10_000 > exact_times_10000);
    }

    #[test]
    fn money_withholding_parse_display_round_trip(withholding_bps in 0u16..=10_000) {
        let w = bps(withholding_bps);
        prop_assert_eq!(w.to_string().parse::<Withholding>().unwrap(), w);
        prop_assert_eq!(format!("{withholding_bps}bps").parse::<Withholding>().unwrap(), w);
        let fraction = format!("{}.{:04}", withholding_bps / 10_000, withholding_bps % 10_000);
        prop_assert_eq!(fraction.parse::<Withholding>().unwrap(), w);
    }
}
