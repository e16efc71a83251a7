//! The JSON-RPC backend for real: the same program-level scenario runs on the embedded ledger
//! directly and on `RpcLedger` → `mupib localnet` over HTTP on 127.0.0.1, with the same
//! decisions, balances and errors; plus bad input at the JSON-RPC boundary and a cluster that
//! does not answer.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use mupib::constants::{
    DECISION_ALTERED, DECISION_DUPLICATE, DECISION_UNPUBLISHED, DECISION_VALID,
};
use mupib::instructions::BlockOpenArgs;
use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::rpc::{encode_transaction, RpcLedger, RpcOptions};
use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError};
use mupib_chain::program::accounts::{fetch_block, token_balance};
use mupib_chain::program::instructions as ix;
use mupib_chain::program::pda;
use mupib_chain::verifier::{ChainVerifier, ChainVerifierOptions};
use mupib_localnet::{LocalnetError, LocalnetHandle, LocalnetOptions};
use mupib_protocol::block::{BlockSubmission, BlockVerifier, VerifierError};
use mupib_protocol::decision::Decision;
use mupib_protocol::token::Token;
use mupib_protocol::token::TokenRef;
use serde_json::{json, Value};
use solana_sdk::signature::{Keypair, Signer};
use solana_sdk::transaction::Transaction;

const VALUE: u64 = 10_000;
const BATCH_SIZE: u32 = 48;
const VALID_TOKENS: usize = 40;

