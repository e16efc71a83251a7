//! The paper's claims about each of figures 3–12 (§7.2), with the reasons attached where our
//! numbers differ, checked with the verdicts of [`super::check`].

use super::check::{
    all_negative, combine, extremum, fmt_num, fmt_x, is_extreme, monotone, ordering, Cmp, Ctx, Dir,
    Sequence, Table, Value,
};
use super::{ClaimCheck, ClaimVerdict};
use crate::figures::FigureResult;
use crate::Row;

const MODELS: [&str; 3] = ["neutral", "optimistic", "pessimistic"];

const IID_USERS: &str =
    "Users are independent and identically distributed and the auditor keeps a \
separate queue, W and γ per user, so the average of n users' mean W has the same expectation for \
every n: only its spread over runs shrinks (as 1/√n). \"More users, more chance of a dishonest \
user\" raises the chance that SOME user is suspended, not the average; an effect of n on the \
average needs users that interact (shared tokens, a shared W, or a budget), which neither the \
paper's model nor ours has.";

const RISK_VS_Q: &str = "By eq. (12) an invalid block costs v·Σ_{i<p}(β_i − ρ|tr_i|), whose \
expectation per delivered token is v·(q − ρ): it rises with q. Eq. (10)'s margin −ρ·v per token \
is earned only by valid blocks, which become rarer as q grows. So the average risk rises with q \
(and shrinking W only damps its size); it cannot fall unless the sign convention is reversed \
(risk as the auditor's gain).";

const RISK_SIGN: &str = "Per delivered token the expected contribution to eqs. (10)–(12) is \
v·(q − ρ) (invalid blocks) or −v·ρ (valid blocks): the average risk is negative only while q is \
below about ρ, positive above.";

const PESSIMISTIC_RISK: &str = "The pessimistic model keeps the smallest blocks, which scales the \
per-block risk towards 0 from both sides: where the risk is a loss (q above about ρ) it is the \
smallest loss, as the paper says; where the risk is a gain (q below about ρ) the pessimistic \
auditor earns the least margin, so its (negative) risk is the highest.";

const RISK_VS_RHO: &str = "W does not depend on ρ at all (eq. 7 uses only the invalid counts), so \
with the same seeds every ρ sees the same blocks; eqs. (10)–(12) are then linear in ρ with slope \
−v·(tokens paid out) < 0: the average risk must fall as ρ rises. The paper's increasing curve \
would need the opposite sign convention (risk as the auditor's gain).";

const VENDORS: &str = "The engine keeps one queue per user and ignores which vendor a transaction \
comes from, so the number of vendors can change W only through the sizes of the transactions (the \
product costs). Figure 10's ten costs are spread evenly over the paper's range 1..25 (mean 13 \
tokens), below figure 9's 10 and 20 (mean 15): its transactions are smaller on average, blocks \
fill more slowly and W stays higher. More vendors with the same costs give the same W.";

const TRIVIAL_AT_Q0: &str = "At q = 0 no token is invalid and W = W0 in every series (eq. 7 \
with β = 0), so q = 0 is left out of this comparison.";

