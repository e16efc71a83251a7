//! `Batch` (`["batch", bank, auditor, batch_id_le]`): a bank's published tokens, redeemable by
//! one auditor only.
//!
//! The auditor is bound by the address alone (zero rent): `block_verify_chunk` derives a batch's
//! PDA with the verifying auditor's key, so for any other auditor the batch is not at its seeds'
//! address and its tokens are `UNPUBLISHED`. A token digest copied from someone else's pending
//! verification transaction is worthless to the copier.
//!
//! Layout of the account data (zero-copy, never copied onto the stack):
//!
//! | offset | length | content |
//! |---|---|---|
//! | 0 | 8 | Anchor discriminator |
//! | 8 | 80 | [`Batch`] header |
//! | 88 | `16 × token_count` | commitments, serial order |
//! | `88 + 16 × token_count` | `ceil(token_count / 8)` | spent bitmap, bit `serial % 8` of byte `serial / 8` |

use anchor_lang::prelude::*;
use anchor_lang::Discriminator;

use crate::constants::{
    BATCH_CLOSE_GRACE_SECS, COMMITMENT_LEN, DISCRIMINATOR_LEN, MAX_BATCH_TOKENS,
    MAX_PDA_ACCOUNT_SIZE,
};
use crate::error::MupibError;

/// Zero-copy header of a batch; the commitments and the spent bitmap follow it in the account.
#[account(zero_copy)]
#[derive(Debug)]
pub struct Batch {
    /// Bank that created the batch and funded its escrow.
    pub bank: Pubkey,
    /// Bank-chosen id, part of the PDA seeds (with the bank and the auditor, which the header
    /// does not repeat).
    pub batch_id: u64,
    /// Value of each token, in base units of `Config.mint`.
    pub value: u64,
    /// Issue time (unix seconds) of the batch's tokens.
    pub issued_at: i64,
    /// Expiry (unix seconds). `BATCH_CLOSE_GRACE_SECS` after it (and after the program's last
    /// resume) the bank may close the batch and take back the unspent escrow.
    pub expires_at: i64,
    /// Number of tokens (serials `0 .. token_count`).
    pub token_count: u32,
    /// Number of commitments written so far (serials `0 .. published`).
    pub published: u32,
    /// Number of tokens spent (decided valid and paid).
    pub spent_count: u32,
    /// 1 once sealed: every commitment is written and tokens are redeemable.
    pub sealed: u8,
    /// Bump of the batch PDA.
    pub bump: u8,
    /// Bump of the escrow PDA `["escrow", batch]`.
    pub escrow_bump: u8,
    /// Reserved, zero.
    pub reserved: [u8; 1],
}

/// Offset of the commitments in the account data.
pub const BATCH_HEADER_LEN: usize = DISCRIMINATOR_LEN + std::mem::size_of::<Batch>();

const _: () = assert!(std::mem::size_of::<Batch>() == 80);
const _: () = assert!(Batch::space(MAX_BATCH_TOKENS) <= MAX_PDA_ACCOUNT_SIZE);
const _: () = assert!(Batch::space(MAX_BATCH_TOKENS + 1) > MAX_PDA_ACCOUNT_SIZE);

/// Whether the bank may close a batch now ([`Batch::closability`]); one rule for the program and
/// for the clients that explain a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closability {
    /// Closable: never sealed, every token spent, or past its grace period.
    Closable,
    /// Not expired yet: closable once `now > closable_after` (if the program is not paused then).
    NotExpired {
        /// `max(expires_at, Config.resumed_at) + BATCH_CLOSE_GRACE_SECS`.
        closable_after: i64,
    },
    /// Expired, but in its grace period: closable once `now > closable_after`.
    InGrace {
        /// `max(expires_at, Config.resumed_at) + BATCH_CLOSE_GRACE_SECS`.
        closable_after: i64,
    },
    /// The program is paused: closable `BATCH_CLOSE_GRACE_SECS` after the resume (and expiry).
    Paused,
}

/// Read-only view of a batch account's data.
pub struct BatchView<'a> {
    /// The header.
    pub header: &'a Batch,
    /// `token_count × 16` commitment bytes.
    pub commitments: &'a [u8],
    /// Spent bitmap.
    pub spent: &'a [u8],
}

/// Mutable view of a batch account's data.
pub struct BatchViewMut<'a> {
    /// The header.
    pub header: &'a mut Batch,
    /// `token_count × 16` commitment bytes.
    pub commitments: &'a mut [u8],
    /// Spent bitmap.
    pub spent: &'a mut [u8],
}

