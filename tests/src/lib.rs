//! Shared fixtures for the program and end-to-end tests.
//!
//! [`Harness`] runs the µPIB program natively (`mupib::native::entry`) inside a real Solana bank
//! (`solana-program-test`), next to the real SPL Token program, and builds every µPIB
//! instruction with the SDK's builders (`mupib_chain::program::instructions`).
// solana-program-test 3.x marks its API "Agave Unstable" (deprecated); that is expected here.
#![allow(deprecated)]
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use anchor_lang::AccountDeserialize;
use mupib::error::MupibError;
use mupib::instructions::{BatchCreateArgs, BlockOpenArgs, BlockVerifyChunkArgs, TokenEntry};
use mupib::state::{AuditorRegistration, BankRegistration, Batch, Block, Config};
use mupib_chain::program::events::{decode_events, MupibEvent};
use mupib_chain::program::instructions as ix;
use mupib_chain::program::instructions::BatchRef;
use mupib_chain::program::pda;
use solana_program_test::{processor, ProgramTest, ProgramTestContext};
use solana_sdk::account::Account;
use solana_sdk::clock::Clock;
use solana_sdk::instruction::{Instruction, InstructionError};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signature, Signer};
use solana_sdk::transaction::{Transaction, TransactionError};

/// Decimals of the test payment mint.
pub const MINT_DECIMALS: u8 = 6;
/// Lamports given to every party so it can pay rent.
pub const PARTY_LAMPORTS: u64 = 10_000_000_000;
/// Commitments per `batch_publish` transaction in fixtures.
pub const PUBLISH_CHUNK: usize = 40;

/// The result of one transaction: its error, if any, and its log lines.
#[derive(Debug)]
pub struct Outcome {
    /// `Ok(())` or the transaction error.
    pub result: Result<(), TransactionError>,
    /// Log lines of the transaction.
    pub logs: Vec<String>,
}

impl Outcome {
    /// The custom error code of a failed instruction (`InstructionError::Custom`), if any.
    pub fn custom_code(&self) -> Option<u32> {
        match &self.result {
            Err(TransactionError::InstructionError(_, InstructionError::Custom(code))) => {
                Some(*code)
            }
            _ => None,
        }
    }

    /// Panics unless the transaction failed with exactly `code`.
    pub fn expect_code(&self, code: u32, what: &str) {
        assert_eq!(
            self.custom_code(),
            Some(code),
            "{what}: expected error code {code}, got {:?}\nlogs:\n{}",
            self.result,
            self.logs.join("\n")
        );
    }

    /// Panics unless the transaction failed with the program error `error`.
    pub fn expect_error(&self, error: MupibError, what: &str) {
        self.expect_code(program_error_code(error), what);
    }

    /// Panics unless the transaction failed with the Anchor framework error `error`.
    pub fn expect_anchor_error(&self, error: anchor_lang::error::ErrorCode, what: &str) {
        self.expect_code(u32::from(error), what);
    }

    /// µPIB events logged by the transaction.
    pub fn events(&self) -> Vec<MupibEvent> {
        decode_events(&self.logs)
    }
}

/// The custom error code of a program error (Anchor offsets them by 6000).
pub fn program_error_code(error: MupibError) -> u32 {
    u32::from(error)
}

/// An actor with a funded signing key and a token account of the payment mint.
pub struct Party {
    /// Signing key (also pays its own rent).
    pub key: Keypair,
    /// Token account of the payment mint owned by `key`.
    pub token: Pubkey,
}

impl Party {
    /// The party's public key.
    pub fn pubkey(&self) -> Pubkey {
        self.key.pubkey()
    }
}

/// A deterministic, arbitrary 16-byte token digest for tests.
pub fn digest(seed: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..].copy_from_slice(&(!seed).rotate_left(17).to_le_bytes());
    out
}

