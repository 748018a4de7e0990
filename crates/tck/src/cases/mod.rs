//! The cases: what each checks, what it needs, and the context it runs in.
//!
//! Every case of the original TCK (§2.3–2.8 of the behaviour inventory) has a counterpart here
//! named after it; cases the original did not have say so (`original: "ours"`).
//! `docs/tck.md` has the table.

mod action;
mod crdt;
mod discovery;
mod event_sourced;
mod misbehaving;
mod reflection;
mod value_entity;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloudstate_protocol::{Entity, EntitySpec, ProxyInfo};
use futures_util::future::BoxFuture;
use prost::Message;
use tonic::transport::Channel;

use crate::Error;
use crate::relay::Recorder;
use crate::runner::Managed;

/// What a case returns: `Ok` when it passed.
pub type CaseResult = Result<(), Error>;

/// Which side of the protocol a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A support library: the runner plays the proxy and talks to the user function directly.
    Frontend,
    /// A proxy: the runner is its client, and relays and records its calls to the user
    /// function.
    Backend,
}

/// What the runner sets up for a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The user function alone (frontend cases).
    Model,
    /// The user function behind the relay and the proxy.
    Proxy,
    /// Like [`Setup::Proxy`], with a proxy the runner started and a durable store: the case
    /// restarts the proxy.
    ProxyRestart,
    /// `tck-misbehaving` behind the relay and a proxy the runner started. With a discovery
    /// mode, a fresh user function and proxy for the case; without, one shared by the cases
    /// whose requests ask for the misbehaviour.
    Misbehaving(Option<&'static str>),
}

type CaseFn = dyn for<'a> Fn(&'a Ctx) -> BoxFuture<'a, CaseResult> + Send + Sync;

/// One case.
pub struct Case {
    /// `<suite> <model|proxy>: <what it verifies>`.
    pub name: String,
    /// What it checks.
    pub side: Side,
    /// What it needs.
    pub setup: Setup,
    /// The original TCK case it corresponds to (`<Spec> <number>`), or `ours`.
    pub original: String,
    /// Services the user function must serve for the case to run (else it is pending, as in
    /// the original).
    pub requires: &'static [&'static str],
    /// Why the case cannot pass yet, if so: it is reported pending without running.
    pub pending: Option<&'static str>,
    run: Box<CaseFn>,
}

impl Case {
    fn new<F>(side: Side, setup: Setup, name: impl Into<String>, run: F) -> Self
    where
        F: for<'a> Fn(&'a Ctx) -> BoxFuture<'a, CaseResult> + Send + Sync + 'static,
    {
        Case {
            name: name.into(),
            side,
            setup,
            original: "ours".to_owned(),
            requires: &[],
            pending: None,
            run: Box::new(run),
        }
    }

    /// A frontend case (the user function alone).
    fn model<F>(name: impl Into<String>, run: F) -> Self
    where
        F: for<'a> Fn(&'a Ctx) -> BoxFuture<'a, CaseResult> + Send + Sync + 'static,
    {
        Self::new(Side::Frontend, Setup::Model, name, run)
    }

    /// A backend case (the user function behind the relay and the proxy).
    fn proxy<F>(name: impl Into<String>, run: F) -> Self
    where
        F: for<'a> Fn(&'a Ctx) -> BoxFuture<'a, CaseResult> + Send + Sync + 'static,
    {
        Self::new(Side::Backend, Setup::Proxy, name, run)
    }

    fn original(mut self, original: impl Into<String>) -> Self {
        self.original = original.into();
        self
    }

    fn requires(mut self, services: &'static [&'static str]) -> Self {
        self.requires = services;
        self
    }

    fn setup(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }

    fn pending(mut self, reason: &'static str) -> Self {
        self.pending = Some(reason);
        self
    }

    /// Runs the case.
    pub fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, CaseResult> {
        (self.run)(ctx)
    }
}

/// Every case, in the order the original runs its suites: discovery, model cases (action,
/// value entity, event sourced, CRDT), proxy cases (the same, then reflection and eventing),
/// then the cases of misbehaving user functions.
pub fn catalogue() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(discovery::cases());
    cases.extend(action::model_cases());
    cases.extend(value_entity::model_cases());
    cases.extend(event_sourced::model_cases());
    cases.extend(crdt::model_cases());
    cases.extend(action::proxy_cases());
    cases.extend(value_entity::proxy_cases());
    cases.extend(event_sourced::proxy_cases());
    cases.extend(crdt::proxy_cases());
    cases.extend(reflection::cases());
    cases.extend(discovery::later_cases());
    cases.extend(misbehaving::cases());
    cases
}

/// The proxy as a client sees it.
#[derive(Debug, Clone)]
pub struct ProxyEndpoint {
    /// Its address (gRPC and HTTP).
    pub address: SocketAddr,
    /// A gRPC channel to it.
    pub channel: Channel,
}

