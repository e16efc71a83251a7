//! Decoding µPIB events from transaction logs.
//!
//! On the real chain the program emits each event with `sol_log_data`, which the runtime logs as
//! `Program data: <base64>`; natively (the embedded ledger) the program writes the same payload
//! through `msg!`, logged as `Program log: Program data: <base64>` (see `mupib::events`). The
//! payload is the event's 8-byte Anchor discriminator followed by its borsh encoding.
//!
//! Only lines logged while the µPIB program itself is executing count: the decoder follows the
//! runtime's `Program <id> invoke [n]` / `Program <id> success|failed` lines, so a payload logged
//! by another program (a CPI target, or any other program in the same transaction) is ignored.

use crate::ledger::Receipt;
use anchor_lang::{AnchorDeserialize, Discriminator};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mupib::events as ev;

const DATA_PREFIX: &str = "Program data: ";
const NATIVE_DATA_PREFIX: &str = "Program log: Program data: ";

macro_rules! mupib_events {
    ($($name:ident),* $(,)?) => {
        /// A decoded µPIB event (the program's own event types).
        pub enum MupibEvent {
            $(
                #[doc = concat!("`mupib::events::", stringify!($name), "`.")]
                $name(ev::$name),
            )*
        }

        impl MupibEvent {
            /// The event's name, as in the program.
            pub fn name(&self) -> &'static str {
                match self {
                    $(MupibEvent::$name(_) => stringify!($name),)*
                }
            }

            /// Decodes one event payload (discriminator + borsh). `None` for a payload that is
            /// not a µPIB event or does not decode.
            pub fn decode(payload: &[u8]) -> Option<MupibEvent> {
                $(
                    if let Some(mut body) = payload.strip_prefix(ev::$name::DISCRIMINATOR) {
                        return ev::$name::deserialize(&mut body).ok().map(MupibEvent::$name);
                    }
                )*
                None
            }

            /// The event's payload as the program logs it (discriminator + borsh).
            pub fn data(&self) -> Vec<u8> {
                match self {
                    $(MupibEvent::$name(event) => anchor_lang::Event::data(event),)*
                }
            }
        }
    };
}

mupib_events!(
    ConfigInitialized,
    PausedSet,
    BankRegistered,
    BankActiveSet,
    AuditorRegistered,
    AuditorActiveSet,
    BatchCreated,
    BatchPublished,
    BatchSealed,
    BatchClosed,
    BlockOpened,
    BlockChunkVerified,
    BlockFinalized,
    BlockClosed,
    PayoutRecorded,
);

impl std::fmt::Debug for MupibEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The program's event types do not derive Debug; show the name and the payload.
        write!(f, "{}({})", self.name(), STANDARD.encode(self.data()))
    }
}

impl PartialEq for MupibEvent {
    fn eq(&self, other: &Self) -> bool {
        self.data() == other.data()
    }
}

impl Receipt {
    /// The µPIB events of the transaction, decoded from its logs in emission order.
    pub fn events(&self) -> Vec<MupibEvent> {
        decode_events(&self.logs)
    }
}

/// Decodes every µPIB event logged by the µPIB program in `logs`, in order.
pub fn decode_events(logs: &[String]) -> Vec<MupibEvent> {
    let program = mupib::ID.to_string();
    let invoke_prefix = "Program ";
    let mut stack: Vec<bool> = Vec::new();
    let mut events = Vec::new();
    for line in logs {
        if let Some(rest) = line.strip_prefix(invoke_prefix) {
            // `Program <id> invoke [n]`, `Program <id> success`, `Program <id> failed: ...`.
            let mut words = rest.split_whitespace();
            let id = words.next().unwrap_or_default();
            match words.next() {
                Some("invoke") => {
                    stack.push(id == program);
                    continue;
                }
                Some("success") | Some("failed:") => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
        }
        if stack.last() != Some(&true) {
            continue;
        }
        let encoded = line
            .strip_prefix(NATIVE_DATA_PREFIX)
            .or_else(|| line.strip_prefix(DATA_PREFIX));
        let Some(encoded) = encoded else { continue };
        // `sol_log_data` separates several fields with spaces; Anchor logs exactly one.
        let Some(first) = encoded.split_whitespace().next() else {
            continue;
        };
        if let Some(event) = STANDARD
            .decode(first)
            .ok()
            .and_then(|p| MupibEvent::decode(&p))
        {
            events.push(event);
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::prelude::Pubkey;

    fn sealed(batch: Pubkey, count: u32) -> String {
        let data = anchor_lang::Event::data(&ev::BatchSealed {
            batch,
            token_count: count,
        });
        STANDARD.encode(data)
    }

    #[test]
    fn decodes_both_native_and_chain_forms_inside_the_program_only() {
        let batch = Pubkey::new_unique();
        let other = Pubkey::new_unique();
        let logs = vec![
            format!("Program {} invoke [1]", mupib::ID),
            format!("Program log: Program data: {}", sealed(batch, 7)),
            format!("Program {other} invoke [2]"),
            // A payload logged by another program is not a µPIB event.
            format!("Program data: {}", sealed(batch, 99)),
            format!("Program {other} success"),
            format!("Program data: {}", sealed(batch, 8)),
            format!("Program {} success", mupib::ID),
            // Outside any invocation.
            format!("Program data: {}", sealed(batch, 100)),
        ];
        let events = decode_events(&logs);
        let counts: Vec<u32> = events
            .iter()
            .map(|e| match e {
                MupibEvent::BatchSealed(s) => s.token_count,
                _ => u32::MAX,
            })
            .collect();
        assert_eq!(counts, vec![7, 8]);
    }

    #[test]
    fn forged_payload_with_unknown_discriminator_is_ignored() {
        let logs = vec![
            format!("Program {} invoke [1]", mupib::ID),
            format!("Program data: {}", STANDARD.encode([1u8; 40])),
            "Program data: not-base64!".to_string(),
            format!("Program {} success", mupib::ID),
        ];
        assert!(decode_events(&logs).is_empty());
    }
}
