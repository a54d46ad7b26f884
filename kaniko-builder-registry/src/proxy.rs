//! Which proxy a registry's requests go through: [`RegistrySettings::proxy`] and
//! [`RegistrySettings::no_proxy`].
//!
//! [`RegistrySettings::proxy`]: crate::RegistrySettings::proxy
//! [`RegistrySettings::no_proxy`]: crate::RegistrySettings::no_proxy

use std::fmt;

/// A registry's proxy setting. `Debug` never shows credentials in a proxy URL.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) enum ProxyChoice {
    /// reqwest's default: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case),
    /// read when the client is built.
    #[default]
    FromEnv,
    /// No proxy, whatever the variables say.
    Direct,
    /// This proxy for every request, whatever the variables say.
    Url(String),
}

impl fmt::Debug for ProxyChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FromEnv => f.write_str("FromEnv"),
            Self::Direct => f.write_str("Direct"),
            Self::Url(url) => f.debug_tuple("Url").field(&redacted(url)).finish(),
        }
    }
}

impl ProxyChoice {
    /// Applies the choice to a client under construction. `Err` says what is wrong with the
    /// proxy URL, without quoting it (it may hold a password).
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        match self {
            Self::FromEnv => Ok(builder),
            Self::Direct => Ok(builder.no_proxy()),
            Self::Url(url) => {
                let parsed = url::Url::parse(url)
                    .ok()
                    .filter(|u| u.has_host())
                    .ok_or_else(|| "the proxy is not a URL like http://host:port".to_owned())?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!(
                        "proxy scheme {}:// is not supported (http:// or https://)",
                        parsed.scheme()
                    ));
                }
                let proxy = reqwest::Proxy::all(url.as_str())
                    .map_err(|_| "the proxy is not a URL like http://host:port".to_owned())?;
                tracing::debug!(proxy = %redacted(url), "registry requests through a proxy");
                Ok(builder.proxy(proxy))
            }
        }
    }
}

/// `url` without user name and password; only a placeholder for anything without a host
/// (`user:password@` parses as a URL of scheme `user`).
fn redacted(url: &str) -> String {
    let without_credentials = url::Url::parse(url)
        .ok()
        .filter(url::Url::has_host)
        .and_then(|mut u| {
            u.set_username("").ok()?;
            u.set_password(None).ok()?;
            Some(u.to_string())
        });
    without_credentials.unwrap_or_else(|| "<not a URL>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let choice = ProxyChoice::Url("http://user:hunter2-pw@proxy.example:3128".to_owned());
        let debug = format!("{choice:?}");
        assert_eq!(debug, r#"Url("http://proxy.example:3128/")"#);
        assert_eq!(
            format!("{:?}", ProxyChoice::Url("user:hunter2-pw@".to_owned())),
            r#"Url("<not a URL>")"#
        );
    }

    #[test]
    fn bad_proxies_are_errors_that_do_not_quote_them() {
        for url in [
            "proxy.example:3128",
            "not a url hunter2-pw",
            "socks5://u:hunter2-pw@proxy.example:1080",
        ] {
            let err = ProxyChoice::Url(url.to_owned())
                .apply(reqwest::Client::builder())
                .err()
                .unwrap_or_else(|| panic!("{url} accepted"));
            assert!(!err.contains("hunter2-pw"), "{err}");
        }
        for url in ["http://proxy.example:3128", "https://u:p@proxy.example"] {
            assert!(
                ProxyChoice::Url(url.to_owned())
                    .apply(reqwest::Client::builder())
                    .is_ok(),
                "{url}"
            );
        }
    }
}
