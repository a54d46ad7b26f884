//! Applying a build's objects with server-side apply under one field manager.
//!
//! Objects are applied with `PatchParams::apply(field_manager)`, not forced by default: when
//! another manager owns a field we set (a ConfigMap a user edits with `kubectl apply`), the API
//! server answers 409 Conflict and the build fails naming the object, instead of silently taking
//! the field over. [`ApplyParams::force`] takes over.
//!
//! [`apply_setup`] applies what a namespace needs once (Namespace, ServiceAccounts, Role,
//! RoleBinding): an administrator's step, which an orchestrator limited to the generated Role is
//! not allowed to do. [`apply_build`] applies what one build needs before its Job (the ConfigMap,
//! and a Secret shared by name), and [`own_secret`] what it needs once the Job exists (the
//! per-credentials Secret, owned by the Job); that Role allows both.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kaniko_builder_core::flow::{FailureReason, ObjectRef};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::manifest::BuildManifests;

/// The default field manager.
pub const FIELD_MANAGER: &str = "kaniko-builder";

/// How to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ApplyParams {
    field_manager: String,
    force: bool,
}

impl Default for ApplyParams {
    fn default() -> Self {
        Self {
            field_manager: FIELD_MANAGER.to_owned(),
            force: false,
        }
    }
}

impl ApplyParams {
    /// The field manager. Default: `kaniko-builder`.
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = manager.into();
        self
    }

    /// Take over fields other managers own instead of failing with a conflict. Default: false.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// The field manager's name.
    pub fn manager(&self) -> &str {
        &self.field_manager
    }

    fn patch_params(&self) -> PatchParams {
        let p = PatchParams::apply(&self.field_manager);
        if self.force { p.force() } else { p }
    }
}

/// An apply that failed: the object and why.
#[derive(Debug, thiserror::Error)]
#[error("apply {object}: {reason}")]
pub struct ApplyError {
    /// The object.
    pub object: ObjectRef,
    /// Why ([`FailureReason::Conflict`] or [`FailureReason::Cluster`]).
    pub reason: FailureReason,
    /// The HTTP status, when the API server answered.
    pub status: Option<u16>,
    /// The client's error.
    #[source]
    pub source: kube::Error,
}

impl ApplyError {
    /// The API server refused for lack of permission (403).
    pub fn is_forbidden(&self) -> bool {
        self.status == Some(403)
    }
}

/// Maps a failed request to the reason a user reads.
pub(crate) fn cluster_failure(action: String, e: &kube::Error) -> FailureReason {
    match e {
        kube::Error::Api(s) => FailureReason::Cluster {
            action,
            message: s.message.clone(),
            status: Some(s.code),
        },
        other => FailureReason::Cluster {
            action,
            message: other.to_string(),
            status: None,
        },
    }
}

pub(crate) fn object_ref<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectRef {
    ObjectRef {
        kind: K::kind(&()).into_owned(),
        namespace: obj.meta().namespace.clone(),
        name: obj.meta().name.clone().unwrap_or_default(),
    }
}

/// `e`, a failed `action` ("apply", "create", "patch") on `object`, as an [`ApplyError`].
fn apply_error(action: &str, object: ObjectRef, e: kube::Error) -> ApplyError {
    let status = match &e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    };
    let reason = match &e {
        kube::Error::Api(s) if s.code == 409 => FailureReason::Conflict {
            object: object.to_string(),
            message: s.message.clone(),
        },
        other => cluster_failure(format!("{action} {object}"), other),
    };
    ApplyError {
        object,
        reason,
        status,
        source: e,
    }
}

async fn apply_one<K>(api: Api<K>, obj: &K, params: &ApplyParams) -> Result<K, ApplyError>
where
    K: kube::Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let object = object_ref(obj);
    let name = object.name.clone();
    api.patch(&name, &params.patch_params(), &Patch::Apply(obj))
        .await
        .map_err(|e| apply_error("apply", object, e))
}

async fn apply_namespaced<K>(client: &kube::Client, obj: &K, params: &ApplyParams) -> Result<K, ApplyError>
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    apply_one(Api::<K>::namespaced(client.clone(), &ns), obj, params).await
}

/// Applies the namespace-wide objects: the Namespace, the ServiceAccounts, the Role and the
/// RoleBinding, in that order. Returns what was applied.
///
/// # Errors
/// The first object that failed ([`ApplyError::is_forbidden`] when the caller may not).
pub async fn apply_setup(
    client: &kube::Client,
    manifests: &BuildManifests,
    params: &ApplyParams,
) -> Result<Vec<ObjectRef>, ApplyError> {
    let mut applied = Vec::new();
    apply_one(
        Api::<Namespace>::all(client.clone()),
        &manifests.namespace,
        params,
    )
    .await?;
    applied.push(object_ref(&manifests.namespace));
    let accounts: [&Option<ServiceAccount>; 2] = [
        &manifests.service_account,
        &manifests.orchestrator_service_account,
    ];
    for sa in accounts.into_iter().flatten() {
        apply_namespaced(client, sa, params).await?;
        applied.push(object_ref(sa));
    }
    if let Some(role) = &manifests.role {
        apply_namespaced::<Role>(client, role, params).await?;
        applied.push(object_ref(role));
    }
    if let Some(binding) = &manifests.role_binding {
        apply_namespaced::<RoleBinding>(client, binding, params).await?;
        applied.push(object_ref(binding));
    }
    Ok(applied)
}