/// Options for talking to an in-process localnet: fast polls, few short retries.
fn fast_options() -> RpcOptions {
    RpcOptions {
        attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        request_timeout: Duration::from_secs(30),
        confirm_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(5),
        blockhash_timeout: Duration::from_secs(10),
        skip_preflight: false,
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An ephemeral embedded ledger served on an ephemeral loopback port.
fn localnet() -> LocalnetHandle {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
    mupib_localnet::serve(ledger, loopback()).expect("serve")
}

fn entry(token: &Token) -> TokenRef {
    token.token_ref()
}

fn auditor_keypair(deployment: &Deployment) -> Keypair {
    Keypair::try_from(deployment.auditor.to_bytes().as_slice()).expect("keypair copy")
}

/// What the scenario saw, compared across backends.
#[derive(Debug, PartialEq)]
struct ScenarioResult {
    decisions: Vec<Decision>,
    expected: Vec<Decision>,
    escrow_paid: u64,
    auditor_received: u64,
    amount_paid: u64,
    chunks_sent: usize,
    replay_transactions: usize,
    incomplete_finalize_code: Option<u32>,
    resumed_decision: Vec<Decision>,
    block_opened_events: usize,
}

/// The program-level scenario, once, for any ledger: a bank publishes a sealed and an unsealed
/// batch; the auditor (through `ChainVerifier`) verifies a block that produces every decision
/// code, replays it, and resumes a block it opened by hand; a program error is provoked.
fn run_scenario(ledger: Arc<dyn Ledger>) -> ScenarioResult {
    let l: &dyn Ledger = ledger.as_ref();
    let funds = u64::from(BATCH_SIZE + 8) * VALUE;
    let deployment = Deployment::setup(l, 6, funds).expect("setup");
    let (sealed, _) = deployment
        .issue_batch(l, 1, BATCH_SIZE, VALUE, true)
        .expect("sealed batch");
    let (unsealed, _) = deployment
        .issue_batch(l, 2, 4, VALUE, false)
        .expect("unsealed batch");
    let bank_key = deployment.bank_key();
    let user = Keypair::new().pubkey();
    let mut verifier = ChainVerifier::new(
        Arc::clone(&ledger),
        auditor_keypair(&deployment),
        deployment.auditor_token,
    );

    // Block 1 spends the last token, so it is a duplicate in block 2.
    let spent_earlier = &sealed[sealed.len() - 1];
    let first = verifier
        .verify_block(&BlockSubmission {
            block_id: 1,
            user,
            entries: vec![entry(spent_earlier)],
        })
        .expect("block 1");
    assert_eq!(first.decisions, vec![Decision::Valid]);

    let mut entries = Vec::new();
    let mut expected = Vec::new();
    for token in &sealed[..VALID_TOKENS] {
        entries.push(entry(token));
        expected.push(Decision::Valid);
    }
    let mut altered = sealed[VALID_TOKENS];
    altered.value = altered.value.saturating_mul(100);
    entries.push(entry(&altered));
    expected.push(Decision::Altered);
    entries.push(entry(spent_earlier));
    expected.push(Decision::Duplicate);
    entries.push(entry(&sealed[0]));
    expected.push(Decision::Duplicate);
    let beyond = Token::sign(&bank_key, 1, BATCH_SIZE + 10, VALUE, sealed[0].issued_at);
    entries.push(entry(&beyond));
    expected.push(Decision::Unpublished);
    entries.push(entry(&unsealed[0]));
    expected.push(Decision::Unpublished);
    let ghost = Token::sign(&bank_key, 99, 0, VALUE, sealed[0].issued_at);
    entries.push(entry(&ghost));
    expected.push(Decision::Unpublished);

    let escrow =
        pda::escrow(&pda::batch(&deployment.bank.pubkey(), &deployment.auditor.pubkey(), 1).0).0;
    let escrow_before = token_balance(l, &escrow).expect("escrow");
    let auditor_before = token_balance(l, &deployment.auditor_token).expect("auditor token");
    let block = BlockSubmission {
        block_id: 2,
        user,
        entries,
    };
    let verified = verifier.verify_block(&block).expect("block 2");
    let escrow_after = token_balance(l, &escrow).expect("escrow");
    let auditor_after = token_balance(l, &deployment.auditor_token).expect("auditor token");
    // The decisions come from the block account: check them against a fresh read too.
    let state = fetch_block(l, &verified.block)
        .expect("read block")
        .expect("block exists");
    let codes: Vec<u8> = verified.decisions.iter().map(|d| d.code()).collect();
    assert_eq!(state.decisions, codes);
    assert_eq!(
        (
            state.header.valid_count,
            state.header.altered_count,
            state.header.duplicate_count,
            state.header.unpublished_count
        ),
        (40, 1, 2, 3)
    );
    assert!(codes.contains(&DECISION_VALID) && codes.contains(&DECISION_ALTERED));
    assert!(codes.contains(&DECISION_DUPLICATE) && codes.contains(&DECISION_UNPUBLISHED));

    // Replaying the verified block sends nothing and pays nothing.
    let replay = verifier.verify_block(&block).expect("replay");
    assert_eq!(replay.decisions, verified.decisions);
    assert!(replay.resumed);
    assert_eq!(token_balance(l, &escrow).expect("escrow"), escrow_after);

    // A program error, the same on every backend: finalizing a block with undecided positions.
    let auditor = &deployment.auditor;
    let auditor_key = auditor.pubkey();
    let open = ix::block_open(
        &auditor_key,
        BlockOpenArgs {
            block_id: 7,
            user,
            token_count: 1,
        },
    );
    let receipt = l
        .send_instructions(&[open], &auditor_key, &[auditor])
        .expect("open block 7");
    let block_opened_events = receipt
        .events()
        .iter()
        .filter(|e| e.name() == "BlockOpened")
        .count();
    let error = l
        .send_instructions(
            &[ix::block_finalize(&auditor_key, 7)],
            &auditor_key,
            &[auditor],
        )
        .expect_err("finalizing an incomplete block must fail");
    assert!(matches!(error, LedgerError::Transaction { .. }), "{error}");
    assert!(
        error
            .logs()
            .iter()
            .any(|line| line.contains("custom program error: 0x1788")),
        "the logs name the failing check: {:?}",
        error.logs()
    );
    // The verifier resumes the block it finds open.
    let resumed = verifier
        .verify_block(&BlockSubmission {
            block_id: 7,
            user,
            entries: vec![entry(&ghost)],
        })
        .expect("resume block 7");
    assert!(resumed.resumed);

    ScenarioResult {
        decisions: verified.decisions,
        expected,
        escrow_paid: escrow_before - escrow_after,
        auditor_received: auditor_after - auditor_before,
        amount_paid: verified.amount_paid,
        chunks_sent: verified.chunks_sent,
        replay_transactions: replay.transactions,
        incomplete_finalize_code: error.custom_code(),
        resumed_decision: resumed.decisions,
        block_opened_events,
    }
}

fn check(result: &ScenarioResult) {
    assert_eq!(result.decisions, result.expected);
    let paid = VALID_TOKENS as u64 * VALUE;
    assert_eq!(
        result.escrow_paid, paid,
        "the escrow paid v per valid token"
    );
    assert_eq!(
        result.auditor_received, paid,
        "the auditor received exactly that"
    );
    assert_eq!(result.amount_paid, paid, "the block header records it");
    assert!(
        result.chunks_sent >= 2,
        "46 entries over 3 batches need several transactions"
    );
    assert_eq!(result.replay_transactions, 0);
    assert_eq!(
        result.incomplete_finalize_code,
        Some(6024),
        "MupibError::BlockIncomplete"
    );
    assert_eq!(result.resumed_decision, vec![Decision::Unpublished]);
    assert_eq!(
        result.block_opened_events, 1,
        "events are decoded from the logs"
    );
}

#[test]
fn scenario_passes_on_the_embedded_ledger_and_over_json_rpc_with_the_same_results() {
    let embedded: Arc<dyn Ledger> = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
    let direct = run_scenario(embedded);
    check(&direct);

    let server = localnet();
    let rpc: Arc<dyn Ledger> = Arc::new(RpcLedger::with_options(server.url(), fast_options()));
    let over_rpc = run_scenario(rpc);
    check(&over_rpc);
    assert_eq!(
        direct, over_rpc,
        "both backends must give the same decisions, balances and errors"
    );
    server.shutdown().expect("shutdown");
}

/// Sets up a deployment over RPC and opens a one-token block; returns what a failing finalize
/// needs.
fn incomplete_block(ledger: &dyn Ledger) -> Deployment {
    let deployment = Deployment::setup(ledger, 6, 1_000).expect("setup");
    let auditor = &deployment.auditor;
    let open = ix::block_open(
        &auditor.pubkey(),
        BlockOpenArgs {
            block_id: 3,
            user: auditor.pubkey(),
            token_count: 2,
        },
    );
    ledger
        .send_instructions(&[open], &auditor.pubkey(), &[auditor])
        .expect("open");
    deployment
}

#[test]
fn failed_transaction_with_skip_preflight_lands_and_maps_to_the_same_program_error() {
    let server = localnet();
    let ledger = RpcLedger::with_options(
        server.url(),
        RpcOptions {
            skip_preflight: true,
            ..fast_options()
        },
    );
    let deployment = incomplete_block(&ledger);
    let auditor = &deployment.auditor;
    let lamports_before = ledger.balance(&auditor.pubkey()).expect("balance");
    let error = ledger
        .send_instructions(
            &[ix::block_finalize(&auditor.pubkey(), 3)],
            &auditor.pubkey(),
            &[auditor],
        )
        .expect_err("incomplete block");
    assert_eq!(error.custom_code(), Some(6024));
    assert!(error
        .logs()
        .iter()
        .any(|l| l.contains("custom program error: 0x1788")));
    // It landed (confirmed with an error) and paid its fee, as on a validator without preflight.
    let fee = ledger.fee_for_signatures(1).expect("fee");
    assert!(fee > 0);
    assert_eq!(
        ledger.balance(&auditor.pubkey()).expect("balance"),
        lamports_before - fee
    );
}

fn post(url: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Option<Value>) {
    let response = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("http");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    (status, serde_json::from_str(&text).ok())
}

fn call(url: &str, method: &str, params: Value) -> Value {
    let (status, body) = post(
        url,
        json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string(),
    );
    assert_eq!(status, 200);
    body.expect("json answer")
}

#[test]
fn malformed_json_body_gets_a_json_rpc_parse_error() {
    let server = localnet();
    let (status, body) = post(&server.url(), "{\"jsonrpc\": \"2.0\", \"method\": ");
    assert_eq!(status, 200, "JSON-RPC errors travel in a 200 answer");
    let body = body.expect("JSON error body");
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], Value::Null);
    assert_eq!(body["jsonrpc"], "2.0");
}

