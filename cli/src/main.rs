//! `mupib`: the command for every µPIB role.
use clap::{Parser, Subcommand};
use mupib_cli::commands;

/// µPIB: trust-aware micro-payments on Solana.
#[derive(Parser)]
#[command(name = "mupib", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the end-to-end scenario on the embedded ledger and print decisions and balances.
    Demo(commands::demo::Args),
    /// Reproduce the paper's simulation (section 7, figures 3–12) with the real engine.
    Sim(commands::sim::Args),
    /// Serve the embedded ledger over Solana JSON-RPC on loopback (for the RPC backend).
    Localnet(commands::localnet::Args),
    /// The auditor: run the service, inspect users, tokens, transactions and blocks, settle payouts.
    #[command(subcommand)]
    Auditor(commands::auditor::Command),
    /// The program's admin: initialise the program, register banks and auditors, pause.
    #[command(subcommand)]
    Admin(commands::admin::Command),
    /// A bank: register, mint token batches (sign, publish, fund, seal), hand tokens to users.
    #[command(subcommand)]
    Bank(commands::bank::Command),
    /// A user's wallet: balance, pay a vendor, refunds.
    #[command(subcommand)]
    User(commands::user::Command),
    /// A vendor: submit a countersigned payment to the auditor, check its status.
    #[command(subcommand)]
    Vendor(commands::vendor::Command),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.command);
    match cli.command {
        Commands::Demo(args) => args.execute(),
        Commands::Sim(args) => args.execute(),
        Commands::Localnet(args) => args.execute(),
        Commands::Auditor(command) => command.execute(),
        Commands::Admin(command) => command.execute(),
        Commands::Bank(command) => command.execute(),
        Commands::User(command) => command.execute(),
        Commands::Vendor(command) => command.execute(),
    }
}

/// Logs to stderr: `RUST_LOG` if set, else `info` for the long-running services and `warn` for
/// the other commands. tarpc (inside the embedded ledger's bank client) warns on every call that
/// no OpenTelemetry layer is installed; that is noise here, so it is always off.
fn init_logging(command: &Commands) {
    use tracing_subscriber::EnvFilter;
    let default = match command {
        Commands::Auditor(commands::auditor::Command::Serve(_)) | Commands::Localnet(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let filter = match "tarpc=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
