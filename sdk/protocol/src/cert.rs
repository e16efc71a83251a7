//! Identities: roles, certificates issued by a registration authority, the [`Registry`] that
//! verifiers consult, strict key and signature-encoding checks, and Solana keypair files
//! (SPEC §1 "Identities"; paper eqs. 1–2 carry `Cert_B`, `Cert_u`, `Cert_m`).
//!
//! A certificate is signed over its canonical bytes: `CERT_SIGN_TAG || borsh(subject, role,
//! name, valid_from, valid_until, issuer)`. Times are Unix seconds; a certificate is valid on
//! the half-open window `valid_from <= now < valid_until`.
//!
//! Keys are checked once, when they enter the [`Registry`] (authority keys and certificate
//! subjects): they must decode to a curve point, be canonically encoded, not be of small order
//! (`VerifyingKey::is_weak`) and have no torsion component. Every later verification relies on
//! that invariant and on the decoded [`VerifyingKey`] the registry caches.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::Pubkey;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Domain tag of a certificate signature.
pub const CERT_SIGN_TAG: &[u8] = b"mupib:cert:v1";

/// Longest certificate name, in bytes of UTF-8.
pub const MAX_CERT_NAME_LEN: usize = 128;

/// The role a certificate grants its subject.
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
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A registration authority (issues certificates).
    Authority,
    /// A bank (issues tokens).
    Bank,
    /// A user (pays with tokens).
    User,
    /// A vendor (sells, countersigns transactions).
    Vendor,
    /// An auditor (collects blocks, answers vendors).
    Auditor,
}

/// A signed statement by a registration authority binding a key to a role and a name for a
/// validity window.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Certificate {
    /// The certified key.
    #[serde(with = "b58::pubkey")]
    pub subject: Pubkey,
    /// What the subject may do.
    pub role: Role,
    /// Human-readable name (at most [`MAX_CERT_NAME_LEN`] bytes).
    pub name: String,
    /// First second of validity (Unix time, inclusive).
    pub valid_from: i64,
    /// End of validity (Unix time, exclusive).
    pub valid_until: i64,
    /// The registration authority that signed it.
    #[serde(with = "b58::pubkey")]
    pub issuer: Pubkey,
    /// The issuer's ed25519 signature over [`Certificate::signing_bytes`].
    #[serde(with = "b58::signature")]
    pub signature: [u8; 64],
}

/// Why a public key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyProblem {
    /// The 32 bytes do not decode to a point of the curve.
    NotOnCurve,
    /// The encoding is not the canonical one (y ≥ p).
    NonCanonical,
    /// The point has small order (a "weak" key that validates signatures on many messages).
    SmallOrder,
    /// The point has a torsion component (batch and single verification could disagree).
    MixedOrder,
}

/// Why a signature is refused before any curve arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureProblem {
    /// The scalar `S` is not reduced modulo the group order ℓ (malleable).
    NonCanonicalS,
    /// The point `R` is not canonically encoded (y ≥ p).
    NonCanonicalR,
    /// The point `R` has small order.
    SmallOrderR,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyProblem::NotOnCurve => "not a point of the curve",
            KeyProblem::NonCanonical => "non-canonical point encoding",
            KeyProblem::SmallOrder => "weak key of small order",
            KeyProblem::MixedOrder => "point with a torsion component",
        })
    }
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureProblem::NonCanonicalS => "scalar S is not reduced modulo the group order",
            SignatureProblem::NonCanonicalR => "point R is not canonically encoded",
            SignatureProblem::SmallOrderR => "point R has small order",
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Authority => "authority",
            Role::Bank => "bank",
            Role::User => "user",
            Role::Vendor => "vendor",
            Role::Auditor => "auditor",
        })
    }
}

