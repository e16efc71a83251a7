//! Payment transactions (paper eq. 2) and the auditor's intake verification.
//!
//! `Tr_{u,m,t} = <Cert_u, Cert_m, t, TOK, INF, Sig_m(Sig_u(t, TOK, INF))>` (eq. 2):
//! - the user signs `TX_USER_TAG || borsh(user key, vendor key, time, tokens, info)`;
//! - the vendor signs `TX_VENDOR_TAG || user-signed bytes || user signature`;
//! - the [`TransactionId`] is `SHA-256(TX_ID_TAG || vendor-signed bytes)`: the same transaction
//!   presented twice has the same id (replay / double selling is visible), any change gives
//!   another id.
//!
//! [`verify_transaction`] is the intake check: certificates and roles against the [`Registry`],
//! token sanity, then every signature of the transaction (both certificates, every token's bank
//! signature, the user's and the vendor's) in ONE ed25519 batch verification, after the strict
//! encoding checks batch verification does not do (canonical `S`, canonical and not small-order
//! `R`; keys are checked when they enter the registry). When the batch fails, each signature is
//! verified alone with `verify_strict` to name the culprit. [`verify_transactions`] does the
//! same for many transactions in one batch.
//!
//! Order of the checks (the first failure is reported): limits (token count, info length);
//! transaction time; user certificate, vendor certificate, then each token's bank; token values,
//! duplicates and issue times; signature encodings; the batch.
//!
//! Culprit precedence when several signatures fail: certificates, then the vendor signature
//! (the outermost: a message altered in transit), then the user signature, then the tokens in
//! order (a user who signed over a forged token).
//!
//! Limitation (documented, not exploitable by third parties): batch verification is
//! cofactorless, so a key holder who deliberately adds a small-order component to its own `R`
//! can produce a signature that the batch accepts with probability ≤ 1/2 while `verify_strict`
//! refuses it. It cannot forge anyone else's signature nor change a signed message; the keys
//! themselves are torsion-free (checked at registration).

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cert::{
    b58, check_signature_encoding, pubkey_of, strict_verifying_key, CertError, Certificate,
    Registry, Role, SignatureProblem,
};
use crate::token::{Token, TokenId, TokenRef, TOKEN_ENCODED_LEN, TOKEN_SIGNING_LEN};
use crate::Pubkey;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Domain tag of the user's signature.
pub const TX_USER_TAG: &[u8] = b"mupib:tx:user:v1";
/// Domain tag of the vendor's signature.
pub const TX_VENDOR_TAG: &[u8] = b"mupib:tx:vendor:v1";
/// Domain tag of the transaction id.
pub const TX_ID_TAG: &[u8] = b"mupib:tx:id:v1";

/// Most tokens one transaction may carry.
pub const MAX_TOKENS_PER_TRANSACTION: usize = 128;
/// Longest item information, in bytes of UTF-8.
pub const MAX_INFO_LEN: usize = 256;
/// How far in the future (seconds) a transaction time or a token issue time may be, to absorb
/// clock skew between the user, the bank and the auditor.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// `SHA-256(TX_ID_TAG || vendor-signed bytes)`. Displayed and serialized as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct TransactionId(pub [u8; 32]);

/// A payment transaction signed by the user and countersigned by the vendor (eq. 2).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PaymentTransaction {
    /// The paying user's certificate (role [`Role::User`]).
    pub user_cert: Certificate,
    /// The selling vendor's certificate (role [`Role::Vendor`]).
    pub vendor_cert: Certificate,
    /// Time of creation t (Unix seconds).
    pub time: i64,
    /// The tokens paid (TOK).
    pub tokens: Vec<Token>,
    /// Item information (INF), at most [`MAX_INFO_LEN`] bytes.
    pub info: String,
    /// The user's signature over [`PaymentTransaction::user_signed_bytes`].
    #[serde(with = "b58::signature")]
    pub user_signature: [u8; 64],
    /// The vendor's signature over [`PaymentTransaction::vendor_signed_bytes`].
    #[serde(with = "b58::signature")]
    pub vendor_signature: [u8; 64],
}

/// A transaction signed by the user, not yet by the vendor (message 2 of the protocol).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct UserSignedPayment {
    /// The paying user's certificate.
    pub user_cert: Certificate,
    /// The selling vendor's certificate.
    pub vendor_cert: Certificate,
    /// Time of creation.
    pub time: i64,
    /// The tokens paid.
    pub tokens: Vec<Token>,
    /// Item information.
    pub info: String,
    /// The user's signature.
    #[serde(with = "b58::signature")]
    pub user_signature: [u8; 64],
}

