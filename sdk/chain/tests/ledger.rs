//! The embedded ledger: persistence across processes (drop and reopen), journal replay after a
//! crash, a torn journal tail, compaction, the faucet and the monotone clock.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;

use mupib_chain::ledger::{EmbeddedLedger, Ledger, LedgerError, OpenOptions};
use mupib_chain::program::accounts::{fetch_config, token_balance};
use mupib_chain::program::instructions as ix;
use mupib_chain::spl as client;
use solana_sdk::signature::{Keypair, Signer};

const SOL: u64 = 1_000_000_000;

/// A little state written through the ledger: a funded key, a mint, a token account with a
/// balance, and the program's `Config`.
struct Written {
    user: Keypair,
    mint: Keypair,
    token_account: Keypair,
}

fn write_state(ledger: &EmbeddedLedger) -> Written {
    let user = Keypair::new();
    let mint = Keypair::new();
    let token_account = Keypair::new();
    ledger.airdrop(&user.pubkey(), 3 * SOL).unwrap();
    client::create_mint(ledger, &user, &mint, &user.pubkey(), 6).unwrap();
    client::create_token_account(
        ledger,
        &user,
        &token_account,
        &mint.pubkey(),
        &user.pubkey(),
    )
    .unwrap();
    client::mint_to(
        ledger,
        &user,
        &mint.pubkey(),
        &token_account.pubkey(),
        123_456,
    )
    .unwrap();
    ledger
        .send_instructions(
            &[ix::config_init(&user.pubkey(), &mint.pubkey())],
            &user.pubkey(),
            &[&user],
        )
        .unwrap();
    Written {
        user,
        mint,
        token_account,
    }
}

fn assert_state(ledger: &EmbeddedLedger, written: &Written, user_lamports: u64) {
    assert_eq!(
        ledger.balance(&written.user.pubkey()).unwrap(),
        user_lamports
    );
    assert_eq!(
        token_balance(ledger, &written.token_account.pubkey()).unwrap(),
        123_456
    );
    let config = fetch_config(ledger).unwrap().expect("config persisted");
    assert_eq!(config.admin, written.user.pubkey());
    assert_eq!(config.mint, written.mint.pubkey());
}

#[test]
fn state_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (written, lamports, faucet, faucet_lamports) = {
        let ledger = EmbeddedLedger::open(dir.path()).unwrap();
        let written = write_state(&ledger);
        let lamports = ledger.balance(&written.user.pubkey()).unwrap();
        assert!(lamports < 3 * SOL, "fees and rent were paid");
        let faucet = ledger.faucet().unwrap();
        (written, lamports, faucet, ledger.balance(&faucet).unwrap())
    };
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    assert_state(&ledger, &written, lamports);
    // The faucet is the same key with the balance it had, and still works.
    assert_eq!(ledger.faucet().unwrap(), faucet);
    assert_eq!(ledger.balance(&faucet).unwrap(), faucet_lamports);
    ledger.airdrop(&written.user.pubkey(), SOL).unwrap();
    assert_eq!(
        ledger.balance(&written.user.pubkey()).unwrap(),
        lamports + SOL
    );
}

#[test]
fn a_fresh_ephemeral_ledger_shares_nothing_with_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let ledger = EmbeddedLedger::open(dir.path()).unwrap();
        write_state(&ledger)
    };
    let ephemeral = EmbeddedLedger::ephemeral().unwrap();
    assert_eq!(ephemeral.balance(&written.user.pubkey()).unwrap(), 0);
    assert!(fetch_config(&ephemeral).unwrap().is_none());
}

#[test]
fn journal_replay_after_crash_with_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (written, lamports) = {
        let ledger = EmbeddedLedger::open(dir.path()).unwrap();
        let written = write_state(&ledger);
        let lamports = ledger.balance(&written.user.pubkey()).unwrap();
        (written, lamports)
    };
    // Everything is in the journal (never compacted): no snapshot was written.
    assert!(!dir.path().join("snapshot.bin").exists());
    let journal = dir.path().join("journal.bin");
    let good_len = fs::metadata(&journal).unwrap().len();
    assert!(good_len > 0);
    // A crash in the middle of appending a record: a frame header that promises more bytes.
    let mut file = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9])
        .unwrap();
    drop(file);
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    assert_state(&ledger, &written, lamports);
    // The torn tail was cut off, so new records follow the last good one.
    assert_eq!(fs::metadata(&journal).unwrap().len(), good_len);
    ledger.airdrop(&written.user.pubkey(), SOL).unwrap();
    drop(ledger);
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    assert_eq!(
        ledger.balance(&written.user.pubkey()).unwrap(),
        lamports + SOL
    );
}

