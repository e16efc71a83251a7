//! Standard Solana clients from npm against the real `mupib localnet`: a ledger with real state
//! (config, a funded bank with a sealed batch, an auditor) made by the `mupib` role commands, served
//! by the binary, driven by `tests/clients/e2e.js` with @solana/web3.js, @coral-xyz/anchor (with
//! `idl/mupib.json`) and @solana/spl-token at the versions pinned in
//! `tests/clients/package-lock.json`. The script asserts as it goes; this test then stops the
//! server and checks what the clients reported against the ledger read through the SDK.
//!
//! Needs `node` and `npm ci` in `tests/clients` (`.ci/run` does it); without them the test says so
//! and passes without running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod localnet_support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::program::accounts::{fetch_block, fetch_config, token_balance};
use mupib_chain::program::pda;
use mupib_protocol::cert::{pubkey_of, write_keypair_file};
use mupib_protocol::Pubkey;
use serde_json::Value;
use solana_sdk::program_pack::Pack;
use solana_sdk::signature::Signature;

use localnet_support::{mupib_ok, Localnet};

const TOKENS: u32 = 5;
const TOKEN_VALUE: u64 = 7;
const BANK_FUNDS: u64 = 10_000;
/// Longest the Node.js script may run.
const NODE_TIMEOUT: Duration = Duration::from_secs(180);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("`node` is not on PATH (install Node.js 18 or later)".to_string());
    }
    let modules = clients_dir().join("node_modules");
    for package in ["@coral-xyz/anchor", "@solana/web3.js", "@solana/spl-token"] {
        if !modules.join(package).join("package.json").is_file() {
            return Some(format!(
                "{package} is not installed in {}: run `npm ci` there (.ci/run does)",
                modules.display()
            ));
        }
    }
    None
}

fn key(dir: &Path, name: &str, seed: u8) -> (PathBuf, Pubkey) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let path = dir.join(format!("{name}.json"));
    write_keypair_file(&signing, &path).unwrap();
    (path, pubkey_of(&signing))
}

/// Runs `node e2e.js` against `localnet`; returns its JSON summary (its last stdout line).
fn run_clients(localnet: &Localnet, vars: &[(&str, String)]) -> Value {
    let mut child = Command::new("node")
        .arg("e2e.js")
        .current_dir(clients_dir())
        .env("MUPIB_RPC_URL", &localnet.url)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > NODE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node e2e.js did not finish within {NODE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "node e2e.js failed ({status}):\n{stderr}\n{stdout}"
    );
    eprintln!("{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}"))
}

fn text(summary: &Value, field: &str) -> String {
    summary[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {summary}"))
        .to_owned()
}

#[test]
fn web3_anchor_and_spl_token_from_npm_work_against_mupib_localnet() {
    if let Some(reason) = missing_prerequisite() {
        // Straight to stderr, past the test harness's capture, so a skipped run says so.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED web3_anchor_and_spl_token_from_npm_work_against_mupib_localnet: {reason}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (admin_path, admin) = key(dir.path(), "admin", 1);
    let (bank_path, bank) = key(dir.path(), "bank", 2);
    let (auditor_path, auditor) = key(dir.path(), "auditor", 3);
    let p = |path: &Path| path.to_str().unwrap().to_owned();
    mupib_ok(&data, &["admin", "init", "--keypair", &p(&admin_path)]);
    mupib_ok(
        &data,
        &[
            "admin",
            "register-bank",
            &bank.to_string(),
            "--fund",
            &BANK_FUNDS.to_string(),
            "--keypair",
            &p(&admin_path),
        ],
    );
    mupib_ok(
        &data,
        &[
            "admin",
            "register-auditor",
            &auditor.to_string(),
            "--keypair",
            &p(&admin_path),
        ],
    );
    mupib_ok(
        &data,
        &[
            "bank",
            "mint",
            "--auditor",
            &auditor.to_string(),
            "--count",
            &TOKENS.to_string(),
            "--value",
            &TOKEN_VALUE.to_string(),
            "--keypair",
            &p(&bank_path),
        ],
    );

    let localnet = Localnet::start(&data);
    let port = |url: &str| -> u16 { url.rsplit(':').next().unwrap().parse().unwrap() };
    assert_eq!(
        port(&localnet.websocket_url),
        port(&localnet.url) + 1,
        "the websocket is on the next port, where web3.js looks for it"
    );
    let idl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl/mupib.json");
    let summary = run_clients(
        &localnet,
        &[
            ("MUPIB_IDL", p(&idl)),
            ("MUPIB_ADMIN_KEYPAIR", p(&admin_path)),
            ("MUPIB_AUDITOR_KEYPAIR", p(&auditor_path)),
            ("MUPIB_BANK", bank.to_string()),
            ("MUPIB_TOKENS", TOKENS.to_string()),
            ("MUPIB_TOKEN_VALUE", TOKEN_VALUE.to_string()),
        ],
    );
    localnet.stop();

    // What the clients read and did, against the ledger read through the SDK's decoders.
    let ledger = EmbeddedLedger::open(data.join("ledger")).unwrap();
    assert!(summary["featureSet"].as_u64().is_some_and(|f| f > 0));
    assert_eq!(
        text(&summary, "genesisHash"),
        ledger.genesis_hash().to_string()
    );
    assert_eq!(text(&summary, "identity"), ledger.identity().to_string());
    let config = fetch_config(&ledger).unwrap().unwrap();
    assert_eq!(config.admin, admin);
    assert_eq!(text(&summary, "mint"), config.mint.to_string());
    assert!(
        !config.paused,
        "paused, refused for a stranger, resumed by the admin"
    );
    assert_eq!(summary["resumedAt"].as_i64(), Some(config.resumed_at));
    assert_eq!(summary["refused"], "NotAdmin");

    let mint = ledger.get_account(&config.mint).unwrap().unwrap();
    let mint = spl_token_interface::state::Mint::unpack(&mint.data).unwrap();
    assert_eq!(text(&summary, "supply"), mint.supply.to_string());
    let bank_account = mupib_chain::spl::payment_account(&bank, &config.mint);
    let bank_balance = token_balance(&ledger, &bank_account).unwrap();
    assert_eq!(bank_balance, BANK_FUNDS - u64::from(TOKENS) * TOKEN_VALUE);
    assert_eq!(text(&summary, "bankBalance"), bank_balance.to_string());
    let batch = pda::batch(&bank, &auditor, 0).0;
    assert_eq!(summary["batches"], serde_json::json!([batch.to_string()]));
    let escrow = token_balance(&ledger, &pda::escrow(&batch).0).unwrap();
    assert_eq!(escrow, u64::from(TOKENS) * TOKEN_VALUE);
    assert_eq!(text(&summary, "escrowTotal"), escrow.to_string());

    let block_address: Pubkey = text(&summary, "block").parse().unwrap();
    assert_eq!(block_address, pda::block(&auditor, 41).0);
    let block = fetch_block(&ledger, &block_address).unwrap().unwrap();
    assert_eq!(block.header.user.to_string(), text(&summary, "blockUser"));
    assert_eq!(block.header.token_count, 3);
    assert_eq!(block.header.auditor, auditor);

    for field in ["pauseSignature", "resumeSignature", "transferSignature"] {
        let signature: Signature = text(&summary, field).parse().unwrap();
        let executed = ledger
            .transaction(&signature)
            .unwrap()
            .unwrap_or_else(|| panic!("{field} is not in the ledger's history"));
        assert_eq!(executed.err, None, "{field}");
    }
}
