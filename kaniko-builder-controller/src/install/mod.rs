//! The manifests that install the controller: the CRD generated from [`ImageBuild`], the
//! Namespace, the ServiceAccount, the least-privilege RBAC and the Deployment, as typed objects
//! ([`manifests`]) or multi-document YAML for `kubectl apply -f -`
//! ([`InstallManifests::to_yaml`]); [`apply`] installs them with server-side apply.
//!
//! Watching all namespaces (the default), the controller's rights in the build namespaces are a
//! ClusterRole; watching one ([`InstallOptions::watch_namespace`]), a Role in that namespace.
//! Leader election needs a Role on Leases in the controller's own namespace.
//!
//! ```
//! use kaniko_builder_controller::install::{InstallOptions, manifests};
//!
//! let options = InstallOptions::default().image("registry.example/kb-controller:1").watch_namespace("builds");
//! let yaml = manifests(&options)?.to_yaml()?;
//! assert!(yaml.contains("kind: Role\n"));
//! # Ok::<(), kaniko_builder_controller::Error>(())
//! ```

mod apply;
mod deployment;
mod options;
mod rbac;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaniko_builder::k8s::manifest::{LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME};
use kube::CustomResourceExt as _;
use serde::Serialize;

pub use self::apply::{CRD_ESTABLISHED_TIMEOUT, FIELD_MANAGER, apply, apply_rbac_and_crd};
pub use self::deployment::{CONTAINER, UID};
pub use self::options::{DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_REPLICAS, InstallOptions};
use crate::crd::ImageBuild;
use crate::{Error, Result};

/// The name of the ServiceAccount, the Deployment, the ClusterRole (or Role) and its binding.
pub const NAME: &str = "kaniko-builder-controller";
/// The name of the Role (and binding) on Leases in the controller's namespace.
pub const LEASE_ROLE: &str = "kaniko-builder-controller-leader-election";
/// `app.kubernetes.io/part-of` on every object.
const PART_OF: &str = "kaniko-builder";
const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub(crate) const COMPONENT_CONTROLLER: &str = "controller";

/// The `ImageBuild` CRD, generated from the Rust type.
pub fn crd() -> CustomResourceDefinition {
    ImageBuild::crd()
}

/// [`crd`] as YAML for `kubectl apply -f -`.
///
/// # Errors
/// [`Error::Manifest`] if serialisation fails.
pub fn crd_yaml() -> Result<String> {
    serde_saphyr::to_string(&crd()).map_err(|e| Error::Manifest(e.to_string()))
}

/// Everything that installs the controller, in apply order by [`objects`](Self::objects).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InstallManifests {
    /// The `ImageBuild` CRD.
    pub crd: CustomResourceDefinition,
    /// The controller's namespace.
    pub namespace: Namespace,
    /// The controller's ServiceAccount, [`NAME`] in its namespace.
    pub service_account: ServiceAccount,
    /// The rights in every namespace, when watching all.
    pub cluster_role: Option<ClusterRole>,
    /// Binds [`cluster_role`](Self::cluster_role) to the ServiceAccount.
    pub cluster_role_binding: Option<ClusterRoleBinding>,
    /// The same rights (but Nodes) as a Role in the one watched namespace.
    pub role: Option<Role>,
    /// Binds [`role`](Self::role) to the ServiceAccount.
    pub role_binding: Option<RoleBinding>,
    /// Leader election: Leases in the controller's namespace.
    pub lease_role: Role,
    /// Binds [`lease_role`](Self::lease_role) to the ServiceAccount.
    pub lease_role_binding: RoleBinding,
    /// The controller.
    pub deployment: Deployment,
}

/// Renders the install described by `options`.
///
/// # Errors
/// [`Error::InvalidOption`] naming the option at fault.
pub fn manifests(options: &InstallOptions) -> Result<InstallManifests> {
    options.validate()?;
    let ns = options.namespace.as_str();
    let (cluster_role, cluster_role_binding, role, role_binding) = match &options.watch_namespace {
        None => (
            Some(rbac::cluster_role(options)),
            Some(rbac::cluster_role_binding(options)),
            None,
            None,
        ),
        Some(watched) => (
            None,
            None,
            Some(rbac::role(NAME, watched, rbac::build_rules(options, false))),
            Some(rbac::role_binding(options, NAME, watched)),
        ),
    };
    let (lease_role, lease_role_binding) = rbac::lease(options);
    let mut crd = crd();
    crd.metadata.labels = Some(labels("crd"));
    Ok(InstallManifests {
        crd,
        namespace: Namespace {
            metadata: meta(ns, None, COMPONENT_CONTROLLER),
            ..Namespace::default()
        },
        service_account: ServiceAccount {
            metadata: meta(NAME, Some(ns), COMPONENT_CONTROLLER),
            ..ServiceAccount::default()
        },
        cluster_role,
        cluster_role_binding,
        role,
        role_binding,
        lease_role,
        lease_role_binding,
        deployment: deployment::deployment(options),
    })
}

impl InstallManifests {
    /// Every object as JSON, in apply order: CRD, Namespace, ServiceAccount, roles, bindings,
    /// Deployment.
    ///
    /// # Errors
    /// [`Error::Manifest`] if serialisation fails.
    pub fn objects(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = vec![
            json(&self.crd)?,
            json(&self.namespace)?,
            json(&self.service_account)?,
        ];
        if let Some(role) = &self.cluster_role {
            out.push(json(role)?);
        }
        if let Some(role) = &self.role {
            out.push(json(role)?);
        }
        out.push(json(&self.lease_role)?);
        if let Some(binding) = &self.cluster_role_binding {
            out.push(json(binding)?);
        }
        if let Some(binding) = &self.role_binding {
            out.push(json(binding)?);
        }
        out.push(json(&self.lease_role_binding)?);
        out.push(json(&self.deployment)?);
        Ok(out)
    }

    /// [`objects`](Self::objects) as multi-document YAML for `kubectl apply -f -`.
    ///
    /// # Errors
    /// [`Error::Manifest`] if serialisation fails.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for (i, object) in self.objects()?.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&serde_saphyr::to_string(object).map_err(|e| Error::Manifest(e.to_string()))?);
        }
        Ok(out)
    }
}

fn json(object: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(object).map_err(|e| Error::Manifest(e.to_string()))
}

/// The labels of every object, as the library sets them: name, managed-by, component, part-of.
fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), NAME.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), NAME.to_owned()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_PART_OF.to_owned(), PART_OF.to_owned()),
    ])
}

/// Metadata with the name, the namespace (`None`: cluster-scoped) and the labels.
fn meta(name: &str, namespace: Option<&str>, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(component)),
        ..ObjectMeta::default()
    }
}
