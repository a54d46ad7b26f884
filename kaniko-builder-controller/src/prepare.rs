//! What a build needs before it runs: the registry credentials from the spec's Secret, the Job
//! options (the controller's, adjusted by the spec's `jobOptionsRef`), and the build Pods'
//! ServiceAccount in the namespace.

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kaniko_builder::k8s::manifest::{DOCKER_CONFIG_KEY, DOCKER_CONFIG_SECRET_TYPE};
use kaniko_builder::registry::{RegistryClientBuilder, RegistrySettings};
use kaniko_builder::{BuildConfig, DockerConfig, JobOptions, RegistryClient};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};

use crate::ControllerOptions;
use crate::context::{Context, lock};
use crate::crd::{DEFAULT_REGISTRY_SECRET, ImageBuild};
use crate::spec::InvalidSpec;
use crate::status::FIELD_MANAGER;

/// The label that ties a build's Job (and Pod) to its `ImageBuild`, for cleanup on deletion.
pub const LABEL_IMAGEBUILD_UID: &str = "kaniko-builder.io/imagebuild-uid";
/// The annotation naming the `ImageBuild` (`namespace/name`) on its Jobs.
pub const ANNOTATION_IMAGEBUILD: &str = "kaniko-builder.io/imagebuild";

/// Why a build cannot start now.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The spec (or what it names) is wrong: the build fails until the spec changes.
    Invalid(InvalidSpec),
    /// Something may come right by itself (a Secret not created yet, the API server busy):
    /// retried with back-off.
    Retry(String),
}

impl From<InvalidSpec> for NotReady {
    fn from(e: InvalidSpec) -> Self {
        Self::Invalid(e)
    }
}

fn invalid(field: &str, problem: impl Into<String>) -> NotReady {
    NotReady::Invalid(InvalidSpec {
        field: field.to_owned(),
        problem: problem.into(),
    })
}

/// The registry client for `build`, with the credentials of its Secret: the one the spec names
/// must exist; the default one may be absent (anonymous access).
pub(crate) async fn registry_client(ctx: &Context, build: &ImageBuild) -> Result<RegistryClient, NotReady> {
    let ns = build.namespace().unwrap_or_default();
    let named = build.spec.registry_secret.as_deref();
    let name = named.unwrap_or(DEFAULT_REGISTRY_SECRET);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = match secrets.get_opt(name).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let default = if named.is_none() {
                " (the default when spec.registrySecret is not set)"
            } else {
                ""
            };
            return Err(invalid(
                "spec.registrySecret",
                format!(
                    "the controller may not read Secret {ns}/{name}{default}: it reads only the Secret names it was installed with (install --registry-secret)"
                ),
            ));
        }
        Err(e) => return Err(NotReady::Retry(format!("reading Secret {ns}/{name}: {e}"))),
    };
    let docker_config = match (secret, named) {
        (Some(secret), _) => Some(docker_config(&secret, &ns, name)?),
        (None, Some(_)) => {
            return Err(NotReady::Retry(format!(
                "Secret {ns}/{name} (spec.registrySecret) does not exist yet"
            )));
        }
        (None, None) => None,
    };
    let mut b = registry_builder(&ctx.options);
    if let Some(config) = docker_config {
        b = b.docker_config(config);
    }
    b.build()
        .map_err(|e| NotReady::Retry(format!("setting up the registry client: {e}")))
}

/// A registry client builder with the controller's registry options (plain HTTP hosts, CAs).
pub(crate) fn registry_builder(options: &ControllerOptions) -> RegistryClientBuilder {
    let mut b = RegistryClient::builder();
    for host in &options.insecure_registries {
        b = b.insecure_registry(host.clone());
    }
    for (host, pem) in &options.registry_cas {
        b = b.registry(host.clone(), RegistrySettings::default().ca_pem(pem.clone()));
    }
    b
}

