//! The kaniko executor's command line.

use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;

use super::{CONTEXT_DIR, OCI_LAYOUT_DIR, PLATFORM_DIGEST_FILE, TERMINATION_LOG};

/// The kaniko executor's arguments for `config`, one `--flag=value` or `--flag` per element; see
/// the [`manifest`](crate::manifest) module docs for the order.
///
/// For one platform of a multi-platform build ([`BuildConfig::target_platform`]) there is no
/// `--destination`: in its place `--custom-platform=<os/arch[/variant]>`, `--no-push`,
/// `--image-format=oci` and `--oci-layout-path=/kaniko/out/layout`, the digest goes to
/// `--digest-file=/kaniko/out/digest`, and a cache without a repository gets the one kaniko would
/// infer from the image (`--cache-repo=<registry>/<repository>/cache`), which kaniko requires
/// with `--no-push`. [`scripts::PLATFORM_BUILDER_WRAPPER`](super::scripts::PLATFORM_BUILDER_WRAPPER)
/// then pushes the layout by digest.
pub fn kaniko_args(config: &BuildConfig) -> Vec<String> {
    let platform = config.target_platform();
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
    match platform {
        None => args.extend(config.destinations().map(|d| format!("--destination={d}"))),
        Some(p) => args.extend([
            format!("--custom-platform={p}"),
            "--no-push".to_owned(),
            "--image-format=oci".to_owned(),
            format!("--oci-layout-path={OCI_LAYOUT_DIR}"),
        ]),
    }
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
    let digest_file = if platform.is_some() {
        PLATFORM_DIGEST_FILE
    } else {
        TERMINATION_LOG
    };
    args.push(format!("--digest-file={digest_file}"));
    if let Some(cache) = config.cache() {
        args.push("--cache=true".to_owned());
        match &cache.repo {
            Some(repo) => args.push(format!("--cache-repo={repo}")),
            // kaniko infers `<first destination's repository>/cache`, but not without one.
            None if platform.is_some() => {
                args.push(format!("--cache-repo={}/cache", config.image().name()));
            }
            None => {}
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

/// Where the Job of one platform of a multi-platform build pushes its image by digest: each
/// destination's `<registry>/<repository>` once, the image's first, followed by crane's
/// `--insecure` when the registry is in the config's insecure or skip-TLS-verify registries. One
/// line each, as `image-builder`'s `KB_PUSH` holds them.
pub(crate) fn push_targets(config: &BuildConfig) -> Vec<String> {
    let mut repositories: Vec<String> = Vec::new();
    let mut targets = Vec::new();
    for destination in config.destinations() {
        let repository = destination.name();
        if repositories.contains(&repository) {
            continue;
        }
        let registry = destination.registry();
        let insecure = config
            .insecure_registries()
            .iter()
            .chain(config.skip_tls_verify_registries())
            .any(|r| r == registry);
        targets.push(if insecure {
            format!("{repository} --insecure")
        } else {
            repository.clone()
        });
        repositories.push(repository);
    }
    targets
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