#[test]
fn request_without_jsonrpc_version_or_method_is_an_invalid_request() {
    let server = localnet();
    let (_, body) = post(
        &server.url(),
        json!({ "id": 4, "method": "getSlot" }).to_string(),
    );
    assert_eq!(body.expect("json")["error"]["code"], -32600);
    let (_, body) = post(
        &server.url(),
        json!({ "jsonrpc": "2.0", "id": 5, "method": 12 }).to_string(),
    );
    let body = body.expect("json");
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(body["id"], 5);
    let (_, body) = post(
        &server.url(),
        json!({ "jsonrpc": "2.0", "id": 6, "method": "getSlot", "params": {"a": 1} }).to_string(),
    );
    assert_eq!(body.expect("json")["error"]["code"], -32602);
    let (_, body) = post(&server.url(), "[]");
    assert_eq!(body.expect("json")["error"]["code"], -32600);
}

#[test]
fn unknown_method_gets_method_not_found() {
    let server = localnet();
    let body = call(&server.url(), "getEverythingForFree", json!([]));
    assert_eq!(body["error"]["code"], -32601);
    assert_eq!(body["id"], 1);
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("getEverythingForFree"));
}

#[test]
fn bad_params_get_invalid_params_and_change_nothing() {
    let server = localnet();
    let url = server.url();
    assert_eq!(
        call(&url, "getAccountInfo", json!(["not-a-key"]))["error"]["code"],
        -32602
    );
    assert_eq!(call(&url, "getBalance", json!([]))["error"]["code"], -32602);
    assert_eq!(
        call(
            &url,
            "sendTransaction",
            json!(["@@@", {"encoding": "base64"}])
        )["error"]["code"],
        -32602
    );
    assert_eq!(
        call(
            &url,
            "sendTransaction",
            json!(["AAAA", {"encoding": "base64"}])
        )["error"]["code"],
        -32602
    );
    // An account nobody has a parser for asked as `jsonParsed`: a validator falls back to
    // base64 (here: the faucet, a system account with no data, so the config need not exist).
    let faucet = server.ledger().faucet().expect("faucet");
    let fallback = call(
        &url,
        "getAccountInfo",
        json!([faucet.to_string(), {"encoding": "jsonParsed"}]),
    );
    assert_eq!(fallback["result"]["value"]["data"], json!(["", "base64"]));
    let target = Keypair::new().pubkey();
    assert_eq!(
        call(&url, "requestAirdrop", json!([target.to_string(), 0]))["error"]["code"],
        -32602
    );
    assert_eq!(
        call(
            &url,
            "requestAirdrop",
            json!([target.to_string(), u64::MAX])
        )["error"]["code"],
        -32602
    );
    assert_eq!(
        call(&url, "getBalance", json!([target.to_string()]))["result"]["value"],
        0
    );
}

