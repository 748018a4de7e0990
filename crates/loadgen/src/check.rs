//! The end-of-run correctness checks.
//!
//! Keyed workloads (cart, counters): does every key hold what was acknowledged? "Acknowledged
//! means durable": every `AddItem` (or increment) that got an OK must be in the cart (or the
//! counter). A call that failed (an error status or a client timeout) may or may not have been
//! applied, so it widens the accepted range by one; nothing else may change the quantity.
//!
//! Presence: once every connection is closed, is every user reported offline, and did the
//! monitors report nothing but the changes made?

use std::time::Duration;

use serde::Serialize;

use crate::report::{counted, format_count};

/// How often a key is read before it counts as unreadable.
const READ_ATTEMPTS: u32 = 3;

/// Reads every key of `0..keys` after a run, one reader per client in `readers` (reader `r`
/// reads keys `r`, `r + R`, `r + 2R`, ...), all in the current task. A key that `read` cannot
/// read (`None`) is tried again after a pause, three times in all, then left `None`.
pub async fn read_keys<C>(
    keys: usize,
    readers: Vec<C>,
    read: impl AsyncFn(&mut C, usize) -> Option<i64>,
) -> Vec<Option<i64>> {
    let count = readers.len().max(1);
    let read = &read;
    let found = futures_util::future::join_all(readers.into_iter().enumerate().map(
        |(reader, mut client)| async move {
            let mut found = Vec::new();
            for key in (reader..keys).step_by(count) {
                let mut value = None;
                for attempt in 1..=READ_ATTEMPTS {
                    value = read(&mut client, key).await;
                    if value.is_some() || attempt == READ_ATTEMPTS {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                found.push((key, value));
            }
            found
        },
    ))
    .await;
    let mut observed = vec![None; keys];
    for (key, value) in found.into_iter().flatten() {
        observed[key] = value;
    }
    observed
}

/// How one key's observed quantity compares with what the run sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The quantity equals the number of acknowledged calls, and no call failed.
    Exact,
    /// Some calls failed, and the quantity is between the acknowledged count and the
    /// acknowledged count plus the failed calls.
    WithinFailures,
    /// The quantity is outside the accepted range: an acknowledged call was lost, or a call
    /// was applied more often than it was sent.
    Mismatch,
    /// The cart could not be read.
    Unverified,
}

impl Verdict {
    /// Whether the key passes the check.
    pub fn passed(self) -> bool {
        matches!(self, Verdict::Exact | Verdict::WithinFailures)
    }
}

/// The verdict for a key to which `acked` calls were acknowledged and `failed` calls failed,
/// whose cart holds `observed` of the product (`None` when it could not be read).
pub fn verdict(acked: u64, failed: u64, observed: Option<i64>) -> Verdict {
    let Some(observed) = observed else {
        return Verdict::Unverified;
    };
    let (acked, failed, observed) = (i128::from(acked), i128::from(failed), i128::from(observed));
    if observed == acked && failed == 0 {
        Verdict::Exact
    } else if failed > 0 && (acked..=acked + failed).contains(&observed) {
        Verdict::WithinFailures
    } else {
        Verdict::Mismatch
    }
}

/// One key's figures and verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCheck {
    /// The key's index (its user id is `<run id>-<key>`).
    pub key: usize,
    /// Calls acknowledged with OK.
    pub acked: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Quantity found in the cart, if it could be read.
    pub observed: Option<i64>,
    /// The verdict.
    pub verdict: Verdict,
}

impl KeyCheck {
    /// Checks one key.
    pub fn new(key: usize, acked: u64, failed: u64, observed: Option<i64>) -> Self {
        KeyCheck {
            key,
            acked,
            failed,
            observed,
            verdict: verdict(acked, failed, observed),
        }
    }
}

/// Most failing keys listed in a report.
const MAX_LISTED: usize = 20;

/// The outcome of the check over all keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Whether every key passed.
    pub passed: bool,
    /// Keys checked.
    pub keys: usize,
    /// Keys whose quantity equals the acknowledged count exactly.
    pub exact: usize,
    /// Keys accepted thanks to failed calls.
    pub within_failures: usize,
    /// Keys with a wrong quantity.
    pub mismatches: usize,
    /// Keys whose cart could not be read.
    pub unverified: usize,
    /// Sum of the acknowledged calls over all keys.
    pub acked: u64,
    /// Sum of the observed quantities over all keys that could be read.
    pub observed: i64,
    /// The first failing keys (at most 20).
    pub failing: Vec<KeyCheck>,
}

