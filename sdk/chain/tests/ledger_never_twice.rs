//! The embedded ledger never executes a signed transaction twice — across restarts too — never
//! executes one whose signatures do not verify, and writes its logs as a validator does.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError, OpenOptions};
use mupib_chain::program::instructions as ix;
use mupib_chain::spl as client;
use solana_sdk::hash::Hash;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};

const SOL: u64 = 1_000_000_000;

fn transfer(ledger: &EmbeddedLedger, from: &Keypair, to: &Keypair, lamports: u64) -> Transaction {
    let instruction =
        solana_system_interface::instruction::transfer(&from.pubkey(), &to.pubkey(), lamports);
    Transaction::new_signed_with_payer(
        &[instruction],
        Some(&from.pubkey()),
        &[from],
        ledger.latest_blockhash().unwrap(),
    )
}

fn refused_with(result: Result<mupib_chain::ledger::Receipt, LedgerError>) -> TransactionError {
    match result {
        Err(LedgerError::Transaction { error, logs, .. }) => {
            assert!(logs.is_empty(), "refused before execution: {logs:?}");
            error
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Sends `count` transfers of 0.001 SOL each, returns them with the balances after.
fn pay_before_restart(
    ledger: &EmbeddedLedger,
    payer: &Keypair,
    payee: &Keypair,
    count: usize,
) -> Vec<Transaction> {
    ledger.airdrop(&payer.pubkey(), 2 * SOL).unwrap();
    (0..count)
        .map(|_| {
            let transaction = transfer(ledger, payer, payee, 1_000_000);
            ledger.send_transaction(&transaction).unwrap();
            transaction
        })
        .collect()
}

/// Runs this test binary's test `name` in a new process (a restart of the ledger is a new
/// process: `Hash::new_unique`'s counter, which the bank's blockhashes come from, starts again
/// there) with `MUPIB_TEST_PHASE=phase` and `MUPIB_TEST_DIR=dir`.
fn run_phase(name: &str, phase: &str, dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("MUPIB_TEST_PHASE", phase)
        .env("MUPIB_TEST_DIR", dir)
        .status()
        .unwrap();
    assert!(status.success(), "phase {phase} of {name} failed");
}

/// The phase this process runs (`None`: the parent, which runs the phases).
fn phase() -> Option<(String, PathBuf)> {
    let phase = std::env::var("MUPIB_TEST_PHASE").ok()?;
    let dir = std::env::var_os("MUPIB_TEST_DIR")?;
    Some((phase, PathBuf::from(dir)))
}

/// What the first process did, for the second: the keys, the signed transfers, the blockhashes
/// it handed out and the balances it left.
#[derive(serde::Serialize, serde::Deserialize)]
struct BeforeRestart {
    payer: Vec<u8>,
    payee: Vec<u8>,
    transfers: Vec<Transaction>,
    blockhashes: Vec<Hash>,
    payer_lamports: u64,
    payee_lamports: u64,
}

const TRANSFERS: usize = 20;

fn options(history: usize) -> OpenOptions {
    OpenOptions {
        history_transactions: history,
        ..OpenOptions::default()
    }
}

/// First process: transfers that execute, saved for the second.
fn pay_and_save(dir: &Path, history: usize) {
    let ledger = EmbeddedLedger::open_with(dir, &options(history)).unwrap();
    let payer = Keypair::new();
    let payee = Keypair::new();
    let transfers = pay_before_restart(&ledger, &payer, &payee, TRANSFERS);
    let blockhashes = (0..40)
        .map(|_| ledger.latest_blockhash().unwrap())
        .collect();
    let saved = BeforeRestart {
        payer: payer.to_bytes().to_vec(),
        payee: payee.to_bytes().to_vec(),
        transfers,
        blockhashes,
        payer_lamports: ledger.balance(&payer.pubkey()).unwrap(),
        payee_lamports: ledger.balance(&payee.pubkey()).unwrap(),
    };
    assert_eq!(saved.payee_lamports, 1_000_000 * TRANSFERS as u64);
    fs::write(dir.join("before.bin"), bincode::serialize(&saved).unwrap()).unwrap();
}

fn saved(dir: &Path) -> BeforeRestart {
    bincode::deserialize(&fs::read(dir.join("before.bin")).unwrap()).unwrap()
}

/// Second process: every transfer is resent; none executes again, balances are unchanged.
fn resend_after_restart(dir: &Path, history: usize) {
    let before = saved(dir);
    let payer = Keypair::try_from(before.payer.as_slice()).unwrap();
    let payee = Keypair::try_from(before.payee.as_slice()).unwrap();
    let ledger = EmbeddedLedger::open_with(dir, &options(history)).unwrap();
    let handed_out: HashSet<Hash> = before
        .blockhashes
        .iter()
        .chain(before.transfers.iter().map(|t| &t.message.recent_blockhash))
        .copied()
        .collect();
    // No blockhash of the first run comes back.
    for _ in 0..300 {
        let hash = ledger.latest_blockhash().unwrap();
        assert!(
            !handed_out.contains(&hash),
            "blockhash {hash} is handed out again"
        );
    }
    for transfer in &before.transfers {
        let signature = transfer.signatures[0];
        match ledger.transaction(&signature).unwrap() {
            // Remembered: answered with its first outcome and logs, not executed.
            Some(first) => {
                assert_eq!(first.err, None);
                let receipt = ledger.send_transaction(transfer).unwrap();
                assert_eq!(receipt.signature, signature);
                assert_eq!(receipt.logs, first.logs);
            }
            // Forgotten: its blockhash is not valid any more.
            None => {
                let error = refused_with(ledger.send_transaction(transfer));
                assert_eq!(error, TransactionError::BlockhashNotFound);
                assert!(!ledger
                    .is_blockhash_valid(&transfer.message.recent_blockhash)
                    .unwrap());
            }
        }
    }
    assert_eq!(
        ledger.balance(&payee.pubkey()).unwrap(),
        before.payee_lamports
    );
    assert_eq!(
        ledger.balance(&payer.pubkey()).unwrap(),
        before.payer_lamports
    );
}

#[test]
fn transfers_executed_before_a_restart_are_answered_not_executed_after_it() {
    const NAME: &str = "transfers_executed_before_a_restart_are_answered_not_executed_after_it";
    match phase() {
        None => {
            let dir = tempfile::tempdir().unwrap();
            run_phase(NAME, "pay", dir.path());
            run_phase(NAME, "resend", dir.path());
            run_phase(NAME, "resend", dir.path());
        }
        Some((phase, dir)) if phase == "pay" => pay_and_save(&dir, 5_000),
        Some((_, dir)) => resend_after_restart(&dir, 5_000),
    }
}

#[test]
fn transfers_the_history_forgot_are_still_refused_after_a_restart() {
    const NAME: &str = "transfers_the_history_forgot_are_still_refused_after_a_restart";
    // One remembered transaction: the others are answered by their blockhash alone.
    match phase() {
        None => {
            let dir = tempfile::tempdir().unwrap();
            run_phase(NAME, "pay", dir.path());
            run_phase(NAME, "resend", dir.path());
            run_phase(NAME, "resend", dir.path());
        }
        Some((phase, dir)) if phase == "pay" => pay_and_save(&dir, 1),
        Some((_, dir)) => resend_after_restart(&dir, 1),
    }
}

#[test]
fn a_transaction_whose_signature_does_not_verify_is_refused() {
    let ledger = EmbeddedLedger::ephemeral().unwrap();
    let payer = Keypair::new();
    let payee = Keypair::new();
    ledger.airdrop(&payer.pubkey(), SOL).unwrap();
    let mut forged = transfer(&ledger, &payer, &payee, SOL / 2);
    // Signed by someone else over the same message.
    let impostor = Keypair::new();
    forged.signatures[0] = impostor.sign_message(&forged.message_data());
    let error = refused_with(ledger.send_transaction(&forged));
    assert_eq!(error, TransactionError::SignatureFailure);
    let mut unsigned = transfer(&ledger, &payer, &payee, SOL / 2);
    unsigned.signatures[0] = Signature::default();
    let error = refused_with(ledger.send_transaction(&unsigned));
    assert_eq!(error, TransactionError::SignatureFailure);
    assert_eq!(ledger.balance(&payee.pubkey()).unwrap(), 0);
    assert_eq!(ledger.balance(&payer.pubkey()).unwrap(), SOL);
}

#[test]
fn program_logs_are_written_as_a_validator_writes_them() {
    let ledger = EmbeddedLedger::ephemeral().unwrap();
    let admin = Keypair::new();
    let intruder = Keypair::new();
    ledger.airdrop(&admin.pubkey(), SOL).unwrap();
    ledger.airdrop(&intruder.pubkey(), SOL).unwrap();
    let mint = Keypair::new();
    client::create_mint(&ledger, &admin, &mint, &admin.pubkey(), 6).unwrap();
    let receipt = ledger
        .send_instructions(
            &[ix::config_init(&admin.pubkey(), &mint.pubkey())],
            &admin.pubkey(),
            &[&admin],
        )
        .unwrap();
    let program = mupib::ID.to_string();
    let system = solana_system_interface::program::ID.to_string();
    let logs = &receipt.logs;
    assert_eq!(logs.first(), Some(&format!("Program {program} invoke [1]")));
    assert_eq!(
        logs.get(1).map(String::as_str),
        Some("Program log: Instruction: ConfigInit")
    );
    assert_eq!(logs.last(), Some(&format!("Program {program} success")));
    let count = |line: &str| logs.iter().filter(|l| *l == line).count();
    assert_eq!(
        count(&format!("Program {program} invoke [1]")),
        1,
        "{logs:#?}"
    );
    assert_eq!(count(&format!("Program {program} success")), 1, "{logs:#?}");
    assert_eq!(
        count(&format!("Program {system} invoke [2]")),
        1,
        "{logs:#?}"
    );
    assert_eq!(count(&format!("Program {system} success")), 1, "{logs:#?}");
    assert!(
        logs.iter().any(|l| l.starts_with("Program data: ")),
        "{logs:#?}"
    );
    assert!(!logs
        .iter()
        .any(|l| l.starts_with("Program log: Program data:")));

    // A refused instruction: Anchor's error line, and one failure line.
    let error = ledger
        .send_instructions(
            &[ix::config_set_paused(&intruder.pubkey(), true)],
            &intruder.pubkey(),
            &[&intruder],
        )
        .unwrap_err();
    let logs = error.logs();
    let anchor: Vec<_> = logs
        .iter()
        .filter(|l| l.starts_with("Program log: AnchorError "))
        .collect();
    assert_eq!(anchor.len(), 1, "{logs:#?}");
    assert!(anchor[0].contains("Error Number: "), "{}", anchor[0]);
    let failed = logs
        .iter()
        .filter(|l| l.starts_with(&format!("Program {program} failed: ")))
        .count();
    assert_eq!(failed, 1, "{logs:#?}");
}
