//! One `tracing` setup for every test binary: [`init_tracing`].
//!
//! Without `KB_TRACE_DIR` it is the usual test subscriber (`RUST_LOG` filter, libtest's
//! captured output). With `KB_TRACE_DIR` set (as `scripts/test.sh` does for the whole-suite
//! secrets scan), every event `RUST_LOG` lets through (all of them, when unset) goes to
//! `<KB_TRACE_DIR>/<binary>-<pid>.log` instead, and the console only gets what `KB_CONSOLE_LOG`
//! allows (default `error`), so a TRACE run stays readable.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

use crate::logs::CapturedLogs;

/// Directory for the per-process trace files and secrets ledgers.
pub const TRACE_DIR_ENV: &str = "KB_TRACE_DIR";
/// Filter for the console while the trace goes to files (default `error`).
pub const CONSOLE_LOG_ENV: &str = "KB_CONSOLE_LOG";

/// Whether this process installed its subscriber through here.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// `<KB_TRACE_DIR>/<binary>-<pid><suffix>` (the directory created), or `None` when unset.
pub(crate) fn process_file(suffix: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(TRACE_DIR_ENV).filter(|d| !d.is_empty())?);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("create {TRACE_DIR_ENV} {}: {e}", dir.display());
    }
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    Some(dir.join(format!("{binary}-{}{suffix}", std::process::id())))
}

/// Installs the test binary's global subscriber (see the [module docs](self)); later calls,
/// and calls after another subscriber was installed, do nothing. The testkit's servers call it
/// when they start, so every binary that meets a real service has its logs.
///
/// # Panics
/// `KB_TRACE_DIR` is set and the trace file cannot be created: the scan would miss it.
pub fn init_tracing() {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*installed {
        // Err: the test installed a subscriber of its own, which it may.
        *installed = Registry::default().with(layers(None)).try_init().is_ok();
    }
}

/// Like [`init_tracing`], also capturing everything at TRACE into `captured`.
///
/// # Panics
/// A global subscriber exists already: the capture must own it, or it would prove nothing.
pub(crate) fn init_with_capture(captured: CapturedLogs) {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(!*installed, "init_tracing ran before the capture: capture first");
    Registry::default()
        .with(layers(Some(captured)))
        .try_init()
        .expect("this test binary owns the global subscriber");
    *installed = true;
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn layers(captured: Option<CapturedLogs>) -> Vec<BoxedLayer> {
    let mut layers: Vec<BoxedLayer> = Vec::new();
    match process_file(".log") {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .unwrap_or_else(|e| panic!("create trace file {}: {e}", path.display()));
            // Unbuffered: fmt writes each event in one call, and a test binary exits without
            // running destructors, so a buffer would lose its tail.
            layers.push(
                fmt::layer()
                    .with_writer(Arc::new(file))
                    .with_ansi(false)
                    .with_filter(env_filter("RUST_LOG", "trace"))
                    .boxed(),
            );
            layers.push(
                fmt::layer()
                    .with_test_writer()
                    .with_filter(env_filter(CONSOLE_LOG_ENV, "error"))
                    .boxed(),
            );
        }
        None => layers.push(
            fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::from_default_env())
                .boxed(),
        ),
    }
    if let Some(captured) = captured {
        layers.push(
            fmt::layer()
                .with_writer(move || captured.clone())
                .with_ansi(false)
                .with_filter(LevelFilter::TRACE)
                .boxed(),
        );
    }
    layers
}

fn env_filter(var: &str, default: &str) -> EnvFilter {
    EnvFilter::try_from_env(var).unwrap_or_else(|_| EnvFilter::new(default))
}

/// Copies a server's log (the registry's, the control plane's) into `KB_TRACE_DIR` as
/// `<binary>-<pid>-<name>.srvlog`, so the secrets scan covers what the servers were sent too: a
/// credential in a URL would show in their access logs. Does nothing without `KB_TRACE_DIR`.
pub(crate) fn keep_server_log(name: &str, log: &std::path::Path) {
    let Some(dest) = process_file(&format!("-{name}.srvlog")) else {
        return;
    };
    if let Err(e) = std::fs::copy(log, &dest)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        panic!("keep server log {} as {}: {e}", log.display(), dest.display());
    }
}
