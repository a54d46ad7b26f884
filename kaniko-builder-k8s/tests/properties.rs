//! Property tests: any valid configuration yields valid names, labels and arguments, and no
//! configuration leaks a credential outside the Secret.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaniko_builder_core::config::names::{
    is_dns1123_label, is_dns1123_subdomain, is_label_value, is_qualified_name,
};
use kaniko_builder_core::config::{CacheConfig, ContextSource, SnapshotMode, Verbosity};
use kaniko_builder_core::{BuildConfig, ImageRef, Platform};
use kaniko_builder_k8s::manifest::{
    self, BUILDER_CONTAINER, BuildManifests, CONTEXT_DIR, INIT_CONTAINER, JobOptions, Object, Orchestrator,
};
use proptest::prelude::*;

fn image() -> impl Strategy<Value = ImageRef> {
    (
        prop_oneof![
            Just(String::new()),
            "[a-z][a-z0-9-]{0,10}[a-z0-9]\\.[a-z]{2,5}(:[1-9][0-9]{0,4})?/",
            Just("localhost:5000/".to_owned()),
        ],
        prop::collection::vec("[a-z0-9]{1,20}([._-][a-z0-9]{1,20})?", 1..5),
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
    )
        .prop_filter_map("valid reference", |(host, path, tag)| {
            ImageRef::parse(&format!("{host}{}:{tag}", path.join("/"))).ok()
        })
}

fn rel_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_][A-Za-z0-9_. -]{0,12}", 1..4)
        .prop_map(|v| v.join("/"))
        .prop_filter("no dot-dot", |p| !p.split('/').any(|c| c == ".." || c == "."))
}

fn context() -> impl Strategy<Value = ContextSource> {
    prop_oneof![
        rel_path().prop_map(|p| ContextSource::HostPath(PathBuf::from(format!("/{p}")))),
        ("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", prop::option::of(rel_path()))
            .prop_map(|(claim, sub_path)| ContextSource::Pvc { claim, sub_path }),
        rel_path().prop_map(|p| ContextSource::LocalDir(PathBuf::from(p))),
        (
            "https?://[a-z]{1,10}\\.[a-z]{2,4}/[a-z0-9/_.-]{1,30}",
            prop::option::of(prop_oneof!["refs/heads/[a-z0-9/_.-]{1,20}", "[0-9a-f]{40}"]),
            prop::option::of(rel_path()),
        )
            .prop_map(|(url, reference, sub_path)| ContextSource::Git {
                url,
                reference,
                sub_path,
            }),
        ("(s3|gs|https)", "[a-z0-9.-]{1,20}/[A-Za-z0-9/_.-]{0,30}")
            .prop_map(|(scheme, rest)| ContextSource::Url(format!("{scheme}://{rest}"))),
    ]
}

fn config() -> impl Strategy<Value = BuildConfig> {
    (
        (
            image(),
            prop::collection::vec(image(), 0..3),
            context(),
            rel_path(),
            any::<bool>(),
        ),
        (
            prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,15}", "\\PC{0,30}", 0..4),
            prop::option::of("[A-Za-z][A-Za-z0-9_.-]{0,15}"),
            prop::collection::btree_map("[a-z][a-z0-9./_-]{0,30}", "\\PC{0,30}", 0..3),
            prop::option::of((
                prop::option::of(Just("registry.local:5000/cache".to_owned())),
                prop::option::of(1u64..10_000_000),
            )),
        ),
        (
            prop::collection::vec("[a-z]{1,8}\\.[a-z]{2,3}(:[1-9][0-9]{0,3})?", 0..2),
            prop::option::of(prop_oneof![
                Just(SnapshotMode::Full),
                Just(SnapshotMode::Redo),
                Just(SnapshotMode::Time)
            ]),
            any::<bool>(),
            prop::option::of(0u32..10),
            prop::option::of(prop_oneof![Just(Verbosity::Info), Just(Verbosity::Trace)]),
            "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
            prop::option::of(platform()),
        ),
    )
        .prop_map(
            |(
                (image, extra, context, dockerfile, force),
                (args, target, labels, cache),
                (insecure, snapshot, reproducible, retry, verbosity, namespace, platform),
            )| {
                let mut b = BuildConfig::builder(image)
                    .destinations(extra)
                    .context(context)
                    .dockerfile(dockerfile)
                    .force(force)
                    .namespace(namespace)
                    .reproducible(reproducible);
                for (k, v) in args {
                    b = b.build_arg(k, v);
                }
                for (k, v) in labels {
                    b = b.label(k, v);
                }
                if let Some(t) = target {
                    b = b.target(t);
                }
                if let Some((repo, ttl)) = cache {
                    b = b.cache(CacheConfig {
                        repo,
                        ttl: ttl.map(Duration::from_secs),
                    });
                }
                for host in insecure {
                    b = b.insecure_registry(host);
                }
                if let Some(s) = snapshot {
                    b = b.snapshot_mode(s);
                }
                if let Some(r) = retry {
                    b = b.push_retry(r);
                }
                if let Some(v) = verbosity {
                    b = b.verbosity(v);
                }
                // One platform's Job of a multi-platform build, or a single-platform build.
                match platform {
                    Some(p) => b
                        .platforms([p.clone()])
                        .build()
                        .expect("generated configs are valid")
                        .for_platform(&p),
                    None => b.build().expect("generated configs are valid"),
                }
            },
        )
}

