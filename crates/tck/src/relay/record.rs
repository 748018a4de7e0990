//! What the relay saw: every protocol call between the proxy and the user function, each
//! message with its direction and the time it crossed, and the waits cases use to assert on them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cloudstate_protocol::action::{ActionCommand, ActionResponse};
use cloudstate_protocol::crdt::{CrdtStreamIn, CrdtStreamOut};
use cloudstate_protocol::eventsourced::{EventSourcedStreamIn, EventSourcedStreamOut};
use cloudstate_protocol::valueentity::{ValueEntityStreamIn, ValueEntityStreamOut};
use cloudstate_protocol::{EntitySpec, ProxyInfo};
use tokio::sync::Notify;

use crate::Error;

/// How long an expectation waits for what it expects.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The protocol call a recorded stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `cloudstate.eventsourced.EventSourced/handle`.
    EventSourced,
    /// `cloudstate.valueentity.ValueEntity/handle`.
    ValueEntity,
    /// `cloudstate.crdt.Crdt/handle`.
    Crdt,
    /// `cloudstate.action.ActionProtocol/handleUnary`.
    ActionUnary,
    /// `cloudstate.action.ActionProtocol/handleStreamedIn`.
    ActionStreamedIn,
    /// `cloudstate.action.ActionProtocol/handleStreamedOut`.
    ActionStreamedOut,
    /// `cloudstate.action.ActionProtocol/handleStreamed`.
    ActionStreamed,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::EventSourced => "EventSourced/handle",
            Call::ValueEntity => "ValueEntity/handle",
            Call::Crdt => "Crdt/handle",
            Call::ActionUnary => "ActionProtocol/handleUnary",
            Call::ActionStreamedIn => "ActionProtocol/handleStreamedIn",
            Call::ActionStreamedOut => "ActionProtocol/handleStreamedOut",
            Call::ActionStreamed => "ActionProtocol/handleStreamed",
        })
    }
}

/// One thing that happened on one direction of a stream.
#[derive(Debug, Clone)]
pub enum Event<T> {
    /// A message.
    Message(T),
    /// The sender ended its side normally (half-close, or the call's OK status).
    Complete,
    /// The side ended with an error status.
    Error(tonic::Status),
    /// The side was dropped without an end: the proxy cancelled the call or stopped reading.
    Cancelled,
}

impl<T: fmt::Debug> Event<T> {
    fn describe(&self) -> String {
        match self {
            Event::Message(message) => format!("{message:?}"),
            Event::Complete => "end of stream".to_owned(),
            Event::Error(status) => format!("error {:?}: {}", status.code(), status.message()),
            Event::Cancelled => "cancelled".to_owned(),
        }
    }

    /// Whether this ends its side of the stream.
    pub fn is_end(&self) -> bool {
        !matches!(self, Event::Message(_))
    }
}

/// An event and when it happened.
#[derive(Debug, Clone)]
pub struct Recorded<T> {
    /// When the relay saw it.
    pub at: Instant,
    /// What it saw.
    pub event: Event<T>,
}

/// The direction of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Proxy to user function.
    In,
    /// User function to proxy.
    Out,
}

/// One line of the relay's log: every message of every stream, in the order seen.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Time since the recorder started.
    pub at: Duration,
    /// The stream's number (0 for discovery).
    pub stream: u64,
    /// The protocol call, or `discovery`.
    pub call: String,
    /// The direction.
    pub direction: Direction,
    /// The message, printed.
    pub text: String,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arrow = match self.direction {
            Direction::In => "proxy -> uf",
            Direction::Out => "uf -> proxy",
        };
        write!(
            f,
            "{:>9.3}s #{} {} {arrow}: {}",
            self.at.as_secs_f64(),
            self.stream,
            self.call,
            self.text
        )
    }
}

/// The shared log.
#[derive(Debug)]
struct Log {
    started: Instant,
    entries: Mutex<Vec<LogEntry>>,
}

