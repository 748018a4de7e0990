//! CRDT entities (CrdtEntityTCK): the model cases drive `CrdtTckModel` directly, one scripted
//! stream at a time; the proxy cases call it through the proxy and check what crossed the
//! protocol. Deltas are compared with their elements and entries sorted (as the original does).

use std::time::Duration;

use cloudstate_protocol::crdt::{
    CrdtClock, CrdtDelta, CrdtStreamIn, CrdtStreamOut, CrdtWriteConsistency,
};
use tokio_stream::StreamExt;

use super::value_entity::timeout_strategy;
use super::{Case, CaseResult, Ctx};
use crate::Error;
use crate::error::{CheckExt, ensure, ensure_eq};
use crate::frontend;
use crate::http;
use crate::messages::Effects;
use crate::messages::crdt::{
    self as msg, delete_action, gcounter, gset, lww, lww_clock, normalized, orset, pncounter,
    update, update_with, vote,
};
use crate::proto::crdt::crdt_configured_client::CrdtConfiguredClient;
use crate::proto::crdt::crdt_tck_model_client::CrdtTckModelClient;
use crate::proto::crdt::crdt_two_client::CrdtTwoClient;
use crate::proto::crdt::{
    Delete, Effect, Fail, FlagUpdate, FlagValue, Forward, GCounterUpdate, GCounterValue,
    GSetUpdate, GSetValue, LwwRegisterClock, LwwRegisterClockType, LwwRegisterUpdate,
    LwwRegisterValue, OrMapEntryUpdate, OrMapEntryValue, OrMapUpdate, OrMapValue, OrSetUpdate,
    OrSetValue, PnCounterUpdate, PnCounterValue, Request, RequestAction, Response, State,
    StreamedRequest, Update, UpdateWriteConsistency, VoteUpdate, VoteValue, or_map_update,
    or_set_update, request_action, state, update as proto_update,
};
use crate::proto::service::{CRDT, CRDT_CONFIGURED, CRDT_TWO};
use crate::relay::CrdtStream;

const SERVICES: &[&str] = &[CRDT, CRDT_TWO];
const CONFIGURED: &[&str] = &[CRDT_CONFIGURED];

// Requests.

fn action(action: request_action::Action) -> RequestAction {
    RequestAction {
        action: Some(action),
    }
}

fn updating(update: proto_update::Update) -> RequestAction {
    action(request_action::Action::Update(Update {
        update: Some(update),
        write_consistency: 0,
    }))
}

fn the_update(action: RequestAction) -> Update {
    match action.action {
        Some(request_action::Action::Update(update)) => update,
        other => unreachable!("an update action, not {other:?}"),
    }
}

fn increment(by: u64) -> RequestAction {
    updating(proto_update::Update::Gcounter(GCounterUpdate {
        increment: by,
    }))
}

fn change(by: i64) -> RequestAction {
    updating(proto_update::Update::Pncounter(PnCounterUpdate {
        change: by,
    }))
}

fn gset_add(element: &str) -> RequestAction {
    updating(proto_update::Update::Gset(GSetUpdate {
        add: element.into(),
    }))
}

fn orset_action(action: or_set_update::Action) -> RequestAction {
    updating(proto_update::Update::Orset(OrSetUpdate {
        action: Some(action),
    }))
}

fn orset_add(element: &str) -> RequestAction {
    orset_action(or_set_update::Action::Add(element.into()))
}

fn orset_remove(element: &str) -> RequestAction {
    orset_action(or_set_update::Action::Remove(element.into()))
}

fn orset_clear() -> RequestAction {
    orset_action(or_set_update::Action::Clear(true))
}

fn set_to(value: &str) -> RequestAction {
    set_with_clock(value, LwwRegisterClockType::Default, 0)
}

fn set_with_clock(value: &str, clock: LwwRegisterClockType, custom: i64) -> RequestAction {
    updating(proto_update::Update::Lwwregister(LwwRegisterUpdate {
        value: value.into(),
        clock: Some(LwwRegisterClock {
            clock_type: clock.into(),
            custom_clock_value: custom,
        }),
    }))
}

fn enable() -> RequestAction {
    updating(proto_update::Update::Flag(FlagUpdate {}))
}

fn self_vote(vote: bool) -> RequestAction {
    updating(proto_update::Update::Vote(VoteUpdate { self_vote: vote }))
}

fn ormap_action(action: or_map_update::Action) -> RequestAction {
    updating(proto_update::Update::Ormap(Box::new(OrMapUpdate {
        action: Some(action),
    })))
}

fn ormap_add(key: &str) -> RequestAction {
    ormap_action(or_map_update::Action::Add(key.into()))
}

/// Updates of the value of `key` (each of `actions` is an update).
fn ormap_update(key: &str, actions: Vec<RequestAction>) -> Vec<RequestAction> {
    actions
        .into_iter()
        .map(|action| {
            ormap_action(or_map_update::Action::Update(Box::new(OrMapEntryUpdate {
                key: key.into(),
                update: Some(Box::new(the_update(action))),
            })))
        })
        .collect()
}

fn ormap_remove(key: &str) -> RequestAction {
    ormap_action(or_map_update::Action::Remove(key.into()))
}

fn ormap_clear() -> RequestAction {
    ormap_action(or_map_update::Action::Clear(true))
}

fn delete() -> RequestAction {
    action(request_action::Action::Delete(Delete {}))
}

fn forward_to(id: &str) -> RequestAction {
    action(request_action::Action::Forward(Forward { id: id.into() }))
}

fn effect(id: &str, synchronous: bool) -> RequestAction {
    action(request_action::Action::Effect(Effect {
        id: id.into(),
        synchronous,
    }))
}

fn fail_with(message: &str) -> RequestAction {
    action(request_action::Action::Fail(Fail {
        message: message.into(),
    }))
}

fn request(id: &str, actions: Vec<RequestAction>) -> Request {
    Request {
        id: id.into(),
        actions,
    }
}

// States.

fn state_of(value: state::Value) -> State {
    State { value: Some(value) }
}

fn s_gcounter(value: u64) -> State {
    state_of(state::Value::Gcounter(GCounterValue { value }))
}

fn s_pncounter(value: i64) -> State {
    state_of(state::Value::Pncounter(PnCounterValue { value }))
}

fn strings(elements: &[&str]) -> Vec<String> {
    elements
        .iter()
        .map(|element| (*element).to_owned())
        .collect()
}

fn s_gset(elements: &[&str]) -> State {
    state_of(state::Value::Gset(GSetValue {
        elements: strings(elements),
    }))
}

fn s_orset(elements: &[&str]) -> State {
    state_of(state::Value::Orset(OrSetValue {
        elements: strings(elements),
    }))
}

fn s_lww(value: &str) -> State {
    state_of(state::Value::Lwwregister(LwwRegisterValue {
        value: value.into(),
    }))
}

fn s_flag(value: bool) -> State {
    state_of(state::Value::Flag(FlagValue { value }))
}

fn s_vote(self_vote: bool, votes_for: i32, total_voters: i32) -> State {
    state_of(state::Value::Vote(VoteValue {
        self_vote,
        votes_for,
        total_voters,
    }))
}

fn s_ormap(entries: Vec<(&str, State)>) -> State {
    state_of(state::Value::Ormap(OrMapValue {
        entries: entries
            .into_iter()
            .map(|(key, value)| OrMapEntryValue {
                key: key.into(),
                value: Some(value),
            })
            .collect(),
    }))
}

fn response(state: State) -> Response {
    Response { state: Some(state) }
}

fn d_ormap(
    cleared: bool,
    removed: &[&str],
    updated: Vec<(&str, CrdtDelta)>,
    added: Vec<(&str, CrdtDelta)>,
) -> CrdtDelta {
    msg::ormap(cleared, removed, updated, added)
}

fn changed(delta: CrdtDelta) -> Effects {
    Effects::none().crdt_action(update(delta))
}

fn deleted() -> Effects {
    Effects::none().crdt_action(delete_action())
}

/// Side effects to `CrdtTwo.Call` with `Request{id}` for each of `ids`.
fn effects(ids: &[&str], synchronous: bool) -> Effects {
    ids.iter().fold(Effects::none(), |effects, id| {
        effects.side_effect(CRDT_TWO, "Call", &request(id, vec![]), synchronous)
    })
}

// Scripts: what one model case sends and expects, one stream after another.

/// One message to send, or the answer to expect.
enum Step {
    Send(CrdtStreamIn),
    Expect(CrdtStreamOut),
}

fn init(id: &str, delta: Option<CrdtDelta>) -> Step {
    Step::Send(msg::init(CRDT, id, delta))
}

fn replicated(delta: CrdtDelta) -> Step {
    Step::Send(msg::delta(delta))
}

fn process(n: i64, id: &str, actions: Vec<RequestAction>) -> Step {
    Step::Send(msg::command(n, id, "Process", &request(id, actions), false))
}

