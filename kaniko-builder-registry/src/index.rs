//! Image indexes (multi-platform images): reading the platforms an OCI index or a Docker
//! manifest list lists, and pushing an OCI index over images already in the repository.
//!
//! Same authentication, retries and error rules as probes and blob uploads: every request goes
//! through [`RegistryClient::send_scoped`].

use bytes::Bytes;
use futures::future::try_join_all;
use kaniko_builder_core::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use kaniko_builder_core::{Digest, ImageRef, Platform};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::blob::{PUSH, unexpected};
use crate::client::{RegistryClient, RegistryState, read_body};
use crate::error::{Error, Result};

const DIGEST_HEADER: &str = "docker-content-digest";

/// `Accept` of [`RegistryClient::index_platforms`]: the two index types first, then the two image
/// manifest types. Without the latter, distribution answers 404 for a tag that holds an OCI image
/// (and converts a Docker one to schema 1), so a single-platform image would read as absent
/// instead of "not an index".
const INDEX_ACCEPT: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// `Accept` for the images an index is to list: the two image manifest types, then the two index
/// types. Only images can be listed, but distribution answers 404 for an index not named in
/// `Accept` (also by digest), and an index passed by mistake must be reported as one, not as a
/// manifest the registry lacks.
const IMAGE_ACCEPT: [&str; 4] = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST];