impl CheckReport {
    /// Sums up the checks of all keys.
    pub fn new(checks: impl IntoIterator<Item = KeyCheck>) -> Self {
        let mut report = CheckReport {
            passed: true,
            keys: 0,
            exact: 0,
            within_failures: 0,
            mismatches: 0,
            unverified: 0,
            acked: 0,
            observed: 0,
            failing: Vec::new(),
        };
        for check in checks {
            report.keys += 1;
            report.acked += check.acked;
            report.observed += check.observed.unwrap_or(0);
            match check.verdict {
                Verdict::Exact => report.exact += 1,
                Verdict::WithinFailures => report.within_failures += 1,
                Verdict::Mismatch => report.mismatches += 1,
                Verdict::Unverified => report.unverified += 1,
            }
            if !check.verdict.passed() {
                report.passed = false;
                if report.failing.len() < MAX_LISTED {
                    report.failing.push(check);
                }
            }
        }
        report
    }

    /// One line for the human summary.
    pub fn summary(&self) -> String {
        if self.passed && self.within_failures == 0 {
            format!(
                "passed: {}, every quantity equals its acknowledged count ({} in all)",
                counted(self.keys as u64, "key"),
                format_count(self.acked)
            )
        } else if self.passed {
            format!(
                "passed: {}, {} exact, {} within acknowledged..acknowledged+failed \
                 (acknowledged {}, found {})",
                counted(self.keys as u64, "key"),
                format_count(self.exact as u64),
                format_count(self.within_failures as u64),
                format_count(self.acked),
                format_count(self.observed.max(0) as u64)
            )
        } else {
            let mut line = format!(
                "FAILED: {} of {} keys wrong, {} unreadable (acknowledged {}, found {})",
                self.mismatches, self.keys, self.unverified, self.acked, self.observed
            );
            for check in &self.failing {
                let observed = check
                    .observed
                    .map_or_else(|| "unreadable".to_owned(), |q| q.to_string());
                line.push_str(&format!(
                    "\n  key {}: acknowledged {}, failed {}, found {}",
                    check.key, check.acked, check.failed, observed
                ));
            }
            line
        }
    }
}

/// What a fresh monitor reported for one user after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOutcome {
    /// Offline, as it must be once the user's connections are closed.
    Offline,
    /// Still online when the wait ended.
    StillOnline,
    /// No status could be read.
    Unreadable,
}

/// The outcome of the presence check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceCheck {
    /// Whether every user ended offline and no monitor reported an unexpected status.
    pub passed: bool,
    /// Users checked.
    pub users: usize,
    /// Users reported offline.
    pub offline: usize,
    /// Users still reported online after the wait.
    pub still_online: usize,
    /// Users whose status could not be read.
    pub unreadable: usize,
    /// Statuses the monitors delivered during the run other than the one awaited (the
    /// monitor only reports changes, so there should be none).
    pub unexpected_statuses: u64,
}

impl PresenceCheck {
    /// Sums up the users' outcomes.
    pub fn new(outcomes: &[UserOutcome], unexpected_statuses: u64) -> Self {
        let count = |wanted| outcomes.iter().filter(|&&o| o == wanted).count();
        let (offline, still_online, unreadable) = (
            count(UserOutcome::Offline),
            count(UserOutcome::StillOnline),
            count(UserOutcome::Unreadable),
        );
        PresenceCheck {
            passed: offline == outcomes.len() && unexpected_statuses == 0,
            users: outcomes.len(),
            offline,
            still_online,
            unreadable,
            unexpected_statuses,
        }
    }

    /// One line for the human summary.
    pub fn summary(&self) -> String {
        if self.passed {
            format!(
                "passed: {} offline once disconnected, no unexpected status",
                counted(self.users as u64, "user")
            )
        } else {
            format!(
                "FAILED: {} of {} users still online, {} unreadable, {} unexpected statuses",
                self.still_online, self.users, self.unreadable, self.unexpected_statuses
            )
        }
    }
}

/// Whichever check a workload makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Check {
    /// Per key: cart, counters.
    Keys(CheckReport),
    /// Per user: presence.
    Presence(PresenceCheck),
}

