//! Identities and messages end to end: certificates, tokens (eq. 1), transactions (eq. 2), the
//! intake verification and auditor responses. Each negative test names the attack it tries and
//! asserts the exact error variant.
#![allow(clippy::unwrap_used)]

use ed25519_dalek::{Signer, SigningKey};
use mupib_protocol::cert::{
    pubkey_of, CertError, Certificate, KeyProblem, Registry, Role, SignatureProblem,
};
use mupib_protocol::reject::RejectReason;
use mupib_protocol::response::{AuditorResponse, ResponseError, Verdict};
use mupib_protocol::token::Token;
use mupib_protocol::transaction::{
    verify_transaction, verify_transactions, Party, PaymentTransaction, SignatureSlot, VerifyError,
    MAX_CLOCK_SKEW_SECS, MAX_INFO_LEN, MAX_TOKENS_PER_TRANSACTION, PAYMENT_VALIDITY_SECS,
};
use mupib_protocol::Pubkey;
use proptest::prelude::*;

const NOW: i64 = 5_000;

/// A named modification of a message.
type Alteration<T> = (&'static str, fn(&mut T));
/// The group order ℓ, little-endian.
const ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

struct World {
    registry: Registry,
    authority: SigningKey,
    bank: SigningKey,
    user: SigningKey,
    vendor: SigningKey,
    auditor: SigningKey,
    user_cert: Certificate,
    vendor_cert: Certificate,
}

fn issue(
    authority: &SigningKey,
    subject: &SigningKey,
    role: Role,
    from: i64,
    until: i64,
) -> Certificate {
    Certificate::issue(
        authority,
        pubkey_of(subject),
        role,
        format!("{role}"),
        from,
        until,
    )
    .unwrap()
}

fn world() -> World {
    let authority = key(1);
    let (bank, user, vendor, auditor) = (key(2), key(3), key(4), key(5));
    let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
    let user_cert = issue(&authority, &user, Role::User, 0, 10_000);
    let vendor_cert = issue(&authority, &vendor, Role::Vendor, 0, 10_000);
    registry
        .register(issue(&authority, &bank, Role::Bank, 0, 10_000))
        .unwrap();
    registry
        .register(issue(&authority, &auditor, Role::Auditor, 0, 10_000))
        .unwrap();
    registry.register(user_cert.clone()).unwrap();
    registry.register(vendor_cert.clone()).unwrap();
    World {
        registry,
        authority,
        bank,
        user,
        vendor,
        auditor,
        user_cert,
        vendor_cert,
    }
}

fn tokens(w: &World, batch_id: u64, count: u32) -> Vec<Token> {
    Token::sign_batch(&w.bank, batch_id, count, 10, 1_000)
}

fn pay_with(
    w: &World,
    user_cert: &Certificate,
    vendor_cert: &Certificate,
    toks: Vec<Token>,
) -> PaymentTransaction {
    PaymentTransaction::user_sign(
        &w.user,
        user_cert.clone(),
        vendor_cert.clone(),
        NOW - 100,
        toks,
        "a coffee",
    )
    .unwrap()
    .countersign(&w.vendor)
    .unwrap()
}

fn pay(w: &World, toks: Vec<Token>) -> PaymentTransaction {
    pay_with(w, &w.user_cert, &w.vendor_cert, toks)
}

/// Re-signs a hand-modified transaction as user and vendor, so that only the targeted check can
/// fail.
fn resign(tx: &mut PaymentTransaction, user: &SigningKey, vendor: &SigningKey) {
    tx.user_signature = user.sign(&tx.user_signed_bytes().unwrap()).to_bytes();
    tx.vendor_signature = vendor.sign(&tx.vendor_signed_bytes().unwrap()).to_bytes();
}

fn add_order_to_s(signature: &mut [u8; 64]) {
    let mut carry = 0u16;
    for (i, l) in ORDER.iter().enumerate() {
        let sum = u16::from(signature[32 + i]) + u16::from(*l) + carry;
        signature[32 + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn honest_payment_verifies_and_auditor_response_round_trips() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 5));
    let verified = verify_transaction(&tx, &w.registry, NOW).unwrap();
    assert_eq!(verified.token_count(), 5);
    assert_eq!(verified.total_value(), 50);
    assert_eq!(verified.user(), pubkey_of(&w.user));
    assert_eq!(verified.vendor(), pubkey_of(&w.vendor));
    let response =
        AuditorResponse::sign(&w.auditor, verified.id(), Verdict::Deliver, None, NOW).unwrap();
    response
        .verify_for(&tx.id().unwrap(), &pubkey_of(&w.auditor))
        .unwrap();
    response.verify_with_registry(&w.registry, NOW).unwrap();
    // JSON transport keeps everything verifiable.
    let json = serde_json::to_string(&tx).unwrap();
    let back: PaymentTransaction = serde_json::from_str(&json).unwrap();
    assert_eq!(
        verify_transaction(&back, &w.registry, NOW).unwrap().id(),
        verified.id()
    );
}

#[test]
fn boundary_times_accepted() {
    let w = world();
    // Certificates are valid on [valid_from, valid_until): both ends, at time 0 and 9 999.
    let toks = vec![Token::sign(&w.bank, 1, 0, 10, 0)];
    let tx = PaymentTransaction::user_sign(
        &w.user,
        w.user_cert.clone(),
        w.vendor_cert.clone(),
        0,
        toks,
        "",
    )
    .unwrap()
    .countersign(&w.vendor)
    .unwrap();
    verify_transaction(&tx, &w.registry, 0).unwrap();
    let toks = vec![Token::sign(&w.bank, 1, 0, 10, 0)];
    let late = PaymentTransaction::user_sign(
        &w.user,
        w.user_cert.clone(),
        w.vendor_cert.clone(),
        9_700,
        toks,
        "",
    )
    .unwrap()
    .countersign(&w.vendor)
    .unwrap();
    verify_transaction(&late, &w.registry, 9_999).unwrap();
    assert!(matches!(
        verify_transaction(&late, &w.registry, 10_000),
        Err(VerifyError::Certificate {
            party: Party::User,
            source: CertError::Expired { .. },
            ..
        })
    ));
    // A transaction dated exactly `now + MAX_CLOCK_SKEW_SECS` is still accepted.
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.time = NOW + MAX_CLOCK_SKEW_SECS;
    resign(&mut tx, &w.user, &w.vendor);
    verify_transaction(&tx, &w.registry, NOW).unwrap();
    // ... and one dated exactly `now − PAYMENT_VALIDITY_SECS`.
    tx.time = NOW - PAYMENT_VALIDITY_SECS;
    resign(&mut tx, &w.user, &w.vendor);
    verify_transaction(&tx, &w.registry, NOW).unwrap();
}

/// A vendor that held a signed payment past its validity window cannot submit it any more
/// (it would frame a user who spent the tokens elsewhere meanwhile); the error names the window.
#[test]
fn stale_payment_refused_with_its_validity_window() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.time = NOW - PAYMENT_VALIDITY_SECS - 1;
    resign(&mut tx, &w.user, &w.vendor);
    let error = verify_transaction(&tx, &w.registry, NOW).unwrap_err();
    assert_eq!(
        error,
        VerifyError::TransactionExpired {
            time: NOW - PAYMENT_VALIDITY_SECS - 1,
            now: NOW,
            age: PAYMENT_VALIDITY_SECS + 1,
            validity: PAYMENT_VALIDITY_SECS,
        }
    );
    assert!(error.to_string().contains("600 s"), "{error}");
    // The batch path refuses it the same way.
    let results = verify_transactions(std::slice::from_ref(&tx), &w.registry, NOW);
    assert!(matches!(
        results[0],
        Err(VerifyError::TransactionExpired { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn forged_token_rejected() {
    let w = world();
    let mut toks = tokens(&w, 1, 3);
    // A forger signs a token in the bank's name with its own key.
    let mut forged = Token::sign(&key(66), 1, 7, 10, 1_000);
    forged.bank = pubkey_of(&w.bank);
    toks[1] = forged;
    let tx = pay(&w, toks);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::ForgedToken {
            index: 1,
            token: forged.id()
        })
    );
}

#[test]
fn altered_token_field_rejected_for_each_field() {
    let w = world();
    let alterations: [Alteration<Token>; 5] = [
        ("batch_id", |t| t.batch_id += 1),
        ("serial", |t| t.serial += 1000),
        ("value", |t| t.value = 1_000_000),
        ("issued_at", |t| t.issued_at -= 1),
        ("signature", |t| t.signature[10] ^= 0x01),
    ];
    for (field, alter) in alterations {
        let mut toks = tokens(&w, 1, 1);
        alter(&mut toks[0]);
        let tx = pay(&w, toks.clone());
        assert_eq!(
            verify_transaction(&tx, &w.registry, NOW),
            Err(VerifyError::ForgedToken {
                index: 0,
                token: toks[0].id()
            }),
            "altered {field}"
        );
    }
    // Altering the bank field points to an identity nobody registered.
    let mut toks = tokens(&w, 1, 1);
    toks[0].bank = pubkey_of(&key(77));
    let tx = pay(&w, toks.clone());
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Bank { token_index: 0 },
            subject: toks[0].bank,
            source: CertError::UnknownIdentity {
                subject: toks[0].bank
            },
        })
    );
}

