//! Manifest probes: "does `image:tag` exist?" with a three-valued answer.

use futures::StreamExt as _;
use kaniko_builder_core::media_types::ALL_MANIFESTS;
use kaniko_builder_core::{Digest, ImageRef, Manifest, Probe};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use crate::client::{RegistryClient, RegistryState, read_body};
use crate::error::{Error, Result};

const DIGEST_HEADER: &str = "docker-content-digest";

impl RegistryClient {
    /// Asks the registry whether the image's manifest exists: one `HEAD` with the four manifest
    /// media types (plus one `GET` only when a 200 lacks `Docker-Content-Digest`).
    ///
    /// A 404 is [`Probe::Absent`]. Everything that is not a clear answer is an error, never
    /// "absent": 401/403 after authenticating, 429 and 5xx once the retries are spent, network
    /// and TLS failures. A pinned digest is verified against what the registry serves.
    ///
    /// # Errors
    /// See [`Error`]; [`Error::is_unauthorized`] and [`Error::is_retryable`] classify them.
    #[tracing::instrument(level = "debug", skip(self), fields(image = %image))]
    pub async fn probe(&self, image: &ImageRef) -> Result<Probe> {
        let st = self.state_for(image);
        let repository = image.repository();
        let url = st.url(&format!(
            "/v2/{repository}/manifests/{}",
            image.manifest_reference()
        ));
        let accept = accept_header();
        let resp = self
            .send(&st, repository, || st.http.head(&url).header(ACCEPT, accept))
            .await?;
        let status = resp.status();
        tracing::debug!(status = status.as_u16(), "manifest HEAD");
        if !found(&st, repository, status)? {
            return Ok(Probe::Absent);
        }
        let media_type = header(&resp, CONTENT_TYPE.as_str()).unwrap_or_default();
        let size = header(&resp, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
        let digest = match header(&resp, DIGEST_HEADER) {
            Some(value) => Digest::parse(&value).map_err(|e| bad_digest(&st, image, e.to_string()))?,
            None => return self.probe_by_get(&st, image, &url, accept).await,
        };
        check_pinned(&st, image, &digest)?;
        Ok(Probe::Exists(Manifest::new(digest, media_type, size)))
    }

    /// The fallback for registries that omit `Docker-Content-Digest` on HEAD: fetch the manifest
    /// and hash its bytes.
    async fn probe_by_get(
        &self,
        st: &RegistryState,
        image: &ImageRef,
        url: &str,
        accept: &str,
    ) -> Result<Probe> {
        let repository = image.repository();
        let resp = self
            .send(st, repository, || st.http.get(url).header(ACCEPT, accept))
            .await?;
        if !found(st, repository, resp.status())? {
            return Ok(Probe::Absent);
        }
        let media_type = header(&resp, CONTENT_TYPE.as_str()).unwrap_or_default();
        let header_digest = header(&resp, DIGEST_HEADER);
        let body = read_body(resp).await.map_err(|p| bad_digest(st, image, p))?;
        let digest = match image.digest() {
            Some(pinned) if pinned.matches(&body) => pinned.clone(),
            Some(pinned) => {
                return Err(bad_digest(
                    st,
                    image,
                    format!("content does not hash to the pinned {pinned}"),
                ));
            }
            None => Digest::sha256(&body),
        };
        if let Some(h) = header_digest
            && h != digest.to_string()
        {
            return Err(bad_digest(
                st,
                image,
                format!("header says {h}, content hashes to {digest}"),
            ));
        }
        Ok(Probe::Exists(Manifest::new(
            digest,
            media_type,
            Some(body.len() as u64),
        )))
    }

    /// Probes many images with bounded concurrency over pooled connections; one token fetch per
    /// repository. Results come back in input order. The future is `Send`: it can be spawned, or
    /// held across an `.await` in a spawned future.
    pub fn probe_many<'a, I>(&self, images: I) -> impl Future<Output = Vec<Result<Probe>>> + Send
    where
        I: IntoIterator<Item = &'a ImageRef>,
    {
        // Collected first, and driven without a closure over the borrowed images: a
        // `stream::iter(..).map(|image| self.probe(image)).buffered(n)` future is not provably
        // `Send` (its closure's signature is not general enough over the images' lifetime).
        let images: Vec<&'a ImageRef> = images.into_iter().collect();
        let limit = self.inner.concurrency;
        async move {
            let mut results = Vec::with_capacity(images.len());
            let mut running = futures::stream::FuturesOrdered::new();
            let mut pending = images.into_iter();
            loop {
                while running.len() < limit {
                    let Some(image) = pending.next() else { break };
                    running.push_back(self.probe(image));
                }
                match running.next().await {
                    Some(result) => results.push(result),
                    None => return results,
                }
            }
        }
    }
}

/// 200 is found, 404 is absent; any other status is an error, never "absent".
fn found(st: &RegistryState, repository: &str, status: StatusCode) -> Result<bool> {
    match status {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        other => Err(Error::UnexpectedStatus {
            registry: st.name.clone(),
            repository: repository.to_owned(),
            status: other.as_u16(),
        }),
    }
}

/// The four manifest media types, joined once.
fn accept_header() -> &'static str {
    static ACCEPT_ALL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ACCEPT_ALL.get_or_init(|| ALL_MANIFESTS.join(", "))
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn bad_digest(st: &RegistryState, image: &ImageRef, problem: String) -> Error {
    Error::BadDigest {
        registry: st.name.clone(),
        reference: image.to_string(),
        problem,
    }
}

fn check_pinned(st: &RegistryState, image: &ImageRef, served: &Digest) -> Result<()> {
    match image.digest() {
        Some(pinned) if pinned != served => Err(bad_digest(
            st,
            image,
            format!("registry serves {served}, reference pins {pinned}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `probe_many`'s future is `Send`, so a caller can spawn it or hold it in a spawned future.
    #[allow(dead_code)]
    fn probe_many_is_send(client: &RegistryClient, images: &[ImageRef]) {
        fn send<T: Send>(_: T) {}
        send(client.probe_many(images));
        send(client.probe_many(images.iter()));
        let refs: Vec<&ImageRef> = images.iter().collect();
        send(client.probe_many(refs));
    }
}
