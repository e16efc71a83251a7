//! `mupib sim`: reproduces the paper's simulation (§7, figures 3–12) with the real auditor engine
//! ([`mupib_sim`]) and writes, per figure, `figNN.csv` (`x,series,y,y_std,runs`), `figNN.png`
//! and one `report.md` checking the paper's claims against the numbers.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};
use mupib_protocol::money::Withholding;
use mupib_protocol::trust::{TrustModel, TrustScale};
use mupib_sim::report::{check_claims, render_markdown, ClaimCheck, ClaimVerdict, ReportContext};
use mupib_sim::{
    figure_spec, run_figures, write_csv, FigureId, FigureResult, MonteCarlo, Overrides,
    DEFAULT_SEED, DEFAULT_SLOTS,
};
use serde::Serialize;

/// Reproduce the paper's figures 3–12 with the real auditor engine (paper mode) and a simulated
/// chain; write figNN.csv, figNN.png and report.md into --out.
#[derive(clap::Args)]
pub struct Args {
    /// Output directory (created if missing).
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Only this figure (3 to 12); all ten by default.
    #[arg(long)]
    figure: Option<FigureId>,
    /// Monte Carlo repetitions per point [default: 100 for figures 3–6 and 9–12, 10 for the
    /// multi-user figures 7 and 8].
    #[arg(long)]
    runs: Option<u32>,
    /// Horizon T in slots.
    #[arg(long, default_value_t = DEFAULT_SLOTS)]
    slots: u64,
    /// Base seed: run r of every point uses the random streams of (seed, r).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Double-spend probability per token q, in [0, 1] (restricts the sweep if q is on the x axis).
    #[arg(long)]
    q: Option<f64>,
    /// Purchase probability per slot p, in [0, 1] [paper: 0.4].
    #[arg(long)]
    p: Option<f64>,
    /// Initial block size W0 in tokens (restricts the sweep if W0 is on the x axis or a series).
    #[arg(long)]
    w0: Option<u64>,
    /// Product cost in tokens, for every vendor (restricts the sweep if cost is a series).
    #[arg(long)]
    cost: Option<u64>,
    /// Per-vendor product costs, comma-separated (sets the number of vendors), e.g. 10,20.
    #[arg(long, value_delimiter = ',')]
    costs: Option<Vec<u64>>,
    /// Number of vendors (the figure's costs are repeated to this length).
    #[arg(long)]
    vendors: Option<u32>,
    /// Withholding rho: "20%", "0.2" or "2000bps" (restricts the sweep in figure 12).
    #[arg(long)]
    rho: Option<Withholding>,
    /// Number of users (restricts the sweep in figures 7 and 8).
    #[arg(long)]
    users: Option<u32>,
    /// Trust model: neutral, optimistic or pessimistic (restricts the model series).
    #[arg(long)]
    model: Option<TrustModel>,
    /// Trust scale N: initial (N = W0) or previous (N = W_{i-1}).
    #[arg(long)]
    scale: Option<TrustScale>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the PNG plots (CSV and report only).
    #[arg(long)]
    no_plots: bool,
    /// Print a JSON summary on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Per-figure entry of the summary.
#[derive(Serialize)]
struct FigureSummary {
    figure: u8,
    title: String,
    csv: PathBuf,
    png: Option<PathBuf>,
    rows: usize,
    runs_per_point: u32,
    slots: u64,
    user_slots: u64,
    transactions: u64,
    blocks: u64,
    claims: VerdictCounts,
}

#[derive(Serialize, Default)]
struct VerdictCounts {
    agree: usize,
    partly: usize,
    disagree: usize,
    not_testable: usize,
}

impl VerdictCounts {
    fn of<'a>(checks: impl Iterator<Item = &'a ClaimCheck>) -> Self {
        let mut counts = VerdictCounts::default();
        for check in checks.filter(|c| !c.ours) {
            match check.verdict {
                ClaimVerdict::Agree => counts.agree += 1,
                ClaimVerdict::Partial => counts.partly += 1,
                ClaimVerdict::Disagree => counts.disagree += 1,
                ClaimVerdict::Untestable => counts.not_testable += 1,
            }
        }
        counts
    }
}

