//! Bank-signed payment tokens (paper eq. 1), their digest and their on-chain commitment
//! (SPEC §2; DESIGN "Token and commitment").
//!
//! `tok_{B,s} = <Cert_B, s, v, t_{B,s}, Sig_B(s, v, t_{B,s})>` (eq. 1). Here the bank is named by
//! its key (its certificate is looked up in the [`Registry`]) and the signature covers
//! `TOKEN_SIGN_TAG || borsh(bank, batch_id, serial, value, issued_at)`.
//!
//! - **digest**: `SHA-256(TOKEN_DIGEST_TAG || borsh(all fields including the signature))`;
//!   the chain sees its first 16 bytes ([`TokenDigest16`]).
//! - **commitment**: `SHA-256(COMMITMENT_TAG || digest16)[..16]`, what a batch stores on-chain.
//!   Only a holder of the token can compute the digest that opens it.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cert::{
    b58, check_signature_encoding, pubkey_of, strict_verifying_key, CertError, Certificate,
    KeyProblem, Registry, Role, SignatureProblem,
};
use crate::Pubkey;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Domain tag of the bank's token signature.
pub const TOKEN_SIGN_TAG: &[u8] = b"mupib:token:sign:v1";
/// Domain tag of the token digest.
pub const TOKEN_DIGEST_TAG: &[u8] = b"mupib:token:digest:v1";
/// Domain tag of a commitment; equal to `mupib::constants::COMMITMENT_TAG`.
pub const COMMITMENT_TAG: &[u8] = b"mupib:commitment:v1";
/// Length of a truncated digest and of a commitment (equal to `mupib::constants::COMMITMENT_LEN`).
pub const COMMITMENT_LEN: usize = 16;

/// Length of the borsh encoding of the signed fields: bank 32, batch_id 8, serial 4, value 8,
/// issued_at 8.
pub const TOKEN_FIELDS_LEN: usize = 60;
/// Length of the borsh encoding of a whole token (fields + 64-byte signature).
pub const TOKEN_ENCODED_LEN: usize = TOKEN_FIELDS_LEN + 64;
/// Length of the bytes the bank signs.
pub const TOKEN_SIGNING_LEN: usize = TOKEN_SIGN_TAG.len() + TOKEN_FIELDS_LEN;

/// The first 16 bytes of a token digest: what a verification entry carries on-chain.
pub type TokenDigest16 = [u8; COMMITMENT_LEN];
/// `SHA-256(COMMITMENT_TAG || digest16)[..16]`: what a batch stores per token.
pub type Commitment = [u8; COMMITMENT_LEN];

/// A payment token signed by its bank (paper eq. 1). Borsh field order is the canonical order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// The issuing bank's key.
    #[serde(with = "b58::pubkey")]
    pub bank: Pubkey,
    /// The batch the bank published the token in.
    pub batch_id: u64,
    /// Index of the token inside its batch, `0 .. token_count`.
    pub serial: u32,
    /// Value v in the smallest unit of the payment mint.
    pub value: u64,
    /// Issue time t_{B,s} (Unix seconds).
    pub issued_at: i64,
    /// The bank's ed25519 signature over [`Token::signing_bytes`].
    #[serde(with = "b58::signature")]
    pub signature: [u8; 64],
}

/// A token's identity: `(bank, batch_id, serial)`. Displayed as `bank:batch_id:serial`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct TokenId {
    /// The issuing bank.
    #[serde(with = "b58::pubkey")]
    pub bank: Pubkey,
    /// The batch.
    pub batch_id: u64,
    /// The serial inside the batch.
    pub serial: u32,
}

/// A bank-signed token as the auditor keeps it and sends it to the chain: its identity, its
/// value v and its 16-byte digest (what the program hashes into the commitment). The one
/// off-chain shape of a token in a stored transaction and in a block; the chain crate converts
/// it to the program's verification entry (`mupib::instructions::TokenEntry`) at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenRef {
    /// `(bank, batch_id, serial)`.
    pub id: TokenId,
    /// The token value v in the payment mint's base units.
    pub value: u64,
    /// The token digest truncated to 16 bytes.
    pub digest: TokenDigest16,
}

