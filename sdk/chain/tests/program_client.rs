//! The program through the SDK's builders, packer and decoders on the embedded ledger: replay,
//! expiry, events, and the serialized size of every transaction the SDK builds.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mupib::constants::{DECISION_VALID, MAX_BATCH_TOKENS};
use mupib::instructions::{BatchCreateArgs, BlockOpenArgs, BlockVerifyChunkArgs, TokenEntry};
use mupib_chain::batch::commitments_per_publish_transaction;
use mupib_chain::deploy::Deployment;
use mupib_chain::ledger::PACKET_DATA_SIZE;
use mupib_chain::ledger::{EmbeddedLedger, Ledger};
use mupib_chain::program::accounts::{fetch_batch, fetch_block, token_balance};
use mupib_chain::program::events::MupibEvent;
use mupib_chain::program::instructions as ix;
use mupib_chain::program::instructions::BatchRef;
use mupib_chain::program::packer::{pack_block, transaction_size, VerifyAccounts};
use mupib_chain::program::pda;
use mupib_chain::spl;
use mupib_chain::verifier::{ChainVerification, ChainVerifier};
use mupib_protocol::block::BlockSubmission;
use mupib_protocol::decision::Decision;
use mupib_protocol::token::{Token, TokenId, TokenRef};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

const VALUE: u64 = 10_000;

/// Verifies `entries` as block `block_id` of a fresh user with the deployment's auditor.
fn verify(
    ledger: &Arc<EmbeddedLedger>,
    d: &Deployment,
    block_id: u64,
    entries: &[TokenRef],
) -> ChainVerification {
    let ledger: Arc<dyn Ledger> = ledger.clone();
    ChainVerifier::new(
        ledger,
        Keypair::new_from_array(*d.auditor.secret_bytes()),
        d.auditor_token,
    )
    .verify_block(&BlockSubmission {
        block_id,
        user: Pubkey::new_unique(),
        entries: entries.to_vec(),
    })
    .unwrap()
}

#[test]
fn replayed_chunk_changes_nothing_and_pays_nothing() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
    let d = Deployment::setup(&ledger, 6, 100 * VALUE).unwrap();
    let (tokens, _) = d.issue_batch(&ledger, 1, 10, VALUE, true).unwrap();
    let auditor = d.auditor.pubkey();
    ledger
        .send_instructions(
            &[ix::block_open(
                &auditor,
                BlockOpenArgs {
                    block_id: 5,
                    user: Pubkey::new_unique(),
                    token_count: 3,
                },
            )],
            &auditor,
            &[&d.auditor],
        )
        .unwrap();
    let entries: Vec<_> = tokens[..3].iter().map(Token::token_ref).collect();
    let accounts = VerifyAccounts {
        auditor,
        block_id: 5,
        mint: d.mint,
        auditor_token: d.auditor_token,
    };
    let chunks = pack_block(&accounts, 0, &entries).unwrap();
    assert_eq!(chunks.len(), 1);
    let receipt = ledger
        .send_instructions(&[chunks[0].instruction.clone()], &auditor, &[&d.auditor])
        .unwrap();
    // The chunk's event carries the decisions.
    let decided: Vec<u8> = receipt
        .events()
        .iter()
        .find_map(|e| match e {
            MupibEvent::BlockChunkVerified(v) => Some(v.decisions.clone()),
            _ => None,
        })
        .expect("BlockChunkVerified event");
    assert_eq!(decided, vec![DECISION_VALID; 3]);
    let escrow = pda::escrow(&pda::batch(&d.bank.pubkey(), &d.auditor.pubkey(), 1).0).0;
    let (escrow_after, auditor_after) = (
        token_balance(&ledger, &escrow).unwrap(),
        token_balance(&ledger, &d.auditor_token).unwrap(),
    );
    assert_eq!(auditor_after, 3 * VALUE);
    // Replay (a new blockhash, so a new transaction): nothing changes, nothing is paid.
    ledger
        .send_instructions(&[chunks[0].instruction.clone()], &auditor, &[&d.auditor])
        .unwrap();
    assert_eq!(token_balance(&ledger, &escrow).unwrap(), escrow_after);
    assert_eq!(
        token_balance(&ledger, &d.auditor_token).unwrap(),
        auditor_after
    );
    let block = fetch_block(&ledger, &pda::block(&auditor, 5).0)
        .unwrap()
        .unwrap();
    assert_eq!(block.header.decided, 3);
    assert_eq!(block.header.valid_count, 3);
    assert_eq!(block.header.amount_paid, 3 * VALUE);
    let batch = fetch_batch(
        &ledger,
        &pda::batch(&d.bank.pubkey(), &d.auditor.pubkey(), 1).0,
    )
    .unwrap()
    .unwrap();
    assert_eq!(batch.header.spent_count, 3);
    assert_eq!(batch.is_spent(0), Some(true));
    assert_eq!(batch.is_spent(3), Some(false));
    assert_eq!(batch.is_spent(10), None);
    assert_eq!(
        batch.commitment(2),
        Some(mupib::commitment(&tokens[2].token_digest16()))
    );
}

