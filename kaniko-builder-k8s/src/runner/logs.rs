//! Following a container's log as lines: live, bounded memory, the last lines kept, and resumed
//! without losing or repeating a line when the stream breaks.
//!
//! The log is read with `timestamps=true`: the kubelet puts the time each line was written
//! (RFC 3339, nanoseconds) and a space before it. The time of the last line delivered, and how
//! many lines in a row carried exactly that time, is the [`Position`]. When a stream ends or
//! breaks, a GET of the Pod tells whether the container ended: if it did (or was restarted
//! since, or the Pod is gone), one last read of what is left, then stop; otherwise the log is
//! followed again from the last time. `sinceTime` has second precision and the kubelet sends
//! every line not older than it, so a resumed stream starts with lines already delivered: those
//! older than the last time, and the first lines at exactly that time, are skipped.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncBufRead, AsyncBufReadExt as _};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use kaniko_builder_core::flow::EventSink;
use kube::api::{Api, LogParams};
use tokio::time::Instant;

/// Longest line kept; the rest of a longer line is dropped and `…` marks the cut.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Room for the time the kubelet puts before each line (`2026-12-01T06:00:00.123456789Z `, 31
/// bytes, or a little more with a numeric offset), read beyond [`MAX_LINE`].
const STAMP_ROOM: usize = 40;

/// Attempts to open a log stream the kubelet is not ready to serve yet.
const OPEN_ATTEMPTS: u32 = 20;
const OPEN_RETRY: Duration = Duration::from_millis(100);

/// After a break: the first pause before trying again, doubled up to the cap after each
/// attempt that brought nothing new.
const RESUME_FIRST_PAUSE: Duration = Duration::from_millis(200);
const RESUME_MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long to go on trying without opening a stream (the API server may be down for a while).
const RESUME_LIMIT: Duration = Duration::from_secs(120);

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

/// One line as read, without its `\n`: at most the limit asked for, and whether more was cut.
#[derive(Debug, Default, PartialEq, Eq)]
struct RawLine {
    bytes: Vec<u8>,
    cut: bool,
}

/// Reads one line of at most `limit` bytes; `None` at the end of the stream.
async fn read_raw<R: AsyncBufRead + Unpin>(reader: &mut R, limit: usize) -> std::io::Result<Option<RawLine>> {
    let mut line = RawLine::default();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if line.bytes.is_empty() && !line.cut {
                return Ok(None);
            }
            break;
        }
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = limit.saturating_sub(line.bytes.len());
        if chunk.len() > room {
            line.cut = true;
        }
        line.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume_unpin(used);
        if done {
            break;
        }
    }
    Ok(Some(line))
}

/// The text of a line: at most [`MAX_LINE`] bytes (`…` marks a cut), a trailing `\r` removed.
fn text(content: &[u8], cut: bool) -> String {
    let cut = cut || content.len() > MAX_LINE;
    let mut content = &content[..content.len().min(MAX_LINE)];
    if let Some(rest) = content.strip_suffix(b"\r") {
        content = rest;
    }
    let mut s = String::from_utf8_lossy(content).into_owned();
    if cut {
        s.push('…');
    }
    s
}

/// Splits the kubelet's `<time> ` prefix (`timestamps=true`) off a line: the time and the
/// line itself; `None` when the line does not start with a time.
fn split_stamp(raw: &[u8]) -> Option<(Timestamp, &[u8])> {
    let space = raw.iter().position(|b| *b == b' ')?;
    let at = std::str::from_utf8(&raw[..space]).ok()?.parse().ok()?;
    Some((at, &raw[space + 1..]))
}

/// `at` rounded down to the second: `sinceTime` has second precision (kube rounds to the
/// nearest second, the API server formats whole seconds), and rounding up would lose lines.
fn since_time(at: Timestamp) -> Timestamp {
    let floor = TimestampRound::new()
        .smallest(Unit::Second)
        .mode(RoundMode::Floor);
    // Rounding to a second cannot fail (only a unit above hours or an odd increment can).
    at.round(floor).unwrap_or(at)
}

/// How far a log was delivered, and the replay a resumed stream starts with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Position {
    /// The time of the last line delivered.
    last: Option<Timestamp>,
    /// How many lines in a row, ending with the last one, carried exactly `last`.
    at_last: usize,
    /// While a resumed stream repeats delivered lines: how many of those at `last` are still to
    /// come again.
    replay: Option<usize>,
}

