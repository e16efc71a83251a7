// Deploy script for `anchor migrate`, run after `anchor build && anchor deploy`.
//
// Anchor calls this with the provider of Anchor.toml ([provider] cluster and wallet). It does not
// re-implement the program client in TypeScript: it hands the cluster URL and the wallet to the
// `mupib` CLI, which initialises the program's Config with the same SDK that the tests exercise.
//
//   anchor migrate                      # uses Anchor.toml's provider
//   MUPIB_MINT=<mint> anchor migrate    # use an existing SPL mint for payments
//
// See README.md ("Deploying to a validator") for the whole sequence.
import { execFileSync } from "child_process";

module.exports = async function (provider: any) {
  const url: string = provider.connection.rpcEndpoint;
  const wallet: string =
    process.env.ANCHOR_WALLET ?? `${process.env.HOME}/.config/solana/id.json`;
  const args = ["run", "--release", "-p", "mupib-cli", "--", "admin", "init", "--url", url, "--keypair", wallet];
  if (process.env.MUPIB_MINT) {
    args.push("--mint", process.env.MUPIB_MINT);
  }
  console.log(`mupib: initialising the program on ${url}`);
  execFileSync("cargo", args, { stdio: "inherit" });
};
