//! A user's wallet (SPEC §1, messages 1, 2 and 10): the bank-signed tokens the user holds, the
//! payments it signed (paper eq. 2, the user's half) and the refunds it received.
//!
//! The wallet is a JSON file. Every change is written atomically (temporary file, fsync,
//! rename, fsync of the directory), so a crash leaves either the old or the new wallet, never a
//! half-written one; a file that does not parse is reported as corrupt, never overwritten.
//! Every operation works on a copy of the wallet and replaces the in-memory state only once the
//! new file is durable: a failed operation changes nothing.
//!
//! Token life cycle: `unspent` → (`pay`) `pending` → `spent` (the vendor delivered, or the
//! auditor rejected the payment and refunded its valid tokens as money) or back to `unspent`
//! (`cancel`: the payment was never handed to a vendor).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use mupib_protocol::cert::{b58, pubkey_of, Certificate, Role};
use mupib_protocol::token::{Token, TokenError, TokenId};
use mupib_protocol::transaction::{
    PaymentTransaction, TransactionError, UserSignedPayment, MAX_TOKENS_PER_TRANSACTION,
    PAYMENT_VALIDITY_SECS,
};
use mupib_protocol::Pubkey;

/// Version of the wallet file format this code reads and writes.
pub const WALLET_FORMAT_VERSION: u32 = 1;

/// Errors of the wallet.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// A payment cannot be cancelled while an auditor could still take it in.
    #[error("payment {reference} can still be submitted by the vendor until {valid_until} (now {now}); its tokens are free again only after that")]
    PaymentStillValid {
        /// The payment.
        reference: String,
        /// The end of its validity window.
        valid_until: i64,
        /// Now.
        now: i64,
    },
    /// No wallet file at the path.
    #[error("no wallet at {path}: a wallet is created when a bank gives tokens to it (`mupib bank give --to ...`)")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A wallet file already exists where a new one was to be created.
    #[error("a wallet already exists at {path}: open it instead of creating a new one")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// The file exists but is not a wallet this version can read.
    #[error(
        "wallet file {path} is corrupt ({reason}); it was left untouched: restore it from a backup"
    )]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("wallet file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A key is not the wallet owner's.
    #[error(
        "{what} {found} is not the wallet owner {owner}: use the owner's keypair and certificate"
    )]
    NotOwner {
        /// Which key.
        what: &'static str,
        /// The wallet's owner.
        owner: Pubkey,
        /// The key given.
        found: Pubkey,
    },
    /// A certificate has the wrong role.
    #[error("the {what} certificate of {subject} has role {actual}, expected {expected}")]
    WrongRole {
        /// Which certificate.
        what: &'static str,
        /// Its subject.
        subject: Pubkey,
        /// Expected role.
        expected: Role,
        /// Actual role.
        actual: Role,
    },
    /// A received token's bank signature does not hold.
    #[error("refusing a token: {0}")]
    BadToken(#[from] TokenError),
    /// A received token is already in the wallet.
    #[error("token {token} is already in the wallet: the same token must not be received twice")]
    DuplicateToken {
        /// The token.
        token: TokenId,
    },
    /// The amount to pay is zero or above the per-transaction limit.
    #[error("cannot pay {requested} tokens: a payment carries 1 to {max} tokens")]
    InvalidAmount {
        /// Tokens requested.
        requested: u32,
        /// The per-transaction limit.
        max: usize,
    },
    /// Not enough unspent tokens of one value.
    #[error("not enough unspent tokens: {requested} needed (all of one value), the largest group holds {available}; ask the bank for more tokens")]
    InsufficientTokens {
        /// Tokens requested.
        requested: u32,
        /// Largest number of unspent tokens sharing one value.
        available: usize,
    },
    /// No payment with this reference.
    #[error("no payment {reference} in the wallet")]
    UnknownPayment {
        /// The reference.
        reference: String,
    },
    /// The payment is not pending any more.
    #[error("payment {reference} is already {status:?}: only a pending payment can change")]
    PaymentNotPending {
        /// The reference.
        reference: String,
        /// Its status.
        status: PaymentStatus,
    },
    /// Signing the payment failed.
    #[error("cannot sign the payment: {0}")]
    Transaction(#[from] TransactionError),
    /// An amount overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

/// Where a token of the wallet stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum TokenStatus {
    /// Can be paid.
    Unspent,
    /// In a payment signed by the user, not settled yet.
    Pending {
        /// The payment's reference.
        payment: String,
    },
    /// Paid (delivered, or rejected and refunded).
    Spent {
        /// The payment's reference.
        payment: String,
    },
}

/// A token held by the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletToken {
    /// The bank-signed token.
    pub token: Token,
    /// Its status.
    pub status: TokenStatus,
    /// When the wallet received it (Unix seconds).
    pub received_at: i64,
}