#[test]
fn token_altered_in_transit_breaks_vendor_signature() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 2));
    tx.tokens[1].value += 1;
    tx.tokens[0].value += 1;
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::BadVendorSignature {
            vendor: pubkey_of(&w.vendor)
        })
    );
}

#[test]
fn token_value_mismatch_rejected() {
    let w = world();
    let mut toks = tokens(&w, 1, 2);
    toks.push(Token::sign(&w.bank, 2, 0, 20, 1_000));
    let tx = pay(&w, toks.clone());
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::TokenValueMismatch {
            index: 2,
            token: toks[2].id(),
            expected: 10,
            found: 20
        })
    );
}

#[test]
fn zero_value_token_rejected() {
    let w = world();
    let toks = vec![Token::sign(&w.bank, 1, 0, 0, 1_000)];
    let tx = pay(&w, toks.clone());
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::ZeroValueToken {
            index: 0,
            token: toks[0].id()
        })
    );
}

#[test]
fn same_token_twice_in_one_payment_rejected() {
    let w = world();
    let mut toks = tokens(&w, 1, 3);
    toks.push(toks[1]);
    let tx = pay(&w, toks.clone());
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::DuplicateTokenInTransaction {
            token: toks[1].id(),
            first: 1,
            second: 3
        })
    );
}