impl RegistryClient {
    /// The platforms the image index under `image` (a tag, or a reference pinned by digest)
    /// lists, in its order: `manifests[].platform` of an OCI image index or a Docker manifest
    /// list. Entries without a platform, or whose os or architecture is `unknown` (the
    /// attestation manifests buildx adds), are left out.
    ///
    /// Requests: one `GET /v2/<repository>/manifests/<tag or digest>` with `Accept` naming the
    /// OCI index and the Docker manifest list, then the two image manifest types (token scope
    /// `pull`). A pinned digest, and a `Docker-Content-Digest` header, are checked against the
    /// bytes served.
    ///
    /// # Errors
    /// [`Error::NotAnIndex`] when the manifest is a single-platform image (or anything else that
    /// is not an index); [`Error::ManifestUnknown`] on 404; [`Error::InvalidManifest`] when the
    /// index is not valid JSON or an entry's platform is malformed; otherwise as for
    /// [`probe`](Self::probe).
    #[tracing::instrument(level = "debug", skip(self), fields(image = %image))]
    pub async fn index_platforms(&self, image: &ImageRef) -> Result<Vec<Platform>> {
        let st = self.state_for(image);
        let repository = image.repository();
        let reference = image.manifest_reference();
        let url = st.url(&format!("/v2/{repository}/manifests/{reference}"));
        let accept = INDEX_ACCEPT.join(", ");
        let resp = self
            .send(&st, repository, || {
                st.http.get(&url).header(ACCEPT, accept.as_str())
            })
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::ManifestUnknown {
                    registry: st.name.clone(),
                    repository: repository.to_owned(),
                    reference,
                });
            }
            other => return Err(unexpected(&st, repository, other)),
        }
        let content_type = header(&resp, CONTENT_TYPE.as_str());
        let said_digest = header(&resp, DIGEST_HEADER);
        let body = read_body(resp)
            .await
            .map_err(|p| invalid(&st, repository, &reference, p))?;
        check_served_digest(&st, image, &body, said_digest.as_deref())?;
        let doc: IndexDoc = serde_json::from_slice(&body)
            .map_err(|e| invalid(&st, repository, &reference, format!("not a valid manifest: {e}")))?;
        let media_type = resolve_media_type(content_type.as_deref(), doc.media_type.as_deref());
        if !matches!(media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST) {
            return Err(Error::NotAnIndex {
                registry: st.name.clone(),
                reference: image.to_string(),
                media_type,
            });
        }
        let platforms = listed_platforms(&doc).map_err(|p| invalid(&st, repository, &reference, p))?;
        tracing::debug!(media_type, platforms = platforms.len(), "index read");
        Ok(platforms)
    }

    /// Pushes an OCI image index under `image`'s tag listing `manifests`, images of `image`'s
    /// repository given by digest, in that order; returns the index's digest. Each entry's
    /// platform (`os`, `architecture`, `variant`, `os.version`, `os.features`) is read from the
    /// image's config.
    ///
    /// Requests (token scope `pull,push` for all of them, so one token serves the whole push;
    /// the images are read concurrently):
    /// - per image: `GET /v2/<repository>/manifests/<digest>` with `Accept` naming the OCI image
    ///   manifest and the Docker schema 2 manifest, then the two index types (so that an index
    ///   given by mistake is reported as one rather than as missing): its media type, size and
    ///   bytes, which must hash to the digest; then `GET /v2/<repository>/blobs/<config digest>` (redirects
    ///   followed, as for every blob; the bytes must hash to the config digest);
    /// - then one `PUT /v2/<repository>/manifests/<tag>` with `Content-Type:
    ///   application/vnd.oci.image.index.v1+json`. The answer must be `201`, and a
    ///   `Docker-Content-Digest` header must name the sha256 of the bytes sent. The index is
    ///   never put by digest: it goes under the tag (a digest in `image` is ignored).
    ///
    /// Nothing is written unless every image was read: a missing image leaves the tag as it was.
    ///
    /// The index is always an OCI image index, also when every image is a Docker schema 2
    /// manifest (where buildx writes a Docker manifest list): the OCI index lists Docker
    /// manifests by their own media type, every registry and runtime that reads Docker lists
    /// reads it (distribution, containerd, Docker 20.10+, kaniko, crane), and one format is one
    /// code path to get right. A registry that refuses OCI indexes answers the `PUT` with an
    /// error status ([`Error::UnexpectedStatus`]).
    ///
    /// # Errors
    /// [`Error::InvalidIndexRequest`] for a reference without a tag or an empty `manifests`
    /// (nothing is sent); [`Error::ManifestUnknown`] naming the digest of an image the registry
    /// lacks; [`Error::BlobUnknown`] naming a missing config; [`Error::InvalidManifest`] for an
    /// image that is itself an index, or whose config names no os or architecture;
    /// [`Error::BadDigest`] when bytes do not hash to their digest or the registry stored the
    /// index under another digest; otherwise as for [`push_blob`](Self::push_blob)
    /// ([`Error::is_unauthorized`] when the credentials may not push).
    #[tracing::instrument(level = "debug", skip(self, manifests), fields(image = %image, manifests = manifests.len()))]
    pub async fn push_index(&self, image: &ImageRef, manifests: &[Digest]) -> Result<Digest> {
        let refuse = |problem| Error::InvalidIndexRequest {
            reference: image.to_string(),
            problem,
        };
        let tag = image
            .tag()
            .ok_or_else(|| refuse("the reference has no tag (an index is pushed under a tag)"))?;
        if manifests.is_empty() {
            return Err(refuse("no images to list"));
        }
        let st = self.state_for(image);
        let repository = image.repository();
        let entries = try_join_all(
            manifests
                .iter()
                .map(|digest| self.index_entry(&st, repository, digest)),
        )
        .await?;
        let body = Bytes::from(index_json(&entries).map_err(|_| refuse("the index cannot be serialised"))?);
        let digest = Digest::sha256(&body);
        let url = st.url(&format!("/v2/{repository}/manifests/{tag}"));
        let resp = self
            .send_scoped(&st, repository, PUSH, || {
                st.http
                    .put(&url)
                    .header(CONTENT_TYPE, OCI_INDEX)
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone())
            })
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED {
            let said = read_body(resp).await.unwrap_or_default();
            return Err(match missing_child(status, &said) {
                Some(missing) => Error::ManifestUnknown {
                    registry: st.name.clone(),
                    repository: repository.to_owned(),
                    reference: missing.to_string(),
                },
                None => unexpected(&st, repository, status),
            });
        }
        match header(&resp, DIGEST_HEADER) {
            Some(said) if said != digest.to_string() => {
                return Err(Error::BadDigest {
                    registry: st.name.clone(),
                    reference: image.to_string(),
                    problem: format!("registry stored the index as {said}, its content hashes to {digest}"),
                });
            }
            Some(_) => {}
            None => tracing::debug!("no Docker-Content-Digest on the index PUT"),
        }
        tracing::debug!(%digest, "index pushed");
        Ok(digest)
    }

    /// One index entry: the image manifest `digest`, then its config.
    async fn index_entry(&self, st: &RegistryState, repository: &str, digest: &Digest) -> Result<Entry> {
        let reference = digest.to_string();
        let url = st.url(&format!("/v2/{repository}/manifests/{digest}"));
        let accept = IMAGE_ACCEPT.join(", ");
        let resp = self
            .send_scoped(st, repository, PUSH, || {
                st.http.get(&url).header(ACCEPT, accept.as_str())
            })
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::ManifestUnknown {
                    registry: st.name.clone(),
                    repository: repository.to_owned(),
                    reference,
                });
            }
            other => return Err(unexpected(st, repository, other)),
        }
        let content_type = header(&resp, CONTENT_TYPE.as_str());
        let body = read_body(resp)
            .await
            .map_err(|p| invalid(st, repository, &reference, p))?;
        if !digest.matches(&body) {
            return Err(Error::BadDigest {
                registry: st.name.clone(),
                reference: format!("{}/{repository}@{digest}", st.name),
                problem: "the manifest served does not hash to its digest".to_owned(),
            });
        }
        let doc: ImageManifestDoc = serde_json::from_slice(&body)
            .map_err(|e| invalid(st, repository, &reference, format!("not a valid manifest: {e}")))?;
        let media_type = image_media_type(content_type.as_deref(), &doc)
            .map_err(|p| invalid(st, repository, &reference, p))?;
        let config = doc
            .config
            .as_ref()
            .ok_or_else(|| {
                invalid(
                    st,
                    repository,
                    &reference,
                    "the manifest has no config".to_owned(),
                )
            })
            .and_then(|c| {
                Digest::parse(&c.digest).map_err(|e| {
                    invalid(
                        st,
                        repository,
                        &reference,
                        format!("its config digest is invalid: {e}"),
                    )
                })
            })?;
        let config_bytes = self.config_blob(st, repository, &config).await?;
        let platform = image_platform(&config_bytes)
            .map_err(|p| invalid(st, repository, &reference, format!("its config {config} {p}")))?;
        Ok(Entry {
            media_type,
            digest: digest.clone(),
            size: body.len() as u64,
            platform,
        })
    }

    /// `GET /v2/<repository>/blobs/<digest>` (redirects followed), checked against the digest.
    async fn config_blob(&self, st: &RegistryState, repository: &str, digest: &Digest) -> Result<Vec<u8>> {
        let url = st.url(&format!("/v2/{repository}/blobs/{digest}"));
        let resp = self
            .send_scoped(st, repository, PUSH, || st.http.get(&url))
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::BlobUnknown {
                    registry: st.name.clone(),
                    repository: repository.to_owned(),
                    digest: digest.to_string(),
                });
            }
            other => return Err(unexpected(st, repository, other)),
        }
        let body = read_body(resp)
            .await
            .map_err(|p| invalid(st, repository, &digest.to_string(), p))?;
        if !digest.matches(&body) {
            return Err(Error::BadDigest {
                registry: st.name.clone(),
                reference: format!("{}/{repository}@{digest}", st.name),
                problem: "the config blob served does not hash to its digest".to_owned(),
            });
        }
        Ok(body)
    }
}

