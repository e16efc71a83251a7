//! Several service instances on one store (issue 12): what they must agree on besides the
//! store's own compare-and-swap — which instance verifies a pending block on the chain, and
//! which one runs settlement. One instance ([`SingleInstance`]) owns both; on PostgreSQL the
//! store's leases ([`PostgresLeases`]) decide, and a lease dies with its holder.
//!
//! Why this is enough (with the store's guarantees, docs/DESIGN.md "Several instances"):
//! - intake: a user's steps compare-and-swap the user's version, so two instances taking
//!   payments of one user never fork its queue, trust or block; the loser's group re-runs;
//!   block ids are claimed by compare-and-swap on the counter row, so they are unique;
//! - blocks: an instance verifies a pending block only under its lease; a verification of a
//!   block decided meanwhile returns the chain's recorded decisions (the program verifies and
//!   pays each position once) and applying them again returns the stored outcome;
//! - settlement: only the lease holder runs it; a stale holder (lost its connection while
//!   running) is stopped by the on-chain payout sequence, which accepts each number once;
//! - answers: every instance re-derives any answer from the shared store, and its long-polls
//!   look at the store periodically, since another instance may apply the decisions.

use std::time::Duration;

use mupib_auditor::store::PostgresLeases;

/// How often a long-poll on a shared store looks for a decision another instance applied.
pub const SHARED_POLL: Duration = Duration::from_millis(250);

/// What the instances of one store agree on.
pub trait Coordination: Send + Sync {
    /// Whether other instances may write the store.
    fn shared(&self) -> bool;
    /// Claims block `block_id` for verification; `false` if another instance holds it.
    fn claim_block(&self, block_id: u64) -> bool;
    /// Gives a claimed block back.
    fn release_block(&self, block_id: u64);
    /// Whether this instance runs settlement now.
    fn settlement_leader(&self) -> bool;
}

/// The only instance of its store: it owns every block and settlement.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleInstance;

impl Coordination for SingleInstance {
    fn shared(&self) -> bool {
        false
    }
    fn claim_block(&self, _block_id: u64) -> bool {
        true
    }
    fn release_block(&self, _block_id: u64) {}
    fn settlement_leader(&self) -> bool {
        true
    }
}

/// One of several instances on a PostgreSQL store.
#[derive(Debug)]
pub struct SharedInstance(pub PostgresLeases);

impl Coordination for SharedInstance {
    fn shared(&self) -> bool {
        true
    }
    fn claim_block(&self, block_id: u64) -> bool {
        match self.0.try_block(block_id) {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(block_id, %error, "cannot claim the block (database); left to a later retry");
                false
            }
        }
    }
    fn release_block(&self, block_id: u64) {
        self.0.release_block(block_id);
    }
    fn settlement_leader(&self) -> bool {
        match self.0.settlement_leader() {
            Ok(leader) => leader,
            Err(error) => {
                tracing::warn!(%error, "cannot take the settlement lease (database); not settling now");
                false
            }
        }
    }
}
