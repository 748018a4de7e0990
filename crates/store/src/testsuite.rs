//! The storage test suite every [`Store`] backend passes (feature `testsuite`).
//!
//! Each guarantee of the crate docs is one `pub async fn` check taking a fresh store;
//! [`store_test_suite!`](crate::store_test_suite) stamps them all out as `#[test]`s:
//!
//! ```no_run
//! cloudstate_store::store_test_suite!(memory, async { cloudstate_store::MemoryStore::new() });
//! ```
//!
//! The expression builds a fresh store for every test and may evaluate to the store itself or
//! to `(store, guard)`, where `guard` (a temporary directory, a database server, ...) is kept
//! until the store has been dropped. Each test runs on its own multi-threaded tokio runtime and
//! fails if it takes longer than [`TEST_TIMEOUT`], so a backend that hangs fails instead of
//! stalling the run.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::Barrier;

use crate::{
    Any, EntityKey, EntitySummary, Event, Fence, Inspect, LoggedEvent, Position, Recovery,
    ShardLeases, Snapshot, Store, StoreError, StoredEntity, Value, ValueWrite,
};

/// How long one check may run before it counts as hung.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A store under test, and what must outlive it.
pub struct Subject {
    // Declared before `_guard` so the store is dropped (and closed) before its guard goes away.
    store: Arc<dyn Store>,
    inspect: Arc<dyn Inspect>,
    _guard: Box<dyn Send>,
}

impl<S: Store + Inspect> From<S> for Subject {
    fn from(store: S) -> Self {
        let store = Arc::new(store);
        Subject {
            store: store.clone(),
            inspect: store,
            _guard: Box::new(()),
        }
    }
}

impl<S: Store + Inspect, G: Send + 'static> From<(S, G)> for Subject {
    fn from((store, guard): (S, G)) -> Self {
        let store = Arc::new(store);
        Subject {
            store: store.clone(),
            inspect: store,
            _guard: Box::new(guard),
        }
    }
}

/// Builds a store with `make` and runs `check` on it, on a fresh multi-threaded runtime, within
/// [`TEST_TIMEOUT`]. Panics (failing the test) if the check fails or times out.
pub fn run<M, T, C, F>(make: M, check: C)
where
    M: Future<Output = T>,
    T: Into<Subject>,
    C: FnOnce(Arc<dyn Store>) -> F,
    F: Future<Output = ()>,
{
    run_on(make, |subject| check(subject.store.clone()));
}

/// Like [`run`], for checks of the store's [`Inspect`] listings: they get the store to write
/// with and the same store to inspect with.
pub fn run_inspection<M, T, C, F>(make: M, check: C)
where
    M: Future<Output = T>,
    T: Into<Subject>,
    C: FnOnce(Arc<dyn Store>, Arc<dyn Inspect>) -> F,
    F: Future<Output = ()>,
{
    run_on(make, |subject| {
        check(subject.store.clone(), subject.inspect.clone())
    });
}

fn run_on<M, T, C, F>(make: M, check: C)
where
    M: Future<Output = T>,
    T: Into<Subject>,
    C: FnOnce(&Subject) -> F,
    F: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime for the store test");
    runtime.block_on(async {
        let subject: Subject = make.await.into();
        tokio::time::timeout(TEST_TIMEOUT, check(&subject))
            .await
            .expect("the store test timed out");
        drop(subject);
    });
}

/// Stamps out the whole suite as `#[test]` functions in a module named `$name`, each running
/// its check against a fresh store built by the async expression `$make` (see the
/// [module docs](crate::testsuite)).
#[macro_export]
macro_rules! store_test_suite {
    ($name:ident, $make:expr) => {
        $crate::store_test_suite!(@tests $name, $make, [
            empty_load,
            append_round_trip,
            append_with_snapshot,
            snapshot_replaces_earlier_snapshot,
            empty_append_is_a_no_op,
            append_at_existing_sequence_nr_conflicts,
            append_leaving_a_gap_conflicts,
            non_consecutive_append_is_invalid,
            snapshot_beyond_events_is_invalid,
            appends_are_atomic_for_readers,
            entities_are_isolated,
            concurrent_entities_all_land,
            racing_appenders_never_fork,
            value_lifecycle,
            value_round_trip,
            stale_value_write_changes_nothing,
            values_and_journals_are_separate,
            racing_value_writers_one_wins,
            concurrent_value_increments_lose_nothing,
            ping,
            event_log_follows_appends,
            event_log_has_no_gaps_under_concurrent_appends,
            event_log_watch_wakes_readers,
            offset_lease_is_exclusive_and_keeps_the_position,
            leases_have_one_holder_and_growing_epochs,
            an_expired_lease_is_taken_over,
            fenced_writes_need_the_current_lease,
            a_replaced_owner_never_writes_again,
            the_shard_count_is_fixed_while_leases_are_held,
        ], [
            inspection_lists_entities_and_reads_them_whole,
            inspection_of_unknown_entities_is_empty,
        ]);
    };
    (@tests $name:ident, $make:expr, [$($check:ident),* $(,)?], [$($inspection:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $check() {
                    $crate::testsuite::run($make, $crate::testsuite::$check);
                }
            )*
            $(
                #[test]
                fn $inspection() {
                    $crate::testsuite::run_inspection($make, $crate::testsuite::$inspection);
                }
            )*
        }
    };
}

fn key(persistence_id: &str, entity_id: &str) -> EntityKey {
    EntityKey::new(persistence_id, entity_id)
}

fn any(type_url: &str, value: impl Into<Bytes>) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: value.into(),
    }
}

fn event(sequence_nr: u64, label: &str) -> Event {
    Event {
        sequence_nr,
        payload: any(
            "type.googleapis.com/test.Event",
            format!("{label}#{sequence_nr}"),
        ),
    }
}

fn events(range: std::ops::RangeInclusive<u64>, label: &str) -> Vec<Event> {
    range.map(|sequence_nr| event(sequence_nr, label)).collect()
}

fn snapshot(sequence_nr: u64, label: &str) -> Snapshot {
    Snapshot {
        sequence_nr,
        payload: any(
            "type.googleapis.com/test.State",
            format!("{label}@{sequence_nr}"),
        ),
    }
}