/// Status of a payment the user signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// Signed and handed to the vendor; no final answer yet.
    Pending,
    /// The vendor delivered.
    Delivered,
    /// The auditor rejected it; valid tokens were refunded.
    Rejected,
    /// Withdrawn before the vendor submitted it; its tokens are unspent again.
    Cancelled,
}

/// A payment signed by the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// The payment's reference: hex of the user's signature (unique per payment).
    pub reference: String,
    /// The vendor.
    #[serde(with = "b58::pubkey")]
    pub vendor: Pubkey,
    /// The vendor's certified name.
    pub vendor_name: String,
    /// The tokens paid.
    pub tokens: Vec<TokenId>,
    /// Total value paid, in base units.
    pub value: u64,
    /// The payment's time.
    pub time: i64,
    /// Item information.
    pub info: String,
    /// Status.
    pub status: PaymentStatus,
}

/// Money the auditor gave back for a rejected payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The payment refunded.
    pub payment: String,
    /// Amount refunded, in base units.
    pub amount: u64,
    /// When it was recorded.
    pub received_at: i64,
    /// Free text (e.g. the auditor's reject reason).
    pub note: String,
}

/// The wallet's content, as stored in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletData {
    /// [`WALLET_FORMAT_VERSION`].
    pub version: u32,
    /// The user who owns the tokens.
    #[serde(with = "b58::pubkey")]
    pub owner: Pubkey,
    /// Every token ever received, with its status.
    pub tokens: Vec<WalletToken>,
    /// Every payment signed.
    pub payments: Vec<PaymentRecord>,
    /// Every refund received.
    pub refunds: Vec<Refund>,
}

/// Counts and values of a wallet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalletBalance {
    /// The owner.
    #[serde(with = "b58::pubkey")]
    pub owner: Pubkey,
    /// Tokens that can be paid.
    pub unspent_tokens: u64,
    /// Their total value.
    pub unspent_value: u64,
    /// Tokens in pending payments.
    pub pending_tokens: u64,
    /// Their total value.
    pub pending_value: u64,
    /// Tokens paid.
    pub spent_tokens: u64,
    /// Total refunded.
    pub refunded_value: u64,
    /// Unspent tokens per token value (value → count).
    pub unspent_by_value: BTreeMap<u64, u64>,
    /// Payments still pending.
    pub pending_payments: u64,
}

impl WalletData {
    /// An empty wallet of `owner`.
    pub fn new(owner: Pubkey) -> WalletData {
        WalletData {
            version: WALLET_FORMAT_VERSION,
            owner,
            tokens: Vec::new(),
            payments: Vec::new(),
            refunds: Vec::new(),
        }
    }

    /// Adds tokens after checking each bank signature and refusing duplicates (within the
    /// wallet and within `tokens`). All or nothing. Returns how many were added.
    pub fn receive(&mut self, tokens: &[Token], now: i64) -> Result<usize, WalletError> {
        let mut known: HashSet<TokenId> = self.tokens.iter().map(|t| t.token.id()).collect();
        for token in tokens {
            token.verify_signature()?;
            if !known.insert(token.id()) {
                return Err(WalletError::DuplicateToken { token: token.id() });
            }
        }
        self.tokens.extend(tokens.iter().map(|token| WalletToken {
            token: *token,
            status: TokenStatus::Unspent,
            received_at: now,
        }));
        Ok(tokens.len())
    }

