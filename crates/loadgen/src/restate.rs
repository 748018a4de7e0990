//! The peer: a keyed counter on Restate (`scripts/restate-counter`, a virtual object on
//! Restate's TypeScript SDK behind the Restate server), driven through Restate's HTTP ingress
//! with JSON, as the cart is driven through the proxy's HTTP/JSON API:
//! `POST /Counter/<key>/add` with the body `1` answers the new count.
//!
//! The keys follow the same plan as the cart's, named `<run id>-<key>`. After the run the check
//! reads every counter (`POST /Counter/<key>/get`) and compares it with the acknowledged adds,
//! like the cart check.

use std::sync::atomic::{AtomicU64, Ordering};

use http::Method;

use crate::check::{self, CheckReport, KeyCheck};
use crate::keys::{KeyPlan, entity_id};
use crate::runner::Workload;
use crate::transport::{CallError, HttpClient, HttpPool, HttpRequest};

/// The counter workload over Restate's ingress.
#[derive(Debug)]
pub struct RestateWorkload {
    pool: HttpPool,
    plan: KeyPlan,
    ids: Vec<String>,
    /// Per key, the prepared `add` request.
    requests: Vec<HttpRequest>,
    acked: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
}

/// A client's state: its connection and its place in its key sequence.
#[derive(Debug)]
pub struct RestateWorker {
    client: HttpClient,
    index: usize,
    iteration: u64,
}

/// The path of a handler of counter `id`.
fn path(id: &str, handler: &str) -> String {
    format!("/Counter/{id}/{handler}")
}

/// The count in a reply: a JSON number.
pub fn count_of(reply: &[u8]) -> Option<i64> {
    serde_json::from_slice::<i64>(reply).ok()
}

impl RestateWorkload {
    /// A workload over `plan.keys()` counters named after `run_id`.
    pub fn new(pool: HttpPool, plan: KeyPlan, run_id: &str) -> Self {
        let ids: Vec<String> = (0..plan.keys()).map(|key| entity_id(run_id, key)).collect();
        let requests = ids
            .iter()
            .map(|id| pool.request(&Method::POST, &path(id, "add"), Some(b"1")))
            .collect();
        RestateWorkload {
            acked: (0..plan.keys()).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..plan.keys()).map(|_| AtomicU64::new(0)).collect(),
            pool,
            plan,
            ids,
            requests,
        }
    }

    /// Reads every counter back with up to `concurrency` reads in flight and compares it with
    /// the acknowledged adds. Call it once the run is over.
    pub async fn check(&self, concurrency: usize) -> CheckReport {
        let readers = (0..concurrency.clamp(1, self.plan.keys()))
            .map(|reader| self.pool.client(reader))
            .collect();
        let observed = check::read_keys(self.plan.keys(), readers, async |client, key| {
            let request = client.request(&Method::POST, &path(&self.ids[key], "get"), None);
            let reply = client.call(&request).await.ok()?;
            count_of(&reply)
        })
        .await;
        CheckReport::new(observed.into_iter().enumerate().map(|(key, observed)| {
            KeyCheck::new(
                key,
                self.acked[key].load(Ordering::Relaxed),
                self.failed[key].load(Ordering::Relaxed),
                observed,
            )
        }))
    }
}

impl Workload for RestateWorkload {
    type Client = RestateWorker;

    fn client(&self, index: usize) -> RestateWorker {
        RestateWorker {
            client: self.pool.client(index),
            index,
            iteration: 0,
        }
    }

    async fn call(&self, worker: &mut RestateWorker) -> Result<(), CallError> {
        let key = self.plan.key(worker.index, worker.iteration);
        worker.iteration += 1;
        let result = match worker.client.call(&self.requests[key]).await {
            // The new count includes this add.
            Ok(reply) if count_of(&reply).is_some_and(|count| count >= 1) => Ok(()),
            Ok(_) => Err(CallError::BadReply),
            Err(error) => Err(error),
        };
        let counter = if result.is_ok() {
            &self.acked[key]
        } else {
            &self.failed[key]
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_json_numbers() {
        assert_eq!(count_of(b"42"), Some(42));
        assert_eq!(count_of(b" 7\n"), Some(7));
        assert_eq!(count_of(b"\"7\""), None);
        assert_eq!(count_of(b"{}"), None);
        assert_eq!(path("0a1b2c3d-5", "add"), "/Counter/0a1b2c3d-5/add");
    }
}
