//! The docker `config.json` a build's Secret holds: only its destinations' credentials.

use std::collections::BTreeMap;

use base64::Engine as _;
use kaniko_builder_core::ImageRef;
use kaniko_builder_core::image_ref::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};
use secrecy::ExposeSecret as _;

use crate::{Credentials, RegistryClient, Result};

impl RegistryClient {
    /// A docker `config.json` holding only the entries of `destinations`' registries, with
    /// credential helpers resolved (a cluster has none of this machine's helpers), so no other
    /// registry's secret leaves this machine. `None` when every destination is anonymous.
    ///
    /// # Errors
    /// A credential helper missing or failing ([`Error::CredentialHelperMissing`](crate::Error::CredentialHelperMissing),
    /// [`Error::CredentialHelperFailed`](crate::Error::CredentialHelperFailed)).
    pub async fn secret_docker_config<'a>(
        &self,
        destinations: impl IntoIterator<Item = &'a ImageRef>,
    ) -> Result<Option<Vec<u8>>> {
        let mut auths = BTreeMap::new();
        for dest in destinations {
            let key = if dest.registry() == DOCKER_HUB {
                DOCKER_HUB_CONFIG_KEY.to_owned()
            } else {
                dest.registry().to_owned()
            };
            if auths.contains_key(&key) {
                continue;
            }
            let entry = match self.credentials_for(dest).await? {
                Credentials::Basic { username, password } => serde_json::json!({
                    "auth": base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose_secret())),
                }),
                Credentials::IdentityToken { token } => {
                    serde_json::json!({ "identitytoken": token.expose_secret() })
                }
                Credentials::RegistryToken { token } => {
                    serde_json::json!({ "registrytoken": token.expose_secret() })
                }
                _ => continue,
            };
            auths.insert(key, entry);
        }
        if auths.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::json!({ "auths": auths }).to_string().into_bytes(),
        ))
    }
}
