//! Serves the shopping cart user function on `HOST:PORT` (default `127.0.0.1:8080`) until
//! Ctrl-C or SIGTERM. Logs go to stderr, filtered by `RUST_LOG` (default `info`).

#[tokio::main]
async fn main() -> Result<(), cloudstate::Error> {
    shopping_cart::server()?.serve_from_env().await
}
