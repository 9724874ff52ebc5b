//! Who takes over when a group has no primary (docs/replication.md, "Who takes over"): the
//! journal [`Position`] each backup announces in its candidacy key, how many candidacies a
//! takeover needs ([`required_candidacies`]), and the decision one look at them makes.
//!
//! Invariants:
//! - a node decides [`CandidacyVerdict::Campaigned`] only if it read at least the required
//!   number of candidacies of its own round, and its own is the best of them (the highest
//!   position, then the lowest node id);
//! - candidacies of another round never count, so one left behind by an earlier round is
//!   harmless;
//! - a candidacy value that does not parse, or whose node id differs from its key's, is not a
//!   candidacy ([`CandidacyValue::from_value`] returns `None`).
//!
//! Pure: no etcd call, no clock, no thread. The leadership thread (`node.rs`) writes and reads
//! the keys and runs the campaign this module allows.

use std::cmp::Reverse;
use std::fmt;

/// How many candidacies of one round a node must read (its own included) before it may campaign
/// in a group of `group_size` nodes whose primary acknowledges once a record is durable on itself
/// and `ack_backups` backups: `max(1, group_size - ack_backups)`, capped at `group_size - 1` when
/// the group has more than one node.
///
/// An acknowledged record is on at least `ack_backups` of the `group_size - 1` backups, so any
/// `group_size - ack_backups` nodes include one that holds it, and the best position among them
/// holds it too. With `ack_backups = 0` no backup need hold it: the cap asks for every backup,
/// which is the best that can be done, and a failover can still lose acknowledged writes. A group
/// of one needs only itself and campaigns without a candidacy.
pub fn required_candidacies(group_size: u32, ack_backups: u32) -> u32 {
    let quorum = group_size.saturating_sub(ack_backups).max(1);
    if group_size > 1 {
        quorum.min(group_size - 1)
    } else {
        quorum
    }
}

/// Where a node's journal ends: the epoch of its newest epoch record, then the sequence of its
/// last durable record. Positions compare epoch first, then sequence (the derived order follows
/// the field order), as Raft compares the last entry's term, then its index: a later epoch means
/// records from a later primary, which already held everything acknowledged before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The epoch of the newest epoch record in the journal (0 if it has none).
    pub epoch: u64,
    /// The sequence of the last durable journal record (0 for an empty journal).
    pub sequence: u64,
}

/// One node's candidacy as read from etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The candidate's node id (never zero).
    pub node_id: u64,
    /// The position the candidate announced.
    pub position: Position,
}

/// What a look at the candidacies decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandidacyVerdict {
    /// Enough candidacies, and this node's is the best: it ran the campaign's transaction (which
    /// still fails if another node moved first).
    Campaigned,
    /// Fewer candidacies of the round than required: a takeover could lose acknowledged writes.
    TooFewCandidacies,
    /// Another candidate has a better position (or the same one and a lower node id).
    BetterCandidate,
}

/// The outcome of this node's last look at the candidacies, for diagnostics: why it does, or
/// does not, take over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandidacyOutcome {
    /// The round: the value of the epoch counter `GROUP/epoch` when the look began.
    pub round: u64,
    /// This node's position as it announced it.
    pub position: Position,
    /// Candidacies of this round read, this node's included if it was read back.
    pub heard_count: u32,
    /// Candidacies needed ([`required_candidacies`]).
    pub required_count: u32,
    /// The best candidacy read; `None` if none of this round was read.
    pub best: Option<Candidate>,
    /// What the node did.
    pub verdict: CandidacyVerdict,
}

impl fmt::Display for CandidacyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "round {}: heard {} of {} required candidacies",
            self.round, self.heard_count, self.required_count
        )?;
        if let Some(best) = self.best {
            write!(
                f,
                ", best node {} at epoch {} sequence {}",
                best.node_id, best.position.epoch, best.position.sequence
            )?;
        }
        let verdict = match self.verdict {
            CandidacyVerdict::Campaigned => "campaigned",
            CandidacyVerdict::TooFewCandidacies => "too few candidacies to take over",
            CandidacyVerdict::BetterCandidate => "another candidate is better",
        };
        write!(
            f,
            "; this node at epoch {} sequence {}: {verdict}",
            self.position.epoch, self.position.sequence
        )
    }
}

const CANDIDATE_VALUE_PREFIX: &str = "clearline-candidate-v1";

/// A candidacy key's value: which round it is for, and who announces which position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CandidacyValue {
    /// The round: the epoch counter's value when the node began its look.
    pub(super) round: u64,
    /// Who stands, at which position.
    pub(super) candidate: Candidate,
}

impl CandidacyValue {
    /// One line of text, readable with `etcdctl get --prefix GROUP/candidate/`.
    pub(super) fn to_value(self) -> String {
        format!(
            "{CANDIDATE_VALUE_PREFIX} round={} epoch={} sequence={} node={}",
            self.round,
            self.candidate.position.epoch,
            self.candidate.position.sequence,
            self.candidate.node_id
        )
    }