impl Batch {
    /// Account size of a batch of `token_count` tokens.
    pub const fn space(token_count: u32) -> usize {
        let count = token_count as usize;
        BATCH_HEADER_LEN + count * COMMITMENT_LEN + count.div_ceil(8)
    }

    /// Account size to allocate at creation: `space(token_count)` for a valid count, and the
    /// size of the largest batch otherwise (creation then fails with a clear error in
    /// `validate()` instead of an opaque allocation failure).
    pub const fn space_for_create(token_count: u32) -> usize {
        if token_count == 0 || token_count > MAX_BATCH_TOKENS {
            Self::space(MAX_BATCH_TOKENS)
        } else {
            Self::space(token_count)
        }
    }

    /// Splits a batch account's data into header, commitments and spent bitmap.
    /// Fails unless the data starts with the `Batch` discriminator and has the right length.
    pub fn view(data: &[u8]) -> Result<BatchView<'_>> {
        if data.len() < BATCH_HEADER_LEN || &data[..DISCRIMINATOR_LEN] != Batch::DISCRIMINATOR {
            return err!(MupibError::BatchDataInvalid);
        }
        let (head, rest) = data.split_at(BATCH_HEADER_LEN);
        let header: &Batch = bytemuck::try_from_bytes(&head[DISCRIMINATOR_LEN..])
            .map_err(|_| error!(MupibError::BatchDataInvalid))?;
        let (commitments_len, spent_len) = Self::region_lens(header.token_count)?;
        if rest.len() < commitments_len + spent_len {
            return err!(MupibError::BatchDataInvalid);
        }
        let (commitments, tail) = rest.split_at(commitments_len);
        Ok(BatchView {
            header,
            commitments,
            spent: &tail[..spent_len],
        })
    }

    /// Mutable variant of [`Batch::view`].
    pub fn view_mut(data: &mut [u8]) -> Result<BatchViewMut<'_>> {
        if data.len() < BATCH_HEADER_LEN || &data[..DISCRIMINATOR_LEN] != Batch::DISCRIMINATOR {
            return err!(MupibError::BatchDataInvalid);
        }
        let (head, rest) = data.split_at_mut(BATCH_HEADER_LEN);
        let header: &mut Batch = bytemuck::try_from_bytes_mut(&mut head[DISCRIMINATOR_LEN..])
            .map_err(|_| error!(MupibError::BatchDataInvalid))?;
        let (commitments_len, spent_len) = Self::region_lens(header.token_count)?;
        if rest.len() < commitments_len + spent_len {
            return err!(MupibError::BatchDataInvalid);
        }
        let (commitments, tail) = rest.split_at_mut(commitments_len);
        Ok(BatchViewMut {
            header,
            commitments,
            spent: &mut tail[..spent_len],
        })
    }

    fn region_lens(token_count: u32) -> Result<(usize, usize)> {
        require!(
            token_count <= MAX_BATCH_TOKENS,
            MupibError::BatchDataInvalid
        );
        let count = token_count as usize;
        Ok((count * COMMITMENT_LEN, count.div_ceil(8)))
    }

    /// Header consistency: counts within the batch, sealed only when fully published, spent
    /// only when sealed.
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.token_count >= 1 && self.token_count <= MAX_BATCH_TOKENS,
            MupibError::InvariantViolated
        );
        require!(
            self.published <= self.token_count,
            MupibError::InvariantViolated
        );
        require!(
            self.spent_count <= self.token_count,
            MupibError::InvariantViolated
        );
        require!(self.sealed <= 1, MupibError::InvariantViolated);
        require!(
            self.sealed == 0 || self.published == self.token_count,
            MupibError::InvariantViolated
        );
        require!(
            self.spent_count == 0 || self.sealed == 1,
            MupibError::InvariantViolated
        );
        Ok(())
    }

    /// Whether the batch is sealed (its tokens are redeemable).
    pub fn is_sealed(&self) -> bool {
        self.sealed == 1
    }

    /// Seals the batch: its commitments are final and its tokens redeemable (the caller has
    /// checked that every commitment is written).
    pub fn seal(&mut self) {
        self.sealed = 1;
    }

    /// Whether the bank may close the batch at `now` (issue 9: a bank must not turn tokens of a
    /// block under verification into "unpublished" by closing their batch the instant it
    /// expires, nor while verification is paused). A batch never sealed (nothing redeemable) or
    /// fully spent (nothing left to redeem) is closable at once; any other only when the program
    /// is not paused and `now > max(expires_at, resumed_at) + BATCH_CLOSE_GRACE_SECS`
    /// (saturating: a batch expiring near the end of time is never closable early).
    pub fn closability(&self, paused: bool, resumed_at: i64, now: i64) -> Closability {
        if !self.is_sealed() || self.spent_count == self.token_count {
            return Closability::Closable;
        }
        if paused {
            return Closability::Paused;
        }
        let closable_after = self
            .expires_at
            .max(resumed_at)
            .saturating_add(BATCH_CLOSE_GRACE_SECS);
        if now > closable_after {
            Closability::Closable
        } else if now < self.expires_at {
            Closability::NotExpired { closable_after }
        } else {
            Closability::InGrace { closable_after }
        }
    }
}