/// What a case runs against, set up by the runner.
pub struct Ctx {
    pub(crate) spec: EntitySpec,
    pub(crate) proxy_info: Option<ProxyInfo>,
    pub(crate) service: Option<Channel>,
    pub(crate) proxy: Option<ProxyEndpoint>,
    pub(crate) recorder: Option<Arc<Recorder>>,
    pub(crate) managed_proxy: Option<tokio::sync::Mutex<Managed>>,
    pub(crate) managed_service: Option<tokio::sync::Mutex<Managed>>,
    pub(crate) service_addr: Option<SocketAddr>,
    pub(crate) restartable: bool,
    pub(crate) tag: String,
    pub(crate) ids: AtomicU64,
}

impl Ctx {
    /// The user function, called directly.
    pub fn service(&self) -> Result<&Channel, Error> {
        self.service
            .as_ref()
            .ok_or_else(|| Error::Pending("no user function to call directly".into()))
    }

    /// The proxy.
    pub fn proxy(&self) -> Result<&ProxyEndpoint, Error> {
        self.proxy
            .as_ref()
            .ok_or_else(|| Error::Pending("no proxy".into()))
    }

    /// What the relay recorded.
    pub fn relay(&self) -> Result<&Recorder, Error> {
        self.recorder
            .as_deref()
            .ok_or_else(|| Error::Pending("no relay".into()))
    }

    /// The entity spec the user function reported.
    pub fn spec(&self) -> &EntitySpec {
        &self.spec
    }

    /// What the proxy said about itself at discovery (backend only).
    pub fn proxy_info(&self) -> Result<&ProxyInfo, Error> {
        self.proxy_info
            .as_ref()
            .ok_or_else(|| Error::Pending("no proxy discovery recorded".into()))
    }

    /// The reported entity of `service`.
    pub fn entity(&self, service: &str) -> Result<&Entity, Error> {
        self.spec
            .entities
            .iter()
            .find(|entity| entity.service_name == service)
            .ok_or_else(|| Error::Check(format!("the user function does not report {service}")))
    }

    /// Full names of every service declared in the reported descriptor set.
    pub fn declared_services(&self) -> Result<Vec<String>, Error> {
        let files =
            prost_types::FileDescriptorSet::decode(self.spec.proto.clone()).map_err(|error| {
                Error::Check(format!("the descriptor set does not decode: {error}"))
            })?;
        Ok(files
            .file
            .iter()
            .flat_map(|file| {
                file.service
                    .iter()
                    .map(move |service| match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    })
            })
            .collect())
    }

    /// A fresh entity id: `<prefix>-<run tag>-<n>`, unique in this run and across runs on
    /// the same store.
    pub fn entity_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", self.tag)
    }

    /// Stops the proxy the runner started and starts it again, with the same settings and
    /// port, waiting until it is ready.
    pub async fn restart_proxy(&self) -> Result<(), Error> {
        let managed = self
            .managed_proxy
            .as_ref()
            .ok_or_else(|| Error::Pending("the runner did not start the proxy".into()))?;
        let recorder = self.relay()?;
        let discoveries = recorder.discoveries().len();
        let mut managed = managed.lock().await;
        managed.restart().await?;
        let address = self.proxy()?.address;
        crate::runner::wait_for_proxy(&mut managed, recorder, discoveries, address).await
    }

    /// Starts the user function the runner started again on the same port (stopping it first
    /// if it still runs), waiting until it answers discovery.
    pub async fn restart_service(&self) -> Result<(), Error> {
        let (Some(managed), Some(address)) = (&self.managed_service, self.service_addr) else {
            return Err(Error::Pending(
                "the runner did not start the user function".into(),
            ));
        };
        crate::runner::restart_service(&mut *managed.lock().await, address).await
    }

    /// Waits up to `timeout` for the proxy the runner started to exit; its exit code.
    pub async fn proxy_exit_code(&self, timeout: Duration) -> Result<Option<i32>, Error> {
        let managed = self
            .managed_proxy
            .as_ref()
            .ok_or_else(|| Error::Pending("the runner did not start the proxy".into()))?;
        let status = managed
            .lock()
            .await
            .wait_exit(timeout)
            .await
            .ok_or_else(|| {
                Error::Check(format!("the proxy was still running after {timeout:?}"))
            })?;
        Ok(status.code())
    }
}

/// Fails unless the user function serves every service in `services`.
fn has_services(ctx: &Ctx, services: &[&str]) -> Result<(), Error> {
    let declared = ctx.declared_services()?;
    for service in services {
        crate::error::ensure(declared.iter().any(|name| name == service), || {
            format!("the descriptor set does not declare {service}")
        })?;
    }
    Ok(())
}