    /// Parses a candidacy key's value; `None` if it is not one [`CandidacyValue::to_value`]
    /// wrote, or if `key_node_id` (the id in the key) differs from the id in the value.
    pub(super) fn from_value(key_node_id: &[u8], value: &[u8]) -> Option<CandidacyValue> {
        let text = std::str::from_utf8(value).ok()?;
        let mut words = text.split(' ');
        if words.next()? != CANDIDATE_VALUE_PREFIX {
            return None;
        }
        let round = words.next()?.strip_prefix("round=")?.parse().ok()?;
        let epoch = words.next()?.strip_prefix("epoch=")?.parse().ok()?;
        let sequence = words.next()?.strip_prefix("sequence=")?.parse().ok()?;
        let node_id: u64 = words.next()?.strip_prefix("node=")?.parse().ok()?;
        if words.next().is_some() || node_id == 0 {
            return None;
        }
        if std::str::from_utf8(key_node_id).ok()?.parse::<u64>().ok()? != node_id {
            return None;
        }
        Some(CandidacyValue {
            round,
            candidate: Candidate {
                node_id,
                position: Position { epoch, sequence },
            },
        })
    }
}

/// Decides one look: `own` is this node's candidacy as written; `read` are the candidacies read
/// back (any round). Only those of `own.round` count. The best is the highest position, then the
/// lowest node id.
pub(super) fn decide(
    own: CandidacyValue,
    required_count: u32,
    read: impl IntoIterator<Item = CandidacyValue>,
) -> CandidacyOutcome {
    let mut heard_count: u32 = 0;
    let mut best: Option<Candidate> = None;
    let rank = |candidate: Candidate| (candidate.position, Reverse(candidate.node_id));
    for value in read.into_iter().filter(|value| value.round == own.round) {
        heard_count = heard_count.saturating_add(1);
        if best.is_none_or(|best| rank(value.candidate) > rank(best)) {
            best = Some(value.candidate);
        }
    }
    let verdict = if heard_count < required_count {
        CandidacyVerdict::TooFewCandidacies
    } else if best.is_some_and(|best| best.node_id == own.candidate.node_id) {
        CandidacyVerdict::Campaigned
    } else {
        CandidacyVerdict::BetterCandidate
    };
    CandidacyOutcome {
        round: own.round,
        position: own.candidate.position,
        heard_count,
        required_count,
        best,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::super::GROUP_SIZE_MAX;
    use super::*;

    fn position(epoch: u64, sequence: u64) -> Position {
        Position { epoch, sequence }
    }

    #[test]
    fn position_compares_epoch_before_sequence() {
        assert!(position(5, 10) > position(4, 1000));
        assert!(position(4, 1000) > position(4, 999));
        assert!(position(1, 0) > position(0, u64::MAX));
        assert_eq!(
            position(3, 7).cmp(&position(3, 7)),
            std::cmp::Ordering::Equal
        );
    }

    #[test]
    fn required_candidacies_cover_every_acknowledged_record() {
        // (group_size, ack_backups, required)
        for (group_size, ack_backups, expected) in [
            (1, 0, 1),
            (2, 0, 1),
            (2, 1, 1),
            (3, 0, 2),
            (3, 1, 2),
            (3, 2, 1),
            (5, 0, 4),
            (5, 1, 4),
            (5, 2, 3),
            (5, 4, 1),
            // Out of range (refused by `start`), but no panic.
            (0, 0, 1),
            (3, 7, 1),
        ] {
            let required = required_candidacies(group_size, ack_backups);
            assert_eq!(
                required, expected,
                "group {group_size}, ack_backups {ack_backups}"
            );
        }
        // The rule the count stands for: with K >= 1 backups holding a record (the primary being
        // gone), every set of `required` backups includes one of them.
        for group_size in 2..=GROUP_SIZE_MAX {
            for ack_backups in 1..group_size {
                let required = required_candidacies(group_size, ack_backups);
                let backups = group_size - 1;
                let without_the_record = backups - ack_backups;
                assert!(required > without_the_record, "{group_size}, {ack_backups}");
                assert!(required <= backups, "{group_size}, {ack_backups}");
            }
        }
    }

    fn candidacy(round: u64, node_id: u64, epoch: u64, sequence: u64) -> CandidacyValue {
        CandidacyValue {
            round,
            candidate: Candidate {
                node_id,
                position: position(epoch, sequence),
            },
        }
    }

    #[test]
    fn candidacy_value_round_trips() {
        let value = candidacy(9, 3, 8, 123_456);
        let text = value.to_value();
        assert_eq!(
            text,
            "clearline-candidate-v1 round=9 epoch=8 sequence=123456 node=3"
        );
        assert_eq!(
            CandidacyValue::from_value(b"3", text.as_bytes()),
            Some(value)
        );
    }

    #[test]
    fn candidacy_value_rejects_other_text() {
        let good = "clearline-candidate-v1 round=1 epoch=1 sequence=1 node=3";
        assert!(CandidacyValue::from_value(b"3", good.as_bytes()).is_some());
        for (key, value) in [
            ("3", ""),
            ("3", "clearline-candidate-v1"),
            (
                "3",
                "clearline-candidate-v2 round=1 epoch=1 sequence=1 node=3",
            ),
            (
                "3",
                "clearline-candidate-v1 round=1 epoch=1 sequence=1 node=0",
            ),
            (
                "3",
                "clearline-candidate-v1 round=1 epoch=1 sequence=-1 node=3",
            ),
            (
                "3",
                "clearline-candidate-v1 round=1 sequence=1 epoch=1 node=3",
            ),
            (
                "3",
                "clearline-candidate-v1 round=1 epoch=1 sequence=1 node=3 extra",
            ),
            ("4", good),
            ("", good),
            ("x", good),
        ] {
            assert_eq!(
                CandidacyValue::from_value(key.as_bytes(), value.as_bytes()),
                None,
                "{key}: {value}"
            );
        }
    }

    #[test]
    fn decide_follows_the_rule() {
        use CandidacyVerdict::{BetterCandidate, Campaigned, TooFewCandidacies};
        struct Row {
            own: CandidacyValue,
            required: u32,
            read: Vec<CandidacyValue>,
            heard: u32,
            best_node_id: Option<u64>,
            verdict: CandidacyVerdict,
        }
        let rows = [
            // Alone with one required: campaigns.
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 1,
                read: vec![candidacy(4, 2, 1, 10)],
                heard: 1,
                best_node_id: Some(2),
                verdict: Campaigned,
            },
            // Alone with two required: waits, even though it is the best it heard.
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 2,
                read: vec![candidacy(4, 2, 1, 10)],
                heard: 1,
                best_node_id: Some(2),
                verdict: TooFewCandidacies,
            },
            // Candidacies of other rounds do not count.
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 2,
                read: vec![candidacy(3, 1, 9, 9), candidacy(4, 2, 1, 10)],
                heard: 1,
                best_node_id: Some(2),
                verdict: TooFewCandidacies,
            },
            // A higher position wins, whatever the node ids.
            Row {
                own: candidacy(4, 3, 1, 11),
                required: 2,
                read: vec![candidacy(4, 2, 1, 10), candidacy(4, 3, 1, 11)],
                heard: 2,
                best_node_id: Some(3),
                verdict: Campaigned,
            },
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 2,
                read: vec![candidacy(4, 2, 1, 10), candidacy(4, 3, 1, 11)],
                heard: 2,
                best_node_id: Some(3),
                verdict: BetterCandidate,
            },
            // The epoch beats the sequence.
            Row {
                own: candidacy(4, 3, 5, 10),
                required: 2,
                read: vec![candidacy(4, 2, 4, 1000), candidacy(4, 3, 5, 10)],
                heard: 2,
                best_node_id: Some(3),
                verdict: Campaigned,
            },
            Row {
                own: candidacy(4, 2, 4, 1000),
                required: 2,
                read: vec![candidacy(4, 2, 4, 1000), candidacy(4, 3, 5, 10)],
                heard: 2,
                best_node_id: Some(3),
                verdict: BetterCandidate,
            },
            // Equal positions: the lowest node id.
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 2,
                read: vec![candidacy(4, 3, 1, 10), candidacy(4, 2, 1, 10)],
                heard: 2,
                best_node_id: Some(2),
                verdict: Campaigned,
            },
            Row {
                own: candidacy(4, 3, 1, 10),
                required: 2,
                read: vec![candidacy(4, 2, 1, 10), candidacy(4, 3, 1, 10)],
                heard: 2,
                best_node_id: Some(2),
                verdict: BetterCandidate,
            },
            // Its own candidacy was not read back: it cannot be the best.
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 1,
                read: vec![candidacy(4, 3, 1, 1)],
                heard: 1,
                best_node_id: Some(3),
                verdict: BetterCandidate,
            },
            // Nothing read at all.
            Row {
                own: candidacy(4, 2, 1, 10),
                required: 1,
                read: vec![],
                heard: 0,
                best_node_id: None,
                verdict: TooFewCandidacies,
            },
        ];
        for (index, row) in rows.into_iter().enumerate() {
            let outcome = decide(row.own, row.required, row.read);
            assert_eq!(outcome.round, row.own.round, "row {index}");
            assert_eq!(outcome.position, row.own.candidate.position, "row {index}");
            assert_eq!(outcome.heard_count, row.heard, "row {index}");
            assert_eq!(outcome.required_count, row.required, "row {index}");
            assert_eq!(
                outcome.best.map(|best| best.node_id),
                row.best_node_id,
                "row {index}"
            );
            assert_eq!(outcome.verdict, row.verdict, "row {index}");
        }
    }

    #[test]
    fn candidacy_outcome_reads_as_a_sentence() {
        let outcome = decide(candidacy(4, 2, 1, 10), 2, [candidacy(4, 2, 1, 10)]);
        assert_eq!(
            outcome.to_string(),
            "round 4: heard 1 of 2 required candidacies, best node 2 at epoch 1 sequence 10; \
             this node at epoch 1 sequence 10: too few candidacies to take over"
        );
    }
}
