//! Kubeconfig files for other users of a [`TestCluster`], for programs a test runs as child
//! processes (`KUBECONFIG=…`): [`TestCluster::write_token_kubeconfig`].

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::TestCluster;

impl TestCluster {
    /// Writes a kubeconfig file at `path` that authenticates with `token` (e.g. a
    /// ServiceAccount's, from [`TestCluster::service_account_token`]) against this cluster;
    /// one context, `token`, current. The file holds the token: keep it in a temp dir.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_token_kubeconfig(&self, path: &Path, token: &str) -> anyhow::Result<()> {
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "kb-test",
                "cluster": {
                    "server": self.server_url(),
                    "certificate-authority-data": STANDARD.encode(self.ca_pem()),
                },
            }],
            "users": [{ "name": "token", "user": { "token": token } }],
            "contexts": [{ "name": "token", "context": { "cluster": "kb-test", "user": "token" } }],
            "current-context": "token",
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("write kubeconfig {}", path.display()))
    }
}
