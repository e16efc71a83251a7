//! The service's input files: the registry (trusted authorities and certificates) and the payout
//! accounts (each vendor's SPL token account), both JSON with base58 keys.
//!
//! Registry file:
//! ```json
//! { "authorities": ["<base58>"], "certificates": [<Certificate>...], "revoked": ["<base58>"] }
//! ```
//! Payout accounts file:
//! ```json
//! { "vendors": { "<vendor base58>": "<SPL token account base58>" } }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mupib_protocol::cert::{CertError, Certificate, Registry};
use mupib_protocol::Pubkey;
use serde::{Deserialize, Serialize};

/// Errors reading the input files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("{path} is not a valid {what} file: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Which file kind.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// A certificate or authority is refused.
    #[error("{path}: {source}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: CertError,
    },
}

/// The registry file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegistryFile {
    /// Trusted registration authorities (base58).
    pub authorities: Vec<String>,
    /// Certificates of banks, users, vendors and auditors.
    pub certificates: Vec<Certificate>,
    /// Revoked keys (base58).
    #[serde(default)]
    pub revoked: Vec<String>,
}

/// The payout accounts file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PayoutAccountsFile {
    /// Vendor key → the vendor's SPL token account (both base58).
    pub vendors: HashMap<String, String>,
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn key(path: &Path, what: &'static str, text: &str) -> Result<Pubkey, FileError> {
    Pubkey::from_str(text).map_err(|e| FileError::Format {
        path: path.to_path_buf(),
        what,
        detail: format!("{text:?} is not a base58 key: {e}"),
    })
}

/// Builds a registry from a [`RegistryFile`]. A certificate whose subject the file also lists
/// as revoked is skipped (revoking a key in the file while its certificate is still there is how
/// an operator revokes it; it must not stop the service from starting or reloading).
///
/// # Errors
/// [`FileError::Format`] for a bad key, [`FileError::Certificate`] for a refused certificate.
pub fn registry_from(path: &Path, file: &RegistryFile) -> Result<Registry, FileError> {
    let mut registry = Registry::new();
    let refused = |source| FileError::Certificate {
        path: path.to_path_buf(),
        source,
    };
    for authority in &file.authorities {
        registry
            .add_authority(key(path, "registry", authority)?)
            .map_err(refused)?;
    }
    for revoked in &file.revoked {
        registry.revoke(key(path, "registry", revoked)?);
    }
    for certificate in &file.certificates {
        if registry.is_revoked(&certificate.subject) {
            tracing::debug!(subject = %certificate.subject, "skipping the certificate of a revoked key");
            continue;
        }
        registry.register(certificate.clone()).map_err(refused)?;
    }
    Ok(registry)
}

/// Reads a registry file.
///
/// # Errors
/// As [`registry_from`], and unreadable or malformed files.
pub fn load_registry(path: &Path) -> Result<Registry, FileError> {
    let file: RegistryFile = serde_json::from_str(&read(path)?).map_err(|e| FileError::Format {
        path: path.to_path_buf(),
        what: "registry",
        detail: e.to_string(),
    })?;
    registry_from(path, &file)
}

/// Reads a payout accounts file into vendor → token account.
///
/// # Errors
/// Unreadable or malformed files, bad keys.
pub fn load_payout_accounts(path: &Path) -> Result<HashMap<Pubkey, Pubkey>, FileError> {
    let file: PayoutAccountsFile =
        serde_json::from_str(&read(path)?).map_err(|e| FileError::Format {
            path: path.to_path_buf(),
            what: "payout accounts",
            detail: e.to_string(),
        })?;
    file.vendors
        .iter()
        .map(|(vendor, account)| {
            Ok((
                key(path, "payout accounts", vendor)?,
                key(path, "payout accounts", account)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ed25519_dalek::SigningKey;
    use mupib_protocol::cert::{pubkey_of, Role};

    #[test]
    fn a_revoked_key_whose_certificate_is_still_listed_loads_without_it() {
        let authority = SigningKey::from_bytes(&[1; 32]);
        let vendor = SigningKey::from_bytes(&[2; 32]);
        let other = SigningKey::from_bytes(&[3; 32]);
        let issue = |key: &SigningKey| {
            Certificate::issue(&authority, pubkey_of(key), Role::Vendor, "v", 0, 100).unwrap()
        };
        let file = RegistryFile {
            authorities: vec![pubkey_of(&authority).to_string()],
            certificates: vec![issue(&vendor), issue(&other)],
            revoked: vec![pubkey_of(&vendor).to_string()],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let registry = load_registry(&path).unwrap();
        assert!(registry.is_revoked(&pubkey_of(&vendor)));
        assert!(registry.certificate(&pubkey_of(&vendor)).is_none());
        assert!(registry
            .check_subject(&pubkey_of(&other), Role::Vendor, 50)
            .is_ok());
    }
}