#[test]
fn expired_batch_closes_after_its_grace_and_refunds_the_unspent_escrow_to_the_bank() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
    let d = Deployment::setup(&ledger, 6, 100 * VALUE).unwrap();
    let (tokens, _) = d.issue_batch(&ledger, 1, 8, VALUE, true).unwrap();
    verify(&ledger, &d, 1, &[tokens[0].token_ref()]);
    let bank = d.bank.pubkey();
    let auditor = d.auditor.pubkey();
    let batch = pda::batch(&bank, &auditor, 1).0;
    let expires_at = fetch_batch(&ledger, &batch)
        .unwrap()
        .unwrap()
        .header
        .expires_at;
    let bank_tokens_before = token_balance(&ledger, &d.bank_token).unwrap();
    let close = ix::batch_close(&bank, &auditor, 1, &d.mint, &d.bank_token);
    // Before expiry with unspent tokens: refused, nothing moves.
    assert!(ledger
        .send_instructions(std::slice::from_ref(&close), &bank, &[&d.bank])
        .is_err());
    assert_eq!(
        token_balance(&ledger, &d.bank_token).unwrap(),
        bank_tokens_before
    );
    // Expired but in its grace period: refused with the program's error.
    ledger.set_unix_timestamp(expires_at + 1).unwrap();
    let refused = ledger
        .send_instructions(std::slice::from_ref(&close), &bank, &[&d.bank])
        .unwrap_err();
    assert_eq!(
        refused.custom_code(),
        Some(u32::from(mupib::error::MupibError::BatchCloseGrace))
    );
    ledger
        .set_unix_timestamp(expires_at + mupib::constants::BATCH_CLOSE_GRACE_SECS + 1)
        .unwrap();
    let lamports_before = ledger.balance(&bank).unwrap();
    ledger
        .send_instructions(&[close], &bank, &[&d.bank])
        .unwrap();
    assert_eq!(
        token_balance(&ledger, &d.bank_token).unwrap(),
        bank_tokens_before + 7 * VALUE
    );
    assert!(ledger.get_account(&batch).unwrap().is_none());
    assert!(ledger
        .get_account(&pda::escrow(&batch).0)
        .unwrap()
        .is_none());
    // Rent of the batch and the escrow came back (minus one signature fee).
    assert!(ledger.balance(&bank).unwrap() > lamports_before);
}

