//! The API server through a real forward proxy (Debian's `tinyproxy`, [`TestProxy`]) and with
//! `insecure-skip-tls-verify`, against the real control plane ([`TestCluster`]), with
//! kubeconfig files written here.
//!
//! The proxy variables are process-wide, so every run that sets them is a child process: this
//! test binary again, running only [`child_infers_a_client_and_asks_the_api_server`] with the
//! variables given. What went through the proxy is read from tinyproxy's log.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use kaniko_builder_k8s::client;
use kaniko_builder_testkit::{TestCluster, TestProxy, capture_trace_logs};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Set for the child process; the child test does nothing without it.
const CHILD_ENV: &str = "KB_PROXY_TEST_CHILD";

/// Environment variables for a child: (name, value).
type Vars<'a> = &'a [(&'a str, &'a str)];

/// The cluster's admin kubeconfig with `edit` applied to its one cluster entry, written to `path`.
fn kubeconfig(cluster: &TestCluster, path: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let text = std::fs::read_to_string(cluster.kubeconfig_path()).expect("read admin kubeconfig");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("kubeconfig is JSON");
    edit(&mut doc["clusters"][0]["cluster"]);
    std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json")).expect("write kubeconfig");
    path.to_owned()
}

/// A client built by [`client::client`] from the kubeconfig at `path` (current context).
async fn client_from(path: &Path) -> Result<kube::Client, client::ClientError> {
    let doc = Kubeconfig::read_from(path).expect("parse kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(doc, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    client::client(config)
}

async fn list_namespaces(client: kube::Client) -> Result<Vec<String>, kube::Error> {
    let list = Api::<Namespace>::all(client).list(&ListParams::default()).await?;
    Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
}

fn api_port(cluster: &TestCluster) -> u16 {
    let url: http::Uri = cluster.server_url().parse().expect("server url");
    url.port_u16().expect("server port")
}

/// One control plane for every step: the steps run in order.
#[tokio::test]
async fn api_server_through_a_proxy_and_without_verification() {
    // This binary's whole TRACE log, to check the warning and that no proxy password shows.
    let logs = capture_trace_logs();
    let cluster = TestCluster::builder()
        .controller_manager(false)
        .scheduler(false)
        .start()
        .await
        .expect("start the test cluster");
    let api = format!("127.0.0.1:{}", api_port(&cluster));
    let dir = tempfile::tempdir().expect("temp dir");

    kubeconfig_proxy_url(&cluster, &api, dir.path()).await;
    proxy_credentials(&cluster, &api, dir.path()).await;
    proxy_variables(&cluster, &api, dir.path()).await;
    insecure_skip_tls_verify(&cluster, dir.path()).await;

    let text = String::from_utf8_lossy(&logs.bytes()).into_owned();
    assert!(
        text.contains("insecure-skip-tls-verify") && text.contains(cluster.server_url()),
        "the warning names the setting and the server"
    );
    assert!(
        !text.contains(TestProxy::PASSWORD),
        "the proxy password is never logged"
    );
}

/// kubeconfig `proxy-url`: every connection to the API server is a CONNECT through the proxy;
/// a proxy that refuses the API server's port makes the request fail (so nothing went around
/// it).
async fn kubeconfig_proxy_url(cluster: &TestCluster, api: &str, dir: &Path) {
    let proxy = TestProxy::start(&[api_port(cluster)])
        .await
        .expect("start tinyproxy");
    let path = kubeconfig(cluster, &dir.join("proxied"), |c| {
        c["proxy-url"] = proxy.url().into();
    });
    let namespaces = list_namespaces(client_from(&path).await.expect("client"))
        .await
        .expect("list namespaces through the proxy");
    assert!(namespaces.iter().any(|n| n == "default"), "{namespaces:?}");
    let connects = proxy.connects();
    assert!(!connects.is_empty(), "{}", proxy.log());
    assert!(
        connects.iter().all(|c| c == api),
        "only the API server: {connects:?}"
    );

    // tinyproxy answers 403 to a CONNECT to a port it does not allow.
    let closed = TestProxy::start(&[1]).await.expect("start tinyproxy");
    let path = kubeconfig(cluster, &dir.join("closed"), |c| {
        c["proxy-url"] = closed.url().into();
    });
    let err = list_namespaces(client_from(&path).await.expect("client"))
        .await
        .expect_err("the proxy refuses the port");
    let refused = closed.connects();
    assert!(
        !refused.is_empty() && refused.iter().all(|c| c == api),
        "{err}: {refused:?}"
    );
}

/// A proxy that wants Basic credentials: given in `proxy-url` they are sent (and never
/// logged, see the caller); without them the proxy answers 407 and the request fails.
async fn proxy_credentials(cluster: &TestCluster, api: &str, dir: &Path) {
    let proxy = TestProxy::start_with_auth(&[api_port(cluster)])
        .await
        .expect("start tinyproxy");
    let path = kubeconfig(cluster, &dir.join("auth"), |c| {
        c["proxy-url"] = proxy.url_with_credentials().into();
    });
    list_namespaces(client_from(&path).await.expect("client"))
        .await
        .expect("list namespaces through the authenticating proxy");
    assert!(proxy.connects().iter().any(|c| c == api), "{}", proxy.log());

    let path = kubeconfig(cluster, &dir.join("no-auth"), |c| {
        c["proxy-url"] = proxy.url().into();
    });
    let err = list_namespaces(client_from(&path).await.expect("client"))
        .await
        .expect_err("407 without credentials");
    let message = format!("{err:?}");
    assert!(!message.contains(TestProxy::PASSWORD), "{message}");
}

/// `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy` as [`client::infer`] reads them, in
/// child processes: through the proxy unless `NO_PROXY` names the host (no new log line then);
/// `HTTP_PROXY` is not for an `https://` server; kubeconfig `proxy-url` wins over `NO_PROXY`;
/// [`client::client`] with `proxy_url: None` connects directly whatever the variables say.
async fn proxy_variables(cluster: &TestCluster, api: &str, dir: &Path) {
    let proxy = TestProxy::start(&[api_port(cluster)])
        .await
        .expect("start tinyproxy");
    let plain = kubeconfig(cluster, &dir.join("plain"), |_| {});
    let with_proxy_url = kubeconfig(cluster, &dir.join("proxy-url"), |c| {
        c["proxy-url"] = proxy.url().into();
    });
    let url = proxy.url();
    let cases: &[(&str, &Path, Vars<'_>, bool)] = &[
        ("HTTPS_PROXY", &plain, &[("HTTPS_PROXY", &url)], true),
        (
            "HTTPS_PROXY, client() with proxy_url None",
            &plain,
            &[("HTTPS_PROXY", &url), (CHILD_ENV, "direct")],
            false,
        ),
        ("https_proxy", &plain, &[("https_proxy", &url)], true),
        (
            "HTTPS_PROXY, NO_PROXY=127.0.0.1",
            &plain,
            &[("HTTPS_PROXY", &url), ("NO_PROXY", "127.0.0.1")],
            false,
        ),
        (
            "https_proxy, no_proxy=localhost,127.0.0.0/8",
            &plain,
            &[("https_proxy", &url), ("no_proxy", "localhost,127.0.0.0/8")],
            false,
        ),
        ("HTTP_PROXY only", &plain, &[("HTTP_PROXY", &url)], false),
        ("ALL_PROXY", &plain, &[("ALL_PROXY", &url)], true),
        (
            "proxy-url, NO_PROXY=127.0.0.1",
            &with_proxy_url,
            &[("NO_PROXY", "127.0.0.1")],
            true,
        ),
    ];
    for (what, kubeconfig, vars, proxied) in cases {
        let before = proxy.requests().len();
        run_child(kubeconfig, vars)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let new: Vec<String> = proxy.requests().split_off(before);
        if *proxied {
            assert!(!new.is_empty(), "{what}: nothing went through the proxy");
            let connect = format!("CONNECT {api} HTTP/1.1");
            assert!(new.iter().all(|r| *r == connect), "{what}: {new:?}");
        } else {
            assert!(new.is_empty(), "{what}: went through the proxy: {new:?}");
        }
    }
}

/// Runs [`child_infers_a_client_and_asks_the_api_server`] in a child process with `KUBECONFIG`
/// and `vars`, and no other proxy variable.
async fn run_child(kubeconfig: &Path, vars: &[(&str, &str)]) -> Result<(), String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "--exact",
        "child_infers_a_client_and_asks_the_api_server",
        "--ignored",
        "--nocapture",
    ])
    .env(CHILD_ENV, "1")
    .env("KUBECONFIG", kubeconfig)
    .env_remove("KUBERNETES_SERVICE_HOST");
    kaniko_builder_testkit::clear_proxy_env(&mut cmd);
    cmd.envs(vars.iter().copied());
    let out = cmd.output().await.expect("run the child");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if out.status.success() && stdout.contains("1 passed") {
        Ok(())
    } else {
        Err(format!("child failed ({}):\n{stdout}\n{stderr}", out.status))
    }
}