    /// The balance (checked sums).
    pub fn balance(&self) -> Result<WalletBalance, WalletError> {
        let mut balance = WalletBalance {
            owner: self.owner,
            ..WalletBalance::default()
        };
        let add = |sum: &mut u64, v: u64, what| -> Result<(), WalletError> {
            *sum = sum.checked_add(v).ok_or(WalletError::Overflow(what))?;
            Ok(())
        };
        for held in &self.tokens {
            match held.status {
                TokenStatus::Unspent => {
                    add(&mut balance.unspent_tokens, 1, "unspent tokens")?;
                    add(
                        &mut balance.unspent_value,
                        held.token.value,
                        "unspent value",
                    )?;
                    add(
                        balance
                            .unspent_by_value
                            .entry(held.token.value)
                            .or_default(),
                        1,
                        "tokens",
                    )?;
                }
                TokenStatus::Pending { .. } => {
                    add(&mut balance.pending_tokens, 1, "pending tokens")?;
                    add(
                        &mut balance.pending_value,
                        held.token.value,
                        "pending value",
                    )?;
                }
                TokenStatus::Spent { .. } => add(&mut balance.spent_tokens, 1, "spent tokens")?,
            }
        }
        for refund in &self.refunds {
            add(&mut balance.refunded_value, refund.amount, "refunded value")?;
        }
        balance.pending_payments = u64::try_from(
            self.payments
                .iter()
                .filter(|p| p.status == PaymentStatus::Pending)
                .count(),
        )
        .map_err(|_| WalletError::Overflow("pending payments"))?;
        Ok(balance)
    }

    /// Picks `count` unspent tokens sharing one value: the value group with the most unspent
    /// tokens that can cover `count`, oldest batches and lowest serials first. Returns indices
    /// into `tokens`.
    fn pick(&self, count: u32) -> Result<Vec<usize>, WalletError> {
        let wanted = usize::try_from(count).map_err(|_| WalletError::Overflow("token count"))?;
        if wanted == 0 || wanted > MAX_TOKENS_PER_TRANSACTION {
            return Err(WalletError::InvalidAmount {
                requested: count,
                max: MAX_TOKENS_PER_TRANSACTION,
            });
        }
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (index, held) in self.tokens.iter().enumerate() {
            if held.status == TokenStatus::Unspent {
                groups.entry(held.token.value).or_default().push(index);
            }
        }
        let available = groups.values().map(Vec::len).max().unwrap_or(0);
        let Some(mut group) = groups
            .into_values()
            .filter(|g| g.len() >= wanted)
            .max_by_key(Vec::len)
        else {
            return Err(WalletError::InsufficientTokens {
                requested: count,
                available,
            });
        };
        group.sort_by_key(|&i| {
            let token = &self.tokens[i].token;
            (token.bank, token.batch_id, token.serial)
        });
        group.truncate(wanted);
        Ok(group)
    }

    /// Signs a payment of `amount_in_tokens` tokens to the vendor of `vendor_cert` (the user's
    /// half of eq. 2) and marks the tokens pending. The caller persists the wallet before
    /// releasing the payment ([`Wallet::pay`] does).
    pub fn pay(
        &mut self,
        vendor_cert: &Certificate,
        amount_in_tokens: u32,
        info: &str,
        user_key: &SigningKey,
        user_cert: &Certificate,
        now: i64,
    ) -> Result<UserSignedPayment, WalletError> {
        let signer = pubkey_of(user_key);
        if signer != self.owner {
            return Err(WalletError::NotOwner {
                what: "signing key",
                owner: self.owner,
                found: signer,
            });
        }
        if user_cert.subject != self.owner {
            return Err(WalletError::NotOwner {
                what: "user certificate subject",
                owner: self.owner,
                found: user_cert.subject,
            });
        }
        check_role(user_cert, Role::User, "user")?;
        check_role(vendor_cert, Role::Vendor, "vendor")?;
        let picked = self.pick(amount_in_tokens)?;
        let tokens: Vec<Token> = picked.iter().map(|&i| self.tokens[i].token).collect();
        let value = tokens
            .iter()
            .try_fold(0u64, |sum, t| sum.checked_add(t.value))
            .ok_or(WalletError::Overflow("payment value"))?;
        let payment = PaymentTransaction::user_sign(
            user_key,
            user_cert.clone(),
            vendor_cert.clone(),
            now,
            tokens.clone(),
            info,
        )?;
        let reference = payment_reference(&payment);
        for &i in &picked {
            self.tokens[i].status = TokenStatus::Pending {
                payment: reference.clone(),
            };
        }
        self.payments.push(PaymentRecord {
            reference,
            vendor: vendor_cert.subject,
            vendor_name: vendor_cert.name.clone(),
            tokens: tokens.iter().map(Token::id).collect(),
            value,
            time: now,
            info: info.to_owned(),
            status: PaymentStatus::Pending,
        });
        Ok(payment)
    }

