//! Program accounts, one file per account type. Every type has an `invariant()` check that the
//! handlers run before they return.

pub mod auditor_registration;
pub mod bank_registration;
pub mod batch;
pub mod block;
pub mod config;

pub use auditor_registration::*;
pub use bank_registration::*;
pub use batch::*;
pub use block::*;
pub use config::*;
