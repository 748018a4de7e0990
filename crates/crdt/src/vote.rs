//! Votes.

use std::collections::BTreeMap;

use crate::{CrdtError, CrdtKind, ReplicaId};

/// One vote per replica: yes or no.
///
/// Each replica that voted has a version, odd for yes and even for no; changing one's vote
/// moves to the next version, and the join takes the greatest version per replica. So only
/// the replica itself changes its vote, and the latest change wins.
///
/// The voters, as a replica sees them, are the replicas that ever voted plus itself: a new
/// node counts itself before voting, and counts in the others once their vote reaches it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vote {
    versions: BTreeMap<ReplicaId, u64>,
}

/// A vote as a replica's user function sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteTally {
    /// The replica's own vote.
    pub self_vote: bool,
    /// How many voters vote yes.
    pub votes_for: u32,
    /// How many voters there are.
    pub total_voters: u32,
}

impl Vote {
    /// The vote as `replica` sees it.
    pub fn tally(&self, replica: &ReplicaId) -> VoteTally {
        let votes_for = self.versions.values().filter(|&&v| v % 2 == 1).count();
        let others = self.versions.len() - usize::from(self.versions.contains_key(replica));
        VoteTally {
            self_vote: self.versions.get(replica).is_some_and(|&v| v % 2 == 1),
            votes_for: u32::try_from(votes_for).unwrap_or(u32::MAX),
            total_voters: u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1),
        }
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &Vote) {
        for (replica, &version) in &other.versions {
            let mine = self.versions.entry(replica.clone()).or_default();
            *mine = (*mine).max(version);
        }
    }

    /// The delta of `replica` voting `self_vote` (empty when the vote stays the same, except
    /// that a first vote of no registers the replica as a voter).
    pub(crate) fn mutation(&self, replica: &ReplicaId, self_vote: bool) -> Result<Vote, CrdtError> {
        let version = match self.versions.get(replica) {
            None => u64::from(self_vote),
            Some(&version) if (version % 2 == 1) == self_vote => return Ok(Vote::default()),
            Some(&version) => version
                .checked_add(1)
                .ok_or(CrdtError::Overflow(CrdtKind::Vote))?,
        };
        Ok(Vote {
            versions: BTreeMap::from([(replica.clone(), version)]),
        })
    }
}
