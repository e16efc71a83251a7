//! The live registry (SPEC §6 "revocation takes effect without a restart"): the service reads
//! identities from a snapshot that is swapped, never edited in place, so a request sees one
//! consistent registry and the next request sees the new one.
//!
//! - The registry file (`--registry`) is polled (its modification time, size and inode, about
//!   once a second, [`crate::ServiceConfig::registry_poll`]); a changed file is loaded and
//!   replaces the snapshot. A file that does not load (malformed, a refused certificate) keeps
//!   the previous registry; the failure is logged and counted
//!   (`mupib_registry_reloads_total{result="refused"}`).
//! - `POST /v1/registry/revoke` revokes a key at once. With a data directory the revocation is
//!   written first to `revoked.json` there (atomically: a temporary file renamed over it), so it
//!   survives restarts and every later reload of the registry file applies it again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use mupib_protocol::cert::Registry;
use mupib_protocol::Pubkey;

use crate::error::ServiceError;
use crate::files::{load_registry, FileError};

/// Name of the operator's revocations in the data directory.
pub const REVOKED_FILE: &str = "revoked.json";

/// What identifies a version of the registry file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode,
    })
}

/// The registry every request reads, reloaded and revoked while the service runs.
#[derive(Debug)]
pub struct LiveRegistry {
    current: RwLock<Arc<Registry>>,
    file: Option<PathBuf>,
    seen: Mutex<Option<FileStamp>>,
    revoked_file: Option<PathBuf>,
    /// Keys the operator revoked through the endpoint (applied over every reload).
    revoked: Mutex<BTreeSet<Pubkey>>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file did not change.
    Unchanged,
    /// The file changed and was loaded.
    Loaded,
}

impl LiveRegistry {
    /// The registry `initial`, watched in `file` (if any), with the operator's revocations kept
    /// in `data_dir` (if any) applied over it.
    ///
    /// # Errors
    /// [`ServiceError::Revocations`] if `revoked.json` exists but cannot be read.
    pub fn new(
        initial: Registry,
        file: Option<PathBuf>,
        data_dir: Option<&Path>,
    ) -> Result<Self, ServiceError> {
        let revoked_file = data_dir.map(|dir| dir.join(REVOKED_FILE));
        let revoked = match &revoked_file {
            Some(path) if path.exists() => read_revocations(path)?,
            _ => BTreeSet::new(),
        };
        let seen = file.as_deref().and_then(stamp);
        let live = LiveRegistry {
            current: RwLock::new(Arc::new(initial)),
            file,
            seen: Mutex::new(seen),
            revoked_file,
            revoked: Mutex::new(revoked),
        };
        let with_revocations = live.with_revocations(live.snapshot().as_ref().clone());
        live.swap(with_revocations);
        Ok(live)
    }

    /// The registry now (a request keeps the snapshot it started with).
    pub fn snapshot(&self) -> Arc<Registry> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn swap(&self, registry: Registry) {
        let registry = Arc::new(registry);
        match self.current.write() {
            Ok(mut current) => *current = registry,
            Err(poisoned) => *poisoned.into_inner() = registry,
        }
    }