/// `count` distinct digests for batch `batch_id`.
pub fn digests(batch_id: u64, count: u32) -> Vec<[u8; 16]> {
    (0..u64::from(count))
        .map(|serial| digest(batch_id.wrapping_mul(1_000_003).wrapping_add(serial)))
        .collect()
}

/// A verification entry.
pub fn entry(batch_index: u8, serial: u32, token_digest: [u8; 16]) -> TokenEntry {
    TokenEntry {
        batch_index,
        serial,
        token_digest,
    }
}

/// A fresh program test with µPIB registered natively.
pub fn program_test() -> ProgramTest {
    let mut test = ProgramTest::new("mupib", mupib::ID, processor!(mupib::native::entry));
    test.prefer_bpf(false);
    test
}

/// The program running natively in a bank, with a payment mint and an initialised `Config`.
pub struct Harness {
    /// The bank context (client, payer).
    pub ctx: ProgramTestContext,
    /// The program admin.
    pub admin: Keypair,
    /// The payment mint.
    pub mint: Pubkey,
    /// The mint authority.
    pub mint_authority: Keypair,
    sent: HashSet<Signature>,
}

impl Harness {
    /// Starts a bank, creates the payment mint and initialises `Config`.
    pub async fn start() -> Harness {
        let mut harness = Self::start_without_config().await;
        let admin = harness.admin.insecure_clone();
        let outcome = harness
            .send(
                &[ix::config_init(&admin.pubkey(), &harness.mint)],
                &[&admin],
            )
            .await;
        assert!(outcome.result.is_ok(), "config_init: {:?}", outcome);
        harness
    }

    /// Starts a bank and creates the payment mint, without `Config`.
    pub async fn start_without_config() -> Harness {
        let ctx = program_test().start_with_context().await;
        let mut harness = Harness {
            ctx,
            admin: Keypair::new(),
            mint: Pubkey::default(),
            mint_authority: Keypair::new(),
            sent: HashSet::new(),
        };
        let admin = harness.admin.pubkey();
        harness.fund(&admin, PARTY_LAMPORTS).await;
        let mint = Keypair::new();
        let rent = harness.rent(ix::SPL_MINT_LEN).await;
        let payer = harness.ctx.payer.pubkey();
        let create = ix::spl_create_mint(
            &payer,
            &mint.pubkey(),
            &harness.mint_authority.pubkey(),
            MINT_DECIMALS,
            rent,
        )
        .expect("mint instructions");
        harness.send_ok(&create, &[&mint]).await;
        harness.mint = mint.pubkey();
        harness
    }