impl Position {
    /// Starts a new stream: the `sinceTime` to ask for, `None` (from the start) when nothing
    /// was delivered yet.
    fn resume(&mut self) -> Option<Timestamp> {
        let last = self.last?;
        self.replay = Some(self.at_last);
        Some(since_time(last))
    }

    /// Whether the stream is still repeating delivered lines.
    fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// Whether the line written at `at` is new (to deliver) or one delivered before.
    fn admit(&mut self, at: Timestamp) -> bool {
        if let (Some(left), Some(last)) = (self.replay, self.last) {
            if at < last {
                return false;
            }
            if at == last && left > 0 {
                self.replay = Some(left - 1);
                return false;
            }
            self.replay = None;
        }
        if self.last == Some(at) {
            self.at_last += 1;
        } else {
            self.last = Some(at);
            self.at_last = 1;
        }
        true
    }
}

/// What a GET of the Pod says about the followed container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Running, or not known to have stopped: follow its log again.
    Running,
    /// It ended: read what is left (of the previous instance, when it was restarted since).
    Ended { previous: bool },
    /// The Pod is gone, and its log with it.
    Gone,
}

fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    init.chain(main).find(|s| s.name == container)
}

/// Where `container` of `pod` (`None`: not found) stands, given the time of the last line
/// delivered.
fn standing(pod: Option<&Pod>, container: &str, last: Option<Timestamp>) -> Standing {
    let Some(pod) = pod else {
        return Standing::Gone;
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let Some(status) = container_status(pod, container) else {
        return match phase {
            Some("Succeeded" | "Failed") => Standing::Ended { previous: false },
            _ => Standing::Running,
        };
    };
    let state = status.state.clone().unwrap_or_default();
    if state.terminated.is_some() {
        return Standing::Ended { previous: false };
    }
    // A new instance started after the last line, or the one followed ended and waits for a
    // restart.
    let started = state.running.and_then(|r| r.started_at);
    let restarted = started.zip(last).is_some_and(|(started, last)| started.0 > last);
    let ended_before =
        state.waiting.is_some() && status.last_state.as_ref().is_some_and(|s| s.terminated.is_some());
    if restarted || ended_before {
        Standing::Ended { previous: true }
    } else {
        Standing::Running
    }
}

/// The kubelet does not serve the log yet (400 "waiting to start", 404 "no log yet").
fn not_ready(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 400 | 404))
}

/// Whether trying again may help: not when the request itself is refused.
fn retryable(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(s) if matches!(s.code, 401 | 403))
}

/// Capped exponential pauses between attempts after a break, and the limit on the time spent
/// without opening a stream.
#[derive(Debug)]
struct Pause {
    next: Duration,
    opened: Instant,
}

impl Pause {
    fn new() -> Self {
        Self {
            next: RESUME_FIRST_PAUSE,
            opened: Instant::now(),
        }
    }

    /// A stream opened: the limit counts from now.
    fn opened(&mut self) {
        self.opened = Instant::now();
    }

    /// New lines came: the next pause is short again.
    fn progressed(&mut self) {
        self.next = RESUME_FIRST_PAUSE;
    }

    /// Waits before the next attempt; `false` (at once) when the limit is reached.
    async fn wait(&mut self) -> bool {
        if self.opened.elapsed() >= RESUME_LIMIT {
            return false;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(RESUME_MAX_PAUSE);
        true
    }
}

type LogReader = Pin<Box<dyn AsyncBufRead + Send>>;

/// How a stream went.
#[derive(Debug, Default, Clone, Copy)]
struct Streamed {
    /// Lines delivered.
    new: usize,
    /// Lines skipped as already delivered.
    repeated: usize,
    /// It broke (an error) rather than ended.
    broke: bool,
}

/// Follows one container's log.
struct Follower {
    pods: Api<Pod>,
    pod: String,
    container: &'static str,
    events: EventSink,
    tails: Tails,
    keep: usize,
    position: Position,
}

/// Follows `container`'s log until the container ends, sending each line to `events` and keeping
/// the last `keep` in `tails`; when the stream breaks, it is resumed where it broke.
pub(crate) async fn follow(
    pods: Api<Pod>,
    pod: String,
    container: &'static str,
    events: EventSink,
    tails: Tails,
    keep: usize,
) {
    let mut follower = Follower {
        pods,
        pod,
        container,
        events,
        tails,
        keep,
        position: Position::default(),
    };
    if follower.start().await {
        follower.resume().await;
    }
}

impl Follower {
    /// Opens the log and reads it until the stream ends; `false` when the log cannot be had.
    async fn start(&mut self) -> bool {
        match self.open_first().await {
            Ok(reader) => {
                self.deliver(reader).await;
                true
            }
            Err(e) if not_ready(&e) || !retryable(&e) => {
                tracing::debug!(pod = %self.pod, container = self.container, error = %e, "cannot follow the log");
                false
            }
            Err(e) => {
                tracing::debug!(pod = %self.pod, container = self.container, error = %e, "cannot open the log yet");
                true
            }
        }
    }