fn platform() -> impl Strategy<Value = Platform> {
    (
        prop_oneof![Just("linux".to_owned()), "[a-z][a-z0-9]{0,7}"],
        prop_oneof![
            Just("amd64".to_owned()),
            Just("arm64".to_owned()),
            "[a-z]([a-z0-9_]{0,6}[a-z0-9])?"
        ],
        prop::option::of("v[0-9]{1,2}"),
    )
        .prop_map(|(os, arch, variant)| {
            Platform::new(&os, &arch, variant.as_deref()).expect("valid platform")
        })
}

fn options() -> impl Strategy<Value = JobOptions> {
    (
        any::<bool>(),
        prop::option::of(prop_oneof![
            Just(Orchestrator::default()),
            "[a-z]{1,10}".prop_map(Orchestrator::User),
            "[a-z]{1,10}".prop_map(Orchestrator::Group),
        ]),
        prop::collection::btree_map(
            "[a-z]{1,10}(\\.[a-z]{2,4}/[a-z]{1,10})?",
            "([A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?)?",
            0..3,
        ),
        prop::option::of("[a-z]([a-z0-9-]{0,20}[a-z0-9])?"),
    )
        .prop_map(|(exec, orchestrator, labels, sa)| {
            let mut o = JobOptions::default().exec_upload(exec).orchestrator(orchestrator);
            for (k, v) in labels {
                o = o.label(k, v);
            }
            if let Some(sa) = sa {
                o = o.service_account_name(sa);
            }
            o
        })
}

fn check_meta(meta: &ObjectMeta, what: &str) -> Result<(), TestCaseError> {
    if let Some(name) = &meta.name {
        prop_assert!(is_dns1123_subdomain(name), "{} name {:?}", what, name);
    }
    if let Some(ns) = &meta.namespace {
        prop_assert!(is_dns1123_label(ns), "{} namespace {:?}", what, ns);
    }
    for (k, v) in meta.labels.iter().flatten() {
        prop_assert!(is_qualified_name(k), "{} label key {:?}", what, k);
        prop_assert!(is_label_value(v), "{} label {:?} value {:?}", what, k, v);
    }
    for k in meta.annotations.iter().flatten().map(|(k, _)| k) {
        prop_assert!(is_qualified_name(k), "{} annotation key {:?}", what, k);
    }
    Ok(())
}

