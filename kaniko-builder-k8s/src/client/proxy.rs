//! The API server's proxy: [`connector`] uses `config.proxy_url` as given; [`resolve`] puts the
//! one the environment names there (the rules are in the [parent module's docs](super)).

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt as _};

use super::ClientError;

/// What the client connects with: TCP straight to the API server, or a CONNECT tunnel through a
/// proxy. TLS to the API server runs inside either.
pub(super) type Connector = BoxCloneSyncService<http::Uri, TokioIo<tokio::net::TcpStream>, BoxError>;

const UNSUPPORTED_PROXY: &str = "a proxy that is not http:// (https://, socks5://...)";

/// The connector for `config`: through `config.proxy_url` when set, else direct.
///
/// # Errors
/// [`ClientError::Unsupported`] for a proxy that is not `http://`.
pub(super) fn connector(config: &kube::Config) -> Result<Connector, ClientError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let Some(proxy) = explicit(config)? else {
        return Ok(BoxCloneSyncService::new(http.map_err(BoxError::from)));
    };
    // `proxy.uri()` holds no credentials: the matcher moved them into the header.
    tracing::debug!(server = %config.cluster_url, proxy = %proxy.uri(), "API server through a proxy");
    let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
    if let Some(auth) = proxy.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    Ok(BoxCloneSyncService::new(tunnel.map_err(BoxError::from)))
}

/// `config.proxy_url`, parsed as the variables are (a URL without scheme is `http://`;
/// credentials in it become a `Proxy-Authorization` header).
fn explicit(config: &kube::Config) -> Result<Option<Intercept>, ClientError> {
    let Some(url) = &config.proxy_url else {
        return Ok(None);
    };
    let proxy = Matcher::builder()
        .all(url.to_string())
        .build()
        .intercept(&config.cluster_url)
        .ok_or(ClientError::Unsupported(UNSUPPORTED_PROXY))?;
    if proxy.uri().scheme_str() == Some("http") {
        Ok(Some(proxy))
    } else {
        Err(ClientError::Unsupported(UNSUPPORTED_PROXY))
    }
}

