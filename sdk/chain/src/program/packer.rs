//! The block packer: splits a block's entries into the fewest `block_verify_chunk`
//! transactions that fit the 1232-byte packet limit.
//!
//! Chunks are contiguous runs of positions. Each candidate chunk is measured by building the
//! real instruction and serialising the real (unsigned, zero-signature) transaction with
//! bincode, exactly as it travels on the wire; nothing is estimated. A run that fits stays
//! fitting when an entry is removed (the size only grows with entries and accounts), so taking
//! the longest fitting run at every step gives the fewest chunks.

use std::collections::HashMap;

use mupib::constants::MAX_BATCHES_PER_CHUNK;
use mupib::instructions::{BlockVerifyChunkArgs, TokenEntry};
use solana_sdk::instruction::Instruction;
use solana_sdk::message::Message;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::transaction::Transaction;

use mupib_protocol::token::TokenRef;

use super::instructions::{block_verify_chunk, BatchRef};
use crate::ledger::PACKET_DATA_SIZE;

/// The fixed accounts of a block's verification transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyAccounts {
    /// The auditor that opened the block (signer and fee payer).
    pub auditor: Pubkey,
    /// The block id.
    pub block_id: u64,
    /// The payment mint (`Config.mint`).
    pub mint: Pubkey,
    /// The auditor's token account that receives the payments.
    pub auditor_token: Pubkey,
}

/// One verification transaction's worth of positions.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedChunk {
    /// First block position of the chunk.
    pub start: u32,
    /// Number of positions.
    pub len: u32,
    /// The batches referenced, in `batch_index` order.
    pub batches: Vec<BatchRef>,
    /// The `block_verify_chunk` instruction.
    pub instruction: Instruction,
    /// Serialized size of the transaction carrying it (one signature, the auditor paying).
    pub transaction_size: usize,
}

/// Why a block could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A single entry does not fit in a transaction (cannot happen with the program's layout).
    #[error("block position {position} does not fit in a {limit}-byte transaction on its own")]
    EntryTooLarge {
        /// The position.
        position: u32,
        /// The limit.
        limit: usize,
    },
    /// Positions overflow `u32`.
    #[error("block positions overflow u32: the block is too large, split it")]
    TooManyPositions,
    /// The transaction could not be serialized for measuring.
    #[error("cannot serialize a verification transaction: {0}")]
    Serialize(String),
}

/// The bincode-serialized size of a transaction holding `instructions`, paid by `payer`, with
/// all its signatures present.
pub fn transaction_size(instructions: &[Instruction], payer: &Pubkey) -> Result<usize, PackError> {
    let transaction = Transaction::new_unsigned(Message::new(instructions, Some(payer)));
    let size =
        bincode::serialized_size(&transaction).map_err(|e| PackError::Serialize(e.to_string()))?;
    usize::try_from(size).map_err(|e| PackError::Serialize(e.to_string()))
}

fn build_chunk(
    accounts: &VerifyAccounts,
    start: u32,
    entries: &[TokenRef],
) -> Result<Option<PackedChunk>, PackError> {
    let mut batches: Vec<BatchRef> = Vec::new();
    let mut index: HashMap<BatchRef, u8> = HashMap::new();
    let mut token_entries = Vec::with_capacity(entries.len());
    for entry in entries {
        // The block's auditor redeems only batches bound to itself.
        let key = BatchRef {
            bank: entry.id.bank,
            auditor: accounts.auditor,
            batch_id: entry.id.batch_id,
        };
        let batch_index = match index.get(&key) {
            Some(i) => *i,
            None => {
                if batches.len() >= MAX_BATCHES_PER_CHUNK {
                    return Ok(None);
                }
                let i = u8::try_from(batches.len()).map_err(|_| PackError::TooManyPositions)?;
                index.insert(key, i);
                batches.push(key);
                i
            }
        };
        // The one conversion of a token into the program's verification entry.
        token_entries.push(TokenEntry {
            batch_index,
            serial: entry.id.serial,
            token_digest: entry.digest,
        });
    }
    let len = u32::try_from(entries.len()).map_err(|_| PackError::TooManyPositions)?;
    let args = BlockVerifyChunkArgs {
        start,
        entries: token_entries,
    };
    let instruction = block_verify_chunk(
        &accounts.auditor,
        accounts.block_id,
        &accounts.mint,
        &accounts.auditor_token,
        args,
        &batches,
    );
    let size = transaction_size(std::slice::from_ref(&instruction), &accounts.auditor)?;
    if size > PACKET_DATA_SIZE {
        return Ok(None);
    }
    Ok(Some(PackedChunk {
        start,
        len,
        batches,
        instruction,
        transaction_size: size,
    }))
}

