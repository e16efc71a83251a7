//! The paper's figures 3–12 (SPEC §5): what each one sweeps, its fixed parameters, and the Monte
//! Carlo driver that runs them in parallel and aggregates runs into rows.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::{MonteCarlo, SimParams, DEFAULT_RUNS, DEFAULT_RUNS_MULTI_USER, MAX_VENDORS};
use super::run::{run_once, RunStats};
use super::{Row, SimError};
use mupib_protocol::money::Withholding;
use mupib_protocol::trust::{TrustModel, TrustScale};

/// The q values of the figures whose x axis is the double-spend rate (3, 4, 9, 10, 11).
pub const Q_GRID: [f64; 11] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5];
/// Product costs of the cost series (figures 4 and 6): the paper's range 1..25.
pub const COST_SERIES: [u64; 6] = [1, 5, 10, 15, 20, 25];
/// Figure 9: two vendors with costs 10 and 20 tokens.
pub const FIG9_COSTS: [u64; 2] = [10, 20];
/// Figure 10: ten vendors, costs evenly spread over the paper's cost range 1..25
/// (round(1 + 24·k/9), k = 0..9; mean 13 tokens).
pub const FIG10_COSTS: [u64; 10] = [1, 4, 6, 9, 12, 14, 17, 20, 22, 25];

/// One of the paper's figures, 3 to 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct FigureId(u8);

impl FigureId {
    /// Figures 3 to 12.
    pub const ALL: [FigureId; 10] = [
        FigureId(3),
        FigureId(4),
        FigureId(5),
        FigureId(6),
        FigureId(7),
        FigureId(8),
        FigureId(9),
        FigureId(10),
        FigureId(11),
        FigureId(12),
    ];

    /// Figure `number`.
    ///
    /// # Errors
    /// [`SimError::UnknownFigure`] outside 3..=12.
    pub fn new(number: u8) -> Result<Self, SimError> {
        if (3..=12).contains(&number) {
            Ok(FigureId(number))
        } else {
            Err(SimError::UnknownFigure(u64::from(number)))
        }
    }

    /// The figure number.
    pub const fn number(self) -> u8 {
        self.0
    }

    /// `figNN`, the stem of the figure's CSV and PNG files.
    pub fn file_stem(self) -> String {
        format!("fig{:02}", self.0)
    }
}

impl TryFrom<u8> for FigureId {
    type Error = SimError;
    fn try_from(number: u8) -> Result<Self, SimError> {
        FigureId::new(number)
    }
}

impl From<FigureId> for u8 {
    fn from(id: FigureId) -> u8 {
        id.0
    }
}

impl fmt::Display for FigureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for FigureId {
    type Err = SimError;
    /// `7`, `07` or `fig07`.
    fn from_str(s: &str) -> Result<Self, SimError> {
        let digits = s.trim().trim_start_matches("fig");
        let number: u64 = digits
            .parse()
            .map_err(|_| SimError::Parse(format!("figure {s:?} is not a number; give 3 to 12")))?;
        let small = u8::try_from(number).map_err(|_| SimError::UnknownFigure(number))?;
        FigureId::new(small)
    }
}

/// The quantity a figure plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// A user's mean block size over the horizon, (1/T)·Σ_t W(t) (figures 3–6, 9, 10).
    MeanBlockSize,
    /// The average over users of their mean block size (figures 7, 8).
    AverageMeanBlockSize,
    /// The average of eqs. (10)–(12) per decided block, in token values v (figures 11, 12).
    AverageRisk,
}

impl Quantity {
    /// This quantity of one run (`None`: undefined in that run, e.g. no block decided).
    pub fn of(self, stats: &RunStats) -> Option<f64> {
        match self {
            Quantity::MeanBlockSize | Quantity::AverageMeanBlockSize => {
                Some(stats.average_mean_block_size())
            }
            Quantity::AverageRisk => stats.average_risk(),
        }
    }

    /// The y-axis label, with unit.
    pub const fn label(self) -> &'static str {
        match self {
            Quantity::MeanBlockSize => "mean block size W (tokens)",
            Quantity::AverageMeanBlockSize => "average over users of mean W (tokens)",
            Quantity::AverageRisk => "average risk per block (token values v)",
        }
    }
}

