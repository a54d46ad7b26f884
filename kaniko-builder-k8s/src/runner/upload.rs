//! Streaming a packed context into the waiting `kaniko-init` container over `pods/exec`:
//! `tar -xzf - -C /workspace`, then `touch /workspace/.kb-upload-complete`.

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::flow::{BuildEvent, EventSink, UploadVia};
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::manifest::{CONTEXT_DIR, INIT_CONTAINER, UPLOAD_MARKER};

/// Chunk written at a time; progress is reported every [`PROGRESS_EVERY`] bytes.
const CHUNK: usize = 64 * 1024;
const PROGRESS_EVERY: u64 = 1024 * 1024;

/// Runs one command in `kaniko-init`, feeding it `stdin`; `Err` carries what went wrong.
async fn run(
    pods: &Api<Pod>,
    pod: &str,
    command: &[&str],
    stdin: Option<(&Bytes, &EventSink)>,
) -> Result<(), String> {
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
    if let Some((data, events)) = stdin {
        let mut writer = process.stdin().ok_or("exec gave no stdin")?;
        let mut sent = 0u64;
        let mut reported = 0u64;
        for chunk in data.chunks(CHUNK) {
            writer
                .write_all(chunk)
                .await
                .map_err(|e| format!("writing the context after {sent} bytes: {e}"))?;
            sent += chunk.len() as u64;
            if sent - reported >= PROGRESS_EVERY && sent < data.len() as u64 {
                reported = sent;
                events.send(BuildEvent::ContextUploaded {
                    bytes: sent,
                    via: UploadVia::Exec,
                });
            }
        }
        writer
            .shutdown()
            .await
            .map_err(|e| format!("closing stdin: {e}"))?;
        drop(writer);
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
        Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
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

/// Unpacks `data` (a `tar.gz`) into `/workspace` of `pod`'s init container and marks the upload
/// complete. Sends progress to `events`.
pub(crate) async fn exec_upload(
    pods: Api<Pod>,
    pod: String,
    data: Bytes,
    events: EventSink,
) -> Result<(), String> {
    run(
        &pods,
        &pod,
        &["tar", "-xzf", "-", "-C", CONTEXT_DIR],
        Some((&data, &events)),
    )
    .await?;
    run(&pods, &pod, &["touch", UPLOAD_MARKER], None).await?;
    events.send(BuildEvent::ContextUploaded {
        bytes: data.len() as u64,
        via: UploadVia::Exec,
    });
    Ok(())
}
