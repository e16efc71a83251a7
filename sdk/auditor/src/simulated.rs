//! [`SimulatedChain`]: a [`BlockVerifier`] that decides from ground truth exactly as the program
//! does (the simulation's chain, and a fast second backend for tests).

use std::collections::HashMap;

use mupib_protocol::block::{BlockSubmission, BlockVerification, BlockVerifier, VerifierError};
use mupib_protocol::decision::Decision;
use mupib_protocol::token::{TokenDigest16, TokenId, TokenRef};
use mupib_protocol::Pubkey;

/// A published batch in the simulated chain.
#[derive(Debug, Clone)]
struct SimBatch {
    value: u64,
    digests: Vec<TokenDigest16>,
    spent: Vec<bool>,
}

/// A chain that decides from ground truth with the program's rules: it knows the published
/// batches (value and token digests), the spent flags, and the decisions already given per block
/// id (so resubmitting a block returns the same decisions, as on-chain).
///
/// It compares digests directly where the program compares commitments
/// `SHA-256(tag ‖ digest16)[..16]`: the two tests agree (equal digests give equal commitments;
/// a 128-bit collision is out of reach), and the simulation saves a hash per token.
#[derive(Debug, Default, Clone)]
pub struct SimulatedChain {
    batches: HashMap<(Pubkey, u64), SimBatch>,
    decided: HashMap<u64, BlockVerification>,
    escrow_paid: u128,
    keep_decided: bool,
}

impl SimulatedChain {
    /// An empty chain that remembers the decisions of every block (resubmission-safe).
    pub fn new() -> Self {
        SimulatedChain {
            keep_decided: true,
            ..Default::default()
        }
    }

    /// An empty chain that forgets decisions once given (the simulation never resubmits).
    pub fn forgetful() -> Self {
        SimulatedChain::default()
    }

    /// Publishes and seals a batch: token `serial` has digest `digests[serial]` and value `value`.
    /// Republishing the same (bank, batch id) replaces it.
    pub fn publish_batch(
        &mut self,
        bank: Pubkey,
        batch_id: u64,
        value: u64,
        digests: Vec<TokenDigest16>,
    ) {
        let spent = vec![false; digests.len()];
        self.batches.insert(
            (bank, batch_id),
            SimBatch {
                value,
                digests,
                spent,
            },
        );
    }

    /// Whether a token's spent flag is set.
    pub fn is_spent(&self, token: &TokenId) -> bool {
        self.batches
            .get(&(token.bank, token.batch_id))
            .and_then(|b| b.spent.get(usize::try_from(token.serial).ok()?).copied())
            .unwrap_or(false)
    }

    /// Total the escrows paid the auditor (v per valid token).
    pub fn escrow_paid(&self) -> u128 {
        self.escrow_paid
    }

    /// Decides one entry with the program's rules, setting the spent flag of a valid token.
    /// Returns the decision and what the escrow paid for it.
    fn decide(&mut self, entry: &TokenRef) -> (Decision, u64) {
        let Some(batch) = self.batches.get_mut(&(entry.id.bank, entry.id.batch_id)) else {
            return (Decision::Unpublished, 0);
        };
        let Ok(index) = usize::try_from(entry.id.serial) else {
            return (Decision::Unpublished, 0);
        };
        let (Some(digest), Some(spent)) = (batch.digests.get(index), batch.spent.get_mut(index))
        else {
            return (Decision::Unpublished, 0);
        };
        if *digest != entry.digest {
            return (Decision::Altered, 0);
        }
        if *spent {
            return (Decision::Duplicate, 0);
        }
        *spent = true;
        self.escrow_paid = self.escrow_paid.saturating_add(u128::from(batch.value));
        (Decision::Valid, batch.value)
    }
}

impl BlockVerifier for SimulatedChain {
    fn verify(&mut self, block: &BlockSubmission) -> Result<BlockVerification, VerifierError> {
        if let Some(previous) = self.decided.get(&block.block_id) {
            return Ok(previous.clone());
        }
        let mut verification = BlockVerification {
            decisions: Vec::with_capacity(block.entries.len()),
            amount_paid: 0,
        };
        for entry in &block.entries {
            let (decision, paid) = self.decide(entry);
            verification.decisions.push(decision);
            verification.amount_paid = verification.amount_paid.saturating_add(paid);
        }
        if self.keep_decided {
            self.decided.insert(block.block_id, verification.clone());
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank() -> Pubkey {
        Pubkey::new_from_array([3; 32])
    }

    fn entry(batch_id: u64, serial: u32, digest: u8) -> TokenRef {
        TokenRef {
            id: TokenId {
                bank: bank(),
                batch_id,
                serial,
            },
            value: 50,
            digest: [digest; 16],
        }
    }

    #[test]
    fn simulated_chain_checks_unpublished_then_altered_then_duplicate() {
        let mut chain = SimulatedChain::new();
        chain.publish_batch(bank(), 1, 50, vec![[1; 16], [2; 16], [3; 16]]);
        let block = BlockSubmission {
            block_id: 9,
            user: bank(),
            entries: vec![
                entry(1, 0, 1), // valid
                entry(1, 0, 1), // same token again in the block: duplicate
                entry(1, 1, 9), // wrong digest: altered
                entry(1, 3, 3), // serial ≥ token count: unpublished
                entry(2, 0, 1), // unknown batch: unpublished
                entry(1, 0, 7), // altered wins over duplicate (checked first)
                entry(1, 2, 3), // valid
            ],
        };
        let decisions = chain.verify(&block).unwrap().decisions;
        assert_eq!(
            decisions,
            vec![
                Decision::Valid,
                Decision::Duplicate,
                Decision::Altered,
                Decision::Unpublished,
                Decision::Unpublished,
                Decision::Altered,
                Decision::Valid,
            ]
        );
        assert_eq!(chain.escrow_paid(), 100);
        assert!(chain.is_spent(&entry(1, 0, 1).id));
        assert!(
            !chain.is_spent(&entry(1, 1, 2).id),
            "an altered token is not spent"
        );
        // Resubmitting the block returns the same decisions and pays nothing more.
        assert_eq!(chain.verify(&block).unwrap().decisions, decisions);
        assert_eq!(chain.escrow_paid(), 100);
        // A later block presenting a spent token gets Duplicate.
        let later = BlockSubmission {
            block_id: 10,
            user: bank(),
            entries: vec![entry(1, 2, 3)],
        };
        assert_eq!(
            chain.verify(&later).unwrap().decisions,
            vec![Decision::Duplicate]
        );
    }
}