impl BatchViewMut<'_> {
    /// Writes `commitments` at serials `start, start + 1, …` and advances `published` past them;
    /// returns the new `published`. The caller has checked that `start == published` and that
    /// the commitments fit the batch.
    pub fn publish(&mut self, start: u32, commitments: &[[u8; COMMITMENT_LEN]]) -> Result<u32> {
        let offset = (start as usize)
            .checked_mul(COMMITMENT_LEN)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        let region = self
            .commitments
            .get_mut(offset..)
            .ok_or(error!(MupibError::PublishPastRange))?;
        for (slot, commitment) in region
            .chunks_exact_mut(COMMITMENT_LEN)
            .zip(commitments.iter())
        {
            slot.copy_from_slice(commitment);
        }
        let count =
            u32::try_from(commitments.len()).map_err(|_| error!(MupibError::ArithmeticOverflow))?;
        self.header.published = start
            .checked_add(count)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(self.header.published)
    }

    /// Marks `serial` spent and counts it (the caller has decided the token valid, so its bit
    /// was clear).
    pub fn mark_spent(&mut self, serial: u32) -> Result<()> {
        require!(set_spent(self.spent, serial), MupibError::BatchDataInvalid);
        self.header.spent_count = self
            .header
            .spent_count
            .checked_add(1)
            .ok_or(error!(MupibError::ArithmeticOverflow))?;
        Ok(())
    }
}

/// The stored commitment of `serial` (caller checks `serial < token_count`).
pub fn commitment_at(commitments: &[u8], serial: u32) -> Option<&[u8]> {
    let start = (serial as usize).checked_mul(COMMITMENT_LEN)?;
    commitments.get(start..start.checked_add(COMMITMENT_LEN)?)
}

/// Whether `serial` is marked spent in the bitmap.
pub fn is_spent(spent: &[u8], serial: u32) -> bool {
    let index = serial as usize / 8;
    let mask = 1u8 << (serial % 8);
    spent.get(index).is_some_and(|byte| byte & mask != 0)
}

