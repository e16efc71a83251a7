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
//! same for many transactions in one batch; both live in `transaction/verify.rs`.
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
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cert::{
    b58, check_signature_encoding, pubkey_of, strict_verifying_key, Certificate, Role,
};
use crate::token::{Token, TOKEN_ENCODED_LEN};
use crate::Pubkey;

mod verify;

pub use verify::{
    verify_transaction, verify_transactions, Party, SignatureSlot, VerifiedTransaction, VerifyError,
};

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Domain tag of the user's signature.
pub const TX_USER_TAG: &[u8] = b"mupib:tx:user:v1";
/// Domain tag of the vendor's signature.
pub const TX_VENDOR_TAG: &[u8] = b"mupib:tx:vendor:v1";
/// Domain tag of the transaction id.
pub const TX_ID_TAG: &[u8] = b"mupib:tx:id:v1";
/// Domain tag of a submission digest (the whole transaction as submitted).
pub const TX_SUBMISSION_TAG: &[u8] = b"mupib:tx:submission:v1";

/// Most tokens one transaction may carry.
pub const MAX_TOKENS_PER_TRANSACTION: usize = 128;
/// Longest item information, in bytes of UTF-8.
pub const MAX_INFO_LEN: usize = 256;
/// How far in the future (seconds) a transaction time or a token issue time may be, to absorb
/// clock skew between the user, the bank and the auditor.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// How long after its time t a payment may be taken in by an auditor (seconds). Later it is
/// refused, so a vendor cannot hold a signed payment and submit it after the user spent the
/// tokens elsewhere; and a wallet treats the tokens of a payment that was never submitted as
/// free again only once this window has passed.
pub const PAYMENT_VALIDITY_SECS: i64 = 600;

/// `SHA-256(TX_ID_TAG || vendor-signed bytes)`. Displayed and serialized as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct TransactionId(pub [u8; 32]);

/// A payment transaction signed by the user and countersigned by the vendor (eq. 2). Its JSON
/// form refuses unknown fields (so do [`Certificate`] and [`Token`]): what nobody signed is an
/// error, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
pub(super) fn vendor_signed_bytes(user_bytes: &[u8], user_signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TX_VENDOR_TAG.len() + user_bytes.len() + 64);
    out.extend_from_slice(TX_VENDOR_TAG);
    out.extend_from_slice(user_bytes);
    out.extend_from_slice(user_signature);
    out
}

pub(super) fn id_of(vendor_bytes: &[u8]) -> TransactionId {
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

    /// `SHA-256(TX_SUBMISSION_TAG || borsh(whole transaction))`: the bytes as submitted,
    /// certificates and the vendor's signature included. The same id with the same digest is a
    /// resubmission; the same id with another digest is the sold payment presented again.
    pub fn submission_digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(TX_SUBMISSION_TAG);
        // Borsh into a hasher cannot fail: the writer never errors.
        let _ = borsh::to_writer(HashWriter(&mut hasher), self);
        hasher.finalize().into()
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

/// Feeds borsh output straight into a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Registry;

    pub(super) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(super) struct World {
        pub(super) registry: Registry,
        pub(super) authority: SigningKey,
        pub(super) bank: SigningKey,
        pub(super) user: SigningKey,
        pub(super) vendor: SigningKey,
        pub(super) user_cert: Certificate,
        pub(super) vendor_cert: Certificate,
    }

    pub(super) fn world() -> World {
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

    pub(super) fn pay(w: &World, tokens: Vec<Token>) -> PaymentTransaction {
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
    fn json_with_a_field_nobody_signed_is_refused() {
        let w = world();
        let tokens = Token::sign_batch(&w.bank, 1, 1, 10, 50);
        let tx = pay(&w, tokens);
        let json = serde_json::to_value(&tx).unwrap();
        assert_eq!(
            serde_json::from_value::<PaymentTransaction>(json.clone()).unwrap(),
            tx
        );
        for pointer in ["", "/user_cert", "/vendor_cert", "/tokens/0"] {
            let mut extra = json.clone();
            extra
                .pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("bonus".into(), serde_json::json!(1));
            let error = serde_json::from_value::<PaymentTransaction>(extra).unwrap_err();
            assert!(
                error.to_string().contains("unknown field"),
                "{pointer}: {error}"
            );
        }
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
