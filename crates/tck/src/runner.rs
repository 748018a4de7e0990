//! The runner: sets up what the selected cases need (the user function, the relay, the proxy,
//! misbehaving user functions), runs the cases one at a time and reports each outcome.
//!
//! Order: model cases against the user function alone; then the proxy cases (the user function
//! first, the relay second, the proxy last, pointed at the relay), the cases that restart the
//! proxy last among them; then, with the proxy stopped, the cases of misbehaving user
//! functions, each discovery misbehaviour with a user function and a proxy of its own.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloudstate_protocol::entity_discovery_client::EntityDiscoveryClient;
use cloudstate_protocol::{EntitySpec, ProxyInfo, entity_type};
use tonic::transport::{Channel, Endpoint};

use crate::Error;
use crate::cases::{Case, Ctx, ProxyEndpoint, Setup, Side, catalogue};
use crate::misbehaviour::DISCOVERY_ENV;
use crate::process::{Launch, Process};
use crate::relay::{Recorder, Relay};

/// How long a case may take in all.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the relay waits for late calls after a case before checking for unexpected ones.
const SETTLE: Duration = Duration::from_millis(20);

/// What to run, and against what.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Shell command starting the user function. It gets `HOST` and `PORT` in its environment
    /// (and `{service_port}` substituted).
    pub service_cmd: Option<String>,
    /// Where the user function listens: the one started by `service_cmd` (default a free port
    /// on 127.0.0.1), or one already running.
    pub service_addr: Option<SocketAddr>,
    /// Shell command starting the proxy. It gets `HTTP_PORT`, `HTTP_INTERFACE`,
    /// `USER_FUNCTION_HOST`, `USER_FUNCTION_PORT` (the relay) and, with a store,
    /// `CLOUDSTATE_STORE` in its environment (and `{proxy_port}`, `{relay_port}`, `{store}`
    /// substituted).
    pub proxy_cmd: Option<String>,
    /// Where the proxy listens: the one started by `proxy_cmd` (default a free port on
    /// 127.0.0.1), or one already running and pointed at the relay.
    pub proxy_addr: Option<SocketAddr>,
    /// Where the relay listens (default: any free port for a proxy the runner starts,
    /// `127.0.0.1:8090` for one already running).
    pub relay_addr: Option<SocketAddr>,
    /// The proxy's store setting, passed on as `CLOUDSTATE_STORE`; also tells the runner
    /// whether state survives a restart (anything but `memory`).
    pub store: Option<String>,
    /// Shell command starting `tck-misbehaving` (gets `HOST`, `PORT` and `TCK_MISBEHAVIOUR`).
    pub misbehaving_cmd: Option<String>,
    /// Only cases whose name contains this text (case-insensitive).
    pub filter: Option<String>,
    /// Only the cases of this side.
    pub only: Option<Side>,
    /// Print the relay's log of every failed case.
    pub trace: bool,
    /// Keep the processes' logs here (default: a temporary directory, removed at the end).
    pub log_dir: Option<PathBuf>,
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation held.
    Pass,
    /// An expectation did not hold (or the setup failed): why.
    Fail(String),
    /// The case could not run here: why.
    Pending(String),
}

/// The outcome of every case run.
#[derive(Debug, Default)]
pub struct Report {
    /// Case names and outcomes, in the order run.
    pub outcomes: Vec<(String, Outcome)>,
}

impl Report {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Pass))
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Fail(_)))
    }

    /// Cases that are pending.
    pub fn pending(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Pending(_)))
    }

    fn count(&self, matching: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| matching(outcome))
            .count()
    }
}

impl fmt::Display for Report {
    /// `N passed, M failed, P pending`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} pending",
            self.passed(),
            self.failed(),
            self.pending()
        )
    }
}

/// One line per outcome: `PASS name`, `FAIL name: reason`, `PENDING name: reason` (reasons of
/// several lines are indented).
pub fn format_outcome(name: &str, outcome: &Outcome) -> String {
    let indent = |reason: &str| reason.replace('\n', "\n      ");
    match outcome {
        Outcome::Pass => format!("PASS {name}"),
        Outcome::Fail(reason) => format!("FAIL {name}: {}", indent(reason)),
        Outcome::Pending(reason) => format!("PENDING {name}: {}", indent(reason)),
    }
}

