//! The registry client as the core flow's [`ImageProbe`] and [`BlobStore`].

use kaniko_builder_core::flow::{BlobBody, BlobStore, ImageProbe, RegistryFailure};
use kaniko_builder_core::{Digest, ImageRef, Platform, Probe};

use crate::client::RegistryClient;
use crate::error::Error;

impl From<Error> for RegistryFailure {
    fn from(e: Error) -> Self {
        let (unauthorized, retryable) = (e.is_unauthorized(), e.is_retryable());
        let cause = e.kind();
        RegistryFailure::new(e, unauthorized, retryable).with_cause(cause)
    }
}

#[async_trait::async_trait]
impl ImageProbe for RegistryClient {
    async fn probe(&self, image: &ImageRef) -> Result<Probe, RegistryFailure> {
        RegistryClient::probe(self, image).await.map_err(Into::into)
    }

    async fn index_platforms(&self, image: &ImageRef) -> Result<Vec<Platform>, RegistryFailure> {
        RegistryClient::index_platforms(self, image)
            .await
            .map_err(Into::into)
    }

    async fn push_index(&self, image: &ImageRef, manifests: &[Digest]) -> Result<Digest, RegistryFailure> {
        RegistryClient::push_index(self, image, manifests)
            .await
            .map_err(Into::into)
    }
}

#[async_trait::async_trait]
impl BlobStore for RegistryClient {
    async fn push_blob(&self, repository: &ImageRef, body: BlobBody) -> Result<Digest, RegistryFailure> {
        RegistryClient::push_blob_stream(self, repository, body)
            .await
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_classification() {
        let e = Error::Unauthorized {
            registry: "r".into(),
            repository: "app".into(),
            status: 401,
            anonymous: false,
        };
        let f = RegistryFailure::from(e);
        assert!(f.is_unauthorized() && !f.is_retryable());
        assert!(f.get_ref().downcast_ref::<Error>().is_some());
        let e = Error::Server {
            registry: "r".into(),
            repository: "app".into(),
            status: 503,
            attempts: 3,
        };
        assert!(RegistryFailure::from(e).is_retryable());
    }
}
