//! The stand-in node's kubelet endpoint: the HTTPS server the API server proxies `pods/log`
//! and `pods/exec` to.
//!
//! It serves what a kubelet serves on its port 10250, as far as the tests need:
//! - `GET /containerLogs/{namespace}/{pod}/{container}` (`follow`, `tailLines`, `timestamps`,
//!   `sinceTime`, `sinceSeconds`, `limitBytes`, `previous`): the container's log file as a
//!   chunked body, followed until the container terminated;
//! - `GET /exec/{namespace}/{pod}/{container}?command=…` upgraded to a websocket speaking
//!   `v4.channel.k8s.io`: a few commands, run by the stand-in itself (see [`KubeletApi`]);
//! - `GET /healthz`.
//!
//! It knows pods only through the node's directory (the layout in `crate::node::layout`): a
//! pod is `<node_dir>/pods/<namespace>_<name>_<uid>/` and a URL names only namespace and name,
//! so the newest directory with that prefix is the pod.

mod command;
mod exec;
mod logs;
mod pods;
mod tls;
mod unpack;
mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Debug)]
struct Shared {
    /// The node's directory (`<node_dir>/pods/...`).
    node_dir: PathBuf,
    /// Changes (closes) when the [`KubeletApi`] is dropped; exec sessions, which outlive the
    /// HTTP connection they were upgraded from, stop then.
    shutdown: watch::Receiver<()>,
}

/// The kubelet's HTTPS endpoint of a stand-in node, on 127.0.0.1; shuts down on drop.
///
/// Register a `Node` whose status has `addresses: [{type: InternalIP, address: 127.0.0.1}]`
/// and `daemonEndpoints.kubeletEndpoint.Port` = [`port`](Self::port): the API server then
/// proxies `pods/log` and `pods/exec` of the pods bound to that node here.
///
/// # What it serves
/// - **Logs**: `<container>.log` of the pod's directory, whole or the last `tailLines` lines;
///   with `follow=true` the body stays open and carries each line appended to the file (the
///   file is read every few milliseconds) until `<container>.done` exists and everything
///   before it was sent. `timestamps=true` prefixes each line with the time the stand-in read
///   it (the file has no timestamps of its own), `limitBytes` caps the body. `previous=true`
///   is refused (the stand-in never restarts a container). A pod without a directory is a 404
///   (`pod "NS/NAME" does not exist`; the 1.20 API server turns any 404 into a generic
///   `NotFound`), a container without a log file a 400 (`container "C" in pod "NS/NAME" is
///   waiting to start`, as a kubelet says of a container that has not started; the API server
///   passes the message on). The API server itself refuses a container the pod does not have.
/// - **Exec**: a websocket upgrade with subprotocol `v4.channel.k8s.io`; the first byte of
///   each binary frame is the stream (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize). Only
///   these commands run, inside the stand-in itself, with `/workspace` mapped to the pod's
///   `workspace/` directory:
///   - `tar -xf - -C /workspace[/DIR]` and `tar -xzf - -C /workspace[/DIR]` (also written
///     `xf`, `-x -f -`, `--extract --file=- --directory=…`; `v`, `o`, `m`, `--no-same-owner`,
///     `--no-same-permissions` accepted; without `z` a gzip stream is detected by its magic
///     bytes): unpacks stdin, refusing absolute paths, `..`, links leaving the directory and
///     device or fifo entries, with exit code 2 and a message on stderr;
///   - `touch /workspace/PATH...`.
///
///   Anything else fails with exit code 126 and "stand-in kubelet cannot run …". The status
///   (channel 3) is `{"metadata":{},"status":"Success"}` or a `Failure` with reason
///   `NonZeroExitCode` and the exit code in `details.causes`; then the server closes the
///   websocket. A command that reads stdin answers once the client closed stdin (in v4 a
///   client does that by sending a websocket close frame, which is what kube-rs does when its
///   stdin writer is dropped), also when it failed early: the rest of stdin is discarded, so
///   the client's writes never fail halfway.
/// - **`/healthz`**: 200 `ok`.
///
/// # Client authentication
/// [`start`](Self::start) accepts any client, as a kubelet with anonymous auth would (the API
/// server presents its kubelet client certificate, `CN=kube-apiserver-kubelet-client`, and it
/// is not checked); [`start_with_client_ca`](Self::start_with_client_ca) requires a client
/// certificate signed by the given CA (the cluster CA signs the API server's). Nothing is
/// authorized beyond that.
#[derive(Debug)]
pub struct KubeletApi {
    addr: SocketAddr,
    task: JoinHandle<()>,
    // Dropped with the server: exec sessions watching it end.
    _shutdown: watch::Sender<()>,
}

impl KubeletApi {
    /// Serves the pods under `node_dir` on `https://127.0.0.1:PORT` with the serving
    /// certificate `cert_pem` (chain, leaf first) and its private key `key_pem` (PEM, any of
    /// PKCS#8, PKCS#1, SEC1), for instance from
    /// [`TestCa::issue_server_cert`](crate::TestCa::issue_server_cert) of the cluster CA.
    /// Clients are not authenticated.
    ///
    /// Must be called within a tokio runtime; the server runs in a task of it.
    pub async fn start(node_dir: &Path, cert_pem: &str, key_pem: &str) -> anyhow::Result<KubeletApi> {
        Self::serve(node_dir, tls::server_config(cert_pem, key_pem, None)?).await
    }

    /// Like [`start`](Self::start), but the TLS handshake requires a client certificate
    /// signed by a CA in `client_ca_pem` (for the API server: the cluster CA,
    /// [`TestCluster::ca_pem`](crate::TestCluster::ca_pem)).
    pub async fn start_with_client_ca(
        node_dir: &Path,
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> anyhow::Result<KubeletApi> {
        Self::serve(
            node_dir,
            tls::server_config(cert_pem, key_pem, Some(client_ca_pem))?,
        )
        .await
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    async fn serve(node_dir: &Path, config: rustls::ServerConfig) -> anyhow::Result<KubeletApi> {
        crate::init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0 for the kubelet endpoint")?;
        let addr = listener.local_addr().context("kubelet endpoint address")?;
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            node_dir: node_dir.to_owned(),
            shutdown: shutdown_rx,
        });
        let router = axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(logs::container_logs),
            )
            .route("/exec/{namespace}/{pod}/{container}", get(exec::exec))
            .with_state(shared);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(accept_loop(listener, acceptor, router));
        Ok(KubeletApi {
            addr,
            task,
            _shutdown: shutdown_tx,
        })
    }
}

impl Drop for KubeletApi {
    fn drop(&mut self) {
        // Aborting the loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// Accepts connections until aborted; each one is served in a task of a set that dies with
/// the loop.
async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, router: axum::Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve_connection(tcp, peer, acceptor.clone(), router.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "kubelet endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// TLS handshake, then HTTP/1.1 with upgrades (for exec).
async fn serve_connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, router: axum::Router) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "kubelet endpoint: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "kubelet endpoint: TLS handshake timed out");
            return;
        }
    };
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "kubelet endpoint: connection ended with an error");
    }
}
