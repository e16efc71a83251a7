//! Blockhashes that never come back after a restart.
//!
//! The bank of `solana-program-test` registers a new recent blockhash every simulated slot with
//! `Hash::new_unique()`: a process-wide counter (little-endian in the first 8 bytes, the other 24
//! zero) that starts at 1 in every process. Left alone, every run of the ledger hands out the
//! same blockhashes in the same order, so a transaction signed before a restart becomes valid
//! again after it and — the bank's status cache being new — would execute a second time.
//!
//! The ledger therefore takes its blockhashes from its own history: every journal record
//! carries the highest counter of a blockhash the directory has handed out or executed a
//! transaction with (the *watermark*), and before the bank starts, [`skip_past`] moves the
//! process's counter beyond it. The blockhashes of a new run are then all new, and a
//! transaction signed in an earlier run is refused (`BlockhashNotFound`) unless the history
//! answers it first (its signature status is persisted; see `history.rs`).
//!
//! A transaction can only have executed durably if its journal record (which carries its
//! blockhash's counter) was written; one whose execution was lost in a crash never executed as
//! far as the ledger is concerned, and may then execute once.

use solana_sdk::hash::Hash;

use crate::ledger::LedgerError;

/// Most counter values [`skip_past`] will step over in one open (a watermark further than that
/// from the process's counter means the data directory is not what this version wrote).
const MAX_SKIP: u64 = 1 << 36;

/// The counter of a `Hash::new_unique()` hash, `None` for any other hash.
pub(super) fn counter(hash: &Hash) -> Option<u64> {
    let bytes = hash.to_bytes();
    if bytes[8..].iter().any(|b| *b != 0) {
        return None;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[..8]);
    Some(u64::from_le_bytes(low))
}

/// Moves the process's `Hash::new_unique()` counter past `watermark`.
pub(super) fn skip_past(watermark: u64) -> Result<(), LedgerError> {
    let first = counter(&Hash::new_unique()).unwrap_or(u64::MAX);
    if first > watermark {
        return Ok(());
    }
    if watermark - first > MAX_SKIP {
        return Err(LedgerError::Backend(format!(
            "the ledger's blockhash watermark {watermark} is implausibly far ahead; the data directory is damaged"
        )));
    }
    while counter(&Hash::new_unique()).is_some_and(|c| c <= watermark) {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_hashes_are_counters_and_skipping_moves_past_the_watermark() {
        let now = counter(&Hash::new_unique()).expect("a counter hash");
        skip_past(now + 1000).expect("skip");
        let next = counter(&Hash::new_unique()).expect("a counter hash");
        assert!(next > now + 1000);
        assert_eq!(counter(&Hash::new_from_array([7; 32])), None);
    }
}
