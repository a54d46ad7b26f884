//! From a [`BuildConfig`] and [`JobOptions`] to the typed objects.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HostPathVolumeSource, KeyToPath, LocalObjectReference, Namespace, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, Secret, SecretVolumeSource, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::{ContextSource, SeedConfig, seed};

use super::options::{
    DEFAULT_BUILD_SERVICE_ACCOUNT, DEFAULT_SECRET_NAME, JobOptions, ORCHESTRATOR_ROLE, Orchestrator,
    SECRET_NAME_PREFIX, SEED_CONFIG_MAP_NAME,
};
use super::platform::{check_platform, node_selector};
use super::{
    ANNOTATION_BUILD_HASH, ANNOTATION_IMAGE, ANNOTATION_PLATFORM, APP, BUILDER_CONTAINER, BuildManifests,
    CONTEXT_DIR, DOCKER_CONFIG_DIR, DOCKER_CONFIG_KEY, DOCKER_CONFIG_SECRET_TYPE, ENV_PUSH, IMAGE_HASH_LEN,
    INIT_CONTAINER, LABEL_COMPONENT, LABEL_IMAGE_HASH, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME,
    LABEL_PLATFORM, OUT_DIR, STATE_DIR, TERMINATION_LOG, TOOLS_DIR, VOLUME_CONTEXT, VOLUME_DOCKER_CONFIG,
    VOLUME_OUT, VOLUME_STATE, VOLUME_TOOLS, args, kaniko_args, scripts, validate,
};
use crate::error::{Error, Result};

/// The names every object gets, resolved from the config and the options.
struct Names {
    namespace: String,
    job: String,
    config_map: String,
    /// The Secret the Pod mounts; `None` when none is (no credentials and no name given).
    secret: Option<String>,
    /// The Secret is the per-credentials one, owned by the Jobs that mount it (not kept).
    secret_per_credentials: bool,
    build_service_account: String,
    generate_build_service_account: bool,
}

/// The per-credentials Secret's name: [`SECRET_NAME_PREFIX`] and 20 hex digits of the sha256 of
/// the `config.json` (as kustomize's `secretGenerator` names a Secret by its content).
fn per_credentials_secret_name(docker_config_json: &[u8]) -> String {
    let digest = kaniko_builder_core::Digest::sha256(docker_config_json);
    format!("{SECRET_NAME_PREFIX}{}", &digest.hex()[..20])
}

fn resolve_names(
    config: &BuildConfig,
    options: &JobOptions,
    docker_config_json: Option<&[u8]>,
) -> Result<Names> {
    let namespace = config.namespace().to_owned();
    let job = config.job_name();
    let (secret, config_map) = if options.seed_compatible {
        if namespace != kaniko_builder_core::config::DEFAULT_NAMESPACE {
            return Err(Error::InvalidOption {
                option: "seed_compatible",
                problem: format!("the seed's namespace is kaniko, but the build config says {namespace:?}"),
            });
        }
        for (option, given, seed_name) in [
            ("secret_name", &options.secret_name, DEFAULT_SECRET_NAME),
            ("config_map_name", &options.config_map_name, SEED_CONFIG_MAP_NAME),
        ] {
            if let Some(given) = given
                && given != seed_name
            {
                return Err(Error::InvalidOption {
                    option,
                    problem: format!("{given:?} conflicts with seed_compatible, which uses {seed_name:?}"),
                });
            }
        }
        (
            Some(DEFAULT_SECRET_NAME.to_owned()),
            SEED_CONFIG_MAP_NAME.to_owned(),
        )
    } else {
        (
            options.secret_name.clone(),
            options.config_map_name.clone().unwrap_or_else(|| job.clone()),
        )
    };
    // Without a name given, each set of credentials has its own Secret, and no credentials none.
    let secret_per_credentials = secret.is_none();
    let secret = secret.or_else(|| docker_config_json.map(per_credentials_secret_name));
    validate::label("namespace", &namespace)?;
    if let Some(secret) = &secret {
        validate::subdomain("secret", secret)?;
    }
    validate::subdomain("configmap", &config_map)?;
    let (build_service_account, generate_build_service_account) = match &options.service_account_name {
        Some(name) => (name.clone(), false),
        None => (DEFAULT_BUILD_SERVICE_ACCOUNT.to_owned(), true),
    };
    validate::subdomain("service account", &build_service_account)?;
    Ok(Names {
        namespace,
        job,
        config_map,
        secret,
        secret_per_credentials,
        build_service_account,
        generate_build_service_account,
    })
}