fn replied(n: i64, state: State, effects: Effects) -> Step {
    Step::Expect(msg::reply(n, &response(state), effects))
}

/// Sends `step`s on one stream after another (each ends with passivation).
async fn script(ctx: &Ctx, lives: Vec<Vec<Step>>) -> CaseResult {
    for life in lives {
        let mut stream = frontend::crdt(ctx.service()?);
        for step in life {
            match step {
                Step::Send(message) => {
                    stream.send(message).await?;
                }
                Step::Expect(expected) => {
                    let seen = normalized(stream.next().await?);
                    ensure_eq(&seen, &normalized(expected), "answer of the user function")?;
                }
            }
        }
        stream.passivate().await?;
    }
    Ok(())
}

type Script = fn(&str) -> Vec<Vec<Step>>;

/// Named scripts.
type Scripts = Vec<(&'static str, Script)>;

/// The cases every CRDT type has, by type (its name is also its entity ids' prefix).
fn per_type_scripts() -> Vec<(&'static str, Scripts)> {
    vec![
        (
            "GCounter",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_gcounter(0), Effects::none()),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![increment(42)]),
                        replied(1, s_gcounter(42), changed(gcounter(42))),
                        process(2, id, vec![increment(1), increment(2), increment(3)]),
                        replied(2, s_gcounter(48), changed(gcounter(6))),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![vec![
                        init(id, Some(gcounter(42))),
                        process(1, id, vec![increment(123)]),
                        replied(1, s_gcounter(165), changed(gcounter(123))),
                    ]]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(gcounter(42)),
                        process(1, id, vec![increment(123)]),
                        replied(1, s_gcounter(165), changed(gcounter(123))),
                    ]]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![increment(1)]),
                        replied(1, s_gcounter(1), changed(gcounter(1))),
                        replicated(gcounter(2)),
                        replicated(gcounter(3)),
                        process(2, id, vec![]),
                        replied(2, s_gcounter(6), Effects::none()),
                        process(3, id, vec![increment(4)]),
                        replied(3, s_gcounter(10), changed(gcounter(4))),
                        replicated(gcounter(5)),
                        process(4, id, vec![increment(6)]),
                        replied(4, s_gcounter(21), changed(gcounter(6))),
                    ]]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![increment(1)]),
                            replied(1, s_gcounter(1), changed(gcounter(1))),
                            replicated(gcounter(2)),
                            process(2, id, vec![]),
                            replied(2, s_gcounter(3), Effects::none()),
                            process(3, id, vec![increment(3)]),
                            replied(3, s_gcounter(6), changed(gcounter(3))),
                        ],
                        vec![
                            init(id, Some(gcounter(6))),
                            process(1, id, vec![]),
                            replied(1, s_gcounter(6), Effects::none()),
                            replicated(gcounter(4)),
                            process(2, id, vec![increment(5)]),
                            replied(2, s_gcounter(15), changed(gcounter(5))),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![increment(42)]),
                        replied(1, s_gcounter(42), changed(gcounter(42))),
                        process(2, id, vec![delete()]),
                        replied(2, s_gcounter(42), deleted()),
                    ]]
                }),
            ],
        ),
        (
            "PNCounter",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_pncounter(0), Effects::none()),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![change(1), change(-2), change(3)]),
                        replied(1, s_pncounter(2), changed(pncounter(2))),
                        process(2, id, vec![change(-4), change(5), change(-6)]),
                        replied(2, s_pncounter(-3), changed(pncounter(-5))),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![vec![
                        init(id, Some(pncounter(42))),
                        process(1, id, vec![change(-123)]),
                        replied(1, s_pncounter(-81), changed(pncounter(-123))),
                    ]]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(pncounter(-42)),
                        process(1, id, vec![change(123)]),
                        replied(1, s_pncounter(81), changed(pncounter(123))),
                    ]]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![change(1)]),
                        replied(1, s_pncounter(1), changed(pncounter(1))),
                        replicated(pncounter(-2)),
                        replicated(pncounter(3)),
                        process(2, id, vec![]),
                        replied(2, s_pncounter(2), Effects::none()),
                        process(3, id, vec![change(-4)]),
                        replied(3, s_pncounter(-2), changed(pncounter(-4))),
                        replicated(pncounter(5)),
                        process(4, id, vec![change(-6)]),
                        replied(4, s_pncounter(-3), changed(pncounter(-6))),
                    ]]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![change(1)]),
                            replied(1, s_pncounter(1), changed(pncounter(1))),
                            replicated(pncounter(-2)),
                            process(2, id, vec![]),
                            replied(2, s_pncounter(-1), Effects::none()),
                            process(3, id, vec![change(3)]),
                            replied(3, s_pncounter(2), changed(pncounter(3))),
                        ],
                        vec![
                            init(id, Some(pncounter(2))),
                            process(1, id, vec![]),
                            replied(1, s_pncounter(2), Effects::none()),
                            replicated(pncounter(-4)),
                            process(2, id, vec![change(5)]),
                            replied(2, s_pncounter(3), changed(pncounter(5))),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![change(42)]),
                        replied(1, s_pncounter(42), changed(pncounter(42))),
                        process(2, id, vec![delete()]),
                        replied(2, s_pncounter(42), deleted()),
                    ]]
                }),
            ],
        ),
        (
            "GSet",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_gset(&[]), Effects::none()),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![gset_add("a"), gset_add("b")]),
                        replied(1, s_gset(&["a", "b"]), changed(gset(&["a", "b"]))),
                        process(2, id, vec![gset_add("b"), gset_add("c")]),
                        replied(2, s_gset(&["a", "b", "c"]), changed(gset(&["c"]))),
                        process(3, id, vec![gset_add("c"), gset_add("a")]),
                        replied(3, s_gset(&["a", "b", "c"]), Effects::none()),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![vec![
                        init(id, Some(gset(&["a", "b", "c"]))),
                        process(1, id, vec![gset_add("c"), gset_add("d"), gset_add("e")]),
                        replied(
                            1,
                            s_gset(&["a", "b", "c", "d", "e"]),
                            changed(gset(&["d", "e"])),
                        ),
                    ]]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(gset(&["x", "y"])),
                        process(1, id, vec![gset_add("z")]),
                        replied(1, s_gset(&["x", "y", "z"]), changed(gset(&["z"]))),
                    ]]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![gset_add("a")]),
                        replied(1, s_gset(&["a"]), changed(gset(&["a"]))),
                        replicated(gset(&["a"])),
                        replicated(gset(&["b"])),
                        replicated(gset(&["c"])),
                        process(2, id, vec![]),
                        replied(2, s_gset(&["a", "b", "c"]), Effects::none()),
                        process(3, id, vec![gset_add("c"), gset_add("d"), gset_add("e")]),
                        replied(
                            3,
                            s_gset(&["a", "b", "c", "d", "e"]),
                            changed(gset(&["d", "e"])),
                        ),
                        replicated(gset(&["f"])),
                        process(4, id, vec![gset_add("g"), gset_add("d"), gset_add("b")]),
                        replied(
                            4,
                            s_gset(&["a", "b", "c", "d", "e", "f", "g"]),
                            changed(gset(&["g"])),
                        ),
                    ]]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![gset_add("a")]),
                            replied(1, s_gset(&["a"]), changed(gset(&["a"]))),
                            replicated(gset(&["b"])),
                            process(2, id, vec![]),
                            replied(2, s_gset(&["a", "b"]), Effects::none()),
                            process(3, id, vec![gset_add("c")]),
                            replied(3, s_gset(&["a", "b", "c"]), changed(gset(&["c"]))),
                        ],
                        vec![
                            init(id, Some(gset(&["a", "b", "c"]))),
                            process(1, id, vec![]),
                            replied(1, s_gset(&["a", "b", "c"]), Effects::none()),
                            replicated(gset(&["d"])),
                            process(2, id, vec![gset_add("e")]),
                            replied(2, s_gset(&["a", "b", "c", "d", "e"]), changed(gset(&["e"]))),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![gset_add("x")]),
                        replied(1, s_gset(&["x"]), changed(gset(&["x"]))),
                        process(2, id, vec![delete()]),
                        replied(2, s_gset(&["x"]), deleted()),
                    ]]
                }),
            ],
        ),
        (
            "ORSet",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_orset(&[]), Effects::none()),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![orset_add("a"), orset_add("b")]),
                        replied(
                            1,
                            s_orset(&["a", "b"]),
                            changed(orset(false, &[], &["a", "b"])),
                        ),
                        process(2, id, vec![orset_add("b"), orset_add("c")]),
                        replied(
                            2,
                            s_orset(&["a", "b", "c"]),
                            changed(orset(false, &[], &["c"])),
                        ),
                        process(3, id, vec![orset_add("c"), orset_add("a")]),
                        replied(3, s_orset(&["a", "b", "c"]), Effects::none()),
                        process(4, id, vec![orset_remove("b"), orset_remove("d")]),
                        replied(4, s_orset(&["a", "c"]), changed(orset(false, &["b"], &[]))),
                        process(
                            5,
                            id,
                            vec![
                                orset_remove("c"),
                                orset_remove("d"),
                                orset_add("b"),
                                orset_add("c"),
                            ],
                        ),
                        replied(
                            5,
                            s_orset(&["a", "b", "c"]),
                            changed(orset(false, &[], &["b"])),
                        ),
                        process(6, id, vec![orset_clear()]),
                        replied(6, s_orset(&[]), changed(orset(true, &[], &[]))),
                        process(7, id, vec![orset_add("a"), orset_clear(), orset_add("x")]),
                        replied(7, s_orset(&["x"]), changed(orset(true, &[], &["x"]))),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![vec![
                        init(id, Some(orset(false, &[], &["a", "b", "c"]))),
                        process(1, id, vec![orset_remove("c"), orset_add("d")]),
                        replied(
                            1,
                            s_orset(&["a", "b", "d"]),
                            changed(orset(false, &["c"], &["d"])),
                        ),
                    ]]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(orset(false, &[], &["x", "y"])),
                        process(1, id, vec![orset_remove("x"), orset_add("z")]),
                        replied(
                            1,
                            s_orset(&["y", "z"]),
                            changed(orset(false, &["x"], &["z"])),
                        ),
                    ]]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![orset_add("a")]),
                        replied(1, s_orset(&["a"]), changed(orset(false, &[], &["a"]))),
                        replicated(orset(false, &[], &["a", "b"])),
                        replicated(orset(false, &[], &["c", "d"])),
                        replicated(orset(false, &["b", "d"], &[])),
                        process(2, id, vec![]),
                        replied(2, s_orset(&["a", "c"]), Effects::none()),
                        process(3, id, vec![orset_add("c"), orset_add("d"), orset_add("e")]),
                        replied(
                            3,
                            s_orset(&["a", "c", "d", "e"]),
                            changed(orset(false, &[], &["d", "e"])),
                        ),
                        replicated(orset(false, &["a", "c"], &["f"])),
                        process(
                            4,
                            id,
                            vec![orset_add("g"), orset_remove("a"), orset_remove("d")],
                        ),
                        replied(
                            4,
                            s_orset(&["e", "f", "g"]),
                            changed(orset(false, &["d"], &["g"])),
                        ),
                        replicated(orset(true, &[], &["x", "y", "z"])),
                        process(
                            5,
                            id,
                            vec![orset_add("q"), orset_add("x"), orset_remove("z")],
                        ),
                        replied(
                            5,
                            s_orset(&["q", "x", "y"]),
                            changed(orset(false, &["z"], &["q"])),
                        ),
                        replicated(orset(false, &["x", "y"], &["r", "p"])),
                        process(6, id, vec![orset_add("s")]),
                        replied(
                            6,
                            s_orset(&["p", "q", "r", "s"]),
                            changed(orset(false, &[], &["s"])),
                        ),
                        replicated(orset(false, &[], &["a", "b", "c"])),
                        process(7, id, vec![orset_clear(), orset_add("abc")]),
                        replied(7, s_orset(&["abc"]), changed(orset(true, &[], &["abc"]))),
                    ]]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![orset_add("a")]),
                            replied(1, s_orset(&["a"]), changed(orset(false, &[], &["a"]))),
                            replicated(orset(false, &["a"], &["b"])),
                            process(2, id, vec![]),
                            replied(2, s_orset(&["b"]), Effects::none()),
                            process(3, id, vec![orset_add("c")]),
                            replied(3, s_orset(&["b", "c"]), changed(orset(false, &[], &["c"]))),
                        ],
                        vec![
                            init(id, Some(orset(false, &[], &["b", "c"]))),
                            process(1, id, vec![]),
                            replied(1, s_orset(&["b", "c"]), Effects::none()),
                            replicated(orset(true, &[], &["p", "q"])),
                            process(
                                2,
                                id,
                                vec![orset_add("x"), orset_add("y"), orset_remove("x")],
                            ),
                            replied(
                                2,
                                s_orset(&["p", "q", "y"]),
                                changed(orset(false, &[], &["y"])),
                            ),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![orset_add("x")]),
                        replied(1, s_orset(&["x"]), changed(orset(false, &[], &["x"]))),
                        process(2, id, vec![delete()]),
                        replied(2, s_orset(&["x"]), deleted()),
                    ]]
                }),
            ],
        ),
        (
            "LWWRegister",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_lww(""), changed(lww(""))),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![set_to("one")]),
                        replied(1, s_lww("one"), changed(lww("one"))),
                        process(2, id, vec![set_to("two")]),
                        replied(2, s_lww("two"), changed(lww("two"))),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![vec![
                        init(id, Some(lww("one"))),
                        process(1, id, vec![]),
                        replied(1, s_lww("one"), Effects::none()),
                    ]]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(lww("one")),
                        process(1, id, vec![]),
                        replied(1, s_lww("one"), Effects::none()),
                    ]]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![set_to("A")]),
                        replied(1, s_lww("A"), changed(lww("A"))),
                        replicated(lww("B")),
                        replicated(lww("C")),
                        process(2, id, vec![]),
                        replied(2, s_lww("C"), Effects::none()),
                        process(3, id, vec![set_to("D")]),
                        replied(3, s_lww("D"), changed(lww("D"))),
                        replicated(lww("D")),
                        process(4, id, vec![set_to("E")]),
                        replied(4, s_lww("E"), changed(lww("E"))),
                    ]]
                }),
                ("state changes with clock settings", |id| {
                    vec![vec![
                        init(id, None),
                        process(
                            1,
                            id,
                            vec![set_with_clock("A", LwwRegisterClockType::Reverse, 0)],
                        ),
                        replied(
                            1,
                            s_lww("A"),
                            changed(lww_clock("A", CrdtClock::Reverse, 0)),
                        ),
                        process(
                            2,
                            id,
                            vec![set_with_clock("A", LwwRegisterClockType::Custom, 123)],
                        ),
                        replied(
                            2,
                            s_lww("A"),
                            changed(lww_clock("A", CrdtClock::Custom, 123)),
                        ),
                        // The original sends command id 2 twice: libraries must not check the ids.
                        process(
                            2,
                            id,
                            vec![set_with_clock(
                                "A",
                                LwwRegisterClockType::CustomAutoIncrement,
                                456,
                            )],
                        ),
                        replied(
                            2,
                            s_lww("A"),
                            changed(lww_clock("A", CrdtClock::CustomAutoIncrement, 456)),
                        ),
                    ]]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![set_to("A")]),
                            replied(1, s_lww("A"), changed(lww("A"))),
                            replicated(lww("B")),
                            process(2, id, vec![]),
                            replied(2, s_lww("B"), Effects::none()),
                            process(3, id, vec![set_to("C")]),
                            replied(3, s_lww("C"), changed(lww("C"))),
                        ],
                        vec![
                            init(id, Some(lww("C"))),
                            process(1, id, vec![]),
                            replied(1, s_lww("C"), Effects::none()),
                            replicated(lww("D")),
                            process(2, id, vec![set_to("E")]),
                            replied(2, s_lww("E"), changed(lww("E"))),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![set_to("one")]),
                        replied(1, s_lww("one"), changed(lww("one"))),
                        process(2, id, vec![delete()]),
                        replied(2, s_lww("one"), deleted()),
                    ]]
                }),
            ],
        ),
        (
            "Flag",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_flag(false), Effects::none()),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![enable()]),
                        replied(1, s_flag(true), changed(msg::flag(true))),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![
                        vec![
                            init(id, Some(msg::flag(false))),
                            process(1, id, vec![]),
                            replied(1, s_flag(false), Effects::none()),
                        ],
                        vec![
                            init(id, Some(msg::flag(true))),
                            process(1, id, vec![]),
                            replied(1, s_flag(true), Effects::none()),
                        ],
                    ]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![
                        vec![
                            init(id, None),
                            replicated(msg::flag(false)),
                            process(1, id, vec![]),
                            replied(1, s_flag(false), Effects::none()),
                        ],
                        vec![
                            init(id, None),
                            replicated(msg::flag(true)),
                            process(1, id, vec![]),
                            replied(1, s_flag(true), Effects::none()),
                        ],
                    ]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![
                        vec![
                            init(id, None),
                            replicated(msg::flag(false)),
                            process(1, id, vec![]),
                            replied(1, s_flag(false), Effects::none()),
                            process(2, id, vec![enable()]),
                            replied(2, s_flag(true), changed(msg::flag(true))),
                            replicated(msg::flag(true)),
                            replicated(msg::flag(false)),
                            process(3, id, vec![]),
                            replied(3, s_flag(true), Effects::none()),
                        ],
                        vec![
                            init(id, None),
                            replicated(msg::flag(true)),
                            process(1, id, vec![]),
                            replied(1, s_flag(true), Effects::none()),
                            process(2, id, vec![enable()]),
                            replied(2, s_flag(true), Effects::none()),
                            replicated(msg::flag(true)),
                            replicated(msg::flag(false)),
                            process(3, id, vec![]),
                            replied(3, s_flag(true), Effects::none()),
                        ],
                    ]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![]),
                            replied(1, s_flag(false), Effects::none()),
                            process(2, id, vec![enable()]),
                            replied(2, s_flag(true), changed(msg::flag(true))),
                        ],
                        vec![
                            init(id, Some(msg::flag(true))),
                            process(1, id, vec![]),
                            replied(1, s_flag(true), Effects::none()),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![enable()]),
                        replied(1, s_flag(true), changed(msg::flag(true))),
                        process(2, id, vec![delete()]),
                        replied(2, s_flag(true), deleted()),
                    ]]
                }),
            ],
        ),
        ("ORMap", ormap_scripts()),
        (
            "Vote",
            vec![
                ("initial empty state", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![]),
                        replied(1, s_vote(false, 0, 1), Effects::none()),
                    ]]
                }),
                ("state changes", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![self_vote(true)]),
                        replied(1, s_vote(true, 1, 1), changed(vote(true, 0, 0))),
                        process(2, id, vec![self_vote(true)]),
                        replied(2, s_vote(true, 1, 1), Effects::none()),
                        process(3, id, vec![self_vote(false)]),
                        replied(3, s_vote(false, 0, 1), changed(vote(false, 0, 0))),
                        process(4, id, vec![self_vote(false)]),
                        replied(4, s_vote(false, 0, 1), Effects::none()),
                    ]]
                }),
                ("initial delta in init", |id| {
                    vec![vec![
                        init(id, Some(vote(true, 2, 3))),
                        process(1, id, vec![]),
                        replied(1, s_vote(true, 2, 3), Effects::none()),
                        process(2, id, vec![self_vote(false)]),
                        replied(2, s_vote(false, 1, 3), changed(vote(false, 0, 0))),
                    ]]
                }),
                ("initial empty state with replicated initial delta", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(vote(false, 3, 5)),
                        process(1, id, vec![]),
                        replied(1, s_vote(false, 3, 5), Effects::none()),
                        process(2, id, vec![self_vote(true)]),
                        replied(2, s_vote(true, 4, 5), changed(vote(true, 0, 0))),
                    ]]
                }),
                ("mix of local and replicated state changes", |id| {
                    vec![vec![
                        init(id, None),
                        replicated(vote(false, 2, 4)),
                        process(1, id, vec![]),
                        replied(1, s_vote(false, 2, 4), Effects::none()),
                        process(2, id, vec![self_vote(true)]),
                        replied(2, s_vote(true, 3, 4), changed(vote(true, 0, 0))),
                        replicated(vote(true, 5, 7)),
                        replicated(vote(true, 4, 6)),
                        process(3, id, vec![self_vote(false)]),
                        replied(3, s_vote(false, 3, 6), changed(vote(false, 0, 0))),
                    ]]
                }),
                ("rehydration after passivation", |id| {
                    vec![
                        vec![
                            init(id, None),
                            process(1, id, vec![]),
                            replied(1, s_vote(false, 0, 1), Effects::none()),
                            replicated(vote(false, 2, 5)),
                            process(2, id, vec![self_vote(true)]),
                            replied(2, s_vote(true, 3, 5), changed(vote(true, 0, 0))),
                        ],
                        vec![
                            init(id, Some(vote(true, 3, 5))),
                            process(1, id, vec![]),
                            replied(1, s_vote(true, 3, 5), Effects::none()),
                            process(2, id, vec![self_vote(false)]),
                            replied(2, s_vote(false, 2, 5), changed(vote(false, 0, 0))),
                        ],
                    ]
                }),
                ("delete action received from entity", |id| {
                    vec![vec![
                        init(id, None),
                        process(1, id, vec![self_vote(true)]),
                        replied(1, s_vote(true, 1, 1), changed(vote(true, 0, 0))),
                        process(2, id, vec![delete()]),
                        replied(2, s_vote(true, 1, 1), deleted()),
                    ]]
                }),
            ],
        ),
    ]
}

