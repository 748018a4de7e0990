//! The shared storage test suite against the embedded store, and what only an on-disk store
//! has: reopening, locking, corrupt files.

use std::{
    pin::pin,
    sync::Arc,
    task::{Context, Waker},
};

use cloudstate_store::{Any, EntityKey, Event, Snapshot, Store, StoreError, Value, ValueWrite};
use cloudstate_store_embedded::{EmbeddedStore, Error, FILE_NAME};
use tempfile::TempDir;

fn fresh() -> (EmbeddedStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (store, dir)
}

cloudstate_store::store_test_suite!(embedded, async { fresh() });

fn any(value: &str) -> Any {
    Any {
        type_url: "type.googleapis.com/test.T".into(),
        value: value.to_owned().into(),
    }
}

fn event(sequence_nr: u64) -> Event {
    Event {
        sequence_nr,
        payload: any(&format!("event {sequence_nr}")),
    }
}

fn snapshot(sequence_nr: u64) -> Snapshot {
    Snapshot {
        sequence_nr,
        payload: any(&format!("state {sequence_nr}")),
    }
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let journal = EntityKey::new("p", "journal");
    let value = EntityKey::new("p", "value");
    let deleted = EntityKey::new("p", "deleted");
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .append(&journal, (1..=3).map(event).collect(), Some(snapshot(2)))
            .await
            .unwrap();
        store.append(&journal, vec![event(4)], None).await.unwrap();
        store
            .write_value(&value, 0, ValueWrite::Update(any("v1")))
            .await
            .unwrap();
        store
            .write_value(&value, 1, ValueWrite::Update(any("v2")))
            .await
            .unwrap();
        store
            .write_value(&deleted, 0, ValueWrite::Update(any("gone")))
            .await
            .unwrap();
        store
            .write_value(&deleted, 1, ValueWrite::Delete)
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let recovery = store.load_journal(&journal).await.unwrap();
    assert_eq!(recovery.snapshot, Some(snapshot(2)));
    assert_eq!(recovery.events, vec![event(3), event(4)]);
    assert_eq!(
        store.load_value(&value).await.unwrap(),
        Some(Value {
            version: 2,
            payload: any("v2")
        })
    );
    assert_eq!(store.load_value(&deleted).await.unwrap(), None);
    // The fences hold across the restart.
    assert!(matches!(
        store.append(&journal, vec![event(4)], None).await,
        Err(StoreError::Conflict { .. })
    ));
    store.append(&journal, vec![event(5)], None).await.unwrap();
    assert!(matches!(
        store
            .write_value(&value, 1, ValueWrite::Update(any("stale")))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    store.ping().await.unwrap();
}

/// Writes whose callers stopped waiting are still queued when the store is dropped: the writer
/// commits them before it exits.
#[test]
fn writes_queued_at_drop_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let keys: Vec<_> = (0..256)
        .map(|entity| EntityKey::new("p", format!("e{entity}")))
        .collect();
    let mut context = Context::from_waker(Waker::noop());
    for key in &keys {
        let mut append = pin!(store.append(key, vec![event(1)], None));
        // The first poll queues the request; then the caller gives up waiting.
        assert!(append.as_mut().poll(&mut context).is_pending());
    }
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for key in &keys {
        let recovery = runtime.block_on(store.load_journal(key)).unwrap();
        assert_eq!(recovery.events, vec![event(1)], "{key}");
    }
}

#[test]
fn opening_an_open_store_again_fails_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path()).unwrap();
    let error = EmbeddedStore::open(dir.path()).unwrap_err();
    let path = dir.path().join(FILE_NAME);
    assert!(matches!(&error, Error::Locked { path: locked } if locked == &path));
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    drop(first);
    EmbeddedStore::open(dir.path()).unwrap();
}

#[test]
fn an_unusable_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let error = EmbeddedStore::open(&file).unwrap_err();
    assert!(matches!(&error, Error::Directory { path, .. } if path == &file));
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );

    // A directory where the database file should be.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(blocked.join(FILE_NAME)).unwrap();
    let error = EmbeddedStore::open(&blocked).unwrap_err();
    assert!(matches!(&error, Error::Open { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&blocked.join(FILE_NAME).display().to_string()),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_append_among_concurrent_ones_fails_alone() {
    let (store, _dir) = fresh();
    let store = Arc::new(store);
    let stale_key = EntityKey::new("p", "stale");
    store
        .append(&stale_key, vec![event(1), event(2)], None)
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(33));
    let mut writers: Vec<_> = (0..32)
        .map(|entity| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let key = EntityKey::new("p", format!("fresh{entity}"));
                barrier.wait().await;
                store
                    .append(&key, vec![event(1), event(2)], Some(snapshot(1)))
                    .await
            })
        })
        .collect();
    let stale = {
        let (store, barrier, key) = (store.clone(), barrier.clone(), stale_key.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            store.append(&key, vec![event(2)], Some(snapshot(2))).await
        })
    };
    assert!(matches!(
        stale.await.unwrap(),
        Err(StoreError::Conflict { key, .. }) if key == stale_key
    ));
    for writer in writers.drain(..) {
        writer.await.unwrap().unwrap();
    }
    for entity in 0..32 {
        let key = EntityKey::new("p", format!("fresh{entity}"));
        let recovery = store.load_journal(&key).await.unwrap();
        assert_eq!(recovery.snapshot, Some(snapshot(1)));
        assert_eq!(recovery.events, vec![event(2)]);
    }
    let recovery = store.load_journal(&stale_key).await.unwrap();
    assert_eq!(recovery.snapshot, None);
    assert_eq!(recovery.events, vec![event(1), event(2)]);
}