/// A funded payer and a signed transfer to a fresh account, not sent yet.
fn signed_transfer(
    server: &LocalnetHandle,
    lamports: u64,
) -> (Transaction, solana_sdk::pubkey::Pubkey) {
    let ledger = server.ledger();
    let payer = Keypair::new();
    ledger
        .airdrop(&payer.pubkey(), 1_000_000_000)
        .expect("airdrop");
    let to = Keypair::new().pubkey();
    let instruction =
        solana_system_interface::instruction::transfer(&payer.pubkey(), &to, lamports);
    let blockhash = ledger.latest_blockhash().expect("blockhash");
    let transaction = Transaction::new_signed_with_payer(
        &[instruction],
        Some(&payer.pubkey()),
        &[&payer],
        blockhash,
    );
    (transaction, to)
}

#[test]
fn oversized_body_is_refused_with_413_and_its_transaction_is_not_executed() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
    let options = LocalnetOptions {
        max_body_bytes: 4 * 1024,
        ..LocalnetOptions::default()
    };
    let server = mupib_localnet::serve_with(ledger, loopback(), options).expect("serve");
    let (transaction, to) = signed_transfer(&server, 5_000_000);
    let encoded = encode_transaction(&transaction).expect("encode");
    let padding = "x".repeat(8 * 1024);
    let body = json!({
        "jsonrpc": "2.0", "id": 9, "method": "sendTransaction",
        "params": [encoded, {"encoding": "base64"}], "padding": padding,
    });
    let (status, answer) = post(&server.url(), body.to_string());
    assert_eq!(status, 413);
    assert_eq!(answer.expect("JSON error body")["error"]["code"], -32600);
    // Nothing was executed: the recipient has nothing and the signature is unknown.
    assert_eq!(server.ledger().balance(&to).expect("balance"), 0);
    let statuses = call(
        &server.url(),
        "getSignatureStatuses",
        json!([[transaction.signatures[0].to_string()]]),
    );
    assert_eq!(statuses["result"]["value"][0], Value::Null);
}