fn pod(m: &BuildManifests) -> &PodSpec {
    m.job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn containers(m: &BuildManifests) -> impl Iterator<Item = &Container> {
    let p = pod(m);
    p.init_containers.iter().flatten().chain(&p.containers)
}

/// Everything a container exposes to processes and logs: command, args, env values.
fn container_strings(c: &Container) -> Vec<String> {
    let mut out: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .cloned()
        .collect();
    for e in c.env.iter().flatten() {
        out.push(e.name.clone());
        out.extend(e.value.clone());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn names_labels_and_args_are_valid(config in config(), options in options()) {
        let m = manifest::render(&config, &options, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(is_dns1123_label(m.job_name()), "{}", m.job_name());
        prop_assert!(m.job_name().len() <= 63);
        prop_assert_eq!(m.job_name(), config.job_name());
        for object in m.objects() {
            check_meta(object.metadata(), object.kind())?;
        }
        let template = m.job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).expect("template meta");
        check_meta(template, "pod template")?;

        let builder = &pod(&m).containers[0];
        prop_assert_eq!(&builder.name, BUILDER_CONTAINER);
        let command = builder.command.as_ref().expect("command");
        prop_assert_eq!(&command[..2], ["/busybox/sh", "-c"]);
        prop_assert_eq!(command[3].as_str(), "kaniko");
        for arg in &command[4..] {
            let flag = arg.strip_prefix("--").ok_or_else(|| TestCaseError::fail(format!("{arg:?}")))?;
            let name = flag.split_once('=').map_or(flag, |(n, _)| n);
            prop_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{:?}", arg);
        }
        prop_assert_eq!(command[4..].to_vec(), manifest::kaniko_args(&config));
        let init = &pod(&m).init_containers.as_ref().expect("init")[0];
        prop_assert_eq!(&init.name, INIT_CONTAINER);
        // One platform's Job: no tag pushed, built on a node of the platform, never skipped.
        if let Some(p) = config.target_platform() {
            prop_assert!(!command.iter().any(|a| a.starts_with("--destination=")));
            let custom_platform = format!("--custom-platform={p}");
            prop_assert!(command.contains(&custom_platform));
            let push = builder.env.iter().flatten().find(|e| e.name == manifest::ENV_PUSH)
                .and_then(|e| e.value.clone()).expect("KB_PUSH");
            prop_assert_eq!(push.lines().count(), config.destinations().map(|d| d.name()).collect::<std::collections::BTreeSet<_>>().len());
            let selector = pod(&m).node_selector.clone().unwrap_or_default();
            prop_assert_eq!(selector.get("kubernetes.io/arch").map(String::as_str), Some(p.architecture()));
            let force = init.env.iter().flatten().find(|e| e.name == "FORCE_BUILD").expect("FORCE_BUILD");
            prop_assert_eq!(force.value.as_deref(), Some("Y"));
            let labels = m.job.metadata.labels.clone().unwrap_or_default();
            prop_assert_eq!(labels.get(manifest::LABEL_PLATFORM), Some(&p.slug()));
        } else {
            prop_assert!(builder.env.iter().flatten().all(|e| e.name != manifest::ENV_PUSH));
        }
    }

    #[test]
    fn a_multi_platform_request_renders_one_valid_job_per_platform(
        image in image(),
        extra in prop::collection::vec(image(), 0..3),
        context in context(),
        platforms in prop::collection::btree_set(platform(), 1..4),
    ) {
        let whole = BuildConfig::builder(image)
            .destinations(extra)
            .context(context)
            .platforms(platforms.iter().cloned())
            .build()
            .expect("valid");
        prop_assert!(manifest::render(&whole, &JobOptions::default(), None).is_err());
        let rendered = manifest::render_platforms(&whole, &JobOptions::default(), None)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(rendered.len(), platforms.len());
        let mut names = std::collections::BTreeSet::new();
        for (p, m) in &rendered {
            prop_assert!(is_dns1123_label(m.job_name()) && m.job_name().len() <= 63, "{}", m.job_name());
            prop_assert_eq!(m.job_name(), whole.for_platform(p).job_name());
            names.insert(m.job_name().to_owned());
            for object in m.objects() {
                check_meta(object.metadata(), object.kind())?;
            }
        }
        prop_assert_eq!(names.len(), platforms.len(), "one Job name per platform");
    }

    #[test]
    fn credentials_stay_in_the_secret(config in config(), options in options()) {
        let json = common::docker_config_json();
        let m = manifest::render(&config, &options, Some(&json)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let needles = common::secret_needles();
        let leaks = |haystack: &str| needles.iter().any(|n| haystack.contains(n.as_str()));

        // No environment variable, command or argument.
        for c in containers(&m) {
            for s in container_strings(c) {
                prop_assert!(!leaks(&s), "container {} leaks in {:?}", c.name, s);
            }
        }
        // No ConfigMap value, annotation or label anywhere; no object but the Secret at all.
        for object in m.objects() {
            let text = object.to_json().expect("json").to_string();
            match object {
                Object::Secret(_) => prop_assert!(text.contains(&needles[2]), "the Secret holds the config"),
                _ => prop_assert!(!leaks(&text), "{} leaks", object.kind()),
            }
        }
        // Nothing mounted at or under the context comes from the Secret.
        let p = pod(&m);
        let secret_volumes: Vec<&str> = p.volumes.iter().flatten()
            .filter(|v| v.secret.is_some()).map(|v| v.name.as_str()).collect();
        for c in containers(&m) {
            for mount in c.volume_mounts.iter().flatten() {
                let under_context = mount.mount_path == CONTEXT_DIR || mount.mount_path.starts_with(&format!("{CONTEXT_DIR}/"));
                prop_assert!(!(under_context && secret_volumes.contains(&mount.name.as_str())),
                    "{} mounts the Secret at {}", c.name, mount.mount_path);
            }
        }
        // Debug output redacts it too.
        let debug = format!("{m:?}");
        prop_assert!(!leaks(&debug), "Debug leaks");
    }
}

#[test]
fn golden_cases_keep_credentials_in_the_secret() {
    let needles = common::secret_needles();
    for case in common::cases() {
        let m = case.render();
        let yaml = m.to_yaml().expect("yaml");
        let docs: Vec<&str> = yaml.split("\n---\n").collect();
        for doc in docs {
            let is_secret = doc.contains("kind: Secret");
            for n in &needles[..2] {
                assert!(
                    !doc.contains(n.as_str()),
                    "{}: plaintext credential in\n{doc}",
                    case.name
                );
            }
            if !is_secret {
                assert!(
                    !doc.contains(needles[2].as_str()),
                    "{}: config outside the Secret",
                    case.name
                );
            }
        }
    }
}
