//! An event sourced counter per id (docs/getting-started.md).

use cloudstate::{CommandContext, EventSourced, EventSourcedEntity, Failure, Reply};

/// The protobuf types, the service's trait and calls, and the descriptor set.
pub mod proto {
    cloudstate::include_protos!("com.example.counter");

    /// `counter.proto` and its imports, reported to the proxy at discovery.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

cloudstate::events! {
    /// What happens to a counter.
    pub enum CounterEvent {
        /// It went up.
        Increased(proto::Increased),
    }
}

/// One counter's state.
#[derive(Debug, Default)]
pub struct Counter {
    value: i64,
}

impl proto::Counter for Counter {
    fn increase(
        &self,
        request: proto::IncreaseValue,
        ctx: &mut CommandContext<Self>,
    ) -> Result<Reply<proto::CurrentValue>, Failure> {
        if request.value <= 0 {
            return Err(Failure::invalid_argument(format!(
                "cannot increase by {}: only by more than zero",
                request.value
            )));
        }
        let Some(value) = self.value.checked_add(request.value) else {
            return Err(Failure::out_of_range("the counter would overflow"));
        };
        ctx.emit(proto::Increased {
            value: request.value,
        });
        Ok(proto::CurrentValue { value }.into())
    }

    fn get_current_value(
        &self,
        _: proto::GetCounter,
        _: &mut CommandContext<Self>,
    ) -> Result<Reply<proto::CurrentValue>, Failure> {
        Ok(proto::CurrentValue { value: self.value }.into())
    }
}

impl EventSourcedEntity for Counter {
    type Event = CounterEvent;
    type Snapshot = proto::CounterState;

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Increased(increased) => {
                self.value = self.value.saturating_add(increased.value);
            }
        }
    }

    fn snapshot(&self) -> Option<proto::CounterState> {
        Some(proto::CounterState { value: self.value })
    }

    fn from_snapshot(state: proto::CounterState) -> Option<Self> {
        Some(Counter { value: state.value })
    }
}

/// The counter's registration: persistence id `counter`, a snapshot every 10 events.
pub fn entity() -> EventSourced<Counter> {
    proto::counter::entity()
        .persistence_id("counter")
        .snapshot_every(10)
}

/// The user function: the descriptor set and the counter.
///
/// # Errors
///
/// If the descriptor set and the entity disagree (a build problem).
pub fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?.register(entity())
}