/// The `--json` summary.
#[derive(Serialize)]
struct Summary {
    out: PathBuf,
    report: PathBuf,
    seed: u64,
    threads: usize,
    elapsed_seconds: f64,
    simulation_seconds: f64,
    user_slots: u64,
    user_slots_per_second: f64,
    transactions: u64,
    blocks: u64,
    figures: Vec<FigureSummary>,
    claims: VerdictCounts,
    checks: Vec<ClaimCheck>,
}

impl Args {
    fn overrides(&self) -> Overrides {
        Overrides {
            slots: Some(self.slots),
            purchase_probability: self.p,
            double_spend_probability: self.q,
            initial_block_size: self.w0,
            cost: self.cost,
            vendor_costs: self.costs.clone(),
            vendors: self.vendors,
            withholding: self.rho,
            users: self.users,
            model: self.model,
            scale: self.scale,
        }
    }

    /// The command line that reproduces this run (for the report).
    fn command_line(&self) -> String {
        let mut cmd = String::from("mupib sim");
        if let Some(f) = self.figure {
            cmd.push_str(&format!(" --figure {f}"));
        }
        cmd.push_str(&format!(" --out {}", self.out.display()));
        if let Some(r) = self.runs {
            cmd.push_str(&format!(" --runs {r}"));
        }
        if self.slots != DEFAULT_SLOTS {
            cmd.push_str(&format!(" --slots {}", self.slots));
        }
        if self.seed != DEFAULT_SEED {
            cmd.push_str(&format!(" --seed {}", self.seed));
        }
        let opts: [(&str, Option<String>); 10] = [
            ("q", self.q.map(|v| v.to_string())),
            ("p", self.p.map(|v| v.to_string())),
            ("w0", self.w0.map(|v| v.to_string())),
            ("cost", self.cost.map(|v| v.to_string())),
            (
                "costs",
                self.costs
                    .as_ref()
                    .map(|c| c.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
            ),
            ("vendors", self.vendors.map(|v| v.to_string())),
            ("rho", self.rho.map(|v| v.to_string())),
            ("users", self.users.map(|v| v.to_string())),
            ("model", self.model.map(|v| v.to_string())),
            ("scale", self.scale.map(|v| v.to_string())),
        ];
        for (name, value) in opts {
            if let Some(value) = value {
                cmd.push_str(&format!(" --{name} {value}"));
            }
        }
        cmd
    }

    /// Runs the figures and writes CSV, PNG and the report.
    pub fn execute(self) -> anyhow::Result<()> {
        let started = Instant::now();
        if self.threads == Some(0) {
            return Err(anyhow!("--threads 0: give at least one worker thread"));
        }
        let mc = MonteCarlo {
            runs: self.runs,
            seed: self.seed,
        };
        let overrides = self.overrides();
        let ids: Vec<FigureId> = match self.figure {
            Some(id) => vec![id],
            None => FigureId::ALL.to_vec(),
        };
        let specs = ids
            .iter()
            .map(|id| figure_spec(*id, &overrides, &mc).with_context(|| format!("figure {id}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        fs::create_dir_all(&self.out).with_context(|| {
            format!("cannot create the output directory {}", self.out.display())
        })?;

        let total: u64 = specs.iter().map(|s| s.user_slots()).sum();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {percent:>3}% of {human_len} user-slots, {elapsed} elapsed, eta {eta}",
            )
            .map_err(|e| anyhow!("progress bar template: {e}"))?
            .progress_chars("=> "),
        );
        bar.set_message(format!("simulating {} figure(s)", specs.len()));
        let pool = {
            let mut builder = rayon::ThreadPoolBuilder::new();
            if let Some(threads) = self.threads {
                builder = builder.num_threads(threads);
            }
            builder.build().context("cannot start the worker threads")?
        };
        let threads = pool.current_num_threads();
        let sim_started = Instant::now();
        let results = pool.install(|| run_figures(&specs, &|n| bar.inc(n)))?;
        let simulation_seconds = sim_started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let checks = check_claims(&results);
        let mut figures = Vec::with_capacity(results.len());
        for result in &results {
            figures.push(self.write_figure(result, &checks)?);
        }
        let elapsed_seconds = started.elapsed().as_secs_f64();
        let report_path = self.out.join("report.md");
        let report = render_markdown(
            &results,
            &checks,
            &ReportContext {
                command: self.command_line(),
                elapsed_seconds: None,
            },
        );
        fs::write(&report_path, report)
            .with_context(|| format!("cannot write {}", report_path.display()))?;

        let user_slots = results.iter().map(|r| r.totals.user_slots).sum();
        let summary = Summary {
            out: self.out.clone(),
            report: report_path,
            seed: self.seed,
            threads,
            elapsed_seconds,
            simulation_seconds,
            user_slots,
            user_slots_per_second: user_slots as f64 / simulation_seconds.max(1e-9),
            transactions: results.iter().map(|r| r.totals.transactions).sum(),
            blocks: results.iter().map(|r| r.totals.blocks).sum(),
            claims: VerdictCounts::of(checks.iter()),
            figures,
            checks,
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print_summary(&summary);
        }
        Ok(())
    }