fn ormap_scripts() -> Scripts {
    vec![
        ("initial empty state", |id| {
            vec![vec![
                init(id, None),
                process(1, id, vec![]),
                replied(1, s_ormap(vec![]), Effects::none()),
            ]]
        }),
        ("state changes", |id| {
            let mut step2 = vec![ormap_add("ORSet-1")];
            step2.extend(ormap_update("LWWRegister-1", vec![set_to("zero")]));
            let mut step3 = ormap_update("PNCounter-1", vec![change(42)]);
            step3.extend(ormap_update("LWWRegister-1", vec![set_to("one")]));
            let mut step5 = ormap_update("ORSet-1", vec![orset_remove("b"), orset_add("d")]);
            step5.extend(ormap_update("PNCounter-1", vec![change(-123)]));
            step5.extend(ormap_update("LWWRegister-1", vec![set_to("two")]));
            let mut step7 = vec![ormap_remove("LWWRegister-1")];
            step7.extend(ormap_update("Flag-1", vec![enable()]));
            let mut step9 = vec![ormap_add("PNCounter-2"), ormap_clear()];
            step9.extend(ormap_update("GCounter-1", vec![increment(123)]));
            vec![vec![
                init(id, None),
                process(1, id, vec![ormap_add("PNCounter-1"), ormap_add("ORSet-1")]),
                replied(
                    1,
                    s_ormap(vec![
                        ("ORSet-1", s_orset(&[])),
                        ("PNCounter-1", s_pncounter(0)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![
                            ("ORSet-1", orset(false, &[], &[])),
                            ("PNCounter-1", pncounter(0)),
                        ],
                    )),
                ),
                process(2, id, step2),
                replied(
                    2,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("zero")),
                        ("ORSet-1", s_orset(&[])),
                        ("PNCounter-1", s_pncounter(0)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![("LWWRegister-1", lww("zero"))],
                    )),
                ),
                process(3, id, step3),
                replied(
                    3,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("one")),
                        ("ORSet-1", s_orset(&[])),
                        ("PNCounter-1", s_pncounter(42)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![
                            ("LWWRegister-1", lww("one")),
                            ("PNCounter-1", pncounter(42)),
                        ],
                        vec![],
                    )),
                ),
                process(
                    4,
                    id,
                    ormap_update(
                        "ORSet-1",
                        vec![orset_add("a"), orset_add("b"), orset_add("c")],
                    ),
                ),
                replied(
                    4,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("one")),
                        ("ORSet-1", s_orset(&["a", "b", "c"])),
                        ("PNCounter-1", s_pncounter(42)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![("ORSet-1", orset(false, &[], &["a", "b", "c"]))],
                        vec![],
                    )),
                ),
                process(5, id, step5),
                replied(
                    5,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("two")),
                        ("ORSet-1", s_orset(&["a", "c", "d"])),
                        ("PNCounter-1", s_pncounter(-81)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![
                            ("LWWRegister-1", lww("two")),
                            ("ORSet-1", orset(false, &["b"], &["d"])),
                            ("PNCounter-1", pncounter(-123)),
                        ],
                        vec![],
                    )),
                ),
                process(6, id, vec![ormap_remove("ORSet-1")]),
                replied(
                    6,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("two")),
                        ("PNCounter-1", s_pncounter(-81)),
                    ]),
                    changed(d_ormap(false, &["ORSet-1"], vec![], vec![])),
                ),
                process(7, id, step7),
                replied(
                    7,
                    s_ormap(vec![
                        ("Flag-1", s_flag(true)),
                        ("PNCounter-1", s_pncounter(-81)),
                    ]),
                    changed(d_ormap(
                        false,
                        &["LWWRegister-1"],
                        vec![],
                        vec![("Flag-1", msg::flag(true))],
                    )),
                ),
                process(8, id, vec![ormap_clear()]),
                replied(
                    8,
                    s_ormap(vec![]),
                    changed(d_ormap(true, &[], vec![], vec![])),
                ),
                process(9, id, step9),
                replied(
                    9,
                    s_ormap(vec![("GCounter-1", s_gcounter(123))]),
                    changed(d_ormap(
                        true,
                        &[],
                        vec![],
                        vec![("GCounter-1", gcounter(123))],
                    )),
                ),
            ]]
        }),
        ("initial delta in init", |id| {
            let mut step2 = vec![ormap_remove("LWWRegister-1")];
            step2.extend(ormap_update("PNCounter-1", vec![change(-42)]));
            vec![vec![
                init(
                    id,
                    Some(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![
                            ("PNCounter-1", pncounter(123)),
                            ("LWWRegister-1", lww("one")),
                            ("GSet-1", gset(&["a", "b", "c"])),
                        ],
                    )),
                ),
                process(1, id, vec![]),
                replied(
                    1,
                    s_ormap(vec![
                        ("GSet-1", s_gset(&["a", "b", "c"])),
                        ("LWWRegister-1", s_lww("one")),
                        ("PNCounter-1", s_pncounter(123)),
                    ]),
                    Effects::none(),
                ),
                process(2, id, step2),
                replied(
                    2,
                    s_ormap(vec![
                        ("GSet-1", s_gset(&["a", "b", "c"])),
                        ("PNCounter-1", s_pncounter(81)),
                    ]),
                    changed(d_ormap(
                        false,
                        &["LWWRegister-1"],
                        vec![("PNCounter-1", pncounter(-42))],
                        vec![],
                    )),
                ),
            ]]
        }),
        ("initial empty state with replicated initial delta", |id| {
            vec![vec![
                init(id, None),
                replicated(d_ormap(
                    false,
                    &[],
                    vec![],
                    vec![
                        ("GCounter-1", gcounter(42)),
                        ("ORSet-1", orset(false, &[], &["a", "b", "c"])),
                        ("Flag-1", msg::flag(false)),
                    ],
                )),
                process(1, id, vec![]),
                replied(
                    1,
                    s_ormap(vec![
                        ("Flag-1", s_flag(false)),
                        ("GCounter-1", s_gcounter(42)),
                        ("ORSet-1", s_orset(&["a", "b", "c"])),
                    ]),
                    Effects::none(),
                ),
            ]]
        }),
        ("mix of local and replicated state changes", |id| {
            let mut step2 = vec![ormap_add("ORSet-2")];
            step2.extend(ormap_update("LWWRegister-2", vec![set_to("two")]));
            let mut step3 = ormap_update("PNCounter-1", vec![change(42)]);
            step3.extend(ormap_update("LWWRegister-1", vec![set_to("ONE")]));
            let nested = ormap_update("PNCounter-1", vec![change(-456)]);
            let step4 = ormap_update("ORMap-1", nested);
            let mut step5 = vec![ormap_remove("PNCounter-1"), ormap_remove("LWWRegister-1")];
            step5.extend(ormap_update(
                "GSet-1",
                vec![gset_add("2"), gset_add("4"), gset_add("6")],
            ));
            vec![vec![
                init(id, None),
                process(1, id, vec![ormap_add("PNCounter-1")]),
                replied(
                    1,
                    s_ormap(vec![("PNCounter-1", s_pncounter(0))]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![("PNCounter-1", pncounter(0))],
                    )),
                ),
                replicated(d_ormap(
                    false,
                    &[],
                    vec![],
                    vec![("ORSet-1", orset(false, &[], &["x"]))],
                )),
                replicated(d_ormap(
                    false,
                    &[],
                    vec![("ORSet-1", orset(false, &[], &["y", "z"]))],
                    vec![("LWWRegister-1", lww("one"))],
                )),
                process(2, id, step2),
                replied(
                    2,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("one")),
                        ("LWWRegister-2", s_lww("two")),
                        ("ORSet-1", s_orset(&["x", "y", "z"])),
                        ("ORSet-2", s_orset(&[])),
                        ("PNCounter-1", s_pncounter(0)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![
                            ("LWWRegister-2", lww("two")),
                            ("ORSet-2", orset(false, &[], &[])),
                        ],
                    )),
                ),
                process(3, id, step3),
                replied(
                    3,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("ONE")),
                        ("LWWRegister-2", s_lww("two")),
                        ("ORSet-1", s_orset(&["x", "y", "z"])),
                        ("ORSet-2", s_orset(&[])),
                        ("PNCounter-1", s_pncounter(42)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![
                            ("LWWRegister-1", lww("ONE")),
                            ("PNCounter-1", pncounter(42)),
                        ],
                        vec![],
                    )),
                ),
                replicated(d_ormap(
                    false,
                    &["LWWRegister-2"],
                    vec![],
                    vec![(
                        "ORMap-1",
                        d_ormap(false, &[], vec![], vec![("PNCounter-1", pncounter(123))]),
                    )],
                )),
                replicated(d_ormap(
                    false,
                    &["ORSet-1"],
                    vec![
                        ("ORSet-2", orset(false, &[], &["a", "b", "c"])),
                        (
                            "ORMap-1",
                            d_ormap(false, &[], vec![], vec![("LWWRegister-1", lww("ABC"))]),
                        ),
                    ],
                    vec![],
                )),
                process(4, id, step4),
                replied(
                    4,
                    s_ormap(vec![
                        ("LWWRegister-1", s_lww("ONE")),
                        (
                            "ORMap-1",
                            s_ormap(vec![
                                ("LWWRegister-1", s_lww("ABC")),
                                ("PNCounter-1", s_pncounter(-333)),
                            ]),
                        ),
                        ("ORSet-2", s_orset(&["a", "b", "c"])),
                        ("PNCounter-1", s_pncounter(42)),
                    ]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![(
                            "ORMap-1",
                            d_ormap(false, &[], vec![("PNCounter-1", pncounter(-456))], vec![]),
                        )],
                        vec![],
                    )),
                ),
                replicated(d_ormap(
                    true,
                    &[],
                    vec![],
                    vec![("GSet-1", gset(&["1", "2", "3"]))],
                )),
                process(5, id, step5),
                replied(
                    5,
                    s_ormap(vec![("GSet-1", s_gset(&["1", "2", "3", "4", "6"]))]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![("GSet-1", gset(&["4", "6"]))],
                        vec![],
                    )),
                ),
                process(6, id, vec![ormap_clear(), ormap_add("GCounter-1")]),
                replied(
                    6,
                    s_ormap(vec![("GCounter-1", s_gcounter(0))]),
                    changed(d_ormap(
                        true,
                        &[],
                        vec![],
                        vec![("GCounter-1", gcounter(0))],
                    )),
                ),
                replicated(d_ormap(
                    false,
                    &["GSet-1"],
                    vec![],
                    vec![("GCounter-1", gcounter(42))],
                )),
                process(7, id, ormap_update("GCounter-1", vec![increment(7)])),
                replied(
                    7,
                    s_ormap(vec![("GCounter-1", s_gcounter(49))]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![("GCounter-1", gcounter(7))],
                        vec![],
                    )),
                ),
            ]]
        }),
        ("rehydration after passivation", |id| {
            vec![
                vec![
                    init(id, None),
                    replicated(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![("PNCounter-1", pncounter(123))],
                    )),
                    process(1, id, ormap_update("PNCounter-1", vec![change(321)])),
                    replied(
                        1,
                        s_ormap(vec![("PNCounter-1", s_pncounter(444))]),
                        changed(d_ormap(
                            false,
                            &[],
                            vec![("PNCounter-1", pncounter(321))],
                            vec![],
                        )),
                    ),
                ],
                vec![
                    init(
                        id,
                        Some(d_ormap(
                            false,
                            &[],
                            vec![],
                            vec![("PNCounter-1", pncounter(444))],
                        )),
                    ),
                    process(1, id, vec![]),
                    replied(
                        1,
                        s_ormap(vec![("PNCounter-1", s_pncounter(444))]),
                        Effects::none(),
                    ),
                    replicated(d_ormap(
                        false,
                        &[],
                        vec![("PNCounter-1", pncounter(-42))],
                        vec![],
                    )),
                    process(2, id, ormap_update("PNCounter-1", vec![change(-360)])),
                    replied(
                        2,
                        s_ormap(vec![("PNCounter-1", s_pncounter(42))]),
                        changed(d_ormap(
                            false,
                            &[],
                            vec![("PNCounter-1", pncounter(-360))],
                            vec![],
                        )),
                    ),
                ],
            ]
        }),
        ("delete action received from entity", |id| {
            let mut step2 = ormap_update("Flag-1", vec![enable()]);
            step2.push(delete());
            vec![vec![
                init(id, None),
                process(1, id, vec![ormap_add("Flag-1")]),
                replied(
                    1,
                    s_ormap(vec![("Flag-1", s_flag(false))]),
                    changed(d_ormap(
                        false,
                        &[],
                        vec![],
                        vec![("Flag-1", msg::flag(false))],
                    )),
                ),
                process(2, id, step2),
                replied(2, s_ormap(vec![("Flag-1", s_flag(true))]), deleted()),
            ]]
        }),
    ]
}