#[test]
fn token_from_the_future_rejected() {
    let w = world();
    let toks = vec![Token::sign(
        &w.bank,
        1,
        0,
        10,
        NOW + MAX_CLOCK_SKEW_SECS + 1,
    )];
    let tx = pay(&w, toks.clone());
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::TokenFromFuture {
            index: 0,
            token: toks[0].id(),
            issued_at: NOW + MAX_CLOCK_SKEW_SECS + 1,
            now: NOW
        })
    );
}

#[test]
fn token_of_expired_bank_rejected() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 1));
    let mut registry = w.registry.clone();
    let short = issue(&w.authority, &w.bank, Role::Bank, 0, NOW);
    registry.register(short).unwrap();
    assert!(matches!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Bank { token_index: 0 },
            source: CertError::Expired { .. },
            ..
        })
    ));
}

#[test]
fn token_of_revoked_bank_rejected() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 1));
    let mut registry = w.registry.clone();
    registry.revoke(pubkey_of(&w.bank));
    assert!(matches!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Bank { token_index: 0 },
            source: CertError::Revoked { .. },
            ..
        })
    ));
}

#[test]
fn token_issued_by_a_user_rejected() {
    let w = world();
    // The user mints its own "token".
    let toks = vec![Token::sign(&w.user, 1, 0, 10, 1_000)];
    let tx = pay(&w, toks);
    assert!(matches!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Bank { token_index: 0 },
            source: CertError::WrongRole {
                expected: Role::Bank,
                actual: Role::User,
                ..
            },
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_user_signature_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 2));
    // Someone else signs the user's part; a careless vendor countersigns it.
    tx.user_signature = key(99).sign(&tx.user_signed_bytes().unwrap()).to_bytes();
    tx.vendor_signature = w.vendor.sign(&tx.vendor_signed_bytes().unwrap()).to_bytes();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::BadUserSignature {
            user: pubkey_of(&w.user)
        })
    );
}

#[test]
fn wrong_vendor_signature_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 2));
    tx.vendor_signature = key(98).sign(&tx.vendor_signed_bytes().unwrap()).to_bytes();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::BadVendorSignature {
            vendor: pubkey_of(&w.vendor)
        })
    );
}

#[test]
fn info_altered_after_signing_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 2));
    tx.info = "a car".into();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::BadVendorSignature {
            vendor: pubkey_of(&w.vendor)
        })
    );
    // Vendor re-signs the altered content: now the user's signature is the one that fails.
    tx.vendor_signature = w.vendor.sign(&tx.vendor_signed_bytes().unwrap()).to_bytes();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::BadUserSignature {
            user: pubkey_of(&w.user)
        })
    );
}

