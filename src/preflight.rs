//! [`Build::preflight`]: do the build's two images exist in their registries?

use crate::Build;
use crate::error::Result;
use kaniko_builder_k8s::preflight::{self, PreflightReport};

impl Build {
    /// Asks the registries whether the executor and init images of the build's
    /// [`JobOptions`](crate::JobOptions) exist, with this build's registry credentials and
    /// settings, so a bad pin is a clear error before any Job instead of an image pull back-off
    /// later. Touches no cluster. [`PreflightReport::into_result`] turns the report into the
    /// digests or an error naming `executor_image` or `init_image` and the reference.
    ///
    /// # Errors
    /// [`Error::Manifest`](crate::Error::Manifest) when an image is not a valid reference,
    /// [`Error::Registry`](crate::Error::Registry) when the registry client cannot be built. A
    /// registry that cannot answer for an image is reported in the image's status, never as
    /// missing.
    pub async fn preflight(&self) -> Result<PreflightReport> {
        let registry = self.opts.registry([&self.config]).await?;
        Ok(preflight::check_images(&self.opts.job_options, &registry).await?)
    }
}
