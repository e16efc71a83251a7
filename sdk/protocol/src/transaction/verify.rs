//! The auditor's intake verification of payment transactions (paper eq. 2; SPEC §3): the
//! intake errors ([`VerifyError`], naming the [`Party`] and the [`SignatureSlot`]), the
//! [`VerifiedTransaction`] the engine consumes, and [`verify_transaction`] /
//! [`verify_transactions`]: limits, certificates, token sanity and signature encodings first,
//! then every signature in one ed25519 batch, with each signature verified alone
//! (`verify_strict`) to name the culprit when the batch fails. The order of the checks and the
//! culprit precedence are in the parent module's documentation.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{
    id_of, vendor_signed_bytes, PaymentTransaction, TransactionError, TransactionId,
    MAX_CLOCK_SKEW_SECS, PAYMENT_VALIDITY_SECS, TX_VENDOR_TAG,
};
use crate::cert::{check_signature_encoding, CertError, Registry, Role, SignatureProblem};
use crate::token::{Token, TokenId, TokenRef, TOKEN_SIGNING_LEN};
use crate::Pubkey;

/// Who a certificate or key belongs to, in an intake error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Party {
    /// The paying user.
    User,
    /// The vendor.
    Vendor,
    /// The bank of the token at `token_index`.
    Bank {
        /// Index of the token in the transaction.
        token_index: usize,
    },
}

/// Which signature of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureSlot {
    /// The authority's signature on the user certificate.
    UserCertificate,
    /// The authority's signature on the vendor certificate.
    VendorCertificate,
    /// The vendor's countersignature.
    Vendor,
    /// The user's signature.
    User,
    /// The bank's signature on the token at `index`.
    Token {
        /// Index of the token in the transaction.
        index: usize,
    },
}