/// A model case: `script` on a fresh entity of type `prefix`.
fn model_case(number: usize, name: String, prefix: &'static str, script_of: Script) -> Case {
    Case::model(name, move |ctx| {
        Box::pin(async move { script(ctx, script_of(&ctx.entity_id(prefix))).await })
    })
    .original(format!("CrdtEntityTCK {number}"))
    .requires(SERVICES)
}

pub(super) fn model_cases() -> Vec<Case> {
    let mut cases = vec![
        Case::model("crdt model: verify CRDT entity discovery", |ctx| {
            Box::pin(discovery(ctx))
        })
        .original("CrdtEntityTCK 1")
        .requires(SERVICES),
        Case::model("crdt model: verify CRDT configured entity", |ctx| {
            Box::pin(configured(ctx))
        })
        .original("CrdtEntityTCK 2")
        .requires(CONFIGURED),
    ];
    let mut number = 3;
    for (kind, scripts) in per_type_scripts() {
        for (name, script_of) in scripts {
            cases.push(model_case(
                number,
                format!("crdt model: verify {kind} {name}"),
                kind,
                script_of,
            ));
            number += 1;
            if name == "delete action received from entity" {
                cases.push(model_case(
                    number,
                    format!("crdt model: verify {kind} delete action sent to entity"),
                    kind,
                    |id| vec![vec![init(id, None), Step::Send(msg::delete())]],
                ));
                number += 1;
            }
        }
    }
    let others: Vec<(&str, &'static str, Script)> = vec![
        ("forward to second service", "GCounter", |id| {
            let target = format!("X-{id}");
            vec![vec![
                init(id, None),
                process(1, id, vec![increment(42)]),
                replied(1, s_gcounter(42), changed(gcounter(42))),
                process(2, id, vec![forward_to(&target)]),
                Step::Expect(msg::forward(
                    2,
                    CRDT_TWO,
                    "Call",
                    &request(&target, vec![]),
                    Effects::none(),
                )),
                process(3, id, vec![]),
                replied(3, s_gcounter(42), Effects::none()),
            ]]
        }),
        ("forward with state changes", "PNCounter", |id| {
            let target = format!("X-{id}");
            vec![vec![
                init(id, None),
                process(1, id, vec![change(-42), forward_to(&target)]),
                Step::Expect(msg::forward(
                    1,
                    CRDT_TWO,
                    "Call",
                    &request(&target, vec![]),
                    changed(pncounter(-42)),
                )),
            ]]
        }),
        ("reply with side effect to second service", "GSet", |id| {
            let target = format!("X-{id}");
            vec![vec![
                init(id, None),
                process(1, id, vec![gset_add("one")]),
                replied(1, s_gset(&["one"]), changed(gset(&["one"]))),
                process(2, id, vec![effect(&target, false)]),
                replied(2, s_gset(&["one"]), effects(&[&target], false)),
                process(3, id, vec![]),
                replied(3, s_gset(&["one"]), Effects::none()),
            ]]
        }),
        ("synchronous side effect to second service", "ORSet", |id| {
            let target = format!("X-{id}");
            vec![vec![
                init(id, None),
                process(1, id, vec![effect(&target, true)]),
                replied(1, s_orset(&[]), effects(&[&target], true)),
            ]]
        }),
        (
            "forward and side effect to second service",
            "LWWRegister",
            |id| {
                let (a, b) = (format!("A-{id}"), format!("B-{id}"));
                vec![vec![
                    init(id, None),
                    process(1, id, vec![effect(&b, false), forward_to(&a)]),
                    Step::Expect(msg::forward(
                        1,
                        CRDT_TWO,
                        "Call",
                        &request(&a, vec![]),
                        changed(lww("")).and(effects(&[&b], false)),
                    )),
                ]]
            },
        ),
        ("reply with multiple side effects", "Flag", |id| {
            vec![vec![
                init(id, None),
                process(
                    1,
                    id,
                    vec![effect("1", false), effect("2", false), effect("3", false)],
                ),
                replied(1, s_flag(false), effects(&["1", "2", "3"], false)),
            ]]
        }),
        (
            "reply with multiple side effects and state changes",
            "ORMap",
            |id| {
                let mut actions = vec![ormap_add("PNCounter-1")];
                actions.extend(ormap_update(
                    "GSet-1",
                    vec![gset_add("a"), gset_add("b"), gset_add("c")],
                ));
                actions.extend([effect("1", false), effect("2", false), effect("3", false)]);
                vec![vec![
                    init(id, None),
                    process(1, id, actions),
                    replied(
                        1,
                        s_ormap(vec![
                            ("GSet-1", s_gset(&["a", "b", "c"])),
                            ("PNCounter-1", s_pncounter(0)),
                        ]),
                        changed(d_ormap(
                            false,
                            &[],
                            vec![],
                            vec![
                                ("GSet-1", gset(&["a", "b", "c"])),
                                ("PNCounter-1", pncounter(0)),
                            ],
                        ))
                        .and(effects(&["1", "2", "3"], false)),
                    ),
                ]]
            },
        ),
        ("failure action", "GCounter", |id| {
            vec![vec![
                init(id, None),
                process(1, id, vec![fail_with("expected failure")]),
                Step::Expect(msg::failure(1, "expected failure")),
            ]]
        }),
        ("connection after failure action", "PNCounter", |id| {
            vec![vec![
                init(id, None),
                process(1, id, vec![change(42)]),
                replied(1, s_pncounter(42), changed(pncounter(42))),
                process(2, id, vec![fail_with("expected failure")]),
                Step::Expect(msg::failure(2, "expected failure")),
                process(3, id, vec![]),
                replied(3, s_pncounter(42), Effects::none()),
            ]]
        }),
        ("streamed responses", "GCounter", |id| {
            vec![vec![
                init(id, None),
                streamed_command(1, id, streamed_request(id)),
                Step::Expect(msg::reply_streamed(
                    1,
                    &response(s_gcounter(0)),
                    Effects::none(),
                )),
                process(2, id, vec![increment(1)]),
                replied(2, s_gcounter(1), changed(gcounter(1))),
                pushed(1, s_gcounter(1), Effects::none(), false),
                process(3, id, vec![increment(2)]),
                replied(3, s_gcounter(3), changed(gcounter(2))),
                pushed(1, s_gcounter(3), Effects::none(), false),
                process(4, id, vec![increment(3)]),
                replied(4, s_gcounter(6), changed(gcounter(3))),
                pushed(1, s_gcounter(6), Effects::none(), false),
            ]]
        }),
        (
            "streamed responses with stream ending action",
            "GCounter",
            |id| {
                vec![vec![
                    init(id, None),
                    streamed_command(
                        1,
                        id,
                        StreamedRequest {
                            end_state: Some(s_gcounter(3)),
                            ..streamed_request(id)
                        },
                    ),
                    Step::Expect(msg::reply_streamed(
                        1,
                        &response(s_gcounter(0)),
                        Effects::none(),
                    )),
                    process(2, id, vec![increment(1)]),
                    replied(2, s_gcounter(1), changed(gcounter(1))),
                    pushed(1, s_gcounter(1), Effects::none(), false),
                    process(3, id, vec![increment(2)]),
                    replied(3, s_gcounter(3), changed(gcounter(2))),
                    pushed(1, s_gcounter(3), Effects::none(), true),
                    process(4, id, vec![increment(3)]),
                    replied(4, s_gcounter(6), changed(gcounter(3))),
                ]]
            },
        ),
        ("streamed responses with cancellation", "PNCounter", |id| {
            vec![vec![
                init(id, None),
                streamed_command(
                    1,
                    id,
                    StreamedRequest {
                        cancel_update: Some(the_update(change(-42))),
                        ..streamed_request(id)
                    },
                ),
                Step::Expect(msg::reply_streamed(
                    1,
                    &response(s_pncounter(0)),
                    Effects::none(),
                )),
                process(2, id, vec![change(10)]),
                replied(2, s_pncounter(10), changed(pncounter(10))),
                pushed(1, s_pncounter(10), Effects::none(), false),
                process(3, id, vec![change(20)]),
                replied(3, s_pncounter(30), changed(pncounter(20))),
                pushed(1, s_pncounter(30), Effects::none(), false),
                Step::Send(msg::stream_cancelled(1, id)),
                Step::Expect(msg::cancelled(1, changed(pncounter(-42)))),
                process(4, id, vec![]),
                replied(4, s_pncounter(-12), Effects::none()),
                process(5, id, vec![change(30)]),
                replied(5, s_pncounter(18), changed(pncounter(30))),
            ]]
        }),
        (
            "empty streamed responses with cancellation",
            "PNCounter",
            |id| {
                vec![vec![
                    init(id, None),
                    process(1, id, vec![change(10)]),
                    replied(1, s_pncounter(10), changed(pncounter(10))),
                    streamed_command(
                        2,
                        id,
                        StreamedRequest {
                            cancel_update: Some(the_update(change(-42))),
                            empty: true,
                            ..streamed_request(id)
                        },
                    ),
                    Step::Expect(msg::reply_without_action(2, Effects::none(), true)),
                    Step::Send(msg::stream_cancelled(2, id)),
                    Step::Expect(msg::cancelled(2, changed(pncounter(-42)))),
                    process(3, id, vec![]),
                    replied(3, s_pncounter(-32), Effects::none()),
                ]]
            },
        ),
        ("streamed responses with side effects", "GSet", |id| {
            let pushed_effects = || effects(&["one"], false).and(effects(&["two"], true));
            vec![vec![
                init(id, None),
                streamed_command(
                    1,
                    id,
                    StreamedRequest {
                        effects: vec![
                            Effect {
                                id: "one".into(),
                                synchronous: false,
                            },
                            Effect {
                                id: "two".into(),
                                synchronous: true,
                            },
                        ],
                        ..streamed_request(id)
                    },
                ),
                Step::Expect(msg::reply_streamed(
                    1,
                    &response(s_gset(&[])),
                    Effects::none(),
                )),
                process(2, id, vec![gset_add("a")]),
                replied(2, s_gset(&["a"]), changed(gset(&["a"]))),
                pushed(1, s_gset(&["a"]), pushed_effects(), false),
                process(3, id, vec![gset_add("b")]),
                replied(3, s_gset(&["a", "b"]), changed(gset(&["b"]))),
                pushed(1, s_gset(&["a", "b"]), pushed_effects(), false),
            ]]
        }),
        ("write consistency can be configured", "GCounter", |id| {
            let with = |by: u64, consistency: UpdateWriteConsistency| {
                let mut update = the_update(increment(by));
                update.write_consistency = consistency.into();
                action(request_action::Action::Update(update))
            };
            let written = |by: u64, consistency: CrdtWriteConsistency| {
                Effects::none().crdt_action(update_with(gcounter(by), consistency))
            };
            vec![vec![
                init(id, None),
                process(1, id, vec![with(1, UpdateWriteConsistency::Local)]),
                replied(1, s_gcounter(1), written(1, CrdtWriteConsistency::Local)),
                process(2, id, vec![with(2, UpdateWriteConsistency::Majority)]),
                replied(2, s_gcounter(3), written(2, CrdtWriteConsistency::Majority)),
                process(3, id, vec![with(3, UpdateWriteConsistency::All)]),
                replied(3, s_gcounter(6), written(3, CrdtWriteConsistency::All)),
            ]]
        }),
    ];
    for (name, prefix, script_of) in others {
        cases.push(model_case(
            number,
            format!("crdt model: verify {name}"),
            prefix,
            script_of,
        ));
        number += 1;
    }
    cases
}

