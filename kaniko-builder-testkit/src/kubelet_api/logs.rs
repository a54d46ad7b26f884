//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log file, followed until
//! the container terminated.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use tokio::io::AsyncReadExt as _;

use super::Shared;
use super::pods::{PodFiles, valid_name};

/// How often a followed log file is read for new lines.
const TAIL_INTERVAL: Duration = Duration::from_millis(20);

/// The query parameters the API server forwards from `PodLogOptions`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct LogQuery {
    follow: bool,
    tail_lines: Option<u64>,
    timestamps: bool,
    limit_bytes: Option<u64>,
    previous: bool,
}

impl LogQuery {
    /// Parses `follow`, `tailLines`, `timestamps`, `limitBytes` and `previous`; other
    /// parameters (`sinceSeconds`, `sinceTime`, `pretty`) are ignored.
    pub(super) fn parse(query: Option<&str>) -> Result<LogQuery, String> {
        let mut q = LogQuery::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "follow" => q.follow = parse_bool(&key, &value)?,
                "timestamps" => q.timestamps = parse_bool(&key, &value)?,
                "previous" => q.previous = parse_bool(&key, &value)?,
                // Negative values mean "no limit", as for the kubelet.
                "tailLines" => q.tail_lines = u64::try_from(parse_int(&key, &value)?).ok(),
                "limitBytes" => {
                    q.limit_bytes = u64::try_from(parse_int(&key, &value)?).ok().filter(|n| *n > 0);
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Go's `strconv.ParseBool`, which the kubelet's query decoding uses.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value {value:?} for {key}: not a boolean")),
    }
}

fn parse_int(key: &str, value: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {key}: not an integer"))
}

/// A plain-text error, as the kubelet writes them. The 1.20 API server passes a 400 on as
/// `BadRequest` and a 500 as `InternalError` with this text as the message, a 404 as
/// `NotFound` with a generic message.
pub(super) fn plain_error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// The handler.
pub(super) async fn container_logs(
    State(shared): State<Arc<Shared>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    if ![&namespace, &pod, &container].into_iter().all(|n| valid_name(n)) {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "invalid namespace, pod or container name",
        );
    }
    let query = match LogQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return plain_error(StatusCode::BAD_REQUEST, e),
    };
    let Some(files) = PodFiles::find(&shared.node_dir, &namespace, &pod) else {
        return plain_error(
            StatusCode::NOT_FOUND,
            format!("pod \"{namespace}/{pod}\" does not exist"),
        );
    };
    if query.previous {
        return plain_error(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
        );
    }
    let log_path = files.log(&container);
    let file = match tokio::fs::File::open(&log_path).await {
        Ok(f) => f,
        // The API server already checked that the pod has this container: no log yet means
        // it has not started. A kubelet answers that with 400, whose message the API server
        // passes on (it drops the body of a 404).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{namespace}/{pod}\" is waiting to start"),
            );
        }
        Err(e) => {
            return plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("open {}: {e}", log_path.display()),
            );
        }
    };
    let mut tail = Tail {
        file,
        done: files.done(&container),
        pod_dir: files.dir(),
        pending: Vec::new(),
        format: Format {
            timestamps: query.timestamps,
            remaining: query.limit_bytes,
        },
        follow: query.follow,
        finished: false,
    };
    let first = match tail.start(query.tail_lines).await {
        Ok(first) => first,
        Err(e) => {
            return plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("read {}: {e}", log_path.display()),
            );
        }
    };
    let body = if tail.finished {
        Body::from(first)
    } else {
        let rest = futures::stream::unfold(tail, |mut tail| async move {
            tail.next_chunk()
                .await
                .map(|chunk| (Ok::<_, Infallible>(chunk), tail))
        });
        let first = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        Body::from_stream(futures::StreamExt::chain(first, rest))
    };
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Reads a log file from where it stands, optionally until the container terminated.
struct Tail {
    file: tokio::fs::File,
    /// `<container>.done`.
    done: PathBuf,
    /// Following ends when the pod's directory disappears.
    pod_dir: PathBuf,
    /// The start of a line whose end was not written yet.
    pending: Vec<u8>,
    format: Format,
    follow: bool,
    finished: bool,
}

impl Tail {
    /// Reads what the file holds now and returns the part to send first (the last
    /// `tail_lines` lines, if given); without `follow`, or once the container terminated,
    /// that is everything and [`Self::finished`] is set.
    async fn start(&mut self, tail_lines: Option<u64>) -> std::io::Result<Bytes> {
        // Checked before reading: whatever was written before the marker is read below.
        let done = !self.follow || self.done.exists();
        let mut content = Vec::new();
        self.file.read_to_end(&mut content).await?;
        let start = tail_lines.map_or(0, |n| tail_start(&content, n));
        self.pending = content.split_off(start);
        Ok(self.take_lines(done))
    }

