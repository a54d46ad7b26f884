//! The controller's rights: exactly what it does, each rule saying why.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kaniko_builder::k8s::manifest::DEFAULT_BUILD_SERVICE_ACCOUNT;

use super::{InstallOptions, LEASE_ROLE, NAME, meta};
use crate::DEFAULT_LEASE_NAME;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[String]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        ..PolicyRule::default()
    }
}

/// The rules in the namespaces builds run in; `cluster`: the ClusterRole's (all namespaces),
/// which adds Nodes.
pub(super) fn build_rules(options: &InstallOptions, cluster: bool) -> Vec<PolicyRule> {
    let build_account = [DEFAULT_BUILD_SERVICE_ACCOUNT.to_owned()];
    let mut rules = vec![
        // Watched, and patched to add and remove the finalizer.
        rule(
            &["kaniko-builder.io"],
            &["imagebuilds"],
            &["get", "list", "watch", "patch"],
            &[],
        ),
        // The outcome is written to the status subresource.
        rule(
            &["kaniko-builder.io"],
            &["imagebuilds/status"],
            &["get", "patch"],
            &[],
        ),
        // kube-runtime's event Recorder creates Events and patches repeated ones.
        rule(&["events.k8s.io"], &["events"], &["create", "patch"], &[]),
        // The library's runner follows the build Pod's Events (either API).
        rule(&["", "events.k8s.io"], &["events"], &["list", "watch"], &[]),
        // The build Jobs: started, watched, deleted on cancel and cleanup.
        rule(
            &["batch"],
            &["jobs"],
            &["create", "get", "list", "watch", "delete"],
            &[],
        ),
        // delete: a lost node's Pods are force-deleted (no kubelet will confirm their deletion).
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"], &[]),
        // The build log, streamed and tailed into the status on failure.
        rule(&[""], &["pods/log"], &["get"], &[]),
        // The per-build ConfigMap; get also reads a spec's jobOptionsRef.
        rule(&[""], &["configmaps"], &["create", "get", "patch", "delete"], &[]),
        // Only the Secrets it was installed with: read to probe the registry (the Job mounts the
        // Secret as it is). Never written.
        rule(&[""], &["secrets"], &["get"], &options.registry_secrets),
        // The build Pods' token-less ServiceAccount is made to exist with server-side apply: a
        // PATCH that, for a missing object, the API server also authorises as create *with the
        // name*, so both verbs can be limited to that one account (a POST create is refused).
        rule(&[""], &["serviceaccounts"], &["create", "patch"], &build_account),
    ];
    if cluster {
        // The runner notices a lost node sooner (Nodes are cluster-scoped: ClusterRole only).
        rules.push(rule(&[""], &["nodes"], &["get", "list", "watch"], &[]));
    }
    rules
}

/// The rules in the controller's namespace: leader election as kube-lease-manager does it.
pub(super) fn lease_rules() -> Vec<PolicyRule> {
    vec![
        // create cannot be restricted by name; POSTed when the Lease does not exist yet.
        rule(&["coordination.k8s.io"], &["leases"], &["create"], &[]),
        // Read, renewed and taken over (merge and server-side-apply patches) by name.
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "patch"],
            &[DEFAULT_LEASE_NAME.to_owned()],
        ),
    ]
}

/// The controller's ServiceAccount as an RBAC subject.
fn subject(options: &InstallOptions) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: NAME.to_owned(),
        namespace: Some(options.namespace.clone()),
        ..Subject::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

pub(super) fn cluster_role(options: &InstallOptions) -> ClusterRole {
    ClusterRole {
        metadata: meta(NAME, None, "rbac"),
        rules: Some(build_rules(options, true)),
        ..ClusterRole::default()
    }
}

pub(super) fn cluster_role_binding(options: &InstallOptions) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(NAME, None, "rbac"),
        role_ref: role_ref("ClusterRole", NAME),
        subjects: Some(vec![subject(options)]),
    }
}

/// A Role named `name` in `namespace` with `rules`.
pub(super) fn role(name: &str, namespace: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(name, Some(namespace), "rbac"),
        rules: Some(rules),
    }
}

/// Binds the Role `name` of `namespace` to the controller's ServiceAccount.
pub(super) fn role_binding(options: &InstallOptions, name: &str, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace), "rbac"),
        role_ref: role_ref("Role", name),
        subjects: Some(vec![subject(options)]),
    }
}

/// The lease Role and its binding, in the controller's namespace.
pub(super) fn lease(options: &InstallOptions) -> (Role, RoleBinding) {
    (
        role(LEASE_ROLE, &options.namespace, lease_rules()),
        role_binding(options, LEASE_ROLE, &options.namespace),
    )
}
