//! The paper's simulation (§7, figures 3–12; SPEC §5), driving the real auditor engine.
//!
//! Every run builds an [`mupib_auditor::Auditor`] over a pruning in-memory store, in paper mode
//! (no intake detection), with the figure's trust model, scale N, W0 and withholding ρ, and a
//! [`mupib_auditor::SimulatedChain`] that decides every token from ground truth with the
//! program's rules. The trust curves, the block-size update (eq. 7), the delivery rule, block
//! formation, suspension, payouts and the risk of eqs. (10)–(12) are therefore exactly the code the
//! auditor service runs; the simulation only generates purchases and tokens
//! ([`run`] documents the market model).
//!
//! # Quantities
//!
//! - **mean W** of a user ([`Quantity::MeanBlockSize`]): (1/T)·Σ_{t=1..T} W_u(t), where W_u(t)
//!   is the user's block size in force at the end of slot t (after that slot's purchase and any
//!   block it completed were processed), and 0 once the user is suspended. A user that never
//!   cheats keeps W0 at every slot, so its mean W is W0 exactly.
//! - **average mean W over users** ([`Quantity::AverageMeanBlockSize`]): the arithmetic mean of
//!   the users' mean W in one run.
//! - **average risk** ([`Quantity::AverageRisk`]): Σ_n Rsk_n / (number of blocks), over every
//!   block decided within the horizon (all users), with Rsk_n from eqs. (10)–(12) exactly as the
//!   engine computes them (valid block: −ρ·v·tokens; invalid block: v·Σ_{i<p}(β_i − ρ|tr_i|)),
//!   in units of the token value v. This is the per-block average Proposition 2 (eq. 13) speaks
//!   of; a run without any decided block has no value and is left out (the `runs` column counts
//!   the runs that had one).
//!
//! Each figure point is repeated over Monte Carlo runs; a row reports the mean over runs (`y`),
//! the sample standard deviation over runs (`y_std`) and the number of runs (`runs`).
//!
//! # Output
//!
//! [`write_csv`] writes a figure's rows in long format with the header exactly
//! `x,series,y,y_std,runs`; [`read_csv`] reads it back and checks it; [`report`] checks every
//! claim the paper makes about each figure against the rows.

pub mod figures;
pub mod params;
pub mod plot;
pub mod report;
pub mod run;

use std::io;

use serde::{Deserialize, Serialize};

pub use figures::{
    figure_spec, mean_std, model_series, run_figures, FigureId, FigurePoint, FigureResult,
    FigureSpec, FigureTotals, Overrides, Quantity,
};
pub use params::{
    MonteCarlo, SimParams, DEFAULT_RUNS, DEFAULT_RUNS_MULTI_USER, DEFAULT_SEED, DEFAULT_SLOTS,
};
pub use run::{run_once, RunStats, TOKEN_VALUE};

use mupib_auditor::EngineError;

/// The exact CSV header of every figure file.
pub const CSV_HEADER: [&str; 5] = ["x", "series", "y", "y_std", "runs"];

