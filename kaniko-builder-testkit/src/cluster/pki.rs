//! Keys, certificates and credentials of a test cluster, written into its directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ring::rand::SecureRandom as _;

use crate::tls::TestCa;

/// The names the API server's serving certificate is valid for: loopback for the tests,
/// the in-cluster names and the first service IP for Pods.
const APISERVER_NAMES: &[&str] = &[
    "kubernetes",
    "127.0.0.1",
    "localhost",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.0.0.1",
];

/// User name of the admin (token and client certificate); group `system:masters`.
pub(crate) const ADMIN_USER: &str = "kb-admin";
/// User name the API server presents (client certificate) when it calls a kubelet endpoint.
pub(crate) const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";
const MASTERS: &str = "system:masters";

/// Everything `generate` made: the CA, the admin credentials and the file paths.
pub(crate) struct Pki {
    pub(crate) ca: TestCa,
    pub(crate) admin_token: String,
    pub(crate) admin_cert_pem: String,
    pub(crate) admin_key_pem: String,
    pub(crate) files: PkiFiles,
}

/// Paths of the files the control-plane flags point at.
#[derive(Debug, Clone)]
pub(crate) struct PkiFiles {
    pub(crate) ca_cert: PathBuf,
    pub(crate) apiserver_cert: PathBuf,
    pub(crate) apiserver_key: PathBuf,
    pub(crate) kubelet_client_cert: PathBuf,
    pub(crate) kubelet_client_key: PathBuf,
    /// Serving certificate shared by the controller manager and the scheduler.
    pub(crate) component_cert: PathBuf,
    pub(crate) component_key: PathBuf,
    /// Service-account signing key (P-256, PKCS#8).
    pub(crate) sa_key: PathBuf,
    /// Its public half (PKIX): the 1.20 API server's `--service-account-key-file` does not read
    /// public keys out of a PKCS#8 private key file.
    pub(crate) sa_pub: PathBuf,
    pub(crate) tokens: PathBuf,
}

impl PkiFiles {
    pub(crate) fn in_dir(dir: &Path) -> PkiFiles {
        let p = |name: &str| dir.join(name);
        PkiFiles {
            ca_cert: p("ca.crt"),
            apiserver_cert: p("apiserver.crt"),
            apiserver_key: p("apiserver.key"),
            kubelet_client_cert: p("apiserver-kubelet-client.crt"),
            kubelet_client_key: p("apiserver-kubelet-client.key"),
            component_cert: p("components.crt"),
            component_key: p("components.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
            tokens: p("tokens.csv"),
        }
    }
}

/// Generates the CA, serving and client certificates, the service-account key pair and the
/// token file (admin token in `system:masters`) under `dir/pki`.
pub(crate) fn generate(dir: &Path) -> anyhow::Result<Pki> {
    let pki_dir = dir.join("pki");
    std::fs::create_dir_all(&pki_dir).context("create pki dir")?;
    let files = PkiFiles::in_dir(&pki_dir);
    let write = |path: &Path, contents: &str| {
        std::fs::write(path, contents).with_context(|| format!("write {}", path.display()))
    };

    let ca = TestCa::new();
    write(&files.ca_cert, &ca.ca_pem())?;
    let (cert, key) = ca.issue_server_cert_for(APISERVER_NAMES);
    write(&files.apiserver_cert, &cert)?;
    write(&files.apiserver_key, &key)?;
    let (cert, key) = ca.issue_client_cert(APISERVER_KUBELET_CLIENT, Some(MASTERS));
    write(&files.kubelet_client_cert, &cert)?;
    write(&files.kubelet_client_key, &key)?;
    let (cert, key) = ca.issue_server_cert();
    write(&files.component_cert, &cert)?;
    write(&files.component_key, &key)?;

    let sa_key = rcgen::KeyPair::generate().context("generate the service-account key")?;
    crate::ledger::register_pem_key("TestCluster service-account signing key", &sa_key.serialize_pem());
    write(&files.sa_key, &sa_key.serialize_pem())?;
    write(&files.sa_pub, &sa_key.public_key_pem())?;

    let admin_token = random_token()?;
    crate::ledger::register("TestCluster admin token", &admin_token);
    // CSV: token,user,uid,"group1,group2"
    write(
        &files.tokens,
        &format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"{MASTERS}\"\n"),
    )?;
    let (admin_cert_pem, admin_key_pem) = ca.issue_client_cert(ADMIN_USER, Some(MASTERS));

    Ok(Pki {
        ca,
        admin_token,
        admin_cert_pem,
        admin_key_pem,
        files,
    })
}

/// 32 random hex digits.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("system random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
