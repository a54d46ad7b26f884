//! The kaniko executor's command line.

use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;

use super::{CONTEXT_DIR, TERMINATION_LOG};

/// The kaniko executor's arguments for `config`, one `--flag=value` or `--flag` per element; see
/// the [`manifest`](crate::manifest) module docs for the order.
pub fn kaniko_args(config: &BuildConfig) -> Vec<String> {
    let mut args = Vec::new();
    match config.context() {
        ContextSource::Git {
            url,
            reference,
            sub_path,
        } => {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            let mut context = format!("--context=git://{rest}");
            if let Some(r) = reference {
                context.push('#');
                context.push_str(r);
            }
            args.push(context);
            if let Some(sub) = sub_path {
                args.push(format!("--context-sub-path={sub}"));
            }
        }
        ContextSource::Url(url) => args.push(format!("--context={url}")),
        _ => args.push(format!("--context=dir://{CONTEXT_DIR}")),
    }
    args.push(format!("--dockerfile={}", config.dockerfile()));
    args.extend(config.destinations().map(|d| format!("--destination={d}")));
    args.extend(
        config
            .build_args()
            .iter()
            .map(|(k, v)| format!("--build-arg={k}={v}")),
    );
    if let Some(t) = config.target() {
        args.push(format!("--target={t}"));
    }
    args.extend(config.labels().iter().map(|(k, v)| format!("--label={k}={v}")));
    args.push(format!("--digest-file={TERMINATION_LOG}"));
    if let Some(cache) = config.cache() {
        args.push("--cache=true".to_owned());
        if let Some(repo) = &cache.repo {
            args.push(format!("--cache-repo={repo}"));
        }
        if let Some(ttl) = cache.ttl {
            args.push(format!("--cache-ttl={}", go_duration(ttl)));
        }
    }
    args.extend(
        config
            .insecure_registries()
            .iter()
            .map(|r| format!("--insecure-registry={r}")),
    );
    args.extend(
        config
            .skip_tls_verify_registries()
            .iter()
            .map(|r| format!("--skip-tls-verify-registry={r}")),
    );
    args.extend(
        config
            .registry_mirrors()
            .iter()
            .map(|r| format!("--registry-mirror={r}")),
    );
    if let Some(mode) = config.snapshot_mode() {
        args.push(format!("--snapshot-mode={}", mode.as_str()));
    }
    if config.reproducible() {
        args.push("--reproducible".to_owned());
    }
    if let Some(n) = config.push_retry() {
        args.push(format!("--push-retry={n}"));
    }
    if let Some(v) = config.verbosity() {
        args.push(format!("--verbosity={}", v.as_str()));
    }
    args
}

/// Whole hours as `6h`, else whole minutes as `90m`, else seconds.
fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(6 * 3600)), "6h");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m");
        assert_eq!(go_duration(Duration::from_secs(61)), "61s");
    }
}