fn validate_options(options: &JobOptions) -> Result<()> {
    validate::image("executor_image", &options.executor_image)?;
    validate::image("init_image", &options.init_image)?;
    validate::resources("executor_resources", &options.executor_resources)?;
    validate::resources("init_resources", &options.init_resources)?;
    validate::labels(&options.node_selector).map_err(|e| Error::InvalidOption {
        option: "node_selector",
        problem: e.to_string(),
    })?;
    for name in &options.image_pull_secrets {
        validate::subdomain("image pull secret", name)?;
    }
    validate::labels(&options.labels)?;
    for (platform, selector) in &options.platform_node_selectors {
        validate::labels(selector).map_err(|e| Error::InvalidOption {
            option: "platform_node_selector",
            problem: format!("{platform}: {e}"),
        })?;
    }
    if let Some(limit) = &options.output_size_limit
        && (!validate::is_quantity(&limit.0) || limit.0.starts_with('-'))
    {
        return Err(Error::InvalidQuantity {
            field: "output_size_limit".to_owned(),
            quantity: limit.0.clone(),
        });
    }
    for reserved in [LABEL_INSTANCE, LABEL_IMAGE_HASH, LABEL_PLATFORM] {
        if options.labels.contains_key(reserved) {
            return Err(Error::InvalidOption {
                option: "label",
                problem: format!("{reserved} is set by the renderer; an orchestrator finds builds by it"),
            });
        }
    }
    validate::annotations(&options.annotations)?;
    if options.active_deadline.as_secs() == 0 || i64::try_from(options.active_deadline.as_secs()).is_err() {
        return Err(Error::InvalidOption {
            option: "active_deadline",
            problem: "must be at least one second".to_owned(),
        });
    }
    if i32::try_from(options.ttl_after_finished.as_secs()).is_err() {
        return Err(Error::InvalidOption {
            option: "ttl_after_finished",
            problem: format!("must be at most {} seconds", i32::MAX),
        });
    }
    match &options.orchestrator {
        Some(Orchestrator::ServiceAccount(name)) => {
            validate::subdomain("orchestrator service account", name)?;
        }
        Some(Orchestrator::ExternalServiceAccount { namespace, name }) => {
            validate::label("orchestrator namespace", namespace)?;
            validate::subdomain("orchestrator service account", name)?;
        }
        Some(Orchestrator::User(name) | Orchestrator::Group(name))
            if name.is_empty() || name.chars().any(char::is_control) =>
        {
            return Err(Error::InvalidOption {
                option: "orchestrator",
                problem: "user and group names must be non-empty, without control characters".to_owned(),
            });
        }
        Some(_) | None => {}
    }
    Ok(())
}

/// Checks the docker `config.json` without ever quoting it.
fn validate_docker_config(json: &[u8]) -> Result<()> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| Error::InvalidDockerConfig {
        // serde_json's message names line and column, never the content.
        problem: format!(
            "not JSON ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    match value.get("auths") {
        Some(serde_json::Value::Object(_)) => Ok(()),
        Some(_) => Err(Error::InvalidDockerConfig {
            problem: "\"auths\" is not an object".to_owned(),
        }),
        None => Err(Error::InvalidDockerConfig {
            problem: "no \"auths\" object".to_owned(),
        }),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// The Role's rules: exactly what an orchestrator does with a build. `named_secret`: the one
/// Secret shared by name (seed-compatible mode, `secret_name`); `None` for per-credentials
/// Secrets, whose names are not known in advance.
fn orchestrator_rules(named_secret: Option<&str>, exec_upload: bool) -> Vec<PolicyRule> {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str], names: Option<&str>| PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: names.map(|n| vec![n.to_owned()]),
        ..PolicyRule::default()
    };
    let mut rules = vec![
        rule(
            &["batch"],
            &["jobs"],
            &["create", "get", "list", "watch", "delete"],
            None,
        ),
        // delete: a lost node's Pods are force-deleted (no kubelet will confirm their deletion).
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"], None),
        rule(&[""], &["pods/log"], &["get"], None),
    ];
    if exec_upload {
        rules.push(rule(&[""], &["pods/exec"], &["create"], None));
    }
    rules.push(rule(
        &[""],
        &["configmaps"],
        &["create", "get", "patch", "delete"],
        None,
    ));
    match named_secret {
        // create cannot be limited by name; everything else is limited to the one Secret.
        Some(secret) => rules.extend([
            rule(&[""], &["secrets"], &["create"], None),
            rule(&[""], &["secrets"], &["get", "patch", "delete"], Some(secret)),
        ]),
        // Per-credentials Secrets (`kb-docker-config-<hash>`): created, then patched to add each
        // Job that mounts one as an owner. No get, list or delete: the garbage collector deletes
        // a Secret with its last owner.
        None => rules.push(rule(&[""], &["secrets"], &["create", "patch"], None)),
    }
    rules.push(rule(
        &["", "events.k8s.io"],
        &["events"],
        &["list", "watch"],
        None,
    ));
    rules
}

