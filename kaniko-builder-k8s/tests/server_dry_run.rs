//! Every rendered configuration is accepted by a real Kubernetes API server (v1.20.2, started by
//! the test harness) in a server-side apply dry run: the strongest check of the manifests short of
//! running them.

mod common;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kaniko_builder_k8s::manifest::Object;
use kaniko_builder_testkit::TestCluster;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

const MANAGER: &str = "kaniko-builder";

async fn dry_apply<K>(api: Api<K>, name: &str, object: &K) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let params = PatchParams::apply(MANAGER).dry_run();
    Ok(api.patch(name, &params, &Patch::Apply(object)).await?)
}

fn name_of<K: kube::Resource>(object: &K) -> String {
    object.meta().name.clone().expect("rendered objects are named")
}

#[tokio::test]
async fn every_rendered_object_passes_a_server_side_dry_run() {
    let cluster = TestCluster::builder()
        .scheduler(false)
        .start()
        .await
        .expect("cluster");
    let client = cluster.admin_client();
    for case in common::cases() {
        let manifests = case.render();
        // A dry run creates nothing, so namespaced objects need their namespace for real.
        let ns = manifests.namespace_name().to_owned();
        if Api::<Namespace>::all(client.clone())
            .get_opt(&ns)
            .await
            .expect("get namespace")
            .is_none()
        {
            cluster.create_namespace(&ns).await.expect("namespace");
        }
        let mut kinds = Vec::new();
        for object in manifests.objects() {
            let result = match object {
                Object::Namespace(o) => dry_apply(Api::all(client.clone()), &name_of(o), o)
                    .await
                    .map(|_| ()),
                Object::ServiceAccount(o) => {
                    dry_apply::<ServiceAccount>(Api::namespaced(client.clone(), &ns), &name_of(o), o)
                        .await
                        .map(|_| ())
                }
                Object::Role(o) => dry_apply::<Role>(Api::namespaced(client.clone(), &ns), &name_of(o), o)
                    .await
                    .map(|_| ()),
                Object::RoleBinding(o) => {
                    dry_apply::<RoleBinding>(Api::namespaced(client.clone(), &ns), &name_of(o), o)
                        .await
                        .map(|_| ())
                }
                Object::Secret(o) => {
                    dry_apply::<Secret>(Api::namespaced(client.clone(), &ns), &name_of(o), o)
                        .await
                        .map(|_| ())
                }
                Object::ConfigMap(o) => {
                    dry_apply::<ConfigMap>(Api::namespaced(client.clone(), &ns), &name_of(o), o)
                        .await
                        .map(|_| ())
                }
                Object::Job(o) => {
                    let applied =
                        dry_apply::<Job>(Api::namespaced(client.clone(), &ns), &name_of(o), o).await;
                    // The server defaulted and validated the whole pod template: the containers
                    // come back with the contract's names.
                    applied.map(|job| {
                        let spec = job.spec.and_then(|s| s.template.spec).expect("pod spec");
                        let init: Vec<_> = spec
                            .init_containers
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| c.name)
                            .collect();
                        let main: Vec<_> = spec.containers.into_iter().map(|c| c.name).collect();
                        assert_eq!(
                            (init, main),
                            (vec!["kaniko-init".to_owned()], vec!["image-builder".to_owned()])
                        );
                    })
                }
                _ => panic!("{}: an object kind this test does not know", case.name),
            };
            result.unwrap_or_else(|e| panic!("{}: {} rejected: {e:#}", case.name, object.kind()));
            kinds.push(object.kind());
        }
        assert!(
            kinds.contains(&"Job") && kinds.contains(&"ConfigMap"),
            "{}: {kinds:?}",
            case.name
        );
        // A dry run leaves nothing behind.
        let jobs = Api::<Job>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .expect("list");
        assert!(jobs.items.is_empty(), "{}: dry run created a Job", case.name);
    }
}
