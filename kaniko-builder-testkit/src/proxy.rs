//! A real forward proxy on 127.0.0.1: Debian's `tinyproxy`, in the foreground with its own
//! config file, and its log to tell what went through it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The proxy binary; `KB_TINYPROXY_BIN` overrides it.
const DEFAULT_TINYPROXY_BIN: &str = "/usr/bin/tinyproxy";
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The variables a child process of a proxy test starts without, in both cases: the proxy
/// variables, and `REQUEST_METHOD` (with it, reqwest ignores them, as in a CGI program).
pub const PROXY_VARS: [&str; 5] = [
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUEST_METHOD",
];

/// Removes [`PROXY_VARS`], upper and lower case, from `cmd`'s environment.
pub fn clear_proxy_env(cmd: &mut tokio::process::Command) {
    for var in PROXY_VARS {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
}

/// A running `tinyproxy` (HTTP forward proxy, `CONNECT` tunnels included) on a free 127.0.0.1
/// port, logging every request at `LogLevel Connect`.
///
/// Dropping it kills (SIGKILL) and reaps the process, then removes its temp dir; with
/// `KB_TRACE_DIR` set its log is kept for the secrets scan first.
#[derive(Debug)]
pub struct TestProxy {
    // Declared first so it is killed before the temp dir goes away.
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            tracing::debug!(error = %e, "tinyproxy already gone");
        }
        let _ = self.child.wait();
        crate::trace::keep_server_log(&format!("tinyproxy-{}", self.port), &self.log_path());
    }
}

impl TestProxy {
    /// User name of [`Self::start_with_auth`].
    pub const USERNAME: &'static str = "kb-proxy-user";
    /// Password of [`Self::start_with_auth`]; distinctive, and registered for the secrets scan.
    pub const PASSWORD: &'static str = "pr0xy-Pa55-4e7b";

    /// Starts a proxy that lets `127.0.0.1` through, without authentication, and `CONNECT`s only
    /// to `connect_ports` (tinyproxy's `ConnectPort`; every port when empty).
    ///
    /// # Errors
    /// When `tinyproxy` is missing or does not listen within a few seconds.
    pub async fn start(connect_ports: &[u16]) -> anyhow::Result<TestProxy> {
        Self::launch(connect_ports, None).await
    }

    /// [`Self::start`], with `BasicAuth` [`Self::USERNAME`] / [`Self::PASSWORD`] required of
    /// every request (`407` without).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub async fn start_with_auth(connect_ports: &[u16]) -> anyhow::Result<TestProxy> {
        crate::ledger::register_basic("TestProxy::PASSWORD", Self::USERNAME, Self::PASSWORD);
        Self::launch(
            connect_ports,
            Some((Self::USERNAME.to_owned(), Self::PASSWORD.to_owned())),
        )
        .await
    }

    async fn launch(
        connect_ports: &[u16],
        credentials: Option<(String, String)>,
    ) -> anyhow::Result<TestProxy> {
        crate::init_tracing();
        let bin = std::env::var_os("KB_TINYPROXY_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_TINYPROXY_BIN), PathBuf::from);
        // free_port() can race with another process taking the port: a fresh one then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::Builder::new()
                .prefix("kb-proxy-")
                .tempdir()
                .context("create proxy temp dir")?;
            let port = crate::free_port();
            let config = dir.path().join("tinyproxy.conf");
            std::fs::write(
                &config,
                config_file(port, connect_ports, credentials.as_ref(), dir.path()),
            )
            .context("write tinyproxy.conf")?;
            let child = Command::new(&bin)
                .arg("-d")
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("spawn {} (Debian package tinyproxy)", bin.display()))?;
            let mut proxy = TestProxy {
                child,
                port,
                credentials: credentials.clone(),
                dir,
            };
            match proxy.wait_ready().await {
                Ok(()) => {
                    tracing::debug!(port, "tinyproxy ready");
                    return Ok(proxy);
                }
                Err(e) if attempt < 3 => {
                    // Dropping it kills and reaps the process.
                    tracing::debug!(port, error = %e, "tinyproxy did not start, retrying on another port");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the port accepts connections, the process exits, or [`START_TIMEOUT`].
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("tinyproxy exited ({status}) before listening:\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tinyproxy did not listen on {} within {START_TIMEOUT:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, without credentials.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT` for a proxy started with
    /// [`Self::start_with_auth`]; [`Self::url`] otherwise.
    pub fn url_with_credentials(&self) -> String {
        match &self.credentials {
            Some((user, password)) => format!("http://{user}:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// Path of tinyproxy's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tinyproxy.log")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The request lines it received so far, in order (`CONNECT 127.0.0.1:6443 HTTP/1.1`,
    /// `GET http://127.0.0.1:5000/v2/ HTTP/1.1`), from its log's `Request (file descriptor N):`
    /// lines. tinyproxy logs a request line before it checks the request, so a line says a
    /// client came through here, not that the request succeeded.
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("]: Request (file descriptor ")?;
                let (_, request) = rest.split_once("): ")?;
                Some(request.to_owned())
            })
            .collect()
    }

    /// The `host:port` targets of the `CONNECT` requests so far, in order.
    pub fn connects(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| Some(r.strip_prefix("CONNECT ")?.split(' ').next()?.to_owned()))
            .collect()
    }
}

/// tinyproxy's configuration: 127.0.0.1 only, the log in `dir`, `CONNECT` to `connect_ports`.
fn config_file(
    port: u16,
    connect_ports: &[u16],
    credentials: Option<&(String, String)>,
    dir: &std::path::Path,
) -> String {
    let mut conf = format!(
        "Port {port}\n\
         Listen 127.0.0.1\n\
         Allow 127.0.0.1\n\
         Timeout 60\n\
         MaxClients 64\n\
         LogFile \"{}\"\n\
         LogLevel Connect\n\
         DisableViaHeader Yes\n",
        dir.join("tinyproxy.log").display()
    );
    for p in connect_ports {
        conf.push_str(&format!("ConnectPort {p}\n"));
    }
    if let Some((user, password)) = credentials {
        conf.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    conf
}