fn streamed_request(id: &str) -> StreamedRequest {
    StreamedRequest {
        id: id.into(),
        ..StreamedRequest::default()
    }
}

fn streamed_command(n: i64, id: &str, request: StreamedRequest) -> Step {
    Step::Send(msg::command(n, id, "ProcessStreamed", &request, true))
}

fn pushed(n: i64, state: State, effects: Effects, end_stream: bool) -> Step {
    Step::Expect(msg::streamed(n, &response(state), effects, end_stream))
}

async fn discovery(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, SERVICES)?;
    for service in SERVICES {
        ensure_eq(
            &ctx.entity(service)?.entity_type.as_str(),
            &cloudstate_protocol::entity_type::CRDT,
            &format!("entity type of {service}"),
        )?;
    }
    Ok(())
}

async fn configured(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, CONFIGURED)?;
    let entity = ctx.entity(CRDT_CONFIGURED)?;
    ensure_eq(
        &entity.entity_type.as_str(),
        &cloudstate_protocol::entity_type::CRDT,
        "entity type",
    )?;
    ensure_eq(
        &entity.passivation_strategy,
        &Some(timeout_strategy(100)),
        "passivation strategy",
    )
}

/// The cases of `verifyCrdtEntityProxy`.
pub(super) fn proxy_cases() -> Vec<Case> {
    vec![
        Case::proxy("crdt proxy: verify state changes", |ctx| {
            Box::pin(state_changes(ctx))
        })
        .original("CrdtEntityTCK 83")
        .requires(SERVICES),
        Case::proxy("crdt proxy: verify forwards and side effects", |ctx| {
            Box::pin(forwards_and_side_effects(ctx))
        })
        .original("CrdtEntityTCK 84")
        .requires(SERVICES),
        Case::proxy("crdt proxy: verify failures", |ctx| Box::pin(failures(ctx)))
            .original("CrdtEntityTCK 85")
            .requires(SERVICES),
        Case::proxy(
            "crdt proxy: verify streamed responses for connection tracking",
            |ctx| Box::pin(connection_tracking(ctx)),
        )
        .original("CrdtEntityTCK 86")
        .requires(SERVICES),
        Case::proxy("crdt proxy: verify HTTP API", |ctx| Box::pin(http_api(ctx)))
            .original("CrdtEntityTCK 87")
            .requires(SERVICES),
        Case::proxy("crdt proxy: verify passivation timeout", |ctx| {
            Box::pin(passivation(ctx))
        })
        .original("CrdtEntityTCK 88")
        .requires(CONFIGURED),
    ]
}

