//! Building small but real test images: one layer holding /hello.txt, a config, a manifest.

use std::io::Write as _;

use sha2::{Digest as _, Sha256};

/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// An `Accept` value naming all four manifest media types. Distribution answers 404 for an
/// OCI manifest not named in `Accept`, and converts Docker ones to schema 1 (another digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `"sha256:<hex>"` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Which manifest schema an image is pushed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ManifestFormat {
    /// OCI image manifest with OCI config and layer media types.
    #[default]
    Oci,
    /// Docker schema 2 manifest with Docker config and layer media types.
    Docker,
}

/// How the single layer is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LayerCompression {
    /// A gzip'd tar (`tar+gzip`).
    #[default]
    Gzip,
    /// A plain tar.
    None,
}

/// What [`crate::TestRegistry::push_image_with`] pushes.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Contents of /hello.txt, the layer's only file.
    pub content: Vec<u8>,
    /// Manifest schema.
    pub format: ManifestFormat,
    /// Layer compression.
    pub compression: LayerCompression,
    /// Config `os`.
    pub os: String,
    /// Config `architecture`.
    pub architecture: String,
}

impl ImageSpec {
    /// An OCI, gzip'd, linux/amd64 image holding `content` in /hello.txt.
    pub fn new(content: &[u8]) -> ImageSpec {
        ImageSpec {
            content: content.to_vec(),
            format: ManifestFormat::Oci,
            compression: LayerCompression::Gzip,
            os: "linux".to_owned(),
            architecture: "amd64".to_owned(),
        }
    }
}

/// The blobs and manifest bytes of one image, ready to push.
#[derive(Debug)]
pub(crate) struct BuiltImage {
    pub(crate) layer: Vec<u8>,
    pub(crate) layer_digest: String,
    pub(crate) config: Vec<u8>,
    pub(crate) config_digest: String,
    pub(crate) manifest: Vec<u8>,
    pub(crate) manifest_media_type: &'static str,
}

impl BuiltImage {
    pub(crate) fn build(spec: &ImageSpec) -> anyhow::Result<BuiltImage> {
        let tar = hello_tar(&spec.content)?;
        let diff_id = sha256_digest(&tar);
        let (layer, layer_type) = match (spec.compression, spec.format) {
            (LayerCompression::Gzip, ManifestFormat::Oci) => {
                (gzip(&tar)?, "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            (LayerCompression::Gzip, ManifestFormat::Docker) => {
                (gzip(&tar)?, "application/vnd.docker.image.rootfs.diff.tar.gzip")
            }
            (LayerCompression::None, ManifestFormat::Oci) => (tar, "application/vnd.oci.image.layer.v1.tar"),
            (LayerCompression::None, ManifestFormat::Docker) => {
                (tar, "application/vnd.docker.image.rootfs.diff.tar")
            }
        };
        let (manifest_type, config_type) = match spec.format {
            ManifestFormat::Oci => (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json"),
            ManifestFormat::Docker => (DOCKER_MANIFEST, "application/vnd.docker.container.image.v1+json"),
        };
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": spec.architecture,
            "os": spec.os,
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created_by": "kaniko-builder-testkit" }],
        }))?;
        let layer_digest = sha256_digest(&layer);
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": { "mediaType": config_type, "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": layer_type, "digest": layer_digest, "size": layer.len() }],
        }))?;
        Ok(BuiltImage {
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_media_type: manifest_type,
        })
    }
}

/// An OCI index over already pushed manifests: (media type, digest, size, os, architecture).
pub(crate) fn index_bytes(children: &[(&str, String, usize, String, String)]) -> anyhow::Result<Vec<u8>> {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .map(|(media_type, digest, size, os, arch)| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "platform": { "architecture": arch, "os": os },
            })
        })
        .collect();
    Ok(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))?)
}

/// A tar with one regular file, hello.txt (extracts to /hello.txt), fixed metadata so the
/// same content always gives the same digest.
fn hello_tar(content: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(u64::try_from(content.len())?);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder.append_data(&mut header, "hello.txt", content)?;
    Ok(builder.into_inner()?)
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // flate2 writes mtime 0 in the gzip header, so this is deterministic too.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_a_gzipped_tar_holding_hello_txt() {
        let image = BuiltImage::build(&ImageSpec::new(b"hi there")).expect("build");
        let tar = flate2::read::GzDecoder::new(image.layer.as_slice());
        let mut archive = tar::Archive::new(tar);
        let mut entries = archive.entries().expect("entries");
        let mut entry = entry_of(entries.next());
        assert_eq!(entry.path().expect("path").to_str(), Some("hello.txt"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
        assert_eq!(text, "hi there");
        assert_eq!(image.layer_digest, sha256_digest(&image.layer));
    }

    fn entry_of<R: std::io::Read>(e: Option<std::io::Result<tar::Entry<'_, R>>>) -> tar::Entry<'_, R> {
        e.expect("one entry").expect("readable entry")
    }

    #[test]
    fn same_spec_same_digest() {
        let a = BuiltImage::build(&ImageSpec::new(b"x")).expect("build");
        let b = BuiltImage::build(&ImageSpec::new(b"x")).expect("build");
        assert_eq!(sha256_digest(&a.manifest), sha256_digest(&b.manifest));
    }
}
