//! A CRDT entity for the crate's tests, modelled on the TCK's: its commands apply a list of
//! operations written as text (`request.values`) to the entity's CRDT, whatever its type, and
//! reply the state as text.
//!
//! Operations (`N` a number, `x` a string element, key or value):
//!
//! - `gcounter+N`, `pncounter+N`, `pncounter-N`; `gset+x`; `orset+x`, `orset-x`, `orset!` (clear);
//!   `lww=x`, `lww=x@reverse`, `lww=x@custom:N`, `lww=x@auto:N`; `flag`; `vote:y`, `vote:n`;
//! - `map:k:<op>`: `<op>` on the value of key `k` (added if missing, of the op's type), `<op>`
//!   being any of the above or, one level down, `map:...`, `map-k`, `map!`;
//! - `map-k` (remove key `k`), `map!` (clear);
//! - `delete`, `fail`, `panic`, `effect:x`, `sync:x` (side effects), `forward:x`, `majority`,
//!   `all` (write consistency).
//!
//! State text: counters as numbers, sets as `{a,b}`, registers as their value (`-` unwritten),
//! flags `on`/`off`, votes `self/for/total` (`y/1/2`), maps as `{k=value,...}`, no state `none`.

use cloudstate_crdt::View;

use crate::crdt::CrdtCommands;
use crate::crdt::{
    Clock, Crdt, CrdtContext, Flag, GCounter, GSet, LwwRegister, OrMap, OrSet, PnCounter,
    StreamedContext, Vote,
};
use crate::test_entity::{Request, State, call};
use crate::{CrdtEntityService, Failure, Reply};

pub(crate) const CRDT_SERVICE: &str = "test.model.CrdtModel";

/// The registration of the CRDT entity the tests use.
pub(crate) fn crdt_model() -> CrdtEntityService<CrdtModel> {
    CrdtEntityService::new(CRDT_SERVICE, CrdtModel::commands).persistence_id("crdts")
}

/// The entity: it counts the commands it ran (local state, not replicated).
#[derive(Debug, Default)]
pub(crate) struct CrdtModel {
    commands: u32,
}

impl CrdtModel {
    pub(crate) fn commands(commands: &mut CrdtCommands<Self>) {
        commands
            .add("Process", Self::process)
            .streamed("Watch", Self::watch);
    }
}

impl CrdtModel {
    fn process(
        &mut self,
        request: Request,
        ctx: &mut CrdtContext,
    ) -> Result<Reply<State>, Failure> {
        self.commands += 1;
        let mut forward = None;
        for op in &request.values {
            if let Some(target) = op.strip_prefix("forward:") {
                forward = Some(target.to_owned());
            } else {
                apply(ctx, op)?;
            }
        }
        Ok(match forward {
            Some(target) => Reply::forward(call("test.model.Two", "Call", &request_of(&target))),
            None => Reply::Message(State {
                value: render(ctx.view()),
            }),
        })
    }

    /// Options: `initial:<op>` (applied now), `cancel:<op>` (applied by the on-cancel
    /// callback), `empty` (no first message), `quiet` (no callbacks), `end:<state>` (end the
    /// stream at that state), `fail:<state>` and `panic:<state>` (fail or panic at that
    /// state), `effect:x` (a side effect with each message), `count` (reply the commands run).
    fn watch(
        &mut self,
        request: Request,
        ctx: &mut StreamedContext<Self, State>,
    ) -> Result<Reply<State>, Failure> {
        self.commands += 1;
        let option = |name: &str| {
            request
                .values
                .iter()
                .find_map(|value| value.strip_prefix(name).map(str::to_owned))
        };
        for value in &request.values {
            if let Some(op) = value.strip_prefix("initial:") {
                apply(ctx, op)?;
            }
        }
        if option("quiet").is_none() {
            let (end, fail, panic, effect, count) = (
                option("end:"),
                option("fail:"),
                option("panic:"),
                option("effect:"),
                option("count").is_some(),
            );
            ctx.on_change(move |model: &mut CrdtModel, change| {
                let state = render(change.view());
                if Some(&state) == fail.as_ref() {
                    return Err(Failure::new(format!("failed at {state}")));
                }
                assert!(
                    Some(&state) != panic.as_ref(),
                    "on change panics at {state}"
                );
                if let Some(effect) = &effect {
                    change.side_effect(call(CRDT_SERVICE, "Process", &request_of(effect)));
                }
                if Some(&state) == end.as_ref() {
                    change.end_stream();
                }
                let value = if count {
                    format!("{state}#{}", model.commands)
                } else {
                    state
                };
                Ok(Reply::Message(State { value }))
            });
            if let Some(op) = option("cancel:") {
                ctx.on_cancel(move |_: &mut CrdtModel, ctx| {
                    ctx.side_effect(
                        call(CRDT_SERVICE, "Process", &request_of("cancelled")).synchronous(),
                    );
                    if let Err(failure) = apply(ctx, &op) {
                        panic!("cancel op failed: {failure}");
                    }
                });
            }
        }
        if option("empty").is_some() {
            return Ok(Reply::NoReply);
        }
        Ok(Reply::Message(State {
            value: render(ctx.view()),
        }))
    }
}