/// One value of a swept variable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    Q(f64),
    W0(u64),
    Users(u32),
    Rho(Withholding),
    Cost(u64),
    Model(TrustModel, TrustScale),
}

impl Setting {
    fn apply(&self, params: &mut SimParams) {
        match *self {
            Setting::Q(q) => params.double_spend_probability = q,
            Setting::W0(w0) => params.initial_block_size = w0,
            Setting::Users(users) => params.users = users,
            Setting::Rho(rho) => params.withholding = rho,
            Setting::Cost(cost) => params.vendor_costs.iter_mut().for_each(|c| *c = cost),
            Setting::Model(model, scale) => {
                params.trust_model = model;
                params.trust_scale = scale;
            }
        }
    }

    /// The value on the x axis.
    fn x(&self) -> f64 {
        match *self {
            Setting::Q(q) => q,
            Setting::W0(w0) => w0 as f64,
            Setting::Users(users) => f64::from(users),
            Setting::Rho(rho) => rho.fraction() * 100.0,
            Setting::Cost(cost) => cost as f64,
            Setting::Model(model, _) => f64::from(model.index()),
        }
    }

    /// The series name.
    fn series(&self) -> String {
        match *self {
            Setting::Q(q) => format!("q={q}"),
            Setting::W0(w0) => format!("W0={w0}"),
            Setting::Users(users) => format!("users={users}"),
            Setting::Rho(rho) => format!("rho={rho}"),
            Setting::Cost(cost) => format!("cost={cost}"),
            Setting::Model(model, scale) => model_series(model, scale),
        }
    }
}

/// The series name of a trust model at a scale: `neutral`, or `neutral (N=W_prev)`.
pub fn model_series(model: TrustModel, scale: TrustScale) -> String {
    match scale {
        TrustScale::Initial => model.name().to_owned(),
        TrustScale::Previous => format!("{} (N=W_prev)", model.name()),
    }
}

/// Which variable an axis sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variable {
    Q,
    W0,
    Users,
    Rho,
    Cost,
    Model,
}

/// Command-line overrides. A value for a figure's swept variable (x axis or series) restricts the
/// sweep to that value; any other value replaces the figure's fixed parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    /// Horizon T in slots.
    pub slots: Option<u64>,
    /// p.
    pub purchase_probability: Option<f64>,
    /// q.
    pub double_spend_probability: Option<f64>,
    /// W0.
    pub initial_block_size: Option<u64>,
    /// One product cost for every vendor.
    pub cost: Option<u64>,
    /// Explicit per-vendor costs (sets the number of vendors).
    pub vendor_costs: Option<Vec<u64>>,
    /// Number of vendors (the figure's cost list is cycled to this length).
    pub vendors: Option<u32>,
    /// ρ.
    pub withholding: Option<Withholding>,
    /// Number of users.
    pub users: Option<u32>,
    /// The trust model.
    pub model: Option<TrustModel>,
    /// The trust scale N.
    pub scale: Option<TrustScale>,
}

/// One point of a figure: its x, its series and the parameters that produce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigurePoint {
    /// The x value.
    pub x: f64,
    /// The series name.
    pub series: String,
    /// The parameters of the runs of this point.
    pub params: SimParams,
}

/// A figure to compute: labels, quantity, Monte Carlo settings and points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureSpec {
    /// Which figure.
    pub id: FigureId,
    /// Plot title.
    pub title: String,
    /// x-axis label, with unit.
    pub x_label: String,
    /// y-axis label, with unit.
    pub y_label: String,
    /// The quantity on the y axis.
    pub quantity: Quantity,
    /// Repetitions per point.
    pub runs: u32,
    /// Base seed.
    pub seed: u64,
    /// What is fixed (human-readable, for the report and plot subtitle).
    pub fixed: String,
    /// The points, series by series, x ascending within a series.
    pub points: Vec<FigurePoint>,
}

impl FigureSpec {
    /// Users × slots × runs over all points.
    pub fn user_slots(&self) -> u64 {
        self.points
            .iter()
            .map(|p| p.params.user_slots().saturating_mul(u64::from(self.runs)))
            .fold(0u64, u64::saturating_add)
    }

    /// Repetitions over all points.
    pub fn total_runs(&self) -> u64 {
        u64::try_from(self.points.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.runs))
    }
}