    /// Sends `instructions` in one transaction paid by the context payer and signed by
    /// `signers` too. A transaction identical to an earlier one gets a fresh blockhash, so a
    /// replay is really executed again.
    pub async fn send(&mut self, instructions: &[Instruction], signers: &[&Keypair]) -> Outcome {
        let payer = self.ctx.payer.insecure_clone();
        let mut all: Vec<&Keypair> = vec![&payer];
        all.extend(signers.iter().copied());
        let mut blockhash = self
            .ctx
            .banks_client
            .get_latest_blockhash()
            .await
            .expect("blockhash");
        let mut tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&payer.pubkey()),
            &all,
            blockhash,
        );
        while self.sent.contains(&tx.signatures[0]) {
            blockhash = self
                .ctx
                .get_new_latest_blockhash()
                .await
                .expect("new blockhash");
            tx = Transaction::new_signed_with_payer(
                instructions,
                Some(&payer.pubkey()),
                &all,
                blockhash,
            );
        }
        self.sent.insert(tx.signatures[0]);
        let processed = self
            .ctx
            .banks_client
            .process_transaction_with_metadata(tx)
            .await
            .expect("banks client transport");
        Outcome {
            result: processed.result,
            logs: processed
                .metadata
                .map(|metadata| metadata.log_messages)
                .unwrap_or_default(),
        }
    }

    /// Like [`Harness::send`], panicking (with the logs) if the transaction fails.
    pub async fn send_ok(&mut self, instructions: &[Instruction], signers: &[&Keypair]) -> Outcome {
        let outcome = self.send(instructions, signers).await;
        assert!(
            outcome.result.is_ok(),
            "transaction failed: {:?}\nlogs:\n{}",
            outcome.result,
            outcome.logs.join("\n")
        );
        outcome
    }

    /// Rent-exempt minimum for `len` bytes.
    pub async fn rent(&mut self, len: usize) -> u64 {
        self.ctx
            .banks_client
            .get_rent()
            .await
            .expect("rent")
            .minimum_balance(len)
    }

    /// Transfers `lamports` from the context payer to `to`.
    pub async fn fund(&mut self, to: &Pubkey, lamports: u64) {
        let payer = self.ctx.payer.pubkey();
        let transfer = solana_system_interface::instruction::transfer(&payer, to, lamports);
        self.send_ok(&[transfer], &[]).await;
    }

    /// Creates a token account of the payment mint owned by `owner`, holding `amount`.
    pub async fn token_account(&mut self, owner: &Pubkey, amount: u64) -> Pubkey {
        let account = Keypair::new();
        let rent = self.rent(ix::SPL_TOKEN_ACCOUNT_LEN).await;
        let payer = self.ctx.payer.pubkey();
        let mut instructions =
            ix::spl_create_token_account(&payer, &account.pubkey(), &self.mint, owner, rent)
                .expect("token account instructions");
        if amount > 0 {
            instructions.push(
                ix::spl_mint_to(
                    &self.mint,
                    &account.pubkey(),
                    &self.mint_authority.pubkey(),
                    amount,
                )
                .expect("mint_to instruction"),
            );
        }
        let authority = self.mint_authority.insecure_clone();
        if amount > 0 {
            self.send_ok(&instructions, &[&account, &authority]).await;
        } else {
            self.send_ok(&instructions, &[&account]).await;
        }
        account.pubkey()
    }

    /// A funded key with a token account holding `amount`.
    pub async fn party(&mut self, amount: u64) -> Party {
        let key = Keypair::new();
        self.fund(&key.pubkey(), PARTY_LAMPORTS).await;
        let token = self.token_account(&key.pubkey(), amount).await;
        Party { key, token }
    }

    /// A registered, active bank holding `amount` of the mint.
    pub async fn bank(&mut self, amount: u64) -> Party {
        let bank = self.party(amount).await;
        let admin = self.admin.insecure_clone();
        self.send_ok(
            &[ix::bank_register(&admin.pubkey(), &bank.pubkey())],
            &[&admin],
        )
        .await;
        bank
    }

    /// A registered, active auditor with an empty token account.
    pub async fn auditor(&mut self) -> Party {
        let auditor = self.party(0).await;
        let admin = self.admin.insecure_clone();
        self.send_ok(
            &[ix::auditor_register(&admin.pubkey(), &auditor.pubkey())],
            &[&admin],
        )
        .await;
        auditor
    }

    /// The bank clock's unix time.
    pub async fn now(&mut self) -> i64 {
        self.clock().await.unix_timestamp
    }

    /// The bank clock.
    pub async fn clock(&mut self) -> Clock {
        self.ctx
            .banks_client
            .get_sysvar::<Clock>()
            .await
            .expect("clock")
    }

    /// Sets the bank clock's unix time.
    pub async fn set_time(&mut self, unix_timestamp: i64) {
        let mut clock = self.clock().await;
        clock.unix_timestamp = unix_timestamp;
        self.ctx.set_sysvar(&clock);
    }

    /// `batch_create` arguments: `token_count` tokens of `value` bound to `auditor`, expiring in
    /// one day.
    pub async fn batch_args(
        &mut self,
        auditor: &Pubkey,
        batch_id: u64,
        token_count: u32,
        value: u64,
    ) -> BatchCreateArgs {
        let now = self.now().await;
        BatchCreateArgs {
            batch_id,
            auditor: *auditor,
            token_count,
            value,
            issued_at: now,
            expires_at: now + 86_400,
        }
    }

    /// Sends `batch_create`.
    pub async fn create_batch(&mut self, bank: &Party, args: BatchCreateArgs) -> Outcome {
        let instruction = ix::batch_create(&bank.pubkey(), &self.mint, &bank.token, args);
        self.send(&[instruction], &[&bank.key]).await
    }

    /// Creates a batch bound to `auditor` of `token_digests.len()` tokens of `value`, publishes
    /// their commitments in chunks of [`PUBLISH_CHUNK`] and seals it (unless `seal` is false).
    /// Returns the batch PDA.
    pub async fn published_batch(
        &mut self,
        bank: &Party,
        auditor: &Party,
        batch_id: u64,
        token_digests: &[[u8; 16]],
        value: u64,
        seal: bool,
    ) -> Pubkey {
        let count = u32::try_from(token_digests.len()).expect("token count fits u32");
        let auditor = auditor.pubkey();
        let args = self.batch_args(&auditor, batch_id, count, value).await;
        let outcome = self.create_batch(bank, args).await;
        assert!(outcome.result.is_ok(), "batch_create: {outcome:?}");
        let commitments: Vec<[u8; 16]> = token_digests.iter().map(mupib::commitment).collect();
        for (index, chunk) in commitments.chunks(PUBLISH_CHUNK).enumerate() {
            let start = u32::try_from(index * PUBLISH_CHUNK).expect("start fits u32");
            let instruction =
                ix::batch_publish(&bank.pubkey(), &auditor, batch_id, start, chunk.to_vec());
            self.send_ok(&[instruction], &[&bank.key]).await;
        }
        if seal {
            self.send_ok(
                &[ix::batch_seal(&bank.pubkey(), &auditor, batch_id)],
                &[&bank.key],
            )
            .await;
        }
        pda::batch(&bank.pubkey(), &auditor, batch_id).0
    }

    /// Sends `batch_close` of `bank`'s batch `batch_id` bound to `auditor`, refunding into the
    /// bank's token account.
    pub async fn close_batch(&mut self, bank: &Party, auditor: &Pubkey, batch_id: u64) -> Outcome {
        let close = ix::batch_close(&bank.pubkey(), auditor, batch_id, &self.mint, &bank.token);
        self.send(&[close], &[&bank.key]).await
    }

    /// The admin pauses (`true`) or resumes (`false`) the program.
    pub async fn set_paused(&mut self, paused: bool) {
        let admin = self.admin.insecure_clone();
        self.send_ok(&[ix::config_set_paused(&admin.pubkey(), paused)], &[&admin])
            .await;
    }

    /// Opens block `block_id` of `token_count` positions.
    pub async fn open_block(
        &mut self,
        auditor: &Party,
        block_id: u64,
        token_count: u32,
    ) -> Outcome {
        let args = BlockOpenArgs {
            block_id,
            user: Pubkey::new_unique(),
            token_count,
        };
        self.send(&[ix::block_open(&auditor.pubkey(), args)], &[&auditor.key])
            .await
    }

    /// Sends one `block_verify_chunk`.
    pub async fn verify_chunk(
        &mut self,
        auditor: &Party,
        block_id: u64,
        start: u32,
        entries: Vec<TokenEntry>,
        batches: &[BatchRef],
    ) -> Outcome {
        let instruction = ix::block_verify_chunk(
            &auditor.pubkey(),
            block_id,
            &self.mint,
            &auditor.token,
            BlockVerifyChunkArgs { start, entries },
            batches,
        );
        self.send(&[instruction], &[&auditor.key]).await
    }

    /// An account, if it exists.
    pub async fn account(&mut self, address: &Pubkey) -> Option<Account> {
        self.ctx
            .banks_client
            .get_account(*address)
            .await
            .expect("get_account")
    }

    /// Snapshot of several accounts, to assert that a failed transaction changed nothing.
    pub async fn snapshot(&mut self, addresses: &[Pubkey]) -> Vec<Option<Account>> {
        let mut accounts = Vec::with_capacity(addresses.len());
        for address in addresses {
            accounts.push(self.account(address).await);
        }
        accounts
    }

    /// Lamports of an account (0 if it does not exist).
    pub async fn lamports(&mut self, address: &Pubkey) -> u64 {
        self.account(address).await.map_or(0, |a| a.lamports)
    }

    /// Token balance of an SPL token account (panics if it is not one).
    pub async fn token_balance(&mut self, address: &Pubkey) -> u64 {
        let account = self.account(address).await.expect("token account exists");
        let token = anchor_spl::token::TokenAccount::try_deserialize(&mut account.data.as_slice())
            .expect("SPL token account");
        token.amount
    }

    /// Decodes an Anchor (borsh) account.
    pub async fn anchor_account<T: AccountDeserialize>(&mut self, address: &Pubkey) -> T {
        let account = self.account(address).await.expect("account exists");
        T::try_deserialize(&mut account.data.as_slice()).expect("account decodes")
    }

    /// The program's `Config`.
    pub async fn config(&mut self) -> Config {
        self.anchor_account(&pda::config().0).await
    }

    /// A bank's registration.
    pub async fn bank_registration(&mut self, bank: &Pubkey) -> BankRegistration {
        self.anchor_account(&pda::bank_registration(bank).0).await
    }

    /// An auditor's registration.
    pub async fn auditor_registration(&mut self, auditor: &Pubkey) -> AuditorRegistration {
        self.anchor_account(&pda::auditor_registration(auditor).0)
            .await
    }

    /// A batch: header, commitments and spent bitmap (copied out of the account).
    pub async fn batch(&mut self, address: &Pubkey) -> BatchSnapshot {
        let account = self.account(address).await.expect("batch exists");
        assert_eq!(account.owner, mupib::ID, "batch owned by the program");
        let view = Batch::view(&account.data).expect("batch decodes");
        BatchSnapshot {
            header: *view.header,
            commitments: view.commitments.to_vec(),
            spent: view.spent.to_vec(),
            data_len: account.data.len(),
            lamports: account.lamports,
        }
    }

    /// A block: header and decision bytes (copied out of the account).
    pub async fn block(&mut self, auditor: &Pubkey, block_id: u64) -> BlockSnapshot {
        let address = pda::block(auditor, block_id).0;
        let account = self.account(&address).await.expect("block exists");
        assert_eq!(account.owner, mupib::ID, "block owned by the program");
        let (header, decisions) = Block::view(&account.data).expect("block decodes");
        BlockSnapshot {
            header: *header,
            decisions: decisions.to_vec(),
            data_len: account.data.len(),
            lamports: account.lamports,
        }
    }
}

/// A copy of a batch account's content.
#[derive(Debug, Clone)]
pub struct BatchSnapshot {
    /// Header.
    pub header: Batch,
    /// Commitment bytes.
    pub commitments: Vec<u8>,
    /// Spent bitmap.
    pub spent: Vec<u8>,
    /// Account data length.
    pub data_len: usize,
    /// Account lamports.
    pub lamports: u64,
}

impl BatchSnapshot {
    /// Whether `serial` is spent.
    pub fn is_spent(&self, serial: u32) -> bool {
        mupib::state::is_spent(&self.spent, serial)
    }
}

/// A copy of a block account's content.
#[derive(Debug, Clone)]
pub struct BlockSnapshot {
    /// Header.
    pub header: Block,
    /// Decision bytes.
    pub decisions: Vec<u8>,
    /// Account data length.
    pub data_len: usize,
    /// Account lamports.
    pub lamports: u64,
}

/// The `BatchRef` of a bank's batch bound to `auditor`.
pub fn batch_ref(bank: &Party, auditor: &Party, batch_id: u64) -> BatchRef {
    BatchRef {
        bank: bank.pubkey(),
        auditor: auditor.pubkey(),
        batch_id,
    }
}