/// Why the intake refused a transaction. Each attack has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No token.
    #[error("the transaction carries no token")]
    EmptyTokenList,
    /// Too many tokens.
    #[error("the transaction carries {count} tokens, the limit is {max}: split the payment")]
    TooManyTokens {
        /// Tokens carried.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Item information too long.
    #[error("item information is {len} bytes long, the limit is {max}")]
    InfoTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The transaction is dated in the future beyond the allowed clock skew.
    #[error("the transaction is dated {time}, more than {max_skew} s after now ({now}): check the clocks")]
    TransactionFromFuture {
        /// The transaction time.
        time: i64,
        /// The auditor's time.
        now: i64,
        /// The allowed skew.
        max_skew: i64,
    },
    /// The payment is older than its validity window: too late to take in.
    #[error("the payment is dated {time}, {age} s before now ({now}); payments are taken in for {validity} s after their time: ask the user for a new payment")]
    TransactionExpired {
        /// The transaction time.
        time: i64,
        /// The auditor's time.
        now: i64,
        /// `now − time`.
        age: i64,
        /// The window ([`PAYMENT_VALIDITY_SECS`]).
        validity: i64,
    },
    /// A certificate or identity is refused (unknown, revoked, expired, not yet valid, wrong
    /// role, unknown issuer, not the registered one).
    #[error("{party:?} identity {subject} refused: {source}")]
    Certificate {
        /// Whose.
        party: Party,
        /// The key.
        subject: Pubkey,
        /// Why.
        source: CertError,
    },
    /// A token of value zero.
    #[error("token #{index} ({token}) has value 0")]
    ZeroValueToken {
        /// Index in the transaction.
        index: usize,
        /// The token.
        token: TokenId,
    },
    /// The tokens of one transaction do not all have the same value.
    #[error("token #{index} ({token}) has value {found}, the transaction's first token has {expected}: all tokens of a payment must have the same value")]
    TokenValueMismatch {
        /// Index in the transaction.
        index: usize,
        /// The token.
        token: TokenId,
        /// The first token's value.
        expected: u64,
        /// This token's value.
        found: u64,
    },
    /// The same token twice in one transaction (double spending inside the payment).
    #[error(
        "token {token} appears twice in the transaction (#{first} and #{second}): double spending"
    )]
    DuplicateTokenInTransaction {
        /// The token.
        token: TokenId,
        /// First index.
        first: usize,
        /// Second index.
        second: usize,
    },
    /// A token issued in the future beyond the allowed clock skew.
    #[error("token #{index} ({token}) is issued at {issued_at}, in the future (now {now})")]
    TokenFromFuture {
        /// Index in the transaction.
        index: usize,
        /// The token.
        token: TokenId,
        /// Its issue time.
        issued_at: i64,
        /// The auditor's time.
        now: i64,
    },
    /// The total value does not fit a u64.
    #[error("the total value of the transaction's tokens overflows")]
    ValueOverflow,
    /// A signature is malformed (non-canonical `S` or `R`, small-order `R`).
    #[error("malformed {slot:?} signature: {problem}")]
    MalformedSignature {
        /// Which signature.
        slot: SignatureSlot,
        /// What is wrong.
        problem: SignatureProblem,
    },
    /// A certificate's issuer signature does not verify.
    #[error("the {party:?} certificate of {subject} is not validly signed by its issuer: forged or altered")]
    BadCertificateSignature {
        /// Whose certificate.
        party: Party,
        /// The certified key.
        subject: Pubkey,
    },
    /// A token's bank signature does not match its content: forged token, or a field altered.
    #[error("token #{index} ({token}): the bank signature does not match the token's content: forged or altered token")]
    ForgedToken {
        /// Index in the transaction.
        index: usize,
        /// The token.
        token: TokenId,
    },
    /// The user's signature does not verify over the transaction content.
    #[error("the user signature of {user} does not verify: the transaction was altered after the user signed, or not signed by the user")]
    BadUserSignature {
        /// The user.
        user: Pubkey,
    },
    /// The vendor's countersignature does not verify.
    #[error("the vendor signature of {vendor} does not verify: the transaction was altered after the vendor signed, or not signed by the vendor")]
    BadVendorSignature {
        /// The vendor.
        vendor: Pubkey,
    },
    /// The batch failed but every single signature verified (cannot happen with the
    /// registry's torsion-free keys; refused to be safe).
    #[error(
        "batch signature verification failed but no single signature did: transaction refused"
    )]
    BatchInconsistent,
    /// Canonical encoding failed.
    #[error("transaction encoding failed: {0}")]
    Encoding(String),
}

/// A transaction that passed [`verify_transaction`] (or was reloaded with
/// [`VerifiedTransaction::assume_verified`]). Only this module constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTransaction {
    id: TransactionId,
    tokens: Vec<TokenRef>,
    total_value: u64,
    transaction: PaymentTransaction,
}

impl From<TransactionError> for VerifyError {
    fn from(error: TransactionError) -> VerifyError {
        match error {
            TransactionError::EmptyTokenList => VerifyError::EmptyTokenList,
            TransactionError::TooManyTokens { count, max } => {
                VerifyError::TooManyTokens { count, max }
            }
            TransactionError::InfoTooLong { len, max } => VerifyError::InfoTooLong { len, max },
            TransactionError::BadUserSignature { user } => VerifyError::BadUserSignature { user },
            other => VerifyError::Encoding(other.to_string()),
        }
    }
}

/// Token checks that need no key: value, duplicates. Returns the total value.
fn check_tokens(tokens: &[Token]) -> Result<u64, VerifyError> {
    let first_value = tokens
        .first()
        .map(|t| t.value)
        .ok_or(VerifyError::EmptyTokenList)?;
    let mut total: u128 = 0;
    for (index, token) in tokens.iter().enumerate() {
        if token.value == 0 {
            return Err(VerifyError::ZeroValueToken {
                index,
                token: token.id(),
            });
        }
        if token.value != first_value {
            return Err(VerifyError::TokenValueMismatch {
                index,
                token: token.id(),
                expected: first_value,
                found: token.value,
            });
        }
        total = total
            .checked_add(u128::from(token.value))
            .ok_or(VerifyError::ValueOverflow)?;
    }
    let mut ids: Vec<(TokenId, usize)> = tokens
        .iter()
        .enumerate()
        .map(|(index, token)| (token.id(), index))
        .collect();
    ids.sort_unstable();
    for pair in ids.windows(2) {
        if let [(a, first), (b, second)] = pair {
            if a == b {
                return Err(VerifyError::DuplicateTokenInTransaction {
                    token: *a,
                    first: *first,
                    second: *second,
                });
            }
        }
    }
    u64::try_from(total).map_err(|_| VerifyError::ValueOverflow)
}