/// Splits `entries` (block positions `first_position, first_position + 1, …`) into the fewest
/// verification chunks whose transactions fit [`PACKET_DATA_SIZE`].
pub fn pack_block(
    accounts: &VerifyAccounts,
    first_position: u32,
    entries: &[TokenRef],
) -> Result<Vec<PackedChunk>, PackError> {
    u32::try_from(entries.len())
        .ok()
        .and_then(|n| first_position.checked_add(n))
        .ok_or(PackError::TooManyPositions)?;
    let mut chunks = Vec::new();
    let mut offset = 0usize;
    while offset < entries.len() {
        let start = u32::try_from(offset)
            .ok()
            .and_then(|o| first_position.checked_add(o))
            .ok_or(PackError::TooManyPositions)?;
        // Grow the run one entry at a time while it fits (sizes grow monotonically).
        let mut best: Option<PackedChunk> = None;
        let mut end = offset;
        while end < entries.len() {
            match build_chunk(accounts, start, &entries[offset..=end])? {
                Some(chunk) => {
                    best = Some(chunk);
                    end += 1;
                }
                None => break,
            }
        }
        let chunk = best.ok_or(PackError::EntryTooLarge {
            position: start,
            limit: PACKET_DATA_SIZE,
        })?;
        offset = end;
        chunks.push(chunk);
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mupib_protocol::token::TokenId;

    fn accounts() -> VerifyAccounts {
        VerifyAccounts {
            auditor: Pubkey::new_unique(),
            block_id: 7,
            mint: Pubkey::new_unique(),
            auditor_token: Pubkey::new_unique(),
        }
    }

    /// `count` entries spread round-robin over `batches` batches of distinct banks.
    fn entries(count: u32, batches: u32) -> Vec<TokenRef> {
        let banks: Vec<Pubkey> = (0..batches).map(|_| Pubkey::new_unique()).collect();
        (0..count)
            .map(|i| TokenRef {
                id: TokenId {
                    bank: banks[(i % batches) as usize],
                    batch_id: u64::from(i % batches),
                    serial: i,
                },
                value: 1,
                digest: [i as u8; 16],
            })
            .collect()
    }

    fn check_cover(chunks: &[PackedChunk], payer: &Pubkey, first: u32, count: u32) {
        let mut next = first;
        for chunk in chunks {
            assert_eq!(chunk.start, next, "chunks must be contiguous");
            assert!(chunk.len > 0);
            assert!(chunk.transaction_size <= PACKET_DATA_SIZE);
            let measured =
                transaction_size(std::slice::from_ref(&chunk.instruction), payer).unwrap();
            assert_eq!(measured, chunk.transaction_size);
            next += chunk.len;
        }
        assert_eq!(next, first + count, "every entry covered exactly once");
    }

    #[test]
    fn one_batch_fits_at_least_32_tokens_per_transaction() {
        let a = accounts();
        let chunks = pack_block(&a, 0, &entries(200, 1)).unwrap();
        check_cover(&chunks, &a.auditor, 0, 200);
        assert!(
            chunks[0].len >= 32,
            "tokens per tx with one batch: {}",
            chunks[0].len
        );
        // Maximality: one more entry would not fit.
        let first_len = chunks[0].len as usize;
        assert!(build_chunk(&a, 0, &entries(200, 1)[..=first_len])
            .unwrap()
            .is_none());
    }

    #[test]
    fn packing_is_contiguous_and_covers_everything_for_1_2_4_batches() {
        for batches in [1, 2, 4] {
            let a = accounts();
            let chunks = pack_block(&a, 10, &entries(150, batches)).unwrap();
            check_cover(&chunks, &a.auditor, 10, 150);
            for chunk in &chunks {
                assert!(chunk.batches.len() <= batches as usize);
            }
            let per_tx = chunks[0].len;
            println!("{batches} batches: {per_tx} tokens per transaction");
            assert!(per_tx >= 20, "{batches} batches: {per_tx} tokens per tx");
        }
    }

    #[test]
    fn more_batches_than_the_chunk_limit_are_split() {
        let a = accounts();
        let chunks = pack_block(&a, 0, &entries(40, 40)).unwrap();
        check_cover(&chunks, &a.auditor, 0, 40);
        assert!(chunks
            .iter()
            .all(|c| c.batches.len() <= MAX_BATCHES_PER_CHUNK));
    }

    #[test]
    fn empty_block_packs_to_no_chunk() {
        assert!(pack_block(&accounts(), 0, &[]).unwrap().is_empty());
    }

    #[test]
    fn position_overflow_is_refused() {
        let result = pack_block(&accounts(), u32::MAX, &entries(2, 1));
        assert!(matches!(result, Err(PackError::TooManyPositions)));
    }
}