/// The cases `config` selects, in catalogue order.
pub fn selected(config: &Config) -> Vec<Case> {
    let filter = config.filter.as_deref().map(str::to_lowercase);
    catalogue()
        .into_iter()
        .filter(|case| config.only.is_none_or(|side| case.side == side))
        .filter(|case| {
            filter
                .as_deref()
                .is_none_or(|filter| case.name.to_lowercase().contains(filter))
        })
        .collect()
}

/// Runs the cases `config` selects; `out` gets each line as it is known (outcomes, traces).
///
/// # Errors
///
/// Only errors of the runner itself (creating the log directory); everything that goes wrong
/// with the systems under test is a failed case.
pub async fn run(config: &Config, out: &mut (dyn FnMut(&str) + Send)) -> Result<Report, Error> {
    let cases = selected(config);
    let temporary;
    let log_dir = match &config.log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("cloudstate-tck-")
                .tempdir()?;
            temporary.path().to_owned()
        }
    };
    let tag = run_tag();
    let mut runner = Runner {
        config,
        log_dir,
        report: Report::default(),
        out,
    };

    let model: Vec<&Case> = cases.iter().filter(|c| c.setup == Setup::Model).collect();
    let mut proxy: Vec<&Case> = cases.iter().filter(|c| c.setup == Setup::Proxy).collect();
    proxy.extend(cases.iter().filter(|c| c.setup == Setup::ProxyRestart));
    let shared: Vec<&Case> = cases
        .iter()
        .filter(|c| c.setup == Setup::Misbehaving(None))
        .collect();
    let own: Vec<&Case> = cases
        .iter()
        .filter(|c| matches!(c.setup, Setup::Misbehaving(Some(_))))
        .collect();

    if !model.is_empty() || !proxy.is_empty() {
        match runner.start_service().await {
            Ok(mut service) => {
                if !model.is_empty() {
                    let ctx = new_ctx(&tag, "m", service.spec.clone());
                    let ctx = Ctx {
                        service: Some(service.channel.clone()),
                        ..ctx
                    };
                    runner.run_cases(&model, &ctx).await;
                }
                if !proxy.is_empty() {
                    match runner.proxy_env(&tag, service.address).await {
                        Ok((ctx, relay)) => {
                            runner.run_cases(&proxy, &ctx).await;
                            teardown(ctx, Some(relay)).await;
                        }
                        Err(error) => runner.fail_all(&proxy, &error),
                    }
                }
                if let Some(process) = &mut service.process {
                    process.stop(Duration::from_secs(10)).await;
                }
            }
            Err(error) => {
                runner.fail_all(&model, &error);
                runner.fail_all(&proxy, &error);
            }
        }
    }

    if !shared.is_empty() {
        match runner.misbehaving_env(&tag, None).await {
            Ok((ctx, relay)) => {
                runner.run_cases(&shared, &ctx).await;
                teardown(ctx, Some(relay)).await;
            }
            Err(error) => runner.fail_all(&shared, &error),
        }
    }
    for (n, case) in own.into_iter().enumerate() {
        let Setup::Misbehaving(Some(mode)) = case.setup else {
            unreachable!("selected by setup");
        };
        match runner
            .misbehaving_env(&format!("{tag}{n}"), Some(mode))
            .await
        {
            Ok((ctx, relay)) => {
                runner.run_cases(&[case], &ctx).await;
                teardown(ctx, Some(relay)).await;
            }
            Err(error) => runner.fail_all(&[case], &error),
        }
    }
    Ok(runner.report)
}

/// A short text unique to this run (entity ids include it, so runs on one store never meet).
fn run_tag() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!(
        "{:x}{:x}",
        millis % 0x1_0000_0000,
        std::process::id() % 0x1000
    )
}

