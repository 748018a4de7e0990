//! The presence web page (`ui/index.html`): sign in by name, add friends, see them come and go
//! live. Plain HTML and JS that calls the presence service through the proxy's HTTP/JSON API
//! from the browser (another origin than the page's: start the proxy with
//! `--cors-allowed-origins` naming the page's origin).
//!
//! The example serves it when `UI_PORT` is set, on `HOST` (default `127.0.0.1`), with
//! `PROXY_URL` (default: port 9000 of the host the page was loaded from) written into the page.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// The page as written, with `{{PROXY_URL}}` where the proxy's URL goes.
const PAGE: &str = include_str!("../ui/index.html");

/// Why the page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// An environment variable has an invalid value.
    #[error("{variable}: {reason}")]
    Setting {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The port could not be listened on.
    #[error("cannot serve the page on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The page with `proxy_url` (`http(s)://host:port`, or empty for the default) written in.
///
/// # Errors
///
/// If `proxy_url` is not an `http://` or `https://` URL of plain characters.
pub fn page(proxy_url: &str) -> Result<String, UiError> {
    let plain = proxy_url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:/[]%".contains(c));
    let scheme = proxy_url.starts_with("http://") || proxy_url.starts_with("https://");
    if !proxy_url.is_empty() && (!plain || !scheme) {
        return Err(UiError::Setting {
            variable: "PROXY_URL",
            reason: format!("`{proxy_url}` is not a URL like http://localhost:9000"),
        });
    }
    Ok(PAGE.replace("{{PROXY_URL}}", proxy_url.trim_end_matches('/')))
}

/// Serves `page` at `/` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, page: String) -> std::io::Result<()> {
    let router =
        Router::new().route(
            "/",
            get(move || async move {
                ([(CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
            }),
        );
    axum::serve(listener, router).await
}

/// Starts serving the page in the background if `UI_PORT` is set (see the module docs);
/// returns where.
///
/// # Errors
///
/// If a variable is invalid or the port cannot be listened on.
pub async fn serve_from_env() -> Result<Option<SocketAddr>, UiError> {
    let Ok(port) = std::env::var("UI_PORT") else {
        return Ok(None);
    };
    let setting = |variable, reason| UiError::Setting { variable, reason };
    let port: u16 = port
        .parse()
        .map_err(|_| setting("UI_PORT", format!("`{port}` is not a port number")))?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let host = host
        .parse()
        .map_err(|_| setting("HOST", format!("`{host}` is not an IP address")))?;
    let page = page(&std::env::var("PROXY_URL").unwrap_or_default())?;
    let address = SocketAddr::new(host, port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| UiError::Listen { address, source })?;
    tokio::spawn(async move {
        if let Err(error) = serve(listener, page).await {
            eprintln!("the presence page stopped: {error}");
        }
    });
    Ok(Some(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_url_is_written_into_the_page() {
        let page = page("http://127.0.0.1:9100/").unwrap();
        assert!(page.contains("\"http://127.0.0.1:9100\""), "{page}");
        assert!(!page.contains("{{PROXY_URL}}"));
        assert!(super::page("").unwrap().contains("|| \"\" ||"));
        for bad in [
            "localhost:9000",
            "http://x\"><script>",
            "javascript:alert(1)",
        ] {
            assert!(super::page(bad).is_err(), "{bad} was accepted");
        }
    }
}
