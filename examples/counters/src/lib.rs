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
use cloudstate::{CrdtContext, CrdtEntityService, Failure, Reply};

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

/// The persistence id of the example's entities.
pub const PERSISTENCE_ID: &str = "crdt-example";

/// The map of counters of `UpdateMapCounter`, `RemoveMapCounter` and `GetMap`.
type Counters = OrMap<'static, String, PnCounter<'static>>;

/// The example's entity: everything it knows is in its CRDT.
#[derive(Debug, Default)]
pub struct CrdtExample;

impl proto::CrdtExample for CrdtExample {
    fn increment_g_counter(
        &mut self,
        request: UpdateCounter,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<CounterValue>, Failure> {
        let increment = u64::try_from(request.value).map_err(|_| {
            Failure::invalid_argument(format!(
                "Cannot decrement a GCounter, requested {}",
                request.value
            ))
        })?;
        let value = ctx.state_or_create::<GCounter>()?.increment(increment);
        Ok(gcounter_value(value).into())
    }

    fn get_g_counter(
        &mut self,
        _: Get,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<CounterValue>, Failure> {
        Ok(gcounter_value(ctx.value::<GCounter>()?.unwrap_or(0)).into())
    }

    fn update_pn_counter(
        &mut self,
        request: UpdateCounter,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<CounterValue>, Failure> {
        let value = ctx.state_or_create::<PnCounter>()?.increment(request.value);
        Ok(CounterValue { value }.into())
    }

    fn get_pn_counter(
        &mut self,
        _: Get,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<CounterValue>, Failure> {
        let value = ctx.value::<PnCounter>()?.unwrap_or(0);
        Ok(CounterValue { value }.into())
    }

    fn mutate_g_set(
        &mut self,
        request: MutateSet,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<SetSize>, Failure> {
        if request.clear || !request.remove.is_empty() {
            return Err(Failure::invalid_argument(
                "A GSet only grows: it cannot clear or remove",
            ));
        }
        let mut set = ctx.state_or_create::<GSet<SomeValue>>()?;
        for element in &request.add {
            set.add(element);
        }
        Ok(size(set.len()).into())
    }

    fn get_g_set(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<Reply<SetValue>, Failure> {
        let items = ctx.value::<GSet<SomeValue>>()?.unwrap_or_default();
        Ok(SetValue { items }.into())
    }

    fn mutate_or_set(
        &mut self,
        request: MutateSet,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<SetSize>, Failure> {
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
        Ok(size(set.len()).into())
    }

    fn get_or_set(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<Reply<SetValue>, Failure> {
        let items = ctx.value::<OrSet<SomeValue>>()?.unwrap_or_default();
        Ok(SetValue { items }.into())
    }

    fn set_register(
        &mut self,
        request: SetRegisterValue,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<RegisterValue>, Failure> {
        let value = request
            .value
            .ok_or_else(|| Failure::invalid_argument("SetRegister needs a value"))?;
        let clock = match proto::Clock::try_from(request.clock) {
            Ok(proto::Clock::Default) => Clock::Default,
            Ok(proto::Clock::Reverse) => Clock::Reverse,
            Ok(proto::Clock::Custom) => Clock::Custom(request.custom_clock_value),
            Ok(proto::Clock::CustomAutoIncrement) => {
                Clock::CustomAutoIncrement(request.custom_clock_value)
            }
            Err(_) => {
                return Err(Failure::invalid_argument(format!(
                    "Unknown clock {}",
                    request.clock
                )));
            }
        };
        ctx.state_or_create::<LwwRegister<SomeValue>>()?
            .set_with_clock(&value, clock);
        Ok(RegisterValue { value: Some(value) }.into())
    }

    fn get_register(
        &mut self,
        _: Get,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<RegisterValue>, Failure> {
        let value = ctx.value::<LwwRegister<SomeValue>>()?.flatten();
        Ok(RegisterValue { value }.into())
    }

    fn enable_flag(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<Reply<FlagValue>, Failure> {
        ctx.state_or_create::<Flag>()?.enable();
        Ok(FlagValue { enabled: true }.into())
    }

    fn get_flag(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<Reply<FlagValue>, Failure> {
        let enabled = ctx.value::<Flag>()?.unwrap_or(false);
        Ok(FlagValue { enabled }.into())
    }

    fn update_map_counter(
        &mut self,
        request: UpdateMapCounter,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<MapValue>, Failure> {
        let mut map = ctx.state_or_create::<Counters>()?;
        map.get_or_create(&request.counter)?
            .increment(request.value);
        Ok(map_value(map.value()?).into())
    }

    fn remove_map_counter(
        &mut self,
        request: RemoveMapCounter,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<MapValue>, Failure> {
        let Some(mut map) = ctx.state::<Counters>()? else {
            return Ok(MapValue::default().into());
        };
        map.remove(&request.counter);
        Ok(map_value(map.value()?).into())
    }

    fn get_map(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<Reply<MapValue>, Failure> {
        Ok(map_value(ctx.value::<Counters>()?.unwrap_or_default()).into())
    }

    fn delete(&mut self, _: Get, ctx: &mut CrdtContext) -> Result<Reply<()>, Failure> {
        ctx.delete_state();
        Ok(().into())
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
    proto::crdt_example::entity().persistence_id(PERSISTENCE_ID)
}

/// The user function serving the example, ready to
/// [`serve_from_env`](cloudstate::Server::serve_from_env).
///
/// # Errors
///
/// If the descriptor set and the entity disagree (a build problem).
pub fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(entity())?
        .service_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")))
}