/// Payloads that a careless encoding would mangle: empty, binary, non-UTF-8, separators, large.
fn awkward_payloads() -> Vec<Any> {
    vec![
        any("", Bytes::new()),
        any("type.googleapis.com/google.protobuf.Empty", Bytes::new()),
        any("p.cloudstate.io/bytes", vec![0u8, 1, 0, 255, 254, 0]),
        any("json.cloudstate.io/ünïcödé|type", "{\"a\":\"|\\u0000\"}"),
        any("type.googleapis.com/x", (0..=255u8).collect::<Vec<_>>()),
        any(
            &format!("type.googleapis.com/{}", "long.".repeat(200)),
            vec![0xAB; 256 * 1024],
        ),
    ]
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_key: &EntityKey) {
    match result {
        Err(StoreError::Conflict { key, .. }) => assert_eq!(&key, expected_key),
        other => panic!("expected a conflict on {expected_key}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_key: &EntityKey) {
    match result {
        Err(StoreError::InvalidWrite { key, .. }) => assert_eq!(&key, expected_key),
        other => panic!("expected an invalid write on {expected_key}, got {other:?}"),
    }
}

/// An entity that was never written has no snapshot, no events and no value.
pub async fn empty_load(store: Arc<dyn Store>) {
    let key = key("empty", "nobody");
    assert_eq!(store.load_journal(&key).await.unwrap(), Recovery::default());
    assert_eq!(store.load_value(&key).await.unwrap(), None);
}

/// Appended events come back in order with type URLs and bytes exactly as written, across
/// several appends.
pub async fn append_round_trip(store: Arc<dyn Store>) {
    let key = key("journal", "round-trip");
    let written: Vec<Event> = awkward_payloads()
        .into_iter()
        .zip(1..)
        .map(|(payload, sequence_nr)| Event {
            sequence_nr,
            payload,
        })
        .collect();
    let (first, rest) = written.split_at(2);
    store.append(&key, first.to_vec(), None).await.unwrap();
    store.append(&key, rest.to_vec(), None).await.unwrap();
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.snapshot, None);
    assert_eq!(recovery.events, written);
    assert_eq!(recovery.last_sequence_nr(), written.len() as u64);
}

/// Events and a snapshot are stored together; recovery starts at the snapshot.
pub async fn append_with_snapshot(store: Arc<dyn Store>) {
    let key = key("journal", "with-snapshot");
    store
        .append(&key, events(1..=5, "a"), Some(snapshot(3, "a")))
        .await
        .unwrap();
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.snapshot, Some(snapshot(3, "a")));
    assert_eq!(recovery.events, events(4..=5, "a"));

    // A snapshot payload survives byte for byte, too.
    for (payload, sequence_nr) in awkward_payloads().into_iter().zip(6..) {
        let snapshot = Snapshot {
            sequence_nr,
            payload,
        };
        store
            .append(&key, vec![event(sequence_nr, "b")], Some(snapshot.clone()))
            .await
            .unwrap();
        let recovery = store.load_journal(&key).await.unwrap();
        assert_eq!(recovery.snapshot, Some(snapshot));
        assert_eq!(recovery.events, vec![]);
        assert_eq!(recovery.last_sequence_nr(), sequence_nr);
    }
}

/// A new snapshot replaces the earlier one, and only events after it are loaded.
pub async fn snapshot_replaces_earlier_snapshot(store: Arc<dyn Store>) {
    let key = key("journal", "snapshots");
    store
        .append(&key, events(1..=2, "a"), Some(snapshot(2, "first")))
        .await
        .unwrap();
    store.append(&key, events(3..=4, "a"), None).await.unwrap();
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.snapshot, Some(snapshot(2, "first")));
    assert_eq!(recovery.events, events(3..=4, "a"));

    store
        .append(&key, events(5..=7, "a"), Some(snapshot(6, "second")))
        .await
        .unwrap();
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.snapshot, Some(snapshot(6, "second")));
    assert_eq!(recovery.events, events(7..=7, "a"));
    assert_eq!(recovery.last_sequence_nr(), 7);
}

/// An append without events or snapshot succeeds and changes nothing.
pub async fn empty_append_is_a_no_op(store: Arc<dyn Store>) {
    let key = key("journal", "no-op");
    store.append(&key, vec![], None).await.unwrap();
    assert_eq!(store.load_journal(&key).await.unwrap(), Recovery::default());
    store.append(&key, events(1..=1, "a"), None).await.unwrap();
    store.append(&key, vec![], None).await.unwrap();
    assert_eq!(
        store.load_journal(&key).await.unwrap().events,
        events(1..=1, "a")
    );
}

/// An append that starts at a sequence number already stored is a conflict, and neither its
/// events nor its snapshot are written.
pub async fn append_at_existing_sequence_nr_conflicts(store: Arc<dyn Store>) {
    let key = key("journal", "fence");
    store.append(&key, events(1..=3, "a"), None).await.unwrap();
    let before = store.load_journal(&key).await.unwrap();
    for first in 1..=3 {
        assert_conflict(
            store
                .append(
                    &key,
                    events(first..=first + 2, "b"),
                    Some(snapshot(first, "b")),
                )
                .await,
            &key,
        );
        assert_eq!(store.load_journal(&key).await.unwrap(), before);
    }
    // The right sequence number still goes through afterwards.
    store.append(&key, events(4..=4, "a"), None).await.unwrap();
    assert_eq!(
        store.load_journal(&key).await.unwrap().events,
        events(1..=4, "a")
    );
}

/// An append that would leave a gap is a conflict (its writer has missed events), and writes
/// nothing.
pub async fn append_leaving_a_gap_conflicts(store: Arc<dyn Store>) {
    let key = key("journal", "gap");
    assert_conflict(store.append(&key, events(2..=3, "a"), None).await, &key);
    assert_eq!(store.load_journal(&key).await.unwrap(), Recovery::default());

    store.append(&key, events(1..=2, "a"), None).await.unwrap();
    assert_conflict(
        store
            .append(&key, events(4..=5, "b"), Some(snapshot(5, "b")))
            .await,
        &key,
    );
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.snapshot, None);
    assert_eq!(recovery.events, events(1..=2, "a"));
}

/// Events whose sequence numbers are not consecutive are rejected as invalid, and none of them
/// is written.
pub async fn non_consecutive_append_is_invalid(store: Arc<dyn Store>) {
    let key = key("journal", "holes");
    let malformed = [
        vec![event(1, "a"), event(3, "a")],
        vec![event(1, "a"), event(2, "a"), event(2, "a")],
        vec![event(1, "a"), event(2, "a"), event(1, "a")],
    ];
    for batch in malformed {
        assert_invalid(
            store.append(&key, batch, Some(snapshot(1, "a"))).await,
            &key,
        );
        assert_eq!(store.load_journal(&key).await.unwrap(), Recovery::default());
    }
    store.append(&key, events(1..=2, "a"), None).await.unwrap();
    assert_eq!(
        store.load_journal(&key).await.unwrap().events,
        events(1..=2, "a")
    );
}

