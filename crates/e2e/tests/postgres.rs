//! The proxy on PostgreSQL, end to end: a throw-away PostgreSQL cluster (started by the test
//! harness), the real proxy binary and the Rust shopping cart. Fencing between two proxies,
//! a database outage, and a proxy killed under load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cloudstate_e2e::{Cart, Service, UserFunction};
use cloudstate_testutil::postgres::PostgresServer;
use cloudstate_testutil::{Proxy, ProxyOptions, free_port, http_get_status};
use prost::Message;
use shopping_cart::proto::persistence::ItemAdded;
use tonic::Code;

/// The cart's journal for `user` as stored: `(sequence number, product id)` in order.
fn journal(server: &PostgresServer, database_url: &str, user: &str) -> Vec<(u64, String)> {
    let query = format!(
        "SELECT sequence_nr, encode(payload, 'hex') FROM journal \
         WHERE persistence_id = convert_to('shopping-cart', 'UTF8') \
         AND entity_id = convert_to('{user}', 'UTF8') ORDER BY sequence_nr"
    );
    let output = server
        .client("psql")
        .args(["-At", "-F", ",", "-d", database_url, "-c", &query])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (sequence_nr, hex) = line.split_once(',').unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let event = ItemAdded::decode(&bytes[..]).unwrap();
            (sequence_nr.parse().unwrap(), event.item.unwrap().product_id)
        })
        .collect()
}

fn proxy(user_function: &UserFunction, database_url: &str, args: &[&str]) -> Proxy {
    let mut proxy = Proxy::start(ProxyOptions {
        user_function_port: user_function.port,
        store: database_url.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
    })
    .unwrap();
    proxy.wait_ready(Duration::from_secs(60)).unwrap();
    proxy
}

