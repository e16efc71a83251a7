//! Program accounts, one file per account type, and the decision codes a block stores.
//! State changes are methods on the account types; every type has an `invariant()` check that
//! the handlers run after changing it.

pub mod auditor_registration;
pub mod bank_registration;
pub mod batch;
pub mod block;
pub mod config;
pub mod decision;

pub use auditor_registration::*;
pub use bank_registration::*;
pub use batch::*;
pub use block::*;
pub use config::*;
pub use decision::*;
