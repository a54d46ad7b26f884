//! Running the controller: kube-runtime's `Controller` over `ImageBuild`s, under leader
//! election when asked.

use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use kaniko_builder::{BuildConfig, ImageRef};

use crate::context::Context;
use crate::crd::ImageBuild;
use crate::reconcile::{error_policy, reconcile};
use crate::{ControllerOptions, Error, Result, leader};

/// Runs the controller until the process is stopped.
///
/// # Errors
/// When the controller cannot start (see [`run_until`]).
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<()> {
    run_until(client, options, CancellationToken::new()).await
}

/// Runs the controller until `shutdown` is cancelled; then stops following the builds (their
/// Jobs keep running, for the next controller to attach to) and returns.
///
/// With [`ControllerOptions::leader_election`], it works only while it holds the Lease, and
/// releases it on return.
///
/// # Errors
/// [`Error::InvalidOption`] for options that cannot work, [`Error::Lease`] when the Lease cannot
/// be used.
pub async fn run_until(
    client: kube::Client,
    options: ControllerOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    if options.concurrency == 0 {
        return Err(Error::InvalidOption {
            option: "concurrency",
            problem: "0: at least one build must be able to run".to_owned(),
        });
    }
    validate_registries(&options)?;
    match options.lease.clone() {
        None => work(client, options, shutdown).await,
        Some(lease) => {
            leader::validate(&lease)?;
            leader::run_while_leader(client.clone(), &lease, shutdown, |stop| {
                work(client.clone(), options.clone(), stop)
            })
            .await
        }
    }
}

/// Checks the registry options once, as every build would use them: a bad one is the
/// operator's to fix, not each `ImageBuild`'s.
fn validate_registries(options: &ControllerOptions) -> Result<()> {
    crate::prepare::registry_builder(options)
        .build()
        .map_err(|e| Error::InvalidOption {
            option: "insecure registries or registry CAs",
            problem: e.to_string(),
        })?;
    for host in &options.insecure_registries {
        let probe = format!("{host}/kaniko-builder/validate:latest");
        let image: ImageRef = probe.parse().map_err(|e| Error::InvalidOption {
            option: "insecure registry",
            problem: format!("{host:?}: {e}"),
        })?;
        BuildConfig::builder(image)
            .insecure_registry(host.clone())
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "insecure registry",
                problem: format!("{host:?}: {e}"),
            })?;
    }
    Ok(())
}

/// Reconciles until `stop`, then stops the builds this process follows.
async fn work(client: kube::Client, options: ControllerOptions, stop: CancellationToken) -> Result<()> {
    let api: Api<ImageBuild> = match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let instance = options.lease.as_ref().map(|l| l.identity.clone());
    let ctx = Arc::new(Context::new(client, options, instance));
    tracing::info!(namespace = ?ctx.options.namespace, concurrency = ctx.options.concurrency, "controller started");
    let shutdown = stop.clone();
    // The builds stop at once: the controller's graceful shutdown waits for the reconciles in
    // flight, and a new leader may already be attaching to their Jobs.
    let stop_builds = async {
        stop.cancelled().await;
        ctx.builds.stop_all().await;
    };
    let controller = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                // The reconciler's own errors were logged by the error policy.
                Err(e @ kube::runtime::controller::Error::ReconcilerFailed(..)) => {
                    tracing::debug!(error = %e, "reconcile error");
                }
                Err(e) => tracing::warn!(error = %e, "watching ImageBuilds"),
            }
        });
    tokio::join!(controller, stop_builds);
    ctx.builds.stop_all().await;
    tracing::info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_registry_options_are_refused_before_any_build() {
        let ok = ControllerOptions::default().insecure_registry("registry.local:5000");
        assert!(validate_registries(&ok).is_ok());
        for bad in [
            ControllerOptions::default().insecure_registry("http://registry.local:5000"),
            ControllerOptions::default().registry_ca("registry.local:5000", "not a PEM certificate"),
        ] {
            let e = validate_registries(&bad).expect_err("refused");
            assert!(matches!(e, Error::InvalidOption { .. }), "{e}");
            assert!(e.to_string().contains("registry"), "{e}");
        }
    }
}
