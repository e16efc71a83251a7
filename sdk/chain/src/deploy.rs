//! A fresh µPIB deployment on a test ledger (the embedded ledger or a local validator with a
//! faucet): funded actors, a new payment mint, `Config`, a registered bank and auditor with their
//! payment accounts, the bank's funds. The demo, the benchmarks and the tests start from it; every
//! step goes through the same [`crate::admin`], [`crate::spl`] and [`crate::batch`] operations the
//! `mupib` commands use.

use ed25519_dalek::SigningKey;
use mupib::instructions::BatchCreateArgs;
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use mupib_protocol::token::{Commitment, Token};

use crate::batch::{BatchPublisher, PublishError, PublishOutcome};
use crate::ledger::{Ledger, LedgerError};
use crate::spl::{self, SplError};
use crate::{admin, signing_key};

/// Lamports airdropped to each actor.
pub const ACTOR_LAMPORTS: u64 = 10_000_000_000;

/// Lifetime of the batches [`Deployment::issue_batch`] creates (30 days).
pub const BATCH_LIFETIME_SECS: i64 = 30 * 24 * 3600;

/// Errors of setting up a deployment.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A transaction or a read failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An SPL step failed.
    #[error(transparent)]
    Spl(#[from] SplError),
    /// Publishing a batch failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A time or amount overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

/// The parties and accounts of a deployment made by [`Deployment::setup`].
pub struct Deployment {
    /// Program admin (also the mint authority).
    pub admin: Keypair,
    /// Registered bank.
    pub bank: Keypair,
    /// Registered auditor.
    pub auditor: Keypair,
    /// Payment mint.
    pub mint: Pubkey,
    /// The bank's payment account.
    pub bank_token: Pubkey,
    /// The auditor's payment account.
    pub auditor_token: Pubkey,
    /// Transactions sent by the set-up.
    pub transactions: usize,
}

impl Deployment {
    /// Airdrops the admin, a bank and an auditor; the admin creates a payment mint of
    /// `mint_decimals`, initialises `Config`, registers the bank and the auditor, creates their
    /// payment accounts and mints `bank_funds` to the bank.
    ///
    /// # Errors
    /// The failing step's error.
    pub fn setup(
        ledger: &dyn Ledger,
        mint_decimals: u8,
        bank_funds: u64,
    ) -> Result<Deployment, DeployError> {
        let admin = Keypair::new();
        let bank = Keypair::new();
        let auditor = Keypair::new();
        let mint = Keypair::new();
        let mut transactions = 0usize;
        for actor in [&admin, &bank, &auditor] {
            ledger.airdrop(&actor.pubkey(), ACTOR_LAMPORTS)?;
            transactions += 1;
        }
        spl::create_mint(ledger, &admin, &mint, &admin.pubkey(), mint_decimals)?;
        admin::init_config(ledger, &admin, &mint.pubkey())?;
        admin::register_bank(ledger, &admin, &bank.pubkey())?;
        admin::register_auditor(ledger, &admin, &auditor.pubkey())?;
        let auditor_token =
            spl::ensure_payment_account(ledger, &auditor, &auditor.pubkey(), &mint.pubkey())?;
        let bank_token = spl::fund_payment_account(ledger, &admin, &bank.pubkey(), bank_funds)?;
        transactions += 7;
        Ok(Deployment {
            admin,
            bank,
            auditor,
            mint: mint.pubkey(),
            bank_token,
            auditor_token,
            transactions,
        })
    }

    /// The bank's ed25519 signing key (the same key as its Solana keypair).
    pub fn bank_key(&self) -> SigningKey {
        signing_key(&self.bank)
    }

    /// The auditor's ed25519 signing key.
    pub fn auditor_key(&self) -> SigningKey {
        signing_key(&self.auditor)
    }

    /// Signs `token_count` tokens of `value` issued now in batch `batch_id`, creates and funds
    /// the batch bound to the deployment's auditor, publishes their commitments and, if `seal`,
    /// seals it (expiry in [`BATCH_LIFETIME_SECS`]). Returns the tokens and what publishing did.
    ///
    /// # Errors
    /// The failing step's error.
    pub fn issue_batch(
        &self,
        ledger: &dyn Ledger,
        batch_id: u64,
        token_count: u32,
        value: u64,
        seal: bool,
    ) -> Result<(Vec<Token>, PublishOutcome), DeployError> {
        let now = ledger.clock()?.unix_timestamp;
        let tokens = Token::sign_batch(&self.bank_key(), batch_id, token_count, value, now);
        let args = BatchCreateArgs {
            batch_id,
            auditor: self.auditor.pubkey(),
            token_count,
            value,
            issued_at: now,
            expires_at: now
                .checked_add(BATCH_LIFETIME_SECS)
                .ok_or(DeployError::Overflow("expiry"))?,
        };
        let commitments: Vec<Commitment> = tokens.iter().map(Token::commitment).collect();
        let outcome = BatchPublisher::new(ledger, &self.bank, self.mint, self.bank_token).publish(
            args,
            &commitments,
            seal,
            &mut |_| {},
        )?;
        Ok((tokens, outcome))
    }
}