/// Checks every claim of §7.2 about the figures in `results`, plus our own consistency checks.
pub fn check_claims(results: &[FigureResult]) -> Vec<ClaimCheck> {
    let find = |n: u8| results.iter().find(|r| r.spec.id.number() == n);
    let mut all = Vec::new();
    for result in results {
        let mut ctx = Ctx {
            id: result.spec.id,
            table: Table::new(&result.rows),
            checks: Vec::new(),
        };
        let positive_q = f64::MIN_POSITIVE;
        match result.spec.id.number() {
            3 => {
                ctx.push(
                    "W decreases as the double-spend rate q increases, for the three trust models",
                    monotone(&ctx.along_x(&MODELS, 0.0), Dir::Down),
                    None,
                );
                ctx.model_order(
                    "W of the optimistic model is always above the neutral one, which is above the pessimistic one (q > 0)",
                    "q",
                    positive_q,
                    Some(TRIVIAL_AT_Q0),
                );
                let slow = ordering(
                    "drop(optimistic)",
                    "drop(neutral)",
                    &ctx.drop_pairs("optimistic", "neutral"),
                    "q",
                    false,
                );
                let fast = ordering(
                    "drop(neutral)",
                    "drop(pessimistic)",
                    &ctx.drop_pairs("neutral", "pessimistic"),
                    "q",
                    false,
                );
                ctx.push(
                    "as q grows the optimistic W decreases slowly, the pessimistic rapidly, the neutral moderately (drop from q = 0)",
                    (combine(&[slow.0, fast.0]), format!("{}; {}", slow.1, fast.1)),
                    None,
                );
                let mut verdicts = Vec::new();
                let mut texts = Vec::new();
                for model in MODELS {
                    let previous = format!("{model} (N=W_prev)");
                    if ctx.table.has(model) && ctx.table.has(&previous) {
                        let r = ordering(
                            &previous,
                            model,
                            &ctx.pairs(&previous, model, positive_q),
                            "q",
                            false,
                        );
                        verdicts.push(r.0);
                        texts.push(r.1);
                    }
                }
                ctx.push_ours(
                    "(SPEC §4) the literal scale N = W_{i−1} shrinks W faster than N = W0 for every model (q > 0)",
                    if texts.is_empty() {
                        (ClaimVerdict::Untestable, "the N = W_prev series are not in this run".into())
                    } else {
                        (combine(&verdicts), texts.join("; "))
                    },
                    Some("With N = W_{i−1} both trust values of eq. (7) use the shrinking block size as scale while γ keeps growing, so γ leaves [0, N] within a few blocks and trust collapses; where the two agree within noise both have already reached W = 0 or never left W0."),
                );
            }
            4 => {
                let costs: Vec<String> = ctx
                    .table
                    .numeric_series("cost")
                    .iter()
                    .map(|(s, _)| (*s).to_owned())
                    .collect();
                let cost_refs: Vec<&str> = costs.iter().map(String::as_str).collect();
                ctx.push(
                    "W decreases as q increases (every product cost)",
                    monotone(&ctx.along_x(&cost_refs, 0.0), Dir::Down),
                    None,
                );
                ctx.push(
                    "W decreases as the product cost increases (every q > 0)",
                    monotone(&ctx.across_series("cost", "q", positive_q), Dir::Down),
                    Some("A block holds about W tokens whatever the cost, so β per block is about q·W for every cost; a larger cost fills blocks faster (p·c tokens per slot), so over a fixed horizon more blocks are verified and W falls sooner. Where q is high every cost suspends the user within a few blocks and the differences vanish into noise."),
                );
                let lowest_cost = costs.first().cloned().unwrap_or_default();
                let highest_cost = costs.last().cloned().unwrap_or_default();
                let xs = ctx.table.xs();
                if let (Some(first_x), Some(last_x)) = (xs.first().copied(), xs.last().copied()) {
                    let best = ctx.table.get(&lowest_cost, first_x);
                    let overall_max = result
                        .rows
                        .iter()
                        .map(|r| r.y)
                        .fold(f64::NEG_INFINITY, f64::max);
                    let verdict = is_extreme(best, overall_max, Cmp::Below);
                    ctx.push(
                        "the highest W is at the lowest cost (1 token) and the lowest q",
                        (
                            verdict,
                            format!(
                                "{lowest_cost} at q = {}: {}; maximum over the figure {}",
                                fmt_x(first_x),
                                best.map_or("missing".into(), |r| fmt_num(r.y)),
                                fmt_num(overall_max)
                            ),
                        ),
                        None,
                    );
                    let worst = ctx.table.get(&highest_cost, last_x);
                    let overall_min = result
                        .rows
                        .iter()
                        .map(|r| r.y)
                        .fold(f64::INFINITY, f64::min);
                    let verdict = is_extreme(worst, overall_min, Cmp::Above);
                    ctx.push(
                        "the lowest W is at the highest cost and the highest q",
                        (
                            verdict,
                            format!(
                                "{highest_cost} at q = {}: {}; minimum over the figure {}",
                                fmt_x(last_x),
                                worst.map_or("missing".into(), |r| fmt_num(r.y)),
                                fmt_num(overall_min)
                            ),
                        ),
                        Some("At the highest q every cost suspends the user within a few blocks; the minimum is reached by several costs within noise."),
                    );
                }
            }
            5 => {
                ctx.push(
                    "W increases with W0 (three models)",
                    monotone(&ctx.along_x(&MODELS, 0.0), Dir::Up),
                    None,
                );
                ctx.model_order(
                    "W of the optimistic model is above the neutral one; the pessimistic one is below the neutral one",
                    "W0",
                    0.0,
                    None,
                );
            }
            6 => {
                let costs: Vec<String> = ctx
                    .table
                    .numeric_series("cost")
                    .iter()
                    .map(|(s, _)| (*s).to_owned())
                    .collect();
                let cost_refs: Vec<&str> = costs.iter().map(String::as_str).collect();
                ctx.push(
                    "W increases with W0 (every cost)",
                    monotone(&ctx.along_x(&cost_refs, 0.0), Dir::Up),
                    None,
                );
                ctx.push(
                    "W decreases as the product cost increases (every W0)",
                    monotone(&ctx.across_series("cost", "W0", 0.0), Dir::Down),
                    Some("With the pessimistic model at q = 0.2 every user is suspended within a few blocks; cost changes how many slots that takes, and at some W0 the differences between neighbouring costs are within noise."),
                );
                let xs = ctx.table.xs();
                if let (Some(low), Some(high)) = (costs.first(), xs.last().copied()) {
                    let seq = Sequence {
                        label: format!("{low}, over W0"),
                        points: ctx
                            .table
                            .line(low)
                            .into_iter()
                            .map(|r| (r.x, Value::of(r)))
                            .collect(),
                    };
                    let claimed = seq.points.len().saturating_sub(1);
                    let a = extremum(&seq, claimed, true);
                    let across = ctx.across_series("cost", "W0", high);
                    let b = across
                        .first()
                        .map_or((ClaimVerdict::Untestable, "no data".into()), |s| {
                            extremum(s, 0, true)
                        });
                    ctx.push(
                        "the highest W is at the highest W0 and the lowest cost (1 token)",
                        (combine(&[a.0, b.0]), format!("{}; {}", a.1, b.1)),
                        None,
                    );
                }
            }
            7 => {
                let users: Vec<String> = ctx
                    .table
                    .numeric_series("users")
                    .iter()
                    .map(|(s, _)| (*s).to_owned())
                    .collect();
                let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
                ctx.push(
                    "the average mean W increases with W0 (every number of users)",
                    monotone(&ctx.along_x(&user_refs, 0.0), Dir::Up),
                    None,
                );
                ctx.push(
                    "the fewer the users, the higher the average mean W (every W0)",
                    monotone(&ctx.across_series("users", "W0", 0.0), Dir::Down),
                    Some(IID_USERS),
                );
                let xs = ctx.table.xs();
                if let Some(high) = xs.last().copied() {
                    let across = ctx.across_series("users", "W0", high);
                    let r = across
                        .first()
                        .map_or((ClaimVerdict::Untestable, "no data".into()), |s| {
                            extremum(s, 0, true)
                        });
                    ctx.push(
                        "the highest average mean W is at the lowest number of users (and the highest W0)",
                        r,
                        Some(IID_USERS),
                    );
                }
                let spread: Vec<String> = users
                    .iter()
                    .filter_map(|s| {
                        let line = ctx.table.line(s);
                        let mean_std =
                            line.iter().map(|r| r.y_std).sum::<f64>() / line.len().max(1) as f64;
                        (!line.is_empty()).then(|| format!("{s}: {}", fmt_num(mean_std)))
                    })
                    .collect();
                ctx.push_ours(
                    "(ours) what the number of users does change: the spread over runs (mean y_std over W0) shrinks as users grow",
                    (ClaimVerdict::Agree, spread.join(", ")),
                    None,
                );
            }
            8 => {
                ctx.push(
                    "the more users, the lower the average mean W (three models)",
                    monotone(&ctx.along_x(&MODELS, 0.0), Dir::Down),
                    Some(IID_USERS),
                );
                let slow = ordering(
                    "drop(optimistic)",
                    "drop(neutral)",
                    &ctx.drop_pairs("optimistic", "neutral"),
                    "users",
                    false,
                );
                let fast = ordering(
                    "drop(neutral)",
                    "drop(pessimistic)",
                    &ctx.drop_pairs("neutral", "pessimistic"),
                    "users",
                    false,
                );
                ctx.push(
                    "the average W decreases slowly for the optimistic model, rapidly for the pessimistic one, moderately for the neutral one (drop from the fewest users)",
                    (combine(&[slow.0, fast.0]), format!("{}; {}", slow.1, fast.1)),
                    Some(IID_USERS),
                );
                let a = ctx.ordering_between("optimistic", "neutral", "users", 0.0);
                let b = ctx.ordering_between("optimistic", "pessimistic", "users", 0.0);
                ctx.push(
                    "the optimistic model shows higher average mean W than the two other models",
                    (combine(&[a.0, b.0]), format!("{}; {}", a.1, b.1)),
                    None,
                );
                let spread: Vec<String> = MODELS
                    .iter()
                    .filter_map(|m| {
                        let line = ctx.table.line(m);
                        let (first, last) = (line.first()?, line.last()?);
                        Some(format!(
                            "{m}: y_std {} at {} user(s), {} at {}",
                            fmt_num(first.y_std),
                            fmt_x(first.x),
                            fmt_num(last.y_std),
                            fmt_x(last.x)
                        ))
                    })
                    .collect();
                ctx.push_ours(
                    "(ours) what the number of users does change: the spread over runs shrinks about as 1/√n",
                    (ClaimVerdict::Agree, spread.join("; ")),
                    None,
                );
            }
            9 | 10 => {
                ctx.push(
                    "W decreases as q increases (three models)",
                    monotone(&ctx.along_x(&MODELS, 0.0), Dir::Down),
                    None,
                );
                if result.spec.id.number() == 9 {
                    let a = ctx.ordering_between("optimistic", "neutral", "q", positive_q);
                    let b = ctx.ordering_between("optimistic", "pessimistic", "q", positive_q);
                    ctx.push(
                        "W of the optimistic model is always above the two other models (q > 0)",
                        (combine(&[a.0, b.0]), format!("{}; {}", a.1, b.1)),
                        Some(TRIVIAL_AT_Q0),
                    );
                }
                ctx.push(
                    "the pessimistic model shows the lowest W (q > 0)",
                    ctx.below_both("pessimistic", ["neutral", "optimistic"], "q", positive_q),
                    Some(TRIVIAL_AT_Q0),
                );
                let (other, claim, reason) = if result.spec.id.number() == 9 {
                    (3, "W is lower than with one vendor of cost 5 (figure 3), because of the higher product cost", Some("Compare the mean costs: a larger mean cost fills blocks faster and lowers W over the horizon."))
                } else {
                    (
                        9,
                        "W is lower than in figure 9: the more vendors, the lower W",
                        Some(VENDORS),
                    )
                };
                let result_pair = match find(other) {
                    Some(other_result) => {
                        let other_table = Table::new(&other_result.rows);
                        let mut verdicts = Vec::new();
                        let mut texts = Vec::new();
                        for model in MODELS {
                            let pairs: Vec<(f64, Value, Value)> = ctx
                                .table
                                .line(model)
                                .into_iter()
                                .filter(|r| r.x > 0.0)
                                .filter_map(|r| {
                                    other_table
                                        .get(model, r.x)
                                        .map(|o| (r.x, Value::of(r), Value::of(o)))
                                })
                                .collect();
                            if pairs.is_empty() {
                                continue;
                            }
                            let label_a = format!("{model} (fig. {})", result.spec.id);
                            let label_b = format!("(fig. {other})");
                            let r = ordering(&label_a, &label_b, &pairs, "q", false);
                            verdicts.push(r.0);
                            texts.push(r.1);
                        }
                        if texts.is_empty() {
                            (
                                ClaimVerdict::Untestable,
                                format!("figure {other} has no matching points"),
                            )
                        } else {
                            (combine(&verdicts), texts.join("; "))
                        }
                    }
                    None => (
                        ClaimVerdict::Untestable,
                        format!("figure {other} was not computed in this run"),
                    ),
                };
                ctx.push(claim, result_pair, reason);
            }
            11 => {
                ctx.push(
                    "the average risk decreases as q increases (three models)",
                    monotone(&ctx.along_x(&MODELS, 0.0), Dir::Down),
                    Some(RISK_VS_Q),
                );
                let rows: Vec<&Row> = result.rows.iter().collect();
                ctx.push(
                    "the risk values are negative",
                    all_negative(&rows, "q"),
                    Some(RISK_SIGN),
                );
                ctx.push(
                    "the pessimistic model shows better results (lower risk, less loss) than the optimistic and neutral ones",
                    ctx.below_both("pessimistic", ["neutral", "optimistic"], "q", positive_q),
                    Some(PESSIMISTIC_RISK),
                );
            }
            12 => {
                ctx.push(
                    "the average risk increases with the withholding rho (three models)",
                    monotone(&ctx.along_x(&MODELS, 0.0), Dir::Up),
                    Some(RISK_VS_RHO),
                );
                let rows: Vec<&Row> = result.rows.iter().collect();
                ctx.push(
                    "the risk values are negative",
                    all_negative(&rows, "rho (%)"),
                    Some(RISK_SIGN),
                );
                let a = ordering(
                    "pessimistic",
                    "neutral",
                    &ctx.pairs("pessimistic", "neutral", 0.0),
                    "rho (%)",
                    false,
                );
                let b = ordering(
                    "pessimistic",
                    "optimistic",
                    &ctx.pairs("pessimistic", "optimistic", 0.0),
                    "rho (%)",
                    false,
                );
                ctx.push(
                    "the pessimistic model shows better results (lower risk) than the two others",
                    (combine(&[a.0, b.0]), format!("{}; {}", a.1, b.1)),
                    Some(PESSIMISTIC_RISK),
                );
                let magnitude = |s: &str| -> Vec<(f64, Value)> {
                    ctx.table
                        .line(s)
                        .into_iter()
                        .map(|r| {
                            (
                                r.x,
                                Value {
                                    y: r.y.abs(),
                                    se: r.standard_error(),
                                },
                            )
                        })
                        .collect()
                };
                let pairs_with = |other: &str| -> Vec<(f64, Value, Value)> {
                    let theirs = magnitude(other);
                    magnitude("optimistic")
                        .into_iter()
                        .filter_map(|(x, v)| {
                            theirs
                                .iter()
                                .find(|(ox, _)| *ox == x)
                                .map(|(_, o)| (x, v, *o))
                        })
                        .collect()
                };
                let a = ordering(
                    "|optimistic|",
                    "|neutral|",
                    &pairs_with("neutral"),
                    "rho (%)",
                    true,
                );
                let b = ordering(
                    "|optimistic|",
                    "|pessimistic|",
                    &pairs_with("pessimistic"),
                    "rho (%)",
                    true,
                );
                ctx.push(
                    "the optimistic model shows the highest risk, very high in absolute terms",
                    (combine(&[a.0, b.0]), format!("{}; {}", a.1, b.1)),
                    Some("The optimistic model keeps the largest blocks, so its per-block risk is the largest in absolute value on both sides of rho = q; near rho = q every model's risk is close to 0 and the magnitudes are within noise."),
                );
                if let Some(fig11) = find(11) {
                    // Figure 12 at rho = fig. 11's rho and figure 11 at q = fig. 12's q.
                    let t11 = Table::new(&fig11.rows);
                    let q12 = result
                        .spec
                        .points
                        .first()
                        .map(|p| p.params.double_spend_probability);
                    let rho11 = fig11
                        .spec
                        .points
                        .first()
                        .map(|p| p.params.withholding.fraction() * 100.0);
                    let mut lines = Vec::new();
                    let mut same = true;
                    if let (Some(q12), Some(rho11)) = (q12, rho11) {
                        for model in MODELS {
                            let point12 = result
                                .spec
                                .points
                                .iter()
                                .find(|p| p.series == model && p.x == rho11);
                            let point11 = fig11
                                .spec
                                .points
                                .iter()
                                .find(|p| p.series == model && p.x == q12);
                            let comparable = matches!((point12, point11), (Some(a), Some(b)) if a.params == b.params)
                                && result.spec.seed == fig11.spec.seed
                                && result.spec.runs == fig11.spec.runs;
                            if let (true, Some(a), Some(b)) =
                                (comparable, ctx.table.get(model, rho11), t11.get(model, q12))
                            {
                                same &= a.y == b.y && a.y_std == b.y_std;
                                lines.push(format!(
                                    "{model}: fig. 12 at rho = {}% gives {}, fig. 11 at q = {} gives {}",
                                    fmt_x(rho11),
                                    fmt_num(a.y),
                                    fmt_x(q12),
                                    fmt_num(b.y)
                                ));
                            }
                        }
                    }
                    if !lines.is_empty() {
                        ctx.push_ours(
                            "(ours, consistency) the shared point of figures 11 and 12 (same parameters, same seeds) gives identical numbers",
                            (if same { ClaimVerdict::Agree } else { ClaimVerdict::Disagree }, lines.join("; ")),
                            Some("The simulation is not deterministic for a given seed: a bug."),
                        );
                    }
                }
            }
            _ => {}
        }
        all.extend(ctx.checks);
    }
    all
}