impl Check {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        match self {
            Check::Keys(report) => report.passed,
            Check::Presence(check) => check.passed,
        }
    }

    /// One line for the human summary.
    pub fn summary(&self) -> String {
        match self {
            Check::Keys(report) => report.summary(),
            Check::Presence(check) => check.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_key_is_read_by_one_reader_and_retried_until_read() {
        let tries = std::sync::Mutex::new(vec![0; 10]);
        let observed = read_keys(10, vec![0usize, 1, 2], async |reader, key| {
            assert_eq!(key % 3, *reader);
            let mut tries = tries.lock().unwrap();
            tries[key] += 1;
            // Key 4 answers on its second try, key 7 never.
            match key {
                4 if tries[key] < 2 => None,
                7 => None,
                _ => Some(key as i64 * 10),
            }
        })
        .await;
        assert_eq!(observed[3], Some(30));
        assert_eq!(observed[4], Some(40));
        assert_eq!(observed[7], None);
        assert_eq!(observed.iter().filter(|value| value.is_some()).count(), 9);
        assert_eq!(tries.lock().unwrap()[7], READ_ATTEMPTS);
    }

    #[test]
    fn presence_passes_only_if_every_user_ends_offline_without_surprises() {
        use UserOutcome::*;
        let check = PresenceCheck::new(&[Offline, Offline], 0);
        assert!(check.passed);
        assert_eq!(
            check.summary(),
            "passed: 2 users offline once disconnected, no unexpected status"
        );
        let check = PresenceCheck::new(&[Offline, StillOnline, Unreadable], 0);
        assert!(!check.passed);
        assert_eq!(
            (
                check.users,
                check.offline,
                check.still_online,
                check.unreadable
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            check.summary(),
            "FAILED: 1 of 3 users still online, 1 unreadable, 0 unexpected statuses"
        );
        assert!(!PresenceCheck::new(&[Offline], 1).passed);
        let check = Check::Presence(PresenceCheck::new(&[Offline], 0));
        assert!(check.passed());
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["passed"], true);
        assert_eq!(json["unexpected_statuses"], 0);
    }

    #[test]
    fn either_check_serialises_with_a_passed_field() {
        let check = Check::Keys(CheckReport::new([KeyCheck::new(0, 1, 0, Some(2))]));
        assert!(!check.passed());
        assert!(check.summary().starts_with("FAILED"));
        assert_eq!(serde_json::to_value(&check).unwrap()["passed"], false);
    }

    #[test]
    fn without_failures_the_quantity_must_equal_the_acknowledged_count() {
        assert_eq!(verdict(10, 0, Some(10)), Verdict::Exact);
        assert_eq!(verdict(0, 0, Some(0)), Verdict::Exact);
        assert_eq!(verdict(10, 0, Some(9)), Verdict::Mismatch);
        assert_eq!(verdict(10, 0, Some(11)), Verdict::Mismatch);
    }

    #[test]
    fn failed_calls_widen_the_range_upwards_only() {
        assert_eq!(verdict(10, 2, Some(10)), Verdict::WithinFailures);
        assert_eq!(verdict(10, 2, Some(11)), Verdict::WithinFailures);
        assert_eq!(verdict(10, 2, Some(12)), Verdict::WithinFailures);
        assert_eq!(verdict(10, 2, Some(13)), Verdict::Mismatch);
        assert_eq!(verdict(10, 2, Some(9)), Verdict::Mismatch);
    }

    #[test]
    fn an_unreadable_or_negative_cart_fails() {
        assert_eq!(verdict(10, 0, None), Verdict::Unverified);
        assert_eq!(verdict(0, 3, Some(-1)), Verdict::Mismatch);
        assert!(!Verdict::Unverified.passed());
        assert!(!Verdict::Mismatch.passed());
        assert!(Verdict::Exact.passed() && Verdict::WithinFailures.passed());
    }

    #[test]
    fn the_report_sums_up_keys_and_lists_failures() {
        let report = CheckReport::new([
            KeyCheck::new(0, 5, 0, Some(5)),
            KeyCheck::new(1, 5, 1, Some(6)),
            KeyCheck::new(2, 5, 0, Some(4)),
            KeyCheck::new(3, 5, 0, None),
        ]);
        assert!(!report.passed);
        assert_eq!(
            (
                report.keys,
                report.exact,
                report.within_failures,
                report.mismatches,
                report.unverified
            ),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(report.acked, 20);
        assert_eq!(report.observed, 15);
        assert_eq!(
            report.failing.iter().map(|c| c.key).collect::<Vec<_>>(),
            [2, 3]
        );
        let summary = report.summary();
        assert!(summary.starts_with("FAILED: 1 of 4 keys wrong, 1 unreadable"));
        assert!(summary.contains("key 2: acknowledged 5, failed 0, found 4"));
        assert!(summary.contains("key 3: acknowledged 5, failed 0, found unreadable"));
    }

    #[test]
    fn a_clean_report_says_so() {
        let report = CheckReport::new((0..3).map(|key| KeyCheck::new(key, 7, 0, Some(7))));
        assert!(report.passed);
        assert_eq!(
            report.summary(),
            "passed: 3 keys, every quantity equals its acknowledged count (21 in all)"
        );
        let report = CheckReport::new([KeyCheck::new(0, 7, 1, Some(8))]);
        assert!(report.passed);
        assert_eq!(
            report.summary(),
            "passed: 1 key, 0 exact, 1 within acknowledged..acknowledged+failed \
             (acknowledged 7, found 8)"
        );
    }
}
