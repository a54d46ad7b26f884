//! [`Build`]: one image, from a [`BuildConfig`] to a [`BuildOutcome`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;

use crate::Result;
use crate::core::flow::{
    BuildOutcome, CancellationToken, Decision, EventSink, EventStream, FlowOptions, run_build,
};
use crate::core::{BuildConfig, Digest, ImageRef, Platform};
use crate::k8s::runner::{CleanupPolicy, UploadMethod};
use crate::k8s::{BuildManifests, JobOptions, KubeRunner};
use crate::registry::{DockerConfig, RegistryClient};

/// Log lines an [`EventStream`] from [`Build::events`] buffers before it drops (and counts) them.
pub const EVENT_LOG_CAPACITY: usize = 1024;

/// One build: probe the registry, run a kaniko Job when the tag is absent (or forced), verify the
/// pushed digest. Options are consuming setters; nothing happens until [`run`](Self::run) or
/// [`plan`](Self::plan).
///
/// ```no_run
/// use kaniko_builder::{Build, BuildConfig};
/// # async fn demo() -> Result<(), kaniko_builder::Error> {
/// let cfg = BuildConfig::builder("registry.local:5000/team/app:v1".parse()?).build()?;
/// let outcome = Build::new(cfg).insecure_registry("registry.local:5000").run().await?;
/// println!("{} is {}", outcome.image(), outcome.digest());
/// # Ok(()) }
/// ```
#[must_use]
pub struct Build {
    pub(crate) config: BuildConfig,
    pub(crate) opts: Options,
    sink: Option<EventSink>,
}

/// The options shared by [`Build`] and [`BuildSet`](crate::BuildSet).
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) docker_config: Option<DockerConfig>,
    pub(crate) kube_client: Option<kube::Client>,
    pub(crate) job_options: JobOptions,
    pub(crate) registry_client: Option<RegistryClient>,
    pub(crate) insecure: Vec<String>,
    pub(crate) cancel: CancellationToken,
    pub(crate) timeout: Option<Duration>,
    pub(crate) cleanup: Option<CleanupPolicy>,
    pub(crate) upload: Option<UploadMethod>,
    pub(crate) unschedulable_timeout: Option<Option<Duration>>,
    pub(crate) node_lost_timeout: Option<Option<Duration>>,
    pub(crate) pack: crate::context::PackOptions,
}

impl fmt::Debug for Build {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Build")
            .field("config", &self.config)
            .field("options", &self.opts)
            .field("events", &self.sink.is_some())
            .finish()
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("docker_config", &self.docker_config)
            .field("kube_client", &self.kube_client.is_some())
            .field("job_options", &self.job_options)
            .field("registry_client", &self.registry_client)
            .field("insecure", &self.insecure)
            .field("timeout", &self.timeout)
            .field("cleanup", &self.cleanup)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

/// The result of [`Build::plan`]: the decision, and the exact objects a run would apply (the
/// Secret included; print [`to_yaml_redacted`](Self::to_yaml_redacted) rather than
/// [`to_yaml`](Self::to_yaml) where people or logs can see it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Plan {
    /// The image.
    pub image: ImageRef,
    /// Skip or build, and why: the rule [`run`](Build::run) applies to the same probe.
    pub decision: Decision,
    /// The digest the tag resolves to now, if it exists (also when a forced build would replace
    /// it).
    pub existing: Option<Digest>,
    /// The objects, in apply order (the first platform's Job for a multi-platform build). For a
    /// local directory context a run also sets the context blob's digest on the init container
    /// once it has pushed the packed directory.
    pub manifests: BuildManifests,
    /// A multi-platform build: every platform's Job and its objects, in the order asked (the
    /// first is also [`manifests`](Self::manifests)). Empty for a single-platform build.
    pub platforms: Vec<(Platform, BuildManifests)>,
}

impl Plan {
    /// The objects as multi-document YAML for `kubectl apply -f -`, credentials included.
    ///
    /// # Errors
    /// [`Error::Manifest`](crate::Error::Manifest) if serialisation fails.
    pub fn to_yaml(&self) -> Result<String> {
        self.jobs().map(|m| Ok(m.to_yaml()?)).collect()
    }

    /// Every Job's objects: one per platform, or the one build's.
    pub fn jobs(&self) -> impl Iterator<Item = &BuildManifests> {
        let single = self.platforms.is_empty().then_some(&self.manifests);
        single.into_iter().chain(self.platforms.iter().map(|(_, m)| m))
    }

