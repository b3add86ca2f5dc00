//! Test scaffolding, outside the product: loopback fakes of GitHub and of Claude, runs shaped
//! like the trainer's, and the official `wandb` SDK as a subprocess. The integration tests and
//! the `mlwf bench log` and `mlwf bench analyze` benchmarks use them. Built with the `testkit`
//! feature (on by default, so `cargo run -- bench ...` works from a checkout); release builds
//! leave it out.

pub mod claude;
pub mod github;
pub mod launch;
pub mod sdk;
pub mod synthetic;

use axum::Router;

/// A listener on a free loopback port and its base URL.
pub async fn bind_loopback() -> std::io::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// Serves `app` in the background for as long as the runtime lives.
pub fn serve(listener: tokio::net::TcpListener, app: Router) {
    // Without TCP_NODELAY a small response can wait out the client's delayed ACK (~40 ms),
    // which would dominate what `mlwf bench analyze` measures.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}
