//! The claim-checking core of the report: a point with its standard error, the significance
//! test of [`SIGNIFICANCE_Z`] standard errors, a figure's rows indexed by series and x, and the
//! verdicts built from them (monotone trend, ordering between series, sign, position of an
//! extreme) that [`super::claims`] applies to each figure of §7.2.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{ClaimCheck, ClaimVerdict, SIGNIFICANCE_Z};
use crate::figures::FigureId;
use crate::Row;

/// A point estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Value {
    pub(super) y: f64,
    pub(super) se: f64,
}

impl Value {
    pub(super) fn of(row: &Row) -> Self {
        Value {
            y: row.y,
            se: row.standard_error(),
        }
    }

    /// `self − other` with the standard error of the difference (independence assumed).
    pub(super) fn minus(self, other: Value) -> Value {
        Value {
            y: self.y - other.y,
            se: self.se.hypot(other.se),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Above,
    Tie,
    Below,
}

/// Compares a with b: a difference beyond [`SIGNIFICANCE_Z`] standard errors counts.
pub(super) fn compare(a: Value, b: Value) -> Cmp {
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
pub(super) struct Table<'a> {
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
    pub(super) fn new(rows: &'a [Row]) -> Self {
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

    pub(super) fn has(&self, series: &str) -> bool {
        self.series.contains(&series)
    }

    /// The rows of `series`, x ascending.
    pub(super) fn line(&self, series: &str) -> Vec<&'a Row> {
        self.rows
            .range((series, 0)..=(series, u64::MAX))
            .map(|(_, row)| *row)
            .collect()
    }

    pub(super) fn get(&self, series: &str, x: f64) -> Option<&'a Row> {
        self.rows.get(&(series, x_key(x))).copied()
    }

    /// Every x, ascending.
    pub(super) fn xs(&self) -> Vec<f64> {
        let mut keys: Vec<(u64, f64)> = self.rows.values().map(|r| (x_key(r.x), r.x)).collect();
        keys.sort_by_key(|(k, _)| *k);
        keys.dedup_by_key(|(k, _)| *k);
        keys.into_iter().map(|(_, x)| x).collect()
    }

    /// Series whose name is `prefix=<number>`, sorted by the number.
    pub(super) fn numeric_series(&self, prefix: &str) -> Vec<(&'a str, f64)> {
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

pub(super) fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn fmt_x(v: f64) -> String {
    format!("{v}")
}

/// Direction of a claimed trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
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

pub(super) fn combine(verdicts: &[ClaimVerdict]) -> ClaimVerdict {
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
pub(super) struct Sequence {
    pub(super) label: String,
    pub(super) points: Vec<(f64, Value)>,
}

/// "y goes `dir` along each sequence": per sequence, the first→last change must be significant in
/// the claimed direction; a significant step the other way makes it partial.
pub(super) fn monotone(sequences: &[Sequence], dir: Dir) -> (ClaimVerdict, String) {
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
pub(super) fn ordering(
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
pub(super) fn all_negative(rows: &[&Row], x_name: &str) -> (ClaimVerdict, String) {
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
pub(super) fn extremum(seq: &Sequence, claimed: usize, highest: bool) -> (ClaimVerdict, String) {
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
pub(super) struct Ctx<'a> {
    pub(super) id: FigureId,
    pub(super) table: Table<'a>,
    pub(super) checks: Vec<ClaimCheck>,
}

impl<'a> Ctx<'a> {
    pub(super) fn push(
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

    pub(super) fn push_ours(
        &mut self,
        claim: &str,
        result: (ClaimVerdict, String),
        reason: Option<&str>,
    ) {
        self.push(claim, result, reason);
        if let Some(last) = self.checks.last_mut() {
            last.ours = true;
        }
    }

    /// Each listed series along x (restricted to x ≥ `from_x`).
    pub(super) fn along_x(&self, series: &[&str], from_x: f64) -> Vec<Sequence> {
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
    pub(super) fn across_series(&self, prefix: &str, x_name: &str, from_x: f64) -> Vec<Sequence> {
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
    pub(super) fn pairs(&self, a: &str, b: &str, from_x: f64) -> Vec<(f64, Value, Value)> {
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
    pub(super) fn drop_pairs(&self, a: &str, b: &str) -> Vec<(f64, Value, Value)> {
        let all = self.pairs(a, b, f64::NEG_INFINITY);
        let Some((_, a0, b0)) = all.first().copied() else {
            return Vec::new();
        };
        all.iter()
            .skip(1)
            .map(|(x, a, b)| (*x, a0.minus(*a), b0.minus(*b)))
            .collect()
    }

    pub(super) fn model_order(
        &mut self,
        claim: &str,
        x_name: &str,
        from_x: f64,
        reason: Option<&str>,
    ) {
        let a = self.ordering_between("optimistic", "neutral", x_name, from_x);
        let b = self.ordering_between("neutral", "pessimistic", x_name, from_x);
        let verdict = combine(&[a.0, b.0]);
        self.push(claim, (verdict, format!("{}; {}", a.1, b.1)), reason);
    }

    pub(super) fn ordering_between(
        &self,
        a: &str,
        b: &str,
        x_name: &str,
        from_x: f64,
    ) -> (ClaimVerdict, String) {
        ordering(a, b, &self.pairs(a, b, from_x), x_name, true)
    }

    /// Whether `model`'s series lies below both `others` (each pair over x ≥ `from_x`).
    pub(super) fn below_both(
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
pub(super) fn is_extreme(row: Option<&Row>, extreme: f64, beyond: Cmp) -> ClaimVerdict {
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