#[test]
fn resending_the_same_transaction_executes_it_once() {
    let server = localnet();
    let (transaction, to) = signed_transfer(&server, 7_000_000);
    let encoded = encode_transaction(&transaction).expect("encode");
    let signature = transaction.signatures[0].to_string();
    let first = call(
        &server.url(),
        "sendTransaction",
        json!([encoded, {"encoding": "base64"}]),
    );
    assert_eq!(first["result"], signature);
    // As a validator whose status cache holds it: preflight refuses the resend with
    // AlreadyProcessed (what `RpcLedger` takes as "the first copy is in"); without preflight the
    // resend is dropped and its signature returned.
    for _ in 0..2 {
        let again = call(
            &server.url(),
            "sendTransaction",
            json!([encoded, {"encoding": "base64"}]),
        );
        assert_eq!(again["error"]["code"], -32002, "{again}");
        assert_eq!(again["error"]["data"]["err"], "AlreadyProcessed");
        let skipped = call(
            &server.url(),
            "sendTransaction",
            json!([encoded, {"encoding": "base64", "skipPreflight": true}]),
        );
        assert_eq!(skipped["result"], signature);
    }
    assert_eq!(server.ledger().balance(&to).expect("balance"), 7_000_000);
    let answer = call(
        &server.url(),
        "getTransaction",
        json!([transaction.signatures[0].to_string(), {"encoding": "json"}]),
    );
    assert_eq!(answer["result"]["meta"]["err"], Value::Null);
    assert!(answer["result"]["meta"]["logMessages"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));
    let keys = answer["result"]["transaction"]["message"]["accountKeys"]
        .as_array()
        .expect("keys")
        .len();
    assert_eq!(keys, 3, "payer, recipient, system program");
}

#[test]
fn batch_requests_are_answered_in_order_and_notifications_get_no_answer() {
    let server = localnet();
    let batch = json!([
        { "jsonrpc": "2.0", "id": "a", "method": "getHealth" },
        { "jsonrpc": "2.0", "method": "getSlot" },
        { "jsonrpc": "2.0", "id": 2, "method": "noSuchMethod" },
    ]);
    let (status, body) = post(&server.url(), batch.to_string());
    assert_eq!(status, 200);
    let answers = body.expect("json");
    let answers = answers.as_array().expect("array");
    assert_eq!(answers.len(), 2, "the notification gets no answer");
    assert_eq!(answers[0]["id"], "a");
    assert_eq!(answers[0]["result"], "ok");
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["error"]["code"], -32601);
}

