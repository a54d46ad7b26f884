//! Streaming a local context into the waiting `kaniko-init` container over `pods/exec`, packed
//! as it is sent (never held whole): `tar -xzf - -C /workspace`, then
//! `touch /workspace/.kb-upload-complete`. A stall (no chunk packed, or none accepted by the
//! connection, for the stall timeout) fails the upload; a long upload that moves does not.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::flow::{BuildEvent, EventSink, UploadVia};
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::handover::{Counted, LocalContext, packed};
use crate::context::PackStream;
use crate::manifest::{CONTEXT_DIR, INIT_CONTAINER, UPLOAD_MARKER};

/// What a command's stdin gets: the context's packed stream (reporting progress) and the stall
/// timeout.
struct Feed {
    body: Counted,
    stall: Duration,
}

/// Runs one command in `kaniko-init`, feeding it `stdin`; `Err` carries what went wrong.
async fn run(pods: &Api<Pod>, pod: &str, command: &[&str], stdin: Option<Feed>) -> Result<u64, String> {
    let params = AttachParams::default()
        .container(INIT_CONTAINER)
        .stdin(stdin.is_some())
        .stdout(false)
        .stderr(true);
    let mut process = pods
        .exec(
            pod,
            command.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            &params,
        )
        .await
        .map_err(|e| format!("exec {command:?}: {e}"))?;
    let status = process.take_status();
    let stderr = process.stderr().map(|mut r| {
        tokio::spawn(async move {
            let mut s = String::new();
            // A broken stream ends the message early; the status says whether it worked.
            let _ = (&mut r).take(64 * 1024).read_to_string(&mut s).await;
            s
        })
    });
    let mut sent = 0;
    if let Some(feed) = stdin {
        let writer = process.stdin().ok_or("exec gave no stdin")?;
        sent = feed_stdin(writer, feed).await?;
    }
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let stderr = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    // The streams are drained; the join only reaps the connection task.
    let _ = process.join().await;
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(sent),
        Some(s) => Err(format!(
            "{command:?} failed: {} {}",
            s.message.unwrap_or_default(),
            stderr.trim()
        )
        .trim_end()
        .to_owned()),
        None => Err(format!("{command:?} ended without a status: {}", stderr.trim())
            .trim_end()
            .to_owned()),
    }
}

/// Writes the body into the command's stdin, then closes it; returns the bytes written.
async fn feed_stdin(mut writer: impl tokio::io::AsyncWrite + Unpin, feed: Feed) -> Result<u64, String> {
    let Feed { mut body, stall } = feed;
    let mut sent = 0u64;
    loop {
        let chunk = match tokio::time::timeout(stall, body.next()).await {
            Err(_) => {
                return Err(format!(
                    "packing the context stalled for {stall:?} after {sent} bytes"
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("packing the context failed after {sent} bytes: {e}")),
            Ok(Some(Ok(chunk))) => chunk,
        };
        match tokio::time::timeout(stall, writer.write_all(&chunk)).await {
            Err(_) => {
                return Err(format!(
                    "the connection accepted nothing for {stall:?} after {sent} bytes of the context"
                ));
            }
            Ok(Err(e)) => return Err(format!("writing the context after {sent} bytes: {e}")),
            Ok(Ok(())) => sent += chunk.len() as u64,
        }
    }
    writer
        .shutdown()
        .await
        .map_err(|e| format!("closing stdin: {e}"))?;
    Ok(sent)
}

/// Packs `local` into `/workspace` of `pod`'s init container, checks that the files are the
/// ones the build was named after, and marks the upload complete. Sends progress to `events`.
pub(crate) async fn exec_upload(
    pods: Api<Pod>,
    pod: String,
    local: LocalContext,
    stall: Duration,
    events: EventSink,
) -> Result<(), String> {
    let PackStream { body, summary, .. } = local.stream();
    let feed = Feed {
        body: Counted::new(body, events.clone()),
        stall,
    };
    let unpacked = run(&pods, &pod, &["tar", "-xzf", "-", "-C", CONTEXT_DIR], Some(feed)).await;
    // The packing error, if any, explains a failed unpack best.
    let summary = summary.await.map_err(|e| e.to_string())?;
    let sent = unpacked?;
    local.check(&summary).map_err(|r| r.to_string())?;
    run(&pods, &pod, &["touch", UPLOAD_MARKER], None).await?;
    packed(&events, &summary);
    events.send(BuildEvent::ContextUploaded {
        bytes: sent,
        via: UploadVia::Exec,
    });
    Ok(())
}
