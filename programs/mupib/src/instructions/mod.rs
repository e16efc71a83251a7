//! One module per instruction, `<noun>_<verb>.rs`: Args, `#[derive(Accounts)]`, `validate()`,
//! `handler`.

pub mod auditor_register;
pub mod auditor_set_active;
pub mod bank_register;
pub mod bank_set_active;
pub mod batch_close;
pub mod batch_create;
pub mod batch_publish;
pub mod batch_seal;
pub mod block_close;
pub mod block_finalize;
pub mod block_open;
pub mod block_verify_chunk;
pub mod config_init;
pub mod config_set_paused;

// Anchor's generated client modules must be reachable from the crate root, hence the globs;
// every module exports a `handler`, called by its full path from `lib.rs`.
#[allow(ambiguous_glob_reexports)]
pub use auditor_register::*;
#[allow(ambiguous_glob_reexports)]
pub use auditor_set_active::*;
#[allow(ambiguous_glob_reexports)]
pub use bank_register::*;
#[allow(ambiguous_glob_reexports)]
pub use bank_set_active::*;
#[allow(ambiguous_glob_reexports)]
pub use batch_close::*;
#[allow(ambiguous_glob_reexports)]
pub use batch_create::*;
#[allow(ambiguous_glob_reexports)]
pub use batch_publish::*;
#[allow(ambiguous_glob_reexports)]
pub use batch_seal::*;
#[allow(ambiguous_glob_reexports)]
pub use block_close::*;
#[allow(ambiguous_glob_reexports)]
pub use block_finalize::*;
#[allow(ambiguous_glob_reexports)]
pub use block_open::*;
#[allow(ambiguous_glob_reexports)]
pub use block_verify_chunk::*;
#[allow(ambiguous_glob_reexports)]
pub use config_init::*;
#[allow(ambiguous_glob_reexports)]
pub use config_set_paused::*;
