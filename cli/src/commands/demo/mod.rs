//! `mupib demo`: by default the whole system end to end on the embedded ledger — a bank mints;
//! an honest user, a double-spender, a forger and a double-selling vendor trade through the real
//! auditor service over HTTP on loopback; payouts are settled on-chain; everything reported is
//! read back from the ledger and the auditor's store (see [`system`]).
//!
//! `mupib demo --program-only`: the program-level scenario (a bank publishes a batch of signed
//! tokens; an auditor verifies a block that produces every decision code; the escrow pays the
//! auditor for the valid tokens exactly once), printed as a readable report or as JSON.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use anyhow::Context;
use mupib_chain::ledger::EmbeddedLedger;

pub mod report;
pub mod scenario;
pub mod system;

use scenario::{ScenarioParams, ScenarioReport};

/// Run the end-to-end demo on the embedded ledger (bank, users, vendors, the auditor service over
/// HTTP, on-chain verification and payouts) and print trust, block sizes, payouts, decision counts
/// and the money balance. `--program-only` runs the program-level scenario instead.
#[derive(clap::Args)]
pub struct Args {
    /// Keep the data in this data directory, laid out as for every other command (the ledger in
    /// `<data-dir>/ledger`, so `mupib localnet --data-dir` can serve it afterwards). The full
    /// demo needs it empty or absent; `--program-only` reuses an existing ledger. By default a
    /// fresh temporary directory is used and removed afterwards ($MUPIB_DATA_DIR is not used:
    /// the demo never writes into your data directory unless told to).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the report as JSON (progress lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Run only the program-level scenario (one block with every decision code, no service).
    #[arg(long)]
    program_only: bool,
    /// Tokens in the sealed batch (default: 64 with --program-only, 40 otherwise).
    #[arg(long)]
    batch_size: Option<u32>,
    /// With --program-only: fresh valid tokens in the main block (at most batch size − 3).
    #[arg(long, default_value_t = ScenarioParams::default().valid_tokens)]
    valid_tokens: u32,
    /// Value of one token, in base units of the payment mint (6 decimals).
    #[arg(long, default_value_t = ScenarioParams::default().token_value)]
    token_value: u64,
}

/// A temporary data directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fresh_temp_dir() -> anyhow::Result<TempDir> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("mupib-demo-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(TempDir(path))
}

impl Args {
    /// Runs the scenario and prints the report.
    pub fn execute(self) -> anyhow::Result<()> {
        let temp;
        let dir: &Path = match &self.data_dir {
            Some(dir) => dir,
            None => {
                temp = fresh_temp_dir()?;
                &temp.0
            }
        };
        if !self.program_only {
            return self.execute_system(dir);
        }
        let params = ScenarioParams {
            batch_size: self
                .batch_size
                .unwrap_or(ScenarioParams::default().batch_size),
            valid_tokens: self.valid_tokens,
            token_value: self.token_value,
            ..ScenarioParams::default()
        };
        let report = run_in(dir, &params)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report, self.data_dir.as_deref()));
        }
        if !report.all_as_expected {
            anyhow::bail!(
                "the chain's decisions differ from the expected ones (see the report above)"
            );
        }
        Ok(())
    }
}

impl Args {
    /// The full system demo in `dir`: progress on stderr, the report on stdout, a non-zero exit
    /// when the money balance does not hold.
    fn execute_system(&self, dir: &Path) -> anyhow::Result<()> {
        let defaults = system::SystemParams::default();
        let params = system::SystemParams {
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            token_value: self.token_value,
            ..defaults
        };
        let mut progress = |line: &str| eprintln!("[demo] {line}");
        let report = system::run(dir, &params, &mut progress)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report::render(&report, self.data_dir.as_deref()));
        }
        let money = &report.money;
        if !money.balanced {
            anyhow::bail!(
                "the money balance does not hold: escrow paid {} ≠ payouts {} + refunds {} + margin {} − loss {} (read back from the ledger and the auditor's store)",
                money.escrow_paid, money.payouts, money.refunds, money.margin, money.loss
            );
        }
        if !money.auditor_balance_consistent {
            anyhow::bail!(
                "the auditor's on-chain balance is inconsistent: {} + escrow paid {} − payouts {} ≠ {}",
                money.auditor_balance_before, money.escrow_paid, money.payouts, money.auditor_balance_after
            );
        }
        Ok(())
    }
}

/// Opens the embedded ledger of the data directory `dir` (`<dir>/ledger`, as every command
/// does) and runs the scenario on it.
pub fn run_in(dir: &Path, params: &ScenarioParams) -> anyhow::Result<ScenarioReport> {
    let ledger_dir = super::common::ledger_dir(dir);
    let ledger = EmbeddedLedger::open(&ledger_dir).with_context(|| {
        format!(
            "cannot open the embedded ledger in {}",
            ledger_dir.display()
        )
    })?;
    scenario::run(Arc::new(ledger), params).context("the program-level scenario failed")
}

fn amount(base_units: u64) -> String {
    // The demo mint has 6 decimals.
    format!("{}.{:06}", base_units / 1_000_000, base_units % 1_000_000)
}

/// The human-readable report.
pub fn render(report: &ScenarioReport, data_dir: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "µPIB program-level demo on the embedded ledger");
    let _ = writeln!(out, "(the real Solana runtime executing the program natively in an in-process bank; not a validator)");
    match data_dir {
        Some(dir) => {
            let _ = writeln!(out, "ledger data: {}", dir.display());
        }
        None => {
            let _ = writeln!(
                out,
                "ledger data: a temporary directory (use --data-dir to keep it)"
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "program  {}", report.program);
    let _ = writeln!(out, "mint     {}", report.mint);
    let _ = writeln!(out, "bank     {}", report.bank);
    let _ = writeln!(out, "auditor  {}", report.auditor);
    let _ = writeln!(out, "batch    {}  (escrow {})", report.batch, report.escrow);
    let _ = writeln!(out, "block    {}", report.block);
    let _ = writeln!(out, "token value {}", amount(report.token_value));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:>4}  {:<5} {:<12} {:<34} token (bank:batch:serial)",
        "pos", "code", "decision", "case"
    );
    for row in &report.tokens {
        let mark = if row.decision == row.expected {
            ""
        } else {
            "  <-- expected "
        };
        let _ = writeln!(
            out,
            "{:>4}  {:<5} {:<12} {:<34} {}{}{}",
            row.position,
            row.code,
            row.decision,
            row.case,
            row.token,
            mark,
            if mark.is_empty() { "" } else { row.expected }
        );
    }
    let counts = &report.counts;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "decisions: {} valid (11), {} altered (01), {} duplicate (10), {} unpublished (00) in {} verification transactions",
        counts.valid, counts.altered, counts.duplicate, counts.unpublished, report.chunk_transactions
    );
    let _ = writeln!(
        out,
        "paid by the chain for the block: {}",
        amount(report.amount_paid)
    );
    let _ = writeln!(
        out,
        "escrow balance:  {} -> {}",
        amount(report.escrow_balance.before),
        amount(report.escrow_balance.after)
    );
    let _ = writeln!(
        out,
        "auditor balance: {} -> {}",
        amount(report.auditor_balance.before),
        amount(report.auditor_balance.after)
    );
    let _ = writeln!(
        out,
        "block account closed (rent back to the auditor): {}",
        if report.block_closed { "yes" } else { "no" }
    );
    let _ = writeln!(out, "transactions sent: {}", report.transactions);
    let _ = writeln!(
        out,
        "every decision as expected: {}",
        if report.all_as_expected { "yes" } else { "NO" }
    );
    out
}
