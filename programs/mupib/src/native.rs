//! The native entry adapter: the program's Anchor `entry` registered as a builtin in a real
//! Solana bank (`solana-program-test`, the embedded ledger). Compiled only off the SBF target.
//!
//! `ProgramTest::new("mupib", mupib::ID, processor!(mupib::native::entry))`
#![allow(unsafe_code)]

use anchor_lang::prelude::{AccountInfo, Pubkey};
use anchor_lang::solana_program::entrypoint::ProgramResult;

/// Calls [`crate::entry`], whose single lifetime the builtin processor signature cannot name.
pub fn entry<'a, 'b, 'c, 'd>(
    program_id: &'a Pubkey,
    accounts: &'b [AccountInfo<'c>],
    data: &'d [u8],
) -> ProgramResult {
    // SAFETY: the runtime keeps all three borrows alive for the whole call, and `crate::entry`
    // does not let any of them escape it; only the lifetimes are unified, nothing is extended.
    let (program_id, accounts, data): (&'c Pubkey, &'c [AccountInfo<'c>], &'c [u8]) = unsafe {
        (
            std::mem::transmute::<&'a Pubkey, &'c Pubkey>(program_id),
            std::mem::transmute::<&'b [AccountInfo<'c>], &'c [AccountInfo<'c>]>(accounts),
            std::mem::transmute::<&'d [u8], &'c [u8]>(data),
        )
    };
    crate::entry(program_id, accounts, data)
}