/// Errors of certificate issuing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The name is longer than [`MAX_CERT_NAME_LEN`].
    #[error("certificate name is {len} bytes long, the limit is {max}: use a shorter name")]
    NameTooLong {
        /// Actual length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `valid_from >= valid_until`.
    #[error("certificate validity window [{valid_from}, {valid_until}) is empty: valid_until must be later than valid_from")]
    EmptyWindow {
        /// Start of the window.
        valid_from: i64,
        /// End of the window.
        valid_until: i64,
    },
    /// A key is unusable.
    #[error("key {key} is refused: {problem}; generate a fresh ed25519 keypair")]
    InvalidKey {
        /// The key.
        key: Pubkey,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// The certificate signature is malformed.
    #[error("certificate of {subject} has a malformed signature: {problem}")]
    MalformedSignature {
        /// The certified key.
        subject: Pubkey,
        /// What is wrong.
        problem: SignatureProblem,
    },
    /// The issuer's signature does not verify over the certificate's content.
    #[error("certificate of {subject} does not carry a valid signature of issuer {issuer}: it was forged or altered")]
    BadSignature {
        /// The certified key.
        subject: Pubkey,
        /// The claimed issuer.
        issuer: Pubkey,
    },
    /// The issuer is not a registration authority this registry trusts.
    #[error("certificate of {subject} is issued by {issuer}, which is not a known registration authority")]
    UnknownIssuer {
        /// The certified key.
        subject: Pubkey,
        /// The claimed issuer.
        issuer: Pubkey,
    },
    /// No certificate is registered for this key.
    #[error("unknown identity {subject}: no certificate is registered for this key; register it with the registration authority first")]
    UnknownIdentity {
        /// The key.
        subject: Pubkey,
    },
    /// The key was revoked.
    #[error("identity {subject} is revoked")]
    Revoked {
        /// The key.
        subject: Pubkey,
    },
    /// The presented certificate differs from the one registered for the subject.
    #[error("the certificate presented for {subject} differs from the registered one: present the current certificate")]
    Mismatch {
        /// The key.
        subject: Pubkey,
    },
    /// The certificate grants another role.
    #[error("{subject} is certified as {actual}, but a {expected} certificate is required here")]
    WrongRole {
        /// The key.
        subject: Pubkey,
        /// The role required.
        expected: Role,
        /// The role certified.
        actual: Role,
    },
    /// The certificate is not valid yet.
    #[error("certificate of {subject} is not valid before {valid_from} (now {now})")]
    NotYetValid {
        /// The key.
        subject: Pubkey,
        /// Start of validity.
        valid_from: i64,
        /// The time of the check.
        now: i64,
    },
    /// The certificate has expired.
    #[error("certificate of {subject} expired at {valid_until} (now {now}): renew it")]
    Expired {
        /// The key.
        subject: Pubkey,
        /// End of validity.
        valid_until: i64,
        /// The time of the check.
        now: i64,
    },
    /// Canonical encoding failed (cannot happen within the limits above).
    #[error("certificate encoding failed: {0}")]
    Encoding(String),
}

/// Errors of reading or writing a Solana keypair file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("keypair file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file exists and would be overwritten.
    #[error("keypair file {path} already exists: refusing to overwrite a key; remove it or choose another path")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The content is not a JSON array of byte values.
    #[error("keypair {origin} is not a JSON array of 64 integers 0–255 (the ~/.config/solana/id.json format): {reason}")]
    Malformed {
        /// The file, or "text".
        origin: String,
        /// What the parser said.
        reason: String,
    },
    /// The array does not hold exactly 64 bytes.
    #[error("keypair {origin} holds {len} bytes, a Solana keypair has 64 (32 secret + 32 public)")]
    WrongLength {
        /// The file, or "text".
        origin: String,
        /// Number of bytes found.
        len: usize,
    },
    /// The public half does not belong to the secret half.
    #[error("keypair {origin} is inconsistent: its public key does not match its secret key")]
    Inconsistent {
        /// The file, or "text".
        origin: String,
    },
}

/// The registration authorities a verifier trusts, the certificates it knows, and the revoked
/// keys. Unknown identities are rejected.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    authorities: HashMap<Pubkey, VerifyingKey>,
    revoked: HashSet<Pubkey>,
    entries: HashMap<Pubkey, RegistryEntry>,
}

#[derive(Debug, Clone)]
struct RegistryEntry {
    certificate: Certificate,
    key: VerifyingKey,
}

/// What [`Registry::check_certificate`] found: the decoded keys of the subject and the issuer.
#[derive(Debug, Clone, Copy)]
pub struct CheckedIdentity<'a> {
    /// The registered certificate.
    pub certificate: &'a Certificate,
    /// The subject's decoded key.
    pub subject_key: VerifyingKey,
    /// The issuer's decoded key.
    pub issuer_key: VerifyingKey,
}

// ---------------------------------------------------------------------------------------------
// Strict key and signature encoding checks
// ---------------------------------------------------------------------------------------------

/// Whether the 32-byte point encoding uses a y coordinate ≥ p = 2^255 − 19 (non-canonical).
fn y_is_non_canonical(bytes: &[u8; 32]) -> bool {
    bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f
}