/// Errors while building or encoding a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// No token.
    #[error("a payment transaction must carry at least one token")]
    EmptyTokenList,
    /// Too many tokens.
    #[error("a payment transaction carries {count} tokens, the limit is {max}: split the payment")]
    TooManyTokens {
        /// Tokens carried.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The item information is too long.
    #[error("item information is {len} bytes long, the limit is {max}: shorten it")]
    InfoTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The signing key is not the certificate's subject.
    #[error("the {role} signing key {signing_key} is not the subject {certificate_subject} of the {role} certificate: sign with the certified key")]
    KeyMismatch {
        /// Which party.
        role: Role,
        /// The certificate's subject.
        certificate_subject: Pubkey,
        /// The key that tried to sign.
        signing_key: Pubkey,
    },
    /// The user's signature is malformed or invalid (the vendor refuses to countersign).
    #[error("the user's signature on this payment does not verify: refuse the payment")]
    BadUserSignature {
        /// The user.
        user: Pubkey,
    },
    /// Canonical encoding failed (cannot happen within the limits).
    #[error("transaction encoding failed: {0}")]
    Encoding(String),
}

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

// ---------------------------------------------------------------------------------------------
// Transaction id
// ---------------------------------------------------------------------------------------------

impl TransactionId {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({})", self.to_hex())
    }
}

impl FromStr for TransactionId {
    type Err = String;

    fn from_str(text: &str) -> Result<TransactionId, String> {
        let bytes =
            hex::decode(text).map_err(|e| format!("transaction id {text:?} is not hex: {e}"))?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("transaction id has {} bytes, expected 32", bytes.len()))?;
        Ok(TransactionId(array))
    }
}

impl Serialize for TransactionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TransactionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TransactionId, D::Error> {
        let text = <String as Deserialize>::deserialize(d)?;
        TransactionId::from_str(&text).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical bytes
// ---------------------------------------------------------------------------------------------

#[derive(BorshSerialize)]
struct UserSignedBody<'a> {
    user: &'a Pubkey,
    vendor: &'a Pubkey,
    time: i64,
    tokens: &'a [Token],
    info: &'a str,
}

fn check_limits(tokens: &[Token], info: &str) -> Result<(), TransactionError> {
    if tokens.is_empty() {
        return Err(TransactionError::EmptyTokenList);
    }
    if tokens.len() > MAX_TOKENS_PER_TRANSACTION {
        return Err(TransactionError::TooManyTokens {
            count: tokens.len(),
            max: MAX_TOKENS_PER_TRANSACTION,
        });
    }
    if info.len() > MAX_INFO_LEN {
        return Err(TransactionError::InfoTooLong {
            len: info.len(),
            max: MAX_INFO_LEN,
        });
    }
    Ok(())
}

/// `TX_USER_TAG || borsh(user, vendor, time, tokens, info)`, after the limit checks.
fn user_signed_bytes(
    user: &Pubkey,
    vendor: &Pubkey,
    time: i64,
    tokens: &[Token],
    info: &str,
) -> Result<Vec<u8>, TransactionError> {
    check_limits(tokens, info)?;
    let body = UserSignedBody {
        user,
        vendor,
        time,
        tokens,
        info,
    };
    let capacity =
        TX_USER_TAG.len() + 32 + 32 + 8 + 4 + tokens.len() * TOKEN_ENCODED_LEN + 4 + info.len();
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(TX_USER_TAG);
    body.serialize(&mut out)
        .map_err(|e| TransactionError::Encoding(e.to_string()))?;
    Ok(out)
}

/// `TX_VENDOR_TAG || user-signed bytes || user signature`.
fn vendor_signed_bytes(user_bytes: &[u8], user_signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TX_VENDOR_TAG.len() + user_bytes.len() + 64);
    out.extend_from_slice(TX_VENDOR_TAG);
    out.extend_from_slice(user_bytes);
    out.extend_from_slice(user_signature);
    out
}