    /// The kubelet may not serve a log the moment the status says the container started: a
    /// few quick retries.
    async fn open_first(&mut self) -> kube::Result<LogReader> {
        let mut attempt = 1;
        loop {
            match self.open(true, false).await {
                Err(e) if not_ready(&e) && attempt < OPEN_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(OPEN_RETRY).await;
                }
                opened => return opened,
            }
        }
    }

    /// Opens a stream from the last line delivered (from the start at first).
    async fn open(&mut self, follow: bool, previous: bool) -> kube::Result<LogReader> {
        let params = LogParams {
            container: Some(self.container.to_owned()),
            follow,
            previous,
            timestamps: true,
            since_time: self.position.resume(),
            ..LogParams::default()
        };
        let reader = self.pods.log_stream(&self.pod, &params).await?;
        Ok(Box::pin(reader))
    }

    /// After the stream ended or broke: asks the Pod whether the container ended, and follows
    /// the log again until it did (then reads what is left), the Pod is gone, or no stream
    /// opens within [`RESUME_LIMIT`].
    async fn resume(&mut self) {
        let mut pause = Pause::new();
        loop {
            let standing = match self.pods.get_opt(&self.pod).await {
                Ok(pod) => standing(pod.as_ref(), self.container, self.position.last),
                Err(e) => {
                    if self.retry(&mut pause, "get the pod", &e).await {
                        continue;
                    }
                    return;
                }
            };
            let go_on = match standing {
                Standing::Running => self.follow_again(&mut pause).await,
                Standing::Ended { previous } => {
                    self.read_rest(previous, &mut pause).await;
                    false
                }
                Standing::Gone => false,
            };
            if !go_on {
                tracing::debug!(pod = %self.pod, container = self.container, ?standing, "stopped following the log");
                return;
            }
        }
    }

    /// One more stream while the container runs; `false` to give up.
    async fn follow_again(&mut self, pause: &mut Pause) -> bool {
        match self.open(true, false).await {
            Ok(reader) => {
                pause.opened();
                if self.deliver(reader).await.new > 0 {
                    pause.progressed();
                    true
                } else {
                    pause.wait().await
                }
            }
            Err(e) => self.retry(pause, "follow the log again", &e).await,
        }
    }

    /// The last read once the container ended: what it wrote after the last line delivered.
    async fn read_rest(&mut self, previous: bool, pause: &mut Pause) {
        loop {
            match self.open(false, previous).await {
                Ok(reader) => {
                    pause.opened();
                    if !self.deliver(reader).await.broke || !pause.wait().await {
                        return;
                    }
                }
                Err(e) => {
                    if !self.retry(pause, "read the rest of the log", &e).await {
                        return;
                    }
                }
            }
        }
    }

    /// Pauses after a failed `action`; `false` when it is not worth trying again.
    async fn retry(&self, pause: &mut Pause, action: &str, e: &kube::Error) -> bool {
        let again = retryable(e) && pause.wait().await;
        tracing::debug!(pod = %self.pod, container = self.container, action, error = %e, again, "cannot resume the log stream");
        again
    }

    /// Reads a stream to its end, delivering the lines not delivered before.
    async fn deliver(&mut self, mut reader: LogReader) -> Streamed {
        let resumed_at = if self.position.replaying() {
            self.position.last
        } else {
            None
        };
        let mut streamed = Streamed::default();
        loop {
            match read_raw(&mut reader, MAX_LINE + STAMP_ROOM).await {
                Ok(Some(raw)) => {
                    if !self.take(&raw) {
                        streamed.repeated += 1;
                        continue;
                    }
                    if streamed.new == 0 {
                        self.resumed(resumed_at, streamed.repeated);
                    }
                    streamed.new += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(pod = %self.pod, container = self.container, error = %e, "log stream broke");
                    streamed.broke = true;
                    break;
                }
            }
        }
        if streamed.new == 0 {
            self.resumed(resumed_at, streamed.repeated);
        }
        streamed
    }