fn new_ctx(tag: &str, phase: &str, spec: EntitySpec) -> Ctx {
    Ctx {
        spec,
        proxy_info: None,
        service: None,
        proxy: None,
        recorder: None,
        managed_proxy: None,
        managed_service: None,
        service_addr: None,
        restartable: false,
        tag: format!("{tag}{phase}"),
        ids: AtomicU64::new(1),
    }
}

async fn teardown(mut ctx: Ctx, relay: Option<Relay>) {
    if let Some(proxy) = ctx.managed_proxy.take() {
        proxy.into_inner().stop().await;
    }
    if let Some(service) = ctx.managed_service.take() {
        service.into_inner().stop().await;
    }
    if let Some(relay) = relay {
        relay.stop().await;
    }
}

/// A process the runner started, restartable with the same settings.
pub struct Managed {
    launch: Launch,
    log_dir: PathBuf,
    process: Option<Process>,
}

impl Managed {
    fn start(launch: Launch, log_dir: &Path) -> Result<Managed, Error> {
        let process = launch.spawn(log_dir)?;
        Ok(Managed {
            launch,
            log_dir: log_dir.to_owned(),
            process: Some(process),
        })
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s) and starts it again.
    pub(crate) async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await;
        self.process = Some(self.launch.spawn(&self.log_dir)?);
        Ok(())
    }

    /// Stops the process.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10)).await;
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.as_mut()?.wait_exit(timeout).await
    }

    /// Whether the process exited; a setup error with its last output if so.
    fn check_running(&mut self, waiting_for: &str) -> Result<(), Error> {
        let Some(process) = self.process.as_mut() else {
            return Err(Error::Setup(format!("{} is not running", self.launch.name)));
        };
        match process.exited() {
            None => Ok(()),
            Some(status) => Err(Error::Setup(format!(
                "{} exited ({status}) before {waiting_for}; its last output ({}):\n{}",
                process.name(),
                process.log().display(),
                process.output_tail(30)
            ))),
        }
    }
}

/// The user function of the model and proxy cases.
struct Service {
    process: Option<Process>,
    address: SocketAddr,
    channel: Channel,
    spec: EntitySpec,
}

struct Runner<'a> {
    config: &'a Config,
    log_dir: PathBuf,
    report: Report,
    out: &'a mut (dyn FnMut(&str) + Send),
}

