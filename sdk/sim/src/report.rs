//! The paper's claims about figures 3–12 (§7.2), checked against our rows.
//!
//! Every verdict is computed from the rows (the CSV content): monotonicity along an axis,
//! ordering between series, signs, the position of extremes, and comparisons across figures.
//! A difference between two points counts only when it exceeds [`SIGNIFICANCE_Z`] standard errors
//! of the difference, with the standard error of a point y_std/√runs; smaller differences are
//! reported as "within noise". (Points of a figure share random numbers across runs, so this
//! test is conservative.) Where our numbers disagree, the check carries the reason.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use super::figures::{FigureId, FigureResult};
use super::Row;

/// Differences smaller than this many standard errors are "within noise".
pub const SIGNIFICANCE_Z: f64 = 2.0;

/// How our numbers relate to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimVerdict {
    /// Our numbers show what the paper claims.
    Agree,
    /// They show it for part of the range only.
    Partial,
    /// They do not show it (the opposite, or no effect beyond noise).
    Disagree,
    /// The rows needed are not in this run (e.g. a single point after an override).
    Untestable,
}

impl fmt::Display for ClaimVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClaimVerdict::Agree => "agree",
            ClaimVerdict::Partial => "partly",
            ClaimVerdict::Disagree => "disagree",
            ClaimVerdict::Untestable => "not testable",
        })
    }
}

/// One checked claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimCheck {
    /// The figure.
    pub figure: FigureId,
    /// The claim, close to the paper's words.
    pub claim: String,
    /// Whether our numbers agree.
    pub verdict: ClaimVerdict,
    /// The numbers behind the verdict.
    pub evidence: String,
    /// Why our numbers differ (only when the verdict is not `Agree`).
    pub reason: Option<String>,
    /// Our own check rather than the paper's claim (e.g. the N = W_prev comparison).
    pub ours: bool,
}

/// A point estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Value {
    y: f64,
    se: f64,
}

impl Value {
    fn of(row: &Row) -> Self {
        Value {
            y: row.y,
            se: row.standard_error(),
        }
    }

    /// `self − other` with the standard error of the difference (independence assumed).
    fn minus(self, other: Value) -> Value {
        Value {
            y: self.y - other.y,
            se: self.se.hypot(other.se),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Above,
    Tie,
    Below,
}

/// Compares a with b: a difference beyond [`SIGNIFICANCE_Z`] standard errors counts.
fn compare(a: Value, b: Value) -> Cmp {
    let diff = a.minus(b);
    let tolerance = SIGNIFICANCE_Z * diff.se + 1e-9 * a.y.abs().max(b.y.abs()).max(1.0);
    if diff.y > tolerance {
        Cmp::Above
    } else if diff.y < -tolerance {
        Cmp::Below
    } else {
        Cmp::Tie
    }
}

/// The rows of one figure, indexed by series and x.
struct Table<'a> {
    series: Vec<&'a str>,
    rows: BTreeMap<(&'a str, u64), &'a Row>,
}

/// An orderable key for an x value.
fn x_key(x: f64) -> u64 {
    // Total order on finite floats: flip the sign bit for positives, all bits for negatives.
    let bits = x.to_bits();
    if bits >> 63 == 0 {
        bits | (1 << 63)
    } else {
        !bits
    }
}

impl<'a> Table<'a> {
    fn new(rows: &'a [Row]) -> Self {
        let mut series: Vec<&str> = Vec::new();
        let mut map = BTreeMap::new();
        for row in rows {
            if !series.contains(&row.series.as_str()) {
                series.push(&row.series);
            }
            map.insert((row.series.as_str(), x_key(row.x)), row);
        }
        Table { series, rows: map }
    }

    fn has(&self, series: &str) -> bool {
        self.series.contains(&series)
    }

    /// The rows of `series`, x ascending.
    fn line(&self, series: &str) -> Vec<&'a Row> {
        self.rows
            .range((series, 0)..=(series, u64::MAX))
            .map(|(_, row)| *row)
            .collect()
    }

    fn get(&self, series: &str, x: f64) -> Option<&'a Row> {
        self.rows.get(&(series, x_key(x))).copied()
    }