impl VerifiedTransaction {
    /// Rebuilds a verified transaction WITHOUT checking identities or signatures: for records
    /// the auditor already verified (reloaded from its store) and for the simulation. Still
    /// checks the limits and the token values, and computes the id and digests.
    pub fn assume_verified(
        transaction: PaymentTransaction,
    ) -> Result<VerifiedTransaction, VerifyError> {
        let user_bytes = transaction.user_signed_bytes()?;
        let id = id_of(&vendor_signed_bytes(
            &user_bytes,
            &transaction.user_signature,
        ));
        VerifiedTransaction::build(transaction, id)
    }

    fn build(
        transaction: PaymentTransaction,
        id: TransactionId,
    ) -> Result<VerifiedTransaction, VerifyError> {
        let total_value = check_tokens(&transaction.tokens)?;
        let tokens = transaction.tokens.iter().map(Token::token_ref).collect();
        Ok(VerifiedTransaction {
            id,
            tokens,
            total_value,
            transaction,
        })
    }

    /// The transaction id.
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// The digest of the bytes as submitted ([`PaymentTransaction::submission_digest`]).
    pub fn submission_digest(&self) -> [u8; 32] {
        self.transaction.submission_digest()
    }

    /// The paying user.
    pub fn user(&self) -> Pubkey {
        self.transaction.user_cert.subject
    }

    /// The vendor.
    pub fn vendor(&self) -> Pubkey {
        self.transaction.vendor_cert.subject
    }

    /// The transaction time.
    pub fn time(&self) -> i64 {
        self.transaction.time
    }

    /// The item information.
    pub fn info(&self) -> &str {
        &self.transaction.info
    }

    /// The tokens, in transaction order, with ids and digests.
    pub fn tokens(&self) -> &[TokenRef] {
        &self.tokens
    }

    /// Number of tokens (≥ 1).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The common value v of the tokens.
    pub fn token_value(&self) -> u64 {
        self.transaction.tokens.first().map_or(0, |t| t.value)
    }

    /// Sum of the token values.
    pub fn total_value(&self) -> u64 {
        self.total_value
    }

    /// The signed transaction as received.
    pub fn transaction(&self) -> &PaymentTransaction {
        &self.transaction
    }

    /// Gives the signed transaction back.
    pub fn into_transaction(self) -> PaymentTransaction {
        self.transaction
    }
}

// ---------------------------------------------------------------------------------------------
// Intake verification
// ---------------------------------------------------------------------------------------------

/// One transaction with everything needed for the signature checks.
struct Prepared {
    verified: VerifiedTransaction,
    /// `TX_VENDOR_TAG || user bytes || user signature`; the user bytes are a slice of it.
    vendor_bytes: Vec<u8>,
    user_cert_bytes: Vec<u8>,
    vendor_cert_bytes: Vec<u8>,
    token_bytes: Vec<[u8; TOKEN_SIGNING_LEN]>,
    /// (slot, signature, key), in culprit-precedence order.
    checks: Vec<(SignatureSlot, Signature, VerifyingKey)>,
}

impl Prepared {
    fn message(&self, slot: SignatureSlot) -> &[u8] {
        match slot {
            SignatureSlot::UserCertificate => &self.user_cert_bytes,
            SignatureSlot::VendorCertificate => &self.vendor_cert_bytes,
            SignatureSlot::Vendor => &self.vendor_bytes,
            SignatureSlot::User => {
                let end = self.vendor_bytes.len().saturating_sub(64);
                self.vendor_bytes
                    .get(TX_VENDOR_TAG.len()..end)
                    .unwrap_or(&[])
            }
            SignatureSlot::Token { index } => self.token_bytes.get(index).map_or(&[], |b| &b[..]),
        }
    }