/// Errors of token verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The bank's certificate is unusable (unknown, revoked, expired, wrong role...).
    #[error("token {token}: bank certificate refused: {source}")]
    BankCertificate {
        /// The token.
        token: TokenId,
        /// Why.
        source: CertError,
    },
    /// The certificate given is not the bank's.
    #[error(
        "token {token} is issued by {bank}, but the certificate given is for {certificate_subject}"
    )]
    CertificateSubjectMismatch {
        /// The token.
        token: TokenId,
        /// The token's bank.
        bank: Pubkey,
        /// The certificate's subject.
        certificate_subject: Pubkey,
    },
    /// The bank key is unusable.
    #[error("token {token}: bank key refused: {problem}")]
    InvalidBankKey {
        /// The token.
        token: TokenId,
        /// Why.
        problem: KeyProblem,
    },
    /// The signature is malformed (non-canonical or small-order encoding).
    #[error("token {token}: malformed bank signature: {problem}")]
    MalformedSignature {
        /// The token.
        token: TokenId,
        /// Why.
        problem: SignatureProblem,
    },
    /// The bank signature does not match the token content: forged, or a field was altered.
    #[error("token {token}: the bank signature does not match the token's content: the token is forged or one of its fields was altered")]
    Forged {
        /// The token.
        token: TokenId,
    },
}

// ---------------------------------------------------------------------------------------------
// Logic
// ---------------------------------------------------------------------------------------------

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.bank, self.batch_id, self.serial)
    }
}

impl FromStr for TokenId {
    type Err = String;

    /// Parses `bank:batch_id:serial`.
    fn from_str(text: &str) -> Result<TokenId, String> {
        let mut parts = text.split(':');
        let (Some(bank), Some(batch_id), Some(serial), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "token id {text:?} is not of the form bank:batch_id:serial"
            ));
        };
        Ok(TokenId {
            bank: Pubkey::from_str(bank).map_err(|e| format!("token id bank {bank:?}: {e}"))?,
            batch_id: batch_id
                .parse()
                .map_err(|e| format!("token id batch_id {batch_id:?}: {e}"))?,
            serial: serial
                .parse()
                .map_err(|e| format!("token id serial {serial:?}: {e}"))?,
        })
    }
}

/// `SHA-256(COMMITMENT_TAG || digest16)[..16]`: the commitment of a token whose truncated digest
/// is `digest16` (what the program recomputes for each verified token).
pub fn commitment_of(digest16: &TokenDigest16) -> Commitment {
    let hash = Sha256::new()
        .chain_update(COMMITMENT_TAG)
        .chain_update(digest16)
        .finalize();
    let mut out = [0u8; COMMITMENT_LEN];
    out.copy_from_slice(&hash[..COMMITMENT_LEN]);
    out
}

impl Token {
    /// Issues (signs) one token with the bank's key.
    pub fn sign(
        bank_key: &SigningKey,
        batch_id: u64,
        serial: u32,
        value: u64,
        issued_at: i64,
    ) -> Token {
        let mut token = Token {
            bank: pubkey_of(bank_key),
            batch_id,
            serial,
            value,
            issued_at,
            signature: [0; 64],
        };
        token.signature = bank_key.sign(&token.signing_bytes()).to_bytes();
        token
    }

    /// Issues a whole batch: serials `0 .. token_count`, all of value `value`.
    pub fn sign_batch(
        bank_key: &SigningKey,
        batch_id: u64,
        token_count: u32,
        value: u64,
        issued_at: i64,
    ) -> Vec<Token> {
        (0..token_count)
            .map(|serial| Token::sign(bank_key, batch_id, serial, value, issued_at))
            .collect()
    }

    /// The token's identity.
    pub fn id(&self) -> TokenId {
        TokenId {
            bank: self.bank,
            batch_id: self.batch_id,
            serial: self.serial,
        }
    }

    fn write_fields(&self, out: &mut [u8]) {
        out[0..32].copy_from_slice(self.bank.as_array());
        out[32..40].copy_from_slice(&self.batch_id.to_le_bytes());
        out[40..44].copy_from_slice(&self.serial.to_le_bytes());
        out[44..52].copy_from_slice(&self.value.to_le_bytes());
        out[52..60].copy_from_slice(&self.issued_at.to_le_bytes());
    }

