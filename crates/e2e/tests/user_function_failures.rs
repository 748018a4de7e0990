//! A user function that restarts, stays down or freezes, end to end: the real proxy in front of
//! the test user function (`test-function`), which is killed, restarted and stopped as a
//! process.

use std::time::Duration;

use cloudstate_e2e::proto::counter_client::CounterClient;
use cloudstate_e2e::proto::ledger_client::LedgerClient;
use cloudstate_e2e::proto::relay_client::RelayClient;
use cloudstate_e2e::proto::{IncrementRequest, LedgerId, RecordRequest, Text};
use cloudstate_e2e::{START_TIMEOUT, Service, UserFunction};
use cloudstate_testutil::{Proxy, free_port, http_get_status};
use tonic::Code;
use tonic::transport::Channel;

/// Bounds a wait for something the proxy does by itself; never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(30);

struct Clients {
    counter: CounterClient<Channel>,
    ledger: LedgerClient<Channel>,
    relay: RelayClient<Channel>,
}

impl Clients {
    async fn new(proxy: &Proxy) -> Clients {
        let channel = proxy.channel().await.unwrap();
        Clients {
            counter: CounterClient::new(channel.clone()),
            ledger: LedgerClient::new(channel.clone()),
            relay: RelayClient::new(channel),
        }
    }

    async fn increment(&mut self, id: &str, by: i64) -> Result<i64, tonic::Status> {
        let request = IncrementRequest { id: id.into(), by };
        Ok(self.counter.increment(request).await?.into_inner().value)
    }

    async fn record(&mut self, id: &str, amount: i64) -> Result<i64, tonic::Status> {
        let request = RecordRequest {
            id: id.into(),
            amount,
            forward_to: String::new(),
        };
        Ok(self.ledger.record(request).await?.into_inner().value)
    }

    async fn total(&mut self, id: &str) -> Result<i64, tonic::Status> {
        let request = LedgerId { id: id.into() };
        Ok(self.ledger.total(request).await?.into_inner().value)
    }

    async fn echo(&mut self, text: &str) -> Result<String, tonic::Status> {
        let request = Text { text: text.into() };
        Ok(self.relay.echo(request).await?.into_inner().text)
    }
}

/// The value of an unlabelled metric in the proxy's `/metrics`, if it is there.
fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// Starts the test function on `port`, off the runtime's workers (starting waits for the port).
async fn restart(port: u16) -> UserFunction {
    tokio::task::spawn_blocking(move || UserFunction::test_function(port))
        .await
        .unwrap()
        .unwrap()
}

/// Entities whose stream died with the old user function process get a new stream for their
/// next command: the client never sees the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_user_function_is_invisible_to_idle_entities_of_every_kind() {
    let port = free_port();
    let service = Service::with(UserFunction::test_function(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        proxy,
    } = service;
    let mut clients = Clients::new(&proxy).await;
    assert_eq!(clients.increment("r", 2).await.unwrap(), 2);
    clients.record("r", 5).await.unwrap();
    assert_eq!(clients.echo("before").await.unwrap(), "before");

    user_function.process.kill();
    let _user_function = restart(port).await;

    // The first command to each entity after the restart succeeds.
    assert_eq!(clients.increment("r", 3).await.unwrap(), 5);
    clients.record("r", 1).await.unwrap();
    assert_eq!(clients.total("r").await.unwrap(), 6);
    assert_eq!(clients.echo("after").await.unwrap(), "after");
    let log = proxy.process.output();
    assert!(
        log.contains("ended while it was idle"),
        "the proxy says why it reopened the streams:\n{log}"
    );
}

/// While the user function does not accept connections, commands fail at once with
/// UNAVAILABLE instead of each trying to connect; the loss and the return are logged once each
/// and shown by a metric, and service resumes by itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_user_function_fails_commands_fast_and_service_resumes_by_itself() {
    let port = free_port();
    let service = Service::with(UserFunction::test_function(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        mut proxy,
    } = service;
    let mut clients = Clients::new(&proxy).await;
    assert_eq!(clients.increment("a", 1).await.unwrap(), 1);
    assert_eq!(metric(proxy.port, "cloudstate_user_function_up"), Some(1.0));

    user_function.process.kill();
    // The first command learns that the user function is gone.
    let error = clients.increment("b", 1).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let port_ = proxy.port;
    proxy
        .process
        .wait_until("reporting the user function down", PATIENCE, || {
            metric(port_, "cloudstate_user_function_up") == Some(0.0)
        })
        .unwrap();
    // Known down: commands of every kind fail fast, naming the cause.
    for error in [
        clients.increment("c", 1).await.unwrap_err(),
        clients.record("c", 1).await.unwrap_err(),
        clients.echo("x").await.unwrap_err(),
    ] {
        assert_eq!(error.code(), Code::Unavailable, "{error:?}");
        assert!(error.message().contains("is down"), "{error:?}");
    }
    assert_eq!(http_get_status(proxy.port, "/ready"), Some(503));

    let _user_function = restart(port).await;
    proxy
        .process
        .wait_until("reporting the user function up", PATIENCE, || {
            metric(port_, "cloudstate_user_function_up") == Some(1.0)
        })
        .unwrap();
    assert_eq!(clients.increment("a", 1).await.unwrap(), 1 + 1);
    assert_eq!(clients.echo("back").await.unwrap(), "back");
    assert_eq!(
        metric(proxy.port, "cloudstate_user_function_losses_total"),
        Some(1.0)
    );
    let log = proxy.process.output();
    assert_eq!(
        log.matches("lost the user function").count(),
        1,
        "one line for the loss:\n{log}"
    );
    assert_eq!(
        log.matches("is reachable again").count(),
        1,
        "one line for the return:\n{log}"
    );
}

/// A frozen user function (SIGSTOP) still accepts TCP connections but answers nothing: the
/// proxy's bounded probe makes it not ready, and ready again once it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_user_function_is_not_ready() {
    let port = free_port();
    let service = Service::with(UserFunction::test_function(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        user_function,
        mut proxy,
    } = service;
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &user_function.process.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let port_ = proxy.port;
    signal("-STOP");
    proxy
        .process
        .wait_until("not ready", PATIENCE, || {
            http_get_status(port_, "/ready") == Some(503)
        })
        .unwrap();
    signal("-CONT");
    proxy
        .process
        .wait_until("ready again", START_TIMEOUT, || {
            http_get_status(port_, "/ready") == Some(200)
        })
        .unwrap();
    let mut clients = Clients::new(&proxy).await;
    assert_eq!(clients.increment("f", 1).await.unwrap(), 1);
}