fn client(ctx: &Ctx) -> Result<CrdtTckModelClient<tonic::transport::Channel>, Error> {
    Ok(CrdtTckModelClient::new(ctx.proxy()?.channel.clone()))
}

/// Calls `Process` through the proxy and expects `state` back.
async fn call(ctx: &Ctx, request: Request, state: State) -> CaseResult {
    let reply = client(ctx)?.process(request).await.check("Process")?;
    ensure_eq(reply.get_ref(), &response(state), "reply")
}

/// Expects the next message from the user function on `stream` to be `expected` (deltas
/// compared sorted).
async fn expect_out(stream: &CrdtStream, expected: CrdtStreamOut) -> CaseResult {
    let seen = normalized(stream.out_message().await?);
    ensure_eq(
        &seen,
        &normalized(expected),
        &format!("stream #{}: from the user function", stream.id),
    )
}

fn command(n: i64, id: &str, actions: Vec<RequestAction>) -> CrdtStreamIn {
    msg::command(n, id, "Process", &request(id, actions), false)
}

async fn state_changes(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("PNCounter");
    call(ctx, request(&id, vec![]), s_pncounter(0)).await?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream.expect_in(msg::init(CRDT, &id, None)).await?;
    stream.expect_in(command(1, &id, vec![])).await?;
    expect_out(
        &stream,
        msg::reply(1, &response(s_pncounter(0)), Effects::none()),
    )
    .await?;

    let steps = [
        (vec![change(1), change(-2), change(3)], 2, 2),
        (vec![change(4), change(-5), change(6)], 7, 5),
    ];
    for ((actions, state, delta), n) in steps.into_iter().zip(2..) {
        call(ctx, request(&id, actions.clone()), s_pncounter(state)).await?;
        stream.expect_in(command(n, &id, actions)).await?;
        expect_out(
            &stream,
            msg::reply(n, &response(s_pncounter(state)), changed(pncounter(delta))),
        )
        .await?;
    }

    call(ctx, request(&id, vec![delete()]), s_pncounter(7)).await?;
    stream.expect_in(command(4, &id, vec![delete()])).await?;
    expect_out(&stream, msg::reply(4, &response(s_pncounter(7)), deleted())).await?;
    stream.expect_closed(Duration::from_secs(3)).await
}