/// An index or manifest list, as far as [`RegistryClient::index_platforms`] reads it.
#[derive(Deserialize)]
struct IndexDoc {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<IndexDocEntry>>,
}

#[derive(Deserialize)]
struct IndexDocEntry {
    platform: Option<DocPlatform>,
}

#[derive(Deserialize)]
struct DocPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
}

/// An image manifest, as far as [`RegistryClient::push_index`] reads it.
#[derive(Deserialize)]
struct ImageManifestDoc {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<DocDescriptor>,
    manifests: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct DocDescriptor {
    digest: String,
}

/// The platform fields of an image config.
#[derive(Deserialize)]
struct ConfigDoc {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    #[serde(rename = "os.features")]
    os_features: Option<Vec<String>>,
}

/// One entry of the index pushed.
#[derive(Debug, Serialize)]
struct Entry {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: Digest,
    size: u64,
    platform: EntryPlatform,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct EntryPlatform {
    architecture: String,
    os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    os_version: Option<String>,
    #[serde(rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    os_features: Vec<String>,
}

#[derive(Serialize)]
struct IndexOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: &'a [Entry],
}

fn index_json(entries: &[Entry]) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&IndexOut {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: entries,
    })
}

/// The `Content-Type` when it is one of the four manifest types, else the body's `mediaType`
/// (some registries answer `application/json`), else whatever the header said.
fn resolve_media_type(content_type: Option<&str>, in_body: Option<&str>) -> String {
    const KNOWN: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
    match (content_type, in_body) {
        (Some(h), _) if KNOWN.contains(&h) => h.to_owned(),
        (_, Some(b)) if !b.is_empty() => b.to_owned(),
        (Some(h), _) => h.to_owned(),
        (None, None) => "a manifest without a media type".to_owned(),
        (None, Some(b)) => b.to_owned(),
    }
}