    /// Records how a resumed stream (one that started after `last`) joined the delivered lines.
    fn resumed(&self, last: Option<Timestamp>, skipped: usize) {
        if let Some(last) = last {
            tracing::debug!(
                pod = %self.pod,
                container = self.container,
                %last,
                skipped,
                "log stream resumed; lines already delivered skipped"
            );
        }
    }

    /// Delivers one line unless it was delivered before; whether it was new.
    fn take(&mut self, raw: &RawLine) -> bool {
        let line = match split_stamp(&raw.bytes) {
            Some((at, content)) => {
                if !self.position.admit(at) {
                    return false;
                }
                text(content, raw.cut)
            }
            None => text(&raw.bytes, raw.cut),
        };
        self.tails.push(self.container, line.clone(), self.keep);
        self.events.log(self.container, line);
        true
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a valid time")
    }

    fn lines(input: &str, limit: usize) -> Vec<RawLine> {
        let mut reader = futures::io::BufReader::with_capacity(7, input.as_bytes());
        let mut lines = Vec::new();
        futures::executor::block_on(async {
            while let Some(l) = read_raw(&mut reader, limit).await.expect("read") {
                lines.push(l);
            }
        });
        lines
    }

    #[test]
    fn lines_are_split_capped_and_kept() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\r\ntwo\n{long}\nlast");
        let lines: Vec<String> = lines(&input, MAX_LINE)
            .iter()
            .map(|l| text(&l.bytes, l.cut))
            .collect();
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

    #[test]
    fn the_cap_applies_to_the_line_without_its_time() {
        let stamp = "2026-12-01T06:00:00.123456789Z ";
        for len in [MAX_LINE, MAX_LINE + 1, MAX_LINE + STAMP_ROOM] {
            let input = format!("{stamp}{}\n", "y".repeat(len));
            let raw = &lines(&input, MAX_LINE + STAMP_ROOM)[0];
            let (_, content) = split_stamp(&raw.bytes).expect("a time");
            let line = text(content, raw.cut);
            if len == MAX_LINE {
                assert_eq!(line.len(), MAX_LINE);
            } else {
                assert_eq!(line.chars().count(), MAX_LINE + 1, "{len}");
                assert!(line.ends_with('…'));
            }
        }
    }

    #[test]
    fn times_are_split_off_as_the_kubelet_writes_them() {
        let cases: [(&str, Option<(&str, &str)>); 7] = [
            (
                "2026-12-01T06:00:00.123456789Z step 1/3",
                Some(("2026-12-01T06:00:00.123456789Z", "step 1/3")),
            ),
            // Go's RFC3339Nano drops trailing zeros; RFC3339NanoFixed keeps them.
            (
                "2026-12-01T06:00:00.1Z a",
                Some(("2026-12-01T06:00:00.100000000Z", "a")),
            ),
            (
                "2026-12-01T06:00:00Z  two spaces",
                Some(("2026-12-01T06:00:00Z", " two spaces")),
            ),
            ("2026-12-01T07:00:00+01:00 x", Some(("2026-12-01T06:00:00Z", "x"))),
            ("2026-12-01T06:00:00Z ", Some(("2026-12-01T06:00:00Z", ""))),
            ("no time here", None),
            ("2026-12-01T06:00:00Z", None),
        ];
        for (line, expected) in cases {
            let got = split_stamp(line.as_bytes());
            let expected = expected.map(|(t, l)| (at(t), l.as_bytes()));
            assert_eq!(got, expected, "{line:?}");
        }
    }

    #[test]
    fn since_time_is_rounded_down_to_the_second() {
        assert_eq!(
            since_time(at("2026-12-01T06:00:00.999999999Z")),
            at("2026-12-01T06:00:00Z")
        );
        assert_eq!(since_time(at("2026-12-01T06:00:01Z")), at("2026-12-01T06:00:01Z"));
        assert_eq!(
            since_time(at("1969-12-31T23:59:59.5Z")),
            at("1969-12-31T23:59:59Z")
        );
    }

    /// Feeds `times` to `p`, returning the indexes delivered.
    fn admitted(p: &mut Position, times: &[&str]) -> Vec<usize> {
        (0..times.len()).filter(|&i| p.admit(at(times[i]))).collect()
    }

