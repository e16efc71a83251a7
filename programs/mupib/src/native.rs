//! The native entry adapter: the program's Anchor `entry` registered as a builtin in a real
//! Solana bank (`solana-program-test`, the embedded ledger). Compiled only off the SBF target.
//!
//! `ProgramTest::new("mupib", mupib::ID, processor!(mupib::native::entry))`
//!
//! Natively `msg!` prints to standard output instead of the transaction's log, so the two lines
//! Anchor writes with it on the real chain are written here through the runtime's `sol_log`
//! stub instead, with the same text: `Program log: Instruction: <Name>` when an instruction is
//! dispatched, and Anchor's error report (`Program log: AnchorError …`, with its `Left:` /
//! `Right:` lines) when it fails — what Anchor's clients parse into a typed `AnchorError`.
#![allow(unsafe_code)]

use anchor_lang::error::{AnchorError, ComparedValues, Error, ErrorOrigin, ProgramErrorWithOrigin};
use anchor_lang::prelude::{AccountInfo, Pubkey};
use anchor_lang::solana_program::entrypoint::ProgramResult;
use anchor_lang::Discriminator;

use crate::instruction as ix;

/// Every instruction's discriminator and the name Anchor logs for it.
const INSTRUCTIONS: [(&[u8], &str); 15] = [
    (ix::ConfigInit::DISCRIMINATOR, "ConfigInit"),
    (ix::ConfigSetPaused::DISCRIMINATOR, "ConfigSetPaused"),
    (ix::BankRegister::DISCRIMINATOR, "BankRegister"),
    (ix::BankSetActive::DISCRIMINATOR, "BankSetActive"),
    (ix::AuditorRegister::DISCRIMINATOR, "AuditorRegister"),
    (ix::AuditorSetActive::DISCRIMINATOR, "AuditorSetActive"),
    (ix::BatchCreate::DISCRIMINATOR, "BatchCreate"),
    (ix::BatchPublish::DISCRIMINATOR, "BatchPublish"),
    (ix::BatchSeal::DISCRIMINATOR, "BatchSeal"),
    (ix::BatchClose::DISCRIMINATOR, "BatchClose"),
    (ix::BlockOpen::DISCRIMINATOR, "BlockOpen"),
    (ix::BlockVerifyChunk::DISCRIMINATOR, "BlockVerifyChunk"),
    (ix::BlockFinalize::DISCRIMINATOR, "BlockFinalize"),
    (ix::BlockClose::DISCRIMINATOR, "BlockClose"),
    (ix::PayoutRecord::DISCRIMINATOR, "PayoutRecord"),
];

/// Writes one `Program log: …` line to the transaction's log.
fn log(line: &str) {
    solana_sysvar::program_stubs::sol_log(line);
}

/// Calls the program's dispatcher, whose single lifetime the builtin processor signature cannot
/// name, and logs what Anchor logs with `msg!` on the real chain.
pub fn entry<'a, 'b, 'c, 'd>(
    program_id: &'a Pubkey,
    accounts: &'b [AccountInfo<'c>],
    data: &'d [u8],
) -> ProgramResult {
    // SAFETY: the runtime keeps all three borrows alive for the whole call, and `try_entry`
    // does not let any of them escape it; only the lifetimes are unified, nothing is extended.
    let (program_id, accounts, data): (&'c Pubkey, &'c [AccountInfo<'c>], &'c [u8]) = unsafe {
        (
            std::mem::transmute::<&'a Pubkey, &'c Pubkey>(program_id),
            std::mem::transmute::<&'b [AccountInfo<'c>], &'c [AccountInfo<'c>]>(accounts),
            std::mem::transmute::<&'d [u8], &'c [u8]>(data),
        )
    };
    if *program_id == crate::ID {
        if let Some(name) = instruction_name(data) {
            log(&format!("Instruction: {name}"));
        }
    }
    crate::try_entry(program_id, accounts, data).map_err(|error| {
        log_error(&error);
        error.into()
    })
}

/// The name Anchor logs (`Instruction: <Name>`) for the instruction `data` dispatches to.
///
/// Written whatever the `no-log-ix-name` feature says: natively that feature only keeps Anchor's
/// `msg!` copy of the line off standard output (where it would corrupt a command's JSON), while
/// the transaction's log, which clients read, always has it as a deployed program's has.
pub fn instruction_name(data: &[u8]) -> Option<&'static str> {
    INSTRUCTIONS
        .iter()
        .find(|(discriminator, _)| data.starts_with(discriminator))
        .map(|(_, name)| *name)
}

/// Anchor's `Error::log`, written to the transaction's log.
fn log_error(error: &Error) {
    match error {
        Error::AnchorError(error) => log_anchor_error(error),
        Error::ProgramError(error) => log_program_error(error),
    }
}

fn log_anchor_error(error: &AnchorError) {
    let what = format!(
        "Error Code: {}. Error Number: {}. Error Message: {}.",
        error.error_name, error.error_code_number, error.error_msg
    );
    log(&match &error.error_origin {
        None => format!("AnchorError occurred. {what}"),
        Some(ErrorOrigin::Source(source)) => format!(
            "AnchorError thrown in {}:{}. {what}",
            source.filename, source.line
        ),
        Some(ErrorOrigin::AccountName(account)) => {
            format!("AnchorError caused by account: {account}. {what}")
        }
    });
    log_compared_values(error.compared_values.as_ref());
}

fn log_program_error(error: &ProgramErrorWithOrigin) {
    let what = format!(
        "Error Code: {:?}. Error Number: {}. Error Message: {}.",
        error.program_error,
        u64::from(error.program_error.clone()),
        error.program_error
    );
    log(&match &error.error_origin {
        None => format!("ProgramError occurred. {what}"),
        Some(ErrorOrigin::Source(source)) => format!(
            "ProgramError thrown in {}:{}. {what}",
            source.filename, source.line
        ),
        Some(ErrorOrigin::AccountName(account)) => {
            format!("ProgramError caused by account: {account}. {what}")
        }
    });
    log_compared_values(error.compared_values.as_ref());
}

fn log_compared_values(values: Option<&ComparedValues>) {
    match values {
        Some(ComparedValues::Pubkeys((left, right))) => {
            // `Pubkey::log` (`sol_log_pubkey`) writes the key in base58 on its own line.
            log("Left:");
            log(&left.to_string());
            log("Right:");
            log(&right.to_string());
        }
        Some(ComparedValues::Values((left, right))) => {
            log(&format!("Left: {left}"));
            log(&format!("Right: {right}"));
        }
        None => {}
    }
}
