// Standard Solana clients against `mupib localnet`: @solana/web3.js 1.x, @coral-xyz/anchor 0.32
// with idl/mupib.json and @solana/spl-token, exactly as a developer would use them against
// solana-test-validator. Run by cli/tests/clients.rs, which deploys a ledger with real state
// (config, a bank with funds and batches, an auditor) through the `mupib` role commands, serves it
// with `mupib localnet` and passes what it knows in the environment:
//   MUPIB_RPC_URL          the JSON-RPC URL (the websocket is derived by web3.js: port + 1)
//   MUPIB_IDL              path of idl/mupib.json
//   MUPIB_ADMIN_KEYPAIR    the admin's keypair file (Solana JSON)
//   MUPIB_AUDITOR_KEYPAIR  the auditor's keypair file
//   MUPIB_BANK             the bank's address
//   MUPIB_TOKENS           tokens minted by the bank, MUPIB_TOKEN_VALUE their value
// Every check is an assertion; the last line on stdout is a JSON summary the Rust test compares
// with the ledger read directly after the server stops. Exit 0 only if everything held.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const anchor = require('@coral-xyz/anchor');
const web3 = require('@solana/web3.js');
const spl = require('@solana/spl-token');

const TIMEOUT_MS = 120_000;
const timer = setTimeout(() => {
  console.error(`e2e: not finished after ${TIMEOUT_MS / 1000} s`);
  process.exit(2);
}, TIMEOUT_MS);

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function keypair(path) {
  return web3.Keypair.fromSecretKey(Uint8Array.from(JSON.parse(fs.readFileSync(path, 'utf8'))));
}

function step(what) {
  console.error(`e2e: ${what}`);
}

/// Resolves with the first value `subscribe(resolve)` delivers, or rejects after `ms`.
function first(what, ms, subscribe) {
  return new Promise((resolve, reject) => {
    const timeout = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    subscribe((value) => {
      clearTimeout(timeout);
      resolve(value);
    });
  });
}