    #[test]
    fn a_resumed_stream_skips_exactly_what_was_delivered() {
        // What the kubelet holds: three lines share one time, the last delivered among them.
        let log = [
            "2026-12-01T06:00:00.5Z",
            "2026-12-01T06:00:01.1Z",
            "2026-12-01T06:00:01.2Z",
            "2026-12-01T06:00:01.2Z",
            "2026-12-01T06:00:01.2Z",
            "2026-12-01T06:00:02Z",
        ];
        // Broken after each possible line: the first stream, then the resumed one served from
        // the second (what the kubelet sends for the `sinceTime` asked).
        for broken_after in 0..log.len() {
            let mut p = Position::default();
            let first = admitted(&mut p, &log[..broken_after]);
            assert_eq!(first, (0..broken_after).collect::<Vec<_>>());
            let since = p.resume();
            let served: Vec<usize> = (0..log.len())
                .filter(|&i| since.is_none_or(|s| at(log[i]) >= s))
                .collect();
            let times: Vec<&str> = served.iter().map(|&i| log[i]).collect();
            let again: Vec<usize> = admitted(&mut p, &times).iter().map(|&k| served[k]).collect();
            assert_eq!(
                again,
                (broken_after..log.len()).collect::<Vec<_>>(),
                "broken after {broken_after}"
            );
            assert!(!p.replaying());
        }
    }

    #[test]
    fn position_counts_lines_at_the_last_time_and_resumes_twice() {
        let mut p = Position::default();
        assert_eq!(p.resume(), None, "nothing delivered: from the start");
        assert!(!p.replaying());
        let t = "2026-12-01T06:00:01.2Z";
        assert_eq!(admitted(&mut p, &[t, t]), [0, 1]);
        assert_eq!((p.last, p.at_last), (Some(at(t)), 2));
        assert_eq!(p.resume(), Some(at("2026-12-01T06:00:01Z")));
        // Broken again during the replay: the next stream repeats it all.
        assert_eq!(
            admitted(&mut p, &["2026-12-01T06:00:01.1Z", t]),
            Vec::<usize>::new()
        );
        assert_eq!(p.resume(), Some(at("2026-12-01T06:00:01Z")));
        assert_eq!(admitted(&mut p, &[t, t, t, "2026-12-01T06:00:03Z"]), [2, 3]);
        assert_eq!((p.at_last, p.replaying()), (1, false));
        // Not replaying, an older time (a clock step back) is delivered.
        assert_eq!(admitted(&mut p, &["2026-12-01T06:00:00Z"]), [0]);
    }

    fn pod(phase: &str, status: Option<ContainerStatus>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.to_owned()),
                container_statuses: status.map(|s| vec![s]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn status(state: ContainerState, last_state: Option<ContainerState>) -> Option<ContainerStatus> {
        Some(ContainerStatus {
            name: "image-builder".to_owned(),
            state: Some(state),
            last_state,
            ..ContainerStatus::default()
        })
    }

    fn running(started: &str) -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(at(started))),
            }),
            ..ContainerState::default()
        }
    }

    fn terminated() -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated::default()),
            ..ContainerState::default()
        }
    }

    #[test]
    fn the_pod_tells_whether_the_container_ended() {
        let last = Some(at("2026-12-01T06:00:10.5Z"));
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..ContainerState::default()
        };
        let cases = [
            (None, Standing::Gone),
            (Some(pod("Pending", None)), Standing::Running),
            (Some(pod("Failed", None)), Standing::Ended { previous: false }),
            (
                Some(pod("Running", status(running("2026-12-01T06:00:00Z"), None))),
                Standing::Running,
            ),
            (
                Some(pod("Running", status(terminated(), None))),
                Standing::Ended { previous: false },
            ),
            // Started again after the last line: the instance followed ended.
            (
                Some(pod(
                    "Running",
                    status(running("2026-12-01T06:00:11Z"), Some(terminated())),
                )),
                Standing::Ended { previous: true },
            ),
            (
                Some(pod("Running", status(waiting, Some(terminated())))),
                Standing::Ended { previous: true },
            ),
        ];
        for (pod, expected) in cases {
            assert_eq!(standing(pod.as_ref(), "image-builder", last), expected, "{pod:?}");
        }
        let fresh = pod("Running", status(running("2026-12-01T06:00:11Z"), None));
        assert_eq!(standing(Some(&fresh), "image-builder", None), Standing::Running);
        assert_eq!(standing(Some(&fresh), "kaniko-init", last), Standing::Running);
    }
}
