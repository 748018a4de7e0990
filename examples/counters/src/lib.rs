//! The Cloudstate counters example: CRDT entities of every kind but the vote (see the presence
//! example for that one) behind one service, `com.example.crdts.CrdtExample`, with the API of
//! the original js-crdts sample plus a register, a flag and a map.
//!
//! Each key is one CRDT entity (persistence id `crdt-example`) whose type is set by the first
//! change: a method of another type on it fails with `FAILED_PRECONDITION` (until `Delete`).
//! Reading a key that has no CRDT yet answers the empty value and creates nothing.
//!
//! | methods | CRDT | what the proxy gets |
//! |---|---|---|
//! | `IncrementGCounter`, `GetGCounter` | [`GCounter`] | the increment (a negative `value` is refused) |
//! | `UpdatePNCounter`, `GetPNCounter` | [`PnCounter`] | the change |
//! | `MutateGSet`, `GetGSet` | [`GSet`] of [`SomeValue`] | the new elements (removing or clearing is refused) |
//! | `MutateORSet`, `GetORSet` | [`OrSet`] of [`SomeValue`] | `cleared`, then the removed and added elements |
//! | `SetRegister`, `GetRegister` | [`LwwRegister`] of [`SomeValue`] | every write, with its clock |
//! | `EnableFlag`, `GetFlag` | [`Flag`] | `true` once |
//! | `UpdateMapCounter`, `RemoveMapCounter`, `GetMap` | [`OrMap`] of string to [`PnCounter`] | the added, updated and removed counters |
//! | `Delete` | any | the deletion |
//!
//! Set elements and register values are protobuf messages ([`SomeValue`], sent as
//! `type.googleapis.com/com.example.crdts.SomeValue`); map keys are strings (sent as
//! `p.cloudstate.io/string`). The HTTP routes are in `proto/crdt_example.proto`
//! (`POST /gcounter/{key}/increment`, `GET /orset/{key}`, ...).

use std::collections::HashMap;

use cloudstate::crdt::{
    Clock, Flag, GCounter, GSet, LwwRegister, OrMap, OrSet, PnCounter, ProtoValue,
};
use cloudstate::{Code, CrdtCommands, CrdtContext, CrdtEntity, CrdtEntityService, Failure};

/// The example's protobuf types and gRPC client, and the descriptor set reported at
/// discovery.
pub mod proto {
    cloudstate::include_protos!("com.example.crdts");

    /// `crdt_example.proto` and all its imports, options intact.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

use proto::{
    CounterValue, FlagValue, Get, MapValue, MutateSet, RegisterValue, RemoveMapCounter,
    SetRegisterValue, SetSize, SetValue, SomeValue, UpdateCounter, UpdateMapCounter,
};

/// Set elements and register values are `SomeValue` messages.
impl ProtoValue for SomeValue {}

/// Full name of the example's gRPC service.
pub const SERVICE: &str = "com.example.crdts.CrdtExample";

/// The persistence id of the example's entities.
pub const PERSISTENCE_ID: &str = "crdt-example";

/// The map of counters of `UpdateMapCounter`, `RemoveMapCounter` and `GetMap`.
type Counters = OrMap<'static, String, PnCounter<'static>>;

/// The example's entity: everything it knows is in its CRDT.
#[derive(Debug)]
pub struct CrdtExample;

impl CrdtEntity for CrdtExample {
    fn new(_key: &str) -> Self {
        CrdtExample
    }

    fn commands(commands: &mut CrdtCommands<Self>) {
        commands
            .add("IncrementGCounter", Self::increment_gcounter)
            .add("GetGCounter", Self::get_gcounter)
            .add("UpdatePNCounter", Self::update_pncounter)
            .add("GetPNCounter", Self::get_pncounter)
            .add("MutateGSet", Self::mutate_gset)
            .add("GetGSet", Self::get_gset)
            .add("MutateORSet", Self::mutate_orset)
            .add("GetORSet", Self::get_orset)
            .add("SetRegister", Self::set_register)
            .add("GetRegister", Self::get_register)
            .add("EnableFlag", Self::enable_flag)
            .add("GetFlag", Self::get_flag)
            .add("UpdateMapCounter", Self::update_map_counter)
            .add("RemoveMapCounter", Self::remove_map_counter)
            .add("GetMap", Self::get_map)
            .add("Delete", Self::delete);
    }
}

impl CrdtExample {
    fn increment_gcounter(
        &mut self,
        request: UpdateCounter,
        ctx: &mut CrdtContext,
    ) -> Result<CounterValue, Failure> {
        let increment = u64::try_from(request.value).map_err(|_| {
            Failure::new(format!(
                "Cannot decrement a GCounter, requested {}",
                request.value
            ))
            .with_code(Code::InvalidArgument)
        })?;
        let value = ctx.state_or_create::<GCounter>()?.increment(increment);
        Ok(gcounter_value(value))
    }