/// Per-figure layout before overrides.
struct Layout {
    title: &'static str,
    quantity: Quantity,
    x_label: &'static str,
    x: (Variable, Vec<Setting>),
    series: (Variable, Vec<Setting>),
    base: SimParams,
    default_runs: u32,
}

fn q_settings() -> Vec<Setting> {
    Q_GRID.iter().map(|q| Setting::Q(*q)).collect()
}

fn model_settings(scales: &[TrustScale]) -> Vec<Setting> {
    scales
        .iter()
        .flat_map(|scale| {
            TrustModel::ALL
                .iter()
                .map(move |m| Setting::Model(*m, *scale))
        })
        .collect()
}

fn cost_settings() -> Vec<Setting> {
    COST_SERIES.iter().map(|c| Setting::Cost(*c)).collect()
}

fn w0_settings(values: &[u64]) -> Vec<Setting> {
    values.iter().map(|w| Setting::W0(*w)).collect()
}

fn layout(id: FigureId) -> Result<Layout, SimError> {
    let table2 = SimParams::table2();
    let q_label = "double-spend rate q (probability per token)";
    let w0_label = "initial block size W0 (tokens)";
    let models = model_settings(&[TrustScale::Initial]);
    let with = |change: &dyn Fn(&mut SimParams)| {
        let mut p = table2.clone();
        change(&mut p);
        p
    };
    let rho20 = Withholding::from_bps(2_000)?;
    Ok(match id.number() {
        3 => Layout {
            title: "Fig. 3: mean block size W vs double-spend rate q",
            quantity: Quantity::MeanBlockSize,
            x_label: q_label,
            x: (Variable::Q, q_settings()),
            series: (
                Variable::Model,
                model_settings(&[TrustScale::Initial, TrustScale::Previous]),
            ),
            base: table2.clone(),
            default_runs: DEFAULT_RUNS,
        },
        4 => Layout {
            title: "Fig. 4: mean block size W vs q and product cost (neutral)",
            quantity: Quantity::MeanBlockSize,
            x_label: q_label,
            x: (Variable::Q, q_settings()),
            series: (Variable::Cost, cost_settings()),
            base: table2.clone(),
            default_runs: DEFAULT_RUNS,
        },
        5 => Layout {
            title: "Fig. 5: mean block size W vs initial block size W0",
            quantity: Quantity::MeanBlockSize,
            x_label: w0_label,
            x: (
                Variable::W0,
                w0_settings(&[10, 20, 30, 40, 50, 60, 80, 100, 120, 150]),
            ),
            series: (Variable::Model, models),
            base: table2.clone(),
            default_runs: DEFAULT_RUNS,
        },
        6 => Layout {
            title: "Fig. 6: mean block size W vs W0 and product cost (pessimistic)",
            quantity: Quantity::MeanBlockSize,
            x_label: w0_label,
            x: (
                Variable::W0,
                w0_settings(&[20, 30, 40, 50, 60, 70, 80, 90, 100]),
            ),
            series: (Variable::Cost, cost_settings()),
            base: with(&|p| p.trust_model = TrustModel::Pessimistic),
            default_runs: DEFAULT_RUNS,
        },
        7 => Layout {
            title: "Fig. 7: average mean W over users vs W0 and number of users (pessimistic)",
            quantity: Quantity::AverageMeanBlockSize,
            x_label: w0_label,
            x: (Variable::W0, w0_settings(&[20, 30, 40, 50, 60, 70, 80])),
            series: (
                Variable::Users,
                [10, 30, 50, 70, 90]
                    .iter()
                    .map(|n| Setting::Users(*n))
                    .collect(),
            ),
            base: with(&|p| p.trust_model = TrustModel::Pessimistic),
            default_runs: DEFAULT_RUNS_MULTI_USER,
        },
        8 => Layout {
            title: "Fig. 8: average mean W over users vs number of users",
            quantity: Quantity::AverageMeanBlockSize,
            x_label: "number of users n",
            x: (
                Variable::Users,
                [1, 10, 25, 50, 75, 100]
                    .iter()
                    .map(|n| Setting::Users(*n))
                    .collect(),
            ),
            series: (Variable::Model, models),
            base: table2.clone(),
            default_runs: DEFAULT_RUNS_MULTI_USER,
        },
        9 => Layout {
            title: "Fig. 9: mean block size W vs q, two vendors (costs 10 and 20)",
            quantity: Quantity::MeanBlockSize,
            x_label: q_label,
            x: (Variable::Q, q_settings()),
            series: (Variable::Model, models),
            base: with(&|p| p.vendor_costs = FIG9_COSTS.to_vec()),
            default_runs: DEFAULT_RUNS,
        },
        10 => Layout {
            title: "Fig. 10: mean block size W vs q, ten vendors (costs 1..25)",
            quantity: Quantity::MeanBlockSize,
            x_label: q_label,
            x: (Variable::Q, q_settings()),
            series: (Variable::Model, models),
            base: with(&|p| p.vendor_costs = FIG10_COSTS.to_vec()),
            default_runs: DEFAULT_RUNS,
        },
        11 => Layout {
            title: "Fig. 11: average risk vs double-spend rate q (W0 = 50)",
            quantity: Quantity::AverageRisk,
            x_label: q_label,
            x: (Variable::Q, q_settings()),
            series: (Variable::Model, models),
            base: with(&|p| {
                p.initial_block_size = 50;
                p.withholding = rho20;
            }),
            default_runs: DEFAULT_RUNS,
        },
        12 => Layout {
            title: "Fig. 12: average risk vs withholding rho (W0 = 50, q = 0.2)",
            quantity: Quantity::AverageRisk,
            x_label: "withholding rho (% of token value)",
            x: (
                Variable::Rho,
                (0..=10u16)
                    .map(|k| Withholding::from_bps(k * 500).map(Setting::Rho))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            series: (Variable::Model, models),
            base: with(&|p| p.initial_block_size = 50),
            default_runs: DEFAULT_RUNS,
        },
        other => return Err(SimError::UnknownFigure(u64::from(other))),
    })
}

/// Restricts `settings` (a sweep of `variable`) to the override, if one is given for it.
fn restrict(
    variable: Variable,
    settings: Vec<Setting>,
    o: &Overrides,
) -> Result<Vec<Setting>, SimError> {
    Ok(match variable {
        Variable::Q => match o.double_spend_probability {
            Some(q) => vec![Setting::Q(q)],
            None => settings,
        },
        Variable::W0 => match o.initial_block_size {
            Some(w0) => vec![Setting::W0(w0)],
            None => settings,
        },
        Variable::Users => match o.users {
            Some(n) => vec![Setting::Users(n)],
            None => settings,
        },
        Variable::Rho => match o.withholding {
            Some(rho) => vec![Setting::Rho(rho)],
            None => settings,
        },
        Variable::Cost => match o.cost {
            Some(cost) => vec![Setting::Cost(cost)],
            None => settings,
        },
        Variable::Model => {
            let models: Vec<(TrustModel, TrustScale)> = settings
                .into_iter()
                .filter_map(|s| match s {
                    Setting::Model(model, scale) => Some((model, scale)),
                    _ => None,
                })
                .filter(|(model, _)| o.model.is_none_or(|m| m == *model))
                .collect();
            let models = match o.scale {
                // The figure sweeps this scale: keep its series at that scale.
                Some(scale) if models.iter().any(|(_, s)| *s == scale) => {
                    models.into_iter().filter(|(_, s)| *s == scale).collect()
                }
                // Another scale: run the same models at the requested scale.
                Some(scale) => {
                    let mut at_scale: Vec<(TrustModel, TrustScale)> =
                        models.into_iter().map(|(m, _)| (m, scale)).collect();
                    at_scale.dedup();
                    at_scale
                }
                None => models,
            };
            if models.is_empty() {
                return Err(SimError::Parse(
                    "the model override leaves no series to plot".into(),
                ));
            }
            models
                .into_iter()
                .map(|(m, s)| Setting::Model(m, s))
                .collect()
        }
    })
}

/// Applies the overrides that are not swept by the figure to its fixed parameters.
fn apply_fixed(base: &mut SimParams, swept: [Variable; 2], o: &Overrides) -> Result<(), SimError> {
    if let Some(slots) = o.slots {
        base.slots = slots;
    }
    if let Some(p) = o.purchase_probability {
        base.purchase_probability = p;
    }
    if let Some(costs) = &o.vendor_costs {
        if costs.is_empty() {
            return Err(SimError::Parse(
                "the cost list is empty; give at least one vendor cost".into(),
            ));
        }
        base.vendor_costs = costs.clone();
    }
    if let Some(vendors) = o.vendors {
        super::params::check_range(
            "number of vendors",
            u64::from(vendors),
            1,
            u64::from(MAX_VENDORS),
        )?;
        let cycle = base.vendor_costs.clone();
        base.vendor_costs = cycle
            .iter()
            .copied()
            .cycle()
            .take(usize::try_from(vendors).unwrap_or(usize::MAX))
            .collect();
    }
    let not_swept = |v: Variable| !swept.contains(&v);
    if not_swept(Variable::Q) {
        if let Some(q) = o.double_spend_probability {
            base.double_spend_probability = q;
        }
    }
    if not_swept(Variable::W0) {
        if let Some(w0) = o.initial_block_size {
            base.initial_block_size = w0;
        }
    }
    if not_swept(Variable::Users) {
        if let Some(users) = o.users {
            base.users = users;
        }
    }
    if not_swept(Variable::Rho) {
        if let Some(rho) = o.withholding {
            base.withholding = rho;
        }
    }
    if not_swept(Variable::Cost) {
        if let Some(cost) = o.cost {
            Setting::Cost(cost).apply(base);
        }
    }
    if not_swept(Variable::Model) {
        if let Some(model) = o.model {
            base.trust_model = model;
        }
        if let Some(scale) = o.scale {
            base.trust_scale = scale;
        }
    }
    Ok(())
}

/// Describes the fixed parameters of `base` that the figure does not sweep.
fn describe_fixed(base: &SimParams, swept: [Variable; 2]) -> String {
    let mut parts = Vec::new();
    if !swept.contains(&Variable::Q) {
        parts.push(format!("q = {}", base.double_spend_probability));
    }
    if !swept.contains(&Variable::W0) {
        parts.push(format!("W0 = {}", base.initial_block_size));
    }
    if !swept.contains(&Variable::Cost) {
        let costs: Vec<String> = base.vendor_costs.iter().map(u64::to_string).collect();
        parts.push(format!(
            "{} vendor(s), cost {} tokens",
            base.vendor_costs.len(),
            costs.join("/")
        ));
    } else {
        parts.push(format!("{} vendor(s)", base.vendor_costs.len()));
    }
    if !swept.contains(&Variable::Users) {
        parts.push(format!("{} user(s)", base.users));
    }
    if !swept.contains(&Variable::Model) {
        parts.push(model_series(base.trust_model, base.trust_scale));
    } else if base.trust_scale == TrustScale::Previous {
        parts.push("N = W_prev".into());
    }
    parts.push(format!("p = {}", base.purchase_probability));
    if !swept.contains(&Variable::Rho) {
        parts.push(format!("rho = {}", base.withholding));
    }
    parts.push(format!("T = {} slots", base.slots));
    parts.join(", ")
}

/// The figure `id` with the paper's parameters (SPEC §5 table), modified by `overrides`, with
/// `mc.runs` repetitions per point (or the figure's default).
///
/// # Errors
/// [`SimError::OutOfRange`], [`SimError::Probability`], [`SimError::Parse`] for invalid
/// overrides (every point is validated).
pub fn figure_spec(
    id: FigureId,
    overrides: &Overrides,
    mc: &MonteCarlo,
) -> Result<FigureSpec, SimError> {
    let Layout {
        title,
        quantity,
        x_label,
        x,
        series,
        mut base,
        default_runs,
    } = layout(id)?;
    let swept = [x.0, series.0];
    apply_fixed(&mut base, swept, overrides)?;
    let xs = restrict(x.0, x.1, overrides)?;
    let all_series = restrict(series.0, series.1, overrides)?;
    let runs = mc.runs.unwrap_or(default_runs);
    super::params::check_range("runs", u64::from(runs), 1, u64::from(u32::MAX))?;
    let mut points = Vec::with_capacity(xs.len() * all_series.len());
    for s in &all_series {
        for x in &xs {
            let mut params = base.clone();
            s.apply(&mut params);
            x.apply(&mut params);
            params.validate()?;
            points.push(FigurePoint {
                x: x.x(),
                series: s.series(),
                params,
            });
        }
    }
    Ok(FigureSpec {
        id,
        title: title.to_owned(),
        x_label: x_label.to_owned(),
        y_label: quantity.label().to_owned(),
        quantity,
        runs,
        seed: mc.seed,
        fixed: describe_fixed(&base, swept),
        points,
    })
}

/// Totals over every run of a figure (engine activity and ground-truth checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FigureTotals {
    /// Repetitions run.
    pub runs: u64,
    /// Simulated user-slots.
    pub user_slots: u64,
    /// Transactions the engine processed.
    pub transactions: u64,
    /// Tokens the engine processed.
    pub tokens: u64,
    /// Blocks decided.
    pub blocks: u64,
    /// Blocks with an invalid token.
    pub invalid_blocks: u64,
    /// `DUPLICATE` decisions (equal to the double-spent tokens in decided blocks, checked per run).
    pub duplicate_decisions: u64,
}