    /// Every x, ascending.
    fn xs(&self) -> Vec<f64> {
        let mut keys: Vec<(u64, f64)> = self.rows.values().map(|r| (x_key(r.x), r.x)).collect();
        keys.sort_by_key(|(k, _)| *k);
        keys.dedup_by_key(|(k, _)| *k);
        keys.into_iter().map(|(_, x)| x).collect()
    }

    /// Series whose name is `prefix=<number>`, sorted by the number.
    fn numeric_series(&self, prefix: &str) -> Vec<(&'a str, f64)> {
        let mut out: Vec<(&str, f64)> = self
            .series
            .iter()
            .filter_map(|s| {
                let (name, value) = s.split_once('=')?;
                (name == prefix).then_some(())?;
                Some((*s, value.trim_end_matches('%').parse::<f64>().ok()?))
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_x(v: f64) -> String {
    format!("{v}")
}

/// Direction of a claimed trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

impl Dir {
    fn with(self) -> Cmp {
        match self {
            Dir::Up => Cmp::Above,
            Dir::Down => Cmp::Below,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

fn combine(verdicts: &[ClaimVerdict]) -> ClaimVerdict {
    if verdicts.is_empty() || verdicts.iter().all(|v| *v == ClaimVerdict::Untestable) {
        ClaimVerdict::Untestable
    } else if verdicts
        .iter()
        .all(|v| matches!(v, ClaimVerdict::Agree | ClaimVerdict::Untestable))
    {
        ClaimVerdict::Agree
    } else if verdicts
        .iter()
        .all(|v| matches!(v, ClaimVerdict::Disagree | ClaimVerdict::Untestable))
    {
        ClaimVerdict::Disagree
    } else {
        ClaimVerdict::Partial
    }
}

/// A labelled sequence of (position, value).
struct Sequence {
    label: String,
    points: Vec<(f64, Value)>,
}

/// "y goes `dir` along each sequence": per sequence, the first→last change must be significant in
/// the claimed direction; a significant step the other way makes it partial.
fn monotone(sequences: &[Sequence], dir: Dir) -> (ClaimVerdict, String) {
    let mut verdicts = Vec::new();
    let mut lines = Vec::new();
    for seq in sequences {
        if seq.points.len() < 2 {
            verdicts.push(ClaimVerdict::Untestable);
            continue;
        }
        let (mut with, mut ties, mut against) = (0, 0, 0);
        for pair in seq.points.windows(2) {
            let c = compare(pair[1].1, pair[0].1);
            if c == Cmp::Tie {
                ties += 1;
            } else if c == dir.with() {
                with += 1;
            } else {
                against += 1;
            }
        }
        let (first, last) = (seq.points[0], seq.points[seq.points.len() - 1]);
        let overall = compare(last.1, first.1);
        let verdict = if overall == dir.with() && against == 0 {
            ClaimVerdict::Agree
        } else if overall == dir.with() {
            ClaimVerdict::Partial
        } else {
            ClaimVerdict::Disagree
        };
        verdicts.push(verdict);
        let overall_word = match overall {
            Cmp::Tie => "no change beyond noise".to_owned(),
            c if c == dir.with() => format!("{} overall", dir.word()),
            _ => "the other way overall".to_owned(),
        };
        lines.push(format!(
            "{}: {} → {} ({}; {} of {} steps {}, {} within noise, {} the other way)",
            seq.label,
            fmt_num(first.1.y),
            fmt_num(last.1.y),
            overall_word,
            with,
            seq.points.len() - 1,
            dir.word(),
            ties,
            against
        ));
    }
    (combine(&verdicts), lines.join("; "))
}

/// "a above b" (or below) at every shared position.
fn ordering(
    label_a: &str,
    label_b: &str,
    pairs: &[(f64, Value, Value)],
    x_name: &str,
    claim_above: bool,
) -> (ClaimVerdict, String) {
    if pairs.is_empty() {
        return (
            ClaimVerdict::Untestable,
            format!("no shared points of {label_a} and {label_b}"),
        );
    }
    let want = if claim_above { Cmp::Above } else { Cmp::Below };
    let mut with = Vec::new();
    let mut ties = Vec::new();
    let mut against = Vec::new();
    for (x, a, b) in pairs {
        match compare(*a, *b) {
            Cmp::Tie => ties.push(*x),
            c if c == want => with.push(*x),
            _ => against.push(*x),
        }
    }
    let verdict = if with.is_empty() {
        ClaimVerdict::Disagree
    } else if against.is_empty() {
        ClaimVerdict::Agree
    } else {
        ClaimVerdict::Partial
    };
    let list = |xs: &[f64]| xs.iter().map(|x| fmt_x(*x)).collect::<Vec<_>>().join(", ");
    let sign = if claim_above { ">" } else { "<" };
    let mut text = format!(
        "{label_a} {sign} {label_b} at {} of {} {x_name} values",
        with.len(),
        pairs.len()
    );
    if !ties.is_empty() {
        let _ = write!(text, "; within noise at {x_name} = {}", list(&ties));
    }
    if !against.is_empty() {
        let _ = write!(text, "; the other way at {x_name} = {}", list(&against));
    }
    // Show the numbers at the middle shared point.
    let (x, a, b) = pairs[pairs.len() / 2];
    let _ = write!(
        text,
        " (e.g. {x_name} = {}: {} vs {})",
        fmt_x(x),
        fmt_num(a.y),
        fmt_num(b.y)
    );
    (verdict, text)
}

/// "every value is negative".
fn all_negative(rows: &[&Row], x_name: &str) -> (ClaimVerdict, String) {
    if rows.is_empty() {
        return (ClaimVerdict::Untestable, "no rows".into());
    }
    let zero = Value { y: 0.0, se: 0.0 };
    let mut negative = 0;
    let mut positive = Vec::new();
    let mut zeroish = Vec::new();
    for row in rows {
        match compare(Value::of(row), zero) {
            Cmp::Below => negative += 1,
            Cmp::Above => positive.push(format!(
                "{} at {x_name} = {}: {}",
                row.series,
                fmt_x(row.x),
                fmt_num(row.y)
            )),
            Cmp::Tie => zeroish.push(format!("{} at {} ", row.series, fmt_x(row.x))),
        }
    }
    let verdict = if negative == rows.len() {
        ClaimVerdict::Agree
    } else if negative == 0 {
        ClaimVerdict::Disagree
    } else {
        ClaimVerdict::Partial
    };
    let mut text = format!("{negative} of {} points are negative", rows.len());
    if !zeroish.is_empty() {
        let _ = write!(text, ", {} not distinguishable from 0", zeroish.len());
    }
    if !positive.is_empty() {
        let shown: Vec<&str> = positive.iter().take(4).map(String::as_str).collect();
        let _ = write!(
            text,
            ", {} positive (e.g. {})",
            positive.len(),
            shown.join("; ")
        );
    }
    (verdict, text)
}

/// "the `claimed` element of the sequence is the highest (or lowest)": not significantly beaten by
/// any element, and significantly beyond at least one.
fn extremum(seq: &Sequence, claimed: usize, highest: bool) -> (ClaimVerdict, String) {
    let Some((claimed_pos, claimed_value)) = seq.points.get(claimed).copied() else {
        return (
            ClaimVerdict::Untestable,
            format!("{}: the claimed point is not in the data", seq.label),
        );
    };
    if seq.points.len() < 2 {
        return (
            ClaimVerdict::Untestable,
            format!("{}: one point only", seq.label),
        );
    }
    let better = if highest { Cmp::Above } else { Cmp::Below };
    let worse = if highest { Cmp::Below } else { Cmp::Above };
    let mut beaten_by = Vec::new();
    let mut beats = 0;
    for (i, (pos, value)) in seq.points.iter().enumerate() {
        if i == claimed {
            continue;
        }
        match compare(claimed_value, *value) {
            c if c == worse => beaten_by.push(format!("{} ({})", fmt_x(*pos), fmt_num(value.y))),
            c if c == better => beats += 1,
            _ => {}
        }
    }
    let best = seq
        .points
        .iter()
        .copied()
        .max_by(|a, b| {
            let o = a.1.y.total_cmp(&b.1.y);
            if highest {
                o
            } else {
                o.reverse()
            }
        })
        .unwrap_or((claimed_pos, claimed_value));
    let verdict = if !beaten_by.is_empty() || beats == 0 {
        ClaimVerdict::Disagree
    } else if beats + 1 < seq.points.len() {
        ClaimVerdict::Partial
    } else {
        ClaimVerdict::Agree
    };
    let word = if highest { "highest" } else { "lowest" };
    let mut text = format!(
        "{}: claimed {word} at {} = {}, observed {word} at {} = {}; significantly beyond {} of the other {}",
        seq.label,
        fmt_x(claimed_pos),
        fmt_num(claimed_value.y),
        fmt_x(best.0),
        fmt_num(best.1.y),
        beats,
        seq.points.len() - 1
    );
    if !beaten_by.is_empty() {
        let _ = write!(text, ", significantly beaten at {}", beaten_by.join(", "));
    }
    (verdict, text)
}

/// Everything the claims of one figure need.
struct Ctx<'a> {
    id: FigureId,
    table: Table<'a>,
    checks: Vec<ClaimCheck>,
}

impl<'a> Ctx<'a> {
    fn push(
        &mut self,
        claim: &str,
        (verdict, evidence): (ClaimVerdict, String),
        reason: Option<&str>,
    ) {
        self.checks.push(ClaimCheck {
            figure: self.id,
            claim: claim.to_owned(),
            verdict,
            evidence,
            reason: if matches!(verdict, ClaimVerdict::Agree) {
                None
            } else {
                reason.map(str::to_owned)
            },
            ours: false,
        });
    }

    fn push_ours(&mut self, claim: &str, result: (ClaimVerdict, String), reason: Option<&str>) {
        self.push(claim, result, reason);
        if let Some(last) = self.checks.last_mut() {
            last.ours = true;
        }
    }

    /// Each listed series along x (restricted to x ≥ `from_x`).
    fn along_x(&self, series: &[&str], from_x: f64) -> Vec<Sequence> {
        series
            .iter()
            .filter(|s| self.table.has(s))
            .map(|s| Sequence {
                label: (*s).to_owned(),
                points: self
                    .table
                    .line(s)
                    .into_iter()
                    .filter(|r| r.x >= from_x)
                    .map(|r| (r.x, Value::of(r)))
                    .collect(),
            })
            .collect()
    }

    /// At each x (x ≥ `from_x`), the series `prefix=v` ordered by v.
    fn across_series(&self, prefix: &str, x_name: &str, from_x: f64) -> Vec<Sequence> {
        let series = self.table.numeric_series(prefix);
        self.table
            .xs()
            .into_iter()
            .filter(|x| *x >= from_x)
            .map(|x| Sequence {
                label: format!("{x_name} = {}", fmt_x(x)),
                points: series
                    .iter()
                    .filter_map(|(s, v)| self.table.get(s, x).map(|r| (*v, Value::of(r))))
                    .collect(),
            })
            .collect()
    }

    /// Pairs (x, a, b) of two series at shared x ≥ `from_x`.
    fn pairs(&self, a: &str, b: &str, from_x: f64) -> Vec<(f64, Value, Value)> {
        self.table
            .line(a)
            .into_iter()
            .filter(|r| r.x >= from_x)
            .filter_map(|ra| {
                self.table
                    .get(b, ra.x)
                    .map(|rb| (ra.x, Value::of(ra), Value::of(rb)))
            })
            .collect()
    }

    /// Pairs of the drops y(x0) − y(x) of two series, x > x0 (x0 the smallest shared x).
    fn drop_pairs(&self, a: &str, b: &str) -> Vec<(f64, Value, Value)> {
        let all = self.pairs(a, b, f64::NEG_INFINITY);
        let Some((_, a0, b0)) = all.first().copied() else {
            return Vec::new();
        };
        all.iter()
            .skip(1)
            .map(|(x, a, b)| (*x, a0.minus(*a), b0.minus(*b)))
            .collect()
    }

    fn model_order(&mut self, claim: &str, x_name: &str, from_x: f64, reason: Option<&str>) {
        let a = self.ordering_between("optimistic", "neutral", x_name, from_x);
        let b = self.ordering_between("neutral", "pessimistic", x_name, from_x);
        let verdict = combine(&[a.0, b.0]);
        self.push(claim, (verdict, format!("{}; {}", a.1, b.1)), reason);
    }

    fn ordering_between(
        &self,
        a: &str,
        b: &str,
        x_name: &str,
        from_x: f64,
    ) -> (ClaimVerdict, String) {
        ordering(a, b, &self.pairs(a, b, from_x), x_name, true)
    }

    /// Whether `model`'s series lies below both `others` (each pair over x ≥ `from_x`).
    fn below_both(
        &self,
        model: &str,
        others: [&str; 2],
        x_name: &str,
        from_x: f64,
    ) -> (ClaimVerdict, String) {
        let [first, second] = others.map(|other| {
            ordering(
                model,
                other,
                &self.pairs(model, other, from_x),
                x_name,
                false,
            )
        });
        (
            combine(&[first.0, second.0]),
            format!("{}; {}", first.1, second.1),
        )
    }
}

/// Whether `row` holds the figure's extreme value `extreme` (within noise): it agrees unless it
/// lies significantly on the `beyond` side of it (`Cmp::Below` for a maximum, `Cmp::Above` for a
/// minimum); untestable when the row is missing.
fn is_extreme(row: Option<&Row>, extreme: f64, beyond: Cmp) -> ClaimVerdict {
    match row {
        Some(row)
            if compare(
                Value::of(row),
                Value {
                    y: extreme,
                    se: 0.0,
                },
            ) != beyond =>
        {
            ClaimVerdict::Agree
        }
        Some(_) => ClaimVerdict::Disagree,
        None => ClaimVerdict::Untestable,
    }
}

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

/// Context printed at the top of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportContext {
    /// The command that regenerates the figures.
    pub command: String,
    /// Wall-clock seconds the run took, if measured.
    pub elapsed_seconds: Option<f64>,
}

/// Renders the claims as Markdown: summary table, then per figure its fixed parameters, horizon,
/// repetitions, and each claim with verdict, numbers and reason.
pub fn render_markdown(
    results: &[FigureResult],
    checks: &[ClaimCheck],
    context: &ReportContext,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Simulation report: the paper's claims (§7.2) against our numbers\n"
    );
    let _ = writeln!(
        md,
        "Generated by `{}`{}. Every verdict below is computed from the figure CSVs in this \
         directory; nothing is written by hand except the reasons attached to disagreements.\n",
        context.command,
        context
            .elapsed_seconds
            .map_or(String::new(), |s| format!(" in {s:.1} s"))
    );
    let _ = writeln!(
        md,
        "Method: the real auditor engine (paper mode, in-memory store) against the simulated chain; \
         a row's `y` is the mean over `runs` Monte Carlo runs and `y_std` their standard deviation. \
         A difference counts only beyond {SIGNIFICANCE_Z} standard errors of the difference \
         (standard error = y_std/√runs); smaller differences are reported as within noise. \
         Verdicts: **agree**, **partly** (holds over part of the range), **disagree** (the opposite \
         or no effect), **not testable** (rows missing).\n"
    );
    let _ = writeln!(
        md,
        "| figure | horizon T (slots) | runs per point | base seed | fixed parameters |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for r in results {
        let slots = r.spec.points.first().map_or(0, |p| p.params.slots);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.spec.id, slots, r.spec.runs, r.spec.seed, r.spec.fixed
        );
    }
    let _ = writeln!(md, "\n## Summary\n");
    let _ = writeln!(md, "| figure | claim | verdict |");
    let _ = writeln!(md, "|---|---|---|");
    for c in checks {
        let _ = writeln!(md, "| {} | {} | **{}** |", c.figure, c.claim, c.verdict);
    }
    let count = |v: ClaimVerdict| checks.iter().filter(|c| !c.ours && c.verdict == v).count();
    let _ = writeln!(
        md,
        "\nPaper claims: {} agree, {} partly, {} disagree, {} not testable.",
        count(ClaimVerdict::Agree),
        count(ClaimVerdict::Partial),
        count(ClaimVerdict::Disagree),
        count(ClaimVerdict::Untestable)
    );
    for r in results {
        let _ = writeln!(md, "\n## {}\n", r.spec.title);
        let slots = r.spec.points.first().map_or(0, |p| p.params.slots);
        let _ = writeln!(
            md,
            "![figure {}]({}.png)\n\nData: [`{}.csv`]({}.csv). Fixed: {}. Horizon {} slots, {} runs per point, seed {}.\n",
            r.spec.id,
            r.spec.id.file_stem(),
            r.spec.id.file_stem(),
            r.spec.id.file_stem(),
            r.spec.fixed,
            slots,
            r.spec.runs,
            r.spec.seed
        );
        for c in checks.iter().filter(|c| c.figure == r.spec.id) {
            let _ = writeln!(
                md,
                "- **{}** — {}.\n  Our numbers: {}.",
                c.verdict, c.claim, c.evidence
            );
            if let Some(reason) = &c.reason {
                let _ = writeln!(md, "  Why: {reason}");
            }
        }
    }
    md
}
