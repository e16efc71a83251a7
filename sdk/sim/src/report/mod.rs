//! The paper's claims about figures 3–12 (§7.2), checked against our rows.
//!
//! Every verdict is computed from the rows (the CSV content): monotonicity along an axis,
//! ordering between series, signs, the position of extremes, and comparisons across figures.
//! A difference between two points counts only when it exceeds [`SIGNIFICANCE_Z`] standard errors
//! of the difference, with the standard error of a point y_std/√runs; smaller differences are
//! reported as "within noise". (Points of a figure share random numbers across runs, so this
//! test is conservative.) Where our numbers disagree, the check carries the reason.
//!
//! `check` holds the significance test and the verdict helpers, `claims` the claims of each
//! figure, `markdown` the rendering.

mod check;
mod claims;
mod markdown;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::figures::FigureId;

pub use claims::check_claims;
pub use markdown::{render_markdown, ReportContext};

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