    fn append<'a>(
        &'a self,
        messages: &mut Vec<&'a [u8]>,
        signatures: &mut Vec<Signature>,
        keys: &mut Vec<VerifyingKey>,
    ) {
        for (slot, signature, key) in &self.checks {
            messages.push(self.message(*slot));
            signatures.push(*signature);
            keys.push(*key);
        }
    }

    fn batch_ok(&self) -> bool {
        let mut messages = Vec::with_capacity(self.checks.len());
        let mut signatures = Vec::with_capacity(self.checks.len());
        let mut keys = Vec::with_capacity(self.checks.len());
        self.append(&mut messages, &mut signatures, &mut keys);
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    }

    /// Verifies each signature alone (strict) and names the first failure.
    fn culprit(&self) -> VerifyError {
        let tx = self.verified.transaction();
        for (slot, signature, key) in &self.checks {
            if key.verify_strict(self.message(*slot), signature).is_ok() {
                continue;
            }
            return match *slot {
                SignatureSlot::UserCertificate => VerifyError::BadCertificateSignature {
                    party: Party::User,
                    subject: tx.user(),
                },
                SignatureSlot::VendorCertificate => VerifyError::BadCertificateSignature {
                    party: Party::Vendor,
                    subject: tx.vendor(),
                },
                SignatureSlot::Vendor => VerifyError::BadVendorSignature {
                    vendor: tx.vendor(),
                },
                SignatureSlot::User => VerifyError::BadUserSignature { user: tx.user() },
                SignatureSlot::Token { index } => VerifyError::ForgedToken {
                    index,
                    token: tx.tokens.get(index).map_or(
                        TokenId {
                            bank: Pubkey::default(),
                            batch_id: 0,
                            serial: 0,
                        },
                        Token::id,
                    ),
                },
            };
        }
        VerifyError::BatchInconsistent
    }
}

fn certificate_error(party: Party, subject: Pubkey) -> impl Fn(CertError) -> VerifyError {
    move |source| VerifyError::Certificate {
        party,
        subject,
        source,
    }
}

