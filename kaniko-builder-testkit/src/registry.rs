//! A real CNCF distribution registry process (`docker-registry serve CONFIG`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::process::{Child, Command};

use crate::registry_config::{AuthConfig, TlsFiles, render};
use crate::tls::TestCa;
use crate::token_issuer::TokenIssuer;

/// The registry binary; `KB_REGISTRY_BIN` overrides it.
const DEFAULT_REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// Files in the registry's temp dir.
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
const HTPASSWD: &str = "htpasswd";
const ISSUER_CERT: &str = "issuer.crt";
const CA_DIR: &str = "ca";
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How the test registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryAuth {
    /// Plain HTTP, no authentication.
    Anonymous,
    /// TLS, htpasswd (bcrypt) with [`TestRegistry::USERNAME`] / [`TestRegistry::PASSWORD`].
    Basic,
    /// TLS, token auth with an in-process issuer that checks the same credentials.
    Token,
}

/// A running registry process with its own storage, certificates and config in a temp dir.
///
/// Dropping it kills the process and removes the directory.
#[derive(Debug)]
pub struct TestRegistry {
    // Declared first so it drops (and is killed) before the temp dir goes away.
    child: Option<Child>,
    auth: RegistryAuth,
    port: u16,
    dir: tempfile::TempDir,
    ca: Option<TestCa>,
    issuer: Option<TokenIssuer>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        crate::trace::keep_server_log(&format!("registry-{}", self.port), &self.log_path());
    }
}

impl TestRegistry {
    /// User name the registry (and its token issuer) accepts.
    pub const USERNAME: &'static str = "kb-user";
    /// Password for [`Self::USERNAME`]; distinctive so tests can scan logs for leaks.
    pub const PASSWORD: &'static str = "s3cr3t-Pa55-9f2c";
    /// Refresh token the issuer accepts for OAuth2 `grant_type=refresh_token` (identity tokens);
    /// distinctive for leak scans too.
    pub const REFRESH_TOKEN: &'static str = "kb-refresh-7Qz4-e81d";

