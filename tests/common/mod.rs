//! Shared helpers for the integration tests: go sandboxes and the binary under test
//! (`go`) and real S3-compatible servers (`servers`); the fault-injecting proxy between
//! them is a crate of its own, `faultproxy` (tests/faultproxy).

pub mod connect_proxy;
pub mod cross;
pub mod go;
pub mod remote;
pub mod servers;
pub mod signin;
pub mod sso;
pub mod standin;
pub mod stats;
pub mod tls;

use std::sync::Mutex;

/// Every secret the suite has handed out (store secret keys, session tokens, wrong
/// secrets on purpose): no output of the binary may ever contain one.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a secret that must never appear in any output.
pub fn secret(value: &str) -> String {
    if !value.is_empty() {
        SECRETS.lock().unwrap_or_else(|p| p.into_inner()).push(value.to_string());
    }
    value.to_string()
}

/// Panics if `output` (what the binary or go printed) holds a registered secret.
pub fn assert_no_secret(what: &str, output: &str) {
    let secrets = SECRETS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for s in secrets {
        assert!(!output.contains(&s), "a secret ({}…) reached {what}:\n{output}", &s[..s.len().min(4)]);
    }
}