/// Writes raw bytes into the database the way a damaged or foreign file might have them.
fn tamper(dir: &TempDir, change: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
    let transaction = db.begin_write().unwrap();
    change(&transaction);
    transaction.commit().unwrap();
}

const JOURNAL: redb::TableDefinition<(&str, &str, u64), &[u8]> =
    redb::TableDefinition::new("journal");
const SNAPSHOTS: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("snapshots");
const VALUES: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("values");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, mentions: &[&str]) {
    match result {
        Err(StoreError::Corrupt(detail)) => {
            for mention in mentions {
                assert!(
                    detail.contains(mention),
                    "{detail:?} does not mention {mention:?}"
                );
            }
        }
        other => panic!("expected corrupt data, got {other:?}"),
    }
}

#[tokio::test]
async fn undecodable_stored_bytes_are_reported_not_panicked_on() {
    let (store, dir) = fresh();
    let journal = EntityKey::new("p", "journal");
    let gap = EntityKey::new("p", "gap");
    let snapshotted = EntityKey::new("p", "snapshotted");
    let value = EntityKey::new("p", "value");
    store
        .append(&journal, (1..=3).map(event).collect(), None)
        .await
        .unwrap();
    store
        .append(&gap, (1..=3).map(event).collect(), None)
        .await
        .unwrap();
    store
        .append(&snapshotted, vec![event(1)], Some(snapshot(1)))
        .await
        .unwrap();
    store
        .write_value(&value, 0, ValueWrite::Update(any("v")))
        .await
        .unwrap();
    drop(store);

    tamper(&dir, |transaction| {
        let mut events = transaction.open_table(JOURNAL).unwrap();
        // A truncated length-delimited field.
        events
            .insert(("p", "journal", 2), [0x0a, 0x7f, 0x41].as_slice())
            .unwrap();
        events.remove(("p", "gap", 2)).unwrap();
        let mut snapshots = transaction.open_table(SNAPSHOTS).unwrap();
        snapshots
            .insert(("p", "snapshotted"), [0xff].as_slice())
            .unwrap();
        let mut values = transaction.open_table(VALUES).unwrap();
        // A record without its payload.
        values
            .insert(("p", "value"), [0x08, 0x01].as_slice())
            .unwrap();
    });

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_corrupt(
        store.load_journal(&journal).await,
        &["event 2", "p|journal", FILE_NAME],
    );
    assert_corrupt(
        store.load_journal(&gap).await,
        &["expected event 2, found 3", "p|gap", FILE_NAME],
    );
    assert_corrupt(
        store.load_journal(&snapshotted).await,
        &["snapshot", "p|snapshotted", FILE_NAME],
    );
    assert_corrupt(
        store.load_value(&value).await,
        &["value of p|value", FILE_NAME],
    );
    // A write that has to read the damaged record fails alone; the store goes on working.
    assert_corrupt(
        store
            .write_value(&value, 1, ValueWrite::Update(any("w")))
            .await,
        &["value of p|value"],
    );
    store.append(&journal, vec![event(4)], None).await.unwrap();
    store.ping().await.unwrap();
}

#[test]
fn a_file_of_another_format_version_is_refused() {
    let (store, dir) = fresh();
    drop(store);
    tamper(&dir, |transaction| {
        let mut meta = transaction.open_table(META).unwrap();
        meta.insert("format_version", 99).unwrap();
    });
    let error = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(error, Error::Format { found: 99, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("format version 99"), "{error}");
}

/// A file of format version 1 (before event logs) gets event logs built from its journal when
/// opened, and new appends continue them.
#[tokio::test]
async fn a_format_1_file_is_upgraded_with_event_logs() {
    let (store, dir) = fresh();
    let (a, b) = (EntityKey::new("p", "a"), EntityKey::new("p", "b"));
    store.append(&b, vec![event(1)], None).await.unwrap();
    store
        .append(&a, vec![event(1), event(2)], None)
        .await
        .unwrap();
    drop(store);
    // What version 1 had: no event log tables.
    tamper(&dir, |transaction| {
        let log: redb::TableDefinition<(&str, u64), (&str, u64)> =
            redb::TableDefinition::new("event_log");
        let heads: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("event_log_heads");
        let positions: redb::TableDefinition<&str, (u64, u64)> =
            redb::TableDefinition::new("positions");
        assert!(transaction.delete_table(log).unwrap());
        assert!(transaction.delete_table(heads).unwrap());
        assert!(transaction.delete_table(positions).unwrap());
        let mut meta = transaction.open_table(META).unwrap();
        meta.insert("format_version", 1).unwrap();
    });
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.append(&b, vec![event(2)], None).await.unwrap();
    let log: Vec<_> = store
        .read_event_log("p", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|event| {
            (
                event.offset,
                event.key.entity_id.to_string(),
                event.sequence_nr,
            )
        })
        .collect();
    let entry = |offset, entity: &str, sequence_nr| (offset, entity.to_owned(), sequence_nr);
    assert_eq!(
        log,
        vec![
            entry(1, "a", 1),
            entry(2, "a", 2),
            entry(3, "b", 1),
            entry(4, "b", 2)
        ]
    );
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.read_event_log("p", 0, 10).await.unwrap().len(), 4);
}

/// A consumer's position survives closing and reopening the store.
#[tokio::test]
async fn positions_survive_reopen() {
    let (store, dir) = fresh();
    let saved = cloudstate_store::Position {
        offset: 7,
        generation: 2,
    };
    store
        .lease_offset("consumer")
        .await
        .unwrap()
        .unwrap()
        .save(saved)
        .await
        .unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut lease = store.lease_offset("consumer").await.unwrap().unwrap();
    assert_eq!(lease.position().await.unwrap(), saved);
}