/// A snapshot after the last event of its append, at sequence number 0, or without events is
/// rejected as invalid, and the events of that append are not written either.
pub async fn snapshot_beyond_events_is_invalid(store: Arc<dyn Store>) {
    let key = key("journal", "bad-snapshot");
    store.append(&key, events(1..=2, "a"), None).await.unwrap();
    let before = store.load_journal(&key).await.unwrap();
    assert_invalid(
        store
            .append(&key, events(3..=4, "b"), Some(snapshot(5, "b")))
            .await,
        &key,
    );
    assert_invalid(
        store
            .append(&key, events(3..=4, "b"), Some(snapshot(0, "b")))
            .await,
        &key,
    );
    assert_invalid(
        store.append(&key, vec![], Some(snapshot(2, "b"))).await,
        &key,
    );
    assert_eq!(store.load_journal(&key).await.unwrap(), before);
}

/// A reader running beside a writer only ever sees whole appends: never part of one, never a
/// snapshot without its events.
pub async fn appends_are_atomic_for_readers(store: Arc<dyn Store>) {
    const APPENDS: u64 = 40;
    const EVENTS_PER_APPEND: u64 = 5;
    let key = key("journal", "atomic");
    let writer = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move {
            for append in 0..APPENDS {
                let first = append * EVENTS_PER_APPEND + 1;
                let last = first + EVENTS_PER_APPEND - 1;
                let snapshot = (append % 3 == 2).then(|| snapshot(last, "a"));
                store
                    .append(&key, events(first..=last, "a"), snapshot)
                    .await
                    .unwrap();
            }
        }
    });
    let mut loads = 0;
    loop {
        let done = writer.is_finished();
        let recovery = store.load_journal(&key).await.unwrap();
        let last = recovery.last_sequence_nr();
        assert_eq!(
            last % EVENTS_PER_APPEND,
            0,
            "saw part of an append: {recovery:?}"
        );
        let after = recovery.snapshot.as_ref().map_or(0, |s| s.sequence_nr);
        assert_eq!(recovery.events, events(after + 1..=last, "a"));
        loads += 1;
        if done {
            assert_eq!(last, APPENDS * EVENTS_PER_APPEND);
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(loads > 0);
}

/// The same entity id in two persistence ids (and ids that only differ where a naive key
/// encoding would join them) are separate entities.
pub async fn entities_are_isolated(store: Arc<dyn Store>) {
    let keys = [
        key("orders", "1"),
        key("carts", "1"),
        key("orders", "10"),
        key("orders", "1|0"),
        key("orders|1", "0"),
        key("orders1", ""),
        key("", "orders1"),
        key("orders", "1\0"),
    ];
    for (index, key) in keys.iter().enumerate() {
        let count = index as u64 + 1;
        let label = key.to_string();
        store
            .append(key, events(1..=count, &label), None)
            .await
            .unwrap();
        store
            .write_value(key, 0, ValueWrite::Update(any("t", label.clone())))
            .await
            .unwrap();
    }
    for (index, key) in keys.iter().enumerate() {
        let count = index as u64 + 1;
        let label = key.to_string();
        let recovery = store.load_journal(key).await.unwrap();
        assert_eq!(recovery.snapshot, None, "{key}");
        assert_eq!(recovery.events, events(1..=count, &label), "{key}");
        let value = store.load_value(key).await.unwrap();
        assert_eq!(
            value,
            Some(Value {
                version: 1,
                payload: any("t", label)
            }),
            "{key}"
        );
    }
    // A snapshot and a delete on one key leave its neighbours alone.
    store
        .append(&keys[0], events(2..=2, "orders|1"), Some(snapshot(2, "x")))
        .await
        .unwrap();
    store
        .write_value(&keys[0], 1, ValueWrite::Delete)
        .await
        .unwrap();
    for (index, key) in keys.iter().enumerate().skip(1) {
        let recovery = store.load_journal(key).await.unwrap();
        assert_eq!(recovery.snapshot, None, "{key}");
        assert_eq!(recovery.last_sequence_nr(), index as u64 + 1, "{key}");
        assert!(store.load_value(key).await.unwrap().is_some(), "{key}");
    }
}

/// Many entities appending at the same time all get every event stored, in order.
pub async fn concurrent_entities_all_land(store: Arc<dyn Store>) {
    const ENTITIES: usize = 50;
    const APPENDS: u64 = 100;
    let tasks: Vec<_> = (0..ENTITIES)
        .map(|entity| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = key("concurrent", &format!("entity-{entity}"));
                for sequence_nr in 1..=APPENDS {
                    let snapshot = (sequence_nr % 25 == 0).then(|| snapshot(sequence_nr - 1, "s"));
                    store
                        .append(&key, vec![event(sequence_nr, &key.entity_id)], snapshot)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for entity in 0..ENTITIES {
        let key = key("concurrent", &format!("entity-{entity}"));
        let recovery = store.load_journal(&key).await.unwrap();
        assert_eq!(recovery.snapshot, Some(snapshot(APPENDS - 1, "s")), "{key}");
        assert_eq!(
            recovery.events,
            events(APPENDS..=APPENDS, &key.entity_id),
            "{key}"
        );
    }
}

/// Two writers racing to append the same sequence numbers to one journal: each number is won by
/// exactly one of them, the loser is told so, and the journal holds exactly the winners' events
/// and the winner's snapshot.
pub async fn racing_appenders_never_fork(store: Arc<dyn Store>) {
    const ROUNDS: u64 = 100;
    let key = key("race", "journal");
    let winners = race_appends(&store, &key, 1..=ROUNDS, false).await;
    let winning: Vec<Event> = winners
        .iter()
        .map(|(&sequence_nr, writer)| event(sequence_nr, writer))
        .collect();
    assert_eq!(store.load_journal(&key).await.unwrap().events, winning);

    // With snapshots: only the winner's snapshot is stored.
    let winners = race_appends(&store, &key, ROUNDS + 1..=ROUNDS + 1, true).await;
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(
        recovery.snapshot,
        Some(snapshot(ROUNDS + 1, winners[&(ROUNDS + 1)]))
    );
    assert_eq!(recovery.events, vec![]);
}

/// Two writers append one event for every sequence number in `rounds`, both at the same time;
/// returns who won each. Panics unless each round has exactly one winner.
async fn race_appends(
    store: &Arc<dyn Store>,
    key: &EntityKey,
    rounds: std::ops::RangeInclusive<u64>,
    with_snapshot: bool,
) -> BTreeMap<u64, &'static str> {
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|writer| {
            let (store, key, barrier) = (store.clone(), key.clone(), barrier.clone());
            let rounds = rounds.clone();
            tokio::spawn(async move {
                let mut won = BTreeSet::new();
                for sequence_nr in rounds {
                    barrier.wait().await;
                    let snapshot = with_snapshot.then(|| snapshot(sequence_nr, writer));
                    let result = store
                        .append(&key, vec![event(sequence_nr, writer)], snapshot)
                        .await;
                    match result {
                        Ok(()) => {
                            won.insert(sequence_nr);
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(other) => panic!("{writer} at {sequence_nr}: {other}"),
                    }
                }
                (writer, won)
            })
        })
        .collect();
    let mut winners = BTreeMap::new();
    for writer in writers {
        let (writer, won) = writer.await.unwrap();
        for sequence_nr in won {
            let previous = winners.insert(sequence_nr, writer);
            assert_eq!(
                previous, None,
                "sequence number {sequence_nr} was won twice"
            );
        }
    }
    assert!(
        rounds
            .clone()
            .all(|sequence_nr| winners.contains_key(&sequence_nr)),
        "some sequence number was won by nobody: {winners:?}"
    );
    winners
}

/// A value entity's value goes through create, update, stale writes, delete and re-create with
/// the versions the trait promises.
pub async fn value_lifecycle(store: Arc<dyn Store>) {
    let key = key("values", "lifecycle");
    assert_eq!(store.load_value(&key).await.unwrap(), None);
    assert_conflict(
        store
            .write_value(&key, 1, ValueWrite::Update(any("t", "too early")))
            .await,
        &key,
    );
    assert_eq!(store.load_value(&key).await.unwrap(), None);

    let created = store
        .write_value(&key, 0, ValueWrite::Update(any("t", "one")))
        .await
        .unwrap();
    assert_eq!(created, 1);
    assert_eq!(
        store.load_value(&key).await.unwrap(),
        Some(Value {
            version: 1,
            payload: any("t", "one")
        })
    );
    let updated = store
        .write_value(&key, 1, ValueWrite::Update(any("t", "two")))
        .await
        .unwrap();
    assert_eq!(updated, 2);
    assert_eq!(
        store.load_value(&key).await.unwrap(),
        Some(Value {
            version: 2,
            payload: any("t", "two")
        })
    );

    assert_conflict(store.write_value(&key, 1, ValueWrite::Delete).await, &key);
    assert_eq!(
        store.load_value(&key).await.unwrap().map(|v| v.version),
        Some(2)
    );
    assert_eq!(
        store
            .write_value(&key, 2, ValueWrite::Delete)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.load_value(&key).await.unwrap(), None);

    // After a delete the version is back to 0: only a create from 0 goes through.
    assert_conflict(
        store
            .write_value(&key, 2, ValueWrite::Update(any("t", "stale")))
            .await,
        &key,
    );
    assert_conflict(store.write_value(&key, 2, ValueWrite::Delete).await, &key);
    assert_eq!(store.load_value(&key).await.unwrap(), None);
    assert_eq!(
        store
            .write_value(&key, 0, ValueWrite::Delete)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .write_value(&key, 0, ValueWrite::Update(any("t", "again")))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.load_value(&key).await.unwrap(),
        Some(Value {
            version: 1,
            payload: any("t", "again")
        })
    );
}

/// Values come back with type URL and bytes exactly as written.
pub async fn value_round_trip(store: Arc<dyn Store>) {
    let key = key("values", "round-trip");
    for (payload, version) in awkward_payloads().into_iter().zip(1..) {
        let written = store
            .write_value(&key, version - 1, ValueWrite::Update(payload.clone()))
            .await
            .unwrap();
        assert_eq!(written, version);
        assert_eq!(
            store.load_value(&key).await.unwrap(),
            Some(Value { version, payload })
        );
    }
}

/// A write with a stale, future or missing version is a conflict and changes nothing.
pub async fn stale_value_write_changes_nothing(store: Arc<dyn Store>) {
    let key = key("values", "stale");
    for version in 0..3 {
        store
            .write_value(
                &key,
                version,
                ValueWrite::Update(any("t", format!("v{}", version + 1))),
            )
            .await
            .unwrap();
    }
    let before = store.load_value(&key).await.unwrap();
    for expected in [0, 1, 2, 4, u64::MAX] {
        assert_conflict(
            store
                .write_value(&key, expected, ValueWrite::Update(any("t", "lost")))
                .await,
            &key,
        );
        assert_conflict(
            store.write_value(&key, expected, ValueWrite::Delete).await,
            &key,
        );
        assert_eq!(store.load_value(&key).await.unwrap(), before);
    }
}

/// A value and a journal under the same key do not touch each other.
pub async fn values_and_journals_are_separate(store: Arc<dyn Store>) {
    let key = key("shared", "key");
    store
        .write_value(&key, 0, ValueWrite::Update(any("t", "value")))
        .await
        .unwrap();
    assert_eq!(store.load_journal(&key).await.unwrap(), Recovery::default());
    store
        .append(&key, events(1..=2, "a"), Some(snapshot(1, "a")))
        .await
        .unwrap();
    assert_eq!(
        store.load_value(&key).await.unwrap().map(|v| v.version),
        Some(1)
    );
    store
        .write_value(&key, 1, ValueWrite::Delete)
        .await
        .unwrap();
    assert_eq!(
        store.load_journal(&key).await.unwrap().last_sequence_nr(),
        2
    );
}

/// Two writers racing to write the same version of one value: exactly one wins each version, and
/// the stored value is the winner's.
pub async fn racing_value_writers_one_wins(store: Arc<dyn Store>) {
    const ROUNDS: u64 = 100;
    let key = key("race", "value");
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|writer| {
            let (store, key, barrier) = (store.clone(), key.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut won = BTreeSet::new();
                for version in 0..ROUNDS {
                    barrier.wait().await;
                    let payload = any("t", format!("{writer}{version}"));
                    match store
                        .write_value(&key, version, ValueWrite::Update(payload))
                        .await
                    {
                        Ok(new_version) => {
                            assert_eq!(new_version, version + 1);
                            won.insert(version);
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(other) => panic!("{writer} at {version}: {other}"),
                    }
                }
                (writer, won)
            })
        })
        .collect();
    let mut winners = BTreeMap::new();
    for writer in writers {
        let (writer, won) = writer.await.unwrap();
        for version in won {
            assert_eq!(
                winners.insert(version, writer),
                None,
                "version {version} won twice"
            );
        }
    }
    assert_eq!(
        winners.len() as u64,
        ROUNDS,
        "some version was won by nobody"
    );
    let last = ROUNDS - 1;
    assert_eq!(
        store.load_value(&key).await.unwrap(),
        Some(Value {
            version: ROUNDS,
            payload: any("t", format!("{}{last}", winners[&last])),
        })
    );
}

/// Many writers incrementing one counter with read-modify-write and retry on conflict: no
/// increment is lost.
pub async fn concurrent_value_increments_lose_nothing(store: Arc<dyn Store>) {
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 25;
    let key = key("race", "counter");
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                for _ in 0..INCREMENTS {
                    loop {
                        let (version, count) = match store.load_value(&key).await.unwrap() {
                            None => (0, 0),
                            Some(value) => (value.version, decode_count(&value.payload)),
                        };
                        let next = any("count", (count + 1).to_be_bytes().to_vec());
                        match store
                            .write_value(&key, version, ValueWrite::Update(next))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let value = store.load_value(&key).await.unwrap().unwrap();
    assert_eq!(value.version, WRITERS * INCREMENTS);
    assert_eq!(decode_count(&value.payload), WRITERS * INCREMENTS);
}

fn decode_count(payload: &Any) -> u64 {
    u64::from_be_bytes(payload.value.as_ref().try_into().unwrap())
}

/// A working store answers `ping`.
pub async fn ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

/// The event log of a persistence id holds every event of its entities once, with consecutive
/// offsets from 1 in the order of the appends, payloads byte for byte; refused appends take no
/// offsets; reads page by `after` and `limit`; other persistence ids have logs of their own.
pub async fn event_log_follows_appends(store: Arc<dyn Store>) {
    let (a, b, other) = (key("log", "a"), key("log", "b"), key("log-other", "a"));
    assert_eq!(store.read_event_log("log", 0, 10).await.unwrap(), vec![]);
    let payloads = awkward_payloads();
    store
        .append(
            &a,
            vec![
                Event {
                    sequence_nr: 1,
                    payload: payloads[2].clone(),
                },
                Event {
                    sequence_nr: 2,
                    payload: payloads[5].clone(),
                },
            ],
            None,
        )
        .await
        .unwrap();
    store
        .append(&other, events(1..=1, "o"), None)
        .await
        .unwrap();
    assert_conflict(store.append(&b, events(2..=2, "b"), None).await, &b);
    store
        .append(&b, events(1..=2, "b"), Some(snapshot(2, "b")))
        .await
        .unwrap();
    assert_invalid(
        store
            .append(&a, vec![event(3, "a"), event(5, "a")], None)
            .await,
        &a,
    );
    store.append(&a, events(3..=3, "a"), None).await.unwrap();

    let logged = |offset, key: &EntityKey, sequence_nr, payload: Any| LoggedEvent {
        offset,
        key: key.clone(),
        sequence_nr,
        payload,
    };
    let expected = vec![
        logged(1, &a, 1, payloads[2].clone()),
        logged(2, &a, 2, payloads[5].clone()),
        logged(3, &b, 1, event(1, "b").payload),
        logged(4, &b, 2, event(2, "b").payload),
        logged(5, &a, 3, event(3, "a").payload),
    ];
    assert_eq!(store.read_event_log("log", 0, 100).await.unwrap(), expected);
    assert_eq!(
        store.read_event_log("log", 1, 2).await.unwrap(),
        expected[1..3].to_vec()
    );
    assert_eq!(
        store.read_event_log("log", 4, 100).await.unwrap(),
        expected[4..].to_vec()
    );
    assert_eq!(store.read_event_log("log", 5, 100).await.unwrap(), vec![]);
    assert_eq!(store.read_event_log("log", 0, 0).await.unwrap(), vec![]);
    assert_eq!(
        store.read_event_log("log-other", 0, 100).await.unwrap(),
        vec![logged(1, &other, 1, event(1, "o").payload)]
    );
    assert_eq!(store.read_event_log("lo", 0, 100).await.unwrap(), vec![]);
}

/// While many entities append at once, a reader following the log sees offsets without gaps
/// (it never sees an offset before every smaller one is visible), every event exactly once,
/// and each entity's events in order.
pub async fn event_log_has_no_gaps_under_concurrent_appends(store: Arc<dyn Store>) {
    const ENTITIES: u64 = 16;
    const APPENDS: u64 = 30;
    let writers: Vec<_> = (0..ENTITIES)
        .map(|entity| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = key("tail", &format!("e{entity}"));
                let mut next = 1;
                for append in 0..APPENDS {
                    // One or two events per append.
                    let count = 1 + (append + entity) % 2;
                    let batch = events(next..=next + count - 1, &key.entity_id);
                    store.append(&key, batch, None).await.unwrap();
                    next += count;
                }
            })
        })
        .collect();
    let total: u64 = (0..ENTITIES)
        .flat_map(|entity| (0..APPENDS).map(move |append| 1 + (append + entity) % 2))
        .sum();
    let mut seen: Vec<LoggedEvent> = Vec::new();
    while (seen.len() as u64) < total {
        let after = seen.len() as u64;
        let page = store.read_event_log("tail", after, 17).await.unwrap();
        for (event, expected) in page.iter().zip(after + 1..) {
            assert_eq!(event.offset, expected, "a gap in the event log");
        }
        if page.is_empty() {
            tokio::task::yield_now().await;
        }
        seen.extend(page);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        store.read_event_log("tail", total, 10).await.unwrap(),
        vec![]
    );
    let mut next = BTreeMap::new();
    for event in &seen {
        let expected = next.entry(event.key.entity_id.clone()).or_insert(1u64);
        assert_eq!(event.sequence_nr, *expected, "{event:?} out of order");
        assert_eq!(
            event.payload,
            self::event(*expected, &event.key.entity_id).payload
        );
        *expected += 1;
    }
    assert_eq!(next.len() as u64, ENTITIES);
}

