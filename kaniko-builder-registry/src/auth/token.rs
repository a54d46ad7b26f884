//! Docker's token flow: exchange credentials for a short-lived bearer token at the realm.

use std::fmt;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::credentials::Credentials;

/// The distribution token spec's default when `expires_in` is missing, and its minimum.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh a little early so a token does not expire in flight.
const SKEW: Duration = Duration::from_secs(10);
const CLIENT_ID: &str = "kaniko-builder";

/// A bearer token and when to stop using it. `Debug` never prints the token.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) refresh_at: Instant,
}

impl Token {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Builds the token request: GET with Basic (or nothing) for passwords and anonymous access, the
/// OAuth2 refresh-token POST for identity tokens. `Err` when the realm is not a URL.
pub(crate) fn request(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    credentials: &Credentials,
) -> Result<reqwest::RequestBuilder, String> {
    let mut url = url::Url::parse(realm).map_err(|e| format!("realm {realm:?} is not a URL: {e}"))?;
    if let Credentials::IdentityToken { token } = credentials {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", token.expose_secret())
            .append_pair("client_id", CLIENT_ID)
            .append_pair("scope", scope);
        if let Some(s) = service {
            form.append_pair("service", s);
        }
        return Ok(http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.finish()));
    }
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("scope", scope);
        if let Some(s) = service {
            query.append_pair("service", s);
        }
    }
    let req = http.get(url);
    Ok(match credentials {
        Credentials::Basic { username, password } => req.basic_auth(username, Some(password.expose_secret())),
        _ => req,
    })
}

/// Parses a token endpoint's 200 body. `Err` says what is wrong without echoing the body.
pub(crate) fn parse_response(body: &[u8], received_at: Instant) -> Result<Token, &'static str> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|_| "response is not the token JSON")?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or("response has neither `token` nor `access_token`")?;
    if value
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("token contains whitespace or control characters");
    }
    let lifetime = parsed
        .expires_in
        .map_or(MIN_LIFETIME, Duration::from_secs)
        .max(MIN_LIFETIME);
    Ok(Token {
        value,
        refresh_at: received_at + lifetime - SKEW,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_forms() {
        let now = Instant::now();
        let t = parse_response(br#"{"token":"abc","expires_in":300}"#, now).expect("token");
        assert_eq!(t.value, "abc");
        assert_eq!(t.refresh_at, now + Duration::from_secs(290));
        let t = parse_response(br#"{"access_token":"xyz"}"#, now).expect("access_token");
        assert_eq!(t.value, "xyz");
        // Missing or tiny lifetimes get the spec's 60 s minimum.
        assert_eq!(t.refresh_at, now + Duration::from_secs(50));
        let t = parse_response(br#"{"token":"abc","expires_in":1}"#, now).expect("short");
        assert_eq!(t.refresh_at, now + Duration::from_secs(50));
    }

    #[test]
    fn bad_responses_are_described_without_echoing() {
        for body in [
            &b"<html>secret-ish</html>"[..],
            br#"{"token":""}"#,
            br#"{"expires_in":5}"#,
            br#"{"token":"a b"}"#,
        ] {
            let err = parse_response(body, Instant::now()).expect_err("bad");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn identity_token_uses_the_oauth2_post() {
        let tls = crate::tls::client_config(false, &[]).expect("tls");
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("client");
        let creds = Credentials::IdentityToken { token: "rt".into() };
        let req = request(
            &http,
            "https://auth.example/token",
            Some("svc"),
            "repository:a:pull",
            &creds,
        )
        .expect("request")
        .build()
        .expect("build");
        assert_eq!(req.method(), reqwest::Method::POST);
        let body =
            String::from_utf8(req.body().and_then(|b| b.as_bytes()).expect("body").to_vec()).expect("utf8");
        assert_eq!(
            body,
            "grant_type=refresh_token&refresh_token=rt&client_id=kaniko-builder&scope=repository%3Aa%3Apull&service=svc"
        );
        let basic = request(
            &http,
            "https://auth.example/token?x=1",
            None,
            "repository:a:pull",
            &Credentials::basic("u", "p"),
        )
        .expect("request")
        .build()
        .expect("build");
        assert_eq!(basic.method(), reqwest::Method::GET);
        assert_eq!(
            basic.url().as_str(),
            "https://auth.example/token?x=1&scope=repository%3Aa%3Apull"
        );
        assert!(basic.headers().contains_key(reqwest::header::AUTHORIZATION));
    }
}
