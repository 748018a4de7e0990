//! The proxy's own port, logging and shutdown.

use std::net::IpAddr;

use clap::{Args, ValueEnum};
use cloudstate_ingress::cors::CorsOrigins;

use super::HumanDuration;

/// The port serving the user's API and the operations endpoints; logs; shutdown.
#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerOptions {
    /// Port serving the user's API (gRPC and HTTP/JSON), `/live`, `/ready` and `/metrics`.
    #[arg(long, env = "HTTP_PORT", default_value_t = 9000)]
    pub http_port: u16,

    /// Interface to listen on.
    #[arg(long, env = "HTTP_INTERFACE", default_value = "0.0.0.0")]
    pub http_interface: IpAddr,

    /// On SIGTERM/SIGINT, how long in-flight calls may take to finish before the proxy exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: HumanDuration,

    /// Log format: `text` (human-readable lines) or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Web page origins allowed to call the proxy from a browser (CORS), comma-separated
    /// (`http://localhost:8000,https://chat.example.com`), or `*` for any. Off when unset.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<CorsOrigins>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