/// A watch of an event log changes once this store commits events of it.
pub async fn event_log_watch_wakes_readers(store: Arc<dyn Store>) {
    let mut watch = store.watch_event_log("watched");
    let other = store.watch_event_log("unwatched");
    store
        .append(&key("watched", "a"), events(1..=2, "a"), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), watch.changed())
        .await
        .expect("the watch did not change after an append")
        .unwrap();
    assert_eq!(*watch.borrow_and_update(), 2);
    assert!(!other.has_changed().unwrap());
}

/// One consumer name has one lease at a time; the position saved under it survives the lease
/// and starts at offset 0, generation 0.
pub async fn offset_lease_is_exclusive_and_keeps_the_position(store: Arc<dyn Store>) {
    let mut lease = store.lease_offset("log/group").await.unwrap().unwrap();
    assert_eq!(lease.position().await.unwrap(), Position::default());
    assert!(store.lease_offset("log/group").await.unwrap().is_none());
    let mut other = store.lease_offset("log/other").await.unwrap().unwrap();
    let saved = Position {
        offset: 42,
        generation: 3,
    };
    lease.save(saved).await.unwrap();
    assert_eq!(lease.position().await.unwrap(), saved);
    assert_eq!(other.position().await.unwrap(), Position::default());
    other
        .save(Position {
            offset: u64::from(u32::MAX) * 4,
            generation: 0,
        })
        .await
        .unwrap();
    drop(lease);
    // Released on drop (on PostgreSQL, once the server has noticed).
    let mut again = loop {
        if let Some(lease) = store.lease_offset("log/group").await.unwrap() {
            break lease;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(again.position().await.unwrap(), saved);
    again.save(Position::default()).await.unwrap();
    assert_eq!(again.position().await.unwrap(), Position::default());
    assert_eq!(
        other.position().await.unwrap().offset,
        u64::from(u32::MAX) * 4
    );
}

/// How long a lease lasts in the lease checks that do not wait for expiry.
const LONG_TTL: Duration = Duration::from_secs(60);

fn fence(shard: u32, owner: &str, epoch: u64) -> Fence {
    Fence {
        shard,
        owner: owner.into(),
        epoch,
    }
}

#[track_caller]
fn assert_fenced<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_key: &EntityKey) {
    match result {
        Err(StoreError::Fenced { key, .. }) => assert_eq!(&key, expected_key),
        other => panic!("expected the write to {expected_key} to be fenced off, got {other:?}"),
    }
}

/// The store's leases; for a store without any (one node's own store), checks instead that it
/// refuses every fenced write and writes nothing.
async fn leases_or_refusal(store: &Arc<dyn Store>) -> Option<&dyn ShardLeases> {
    if let Some(leases) = store.leases() {
        return Some(leases);
    }
    let key = key("fenced", "refused");
    let refused = store
        .append_fenced(&key, events(1..=1, "a"), None, &fence(0, "n", 1))
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidWrite { .. })),
        "{refused:?}"
    );
    let refused = store
        .write_value_fenced(
            &key,
            0,
            ValueWrite::Update(any("t", "v")),
            &fence(0, "n", 1),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidWrite { .. })),
        "{refused:?}"
    );
    assert_eq!(store.load_journal(&key).await.unwrap(), Recovery::default());
    assert_eq!(store.load_value(&key).await.unwrap(), None);
    None
}

