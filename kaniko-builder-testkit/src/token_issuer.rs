//! A token issuer for distribution's `auth: token`, served in-process over plain HTTP.
//!
//! GET realm?service=..&scope=.. answers the Docker token protocol, POST answers the OAuth2
//! form (grant_type=password or refresh_token). Valid credentials get exactly the access
//! asked for; requests without credentials get a token with an empty access list, so the
//! registry refuses them (a registry that does not allow anonymous pulls).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode, header};
use ring::rand::SecureRandom as _;
use tokio::task::JoinHandle;

use crate::jwt::JwtSigner;
use crate::registry::TestRegistry;
use crate::server::spawn_router;
use crate::time::{rfc3339, unix_now};

/// Lifetime of issued tokens, seconds.
const EXPIRES_IN: u64 = 300;

/// A running token issuer; stops when dropped.
#[derive(Debug)]
pub struct TokenIssuer {
    addr: SocketAddr,
    state: Arc<IssuerState>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct IssuerState {
    signer: JwtSigner,
    service: String,
    issuer: String,
    requests: AtomicUsize,
}

impl TokenIssuer {
    /// The `service` (token audience) this crate's registries use.
    pub const SERVICE: &'static str = "kb-test-registry";
    /// The `iss` this crate's registries trust.
    pub const ISSUER: &'static str = "kb-test-issuer";

    /// Starts an issuer on 127.0.0.1 with a fresh ES256 key for [`Self::SERVICE`] and
    /// [`Self::ISSUER`].
    pub async fn start() -> anyhow::Result<TokenIssuer> {
        crate::init_tracing();
        let state = Arc::new(IssuerState {
            signer: JwtSigner::new(Self::ISSUER)?,
            service: Self::SERVICE.to_owned(),
            issuer: Self::ISSUER.to_owned(),
            requests: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .route("/token", get(handle).post(handle))
            .with_state(Arc::clone(&state));
        let (addr, task) = spawn_router(router).await?;
        Ok(TokenIssuer { addr, state, task })
    }

    /// The realm URL ("http://127.0.0.1:PORT/token").
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The issuer certificate the registry must trust (`rootcertbundle`), PEM.
    pub fn cert_pem(&self) -> String {
        self.state.signer.cert_pem().to_owned()
    }

    /// How many token requests (GET or POST, granted or not) were served.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who the request proved to be.
enum Caller {
    Anonymous,
    User(String),
    Rejected,
}

async fn handle(State(state): State<Arc<IssuerState>>, req: Request) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if req.method() == http::Method::POST {
        let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        handle_oauth(&state, &body)
    } else {
        handle_get(&state, req.uri().query().unwrap_or(""), req.headers())
    }
}

/// Docker token protocol: GET with optional Basic credentials.
fn handle_get(state: &IssuerState, query: &str, headers: &HeaderMap) -> Response {
    let scopes = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    let (subject, access) = match caller(headers) {
        Caller::Anonymous => (String::new(), Vec::new()),
        Caller::User(user) => (user, scopes.iter().filter_map(|s| access_entry(s)).collect()),
        Caller::Rejected => return unauthorized(),
    };
    token_response(state, &subject, &access, None)
}

/// OAuth2 form POST (what clients with an identity token use).
fn handle_oauth(state: &IssuerState, body: &[u8]) -> Response {
    let field = |name: &str| {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let scopes = field("scope").unwrap_or_default();
    let access: Vec<_> = scopes.split_whitespace().filter_map(access_entry).collect();
    match field("grant_type").as_deref() {
        Some("refresh_token") => {
            if field("refresh_token").as_deref() != Some(TestRegistry::REFRESH_TOKEN) {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant");
            }
            token_response(state, TestRegistry::USERNAME, &access, None)
        }
        Some("password") => {
            let ok = field("username").as_deref() == Some(TestRegistry::USERNAME)
                && field("password").as_deref() == Some(TestRegistry::PASSWORD);
            if !ok {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant");
            }
            // Like Docker's issuer: a refresh token only for offline access.
            let refresh =
                (field("access_type").as_deref() == Some("offline")).then_some(TestRegistry::REFRESH_TOKEN);
            token_response(state, TestRegistry::USERNAME, &access, refresh)
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

fn caller(headers: &HeaderMap) -> Caller {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Caller::Anonymous;
    };
    let creds = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    match creds.as_deref().and_then(|c| c.split_once(':')) {
        Some((user, pass)) if user == TestRegistry::USERNAME && pass == TestRegistry::PASSWORD => {
            Caller::User(user.to_owned())
        }
        _ => Caller::Rejected,
    }
}

/// "repository:NAME:pull,push" -> {type, name, actions}. The name may itself hold ':'
/// (a registry host with port), so the actions are after the last one.
fn access_entry(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(serde_json::json!({ "type": kind, "name": name, "actions": actions }))
}

fn token_response(
    state: &IssuerState,
    subject: &str,
    access: &[serde_json::Value],
    refresh_token: Option<&str>,
) -> Response {
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": state.issuer,
        "sub": subject,
        "aud": state.service,
        "exp": now + EXPIRES_IN,
        // A little slack for clock differences between us and the registry.
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": jti(),
        "access": access,
    });
    let token = match state.signer.sign(&claims) {
        Ok(t) => {
            // The signature is what makes a token a credential; a leak of the whole token
            // contains it.
            let signature = t.rsplit('.').next().unwrap_or_default();
            crate::ledger::register("token issuer: issued token (signature)", signature);
            t
        }
        Err(e) => {
            tracing::error!(error = %e, "token signing failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": EXPIRES_IN,
        "issued_at": rfc3339(now),
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = serde_json::Value::from(refresh);
    }
    json_response(StatusCode::OK, &body)
}

fn jti() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("system randomness is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unauthorized() -> Response {
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"kb-test-issuer\""),
    );
    resp
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": error }))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("static status and header make a valid response")
}

#[cfg(test)]
mod tests {
    use super::access_entry;

    #[test]
    fn scope_names_may_hold_colons() {
        let entry = access_entry("repository:127.0.0.1:5000/app:pull,push").expect("parses");
        assert_eq!(entry["name"], "127.0.0.1:5000/app");
        assert_eq!(entry["actions"], serde_json::json!(["pull", "push"]));
        assert!(access_entry("nonsense").is_none());
    }
}
