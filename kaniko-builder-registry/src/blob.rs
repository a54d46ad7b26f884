//! Blob uploads of a body in memory: a monolithic `POST` + `PUT` as the distribution spec
//! describes, with the same authentication as probes but a `pull,push` token scope. Streamed
//! uploads are in `upload.rs`.

use bytes::Bytes;
use kaniko_builder_core::{Digest, ImageRef};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use crate::client::{RegistryClient, RegistryState};
use crate::error::{Error, Result};

pub(crate) const PUSH: &str = "pull,push";

impl RegistryClient {
    /// Uploads `data` as a blob to `repository`'s repository (its tag or digest is ignored) and
    /// returns the blob's sha256 digest. A blob the registry already has is not sent again (one
    /// `HEAD`); otherwise `POST /v2/<name>/blobs/uploads/` then one `PUT` of the whole body.
    ///
    /// The token asked for has scope `repository:<name>:pull,push`.
    ///
    /// For small blobs: the whole body goes in one request, under the registry's request
    /// [`timeout`](crate::RegistrySettings::timeout). A large blob, or one being produced, goes
    /// with [`push_blob_stream`](Self::push_blob_stream).
    ///
    /// # Errors
    /// As for [`probe`](Self::probe) ([`Error::is_unauthorized`] when the credentials may not
    /// push); [`Error::UnexpectedStatus`] for an answer the protocol does not allow (a `202`
    /// without a usable `Location` is reported as status 202); [`Error::BadDigest`] when the
    /// registry names another digest than the content's.
    #[tracing::instrument(level = "debug", skip(self, data), fields(repository = %repository.name(), bytes = data.len()))]
    pub async fn push_blob(&self, repository: &ImageRef, data: Bytes) -> Result<Digest> {
        let st = self.state_for(repository);
        let name = repository.repository();
        let digest = Digest::sha256(&data);
        let blob_url = st.url(&format!("/v2/{name}/blobs/{digest}"));
        let head = self
            .send_scoped(&st, name, PUSH, || st.http.head(&blob_url))
            .await?;
        match head.status() {
            StatusCode::OK => {
                tracing::debug!(%digest, "blob already present");
                return Ok(digest);
            }
            StatusCode::NOT_FOUND => {}
            other => return Err(unexpected(&st, name, other)),
        }

        let start_url = st.url(&format!("/v2/{name}/blobs/uploads/"));
        let started = self
            .send_scoped(&st, name, PUSH, || {
                st.http.post(&start_url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(unexpected(&st, name, started.status()));
        }
        let location = started
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| upload_url(&st, l, &digest))
            .ok_or_else(|| unexpected(&st, name, StatusCode::ACCEPTED))?;

        let put = self
            .send_scoped(&st, name, PUSH, || {
                st.http
                    .put(location.as_str())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, data.len())
                    .body(data.clone())
            })
            .await?;
        if put.status() != StatusCode::CREATED {
            return Err(unexpected(&st, name, put.status()));
        }
        if let Some(said) = put
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && said != digest.to_string()
        {
            return Err(Error::BadDigest {
                registry: st.name.clone(),
                reference: format!("{}@{digest}", repository.name()),
                problem: format!("registry stored the blob as {said}"),
            });
        }
        tracing::debug!(%digest, "blob uploaded");
        Ok(digest)
    }
}

pub(crate) fn unexpected(st: &RegistryState, repository: &str, status: StatusCode) -> Error {
    Error::UnexpectedStatus {
        registry: st.name.clone(),
        repository: repository.to_owned(),
        status: status.as_u16(),
    }
}

/// The upload `Location` (absolute, or relative to the registry) with `digest=` added to its
/// query; `None` when it is not a URL on the registry's scheme.
fn upload_url(st: &RegistryState, location: &str, digest: &Digest) -> Option<url::Url> {
    let base = url::Url::parse(&st.url("/")).ok()?;
    let mut url = base.join(location).ok()?;
    if url.scheme() != base.scheme() {
        return None;
    }
    url.query_pairs_mut().append_pair("digest", &digest.to_string());
    Some(url)
}
