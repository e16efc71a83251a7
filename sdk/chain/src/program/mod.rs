//! The µPIB program's interface, off-chain and pure (no I/O except the `fetch_*` helpers): PDAs
//! ([`pda`]), instruction builders ([`instructions`]), account decoders ([`accounts`]), event
//! decoding ([`events`]) and the block packer ([`packer`]).

pub mod accounts;
pub mod events;
pub mod instructions;
pub mod packer;
pub mod pda;

#[cfg(test)]
mod tests {
    use mupib_protocol::token::{Token, COMMITMENT_LEN, COMMITMENT_TAG};

    /// The SDK's commitment (tag, truncation) is the program's.
    #[test]
    fn commitment_tag_matches_program() {
        assert_eq!(COMMITMENT_TAG, mupib::constants::COMMITMENT_TAG);
        assert_eq!(COMMITMENT_LEN, mupib::constants::COMMITMENT_LEN);
        for seed in 0..8u8 {
            let key = ed25519_dalek::SigningKey::from_bytes(&[10 + seed; 32]);
            let token = Token::sign(&key, u64::from(seed), 3, 7, 9);
            assert_eq!(
                mupib::commitment::commitment(&token.token_digest16()),
                token.commitment()
            );
        }
    }
}
