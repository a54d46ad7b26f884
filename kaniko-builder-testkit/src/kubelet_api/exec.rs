//! `GET /exec/{namespace}/{pod}/{container}?command=…`: the websocket upgrade and one exec
//! session in `v4.channel.k8s.io`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::response::Response;
use bytes::{Buf as _, Bytes};
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use super::command::{Command, Failure};
use super::logs::plain_error;
use super::pods::{PodFiles, valid_name};
use super::ws;

/// The only subprotocol spoken (a 1.20 kubelet's newest).
const PROTOCOL: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
/// v5's "close stream" channel; a v4 client never sends it, but it is unambiguous.
const CLOSE_STREAM: u8 = 255;
/// How long the final frames may take to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Which streams the client attached (`input`, `output`, `error`, `tty`).
#[derive(Debug, Clone, Copy, Default)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// The handler: checks the request, answers 101 and runs the session on the upgraded
/// connection.
pub(super) async fn exec(
    State(shared): State<Arc<Shared>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> Response {
    if ![&namespace, &pod, &container].into_iter().all(|n| valid_name(n)) {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "invalid namespace, pod or container name",
        );
    }
    let mut argv = Vec::new();
    let mut streams = Streams::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let on = matches!(&*value, "1" | "true" | "True" | "TRUE" | "t" | "T");
        match &*key {
            "command" => argv.push(value.into_owned()),
            "input" | "stdin" => streams.stdin = on,
            "output" | "stdout" => streams.stdout = on,
            "error" | "stderr" => streams.stderr = on,
            "tty" => streams.tty = on,
            _ => {}
        }
    }
    if argv.is_empty() {
        return plain_error(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
    }
    let Some(files) = PodFiles::find(&shared.node_dir, &namespace, &pod) else {
        return plain_error(
            StatusCode::NOT_FOUND,
            format!("pod \"{namespace}/{pod}\" does not exist"),
        );
    };
    if files.done(&container).exists() {
        return plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container \"{container}\" in pod \"{namespace}/{pod}\" is not running"),
        );
    }
    let key = match websocket_key(request.headers()) {
        Ok(key) => key,
        Err(why) => return plain_error(StatusCode::BAD_REQUEST, why),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let session = Session {
        argv,
        streams,
        workspace: files.workspace(),
    };
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => session.run(TokioIo::new(upgraded), shutdown).await,
            Err(e) => tracing::debug!(error = %e, "kubelet endpoint: exec upgrade failed"),
        }
    });
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(PROTOCOL),
    );
    match header::HeaderValue::from_str(&ws::accept_key(&key)) {
        Ok(accept) => {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        Err(_) => return plain_error(StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key"),
    }
    response
}

/// The client's `Sec-WebSocket-Key`, once the request is a websocket upgrade offering
/// [`PROTOCOL`].
fn websocket_key(headers: &HeaderMap) -> Result<String, String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err("the stand-in kubelet speaks exec only over websockets (Upgrade: websocket)".to_owned());
    }
    if !has_token(header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL) {
        return Err(format!(
            "the stand-in kubelet speaks only the {PROTOCOL} subprotocol"
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| "missing Sec-WebSocket-Key".to_owned())
}

/// What the writer task sends.
#[derive(Debug)]
enum Out {
    /// A binary frame on a channel.
    Channel(u8, Bytes),
    /// A pong answering a ping.
    Pong(Vec<u8>),
    /// A close frame; then the connection is shut down.
    Close,
}

/// One exec: a command, its streams and the pod's workspace.
#[derive(Debug)]
struct Session {
    argv: Vec<String>,
    streams: Streams,
    workspace: PathBuf,
}

impl Session {
    async fn run<Io>(self, io: Io, mut shutdown: watch::Receiver<()>)
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let writer = tokio::spawn(write_loop(write_half, out_rx));
        let (stdin_tx, stdin_rx) = mpsc::channel(16);
        let (eof_tx, eof_rx) = oneshot::channel();
        let reader = tokio::spawn(read_loop(
            ws::Reader::new(read_half),
            self.streams.stdin.then_some(stdin_tx),
            out_tx.clone(),
            eof_tx,
        ));

        let streams = self.streams;
        let work = async {
            let command = Command::parse(&self.argv)?;
            let reads_stdin = command.reads_stdin();
            let stdout_tx = out_tx.clone();
            let result = command
                .run(
                    &self.workspace,
                    StdinReader {
                        rx: stdin_rx,
                        buf: Bytes::new(),
                    },
                    move |text: &str| {
                        if streams.stdout {
                            // Dropped if the client is gone; nothing to do about it.
                            let _ =
                                stdout_tx.blocking_send(Out::Channel(STDOUT, Bytes::from(text.to_owned())));
                        }
                    },
                )
                .await;
            // The client learns the outcome once it finished sending stdin (see `KubeletApi`).
            if reads_stdin && streams.stdin {
                let _ = eof_rx.await;
            }
            result
        };
        let result = tokio::select! {
            result = work => result,
            _ = shutdown.changed() => {
                reader.abort();
                writer.abort();
                return;
            }
        };
        reader.abort();
        if let Err(failure) = &result {
            // With a tty, stderr goes to the terminal (stdout).
            let channel = if streams.tty { STDOUT } else { STDERR };
            if streams.stderr || streams.tty {
                let text = Bytes::from(format!("{}\n", failure.message));
                let _ = out_tx.send(Out::Channel(channel, text)).await;
            }
        }
        let _ = out_tx.send(Out::Channel(STATUS, status_json(&result))).await;
        let _ = out_tx.send(Out::Close).await;
        drop(out_tx);
        if tokio::time::timeout(FLUSH_TIMEOUT, writer).await.is_err() {
            tracing::debug!("kubelet endpoint: exec client did not take the final frames");
        }
    }
}

