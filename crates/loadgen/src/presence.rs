//! From a state change to a streamed client seeing it: the presence example.
//!
//! Every closed-loop client is one user (`<run id>-<n>`) with a `Monitor` stream opened before
//! the run (its first status, offline, read). Each call is one change, alternately:
//! - **connect**: start a `Connect` call (a streamed command that keeps the user online while
//!   it is open) and wait until the user's `Monitor` stream delivers `online = true`;
//! - **disconnect**: drop the `Connect` call (the client cancels it; the proxy cancels the
//!   streamed command, whose cancel handler withdraws the vote) and wait until the `Monitor`
//!   stream delivers `online = false`.
//!
//! The latency of a change runs from sending the `Connect` call (or cancelling it) to the
//! monitor's status arriving, and is recorded per kind of change as well as in the run's
//! overall histogram. A status other than the awaited one counts as unexpected (the monitor
//! only reports changes, so there should be none). After an error the user starts over with a
//! fresh monitor. After the run, with every connection closed, the check opens a new monitor
//! per user: every user must be reported offline within the timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::uri::PathAndQuery;
use prost::Message;

use crate::check::{PresenceCheck, UserOutcome};
use crate::keys::entity_id;
use crate::proto::{self, presence};
use crate::report::ChangeLatency;
use crate::runner::{self, Schedule, Workload};
use crate::transport::{CallError, Framed, GrpcClient, GrpcPool, GrpcStream, Home};

/// The two kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A `Connect` call starts: the user goes online.
    Connect,
    /// The `Connect` call is cancelled: the user goes offline.
    Disconnect,
}

impl Change {
    /// The status the monitor reports after this change.
    pub fn online_after(self) -> bool {
        self == Change::Connect
    }

    /// The change a user makes next: connect when offline, disconnect when online.
    pub fn next(connected: bool) -> Change {
        if connected {
            Change::Disconnect
        } else {
            Change::Connect
        }
    }
}

/// The latencies one user recorded in the measured window.
#[derive(Debug)]
struct Record {
    connect: Histogram<u64>,
    disconnect: Histogram<u64>,
    unexpected: u64,
}

impl Record {
    fn new() -> anyhow::Result<Self> {
        Ok(Record {
            connect: runner::histogram()?,
            disconnect: runner::histogram()?,
            unexpected: 0,
        })
    }
}

/// The presence workload: one user per client.
#[derive(Debug)]
pub struct PresenceWorkload {
    /// The connections for the `Connect` calls.
    pool: GrpcPool,
    /// The connections for the `Monitor` calls: the same ones, or others.
    monitor_pool: GrpcPool,
    /// The framed `User` of every user.
    users: Vec<Framed>,
    /// The monitors opened before the run, taken by the clients.
    monitors: Mutex<Vec<Option<GrpcStream>>>,
    /// Each user's latencies; only its own client locks it during the run.
    records: Vec<Mutex<Record>>,
    schedule: Schedule,
    timeout: Duration,
    connect: PathAndQuery,
    monitor: PathAndQuery,
}

/// One user's state.
#[derive(Debug)]
pub struct PresenceUser {
    index: usize,
    /// For the `Connect` calls.
    client: GrpcClient,
    /// For the `Monitor` calls.
    monitor_client: GrpcClient,
    /// `None` after an error: the next call opens a fresh one.
    monitor: Option<GrpcStream>,
    /// The open `Connect` call while the user is online.
    connection: Option<GrpcStream>,
}

/// The encoded `User` of user number `index` of run `run_id`.
pub fn user(run_id: &str, index: usize) -> Bytes {
    presence::User {
        user_id: entity_id(run_id, index),
    }
    .encode_to_vec()
    .into()
}

fn monitor_path() -> PathAndQuery {
    proto::path(presence::SERVICE, "Monitor")
}