/// Marks `serial` spent. Returns `false` (and changes nothing) if it is out of the bitmap.
pub fn set_spent(spent: &mut [u8], serial: u32) -> bool {
    let index = serial as usize / 8;
    let mask = 1u8 << (serial % 8);
    match spent.get_mut(index) {
        Some(byte) => {
            *byte |= mask;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_batch_is_629_tokens_in_at_most_10240_bytes() {
        assert_eq!(Batch::space(629), 88 + 629 * 16 + 79);
        assert_eq!(Batch::space(629), 10_231);
        assert!(Batch::space(630) > MAX_PDA_ACCOUNT_SIZE);
        assert_eq!(Batch::space_for_create(0), Batch::space(MAX_BATCH_TOKENS));
        assert_eq!(Batch::space_for_create(700), Batch::space(MAX_BATCH_TOKENS));
        assert_eq!(Batch::space_for_create(9), Batch::space(9));
    }

    fn sealed_batch(expires_at: i64, token_count: u32, spent_count: u32) -> Batch {
        Batch {
            bank: Pubkey::new_unique(),
            batch_id: 1,
            value: 1,
            issued_at: 0,
            expires_at,
            token_count,
            published: token_count,
            spent_count,
            sealed: 1,
            bump: 255,
            escrow_bump: 255,
            reserved: [0],
        }
    }

    #[test]
    fn expired_batch_closes_only_after_the_grace_and_never_while_paused() {
        let grace = BATCH_CLOSE_GRACE_SECS;
        let batch = sealed_batch(1_000, 4, 1);
        let after = 1_000 + grace;
        assert_eq!(
            batch.closability(false, 0, 999),
            Closability::NotExpired {
                closable_after: after
            }
        );
        for now in [1_000, 1_001, after] {
            assert_eq!(
                batch.closability(false, 0, now),
                Closability::InGrace {
                    closable_after: after
                },
                "at {now}"
            );
        }
        assert_eq!(
            batch.closability(false, 0, after + 1),
            Closability::Closable
        );
        assert_eq!(batch.closability(true, 0, after + 1), Closability::Paused);
        // Resumed after the expiry: the grace restarts at the resume.
        let resumed = 5_000 + grace;
        assert_eq!(
            batch.closability(false, 5_000, after + 1),
            Closability::InGrace {
                closable_after: resumed
            }
        );
        assert_eq!(
            batch.closability(false, 5_000, resumed + 1),
            Closability::Closable
        );
        // Near the end of time the sum saturates: never closable early.
        let last = sealed_batch(i64::MAX - 1, 4, 1);
        assert!(matches!(
            last.closability(false, 0, i64::MAX),
            Closability::InGrace { .. }
        ));
    }

    #[test]
    fn unsealed_or_fully_spent_batch_closes_at_once_even_while_paused() {
        let spent = sealed_batch(1_000, 4, 4);
        assert_eq!(spent.closability(true, 0, 0), Closability::Closable);
        let mut unsealed = sealed_batch(1_000, 4, 0);
        unsealed.sealed = 0;
        assert_eq!(unsealed.closability(true, 0, 0), Closability::Closable);
    }

    #[test]
    fn spent_bitmap_sets_and_reads_single_bits() {
        let mut bitmap = [0u8; 2];
        assert!(set_spent(&mut bitmap, 9));
        assert!(is_spent(&bitmap, 9));
        assert!(!is_spent(&bitmap, 8) && !is_spent(&bitmap, 10) && !is_spent(&bitmap, 1));
        assert_eq!(bitmap, [0, 0b10]);
        assert!(!set_spent(&mut bitmap, 16), "out of range changes nothing");
        assert!(!is_spent(&bitmap, 16));
        assert_eq!(bitmap, [0, 0b10]);
    }

    #[test]
    fn view_rejects_foreign_and_truncated_data() {
        let mut data = vec![0u8; Batch::space(3)];
        data[..DISCRIMINATOR_LEN].copy_from_slice(Batch::DISCRIMINATOR);
        data[DISCRIMINATOR_LEN + 64..DISCRIMINATOR_LEN + 68].copy_from_slice(&3u32.to_le_bytes());
        let view = Batch::view(&data).expect("valid batch");
        assert_eq!(view.header.token_count, 3);
        assert_eq!(view.commitments.len(), 48);
        assert_eq!(view.spent.len(), 1);
        assert!(Batch::view(&data[..data.len() - 1]).is_err(), "truncated");
        let mut foreign = data.clone();
        foreign[0] ^= 1;
        assert!(Batch::view(&foreign).is_err(), "wrong discriminator");
    }

    #[test]
    fn publish_seal_and_spend_move_the_header_forward() {
        let mut data = vec![0u8; Batch::space(3)];
        data[..DISCRIMINATOR_LEN].copy_from_slice(Batch::DISCRIMINATOR);
        data[DISCRIMINATOR_LEN + 64..DISCRIMINATOR_LEN + 68].copy_from_slice(&3u32.to_le_bytes());
        let mut view = Batch::view_mut(&mut data).expect("valid batch");

        assert_eq!(view.publish(0, &[[1; 16], [2; 16]]).ok(), Some(2));
        assert_eq!(view.publish(2, &[[3; 16]]).ok(), Some(3));
        assert_eq!(commitment_at(view.commitments, 2), Some(&[3u8; 16][..]));
        assert!(!view.header.is_sealed() && view.header.invariant().is_ok());

        view.header.seal();
        assert!(view.header.is_sealed() && view.header.invariant().is_ok());

        view.mark_spent(1).expect("serial 1 is in the bitmap");
        assert!(is_spent(view.spent, 1) && !is_spent(view.spent, 0));
        assert_eq!(view.header.spent_count, 1);
        assert!(view.header.invariant().is_ok());
        assert!(view.mark_spent(8).is_err(), "serial 8 is past the bitmap");
        assert_eq!(view.header.spent_count, 1);
    }
}
