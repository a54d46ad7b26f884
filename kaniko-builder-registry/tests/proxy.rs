//! Registry requests through a real forward proxy (Debian's `tinyproxy`, [`TestProxy`]) to a
//! real registry: [`RegistrySettings::proxy`] and [`RegistrySettings::no_proxy`], and the proxy
//! variables. What went through the proxy is read from tinyproxy's log.
//!
//! The variables are process-wide, so the runs that set them are child processes: this test
//! binary again, running only [`child_probes`] with the variables given.

use kaniko_builder_registry::{DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::{RegistryAuth, TestProxy, TestRegistry};

/// Environment variables for a child: (name, value).
type Vars<'a> = &'a [(&'a str, &'a str)];

/// Set for the child process (to its mode); the child test does nothing without it.
const CHILD_ENV: &str = "KB_PROXY_TEST_CHILD";
/// The image the child probes.
const CHILD_IMAGE_ENV: &str = "KB_PROXY_TEST_IMAGE";

fn port_of(url_or_host: &str) -> u16 {
    let host = url_or_host.split("://").last().unwrap_or(url_or_host);
    let port = host.split(['/', '?']).next().unwrap_or(host).rsplit(':').next();
    port.and_then(|p| p.parse().ok()).expect("a port")
}

fn tls_client(reg: &TestRegistry, settings: RegistrySettings) -> RegistryClient {
    let settings = settings.ca_pem(reg.ca_pem().expect("TLS registry"));
    RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&reg.docker_config_json()).expect("config"))
        .registry(reg.host(), settings)
        .build()
        .expect("client")
}

/// A token-auth registry over TLS through `.proxy(..)`: the registry is reached with CONNECT
/// through the proxy, and its token service (plain HTTP, another port) with a forwarded GET;
/// with a proxy that wants credentials, the ones in the URL are sent and never shown.
#[tokio::test]
async fn the_proxy_setting_carries_the_registry_and_its_token_service() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Token).await.expect("registry");
    let digest = reg.push_image("team/app", "v1", b"hello").await.expect("push");
    let issuer = format!("127.0.0.1:{}", port_of(&reg.token_realm().expect("token realm")));
    let image: ImageRef = format!("{}/team/app:v1", reg.host()).parse().expect("reference");
    let ports = [port_of(&reg.host())];

    let proxy = TestProxy::start(&ports).await.expect("tinyproxy");
    let probe = tls_client(&reg, RegistrySettings::default().proxy(proxy.url()))
        .probe(&image)
        .await
        .expect("probe through the proxy");
    assert_eq!(probe.manifest().expect("exists").digest.to_string(), digest);
    let connects = proxy.connects();
    assert!(!connects.is_empty(), "{}", proxy.log());
    assert!(connects.iter().all(|c| *c == reg.host()), "{connects:?}");
    let token_get = format!("GET http://{issuer}/token?");
    let requests = proxy.requests();
    assert!(
        requests.iter().any(|r| r.starts_with(&token_get)),
        "the token service too: {requests:?}"
    );

    let guarded = TestProxy::start_with_auth(&ports).await.expect("tinyproxy");
    let settings = RegistrySettings::default().proxy(guarded.url_with_credentials());
    assert!(!format!("{settings:?}").contains(TestProxy::PASSWORD));
    tls_client(&reg, settings)
        .probe(&image)
        .await
        .expect("probe through the authenticating proxy");
    assert!(guarded.connects().contains(&reg.host()), "{}", guarded.log());
    let err = tls_client(&reg, RegistrySettings::default().proxy(guarded.url()))
        .probe(&image)
        .await
        .expect_err("407 without credentials");
    assert!(!format!("{err:?}").contains(TestProxy::PASSWORD));
}

/// A proxy that refuses the registry's port fails the probe: nothing goes around the proxy.
/// A proxy URL that cannot be used is an error when the client is built, without the URL.
#[tokio::test]
async fn a_refusing_proxy_fails_the_probe_and_a_bad_one_the_build() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Basic).await.expect("registry");
    reg.push_image("team/app", "v1", b"hello").await.expect("push");
    let image: ImageRef = format!("{}/team/app:v1", reg.host()).parse().expect("reference");
    let closed = TestProxy::start(&[1]).await.expect("tinyproxy");
    let err = tls_client(&reg, RegistrySettings::default().proxy(closed.url()))
        .probe(&image)
        .await
        .expect_err("the proxy refuses the port");
    // Retried (transient), and each attempt through the proxy.
    let refused = closed.connects();
    assert!(
        !refused.is_empty() && refused.iter().all(|c| *c == reg.host()),
        "{err}: {refused:?}"
    );

    let err = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(
            reg.host(),
            RegistrySettings::default().proxy("socks5://u:hunter2-pw@127.0.0.1:1080"),
        )
        .build()
        .expect_err("socks5 is not supported");
    let message = format!("{err} {err:?}");
    assert!(
        message.contains("socks5") && message.contains(&reg.host()),
        "{message}"
    );
    assert!(!message.contains("hunter2-pw"), "{message}");
}

