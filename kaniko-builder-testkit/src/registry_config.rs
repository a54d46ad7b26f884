//! The YAML config for a distribution 2.8 registry process.

use std::path::Path;

/// How the registry authenticates, with the files it needs.
pub(crate) enum AuthConfig<'a> {
    None,
    Htpasswd {
        path: &'a Path,
    },
    Token {
        realm: &'a str,
        service: &'a str,
        issuer: &'a str,
        root_cert_bundle: &'a Path,
    },
}

/// TLS files, when served over HTTPS.
pub(crate) struct TlsFiles<'a> {
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
}

/// Renders the config. Values are written as JSON strings, which YAML reads as quoted
/// scalars, so paths need no escaping rules of their own.
pub(crate) fn render(port: u16, storage: &Path, tls: Option<&TlsFiles<'_>>, auth: &AuthConfig<'_>) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let p = |path: &Path| q(&path.to_string_lossy());
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: kb-testkit-http-secret\n",
        storage = p(storage),
        addr = q(&format!("127.0.0.1:{port}")),
    );
    if let Some(tls) = tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            p(tls.cert),
            p(tls.key)
        ));
    }
    match auth {
        AuthConfig::None => {}
        AuthConfig::Htpasswd { path } => yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: kb-test-realm\n    path: {}\n",
            p(path)
        )),
        AuthConfig::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                q(realm),
                q(service),
                q(issuer),
                p(root_cert_bundle)
            ));
        }
    }
    yaml
}
