//! `mupib demo`, the README's main command, run as the real binary: the whole system end to end on
//! the embedded ledger, its JSON report checked value by value, and `--program-only` kept working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use std::sync::Arc;

use mupib_chain::ledger::EmbeddedLedger;
use mupib_cli::commands::demo::scenario::{self, ScenarioParams};
use serde_json::Value;

fn mupib(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mupib"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn demo_json(args: &[&str]) -> (Value, String) {
    let output = mupib(&[&["demo", "--json"], args].concat());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "mupib demo failed:\n{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing in {list}"))
}

fn u64s(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Token value v = 10 000 base units, ρ = 20 % (payout 8 000 per token), W0 = 4, neutral trust
/// with N = W0: T(γ) = (5 − γ)/6 (eq. 3), W_i = ⌊W_{i−1}·T(γ_i)/T(γ_{i−1})⌋ (eq. 7).
#[test]
fn demo_runs_every_attack_through_the_service_and_the_money_balances() {
    let (report, progress) = demo_json(&[]);

    // A progress line per phase on stderr (stdout is the JSON alone).
    for phase in [
        "ledger:",
        "deploy:",
        "bank: minted batch 1",
        "parties:",
        "double-spender:",
        "auditor: service listening on http://127.0.0.1:",
        "round 1:",
        "settle:",
        "read back:",
    ] {
        assert!(progress.contains(phase), "no `{phase}` line in\n{progress}");
    }
    assert_eq!(report["ledger"], "embedded");
    assert_eq!(report["token_value"], 10_000);
    assert_eq!(report["withholding_bps"], 2_000);

    // The honest user: two valid blocks of 4, W never moves, trust T(0) = 5/6.
    let honest = by_name(&report["users"], "honest");
    assert_eq!(u64s(&honest["block_sizes"]), vec![4, 4, 4]);
    assert_eq!(honest["suspended"], false);
    assert_eq!(honest["invalid_total"], 0);
    assert_eq!(honest["blocks_valid"], 2);
    assert_eq!(honest["rejections"], serde_json::json!([]));
    assert!((honest["trust"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-12);

    // The double-spender: spends four tokens honestly (a valid block of 4, W stays 4), then each
    // round presents one of them again. The auditor has seen them: rejected at intake, never
    // paid, and each attempt is a misbehaviour (γ += 1). Eq. 7: 4 → ⌊4·(4/6)/(5/6)⌋ = 3 →
    // ⌊3·(3/6)/(4/6)⌋ = 2 → ⌊2·(2/6)/(3/6)⌋ = 1 → ⌊1·(1/6)/(2/6)⌋ = 0: suspended.
    let spender = by_name(&report["users"], "double-spender");
    let sizes = u64s(&spender["block_sizes"]);
    assert_eq!(sizes, vec![4, 4, 3, 2, 1]);
    assert!(
        sizes[1..].windows(2).all(|w| w[1] < w[0]),
        "strictly decreasing"
    );
    assert_eq!(spender["block_size"], 0);
    assert_eq!(spender["suspended"], true);
    assert_eq!(spender["misbehaviour_count"], 4);
    assert_eq!(spender["invalid_total"], 4);
    // Its blocks hold only tokens it had not spent: all valid on-chain.
    assert_eq!(spender["blocks_valid"], 4);
    assert_eq!(spender["blocks_invalid"], 0);
    assert!((spender["trust"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-12);
    // Each replay is refused naming the reason; after suspension the next payment is refused
    // outright.
    assert_eq!(
        spender["rejections"],
        serde_json::json!([
            "double_spending_at_intake",
            "double_spending_at_intake",
            "double_spending_at_intake",
            "double_spending_at_intake",
            "user_suspended"
        ])
    );
    // Delivered at once: the 4 first uses, then 3 + 2 + 1 + 0 after each refused replay; nothing
    // was delivered against a replayed token, so nothing to refund.
    assert_eq!(spender["delivered"], 4 + 3 + 2 + 1);
    assert_eq!(spender["refunded"], 0);

    // The forger: the forged token is rejected at intake; γ = 1 takes W to 3, its next block
    // (valid) keeps it there.
    let forger = by_name(&report["users"], "forger");
    assert_eq!(forger["rejections"], serde_json::json!(["forged_token"]));
    assert_eq!(forger["misbehaviour_count"], 1);
    assert_eq!(forger["invalid_total"], 1);
    assert_eq!(u64s(&forger["block_sizes"]), vec![4, 3]);
    assert_eq!(forger["suspended"], false);

    // Vendors: paid on-chain what they accrued; the double-seller flagged once, paid once.
    // Honest orders go 1, 2, 1 tokens to vendor-a, vendor-b, double-seller in each block;
    // the double-spender's first uses go to vendor-b, its block payments to vendor-b, vendor-a, ...;
    // the forger's three tokens go vendor-a, vendor-b, vendor-a.
    let seller = by_name(&report["vendors"], "double-seller");
    assert_eq!(seller["double_sellings"], 1);
    assert_eq!(seller["rejections"], serde_json::json!(["double_selling"]));
    assert_eq!(seller["onchain_balance"], 2 * 8_000);
    let a = by_name(&report["vendors"], "vendor-a");
    let b = by_name(&report["vendors"], "vendor-b");
    assert_eq!(a["double_sellings"], 0);
    // vendor-a: honest 2, double-spender 2 (blocks of 3 and 2, i = 2), forger 2.
    assert_eq!(a["onchain_balance"], 6 * 8_000);
    // vendor-b: honest 4, double-spender 4 first uses + 4 (blocks of 3, 2, 1), forger 1.
    assert_eq!(b["onchain_balance"], 13 * 8_000);
    for vendor in [a, b, seller] {
        assert_eq!(vendor["onchain_balance"], vendor["accrued"]);
        assert_eq!(vendor["settled"], vendor["accrued"]);
    }

    // Decisions on the ledger: 8 honest + 3 forger + 10 double-spender, all valid: what intake
    // refused never reaches a block.
    assert_eq!(report["blocks"], 7);
    assert_eq!(
        report["decisions"],
        serde_json::json!({"valid": 21, "altered": 0, "duplicate": 0, "unpublished": 0})
    );

    // Block by block (from the Block accounts): every token valid, the escrow paid v per token,
    // and the double-spender's blocks follow its shrinking W.
    let blocks = report["block_list"].as_array().unwrap();
    assert_eq!(blocks.len(), 7);
    let mut spender_blocks = Vec::new();
    for block in blocks {
        let d = &block["decisions"];
        let size = block["block_size"].as_u64().unwrap();
        assert_eq!(d["valid"].as_u64().unwrap(), size, "{block}");
        assert_eq!(block["amount_paid"].as_u64().unwrap(), size * 10_000);
        assert_eq!(block["block_size_after"], block["block_size"]);
        match block["user"].as_str().unwrap() {
            "double-spender" => spender_blocks.push(size),
            "honest" | "forger" => {}
            other => panic!("unexpected user {other}"),
        }
    }
    assert_eq!(spender_blocks, vec![4, 3, 2, 1]);

    // escrow paid = payouts + refunds + margin − loss: 210 000 = 168 000 + 0 + 42 000 − 0
    // (margin: 21 paid tokens × 2 000; no loss: no token was paid before it was known spent).
    let money = &report["money"];
    assert_eq!(money["escrow_paid"], 21 * 10_000);
    assert_eq!(money["payouts"], 21 * 8_000);
    assert_eq!(money["refunds"], 0);
    assert_eq!(money["margin"], 21 * 2_000);
    assert_eq!(money["loss"], 0);
    assert_eq!(money["balanced"], true);
    assert_eq!(money["auditor_balance_consistent"], true);
    assert_eq!(
        money["auditor_balance_after"].as_u64().unwrap(),
        money["auditor_balance_before"].as_u64().unwrap() + 21 * 10_000 - 21 * 8_000
    );
}

#[test]
fn demo_keeps_its_data_dir_and_refuses_to_reuse_a_non_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let data_arg = data.display().to_string();
    let (report, _) = demo_json(&["--data-dir", &data_arg]);
    assert_eq!(report["money"]["balanced"], true);
    assert!(data.join("ledger").is_dir());
    assert!(data.join("auditor").join("auditor.sqlite").is_file());

    // A second run on the same directory would mix two deployments: refused, nothing changed.
    let before: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let output = mupib(&["demo", "--data-dir", &data_arg]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    let after: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn demo_batch_too_small_for_the_script_fails_with_a_clear_error() {
    let output = mupib(&["demo", "--batch-size", "10"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("too small for the demo"), "{stderr}");
}

#[test]
fn demo_program_only_still_reports_every_decision_code() {
    let output = mupib(&["demo", "--program-only", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["all_as_expected"], true);
    let counts = &report["counts"];
    for code in ["valid", "altered", "duplicate", "unpublished"] {
        assert!(counts[code].as_u64().unwrap() >= 1, "{code}: {counts}");
    }
    assert_eq!(report["block_closed"], true);
}

/// The program-level scenario in-process (what `--program-only` prints).
const VALUE: u64 = 10_000;

#[test]
fn scenario_produces_every_decision_and_pays_exactly_the_valid_tokens() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
    let params = ScenarioParams::default();
    let report = scenario::run(ledger, &params).unwrap();
    for row in &report.tokens {
        assert_eq!(
            row.decision, row.expected,
            "position {} ({})",
            row.position, row.case
        );
    }
    assert!(report.all_as_expected);
    let valid = params.valid_tokens;
    assert_eq!(report.counts.valid, u64::from(valid));
    assert_eq!(report.counts.altered, 1);
    assert_eq!(report.counts.duplicate, 2);
    assert_eq!(report.counts.unpublished, 3);
    let paid = u64::from(valid) * VALUE;
    assert_eq!(report.amount_paid, paid);
    assert_eq!(
        report.escrow_balance.before - report.escrow_balance.after,
        paid
    );
    assert_eq!(
        report.auditor_balance.after - report.auditor_balance.before,
        paid
    );
    // Block 1 already paid one token before the main block.
    assert_eq!(report.auditor_balance.before, VALUE);
    assert_eq!(
        report.escrow_balance.before,
        u64::from(params.batch_size - 1) * VALUE
    );
    assert!(
        report.chunk_transactions >= 2,
        "46 entries over 3 batches need two transactions"
    );
    assert!(report.block_closed);
}