impl Runner<'_> {
    fn record(&mut self, name: &str, outcome: Outcome) {
        (self.out)(&format_outcome(name, &outcome));
        self.report.outcomes.push((name.to_owned(), outcome));
    }

    fn fail_all(&mut self, cases: &[&Case], error: &Error) {
        for case in cases {
            let outcome = match error {
                Error::Pending(reason) => Outcome::Pending(reason.clone()),
                error => Outcome::Fail(error.to_string()),
            };
            self.record(&case.name, outcome);
        }
    }

    async fn run_cases(&mut self, cases: &[&Case], ctx: &Ctx) {
        for case in cases {
            let outcome = self.run_case(case, ctx).await;
            self.record(&case.name, outcome);
        }
    }

    async fn run_case(&mut self, case: &Case, ctx: &Ctx) -> Outcome {
        if let Some(reason) = case.pending {
            return Outcome::Pending(reason.to_owned());
        }
        let missing: Vec<&str> = case
            .requires
            .iter()
            .filter(|service| {
                !ctx.spec
                    .entities
                    .iter()
                    .any(|e| e.service_name == **service)
            })
            .copied()
            .collect();
        if !missing.is_empty() {
            return Outcome::Pending(format!(
                "the user function does not serve {}",
                missing.join(", ")
            ));
        }
        if case.setup == Setup::ProxyRestart && !ctx.restartable {
            return Outcome::Pending(
                "restarting the proxy needs --proxy-cmd and a durable --store (not memory)".into(),
            );
        }
        let mark = ctx.recorder.as_ref().map(|recorder| recorder.log_mark());
        let result = tokio::time::timeout(CASE_TIMEOUT, case.run(ctx))
            .await
            .unwrap_or_else(|_| Err(Error::Check(format!("timed out after {CASE_TIMEOUT:?}"))));
        let leftovers = match &ctx.recorder {
            Some(recorder) => recorder.verify_no_more_interactions(SETTLE).await,
            None => Ok(()),
        };
        let outcome = match (result, leftovers) {
            (Ok(()), Ok(())) => Outcome::Pass,
            (Err(Error::Pending(reason)), _) => Outcome::Pending(reason),
            (Err(error), _) | (Ok(()), Err(error)) => Outcome::Fail(error.to_string()),
        };
        if self.config.trace
            && matches!(outcome, Outcome::Fail(_))
            && let (Some(recorder), Some(mark)) = (&ctx.recorder, mark)
        {
            (self.out)("      what crossed the protocol:");
            for entry in recorder.log_since(mark) {
                (self.out)(&format!("      {entry}"));
            }
        }
        outcome
    }

    /// Starts (or reaches) the user function and asks it for its spec.
    async fn start_service(&mut self) -> Result<Service, Error> {
        let config = self.config;
        let address = config.service_addr.unwrap_or_else(|| local(free_port()));
        let process = match &config.service_cmd {
            Some(command) => Some(
                Launch {
                    name: "service".into(),
                    command: substitute(command, &[("service_port", address.port().to_string())]),
                    env: vec![
                        ("HOST".into(), address.ip().to_string()),
                        ("PORT".into(), address.port().to_string()),
                    ],
                }
                .spawn(&self.log_dir)?,
            ),
            None if config.service_addr.is_some() => None,
            None => {
                return Err(Error::Pending(
                    "no user function: give --service-cmd or --service-addr".into(),
                ));
            }
        };
        let mut service = Service {
            process,
            address,
            channel: channel(address)?,
            spec: EntitySpec::default(),
        };
        service.spec = discover_directly(&service.channel, || match &mut service.process {
            Some(process) => match process.exited() {
                Some(status) => Err(Error::Setup(format!(
                    "the user function exited ({status}) before answering discovery; its last \
                     output ({}):\n{}",
                    process.log().display(),
                    process.output_tail(30)
                ))),
                None => Ok(()),
            },
            None => Ok(()),
        })
        .await?;
        Ok(service)
    }

    /// The relay in front of the user function at `service`, and the proxy behind it.
    async fn proxy_env(&mut self, tag: &str, service: SocketAddr) -> Result<(Ctx, Relay), Error> {
        let config = self.config;
        if config.proxy_cmd.is_none() && config.proxy_addr.is_none() {
            return Err(Error::Pending(
                "no proxy: give --proxy-cmd or --proxy-addr".into(),
            ));
        }
        let relay_addr = config.relay_addr.unwrap_or(match config.proxy_cmd {
            Some(_) => local(0),
            None => local(8090),
        });
        let relay = Relay::start(relay_addr, service).await?;
        let proxy_addr = config.proxy_addr.unwrap_or_else(|| local(free_port()));
        let mut managed = match &config.proxy_cmd {
            Some(command) => Some(self.start_proxy(command, "proxy", proxy_addr, &relay)?),
            None => None,
        };
        let recorder = relay.recorder().clone();
        match &mut managed {
            Some(managed) => wait_for_proxy(managed, &recorder, 0, proxy_addr).await?,
            None => wait_for_external_proxy(&recorder, proxy_addr).await?,
        }
        let ctx = self.ctx_with_proxy(tag, "p", recorder, proxy_addr).await?;
        let restartable = managed.is_some()
            && config
                .store
                .as_deref()
                .is_some_and(|store| store != "memory");
        Ok((
            Ctx {
                managed_proxy: managed.map(tokio::sync::Mutex::new),
                restartable,
                ..ctx
            },
            relay,
        ))
    }

    /// `tck-misbehaving` (with discovery misbehaviour `mode`, if any), the relay and a proxy.
    async fn misbehaving_env(
        &mut self,
        tag: &str,
        mode: Option<&str>,
    ) -> Result<(Ctx, Relay), Error> {
        let config = self.config;
        let (Some(misbehaving), Some(proxy_cmd)) = (&config.misbehaving_cmd, &config.proxy_cmd)
        else {
            return Err(Error::Pending(
                "misbehaving user functions need --proxy-cmd and tck-misbehaving \
                 (--misbehaving-cmd)"
                    .into(),
            ));
        };
        let name = format!("misbehaving-{}", mode.unwrap_or("runtime"));
        let address = local(free_port());
        let mut service = Managed::start(
            Launch {
                name: name.clone(),
                command: misbehaving.clone(),
                env: vec![
                    ("HOST".into(), address.ip().to_string()),
                    ("PORT".into(), address.port().to_string()),
                    (DISCOVERY_ENV.into(), mode.unwrap_or("correct").into()),
                ],
            },
            &self.log_dir,
        )?;
        let service_channel = channel(address)?;
        discover_directly(&service_channel, || {
            service.check_running("answering discovery")
        })
        .await?;
        let relay = Relay::start(local(0), address).await?;
        let proxy_addr = local(free_port());
        let mut proxy =
            self.start_proxy(proxy_cmd, &format!("proxy-{name}"), proxy_addr, &relay)?;
        let recorder = relay.recorder().clone();
        let ctx = match mode {
            None => {
                wait_for_proxy(&mut proxy, &recorder, 0, proxy_addr).await?;
                self.ctx_with_proxy(tag, "x", recorder, proxy_addr).await?
            }
            Some(_) => {
                // The proxy must refuse this spec: it is never ready; the case checks how.
                wait_for_discovery(Some(&mut proxy), &recorder, 0).await?;
                let discovery = recorder.discoveries().remove(0);
                Ctx {
                    proxy_info: Some(discovery.proxy_info),
                    recorder: Some(recorder),
                    ..new_ctx(tag, "d", discovery.result.unwrap_or_default())
                }
            }
        };
        Ok((
            Ctx {
                managed_proxy: Some(tokio::sync::Mutex::new(proxy)),
                managed_service: Some(tokio::sync::Mutex::new(service)),
                service_addr: Some(address),
                ..ctx
            },
            relay,
        ))
    }

    fn start_proxy(
        &self,
        command: &str,
        name: &str,
        address: SocketAddr,
        relay: &Relay,
    ) -> Result<Managed, Error> {
        let relay_addr = relay.address();
        let store = self.config.store.clone();
        let command = substitute(
            command,
            &[
                ("proxy_port", address.port().to_string()),
                ("relay_port", relay_addr.port().to_string()),
                ("store", store.clone().unwrap_or_default()),
            ],
        );
        let mut env = vec![
            ("HTTP_PORT".to_owned(), address.port().to_string()),
            ("HTTP_INTERFACE".to_owned(), address.ip().to_string()),
            ("USER_FUNCTION_HOST".to_owned(), relay_addr.ip().to_string()),
            (
                "USER_FUNCTION_PORT".to_owned(),
                relay_addr.port().to_string(),
            ),
        ];
        if let Some(store) = store {
            env.push(("CLOUDSTATE_STORE".to_owned(), store));
        }
        Managed::start(
            Launch {
                name: name.to_owned(),
                command,
                env,
            },
            &self.log_dir,
        )
    }

    async fn ctx_with_proxy(
        &self,
        tag: &str,
        phase: &str,
        recorder: Arc<Recorder>,
        proxy_addr: SocketAddr,
    ) -> Result<Ctx, Error> {
        let discovery = recorder.discoveries().remove(0);
        let spec = discovery.result.map_err(|status| {
            Error::Setup(format!("the user function failed discovery: {status}"))
        })?;
        Ok(Ctx {
            proxy_info: Some(discovery.proxy_info),
            proxy: Some(ProxyEndpoint {
                address: proxy_addr,
                channel: channel(proxy_addr)?,
            }),
            recorder: Some(recorder),
            ..new_ctx(tag, phase, spec)
        })
    }
}

