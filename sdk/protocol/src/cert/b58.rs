//! serde adapters writing keys and signatures as base58 strings (Solana's convention), for
//! `#[serde(with = "...")]`. JSON is for display and transport only; signing and hashing use
//! borsh.

/// A [`crate::Pubkey`] as a base58 string.
pub mod pubkey {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::str::FromStr;

    /// Serializes as base58.
    pub fn serialize<S: Serializer>(key: &crate::Pubkey, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(key)
    }

    /// Parses base58.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<crate::Pubkey, D::Error> {
        let text = String::deserialize(d)?;
        crate::Pubkey::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature (`[u8; 64]`) as a base58 string.
pub mod signature {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as base58.
    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bs58::encode(sig).into_string())
    }

    /// Parses base58 (exactly 64 bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = bs58::decode(&text)
            .into_vec()
            .map_err(serde::de::Error::custom)?;
        bytes.as_slice().try_into().map_err(|_| {
            serde::de::Error::custom(format!(
                "a signature has 64 bytes, this base58 string decodes to {}",
                bytes.len()
            ))
        })
    }
}