/// Renders every object of the build described by `config`, run as `options` say. With
/// `docker_config_json` (the bytes of a docker `config.json`), a Secret holds it: by default
/// `kb-docker-config-<hash of the bytes>`, one per set of credentials (see
/// [`BuildManifests::secret_per_credentials`]); in seed-compatible mode or with
/// [`JobOptions::secret_name`], the Secret of that name. Without, none is rendered, and the Pod
/// mounts the Secret named in the options if it exists, or none at all by default.
///
/// For one platform of a multi-platform build (a [`BuildConfig::for_platform`] config), the Job
/// builds that platform on a node of it and pushes the image by digest only (see the module
/// docs); the whole multi-platform request is one Job per platform:
/// [`render_platforms`](super::render_platforms).
///
/// # Errors
/// [`Error::InvalidName`], [`Error::InvalidMetadata`], [`Error::InvalidQuantity`] or
/// [`Error::InvalidOption`] naming the option at fault; [`Error::InvalidDockerConfig`] when the
/// credentials are not a JSON object with an `auths` object; [`Error::Config`] naming the
/// `platforms` field for a whole multi-platform request, which is not one Job, or the `platform`
/// field for a platform whose slug is no label value.
pub fn render(
    config: &BuildConfig,
    options: &JobOptions,
    docker_config_json: Option<&[u8]>,
) -> Result<BuildManifests> {
    check_platform(config)?;
    validate_options(options)?;
    let names = resolve_names(config, options, docker_config_json)?;
    if let Some(json) = docker_config_json {
        validate_docker_config(json)?;
    }
    let image_hash = config.image_hash().hex()[..IMAGE_HASH_LEN].to_owned();

    let labels = |component: &str, per_build: bool| {
        let mut l = BTreeMap::from([
            (LABEL_NAME.to_owned(), APP.to_owned()),
            (LABEL_MANAGED_BY.to_owned(), APP.to_owned()),
            (LABEL_COMPONENT.to_owned(), component.to_owned()),
        ]);
        l.extend(options.labels.clone());
        if per_build {
            l.insert(LABEL_INSTANCE.to_owned(), names.job.clone());
            l.insert(LABEL_IMAGE_HASH.to_owned(), image_hash.clone());
            if let Some(p) = config.target_platform() {
                l.insert(LABEL_PLATFORM.to_owned(), p.slug());
            }
        }
        l
    };
    let annotations = |per_build: bool| {
        let mut a = options.annotations.clone();
        if per_build {
            a.insert(ANNOTATION_IMAGE.to_owned(), config.image().to_string());
            a.insert(ANNOTATION_BUILD_HASH.to_owned(), config.build_hash().to_string());
            if let Some(p) = config.target_platform() {
                a.insert(ANNOTATION_PLATFORM.to_owned(), p.to_string());
            }
        }
        (!a.is_empty()).then_some(a)
    };
    let meta = |name: &str, namespaced: bool, component: &str, per_build: bool| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| names.namespace.clone()),
        labels: Some(labels(component, per_build)),
        annotations: annotations(per_build),
        ..ObjectMeta::default()
    };

    let namespace = Namespace {
        metadata: meta(&names.namespace, false, "namespace", false),
        ..Namespace::default()
    };
    let service_account = names.generate_build_service_account.then(|| ServiceAccount {
        metadata: meta(&names.build_service_account, true, "build-identity", false),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    });

    let (orchestrator_service_account, role, role_binding) = match &options.orchestrator {
        None => (None, None, None),
        Some(orchestrator) => {
            let (subject, generated) = match orchestrator {
                Orchestrator::ServiceAccount(name) => (
                    Subject {
                        kind: "ServiceAccount".to_owned(),
                        name: name.clone(),
                        namespace: Some(names.namespace.clone()),
                        ..Subject::default()
                    },
                    Some(name),
                ),
                Orchestrator::ExternalServiceAccount { namespace, name } => (
                    Subject {
                        kind: "ServiceAccount".to_owned(),
                        name: name.clone(),
                        namespace: Some(namespace.clone()),
                        ..Subject::default()
                    },
                    None,
                ),
                Orchestrator::User(name) | Orchestrator::Group(name) => (
                    Subject {
                        kind: if matches!(orchestrator, Orchestrator::User(_)) {
                            "User"
                        } else {
                            "Group"
                        }
                        .to_owned(),
                        name: name.clone(),
                        api_group: Some("rbac.authorization.k8s.io".to_owned()),
                        ..Subject::default()
                    },
                    None,
                ),
            };
            let sa = generated.map(|name| ServiceAccount {
                metadata: meta(name, true, "orchestrator", false),
                ..ServiceAccount::default()
            });
            let role = Role {
                metadata: meta(ORCHESTRATOR_ROLE, true, "orchestrator", false),
                rules: Some(orchestrator_rules(
                    (!names.secret_per_credentials)
                        .then_some(names.secret.as_deref())
                        .flatten(),
                    options.exec_upload,
                )),
            };
            let binding = RoleBinding {
                metadata: meta(ORCHESTRATOR_ROLE, true, "orchestrator", false),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_owned(),
                    kind: "Role".to_owned(),
                    name: ORCHESTRATOR_ROLE.to_owned(),
                },
                subjects: Some(vec![subject]),
            };
            (sa, Some(role), Some(binding))
        }
    };

    let secret = docker_config_json
        .zip(names.secret.as_deref())
        .map(|(json, name)| Secret {
            metadata: meta(name, true, "credentials", false),
            type_: Some(DOCKER_CONFIG_SECRET_TYPE.to_owned()),
            data: Some(BTreeMap::from([(
                DOCKER_CONFIG_KEY.to_owned(),
                ByteString(json.to_vec()),
            )])),
            ..Secret::default()
        });

    let per_build_config_map = !options.seed_compatible && options.config_map_name.is_none();
    let config_map = ConfigMap {
        metadata: meta(&names.config_map, true, "build-config", per_build_config_map),
        data: Some(SeedConfig::data_for(config)),
        ..ConfigMap::default()
    };

    let job = build_job(config, options, &names, docker_config_json.is_some(), &meta)?;

    Ok(BuildManifests {
        namespace,
        service_account,
        orchestrator_service_account,
        role,
        role_binding,
        secret,
        config_map,
        job,
        secret_per_credentials: names.secret_per_credentials,
    })
}