#[test]
fn every_builder_transaction_fits_the_packet_limit() {
    let admin = Pubkey::new_unique();
    let bank = Pubkey::new_unique();
    let auditor = Pubkey::new_unique();
    let mint = Pubkey::new_unique();
    let token = Pubkey::new_unique();
    let publish_max = commitments_per_publish_transaction(&bank, &auditor, 1).unwrap();
    assert!(
        publish_max >= 40,
        "commitments per publish transaction: {publish_max}"
    );
    let create = BatchCreateArgs {
        batch_id: 1,
        auditor,
        token_count: MAX_BATCH_TOKENS,
        value: 1,
        issued_at: 0,
        expires_at: 1,
    };
    // Verification chunks as the packer builds them, over 16 distinct batches (the program's
    // per-chunk maximum; the packet limit allows fewer pairs, so the packer splits).
    let entries: Vec<TokenRef> = (0..64u32)
        .map(|i| TokenRef {
            id: TokenId {
                bank: Pubkey::new_unique(),
                batch_id: u64::from(i % 16),
                serial: i,
            },
            value: VALUE,
            digest: [1; 16],
        })
        .collect();
    let accounts = VerifyAccounts {
        auditor,
        block_id: 1,
        mint,
        auditor_token: token,
    };
    let chunks = pack_block(&accounts, 0, &entries).unwrap();
    assert!(chunks.len() > 1);
    let cases = vec![
        ("config_init", admin, ix::config_init(&admin, &mint)),
        (
            "config_set_paused",
            admin,
            ix::config_set_paused(&admin, true),
        ),
        ("bank_register", admin, ix::bank_register(&admin, &bank)),
        (
            "bank_set_active",
            admin,
            ix::bank_set_active(&admin, &bank, false),
        ),
        (
            "auditor_register",
            admin,
            ix::auditor_register(&admin, &auditor),
        ),
        (
            "auditor_set_active",
            admin,
            ix::auditor_set_active(&admin, &auditor, false),
        ),
        (
            "batch_create",
            bank,
            ix::batch_create(&bank, &mint, &token, create),
        ),
        (
            "batch_publish",
            bank,
            ix::batch_publish(&bank, &auditor, 1, 0, vec![[7; 16]; publish_max]),
        ),
        ("batch_seal", bank, ix::batch_seal(&bank, &auditor, 1)),
        (
            "batch_close",
            bank,
            ix::batch_close(&bank, &auditor, 1, &mint, &token),
        ),
        (
            "block_open",
            auditor,
            ix::block_open(
                &auditor,
                BlockOpenArgs {
                    block_id: 1,
                    user: admin,
                    token_count: 10_000,
                },
            ),
        ),
        ("block_finalize", auditor, ix::block_finalize(&auditor, 1)),
        ("block_close", auditor, ix::block_close(&auditor, 1)),
        (
            "payout_record",
            auditor,
            ix::payout_record(&auditor, u64::MAX, [0xFF; 32]),
        ),
    ];
    let mut cases = cases;
    for chunk in chunks {
        cases.push(("block_verify_chunk (packed)", auditor, chunk.instruction));
    }
    // A hand-built chunk referencing one batch and one entry.
    let single = ix::block_verify_chunk(
        &auditor,
        1,
        &mint,
        &token,
        BlockVerifyChunkArgs {
            start: 0,
            entries: vec![TokenEntry {
                batch_index: 0,
                serial: 0,
                token_digest: [0; 16],
            }],
        },
        &[BatchRef {
            bank,
            auditor,
            batch_id: 1,
        }],
    );
    cases.push(("block_verify_chunk (single)", auditor, single));
    for (name, payer, instruction) in cases {
        let size = transaction_size(&[instruction], &payer).unwrap();
        assert!(size <= PACKET_DATA_SIZE, "{name}: {size} bytes");
    }
    // SPL setup transactions (two signers each).
    let new = Pubkey::new_unique();
    let mint_tx = ix::spl_create_mint(&admin, &new, &admin, 6, 1).unwrap();
    assert!(transaction_size(&mint_tx, &admin).unwrap() <= PACKET_DATA_SIZE);
    let account_tx = ix::spl_create_token_account(&admin, &new, &mint, &admin, 1).unwrap();
    assert!(transaction_size(&account_tx, &admin).unwrap() <= PACKET_DATA_SIZE);
    // One more commitment does not fit: the publish chunk size is the real maximum.
    let over = ix::batch_publish(&bank, &auditor, 1, 0, vec![[7; 16]; publish_max + 1]);
    assert!(transaction_size(&[over], &bank).unwrap() > PACKET_DATA_SIZE);
}

#[test]
fn a_full_packed_chunk_of_one_batch_is_accepted_by_the_runtime() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
    let d = Deployment::setup(&ledger, 6, 200 * VALUE).unwrap();
    let (tokens, _) = d.issue_batch(&ledger, 1, 100, VALUE, true).unwrap();
    let entries: Vec<_> = tokens.iter().map(Token::token_ref).collect();
    let accounts = VerifyAccounts {
        auditor: d.auditor.pubkey(),
        block_id: 9,
        mint: d.mint,
        auditor_token: d.auditor_token,
    };
    let chunks = pack_block(&accounts, 0, &entries).unwrap();
    assert!(
        chunks[0].len >= 32,
        "tokens per transaction: {}",
        chunks[0].len
    );
    let outcome = verify(&ledger, &d, 9, &entries);
    assert_eq!(outcome.chunks_sent, chunks.len());
    let state = fetch_block(&ledger, &outcome.block).unwrap().unwrap();
    assert_eq!(state.header.valid_count, 100);
    assert!(state.decisions.iter().all(|d| *d == DECISION_VALID));
    assert!(outcome.decisions.iter().all(|d| *d == Decision::Valid));
    assert_eq!(
        token_balance(&ledger, &d.auditor_token).unwrap(),
        100 * VALUE
    );
    assert_eq!(
        token_balance(
            &ledger,
            &pda::escrow(&pda::batch(&d.bank.pubkey(), &d.auditor.pubkey(), 1).0).0
        )
        .unwrap(),
        0
    );
}

