//! What only the PostgreSQL store has: migrations, several stores (proxies) on one database,
//! races between them inside group commits, outages, and data written by others.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Waker},
    time::{Duration, Instant},
};

use cloudstate_store::{
    Any, EntityKey, Event, Position, Snapshot, Store, StoreError, Value, ValueWrite,
};
use cloudstate_store_postgres::{Error, PostgresOptions, PostgresStore, SCHEMA_VERSION};
use cloudstate_testutil::postgres::PostgresServer;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::Barrier;

fn database() -> String {
    PostgresServer::shared().unwrap().create_database().unwrap()
}

async fn store(url: &str) -> PostgresStore {
    PostgresStore::connect(url, PostgresOptions::default())
        .await
        .unwrap()
}

fn any(value: &str) -> Any {
    Any {
        type_url: "type.googleapis.com/test.T".into(),
        value: value.to_owned().into(),
    }
}

fn event(sequence_nr: u64, label: &str) -> Event {
    Event {
        sequence_nr,
        payload: any(&format!("{label}#{sequence_nr}")),
    }
}

fn snapshot(sequence_nr: u64, label: &str) -> Snapshot {
    Snapshot {
        sequence_nr,
        payload: any(&format!("{label}@{sequence_nr}")),
    }
}

/// Inserts an event the way another proxy would, on `connection`, except for its event log
/// offset: a negative one of its own rather than the next from the log's head, so that held
/// (uncommitted) inserts of several entities model races at the journal's primary key without
/// also queueing behind each other on the head's row lock.
async fn insert_event(connection: &mut PgConnection, key: &EntityKey, sequence_nr: i64) {
    static OFFSETS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);
    let offset = OFFSETS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    sqlx::query(
        "INSERT INTO journal (persistence_id, entity_id, sequence_nr, type_url, payload, log_offset)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.persistence_id.as_bytes())
    .bind(key.entity_id.as_bytes())
    .bind(sequence_nr)
    .bind(b"type.googleapis.com/test.T".as_slice())
    .bind(format!("other#{sequence_nr}").into_bytes())
    .bind(offset)
    .execute(connection)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_even_when_stores_start_together() {
    let url = database();
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { store(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap());
    }
    let key = EntityKey::new("p", "e");
    stores[0]
        .append(&key, vec![event(1, "a")], None)
        .await
        .unwrap();
    drop(stores);

    // Starting again finds the schema in place and the data untouched.
    let store = store(&url).await;
    assert_eq!(
        store.load_journal(&key).await.unwrap().events,
        vec![event(1, "a")]
    );
    let mut connection = PgConnection::connect(&url).await.unwrap();
    let versions: Vec<i32> =
        sqlx::query("SELECT version FROM cloudstate_schema_version ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_database_with_a_newer_schema_is_refused() {
    let url = database();
    drop(store(&url).await);
    let mut connection = PgConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO cloudstate_schema_version (version, description) VALUES (99, 'x')")
        .execute(&mut connection)
        .await
        .unwrap();
    let error = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::SchemaTooNew { found: 99, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("schema version 99"), "{error}");
}

#[tokio::test]
async fn unusable_urls_and_options_are_refused_with_a_reason() {
    let port = cloudstate_testutil::free_port();
    // Nothing listens there: refused at once (the bound only catches a hang).
    let url = format!("postgres://postgres:secret@127.0.0.1:{port}/db");
    let connect = PostgresStore::connect(&url, PostgresOptions::default());
    let error = tokio::time::timeout(Duration::from_secs(60), connect)
        .await
        .expect("a refused connection fails instead of hanging")
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}/db")),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");

    let error = PostgresStore::connect("mysql://x", PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Url(_)), "{error:?}");

    let error = PostgresStore::connect(
        &database(),
        PostgresOptions {
            pool_size: 1,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Options(_)), "{error:?}");
}

