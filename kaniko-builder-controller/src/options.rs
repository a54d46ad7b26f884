//! How the controller runs: [`ControllerOptions`].

use std::fmt;
use std::time::Duration;

use kaniko_builder::JobOptions;

/// The Lease name replicas elect a leader with, by default.
pub const DEFAULT_LEASE_NAME: &str = "kaniko-builder-controller";
/// Builds that run at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Options of [`run`](crate::run); start from [`ControllerOptions::default`] and chain setters.
#[derive(Clone)]
#[must_use]
pub struct ControllerOptions {
    pub(crate) namespace: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) lease: Option<LeaseOptions>,
    pub(crate) job_options: JobOptions,
    pub(crate) insecure_registries: Vec<String>,
    pub(crate) registry_cas: Vec<(String, String)>,
    pub(crate) error_backoff: (Duration, Duration),
    pub(crate) log_tail_lines: usize,
}

/// Leader election through a `coordination.k8s.io` Lease.
#[derive(Debug, Clone)]
pub(crate) struct LeaseOptions {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) identity: String,
    pub(crate) duration: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: DEFAULT_CONCURRENCY,
            lease: None,
            job_options: JobOptions::default(),
            insecure_registries: Vec::new(),
            registry_cas: Vec::new(),
            error_backoff: (Duration::from_secs(2), Duration::from_secs(300)),
            log_tail_lines: 20,
        }
    }
}

impl fmt::Debug for ControllerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerOptions")
            .field("namespace", &self.namespace)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("job_options", &self.job_options)
            .field("insecure_registries", &self.insecure_registries)
            .field(
                "registry_cas",
                &self.registry_cas.iter().map(|(h, _)| h).collect::<Vec<_>>(),
            )
            .field("error_backoff", &self.error_backoff)
            .field("log_tail_lines", &self.log_tail_lines)
            .finish()
    }
}

impl ControllerOptions {
    /// Watch only this namespace (the controller then needs rights in it alone). Default: all.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// At most this many builds (Jobs) at once; more wait, `Pending`. Default:
    /// [`DEFAULT_CONCURRENCY`]; at least 1.
    pub fn concurrency(mut self, builds: usize) -> Self {
        self.concurrency = builds.max(1);
        self
    }

    /// Work only while holding the Lease `namespace/name` as `identity` (unique per replica, e.g.
    /// the Pod's name); `duration` is how long a lease lasts without renewal, so how long a dead
    /// leader's builds wait for another replica. Default: no election (one replica).
    pub fn leader_election(
        mut self,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
        duration: Duration,
    ) -> Self {
        self.lease = Some(LeaseOptions {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration,
        });
        self
    }

    /// The Job options every build starts from (a spec's `jobOptionsRef` adjusts them).
    /// Default: [`JobOptions::default`].
    pub fn job_options(mut self, options: JobOptions) -> Self {
        self.job_options = options;
        self
    }

    /// A registry (`host[:port]`) this process (and kaniko) speak to over plain HTTP. Repeatable.
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// A CA (PEM) this process trusts for `host[:port]`, besides the system's roots. Repeatable.
    pub fn registry_ca(mut self, host: impl Into<String>, pem: impl Into<String>) -> Self {
        self.registry_cas.push((host.into(), pem.into()));
        self
    }

    /// The back-off after an error talking to the API server or the registry: `first`, doubled
    /// on each retry up to `max`. Default: 2 s to 5 min.
    pub fn error_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.error_backoff = (first, max.max(first));
        self
    }

    /// The last log lines kept in the status of a failed build. Default: 20.
    pub fn log_tail_lines(mut self, lines: usize) -> Self {
        self.log_tail_lines = lines;
        self
    }
}
