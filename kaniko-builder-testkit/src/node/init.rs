//! `kaniko-init`, run for real: what [`INIT_SCRIPT`](kaniko_builder_k8s::manifest::scripts::INIT_SCRIPT)
//! does, with [`RegistryClient`] in place of `crane` (same three answers: exists → skip, 404 →
//! build, anything else → fail loudly).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use kaniko_builder_core::ImageRef;
use kaniko_builder_k8s::manifest::{DECISION_FILE, DOCKER_CONFIG_DIR, UPLOAD_MARKER};
use kaniko_builder_registry::{
    Credentials, DockerConfig, Error as RegistryError, Probe, RegistryClient, RegistrySettings, TransportKind,
};

use super::container::Ctx;

/// How the node talks to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// HTTPS, verified against the system roots and the node's registry CAs.
    Verify,
    /// HTTPS without verification (`KB_INSECURE=true`, like `crane --insecure`).
    SkipVerify,
    /// Plain HTTP.
    PlainHttp,
}

/// A failure of the init container: its message goes to the termination log.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

/// Runs `kaniko-init`; returns its exit code (its termination log is written).
pub(super) async fn run(ctx: &Ctx<'_>) -> i32 {
    match decide(ctx).await {
        Ok(decision) => {
            if let Err(e) = tokio::fs::write(ctx.termination_log, &decision).await {
                tracing::warn!(error = %e, "write termination log");
            }
            ctx.log.line(&format!("kaniko-init: {decision}")).await;
            0
        }
        Err(Fail(message)) => {
            ctx.log.line(&format!("kaniko-init: {message}")).await;
            let json = format!(
                "{{\"decision\":\"error\",\"message\":\"{}\"}}",
                script_sanitize(&message)
            );
            if let Err(e) = tokio::fs::write(ctx.termination_log, json).await {
                tracing::warn!(error = %e, "write termination log");
            }
            1
        }
    }
}

/// The script's `tr '\r\n\t' '   ' | sed 's/["\\]//g' | cut -c1-1024`.
fn script_sanitize(message: &str) -> String {
    message
        .chars()
        .map(|c| if matches!(c, '\r' | '\n' | '\t') { ' ' } else { c })
        .filter(|c| !matches!(c, '"' | '\\'))
        .take(1024)
        .collect()
}

