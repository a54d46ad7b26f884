//! Kubeconfig documents for the cluster and `kube::Client`s built from them.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How a kubeconfig user authenticates.
pub(crate) enum Credentials<'a> {
    /// `Authorization: Bearer TOKEN`.
    Token(&'a str),
    /// A client certificate and its key, both PEM.
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
}

/// The name of the single cluster entry.
const CLUSTER: &str = "kb-test";

/// A kubeconfig (JSON, which every YAML reader accepts) with one cluster and one context per
/// user, named after the user; `users[0]` is the current context.
pub(crate) fn render(server: &str, ca_pem: &str, users: &[(&str, Credentials<'_>)]) -> serde_json::Value {
    let b64 = |s: &str| STANDARD.encode(s);
    let user_entries: Vec<serde_json::Value> = users
        .iter()
        .map(|(name, creds)| {
            let user = match creds {
                Credentials::Token(token) => serde_json::json!({ "token": token }),
                Credentials::ClientCert { cert_pem, key_pem } => serde_json::json!({
                    "client-certificate-data": b64(cert_pem),
                    "client-key-data": b64(key_pem),
                }),
            };
            serde_json::json!({ "name": name, "user": user })
        })
        .collect();
    let contexts: Vec<serde_json::Value> = users
        .iter()
        .map(|(name, _)| serde_json::json!({ "name": name, "context": { "cluster": CLUSTER, "user": name } }))
        .collect();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CLUSTER,
            "cluster": { "server": server, "certificate-authority-data": b64(ca_pem) },
        }],
        "users": user_entries,
        "contexts": contexts,
        "current-context": users.first().map(|(name, _)| *name).unwrap_or_default(),
    })
}

/// A client for `context` of `kubeconfig` (a [`render`] result).
pub(crate) async fn client(kubeconfig: serde_json::Value, context: &str) -> anyhow::Result<kube::Client> {
    crate::install_crypto_provider();
    let kubeconfig: Kubeconfig = serde_json::from_value(kubeconfig).context("parse generated kubeconfig")?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("kube config from generated kubeconfig")?;
    // kube picks HTTPS_PROXY from the environment; the cluster is on loopback.
    config.proxy_url = None;
    kube::Client::try_from(config).context("build kube client")
}
