//! What an active entity costs in memory, and whether the memory comes back once it has
//! passivated.
//!
//! Round after round, a fresh set of carts is activated: each of `entities` new keys gets one
//! `AddItem` (up to `concurrency` in flight). Then the resident memory (RSS) of the watched
//! processes is read, the proxy's `active_entities` gauge is polled until every entity has
//! passivated (the proxy's `--passivation-timeout` decides when), and the RSS is read again.
//! The cost of an active entity is the RSS growth of the first round divided by its entities;
//! the later rounds show whether the memory of passivated entities is reused or returned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::Method;
use http::uri::PathAndQuery;
use prost::Message;
use serde::Serialize;

use crate::cart::{add_line_item, user_id};
use crate::cpu::Watched;
use crate::runner::ErrorCounts;
use crate::transport::{Framed, GrpcPool, HttpPool};

/// How often the `active_entities` gauge is read while waiting for passivation.
const POLL: Duration = Duration::from_millis(200);

/// The RSS of each watched process, in bytes (a process that could not be read is left out).
pub type Rss = BTreeMap<String, u64>;

/// What one round found.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Round number, from 1.
    pub round: usize,
    /// Seconds to activate the round's entities.
    pub activate_s: f64,
    /// Calls that failed, by kind.
    pub errors: BTreeMap<String, u64>,
    /// The proxy's `active_entities` once the round's entities were activated.
    pub active_entities: Option<u64>,
    /// RSS with the round's entities active.
    pub rss_active: Rss,
    /// Seconds from the end of the activation until the gauge read 0 (`None`: it did not
    /// within the wait).
    pub passivated_after_s: Option<f64>,
    /// RSS once they had passivated (or the wait ended).
    pub rss_passivated: Rss,
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct EntitiesReport {
    /// Always `entities`.
    pub scenario: &'static str,
    /// The proxy.
    pub target: String,
    /// New entities activated per round.
    pub entities_per_round: usize,
    /// Distinct keys used over all rounds.
    pub keys_used: usize,
    /// Calls in flight while activating.
    pub concurrency: usize,
    /// RSS before the first round.
    pub rss_before: Rss,
    /// RSS growth of the first round per entity it activated, in bytes; empty if some of them
    /// had passivated already when the RSS was read (the passivation timeout was shorter than
    /// the activation).
    pub bytes_per_active_entity: BTreeMap<String, f64>,
    /// Every round.
    pub rounds: Vec<Round>,
}

/// The scenario's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// New entities per round.
    pub entities: usize,
    /// Rounds.
    pub rounds: usize,
    /// Calls in flight while activating.
    pub concurrency: usize,
    /// Longest wait for every entity to passivate after a round.
    pub passivation_wait: Duration,
}

/// Runs the rounds against the proxy reached through `pool` (gRPC) and `metrics` (its HTTP
/// port), keys named after `run_id`, reading the RSS of `watched`.
pub async fn run(
    pool: GrpcPool,
    metrics: HttpPool,
    run_id: &str,
    plan: &Plan,
    watched: &[Watched],
) -> anyhow::Result<EntitiesReport> {
    let rss_before = rss_of(watched);
    let mut rounds = Vec::with_capacity(plan.rounds);
    for round in 0..plan.rounds {
        let first = round * plan.entities;
        eprintln!(
            "round {}: activating {} carts (keys {first}..{})",
            round + 1,
            plan.entities,
            first + plan.entities
        );
        let started = Instant::now();
        let errors = activate(
            &pool,
            run_id,
            first..first + plan.entities,
            plan.concurrency,
        )
        .await?;
        let activate_s = started.elapsed().as_secs_f64();
        let active = active_entities(&metrics).await;
        let rss_active = rss_of(watched);
        eprintln!("round {}: waiting for passivation", round + 1);
        let waited = Instant::now();
        let mut passivated_after_s = None;
        while waited.elapsed() < plan.passivation_wait {
            if active_entities(&metrics).await == Some(0) {
                passivated_after_s = Some(waited.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        rounds.push(Round {
            round: round + 1,
            activate_s,
            errors: errors.by_name(),
            active_entities: active,
            rss_active,
            passivated_after_s,
            rss_passivated: rss_of(watched),
        });
    }
    let bytes_per_active_entity = match rounds.first() {
        Some(first) if first.active_entities == Some(plan.entities as u64) => {
            per_entity(&rss_before, &first.rss_active, plan.entities)
        }
        Some(first) => {
            eprintln!(
                "only {:?} of {} entities were active when the RSS was read: no bytes per \
                 entity (make the proxy's passivation timeout longer than the activation)",
                first.active_entities, plan.entities
            );
            BTreeMap::new()
        }
        None => BTreeMap::new(),
    };
    Ok(EntitiesReport {
        scenario: "entities",
        target: String::new(),
        entities_per_round: plan.entities,
        keys_used: plan.entities * plan.rounds,
        concurrency: plan.concurrency,
        rss_before,
        bytes_per_active_entity,
        rounds,
    })
}

/// RSS growth from `before` to `after` per entity, for every process read both times.
pub fn per_entity(before: &Rss, after: &Rss, entities: usize) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, after)| {
            let before = before.get(name)?;
            Some((
                name.clone(),
                (*after as f64 - *before as f64) / entities.max(1) as f64,
            ))
        })
        .collect()
}