    /// Starts a registry on a free 127.0.0.1 port and waits until `/v2/` answers.
    pub async fn start(auth: RegistryAuth) -> anyhow::Result<TestRegistry> {
        crate::init_tracing();
        crate::install_crypto_provider();
        crate::ledger::register_basic("TestRegistry::PASSWORD", Self::USERNAME, Self::PASSWORD);
        let dir = tempfile::Builder::new()
            .prefix("kb-registry-")
            .tempdir()
            .context("create registry temp dir")?;
        std::fs::create_dir_all(dir.path().join("storage"))?;

        let ca = (auth != RegistryAuth::Anonymous).then(TestCa::new);
        if let Some(ca) = &ca {
            let (cert, key) = ca.issue_server_cert();
            std::fs::write(dir.path().join(SERVER_CERT), cert)?;
            std::fs::write(dir.path().join(SERVER_KEY), key)?;
            // skopeo/containers-image read <cert-dir>/ca.crt.
            let ca_dir = dir.path().join(CA_DIR);
            std::fs::create_dir_all(&ca_dir)?;
            std::fs::write(ca_dir.join("ca.crt"), ca.ca_pem())?;
        }
        let issuer = match auth {
            RegistryAuth::Token => {
                let issuer = TokenIssuer::start().await?;
                std::fs::write(dir.path().join(ISSUER_CERT), issuer.cert_pem())?;
                Some(issuer)
            }
            RegistryAuth::Basic => {
                std::fs::write(dir.path().join(HTPASSWD), htpasswd_line().await?)?;
                None
            }
            RegistryAuth::Anonymous => None,
        };

        let mut registry = TestRegistry {
            child: None,
            auth,
            port: 0,
            dir,
            ca,
            issuer,
        };
        // free_port() can race with another process taking the port before the registry
        // binds it; a fresh port on "address already in use" covers that.
        let mut attempt = 0;
        loop {
            attempt += 1;
            registry.port = crate::free_port();
            registry.write_config()?;
            match registry.spawn_and_wait().await {
                Ok(()) => {
                    if auth != RegistryAuth::Anonymous {
                        crate::ledger::register_docker_config(
                            &format!("TestRegistry docker config {}", registry.host()),
                            &registry.docker_config_json(),
                        );
                    }
                    return Ok(registry);
                }
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    tracing::debug!(port = registry.port, "registry port taken, retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// "127.0.0.1:PORT".
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
    pub fn base_url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The authentication mode it was started with.
    pub fn auth(&self) -> RegistryAuth {
        self.auth
    }

    /// Whether it serves HTTPS (every mode except [`RegistryAuth::Anonymous`]).
    pub fn is_tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The CA that signed the server certificate, PEM.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(TestCa::ca_pem)
    }

    /// A directory holding `ca.crt` (for `skopeo --cert-dir` and similar).
    pub fn ca_dir(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(|_| self.dir.path().join(CA_DIR))
    }

    /// The token realm URL, in [`RegistryAuth::Token`] mode.
    pub fn token_realm(&self) -> Option<String> {
        self.issuer.as_ref().map(TokenIssuer::realm)
    }

    /// Fetches a token from the issuer (GET realm, Docker token protocol) for `scope`, e.g.
    /// "repository:app:pull", with Basic `credentials` or none (anonymous: a token with no
    /// access). Errors when not in token mode or when the issuer refuses.
    pub async fn token_for(&self, scope: &str, credentials: Option<(&str, &str)>) -> anyhow::Result<String> {
        let realm = self.token_realm().context("registry is not in token mode")?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("service", TokenIssuer::SERVICE)
            .append_pair("scope", scope)
            .finish();
        let mut request = crate::reqwest_client(None)?.get(format!("{realm}?{query}"));
        if let Some((user, pass)) = credentials {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request.send().await.context("token request")?;
        let status = response.status();
        let body = response.text().await.context("token response body")?;
        if !status.is_success() {
            bail!("token issuer answered {status}: {body}");
        }
        let json: serde_json::Value = serde_json::from_str(&body).context("token JSON")?;
        json["token"]
            .as_str()
            .map(str::to_owned)
            .context("token response without \"token\"")
    }

    /// A Docker `config.json` with credentials for this registry (`{"auths":{}}` when
    /// anonymous).
    pub fn docker_config_json(&self) -> String {
        let auths = match self.auth {
            RegistryAuth::Anonymous => serde_json::json!({}),
            RegistryAuth::Basic | RegistryAuth::Token => {
                let auth = STANDARD.encode(format!("{}:{}", Self::USERNAME, Self::PASSWORD));
                serde_json::json!({ self.host(): { "auth": auth } })
            }
        };
        serde_json::json!({ "auths": auths }).to_string()
    }

    /// How many requests the token issuer served (0 unless [`RegistryAuth::Token`]).
    pub fn token_requests(&self) -> usize {
        self.issuer.as_ref().map_or(0, TokenIssuer::requests)
    }

    /// Path of the registry's combined stdout/stderr log (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The registry's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Path of the storage root (blobs and repositories), for tests that inspect or corrupt it.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Kills the process (SIGKILL) and waits (briefly, blocking) until it is gone, so clients
    /// see connection refused right away, until [`Self::restart`].
    pub fn stop(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if let Err(e) = child.start_kill() {
            tracing::warn!(error = %e, "kill test registry");
        }
        // SIGKILL takes effect within milliseconds; try_wait reaps without needing an await.
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the process again on the same port with the same storage and config.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // kill() also waits, so the port is free (or in TIME_WAIT, which Go's
            // SO_REUSEADDR tolerates) before the new process binds it.
            if let Err(e) = child.kill().await {
                tracing::debug!(error = %e, "old registry process already gone");
            }
        }
        self.spawn_and_wait().await
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Writes config.yml for the current port from the files `start` laid out.
    fn write_config(&self) -> anyhow::Result<()> {
        let path = |name: &str| self.dir.path().join(name);
        let (cert, key, htpasswd, bundle) = (
            path(SERVER_CERT),
            path(SERVER_KEY),
            path(HTPASSWD),
            path(ISSUER_CERT),
        );
        let tls = TlsFiles {
            cert: &cert,
            key: &key,
        };
        let realm = self.token_realm().unwrap_or_default();
        let auth = match self.auth {
            RegistryAuth::Anonymous => AuthConfig::None,
            RegistryAuth::Basic => AuthConfig::Htpasswd { path: &htpasswd },
            RegistryAuth::Token => AuthConfig::Token {
                realm: &realm,
                service: TokenIssuer::SERVICE,
                issuer: TokenIssuer::ISSUER,
                root_cert_bundle: &bundle,
            },
        };
        let yaml = render(
            self.port,
            &self.storage_dir(),
            self.is_tls().then_some(&tls),
            &auth,
        );
        std::fs::write(self.config_path(), yaml).context("write registry config")
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.child = Some(spawn_registry(&self.config_path(), &self.log_path())?);
        self.wait_ready().await
    }

    /// Polls `/v2/` until any HTTP answer, the process exits, or [`START_TIMEOUT`].
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = crate::reqwest_client(self.ca_pem().as_deref())?;
        let url = format!("{}/v2/", self.base_url());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("registry exited ({status}) before answering:\n{}", self.logs());
            }
            let probe = client.get(&url).timeout(Duration::from_secs(1)).send().await;
            // Any HTTP answer (401 included) means the server is up.
            let Err(last_error) = probe else {
                return Ok(());
            };
            if Instant::now() > deadline {
                bail!(
                    "registry did not answer {url} within {START_TIMEOUT:?} ({last_error:#}); log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A bcrypt htpasswd line from apache2-utils' `htpasswd` (distribution accepts bcrypt only).
async fn htpasswd_line() -> anyhow::Result<String> {
    let out = Command::new("htpasswd")
        // Cost 5 keeps each login check fast; the registry checks on every request.
        .args(["-nbB", "-C", "5", TestRegistry::USERNAME, TestRegistry::PASSWORD])
        .output()
        .await
        .context("run htpasswd (apache2-utils)")?;
    if !out.status.success() {
        bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned() + "\n")
}

/// `docker-registry serve CONFIG` (`$KB_REGISTRY_BIN` overrides the binary), its output appended
/// to `log`, killed when the returned child is dropped.
pub(crate) fn spawn_registry(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let bin = std::env::var_os("KB_REGISTRY_BIN")
        .map_or_else(|| PathBuf::from(DEFAULT_REGISTRY_BIN), PathBuf::from);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .context("open registry log")?;
    Command::new(&bin)
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))
}
