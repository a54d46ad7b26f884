//! Serving an axum router on an ephemeral 127.0.0.1 port, in a task the owner aborts on drop.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;

/// Binds 127.0.0.1:0 and serves `router` in a spawned task.
pub(crate) async fn spawn_router(router: axum::Router) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr().context("listener address")?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "test HTTP server stopped");
        }
    });
    Ok((addr, task))
}