fn build_job(
    config: &BuildConfig,
    options: &JobOptions,
    names: &Names,
    have_credentials: bool,
    meta: &dyn Fn(&str, bool, &str, bool) -> ObjectMeta,
) -> Result<Job> {
    let volumes = PodVolumes::new(config, options, names, have_credentials);
    let init = init_container(config, options, names, &volumes);
    let builder = builder_container(config, options, &volumes);
    let mut pod_meta = meta(&names.job, true, "build", true);
    pod_meta.name = None;
    pod_meta.namespace = None;
    let pod = pod_spec(config, options, names, init, builder, volumes.volumes);
    let deadline = i64::try_from(options.active_deadline.as_secs()).map_err(|_| Error::InvalidOption {
        option: "active_deadline",
        problem: "too long".to_owned(),
    })?;
    let ttl = i32::try_from(options.ttl_after_finished.as_secs()).map_err(|_| Error::InvalidOption {
        option: "ttl_after_finished",
        problem: "too long".to_owned(),
    })?;
    Ok(Job {
        metadata: meta(&names.job, true, "build", true),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline),
            ttl_seconds_after_finished: Some(ttl),
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    })
}

/// The build Pod's volumes, and how the containers mount the shared ones.
struct PodVolumes {
    volumes: Vec<Volume>,
    /// The Secret's mount, when a Secret is mounted.
    docker_config: Option<VolumeMount>,
    /// Whether there is a context volume (git and URL contexts have none: kaniko fetches them).
    has_context: bool,
    /// The PVC context's `subPath`.
    context_sub_path: Option<String>,
    /// Whether the Job builds one platform of a multi-platform build, with the `kaniko-tools`
    /// and `kaniko-out` emptyDirs.
    platform: bool,
}