/// A lease is taken only while free, each taking bumps its epoch, and renewing or releasing
/// needs the holder's id and epoch.
pub async fn leases_have_one_holder_and_growing_epochs(store: Arc<dyn Store>) {
    let Some(leases) = leases_or_refusal(&store).await else {
        return;
    };
    leases.prepare(4).await.unwrap();
    let all = leases.leases().await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter()
            .all(|lease| lease.owner.is_none() && lease.holder().is_none())
    );
    let start = all[1].epoch;

    assert_eq!(
        leases.acquire("a", &[1, 2], LONG_TTL).await.unwrap(),
        vec![(1, start + 1), (2, all[2].epoch + 1)]
    );
    // Held: nobody else gets it, not even its holder a second time.
    assert_eq!(
        leases.acquire("b", &[1, 2, 3], LONG_TTL).await.unwrap(),
        vec![(3, all[3].epoch + 1)]
    );
    assert_eq!(leases.acquire("a", &[1], LONG_TTL).await.unwrap(), vec![]);
    let now = leases.leases().await.unwrap();
    assert_eq!(now[1].holder().map(|o| &**o), Some("a"));
    assert_eq!(now[3].holder().map(|o| &**o), Some("b"));
    assert!(now[0].holder().is_none());

    // Renewing needs the holder and its epoch.
    assert_eq!(
        leases
            .renew("b", &[(1, start + 1)], LONG_TTL)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        leases.renew("a", &[(1, start)], LONG_TTL).await.unwrap(),
        vec![]
    );
    assert_eq!(
        leases
            .renew("a", &[(1, start + 1), (3, all[3].epoch + 1)], LONG_TTL)
            .await
            .unwrap(),
        vec![1]
    );

    // So does releasing; a released lease is free at once and the next holder gets a new epoch.
    assert_eq!(
        leases.release("b", &[(1, start + 1)]).await.unwrap(),
        vec![]
    );
    assert_eq!(
        leases.release("a", &[(1, start + 1)]).await.unwrap(),
        vec![1]
    );
    assert!(leases.leases().await.unwrap()[1].holder().is_none());
    assert_eq!(
        leases.acquire("b", &[1], LONG_TTL).await.unwrap(),
        vec![(1, start + 2)]
    );
    let now = leases.leases().await.unwrap();
    assert_eq!(
        (now[1].owner.as_deref(), now[1].epoch),
        (Some("b"), start + 2)
    );
    // Shards that do not exist are never taken.
    assert_eq!(
        leases.acquire("a", &[4, 99], LONG_TTL).await.unwrap(),
        vec![]
    );
}