async fn cart(proxy: &Proxy) -> Cart {
    Cart(
        shopping_cart::proto::shopping_cart_client::ShoppingCartClient::new(
            proxy.channel().await.unwrap(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn carts_live_in_postgres_across_proxy_restarts() {
    let server = PostgresServer::shared().unwrap();
    let url = server.create_database().unwrap();
    let service = Service::rust_cart(&url, &[]).unwrap();
    let mut c = service.cart().await.unwrap();
    for product in ["a", "b", "c", "d", "e", "f"] {
        c.add("pat", product, 1).await.unwrap();
    }
    let Service {
        user_function,
        mut proxy,
    } = service;
    proxy.process.terminate(Duration::from_secs(10)).unwrap();

    let proxy = self::proxy(&user_function, &url, &[]);
    let mut c = cart(&proxy).await;
    let items = c.get("pat").await.unwrap();
    assert_eq!(items.len(), 6, "{items:?}");
    assert_eq!(journal(server, &url, "pat").len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_on_one_database_never_fork_a_journal() {
    let server = PostgresServer::shared().unwrap();
    let url = server.create_database().unwrap();
    let user_function = UserFunction::rust_cart(free_port()).unwrap();
    let proxies = [
        proxy(&user_function, &url, &[]),
        proxy(&user_function, &url, &[]),
    ];

    // Clients of both proxies add to the same cart: each proxy runs its own copy of the entity,
    // so their appends race; the store must let exactly one win each sequence number.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (n, proxy) in proxies.iter().cycle().take(8).enumerate() {
        let mut c = cart(proxy).await;
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut acked, mut conflicts) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let product = format!("c{n}-{i:05}");
                match c.add("shared", &product, 1).await {
                    Ok(()) => acked.push(product),
                    Err(status) if status.code() == Code::Aborted => conflicts += 1,
                    Err(status) => panic!("unexpected failure {status:?}"),
                }
                i += 1;
            }
            (acked, conflicts)
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut conflicts = 0;
    for client in clients {
        let (a, c) = client.await.unwrap();
        acked.extend(a);
        conflicts += c;
    }
    assert!(conflicts > 0, "the two proxies should have raced");

    // One history: consecutive sequence numbers, every acknowledged item exactly once, nothing
    // that was refused.
    let journal = journal(server, &url, "shared");
    let numbers: Vec<u64> = journal.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=journal.len() as u64).collect::<Vec<_>>());
    let mut stored: Vec<String> = journal.into_iter().map(|(_, p)| p).collect();
    stored.sort();
    acked.sort();
    assert_eq!(
        stored, acked,
        "the journal holds exactly the acknowledged items"
    );

    // A proxy that loads the entity afresh reads that history. (The two running proxies may
    // still hold stale copies in memory until their next write conflicts: without a cluster
    // deciding who owns the entity, the store can prevent forks, not stale reads.)
    for mut proxy in proxies {
        proxy.process.terminate(Duration::from_secs(10)).unwrap();
    }
    let fresh = proxy(&user_function, &url, &[]);
    let items = cart(&fresh).await.get("shared").await.unwrap();
    assert_eq!(items.len(), acked.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_fails_commands_fast_and_service_resumes_by_itself() {
    let server = PostgresServer::start().unwrap();
    let url = server.url();
    let service = Service::rust_cart(&url, &["--command-timeout", "10s"]).unwrap();
    let mut c = service.cart().await.unwrap();
    c.add("olga", "before", 1).await.unwrap();

    server.stop().unwrap();
    // A new entity must read the store: it fails at once with UNAVAILABLE, not at the timeout.
    let error = c.add("olivia", "during", 1).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(error.message().contains("store"), "{error:?}");
    // A loaded entity must write: the same.
    let error = c.add("olga", "during", 1).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert_eq!(http_get_status(service.proxy.port, "/ready"), Some(503));

    server.start_again().unwrap();
    let mut resumed = false;
    for _ in 0..100 {
        if c.add("olga", "after", 1).await.is_ok() {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "commands succeed again once the database is back");
    assert_eq!(http_get_status(service.proxy.port, "/ready"), Some(200));
    assert_eq!(
        c.get("olga").await.unwrap(),
        vec![("after".into(), 1), ("before".into(), 1)],
        "the acknowledged add from before the outage is there, the failed one is not"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_killed_under_load_loses_no_acknowledged_command() {
    let server = PostgresServer::shared().unwrap();
    let url = server.create_database().unwrap();
    let user_function = UserFunction::rust_cart(free_port()).unwrap();
    let mut first = proxy(&user_function, &url, &[]);

    // Sixteen clients, one cart each, adding items p00000, p00001, ... in order.
    let mut clients = Vec::new();
    for n in 0..16 {
        let mut c = cart(&first).await;
        clients.push(tokio::spawn(async move {
            let user = format!("k{n}");
            let (mut acked, mut failed) = (0usize, 0usize);
            for i in 0.. {
                match c.add(&user, &format!("p{i:05}"), 1).await {
                    Ok(()) => acked = i + 1,
                    // The proxy died: this call's outcome is unknown, and it is the last.
                    Err(_) => {
                        failed = 1;
                        break;
                    }
                }
            }
            (user, acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.process.kill();
    let mut results = BTreeMap::new();
    for client in clients {
        let (user, acked, failed) = client.await.unwrap();
        results.insert(user, (acked, failed));
    }

    // After a restart, every acknowledged add is in the journal exactly once and in order; the
    // one call in flight per client may or may not have been committed.
    let second = proxy(&user_function, &url, &[]);
    for (user, (acked, in_flight)) in results {
        assert!(acked > 0, "{user} made progress before the kill");
        let journal = journal(server, &url, &user);
        let expected: Vec<(u64, String)> = (0..journal.len())
            .map(|i| (i as u64 + 1, format!("p{i:05}")))
            .collect();
        assert_eq!(journal, expected, "{user}: one ordered history");
        assert!(
            journal.len() >= acked && journal.len() <= acked + in_flight,
            "{user}: {} stored, {acked} acknowledged, {in_flight} in flight",
            journal.len()
        );
        let items = cart(&second).await.get(&user).await.unwrap();
        assert_eq!(
            items.len(),
            journal.len(),
            "{user}: the proxy recovers what is stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_entity_killed_under_load_loses_no_acknowledged_command() {
    let server = PostgresServer::shared().unwrap();
    let url = server.create_database().unwrap();
    let user_function = UserFunction::rust_cart(free_port()).unwrap();
    let mut first = proxy(&user_function, &url, &[]);

    // Sixteen clients on ONE cart: its commands queue up and run in batches whose events share
    // one append. Each client adds c<n>-00000, c<n>-00001, ... in order.
    let mut clients = Vec::new();
    for n in 0..16 {
        let mut c = cart(&first).await;
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let product = format!("c{n:02}-{i:05}");
                if c.add("hot", &product, 1).await.is_err() {
                    return (acked, product); // the proxy died; this one's outcome is unknown
                }
                acked.push(product);
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.process.kill();
    let mut acked = Vec::new();
    let mut in_flight = Vec::new();
    for client in clients {
        let (a, last) = client.await.unwrap();
        acked.extend(a);
        in_flight.push(last);
    }

    let _second = proxy(&user_function, &url, &[]);
    let journal = journal(server, &url, "hot");
    let numbers: Vec<u64> = journal.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (1..=journal.len() as u64).collect::<Vec<_>>(),
        "one history"
    );
    let stored: Vec<&String> = journal.iter().map(|(_, p)| p).collect();
    for product in &acked {
        assert!(
            stored.contains(&product),
            "acknowledged {product} is stored"
        );
    }
    for product in &stored {
        assert!(
            acked.contains(product) || in_flight.contains(product),
            "{product} was stored but never sent"
        );
    }
    // Each client's items are stored in the order it sent them, each once.
    for n in 0..16 {
        let prefix = format!("c{n:02}-");
        let mine: Vec<&&String> = stored.iter().filter(|p| p.starts_with(&prefix)).collect();
        let expected: Vec<String> = (0..mine.len()).map(|i| format!("{prefix}{i:05}")).collect();
        assert_eq!(
            mine.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            expected
        );
    }
}