    /// As [`to_yaml`](Self::to_yaml), with every value of the Secret replaced by `<redacted>`.
    ///
    /// # Errors
    /// [`Error::Manifest`](crate::Error::Manifest) if serialisation fails.
    pub fn to_yaml_redacted(&self) -> Result<String> {
        let mut yaml = String::new();
        for job in self.jobs() {
            let mut m = job.clone();
            if let Some(secret) = m.secret.as_mut()
                && let Some(data) = secret.data.as_mut()
            {
                for v in data.values_mut() {
                    *v = ByteString(b"<redacted>".to_vec());
                }
            }
            yaml.push_str(&m.to_yaml()?);
        }
        Ok(yaml)
    }
}

/// The option setters shared by [`Build`] and [`BuildSet`](crate::BuildSet).
macro_rules! option_setters {
    () => {
        /// Credentials for the registries. Default: [`DockerConfig::load_default`]($crate::registry::DockerConfig::load_default) (`$DOCKER_CONFIG`,
        /// `~/.docker/config.json`, anonymous when there is none). Ignored when a
        /// [`registry_client`](Self::registry_client) is given (its config is used).
        pub fn docker_config(mut self, config: $crate::registry::DockerConfig) -> Self {
            self.opts.docker_config = Some(config);
            self
        }

        /// The Kubernetes client. Default: [`k8s::client::infer`](crate::k8s::client::infer)
        /// (`$KUBECONFIG`, `~/.kube/config`, then the in-cluster service account), which
        /// honours the proxy settings and `insecure-skip-tls-verify` (see that module); with the
        /// latter, [`Build::run`]($crate::Build::run)'s events start with
        /// [`BuildEvent::TlsNotVerified`]($crate::BuildEvent::TlsNotVerified).
        pub fn kube_client(mut self, client: kube::Client) -> Self {
            self.opts.kube_client = Some(client);
            self
        }

        /// How the Job is rendered. Default: [`JobOptions::default`]($crate::JobOptions::default).
        pub fn job_options(mut self, options: $crate::JobOptions) -> Self {
            self.opts.job_options = options;
            self
        }

        /// The registry client for the probe, the verification and the context upload. Default: one
        /// built from [`docker_config`](Self::docker_config) and
        /// [`insecure_registry`](Self::insecure_registry).
        pub fn registry_client(mut self, client: $crate::registry::RegistryClient) -> Self {
            self.opts.registry_client = Some(client);
            self
        }

        /// A registry (`host[:port]`) spoken to over plain HTTP by this process. Repeatable. Default:
        /// the config's insecure registries. Ignored when a registry client is given. (kaniko's
        /// `--insecure-registry` comes from the [`BuildConfig`].)
        pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
            self.opts.insecure.push(host.into());
            self
        }

        /// Cancels the run when cancelled: the Job is deleted and the run fails with
        /// [`FailureReason::Cancelled`](crate::FailureReason::Cancelled). Default: a token nobody
        /// cancels.
        pub fn cancellation(mut self, token: $crate::CancellationToken) -> Self {
            self.opts.cancel = token;
            self
        }

        /// The client-side deadline of the Job, from its start (then the Job is deleted and the run
        /// fails with [`FailureReason::Timeout`](crate::FailureReason::Timeout)). Default: the Job's
        /// `activeDeadlineSeconds` plus two minutes.
        pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.opts.timeout = Some(timeout);
            self
        }

        /// What to delete after a build. Default: [`CleanupPolicy::default`]($crate::CleanupPolicy::default) (delete on success,
        /// keep on failure).
        pub fn cleanup(mut self, policy: $crate::CleanupPolicy) -> Self {
            self.opts.cleanup = Some(policy);
            self
        }

        /// How a local directory reaches the Pod. Default: [`UploadMethod::Registry`]($crate::UploadMethod::Registry) (a blob in the
        /// destination repository); [`UploadMethod::Exec`]($crate::UploadMethod::Exec) needs `JobOptions::exec_upload(true)`.
        pub fn upload(mut self, method: $crate::UploadMethod) -> Self {
            self.opts.upload = Some(method);
            self
        }

        /// How long the Pod may stay unschedulable; `None` waits. Default: 5 minutes.
        pub fn unschedulable_timeout(mut self, timeout: Option<::std::time::Duration>) -> Self {
            self.opts.unschedulable_timeout = Some(timeout);
            self
        }

        /// How long the build's node may stay not ready (it stopped reporting) before the build
        /// fails as `node_lost`; `None` waits. Default: 1 minute.
        pub fn node_lost_timeout(mut self, timeout: Option<::std::time::Duration>) -> Self {
            self.opts.node_lost_timeout = Some(timeout);
            self
        }

        /// How a local directory is packed: a limit on its files' total size, the gzip level.
        /// Default: [`PackOptions::default`]($crate::context::PackOptions::default) (no limit,
        /// level 6). The context is streamed whatever its size: memory stays bounded.
        pub fn pack_options(mut self, options: $crate::context::PackOptions) -> Self {
            self.opts.pack = options;
            self
        }
    };
}
pub(crate) use option_setters;