impl PodVolumes {
    fn new(config: &BuildConfig, options: &JobOptions, names: &Names, have_credentials: bool) -> Self {
        // No Secret named and no credentials: nothing is mounted, so a build never sees a Secret
        // another build of the namespace made.
        let docker_config_volume = names.secret.as_ref().map(|secret| Volume {
            name: VOLUME_DOCKER_CONFIG.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath {
                    key: DOCKER_CONFIG_KEY.to_owned(),
                    path: "config.json".to_owned(),
                    ..KeyToPath::default()
                }]),
                optional: Some(!have_credentials),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        let docker_config = docker_config_volume
            .as_ref()
            .map(|_| mount(VOLUME_DOCKER_CONFIG, DOCKER_CONFIG_DIR, true));
        let mut volumes: Vec<Volume> = docker_config_volume.into_iter().collect();
        volumes.push(Volume {
            name: VOLUME_STATE.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        let (context_volume, context_sub_path) = context_volume(config.context());
        let has_context = context_volume.is_some();
        volumes.extend(context_volume);
        let platform = config.target_platform().is_some();
        if platform {
            volumes.push(Volume {
                name: VOLUME_TOOLS.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
            volumes.push(Volume {
                name: VOLUME_OUT.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: options.output_size_limit.clone(),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        Self {
            volumes,
            docker_config,
            has_context,
            context_sub_path,
            platform,
        }
    }
}

/// The volume the context is mounted from, and its `subPath`.
fn context_volume(context: &ContextSource) -> (Option<Volume>, Option<String>) {
    let volume = |source: Volume| {
        Some(Volume {
            name: VOLUME_CONTEXT.to_owned(),
            ..source
        })
    };
    match context {
        ContextSource::HostPath(path) => (
            volume(Volume {
                host_path: Some(HostPathVolumeSource {
                    path: path.to_string_lossy().into_owned(),
                    type_: Some("Directory".to_owned()),
                }),
                ..Volume::default()
            }),
            None,
        ),
        ContextSource::Pvc { claim, sub_path } => (
            volume(Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            }),
            sub_path.clone(),
        ),
        ContextSource::LocalDir(_) | ContextSource::Blob(_) => (
            volume(Volume {
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }),
            None,
        ),
        _ => (None, None),
    }
}

/// `kaniko-init`: the registry check and the context fetch (see the contract in the module docs).
fn init_container(
    config: &BuildConfig,
    options: &JobOptions,
    names: &Names,
    volumes: &PodVolumes,
) -> Container {
    let context = config.context();
    // A platform's image is never under the tag (the index is): its check must not skip, whatever
    // a shared ConfigMap says, so FORCE_BUILD is set here rather than read from it.
    let force_build = if volumes.platform {
        env(seed::FORCE_BUILD, "Y")
    } else {
        EnvVar {
            name: seed::FORCE_BUILD.to_owned(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: names.config_map.clone(),
                    key: seed::FORCE_BUILD.to_owned(),
                    optional: Some(true),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }
    };
    let mut env_vars = vec![
        env("KB_DESTINATION", config.image().to_string()),
        force_build,
        env("DOCKER_CONFIG", DOCKER_CONFIG_DIR),
    ];
    if config.destination_is_insecure() {
        env_vars.push(env("KB_INSECURE", "true"));
    }
    env_vars.push(env("KB_CONTEXT_KIND", context.kind()));
    env_vars.push(env(super::ENV_CALLER_PROBE, ""));
    let mut mounts: Vec<VolumeMount> = volumes.docker_config.iter().cloned().collect();
    mounts.push(mount(VOLUME_STATE, STATE_DIR, false));
    match context {
        ContextSource::LocalDir(_) => {
            env_vars.push(env("KB_CONTEXT_BLOB", ""));
            mounts.push(mount(VOLUME_CONTEXT, CONTEXT_DIR, false));
        }
        ContextSource::Blob(digest) => {
            env_vars.push(env("KB_CONTEXT_BLOB", digest.to_string()));
            mounts.push(mount(VOLUME_CONTEXT, CONTEXT_DIR, false));
        }
        ContextSource::Git { url, reference, .. } => {
            env_vars.push(env("KB_GIT_URL", url.clone()));
            env_vars.push(env("KB_GIT_REF", reference.clone().unwrap_or_default()));
        }
        _ => {}
    }
    let script = if volumes.platform {
        mounts.push(mount(VOLUME_TOOLS, TOOLS_DIR, false));
        format!("{}{}", scripts::PLATFORM_INIT_PRELUDE, scripts::INIT_SCRIPT)
    } else {
        scripts::INIT_SCRIPT.to_owned()
    };
    Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(options.init_image.clone()),
        command: Some(vec!["/busybox/sh".to_owned(), "-c".to_owned(), script]),
        env: Some(env_vars),
        volume_mounts: Some(mounts),
        resources: Some(options.init_resources.clone()),
        security_context: Some(options.init_security_context.clone()),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        termination_message_policy: Some("File".to_owned()),
        ..Container::default()
    }
}

/// `image-builder`: the wrapper that honours the decision, then the kaniko executor.
fn builder_container(config: &BuildConfig, options: &JobOptions, volumes: &PodVolumes) -> Container {
    let mut env_vars = vec![env("DOCKER_CONFIG", DOCKER_CONFIG_DIR)];
    if let ContextSource::Git { url, .. } = config.context()
        && url.starts_with("http://")
    {
        env_vars.push(env("GIT_PULL_METHOD", "http"));
    }
    let mut mounts: Vec<VolumeMount> = volumes.docker_config.iter().cloned().collect();
    mounts.push(mount(VOLUME_STATE, STATE_DIR, true));
    if volumes.has_context {
        mounts.push(VolumeMount {
            sub_path: volumes.context_sub_path.clone(),
            ..mount(VOLUME_CONTEXT, CONTEXT_DIR, true)
        });
    }
    let wrapper = if volumes.platform {
        env_vars.push(env(ENV_PUSH, args::push_targets(config).join("\n")));
        mounts.push(mount(VOLUME_TOOLS, TOOLS_DIR, true));
        mounts.push(mount(VOLUME_OUT, OUT_DIR, false));
        scripts::PLATFORM_BUILDER_WRAPPER
    } else {
        scripts::BUILDER_WRAPPER
    };
    let mut command = strings(&["/busybox/sh", "-c", wrapper, scripts::BUILDER_ARGV0]);
    command.extend(kaniko_args(config));
    Container {
        name: BUILDER_CONTAINER.to_owned(),
        image: Some(options.executor_image.clone()),
        command: Some(command),
        env: Some(env_vars),
        volume_mounts: Some(mounts),
        resources: Some(options.executor_resources.clone()),
        security_context: options.executor_security_context.clone(),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        termination_message_policy: Some("File".to_owned()),
        ..Container::default()
    }
}

/// The build Pod: never restarted, no API token, the scheduling options.
fn pod_spec(
    config: &BuildConfig,
    options: &JobOptions,
    names: &Names,
    init: Container,
    builder: Container,
    volumes: Vec<Volume>,
) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".to_owned()),
        service_account_name: Some(names.build_service_account.clone()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        init_containers: Some(vec![init]),
        containers: vec![builder],
        volumes: Some(volumes),
        node_selector: Some(node_selector(config, options)).filter(|s| !s.is_empty()),
        tolerations: (!options.tolerations.is_empty()).then(|| options.tolerations.clone()),
        affinity: options.affinity.clone(),
        image_pull_secrets: (!options.image_pull_secrets.is_empty()).then(|| {
            options
                .image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        security_context: options.pod_security_context.clone(),
        ..PodSpec::default()
    }
}