/// Every check but the signature arithmetic.
fn prepare(
    tx: &PaymentTransaction,
    registry: &Registry,
    now: i64,
) -> Result<Prepared, VerifyError> {
    // 1. Structure and limits (and the canonical bytes).
    let user_bytes = tx.user_signed_bytes()?;
    if tx.time > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(VerifyError::TransactionFromFuture {
            time: tx.time,
            now,
            max_skew: MAX_CLOCK_SKEW_SECS,
        });
    }
    if now > tx.time.saturating_add(PAYMENT_VALIDITY_SECS) {
        return Err(VerifyError::TransactionExpired {
            time: tx.time,
            now,
            age: now.saturating_sub(tx.time),
            validity: PAYMENT_VALIDITY_SECS,
        });
    }
    // 2. Identities.
    let user = registry
        .check_certificate(&tx.user_cert, Role::User, now)
        .map_err(certificate_error(Party::User, tx.user()))?;
    let vendor = registry
        .check_certificate(&tx.vendor_cert, Role::Vendor, now)
        .map_err(certificate_error(Party::Vendor, tx.vendor()))?;
    let mut bank_keys = Vec::with_capacity(tx.tokens.len());
    for (index, token) in tx.tokens.iter().enumerate() {
        let bank = registry
            .check_subject(&token.bank, Role::Bank, now)
            .map_err(certificate_error(
                Party::Bank { token_index: index },
                token.bank,
            ))?;
        bank_keys.push(bank.subject_key);
    }
    // 3. Token sanity: values, duplicates, issue times.
    check_tokens(&tx.tokens)?;
    for (index, token) in tx.tokens.iter().enumerate() {
        if token.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(VerifyError::TokenFromFuture {
                index,
                token: token.id(),
                issued_at: token.issued_at,
                now,
            });
        }
    }
    // 4. Signature encodings (what batch verification does not check).
    let malformed = |slot| move |problem| VerifyError::MalformedSignature { slot, problem };
    check_signature_encoding(&tx.user_cert.signature)
        .map_err(malformed(SignatureSlot::UserCertificate))?;
    check_signature_encoding(&tx.vendor_cert.signature)
        .map_err(malformed(SignatureSlot::VendorCertificate))?;
    check_signature_encoding(&tx.vendor_signature).map_err(malformed(SignatureSlot::Vendor))?;
    check_signature_encoding(&tx.user_signature).map_err(malformed(SignatureSlot::User))?;
    for (index, token) in tx.tokens.iter().enumerate() {
        check_signature_encoding(&token.signature)
            .map_err(malformed(SignatureSlot::Token { index }))?;
    }

    let vendor_bytes = vendor_signed_bytes(&user_bytes, &tx.user_signature);
    let id = id_of(&vendor_bytes);
    let user_cert_bytes = tx
        .user_cert
        .signing_bytes()
        .map_err(certificate_error(Party::User, tx.user()))?;
    let vendor_cert_bytes = tx
        .vendor_cert
        .signing_bytes()
        .map_err(certificate_error(Party::Vendor, tx.vendor()))?;
    let token_bytes: Vec<[u8; TOKEN_SIGNING_LEN]> =
        tx.tokens.iter().map(Token::signing_bytes).collect();

    let mut checks = Vec::with_capacity(tx.tokens.len() + 4);
    checks.push((
        SignatureSlot::UserCertificate,
        Signature::from_bytes(&tx.user_cert.signature),
        user.issuer_key,
    ));
    checks.push((
        SignatureSlot::VendorCertificate,
        Signature::from_bytes(&tx.vendor_cert.signature),
        vendor.issuer_key,
    ));
    checks.push((
        SignatureSlot::Vendor,
        Signature::from_bytes(&tx.vendor_signature),
        vendor.subject_key,
    ));
    checks.push((
        SignatureSlot::User,
        Signature::from_bytes(&tx.user_signature),
        user.subject_key,
    ));
    for (index, (token, key)) in tx.tokens.iter().zip(bank_keys).enumerate() {
        checks.push((SignatureSlot::Token { index }, token.signature(), key));
    }

    let verified = VerifiedTransaction::build(tx.clone(), id)?;
    Ok(Prepared {
        verified,
        vendor_bytes,
        user_cert_bytes,
        vendor_cert_bytes,
        token_bytes,
        checks,
    })
}

/// The auditor's intake check of one transaction at time `now` (Unix seconds): limits,
/// certificates (user role User, vendor role Vendor, each token's bank role Bank; known,
/// unrevoked, current, trusted issuer), token values and duplicates, then ALL signatures in one
/// strict batch. See the module documentation for the precedence of errors.
pub fn verify_transaction(
    tx: &PaymentTransaction,
    registry: &Registry,
    now: i64,
) -> Result<VerifiedTransaction, VerifyError> {
    let prepared = prepare(tx, registry, now)?;
    if prepared.batch_ok() {
        Ok(prepared.verified)
    } else {
        Err(prepared.culprit())
    }
}