/// The y coordinates (sign bit cleared) of the eight points of small order: 0 (order 4),
/// 1 (identity), p − 1 (order 2) and the two y values of the order-8 points.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
const GROUP_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Whether a point encoding (either sign) is one of the small-order points.
fn encoding_is_small_order(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// Whether a little-endian 256-bit scalar is fully reduced (< ℓ).
fn scalar_is_canonical(s: &[u8; 32]) -> bool {
    for i in (0..32).rev() {
        if s[i] != GROUP_ORDER_LE[i] {
            return s[i] < GROUP_ORDER_LE[i];
        }
    }
    false
}

/// Checks what batch verification does not: `S < ℓ`, `R` canonical and `R` not of small
/// order. Costs a few byte comparisons, no curve arithmetic.
pub fn check_signature_encoding(signature: &[u8; 64]) -> Result<(), SignatureProblem> {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    s.copy_from_slice(&signature[32..]);
    if !scalar_is_canonical(&s) {
        return Err(SignatureProblem::NonCanonicalS);
    }
    if y_is_non_canonical(&r) {
        return Err(SignatureProblem::NonCanonicalR);
    }
    if encoding_is_small_order(&r) {
        return Err(SignatureProblem::SmallOrderR);
    }
    Ok(())
}

/// Decodes a public key and refuses anything but a canonical, prime-order point: not on the
/// curve, non-canonical, small order (`is_weak`) or with a torsion component. This costs a
/// scalar multiplication: do it once per key (the [`Registry`] does it at registration).
pub fn strict_verifying_key(key: &Pubkey) -> Result<VerifyingKey, KeyProblem> {
    let bytes = key.to_bytes();
    if y_is_non_canonical(&bytes) {
        return Err(KeyProblem::NonCanonical);
    }
    let verifying_key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyProblem::NotOnCurve)?;
    if verifying_key.is_weak() {
        return Err(KeyProblem::SmallOrder);
    }
    if !verifying_key.to_edwards().is_torsion_free() {
        return Err(KeyProblem::MixedOrder);
    }
    Ok(verifying_key)
}

/// The Solana public key of a signing key.
pub fn pubkey_of(key: &SigningKey) -> Pubkey {
    Pubkey::new_from_array(key.verifying_key().to_bytes())
}

/// Encodes `tag || borsh(value)`.
pub(crate) fn tagged_borsh<T: BorshSerialize>(tag: &[u8], value: &T) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(tag.len() + 128);
    out.extend_from_slice(tag);
    value.serialize(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

#[derive(BorshSerialize)]
struct CertificateBody<'a> {
    subject: &'a Pubkey,
    role: Role,
    name: &'a str,
    valid_from: i64,
    valid_until: i64,
    issuer: &'a Pubkey,
}

impl Certificate {
    /// Issues a certificate: `authority` signs `subject`'s role, name and validity window.
    /// Refuses an overlong name, an empty window and an unusable subject key.
    pub fn issue(
        authority: &SigningKey,
        subject: Pubkey,
        role: Role,
        name: impl Into<String>,
        valid_from: i64,
        valid_until: i64,
    ) -> Result<Certificate, CertError> {
        strict_verifying_key(&subject).map_err(|problem| CertError::InvalidKey {
            key: subject,
            problem,
        })?;
        let mut certificate = Certificate {
            subject,
            role,
            name: name.into(),
            valid_from,
            valid_until,
            issuer: pubkey_of(authority),
            signature: [0; 64],
        };
        certificate.check_form()?;
        let message = certificate.signing_bytes()?;
        certificate.signature = authority.sign(&message).to_bytes();
        Ok(certificate)
    }

    /// Name length and window checks.
    fn check_form(&self) -> Result<(), CertError> {
        if self.name.len() > MAX_CERT_NAME_LEN {
            return Err(CertError::NameTooLong {
                len: self.name.len(),
                max: MAX_CERT_NAME_LEN,
            });
        }
        if self.valid_from >= self.valid_until {
            return Err(CertError::EmptyWindow {
                valid_from: self.valid_from,
                valid_until: self.valid_until,
            });
        }
        Ok(())
    }