#[test]
fn cluster_that_does_not_answer_fails_after_bounded_retries_with_the_url_named() {
    // A port that was just free and is now closed: connections are refused.
    let port = TcpListener::bind(loopback())
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let ledger: Arc<dyn Ledger> = Arc::new(RpcLedger::with_options(url.clone(), fast_options()));
    let error = ledger.latest_blockhash().expect_err("nobody listens");
    let message = error.to_string();
    assert!(
        message.contains(&format!("cluster at {url} did not answer after 3 attempts")),
        "{message}"
    );
    assert!(matches!(error, LedgerError::Backend(_)));

    // The chain verifier turns it into a retryable `Unavailable` for the engine, nothing sent.
    let auditor = Keypair::new();
    let mut verifier = ChainVerifier::with_options(
        Arc::clone(&ledger),
        auditor,
        Keypair::new().pubkey(),
        ChainVerifierOptions::default(),
    );
    let block = BlockSubmission {
        block_id: 1,
        user: Keypair::new().pubkey(),
        entries: vec![TokenRef {
            id: mupib_protocol::token::TokenId {
                bank: Keypair::new().pubkey(),
                batch_id: 1,
                serial: 0,
            },
            value: 1,
            digest: [1; 16],
        }],
    };
    match verifier.verify(&block) {
        Err(VerifierError::Unavailable { block_id, reason }) => {
            assert_eq!(block_id, 1);
            assert!(reason.contains(&url), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn localnet_refuses_a_non_loopback_address() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
    let result = mupib_localnet::serve(ledger, SocketAddr::from(([0, 0, 0, 0], 0)));
    assert!(matches!(result, Err(LocalnetError::NotLoopback(_))));
}

#[test]
fn shutdown_flushes_the_ledger_so_a_restart_sees_every_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Keypair::new().pubkey();
    {
        let ledger = Arc::new(EmbeddedLedger::open(dir.path()).expect("open"));
        let server = mupib_localnet::serve(Arc::clone(&ledger), loopback()).expect("serve");
        let rpc = RpcLedger::with_options(server.url(), fast_options());
        rpc.airdrop(&target, 123_456_789).expect("airdrop over RPC");
        assert_eq!(rpc.balance(&target).expect("balance"), 123_456_789);
        server.shutdown().expect("graceful shutdown");
    }
    let reopened = EmbeddedLedger::open(dir.path()).expect("reopen after shutdown");
    assert_eq!(reopened.balance(&target).expect("balance"), 123_456_789);
}

#[test]
fn rpc_ledger_reads_clock_rent_and_fees_like_the_embedded_ledger() {
    let server = localnet();
    let rpc = RpcLedger::with_options(server.url(), fast_options());
    let embedded = server.ledger();
    assert_eq!(
        rpc.minimum_balance_for_rent_exemption(165).expect("rent"),
        embedded
            .minimum_balance_for_rent_exemption(165)
            .expect("rent")
    );
    assert_eq!(
        rpc.fee_for_signatures(3).expect("fee"),
        embedded.fee_for_signatures(3).expect("fee")
    );
    let clock = rpc.clock().expect("clock");
    assert!(
        clock.unix_timestamp > 1_600_000_000,
        "the ledger clock follows the wall clock"
    );
    let a = rpc.latest_blockhash().expect("blockhash");
    let b = rpc.latest_blockhash().expect("blockhash");
    assert_ne!(a, b, "two calls return distinct blockhashes");
    assert_eq!(
        rpc.get_account(&Keypair::new().pubkey()).expect("read"),
        None
    );
}

#[test]
fn transport_errors_are_retried_until_the_cluster_answers() {
    // Reserve a port whose next one (the websocket's) is free too, then start the localnet on it
    // only after the client has begun retrying.
    let addr = (0..50)
        .find_map(|_| {
            let http = TcpListener::bind(loopback()).ok()?;
            let addr = http.local_addr().ok()?;
            let next = SocketAddr::new(addr.ip(), addr.port().checked_add(1)?);
            TcpListener::bind(next).ok().map(|_| addr)
        })
        .expect("a free pair of ports");
    let ledger = Arc::new(EmbeddedLedger::ephemeral().expect("ledger"));
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        mupib_localnet::serve(ledger, addr).expect("serve on the reserved port")
    });
    let options = RpcOptions {
        attempts: 20,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..fast_options()
    };
    let rpc = RpcLedger::with_options(format!("http://{addr}"), options);
    let target = Keypair::new().pubkey();
    rpc.airdrop(&target, 42_000_000)
        .expect("answered once the cluster is up");
    let server = starter.join().expect("starter thread");
    assert_eq!(
        server.ledger().balance(&target).expect("balance"),
        42_000_000
    );
}

