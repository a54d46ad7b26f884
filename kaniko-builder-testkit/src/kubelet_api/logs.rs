//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log file, followed until
//! the container terminated.
//!
//! As the kubelet's `ReadLogs` (`pkg/kubelet/kuberuntime/logs`): the last `tailLines` lines
//! are found first; then a line whose time is before `since` (the later of `sinceTime` and now
//! minus `sinceSeconds`) is skipped; with `timestamps` each line is prefixed with its time
//! (RFC 3339, nine fractional digits, UTC) and a space; `limitBytes` counts those prefixes.
//! A line's time is the one the node recorded when it wrote the line (`<container>.timestamps`);
//! a line written without one (a test appending to the file itself) gets the time it is read.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::io::AsyncReadExt as _;

use super::Shared;
use super::pods::{PodFiles, valid_name};
use crate::node::layout;

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
    since_seconds: Option<i64>,
    since_time: Option<Timestamp>,
}

impl LogQuery {
    /// Parses `follow`, `tailLines`, `timestamps`, `limitBytes`, `previous`, `sinceSeconds`
    /// and `sinceTime` (RFC 3339, as the API server forwards it); others (`pretty`) are ignored.
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
                "sinceSeconds" => q.since_seconds = Some(parse_int(&key, &value)?),
                "sinceTime" => {
                    q.since_time =
                        Some(value.parse().map_err(|_| {
                            format!("invalid value {value:?} for {key}: not an RFC 3339 time")
                        })?);
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The time before which lines are skipped, as the kubelet's `NewLogOptions` sets it: now
    /// minus `sinceSeconds`, replaced by `sinceTime` when that is later.
    fn since(&self, now: Timestamp) -> Option<Timestamp> {
        let by_seconds = self
            .since_seconds
            .and_then(|s| now.checked_sub(SignedDuration::from_secs(s)).ok());
        match (by_seconds, self.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
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
    let stamps = match Stamps::open(&layout::timestamps_of(&log_path)).await {
        Ok(stamps) => stamps,
        Err(e) => {
            return plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("open the times of {}: {e}", log_path.display()),
            );
        }
    };
    let mut tail = Tail {
        file,
        stamps,
        done: files.done(&container),
        pod_dir: files.dir(),
        pending: Vec::new(),
        format: Format {
            timestamps: query.timestamps,
            since: query.since(Timestamp::now()),
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
    /// The times of the lines of `file`.
    stamps: Stamps,
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
        // After the log: every line read has its time written by now.
        self.stamps.refill().await?;
        let start = tail_lines.map_or(0, |n| tail_start(&content, n));
        self.pending = content.split_off(start);
        self.stamps.skip(content.iter().filter(|b| **b == b'\n').count());
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
            let read = async {
                self.file.read_to_end(&mut more).await?;
                self.stamps.refill().await
            };
            if let Err(e) = read.await {
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
        let (chunk, exhausted) = self.format.apply(&lines, &mut self.stamps);
        if exhausted {
            self.finished = true;
        }
        chunk
    }
}

/// The times of a log's lines, read from `<container>.timestamps` as the log is read.
struct Stamps {
    /// `None` when the log has no times file.
    file: Option<tokio::fs::File>,
    /// The start of a time whose end was not written yet.
    pending: Vec<u8>,
    /// Times read but not yet matched with their lines, oldest first.
    ready: VecDeque<Timestamp>,
}

impl Stamps {
    async fn open(path: &FsPath) -> std::io::Result<Stamps> {
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Stamps {
            file,
            pending: Vec::new(),
            ready: VecDeque::new(),
        })
    }

    /// Reads the times written since the last call.
    async fn refill(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.read_to_end(&mut self.pending).await?;
        let end = self
            .pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let rest = self.pending.split_off(end);
        let complete = std::mem::replace(&mut self.pending, rest);
        self.ready.extend(
            complete
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(parse_stamp),
        );
        Ok(())
    }

    /// Drops the times of `n` lines that are not sent.
    fn skip(&mut self, n: usize) {
        self.ready.drain(..n.min(self.ready.len()));
    }

    /// The time of the next line: the recorded one, else now.
    fn next(&mut self) -> Timestamp {
        self.ready.pop_front().unwrap_or_else(Timestamp::now)
    }
}

/// One recorded time; an unreadable one (never written by the node) counts as now.
fn parse_stamp(line: &[u8]) -> Timestamp {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Timestamp::now)
}

/// Per-line filtering by time, formatting and the byte limit.
struct Format {
    timestamps: bool,
    /// Lines written before this are skipped.
    since: Option<Timestamp>,
    /// Bytes still allowed (`limitBytes`), if limited.
    remaining: Option<u64>,
}

impl Format {
    /// Filters and formats `lines`, taking each line's time from `stamps`; the flag tells that
    /// the byte limit is reached.
    fn apply(&mut self, lines: &[u8], stamps: &mut Stamps) -> (Bytes, bool) {
        let mut out = Vec::with_capacity(lines.len() + 32);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            let at = stamps.next();
            if self.since.is_some_and(|since| at < since) {
                continue;
            }
            if self.timestamps {
                out.extend_from_slice(stamp(at).as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line);
        }
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

/// RFC 3339 with nine fractional digits, UTC: the kubelet's `RFC3339NanoFixed` prefix.
fn stamp(at: Timestamp) -> String {
    format!("{at:.9}")
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
            "follow=true&tailLines=3&timestamps=1&limitBytes=10&pretty=x&sinceTime=2026-12-01T06%3A00%3A00Z",
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
                since_seconds: None,
                since_time: Some(at("2026-12-01T06:00:00Z")),
            }
        );
        assert_eq!(LogQuery::parse(None), Ok(LogQuery::default()));
        assert!(LogQuery::parse(Some("follow=yes")).is_err());
        assert!(LogQuery::parse(Some("tailLines=x")).is_err());
        assert!(LogQuery::parse(Some("sinceTime=yesterday")).is_err());
    }

    #[test]
    fn since_is_the_later_of_since_time_and_since_seconds() {
        let now = at("2026-12-01T06:00:00Z");
        let q = |query: &str| LogQuery::parse(Some(query)).expect("a valid query").since(now);
        assert_eq!(q(""), None);
        assert_eq!(q("sinceSeconds=60"), Some(at("2026-12-01T05:59:00Z")));
        assert_eq!(
            q("sinceTime=2026-12-01T05:00:00Z"),
            Some(at("2026-12-01T05:00:00Z"))
        );
        assert_eq!(
            q("sinceSeconds=60&sinceTime=2026-12-01T05:00:00Z"),
            Some(at("2026-12-01T05:59:00Z"))
        );
        assert_eq!(
            q("sinceSeconds=60&sinceTime=2026-12-01T05:59:30Z"),
            Some(at("2026-12-01T05:59:30Z"))
        );
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a valid time")
    }

    fn stamps(times: &[&str]) -> Stamps {
        Stamps {
            file: None,
            pending: Vec::new(),
            ready: times.iter().map(|t| at(t)).collect(),
        }
    }

    #[test]
    fn format_stamps_lines_with_their_times_and_stops_at_the_limit() {
        let mut f = Format {
            timestamps: false,
            since: None,
            remaining: Some(5),
        };
        let mut none = stamps(&[]);
        assert_eq!(
            f.apply(b"abc\n", &mut none),
            (Bytes::from_static(b"abc\n"), false)
        );
        assert_eq!(f.apply(b"def\n", &mut none), (Bytes::from_static(b"d"), true));
        let mut f = Format {
            timestamps: true,
            since: None,
            remaining: None,
        };
        let mut times = stamps(&["2026-12-01T06:00:00.1Z", "2026-12-01T06:00:01.000000005Z"]);
        let (out, _) = f.apply(b"x\ny\n", &mut times);
        assert_eq!(
            out,
            Bytes::from_static(b"2026-12-01T06:00:00.100000000Z x\n2026-12-01T06:00:01.000000005Z y\n")
        );
        // Without a recorded time a line gets the time it is read.
        let (out, _) = f.apply(b"z\n", &mut times);
        assert!(out.ends_with(b"Z z\n"), "{out:?}");
    }

    #[test]
    fn lines_before_since_are_skipped_and_the_limit_counts_the_prefix() {
        let mut f = Format {
            timestamps: true,
            since: Some(at("2026-12-01T06:00:01Z")),
            remaining: Some(40),
        };
        let mut times = stamps(&[
            "2026-12-01T06:00:00.999999999Z",
            "2026-12-01T06:00:01Z",
            "2026-12-01T06:00:02Z",
        ]);
        let (out, exhausted) = f.apply(b"old\nat since\nlater\n", &mut times);
        // 31 bytes of prefix and the 9 of the line at `since`; the older line is not counted.
        assert_eq!(
            out,
            Bytes::from_static(b"2026-12-01T06:00:01.000000000Z at since\n")
        );
        assert!(exhausted);
    }

    #[tokio::test]
    async fn times_are_read_as_they_are_written() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.timestamps");
        std::fs::write(&path, "2026-12-01T06:00:00.000000001Z\n2026-12-01T06:00:00.0000")?;
        let mut s = Stamps::open(&path).await?;
        s.refill().await?;
        assert_eq!(s.ready, [at("2026-12-01T06:00:00.000000001Z")]);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        std::io::Write::write_all(&mut file, b"00002Z\n2026-12-01T06:00:00.000000003Z\n")?;
        s.refill().await?;
        s.skip(1);
        assert_eq!(s.next(), at("2026-12-01T06:00:00.000000002Z"));
        assert_eq!(s.next(), at("2026-12-01T06:00:00.000000003Z"));
        assert!(Stamps::open(&dir.path().join("none")).await?.file.is_none());
        Ok(())
    }
}