impl FigureTotals {
    fn add(&mut self, stats: &RunStats) {
        self.runs = self.runs.saturating_add(1);
        self.user_slots = self.user_slots.saturating_add(stats.user_slots);
        self.transactions = self.transactions.saturating_add(stats.transactions);
        self.tokens = self.tokens.saturating_add(stats.tokens);
        self.blocks = self.blocks.saturating_add(stats.blocks);
        self.invalid_blocks = self.invalid_blocks.saturating_add(stats.invalid_blocks);
        self.duplicate_decisions = self
            .duplicate_decisions
            .saturating_add(stats.duplicate_decisions);
    }
}

/// A computed figure: its spec, its rows (CSV content) and totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureResult {
    /// What was computed.
    pub spec: FigureSpec,
    /// One row per point: mean and sample standard deviation over runs.
    pub rows: Vec<Row>,
    /// Engine activity.
    pub totals: FigureTotals,
}

/// Runs every (point, run) of `specs` in parallel on the current rayon pool and aggregates each
/// point over its runs. `progress` is called after each run with the user-slots it simulated
/// (the sum over all calls is Σ [`FigureSpec::user_slots`]).
///
/// # Errors
/// The first [`SimError`] any run returned.
pub fn run_figures(
    specs: &[FigureSpec],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<FigureResult>, SimError> {
    let mut tasks: Vec<(usize, usize, u32)> = Vec::new();
    for (f, spec) in specs.iter().enumerate() {
        for p in 0..spec.points.len() {
            tasks.extend((0..spec.runs).map(|r| (f, p, r)));
        }
    }
    // Largest runs first: better load balance across threads.
    tasks.sort_by_key(|(f, p, _)| std::cmp::Reverse(specs[*f].points[*p].params.user_slots()));
    let outcomes: Vec<(usize, usize, Option<f64>, RunStats)> = tasks
        .par_iter()
        .map(|&(f, p, r)| {
            let spec = &specs[f];
            let mut stats = run_once(&spec.points[p].params, spec.seed, r)?;
            progress(stats.user_slots);
            let y = spec.quantity.of(&stats);
            stats.mean_block_size = Vec::new(); // not needed past this point
            Ok((f, p, y, stats))
        })
        .collect::<Result<_, SimError>>()?;

    let mut values: Vec<Vec<Vec<(u32, f64)>>> = specs
        .iter()
        .map(|s| vec![Vec::new(); s.points.len()])
        .collect();
    let mut totals = vec![FigureTotals::default(); specs.len()];
    for (f, p, y, stats) in &outcomes {
        totals[*f].add(stats);
        if let Some(y) = y {
            values[*f][*p].push((stats.run, *y));
        }
    }
    Ok(specs
        .iter()
        .zip(values)
        .zip(totals)
        .map(|((spec, per_point), totals)| {
            let rows = spec
                .points
                .iter()
                .zip(per_point)
                .filter_map(|(point, mut ys)| {
                    ys.sort_by_key(|(run, _)| *run); // summation order independent of scheduling
                    let ys: Vec<f64> = ys.into_iter().map(|(_, y)| y).collect();
                    let (y, y_std) = mean_std(&ys)?;
                    Some(Row {
                        x: point.x,
                        series: point.series.clone(),
                        y,
                        y_std,
                        runs: u32::try_from(ys.len()).unwrap_or(u32::MAX),
                    })
                })
                .collect();
            FigureResult {
                spec: spec.clone(),
                rows,
                totals,
            }
        })
        .collect())
}

/// Mean and sample standard deviation (n − 1; 0 for one value); `None` for no values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() == 1 {
        return Some((mean, 0.0));
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    Some((mean, var.sqrt()))
}
