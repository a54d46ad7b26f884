use super::*;
use crate::crd::{BlobContext, GitContext, ImageBuildSpec, PvcContext};

fn build(spec: ImageBuildSpec) -> ImageBuild {
    let mut ib = ImageBuild::new("app", spec);
    ib.metadata.namespace = Some("builds".to_owned());
    ib
}

fn spec(image: &str, context: BuildContext) -> ImageBuildSpec {
    ImageBuildSpec {
        image: image.to_owned(),
        context,
        dockerfile: None,
        build_args: Default::default(),
        target: None,
        labels: Default::default(),
        platforms: Vec::new(),
        force: false,
        registry_secret: None,
        job_options_ref: None,
    }
}

fn git() -> BuildContext {
    BuildContext::Git(GitContext {
        url: "https://git.example/team/app.git".to_owned(),
        reference: Some("refs/heads/main".to_owned()),
        sub_path: None,
    })
}

#[test]
fn a_spec_becomes_the_library_config() {
    let mut s = spec("registry.local:5000/team/app:v1", git());
    s.dockerfile = Some("build/Dockerfile".to_owned());
    s.build_args.insert("A".to_owned(), "1".to_owned());
    s.target = Some("final".to_owned());
    s.labels.insert("org.example".to_owned(), "x".to_owned());
    s.platforms = vec!["linux/amd64".to_owned(), "linux/arm64".to_owned()];
    s.force = true;
    let c = build_config(&build(s)).expect("valid");
    assert_eq!(c.image().to_string(), "registry.local:5000/team/app:v1");
    assert_eq!(c.namespace(), "builds");
    assert_eq!(c.dockerfile(), "build/Dockerfile");
    assert!(c.force());
    assert_eq!(c.platforms().len(), 2);
    assert_eq!(c.context().kind(), "git");
}

#[test]
fn every_context_kind_converts() {
    let digest = Digest::sha256(b"ctx").to_string();
    for (context, kind) in [
        (git(), "git"),
        (BuildContext::Url("https://h/c.tar.gz".to_owned()), "url"),
        (
            BuildContext::Pvc(PvcContext {
                claim_name: "sources".to_owned(),
                sub_path: Some("app".to_owned()),
            }),
            "pvc",
        ),
        (BuildContext::Blob(BlobContext { digest }), "upload"),
    ] {
        let c = build_config(&build(spec("r.local/a:v1", context))).expect("valid");
        assert_eq!(c.context().kind(), kind);
    }
}

#[test]
fn invalid_fields_are_named() {
    let cases = [
        (spec("Bad Image!", git()), "spec.image"),
        (
            spec("r.local/a:v1", BuildContext::Url("ftp://h/c".to_owned())),
            "spec.context",
        ),
        (
            spec(
                "r.local/a:v1",
                BuildContext::Blob(BlobContext {
                    digest: "sha256:nothex".to_owned(),
                }),
            ),
            "spec.context.blob.digest",
        ),
        (
            ImageBuildSpec {
                platforms: vec!["linux/amd64".to_owned(), "windows".to_owned()],
                ..spec("r.local/a:v1", git())
            },
            "spec.platforms[1]",
        ),
        (
            ImageBuildSpec {
                dockerfile: Some("/etc/passwd".to_owned()),
                ..spec("r.local/a:v1", git())
            },
            "spec.dockerfile",
        ),
    ];
    for (s, field) in cases {
        let e = build_config(&build(s)).expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert!(!e.problem.is_empty());
    }
}