#[test]
fn malleated_user_signature_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 2));
    add_order_to_s(&mut tx.user_signature);
    tx.vendor_signature = w.vendor.sign(&tx.vendor_signed_bytes().unwrap()).to_bytes();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::MalformedSignature {
            slot: SignatureSlot::User,
            problem: SignatureProblem::NonCanonicalS
        })
    );
}

#[test]
fn small_order_r_in_token_signature_rejected() {
    let w = world();
    let mut toks = tokens(&w, 1, 2);
    // R = identity point (y = 1): with S = 0 this "signs" any message under a weak key.
    toks[1].signature = [0; 64];
    toks[1].signature[0] = 1;
    let tx = pay(&w, toks);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::MalformedSignature {
            slot: SignatureSlot::Token { index: 1 },
            problem: SignatureProblem::SmallOrderR
        })
    );
}

#[test]
fn non_canonical_r_in_vendor_signature_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.vendor_signature[..32].copy_from_slice(&[0xff; 32]);
    tx.vendor_signature[31] = 0x7f;
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::MalformedSignature {
            slot: SignatureSlot::Vendor,
            problem: SignatureProblem::NonCanonicalR
        })
    );
}

#[test]
fn weak_key_identity_rejected() {
    let w = world();
    let mut registry = w.registry.clone();
    let mut y1 = [0u8; 32];
    y1[0] = 1;
    let weak = Pubkey::new_from_array(y1);
    // The authority will not certify it, and a hand-made certificate cannot be registered.
    assert!(matches!(
        Certificate::issue(&w.authority, weak, Role::User, "weak", 0, 10_000),
        Err(CertError::InvalidKey {
            problem: KeyProblem::SmallOrder,
            ..
        })
    ));
    let mut cert = w.user_cert.clone();
    cert.subject = weak;
    cert.signature = w.authority.sign(&cert.signing_bytes().unwrap()).to_bytes();
    assert_eq!(
        registry.register(cert.clone()),
        Err(CertError::InvalidKey {
            key: weak,
            problem: KeyProblem::SmallOrder
        })
    );
    // A payment from that identity is refused at intake as an unknown identity.
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.user_cert = cert;
    tx.vendor_signature = w.vendor.sign(&tx.vendor_signed_bytes().unwrap()).to_bytes();
    assert_eq!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::User,
            subject: weak,
            source: CertError::UnknownIdentity { subject: weak }
        })
    );
}

#[test]
fn weak_key_universal_forgery_passes_raw_batch_but_not_our_checks() {
    // With the identity point as public key and the signature (R = identity, S = 0), the
    // cofactorless batch equation holds for EVERY message: plain `verify_batch` accepts it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak_key = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let signature = ed25519_dalek::Signature::from_bytes(&forged);
    let messages: [&[u8]; 2] = [b"pay 1000 to mallory", b"anything at all"];
    assert!(ed25519_dalek::verify_batch(&messages, &[signature; 2], &[weak_key; 2]).is_ok());
    // Our checks refuse both halves: the key cannot enter the registry and the signature
    // encoding is refused before any batch.
    let weak = Pubkey::new_from_array(identity);
    assert_eq!(
        mupib_protocol::cert::strict_verifying_key(&weak),
        Err(KeyProblem::SmallOrder)
    );
    assert_eq!(
        mupib_protocol::cert::check_signature_encoding(&forged),
        Err(SignatureProblem::SmallOrderR)
    );
    // A token "signed" this way by a registered bank is refused at intake by name.
    let w = world();
    let mut toks = tokens(&w, 1, 2);
    toks[0].signature = forged;
    let tx = pay(&w, toks);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::MalformedSignature {
            slot: SignatureSlot::Token { index: 0 },
            problem: SignatureProblem::SmallOrderR
        })
    );
}

#[test]
fn batch_verification_names_the_forged_token_among_many() {
    let w = world();
    let mut toks = tokens(&w, 1, 20);
    let mut forged = Token::sign(&key(66), 1, 13, 10, 1_000);
    forged.bank = pubkey_of(&w.bank);
    toks[13] = forged;
    let tx = pay(&w, toks);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::ForgedToken {
            index: 13,
            token: forged.id()
        })
    );
}