    fn write_figure(
        &self,
        result: &FigureResult,
        checks: &[ClaimCheck],
    ) -> anyhow::Result<FigureSummary> {
        let stem = result.spec.id.file_stem();
        let csv_path = self.out.join(format!("{stem}.csv"));
        let file = fs::File::create(&csv_path)
            .with_context(|| format!("cannot create {}", csv_path.display()))?;
        write_csv(&result.rows, std::io::BufWriter::new(file))
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        let png = if self.no_plots {
            None
        } else {
            let png_path = self.out.join(format!("{stem}.png"));
            mupib_sim::plot::plot_figure(result, &png_path)?;
            Some(png_path)
        };
        Ok(FigureSummary {
            figure: result.spec.id.number(),
            title: result.spec.title.clone(),
            csv: csv_path,
            png,
            rows: result.rows.len(),
            runs_per_point: result.spec.runs,
            slots: result.spec.points.first().map_or(0, |p| p.params.slots),
            user_slots: result.totals.user_slots,
            transactions: result.totals.transactions,
            blocks: result.totals.blocks,
            claims: VerdictCounts::of(checks.iter().filter(|c| c.figure == result.spec.id)),
        })
    }
}

fn print_summary(summary: &Summary) {
    println!(
        "simulated {} user-slots ({} transactions, {} blocks through the engine) in {:.1} s on {} thread(s): {:.2} M user-slots/s",
        summary.user_slots,
        summary.transactions,
        summary.blocks,
        summary.simulation_seconds,
        summary.threads,
        summary.user_slots_per_second / 1e6
    );
    for f in &summary.figures {
        println!(
            "figure {:>2}: {} rows, {} runs/point, T = {} -> {}{}  claims: {} agree, {} partly, {} disagree",
            f.figure,
            f.rows,
            f.runs_per_point,
            f.slots,
            f.csv.display(),
            f.png.as_ref().map_or(String::new(), |p| format!(", {}", p.display())),
            f.claims.agree,
            f.claims.partly,
            f.claims.disagree
        );
    }
    println!(
        "report: {} ({} agree, {} partly, {} disagree, {} not testable); total {:.1} s",
        summary.report.display(),
        summary.claims.agree,
        summary.claims.partly,
        summary.claims.disagree,
        summary.claims.not_testable,
        summary.elapsed_seconds
    );
}
