//! Signature throughput of the intake verification against the raw ed25519-dalek bounds.
//!
//! `cargo bench -p mupib-sdk --no-default-features --bench messages`
//!
//! Transactions carry 5 tokens, so 9 signatures each (2 certificates, vendor, user, 5 tokens).
//! Prints figures only; asserts nothing about time.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use mupib_protocol::cert::{pubkey_of, Certificate, Registry, Role};
use mupib_protocol::token::Token;
use mupib_protocol::transaction::{verify_transaction, verify_transactions, PaymentTransaction};
use mupib_protocol::Pubkey;

const TRANSACTIONS: usize = 512;
const TOKENS: u32 = 5;
const CHUNK: usize = 64;
const NOW: i64 = 1_000;
const ROUNDS: usize = 5;

fn key(index: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
    seed[31] = 0x5a;
    SigningKey::from_bytes(&seed)
}

fn vk(key: &Pubkey) -> VerifyingKey {
    VerifyingKey::from_bytes(&key.to_bytes()).unwrap()
}

/// Every (message, signature, key) of a transaction.
fn signature_items(tx: &PaymentTransaction) -> Vec<(Vec<u8>, Signature, VerifyingKey)> {
    let mut items = vec![
        (
            tx.user_cert.signing_bytes().unwrap(),
            Signature::from_bytes(&tx.user_cert.signature),
            vk(&tx.user_cert.issuer),
        ),
        (
            tx.vendor_cert.signing_bytes().unwrap(),
            Signature::from_bytes(&tx.vendor_cert.signature),
            vk(&tx.vendor_cert.issuer),
        ),
        (
            tx.vendor_signed_bytes().unwrap(),
            Signature::from_bytes(&tx.vendor_signature),
            vk(&tx.vendor()),
        ),
        (
            tx.user_signed_bytes().unwrap(),
            Signature::from_bytes(&tx.user_signature),
            vk(&tx.user()),
        ),
    ];
    for token in &tx.tokens {
        items.push((
            token.signing_bytes().to_vec(),
            token.signature(),
            vk(&token.bank),
        ));
    }
    items
}

fn raw_batch_rate(items: &[(Vec<u8>, Signature, VerifyingKey)], per_batch: usize) -> f64 {
    let start = Instant::now();
    for chunk in items.chunks(per_batch) {
        let messages: Vec<&[u8]> = chunk.iter().map(|(m, _, _)| m.as_slice()).collect();
        let signatures: Vec<Signature> = chunk.iter().map(|(_, s, _)| *s).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|(_, _, k)| *k).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).unwrap();
    }
    items.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let authority = key(0);
    let bank = key(1);
    let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
    let issue = |k: &SigningKey, role| {
        Certificate::issue(&authority, pubkey_of(k), role, "bench", 0, 10_000).unwrap()
    };
    registry.register(issue(&bank, Role::Bank)).unwrap();
    let parties: Vec<(SigningKey, Certificate, SigningKey, Certificate)> = (0..16)
        .map(|i| {
            let (user, vendor) = (key(100 + i), key(200 + i));
            let (user_cert, vendor_cert) = (issue(&user, Role::User), issue(&vendor, Role::Vendor));
            registry.register(user_cert.clone()).unwrap();
            registry.register(vendor_cert.clone()).unwrap();
            (user, user_cert, vendor, vendor_cert)
        })
        .collect();
    let txs: Vec<PaymentTransaction> = (0..TRANSACTIONS)
        .map(|i| {
            let (user, user_cert, vendor, vendor_cert) = &parties[i % parties.len()];
            let tokens = Token::sign_batch(&bank, i as u64, TOKENS, 10, 500);
            PaymentTransaction::user_sign(
                user,
                user_cert.clone(),
                vendor_cert.clone(),
                900,
                tokens,
                "item",
            )
            .unwrap()
            .countersign(vendor)
            .unwrap()
        })
        .collect();
    let items: Vec<_> = txs.iter().flat_map(signature_items).collect();
    let per_tx = items.len() / txs.len();

    // Warm-up.
    for tx in txs.iter().take(32) {
        black_box(verify_transaction(tx, &registry, NOW).unwrap());
    }

    // The machine is shared: measure in interleaved rounds and keep each figure's best round.
    let (mut single_rate, mut batch_tx_rate, mut batch_chunk_rate) = (0f64, 0f64, 0f64);
    let (mut intake_one, mut intake_many) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for (message, signature, key) in &items {
            key.verify_strict(message, signature).unwrap();
        }
        single_rate = single_rate.max(items.len() as f64 / start.elapsed().as_secs_f64());
        batch_tx_rate = batch_tx_rate.max(raw_batch_rate(&items, per_tx));
        batch_chunk_rate = batch_chunk_rate.max(raw_batch_rate(&items, per_tx * CHUNK));

        let start = Instant::now();
        for tx in &txs {
            black_box(verify_transaction(tx, &registry, NOW).unwrap());
        }
        intake_one = intake_one.max(txs.len() as f64 / start.elapsed().as_secs_f64());

        let start = Instant::now();
        for chunk in txs.chunks(CHUNK) {
            for result in verify_transactions(chunk, &registry, NOW) {
                black_box(result.unwrap());
            }
        }
        intake_many = intake_many.max(txs.len() as f64 / start.elapsed().as_secs_f64());
    }

    println!(
        "{} transactions of {TOKENS} tokens, {per_tx} signatures each (best of {ROUNDS} rounds)",
        txs.len()
    );
    println!("raw verify_strict, one by one:        {single_rate:>10.0} signatures/s");
    println!("raw verify_batch, {per_tx} per batch:          {batch_tx_rate:>10.0} signatures/s");
    println!(
        "raw verify_batch, {} per batch:       {batch_chunk_rate:>10.0} signatures/s",
        per_tx * CHUNK
    );
    println!(
        "verify_transaction (one batch per tx): {intake_one:>10.0} tx/s = {:>10.0} signatures/s, {:.2} of the {per_tx}-signature batch bound",
        intake_one * per_tx as f64,
        intake_one * per_tx as f64 / batch_tx_rate
    );
    println!(
        "verify_transactions ({CHUNK} tx per batch): {intake_many:>10.0} tx/s = {:>10.0} signatures/s, {:.2} of the {}-signature batch bound",
        intake_many * per_tx as f64,
        intake_many * per_tx as f64 / batch_chunk_rate,
        per_tx * CHUNK
    );
}