#[test]
fn batch_of_transactions_isolates_each_culprit() {
    let w = world();
    let good: Vec<PaymentTransaction> = (0..4).map(|b| pay(&w, tokens(&w, 10 + b, 5))).collect();
    let mut wrong_user = pay(&w, tokens(&w, 20, 5));
    wrong_user.user_signature = key(99)
        .sign(&wrong_user.user_signed_bytes().unwrap())
        .to_bytes();
    wrong_user.vendor_signature = w
        .vendor
        .sign(&wrong_user.vendor_signed_bytes().unwrap())
        .to_bytes();
    let mut unknown_vendor = pay(&w, tokens(&w, 21, 5));
    let stranger = key(55);
    unknown_vendor.vendor_cert = issue(&w.authority, &stranger, Role::Vendor, 0, 10_000);
    let txs = vec![
        good[0].clone(),
        wrong_user,
        good[1].clone(),
        unknown_vendor,
        good[2].clone(),
        good[3].clone(),
    ];
    let results = verify_transactions(&txs, &w.registry, NOW);
    assert_eq!(results.len(), 6);
    for i in [0, 2, 4, 5] {
        assert_eq!(results[i].as_ref().unwrap().id(), txs[i].id().unwrap());
    }
    assert_eq!(
        results[1],
        Err(VerifyError::BadUserSignature {
            user: pubkey_of(&w.user)
        })
    );
    assert!(matches!(
        &results[3],
        Err(VerifyError::Certificate {
            party: Party::Vendor,
            source: CertError::UnknownIdentity { .. },
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Certificates and identities
// ---------------------------------------------------------------------------------------------

#[test]
fn expired_user_certificate_rejected() {
    let w = world();
    let mut registry = w.registry.clone();
    let short = issue(&w.authority, &w.user, Role::User, 0, NOW);
    registry.register(short.clone()).unwrap();
    let tx = pay_with(&w, &short, &w.vendor_cert, tokens(&w, 1, 1));
    assert_eq!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::User,
            subject: short.subject,
            source: CertError::Expired {
                subject: short.subject,
                valid_until: NOW,
                now: NOW
            }
        })
    );
}

#[test]
fn not_yet_valid_vendor_certificate_rejected() {
    let w = world();
    let mut registry = w.registry.clone();
    let later = issue(&w.authority, &w.vendor, Role::Vendor, NOW + 1, 10_000);
    registry.register(later.clone()).unwrap();
    let tx = pay_with(&w, &w.user_cert, &later, tokens(&w, 1, 1));
    assert_eq!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Vendor,
            subject: later.subject,
            source: CertError::NotYetValid {
                subject: later.subject,
                valid_from: NOW + 1,
                now: NOW
            }
        })
    );
}

#[test]
fn user_certificate_presented_as_vendor_rejected() {
    let w = world();
    // A user poses as a vendor with its own (user) certificate.
    let other_user = key(33);
    let mut registry = w.registry.clone();
    let other_cert = issue(&w.authority, &other_user, Role::User, 0, 10_000);
    registry.register(other_cert.clone()).unwrap();
    let tx = PaymentTransaction::user_sign(
        &w.user,
        w.user_cert.clone(),
        other_cert.clone(),
        NOW - 100,
        tokens(&w, 1, 1),
        "x",
    )
    .unwrap()
    .countersign(&other_user)
    .unwrap();
    assert_eq!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Vendor,
            subject: other_cert.subject,
            source: CertError::WrongRole {
                subject: other_cert.subject,
                expected: Role::Vendor,
                actual: Role::User
            }
        })
    );
}

#[test]
fn revoked_user_rejected() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 1));
    let mut registry = w.registry.clone();
    registry.revoke(pubkey_of(&w.user));
    assert_eq!(
        verify_transaction(&tx, &registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::User,
            subject: pubkey_of(&w.user),
            source: CertError::Revoked {
                subject: pubkey_of(&w.user)
            }
        })
    );
}

#[test]
fn unknown_user_rejected() {
    let w = world();
    let stranger = key(44);
    let stranger_cert = issue(&w.authority, &stranger, Role::User, 0, 10_000);
    let tx = PaymentTransaction::user_sign(
        &stranger,
        stranger_cert.clone(),
        w.vendor_cert.clone(),
        NOW - 100,
        tokens(&w, 1, 1),
        "x",
    )
    .unwrap()
    .countersign(&w.vendor)
    .unwrap();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::User,
            subject: stranger_cert.subject,
            source: CertError::UnknownIdentity {
                subject: stranger_cert.subject
            }
        })
    );
}