async fn decide(ctx: &Ctx<'_>) -> Result<String, Fail> {
    let force: String = ctx
        .env("FORCE_BUILD")
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    let forced = match force.as_str() {
        "Y" | "y" | "yes" | "true" | "1" => true,
        "N" | "n" | "no" | "false" | "0" | "" => false,
        other => {
            return Err(Fail(format!(
                "FORCE_BUILD={other} is not one of Y y yes true 1 N n no false 0 or empty"
            )));
        }
    };
    let destination = ctx.env("KB_DESTINATION").unwrap_or_default().to_owned();
    let insecure = ctx.env("KB_INSECURE") == Some("true");
    let image = ImageRef::parse(&destination).map_err(|e| {
        Fail(format!(
            "cannot tell whether {destination} exists, not building: {e}"
        ))
    })?;
    let docker_config = read_docker_config(ctx).await.map_err(|e| {
        Fail(format!(
            "cannot tell whether {destination} exists, not building: {e:#}"
        ))
    })?;
    let registry = Registry {
        ctx,
        image: &image,
        docker_config,
        insecure,
    };

    let (decision, transport) = if forced {
        (r#"{"decision":"build","reason":"forced"}"#.to_owned(), None)
    } else {
        let (probe, transport) = registry.probe().await.map_err(|e| {
            Fail(format!(
                "cannot tell whether {destination} exists, not building: {}",
                error_chain(&e)
            ))
        })?;
        match probe {
            Probe::Exists(manifest) => (
                format!(r#"{{"decision":"skip","digest":"{}"}}"#, manifest.digest),
                Some(transport),
            ),
            _ => (
                r#"{"decision":"build","reason":"absent"}"#.to_owned(),
                Some(transport),
            ),
        }
    };

    let state = ctx
        .resolve(DECISION_FILE)
        .ok_or_else(|| Fail(format!("cannot write {DECISION_FILE}")))?;
    tokio::fs::write(&state, format!("{decision}\n"))
        .await
        .map_err(|_| Fail(format!("cannot write {DECISION_FILE}")))?;

    if decision.contains(r#""build""#) && ctx.env("KB_CONTEXT_KIND") == Some("upload") {
        let workspace = ctx
            .resolve(kaniko_builder_k8s::manifest::CONTEXT_DIR)
            .ok_or_else(|| Fail("no /workspace volume for the upload".to_owned()))?;
        match ctx.env("KB_CONTEXT_BLOB").filter(|b| !b.is_empty()) {
            Some(blob) => {
                let repo = format!("{}/{}", image.registry(), image.repository());
                let bytes = registry
                    .fetch_blob(blob, transport)
                    .await
                    .map_err(|e| Fail(format!("cannot fetch the context blob {repo}@{blob}: {e:#}")))?;
                unpack(bytes, workspace)
                    .await
                    .map_err(|e| Fail(format!("cannot unpack the context blob {blob}: {e:#}")))?;
            }
            None => {
                ctx.log
                    .line(&format!(
                        "kaniko-init: waiting for the context upload to finish ({UPLOAD_MARKER})"
                    ))
                    .await;
                let marker = ctx
                    .resolve(UPLOAD_MARKER)
                    .ok_or_else(|| Fail(format!("{UPLOAD_MARKER} is not on a volume")))?;
                wait_for_marker(&marker).await;
                tokio::fs::remove_file(&marker).await?;
            }
        }
    }
    Ok(decision)
}

/// The container's own wait loop (the script polls every second; the stand-in a bit faster).
async fn wait_for_marker(marker: &Path) {
    while !tokio::fs::try_exists(marker).await.unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `$DOCKER_CONFIG/config.json` through the container's mounts; anonymous when absent, as
/// crane treats a missing config.
async fn read_docker_config(ctx: &Ctx<'_>) -> anyhow::Result<DockerConfig> {
    let dir = ctx.env("DOCKER_CONFIG").unwrap_or(DOCKER_CONFIG_DIR);
    let Some(path) = ctx.resolve(&format!("{dir}/config.json")) else {
        return Ok(DockerConfig::anonymous());
    };
    match tokio::fs::read_to_string(&path).await {
        Ok(json) => DockerConfig::from_json(&json).context("docker config.json from the Secret"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::anonymous()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Display of an error and its sources, `: `-separated.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

struct Registry<'a> {
    ctx: &'a Ctx<'a>,
    image: &'a ImageRef,
    docker_config: DockerConfig,
    insecure: bool,
}

impl Registry<'_> {
    /// The transports to try, in order: the node's insecure registries speak HTTP; with
    /// `KB_INSECURE` HTTPS without verification first, then HTTP (as crane does for
    /// `--insecure`); else verified HTTPS.
    fn transports(&self) -> Vec<Transport> {
        if self.ctx.shared.options.is_insecure(self.image.registry()) {
            vec![Transport::PlainHttp]
        } else if self.insecure {
            vec![Transport::SkipVerify, Transport::PlainHttp]
        } else {
            vec![Transport::Verify]
        }
    }

    fn client(&self, transport: Transport) -> Result<RegistryClient, RegistryError> {
        let mut settings = RegistrySettings::default();
        for pem in &self.ctx.shared.options.registry_cas {
            settings = settings.ca_pem(pem.clone());
        }
        settings = match transport {
            Transport::Verify => settings,
            Transport::SkipVerify => settings.skip_tls_verify(true),
            Transport::PlainHttp => settings.plain_http(true),
        };
        RegistryClient::builder()
            .docker_config(self.docker_config.clone())
            .registry(self.image.registry(), settings)
            .build()
    }

    async fn probe(&self) -> Result<(Probe, Transport), RegistryError> {
        let transports = self.transports();
        let mut last = None;
        for transport in transports {
            match self.client(transport)?.probe(self.image).await {
                Ok(probe) => return Ok((probe, transport)),
                Err(
                    e @ RegistryError::Transport {
                        kind: TransportKind::Tls,
                        ..
                    },
                ) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one transport was tried"))
    }

    /// `GET /v2/<repo>/blobs/<digest>` with the Secret's credentials (via oci-client).
    async fn fetch_blob(&self, digest: &str, known: Option<Transport>) -> anyhow::Result<Vec<u8>> {
        let transports = known.map_or_else(|| self.transports(), |t| vec![t]);
        let credentials = self.client(transports[0])?.credentials_for(self.image).await?;
        let auth = match credentials {
            Credentials::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username, password)
            }
            _ => anyhow::bail!("the stand-in node fetches blobs with user/password credentials only"),
        };
        let mut last = None;
        for transport in transports {
            match self.fetch_with(transport, &auth, digest).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one transport was tried"))
    }

    async fn fetch_with(
        &self,
        transport: Transport,
        auth: &oci_client::secrets::RegistryAuth,
        digest: &str,
    ) -> anyhow::Result<Vec<u8>> {
        use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
        let host = self.image.registry_host().to_owned();
        let config = ClientConfig {
            protocol: if transport == Transport::PlainHttp {
                ClientProtocol::HttpsExcept(vec![host.clone()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: transport == Transport::SkipVerify,
            extra_root_certificates: self
                .ctx
                .shared
                .options
                .registry_cas
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone().into_bytes(),
                })
                .collect(),
            ..ClientConfig::default()
        };
        crate::install_crypto_provider();
        let client = oci_client::Client::try_from(config).context("build oci client")?;
        let reference =
            oci_client::Reference::with_digest(host, self.image.repository().to_owned(), digest.to_owned());
        client
            .auth(&reference, auth, oci_client::RegistryOperation::Pull)
            .await
            .context("authenticate")?;
        let mut out = Vec::new();
        client
            .pull_blob(&reference, digest, &mut out)
            .await
            .context("GET blob")?;
        Ok(out)
    }
}

/// `tar -xzf blob -C workspace`.
async fn unpack(bytes: Vec<u8>, workspace: PathBuf) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        archive.unpack(&workspace).context("unpack tar.gz")
    })
    .await
    .context("unpack task")?
}

#[cfg(test)]
mod tests {
    use super::script_sanitize;

    #[test]
    fn messages_are_sanitized_like_the_script_does() {
        assert_eq!(script_sanitize("a\"b\\c\nd\te"), "abc d e");
        assert_eq!(script_sanitize(&"x".repeat(2000)).len(), 1024);
    }
}
