//! `mupib localnet` as a user runs it: it serves the ledger other commands left in the same
//! `--data-dir` (the issue's `demo --data-dir D` then `localnet --data-dir D`), and a signed
//! transfer executed before the server stopped (gracefully, then by a crash) is refused when it
//! is sent again after each restart, the money having moved once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod localnet_support;

use base64::Engine;
use serde_json::{json, Value};
use solana_sdk::hash::Hash;
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::Transaction;

use localnet_support::{mupib_ok, Localnet};

const AMOUNT: u64 = 5_000_000;

fn balance(localnet: &Localnet, address: &str) -> u64 {
    localnet.call("getBalance", json!([address]))["result"]["value"]
        .as_u64()
        .unwrap()
}

/// The resend, with and without preflight: refused, nothing moves.
fn resend_is_refused(localnet: &Localnet, encoded: &str, signature: &str, to: &str) {
    let again = localnet.call("sendTransaction", json!([encoded, {"encoding": "base64"}]));
    assert_eq!(again["error"]["code"], -32002, "{again}");
    assert_eq!(again["error"]["data"]["err"], "AlreadyProcessed", "{again}");
    // Without preflight a validator drops a duplicate and answers its signature; either way it
    // must not run again.
    let skipped = localnet.call(
        "sendTransaction",
        json!([encoded, {"encoding": "base64", "skipPreflight": true}]),
    );
    assert_eq!(skipped["result"], signature, "{skipped}");
    assert_eq!(balance(localnet, to), AMOUNT, "the transfer ran once");
    let status = localnet.call("getSignatureStatuses", json!([[signature]]));
    assert_eq!(status["result"]["value"][0]["err"], Value::Null);
}

#[test]
fn a_transaction_executed_before_a_restart_is_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let payer = Keypair::new();
    let to = Keypair::new().pubkey();

    let localnet = Localnet::start(&data);
    let airdrop = localnet.call(
        "requestAirdrop",
        json!([payer.pubkey().to_string(), 1_000_000_000u64]),
    );
    assert!(airdrop["result"].is_string(), "{airdrop}");
    let latest = localnet.call("getLatestBlockhash", json!([]));
    let blockhash: Hash = latest["result"]["value"]["blockhash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let transfer = Transaction::new_signed_with_payer(
        &[solana_system_interface::instruction::transfer(
            &payer.pubkey(),
            &to,
            AMOUNT,
        )],
        Some(&payer.pubkey()),
        &[&payer],
        blockhash,
    );
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(bincode::serialize(&transfer).unwrap());
    let signature = transfer.signatures[0].to_string();
    let to = to.to_string();
    let sent = localnet.call("sendTransaction", json!([encoded, {"encoding": "base64"}]));
    assert_eq!(sent["result"], signature, "{sent}");
    assert_eq!(balance(&localnet, &to), AMOUNT);
    let first_slot = localnet.call("getTransaction", json!([signature]))["result"]["slot"].clone();
    assert!(first_slot.is_u64());
    localnet.stop();

    // Restarted after a graceful stop: the transaction is known and refused.
    let localnet = Localnet::start(&data);
    resend_is_refused(&localnet, &encoded, &signature, &to);
    let remembered = localnet.call("getTransaction", json!([signature]));
    assert_eq!(remembered["result"]["slot"], first_slot, "{remembered}");
    localnet.kill();

    // Restarted after a crash: still refused.
    let localnet = Localnet::start(&data);
    resend_is_refused(&localnet, &encoded, &signature, &to);
    localnet.stop();
}

#[test]
fn localnet_serves_the_ledger_the_demo_left_in_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report: Value = serde_json::from_str(&mupib_ok(&data, &["demo", "--json"])).unwrap();
    assert_eq!(report["money"]["balanced"], true);

    let localnet = Localnet::start(&data);
    let config = mupib_chain::program::pda::config().0.to_string();
    let answer = localnet.call("getAccountInfo", json!([config, {"encoding": "base64"}]));
    assert_eq!(
        answer["result"]["value"]["owner"],
        mupib::ID.to_string(),
        "the demo's config is served: {answer}"
    );
    let mint = localnet.call(
        "getAccountInfo",
        json!([report["mint"], {"encoding": "jsonParsed"}]),
    );
    assert_eq!(
        mint["result"]["value"]["data"]["parsed"]["type"], "mint",
        "{mint}"
    );
    let bank: solana_sdk::pubkey::Pubkey = report["bank"].as_str().unwrap().parse().unwrap();
    let registration = mupib_chain::program::pda::bank_registration(&bank)
        .0
        .to_string();
    let accounts = localnet.call(
        "getProgramAccounts",
        json!([mupib::ID.to_string(), {"encoding": "base64", "dataSlice": {"offset": 0, "length": 0}}]),
    );
    let listed = accounts["result"].as_array().unwrap();
    assert!(listed.iter().any(|a| a["pubkey"] == config));
    assert!(
        listed.iter().any(|a| a["pubkey"] == registration),
        "{accounts}"
    );
    localnet.stop();
}
