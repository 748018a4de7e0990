//! The Cloudstate TCK (technology compatibility kit).
//!
//! It checks both sides of the Cloudstate protocol:
//!
//! - **backend** cases check a proxy: the runner starts the user function, then a recording
//!   [relay](relay) that the proxy takes for the user function, then the proxy pointed at the
//!   relay; it calls the TCK model services through the proxy (gRPC and HTTP/JSON) and checks
//!   what the client sees and what crossed the protocol (message order, command ids, `init`
//!   contents, replayed events, streams closed on passivation). Cases with `tck-misbehaving`
//!   check that the proxy answers a broken user function clearly and recovers.
//! - **frontend** (model) cases check a support library: the runner plays the proxy and talks
//!   to the user function's model services directly.
//!
//! The model services are in `proto/cloudstate/tck/model/*.proto`, wire-compatible with the
//! original TCK's. This crate's binaries: `cloudstate-tck` (the runner), `tck-model` (the model
//! services written with the Rust SDK, the reference frontend) and `tck-misbehaving` (a user
//! function on the raw protocol that breaks it on purpose). `docs/tck.md` maps every case of the
//! original TCK to ours.

#![warn(missing_docs)]

mod cases;
mod error;
pub mod frontend;
pub mod http;
pub mod messages;
pub mod misbehaviour;
pub mod process;
pub mod proto;
pub mod relay;
pub mod runner;

pub use cases::{Case, CaseResult, Ctx, ProxyEndpoint, Setup, Side, catalogue};
pub use error::{CheckExt, Error, ensure, ensure_eq};
pub use runner::{Config, Outcome, Report, run};