impl Build {
    /// A build of `config` with every option at its default.
    pub fn new(config: BuildConfig) -> Self {
        Self {
            config,
            opts: Options::default(),
            sink: None,
        }
    }

    /// A build from the original tool's keys in the environment (`DOCKER_FILENAME`,
    /// `DOCKER_IMAGENAME`, `DOCKER_IMAGETAG`, `FORCE_BUILD`); `registry` (`host[:port]`) puts the
    /// image on a registry other than Docker Hub.
    ///
    /// # Errors
    /// [`Error::Manifest`](crate::Error::Manifest) wrapping the invalid key, or [`Error::Config`](crate::Error::Config).
    pub fn from_seed_env(registry: Option<&str>) -> Result<Self> {
        let seed = crate::k8s::seed::from_env(registry)?;
        Ok(Self::new(seed.into_builder().build()?))
    }

    /// A build from the seed's keys in a ConfigMap's `data`.
    ///
    /// # Errors
    /// As [`from_seed_env`](Self::from_seed_env).
    pub fn from_config_map(
        config_map: &k8s_openapi::api::core::v1::ConfigMap,
        registry: Option<&str>,
    ) -> Result<Self> {
        let seed = crate::k8s::seed::from_config_map(config_map, registry)?;
        Ok(Self::new(seed.into_builder().build()?))
    }

    /// The configuration.
    pub fn config(&self) -> &BuildConfig {
        &self.config
    }

    crate::build::option_setters!();

    /// The run's progress as a [`Stream`](futures::Stream) of [`BuildEvent`](crate::BuildEvent)s:
    /// the steps and the live log lines (up to [`EVENT_LOG_CAPACITY`] buffered lines; beyond that
    /// lines are dropped and counted, steps never are). Take it before [`run`](Self::run); the
    /// stream ends when the run does. Calling it again replaces the previous stream.
    pub fn events(&mut self) -> EventStream {
        let (sink, stream) = EventSink::channel(EVENT_LOG_CAPACITY);
        self.sink = Some(sink);
        stream
    }

    /// Sends the run's events to `sink` (a callback or a channel) instead of a stream.
    pub fn event_sink(mut self, sink: EventSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Probes, and when the tag is absent (or the build forced) runs the kaniko Job, follows it
    /// and verifies the pushed digest in the registry.
    ///
    /// # Errors
    /// [`Error::Build`](crate::Error::Build) with the [`FailureReason`](crate::FailureReason) when the build ran and
    /// failed (the probe, the Job, the verification); [`Error::Registry`](crate::Error::Registry) when credentials cannot
    /// be resolved; [`Error::Kube`](crate::Error::Kube) when no Kubernetes configuration is found;
    /// [`Error::Manifest`](crate::Error::Manifest) for invalid options.
    pub async fn run(self) -> Result<BuildOutcome> {
        let registry = self.opts.registry([&self.config]).await?;
        let sink = self.sink.clone().unwrap_or_else(EventSink::discard);
        let client = self.opts.kube_noting(&sink).await?;
        let json = registry.secret_docker_config(self.config.destinations()).await?;
        let runner = self.opts.runner(client, &registry, json);
        let out = run_build(
            &self.config,
            &registry,
            &runner,
            &sink,
            &self.opts.cancel,
            &FlowOptions::default(),
        )
        .await;
        drop(sink);
        Ok(out?)
    }

    /// Probes the registry and renders the objects a run would apply, touching nothing on the
    /// cluster (no Kubernetes client is needed). A local directory is hashed (not packed) so the
    /// Job's name is the one a run would create now: it follows the files.
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) when the probe cannot tell or credentials cannot be resolved,
    /// [`Error::Manifest`](crate::Error::Manifest) for invalid options, [`Error::Context`](crate::Error::Context) when a local directory context
    /// lacks the Dockerfile or cannot be read.
    pub async fn plan(&self) -> Result<Plan> {
        let config = self.pinned_config().await?;
        let registry = self.opts.registry([&self.config]).await?;
        let probe = registry.probe(self.config.image()).await?;
        let json = registry.secret_docker_config(self.config.destinations()).await?;
        let (decision, manifests, platforms) = if config.platforms().is_empty() {
            let manifests = crate::k8s::render(&config, &self.opts.job_options, json.as_deref())?;
            (
                Decision::from_probe(&probe, config.force()),
                manifests,
                Vec::new(),
            )
        } else {
            let held = match probe.manifest() {
                Some(m) if m.is_index() && !config.force() => {
                    Some(registry.index_platforms(config.image()).await?)
                }
                _ => None,
            };
            let decision =
                Decision::for_platforms(&probe, held.as_deref(), config.platforms(), config.force());
            let platforms =
                crate::k8s::manifest::render_platforms(&config, &self.opts.job_options, json.as_deref())?;
            let first = platforms.first().map(|(_, m)| m.clone()).ok_or_else(|| {
                crate::core::Error::InvalidConfig {
                    field: "platforms",
                    problem: "empty".to_owned(),
                }
            })?;
            (decision, first, platforms)
        };
        Ok(Plan {
            image: self.config.image().clone(),
            decision,
            existing: probe.manifest().map(|m| m.digest.clone()),
            manifests,
            platforms,
        })
    }

