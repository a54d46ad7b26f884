//! A spec the controller cannot build fails at once with `InvalidSpec` naming the field, and
//! nothing is created; fixing it (a new generation) builds it. Real API server, stand-in node
//! running buildah, real TLS registry.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kaniko_builder_controller::Phase;
use kaniko_builder_controller::crd::ImageBuild;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use support::{Bed, JobWatch, SECRET, blob_spec, succeeded};

const NS: &str = "invalid";
/// A well-formed digest no registry holds.
const SOME_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_fails_naming_the_field_and_creates_nothing() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    bed.namespace(NS).await?;
    let jobs = JobWatch::start(&bed.admin(), NS).await?;
    let controller = bed.controller("main", &[])?;

    let image = bed.image("invalid/app:v1");
    let cases = [
        ("bad-image", blob_spec("Bad Image!", SOME_DIGEST), "spec.image"),
        (
            "bad-digest",
            blob_spec(&image, "sha256:not-hex"),
            "spec.context.blob.digest",
        ),
    ];
    for (name, spec, field) in cases {
        bed.apply(NS, name, spec).await?;
        let failed = bed.wait_done(NS, name).await?;
        check_invalid(&bed, &failed, field).await?;
    }
    bed.ensure(
        NS,
        jobs.created().is_empty(),
        format!("invalid specs made Jobs: {:?}", jobs.created()),
    )
    .await?;
    let made = made_objects(&bed).await?;
    bed.ensure(
        NS,
        made.is_empty(),
        format!("invalid specs made objects: {made:?}"),
    )
    .await?;

    // Fixed: a new generation, built.
    let digest = bed.push_context(&image, "fixed").await?;
    let fixed = bed.apply(NS, "bad-image", blob_spec(&image, &digest)).await?;
    let done = bed.wait_done(NS, "bad-image").await?;
    let status = done.status.clone().unwrap_or_default();
    bed.ensure(
        NS,
        status.phase == Some(Phase::Succeeded)
            && status.observed_generation == fixed.metadata.generation
            && jobs.created().len() == 1,
        format!(
            "fixed spec: expected one Job and Succeeded; Jobs {:?}",
            jobs.created()
        ),
    )
    .await?;
    controller.stop().await
}

/// `Failed`, condition `False`/`InvalidSpec` whose message names `field`.
async fn check_invalid(bed: &Bed, failed: &ImageBuild, field: &str) -> anyhow::Result<()> {
    let status = failed.status.clone().unwrap_or_default();
    let message = status
        .condition("Succeeded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    bed.ensure(
        NS,
        status.phase == Some(Phase::Failed)
            && succeeded(failed) == ("False".into(), "InvalidSpec".into())
            && message.contains(field)
            && status.job_ref.is_none(),
        format!(
            "{}: expected Failed/InvalidSpec naming {field}, message {message:?}",
            failed.name_any()
        ),
    )
    .await
}

/// ConfigMaps and Secrets of `NS` the test did not make (nor the cluster: CA, tokens).
async fn made_objects(bed: &Bed) -> anyhow::Result<Vec<String>> {
    let params = ListParams::default();
    let config_maps = Api::<ConfigMap>::namespaced(bed.admin(), NS)
        .list(&params)
        .await?;
    let secrets = Api::<Secret>::namespaced(bed.admin(), NS).list(&params).await?;
    let mut made: Vec<String> = config_maps
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n != "kube-root-ca.crt")
        .map(|n| format!("ConfigMap {n}"))
        .collect();
    made.extend(
        secrets
            .iter()
            .filter(|s| {
                s.name_any() != SECRET && s.type_.as_deref() != Some("kubernetes.io/service-account-token")
            })
            .map(|s| format!("Secret {}", s.name_any())),
    );
    Ok(made)
}
