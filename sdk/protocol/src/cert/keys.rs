//! Keys: the strict key and signature-encoding checks the [`Registry`](super::Registry) and
//! the intake rely on (canonical, prime-order keys; canonical `S` and `R`, `R` not of small
//! order: what ed25519 batch verification does not check), and Solana keypair files (a JSON
//! array of 64 bytes, secret then public; SPEC §1 "Identities").

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::Pubkey;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::key;
    use ed25519_dalek::Signer;
    use rand::SeedableRng;

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
}