#[test]
fn self_issued_certificate_rejected() {
    let w = world();
    // The user issues itself a vendor certificate signed by its own key.
    let rogue = Certificate::issue(
        &w.user,
        pubkey_of(&w.vendor),
        Role::Vendor,
        "fake",
        0,
        10_000,
    )
    .unwrap();
    let tx = pay_with(&w, &w.user_cert, &rogue, tokens(&w, 1, 1));
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::Certificate {
            party: Party::Vendor,
            subject: rogue.subject,
            source: CertError::Mismatch {
                subject: rogue.subject
            }
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Limits and structure
// ---------------------------------------------------------------------------------------------

#[test]
fn too_many_tokens_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.tokens = tokens(&w, 1, MAX_TOKENS_PER_TRANSACTION as u32 + 1);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::TooManyTokens {
            count: MAX_TOKENS_PER_TRANSACTION + 1,
            max: MAX_TOKENS_PER_TRANSACTION
        })
    );
}

#[test]
fn empty_token_list_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.tokens.clear();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::EmptyTokenList)
    );
}

#[test]
fn overlong_info_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.info = "i".repeat(MAX_INFO_LEN + 1);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::InfoTooLong {
            len: MAX_INFO_LEN + 1,
            max: MAX_INFO_LEN
        })
    );
}

#[test]
fn transaction_from_the_future_rejected() {
    let w = world();
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.time = NOW + MAX_CLOCK_SKEW_SECS + 1;
    resign(&mut tx, &w.user, &w.vendor);
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW),
        Err(VerifyError::TransactionFromFuture {
            time: NOW + MAX_CLOCK_SKEW_SECS + 1,
            now: NOW,
            max_skew: MAX_CLOCK_SKEW_SECS
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Transaction ids
// ---------------------------------------------------------------------------------------------

#[test]
fn replayed_transaction_has_the_same_id() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 3));
    let replay = tx.clone();
    assert_eq!(
        verify_transaction(&tx, &w.registry, NOW).unwrap().id(),
        verify_transaction(&replay, &w.registry, NOW).unwrap().id()
    );
    // Rebuilding the same payment from scratch (deterministic ed25519) gives the same id too.
    assert_eq!(pay(&w, tokens(&w, 1, 3)).id().unwrap(), tx.id().unwrap());
}

#[test]
fn any_change_gives_another_id() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 3));
    let id = tx.id().unwrap();
    let changes: [Alteration<PaymentTransaction>; 6] = [
        ("time", |t| t.time += 1),
        ("info", |t| t.info.push('!')),
        ("token", |t| t.tokens[2].serial += 1),
        ("token order", |t| t.tokens.swap(0, 1)),
        ("one token less", |t| {
            t.tokens.pop();
        }),
        ("user signature", |t| t.user_signature[40] ^= 1),
    ];
    let mut ids = std::collections::HashSet::from([id]);
    for (what, change) in changes {
        let mut changed = tx.clone();
        change(&mut changed);
        assert!(
            ids.insert(changed.id().unwrap()),
            "changing the {what} kept an existing id"
        );
    }
    // The vendor signature is not part of the id: a vendor re-signing does not hide a replay.
    let mut resigned = tx.clone();
    resigned.vendor_signature = [7; 64];
    assert_eq!(resigned.id().unwrap(), id);
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

#[test]
fn auditor_response_tampering_rejected() {
    let w = world();
    let tx = pay(&w, tokens(&w, 1, 1));
    let id = tx.id().unwrap();
    let auditor = pubkey_of(&w.auditor);
    let response = AuditorResponse::sign(
        &w.auditor,
        id,
        Verdict::Reject(RejectReason::ForgedToken {
            token: tx.tokens[0].id(),
        }),
        None,
        NOW,
    )
    .unwrap();
    response.verify_for(&id, &auditor).unwrap();
    // A vendor turns the rejection into a delivery order.
    let mut tampered = response.clone();
    tampered.verdict = Verdict::Deliver;
    assert_eq!(
        tampered.verify_for(&id, &auditor),
        Err(ResponseError::BadSignature { auditor })
    );
    // A response signed by someone else in the auditor's name.
    let mut forged = AuditorResponse::sign(&key(90), id, Verdict::Deliver, None, NOW).unwrap();
    forged.auditor = auditor;
    assert_eq!(
        forged.verify_for(&id, &auditor),
        Err(ResponseError::BadSignature { auditor })
    );
    // A malleated response signature.
    let mut malleated = response;
    add_order_to_s(&mut malleated.signature);
    assert_eq!(
        malleated.verify_for(&id, &auditor),
        Err(ResponseError::MalformedSignature {
            problem: SignatureProblem::NonCanonicalS
        })
    );
}