    fn get_gcounter(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<CounterValue, Failure> {
        Ok(gcounter_value(ctx.value::<GCounter>()?.unwrap_or(0)))
    }

    fn update_pncounter(
        &mut self,
        request: UpdateCounter,
        ctx: &mut CrdtContext,
    ) -> Result<CounterValue, Failure> {
        let value = ctx.state_or_create::<PnCounter>()?.increment(request.value);
        Ok(CounterValue { value })
    }

    fn get_pncounter(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<CounterValue, Failure> {
        let value = ctx.value::<PnCounter>()?.unwrap_or(0);
        Ok(CounterValue { value })
    }

    fn mutate_gset(
        &mut self,
        request: MutateSet,
        ctx: &mut CrdtContext,
    ) -> Result<SetSize, Failure> {
        if request.clear || !request.remove.is_empty() {
            return Err(Failure::new("A GSet only grows: it cannot clear or remove")
                .with_code(Code::InvalidArgument));
        }
        let mut set = ctx.state_or_create::<GSet<SomeValue>>()?;
        for element in &request.add {
            set.add(element);
        }
        Ok(size(set.len()))
    }

    fn get_gset(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<SetValue, Failure> {
        let items = ctx.value::<GSet<SomeValue>>()?.unwrap_or_default();
        Ok(SetValue { items })
    }

    fn mutate_orset(
        &mut self,
        request: MutateSet,
        ctx: &mut CrdtContext,
    ) -> Result<SetSize, Failure> {
        let mut set = ctx.state_or_create::<OrSet<SomeValue>>()?;
        if request.clear {
            set.clear();
        }
        for element in &request.remove {
            set.remove(element);
        }
        for element in &request.add {
            set.add(element);
        }
        Ok(size(set.len()))
    }

    fn get_orset(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<SetValue, Failure> {
        let items = ctx.value::<OrSet<SomeValue>>()?.unwrap_or_default();
        Ok(SetValue { items })
    }

    fn set_register(
        &mut self,
        request: SetRegisterValue,
        ctx: &mut CrdtContext,
    ) -> Result<RegisterValue, Failure> {
        let value = request.value.ok_or_else(|| {
            Failure::new("SetRegister needs a value").with_code(Code::InvalidArgument)
        })?;
        let clock = match proto::Clock::try_from(request.clock) {
            Ok(proto::Clock::Default) => Clock::Default,
            Ok(proto::Clock::Reverse) => Clock::Reverse,
            Ok(proto::Clock::Custom) => Clock::Custom(request.custom_clock_value),
            Ok(proto::Clock::CustomAutoIncrement) => {
                Clock::CustomAutoIncrement(request.custom_clock_value)
            }
            Err(_) => {
                return Err(Failure::new(format!("Unknown clock {}", request.clock))
                    .with_code(Code::InvalidArgument));
            }
        };
        ctx.state_or_create::<LwwRegister<SomeValue>>()?
            .set_with_clock(&value, clock);
        Ok(RegisterValue { value: Some(value) })
    }

    fn get_register(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<RegisterValue, Failure> {
        let value = ctx.value::<LwwRegister<SomeValue>>()?.flatten();
        Ok(RegisterValue { value })
    }

    fn enable_flag(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<FlagValue, Failure> {
        ctx.state_or_create::<Flag>()?.enable();
        Ok(FlagValue { enabled: true })
    }

    fn get_flag(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<FlagValue, Failure> {
        let enabled = ctx.value::<Flag>()?.unwrap_or(false);
        Ok(FlagValue { enabled })
    }

    fn update_map_counter(
        &mut self,
        request: UpdateMapCounter,
        ctx: &mut CrdtContext,
    ) -> Result<MapValue, Failure> {
        let mut map = ctx.state_or_create::<Counters>()?;
        map.get_or_create(&request.counter)?
            .increment(request.value);
        Ok(map_value(map.value()?))
    }

    fn remove_map_counter(
        &mut self,
        request: RemoveMapCounter,
        ctx: &mut CrdtContext,
    ) -> Result<MapValue, Failure> {
        let Some(mut map) = ctx.state::<Counters>()? else {
            return Ok(MapValue::default());
        };
        map.remove(&request.counter);
        Ok(map_value(map.value()?))
    }

    fn get_map(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<MapValue, Failure> {
        Ok(map_value(ctx.value::<Counters>()?.unwrap_or_default()))
    }

    fn delete(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<(), Failure> {
        ctx.delete_state();
        Ok(())
    }
}

/// A GCounter's value as the API's signed 64 bits (saturating).
fn gcounter_value(value: u64) -> CounterValue {
    CounterValue {
        value: i64::try_from(value).unwrap_or(i64::MAX),
    }
}

fn size(len: usize) -> SetSize {
    SetSize {
        size: i32::try_from(len).unwrap_or(i32::MAX),
    }
}

fn map_value(counters: Vec<(String, i64)>) -> MapValue {
    MapValue {
        counters: counters.into_iter().collect::<HashMap<_, _>>(),
    }
}

/// The example's registration: service, persistence id `crdt-example`.
pub fn entity() -> CrdtEntityService<CrdtExample> {
    CrdtEntityService::new(SERVICE).persistence_id(PERSISTENCE_ID)
}

/// The user function serving the example, ready to [`serve`](cloudstate::Server::serve).
///
/// # Errors
///
/// If the descriptor set and the entity disagree (a build problem).
pub fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(entity())?
        .service_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")))
}