async function main() {
  const url = env('MUPIB_RPC_URL');
  const idl = JSON.parse(fs.readFileSync(env('MUPIB_IDL'), 'utf8'));
  const admin = keypair(env('MUPIB_ADMIN_KEYPAIR'));
  const auditor = keypair(env('MUPIB_AUDITOR_KEYPAIR'));
  const bank = new web3.PublicKey(env('MUPIB_BANK'));
  const tokens = Number(env('MUPIB_TOKENS'));
  const tokenValue = Number(env('MUPIB_TOKEN_VALUE'));
  const summary = {};

  // No wsEndpoint: web3.js derives ws://host:(port + 1), as for solana-test-validator.
  const connection = new web3.Connection(url, 'confirmed');
  const provider = new anchor.AnchorProvider(connection, new anchor.Wallet(admin), {
    commitment: 'confirmed',
    preflightCommitment: 'confirmed',
  });
  const program = new anchor.Program(idl, provider);
  const programId = program.programId;
  const [configAddress] = web3.PublicKey.findProgramAddressSync([Buffer.from('config')], programId);

  step('cluster methods');
  const version = await connection.getVersion();
  assert.equal(typeof version['feature-set'], 'number', 'getVersion: numeric feature-set');
  assert.match(version['solana-core'], /^\d+\.\d+\.\d+/);
  summary.featureSet = version['feature-set'];
  summary.genesisHash = await connection.getGenesisHash();
  const epochInfo = await connection.getEpochInfo();
  const blockHeight = await connection.getBlockHeight();
  assert.ok(blockHeight >= epochInfo.blockHeight, 'block height moves forward');
  assert.ok(epochInfo.slotsInEpoch > 0);
  const identity = await connection._rpcRequest('getIdentity', []);
  assert.equal(typeof identity.result.identity, 'string');
  summary.identity = identity.result.identity;

  step('every account type with .all(), then fetch');
  const configs = await program.account.config.all();
  const banks = await program.account.bankRegistration.all();
  const auditors = await program.account.auditorRegistration.all();
  const batches = await program.account.batch.all();
  const blocksBefore = await program.account.block.all();
  assert.equal(configs.length, 1);
  assert.ok(configs[0].publicKey.equals(configAddress));
  assert.ok(configs[0].account.admin.equals(admin.publicKey));
  assert.equal(configs[0].account.paused, false);
  assert.equal(banks.length, 1);
  assert.ok(banks[0].account.bank.equals(bank));
  assert.equal(banks[0].account.active, true);
  assert.equal(auditors.length, 1);
  assert.ok(auditors[0].account.auditor.equals(auditor.publicKey));
  assert.ok(batches.length >= 1);
  let batchTokens = 0;
  for (const { account } of batches) {
    assert.ok(account.bank.equals(bank));
    assert.equal(account.value.toNumber(), tokenValue);
    assert.equal(account.sealed, 1);
    batchTokens += account.tokenCount;
  }
  assert.equal(batchTokens, tokens, 'the batches hold every minted token');
  assert.equal(Number(banks[0].account.tokensCreated), tokens);
  assert.equal(blocksBefore.length, 0);
  const config = await program.account.config.fetch(configAddress);
  assert.ok(config.mint.equals(configs[0].account.mint));
  const mint = config.mint;
  summary.mint = mint.toBase58();
  summary.batches = batches.map((b) => b.publicKey.toBase58()).sort();

  // Filters and slices as validators take them: a memcmp on the bank (after the 8-byte
  // discriminator) and dataSize + dataSlice.
  const byBank = await program.account.batch.all([
    { memcmp: { offset: 8, bytes: bank.toBase58() } },
  ]);
  assert.equal(byBank.length, batches.length);
  const byStranger = await program.account.batch.all([
    { memcmp: { offset: 8, bytes: web3.Keypair.generate().publicKey.toBase58() } },
  ]);
  assert.equal(byStranger.length, 0);
  const configSize = (await connection.getAccountInfo(configAddress)).data.length;
  const sliced = await connection.getProgramAccounts(programId, {
    filters: [{ dataSize: configSize }],
    dataSlice: { offset: 0, length: 8 },
  });
  assert.equal(sliced.length, 1);
  assert.equal(sliced[0].account.data.length, 8);
  assert.deepEqual([...sliced[0].account.data], idl.accounts.find((a) => a.name === 'Config').discriminator);

  step('SPL Token balances through @solana/spl-token and the token methods');
  const mintInfo = await spl.getMint(connection, mint);
  const supply = await connection.getTokenSupply(mint);
  assert.equal(supply.value.amount, mintInfo.supply.toString());
  assert.equal(supply.value.decimals, mintInfo.decimals);
  const bankAccount = spl.getAssociatedTokenAddressSync(mint, bank, true);
  const bankToken = await spl.getAccount(connection, bankAccount);
  assert.ok(bankToken.owner.equals(bank));
  assert.ok(bankToken.mint.equals(mint));
  const bankBalance = await connection.getTokenAccountBalance(bankAccount);
  assert.equal(bankBalance.value.amount, bankToken.amount.toString());
  const owned = await connection.getParsedTokenAccountsByOwner(bank, { mint });
  assert.equal(owned.value.length, 1);
  assert.ok(owned.value[0].pubkey.equals(bankAccount));
  const parsed = owned.value[0].account.data.parsed;
  assert.equal(parsed.type, 'account');
  assert.equal(parsed.info.tokenAmount.amount, bankToken.amount.toString());
  assert.equal(parsed.info.tokenAmount.decimals, mintInfo.decimals);
  const byProgram = await connection.getTokenAccountsByOwner(bank, { programId: spl.TOKEN_PROGRAM_ID });
  assert.equal(byProgram.value.length, 1);
  let escrowTotal = 0n;
  for (const { publicKey } of batches) {
    const [escrow] = web3.PublicKey.findProgramAddressSync([Buffer.from('escrow'), publicKey.toBuffer()], programId);
    const account = await spl.getAccount(connection, escrow);
    const info = await connection.getParsedAccountInfo(escrow);
    assert.equal(info.value.data.parsed.info.tokenAmount.amount, account.amount.toString());
    escrowTotal += account.amount;
  }
  assert.equal(escrowTotal, BigInt(tokens * tokenValue), 'escrows hold value × tokens');
  summary.supply = supply.value.amount;
  summary.bankBalance = bankToken.amount.toString();
  summary.escrowTotal = escrowTotal.toString();

  step('program.methods….simulate(): events and logs, nothing written');
  const pause = () =>
    program.methods.configSetPaused({ paused: true }).accountsPartial({ admin: admin.publicKey, config: configAddress });
  const simulated = await pause().simulate();
  assert.equal(simulated.events.length, 1);
  assert.equal(simulated.events[0].name, 'pausedSet');
  assert.equal(simulated.events[0].data.paused, true);
  assert.ok(simulated.raw.some((line) => line.startsWith('Program data: ')));
  assert.equal((await program.account.config.fetch(configAddress)).paused, false, 'a simulation writes nothing');

  step('subscriptions (logs, account, program, slot) then .rpc() confirmed over the websocket');
  const logsSeen = first('logsNotification', 20_000, (done) =>
    connection.onLogs(programId, (logs) => {
      if (!logs.err) done(logs);
    }),
  );
  const accountSeen = first('accountNotification', 20_000, (done) =>
    connection.onAccountChange(configAddress, (info) => done(info)),
  );
  const programSeen = first('programNotification', 20_000, (done) =>
    connection.onProgramAccountChange(programId, (keyed) => done(keyed)),
  );
  const slotSeen = first('slotNotification', 20_000, (done) => connection.onSlotChange((slot) => done(slot)));
  // Let the subscriptions be acknowledged before the transaction lands.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const pauseSignature = await pause().rpc();
  const logs = await logsSeen;
  assert.equal(logs.signature, pauseSignature);
  const accountInfo = await accountSeen;
  assert.equal(program.coder.accounts.decode('config', accountInfo.data).paused, true);
  const keyed = await programSeen;
  assert.ok(keyed.accountId.equals(configAddress));
  const slot = await slotSeen;
  assert.equal(typeof slot.slot, 'number');

  step('EventParser on the transaction logs');
  const transaction = await connection.getTransaction(pauseSignature, {
    commitment: 'confirmed',
    maxSupportedTransactionVersion: 0,
  });
  assert.equal(transaction.meta.err, null);
  // Logged as a validator logs an Anchor program: one invoke, the instruction's name, the event
  // as `Program data:`, one success.
  const programLines = transaction.meta.logMessages.filter((l) => l.includes(programId.toBase58()));
  assert.deepEqual(programLines, [`Program ${programId.toBase58()} invoke [1]`, `Program ${programId.toBase58()} success`]);
  assert.equal(transaction.meta.logMessages[1], 'Program log: Instruction: ConfigSetPaused');
  const parser = new anchor.EventParser(programId, program.coder);
  const events = [...parser.parseLogs(transaction.meta.logMessages)];
  assert.equal(events.length, 1);
  assert.equal(events[0].name, 'pausedSet');
  assert.equal(events[0].data.paused, true);
  assert.equal((await program.account.config.fetch(configAddress)).paused, true);

  step('a refused instruction gives a typed AnchorError');
  const stranger = web3.Keypair.generate();
  const airdrop = await connection.requestAirdrop(stranger.publicKey, web3.LAMPORTS_PER_SOL);
  const latest = await connection.getLatestBlockhash();
  await connection.confirmTransaction({ signature: airdrop, ...latest }, 'confirmed');
  assert.equal(await connection.getBalance(stranger.publicKey), web3.LAMPORTS_PER_SOL);
  let refused = null;
  try {
    await program.methods
      .configSetPaused({ paused: false })
      .accountsPartial({ admin: stranger.publicKey, config: configAddress })
      .signers([stranger])
      .rpc();
  } catch (error) {
    refused = error;
  }
  assert.ok(refused instanceof anchor.AnchorError, `expected an AnchorError, got ${refused}`);
  assert.equal(refused.error.errorCode.code, 'NotAdmin');
  assert.equal(refused.error.errorCode.number, 6001);
  assert.ok(refused.program.equals(programId));
  assert.equal((await program.account.config.fetch(configAddress)).paused, true, 'refused: nothing changed');
  summary.refused = refused.error.errorCode.code;

  step('the admin resumes; the auditor opens a block (.rpc() with another signer)');
  const resumeSignature = await program.methods
    .configSetPaused({ paused: false })
    .accountsPartial({ admin: admin.publicKey, config: configAddress })
    .rpc();
  const resumed = await program.account.config.fetch(configAddress);
  assert.equal(resumed.paused, false);
  assert.ok(resumed.resumedAt.toNumber() > 0);
  summary.resumedAt = resumed.resumedAt.toNumber();
  const fund = await connection.requestAirdrop(auditor.publicKey, web3.LAMPORTS_PER_SOL);
  await connection.confirmTransaction({ signature: fund, ...(await connection.getLatestBlockhash()) }, 'confirmed');
  const user = web3.Keypair.generate().publicKey;
  const blockId = new anchor.BN(41);
  const [blockAddress] = web3.PublicKey.findProgramAddressSync(
    [Buffer.from('block'), auditor.publicKey.toBuffer(), blockId.toArrayLike(Buffer, 'le', 8)],
    programId,
  );
  await program.methods
    .blockOpen({ blockId, user, tokenCount: 3 })
    .accountsPartial({ auditor: auditor.publicKey, block: blockAddress })
    .signers([auditor])
    .rpc();
  const blocks = await program.account.block.all();
  assert.equal(blocks.length, 1);
  assert.ok(blocks[0].publicKey.equals(blockAddress));
  assert.ok(blocks[0].account.user.equals(user));
  assert.equal(blocks[0].account.tokenCount, 3);
  assert.equal(blocks[0].account.blockId.toNumber(), 41);
  summary.block = blockAddress.toBase58();
  summary.blockUser = user.toBase58();

  step('signatureSubscribe confirms a raw transfer');
  const transfer = new web3.Transaction({ feePayer: admin.publicKey, ...(await connection.getLatestBlockhash()) }).add(
    web3.SystemProgram.transfer({ fromPubkey: admin.publicKey, toPubkey: stranger.publicKey, lamports: 12_345 }),
  );
  transfer.sign(admin);
  const transferSignature = await connection.sendRawTransaction(transfer.serialize());
  const confirmed = await first('signatureNotification', 20_000, (done) =>
    connection.onSignature(transferSignature, (result, context) => done({ result, context }), 'confirmed'),
  );
  assert.equal(confirmed.result.err, null);
  assert.equal(await connection.getBalance(stranger.publicKey), web3.LAMPORTS_PER_SOL + 12_345);

  step('history: signatures for an address, the block, prioritization fees');
  const signatures = await connection.getSignaturesForAddress(configAddress);
  const listed = signatures.map((s) => s.signature);
  assert.ok(listed.includes(pauseSignature) && listed.includes(resumeSignature));
  assert.ok(listed.indexOf(resumeSignature) < listed.indexOf(pauseSignature), 'newest first');
  // (web3.js 1.x parses full and none details only.)
  const block = await connection.getBlock(transaction.slot, { maxSupportedTransactionVersion: 0 });
  const inBlock = block.transactions.find((t) => t.transaction.signatures[0] === pauseSignature);
  assert.ok(inBlock, 'the block lists the transaction');
  assert.equal(inBlock.version, 'legacy');
  assert.deepEqual(inBlock.meta.logMessages, transaction.meta.logMessages);
  assert.equal(block.blockHeight, transaction.slot);
  const fees = await connection.getRecentPrioritizationFees({ lockedWritableAccounts: [configAddress] });
  assert.ok(fees.length >= 1 && fees.every((f) => f.prioritizationFee === 0));
  summary.pauseSignature = pauseSignature;
  summary.resumeSignature = resumeSignature;
  summary.transferSignature = transferSignature;

  clearTimeout(timer);
  console.log(JSON.stringify(summary));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error('e2e failed:', error);
    if (error && error.logs) console.error(error.logs.join('\n'));
    process.exit(1);
  },
);