#[test]
fn intake_errors_map_to_reject_reasons() {
    let w = world();
    let mut toks = tokens(&w, 1, 2);
    let mut forged = Token::sign(&key(66), 1, 9, 10, 1_000);
    forged.bank = pubkey_of(&w.bank);
    toks[0] = forged;
    let error = verify_transaction(&pay(&w, toks), &w.registry, NOW).unwrap_err();
    assert_eq!(
        RejectReason::from(&error),
        RejectReason::ForgedToken { token: forged.id() }
    );
    assert_eq!(
        mupib_protocol::reject::blamed_party(&error),
        Some(Party::User)
    );
    let mut tx = pay(&w, tokens(&w, 1, 1));
    tx.vendor_signature = [9; 64];
    let error = verify_transaction(&tx, &w.registry, NOW).unwrap_err();
    assert!(matches!(
        RejectReason::from(&error),
        RejectReason::BadSignature { .. }
    ));
    let mut registry = w.registry.clone();
    registry.revoke(pubkey_of(&w.user));
    let error = verify_transaction(&pay(&w, tokens(&w, 1, 1)), &registry, NOW).unwrap_err();
    assert!(
        matches!(RejectReason::from(&error), RejectReason::UnknownIdentity { key, .. } if key == pubkey_of(&w.user))
    );
}

// ---------------------------------------------------------------------------------------------
// Any single-byte change breaks verification
// ---------------------------------------------------------------------------------------------

fn fixture() -> &'static (World, PaymentTransaction, AuditorResponse) {
    static FIXTURE: std::sync::OnceLock<(World, PaymentTransaction, AuditorResponse)> =
        std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let w = world();
        let tx = pay(&w, tokens(&w, 1, 3));
        let response =
            AuditorResponse::sign(&w.auditor, tx.id().unwrap(), Verdict::Wait, Some(12), NOW)
                .unwrap();
        (w, tx, response)
    })
}

fn flip(bytes: &[u8], index: usize, delta: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = index % out.len();
    out[i] = out[i].wrapping_add(delta);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_byte_change_to_a_transaction_fails_verification(index in any::<usize>(), delta in 1u8..=255) {
        let (w, tx, _) = fixture();
        let bytes = borsh::to_vec(tx).unwrap();
        let mutated = flip(&bytes, index, delta);
        if let Ok(decoded) = borsh::from_slice::<PaymentTransaction>(&mutated) {
            prop_assert!(verify_transaction(&decoded, &w.registry, NOW).is_err());
        }
    }

    #[test]
    fn any_byte_change_to_a_token_fails_verification(index in 0usize..124, delta in 1u8..=255) {
        let (w, tx, _) = fixture();
        let token = tx.tokens[0];
        let mutated = flip(&token.canonical_bytes(), index, delta);
        let decoded = borsh::from_slice::<Token>(&mutated).unwrap();
        prop_assert!(decoded.verify(&w.registry, NOW).is_err());
    }

    #[test]
    fn any_byte_change_to_a_certificate_fails_verification(index in any::<usize>(), delta in 1u8..=255) {
        let (w, _, _) = fixture();
        let bytes = borsh::to_vec(&w.user_cert).unwrap();
        let mutated = flip(&bytes, index, delta);
        if let Ok(decoded) = borsh::from_slice::<Certificate>(&mutated) {
            // Against the registry and on its own signature alone.
            prop_assert!(w.registry.verify_certificate(&decoded, Role::User, NOW).is_err());
            prop_assert!(decoded.verify_signature().is_err());
        }
    }

    #[test]
    fn any_byte_change_to_a_response_fails_verification(index in any::<usize>(), delta in 1u8..=255) {
        let (w, _, response) = fixture();
        let bytes = borsh::to_vec(response).unwrap();
        let mutated = flip(&bytes, index, delta);
        if let Ok(decoded) = borsh::from_slice::<AuditorResponse>(&mutated) {
            prop_assert!(decoded.verify(&pubkey_of(&w.auditor)).is_err());
        }
    }
}
