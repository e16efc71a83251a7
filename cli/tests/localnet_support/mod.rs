//! What the `mupib localnet` tests share: running the real binary, a served data directory that
//! is stopped with SIGTERM (or killed) on demand and always on drop, and JSON-RPC calls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Runs `mupib <args> --data-dir <data>` and expects success; returns stdout.
pub fn mupib_ok(data: &Path, args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_mupib"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("MUPIB_DATA_DIR")
        .env("RUST_LOG", "warn,tarpc=off")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mupib {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `mupib localnet --data-dir <data> --port 0 --json`, running.
pub struct Localnet {
    child: Option<Child>,
    /// The JSON-RPC URL.
    pub url: String,
    /// The websocket URL (the next port).
    pub websocket_url: String,
}

impl Localnet {
    pub fn start(data: &Path) -> Localnet {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mupib"))
            .args(["localnet", "--port", "0", "--json", "--data-dir"])
            .arg(data)
            .env_remove("MUPIB_DATA_DIR")
            .env("RUST_LOG", "warn,tarpc=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("mupib localnet printed {line:?}: {e}"));
        assert_eq!(
            Path::new(started["ledger_dir"].as_str().unwrap()),
            data.join("ledger"),
            "the ledger of a data directory is <data-dir>/ledger"
        );
        Localnet {
            child: Some(child),
            url: started["url"].as_str().unwrap().to_owned(),
            websocket_url: started["websocket_url"].as_str().unwrap().to_owned(),
        }
    }

    /// SIGTERM, as Ctrl-C or a service manager stops it; it must exit cleanly within 30 s.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "mupib localnet exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mupib localnet did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash, nothing flushed beyond what the ledger already made durable.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// One JSON-RPC call; the whole answer (`result` or `error`).
    pub fn call(&self, method: &str, params: Value) -> Value {
        reqwest::blocking::Client::new()
            .post(&self.url)
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
