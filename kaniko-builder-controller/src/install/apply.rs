//! Installing on a cluster: server-side apply of each object, the CRD first.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::InstallManifests;
use crate::{Error, Result};

/// The field manager of [`apply`] and [`apply_rbac_and_crd`].
pub const FIELD_MANAGER: &str = "kaniko-builder-controller-install";
/// How long [`apply`] waits for the CRD to be `Established`.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// Installs everything on the cluster `client` talks to (it needs the rights to create CRDs,
/// ClusterRoles and their bindings): [`apply_rbac_and_crd`], then the Deployment.
///
/// # Errors
/// [`Error::Kube`] naming the object the API server refused (a 409 when another field manager
/// owns a field this sets: objects are not forced); [`Error::Install`] when the CRD is not
/// established in time.
pub async fn apply(client: &kube::Client, manifests: &InstallManifests) -> Result<()> {
    apply_rbac_and_crd(client, manifests).await?;
    apply_namespaced(client, &manifests.deployment).await
}

/// Installs everything but the Deployment, for a controller run elsewhere (out of the cluster,
/// under the ServiceAccount's token): the CRD, which is then waited for until `Established`
/// (so `ImageBuild`s can be created as soon as this returns), the Namespace, the
/// ServiceAccount, the roles and their bindings, each with server-side apply as
/// [`FIELD_MANAGER`]. Applying again changes nothing.
///
/// # Errors
/// As [`apply`].
pub async fn apply_rbac_and_crd(client: &kube::Client, manifests: &InstallManifests) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    apply_one(&crds, &manifests.crd).await?;
    wait_established(crds, &manifests.crd.name_any()).await?;
    apply_one(&Api::all(client.clone()), &manifests.namespace).await?;
    apply_namespaced(client, &manifests.service_account).await?;
    if let Some(role) = &manifests.cluster_role {
        apply_one(&Api::all(client.clone()), role).await?;
    }
    if let Some(role) = &manifests.role {
        apply_namespaced(client, role).await?;
    }
    apply_namespaced(client, &manifests.lease_role).await?;
    if let Some(binding) = &manifests.cluster_role_binding {
        apply_one(&Api::all(client.clone()), binding).await?;
    }
    if let Some(binding) = &manifests.role_binding {
        apply_namespaced(client, binding).await?;
    }
    apply_namespaced(client, &manifests.lease_role_binding).await
}

async fn wait_established(crds: Api<CustomResourceDefinition>, name: &str) -> Result<()> {
    let object = format!("CustomResourceDefinition {name}");
    let established = await_condition(crds, name, conditions::is_crd_established());
    match tokio::time::timeout(CRD_ESTABLISHED_TIMEOUT, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Install {
            object,
            problem: format!("watching for Established: {e}"),
        }),
        Err(_) => Err(Error::Install {
            object,
            problem: format!("not Established after {}s", CRD_ESTABLISHED_TIMEOUT.as_secs()),
        }),
    }
}

async fn apply_namespaced<K>(client: &kube::Client, obj: &K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let ns = obj.namespace().unwrap_or_default();
    apply_one(&Api::namespaced(client.clone(), &ns), obj).await
}

async fn apply_one<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = obj.name_any();
    let object = match obj.namespace() {
        Some(ns) => format!("{} {ns}/{name}", K::kind(&())),
        None => format!("{} {name}", K::kind(&())),
    };
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(obj))
        .await
        .map_err(|e| Error::kube(format!("applying {object}"), e))?;
    Ok(())
}
