//! `mupib localnet`: serve the embedded ledger over Solana JSON-RPC on loopback, so that the SDK's
//! RPC backend (`--url http://127.0.0.1:8899`) and Solana tools can talk to it. Ctrl-C (or
//! SIGTERM) stops it gracefully: requests in flight finish and the ledger is flushed.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;

use mupib_chain::ledger::EmbeddedLedger;
use mupib_localnet::{LocalnetOptions, DEFAULT_PORT};

use super::common::{ledger_dir, DataDirArgs};

/// Serve the embedded ledger over Solana JSON-RPC on 127.0.0.1 (Ctrl-C to stop).
///
/// The ledger is the real Solana runtime executing the µPIB program natively in an in-process
/// bank (not a validator); it is the embedded ledger of the data directory (`<data-dir>/ledger`,
/// the one every other `mupib` command uses), so the same directory can be served again later
/// or used directly by other commands (not at the same time). The PubSub websocket listens on
/// the next port (as `solana-test-validator` does).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataDirArgs,
    /// Port of the JSON-RPC endpoint (loopback only; 0 picks a free port). The websocket uses
    /// the next port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = LocalnetOptions::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Print the URLs as JSON (`{"url", "websocket_url", "data_dir", "ledger_dir"}`) instead of
    /// text.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// Opens the ledger, serves it until Ctrl-C / SIGTERM, then shuts down and flushes it.
    pub fn execute(self) -> anyhow::Result<()> {
        let data_dir = self.data.data_dir()?;
        let ledger_dir = ledger_dir(&data_dir);
        let ledger = EmbeddedLedger::open(&ledger_dir)
            .with_context(|| format!("cannot open the ledger in {}", ledger_dir.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let options = LocalnetOptions {
            max_body_bytes: self.max_body_bytes,
            ..LocalnetOptions::default()
        };
        let handle = mupib_localnet::serve_with(Arc::new(ledger), addr, options)?;
        let url = handle.url();
        let ws_url = handle.websocket_url();
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "url": url,
                    "websocket_url": ws_url,
                    "data_dir": data_dir.display().to_string(),
                    "ledger_dir": ledger_dir.display().to_string(),
                })
            );
        } else {
            println!(
                "mupib localnet serving the ledger in {} at {url} (websocket {ws_url})",
                ledger_dir.display()
            );
            println!("use it with --url {url} (and --data-dir unset); press Ctrl-C to stop");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal handler")?;
        runtime.block_on(wait_for_stop())?;
        handle.shutdown().context("localnet shutdown")?;
        if !self.json {
            println!("stopped; ledger flushed to {}", ledger_dir.display());
        }
        Ok(())
    }
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn wait_for_stop() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C"),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")
    }
}