/// A lease its holder stops renewing expires by the store's clock and can then be taken over,
/// with the next epoch; the old holder can no longer renew it.
pub async fn an_expired_lease_is_taken_over(store: Arc<dyn Store>) {
    let Some(leases) = leases_or_refusal(&store).await else {
        return;
    };
    leases.prepare(2).await.unwrap();
    let short = Duration::from_millis(300);
    let [(shard, epoch)] = leases.acquire("old", &[0], short).await.unwrap()[..] else {
        panic!("the free lease was not taken");
    };
    // Waits for the expiry (bounded by the test timeout), checking that the lease is never
    // handed out while it has time left.
    let taken = loop {
        let before = leases.leases().await.unwrap()[0].clone();
        let taken = leases.acquire("new", &[shard], LONG_TTL).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        assert_eq!(before.owner.as_deref(), Some("old"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(taken, vec![(shard, epoch + 1)]);
    assert_eq!(
        leases
            .renew("old", &[(shard, epoch)], LONG_TTL)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        leases.release("old", &[(shard, epoch)]).await.unwrap(),
        vec![]
    );
    let lease = &leases.leases().await.unwrap()[0];
    assert_eq!(lease.holder().map(|o| &**o), Some("new"));
    assert_eq!(lease.epoch, epoch + 1);
}

/// Appends, snapshots and value writes commit with the current lease's fence, and are fenced
/// off, writing nothing, with another owner's, another epoch's, an unheld or unknown shard's, a
/// released or an expired lease's. (Which shard a key belongs to is the writer's business: the
/// store checks the lease the writer names.)
pub async fn fenced_writes_need_the_current_lease(store: Arc<dyn Store>) {
    let Some(leases) = leases_or_refusal(&store).await else {
        return;
    };
    leases.prepare(3).await.unwrap();
    let taken = leases.acquire("a", &[0, 1], LONG_TTL).await.unwrap();
    let (epoch, other_epoch) = (taken[0].1, taken[1].1);
    let key = key("fenced", "entity");
    let good = fence(0, "a", epoch);
    store
        .append_fenced(&key, events(1..=2, "a"), Some(snapshot(2, "a")), &good)
        .await
        .unwrap();
    assert_eq!(
        store
            .write_value_fenced(&key, 0, ValueWrite::Update(any("t", "one")), &good)
            .await
            .unwrap(),
        1
    );
    let journal = store.load_journal(&key).await.unwrap();
    let value = store.load_value(&key).await.unwrap();
    assert_eq!(journal.last_sequence_nr(), 2);

    let bad = [
        fence(1, "a", other_epoch + 1),
        fence(0, "b", epoch),
        fence(0, "a", epoch + 1),
        fence(0, "a", epoch.saturating_sub(1)),
        fence(2, "a", other_epoch),
        fence(7, "a", epoch),
    ];
    for fence in &bad {
        assert_fenced(
            store
                .append_fenced(&key, events(3..=3, "b"), Some(snapshot(3, "b")), fence)
                .await,
            &key,
        );
        assert_fenced(
            store
                .write_value_fenced(&key, 1, ValueWrite::Update(any("t", "lost")), fence)
                .await,
            &key,
        );
        assert_fenced(
            store
                .write_value_fenced(&key, 1, ValueWrite::Delete, fence)
                .await,
            &key,
        );
        assert_eq!(store.load_journal(&key).await.unwrap(), journal);
        assert_eq!(store.load_value(&key).await.unwrap(), value);
    }
    // The sequence number and version checks still apply to a valid fence.
    assert_conflict(
        store
            .append_fenced(&key, events(2..=2, "c"), None, &good)
            .await,
        &key,
    );
    assert_conflict(
        store
            .write_value_fenced(&key, 0, ValueWrite::Update(any("t", "x")), &good)
            .await,
        &key,
    );

    // Released: fenced off, even though nobody else has taken it.
    assert_eq!(leases.release("a", &[(0, epoch)]).await.unwrap(), vec![0]);
    assert_fenced(
        store
            .append_fenced(&key, events(3..=3, "b"), None, &good)
            .await,
        &key,
    );

    // Expired: fenced off too.
    let [(shard, epoch)] = leases
        .acquire("a", &[0], Duration::from_millis(200))
        .await
        .unwrap()[..]
    else {
        panic!("the released lease was not taken");
    };
    let short = fence(shard, "a", epoch);
    store
        .append_fenced(&key, events(3..=3, "a"), None, &short)
        .await
        .unwrap();
    while leases.leases().await.unwrap()[0].holder().is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_fenced(
        store
            .append_fenced(&key, events(4..=4, "a"), None, &short)
            .await,
        &key,
    );
    assert_eq!(
        store.load_journal(&key).await.unwrap().last_sequence_nr(),
        3
    );
}

/// An owner keeps writing while another node takes its expired shard over and writes too: every
/// write of the old owner that succeeded comes before every write of the new one, none of the
/// old owner's writes succeeds after the takeover, and the journal never forks.
pub async fn a_replaced_owner_never_writes_again(store: Arc<dyn Store>) {
    let Some(leases) = leases_or_refusal(&store).await else {
        return;
    };
    leases.prepare(1).await.unwrap();
    let ttl = Duration::from_millis(300);
    let [(_, old_epoch)] = leases.acquire("old", &[0], ttl).await.unwrap()[..] else {
        panic!("the free lease was not taken");
    };
    let key = key("takeover", "entity");
    let takeover = Arc::new(tokio::sync::Notify::new());
    // The old owner appends one event after the other, reloading after each refusal, until it
    // has been fenced off; it never renews.
    let old = tokio::spawn({
        let (store, key, takeover) = (store.clone(), key.clone(), takeover.clone());
        async move {
            let mut written = Vec::new();
            let mut after_takeover = false;
            loop {
                let next = store.load_journal(&key).await.unwrap().last_sequence_nr() + 1;
                let fence = fence(0, "old", old_epoch);
                match store
                    .append_fenced(&key, vec![event(next, "old")], None, &fence)
                    .await
                {
                    Ok(()) => {
                        assert!(
                            !after_takeover,
                            "the old owner wrote {next} after the takeover"
                        );
                        written.push(next);
                    }
                    Err(StoreError::Fenced { .. }) => return written,
                    Err(StoreError::Conflict { .. }) => {}
                    Err(other) => panic!("{other}"),
                }
                // Once the new owner has its lease, every further write must be refused.
                if !after_takeover && takeover_happened(&takeover) {
                    after_takeover = true;
                }
                // Paced, so that the journal stays short while the lease runs out.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let new_epoch = loop {
        if let [(_, epoch)] = leases.acquire("new", &[0], LONG_TTL).await.unwrap()[..] {
            break epoch;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    takeover.notify_one();
    assert_eq!(new_epoch, old_epoch + 1);
    let mut new_written = Vec::new();
    for _ in 0..20 {
        let next = store.load_journal(&key).await.unwrap().last_sequence_nr() + 1;
        store
            .append_fenced(
                &key,
                vec![event(next, "new")],
                None,
                &fence(0, "new", new_epoch),
            )
            .await
            .unwrap();
        new_written.push(next);
    }
    let old_written = old.await.unwrap();
    let journal = store.load_journal(&key).await.unwrap();
    let mut expected: Vec<Event> = old_written.iter().map(|&n| event(n, "old")).collect();
    expected.extend(new_written.iter().map(|&n| event(n, "new")));
    assert_eq!(
        journal.events, expected,
        "the journal forked or lost a write"
    );
}

/// Whether `notify` has been notified (consuming the notification).
fn takeover_happened(notify: &tokio::sync::Notify) -> bool {
    use std::future::Future;
    let notified = std::pin::pin!(notify.notified());
    let waker = std::task::Waker::noop();
    notified
        .poll(&mut std::task::Context::from_waker(waker))
        .is_ready()
}

/// Setting up leases for another shard count fails while any lease is held, and works (with
/// epochs still growing) once none is.
pub async fn the_shard_count_is_fixed_while_leases_are_held(store: Arc<dyn Store>) {
    let Some(leases) = leases_or_refusal(&store).await else {
        return;
    };
    leases.prepare(8).await.unwrap();
    leases.prepare(8).await.unwrap();
    let [(_, epoch)] = leases.acquire("a", &[5], LONG_TTL).await.unwrap()[..] else {
        panic!("the free lease was not taken");
    };
    match leases.prepare(16).await {
        Err(StoreError::ShardCount { stored, requested }) => {
            assert_eq!((stored, requested), (8, 16));
        }
        other => panic!("expected a shard count error, got {other:?}"),
    }
    assert_eq!(leases.leases().await.unwrap().len(), 8);
    leases.release("a", &[(5, epoch)]).await.unwrap();
    leases.prepare(16).await.unwrap();
    let all = leases.leases().await.unwrap();
    assert_eq!(all.len(), 16);
    assert!(
        all.iter()
            .all(|lease| lease.holder().is_none() && lease.epoch >= epoch)
    );
    assert_fenced(
        store
            .append_fenced(
                &key("count", "x"),
                events(1..=1, "a"),
                None,
                &fence(5, "a", epoch),
            )
            .await,
        &key("count", "x"),
    );
}

/// The listing of a persistence id names each entity with a journal, snapshot or value once,
/// sorted, with its last sequence number, snapshot and version, and leaves out other
/// persistence ids; reading an entity gives its snapshot, every event from the first (also
/// those before the snapshot) and its value, byte for byte.
pub async fn inspection_lists_entities_and_reads_them_whole(
    store: Arc<dyn Store>,
    inspect: Arc<dyn Inspect>,
) {
    let cart = key("cart", "bob");
    store
        .append(&cart, events(1..=3, "b"), Some(snapshot(2, "b")))
        .await
        .unwrap();
    store.append(&cart, events(4..=4, "b"), None).await.unwrap();
    let plain = key("cart", "alice");
    let payloads = awkward_payloads();
    let awkward: Vec<Event> = (1..)
        .zip(&payloads)
        .map(|(sequence_nr, payload)| Event {
            sequence_nr,
            payload: payload.clone(),
        })
        .collect();
    store.append(&plain, awkward.clone(), None).await.unwrap();
    let both = key("cart", "carol|x");
    store.append(&both, events(1..=1, "c"), None).await.unwrap();
    let value = any("type.googleapis.com/test.Value", "v");
    store
        .write_value(&both, 0, ValueWrite::Update(value.clone()))
        .await
        .unwrap();
    store
        .write_value(&both, 1, ValueWrite::Update(value.clone()))
        .await
        .unwrap();
    let deleted = key("cart", "dave");
    store
        .write_value(&deleted, 0, ValueWrite::Update(value.clone()))
        .await
        .unwrap();
    store
        .write_value(&deleted, 1, ValueWrite::Delete)
        .await
        .unwrap();
    store
        .append(&key("cart-other", "bob"), events(1..=2, "o"), None)
        .await
        .unwrap();
    store
        .append(&key("car", "zed"), events(1..=1, "z"), None)
        .await
        .unwrap();
    // A refused append leaves nothing to list.
    let refused = key("cart", "erin");
    assert_conflict(
        store.append(&refused, events(2..=2, "e"), None).await,
        &refused,
    );

    let summary =
        |entity_id: &str, last: u64, snapshot: Option<u64>, value: Option<u64>| EntitySummary {
            entity_id: entity_id.to_owned(),
            last_sequence_nr: last,
            snapshot_sequence_nr: snapshot,
            value_version: value,
        };
    assert_eq!(
        inspect.list_entities("cart").await.unwrap(),
        vec![
            summary("alice", payloads.len() as u64, None, None),
            summary("bob", 4, Some(2), None),
            summary("carol|x", 1, None, Some(2)),
        ]
    );
    assert_eq!(
        inspect.list_entities("cart-other").await.unwrap(),
        vec![summary("bob", 2, None, None)]
    );
    assert_eq!(
        inspect.read_entity(&cart).await.unwrap(),
        StoredEntity {
            snapshot: Some(snapshot(2, "b")),
            events: events(1..=4, "b"),
            value: None,
        }
    );
    assert_eq!(
        inspect.read_entity(&plain).await.unwrap(),
        StoredEntity {
            snapshot: None,
            events: awkward,
            value: None,
        }
    );
    assert_eq!(
        inspect.read_entity(&both).await.unwrap(),
        StoredEntity {
            snapshot: None,
            events: events(1..=1, "c"),
            value: Some(Value {
                version: 2,
                payload: value,
            }),
        }
    );
}

/// Unknown persistence ids list nothing; unknown entities read as empty.
pub async fn inspection_of_unknown_entities_is_empty(
    store: Arc<dyn Store>,
    inspect: Arc<dyn Inspect>,
) {
    store
        .append(&key("known", "a"), events(1..=1, "a"), None)
        .await
        .unwrap();
    assert_eq!(inspect.list_entities("unknown").await.unwrap(), vec![]);
    assert_eq!(inspect.list_entities("").await.unwrap(), vec![]);
    assert_eq!(
        inspect.read_entity(&key("known", "b")).await.unwrap(),
        StoredEntity::default()
    );
}