    /// The bytes the bank signs: `TOKEN_SIGN_TAG || borsh(bank, batch_id, serial, value,
    /// issued_at)` (written directly; a test checks it equals borsh).
    pub fn signing_bytes(&self) -> [u8; TOKEN_SIGNING_LEN] {
        let mut out = [0u8; TOKEN_SIGNING_LEN];
        out[..TOKEN_SIGN_TAG.len()].copy_from_slice(TOKEN_SIGN_TAG);
        self.write_fields(&mut out[TOKEN_SIGN_TAG.len()..]);
        out
    }

    /// The canonical encoding of the whole token, `borsh(self)`.
    pub fn canonical_bytes(&self) -> [u8; TOKEN_ENCODED_LEN] {
        let mut out = [0u8; TOKEN_ENCODED_LEN];
        self.write_fields(&mut out[..TOKEN_FIELDS_LEN]);
        out[TOKEN_FIELDS_LEN..].copy_from_slice(&self.signature);
        out
    }

    /// `SHA-256(TOKEN_DIGEST_TAG || borsh(all fields including the signature))`.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(TOKEN_DIGEST_TAG)
            .chain_update(self.canonical_bytes())
            .finalize()
            .into()
    }

    /// What the auditor keeps of this token and sends on-chain: id, value, 16-byte digest.
    pub fn token_ref(&self) -> TokenRef {
        TokenRef {
            id: self.id(),
            value: self.value,
            digest: self.token_digest16(),
        }
    }

    /// The first 16 bytes of [`Token::digest`]: what the auditor sends on-chain.
    pub fn token_digest16(&self) -> TokenDigest16 {
        let digest = self.digest();
        let mut out = [0u8; COMMITMENT_LEN];
        out.copy_from_slice(&digest[..COMMITMENT_LEN]);
        out
    }

    /// The commitment the bank publishes for this token.
    pub fn commitment(&self) -> Commitment {
        commitment_of(&self.token_digest16())
    }

    /// The signature as an ed25519 value.
    pub fn signature(&self) -> Signature {
        Signature::from_bytes(&self.signature)
    }

    /// Verifies the bank signature strictly against an already decoded bank key.
    pub(crate) fn verify_signature_with(&self, bank_key: &VerifyingKey) -> Result<(), TokenError> {
        check_signature_encoding(&self.signature).map_err(|problem| {
            TokenError::MalformedSignature {
                token: self.id(),
                problem,
            }
        })?;
        bank_key
            .verify_strict(&self.signing_bytes(), &self.signature())
            .map_err(|_| TokenError::Forged { token: self.id() })
    }

    /// Verifies the bank signature strictly against the key in [`Token::bank`] (no certificate
    /// check: see [`Token::verify`]).
    pub fn verify_signature(&self) -> Result<(), TokenError> {
        let bank_key =
            strict_verifying_key(&self.bank).map_err(|problem| TokenError::InvalidBankKey {
                token: self.id(),
                problem,
            })?;
        self.verify_signature_with(&bank_key)
    }

    /// Verifies the token against its bank's certificate: the certificate's subject is the
    /// token's bank, its role is [`Role::Bank`], it is valid at `now`, and the signature holds.
    /// The certificate's own signature and issuer are not checked here (use a [`Registry`]).
    pub fn verify_with_certificate(
        &self,
        bank_certificate: &Certificate,
        now: i64,
    ) -> Result<(), TokenError> {
        if bank_certificate.subject != self.bank {
            return Err(TokenError::CertificateSubjectMismatch {
                token: self.id(),
                bank: self.bank,
                certificate_subject: bank_certificate.subject,
            });
        }
        bank_certificate
            .check_role(Role::Bank)
            .and_then(|()| bank_certificate.check_window(now))
            .map_err(|source| TokenError::BankCertificate {
                token: self.id(),
                source,
            })?;
        self.verify_signature()
    }

    /// Verifies the token against the registry: the bank holds a current, unrevoked
    /// [`Role::Bank`] certificate and its signature holds.
    pub fn verify(&self, registry: &Registry, now: i64) -> Result<(), TokenError> {
        let bank = registry
            .check_subject(&self.bank, Role::Bank, now)
            .map_err(|source| TokenError::BankCertificate {
                token: self.id(),
                source,
            })?;
        self.verify_signature_with(&bank.subject_key)
    }
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

    fn registry_with_bank(bank: &SigningKey) -> Registry {
        let authority = key(1);
        let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
        registry
            .register(
                Certificate::issue(&authority, pubkey_of(bank), Role::Bank, "bank", 0, 1_000)
                    .unwrap(),
            )
            .unwrap();
        registry
    }

    #[test]
    fn token_sign_verify_round_trip() {
        let bank = key(10);
        let registry = registry_with_bank(&bank);
        let token = Token::sign(&bank, 7, 3, 100, 50);
        assert_eq!(token.bank, pubkey_of(&bank));
        assert_eq!(
            token.id(),
            TokenId {
                bank: token.bank,
                batch_id: 7,
                serial: 3
            }
        );
        token.verify_signature().unwrap();
        token.verify(&registry, 500).unwrap();
        let cert = registry.certificate(&token.bank).unwrap();
        token.verify_with_certificate(cert, 500).unwrap();
    }

    #[test]
    fn token_bytes_equal_borsh() {
        let token = Token::sign(&key(10), u64::MAX - 1, 0x0102_0304, 999, -5);
        assert_eq!(
            token.canonical_bytes().to_vec(),
            borsh::to_vec(&token).unwrap()
        );
        let fields = (
            token.bank,
            token.batch_id,
            token.serial,
            token.value,
            token.issued_at,
        );
        let mut expected = TOKEN_SIGN_TAG.to_vec();
        expected.extend(borsh::to_vec(&fields).unwrap());
        assert_eq!(token.signing_bytes().to_vec(), expected);
        assert_eq!(
            borsh::from_slice::<Token>(&token.canonical_bytes()).unwrap(),
            token
        );
    }

    #[test]
    fn token_digest_and_commitment_definitions() {
        let token = Token::sign(&key(10), 1, 2, 3, 4);
        let mut preimage = b"mupib:token:digest:v1".to_vec();
        preimage.extend(borsh::to_vec(&token).unwrap());
        let digest: [u8; 32] = Sha256::digest(&preimage).into();
        assert_eq!(token.digest(), digest);
        assert_eq!(token.token_digest16()[..], digest[..16]);
        let mut preimage = b"mupib:commitment:v1".to_vec();
        preimage.extend_from_slice(&digest[..16]);
        assert_eq!(token.commitment()[..], Sha256::digest(&preimage)[..16]);
        // The signature is part of the digest: a different signature, a different digest.
        let mut other = token;
        other.signature[0] ^= 1;
        assert_ne!(other.digest(), token.digest());
    }

    /// Fixed test vector: bank key from the seed [10; 32], batch 1, serial 2, value 3, time 4.
    /// Recompute with any SHA-256/ed25519 implementation to check another client.
    #[test]
    fn token_commitment_test_vector() {
        let token = Token::sign(&key(10), 1, 2, 3, 4);
        assert_eq!(hex::encode(token.bank.to_bytes()), TEST_VECTOR_BANK);
        assert_eq!(hex::encode(token.signature), TEST_VECTOR_SIGNATURE);
        assert_eq!(hex::encode(token.token_digest16()), TEST_VECTOR_DIGEST16);
        assert_eq!(hex::encode(token.commitment()), TEST_VECTOR_COMMITMENT);
    }

    // Computed independently with Python (`hashlib`, `cryptography`'s Ed25519):
    // fields = pk || pack('<QIQq', 1, 2, 3, 4); sig = sign(b"mupib:token:sign:v1" + fields);
    // digest = sha256(b"mupib:token:digest:v1" + fields + sig);
    // commitment = sha256(b"mupib:commitment:v1" + digest[:16])[:16].
    const TEST_VECTOR_BANK: &str =
        "43a72e714401762df66b68c26dfbdf2682aaec9f2474eca4613e424a0fbafd3c";
    const TEST_VECTOR_SIGNATURE: &str = "ddfd5c4becdeda10ab5826adf297aaea5aa176a3c1018a102e8c8a79a4c0aaf676231a260515cc050101643cc04baf09a2a59800aa75db83956f18808aae4e09";
    const TEST_VECTOR_DIGEST16: &str = "5ba8f5129b67997e78a343ef83fe1e7e";
    const TEST_VECTOR_COMMITMENT: &str = "25be987cfee11d994b4077d6c6a79d2f";

    #[test]
    fn forged_token_rejected() {
        let bank = key(10);
        let registry = registry_with_bank(&bank);
        // A forger signs with its own key but names the bank.
        let mut forged = Token::sign(&key(66), 7, 3, 100, 50);
        forged.bank = pubkey_of(&bank);
        assert_eq!(
            forged.verify(&registry, 500),
            Err(TokenError::Forged { token: forged.id() })
        );
    }

    #[test]
    fn altered_token_fields_rejected() {
        let bank = key(10);
        let registry = registry_with_bank(&bank);
        let token = Token::sign(&bank, 7, 3, 100, 50);
        let alterations: [fn(&mut Token); 5] = [
            |t| t.batch_id += 1,
            |t| t.serial += 1,
            |t| t.value += 1,
            |t| t.issued_at -= 1,
            |t| t.signature[5] ^= 0x10,
        ];
        for alter in alterations {
            let mut altered = token;
            alter(&mut altered);
            assert_eq!(
                altered.verify(&registry, 500),
                Err(TokenError::Forged {
                    token: altered.id()
                })
            );
        }
        // Changing the bank points to an identity the registry does not know.
        let mut altered = token;
        altered.bank = pubkey_of(&key(11));
        assert!(matches!(
            altered.verify(&registry, 500),
            Err(TokenError::BankCertificate {
                source: CertError::UnknownIdentity { .. },
                ..
            })
        ));
    }

    #[test]
    fn token_from_non_bank_rejected() {
        let authority = key(1);
        let user = key(12);
        let mut registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
        registry
            .register(
                Certificate::issue(&authority, pubkey_of(&user), Role::User, "u", 0, 1_000)
                    .unwrap(),
            )
            .unwrap();
        let token = Token::sign(&user, 1, 0, 10, 0);
        assert!(matches!(
            token.verify(&registry, 5),
            Err(TokenError::BankCertificate {
                source: CertError::WrongRole { .. },
                ..
            })
        ));
        let cert = registry.certificate(&token.bank).unwrap();
        assert!(matches!(
            token.verify_with_certificate(cert, 5),
            Err(TokenError::BankCertificate {
                source: CertError::WrongRole { .. },
                ..
            })
        ));
        let other = registry_with_bank(&key(10));
        let bank_cert = other.certificate(&pubkey_of(&key(10))).unwrap();
        assert!(matches!(
            token.verify_with_certificate(bank_cert, 5),
            Err(TokenError::CertificateSubjectMismatch { .. })
        ));
    }

    #[test]
    fn token_with_expired_bank_certificate_rejected() {
        let bank = key(10);
        let registry = registry_with_bank(&bank);
        let token = Token::sign(&bank, 7, 3, 100, 50);
        assert!(matches!(
            token.verify(&registry, 1_000),
            Err(TokenError::BankCertificate {
                source: CertError::Expired { .. },
                ..
            })
        ));
    }

    #[test]
    fn token_malleated_signature_rejected() {
        let bank = key(10);
        let registry = registry_with_bank(&bank);
        let mut token = Token::sign(&bank, 7, 3, 100, 50);
        // Add ℓ to S: accepted by lax verifiers, refused here.
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (i, l) in order.iter().enumerate() {
            let sum = u16::from(token.signature[32 + i]) + u16::from(*l) + carry;
            token.signature[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(
            token.verify(&registry, 500),
            Err(TokenError::MalformedSignature {
                token: token.id(),
                problem: SignatureProblem::NonCanonicalS
            })
        );
    }

    #[test]
    fn token_id_display_parse_round_trip() {
        let token = Token::sign(&key(10), 7, 3, 100, 50);
        let text = token.id().to_string();
        assert_eq!(text.parse::<TokenId>().unwrap(), token.id());
        assert!("a:b".parse::<TokenId>().is_err());
        assert!(format!("{}:x:1", token.bank).parse::<TokenId>().is_err());
    }

    #[test]
    fn token_json_round_trip() {
        let token = Token::sign(&key(10), 7, 3, 100, 50);
        let json = serde_json::to_string(&token).unwrap();
        assert!(json.contains(&token.bank.to_string()));
        assert_eq!(serde_json::from_str::<Token>(&json).unwrap(), token);
    }

    #[test]
    fn sign_batch_serials() {
        let tokens = Token::sign_batch(&key(10), 4, 3, 25, 9);
        let serials: Vec<u32> = tokens.iter().map(|t| t.serial).collect();
        assert_eq!(serials, vec![0, 1, 2]);
        for t in &tokens {
            t.verify_signature().unwrap();
            assert_eq!((t.batch_id, t.value, t.issued_at), (4, 25, 9));
        }
    }
}
