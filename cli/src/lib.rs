//! The `mupib` command's library half: every subcommand, so that the end-to-end tests can drive
//! them in-process as well as through the binary.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod commands;
