//! Pushing test images to a [`TestRegistry`] with oci-client, the way a real client would.

use anyhow::{Context as _, bail};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::image::{BuiltImage, ImageSpec, OCI_MANIFEST, index_bytes, sha256_digest};
use crate::registry::{RegistryAuth, TestRegistry};

/// One platform manifest of a pushed index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedManifest {
    /// "os/architecture", e.g. "linux/arm64".
    pub platform: String,
    /// Digest of the platform manifest.
    pub digest: String,
}

/// A pushed multi-platform index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedIndex {
    /// Digest of the index itself.
    pub digest: String,
    /// The child manifests, in index order.
    pub manifests: Vec<PushedManifest>,
}

/// Platforms of [`TestRegistry::push_index`].
const INDEX_PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

impl TestRegistry {
    /// Pushes an OCI image (one gzip'd layer holding /hello.txt = `content`) as `repo:tag`.
    ///
    /// Returns the manifest digest the registry stores, checked with a HEAD.
    pub async fn push_image(&self, repo: &str, tag: &str, content: &[u8]) -> anyhow::Result<String> {
        self.push_image_with(repo, tag, &ImageSpec::new(content)).await
    }

    /// Pushes an image described by `spec` as `repo:tag`; returns its manifest digest.
    pub async fn push_image_with(&self, repo: &str, tag: &str, spec: &ImageSpec) -> anyhow::Result<String> {
        let client = self.oci_client()?;
        let reference = Reference::with_tag(self.host(), repo.to_owned(), tag.to_owned());
        let image = BuiltImage::build(spec)?;
        self.push_built(&client, &reference, &image).await?;
        let digest = sha256_digest(&image.manifest);
        self.check_digest(&client, &reference, &digest).await?;
        Ok(digest)
    }

    /// Pushes an OCI index for linux/amd64 and linux/arm64 (each child pushed first) as
    /// `repo:tag`; returns the index digest.
    pub async fn push_index(&self, repo: &str, tag: &str) -> anyhow::Result<String> {
        Ok(self.push_index_detailed(repo, tag).await?.digest)
    }

    /// Like [`Self::push_index`], also returning the child manifests' digests.
    pub async fn push_index_detailed(&self, repo: &str, tag: &str) -> anyhow::Result<PushedIndex> {
        let client = self.oci_client()?;
        let mut children = Vec::new();
        let mut manifests = Vec::new();
        for (os, arch) in INDEX_PLATFORMS {
            let mut spec = ImageSpec::new(format!("hello from {os}/{arch}\n").as_bytes());
            spec.os = os.to_owned();
            spec.architecture = arch.to_owned();
            let image = BuiltImage::build(&spec)?;
            let digest = sha256_digest(&image.manifest);
            let by_digest = Reference::with_digest(self.host(), repo.to_owned(), digest.clone());
            self.push_built(&client, &by_digest, &image).await?;
            children.push((
                OCI_MANIFEST,
                digest.clone(),
                image.manifest.len(),
                os.to_owned(),
                arch.to_owned(),
            ));
            manifests.push(PushedManifest {
                platform: format!("{os}/{arch}"),
                digest,
            });
        }
        let index = index_bytes(&children)?;
        let digest = sha256_digest(&index);
        let reference = Reference::with_tag(self.host(), repo.to_owned(), tag.to_owned());
        client
            .push_manifest_raw(
                &reference,
                index,
                http::HeaderValue::from_static(crate::image::OCI_INDEX),
            )
            .await
            .context("push index")?;
        self.check_digest(&client, &reference, &digest).await?;
        Ok(PushedIndex { digest, manifests })
    }

    /// An oci-client for this registry: its CA trusted, plain HTTP when anonymous.
    fn oci_client(&self) -> anyhow::Result<Client> {
        // oci-client builds its own reqwest client, which needs a process-wide provider.
        crate::install_crypto_provider();
        let config = ClientConfig {
            protocol: if self.is_tls() {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            extra_root_certificates: self
                .ca_pem()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.into_bytes(),
                })
                .into_iter()
                .collect(),
            ..ClientConfig::default()
        };
        Client::try_from(config).context("build oci client")
    }

    fn oci_auth(&self) -> OciAuth {
        match self.auth() {
            RegistryAuth::Anonymous => OciAuth::Anonymous,
            RegistryAuth::Basic | RegistryAuth::Token => {
                OciAuth::Basic(Self::USERNAME.to_owned(), Self::PASSWORD.to_owned())
            }
        }
    }

    /// Uploads layer and config blobs, then the exact manifest bytes.
    async fn push_built(
        &self,
        client: &Client,
        reference: &Reference,
        image: &BuiltImage,
    ) -> anyhow::Result<()> {
        // Authenticate explicitly: the implicit path swallows token errors.
        client
            .auth(reference, &self.oci_auth(), RegistryOperation::Push)
            .await
            .context("authenticate for push")?;
        client
            .push_blob(reference, image.layer.clone(), &image.layer_digest)
            .await
            .context("push layer")?;
        client
            .push_blob(reference, image.config.clone(), &image.config_digest)
            .await
            .context("push config")?;
        client
            .push_manifest_raw(
                reference,
                image.manifest.clone(),
                http::HeaderValue::from_static(image.manifest_media_type),
            )
            .await
            .context("push manifest")?;
        Ok(())
    }

    /// HEAD with all four manifest types in Accept; the registry's digest must be ours.
    async fn check_digest(
        &self,
        client: &Client,
        reference: &Reference,
        expected: &str,
    ) -> anyhow::Result<()> {
        let stored = client
            .fetch_manifest_digest(reference, &self.oci_auth())
            .await
            .context("HEAD pushed manifest")?;
        if stored != expected {
            bail!("registry stores {reference} as {stored}, pushed {expected}");
        }
        Ok(())
    }
}
