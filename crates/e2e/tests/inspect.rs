//! `cloudstate-proxy inspect`, end to end: the test user function writes through the real proxy
//! into the embedded store and PostgreSQL; the real binary lists the entities and prints an
//! event sourced entity's snapshot and events and a value entity's value, with payloads as
//! JSON (descriptors from a file or from the running user function) or base64.

use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use cloudstate_e2e::proto::counter_client::CounterClient;
use cloudstate_e2e::proto::ledger_client::LedgerClient;
use cloudstate_e2e::proto::{IncrementRequest, RecordRequest, Recorded};
use cloudstate_e2e::{Service, UserFunction};
use cloudstate_testutil::postgres::PostgresServer;
use cloudstate_testutil::{binary, free_port, temp_dir};
use prost::Message;
use serde_json::{Value as Json, json};

/// The test user function's descriptors, as it reports them at discovery.
const DESCRIPTORS: &[u8] = cloudstate::include_descriptor_set!();

/// Writes through the proxy: ledger `l1` records 1..=6 (a snapshot after the fifth event),
/// ledger `l2` records 10, counter `c1` is incremented twice by 7 (version 2).
async fn write_entities(service: &Service) {
    let channel = service.proxy.channel().await.unwrap();
    let mut ledger = LedgerClient::new(channel.clone());
    for amount in 1..=6 {
        let request = RecordRequest {
            id: "l1".into(),
            amount,
            forward_to: String::new(),
        };
        ledger.record(request).await.unwrap();
    }
    let request = RecordRequest {
        id: "l2".into(),
        amount: 10,
        forward_to: String::new(),
    };
    ledger.record(request).await.unwrap();
    let mut counter = CounterClient::new(channel);
    for _ in 0..2 {
        let request = IncrementRequest {
            id: "c1".into(),
            by: 7,
        };
        counter.increment(request).await.unwrap();
    }
}

/// Runs `cloudstate-proxy inspect` with `args`.
fn inspect(args: &[&str]) -> Output {
    Command::new(binary("cloudstate-proxy", "cloudstate-proxy"))
        .arg("inspect")
        .args(args)
        .env_remove("CLOUDSTATE_STORE")
        .output()
        .unwrap()
}

