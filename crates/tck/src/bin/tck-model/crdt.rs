//! `CrdtTckModel`, `CrdtTwo`, `CrdtConfigured`.
//!
//! The CRDT type of an entity is named by its id's prefix (`GCounter-1`), and the type of an
//! ORMap value by its key's prefix, recursively. The SDK's handles are typed, so every
//! operation dispatches on the [`Kind`] to the handle type; ORMaps nest two deep at most here
//! (the TCK nests one).

use std::fmt;

use cloudstate::crdt::{
    Clock, Crdt, Flag, GCounter, GSet, LwwRegister, OrMap, OrSet, PnCounter, Vote,
};
use cloudstate::{
    ChangeContext, Code, CrdtContext, CrdtEntityService, Failure, Reply, StreamedContext,
    WriteConsistency,
};

use crate::proto::crdt::{self as proto, crdt_two};
use crate::proto::crdt::{
    FlagValue, GCounterValue, GSetValue, LwwRegisterClock, LwwRegisterClockType, LwwRegisterValue,
    OrMapEntryValue, OrMapValue, OrSetValue, PnCounterValue, Request, Response, State,
    StreamedRequest, Update, UpdateWriteConsistency, VoteValue, or_map_update, or_set_update,
    request_action, state, update,
};
use crate::{CONFIGURED_PASSIVATION, side_effect};

/// The eight CRDT types, as entity id and map key prefixes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GCounter,
    PNCounter,
    GSet,
    ORSet,
    LWWRegister,
    Flag,
    ORMap,
    Vote,
}

