//! Token commitments (SPEC §2, paper eq. 1): `SHA-256(COMMITMENT_TAG || token_digest16)[..16]`.
//!
//! Used on-chain (the `sol_sha256` syscall on SBF) and off-chain (the `sha2` crate), with the
//! same result; the SDK reuses [`commitment`].

use crate::constants::{COMMITMENT_LEN, COMMITMENT_TAG};

/// The 16-byte commitment a batch stores for a token whose digest starts with `token_digest`.
pub fn commitment(token_digest: &[u8; COMMITMENT_LEN]) -> [u8; COMMITMENT_LEN] {
    let hash = solana_sha256_hasher::hashv(&[COMMITMENT_TAG, token_digest]);
    let mut out = [0u8; COMMITMENT_LEN];
    out.copy_from_slice(&hash.as_ref()[..COMMITMENT_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn commitment_matches_sha256_of_tag_and_digest_truncated_to_16_bytes() {
        // Known answers computed independently (Python hashlib).
        let counting: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            hex(&commitment(&counting)),
            "660a97cb15ab895eb362e6d5013fdae8"
        );
        assert_eq!(
            hex(&commitment(&[0; 16])),
            "ad17d3c97cea897b65d82aaea5bc35b8"
        );
    }

    #[test]
    fn commitment_changes_with_every_digest_bit() {
        let base = [0x5A; 16];
        let reference = commitment(&base);
        for bit in 0..128 {
            let mut flipped = base;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(commitment(&flipped), reference, "bit {bit}");
        }
    }
}
