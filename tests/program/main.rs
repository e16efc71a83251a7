//! Program tests through the native harness: the µPIB program runs natively inside a real
//! Solana bank (`solana-program-test`) next to the real SPL Token program.
//!
//! One test binary (modules below) to save link time. Run with
//! `cargo test -p mupib-tests --test program`.
#![allow(deprecated)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attacks;
mod binding;
mod close_grace;
mod decisions;
mod lifecycle;
mod limits;
mod payment;
mod payout;