impl Kind {
    /// The type `name` (an entity id or a map key) names with its prefix.
    fn of(name: &str) -> Result<Kind, Failure> {
        let prefix = name.split('-').next().unwrap_or_default();
        Ok(match prefix {
            "GCounter" => Kind::GCounter,
            "PNCounter" => Kind::PNCounter,
            "GSet" => Kind::GSet,
            "ORSet" => Kind::ORSet,
            "LWWRegister" => Kind::LWWRegister,
            "Flag" => Kind::Flag,
            "ORMap" => Kind::ORMap,
            "Vote" => Kind::Vote,
            _ => {
                return Err(Failure::new(format!("{name:?} names no CRDT type"))
                    .with_code(Code::InvalidArgument));
            }
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The ORMap keys leading from the entity's state to a value (empty: the state itself).
type Path = [String];

fn too_deep() -> Failure {
    Failure::new("this model nests ORMaps two deep at most").with_code(Code::Unimplemented)
}

/// Runs `f` on the handle of the `V` at `path`, if there is one; with `create`, creating it
/// (and the maps leading to it) when missing.
fn with<V: Crdt, R>(
    ctx: &mut CrdtContext,
    path: &Path,
    create: bool,
    f: impl for<'a> FnOnce(V::Handle<'a>) -> R,
) -> Result<Option<R>, Failure> {
    Ok(match (path, create) {
        ([], true) => Some(f(ctx.state_or_create::<V>()?)),
        ([], false) => ctx.state::<V>()?.map(f),
        ([key], true) => {
            let mut map = ctx.state_or_create::<OrMap<String, V>>()?;
            Some(f(map.get_or_create(key.as_str())?))
        }
        ([key], false) => match ctx.state::<OrMap<String, V>>()? {
            Some(mut map) => map.get(key.as_str())?.map(f),
            None => None,
        },
        ([outer, key], true) => {
            let mut root = ctx.state_or_create::<OrMap<String, OrMap<String, V>>>()?;
            let mut map = root.get_or_create(outer.as_str())?;
            Some(f(map.get_or_create(key.as_str())?))
        }
        ([outer, key], false) => match ctx.state::<OrMap<String, OrMap<String, V>>>()? {
            Some(mut root) => match root.get(outer.as_str())? {
                Some(mut map) => map.get(key.as_str())?.map(f),
                None => None,
            },
            None => None,
        },
        _ => return Err(too_deep()),
    })
}

/// Runs `f` on the ORMap at `path` (its value type does not matter to what `f` does: keys,
/// remove, clear).
fn with_map<R>(
    ctx: &mut CrdtContext,
    path: &Path,
    f: impl for<'a> FnOnce(OrMap<'a, String, Flag<'static>>) -> R,
) -> Result<Option<R>, Failure> {
    with::<OrMap<'static, String, Flag<'static>>, R>(ctx, path, true, f)
}

/// Makes sure the `kind` at `path` exists. A new LWWRegister is written `""` at once, as the
/// original model's libraries do when they create one (so its creation is a delta).
fn ensure(ctx: &mut CrdtContext, path: &Path, kind: Kind) -> Result<(), Failure> {
    let exists = |found: Option<()>| found.is_some();
    let created = match kind {
        Kind::GCounter => !exists(with::<GCounter, _>(ctx, path, false, |_| ())?),
        Kind::PNCounter => !exists(with::<PnCounter, _>(ctx, path, false, |_| ())?),
        Kind::GSet => !exists(with::<GSet<String>, _>(ctx, path, false, |_| ())?),
        Kind::ORSet => !exists(with::<OrSet<String>, _>(ctx, path, false, |_| ())?),
        Kind::LWWRegister => !exists(with::<LwwRegister<String>, _>(ctx, path, false, |_| ())?),
        Kind::Flag => !exists(with::<Flag, _>(ctx, path, false, |_| ())?),
        Kind::ORMap => !exists(with_map_existing(ctx, path)?),
        Kind::Vote => !exists(with::<Vote, _>(ctx, path, false, |_| ())?),
    };
    if !created {
        return Ok(());
    }
    match kind {
        Kind::GCounter => with::<GCounter, _>(ctx, path, true, |_| ())?,
        Kind::PNCounter => with::<PnCounter, _>(ctx, path, true, |_| ())?,
        Kind::GSet => with::<GSet<String>, _>(ctx, path, true, |_| ())?,
        Kind::ORSet => with::<OrSet<String>, _>(ctx, path, true, |_| ())?,
        Kind::LWWRegister => {
            with::<LwwRegister<String>, _>(ctx, path, true, |mut register| register.set(""))?
        }
        Kind::Flag => with::<Flag, _>(ctx, path, true, |_| ())?,
        Kind::ORMap => with_map(ctx, path, |_| ())?,
        Kind::Vote => with::<Vote, _>(ctx, path, true, |_| ())?,
    };
    Ok(())
}

fn with_map_existing(ctx: &mut CrdtContext, path: &Path) -> Result<Option<()>, Failure> {
    with::<OrMap<String, Flag>, _>(ctx, path, false, |_| ())
}

fn clock(clock: Option<&LwwRegisterClock>) -> Clock {
    let Some(clock) = clock else {
        return Clock::Default;
    };
    match LwwRegisterClockType::try_from(clock.clock_type) {
        Ok(LwwRegisterClockType::Reverse) => Clock::Reverse,
        Ok(LwwRegisterClockType::Custom) => Clock::Custom(clock.custom_clock_value),
        Ok(LwwRegisterClockType::CustomAutoIncrement) => {
            Clock::CustomAutoIncrement(clock.custom_clock_value)
        }
        _ => Clock::Default,
    }
}

/// Applies `update` to the `kind` at `path` (created if missing).
fn apply(ctx: &mut CrdtContext, path: &Path, kind: Kind, update: &Update) -> Result<(), Failure> {
    ensure(ctx, path, kind)?;
    let mismatch = || {
        Failure::new(format!(
            "a {kind} cannot take the update {:?}",
            update.update
        ))
        .with_code(Code::InvalidArgument)
    };
    match (kind, update.update.as_ref().ok_or_else(mismatch)?) {
        (Kind::GCounter, update::Update::Gcounter(change)) => {
            with::<GCounter, _>(ctx, path, true, |mut counter| {
                counter.increment(change.increment);
            })?;
        }
        (Kind::PNCounter, update::Update::Pncounter(change)) => {
            with::<PnCounter, _>(ctx, path, true, |mut counter| {
                counter.increment(change.change);
            })?;
        }
        (Kind::GSet, update::Update::Gset(change)) => {
            with::<GSet<String>, _>(ctx, path, true, |mut set| {
                set.add(change.add.as_str());
            })?;
        }
        (Kind::ORSet, update::Update::Orset(change)) => {
            with::<OrSet<String>, _>(ctx, path, true, |mut set| match &change.action {
                Some(or_set_update::Action::Add(element)) => {
                    set.add(element.as_str());
                }
                Some(or_set_update::Action::Remove(element)) => {
                    set.remove(element.as_str());
                }
                Some(or_set_update::Action::Clear(true)) => set.clear(),
                Some(or_set_update::Action::Clear(false)) | None => {}
            })?;
        }
        (Kind::LWWRegister, update::Update::Lwwregister(change)) => {
            with::<LwwRegister<String>, _>(ctx, path, true, |mut register| {
                register.set_with_clock(change.value.as_str(), clock(change.clock.as_ref()));
            })?;
        }
        (Kind::Flag, update::Update::Flag(_)) => {
            with::<Flag, _>(ctx, path, true, |mut flag| flag.enable())?;
        }
        (Kind::Vote, update::Update::Vote(vote)) => {
            with::<Vote, _>(ctx, path, true, |mut tally| tally.vote(vote.self_vote))?;
        }
        (Kind::ORMap, update::Update::Ormap(change)) => match &change.action {
            Some(or_map_update::Action::Add(key)) => {
                ensure(ctx, &child(path, key), Kind::of(key)?)?;
            }
            Some(or_map_update::Action::Update(entry)) => {
                let nested = entry.update.as_deref().ok_or_else(mismatch)?;
                apply(ctx, &child(path, &entry.key), Kind::of(&entry.key)?, nested)?;
            }
            Some(or_map_update::Action::Remove(key)) => {
                with_map(ctx, path, |mut map| {
                    map.remove(key.as_str());
                })?;
            }
            Some(or_map_update::Action::Clear(true)) => {
                with_map(ctx, path, |mut map| map.clear())?;
            }
            Some(or_map_update::Action::Clear(false)) | None => {}
        },
        _ => return Err(mismatch()),
    }
    Ok(())
}

fn child(path: &Path, key: &str) -> Vec<String> {
    let mut child = path.to_vec();
    child.push(key.to_owned());
    child
}

fn sorted(mut elements: Vec<String>) -> Vec<String> {
    elements.sort();
    elements
}

fn vote_value(votes: cloudstate::crdt::Votes) -> state::Value {
    state::Value::Vote(VoteValue {
        self_vote: votes.self_vote,
        votes_for: i32::try_from(votes.votes_for).unwrap_or(i32::MAX),
        total_voters: i32::try_from(votes.total_voters).unwrap_or(i32::MAX),
    })
}

/// The state of the `kind` at `path` (it exists), read through the handles.
fn read(ctx: &mut CrdtContext, path: &Path, kind: Kind) -> Result<State, Failure> {
    let missing = || Failure::new(format!("no {kind} at {path:?}")).with_code(Code::Internal);
    let value = match kind {
        Kind::GCounter => with::<GCounter, _>(ctx, path, false, |counter| {
            state::Value::Gcounter(GCounterValue {
                value: counter.value(),
            })
        })?,
        Kind::PNCounter => with::<PnCounter, _>(ctx, path, false, |counter| {
            state::Value::Pncounter(PnCounterValue {
                value: counter.value(),
            })
        })?,
        Kind::GSet => with::<GSet<String>, _>(ctx, path, false, |set| {
            set.elements().map(|elements| {
                state::Value::Gset(GSetValue {
                    elements: sorted(elements),
                })
            })
        })?
        .transpose()?,
        Kind::ORSet => with::<OrSet<String>, _>(ctx, path, false, |set| {
            set.elements().map(|elements| {
                state::Value::Orset(OrSetValue {
                    elements: sorted(elements),
                })
            })
        })?
        .transpose()?,
        Kind::LWWRegister => with::<LwwRegister<String>, _>(ctx, path, false, |register| {
            register.get().map(|value| {
                state::Value::Lwwregister(LwwRegisterValue {
                    value: value.unwrap_or_default(),
                })
            })
        })?
        .transpose()?,
        Kind::Flag => with::<Flag, _>(ctx, path, false, |flag| {
            state::Value::Flag(FlagValue {
                value: flag.is_enabled(),
            })
        })?,
        Kind::Vote => with::<Vote, _>(ctx, path, false, |tally| vote_value(tally.votes()))?,
        Kind::ORMap => {
            let keys = with::<OrMap<String, Flag>, _>(ctx, path, false, |map| map.keys())?
                .transpose()?
                .ok_or_else(missing)?;
            let mut entries = Vec::new();
            for key in sorted(keys) {
                let value = read(ctx, &child(path, &key), Kind::of(&key)?)?;
                entries.push(OrMapEntryValue {
                    key,
                    value: Some(value),
                });
            }
            Some(state::Value::Ormap(OrMapValue { entries }))
        }
    };
    Ok(State {
        value: Some(value.ok_or_else(missing)?),
    })
}

/// The state as an on-change callback sees it (plain values: ORMaps of mixed value types
/// cannot be read there, which the TCK never streams).
fn observed(ctx: &ChangeContext<'_>, kind: Kind) -> Result<State, Failure> {
    let missing = || Failure::new("the entity has no state").with_code(Code::Internal);
    let value = match kind {
        Kind::GCounter => state::Value::Gcounter(GCounterValue {
            value: ctx.value::<GCounter>()?.ok_or_else(missing)?,
        }),
        Kind::PNCounter => state::Value::Pncounter(PnCounterValue {
            value: ctx.value::<PnCounter>()?.ok_or_else(missing)?,
        }),
        Kind::GSet => state::Value::Gset(GSetValue {
            elements: sorted(ctx.value::<GSet<String>>()?.ok_or_else(missing)?),
        }),
        Kind::ORSet => state::Value::Orset(OrSetValue {
            elements: sorted(ctx.value::<OrSet<String>>()?.ok_or_else(missing)?),
        }),
        Kind::LWWRegister => state::Value::Lwwregister(LwwRegisterValue {
            value: ctx
                .value::<LwwRegister<String>>()?
                .ok_or_else(missing)?
                .unwrap_or_default(),
        }),
        Kind::Flag => state::Value::Flag(FlagValue {
            value: ctx.value::<Flag>()?.ok_or_else(missing)?,
        }),
        Kind::Vote => vote_value(ctx.value::<Vote>()?.ok_or_else(missing)?),
        Kind::ORMap => {
            return Err(
                Failure::new("this model streams no ORMap state").with_code(Code::Unimplemented)
            );
        }
    };
    Ok(State { value: Some(value) })
}

fn consistency(update: &Update) -> WriteConsistency {
    match UpdateWriteConsistency::try_from(update.write_consistency) {
        Ok(UpdateWriteConsistency::Majority) => WriteConsistency::Majority,
        Ok(UpdateWriteConsistency::All) => WriteConsistency::All,
        _ => WriteConsistency::Local,
    }
}

/// The request forwards and side effects carry.
fn call(id: &str) -> Request {
    Request {
        id: id.to_owned(),
        actions: Vec::new(),
    }
}

/// The model entity.
#[derive(Default)]
pub struct Model;

impl proto::CrdtTckModel for Model {
    /// Takes the actions in order (update, delete, forward, side effect, fail) and answers the
    /// state after them, unless it forwards or fails.
    fn process(
        &mut self,
        request: Request,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<Response>, Failure> {
        let kind = Kind::of(&request.id)?;
        ensure(ctx, &[], kind)?;
        let mut forward = None;
        for action in request
            .actions
            .into_iter()
            .filter_map(|action| action.action)
        {
            match action {
                request_action::Action::Update(update) => {
                    ctx.set_write_consistency(consistency(&update));
                    apply(ctx, &[], kind, &update)?;
                }
                request_action::Action::Delete(_) => ctx.delete_state(),
                request_action::Action::Forward(to) => forward = Some(to.id),
                request_action::Action::Effect(effect) => {
                    let call = crdt_two::call(call(&effect.id));
                    ctx.side_effect(side_effect(call, effect.synchronous));
                }
                request_action::Action::Fail(fail) => return Err(Failure::new(fail.message)),
            }
        }
        Ok(match forward {
            Some(id) => Reply::forward(crdt_two::call(call(&id))),
            None => Response {
                state: Some(read(ctx, &[], kind)?),
            }
            .into(),
        })
    }

    /// Answers the state (nothing if `empty`), then the state after every change, until it is
    /// `end_state`; applies `initial_update` now and `cancel_update` when the client cancels;
    /// `effects` go with every streamed message.
    fn process_streamed(
        &mut self,
        request: StreamedRequest,
        ctx: &mut StreamedContext<'_, Self, Response>,
    ) -> Result<Reply<Response>, Failure> {
        let kind = Kind::of(&request.id)?;
        ensure(ctx, &[], kind)?;
        if let Some(update) = &request.initial_update {
            ctx.set_write_consistency(consistency(update));
            apply(ctx, &[], kind, update)?;
        }
        let StreamedRequest {
            end_state,
            cancel_update,
            effects,
            empty,
            ..
        } = request;
        ctx.on_change(move |_, change: &mut ChangeContext<'_>| {
            if empty {
                return Ok(Reply::NoReply);
            }
            let state = observed(change, kind)?;
            for effect in &effects {
                let call = crdt_two::call(call(&effect.id));
                change.side_effect(side_effect(call, effect.synchronous));
            }
            if end_state.as_ref() == Some(&state) {
                change.end_stream();
            }
            Ok(Reply::Message(Response { state: Some(state) }))
        });
        if let Some(update) = cancel_update {
            ctx.on_cancel(move |_, ctx| {
                ctx.set_write_consistency(consistency(&update));
                if let Err(failure) = apply(ctx, &[], kind, &update) {
                    tracing::warn!("the cancel update failed: {failure}");
                }
            });
        }
        if empty {
            return Ok(Reply::NoReply);
        }
        Ok(Response {
            state: Some(read(ctx, &[], kind)?),
        }
        .into())
    }
}

/// `CrdtTwo` and `CrdtConfigured`: `Call` answers an empty response, after deleting the CRDT
/// if asked to.
#[derive(Default)]
pub struct Two;

impl Two {
    fn call(request: &Request, ctx: &mut CrdtContext) -> Result<Reply<Response>, Failure> {
        let delete = request
            .actions
            .iter()
            .any(|action| matches!(action.action, Some(request_action::Action::Delete(_))));
        if delete {
            ctx.delete_state();
        }
        Ok(Response::default().into())
    }
}

impl proto::CrdtTwo for Two {
    fn call(
        &mut self,
        request: Request,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<Response>, Failure> {
        Two::call(&request, ctx)
    }
}

impl proto::CrdtConfigured for Two {
    fn call(
        &mut self,
        request: Request,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<Response>, Failure> {
        Two::call(&request, ctx)
    }
}

/// The registration of `CrdtTckModel`.
pub fn model() -> CrdtEntityService<Model> {
    proto::crdt_tck_model::entity()
}

/// The registration of `CrdtTwo`.
pub fn two() -> CrdtEntityService<Two> {
    crdt_two::entity()
}

/// The registration of `CrdtConfigured`.
pub fn configured() -> CrdtEntityService<Two> {
    proto::crdt_configured::entity().passivation_timeout(CONFIGURED_PASSIVATION)
}