/// The variables for a plain-HTTP registry, in child processes: `HTTP_PROXY`/`http_proxy`
/// carry it (a forwarded `GET http://…`), `HTTPS_PROXY` does not, `NO_PROXY` bypasses, and the
/// settings win over the variables.
#[tokio::test]
async fn the_variables_and_the_settings_that_override_them() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    reg.push_image("team/app", "v1", b"hello").await.expect("push");
    let image = format!("{}/team/app:v1", reg.host());
    let (env_proxy, set_proxy) =
        tokio::try_join!(TestProxy::start(&[]), TestProxy::start(&[])).expect("tinyproxy");
    let (p, q) = (env_proxy.url(), set_proxy.url());
    let explicit = format!("explicit={q}");
    let ping = format!("GET http://{}/v2/ HTTP/1.1", reg.host());
    #[rustfmt::skip]
    let cases: &[(&str, &str, Vars<'_>, bool, bool)] = &[
        // (what, mode, variables, through the variables' proxy, through the set one)
        ("HTTP_PROXY", "env", &[("HTTP_PROXY", &p)], true, false),
        ("http_proxy", "env", &[("http_proxy", &p)], true, false),
        ("HTTP_PROXY, NO_PROXY=127.0.0.1", "env", &[("HTTP_PROXY", &p), ("NO_PROXY", "127.0.0.1")], false, false),
        ("http_proxy, no_proxy=127.0.0.0/8", "env", &[("http_proxy", &p), ("no_proxy", "127.0.0.0/8")], false, false),
        ("HTTPS_PROXY is not for plain HTTP", "env", &[("HTTPS_PROXY", &p)], false, false),
        ("no_proxy() over HTTP_PROXY", "no_proxy", &[("HTTP_PROXY", &p)], false, false),
        ("proxy() over HTTP_PROXY and NO_PROXY", &explicit, &[("HTTP_PROXY", &p), ("NO_PROXY", "127.0.0.1")], false, true),
    ];
    for (what, mode, vars, via_env, via_set) in cases {
        let (before_env, before_set) = (env_proxy.requests().len(), set_proxy.requests().len());
        run_child(mode, &image, vars)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for (proxy, before, expected, name) in [
            (&env_proxy, before_env, *via_env, "the variables' proxy"),
            (&set_proxy, before_set, *via_set, "the set proxy"),
        ] {
            let new = proxy.requests().split_off(before);
            if expected {
                assert!(new.contains(&ping), "{what}: {name}: {new:?}");
            } else {
                assert!(new.is_empty(), "{what}: {name} was used: {new:?}");
            }
        }
    }
}

async fn run_child(mode: &str, image: &str, vars: &[(&str, &str)]) -> Result<(), String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["--exact", "child_probes", "--ignored", "--nocapture"])
        .env(CHILD_ENV, mode)
        .env(CHILD_IMAGE_ENV, image)
        .env("DOCKER_CONFIG", "/nonexistent/docker");
    for var in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "REQUEST_METHOD",
    ] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    cmd.envs(vars.iter().copied());
    let out = cmd.output().await.expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains("1 passed") {
        Ok(())
    } else {
        Err(format!(
            "child failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The child of [`the_variables_and_the_settings_that_override_them`]: probes the plain-HTTP
/// image with the default settings (`env`), `.no_proxy()`, or `.proxy(URL)` (`explicit=URL`).
#[tokio::test]
#[ignore = "run by the_variables_and_the_settings_that_override_them in a child process"]
async fn child_probes() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    kaniko_builder_testkit::init_tracing();
    let image: ImageRef = std::env::var(CHILD_IMAGE_ENV)
        .expect("image")
        .parse()
        .expect("reference");
    let mut settings = RegistrySettings::default().plain_http(true);
    settings = match mode.as_str() {
        "env" => settings,
        "no_proxy" => settings.no_proxy(),
        other => settings.proxy(other.strip_prefix("explicit=").expect("a mode")),
    };
    let probe = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(image.registry(), settings)
        .build()
        .expect("client")
        .probe(&image)
        .await
        .expect("probe");
    assert!(probe.exists(), "{probe:?}");
}