async fn forwards_and_side_effects(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("GSet");
    call(ctx, request(&id, vec![gset_add("one")]), s_gset(&["one"])).await?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream.expect_in(msg::init(CRDT, &id, None)).await?;
    stream
        .expect_in(command(1, &id, vec![gset_add("one")]))
        .await?;
    expect_out(
        &stream,
        msg::reply(1, &response(s_gset(&["one"])), changed(gset(&["one"]))),
    )
    .await?;

    let reply = client(ctx)?
        .process(request(&id, vec![forward_to(&id)]))
        .await
        .check("Process")?;
    ensure_eq(reply.get_ref(), &Response::default(), "forwarded reply")?;
    stream
        .expect_in(command(2, &id, vec![forward_to(&id)]))
        .await?;
    expect_out(
        &stream,
        msg::forward(2, CRDT_TWO, "Call", &request(&id, vec![]), Effects::none()),
    )
    .await?;
    let two = ctx.relay()?.expect_crdt().await?;
    two.expect_in(msg::init(CRDT_TWO, &id, None)).await?;
    two.expect_in(msg::command(1, &id, "Call", &request(&id, vec![]), false))
        .await?;
    expect_out(&two, msg::reply(1, &Response::default(), Effects::none())).await?;

    call(
        ctx,
        request(&id, vec![effect(&id, false)]),
        s_gset(&["one"]),
    )
    .await?;
    stream
        .expect_in(command(3, &id, vec![effect(&id, false)]))
        .await?;
    expect_out(
        &stream,
        msg::reply(3, &response(s_gset(&["one"])), effects(&[&id], false)),
    )
    .await?;
    two.expect_in(msg::command(2, &id, "Call", &request(&id, vec![]), false))
        .await?;
    expect_out(&two, msg::reply(2, &Response::default(), Effects::none())).await?;

    call(ctx, request(&id, vec![delete()]), s_gset(&["one"])).await?;
    stream.expect_in(command(4, &id, vec![delete()])).await?;
    expect_out(
        &stream,
        msg::reply(4, &response(s_gset(&["one"])), deleted()),
    )
    .await?;
    stream.expect_closed(Duration::from_secs(3)).await?;

    let mut two_client = CrdtTwoClient::new(ctx.proxy()?.channel.clone());
    let reply = two_client
        .call(request(&id, vec![delete()]))
        .await
        .check("Call")?;
    ensure_eq(reply.get_ref(), &Response::default(), "reply of CrdtTwo")?;
    two.expect_in(msg::command(
        3,
        &id,
        "Call",
        &request(&id, vec![delete()]),
        false,
    ))
    .await?;
    expect_out(&two, msg::reply(3, &Response::default(), deleted())).await?;
    two.expect_closed(Duration::from_secs(3)).await
}