#[test]
fn second_auditor_cannot_feed_someone_elses_block() {
    let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
    let d = Deployment::setup(&ledger, 6, 100 * VALUE).unwrap();
    let (tokens, _) = d.issue_batch(&ledger, 1, 8, VALUE, true).unwrap();
    let auditor = d.auditor.pubkey();
    ledger
        .send_instructions(
            &[ix::block_open(
                &auditor,
                BlockOpenArgs {
                    block_id: 1,
                    user: Pubkey::new_unique(),
                    token_count: 1,
                },
            )],
            &auditor,
            &[&d.auditor],
        )
        .unwrap();
    // A second registered auditor with its own token account targets the first auditor's block.
    let other = Keypair::new();
    let other_token = Keypair::new();
    ledger.airdrop(&other.pubkey(), 1_000_000_000).unwrap();
    ledger
        .send_instructions(
            &[ix::auditor_register(&d.admin.pubkey(), &other.pubkey())],
            &d.admin.pubkey(),
            &[&d.admin],
        )
        .unwrap();
    spl::create_token_account(&ledger, &other, &other_token, &d.mint, &other.pubkey()).unwrap();
    let mut instruction = ix::block_verify_chunk(
        &other.pubkey(),
        1,
        &d.mint,
        &other_token.pubkey(),
        BlockVerifyChunkArgs {
            start: 0,
            entries: vec![TokenEntry {
                batch_index: 0,
                serial: 0,
                token_digest: tokens[0].token_digest16(),
            }],
        },
        &[BatchRef {
            bank: d.bank.pubkey(),
            auditor: other.pubkey(),
            batch_id: 1,
        }],
    );
    // Point the block account at the first auditor's block.
    let block = pda::block(&auditor, 1).0;
    instruction.accounts[3].pubkey = block;
    let error = ledger
        .send_instructions(&[instruction], &other.pubkey(), &[&other])
        .unwrap_err();
    assert!(error.custom_code().is_some(), "{error}");
    assert_eq!(token_balance(&ledger, &other_token.pubkey()).unwrap(), 0);
    assert_eq!(
        fetch_block(&ledger, &block)
            .unwrap()
            .unwrap()
            .header
            .decided,
        0
    );
}

#[test]
fn batch_directory_shows_an_auditor_only_the_batches_bound_to_it() {
    use mupib_chain::batch_directory::LedgerBatches;
    use mupib_protocol::batch::{BatchDirectory, BatchTerms};
    let ledger = Arc::new(EmbeddedLedger::ephemeral().unwrap());
    let d = Deployment::setup(ledger.as_ref(), 6, 100 * VALUE).unwrap();
    d.issue_batch(ledger.as_ref(), 1, 8, VALUE, true).unwrap();
    d.issue_batch(ledger.as_ref(), 2, 4, VALUE, false).unwrap();
    let bank = d.bank.pubkey();
    let expires_at = fetch_batch(
        ledger.as_ref(),
        &pda::batch(&bank, &d.auditor.pubkey(), 1).0,
    )
    .unwrap()
    .unwrap()
    .header
    .expires_at;
    let own = LedgerBatches::new(ledger.clone(), d.auditor.pubkey());
    assert_eq!(
        own.batch_terms(&bank, 1).unwrap(),
        Some(BatchTerms {
            value: VALUE,
            token_count: 8,
            sealed: true,
            expires_at,
        })
    );
    assert!(!own.batch_terms(&bank, 2).unwrap().unwrap().sealed);
    assert_eq!(own.batch_terms(&bank, 3).unwrap(), None, "never created");
    // Another auditor sees none of them: they are not at its addresses.
    let other = LedgerBatches::new(ledger.clone(), Pubkey::new_unique());
    assert_eq!(other.batch_terms(&bank, 1).unwrap(), None);
    assert_eq!(other.batch_terms(&bank, 2).unwrap(), None);
}