fn id_of(vendor_bytes: &[u8]) -> TransactionId {
    TransactionId(
        Sha256::new()
            .chain_update(TX_ID_TAG)
            .chain_update(vendor_bytes)
            .finalize()
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

impl PaymentTransaction {
    /// Step 1 (message 2): the user signs the payment. `user_key` must be the subject of
    /// `user_cert`. Refuses an empty token list, too many tokens and overlong info.
    pub fn user_sign(
        user_key: &SigningKey,
        user_cert: Certificate,
        vendor_cert: Certificate,
        time: i64,
        tokens: Vec<Token>,
        info: impl Into<String>,
    ) -> Result<UserSignedPayment, TransactionError> {
        let signing_key = pubkey_of(user_key);
        if signing_key != user_cert.subject {
            return Err(TransactionError::KeyMismatch {
                role: Role::User,
                certificate_subject: user_cert.subject,
                signing_key,
            });
        }
        let info = info.into();
        let bytes = user_signed_bytes(
            &user_cert.subject,
            &vendor_cert.subject,
            time,
            &tokens,
            &info,
        )?;
        let user_signature = user_key.sign(&bytes).to_bytes();
        Ok(UserSignedPayment {
            user_cert,
            vendor_cert,
            time,
            tokens,
            info,
            user_signature,
        })
    }

    /// The user's key.
    pub fn user(&self) -> Pubkey {
        self.user_cert.subject
    }

    /// The vendor's key.
    pub fn vendor(&self) -> Pubkey {
        self.vendor_cert.subject
    }

    /// The bytes the user signs.
    pub fn user_signed_bytes(&self) -> Result<Vec<u8>, TransactionError> {
        user_signed_bytes(
            &self.user(),
            &self.vendor(),
            self.time,
            &self.tokens,
            &self.info,
        )
    }

    /// The bytes the vendor signs.
    pub fn vendor_signed_bytes(&self) -> Result<Vec<u8>, TransactionError> {
        Ok(vendor_signed_bytes(
            &self.user_signed_bytes()?,
            &self.user_signature,
        ))
    }

    /// The transaction id (needs no signature check; fails only on limit violations).
    pub fn id(&self) -> Result<TransactionId, TransactionError> {
        Ok(id_of(&self.vendor_signed_bytes()?))
    }

    /// Sum of the token values (checked).
    pub fn total_value(&self) -> Option<u64> {
        self.tokens
            .iter()
            .try_fold(0u64, |sum, token| sum.checked_add(token.value))
    }
}

impl UserSignedPayment {
    /// The bytes the user signed.
    pub fn user_signed_bytes(&self) -> Result<Vec<u8>, TransactionError> {
        user_signed_bytes(
            &self.user_cert.subject,
            &self.vendor_cert.subject,
            self.time,
            &self.tokens,
            &self.info,
        )
    }

    /// Checks the user's signature strictly (what a vendor does before countersigning).
    pub fn verify_user_signature(&self) -> Result<(), TransactionError> {
        let user = self.user_cert.subject;
        let bad = || TransactionError::BadUserSignature { user };
        check_signature_encoding(&self.user_signature).map_err(|_| bad())?;
        let key = strict_verifying_key(&user).map_err(|_| bad())?;
        key.verify_strict(
            &self.user_signed_bytes()?,
            &Signature::from_bytes(&self.user_signature),
        )
        .map_err(|_| bad())
    }

    /// Step 2 (message 3): the vendor checks the user's signature and countersigns.
    /// `vendor_key` must be the subject of `vendor_cert`. The vendor should also run
    /// [`verify_transaction`] on the result against its registry before delivering anything.
    pub fn countersign(
        self,
        vendor_key: &SigningKey,
    ) -> Result<PaymentTransaction, TransactionError> {
        let signing_key = pubkey_of(vendor_key);
        if signing_key != self.vendor_cert.subject {
            return Err(TransactionError::KeyMismatch {
                role: Role::Vendor,
                certificate_subject: self.vendor_cert.subject,
                signing_key,
            });
        }
        self.verify_user_signature()?;
        let vendor_bytes = vendor_signed_bytes(&self.user_signed_bytes()?, &self.user_signature);
        let vendor_signature = vendor_key.sign(&vendor_bytes).to_bytes();
        Ok(PaymentTransaction {
            user_cert: self.user_cert,
            vendor_cert: self.vendor_cert,
            time: self.time,
            tokens: self.tokens,
            info: self.info,
            user_signature: self.user_signature,
            vendor_signature,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Verified transaction
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    struct World {
        registry: Registry,
        authority: SigningKey,
        bank: SigningKey,
        user: SigningKey,
        vendor: SigningKey,
        user_cert: Certificate,
        vendor_cert: Certificate,
    }

    fn world() -> World {
        let authority = key(1);
        let (bank, user, vendor) = (key(2), key(3), key(4));
        let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
        let issue = |k: &SigningKey, role, name| {
            Certificate::issue(&authority, pubkey_of(k), role, name, 0, 10_000).unwrap()
        };
        let user_cert = issue(&user, Role::User, "user");
        let vendor_cert = issue(&vendor, Role::Vendor, "vendor");
        registry.register(issue(&bank, Role::Bank, "bank")).unwrap();
        registry.register(user_cert.clone()).unwrap();
        registry.register(vendor_cert.clone()).unwrap();
        World {
            registry,
            authority,
            bank,
            user,
            vendor,
            user_cert,
            vendor_cert,
        }
    }

    fn pay(w: &World, tokens: Vec<Token>) -> PaymentTransaction {
        PaymentTransaction::user_sign(
            &w.user,
            w.user_cert.clone(),
            w.vendor_cert.clone(),
            100,
            tokens,
            "coffee",
        )
        .unwrap()
        .countersign(&w.vendor)
        .unwrap()
    }

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
    fn signed_bytes_layout() {
        let w = world();
        let tx = pay(&w, Token::sign_batch(&w.bank, 1, 2, 10, 50));
        let user_bytes = tx.user_signed_bytes().unwrap();
        let mut expected = TX_USER_TAG.to_vec();
        expected.extend(
            borsh::to_vec(&(
                tx.user(),
                tx.vendor(),
                tx.time,
                tx.tokens.clone(),
                tx.info.clone(),
            ))
            .unwrap(),
        );
        assert_eq!(user_bytes, expected);
        let vendor_bytes = tx.vendor_signed_bytes().unwrap();
        let mut expected_v = TX_VENDOR_TAG.to_vec();
        expected_v.extend(&user_bytes);
        expected_v.extend(tx.user_signature);
        assert_eq!(vendor_bytes, expected_v);
        let mut id_pre = TX_ID_TAG.to_vec();
        id_pre.extend(&vendor_bytes);
        assert_eq!(
            tx.id().unwrap().0,
            <[u8; 32]>::from(Sha256::digest(&id_pre))
        );
    }

    #[test]
    fn limits_enforced() {
        let w = world();
        let sign = |tokens: Vec<Token>, info: String| {
            PaymentTransaction::user_sign(
                &w.user,
                w.user_cert.clone(),
                w.vendor_cert.clone(),
                1,
                tokens,
                info,
            )
        };
        assert_eq!(
            sign(vec![], String::new()).unwrap_err(),
            TransactionError::EmptyTokenList
        );
        let many = Token::sign_batch(&w.bank, 1, 129, 1, 0);
        assert_eq!(
            sign(many, String::new()).unwrap_err(),
            TransactionError::TooManyTokens {
                count: 129,
                max: MAX_TOKENS_PER_TRANSACTION
            }
        );
        let one = Token::sign_batch(&w.bank, 1, 1, 1, 0);
        assert_eq!(
            sign(one.clone(), "x".repeat(257)).unwrap_err(),
            TransactionError::InfoTooLong {
                len: 257,
                max: MAX_INFO_LEN
            }
        );
        // The limits are exact.
        sign(Token::sign_batch(&w.bank, 1, 128, 1, 0), "x".repeat(256)).unwrap();
        // Signing with a key that is not the certified user.
        assert!(matches!(
            PaymentTransaction::user_sign(
                &w.vendor,
                w.user_cert.clone(),
                w.vendor_cert.clone(),
                1,
                one,
                ""
            ),
            Err(TransactionError::KeyMismatch {
                role: Role::User,
                ..
            })
        ));
    }

    #[test]
    fn vendor_refuses_to_countersign_bad_user_signature() {
        let w = world();
        let mut signed = PaymentTransaction::user_sign(
            &w.user,
            w.user_cert.clone(),
            w.vendor_cert.clone(),
            1,
            Token::sign_batch(&w.bank, 1, 1, 5, 0),
            "",
        )
        .unwrap();
        signed.info = "changed".into();
        assert_eq!(
            signed.clone().countersign(&w.vendor).unwrap_err(),
            TransactionError::BadUserSignature {
                user: pubkey_of(&w.user)
            }
        );
        assert!(matches!(
            signed.countersign(&w.user),
            Err(TransactionError::KeyMismatch {
                role: Role::Vendor,
                ..
            })
        ));
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

    #[test]
    fn transaction_id_hex_round_trip() {
        let w = world();
        let id = pay(&w, Token::sign_batch(&w.bank, 1, 1, 10, 0))
            .id()
            .unwrap();
        assert_eq!(id.to_string().parse::<TransactionId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TransactionId>(&json).unwrap(), id);
        assert!("00".parse::<TransactionId>().is_err());
        assert!("zz".parse::<TransactionId>().is_err());
    }
}
