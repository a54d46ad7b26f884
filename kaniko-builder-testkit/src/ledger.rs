//! The secrets ledger: every secret the testkit knows or makes, by label, so a scan of the
//! logs, the cluster or an image knows what to look for.
//!
//! Entries live in memory ([`secrets`]) and, when `KB_TRACE_DIR` is set, are appended to
//! `<KB_TRACE_DIR>/<binary>-<pid>.ledger` as `label<TAB>hex(value)` lines, so the whole-suite
//! scan (`kb-trace-scan`) sees what every test process registered. Hex keeps the ledger files
//! themselves free of the values.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Shorter values match by accident; every registered secret must be at least this long.
pub const MIN_SECRET_LEN: usize = 8;

/// Secrets written as literals in test files (stub servers, credential helpers, wrong
/// passwords): known here because those files register nothing themselves.
pub const TEST_LITERALS: &[(&str, &str)] = &[
    ("probe_protocol.rs identity token", "rt-secret"),
    ("probe_protocol.rs registry token", "direct-rt"),
    ("probe_protocol.rs issued token", "t0k3n-abc"),
    ("probe_registry.rs wrong password", "wrong-password"),
    ("cred_helpers.rs helper secret", "helper-secret"),
    ("cred_helpers.rs helper refresh token", "refresh-123"),
    ("cred_helpers.rs leaked helper stderr", "leaked-secret-77"),
    ("k8s tests/common PASSWORD", "Sup3r-S3cret-Golden-9f2c"),
    ("TestRegistry::PASSWORD", crate::TestRegistry::PASSWORD),
    ("TestRegistry::REFRESH_TOKEN", crate::TestRegistry::REFRESH_TOKEN),
    ("TestProxy::PASSWORD", crate::TestProxy::PASSWORD),
    ("registry tests/proxy.rs password in a proxy URL", "hunter2-pw"),
];

/// One secret: what it is (safe to print) and its value (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// What the secret is, e.g. "TestRegistry::PASSWORD"; printed instead of the value.
    pub label: String,
    /// The bytes to look for.
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("label", &self.label)
            .field("value", &"<redacted>")
            .finish()
    }
}

#[derive(Default)]
struct Ledger {
    entries: Vec<Secret>,
    seen: HashSet<String>,
}

fn ledger() -> &'static Mutex<Ledger> {
    static LEDGER: OnceLock<Mutex<Ledger>> = OnceLock::new();
    LEDGER.get_or_init(|| {
        // In memory only: the scanner knows these without the ledger files.
        let mut ledger = Ledger::default();
        for (label, value) in TEST_LITERALS {
            ledger.seen.insert((*value).to_owned());
            ledger.entries.push(Secret {
                label: (*label).to_owned(),
                value: (*value).to_owned(),
            });
        }
        Mutex::new(ledger)
    })
}

fn add(ledger: &mut Ledger, label: &str, value: &str) {
    assert!(
        value.len() >= MIN_SECRET_LEN,
        "secret {label:?} is shorter than {MIN_SECRET_LEN} bytes: scans would match it by accident"
    );
    if !ledger.seen.insert(value.to_owned()) {
        return;
    }
    // Tabs and newlines would break the ledger file's lines.
    let label: String = label
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Some(path) = crate::trace::process_file(".ledger") {
        let line = format!("{label}\t{}\n", hex(value.as_bytes()));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        // A ledger that silently misses entries would make the scan pass wrongly.
        if let Err(e) = written {
            panic!("append to the secrets ledger {}: {e}", path.display());
        }
    }
    ledger.entries.push(Secret {
        label,
        value: value.to_owned(),
    });
}

/// Registers `value` under `label` (once per value; at least [`MIN_SECRET_LEN`] bytes).
///
/// # Panics
/// If the value is too short, or `KB_TRACE_DIR` is set and the ledger file cannot be written.
pub fn register(label: &str, value: &str) {
    add(
        &mut ledger().lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        label,
        value,
    );
}

/// Registers a password and the base64 `user:password` that Basic auth and `config.json`'s
/// `auth` carry.
pub fn register_basic(label: &str, user: &str, password: &str) {
    register(label, password);
    register(
        &format!("{label} (base64 user:password)"),
        &STANDARD.encode(format!("{user}:{password}")),
    );
}

/// Registers the base64 of a docker `config.json` (how a Secret's data holds it).
pub fn register_docker_config(label: &str, json: &str) {
    register(&format!("{label} (base64 config.json)"), &STANDARD.encode(json));
}

/// Registers a PEM private key by the second line of its body: 64 base64 characters of key
/// material, found in the wrapped PEM and in the unwrapped base64 alike (the first line is
/// mostly the algorithm's fixed header).
pub fn register_pem_key(label: &str, pem: &str) {
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    match body.get(1) {
        Some(line) if line.len() >= MIN_SECRET_LEN => register(label, line),
        _ => panic!("{label}: not a PEM private key with two body lines"),
    }
}

/// Everything registered in this process so far, the test-file literals first.
pub fn secrets() -> Vec<Secret> {
    ledger()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entries
        .clone()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a ledger file written by [`register`]: `label<TAB>hex` lines.
///
/// # Errors
/// A line without a tab or with bad hex.
pub fn parse_ledger(text: &str) -> anyhow::Result<Vec<Secret>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (label, hexed) = line
                .split_once('\t')
                .ok_or_else(|| anyhow::anyhow!("ledger line without a tab"))?;
            let bytes = (0..hexed.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hexed.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| anyhow::anyhow!("ledger entry {label:?}: bad hex"))?;
            Ok(Secret {
                label: label.to_owned(),
                value: String::from_utf8(bytes)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_lines_round_trip_and_debug_redacts() {
        let value = "p\u{e4}ss-w0rd-\t-x";
        let line = format!("a label\t{}\n", hex(value.as_bytes()));
        let parsed = parse_ledger(&line).expect("parses");
        assert_eq!(parsed[0].value, value);
        assert_eq!(parsed[0].label, "a label");
        assert!(!format!("{:?}", parsed[0]).contains("w0rd"));
        assert!(parse_ledger("no tab").is_err());
        assert!(parse_ledger("x\tzz").is_err());
    }

    #[test]
    fn basic_credentials_register_their_base64_form() {
        register_basic("ledger unit test", "someone", "unit-test-pass-3e1");
        let all = secrets();
        assert!(all.iter().any(|s| s.value == "unit-test-pass-3e1"));
        assert!(
            all.iter()
                .any(|s| s.value == STANDARD.encode("someone:unit-test-pass-3e1"))
        );
        assert!(all.iter().any(|s| s.value == crate::TestRegistry::PASSWORD));
    }

    #[test]
    fn pem_keys_register_key_material() {
        let (_, key) = crate::TestCa::new().issue_server_cert();
        register_pem_key("ledger unit test key", &key);
        let second = key.lines().nth(2).expect("a second body line");
        assert!(secrets().iter().any(|s| s.value == second));
    }
}