    /// The bytes the issuer signs: `CERT_SIGN_TAG || borsh(subject, role, name, valid_from,
    /// valid_until, issuer)`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, CertError> {
        if self.name.len() > MAX_CERT_NAME_LEN {
            return Err(CertError::NameTooLong {
                len: self.name.len(),
                max: MAX_CERT_NAME_LEN,
            });
        }
        let body = CertificateBody {
            subject: &self.subject,
            role: self.role,
            name: &self.name,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            issuer: &self.issuer,
        };
        tagged_borsh(CERT_SIGN_TAG, &body).map_err(|e| CertError::Encoding(e.to_string()))
    }

    /// Checks the validity window against `now` (Unix seconds).
    pub fn check_window(&self, now: i64) -> Result<(), CertError> {
        if now < self.valid_from {
            return Err(CertError::NotYetValid {
                subject: self.subject,
                valid_from: self.valid_from,
                now,
            });
        }
        if now >= self.valid_until {
            return Err(CertError::Expired {
                subject: self.subject,
                valid_until: self.valid_until,
                now,
            });
        }
        Ok(())
    }

    /// Checks the role.
    pub fn check_role(&self, expected: Role) -> Result<(), CertError> {
        if self.role != expected {
            return Err(CertError::WrongRole {
                subject: self.subject,
                expected,
                actual: self.role,
            });
        }
        Ok(())
    }

    /// Verifies the issuer's signature strictly (canonical encodings, no weak keys), with the
    /// issuer key taken from the certificate. Does not say whether the issuer is trusted: use
    /// [`Registry::verify_certificate`] for that.
    pub fn verify_signature(&self) -> Result<(), CertError> {
        let issuer_key =
            strict_verifying_key(&self.issuer).map_err(|problem| CertError::InvalidKey {
                key: self.issuer,
                problem,
            })?;
        self.verify_signature_with(&issuer_key)
    }

    fn verify_signature_with(&self, issuer_key: &VerifyingKey) -> Result<(), CertError> {
        check_signature_encoding(&self.signature).map_err(|problem| {
            CertError::MalformedSignature {
                subject: self.subject,
                problem,
            }
        })?;
        let message = self.signing_bytes()?;
        issuer_key
            .verify_strict(&message, &Signature::from_bytes(&self.signature))
            .map_err(|_| CertError::BadSignature {
                subject: self.subject,
                issuer: self.issuer,
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

impl Registry {
    /// An empty registry: no authority, no identity (everything is rejected).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry trusting `authorities`.
    pub fn with_authorities(
        authorities: impl IntoIterator<Item = Pubkey>,
    ) -> Result<Registry, CertError> {
        let mut registry = Registry::new();
        for authority in authorities {
            registry.add_authority(authority)?;
        }
        Ok(registry)
    }

    /// Trusts a registration authority. Refuses an unusable key.
    pub fn add_authority(&mut self, authority: Pubkey) -> Result<(), CertError> {
        let key = strict_verifying_key(&authority).map_err(|problem| CertError::InvalidKey {
            key: authority,
            problem,
        })?;
        self.authorities.insert(authority, key);
        Ok(())
    }

    /// Whether `key` is a trusted registration authority.
    pub fn is_authority(&self, key: &Pubkey) -> bool {
        self.authorities.contains_key(key)
    }

    /// Registers (or renews) a certificate after checking it: known issuer, usable subject key,
    /// subject not revoked, name and window well-formed, issuer signature valid (strict). The
    /// validity window is not checked against a clock here (a certificate may be registered
    /// before it starts); verifications check it. A renewal replaces the previous certificate.
    pub fn register(&mut self, certificate: Certificate) -> Result<(), CertError> {
        let subject = certificate.subject;
        if self.revoked.contains(&subject) {
            return Err(CertError::Revoked { subject });
        }
        let issuer_key =
            *self
                .authorities
                .get(&certificate.issuer)
                .ok_or(CertError::UnknownIssuer {
                    subject,
                    issuer: certificate.issuer,
                })?;
        let key = strict_verifying_key(&subject).map_err(|problem| CertError::InvalidKey {
            key: subject,
            problem,
        })?;
        certificate.check_form()?;
        certificate.verify_signature_with(&issuer_key)?;
        self.entries
            .insert(subject, RegistryEntry { certificate, key });
        Ok(())
    }

    /// Revokes a key (registered or not). Returns whether it was newly revoked. Revocation is
    /// permanent: the key cannot be registered again.
    pub fn revoke(&mut self, subject: Pubkey) -> bool {
        self.revoked.insert(subject)
    }

    /// Whether `subject` is revoked.
    pub fn is_revoked(&self, subject: &Pubkey) -> bool {
        self.revoked.contains(subject)
    }

    /// The certificate registered for `subject`.
    pub fn certificate(&self, subject: &Pubkey) -> Option<&Certificate> {
        self.entries.get(subject).map(|entry| &entry.certificate)
    }

    /// All registered certificates (any order).
    pub fn certificates(&self) -> impl Iterator<Item = &Certificate> {
        self.entries.values().map(|entry| &entry.certificate)
    }

    /// Looks a key up and checks that it holds an unrevoked, current certificate of role
    /// `expected` (for keys that travel without their certificate: a token's bank, a response's
    /// auditor). Returns the registered certificate and decoded keys.
    pub fn check_subject(
        &self,
        subject: &Pubkey,
        expected: Role,
        now: i64,
    ) -> Result<CheckedIdentity<'_>, CertError> {
        if self.revoked.contains(subject) {
            return Err(CertError::Revoked { subject: *subject });
        }
        let entry = self
            .entries
            .get(subject)
            .ok_or(CertError::UnknownIdentity { subject: *subject })?;
        let certificate = &entry.certificate;
        let issuer_key =
            *self
                .authorities
                .get(&certificate.issuer)
                .ok_or(CertError::UnknownIssuer {
                    subject: *subject,
                    issuer: certificate.issuer,
                })?;
        certificate.check_role(expected)?;
        certificate.check_window(now)?;
        Ok(CheckedIdentity {
            certificate,
            subject_key: entry.key,
            issuer_key,
        })
    }

    /// Checks a presented certificate against the registry, without its signature: subject
    /// not revoked, subject registered with exactly this certificate, issuer trusted, role
    /// `expected`, window containing `now`. The signature is left to the caller (the intake
    /// verifies it in its batch); [`Registry::verify_certificate`] does everything.
    pub fn check_certificate(
        &self,
        certificate: &Certificate,
        expected: Role,
        now: i64,
    ) -> Result<CheckedIdentity<'_>, CertError> {
        let subject = certificate.subject;
        if self.revoked.contains(&subject) {
            return Err(CertError::Revoked { subject });
        }
        let entry = self
            .entries
            .get(&subject)
            .ok_or(CertError::UnknownIdentity { subject })?;
        if entry.certificate != *certificate {
            return Err(CertError::Mismatch { subject });
        }
        let issuer_key =
            *self
                .authorities
                .get(&certificate.issuer)
                .ok_or(CertError::UnknownIssuer {
                    subject,
                    issuer: certificate.issuer,
                })?;
        certificate.check_role(expected)?;
        certificate.check_window(now)?;
        Ok(CheckedIdentity {
            certificate: &entry.certificate,
            subject_key: entry.key,
            issuer_key,
        })
    }

    /// Full verification of a presented certificate: [`Registry::check_certificate`] and the
    /// issuer's signature (strict).
    pub fn verify_certificate(
        &self,
        certificate: &Certificate,
        expected: Role,
        now: i64,
    ) -> Result<(), CertError> {
        let checked = self.check_certificate(certificate, expected, now)?;
        certificate.verify_signature_with(&checked.issuer_key)
    }
}

// ---------------------------------------------------------------------------------------------
// Keypair files (Solana format: a JSON array of 64 bytes, secret then public)
// ---------------------------------------------------------------------------------------------

/// Parses a keypair in the Solana JSON format. `origin` names the source in error messages.
fn parse_keypair(text: &str, origin: &str) -> Result<SigningKey, KeyFileError> {
    let bytes: Vec<u8> =
        serde_json::from_str(text.trim()).map_err(|e| KeyFileError::Malformed {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
    let array: [u8; 64] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyFileError::WrongLength {
            origin: origin.to_owned(),
            len: bytes.len(),
        })?;
    SigningKey::from_keypair_bytes(&array).map_err(|_| KeyFileError::Inconsistent {
        origin: origin.to_owned(),
    })
}

/// Parses a keypair from the text of a Solana keypair file (`[12, 34, …]`, 64 numbers).
pub fn keypair_from_json(text: &str) -> Result<SigningKey, KeyFileError> {
    parse_keypair(text, "text")
}

/// The Solana keypair-file text of a signing key.
pub fn keypair_to_json(key: &SigningKey) -> String {
    let bytes = key.to_keypair_bytes();
    let numbers: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    format!("[{}]", numbers.join(","))
}

/// Reads a Solana keypair file (e.g. `~/.config/solana/id.json`).
pub fn read_keypair_file(path: impl AsRef<Path>) -> Result<SigningKey, KeyFileError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_keypair(&text, &path.display().to_string())
}

/// Writes a Solana keypair file, creating missing parent directories; never overwrites an
/// existing file. On Unix the file is created with mode 0600.
pub fn write_keypair_file(key: &SigningKey, path: impl AsRef<Path>) -> Result<(), KeyFileError> {
    use std::io::Write;
    let path = path.as_ref();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| KeyFileError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            KeyFileError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    file.write_all(keypair_to_json(key).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })
}