/// Two proxies on one database: every sequence number and version is won by exactly one of
/// them, while both keep committing other entities in the same batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_racing_on_one_entity_never_fork() {
    const ROUNDS: u64 = 150;
    let url = database();
    let stores = [Arc::new(store(&url).await), Arc::new(store(&url).await)];
    let journal = EntityKey::new("race", "journal");
    let value = EntityKey::new("race", "value");
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = stores
        .iter()
        .zip(["left", "right"])
        .map(|(store, name)| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let (journal, value) = (journal.clone(), value.clone());
            tokio::spawn(async move {
                let mut won = (Vec::new(), Vec::new());
                for round in 1..=ROUNDS {
                    barrier.wait().await;
                    // Bystanders share the racers' batches; they must never be refused.
                    let bystanders: Vec<_> = (0..4)
                        .map(|i| {
                            let store = store.clone();
                            let key = EntityKey::new("bystander", format!("{name}-{i}"));
                            tokio::spawn(async move {
                                store.append(&key, vec![event(round, "b")], None).await
                            })
                        })
                        .collect();
                    let snapshot = (round % 10 == 0).then(|| snapshot(round, name));
                    match store
                        .append(&journal, vec![event(round, name)], snapshot)
                        .await
                    {
                        Ok(()) => won.0.push(round),
                        Err(StoreError::Conflict { .. }) => {}
                        Err(other) => panic!("{name} appending {round}: {other}"),
                    }
                    let payload = ValueWrite::Update(any(&format!("{name}{round}")));
                    match store.write_value(&value, round - 1, payload).await {
                        Ok(version) => {
                            assert_eq!(version, round);
                            won.1.push(round);
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(other) => panic!("{name} writing version {round}: {other}"),
                    }
                    for bystander in bystanders {
                        bystander.await.unwrap().unwrap();
                    }
                }
                (name, won)
            })
        })
        .collect();
    let mut event_winners = vec![None; ROUNDS as usize];
    let mut value_winners = vec![None; ROUNDS as usize];
    for racer in racers {
        let (name, (events, values)) = racer.await.unwrap();
        for round in events {
            let slot = &mut event_winners[round as usize - 1];
            assert_eq!(*slot, None, "sequence number {round} won twice");
            *slot = Some(name);
        }
        for round in values {
            let slot = &mut value_winners[round as usize - 1];
            assert_eq!(*slot, None, "version {round} won twice");
            *slot = Some(name);
        }
    }
    let event_winners: Vec<&str> = event_winners.into_iter().map(Option::unwrap).collect();
    let value_winners: Vec<&str> = value_winners.into_iter().map(Option::unwrap).collect();

    for store in &stores {
        let recovery = store.load_journal(&journal).await.unwrap();
        let snapshot_winner = event_winners[ROUNDS as usize - 1];
        assert_eq!(recovery.snapshot, Some(snapshot(ROUNDS, snapshot_winner)));
        let mut connection = PgConnection::connect(&url).await.unwrap();
        let stored: Vec<Vec<u8>> = sqlx::query(
            "SELECT payload FROM journal WHERE entity_id = 'journal' ORDER BY sequence_nr",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
        let expected: Vec<Vec<u8>> = event_winners
            .iter()
            .zip(1..)
            .map(|(name, round)| format!("{name}#{round}").into_bytes())
            .collect();
        assert_eq!(stored, expected);
        assert_eq!(
            store.load_value(&value).await.unwrap(),
            Some(Value {
                version: ROUNDS,
                payload: any(&format!("{}{ROUNDS}", value_winners[ROUNDS as usize - 1])),
            })
        );
        for name in ["left", "right"] {
            for i in 0..4 {
                let key = EntityKey::new("bystander", format!("{name}-{i}"));
                let recovery = store.load_journal(&key).await.unwrap();
                assert_eq!(recovery.last_sequence_nr(), ROUNDS, "{key}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_append_among_concurrent_ones_fails_alone() {
    let store = Arc::new(store(&database()).await);
    let stale_key = EntityKey::new("p", "stale");
    store
        .append(&stale_key, vec![event(1, "a"), event(2, "a")], None)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(33));
    let writers: Vec<_> = (0..32)
        .map(|entity| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let key = EntityKey::new("p", format!("fresh{entity}"));
                barrier.wait().await;
                store
                    .append(
                        &key,
                        vec![event(1, "a"), event(2, "a")],
                        Some(snapshot(1, "a")),
                    )
                    .await
            })
        })
        .collect();
    barrier.wait().await;
    let stale = store
        .append(&stale_key, vec![event(2, "b")], Some(snapshot(2, "b")))
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { key, .. }) if key == &stale_key),
        "{stale:?}"
    );
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    for entity in 0..32 {
        let key = EntityKey::new("p", format!("fresh{entity}"));
        let recovery = store.load_journal(&key).await.unwrap();
        assert_eq!(recovery.snapshot, Some(snapshot(1, "a")));
        assert_eq!(recovery.events, vec![event(2, "a")]);
    }
    let recovery = store.load_journal(&stale_key).await.unwrap();
    assert_eq!(recovery.snapshot, None);
    assert_eq!(recovery.events, vec![event(1, "a"), event(2, "a")]);
}

