//! Transaction logs as a validator writes them.
//!
//! `solana-program-test` runs a native program through a wrapper (`invoke_builtin_function`) and
//! its CPIs through a syscall stub (`sol_invoke_signed`) that both log `Program <id> invoke [n]`
//! and the result line themselves, while the runtime logs them too. So, natively:
//! - the native program's own `invoke` line appears twice, and so does its `success` /
//!   `failed: …` line (the wrapper's, then the runtime's);
//! - a CPI it makes is logged `invoke` twice (the stub's, with the caller's depth, then the
//!   runtime's, with the right one) and `success` twice (the runtime's, then the stub's);
//! - its events reach the log collector only through the `sol_log` stub, as
//!   `Program log: Program data: <base64>` (`mupib::events::emit_event`), where a validator
//!   writes `Program data: <base64>` (`sol_log_data`).
//!
//! [`normalize`] rewrites such a log into the validator's: one line per invoke and result (the
//! invocation stack decides which result line is the copy, so a program that really calls
//! itself keeps both of its lines), and `Program data: <base64>` for a native program's events.
//! A `Program log: Program data: …` line is rewritten only while a native program is the one
//! executing: the lines a native program writes reach the log only through explicit stub calls
//! (`msg!` prints to standard output natively), so there it can only be an event. Lines of
//! programs run in the real VM (SPL Token) are left as they are.
//!
//! What stays different from a validator: a native program is not metered, so its
//! `Program <id> consumed N of M compute units` line is absent (no figure is invented).

use solana_sdk::pubkey::Pubkey;

const NATIVE_DATA_PREFIX: &str = "Program log: Program data: ";
const DATA_PREFIX: &str = "Program data: ";

/// What a `Program …` line of the runtime says.
enum Line<'a> {
    /// `Program <id> invoke [<depth>]`.
    Invoke(&'a str, u32),
    /// `Program <id> success` or `Program <id> failed: …`.
    Result(&'a str),
    Other,
}

fn classify(line: &str) -> Line<'_> {
    let Some(rest) = line.strip_prefix("Program ") else {
        return Line::Other;
    };
    let Some((program, tail)) = rest.split_once(' ') else {
        return Line::Other;
    };
    if let Some(depth) = tail
        .strip_prefix("invoke [")
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|d| d.parse::<u32>().ok())
    {
        Line::Invoke(program, depth)
    } else if tail == "success" || tail.starts_with("failed: ") {
        Line::Result(program)
    } else {
        Line::Other
    }
}

/// The validator's form of a log written by the bank with the native programs `native`.
pub(crate) fn normalize(logs: &[String], native: &[Pubkey]) -> Vec<String> {
    let native: Vec<String> = native.iter().map(Pubkey::to_string).collect();
    let mut out: Vec<String> = Vec::with_capacity(logs.len());
    let mut stack: Vec<String> = Vec::new();
    for (index, line) in logs.iter().enumerate() {
        let in_native = stack.last().is_some_and(|top| native.contains(top));
        match classify(line) {
            Line::Invoke(program, depth) => {
                if out.last() == Some(line) {
                    continue;
                }
                // The CPI stub's copy, at the caller's depth, just before the runtime's line.
                let next = logs.get(index + 1).map(|l| classify(l));
                if in_native {
                    if let Some(Line::Invoke(next_program, next_depth)) = next {
                        if next_program == program && Some(next_depth) == depth.checked_add(1) {
                            continue;
                        }
                    }
                }
                stack.push(program.to_string());
            }
            Line::Result(program) => {
                if stack.last().map(String::as_str) != Some(program) {
                    // The copy of a result line already written (its frame is closed).
                    continue;
                }
                stack.pop();
            }
            Line::Other => {
                if in_native {
                    if let Some(payload) = line.strip_prefix(NATIVE_DATA_PREFIX) {
                        out.push(format!("{DATA_PREFIX}{payload}"));
                        continue;
                    }
                }
            }
        }
        out.push(line.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::trim).map(String::from).collect()
    }

    #[test]
    fn native_invocations_and_cpis_appear_once_and_events_as_program_data() {
        let native = Pubkey::new_unique();
        let token = Pubkey::new_unique();
        let raw = lines(&format!(
            "Program {native} invoke [1]
             Program {native} invoke [1]
             Program log: Instruction: BlockVerifyChunk
             Program {token} invoke [1]
             Program {token} invoke [2]
             Program log: Instruction: TransferChecked
             Program {token} consumed 6200 of 1399000 compute units
             Program {token} success
             Program {token} success
             Program log: Program data: AAEC
             Program {native} success
             Program {native} success"
        ));
        let expected = lines(&format!(
            "Program {native} invoke [1]
             Program log: Instruction: BlockVerifyChunk
             Program {token} invoke [2]
             Program log: Instruction: TransferChecked
             Program {token} consumed 6200 of 1399000 compute units
             Program {token} success
             Program data: AAEC
             Program {native} success"
        ));
        assert_eq!(normalize(&raw, &[native]), expected);
    }

    #[test]
    fn a_failure_is_logged_once_with_the_anchor_error_line() {
        let native = Pubkey::new_unique();
        let raw = lines(&format!(
            "Program {native} invoke [1]
             Program {native} invoke [1]
             Program log: AnchorError occurred. Error Code: Paused. Error Number: 6000. Error Message: paused.
             Program {native} failed: custom program error: 0x1770
             Program {native} failed: custom program error: 0x1770"
        ));
        let expected = lines(&format!(
            "Program {native} invoke [1]
             Program log: AnchorError occurred. Error Code: Paused. Error Number: 6000. Error Message: paused.
             Program {native} failed: custom program error: 0x1770"
        ));
        assert_eq!(normalize(&raw, &[native]), expected);
    }

    #[test]
    fn logs_of_vm_programs_and_real_self_calls_are_kept() {
        let native = Pubkey::new_unique();
        let other = Pubkey::new_unique();
        let raw = lines(&format!(
            "Program {other} invoke [1]
             Program log: Program data: not an event of a native program
             Program {other} invoke [2]
             Program {other} success
             Program {other} success"
        ));
        assert_eq!(normalize(&raw, &[native]), raw);
    }

    #[test]
    fn the_native_entry_names_every_instruction_of_the_idl_as_anchor_logs_it() {
        let idl: serde_json::Value =
            serde_json::from_str(include_str!("../../../../../idl/mupib.json")).expect("idl");
        let instructions = idl["instructions"].as_array().expect("instructions");
        assert!(!instructions.is_empty());
        for instruction in instructions {
            let discriminator: Vec<u8> = instruction["discriminator"]
                .as_array()
                .expect("discriminator")
                .iter()
                .map(|b| u8::try_from(b.as_u64().expect("byte")).expect("u8"))
                .collect();
            let snake = instruction["name"].as_str().expect("name");
            let camel: String = snake
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars
                        .next()
                        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(
                mupib::native::instruction_name(&discriminator),
                Some(camel.as_str())
            );
        }
    }
}
