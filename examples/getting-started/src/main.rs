//! Serves the counter on `HOST:PORT` (default `127.0.0.1:8080`) until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> Result<(), cloudstate::Error> {
    getting_started::server()?.serve_from_env().await
}