    /// The next chunk of complete lines; `None` once the container terminated and all was
    /// sent (or the byte limit was reached, or the pod's directory is gone).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            let done = self.done.exists();
            let mut more = Vec::new();
            if let Err(e) = self.file.read_to_end(&mut more).await {
                tracing::warn!(error = %e, "kubelet endpoint: reading a followed log failed");
                return None;
            }
            self.pending.extend_from_slice(&more);
            let chunk = self.take_lines(done);
            if !chunk.is_empty() {
                return Some(chunk);
            }
            if self.finished || !self.pod_dir.exists() {
                return None;
            }
            tokio::time::sleep(TAIL_INTERVAL).await;
        }
    }

    /// Takes the complete lines out of `pending` (all of it when `done`) and formats them.
    fn take_lines(&mut self, done: bool) -> Bytes {
        let end = if done {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        let rest = self.pending.split_off(end);
        let lines = std::mem::replace(&mut self.pending, rest);
        if done {
            self.finished = true;
        }
        let (chunk, exhausted) = self.format.apply(&lines);
        if exhausted {
            self.finished = true;
        }
        chunk
    }
}

/// Per-line formatting and the byte limit.
struct Format {
    timestamps: bool,
    /// Bytes still allowed (`limitBytes`), if limited.
    remaining: Option<u64>,
}

impl Format {
    /// Formats `lines`; the flag tells that the byte limit is reached.
    fn apply(&mut self, lines: &[u8]) -> (Bytes, bool) {
        let mut out = if self.timestamps {
            let stamp = rfc3339_nanos(SystemTime::now());
            let mut out = Vec::with_capacity(lines.len() + 32);
            for line in lines.split_inclusive(|b| *b == b'\n') {
                out.extend_from_slice(stamp.as_bytes());
                out.push(b' ');
                out.extend_from_slice(line);
            }
            out
        } else {
            lines.to_vec()
        };
        let Some(remaining) = self.remaining.as_mut() else {
            return (Bytes::from(out), false);
        };
        let allowed = usize::try_from(*remaining).unwrap_or(usize::MAX);
        out.truncate(allowed);
        *remaining -= out.len() as u64;
        (Bytes::from(out), *remaining == 0)
    }
}

/// Where the last `n` lines of `content` start (an unterminated last line counts as one).
fn tail_start(content: &[u8], n: u64) -> usize {
    if n == 0 {
        return content.len();
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// RFC 3339 with nanoseconds, UTC, as the kubelet prefixes lines with `timestamps=true`.
fn rfc3339_nanos(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = crate::time::rfc3339(since.as_secs());
    let date_time = secs.strip_suffix('Z').unwrap_or(&secs);
    format!("{date_time}.{:09}Z", since.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        let text = b"a\nb\nc\n";
        assert_eq!(&text[tail_start(text, 1)..], b"c\n");
        assert_eq!(&text[tail_start(text, 2)..], b"b\nc\n");
        assert_eq!(&text[tail_start(text, 9)..], text);
        assert_eq!(&text[tail_start(text, 0)..], b"");
        let partial = b"a\nb\nc";
        assert_eq!(&partial[tail_start(partial, 1)..], b"c");
        assert_eq!(&partial[tail_start(partial, 2)..], b"b\nc");
    }

    #[test]
    fn query_parses_like_the_kubelet() {
        let q = LogQuery::parse(Some(
            "follow=true&tailLines=3&timestamps=1&limitBytes=10&pretty=x",
        ))
        .expect("a valid query");
        assert_eq!(
            q,
            LogQuery {
                follow: true,
                tail_lines: Some(3),
                timestamps: true,
                limit_bytes: Some(10),
                previous: false,
            }
        );
        assert_eq!(LogQuery::parse(None), Ok(LogQuery::default()));
        assert!(LogQuery::parse(Some("follow=yes")).is_err());
        assert!(LogQuery::parse(Some("tailLines=x")).is_err());
    }

    #[test]
    fn format_stamps_lines_and_stops_at_the_limit() {
        let mut f = Format {
            timestamps: false,
            remaining: Some(5),
        };
        assert_eq!(f.apply(b"abc\n"), (Bytes::from_static(b"abc\n"), false));
        assert_eq!(f.apply(b"def\n"), (Bytes::from_static(b"d"), true));
        let mut f = Format {
            timestamps: true,
            remaining: None,
        };
        let (out, _) = f.apply(b"x\ny\n");
        let out = String::from_utf8(out.to_vec()).expect("utf-8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("Z x") && lines[1].ends_with("Z y"), "{out}");
        assert_eq!(
            rfc3339_nanos(UNIX_EPOCH + Duration::new(1, 5)),
            "1970-01-01T00:00:01.000000005Z"
        );
    }
}