async fn failures(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("GCounter");
    call(ctx, request(&id, vec![increment(42)]), s_gcounter(42)).await?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream.expect_in(msg::init(CRDT, &id, None)).await?;
    stream
        .expect_in(command(1, &id, vec![increment(42)]))
        .await?;
    expect_out(
        &stream,
        msg::reply(1, &response(s_gcounter(42)), changed(gcounter(42))),
    )
    .await?;

    let failing = vec![fail_with("expected failure")];
    match client(ctx)?.process(request(&id, failing.clone())).await {
        Ok(reply) => {
            return Err(Error::Check(format!(
                "expected a failure, got {:?}",
                reply.get_ref()
            )));
        }
        Err(status) => ensure_eq(
            &status.message(),
            &"expected failure",
            "failure description",
        )?,
    }
    stream.expect_in(command(2, &id, failing)).await?;
    expect_out(&stream, msg::failure(2, "expected failure")).await?;

    call(ctx, request(&id, vec![delete()]), s_gcounter(42)).await?;
    stream.expect_in(command(3, &id, vec![delete()])).await?;
    expect_out(&stream, msg::reply(3, &response(s_gcounter(42)), deleted())).await?;
    stream.expect_closed(Duration::from_secs(3)).await
}

async fn connection_tracking(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("Vote");
    let state0 = || response(s_vote(false, 0, 1));
    let state1 = || response(s_vote(true, 1, 1));
    let monitor_request = streamed_request(&id);
    let mut monitor = client(ctx)?
        .process_streamed(monitor_request.clone())
        .await
        .check("ProcessStreamed (monitor)")?
        .into_inner();
    ensure_eq(
        &next_message(&mut monitor).await?,
        &state0(),
        "the monitor's first message",
    )?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream.expect_in(msg::init(CRDT, &id, None)).await?;
    stream
        .expect_in(msg::command(
            1,
            &id,
            "ProcessStreamed",
            &monitor_request,
            true,
        ))
        .await?;
    expect_out(&stream, msg::reply_streamed(1, &state0(), Effects::none())).await?;

    let connect_request = StreamedRequest {
        initial_update: Some(the_update(self_vote(true))),
        cancel_update: Some(the_update(self_vote(false))),
        empty: true,
        ..streamed_request(&id)
    };
    let mut connect = client(ctx)?
        .process_streamed(connect_request.clone())
        .await
        .check("ProcessStreamed (connect)")?
        .into_inner();
    ensure_eq(
        &next_message(&mut monitor).await?,
        &state1(),
        "the monitor after the vote",
    )?;
    let nothing = tokio::time::timeout(Duration::from_millis(100), connect.next()).await;
    ensure(nothing.is_err(), || {
        format!("the empty stream received {nothing:?}")
    })?;
    stream
        .expect_in(msg::command(
            2,
            &id,
            "ProcessStreamed",
            &connect_request,
            true,
        ))
        .await?;
    expect_out(
        &stream,
        msg::reply_without_action(2, changed(vote(true, 0, 0)), true),
    )
    .await?;
    expect_out(&stream, msg::streamed(1, &state1(), Effects::none(), false)).await?;

    drop(connect);
    ensure_eq(
        &next_message(&mut monitor).await?,
        &state0(),
        "the monitor after the cancellation",
    )?;
    stream.expect_in(msg::stream_cancelled(2, &id)).await?;
    expect_out(&stream, msg::cancelled(2, changed(vote(false, 0, 0)))).await?;
    expect_out(&stream, msg::streamed(1, &state0(), Effects::none(), false)).await?;

    drop(monitor);
    stream.expect_in(msg::stream_cancelled(1, &id)).await?;
    expect_out(&stream, msg::cancelled(1, Effects::none())).await?;

    call(ctx, request(&id, vec![delete()]), s_vote(false, 0, 1)).await?;
    stream.expect_in(command(3, &id, vec![delete()])).await?;
    expect_out(&stream, msg::reply(3, &state0(), deleted())).await?;
    stream.expect_closed(Duration::from_secs(3)).await
}

/// The next message of a streamed call, within the patience.
async fn next_message(stream: &mut tonic::Streaming<Response>) -> Result<Response, Error> {
    match tokio::time::timeout(crate::relay::PATIENCE, stream.message()).await {
        Err(_) => Err(Error::Check(
            "no streamed message within the patience".into(),
        )),
        Ok(Err(status)) => Err(Error::Check(format!("the streamed call failed: {status}"))),
        Ok(Ok(None)) => Err(Error::Check("the streamed call ended".into())),
        Ok(Ok(Some(message))) => Ok(message),
    }
}

async fn http_api(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("PNCounter");
    let address = ctx.proxy()?.address;
    let path = format!("/tck/model/crdt/{id}");
    let expect_ok = |reply: http::HttpReply, body: &str| {
        ensure_eq(&reply.status, &200, "HTTP status")?;
        ensure_eq(&reply.body.as_str(), &body, "body")
    };
    expect_ok(
        http::post_json(address, &path, "{}").await?,
        r#"{"state":{"pncounter":{"value":"0"}}}"#,
    )?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream.expect_in(msg::init(CRDT, &id, None)).await?;
    stream.expect_in(command(1, &id, vec![])).await?;
    expect_out(
        &stream,
        msg::reply(1, &response(s_pncounter(0)), Effects::none()),
    )
    .await?;

    let two_path = format!("/{CRDT_TWO}/Call");
    expect_ok(
        http::post_json(address, &two_path, &format!(r#"{{"id": "{id}"}}"#)).await?,
        "{}",
    )?;
    let two = ctx.relay()?.expect_crdt().await?;
    two.expect_in(msg::init(CRDT_TWO, &id, None)).await?;
    two.expect_in(msg::command(1, &id, "Call", &request(&id, vec![]), false))
        .await?;
    expect_out(&two, msg::reply(1, &Response::default(), Effects::none())).await?;

    let body = r#"{"actions": [{"update": {"pncounter": {"change": 42} }}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"state":{"pncounter":{"value":"42"}}}"#,
    )?;
    stream.expect_in(command(2, &id, vec![change(42)])).await?;
    expect_out(
        &stream,
        msg::reply(2, &response(s_pncounter(42)), changed(pncounter(42))),
    )
    .await?;

    let body = r#"{"actions": [{"fail": {"message": "expected failure"}}]}"#;
    super::action::expect_http_failure(
        &http::post_json(address, &path, body).await?,
        "expected failure",
    )?;
    stream
        .expect_in(command(3, &id, vec![fail_with("expected failure")]))
        .await?;
    expect_out(&stream, msg::failure(3, "expected failure")).await?;

    let body = r#"{"actions": [{"update": {"pncounter": {"change": -123} }}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"state":{"pncounter":{"value":"-81"}}}"#,
    )?;
    stream
        .expect_in(command(4, &id, vec![change(-123)]))
        .await?;
    expect_out(
        &stream,
        msg::reply(4, &response(s_pncounter(-81)), changed(pncounter(-123))),
    )
    .await?;

    let body = r#"{"actions": [{"delete": {}}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"state":{"pncounter":{"value":"-81"}}}"#,
    )?;
    stream.expect_in(command(5, &id, vec![delete()])).await?;
    expect_out(
        &stream,
        msg::reply(5, &response(s_pncounter(-81)), deleted()),
    )
    .await?;
    stream.expect_closed(Duration::from_secs(3)).await
}

async fn passivation(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("Configured");
    let mut client = CrdtConfiguredClient::new(ctx.proxy()?.channel.clone());
    client.call(request(&id, vec![])).await.check("Call")?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream
        .expect_in(msg::init(CRDT_CONFIGURED, &id, None))
        .await?;
    stream
        .expect_in(msg::command(1, &id, "Call", &request(&id, vec![]), false))
        .await?;
    expect_out(
        &stream,
        msg::reply(1, &Response::default(), Effects::none()),
    )
    .await?;
    // Passivation after 100 ms of idleness: the proxy closes the stream.
    stream.expect_closed(Duration::from_secs(2)).await
}