fn request_of(value: &str) -> Request {
    Request {
        id: value.into(),
        values: Vec::new(),
    }
}

/// Where an operation applies: the entity's state, or a map's value.
trait Place {
    /// Runs `f` on the value as a `T`, created if missing.
    fn with<T: Crdt, R>(&mut self, f: impl FnOnce(T::Handle<'_>) -> R) -> Result<R, Failure>;
}

impl Place for CrdtContext {
    fn with<T: Crdt, R>(&mut self, f: impl FnOnce(T::Handle<'_>) -> R) -> Result<R, Failure> {
        Ok(f(self.state_or_create::<T>()?))
    }
}

/// The value of `key` in the map at `parent`.
struct Entry<'p, P> {
    parent: &'p mut P,
    key: String,
}

impl<P: Place> Place for Entry<'_, P> {
    fn with<T: Crdt, R>(&mut self, f: impl FnOnce(T::Handle<'_>) -> R) -> Result<R, Failure> {
        let key = self.key.as_str();
        self.parent
            .with::<OrMap<String, T>, _>(|mut map| map.get_or_create(key).map(f))?
    }
}

fn bad(op: &str) -> Failure {
    Failure::new(format!("bad op {op}"))
}

fn number<T: std::str::FromStr>(text: &str, op: &str) -> Result<T, Failure> {
    text.parse().map_err(|_| bad(op))
}

/// Applies one operation at the entity's state (every kind of operation).
fn apply(ctx: &mut CrdtContext, op: &str) -> Result<(), Failure> {
    match op {
        "delete" => ctx.delete_state(),
        "fail" => return Err(Failure::new("expected failure").with_code(tonic::Code::Aborted)),
        "panic" => panic!("handler bug"),
        "majority" => ctx.set_write_consistency(crate::WriteConsistency::Majority),
        "all" => ctx.set_write_consistency(crate::WriteConsistency::All),
        _ => {
            if let Some(target) = op.strip_prefix("effect:") {
                ctx.side_effect(call(CRDT_SERVICE, "Process", &request_of(target)));
            } else if let Some(target) = op.strip_prefix("sync:") {
                ctx.side_effect(call(CRDT_SERVICE, "Process", &request_of(target)).synchronous());
            } else {
                apply_map(ctx, op)?;
            }
        }
    }
    Ok(())
}

/// Applies a map operation (`map...`, one level of nested maps included) or a leaf operation.
fn apply_map<P: Place>(place: &mut P, op: &str) -> Result<(), Failure> {
    match map_op(place, op)? {
        MapOp::Done => Ok(()),
        MapOp::NotMap => apply_leaf(place, op),
        MapOp::At(mut entry, inner) => match map_op(&mut entry, inner)? {
            MapOp::Done => Ok(()),
            MapOp::NotMap => apply_leaf(&mut entry, inner),
            MapOp::At(mut entry, inner) => apply_leaf(&mut entry, inner),
        },
    }
}

/// What a map operation left to do.
enum MapOp<'p, 'o, P> {
    /// It was `map!` or `map-k`, applied.
    Done,
    /// It is not a map operation.
    NotMap,
    /// It is `map:k:<inner>`: `<inner>` at the entry.
    At(Entry<'p, P>, &'o str),
}

fn map_op<'p, 'o, P: Place>(place: &'p mut P, op: &'o str) -> Result<MapOp<'p, 'o, P>, Failure> {
    if op == "map!" {
        place.with::<OrMap<String, GCounter>, _>(|mut map| map.clear())?;
        return Ok(MapOp::Done);
    }
    if let Some(key) = op.strip_prefix("map-") {
        place.with::<OrMap<String, GCounter>, _>(|mut map| map.remove(key))?;
        return Ok(MapOp::Done);
    }
    let Some(rest) = op.strip_prefix("map:") else {
        return Ok(MapOp::NotMap);
    };
    let (key, inner) = rest.split_once(':').ok_or_else(|| bad(op))?;
    let entry = Entry {
        parent: place,
        key: key.to_owned(),
    };
    Ok(MapOp::At(entry, inner))
}

/// Applies an operation on one of the non-map types.
fn apply_leaf<P: Place>(place: &mut P, op: &str) -> Result<(), Failure> {
    if let Some(n) = op.strip_prefix("gcounter+") {
        let n = number(n, op)?;
        return place.with::<GCounter, _>(|mut counter| {
            counter.increment(n);
        });
    }
    if let Some(n) = op.strip_prefix("pncounter") {
        let n: i64 = number(n.trim_start_matches('+'), op)?;
        return place.with::<PnCounter, _>(|mut counter| {
            counter.increment(n);
        });
    }
    if let Some(x) = op.strip_prefix("gset+") {
        return place.with::<GSet<String>, _>(|mut set| {
            set.add(x);
        });
    }
    if let Some(x) = op.strip_prefix("orset+") {
        return place.with::<OrSet<String>, _>(|mut set| {
            set.add(x);
        });
    }
    if let Some(x) = op.strip_prefix("orset-") {
        return place.with::<OrSet<String>, _>(|mut set| {
            set.remove(x);
        });
    }
    if op == "orset!" {
        return place.with::<OrSet<String>, _>(|mut set| set.clear());
    }
    if let Some(write) = op.strip_prefix("lww=") {
        let (value, clock) = match write.split_once('@') {
            None => (write, Clock::Default),
            Some((value, "reverse")) => (value, Clock::Reverse),
            Some((value, clock)) => match clock.split_once(':') {
                Some(("custom", n)) => (value, Clock::Custom(number(n, op)?)),
                Some(("auto", n)) => (value, Clock::CustomAutoIncrement(number(n, op)?)),
                _ => return Err(bad(op)),
            },
        };
        return place.with::<LwwRegister<String>, _>(|mut register| {
            register.set_with_clock(value, clock);
        });
    }
    match op {
        "flag" => place.with::<Flag, _>(|mut flag| flag.enable()),
        "vote:y" => place.with::<Vote, _>(|mut vote| vote.vote(true)),
        "vote:n" => place.with::<Vote, _>(|mut vote| vote.vote(false)),
        _ => Err(bad(op)),
    }
}

/// The state as text; `none` without state.
pub(crate) fn render(view: Option<&View>) -> String {
    view.map_or_else(|| "none".to_owned(), render_view)
}

fn text(any: &cloudstate_protocol::Any) -> String {
    use crate::crdt::FromAny;
    String::from_any(any).unwrap_or_else(|_| format!("?{}", any.type_url))
}

fn render_set(elements: &std::collections::HashSet<cloudstate_protocol::Any>) -> String {
    let mut elements: Vec<String> = elements.iter().map(text).collect();
    elements.sort();
    format!("{{{}}}", elements.join(","))
}

fn render_view(view: &View) -> String {
    match view {
        View::GCounter(value) => value.to_string(),
        View::PNCounter(value) => value.to_string(),
        View::GSet(elements) | View::ORSet(elements) => render_set(elements),
        View::LWWRegister(value) if value.type_url.is_empty() => "-".to_owned(),
        View::LWWRegister(value) => text(value),
        View::Flag(enabled) => if *enabled { "on" } else { "off" }.to_owned(),
        View::ORMap(entries) => {
            let mut entries: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{}={}", text(key), render_view(value)))
                .collect();
            entries.sort();
            format!("{{{}}}", entries.join(","))
        }
        View::Vote(tally) => format!(
            "{}/{}/{}",
            if tally.self_vote { "y" } else { "n" },
            tally.votes_for,
            tally.total_voters
        ),
    }
}