/// Waits until some statement waits for the transaction `xid` to end.
async fn wait_for_lock_on(url: &str, xid: &str) {
    let mut connection = PgConnection::connect(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query(
            "SELECT count(*) FROM pg_locks
             WHERE NOT granted AND locktype = 'transactionid' AND transactionid::text = $1",
        )
        .bind(xid)
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "nobody waits for {xid}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Another process's uncommitted insert of `key`'s event `sequence_nr`; returns its xid.
async fn hold_event(url: &str, key: &EntityKey, sequence_nr: i64) -> (PgConnection, String) {
    let mut connection = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("BEGIN")
        .execute(&mut connection)
        .await
        .unwrap();
    insert_event(&mut connection, key, sequence_nr).await;
    let xid: String = sqlx::query("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get(0);
    (connection, xid)
}

async fn commit(mut connection: PgConnection) {
    sqlx::raw_sql("COMMIT")
        .execute(&mut connection)
        .await
        .unwrap();
}

/// Another writer commits between a batch's read and its write, first while the whole batch is
/// applied at once and then while it is applied one request at a time; then it changes a value
/// a batch is about to update: only the requests for the entities the other writer took are
/// refused; the rest of the batch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_lose_a_race_inside_a_batch_fail_alone() {
    let url = database();
    let store = Arc::new(
        PostgresStore::connect(
            &url,
            PostgresOptions {
                writers: 1,
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let keys: Vec<_> = ["blocker", "k1", "k2", "k3"]
        .into_iter()
        .map(|id| EntityKey::new("p", id))
        .collect();
    let append = |key: &EntityKey| {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move { store.append(&key, vec![event(1, "ours")], None).await })
    };

    // The writer's first batch, the blocker alone, waits for another writer's insert, so the
    // next three requests queue up and form the next batch.
    let (blocker_holder, blocker_xid) = hold_event(&url, &keys[0], 1).await;
    let (k1_holder, k1_xid) = hold_event(&url, &keys[1], 1).await;
    let (k2_holder, k2_xid) = hold_event(&url, &keys[2], 1).await;
    let blocker = append(&keys[0]);
    wait_for_lock_on(&url, &blocker_xid).await;
    let queued: Vec<_> = keys[1..].iter().map(append).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The blocker's batch loses its race and is redone one by one: a plain conflict.
    commit(blocker_holder).await;
    // The batch of k1, k2, k3 reads nothing stored and waits on k1, in key order.
    wait_for_lock_on(&url, &k1_xid).await;
    commit(k1_holder).await;
    // Redone one by one: k1 now reads the other writer's event (a plain conflict); k2 still
    // reads nothing and waits again, and loses again: a conflict "at the same time".
    wait_for_lock_on(&url, &k2_xid).await;
    commit(k2_holder).await;

    let mut results = vec![blocker.await.unwrap()];
    for request in queued {
        results.push(request.await.unwrap());
    }
    for (key, result) in keys.iter().zip(&results).take(3) {
        assert!(
            matches!(result, Err(StoreError::Conflict { key: refused, .. }) if refused == key),
            "{key}: {result:?}"
        );
    }
    let Err(StoreError::Conflict { detail, .. }) = &results[2] else {
        unreachable!()
    };
    assert!(detail.contains("at the same time"), "{detail}");
    results[3].as_ref().unwrap();

    for key in &keys[..3] {
        let recovery = store.load_journal(key).await.unwrap();
        assert_eq!(recovery.events, vec![event(1, "other")], "{key}");
    }
    let recovery = store.load_journal(&keys[3]).await.unwrap();
    assert_eq!(recovery.events, vec![event(1, "ours")]);

    // A value and an append queue up behind another blocker; the value's update then waits for
    // another writer's uncommitted update of the same row, which commits a new version first.
    let value = EntityKey::new("p", "value");
    store
        .write_value(&value, 0, ValueWrite::Update(any("one")))
        .await
        .unwrap();
    let mut value_holder = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "BEGIN; UPDATE value_entities SET version = 2, payload = 'theirs'::bytea
         WHERE entity_id = 'value'",
    )
    .execute(&mut value_holder)
    .await
    .unwrap();
    let value_xid: String = sqlx::query("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut value_holder)
        .await
        .unwrap()
        .get(0);
    let second_blocker = EntityKey::new("p", "blocker2");
    let (blocker_holder, blocker_xid) = hold_event(&url, &second_blocker, 1).await;
    let blocker = append(&second_blocker);
    wait_for_lock_on(&url, &blocker_xid).await;
    let update = {
        let (store, value) = (store.clone(), value.clone());
        tokio::spawn(async move {
            store
                .write_value(&value, 1, ValueWrite::Update(any("ours")))
                .await
        })
    };
    let bystander = append(&EntityKey::new("p", "k4"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    commit(blocker_holder).await;
    wait_for_lock_on(&url, &value_xid).await;
    commit(value_holder).await;

    assert!(matches!(
        blocker.await.unwrap(),
        Err(StoreError::Conflict { .. })
    ));
    let update = update.await.unwrap();
    assert!(
        matches!(&update, Err(StoreError::Conflict { key, .. }) if key == &value),
        "{update:?}"
    );
    bystander.await.unwrap().unwrap();
    assert_eq!(
        store.load_value(&value).await.unwrap(),
        Some(Value {
            version: 2,
            payload: Any {
                type_url: "type.googleapis.com/test.T".into(),
                value: "theirs".into(),
            },
        })
    );
    let recovery = store
        .load_journal(&EntityKey::new("p", "k4"))
        .await
        .unwrap();
    assert_eq!(recovery.events, vec![event(1, "ours")]);
}

/// The database goes away under running appenders: every call fails fast with `Unavailable`,
/// `ping` fails, and once the database is back everything works again without a restart of
/// the store, and no acknowledged append is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_heals_by_itself() {
    const APPENDERS: usize = 8;
    let server = PostgresServer::start().unwrap();
    let store = Arc::new(
        PostgresStore::connect(
            &server.url(),
            PostgresOptions {
                connect_timeout: Duration::from_secs(2),
                acquire_timeout: Duration::from_secs(2),
                statement_timeout: Duration::from_secs(2),
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|appender| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let key = EntityKey::new("outage", format!("e{appender}"));
                let label = key.to_string();
                let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
                let mut next = 1;
                while !stop.load(Ordering::Relaxed) {
                    match store.append(&key, vec![event(next, &label)], None).await {
                        Ok(()) => {
                            acknowledged.push((next, Instant::now()));
                            next += 1;
                        }
                        Err(StoreError::Unavailable(_)) => {
                            unavailable += 1;
                            // The outcome may be unknown: learn it from the store once it
                            // answers again, as an entity recovering would.
                            loop {
                                if let Ok(recovery) = store.load_journal(&key).await {
                                    next = recovery.last_sequence_nr() + 1;
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        Err(other) => panic!("{key}: {other}"),
                    }
                }
                (key, acknowledged, unavailable)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let blocking_server = Arc::new(server);
    let stopper = blocking_server.clone();
    tokio::task::spawn_blocking(move || stopper.stop().unwrap())
        .await
        .unwrap();
    let address = format!("127.0.0.1:{}", blocking_server.port());
    let key = EntityKey::new("outage", "probe");
    let fast = Duration::from_secs(1);
    let started = Instant::now();
    let unavailable = |result: Result<(), StoreError>| match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains(&address), "{message}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    };
    unavailable(store.ping().await);
    unavailable(store.append(&key, vec![event(1, "x")], None).await);
    unavailable(store.load_journal(&key).await.map(|_| ()));
    unavailable(store.load_value(&key).await.map(|_| ()));
    unavailable(
        store
            .write_value(&key, 0, ValueWrite::Update(any("x")))
            .await
            .map(|_| ()),
    );
    assert!(
        started.elapsed() < 5 * fast,
        "five calls took {:?} to fail",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let starter = blocking_server.clone();
    tokio::task::spawn_blocking(move || starter.start_again().unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let healed = Instant::now();
    store.append(&key, vec![event(1, "x")], None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut failed_during_outage = 0;
    for appender in appenders {
        let (key, acknowledged, unavailable) = appender.await.unwrap();
        failed_during_outage += unavailable;
        let label = key.to_string();
        let recovery = store.load_journal(&key).await.unwrap();
        let last = recovery.last_sequence_nr();
        assert_eq!(
            recovery.events,
            (1..=last).map(|n| event(n, &label)).collect::<Vec<_>>()
        );
        for (sequence_nr, _) in &acknowledged {
            assert!(
                *sequence_nr <= last,
                "{key}: acknowledged {sequence_nr} is lost"
            );
        }
        assert!(
            acknowledged.iter().any(|(_, at)| *at > healed),
            "{key}: no append succeeded after the outage"
        );
    }
    assert!(failed_during_outage >= APPENDERS, "{failed_during_outage}");
    drop(store);
}

/// Writes whose callers stopped waiting are still committed after the store is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_at_drop_are_committed() {
    let url = database();
    let store = store(&url).await;
    let keys: Vec<_> = (0..64)
        .map(|entity| EntityKey::new("p", format!("e{entity}")))
        .collect();
    let mut context = Context::from_waker(Waker::noop());
    for key in &keys {
        let mut append = pin!(store.append(key, vec![event(1, "a")], None));
        // The first poll queues the request; then the caller gives up waiting.
        assert!(append.as_mut().poll(&mut context).is_pending());
    }
    drop(store);
    let store = self::store(&url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for key in &keys {
        loop {
            let recovery = store.load_journal(key).await.unwrap();
            if recovery.events == vec![event(1, "a")] {
                break;
            }
            assert!(Instant::now() < deadline, "{key}: {recovery:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn undecodable_stored_rows_are_reported_not_panicked_on() {
    let url = database();
    let store = store(&url).await;
    let gap = EntityKey::new("p", "gap");
    let bad_type = EntityKey::new("p", "bad-type");
    let mut connection = PgConnection::connect(&url).await.unwrap();
    insert_event(&mut connection, &gap, 1).await;
    insert_event(&mut connection, &gap, 3).await;
    insert_event(&mut connection, &bad_type, 1).await;
    sqlx::raw_sql(
        "UPDATE journal SET type_url = '\\xff'::bytea WHERE entity_id = 'bad-type';
         INSERT INTO value_entities (persistence_id, entity_id, version, type_url, payload)
         VALUES ('p', 'bad-type', 1, '\\xfe'::bytea, '')",
    )
    .execute(&mut connection)
    .await
    .unwrap();

    let corrupt = |result: Result<(), StoreError>, mentions: &[&str]| match result {
        Err(StoreError::Corrupt(detail)) => {
            for mention in mentions {
                assert!(detail.contains(mention), "{detail:?} lacks {mention:?}");
            }
        }
        other => panic!("expected corrupt data, got {other:?}"),
    };
    let address = store.address().to_owned();
    corrupt(
        store.load_journal(&gap).await.map(|_| ()),
        &["expected event 2, found 3", "p|gap", &address],
    );
    corrupt(
        store.load_journal(&bad_type).await.map(|_| ()),
        &["event 1 of p|bad-type", "not UTF-8"],
    );
    corrupt(
        store.load_value(&bad_type).await.map(|_| ()),
        &["value of p|bad-type", "not UTF-8"],
    );
    // The store goes on working.
    store.append(&gap, vec![event(4, "a")], None).await.unwrap();
    store.ping().await.unwrap();
}

fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// A write waiting behind another writer's lock is cancelled by the server's statement timeout
/// and reported as not stored; if the server stops answering altogether, the client gives up a
/// second later and reports the outcome as unknown. Either way the store goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_writes_fail_within_the_statement_timeout() {
    let url = database();
    let store = Arc::new(
        PostgresStore::connect(
            &url,
            PostgresOptions {
                statement_timeout: Duration::from_millis(500),
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let key = EntityKey::new("p", "stuck");
    let (holder, xid) = hold_event(&url, &key, 1).await;
    let started = Instant::now();
    let result = store.append(&key, vec![event(1, "ours")], None).await;
    let elapsed = started.elapsed();
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("statement timeout"), "{message}");
            assert!(message.contains("was not stored"), "{message}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    // Now the server process serving the write freezes while the write waits.
    let append = {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = store.append(&key, vec![event(1, "ours")], None).await;
            (result, started.elapsed())
        })
    };
    wait_for_lock_on(&url, &xid).await;
    let mut connection = PgConnection::connect(&url).await.unwrap();
    let pid: i32 = sqlx::query(
        "SELECT pid FROM pg_locks
         WHERE NOT granted AND locktype = 'transactionid' AND transactionid::text = $1",
    )
    .bind(&xid)
    .fetch_one(&mut connection)
    .await
    .unwrap()
    .get(0);
    signal(pid, "-STOP");
    let (result, elapsed) = append.await.unwrap();
    signal(pid, "-CONT");
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("outcome is unknown"), "{message}");
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // The other writer wins; the store answers again.
    commit(holder).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.append(&key, vec![event(2, "ours")], None).await {
            Ok(()) => break,
            Err(error) => assert!(Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.events, vec![event(1, "other"), event(2, "ours")]);
}

/// Two proxies on one database: only one holds a consumer's lease; when its connection dies
/// the holder's next save fails (it cannot move a position it may no longer own) and the
/// other proxy can take the lease, with the saved position; two appenders on different
/// stores share one gapless event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_one_proxys_at_a_time_and_lost_with_its_connection() {
    let url = database();
    let (first, second) = (store(&url).await, store(&url).await);
    let mut lease = first.lease_offset("log/group").await.unwrap().unwrap();
    assert!(second.lease_offset("log/group").await.unwrap().is_none());
    let saved = Position {
        offset: 5,
        generation: 1,
    };
    lease.save(saved).await.unwrap();

    let mut admin = PgConnection::connect(&url).await.unwrap();
    let terminated: i64 = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
         WHERE locktype = 'advisory' AND classid = 25459 AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get(0);
    assert_eq!(terminated, 1);
    let error = lease.save(Position::default()).await.unwrap_err();
    assert!(error.to_string().contains("lease is lost"), "{error}");
    assert!(lease.position().await.is_err());

    let mut taken = loop {
        if let Some(lease) = second.lease_offset("log/group").await.unwrap() {
            break lease;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(taken.position().await.unwrap(), saved);

    for (store, entity) in [(&first, "a"), (&second, "b")] {
        store
            .append(
                &EntityKey::new("shared-log", entity),
                vec![event(1, entity), event(2, entity)],
                None,
            )
            .await
            .unwrap();
    }
    let log = first.read_event_log("shared-log", 0, 10).await.unwrap();
    let offsets: Vec<_> = log.iter().map(|event| event.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4]);
}

/// A database of schema version 1 (journals without event logs) gets its event logs from the
/// journal when the store upgrades it: each entity's events in order, offsets from 1 per
/// persistence id, and new appends continue them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_to_event_logs_numbers_the_existing_journal() {
    let url = database();
    let mut connection = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE cloudstate_schema_version (version integer PRIMARY KEY,
             description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO cloudstate_schema_version VALUES (1, 'journal, snapshots and value entities');
         CREATE TABLE journal (persistence_id bytea NOT NULL, entity_id bytea NOT NULL,
             sequence_nr bigint NOT NULL CHECK (sequence_nr > 0), type_url bytea NOT NULL,
             payload bytea NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (persistence_id, entity_id, sequence_nr));
         CREATE TABLE snapshots (persistence_id bytea NOT NULL, entity_id bytea NOT NULL,
             sequence_nr bigint NOT NULL CHECK (sequence_nr > 0), type_url bytea NOT NULL,
             payload bytea NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (persistence_id, entity_id));
         CREATE TABLE value_entities (persistence_id bytea NOT NULL, entity_id bytea NOT NULL,
             version bigint NOT NULL CHECK (version > 0), type_url bytea NOT NULL,
             payload bytea NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (persistence_id, entity_id));
         INSERT INTO journal (persistence_id, entity_id, sequence_nr, type_url, payload, written_at)
         VALUES ('p', 'b', 1, 't', 'b1', '2024-01-01'), ('p', 'a', 1, 't', 'a1', '2024-01-02'),
                ('p', 'a', 2, 't', 'a2', '2024-01-02'), ('p', 'b', 2, 't', 'b2', '2024-01-03'),
                ('q', 'a', 1, 't', 'q1', '2024-01-01');",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    let store = store(&url).await;
    store
        .append(&EntityKey::new("p", "a"), vec![event(3, "a")], None)
        .await
        .unwrap();
    let order = |log: Vec<cloudstate_store::LoggedEvent>| -> Vec<(u64, String, u64)> {
        log.into_iter()
            .map(|e| (e.offset, e.key.entity_id.to_string(), e.sequence_nr))
            .collect()
    };
    let entry = |offset, entity: &str, sequence_nr| (offset, entity.to_owned(), sequence_nr);
    assert_eq!(
        order(store.read_event_log("p", 0, 10).await.unwrap()),
        vec![
            entry(1, "b", 1),
            entry(2, "a", 1),
            entry(3, "a", 2),
            entry(4, "b", 2),
            entry(5, "a", 3)
        ]
    );
    assert_eq!(
        order(store.read_event_log("q", 0, 10).await.unwrap()),
        vec![entry(1, "a", 1)]
    );
}
