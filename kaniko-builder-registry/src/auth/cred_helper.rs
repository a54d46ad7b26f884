//! The `docker-credential-<name> get` protocol: the server URL on stdin, JSON on stdout.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::credentials::Credentials;
use crate::error::{Error, Result};

/// docker-credential-helpers' message for a missing entry; the docker CLI treats it as anonymous.
const NOT_FOUND: &str = "credentials not found in native keychain";
/// The user name helpers return when the secret is an identity (refresh) token.
const TOKEN_USERNAME: &str = "<token>";
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_MESSAGE: usize = 300;

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` for `server_url` (the config key) on behalf of `registry`.
pub(crate) async fn get(
    helper: &str,
    server_url: &str,
    registry: &str,
    search_path: Option<&std::ffi::OsStr>,
) -> Result<Credentials> {
    let failed = |message: String| Error::CredentialHelperFailed {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        message,
    };
    // A helper name is a suffix, never a path: refuse `../` tricks in a config file.
    if helper.is_empty() || helper.contains(['/', '\\']) || helper.starts_with('.') {
        return Err(failed("helper name must be a plain name".to_owned()));
    }
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    if let Some(path) = search_path {
        // On Unix a PATH set on the command is also where the program is looked up.
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::CredentialHelperMissing {
                    helper: helper.to_owned(),
                    registry: registry.to_owned(),
                }
            } else {
                failed(format!("cannot start {program}: {source}"))
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading stdin; a broken pipe here is not the failure to report.
        let _ = stdin.write_all(server_url.as_bytes()).await;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {}s", HELPER_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let said = stdout.trim();
        if said == NOT_FOUND {
            tracing::debug!(helper, registry, "credential helper has no entry: anonymous");
            return Ok(Credentials::Anonymous);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = if said.is_empty() { stderr.trim() } else { said };
        let message: String = said.chars().take(MAX_MESSAGE).collect();
        return Err(failed(format!("{} ({message})", output.status)));
    }
    // Never echo the output on a parse failure: it may hold the secret.
    let parsed: HelperOutput =
        serde_json::from_str(stdout.trim()).map_err(|_| Error::CredentialHelperOutput {
            helper: helper.to_owned(),
            registry: registry.to_owned(),
        })?;
    Ok(match (parsed.username.as_str(), parsed.secret) {
        (_, secret) if secret.is_empty() => Credentials::Anonymous,
        (TOKEN_USERNAME, token) => Credentials::IdentityToken { token: token.into() },
        (_, password) => Credentials::basic(parsed.username, password),
    })
}