/// The listed platforms, attestation entries and entries without a platform left out.
fn listed_platforms(doc: &IndexDoc) -> std::result::Result<Vec<Platform>, String> {
    let mut out = Vec::new();
    for (i, entry) in doc.manifests.iter().flatten().enumerate() {
        let Some(p) = &entry.platform else { continue };
        if p.os == "unknown" || p.architecture == "unknown" || p.os.is_empty() || p.architecture.is_empty() {
            continue;
        }
        let variant = p.variant.as_deref().filter(|v| !v.is_empty());
        let platform = Platform::new(&p.os, &p.architecture, variant)
            .map_err(|e| format!("manifests[{i}] has an invalid platform: {e}"))?;
        out.push(platform);
    }
    Ok(out)
}

/// The media type of an image an index is to list: an OCI image manifest or a Docker schema 2
/// manifest. `Err` says what it is instead.
fn image_media_type(
    content_type: Option<&str>,
    doc: &ImageManifestDoc,
) -> std::result::Result<&'static str, String> {
    let media_type = resolve_media_type(content_type, doc.media_type.as_deref());
    match media_type.as_str() {
        OCI_MANIFEST if doc.manifests.is_none() => Ok(OCI_MANIFEST),
        DOCKER_MANIFEST if doc.manifests.is_none() => Ok(DOCKER_MANIFEST),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Err(format!(
            "is an image index ({media_type}), not an image: an index lists images, not other indexes"
        )),
        _ if doc.manifests.is_some() => Err("is an image index, not an image".to_owned()),
        _ => Err(format!(
            "has media type {media_type}, not an OCI image manifest or a Docker schema 2 manifest"
        )),
    }
}

/// The index platform of an image, from its config. `Err` completes "its config sha256:… ".
fn image_platform(config: &[u8]) -> std::result::Result<EntryPlatform, String> {
    let doc: ConfigDoc =
        serde_json::from_slice(config).map_err(|e| format!("is not a valid image config: {e}"))?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (Some(os), Some(architecture)) = (non_empty(doc.os), non_empty(doc.architecture)) else {
        return Err(
            "names no os or no architecture: an image without a platform cannot be listed in an index"
                .to_owned(),
        );
    };
    let variant = non_empty(doc.variant);
    Platform::new(&os, &architecture, variant.as_deref())
        .map_err(|e| format!("names an invalid platform: {e}"))?;
    Ok(EntryPlatform {
        architecture,
        os,
        variant,
        os_version: non_empty(doc.os_version),
        os_features: doc.os_features.unwrap_or_default(),
    })
}

/// A pinned digest must match the bytes; a `Docker-Content-Digest` header too.
fn check_served_digest(st: &RegistryState, image: &ImageRef, body: &[u8], said: Option<&str>) -> Result<()> {
    let bad = |problem: String| Error::BadDigest {
        registry: st.name.clone(),
        reference: image.to_string(),
        problem,
    };
    if let Some(pinned) = image.digest()
        && !pinned.matches(body)
    {
        return Err(bad(format!("content does not hash to the pinned {pinned}")));
    }
    if let Some(said) = said {
        let parsed = Digest::parse(said).map_err(|e| bad(e.to_string()))?;
        if !parsed.matches(body) {
            return Err(bad(format!(
                "header says {said}, the content does not hash to it"
            )));
        }
    }
    Ok(())
}

/// The digest of a listed image the registry lacks, from a refused index `PUT` (the image was
/// deleted after it was read): distribution answers 400 `MANIFEST_BLOB_UNKNOWN` with the digest
/// as detail.
fn missing_child(status: StatusCode, body: &[u8]) -> Option<Digest> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorDoc>,
    }
    #[derive(Deserialize)]
    struct ErrorDoc {
        code: String,
        detail: Option<serde_json::Value>,
    }
    if !matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND) {
        return None;
    }
    let errors: Errors = serde_json::from_slice(body).ok()?;
    errors.errors.iter().find_map(|e| {
        if !matches!(e.code.as_str(), "MANIFEST_BLOB_UNKNOWN" | "MANIFEST_UNKNOWN") {
            return None;
        }
        let detail = e.detail.as_ref()?;
        let digest = detail
            .as_str()
            .or_else(|| detail.get("digest").and_then(serde_json::Value::as_str))?;
        Digest::parse(digest).ok()
    })
}

