//! Which entity each client addresses on each call.

/// The entity key of key number `key` in run `run_id`: `<run id>-<key>`. The random run id
/// makes every run start from fresh entities, even on a persistent store.
pub fn entity_id(run_id: &str, key: usize) -> String {
    format!("{run_id}-{key}")
}

/// Spreads `clients` closed-loop clients over `keys` entity keys.
///
/// With at least as many keys as clients, client `i` owns the keys `i, i + C, i + 2C, ...`
/// and cycles through them: no two clients ever address the same key, and every key is used.
/// With fewer keys than clients, client `i` stays on key `i mod K`, so the clients pile up on
/// the keys evenly (all of them on key 0 when there is a single key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPlan {
    keys: usize,
    clients: usize,
}

impl KeyPlan {
    /// A plan for `keys` keys and `clients` clients (both at least 1).
    pub fn new(keys: usize, clients: usize) -> Self {
        KeyPlan {
            keys: keys.max(1),
            clients: clients.max(1),
        }
    }

    /// Number of keys.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// The key client `client` addresses on its `iteration`-th call.
    pub fn key(&self, client: usize, iteration: u64) -> usize {
        if self.keys < self.clients {
            return client % self.keys;
        }
        let client = client % self.clients;
        let owned = self.owned_by(client) as u64;
        client + (iteration % owned) as usize * self.clients
    }

    /// How many keys client `client` cycles through (when there are at least as many keys as
    /// clients).
    fn owned_by(&self, client: usize) -> usize {
        (self.keys - client).div_ceil(self.clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    /// The keys each client visits over enough iterations to see all of them.
    fn visited(plan: KeyPlan, clients: usize) -> Vec<BTreeSet<usize>> {
        (0..clients)
            .map(|client| {
                (0..plan.keys() as u64 * 2)
                    .map(|iteration| plan.key(client, iteration))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn entity_ids_are_the_run_id_and_the_key() {
        assert_eq!(entity_id("0a1b2c3d", 42), "0a1b2c3d-42");
    }

    #[test]
    fn one_key_puts_every_client_on_key_zero() {
        let plan = KeyPlan::new(1, 64);
        for client in 0..64 {
            for iteration in 0..10 {
                assert_eq!(plan.key(client, iteration), 0);
            }
        }
    }

    #[test]
    fn many_keys_are_partitioned_between_clients_and_all_used() {
        for (keys, clients) in [(1000, 64), (64, 64), (65, 64), (10, 3), (7, 1)] {
            let plan = KeyPlan::new(keys, clients);
            let sets = visited(plan, clients);
            let mut owner = HashMap::new();
            for (client, set) in sets.iter().enumerate() {
                assert!(!set.is_empty(), "client {client} has no key");
                for &key in set {
                    assert!(key < keys);
                    assert_eq!(owner.insert(key, client), None, "key {key} shared");
                }
            }
            assert_eq!(owner.len(), keys, "{keys} keys, {clients} clients");
        }
    }

    #[test]
    fn clients_cycle_through_their_keys_in_order() {
        let plan = KeyPlan::new(1000, 64);
        let first: Vec<usize> = (0..4).map(|i| plan.key(3, i)).collect();
        assert_eq!(first, [3, 67, 131, 195]);
        // 1,000 = 15 × 64 + 40: clients 0 to 39 own 16 keys, the others 15.
        assert_eq!(plan.key(39, 15), 999);
        assert_eq!(plan.key(39, 16), 39);
        assert_eq!(plan.key(40, 14), 936);
        assert_eq!(plan.key(40, 15), 40);
        // Client 0 owns 16 keys, the last one being 960.
        assert_eq!(plan.key(0, 15), 960);
        assert_eq!(plan.key(0, 16), 0);
    }

    #[test]
    fn fewer_keys_than_clients_spread_clients_evenly() {
        let plan = KeyPlan::new(4, 64);
        let mut per_key = [0; 4];
        for client in 0..64 {
            per_key[plan.key(client, 0)] += 1;
            assert_eq!(plan.key(client, 0), plan.key(client, 99));
        }
        assert_eq!(per_key, [16; 4]);
    }
}