/// Errors of the simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// p or q is not a probability.
    #[error("{name} = {value} is not a probability: give a value within [0, 1]")]
    Probability {
        /// Which parameter.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A count or size outside its range.
    #[error("{name} = {value} is out of range: give a value from {min} to {max}")]
    OutOfRange {
        /// Which parameter.
        name: &'static str,
        /// The rejected value.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Not one of the paper's figures.
    #[error("figure {0} does not exist: the paper's simulation has figures 3 to 12")]
    UnknownFigure(u64),
    /// An input that could not be parsed.
    #[error("{0}")]
    Parse(String),
    /// The withholding is invalid.
    #[error(transparent)]
    Money(#[from] mupib_protocol::money::MoneyError),
    /// The engine failed (a bug: the simulation only feeds it valid transactions).
    #[error("the auditor engine failed in run {run} at slot {slot}: {source}")]
    Engine {
        /// The run.
        run: u32,
        /// The slot.
        slot: u64,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
    /// The chain's decisions do not match the ground truth (a bug in the engine or the chain).
    #[error("run {run}: the chain returned {duplicates} DUPLICATE decisions for {double_spent} double-spent tokens in decided blocks")]
    GroundTruth {
        /// The run.
        run: u32,
        /// Duplicate decisions.
        duplicates: u64,
        /// Double-spent tokens in decided blocks.
        double_spent: u64,
    },
    /// A total overflowed.
    #[error("arithmetic overflow in the simulation's {0}")]
    Overflow(&'static str),
    /// A figure CSV is malformed.
    #[error("malformed figure CSV: {0}")]
    Csv(String),
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl From<csv::Error> for SimError {
    fn from(e: csv::Error) -> Self {
        SimError::Csv(e.to_string())
    }
}

/// One row of a figure CSV: the mean `y` over `runs` runs of the point (`x`, `series`), with the
/// sample standard deviation `y_std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The x value.
    pub x: f64,
    /// The series: a model name (`neutral`, `optimistic`, `pessimistic`, optionally
    /// ` (N=W_prev)`) or the second variable (`cost=5`, `users=30`, `W0=40`).
    pub series: String,
    /// Mean over runs.
    pub y: f64,
    /// Sample standard deviation over runs (0 for a single run).
    pub y_std: f64,
    /// Runs that produced a value.
    pub runs: u32,
}

impl Row {
    /// Standard error of the mean, y_std / √runs.
    pub fn standard_error(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.y_std / f64::from(self.runs).sqrt()
        }
    }
}

/// Writes `rows` as CSV with the header exactly `x,series,y,y_std,runs`.
///
/// # Errors
/// [`SimError::Csv`] / [`SimError::Io`] if writing fails, [`SimError::Csv`] for a non-finite value.
pub fn write_csv<W: io::Write>(rows: &[Row], out: W) -> Result<(), SimError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_HEADER)?;
    for row in rows {
        if !(row.x.is_finite() && row.y.is_finite() && row.y_std.is_finite()) {
            return Err(SimError::Csv(format!("row {row:?} has a non-finite value")));
        }
        writer.write_record([
            format!("{}", row.x),
            row.series.clone(),
            format!("{}", row.y),
            format!("{}", row.y_std),
            row.runs.to_string(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// Reads a figure CSV written by [`write_csv`], checking the header and every field.
///
/// # Errors
/// [`SimError::Csv`] for a wrong header, a missing or unparsable field, a negative `y_std` or
/// zero `runs`.
pub fn read_csv<R: io::Read>(input: R) -> Result<Vec<Row>, SimError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let header = reader.headers()?.clone();
    if header.iter().collect::<Vec<_>>() != CSV_HEADER {
        return Err(SimError::Csv(format!(
            "header is {:?}, expected {}",
            header.iter().collect::<Vec<_>>(),
            CSV_HEADER.join(",")
        )));
    }
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record?;
        let line = index + 2;
        let field = |i: usize| {
            record.get(i).ok_or_else(|| {
                SimError::Csv(format!("line {line}: missing field {}", CSV_HEADER[i]))
            })
        };
        let number = |i: usize| -> Result<f64, SimError> {
            let text = field(i)?;
            let value: f64 = text.parse().map_err(|_| {
                SimError::Csv(format!(
                    "line {line}: {} = {text:?} is not a number",
                    CSV_HEADER[i]
                ))
            })?;
            if value.is_finite() {
                Ok(value)
            } else {
                Err(SimError::Csv(format!(
                    "line {line}: {} is not finite",
                    CSV_HEADER[i]
                )))
            }
        };
        let runs_text = field(4)?;
        let runs: u32 = runs_text.parse().map_err(|_| {
            SimError::Csv(format!("line {line}: runs = {runs_text:?} is not a count"))
        })?;
        let row = Row {
            x: number(0)?,
            series: field(1)?.to_owned(),
            y: number(2)?,
            y_std: number(3)?,
            runs,
        };
        if row.series.is_empty() || row.y_std < 0.0 || row.runs == 0 {
            return Err(SimError::Csv(format!(
                "line {line}: empty series, negative y_std or zero runs"
            )));
        }
        rows.push(row);
    }
    Ok(rows)
}