#[test]
fn compaction_moves_the_journal_into_an_atomic_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        compact_threshold_bytes: 0,
        ..OpenOptions::default()
    };
    let (written, lamports) = {
        let ledger = EmbeddedLedger::open_with(dir.path(), &options).unwrap();
        let written = write_state(&ledger);
        (
            written.user.pubkey(),
            ledger.balance(&written.user.pubkey()).unwrap(),
        )
    };
    {
        // Opening compacts: snapshot written, journal emptied, no temporary file left.
        let ledger = EmbeddedLedger::open_with(dir.path(), &options).unwrap();
        assert!(dir.path().join("snapshot.bin").exists());
        assert_eq!(
            fs::metadata(dir.path().join("journal.bin")).unwrap().len(),
            0
        );
        assert!(!dir.path().join("snapshot.bin.tmp").exists());
        assert_eq!(ledger.balance(&written).unwrap(), lamports);
        ledger.airdrop(&written, SOL).unwrap();
    }
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    assert_eq!(ledger.balance(&written).unwrap(), lamports + SOL);
}

#[test]
fn corrupted_snapshot_is_refused_not_silently_reset() {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        compact_threshold_bytes: 0,
        ..OpenOptions::default()
    };
    {
        let ledger = EmbeddedLedger::open_with(dir.path(), &options).unwrap();
        write_state(&ledger);
    }
    drop(EmbeddedLedger::open_with(dir.path(), &options).unwrap());
    let path = dir.path().join("snapshot.bin");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    fs::write(&path, bytes).unwrap();
    let result = EmbeddedLedger::open(dir.path());
    assert!(
        matches!(result, Err(LedgerError::Corrupt { .. })),
        "{:?}",
        result.err()
    );
}

#[test]
fn second_open_of_a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedLedger::open(dir.path()).unwrap();
    let second = EmbeddedLedger::open(dir.path());
    assert!(
        matches!(second, Err(LedgerError::Locked { .. })),
        "{:?}",
        second.err()
    );
}

#[test]
fn clock_is_monotone_across_restarts_and_refuses_to_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let far_future = 4_000_000_000i64;
    let slot = {
        let ledger = EmbeddedLedger::open(dir.path()).unwrap();
        let before = ledger.clock().unwrap();
        ledger.set_unix_timestamp(far_future).unwrap();
        let after = ledger.clock().unwrap();
        assert_eq!(after.unix_timestamp, far_future);
        assert!(after.slot > before.slot);
        let refused = ledger.set_unix_timestamp(far_future - 1);
        assert!(matches!(refused, Err(LedgerError::ClockBackwards { .. })));
        ledger.advance_clock(60).unwrap();
        assert_eq!(ledger.clock().unwrap().unix_timestamp, far_future + 60);
        ledger.clock().unwrap().slot
    };
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    let clock = ledger.clock().unwrap();
    assert!(
        clock.unix_timestamp >= far_future + 60,
        "clock went back to {}",
        clock.unix_timestamp
    );
    assert!(
        clock.slot > slot,
        "slot went back: {} after {}",
        clock.slot,
        slot
    );
}

#[test]
fn oversized_transaction_is_refused_before_execution() {
    let ledger = EmbeddedLedger::ephemeral().unwrap();
    let payer = Keypair::new();
    ledger.airdrop(&payer.pubkey(), SOL).unwrap();
    let transfers: Vec<_> = (0..40)
        .map(|_| {
            solana_system_interface::instruction::transfer(
                &payer.pubkey(),
                &Keypair::new().pubkey(),
                1_000_000,
            )
        })
        .collect();
    let result = ledger.send_instructions(&transfers, &payer.pubkey(), &[&payer]);
    assert!(
        matches!(result, Err(LedgerError::TransactionTooLarge { .. })),
        "{:?}",
        result.err()
    );
    assert_eq!(
        ledger.balance(&payer.pubkey()).unwrap(),
        SOL,
        "nothing was charged"
    );
}

#[test]
fn failed_program_check_reports_its_custom_code_and_logs() {
    let ledger = EmbeddedLedger::ephemeral().unwrap();
    let admin = Keypair::new();
    let intruder = Keypair::new();
    ledger.airdrop(&admin.pubkey(), SOL).unwrap();
    ledger.airdrop(&intruder.pubkey(), SOL).unwrap();
    let mint = Keypair::new();
    client::create_mint(&ledger, &admin, &mint, &admin.pubkey(), 6).unwrap();
    ledger
        .send_instructions(
            &[ix::config_init(&admin.pubkey(), &mint.pubkey())],
            &admin.pubkey(),
            &[&admin],
        )
        .unwrap();
    // Not the admin: the program refuses to pause.
    let error = ledger
        .send_instructions(
            &[ix::config_set_paused(&intruder.pubkey(), true)],
            &intruder.pubkey(),
            &[&intruder],
        )
        .unwrap_err();
    assert!(error.custom_code().is_some(), "{error}");
    assert!(!error.logs().is_empty());
    assert!(!fetch_config(&ledger).unwrap().unwrap().paused);
}

#[test]
fn two_blockhashes_in_a_row_differ() {
    let ledger = EmbeddedLedger::ephemeral().unwrap();
    let a = ledger.latest_blockhash().unwrap();
    let b = ledger.latest_blockhash().unwrap();
    assert_ne!(a, b);
}