/// Sets `config.proxy_url` to the proxy the environment names for `config.cluster_url` (with
/// `env` looking variables up), unless it holds one of its own (kubeconfig `proxy-url`, or the
/// caller's).
///
/// # Errors
/// [`ClientError::Unsupported`] for a proxy that is not `http://`.
pub(super) fn resolve(
    config: &mut kube::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ClientError> {
    if config
        .proxy_url
        .as_ref()
        .is_some_and(|url| !copied_from_env(url, env))
    {
        return explicit(config).map(drop);
    }
    config.proxy_url = match from_env(&config.cluster_url, env) {
        // It parsed as a URI in the matcher already.
        Some(raw) => Some(
            raw.parse()
                .map_err(|_| ClientError::Unsupported(UNSUPPORTED_PROXY))?,
        ),
        None => None,
    };
    explicit(config).map(drop)
}

/// Whether `url` is kube's copy of `HTTPS_PROXY`: kube's kubeconfig loader puts `HTTPS_PROXY`
/// (else `https_proxy`) into `proxy_url` when the cluster has no `proxy-url`, whatever the
/// server's scheme and, without kube's `http-proxy` feature, whatever `NO_PROXY` says. The
/// variables' own rules decide for such a value.
fn copied_from_env(url: &http::Uri, env: &dyn Fn(&str) -> Option<String>) -> bool {
    ["HTTPS_PROXY", "https_proxy"]
        .into_iter()
        .find_map(|name| env(name).filter(|v| !v.is_empty()))
        .and_then(|v| v.parse::<http::Uri>().ok())
        .is_some_and(|from_env| &from_env == url)
}

/// The value of the variable that names the proxy for `server`, with the rules reqwest applies
/// to the registries (hyper-util's `Matcher::from_env`): the first of each pair that is set
/// counts; `HTTPS_PROXY` for an `https` server, `HTTP_PROXY` for an `http` one, `ALL_PROXY` when
/// that one is unset or unusable; none when `NO_PROXY` lists the host; none at all in a CGI
/// program (`REQUEST_METHOD` set).
fn from_env(server: &http::Uri, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if env("REQUEST_METHOD").is_some() {
        return None;
    }
    let first = |names: [&str; 2]| names.into_iter().find_map(env).unwrap_or_default();
    let no = first(["NO_PROXY", "no_proxy"]);
    let for_scheme = match server.scheme_str() {
        Some("http") => first(["HTTP_PROXY", "http_proxy"]),
        _ => first(["HTTPS_PROXY", "https_proxy"]),
    };
    [for_scheme, first(["ALL_PROXY", "all_proxy"])]
        .into_iter()
        .find(|candidate| {
            Matcher::builder()
                .all(candidate.as_str())
                .no(no.as_str())
                .build()
                .intercept(server)
                .is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(server: &str, proxy_url: Option<&str>) -> kube::Config {
        let mut config = kube::Config::new(server.parse().expect("server url"));
        config.proxy_url = proxy_url.map(|p| p.parse().expect("proxy url"));
        config
    }

    /// The proxy [`resolve`] chooses for `server` (with kubeconfig `proxy_url`) under `vars`,
    /// as a string.
    fn chosen(
        server: &str,
        proxy_url: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Option<String>, String> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let mut config = config(server, proxy_url);
        resolve(&mut config, &env).map_err(|e| e.to_string())?;
        Ok(config.proxy_url.map(|p| p.to_string()))
    }

    const API: &str = "https://api.example:6443";
    const P: &str = "http://proxy.example:3128";
    const Q: &str = "http://other.example:8080";

    /// (what, server, kubeconfig `proxy-url`, variables, the proxy chosen)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
    );

    #[test]
    fn precedence_and_no_proxy() {
        // As http::Uri prints them.
        let (p, q) = (
            Some("http://proxy.example:3128/"),
            Some("http://other.example:8080/"),
        );
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            ("nothing set: direct", API, None, &[], None),
            ("HTTPS_PROXY for an https server", API, None, &[("HTTPS_PROXY", P)], p),
            ("https_proxy too", API, None, &[("https_proxy", P)], p),
            ("HTTPS_PROXY before https_proxy", API, None, &[("HTTPS_PROXY", P), ("https_proxy", Q)], p),
            ("HTTP_PROXY is for http servers", API, None, &[("HTTP_PROXY", P)], None),
            ("HTTP_PROXY for an http server", "http://api.example:8001", None, &[("HTTP_PROXY", P), ("HTTPS_PROXY", Q)], p),
            ("ALL_PROXY as the fallback", API, None, &[("ALL_PROXY", P)], p),
            ("NO_PROXY names the host", API, None, &[("HTTPS_PROXY", P), ("NO_PROXY", "api.example")], None),
            ("no_proxy, a parent domain", API, None, &[("HTTPS_PROXY", P), ("no_proxy", ".example")], None),
            ("NO_PROXY also for ALL_PROXY", API, None, &[("ALL_PROXY", P), ("NO_PROXY", "api.example")], None),
            ("NO_PROXY, another host", API, None, &[("HTTPS_PROXY", P), ("NO_PROXY", "other.example")], p),
            ("NO_PROXY, a CIDR", "https://10.1.2.3:6443", None, &[("HTTPS_PROXY", P), ("NO_PROXY", "10.0.0.0/8")], None),
            ("NO_PROXY=*", API, None, &[("HTTPS_PROXY", P), ("NO_PROXY", "*")], None),
            ("CGI: no variable counts", API, None, &[("HTTPS_PROXY", P), ("REQUEST_METHOD", "GET")], None),
            ("kubeconfig proxy-url", API, Some(Q), &[], q),
            ("proxy-url before HTTPS_PROXY", API, Some(Q), &[("HTTPS_PROXY", P)], q),
            ("NO_PROXY does not bypass proxy-url", API, Some(Q), &[("HTTPS_PROXY", P), ("NO_PROXY", "api.example")], q),
            // What kube's loader copied from HTTPS_PROXY follows the variables' rules.
            ("kube's copy of HTTPS_PROXY, NO_PROXY", API, Some(P), &[("HTTPS_PROXY", P), ("NO_PROXY", "api.example")], None),
            ("kube's copy of https_proxy, no NO_PROXY", API, Some(P), &[("https_proxy", P)], p),
            ("kube's copy, http server", "http://api.example:8001", Some(P), &[("HTTPS_PROXY", P)], None),
        ];
        for (what, server, proxy_url, vars, want) in cases {
            let want = want.map(str::to_owned);
            assert_eq!(chosen(server, *proxy_url, vars), Ok(want), "{what}");
        }
    }

    #[test]
    fn credentials_become_a_header_and_leave_the_url() {
        let config = config(API, Some("http://user:p%40ss@proxy.example:3128"));
        let proxy = explicit(&config).expect("ok").expect("a proxy");
        assert_eq!(proxy.uri().to_string(), "http://proxy.example:3128/");
        let auth = proxy.basic_auth().expect("basic auth");
        assert!(auth.is_sensitive());
        use base64::Engine as _;
        let want = base64::engine::general_purpose::STANDARD.encode("user:p@ss");
        assert_eq!(auth.to_str().expect("ascii"), format!("Basic {want}"));
        // From the environment, they are kept for the connector.
        let from_env = chosen(
            API,
            None,
            &[("HTTPS_PROXY", "http://user:p%40ss@proxy.example:3128")],
        );
        assert_eq!(
            from_env,
            Ok(Some("http://user:p%40ss@proxy.example:3128/".to_owned()))
        );
    }

    #[test]
    fn other_proxy_schemes_are_an_error_not_a_silent_direct_connection() {
        for url in [
            "socks5://proxy.example:1080",
            "https://proxy.example:3128",
            "ftp://proxy.example",
        ] {
            let err = chosen(API, Some(url), &[]).expect_err(url);
            assert!(err.contains("not http://"), "{url}: {err}");
            assert!(explicit(&config(API, Some(url))).is_err(), "{url}");
        }
        let err = chosen(API, None, &[("HTTPS_PROXY", "socks5://proxy.example:1080")]).expect_err("env");
        assert!(err.contains("not http://"), "{err}");
    }
}