/// Opens a `Monitor` stream for each of `users` users of run `run_id` (user `n` on the pool's
/// client `n`) and reads the first status of each, which must be offline.
pub async fn open_monitors(
    pool: &GrpcPool,
    run_id: &str,
    users: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<GrpcStream>> {
    let mut tasks = Vec::with_capacity(users);
    for index in 0..users {
        let mut client = pool.client(index);
        let request = Framed::new(&user(run_id, index));
        tasks.push(tokio::spawn(async move {
            let open = async {
                let mut monitor = client.server_streaming(&monitor_path(), &request).await?;
                match next_status(&mut monitor).await? {
                    false => Ok(monitor),
                    true => Err(CallError::BadReply),
                }
            };
            tokio::time::timeout(timeout, open)
                .await
                .unwrap_or(Err(CallError::Timeout))
        }));
    }
    let mut monitors = Vec::with_capacity(users);
    for (index, task) in tasks.into_iter().enumerate() {
        let monitor = task
            .await
            .context("a monitor task failed")?
            .map_err(|error| {
                anyhow::anyhow!(
                    "user {index}: the Monitor stream did not report the new user offline \
                     ({})",
                    CallError::name_of(error.index())
                )
            })?;
        monitors.push(monitor);
    }
    Ok(monitors)
}

/// The next status a monitor delivers.
async fn next_status(monitor: &mut GrpcStream) -> Result<bool, CallError> {
    match monitor.message().await? {
        Some(status) => presence::OnlineStatus::decode(status)
            .map(|status| status.online)
            .map_err(|_| CallError::BadReply),
        // The proxy ended the stream.
        None => Err(CallError::Status(tonic::Code::Unavailable)),
    }
}

/// Waits until the monitor reports `online`; returns when it arrived and how many other
/// statuses came first.
async fn wait_for(monitor: &mut GrpcStream, online: bool) -> Result<(Instant, u64), CallError> {
    let mut others = 0;
    loop {
        if next_status(monitor).await? == online {
            return Ok((Instant::now(), others));
        }
        others += 1;
    }
}

impl PresenceWorkload {
    /// A workload over the users whose monitors were opened by [`open_monitors`] on
    /// `monitor_pool`, connecting over `pool` and recording the changes that start in
    /// `schedule`'s measured window; a change not seen within `timeout` counts as a
    /// `ClientTimeout`.
    pub fn new(
        pool: GrpcPool,
        monitor_pool: GrpcPool,
        run_id: &str,
        monitors: Vec<GrpcStream>,
        schedule: Schedule,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let users = monitors.len();
        Ok(PresenceWorkload {
            pool,
            monitor_pool,
            users: (0..users)
                .map(|index| Framed::new(&user(run_id, index)))
                .collect(),
            monitors: Mutex::new(monitors.into_iter().map(Some).collect()),
            records: (0..users)
                .map(|_| Record::new().map(Mutex::new))
                .collect::<anyhow::Result<_>>()?,
            schedule,
            timeout,
            connect: proto::path(presence::SERVICE, "Connect"),
            monitor: monitor_path(),
        })
    }

    /// Makes the user's next change and waits for its monitor to report it.
    async fn change(&self, user: &mut PresenceUser) -> Result<(), CallError> {
        if user.monitor.is_none() {
            self.start_over(user).await?;
        }
        let PresenceUser {
            index,
            client,
            monitor,
            connection,
            ..
        } = user;
        let monitor = monitor.as_mut().ok_or(CallError::BadReply)?;
        let change = Change::next(connection.is_some());
        let started = Instant::now();
        let (seen, others) = match change {
            Change::Connect => {
                let connect = client.server_streaming(&self.connect, &self.users[*index]);
                let seen = wait_for(monitor, change.online_after());
                let (stream, seen) = tokio::try_join!(connect, seen)?;
                *connection = Some(stream);
                seen
            }
            Change::Disconnect => {
                // Dropping the call resets its HTTP/2 stream: the client cancels it.
                *connection = None;
                wait_for(monitor, change.online_after()).await?
            }
        };
        let mut record = self.records[*index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        record.unexpected += others;
        if started >= self.schedule.measure_from && started < self.schedule.end {
            let micros = u64::try_from((seen - started).as_micros()).unwrap_or(u64::MAX);
            match change {
                Change::Connect => record.connect.saturating_record(micros),
                Change::Disconnect => record.disconnect.saturating_record(micros),
            }
        }
        Ok(())
    }

    /// After an error: closes the user's connection, opens a fresh monitor and waits until it
    /// reports the user offline.
    async fn start_over(&self, user: &mut PresenceUser) -> Result<(), CallError> {
        user.connection = None;
        user.monitor = None;
        let mut monitor = user
            .monitor_client
            .server_streaming(&self.monitor, &self.users[user.index])
            .await?;
        wait_for(&mut monitor, false).await?;
        user.monitor = Some(monitor);
        Ok(())
    }

    /// The latencies of each kind of change over all users.
    pub fn changes(&self) -> anyhow::Result<Vec<(&'static str, ChangeLatency)>> {
        let mut connect = runner::histogram()?;
        let mut disconnect = runner::histogram()?;
        for record in &self.records {
            let record = record
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            connect.add(&record.connect).context("merging histograms")?;
            disconnect
                .add(&record.disconnect)
                .context("merging histograms")?;
        }
        Ok(vec![
            ("connect", ChangeLatency::from_micros(&connect)),
            ("disconnect", ChangeLatency::from_micros(&disconnect)),
        ])
    }

    /// Once the run is over and every connection closed: opens a new monitor per user and
    /// waits up to the timeout for it to report the user offline.
    pub async fn check(&self) -> PresenceCheck {
        let mut tasks = Vec::with_capacity(self.users.len());
        for (index, request) in self.users.iter().enumerate() {
            let mut client = self.monitor_pool.client(index);
            let request = request.clone();
            let path = self.monitor.clone();
            let timeout = self.timeout;
            tasks.push(tokio::spawn(async move {
                let mut online = None;
                let watch = async {
                    let mut monitor = client.server_streaming(&path, &request).await?;
                    loop {
                        let now = next_status(&mut monitor).await?;
                        online = Some(now);
                        if !now {
                            return Ok::<_, CallError>(());
                        }
                    }
                };
                let _ = tokio::time::timeout(timeout, watch).await;
                match online {
                    Some(false) => UserOutcome::Offline,
                    Some(true) => UserOutcome::StillOnline,
                    None => UserOutcome::Unreadable,
                }
            }));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await.unwrap_or(UserOutcome::Unreadable));
        }
        let unexpected = self
            .records
            .iter()
            .map(|record| {
                record
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .unexpected
            })
            .sum();
        PresenceCheck::new(&outcomes, unexpected)
    }
}

impl Workload for PresenceWorkload {
    type Client = PresenceUser;

    fn client(&self, index: usize) -> PresenceUser {
        let monitor = self
            .monitors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_mut(index)
            .and_then(Option::take);
        PresenceUser {
            index: index % self.users.len().max(1),
            client: self.pool.client(index),
            monitor_client: self.monitor_pool.client(index),
            monitor,
            connection: None,
        }
    }

    fn home(&self, index: usize) -> Option<Home> {
        Some(self.pool.home(index).clone())
    }

    async fn call(&self, user: &mut PresenceUser) -> Result<(), CallError> {
        let result = tokio::time::timeout(self.timeout, self.change(user))
            .await
            .unwrap_or(Err(CallError::Timeout));
        if result.is_err() {
            // The user's state is unknown: start over with a fresh monitor on the next call.
            user.monitor = None;
            user.connection = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_alternate_between_connecting_and_disconnecting() {
        assert_eq!(Change::next(false), Change::Connect);
        assert_eq!(Change::next(true), Change::Disconnect);
        assert!(Change::Connect.online_after());
        assert!(!Change::Disconnect.online_after());
    }

    #[test]
    fn users_are_named_after_the_run() {
        let decoded = presence::User::decode(user("0a1b2c3d", 7)).unwrap();
        assert_eq!(decoded.user_id, "0a1b2c3d-7");
    }
}
