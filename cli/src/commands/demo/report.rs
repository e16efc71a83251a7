//! The system demo's report (`mupib demo`): what it read back from the service, the ledger and
//! the auditor's store — per user, per vendor, per block — and the money balance [`MoneyCheck`]
//! (SPEC §4, eqs. 10–12), with [`render`], its human-readable form.

use std::path::Path;

use mupib_protocol::decision::DecisionCounts;
use serde::Serialize;

/// One user as the auditor sees it at the end, with its history of block sizes.
#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    /// The role it plays in the demo (`honest`, `double-spender`, `forger`).
    pub name: String,
    /// Its key (base58).
    pub key: String,
    /// T_e(γ) now (eqs. 3–5), from `/v1/users`.
    pub trust: f64,
    /// γ, the invalid tokens counted against it.
    pub invalid_total: u64,
    /// W now.
    pub block_size: u64,
    /// W0 followed by W after each of its verified blocks (eq. 7), from `/v1/blocks`.
    pub block_sizes: Vec<u64>,
    /// Suspended (W = 0).
    pub suspended: bool,
    /// Blocks verified valid / with invalid tokens.
    pub blocks_valid: u64,
    /// Blocks with invalid tokens.
    pub blocks_invalid: u64,
    /// Misbehaviour detected at intake (forged tokens, double spending at intake).
    pub misbehaviour_count: u64,
    /// Refunds the auditor owes it, in base units.
    pub refunded: u64,
    /// Final answers its payments got that were rejections: the reason codes, in order.
    pub rejections: Vec<String>,
    /// Payments delivered.
    pub delivered: u64,
}

/// One vendor's payouts.
#[derive(Debug, Clone, Serialize)]
pub struct VendorReport {
    /// Its name in the demo.
    pub name: String,
    /// Its key (base58).
    pub key: String,
    /// Its SPL token account.
    pub payout_account: String,
    /// The on-chain SPL balance of its payout account (what it was actually paid).
    pub onchain_balance: u64,
    /// Σ v·(1−ρ) accrued in the auditor's store.
    pub accrued: u64,
    /// Σ paid by completed settlement batches, per the store.
    pub settled: u64,
    /// Times it presented a transaction already seen (flagged).
    pub double_sellings: u64,
    /// Reason codes of the rejections it got for transactions it presented again.
    pub rejections: Vec<String>,
}

/// One block the auditor verified on the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct BlockReport {
    /// The block id (the `Block` PDA seed).
    pub block_id: u64,
    /// The user's name in the demo.
    pub user: String,
    /// W when it formed (its token count).
    pub block_size: u64,
    /// W after it (eq. 7).
    pub block_size_after: u64,
    /// Its decisions, from its `Block` account.
    pub decisions: DecisionCounts,
    /// What the escrow paid the auditor for it, from its `Block` account.
    pub amount_paid: u64,
}

/// The money balance: each term read back from its own source.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MoneyCheck {
    /// Σ `amount_paid` of the auditor's `Block` accounts on the ledger.
    pub escrow_paid: u64,
    /// Σ on-chain SPL balances of the vendors' payout accounts.
    pub payouts: u64,
    /// Σ refunds owed to users (`/v1/users`).
    pub refunds: u64,
    /// Σ auditor margin of the decided blocks (the store's block outcomes).
    pub margin: u64,
    /// Σ loss (face value of invalid tokens paid out) of the decided blocks (the store).
    pub loss: u64,
    /// The auditor's SPL balance before the service started.
    pub auditor_balance_before: u64,
    /// The auditor's SPL balance at the end.
    pub auditor_balance_after: u64,
    /// escrow paid = payouts + refunds + margin − loss.
    pub balanced: bool,
    /// auditor after = auditor before + escrow paid − payouts (all on the ledger).
    pub auditor_balance_consistent: bool,
}