    fn pending_payment(&mut self, reference: &str) -> Result<&mut PaymentRecord, WalletError> {
        let payment = self
            .payments
            .iter_mut()
            .find(|p| p.reference == reference)
            .ok_or_else(|| WalletError::UnknownPayment {
                reference: reference.to_owned(),
            })?;
        if payment.status != PaymentStatus::Pending {
            return Err(WalletError::PaymentNotPending {
                reference: reference.to_owned(),
                status: payment.status,
            });
        }
        Ok(payment)
    }

    fn settle(&mut self, reference: &str, status: PaymentStatus) -> Result<(), WalletError> {
        self.pending_payment(reference)?.status = status;
        let pending = TokenStatus::Pending {
            payment: reference.to_owned(),
        };
        for held in self.tokens.iter_mut().filter(|t| t.status == pending) {
            held.status = match status {
                PaymentStatus::Cancelled => TokenStatus::Unspent,
                _ => TokenStatus::Spent {
                    payment: reference.to_owned(),
                },
            };
        }
        Ok(())
    }

    /// The vendor delivered: the payment's tokens are spent.
    pub fn confirm(&mut self, reference: &str) -> Result<(), WalletError> {
        self.settle(reference, PaymentStatus::Delivered)
    }

    /// The payment was never submitted: its tokens become unspent again — only once its
    /// validity window ([`PAYMENT_VALIDITY_SECS`] after its time) has passed at `now`, when no
    /// auditor will take it in any more; before that, a vendor holding it could still submit
    /// it and the tokens' next use would count as double spending.
    pub fn cancel(&mut self, reference: &str, now: i64) -> Result<(), WalletError> {
        let payment = self.pending_payment(reference)?;
        let valid_until = payment.time.saturating_add(PAYMENT_VALIDITY_SECS);
        if now <= valid_until {
            return Err(WalletError::PaymentStillValid {
                reference: reference.to_owned(),
                valid_until,
                now,
            });
        }
        self.settle(reference, PaymentStatus::Cancelled)
    }

    /// The auditor rejected the payment and refunded `amount` (its valid tokens): the tokens
    /// are spent and the refund is recorded.
    pub fn refund(
        &mut self,
        reference: &str,
        amount: u64,
        note: &str,
        now: i64,
    ) -> Result<(), WalletError> {
        self.settle(reference, PaymentStatus::Rejected)?;
        self.refunds.push(Refund {
            payment: reference.to_owned(),
            amount,
            received_at: now,
            note: note.to_owned(),
        });
        Ok(())
    }
}

fn check_role(
    certificate: &Certificate,
    expected: Role,
    what: &'static str,
) -> Result<(), WalletError> {
    if certificate.role != expected {
        return Err(WalletError::WrongRole {
            what,
            subject: certificate.subject,
            expected,
            actual: certificate.role,
        });
    }
    Ok(())
}

/// The wallet's reference of a payment: the hex of the user's signature.
pub fn payment_reference(payment: &UserSignedPayment) -> String {
    hex::encode(payment.user_signature)
}

/// A wallet file: [`WalletData`] kept durable at a path.
#[derive(Debug)]
pub struct Wallet {
    path: PathBuf,
    data: WalletData,
}

