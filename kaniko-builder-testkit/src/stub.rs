//! A scriptable in-process HTTP server for protocol corner cases a real registry won't
//! produce on demand (odd challenges, truncated bodies, wrong digests, 5xx...).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use crate::server::spawn_router;

/// Largest request body the stub records.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request the stub received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRequest {
    /// Method, e.g. "GET".
    pub method: String,
    /// Path and query, e.g. "/v2/app/manifests/latest?x=1".
    pub path: String,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

impl StubRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain-HTTP server on 127.0.0.1 answering every request with a handler; shuts down on drop.
#[derive(Debug)]
pub struct StubServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<StubRequest>>>,
    task: JoinHandle<()>,
}

impl StubServer {
    /// Starts the server. `handler` sees each request (already recorded) and returns anything
    /// axum can turn into a response: `http::Response<axum::body::Body>`, `StatusCode`,
    /// `(StatusCode, [(header, value)], body)`, ...
    ///
    /// # Panics
    /// If 127.0.0.1:0 cannot be bound.
    pub async fn start<F, Fut, R>(handler: F) -> StubServer
    where
        F: Fn(StubRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        crate::init_tracing();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        let router = axum::Router::new().fallback(move |req: Request| {
            let handler = Arc::clone(&handler);
            let recorded = Arc::clone(&recorded);
            async move {
                let stub_req = match to_stub_request(req).await {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
                recorded
                    .lock()
                    .expect("stub request log lock is not poisoned")
                    .push(stub_req.clone());
                handler(stub_req).await.into_response()
            }
        });
        let (addr, task) = spawn_router(router)
            .await
            .expect("bind a stub server on 127.0.0.1");
        StubServer { addr, requests, task }
    }

    /// "127.0.0.1:PORT".
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests
            .lock()
            .expect("stub request log lock is not poisoned")
            .clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn to_stub_request(req: Request) -> Result<StubRequest, Response> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| http::StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
    Ok(StubRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    })
}
