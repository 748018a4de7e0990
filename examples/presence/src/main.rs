//! Serves the presence user function on `HOST:PORT` (default `127.0.0.1:8080`) until Ctrl-C or
//! SIGTERM, and its web page on `HOST:UI_PORT` if `UI_PORT` is set (see `presence::ui`). Logs
//! go to stderr, filtered by `RUST_LOG` (default `info`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(address) = presence::ui::serve_from_env().await? {
        eprintln!("presence page on http://{address}/");
    }
    presence::server()?.serve_from_env().await?;
    Ok(())
}