/// The docker `config.json` in a `kubernetes.io/dockerconfigjson` Secret.
fn docker_config(secret: &Secret, ns: &str, name: &str) -> Result<DockerConfig, NotReady> {
    let field = "spec.registrySecret";
    if secret.type_.as_deref() != Some(DOCKER_CONFIG_SECRET_TYPE) {
        return Err(invalid(
            field,
            format!(
                "Secret {ns}/{name} is of type {:?}, not {DOCKER_CONFIG_SECRET_TYPE}",
                secret.type_.as_deref().unwrap_or_default()
            ),
        ));
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DOCKER_CONFIG_KEY))
        .ok_or_else(|| {
            invalid(
                field,
                format!("Secret {ns}/{name} has no key {DOCKER_CONFIG_KEY}"),
            )
        })?;
    let json = std::str::from_utf8(&bytes.0).map_err(|_| {
        invalid(
            field,
            format!("Secret {ns}/{name} key {DOCKER_CONFIG_KEY} is not UTF-8"),
        )
    })?;
    DockerConfig::from_json(json)
        .map_err(|e| invalid(field, format!("Secret {ns}/{name} key {DOCKER_CONFIG_KEY}: {e}")))
}

/// The Job options of `build`: the controller's, adjusted by the spec's `jobOptionsRef`, with
/// the spec's Secret mounted and the labels that tie the Job to the object.
pub(crate) async fn job_options(ctx: &Context, build: &ImageBuild) -> Result<JobOptions, NotReady> {
    let ns = build.namespace().unwrap_or_default();
    let mut options = ctx.options.job_options.clone();
    if let Some(reference) = &build.spec.job_options_ref {
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        let map = match maps.get_opt(&reference.name).await {
            Ok(Some(map)) => map,
            Ok(None) => {
                return Err(NotReady::Retry(format!(
                    "ConfigMap {ns}/{} (spec.jobOptionsRef) does not exist yet",
                    reference.name
                )));
            }
            Err(e) => {
                return Err(NotReady::Retry(format!(
                    "reading ConfigMap {ns}/{}: {e}",
                    reference.name
                )));
            }
        };
        options = crate::job_options::apply(options, &map)?;
    }
    let secret = build
        .spec
        .registry_secret
        .as_deref()
        .unwrap_or(DEFAULT_REGISTRY_SECRET);
    Ok(options
        .secret_name(secret)
        .label(LABEL_IMAGEBUILD_UID, build.uid().unwrap_or_default())
        .annotation(ANNOTATION_IMAGEBUILD, crate::status::key(build)))
}

/// Makes the build Pods' ServiceAccount exist in the build's namespace (once per process,
/// namespace and account), as the library renders it: without a token. A custom account (job
/// options) is the administrator's to make.
pub(crate) async fn service_account(
    ctx: &Context,
    build: &ImageBuild,
    runner: &kaniko_builder::k8s::KubeRunner,
    config: &BuildConfig,
) -> Result<(), NotReady> {
    // Every platform's Job runs under the same account: the first one's render tells.
    let one = match config.platforms().first() {
        Some(platform) => config.for_platform(platform),
        None => config.clone(),
    };
    // The spec itself was checked already: what fails here is a job option.
    let manifests = runner.render(&one).map_err(|e| {
        let field = match &build.spec.job_options_ref {
            Some(_) => "spec.jobOptionsRef",
            None => "the controller's job options",
        };
        invalid(field, e.to_string())
    })?;
    let Some(account) = &manifests.service_account else {
        return Ok(());
    };
    let ns = config.namespace().to_owned();
    let name = account.name_any();
    let key = format!("{ns}/{name}");
    if lock(&ctx.accounts).contains(&key) {
        return Ok(());
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    accounts
        .patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(account))
        .await
        .map_err(|e| NotReady::Retry(format!("applying ServiceAccount {key}: {e}")))?;
    lock(&ctx.accounts).insert(key);
    Ok(())
}
