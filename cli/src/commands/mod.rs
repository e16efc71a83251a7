//! One module per subcommand, each an `Args` (or `Command`) with `execute()`.
pub mod admin;
pub mod auditor;
pub mod bank;
pub mod common;
pub mod demo;
pub mod localnet;
pub mod sim;
pub mod user;
pub mod vendor;