/// The system demo's report.
#[derive(Debug, Clone, Serialize)]
pub struct SystemReport {
    /// Always `embedded`.
    pub ledger: &'static str,
    /// The program id.
    pub program: String,
    /// The payment mint.
    pub mint: String,
    /// The bank.
    pub bank: String,
    /// The auditor.
    pub auditor: String,
    /// The service's URL while it ran.
    pub service_url: String,
    /// Value of one token.
    pub token_value: u64,
    /// ρ in basis points.
    pub withholding_bps: u16,
    /// Tokens in the minted batch.
    pub batch_size: u32,
    /// Blocks the auditor formed and verified on the ledger.
    pub blocks: u64,
    /// Per user.
    pub users: Vec<UserReport>,
    /// Per vendor.
    pub vendors: Vec<VendorReport>,
    /// Per decision code, from the ledger.
    pub decisions: DecisionCounts,
    /// Every block, in id order.
    pub block_list: Vec<BlockReport>,
    /// The balance.
    pub money: MoneyCheck,
}

impl SystemReport {
    /// Every check held.
    pub fn holds(&self) -> bool {
        self.money.balanced && self.money.auditor_balance_consistent
    }
}

fn amount(base_units: u64) -> String {
    format!("{}.{:06}", base_units / 1_000_000, base_units % 1_000_000)
}

/// The human-readable report.
pub fn render(report: &SystemReport, data_dir: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "µPIB end-to-end demo on the embedded ledger");
    let _ = writeln!(
        out,
        "(the real program in an in-process Solana bank; the real auditor service over HTTP on {})",
        report.service_url
    );
    match data_dir {
        Some(dir) => {
            let _ = writeln!(out, "data: {}", dir.display());
        }
        None => {
            let _ = writeln!(
                out,
                "data: a temporary directory (use --data-dir to keep it)"
            );
        }
    }
    let _ = writeln!(out, "program {}  mint {}", report.program, report.mint);
    let _ = writeln!(out, "bank    {}  auditor {}", report.bank, report.auditor);
    let _ = writeln!(
        out,
        "batch of {} tokens of {}; withholding {} bps; {} blocks verified on-chain",
        report.batch_size,
        amount(report.token_value),
        report.withholding_bps,
        report.blocks
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "users");
    for u in &report.users {
        let sizes: Vec<String> = u.block_sizes.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "  {:<15} trust {:.4}  W {:<2} W over blocks {:<14} {}  γ={} delivered={} refunded={} rejections=[{}]",
            u.name,
            u.trust,
            u.block_size,
            sizes.join("→"),
            if u.suspended { "SUSPENDED" } else { "active   " },
            u.invalid_total,
            u.delivered,
            amount(u.refunded),
            u.rejections.join(", ")
        );
    }
    let _ = writeln!(out, "vendors");
    for v in &report.vendors {
        let _ = writeln!(
            out,
            "  {:<15} paid on-chain {}  (accrued {}, settled {})  double sellings {}",
            v.name,
            amount(v.onchain_balance),
            amount(v.accrued),
            amount(v.settled),
            v.double_sellings
        );
    }
    let _ = writeln!(out, "blocks (read from their Block accounts)");
    for b in &report.block_list {
        let _ = writeln!(
            out,
            "  #{:<3} {:<15} W {}→{}  {} valid, {} altered, {} duplicate, {} unpublished  escrow paid {}",
            b.block_id,
            b.user,
            b.block_size,
            b.block_size_after,
            b.decisions.valid,
            b.decisions.altered,
            b.decisions.duplicate,
            b.decisions.unpublished,
            amount(b.amount_paid)
        );
    }
    let d = &report.decisions;
    let _ = writeln!(
        out,
        "decisions (Block accounts): {} valid (11), {} altered (01), {} duplicate (10), {} unpublished (00)",
        d.valid, d.altered, d.duplicate, d.unpublished
    );
    let m = &report.money;
    let _ = writeln!(
        out,
        "money: escrow paid {} = payouts {} + refunds {} + margin {} − loss {}  [{}]",
        amount(m.escrow_paid),
        amount(m.payouts),
        amount(m.refunds),
        amount(m.margin),
        amount(m.loss),
        if m.balanced {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    let _ = writeln!(
        out,
        "auditor SPL balance: {} → {}  [{}]",
        amount(m.auditor_balance_before),
        amount(m.auditor_balance_after),
        if m.auditor_balance_consistent {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    out
}
