//! One module per instruction, `<noun>_<verb>.rs`: Args, `#[derive(Accounts)]`, and on the
//! accounts struct `validate()` and the handler named after the instruction
//! (`BatchSeal::batch_seal`), which `lib.rs` dispatches to.

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
pub mod payout_record;

// Anchor's `#[program]` needs the accounts structs, their generated client modules and the args
// types reachable from the crate root, hence the globs. The handlers are associated functions,
// so no two modules export the same name.
pub use auditor_register::*;
pub use auditor_set_active::*;
pub use bank_register::*;
pub use bank_set_active::*;
pub use batch_close::*;
pub use batch_create::*;
pub use batch_publish::*;
pub use batch_seal::*;
pub use block_close::*;
pub use block_finalize::*;
pub use block_open::*;
pub use block_verify_chunk::*;
pub use config_init::*;
pub use config_set_paused::*;
pub use payout_record::*;