    /// The configuration with a local directory's content digest, as the runner names the Job.
    async fn pinned_config(&self) -> Result<BuildConfig> {
        let crate::ContextSource::LocalDir(root) = self.config.context() else {
            return Ok(self.config.clone());
        };
        let (root, dockerfile) = (root.clone(), self.config.dockerfile().to_owned());
        let options = self.opts.pack.clone();
        let hashed =
            tokio::task::spawn_blocking(move || crate::context::hash(&root, &dockerfile, &options)).await;
        let content = match hashed {
            Ok(content) => content?,
            // Its panic is ours, as if it had run here (cancelled only at runtime shutdown).
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        Ok(self.config.clone().with_context_digest(content.diff_id))
    }
}

impl Options {
    pub(crate) async fn registry<'a>(
        &self,
        configs: impl IntoIterator<Item = &'a BuildConfig>,
    ) -> Result<RegistryClient> {
        if let Some(c) = &self.registry_client {
            return Ok(c.clone());
        }
        let docker = match &self.docker_config {
            Some(d) => d.clone(),
            // It reads files: on the blocking pool, not on the async runtime.
            None => match tokio::task::spawn_blocking(DockerConfig::load_default).await {
                Ok(loaded) => loaded?,
                // Its panic is ours, as if it had run here (cancelled only at runtime shutdown).
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
        };
        let mut b = RegistryClient::builder().docker_config(docker);
        let mut hosts: Vec<&String> = self.insecure.iter().collect();
        for c in configs {
            hosts.extend(c.insecure_registries());
        }
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            b = b.insecure_registry(host.clone());
        }
        Ok(b.build()?)
    }

    pub(crate) async fn kube(&self) -> Result<kube::Client> {
        self.kube_noting(&EventSink::discard()).await
    }

    /// [`Self::kube`], telling `sink` when the inferred configuration turns certificate
    /// verification off (kubeconfig `insecure-skip-tls-verify`).
    pub(crate) async fn kube_noting(&self, sink: &EventSink) -> Result<kube::Client> {
        if let Some(c) = &self.kube_client {
            return Ok(c.clone());
        }
        let config = crate::k8s::client::infer_config().await?;
        if config.accept_invalid_certs {
            sink.send(crate::BuildEvent::TlsNotVerified {
                server: config.cluster_url.to_string(),
            });
        }
        Ok(crate::k8s::client::from_config(config).await?)
    }

    pub(crate) fn runner(
        &self,
        client: kube::Client,
        registry: &RegistryClient,
        docker_json: Option<Vec<u8>>,
    ) -> KubeRunner {
        let mut b = KubeRunner::builder(client)
            .job_options(self.job_options.clone())
            .blob_store(Arc::new(registry.clone()));
        if let Some(json) = docker_json {
            b = b.docker_config_json(json);
        }
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(p) = self.cleanup {
            b = b.cleanup(p);
        }
        if let Some(u) = self.upload {
            b = b.upload(u);
        }
        if let Some(u) = self.unschedulable_timeout {
            b = b.unschedulable_timeout(u);
        }
        if let Some(n) = self.node_lost_timeout {
            b = b.node_lost_timeout(n);
        }
        b.pack_options(self.pack.clone()).build()
    }
}