/// Applies what one build needs before its Job: the Secret when it is shared by name
/// (seed-compatible mode or `secret_name`; a per-credentials Secret is made by [`own_secret`]
/// once the Job exists) and the ConfigMap. Returns what was applied.
///
/// # Errors
/// The first object that failed; [`FailureReason::Conflict`] names it when another field manager
/// owns a field.
pub async fn apply_build(
    client: &kube::Client,
    manifests: &BuildManifests,
    params: &ApplyParams,
) -> Result<Vec<ObjectRef>, ApplyError> {
    let mut applied = Vec::new();
    if let Some(secret) = manifests
        .secret
        .as_ref()
        .filter(|_| !manifests.secret_per_credentials())
    {
        apply_namespaced::<Secret>(client, secret, params).await?;
        applied.push(object_ref(secret));
    }
    apply_namespaced::<ConfigMap>(client, &manifests.config_map, params).await?;
    applied.push(object_ref(&manifests.config_map));
    Ok(applied)
}

/// How often [`own_secret`] tries when the Secret is deleted and created by others meanwhile.
const OWN_SECRET_ATTEMPTS: usize = 5;

/// `job` as an owner: no `controller` (a shared Secret has several owners, none its controller)
/// and no `blockOwnerDeletion` (which needs `update` on `jobs/finalizers`; nothing needs to wait
/// for a dependent before its Job goes).
fn job_owner(job_name: &str, job_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "Job".to_owned(),
        name: job_name.to_owned(),
        uid: job_uid.to_owned(),
        ..OwnerReference::default()
    }
}

/// Makes the build's per-credentials Secret ([`BuildManifests::secret_per_credentials`]) exist,
/// with its content, owned by the Job `job_name` (`job_uid`) besides its other owners; call it
/// once the Job exists. The garbage collector then deletes the Secret when the last Job that
/// owns it is gone (deleted after a success or a cancellation, or by its TTL), and never while
/// another Job that mounts it is left: each such Job is an owner. Returns the Secret, or `None`
/// when the build has no per-credentials Secret (nothing to do).
///
/// A strategic-merge patch adds the owner (owner references merge by uid, so concurrent builds
/// add theirs side by side) and sets the content again; a Secret that does not exist (new, or
/// just collected with its last owner) is created with this Job as its owner. Needs `create` and
/// `patch` on Secrets, which the generated Role grants.
///
/// # Errors
/// The request that failed.
pub async fn own_secret(
    client: &kube::Client,
    manifests: &BuildManifests,
    job_name: &str,
    job_uid: &str,
    params: &ApplyParams,
) -> Result<Option<ObjectRef>, ApplyError> {
    let Some(secret) = manifests
        .secret
        .as_ref()
        .filter(|_| manifests.secret_per_credentials())
    else {
        return Ok(None);
    };
    let object = object_ref(secret);
    let api: Api<Secret> = Api::namespaced(client.clone(), object.namespace.as_deref().unwrap_or_default());
    let owner = job_owner(job_name, job_uid);
    let patch = serde_json::json!({
        "metadata": { "ownerReferences": [&owner] },
        "data": &secret.data,
    });
    let patch_params = PatchParams {
        field_manager: Some(params.manager().to_owned()),
        ..PatchParams::default()
    };
    let post_params = PostParams {
        field_manager: Some(params.manager().to_owned()),
        ..PostParams::default()
    };
    let mut owned = secret.clone();
    owned.metadata.owner_references = Some(vec![owner]);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match api
            .patch(&object.name, &patch_params, &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => return Ok(Some(object)),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(apply_error("patch", object, e)),
        }
        match api.create(&post_params, &owned).await {
            Ok(_) => return Ok(Some(object)),
            // Created by another build meanwhile: add this Job to its owners.
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < OWN_SECRET_ATTEMPTS => {}
            Err(e) => return Err(apply_error("create", object, e)),
        }
    }
}

/// Applies `config_map` again, owned by the Job (`uid`), so the garbage collector removes it
/// with the Job (also when the Job's TTL removes it).
pub(crate) async fn own_config_map(
    client: &kube::Client,
    config_map: &ConfigMap,
    job_name: &str,
    job_uid: &str,
    params: &ApplyParams,
) -> Result<(), ApplyError> {
    let mut owned = config_map.clone();
    owned.metadata.owner_references = Some(vec![job_owner(job_name, job_uid)]);
    apply_namespaced(client, &owned, params).await.map(|_| ())
}
