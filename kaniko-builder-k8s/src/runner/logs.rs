//! Following a container's log as lines: live, bounded memory, the last lines kept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::{AsyncBufRead, AsyncBufReadExt as _};
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::flow::EventSink;
use kube::api::{Api, LogParams};

/// Longest line kept; the rest of a longer line is dropped and `…` marks the cut.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Attempts to open a log stream the kubelet is not ready to serve yet.
const OPEN_ATTEMPTS: u32 = 20;
const OPEN_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The last lines of each container.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tails {
    inner: Arc<Mutex<HashMap<String, VecDeque<String>>>>,
}

impl Tails {
    fn push(&self, container: &str, line: String, keep: usize) {
        let mut tails = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tail = tails.entry(container.to_owned()).or_default();
        if tail.len() == keep {
            tail.pop_front();
        }
        if keep > 0 {
            tail.push_back(line);
        }
    }

    /// The kept lines of `container`, oldest first.
    pub(crate) fn lines(&self, container: &str) -> Vec<String> {
        let tails = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tails
            .get(container)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes (without its `\n`, a trailing `\r` removed);
/// `None` at the end of the stream.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if line.is_empty() && !cut {
                return Ok(None);
            }
            break;
        }
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume_unpin(used);
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let mut s = String::from_utf8_lossy(&line).into_owned();
    if cut {
        s.push('…');
    }
    Ok(Some(s))
}

/// Follows `container`'s log until the container ends, sending each line to `events` and keeping
/// the last `keep` in `tails`.
pub(crate) async fn follow(
    pods: Api<Pod>,
    pod: String,
    container: &'static str,
    events: EventSink,
    tails: Tails,
    keep: usize,
) {
    let params = LogParams {
        container: Some(container.to_owned()),
        follow: true,
        ..LogParams::default()
    };
    // The kubelet may not serve a log the moment the status says the container started (400
    // "waiting to start", 404 "no log yet"): a few quick retries, then give up on the log.
    let mut attempt = 0;
    let mut reader = loop {
        attempt += 1;
        match pods.log_stream(&pod, &params).await {
            Ok(r) => break Box::pin(r),
            Err(kube::Error::Api(s)) if matches!(s.code, 400 | 404) && attempt < OPEN_ATTEMPTS => {
                tokio::time::sleep(OPEN_RETRY).await;
            }
            Err(e) => {
                tracing::debug!(%pod, container, error = %e, "cannot follow the log");
                return;
            }
        }
    };
    loop {
        match read_line(&mut reader).await {
            Ok(Some(line)) => {
                tails.push(container, line.clone(), keep);
                events.log(container, line);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%pod, container, error = %e, "log stream broke");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_capped_and_kept() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\r\ntwo\n{long}\nlast");
        let mut reader = futures::io::BufReader::with_capacity(7, input.as_bytes());
        let mut lines = Vec::new();
        futures::executor::block_on(async {
            while let Some(l) = read_line(&mut reader).await.expect("read") {
                lines.push(l);
            }
        });
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1], "two");
        assert_eq!(lines[2].chars().count(), MAX_LINE + 1);
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[3], "last");

        let tails = Tails::default();
        for i in 0..5 {
            tails.push("c", i.to_string(), 3);
        }
        assert_eq!(tails.lines("c"), ["2", "3", "4"]);
    }
}