    fn with_revocations(&self, mut registry: Registry) -> Registry {
        let revoked = match self.revoked.lock() {
            Ok(revoked) => revoked.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for key in revoked {
            registry.revoke(key);
        }
        registry
    }

    /// Revokes `key` for every new request; with a data directory, durably first. Returns
    /// whether it was newly revoked.
    ///
    /// # Errors
    /// [`ServiceError::Revocations`] if the revocation cannot be written (nothing changes then).
    pub fn revoke(&self, key: Pubkey) -> Result<bool, ServiceError> {
        let mut revoked = match self.revoked.lock() {
            Ok(revoked) => revoked,
            Err(poisoned) => poisoned.into_inner(),
        };
        let newly = !self.snapshot().is_revoked(&key);
        if revoked.insert(key) {
            if let Some(path) = &self.revoked_file {
                if let Err(error) = write_revocations(path, &revoked) {
                    revoked.remove(&key);
                    return Err(error);
                }
            }
        }
        drop(revoked);
        let mut next = self.snapshot().as_ref().clone();
        next.revoke(key);
        self.swap(next);
        Ok(newly)
    }

    /// Whether revocations survive a restart.
    pub fn durable(&self) -> bool {
        self.revoked_file.is_some()
    }

    /// Reloads the registry file if it changed since the last look.
    ///
    /// # Errors
    /// The file's error; the previous registry stays in force (and the same version of the
    /// file is not tried again).
    pub fn reload_if_changed(&self) -> Result<Reload, FileError> {
        let Some(path) = &self.file else {
            return Ok(Reload::Unchanged);
        };
        let now = stamp(path);
        {
            let mut seen = match self.seen.lock() {
                Ok(seen) => seen,
                Err(poisoned) => poisoned.into_inner(),
            };
            if *seen == now {
                return Ok(Reload::Unchanged);
            }
            *seen = now;
        }
        let registry = load_registry(path)?;
        self.swap(self.with_revocations(registry));
        Ok(Reload::Loaded)
    }
}

fn read_revocations(path: &Path) -> Result<BTreeSet<Pubkey>, ServiceError> {
    let problem = |detail: String| ServiceError::Revocations {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let keys: Vec<String> = serde_json::from_str(&text)
        .map_err(|e| problem(format!("not a JSON array of base58 keys: {e}")))?;
    keys.iter()
        .map(|key| Pubkey::from_str(key).map_err(|e| problem(format!("{key:?}: {e}"))))
        .collect()
}

fn write_revocations(path: &Path, revoked: &BTreeSet<Pubkey>) -> Result<(), ServiceError> {
    use std::io::Write;
    let problem = |detail: String| ServiceError::Revocations {
        path: path.to_path_buf(),
        detail,
    };
    let keys: Vec<String> = revoked.iter().map(ToString::to_string).collect();
    let text = serde_json::to_string_pretty(&keys).map_err(|e| problem(e.to_string()))?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(|e| problem(e.to_string()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| problem(e.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|e| problem(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::files::RegistryFile;
    use ed25519_dalek::SigningKey;
    use mupib_protocol::cert::{pubkey_of, Certificate, Role};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn write(path: &Path, vendors: &[u8], revoked: &[u8]) {
        let authority = key(1);
        let file = RegistryFile {
            authorities: vec![pubkey_of(&authority).to_string()],
            certificates: vendors
                .iter()
                .map(|seed| {
                    Certificate::issue(&authority, pubkey_of(&key(*seed)), Role::Vendor, "v", 0, 9)
                        .unwrap()
                })
                .collect(),
            revoked: revoked
                .iter()
                .map(|seed| pubkey_of(&key(*seed)).to_string())
                .collect(),
        };
        std::fs::write(path, serde_json::to_string(&file).unwrap()).unwrap();
    }

    #[test]
    fn file_changes_are_picked_up_a_bad_file_keeps_the_old_registry_and_revocations_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        write(&path, &[2, 3], &[]);
        let live = LiveRegistry::new(
            load_registry(&path).unwrap(),
            Some(path.clone()),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(live.reload_if_changed().unwrap(), Reload::Unchanged);
        let vendor = pubkey_of(&key(2));
        assert!(live
            .snapshot()
            .check_subject(&vendor, Role::Vendor, 1)
            .is_ok());

        // Revoked in the file while its certificate stays listed: loads, vendor refused.
        write(&path, &[2, 3], &[2]);
        assert_eq!(live.reload_if_changed().unwrap(), Reload::Loaded);
        assert!(live
            .snapshot()
            .check_subject(&vendor, Role::Vendor, 1)
            .is_err());

        // A malformed file: refused, the previous registry stays.
        std::fs::write(&path, "{ not json").unwrap();
        assert!(live.reload_if_changed().is_err());
        assert!(live.snapshot().is_revoked(&vendor));
        assert!(live
            .snapshot()
            .check_subject(&pubkey_of(&key(3)), Role::Vendor, 1)
            .is_ok());

        // Revoked through the endpoint: at once, and again after a reload and a restart.
        let other = pubkey_of(&key(3));
        assert!(live.revoke(other).unwrap());
        assert!(!live.revoke(other).unwrap());
        assert!(live.snapshot().is_revoked(&other));
        write(&path, &[2, 3], &[]);
        assert_eq!(live.reload_if_changed().unwrap(), Reload::Loaded);
        assert!(live.snapshot().is_revoked(&other));
        assert!(
            !live.snapshot().is_revoked(&vendor),
            "the file un-revoked it"
        );
        let restarted =
            LiveRegistry::new(load_registry(&path).unwrap(), Some(path), Some(dir.path())).unwrap();
        assert!(restarted.snapshot().is_revoked(&other));
    }
}
