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
//!
//! The key checks and keypair files are in `cert/keys.rs` (re-exported here), the base58 serde
//! adapters in [`b58`].

pub mod b58;
mod keys;

use std::collections::{HashMap, HashSet};
use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::Pubkey;

pub use keys::{
    check_signature_encoding, keypair_from_json, keypair_to_json, pubkey_of, read_keypair_file,
    strict_verifying_key, write_keypair_file, KeyFileError, KeyProblem, SignatureProblem,
};

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
#[serde(deny_unknown_fields)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