// ---------------------------------------------------------------------------------------------
// serde helpers: keys and signatures as base58 strings in JSON
// ---------------------------------------------------------------------------------------------

/// serde adapters writing keys and signatures as base58 strings (Solana's convention), for
/// `#[serde(with = "...")]`. JSON is for display and transport only; signing and hashing use
/// borsh.
pub mod b58 {
    /// A [`crate::Pubkey`] as a base58 string.
    pub mod pubkey {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::str::FromStr;

        /// Serializes as base58.
        pub fn serialize<S: Serializer>(key: &crate::Pubkey, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(key)
        }

        /// Parses base58.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<crate::Pubkey, D::Error> {
            let text = String::deserialize(d)?;
            crate::Pubkey::from_str(&text).map_err(serde::de::Error::custom)
        }
    }

    /// An ed25519 signature (`[u8; 64]`) as a base58 string.
    pub mod signature {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serializes as base58.
        pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&bs58::encode(sig).into_string())
        }

        /// Parses base58 (exactly 64 bytes).
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
            let text = String::deserialize(d)?;
            let bytes = bs58::decode(&text)
                .into_vec()
                .map_err(serde::de::Error::custom)?;
            bytes.as_slice().try_into().map_err(|_| {
                serde::de::Error::custom(format!(
                    "a signature has 64 bytes, this base58 string decodes to {}",
                    bytes.len()
                ))
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn setup() -> (SigningKey, Registry) {
        let authority = key(1);
        let registry = Registry::with_authorities([pubkey_of(&authority)]).unwrap();
        (authority, registry)
    }

    fn user_cert(authority: &SigningKey, subject: &SigningKey) -> Certificate {
        Certificate::issue(
            authority,
            pubkey_of(subject),
            Role::User,
            "alice",
            100,
            1_000,
        )
        .unwrap()
    }

    #[test]
    fn cert_issue_register_verify_round_trip() {
        let (authority, mut registry) = setup();
        let alice = key(2);
        let cert = user_cert(&authority, &alice);
        assert_eq!(cert.issuer, pubkey_of(&authority));
        cert.verify_signature().unwrap();
        registry.register(cert.clone()).unwrap();
        registry.verify_certificate(&cert, Role::User, 100).unwrap();
        registry.verify_certificate(&cert, Role::User, 999).unwrap();
        assert_eq!(registry.certificate(&cert.subject), Some(&cert));
    }

    #[test]
    fn cert_signing_bytes_are_tag_then_borsh() {
        let (authority, _) = setup();
        let cert = user_cert(&authority, &key(2));
        let bytes = cert.signing_bytes().unwrap();
        let mut expected = b"mupib:cert:v1".to_vec();
        expected.extend_from_slice(&cert.subject.to_bytes());
        expected.push(2); // Role::User
        expected.extend_from_slice(&5u32.to_le_bytes());
        expected.extend_from_slice(b"alice");
        expected.extend_from_slice(&100i64.to_le_bytes());
        expected.extend_from_slice(&1_000i64.to_le_bytes());
        expected.extend_from_slice(&cert.issuer.to_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn cert_expired_rejected() {
        let (authority, mut registry) = setup();
        let cert = user_cert(&authority, &key(2));
        registry.register(cert.clone()).unwrap();
        let err = registry
            .verify_certificate(&cert, Role::User, 1_000)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CertError::Expired {
                    valid_until: 1_000,
                    now: 1_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cert_not_yet_valid_rejected() {
        let (authority, mut registry) = setup();
        let cert = user_cert(&authority, &key(2));
        registry.register(cert.clone()).unwrap();
        let err = registry
            .verify_certificate(&cert, Role::User, 99)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CertError::NotYetValid {
                    valid_from: 100,
                    now: 99,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cert_wrong_role_rejected() {
        let (authority, mut registry) = setup();
        let cert = user_cert(&authority, &key(2));
        registry.register(cert.clone()).unwrap();
        let err = registry
            .verify_certificate(&cert, Role::Vendor, 500)
            .unwrap_err();
        assert_eq!(
            err,
            CertError::WrongRole {
                subject: cert.subject,
                expected: Role::Vendor,
                actual: Role::User
            }
        );
    }

    #[test]
    fn cert_revoked_identity_rejected() {
        let (authority, mut registry) = setup();
        let cert = user_cert(&authority, &key(2));
        registry.register(cert.clone()).unwrap();
        assert!(registry.revoke(cert.subject));
        let err = registry
            .verify_certificate(&cert, Role::User, 500)
            .unwrap_err();
        assert_eq!(
            err,
            CertError::Revoked {
                subject: cert.subject
            }
        );
        // Revocation is permanent: re-registration is refused.
        assert_eq!(
            registry.register(cert.clone()),
            Err(CertError::Revoked {
                subject: cert.subject
            })
        );
    }

    #[test]
    fn cert_unknown_identity_rejected() {
        let (authority, registry) = setup();
        let cert = user_cert(&authority, &key(2));
        let err = registry
            .verify_certificate(&cert, Role::User, 500)
            .unwrap_err();
        assert_eq!(
            err,
            CertError::UnknownIdentity {
                subject: cert.subject
            }
        );
        let err = registry
            .check_subject(&cert.subject, Role::User, 500)
            .unwrap_err();
        assert_eq!(
            err,
            CertError::UnknownIdentity {
                subject: cert.subject
            }
        );
    }

    #[test]
    fn cert_from_unknown_authority_rejected_at_registration() {
        let (_, mut registry) = setup();
        let rogue = key(9);
        let cert = user_cert(&rogue, &key(2));
        let err = registry.register(cert.clone()).unwrap_err();
        assert_eq!(
            err,
            CertError::UnknownIssuer {
                subject: cert.subject,
                issuer: pubkey_of(&rogue)
            }
        );
    }

    #[test]
    fn cert_altered_field_rejected_at_registration() {
        let (authority, mut registry) = setup();
        let mut cert = user_cert(&authority, &key(2));
        cert.role = Role::Bank;
        let err = registry.register(cert.clone()).unwrap_err();
        assert_eq!(
            err,
            CertError::BadSignature {
                subject: cert.subject,
                issuer: cert.issuer
            }
        );
        let mut cert = user_cert(&authority, &key(2));
        cert.valid_until += 1;
        assert!(matches!(
            registry.register(cert),
            Err(CertError::BadSignature { .. })
        ));
    }

    #[test]
    fn cert_presented_differs_from_registered_rejected() {
        let (authority, mut registry) = setup();
        let alice = key(2);
        registry.register(user_cert(&authority, &alice)).unwrap();
        let other = Certificate::issue(
            &authority,
            pubkey_of(&alice),
            Role::User,
            "alice2",
            100,
            1_000,
        )
        .unwrap();
        let err = registry
            .verify_certificate(&other, Role::User, 500)
            .unwrap_err();
        assert_eq!(
            err,
            CertError::Mismatch {
                subject: other.subject
            }
        );
    }

    #[test]
    fn cert_name_too_long_and_empty_window_refused() {
        let (authority, _) = setup();
        let subject = pubkey_of(&key(2));
        let name = "x".repeat(MAX_CERT_NAME_LEN + 1);
        assert_eq!(
            Certificate::issue(&authority, subject, Role::User, name, 0, 1),
            Err(CertError::NameTooLong {
                len: MAX_CERT_NAME_LEN + 1,
                max: MAX_CERT_NAME_LEN
            })
        );
        assert_eq!(
            Certificate::issue(&authority, subject, Role::User, "a", 5, 5),
            Err(CertError::EmptyWindow {
                valid_from: 5,
                valid_until: 5
            })
        );
    }

    #[test]
    fn weak_key_certificate_refused() {
        let (authority, mut registry) = setup();
        // The identity point (y = 1) is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = Pubkey::new_from_array(identity);
        assert_eq!(
            Certificate::issue(&authority, weak, Role::User, "weak", 0, 10),
            Err(CertError::InvalidKey {
                key: weak,
                problem: KeyProblem::SmallOrder
            })
        );
        // A certificate built by hand around the weak key is refused by the registry too.
        let mut cert = user_cert(&authority, &key(2));
        cert.subject = weak;
        cert.signature = authority.sign(&cert.signing_bytes().unwrap()).to_bytes();
        assert_eq!(
            registry.register(cert),
            Err(CertError::InvalidKey {
                key: weak,
                problem: KeyProblem::SmallOrder
            })
        );
        assert_eq!(
            registry.add_authority(weak),
            Err(CertError::InvalidKey {
                key: weak,
                problem: KeyProblem::SmallOrder
            })
        );
    }

    #[test]
    fn every_small_order_point_is_detected() {
        // Generate the whole 8-torsion subgroup from an order-8 point and check the table.
        let p8 = VerifyingKey::from_bytes(&SMALL_ORDER_Y[3])
            .unwrap()
            .to_edwards();
        assert!(p8.is_small_order());
        let mut point = p8;
        for _ in 0..8 {
            let bytes = point.compress().to_bytes();
            assert!(encoding_is_small_order(&bytes), "{bytes:?}");
            let key = Pubkey::new_from_array(bytes);
            if let Ok(vk) = VerifyingKey::from_bytes(&bytes) {
                assert!(vk.is_weak());
                assert_eq!(
                    strict_verifying_key(&key).unwrap_err(),
                    KeyProblem::SmallOrder
                );
            }
            point += p8;
        }
        // Honest keys are not flagged.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for _ in 0..64 {
            let k = SigningKey::generate(&mut rng);
            assert!(!encoding_is_small_order(&k.verifying_key().to_bytes()));
            strict_verifying_key(&pubkey_of(&k)).unwrap();
        }
    }

    #[test]
    fn mixed_order_key_refused() {
        let honest = key(3).verifying_key().to_edwards();
        let torsion = VerifyingKey::from_bytes(&SMALL_ORDER_Y[3])
            .unwrap()
            .to_edwards();
        let mixed = Pubkey::new_from_array((honest + torsion).compress().to_bytes());
        assert_eq!(
            strict_verifying_key(&mixed).unwrap_err(),
            KeyProblem::MixedOrder
        );
    }

    #[test]
    fn non_canonical_key_refused() {
        // y = p + 1 encodes the identity non-canonically.
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xee;
        bytes[31] = 0x7f;
        let key = Pubkey::new_from_array(bytes);
        assert_eq!(
            strict_verifying_key(&key).unwrap_err(),
            KeyProblem::NonCanonical
        );
    }

    #[test]
    fn signature_encoding_checks() {
        let k = key(4);
        let good = k.sign(b"m").to_bytes();
        check_signature_encoding(&good).unwrap();
        // S + ℓ: same signature modulo ℓ, rejected as malleable.
        let mut high = good;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(high[32 + i]) + u16::from(GROUP_ORDER_LE[i]) + carry;
            high[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assert_eq!(
            check_signature_encoding(&high),
            Err(SignatureProblem::NonCanonicalS)
        );
        let mut small_r = good;
        small_r[..32].copy_from_slice(&SMALL_ORDER_Y[1]);
        assert_eq!(
            check_signature_encoding(&small_r),
            Err(SignatureProblem::SmallOrderR)
        );
        let mut non_canonical_r = good;
        non_canonical_r[..32].copy_from_slice(&[0xff; 32]);
        non_canonical_r[31] = 0x7f;
        assert_eq!(
            check_signature_encoding(&non_canonical_r),
            Err(SignatureProblem::NonCanonicalR)
        );
        // ℓ itself and ℓ − 1 at the boundary.
        assert!(!scalar_is_canonical(&GROUP_ORDER_LE));
        let mut below = GROUP_ORDER_LE;
        below[0] -= 1;
        assert!(scalar_is_canonical(&below));
    }

    #[test]
    fn keypair_json_round_trip_and_errors() {
        let k = key(5);
        let text = keypair_to_json(&k);
        assert!(text.starts_with('[') && text.matches(',').count() == 63);
        let back = keypair_from_json(&text).unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        assert!(matches!(
            keypair_from_json("{\"a\":1}"),
            Err(KeyFileError::Malformed { .. })
        ));
        assert!(matches!(
            keypair_from_json("[1,2,300]"),
            Err(KeyFileError::Malformed { .. })
        ));
        assert!(matches!(
            keypair_from_json("[1,2,3]"),
            Err(KeyFileError::WrongLength { len: 3, .. })
        ));
        let mut bytes = k.to_keypair_bytes();
        bytes[40] ^= 1;
        let text: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        assert!(matches!(
            keypair_from_json(&format!("[{}]", text.join(","))),
            Err(KeyFileError::Inconsistent { .. })
        ));
    }

    #[test]
    fn keypair_file_write_read_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config").join("solana").join("id.json");
        let k = key(6);
        write_keypair_file(&k, &path).unwrap();
        assert_eq!(read_keypair_file(&path).unwrap().to_bytes(), k.to_bytes());
        assert!(matches!(
            write_keypair_file(&key(7), &path),
            Err(KeyFileError::AlreadyExists { .. })
        ));
        assert_eq!(read_keypair_file(&path).unwrap().to_bytes(), k.to_bytes());
        assert!(matches!(
            read_keypair_file(dir.path().join("missing.json")),
            Err(KeyFileError::Io { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn certificate_json_uses_base58() {
        let (authority, _) = setup();
        let cert = user_cert(&authority, &key(2));
        let json = serde_json::to_string(&cert).unwrap();
        assert!(
            json.contains(&format!("\"subject\":\"{}\"", cert.subject)),
            "{json}"
        );
        assert!(json.contains("\"role\":\"user\""), "{json}");
        let back: Certificate = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cert);
    }
}