/// The child of [`proxy_variables`]: [`client::infer`] with the environment it was given (or,
/// when `KB_PROXY_TEST_CHILD=direct`, [`client::client`] for kube's inferred configuration with
/// `proxy_url` set to `None`), then one request.
#[tokio::test]
#[ignore = "run by api_server_through_a_proxy_and_without_verification in a child process"]
async fn child_infers_a_client_and_asks_the_api_server() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    kaniko_builder_testkit::init_tracing();
    let client = if mode == "direct" {
        let mut config = kube::Config::infer().await.expect("infer a configuration");
        config.proxy_url = None;
        client::client(config).expect("client")
    } else {
        client::infer().await.expect("infer a client")
    };
    client.apiserver_version().await.expect("ask the API server");
}

/// kubeconfig `insecure-skip-tls-verify` and no CA: the API server's certificate (from the
/// test CA, which no system store holds) is accepted; without the setting it is refused.
async fn insecure_skip_tls_verify(cluster: &TestCluster, dir: &Path) {
    let path = kubeconfig(cluster, &dir.join("insecure"), |c| {
        let c = c.as_object_mut().expect("cluster entry");
        c.remove("certificate-authority-data");
        c.insert("insecure-skip-tls-verify".to_owned(), true.into());
    });
    let namespaces = list_namespaces(client_from(&path).await.expect("client"))
        .await
        .expect("list namespaces without verifying the certificate");
    assert!(namespaces.iter().any(|n| n == "default"), "{namespaces:?}");

    let path = kubeconfig(cluster, &dir.join("unverifiable"), |c| {
        c.as_object_mut()
            .expect("cluster entry")
            .remove("certificate-authority-data");
    });
    let err = list_namespaces(client_from(&path).await.expect("client"))
        .await
        .expect_err("the test CA is not a system root");
    let chain = error_chain(&err);
    assert!(chain.contains("certificate"), "{chain}");
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