/// [`verify_transaction`] for many transactions with ONE batch verification of all their
/// signatures (throughput). Results are in input order. If the batch fails, each transaction is
/// re-checked alone so that honest transactions are still accepted and each culprit is named.
pub fn verify_transactions(
    txs: &[PaymentTransaction],
    registry: &Registry,
    now: i64,
) -> Vec<Result<VerifiedTransaction, VerifyError>> {
    let prepared: Vec<Result<Prepared, VerifyError>> =
        txs.iter().map(|tx| prepare(tx, registry, now)).collect();
    let count: usize = prepared.iter().flatten().map(|p| p.checks.len()).sum();
    let mut messages = Vec::with_capacity(count);
    let mut signatures = Vec::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    for p in prepared.iter().flatten() {
        p.append(&mut messages, &mut signatures, &mut keys);
    }
    let all_ok = count == 0 || ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    drop((messages, signatures, keys));
    prepared
        .into_iter()
        .map(|p| {
            let p = p?;
            if all_ok || p.batch_ok() {
                Ok(p.verified)
            } else {
                Err(p.culprit())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{pubkey_of, CertError};
    use crate::transaction::tests::{pay, world};
    use ed25519_dalek::Signer;

    #[test]
    fn transaction_round_trip_exposes_engine_view() {
        let w = world();
        let tokens = Token::sign_batch(&w.bank, 1, 5, 10, 50);
        let tx = pay(&w, tokens.clone());
        let v = verify_transaction(&tx, &w.registry, 200).unwrap();
        assert_eq!(v.id(), tx.id().unwrap());
        assert_eq!(v.user(), pubkey_of(&w.user));
        assert_eq!(v.vendor(), pubkey_of(&w.vendor));
        assert_eq!(v.token_count(), 5);
        assert_eq!(v.total_value(), 50);
        assert_eq!(v.token_value(), 10);
        for (vt, t) in v.tokens().iter().zip(&tokens) {
            assert_eq!(vt.id, t.id());
            assert_eq!(vt.digest, t.token_digest16());
            assert_eq!(vt.value, t.value);
        }
        assert_eq!(VerifiedTransaction::assume_verified(tx.clone()).unwrap(), v);
    }

    #[test]
    fn batch_of_many_transactions_names_each_culprit() {
        let w = world();
        let good1 = pay(&w, Token::sign_batch(&w.bank, 1, 3, 10, 0));
        let mut bad_vendor = pay(&w, Token::sign_batch(&w.bank, 2, 3, 10, 0));
        bad_vendor.vendor_signature = w.vendor.sign(b"something else").to_bytes();
        let good2 = pay(&w, Token::sign_batch(&w.bank, 3, 3, 10, 0));
        let mut forged = Token::sign_batch(&w.bank, 4, 3, 10, 0);
        forged[2] = Token::sign(&w.authority, 4, 2, 10, 0);
        forged[2].bank = pubkey_of(&w.bank);
        let bad_token = pay(&w, forged);
        let results = verify_transactions(
            &[good1.clone(), bad_vendor, good2.clone(), bad_token.clone()],
            &w.registry,
            50,
        );
        assert_eq!(results[0].as_ref().unwrap().id(), good1.id().unwrap());
        assert_eq!(
            results[1],
            Err(VerifyError::BadVendorSignature {
                vendor: pubkey_of(&w.vendor)
            })
        );
        assert_eq!(results[2].as_ref().unwrap().id(), good2.id().unwrap());
        assert_eq!(
            results[3],
            Err(VerifyError::ForgedToken {
                index: 2,
                token: bad_token.tokens[2].id()
            })
        );
        // All good: one batch, all accepted.
        let all = verify_transactions(&[good1, good2], &w.registry, 50);
        assert!(all.iter().all(Result::is_ok));
        assert!(verify_transactions(&[], &w.registry, 50).is_empty());
    }

    #[test]
    fn batch_of_transactions_all_refused_before_signatures() {
        let w = world();
        let mut empty = pay(&w, Token::sign_batch(&w.bank, 1, 1, 10, 0));
        empty.tokens.clear();
        let mut registry = w.registry.clone();
        registry.revoke(pubkey_of(&w.vendor));
        let revoked = pay(&w, Token::sign_batch(&w.bank, 2, 1, 10, 0));
        let results = verify_transactions(&[empty, revoked], &registry, 50);
        assert_eq!(results[0], Err(VerifyError::EmptyTokenList));
        assert!(matches!(
            results[1],
            Err(VerifyError::Certificate {
                party: Party::Vendor,
                source: CertError::Revoked { .. },
                ..
            })
        ));
    }
}
