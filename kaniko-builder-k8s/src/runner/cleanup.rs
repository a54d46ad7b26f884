//! What a run created, and deleting it: by policy, after a cancellation, or from the guard that
//! runs when the future is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kaniko_builder_core::flow::ObjectRef;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};

/// What one run created or found, shared with the drop guard.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracked {
    pub(super) namespace: String,
    /// The Job's name and uid, once created or attached.
    pub(super) job: Option<(String, String)>,
    /// Whether this run created it (only then does it delete it).
    pub(super) created: bool,
    /// The per-build ConfigMap this run applied.
    pub(super) config_map: Option<String>,
    /// Whether it is owned by the Job (so the garbage collector removes it with the Job).
    pub(super) config_map_owned: bool,
    /// Shared objects this run applied and leaves (a Secret shared by name; a seed-compatible
    /// ConfigMap).
    pub(super) shared: Vec<ObjectRef>,
    /// The per-credentials Secret this run made owned by its Job: it stays as long as the Job
    /// (and goes with the last Job that owns it).
    pub(super) secret: Option<String>,
    /// The Job this run created cannot run (its Secret could not be made): it is deleted,
    /// whatever the policy.
    pub(super) discard: bool,
    /// Pods seen: name → uid.
    pub(super) pods: BTreeMap<String, String>,
    /// The Job is gone (deleted by someone else, or by us).
    pub(super) gone: bool,
    /// A create sent and not answered yet (or answered by an error): the Job's name and this
    /// run's id (the `kaniko-builder.io/run` annotation).
    pub(super) creating: Option<(String, String)>,
    /// The Pods' node is not reporting (as far as the last watch event said): deleting them
    /// needs force.
    pub(super) node_lost: bool,
}

/// An id for one run's Job: unique within the process (a counter) and across processes (the
/// pid and the start time).
pub(super) fn run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(super) fn lock(t: &Mutex<Tracked>) -> std::sync::MutexGuard<'_, Tracked> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes what a dropped run created.
pub(super) struct DropGuard {
    pub(super) client: kube::Client,
    pub(super) tracked: Arc<Mutex<Tracked>>,
    pub(super) armed: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let tracked = lock(&self.tracked).clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(?tracked.job, "build dropped outside a tokio runtime: cannot delete its Job");
            return;
        };
        let client = self.client.clone();
        handle.spawn(async move {
            delete_created(&client, &tracked, PropagationPolicy::Background, true).await;
        });
    }
}

/// Deletes the Job (when this run created it), then the per-build ConfigMap unless the garbage
/// collector will (it is owned by the Job and `gc_config_map` allows relying on that); errors are
/// logged. Returns whether the Job is deleted (or was already gone).
pub(super) async fn delete_created(
    client: &kube::Client,
    tracked: &Tracked,
    policy: PropagationPolicy,
    gc_config_map: bool,
) -> bool {
    let mut deleted = false;
    if let (true, false, Some((name, uid))) = (tracked.created, tracked.gone, &tracked.job) {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &tracked.namespace);
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match jobs.delete(name, &params).await {
            Ok(_) => deleted = true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => deleted = true,
            Err(e) => tracing::warn!(job = %name, error = %e, "cannot delete the Job"),
        }
    }
    // The ConfigMap of a Job this run did not create belongs to that Job's run.
    let ours = tracked.created || tracked.job.is_none();
    let collected = gc_config_map && tracked.config_map_owned && deleted;
    if ours
        && !collected
        && let Some(cm) = &tracked.config_map
    {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &tracked.namespace);
        match cms.delete(cm, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(configmap = %cm, error = %e, "cannot delete the ConfigMap"),
        }
    }
    deleted
}

/// Force-deletes the Pods of a build whose node was lost: no kubelet will confirm their
/// deletion, so without force they stay `Terminating`, and a Job deleted with Foreground
/// propagation waits for them. Errors are logged.
pub(super) async fn force_delete_pods(client: &kube::Client, tracked: &Tracked) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &tracked.namespace);
    for (pod, uid) in &tracked.pods {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(pod, &params).await {
            Ok(_) => tracing::info!(%pod, "force-deleted the Pod of the lost node"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(%pod, error = %e, "cannot force-delete the Pod of the lost node"),
        }
    }
}

/// Waits until the Job is gone and then until no Pod of it is left. With Foreground deletion
/// the Job goes after its Pods; a Pod the Job controller created from a stale cache just as the
/// Job was deleted is an orphan the garbage collector removes: waited for too.
pub(super) async fn wait_job_and_pods_gone(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), kube::runtime::wait::Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    await_condition(jobs, name, conditions::is_deleted(uid)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("controller-uid={uid}");
    let left = match pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the Job's pods");
            return Ok(());
        }
    };
    for pod in left {
        let (pod_name, pod_uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        await_condition(pods.clone(), &pod_name, conditions::is_deleted(&pod_uid)).await?;
    }
    Ok(())
}