/// The JSON lines of a successful `inspect`.
fn lines(args: &[&str]) -> Vec<Json> {
    let output = inspect(args);
    assert!(
        output.status.success(),
        "inspect {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The stderr of a failed `inspect`.
fn failure(args: &[&str]) -> String {
    let output = inspect(args);
    assert!(!output.status.success(), "inspect {args:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

const LEDGER_TYPE: &str = "type.googleapis.com/cloudstate.e2e.Recorded";
const VALUE_TYPE: &str = "type.googleapis.com/cloudstate.e2e.Value";

/// The checks every store passes once [`write_entities`] ran; `with_descriptors` are the flags
/// that make payloads JSON.
fn check_listings_and_entities(store: &str, with_descriptors: &[&str]) {
    let store = format!("--store={store}");
    assert_eq!(
        lines(&[&store, "ledger"]),
        vec![
            json!({"entity_id": "l1", "last_sequence_nr": 6, "snapshot_sequence_nr": 5, "value_version": null}),
            json!({"entity_id": "l2", "last_sequence_nr": 1, "snapshot_sequence_nr": null, "value_version": null}),
        ]
    );
    assert_eq!(
        lines(&[&store, "counter"]),
        vec![
            json!({"entity_id": "c1", "last_sequence_nr": 0, "snapshot_sequence_nr": null, "value_version": 2}),
        ]
    );
    assert_eq!(
        lines(&[&store, "no-such-persistence-id"]),
        Vec::<Json>::new()
    );

    let mut args = vec![store.as_str(), "ledger", "l1"];
    args.extend(with_descriptors);
    let mut expected = vec![
        json!({"record": "snapshot", "sequence_nr": 5, "type": VALUE_TYPE, "payload": {"value": "15"}}),
    ];
    expected.extend((1..=6).map(|n| {
        json!({"record": "event", "sequence_nr": n, "type": LEDGER_TYPE, "payload": {"amount": n.to_string()}})
    }));
    assert_eq!(lines(&args), expected);

    let mut args = vec![store.as_str(), "counter", "c1"];
    args.extend(with_descriptors);
    assert_eq!(
        lines(&args),
        vec![
            json!({"record": "value", "version": 2, "type": VALUE_TYPE, "payload": {"value": "14"}})
        ]
    );

    // Without descriptors the payloads are base64 of the bytes stored.
    let base64 =
        base64::engine::general_purpose::STANDARD.encode(Recorded { amount: 10 }.encode_to_vec());
    assert_eq!(
        lines(&[&store, "ledger", "l2"]),
        vec![
            json!({"record": "event", "sequence_nr": 1, "type": LEDGER_TYPE, "payload_base64": base64})
        ]
    );
    assert_eq!(lines(&[&store, "ledger", "nobody"]), Vec::<Json>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reads_the_embedded_store_read_only_once_the_proxy_stopped() {
    let dir = temp_dir("inspect-");
    let store = format!("embedded:{}", dir.path().display());
    let user_function = UserFunction::test_function(free_port()).unwrap();
    let service = Service::with(user_function, &store, &[]).unwrap();
    write_entities(&service).await;

    // redb admits no reader beside a writer of another process: a clear error, nothing read.
    let error = failure(&["--store", &store, "ledger"]);
    assert!(error.contains("open in another process"), "{error}");

    let Service {
        user_function,
        mut proxy,
    } = service;
    proxy.process.terminate(Duration::from_secs(10)).unwrap();
    let file = dir.path().join(cloudstate_store_embedded::FILE_NAME);
    let before = std::fs::read(&file).unwrap();

    let descriptors = dir.path().join("descriptors.bin");
    std::fs::write(&descriptors, DESCRIPTORS).unwrap();
    let descriptors = format!("--descriptor-set={}", descriptors.display());
    check_listings_and_entities(&store, &[&descriptors]);
    // The same, with the descriptors the running user function reports at discovery.
    let address = format!("--user-function=127.0.0.1:{}", user_function.port);
    check_listings_and_entities(&store, &[&address]);
    assert!(
        std::fs::read(&file).unwrap() == before,
        "inspecting changed the store's file"
    );

    let missing = temp_dir("inspect-empty-");
    let error = failure(&[
        "--store",
        &format!("embedded:{}", missing.path().display()),
        "ledger",
    ]);
    assert!(error.contains("there is no store"), "{error}");
    assert!(
        std::fs::read_dir(missing.path()).unwrap().next().is_none(),
        "inspect created files"
    );
    let error = failure(&["--store", "memory", "ledger"]);
    assert!(error.contains("nothing to inspect"), "{error}");
    let error = failure(&["--store", &store, "--descriptor-set", "/nonexistent", "x"]);
    assert!(error.contains("/nonexistent"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reads_postgres_beside_a_running_proxy() {
    let server = PostgresServer::shared().unwrap();
    let url = server.create_database().unwrap();
    let user_function = UserFunction::test_function(free_port()).unwrap();
    let service = Service::with(user_function, &url, &[]).unwrap();
    write_entities(&service).await;
    let address = format!("--user-function=127.0.0.1:{}", service.user_function.port);
    check_listings_and_entities(&url, &[&address]);

    // A database no proxy has used is refused, and inspecting it creates nothing there.
    let empty = server.create_database().unwrap();
    let error = failure(&["--store", &empty, "ledger"]);
    assert!(error.contains("holds no Cloudstate store"), "{error}");
    let tables = server
        .client("psql")
        .args(["-At", "-d", &empty, "-c"])
        .arg("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&tables.stdout).trim(), "0");
}