impl Wallet {
    /// Opens the wallet at `path`. Fails with [`WalletError::NotFound`] or
    /// [`WalletError::Corrupt`] (the file is left untouched).
    pub fn open(path: impl AsRef<Path>) -> Result<Wallet, WalletError> {
        let path = path.as_ref().to_owned();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalletError::NotFound { path })
            }
            Err(source) => return Err(WalletError::Io { path, source }),
        };
        let corrupt = |reason: String| WalletError::Corrupt {
            path: path.clone(),
            reason,
        };
        let data: WalletData =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if data.version != WALLET_FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} (this program reads version {WALLET_FORMAT_VERSION})",
                data.version
            )));
        }
        let mut seen = HashSet::new();
        for held in &data.tokens {
            if !seen.insert(held.token.id()) {
                return Err(corrupt(format!("token {} appears twice", held.token.id())));
            }
        }
        Ok(Wallet { path, data })
    }

    /// Creates an empty wallet of `owner` at `path` (never overwrites a file).
    pub fn create(path: impl AsRef<Path>, owner: Pubkey) -> Result<Wallet, WalletError> {
        let path = path.as_ref().to_owned();
        if path.exists() {
            return Err(WalletError::AlreadyExists { path });
        }
        let wallet = Wallet {
            path,
            data: WalletData::new(owner),
        };
        wallet.write(&wallet.data)?;
        Ok(wallet)
    }

    /// Opens the wallet at `path`, creating an empty one of `owner` if there is no file.
    /// An existing wallet of another owner is refused.
    pub fn open_or_create(path: impl AsRef<Path>, owner: Pubkey) -> Result<Wallet, WalletError> {
        let wallet = match Wallet::open(path.as_ref()) {
            Ok(wallet) => wallet,
            Err(WalletError::NotFound { .. }) => return Wallet::create(path, owner),
            Err(e) => return Err(e),
        };
        if wallet.data.owner != owner {
            return Err(WalletError::NotOwner {
                what: "recipient",
                owner: wallet.data.owner,
                found: owner,
            });
        }
        Ok(wallet)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The owner.
    pub fn owner(&self) -> Pubkey {
        self.data.owner
    }

    /// The content.
    pub fn data(&self) -> &WalletData {
        &self.data
    }

    /// The balance.
    pub fn balance(&self) -> Result<WalletBalance, WalletError> {
        self.data.balance()
    }

    fn write(&self, data: &WalletData) -> Result<(), WalletError> {
        let bytes = serde_json::to_vec_pretty(data).map_err(|e| WalletError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_file_atomic(&self.path, &bytes).map_err(|source| WalletError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Applies `change` to a copy, writes it, then keeps it: all or nothing.
    fn update<T>(
        &mut self,
        change: impl FnOnce(&mut WalletData) -> Result<T, WalletError>,
    ) -> Result<T, WalletError> {
        let mut next = self.data.clone();
        let out = change(&mut next)?;
        self.write(&next)?;
        self.data = next;
        Ok(out)
    }

    /// Receives tokens (see [`WalletData::receive`]) and saves.
    pub fn receive(&mut self, tokens: &[Token], now: i64) -> Result<usize, WalletError> {
        self.update(|data| data.receive(tokens, now))
    }

    /// Signs a payment (see [`WalletData::pay`]); the wallet file records the tokens as pending
    /// before the payment is returned.
    pub fn pay(
        &mut self,
        vendor_cert: &Certificate,
        amount_in_tokens: u32,
        info: &str,
        user_key: &SigningKey,
        user_cert: &Certificate,
        now: i64,
    ) -> Result<UserSignedPayment, WalletError> {
        self.update(|data| {
            data.pay(
                vendor_cert,
                amount_in_tokens,
                info,
                user_key,
                user_cert,
                now,
            )
        })
    }

    /// See [`WalletData::confirm`].
    pub fn confirm(&mut self, reference: &str) -> Result<(), WalletError> {
        self.update(|data| data.confirm(reference))
    }

    /// See [`WalletData::cancel`].
    pub fn cancel(&mut self, reference: &str, now: i64) -> Result<(), WalletError> {
        self.update(|data| data.cancel(reference, now))
    }

    /// See [`WalletData::refund`].
    pub fn refund(
        &mut self,
        reference: &str,
        amount: u64,
        note: &str,
        now: i64,
    ) -> Result<(), WalletError> {
        self.update(|data| data.refund(reference, amount, note, now))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsynced, renamed
/// over `path`, then the directory fsynced. Creates missing parent directories.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    // Unique per process and per call, so concurrent writers never share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".tmp{}.{call}", std::process::id()));
    let tmp = parent.join(tmp_name);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is synced (not possible on every platform).
        if let Ok(dir) = fs::File::open(&parent) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    struct Fixture {
        authority: SigningKey,
        bank: SigningKey,
        user: SigningKey,
        vendor: SigningKey,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                authority: key(1),
                bank: key(2),
                user: key(3),
                vendor: key(4),
            }
        }
        fn cert(&self, subject: &SigningKey, role: Role) -> Certificate {
            Certificate::issue(&self.authority, pubkey_of(subject), role, "x", 0, i64::MAX).unwrap()
        }
        fn tokens(&self, batch_id: u64, count: u32, value: u64) -> Vec<Token> {
            Token::sign_batch(&self.bank, batch_id, count, value, 100)
        }
    }

    #[test]
    fn receive_then_pay_marks_tokens_pending_and_vendor_can_countersign() {
        let f = Fixture::new();
        let mut data = WalletData::new(pubkey_of(&f.user));
        assert_eq!(data.receive(&f.tokens(1, 10, 50), 5).unwrap(), 10);
        let user_cert = f.cert(&f.user, Role::User);
        let vendor_cert = f.cert(&f.vendor, Role::Vendor);
        let payment = data
            .pay(&vendor_cert, 4, "coffee", &f.user, &user_cert, 200)
            .unwrap();
        assert_eq!(payment.tokens.len(), 4);
        assert_eq!(
            payment.tokens.iter().map(|t| t.serial).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let balance = data.balance().unwrap();
        assert_eq!((balance.unspent_tokens, balance.unspent_value), (6, 300));
        assert_eq!((balance.pending_tokens, balance.pending_value), (4, 200));
        assert_eq!(balance.pending_payments, 1);
        let tx = payment.countersign(&f.vendor).unwrap();
        assert_eq!(tx.total_value(), Some(200));
        // The next payment takes other tokens.
        let second = data
            .pay(&vendor_cert, 6, "tea", &f.user, &user_cert, 201)
            .unwrap();
        assert_eq!(second.tokens.iter().map(|t| t.serial).min(), Some(4));
        assert!(matches!(
            data.pay(&vendor_cert, 1, "more", &f.user, &user_cert, 202),
            Err(WalletError::InsufficientTokens {
                requested: 1,
                available: 0
            })
        ));
    }

    #[test]
    fn pay_uses_tokens_of_one_value_only() {
        let f = Fixture::new();
        let mut data = WalletData::new(pubkey_of(&f.user));
        data.receive(&f.tokens(1, 3, 10), 0).unwrap();
        data.receive(&f.tokens(2, 3, 20), 0).unwrap();
        let user_cert = f.cert(&f.user, Role::User);
        let vendor_cert = f.cert(&f.vendor, Role::Vendor);
        // 4 tokens exist in total but no value group holds 4.
        assert!(matches!(
            data.pay(&vendor_cert, 4, "", &f.user, &user_cert, 1),
            Err(WalletError::InsufficientTokens {
                requested: 4,
                available: 3
            })
        ));
        let payment = data
            .pay(&vendor_cert, 3, "", &f.user, &user_cert, 1)
            .unwrap();
        let values: HashSet<u64> = payment.tokens.iter().map(|t| t.value).collect();
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn forged_token_is_refused_and_nothing_is_received() {
        let f = Fixture::new();
        let mut data = WalletData::new(pubkey_of(&f.user));
        let mut tokens = f.tokens(1, 3, 10);
        tokens[2].value = 1_000; // altered after signing
        assert!(matches!(
            data.receive(&tokens, 0),
            Err(WalletError::BadToken(TokenError::Forged { .. }))
        ));
        assert!(data.tokens.is_empty());
    }

    #[test]
    fn same_token_received_twice_is_refused() {
        let f = Fixture::new();
        let mut data = WalletData::new(pubkey_of(&f.user));
        let tokens = f.tokens(1, 3, 10);
        data.receive(&tokens, 0).unwrap();
        assert!(matches!(
            data.receive(&tokens[1..2], 0),
            Err(WalletError::DuplicateToken { .. })
        ));
        assert_eq!(data.tokens.len(), 3);
    }

    #[test]
    fn paying_with_someone_elses_key_or_wrong_certificates_is_refused() {
        let f = Fixture::new();
        let mut data = WalletData::new(pubkey_of(&f.user));
        data.receive(&f.tokens(1, 3, 10), 0).unwrap();
        let user_cert = f.cert(&f.user, Role::User);
        let vendor_cert = f.cert(&f.vendor, Role::Vendor);
        let thief = key(9);
        assert!(matches!(
            data.pay(&vendor_cert, 1, "", &thief, &user_cert, 1),
            Err(WalletError::NotOwner { .. })
        ));
        assert!(matches!(
            data.pay(
                &f.cert(&f.vendor, Role::Bank),
                1,
                "",
                &f.user,
                &user_cert,
                1
            ),
            Err(WalletError::WrongRole {
                expected: Role::Vendor,
                ..
            })
        ));
        assert!(matches!(
            data.pay(&vendor_cert, 0, "", &f.user, &user_cert, 1),
            Err(WalletError::InvalidAmount { requested: 0, .. })
        ));
        assert_eq!(data.balance().unwrap().unspent_tokens, 3);
    }

    #[test]
    fn settle_confirm_cancel_and_refund() {
        let f = Fixture::new();
        let mut data = WalletData::new(pubkey_of(&f.user));
        data.receive(&f.tokens(1, 6, 10), 0).unwrap();
        let user_cert = f.cert(&f.user, Role::User);
        let vendor_cert = f.cert(&f.vendor, Role::Vendor);
        let a = payment_reference(
            &data
                .pay(&vendor_cert, 2, "", &f.user, &user_cert, 1)
                .unwrap(),
        );
        let b = payment_reference(
            &data
                .pay(&vendor_cert, 2, "", &f.user, &user_cert, 2)
                .unwrap(),
        );
        let c = payment_reference(
            &data
                .pay(&vendor_cert, 2, "", &f.user, &user_cert, 3)
                .unwrap(),
        );
        data.confirm(&a).unwrap();
        // While the vendor could still submit it, the payment cannot be cancelled.
        assert!(matches!(
            data.cancel(&b, 2 + PAYMENT_VALIDITY_SECS),
            Err(WalletError::PaymentStillValid { valid_until, .. }) if valid_until == 2 + PAYMENT_VALIDITY_SECS
        ));
        assert_eq!(data.balance().unwrap().pending_tokens, 4, "b and c pending");
        data.cancel(&b, 3 + PAYMENT_VALIDITY_SECS).unwrap();
        data.refund(&c, 15, "block invalid", 9).unwrap();
        let balance = data.balance().unwrap();
        assert_eq!(balance.unspent_tokens, 2); // b's tokens are back
        assert_eq!(balance.spent_tokens, 4);
        assert_eq!(balance.pending_tokens, 0);
        assert_eq!(balance.refunded_value, 15);
        assert!(matches!(
            data.confirm(&a),
            Err(WalletError::PaymentNotPending { .. })
        ));
        assert!(matches!(
            data.confirm("nope"),
            Err(WalletError::UnknownPayment { .. })
        ));
    }

    #[test]
    fn corrupted_wallet_file_is_reported_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let f = Fixture::new();
        let mut wallet = Wallet::create(&path, pubkey_of(&f.user)).unwrap();
        wallet.receive(&f.tokens(1, 2, 10), 0).unwrap();
        let good = fs::read(&path).unwrap();
        let truncated = &good[..good.len() / 2];
        fs::write(&path, truncated).unwrap();
        assert!(matches!(
            Wallet::open(&path),
            Err(WalletError::Corrupt { .. })
        ));
        assert!(matches!(
            Wallet::open_or_create(&path, pubkey_of(&f.user)),
            Err(WalletError::Corrupt { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), truncated);
    }

    #[test]
    fn wallet_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("w.json");
        let f = Fixture::new();
        let mut wallet = Wallet::open_or_create(&path, pubkey_of(&f.user)).unwrap();
        wallet.receive(&f.tokens(1, 5, 10), 0).unwrap();
        let user_cert = f.cert(&f.user, Role::User);
        wallet
            .pay(
                &f.cert(&f.vendor, Role::Vendor),
                2,
                "x",
                &f.user,
                &user_cert,
                1,
            )
            .unwrap();
        let again = Wallet::open(&path).unwrap();
        assert_eq!(again.data(), wallet.data());
        assert_eq!(again.balance().unwrap().pending_tokens, 2);
        assert!(matches!(
            Wallet::create(&path, pubkey_of(&f.user)),
            Err(WalletError::AlreadyExists { .. })
        ));
        assert!(matches!(
            Wallet::open_or_create(&path, pubkey_of(&f.vendor)),
            Err(WalletError::NotOwner { .. })
        ));
    }

    #[test]
    fn failed_operation_leaves_the_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let f = Fixture::new();
        let mut wallet = Wallet::create(&path, pubkey_of(&f.user)).unwrap();
        wallet.receive(&f.tokens(1, 2, 10), 0).unwrap();
        let before = fs::read(&path).unwrap();
        let user_cert = f.cert(&f.user, Role::User);
        assert!(wallet
            .pay(
                &f.cert(&f.vendor, Role::Vendor),
                3,
                "",
                &f.user,
                &user_cert,
                1
            )
            .is_err());
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(wallet.balance().unwrap().unspent_tokens, 2);
    }
}