fn invalid(st: &RegistryState, repository: &str, reference: &str, problem: String) -> Error {
    Error::InvalidManifest {
        registry: st.name.clone(),
        repository: repository.to_owned(),
        reference: reference.to_owned(),
        problem,
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platforms(json: &str) -> std::result::Result<Vec<String>, String> {
        let doc: IndexDoc = serde_json::from_str(json).expect("index JSON");
        listed_platforms(&doc).map(|ps| ps.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn attestations_and_entries_without_platform_are_left_out() {
        let json = r#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:c","platform":{"os":"unknown","architecture":"unknown"},
             "annotations":{"vnd.docker.reference.type":"attestation-manifest"}},
            {"digest":"sha256:d"},
            {"digest":"sha256:e","platform":{"os":"linux","architecture":"arm","variant":""}}
        ]}"#;
        assert_eq!(
            platforms(json).expect("valid"),
            ["linux/amd64", "linux/arm64/v8", "linux/arm"]
        );
        assert_eq!(
            platforms(r#"{"manifests":[]}"#).expect("empty"),
            Vec::<String>::new()
        );
        let err = platforms(r#"{"manifests":[{"platform":{"os":"Linux","architecture":"amd64"}}]}"#)
            .expect_err("uppercase os");
        assert!(err.starts_with("manifests[0] has an invalid platform"), "{err}");
    }

    #[test]
    fn config_platforms_carry_every_field_the_index_lists() {
        let cases: [(&str, std::result::Result<&str, &str>); 6] = [
            (
                r#"{"os":"linux","architecture":"amd64","rootfs":{}}"#,
                Ok(r#"{"architecture":"amd64","os":"linux"}"#),
            ),
            (
                r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#,
                Ok(r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#),
            ),
            (
                r#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1","os.features":["win32k"]}"#,
                Ok(
                    r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#,
                ),
            ),
            (
                r#"{"architecture":"amd64"}"#,
                Err("names no os or no architecture"),
            ),
            (
                r#"{"os":"linux","architecture":""}"#,
                Err("names no os or no architecture"),
            ),
            (r#"{"os":1}"#, Err("is not a valid image config")),
        ];
        for (config, want) in cases {
            let got = image_platform(config.as_bytes()).map(|p| serde_json::to_string(&p).expect("json"));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{config}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{config}: {got}"),
                (got, want) => panic!("{config}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_index_is_written_in_the_order_given() {
        let entry = |data: &[u8], media_type, arch: &str| Entry {
            media_type,
            digest: Digest::sha256(data),
            size: 42,
            platform: EntryPlatform {
                architecture: arch.to_owned(),
                os: "linux".to_owned(),
                variant: None,
                os_version: None,
                os_features: Vec::new(),
            },
        };
        let entries = [
            entry(b"b", DOCKER_MANIFEST, "arm64"),
            entry(b"a", OCI_MANIFEST, "amd64"),
        ];
        let json = String::from_utf8(index_json(&entries).expect("json")).expect("utf-8");
        let want = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":42,"platform":{{"architecture":"arm64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":42,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            Digest::sha256(b"b"),
            Digest::sha256(b"a"),
        );
        assert_eq!(json, want);
    }

    #[test]
    fn a_refused_put_names_the_missing_image() {
        let missing = Digest::sha256(b"deleted meanwhile");
        // What distribution 2.8 answers for an index listing a manifest it lacks.
        let body = format!(
            r#"{{"errors":[{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{missing}"}}]}}"#
        );
        assert_eq!(
            missing_child(StatusCode::BAD_REQUEST, body.as_bytes()),
            Some(missing)
        );
        let other = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"x","detail":"sha256:x"}]}"#;
        assert_eq!(missing_child(StatusCode::BAD_REQUEST, other.as_bytes()), None);
        assert_eq!(missing_child(StatusCode::BAD_REQUEST, b"not json"), None);
        assert_eq!(missing_child(StatusCode::CONFLICT, body.as_bytes()), None);
    }

    #[test]
    fn only_image_manifests_can_be_listed() {
        let doc = |json: &str| serde_json::from_str::<ImageManifestDoc>(json).expect("json");
        let image = doc(r#"{"config":{"digest":"sha256:x"}}"#);
        assert_eq!(image_media_type(Some(OCI_MANIFEST), &image), Ok(OCI_MANIFEST));
        assert_eq!(
            image_media_type(Some(DOCKER_MANIFEST), &image),
            Ok(DOCKER_MANIFEST)
        );
        let in_body = doc(&format!(
            r#"{{"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"x"}}}}"#
        ));
        assert_eq!(
            image_media_type(Some("application/json"), &in_body),
            Ok(DOCKER_MANIFEST)
        );
        let index = doc(r#"{"manifests":[]}"#);
        for content_type in [Some(OCI_INDEX), Some("application/json"), None] {
            let err = image_media_type(content_type, &index).expect_err("an index");
            assert!(err.contains("is an image index"), "{err}");
        }
        let err = image_media_type(Some("text/plain"), &image).expect_err("not a manifest");
        assert!(err.contains("text/plain"), "{err}");
    }
}