impl Log {
    fn push(&self, stream: u64, call: String, direction: Direction, text: String) {
        lock(&self.entries).push(LogEntry {
            at: self.started.elapsed(),
            stream,
            call,
            direction,
            text,
        });
    }
}

/// One direction of a recorded stream: the events not yet consumed by an expectation.
#[derive(Debug)]
pub struct Probe<T> {
    events: Mutex<VecDeque<Recorded<T>>>,
    changed: Notify,
}

impl<T: Clone + fmt::Debug> Probe<T> {
    fn new() -> Self {
        Probe {
            events: Mutex::new(VecDeque::new()),
            changed: Notify::new(),
        }
    }

    fn push(&self, event: Event<T>) {
        lock(&self.events).push_back(Recorded {
            at: Instant::now(),
            event,
        });
        self.changed.notify_waiters();
    }

    /// The next event, waiting up to `timeout`.
    pub async fn next(&self, timeout: Duration) -> Option<Recorded<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if let Some(event) = lock(&self.events).pop_front() {
                return Some(event);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// The events not consumed yet, without waiting.
    pub fn pending(&self) -> Vec<Recorded<T>> {
        lock(&self.events).iter().cloned().collect()
    }
}

/// One recorded protocol call: what the proxy sent (`incoming`) and what the user function
/// answered (`outgoing`).
#[derive(Debug)]
pub struct Stream<In, Out> {
    /// The stream's number, in the order the relay saw them (from 1).
    pub id: u64,
    /// The protocol call.
    pub call: Call,
    /// When the proxy opened it.
    pub opened: Instant,
    /// Proxy to user function.
    pub incoming: Probe<In>,
    /// User function to proxy.
    pub outgoing: Probe<Out>,
    log: Arc<Log>,
}

impl<In, Out> Stream<In, Out>
where
    In: Clone + fmt::Debug,
    Out: Clone + fmt::Debug,
{
    /// Records an event from the proxy.
    pub(crate) fn record_in(&self, event: Event<In>) {
        self.log.push(
            self.id,
            self.call.to_string(),
            Direction::In,
            event.describe(),
        );
        self.incoming.push(event);
    }

    /// Records an event from the user function.
    pub(crate) fn record_out(&self, event: Event<Out>) {
        self.log.push(
            self.id,
            self.call.to_string(),
            Direction::Out,
            event.describe(),
        );
        self.outgoing.push(event);
    }

    /// The next event from the proxy, or an error after [`PATIENCE`].
    pub async fn next_in(&self) -> Result<Recorded<In>, Error> {
        self.incoming.next(PATIENCE).await.ok_or_else(|| {
            Error::Check(format!(
                "stream #{} ({}): nothing more from the proxy within {PATIENCE:?}",
                self.id, self.call
            ))
        })
    }

    /// The next event from the user function, or an error after [`PATIENCE`].
    pub async fn next_out(&self) -> Result<Recorded<Out>, Error> {
        self.next_out_within(PATIENCE).await
    }

    async fn next_out_within(&self, timeout: Duration) -> Result<Recorded<Out>, Error> {
        self.outgoing.next(timeout).await.ok_or_else(|| {
            Error::Check(format!(
                "stream #{} ({}): nothing more from the user function within {timeout:?}",
                self.id, self.call
            ))
        })
    }

    /// Expects the next message from the proxy to be `expected`.
    pub async fn expect_in(&self, expected: In) -> Result<&Self, Error>
    where
        In: PartialEq,
    {
        let seen = self.next_in().await?;
        self.check("proxy", seen.event, expected)?;
        Ok(self)
    }

    /// Expects the next message from the user function to be `expected`.
    pub async fn expect_out(&self, expected: Out) -> Result<&Self, Error>
    where
        Out: PartialEq,
    {
        let seen = self.next_out().await?;
        self.check("user function", seen.event, expected)?;
        Ok(self)
    }

    /// Expects the next event from the proxy to be a message, and returns it.
    pub async fn in_message(&self) -> Result<In, Error> {
        match self.next_in().await?.event {
            Event::Message(message) => Ok(message),
            other => Err(self.unexpected("proxy", "a message", &other)),
        }
    }

    /// Expects the next event from the user function to be a message, and returns it.
    pub async fn out_message(&self) -> Result<Out, Error> {
        match self.next_out().await?.event {
            Event::Message(message) => Ok(message),
            other => Err(self.unexpected("user function", "a message", &other)),
        }
    }

    /// Expects the proxy to end its side normally next (half-close).
    pub async fn expect_in_complete(&self) -> Result<&Self, Error> {
        let seen = self.next_in().await?;
        if !matches!(seen.event, Event::Complete) {
            return Err(self.unexpected("proxy", "end of stream", &seen.event));
        }
        Ok(self)
    }

    /// Expects the user function to end its side normally next.
    pub async fn expect_out_complete(&self) -> Result<&Self, Error> {
        let seen = self.next_out().await?;
        if !matches!(seen.event, Event::Complete) {
            return Err(self.unexpected("user function", "end of stream", &seen.event));
        }
        Ok(self)
    }

    /// Expects both sides to end next, within `timeout`: the proxy half-closes or cancels, and
    /// the user function's side ends (completes, fails, or is dropped by the proxy).
    pub async fn expect_closed(&self, timeout: Duration) -> Result<(), Error> {
        let seen = self.incoming.next(timeout).await.ok_or_else(|| {
            Error::Check(format!(
                "stream #{} ({}): the proxy did not close it within {timeout:?}",
                self.id, self.call
            ))
        })?;
        if !seen.event.is_end() {
            return Err(self.unexpected("proxy", "the end of the stream", &seen.event));
        }
        let seen = self.next_out_within(timeout).await?;
        if !seen.event.is_end() {
            return Err(self.unexpected("user function", "the end of the stream", &seen.event));
        }
        Ok(())
    }

    /// Skips whatever messages come until both sides have ended, within `timeout`.
    pub async fn skip_to_end(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let closed = |side: &str| {
            Error::Check(format!(
                "stream #{} ({}): the {side} did not end it within {timeout:?}",
                self.id, self.call
            ))
        };
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let seen = self
                .incoming
                .next(left)
                .await
                .ok_or_else(|| closed("proxy"))?;
            if seen.event.is_end() {
                break;
            }
        }
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let seen = self
                .outgoing
                .next(left)
                .await
                .ok_or_else(|| closed("user function"))?;
            if seen.event.is_end() {
                return Ok(());
            }
        }
    }

    fn check<T: PartialEq + fmt::Debug>(
        &self,
        from: &str,
        seen: Event<T>,
        expected: T,
    ) -> Result<(), Error> {
        match seen {
            Event::Message(message) if message == expected => Ok(()),
            seen => Err(self.unexpected(from, &format!("{expected:?}"), &seen)),
        }
    }

    fn unexpected<T: fmt::Debug>(&self, from: &str, expected: &str, seen: &Event<T>) -> Error {
        Error::Check(format!(
            "stream #{} ({}): expected from the {from}\n    {expected}\n  but saw\n    {}",
            self.id,
            self.call,
            seen.describe()
        ))
    }
}

