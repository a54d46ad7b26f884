//! Command lines of the control-plane components (pure: paths and ports in, arguments out).

use std::path::Path;

use super::pki::PkiFiles;

/// The API server's service-account issuer, also its default token audience.
pub(crate) const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc";
/// Service IPs; 10.0.0.1 is the `kubernetes` Service (in the serving certificate's names).
const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";
/// 1.20's default admission chain plus NodeRestriction, for a cluster whose nodes are stand-ins.
const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,\
                                 NodeRestriction,Priority,ResourceQuota";

/// `A=true,B=false`.
pub(crate) fn feature_gates(gates: &[(String, bool)]) -> String {
    gates
        .iter()
        .map(|(name, on)| format!("{name}={on}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn path(flag: &str, p: &Path) -> String {
    format!("--{flag}={}", p.display())
}

/// etcd, single member on loopback, no fsync (its data dies with the test). Short raft timers:
/// a lone member elects itself after one election timeout (1 s by default, 0.1 s here) and has
/// no peers to miss heartbeats from.
pub(crate) fn etcd(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=default".to_owned(),
        path("data-dir", data_dir),
        "--unsafe-no-fsync".to_owned(),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--heartbeat-interval=10".to_owned(),
        "--election-timeout=100".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

/// kube-apiserver: TLS on loopback, token and client-certificate authentication, Node+RBAC
/// authorization, bound service-account tokens.
pub(crate) fn apiserver(files: &PkiFiles, etcd_client_port: u16, port: u16, gates: &str) -> Vec<String> {
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_client_port}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        // 1.20 warns that it is deprecated and "has no effect now"; harmless, kept explicit.
        "--insecure-port=0".to_owned(),
        path("tls-cert-file", &files.apiserver_cert),
        path("tls-private-key-file", &files.apiserver_key),
        path("client-ca-file", &files.ca_cert),
        path("token-auth-file", &files.tokens),
        "--authorization-mode=Node,RBAC".to_owned(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        path("service-account-key-file", &files.sa_pub),
        path("service-account-signing-key-file", &files.sa_key),
        format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
        // No kubelets: nothing would keep the `kubernetes` endpoints fresh.
        "--endpoint-reconciler-type=none".to_owned(),
        "--kubelet-preferred-address-types=InternalIP".to_owned(),
        path("kubelet-client-certificate", &files.kubelet_client_cert),
        path("kubelet-client-key", &files.kubelet_client_key),
        format!("--enable-admission-plugins={ADMISSION_PLUGINS}"),
        "--allow-privileged=true".to_owned(),
        "--profiling=false".to_owned(),
    ];
    if !gates.is_empty() {
        args.push(format!("--feature-gates={gates}"));
    }
    args
}

/// Flags the controller manager and the scheduler share: admin kubeconfig, no leader election,
/// no insecure port, HTTPS health endpoint on `port` with a certificate from the test CA.
fn common(files: &PkiFiles, kubeconfig: &Path, port: u16, gates: &str) -> Vec<String> {
    let mut args = vec![
        path("kubeconfig", kubeconfig),
        "--leader-elect=false".to_owned(),
        "--port=0".to_owned(),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".to_owned(),
        path("tls-cert-file", &files.component_cert),
        path("tls-private-key-file", &files.component_key),
    ];
    if !gates.is_empty() {
        args.push(format!("--feature-gates={gates}"));
    }
    args
}

/// kube-controller-manager running `controllers`.
pub(crate) fn controller_manager(
    files: &PkiFiles,
    kubeconfig: &Path,
    port: u16,
    gates: &str,
    controllers: &[String],
) -> Vec<String> {
    let mut args = common(files, kubeconfig, port, gates);
    args.extend([
        format!("--controllers={}", controllers.join(",")),
        path("service-account-private-key-file", &files.sa_key),
        path("root-ca-file", &files.ca_cert),
        "--use-service-account-credentials=false".to_owned(),
    ]);
    args
}

/// The audit policy of [`TestClusterBuilder::audit_log`](super::TestClusterBuilder::audit_log):
/// every request at `Metadata` level (who, verb, resource, user agent; no bodies), one event
/// when the answer starts and one when it completes (a watch's first and last).
pub(crate) const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
";

/// kube-apiserver's audit flags: JSON lines to `log`, written before the answer (`blocking`),
/// never rotated.
pub(crate) fn audit(policy: &Path, log: &Path) -> Vec<String> {
    vec![
        path("audit-policy-file", policy),
        path("audit-log-path", log),
        "--audit-log-format=json".to_owned(),
        "--audit-log-mode=blocking".to_owned(),
        "--audit-log-maxsize=0".to_owned(),
    ]
}

/// kube-scheduler.
pub(crate) fn scheduler(files: &PkiFiles, kubeconfig: &Path, port: u16, gates: &str) -> Vec<String> {
    common(files, kubeconfig, port, gates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_gates_render_as_a_list() {
        assert_eq!(feature_gates(&[]), "");
        assert_eq!(
            feature_gates(&[("TTLAfterFinished".to_owned(), true), ("Foo".to_owned(), false)]),
            "TTLAfterFinished=true,Foo=false"
        );
    }

    #[test]
    fn etcd_peer_and_client_urls_agree() {
        let args = etcd(Path::new("/d"), 1, 2);
        for want in [
            "--listen-client-urls=http://127.0.0.1:1",
            "--advertise-client-urls=http://127.0.0.1:1",
            "--listen-peer-urls=http://127.0.0.1:2",
            "--initial-cluster=default=http://127.0.0.1:2",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing from {args:?}");
        }
    }

    #[test]
    fn no_feature_gate_flag_without_gates() {
        let files = PkiFiles::in_dir(Path::new("/p"));
        assert!(
            !apiserver(&files, 1, 2, "")
                .iter()
                .any(|a| a.starts_with("--feature-gates"))
        );
        assert!(apiserver(&files, 1, 2, "A=true").contains(&"--feature-gates=A=true".to_owned()));
    }
}
