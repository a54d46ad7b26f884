//! Captures every `tracing` event of a test binary, at TRACE, so a test can scan it for secrets.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The text written by the global subscriber that [`capture_trace_logs`] installed.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything captured so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("log buffer lock is not poisoned").clone()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("log buffer lock is not poisoned")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber of [`init_tracing`](crate::init_tracing), plus a TRACE
/// layer (with `log` records from rustls and others) that writes into the returned buffer.
///
/// # Panics
/// If the test binary already has a global subscriber: the capture must own it, or it would
/// prove nothing.
pub fn capture_trace_logs() -> CapturedLogs {
    let captured = CapturedLogs::default();
    crate::trace::init_with_capture(captured.clone());
    captured
}