/// An event sourced entity's stream.
pub type EventSourcedStream = Stream<EventSourcedStreamIn, EventSourcedStreamOut>;
/// A value entity's stream.
pub type ValueEntityStream = Stream<ValueEntityStreamIn, ValueEntityStreamOut>;
/// A CRDT entity's stream.
pub type CrdtStream = Stream<CrdtStreamIn, CrdtStreamOut>;
/// An action call, of any shape.
pub type ActionStream = Stream<ActionCommand, ActionResponse>;

/// A recorded stream of any protocol.
#[derive(Debug, Clone)]
pub enum Opened {
    /// An event sourced entity.
    EventSourced(Arc<EventSourcedStream>),
    /// A value entity.
    ValueEntity(Arc<ValueEntityStream>),
    /// A CRDT entity.
    Crdt(Arc<CrdtStream>),
    /// An action call.
    Action(Arc<ActionStream>),
}

impl Opened {
    fn call(&self) -> Call {
        match self {
            Opened::EventSourced(stream) => stream.call,
            Opened::ValueEntity(stream) => stream.call,
            Opened::Crdt(stream) => stream.call,
            Opened::Action(stream) => stream.call,
        }
    }

    fn id(&self) -> u64 {
        match self {
            Opened::EventSourced(stream) => stream.id,
            Opened::ValueEntity(stream) => stream.id,
            Opened::Crdt(stream) => stream.id,
            Opened::Action(stream) => stream.id,
        }
    }
}

