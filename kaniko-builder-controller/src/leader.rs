//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager): the controller
//! works only while it holds the Lease, and stops its builds (leaving their Jobs to the next
//! leader) as soon as it loses it.

use std::future::Future;

use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::options::LeaseOptions;
use crate::{Error, Result};

/// The renewal margin before the lease expires: a third of its duration, at least a second.
fn grace(duration_secs: u64) -> u64 {
    (duration_secs / 3).max(1)
}

/// Checks what kube-lease-manager would panic on.
pub(crate) fn validate(lease: &LeaseOptions) -> Result<()> {
    let secs = lease.duration.as_secs();
    if secs < 2 {
        return Err(Error::InvalidOption {
            option: "lease duration",
            problem: format!("{secs}s: at least 2 seconds (the holder renews a third of it early)"),
        });
    }
    if lease.identity.is_empty() {
        return Err(Error::InvalidOption {
            option: "lease identity",
            problem: "empty: each replica needs its own (e.g. its Pod's name)".to_owned(),
        });
    }
    Ok(())
}

/// Runs `work` each time this process becomes the leader, with a token cancelled when it stops
/// being one (or on `shutdown`); returns after `shutdown`, releasing the Lease.
pub(crate) async fn run_while_leader<F, Fut>(
    client: kube::Client,
    lease: &LeaseOptions,
    shutdown: CancellationToken,
    mut work: F,
) -> Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    validate(lease)?;
    let lease_name = format!("{}/{}", lease.namespace, lease.name);
    let secs = lease.duration.as_secs();
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_parameters(
            LeaseParams::new(lease.identity.clone(), secs, grace(secs))
                .with_field_manager(format!("kaniko-builder-controller-{}", lease.identity)),
        )
        .build()
        .await
        .map_err(|e| Error::Lease {
            lease: lease_name.clone(),
            message: e.to_string(),
        })?;
    let (mut leader, task) = manager.watch().await;
    let result = lead(&mut leader, &shutdown, &lease_name, &mut work).await;
    // Closing the channel makes the manager release the Lease and end.
    drop(leader);
    match task.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(lease = %lease_name, error = %e, "releasing the Lease failed"),
        Err(e) => tracing::warn!(lease = %lease_name, error = %e, "the lease task failed"),
    }
    result
}

async fn lead<F, Fut>(
    leader: &mut watch::Receiver<bool>,
    shutdown: &CancellationToken,
    lease_name: &str,
    work: &mut F,
) -> Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            held = leader.wait_for(|l| *l) => if held.is_err() {
                return Err(lost_manager(lease_name));
            },
        }
        tracing::info!(lease = %lease_name, "leading");
        let stop = shutdown.child_token();
        let watcher = {
            let stop = stop.clone();
            let mut leader = leader.clone();
            async move {
                let _ = leader.wait_for(|l| !*l).await;
                stop.cancel();
            }
        };
        let (result, ()) = tokio::join!(work(stop.clone()), async {
            tokio::select! {
                () = watcher => {}
                () = stop.cancelled() => {}
            }
        });
        stop.cancel();
        result?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        tracing::warn!(lease = %lease_name, "lost the lease: stopped working");
    }
}

fn lost_manager(lease_name: &str) -> Error {
    Error::Lease {
        lease: lease_name.to_owned(),
        message: "the lease manager stopped".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn lease(secs: u64, identity: &str) -> LeaseOptions {
        LeaseOptions {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: identity.into(),
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn options_kube_lease_manager_would_panic_on_are_errors() {
        assert!(validate(&lease(1, "a")).is_err());
        assert!(validate(&lease(5, "")).is_err());
        assert!(validate(&lease(2, "a")).is_ok());
        for secs in [2, 3, 5, 15, 100] {
            assert!(grace(secs) >= 1 && grace(secs) < secs, "{secs}");
        }
    }

    #[tokio::test]
    async fn work_runs_while_leading_and_stops_when_the_lease_is_lost() {
        let (leader_tx, mut leader_rx) = watch::channel(false);
        let (steps_tx, mut steps) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let lead_task = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut work = |stop: CancellationToken| {
                    let steps = steps_tx.clone();
                    async move {
                        let _ = steps.send("start");
                        stop.cancelled().await;
                        let _ = steps.send("stop");
                        Ok(())
                    }
                };
                lead(&mut leader_rx, &shutdown, "ns/lease", &mut work).await
            })
        };
        leader_tx.send_replace(true);
        assert_eq!(steps.recv().await, Some("start"));
        leader_tx.send_replace(false);
        assert_eq!(
            steps.recv().await,
            Some("stop"),
            "losing the lease stops the work"
        );
        leader_tx.send_replace(true);
        assert_eq!(steps.recv().await, Some("start"), "leading again starts it again");
        shutdown.cancel();
        assert_eq!(steps.recv().await, Some("stop"));
        lead_task.await.expect("task").expect("lead");
    }
}