/// The `Status` on channel 3, as a kubelet sends it.
fn status_json(result: &Result<(), Failure>) -> Bytes {
    let status = match result {
        Ok(()) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Err(failure) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code {}: {}",
                failure.exit_code, failure.message
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": failure.exit_code.to_string()}]},
        }),
    };
    Bytes::from(status.to_string())
}

/// Sends what the session queues, in order; a close frame ends the connection.
async fn write_loop<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::Receiver<Out>) {
    while let Some(item) = rx.recv().await {
        let written = match item {
            Out::Channel(channel, data) => ws::write_channel(&mut out, channel, &data).await,
            Out::Pong(payload) => ws::write_frame(&mut out, ws::OP_PONG, &[&payload]).await,
            Out::Close => {
                // 1000: normal closure.
                let _ = ws::write_frame(&mut out, ws::OP_CLOSE, &[&1000u16.to_be_bytes()]).await;
                let _ = out.shutdown().await;
                return;
            }
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "kubelet endpoint: exec client went away");
            return;
        }
    }
}

/// Reads the client's frames: stdin data goes to `stdin` (discarded once the command stopped
/// reading), pings are answered; `eof` fires when stdin is done: a close frame (how a v4
/// client closes stdin), a v5 close-stream frame, or the end of the connection.
async fn read_loop<R: AsyncRead + Unpin>(
    mut frames: ws::Reader<R>,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    out: mpsc::Sender<Out>,
    eof: oneshot::Sender<()>,
) {
    loop {
        let message = match frames.next().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "kubelet endpoint: bad exec frame");
                break;
            }
        };
        match message {
            ws::Message::Binary(data) => match data.split_first() {
                Some((&STDIN, rest)) if !rest.is_empty() => {
                    if let Some(tx) = &stdin
                        && tx.send(Bytes::copy_from_slice(rest)).await.is_err()
                    {
                        // The command is done reading: discard the rest.
                        stdin = None;
                    }
                }
                Some((&CLOSE_STREAM, [STDIN])) => break,
                // Resize (4) and empty frames mean nothing here.
                _ => {}
            },
            ws::Message::Ping(payload) => {
                let _ = out.send(Out::Pong(payload)).await;
            }
            ws::Message::Close => break,
            ws::Message::Text(_) | ws::Message::Pong => {}
        }
    }
    drop(stdin);
    let _ = eof.send(());
}

/// The client's stdin as a blocking reader (for the tar crate, on a blocking thread).
struct StdinReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl std::io::Read for StdinReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}