/// Waits until the proxy the runner started has discovered (more than `discoveries` calls
/// recorded) and is ready: `GET /ready` answers anything but 503.
pub(crate) async fn wait_for_proxy(
    managed: &mut Managed,
    recorder: &Recorder,
    discoveries: usize,
    address: SocketAddr,
) -> Result<(), Error> {
    wait_for_discovery(Some(managed), recorder, discoveries).await?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        managed.check_running("being ready")?;
        if let Ok(reply) = crate::http::get(address, "/ready").await
            && reply.status != 503
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Setup(format!(
                "the proxy was not ready at {address} after {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_external_proxy(recorder: &Recorder, address: SocketAddr) -> Result<(), Error> {
    wait_for_discovery(None, recorder, 0).await?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(reply) = crate::http::get(address, "/ready").await
            && reply.status != 503
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Setup(format!(
        "the proxy at {address} was not ready after {START_TIMEOUT:?}"
    )))
}

async fn wait_for_discovery(
    mut managed: Option<&mut Managed>,
    recorder: &Recorder,
    discoveries: usize,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if recorder.discoveries().len() > discoveries {
            return Ok(());
        }
        if let Some(managed) = managed.as_deref_mut() {
            managed.check_running("calling discover")?;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Setup(format!(
                "the proxy did not call discover on the relay within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls `discover` on the user function until it answers (as the original TCK's interceptor
/// does before it starts), checking `alive` between attempts.
async fn discover_directly(
    channel: &Channel,
    mut alive: impl FnMut() -> Result<(), Error>,
) -> Result<EntitySpec, Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let info = tck_proxy_info();
    loop {
        let attempt = EntityDiscoveryClient::new(channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
            .discover(info.clone())
            .await;
        match attempt {
            Ok(spec) => return Ok(spec.into_inner()),
            Err(status) => {
                alive()?;
                if tokio::time::Instant::now() > deadline {
                    return Err(Error::Setup(format!(
                        "the user function did not answer discovery within {START_TIMEOUT:?}: \
                         {status}"
                    )));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the runner says about itself when it discovers a user function directly.
fn tck_proxy_info() -> ProxyInfo {
    ProxyInfo {
        protocol_major_version: 0,
        protocol_minor_version: 2,
        proxy_name: "cloudstate-tck".into(),
        proxy_version: env!("CARGO_PKG_VERSION").into(),
        supported_entity_types: [
            entity_type::ACTION,
            entity_type::VALUE_ENTITY,
            entity_type::EVENT_SOURCED,
            entity_type::CRDT,
        ]
        .map(str::to_owned)
        .into(),
    }
}

/// Restarts the user function the runner started and waits until it answers discovery.
pub(crate) async fn restart_service(
    managed: &mut Managed,
    address: SocketAddr,
) -> Result<(), Error> {
    managed.restart().await?;
    discover_directly(&channel(address)?, || {
        managed.check_running("answering discovery")
    })
    .await
    .map(|_| ())
}

fn channel(address: SocketAddr) -> Result<Channel, Error> {
    Ok(Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| Error::Setup(format!("address {address}: {error}")))?
        .connect_lazy())
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind(local(0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or(0)
}

/// Replaces each `{name}` in `command` by its value.
fn substitute(command: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(command.to_owned(), |command, (name, value)| {
            command.replace(&format!("{{{name}}}"), value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted() {
        let command = substitute(
            "proxy --port {proxy_port} --uf {relay_port} {unknown}",
            &[("proxy_port", "9000".into()), ("relay_port", "8090".into())],
        );
        assert_eq!(command, "proxy --port 9000 --uf 8090 {unknown}");
    }

    #[test]
    fn the_catalogue_has_unique_names() {
        let cases = catalogue();
        let mut names: Vec<_> = cases.iter().map(|case| case.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate case names");
    }

    #[test]
    fn filters_select_by_name_and_side() {
        let config = Config {
            filter: Some("ACTION MODEL".into()),
            only: Some(Side::Frontend),
            ..Config::default()
        };
        let cases = selected(&config);
        assert!(!cases.is_empty());
        assert!(
            cases
                .iter()
                .all(|case| case.name.starts_with("action model"))
        );
    }
}