/// One `discover` call the proxy made.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// What the proxy said about itself.
    pub proxy_info: ProxyInfo,
    /// What the user function answered.
    pub result: Result<EntitySpec, tonic::Status>,
}

#[derive(Debug, Default)]
struct State {
    /// Streams no case has claimed yet, in the order they were opened.
    unclaimed: VecDeque<Opened>,
    discoveries: Vec<Discovery>,
    reported_errors: Vec<String>,
}

/// Everything the relay saw, shared by the relay's services and the cases.
#[derive(Debug)]
pub struct Recorder {
    next_id: AtomicU64,
    state: Mutex<State>,
    changed: Notify,
    log: Arc<Log>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            next_id: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            log: Arc::new(Log {
                started: Instant::now(),
                entries: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a new stream of `call` and returns it.
    pub(crate) fn open<In, Out>(
        &self,
        call: Call,
        wrap: impl FnOnce(Arc<Stream<In, Out>>) -> Opened,
    ) -> Arc<Stream<In, Out>>
    where
        In: Clone + fmt::Debug,
        Out: Clone + fmt::Debug,
    {
        let stream = Arc::new(Stream {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            call,
            opened: Instant::now(),
            incoming: Probe::new(),
            outgoing: Probe::new(),
            log: self.log.clone(),
        });
        self.log.push(
            stream.id,
            call.to_string(),
            Direction::In,
            "opened".to_owned(),
        );
        lock(&self.state).unclaimed.push_back(wrap(stream.clone()));
        self.changed.notify_waiters();
        stream
    }

    /// Records a `discover` call.
    pub(crate) fn discovered(&self, discovery: Discovery) {
        self.log.push(
            0,
            "EntityDiscovery/discover".to_owned(),
            Direction::In,
            format!("{:?}", discovery.proxy_info),
        );
        let answer = match &discovery.result {
            Ok(spec) => format!(
                "EntitySpec {{ entities: {:?}, service_info: {:?}, proto: {} bytes }}",
                spec.entities,
                spec.service_info,
                spec.proto.len()
            ),
            Err(status) => format!("error {:?}: {}", status.code(), status.message()),
        };
        self.log.push(
            0,
            "EntityDiscovery/discover".to_owned(),
            Direction::Out,
            answer,
        );
        lock(&self.state).discoveries.push(discovery);
        self.changed.notify_waiters();
    }

    /// Records a `reportError` call.
    pub(crate) fn reported(&self, message: String) {
        self.log.push(
            0,
            "EntityDiscovery/reportError".to_owned(),
            Direction::In,
            format!("{message:?}"),
        );
        lock(&self.state).reported_errors.push(message);
        self.changed.notify_waiters();
    }

    /// Waits up to `timeout` for the first `discover` call.
    pub async fn discovery(&self, timeout: Duration) -> Option<Discovery> {
        self.wait(timeout, |state| state.discoveries.first().cloned())
            .await
    }

    /// Every `discover` call so far.
    pub fn discoveries(&self) -> Vec<Discovery> {
        lock(&self.state).discoveries.clone()
    }

    /// Waits up to [`PATIENCE`] for a `reportError` call whose message contains `text`, and
    /// returns the message.
    pub async fn expect_reported_error(&self, text: &str) -> Result<String, Error> {
        self.expect_reported_error_matching(|message| message.contains(text))
            .await
            .map_err(|_| {
                Error::Check(format!(
                    "the proxy reported no error containing {text:?} to the user function \
                     (reported: {:?})",
                    self.reported_errors()
                ))
            })
    }

    /// Waits up to [`PATIENCE`] for a `reportError` call whose message satisfies `matching`,
    /// and returns the message.
    pub async fn expect_reported_error_matching(
        &self,
        matching: impl Fn(&str) -> bool,
    ) -> Result<String, Error> {
        self.wait(PATIENCE, |state| {
            state
                .reported_errors
                .iter()
                .find(|message| matching(message))
                .cloned()
        })
        .await
        .ok_or_else(|| Error::Check("no matching reportError".into()))
    }

    /// Every `reportError` message so far.
    pub fn reported_errors(&self) -> Vec<String> {
        lock(&self.state).reported_errors.clone()
    }

    /// Waits for the first unclaimed stream of `call` and claims it.
    async fn claim(&self, call: Call) -> Result<Opened, Error> {
        self.wait(PATIENCE, |state| {
            let index = state
                .unclaimed
                .iter()
                .position(|opened| opened.call() == call)?;
            state.unclaimed.remove(index)
        })
        .await
        .ok_or_else(|| {
            Error::Check(format!(
                "the proxy opened no {call} stream within {PATIENCE:?}"
            ))
        })
    }

    /// Waits for the proxy's next event sourced stream.
    pub async fn expect_event_sourced(&self) -> Result<Arc<EventSourcedStream>, Error> {
        match self.claim(Call::EventSourced).await? {
            Opened::EventSourced(stream) => Ok(stream),
            _ => unreachable!("claimed by call"),
        }
    }

    /// Waits for the proxy's next value entity stream.
    pub async fn expect_value_entity(&self) -> Result<Arc<ValueEntityStream>, Error> {
        match self.claim(Call::ValueEntity).await? {
            Opened::ValueEntity(stream) => Ok(stream),
            _ => unreachable!("claimed by call"),
        }
    }

    /// Waits for the proxy's next CRDT stream.
    pub async fn expect_crdt(&self) -> Result<Arc<CrdtStream>, Error> {
        match self.claim(Call::Crdt).await? {
            Opened::Crdt(stream) => Ok(stream),
            _ => unreachable!("claimed by call"),
        }
    }

    /// Waits for the proxy's next action call of shape `call`.
    pub async fn expect_action(&self, call: Call) -> Result<Arc<ActionStream>, Error> {
        match self.claim(call).await? {
            Opened::Action(stream) => Ok(stream),
            _ => unreachable!("claimed by call"),
        }
    }

    /// Checks that the proxy opened no stream that no case claimed, waiting `settle` for late
    /// ones; forgets them either way, so that the next case starts clean.
    pub async fn verify_no_more_interactions(&self, settle: Duration) -> Result<(), Error> {
        tokio::time::sleep(settle).await;
        let unclaimed: Vec<_> = lock(&self.state).unclaimed.drain(..).collect();
        if unclaimed.is_empty() {
            Ok(())
        } else {
            let streams: Vec<_> = unclaimed
                .iter()
                .map(|opened| format!("#{} {}", opened.id(), opened.call()))
                .collect();
            Err(Error::Check(format!(
                "unexpected calls to the user function: {}",
                streams.join(", ")
            )))
        }
    }

    /// The number of log entries so far: a mark for [`log_since`](Self::log_since).
    pub fn log_mark(&self) -> usize {
        lock(&self.log.entries).len()
    }

    /// The log entries after `mark`.
    pub fn log_since(&self, mark: usize) -> Vec<LogEntry> {
        lock(&self.log.entries)
            .get(mark..)
            .map(<[LogEntry]>::to_vec)
            .unwrap_or_default()
    }

    async fn wait<T>(
        &self,
        timeout: Duration,
        mut find: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if let Some(found) = find(&mut lock(&self.state)) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

/// Locks `mutex`, ignoring poisoning (a panicking case must not hide what was recorded).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
