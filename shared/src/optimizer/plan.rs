//! The per-run change cap: which of a run's decided changes go ahead, most urgent first.

use super::{Action, Decision};

/// A decided change, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Position in the run's campaign list (ties keep config order).
    pub index: usize,
    pub action: Action,
    pub cpa_micros: Option<i64>,
    pub target_cpa_micros: i64,
}

impl Candidate {
    /// A candidate from a decision.
    pub fn of(index: usize, decision: &Decision, target_cpa_micros: i64) -> Self {
        Candidate {
            index,
            action: decision.action,
            cpa_micros: decision.cpa_micros,
            target_cpa_micros,
        }
    }

    /// Sort key: overspending first (pauses and reductions, worst CPA-to-target first), then raises
    /// (best CPA-to-target first). An infinite CPA is the worst.
    fn urgency(&self) -> (u8, i128) {
        let ratio = match self.cpa_micros {
            None => i128::MAX,
            Some(cpa) if self.target_cpa_micros > 0 => {
                i128::from(cpa) * 10_000 / i128::from(self.target_cpa_micros)
            }
            Some(_) => i128::MAX,
        };
        match self.action {
            Action::Pause => (0, -ratio.min(i128::MAX - 1)),
            Action::Reduce => (1, -ratio.min(i128::MAX - 1)),
            Action::Raise => (2, ratio),
            Action::Keep => (3, 0),
        }
    }
}

/// The indexes allowed under `cap` (all when `None`), most urgent first.
pub fn allowed(mut candidates: Vec<Candidate>, cap: Option<u32>) -> Vec<usize> {
    candidates.sort_by_key(|c| (c.urgency(), c.index));
    let take = cap.map(|c| c as usize).unwrap_or(usize::MAX);
    candidates.into_iter().take(take).map(|c| c.index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(index: usize, action: Action, cpa: Option<i64>) -> Candidate {
        Candidate {
            index,
            action,
            cpa_micros: cpa,
            target_cpa_micros: 4_000_000,
        }
    }

    #[test]
    fn without_a_cap_every_change_goes_ahead() {
        let all = allowed(
            vec![
                c(0, Action::Raise, Some(1)),
                c(1, Action::Reduce, Some(9_000_000)),
            ],
            None,
        );
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn the_cap_keeps_the_worst_overspenders_first() {
        let list = vec![
            c(0, Action::Raise, Some(1_000_000)),
            c(1, Action::Reduce, Some(5_000_000)),
            c(2, Action::Reduce, None),
            c(3, Action::Reduce, Some(9_000_000)),
        ];
        assert_eq!(allowed(list, Some(2)), vec![2, 3]);
    }

    #[test]
    fn raises_come_after_reductions_best_cpa_first() {
        let list = vec![
            c(0, Action::Raise, Some(3_000_000)),
            c(1, Action::Raise, Some(1_000_000)),
            c(2, Action::Reduce, Some(5_000_000)),
        ];
        assert_eq!(allowed(list, Some(3)), vec![2, 1, 0]);
    }

    #[test]
    fn a_cap_of_zero_allows_nothing() {
        assert!(allowed(vec![c(0, Action::Reduce, None)], Some(0)).is_empty());
    }
}
