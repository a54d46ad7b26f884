//! Running the controller: kube-runtime's `Controller` over `ImageBuild`s, under leader
//! election when asked.

use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

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
    Controller::new(api, watcher::Config::default())
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
        })
        .await;
    ctx.builds.stop_all().await;
    tracing::info!("controller stopped");
    Ok(())
}