/// Sends one `AddItem` to each key of `keys`, `concurrency` at a time, each worker in the task of
/// its connection.
async fn activate(
    pool: &GrpcPool,
    run_id: &str,
    keys: std::ops::Range<usize>,
    concurrency: usize,
) -> anyhow::Result<ErrorCounts> {
    let path = PathAndQuery::from_static("/com.example.shoppingcart.ShoppingCart/AddItem");
    let workers = concurrency.max(1);
    let run_id: Arc<str> = run_id.into();
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let mut client = pool.client(worker);
        let (path, run_id, keys) = (path.clone(), run_id.clone(), keys.clone());
        tasks.push(pool.home(worker).run(async move {
            let mut errors = ErrorCounts::default();
            for key in keys.skip(worker).step_by(workers) {
                let request = Framed::new(&add_line_item(user_id(&run_id, key)).encode_to_vec());
                if let Err(error) = client.unary(&path, &request).await {
                    errors.add(error);
                }
            }
            errors
        }));
    }
    let mut errors = ErrorCounts::default();
    for task in tasks {
        errors.merge(&task.await.context("an activation task failed")?);
    }
    Ok(errors)
}

/// The proxy's gauge of the entities loaded in memory.
const ACTIVE_ENTITIES: &str = "cloudstate_active_entities";

/// The sum of the proxy's active entity gauges (all services), `None` if unreadable.
async fn active_entities(metrics: &HttpPool) -> Option<u64> {
    let mut client = metrics.client(0);
    let request = client.request(&Method::GET, "/metrics", None);
    let text = client.call(&request).await.ok()?;
    sum_gauge(std::str::from_utf8(&text).ok()?, ACTIVE_ENTITIES)
}

/// The sum of every sample of the metric `name` in a Prometheus text exposition.
pub fn sum_gauge(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((metric, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = metric.split('{').next().unwrap_or(metric);
        if metric == name {
            let value: f64 = value.parse().ok()?;
            *found.get_or_insert(0) += value as u64;
        }
    }
    found
}

/// The RSS of every watched process that can be read.
fn rss_of(watched: &[Watched]) -> Rss {
    watched
        .iter()
        .filter_map(|process| Some((process.name.clone(), rss_bytes(process.pid)?)))
        .collect()
}

/// The resident memory of process `pid`, in bytes (Linux /proc).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmRSS` of the text of /proc/PID/status, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_comes_from_vm_rss() {
        let status = "Name:\tproxy\nVmPeak:\t  900 kB\nVmRSS:\t  2048 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_bytes(std::process::id()).is_some_and(|rss| rss > 0));
    }

    #[test]
    fn gauges_are_summed_over_their_labels() {
        let text = "# HELP cloudstate_active_entities Entities loaded in memory.\n\
                    # TYPE cloudstate_active_entities gauge\n\
                    cloudstate_active_entities{service=\"a\"} 3\n\
                    cloudstate_active_entities{service=\"b\"} 4\n\
                    cloudstate_active_entities_total 99\n\
                    cloudstate_passivations_total{service=\"a\"} 7\n\
                    # EOF\n";
        assert_eq!(sum_gauge(text, ACTIVE_ENTITIES), Some(7));
        assert_eq!(sum_gauge(text, "cloudstate_entity_restarts"), None);
    }

    #[test]
    fn the_cost_per_entity_is_the_growth_divided() {
        let before = Rss::from([("proxy".to_owned(), 1000), ("uf".to_owned(), 500)]);
        let after = Rss::from([("proxy".to_owned(), 21_000), ("gone".to_owned(), 1)]);
        assert_eq!(
            per_entity(&before, &after, 10),
            BTreeMap::from([("proxy".to_owned(), 2000.0)])
        );
    }
}