#[test]
fn solana_rpc_client_typed_calls_parse_localnet_answers() {
    use solana_rpc_client::rpc_client::RpcClient;
    use solana_rpc_client_api::config::{
        CommitmentConfig, RpcAccountInfoConfig, RpcTransactionConfig, UiAccountEncoding,
        UiTransactionEncoding,
    };
    let server = localnet();
    let (transaction, to) = signed_transfer(&server, 9_000_000);
    let client = RpcClient::new_with_commitment(server.url(), CommitmentConfig::confirmed());
    let signature = client
        .send_and_confirm_transaction(&transaction)
        .expect("send and confirm");
    assert_eq!(signature, transaction.signatures[0]);
    assert_eq!(client.get_balance(&to).expect("balance"), 9_000_000);
    let config = RpcAccountInfoConfig {
        encoding: Some(UiAccountEncoding::Base64),
        ..RpcAccountInfoConfig::default()
    };
    let account = client
        .get_ui_account_with_config(&to, config.clone())
        .expect("account")
        .value
        .expect("exists");
    assert_eq!(account.lamports, 9_000_000);
    let decoded: solana_sdk::account::Account = account.decode().expect("base64 data decodes");
    assert_eq!(decoded.owner, solana_system_interface::program::ID);
    let accounts = client
        .get_multiple_ui_accounts_with_config(&[to, Keypair::new().pubkey()], config)
        .expect("accounts")
        .value;
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].as_ref().map(|a| a.lamports), Some(9_000_000));
    assert!(accounts[1].is_none());
    let confirmed = client
        .get_transaction_with_config(
            &signature,
            RpcTransactionConfig {
                encoding: Some(UiTransactionEncoding::Json),
                commitment: Some(CommitmentConfig::confirmed()),
                max_supported_transaction_version: Some(0),
            },
        )
        .expect("typed getTransaction");
    let meta = confirmed.transaction.meta.expect("meta");
    assert!(meta.err.is_none());
    assert!(
        confirmed.transaction.transaction.decode().is_none(),
        "json encoding is not binary"
    );
    let blockhash = client.get_latest_blockhash().expect("blockhash");
    assert!(client
        .is_blockhash_valid(&blockhash, CommitmentConfig::processed())
        .expect("valid"));
    assert!(!client
        .is_blockhash_valid(
            &solana_sdk::hash::Hash::new_unique(),
            CommitmentConfig::processed()
        )
        .expect("answer"));
    assert!(client.get_slot().expect("slot") > 0);
    assert_eq!(client.get_version().expect("version").solana_core, "3.1.12");
    client.get_health().expect("healthy");
}

#[test]
fn is_blockhash_valid_is_the_banks_answer_whoever_handed_the_hash_out() {
    let server = localnet();
    let rpc = RpcLedger::with_options(server.url(), fast_options());
    // A hash handed out by the ledger itself (not through getLatestBlockhash) is known too.
    let direct = server.ledger().latest_blockhash().expect("blockhash");
    assert!(rpc.is_blockhash_valid(&direct).expect("answer"));
    let served = rpc.latest_blockhash().expect("blockhash");
    assert!(rpc.is_blockhash_valid(&served).expect("answer"));
    assert!(!rpc
        .is_blockhash_valid(&solana_sdk::hash::Hash::new_unique())
        .expect("answer"));
    // Past MAX_PROCESSING_AGE (150) newer blockhashes, both are expired for the bank and for
    // the RPC answer alike.
    server.ledger().advance_blockhashes(151).expect("advance");
    assert!(!server.ledger().is_blockhash_valid(&direct).expect("answer"));
    assert!(!rpc.is_blockhash_valid(&direct).expect("answer"));
    assert!(!rpc.is_blockhash_valid(&served).expect("answer"));
    // The JSON shape a validator sends: {"context": {"slot", "apiVersion"?}, "value": bool}.
    let fresh = rpc.latest_blockhash().expect("blockhash");
    let answer = call(
        &server.url(),
        "isBlockhashValid",
        json!([fresh.to_string(), { "commitment": "processed" }]),
    );
    assert_eq!(answer["result"]["value"], true, "{answer}");
    assert!(
        answer["result"]["context"]["slot"].as_u64().is_some(),
        "{answer}"
    );
}
