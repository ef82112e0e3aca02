//! Frame-to-frame reuse of a plan. Pure.

#![deny(unsafe_code)]

use super::{plan, PlanError, PlanInfo, TransientPlan, TransientResource};

/// Plans every frame, and gives back the previous frame's plan when the graph is the same.
///
/// Most frames of a renderer have the same graph as the one before; comparing it costs one
/// pass over the resources, much less than planning. A reused plan is the same
/// [`TransientPlan`] value, so the memory and the resources bound at its offsets can be
/// reused too (see [`TransientMemory`](crate::transient::TransientMemory)).
#[derive(Debug, Default)]
pub struct TransientPlanner {
    last: Option<(Vec<TransientResource>, PlanInfo, TransientPlan)>,
    reused: bool,
    plans_made: u64,
}

impl TransientPlanner {
    /// A planner with no previous plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// The plan for `resources`: the previous one when `resources` and `info` are equal to
    /// the previous call's, a new one otherwise. On error the previous plan is kept.
    pub fn plan(
        &mut self,
        resources: &[TransientResource],
        info: &PlanInfo,
    ) -> Result<&TransientPlan, PlanError> {
        let same = matches!(&self.last, Some((r, i, _)) if r.as_slice() == resources && i == info);
        self.reused = same;
        let last = match self.last.take() {
            Some(last) if same => last,
            previous => match plan(resources, info) {
                Ok(new) => {
                    self.plans_made += 1;
                    (resources.to_vec(), *info, new)
                }
                Err(e) => {
                    self.last = previous;
                    return Err(e);
                }
            },
        };
        Ok(&self.last.insert(last).2)
    }

    /// Whether the last [`plan`](Self::plan) call gave back the previous plan.
    pub fn last_was_reused(&self) -> bool {
        self.reused
    }

    /// How many plans were computed (reuses not counted).
    pub fn plans_made(&self) -> u64 {
        self.plans_made
    }

    /// The current plan, if any.
    pub fn current(&self) -> Option<&TransientPlan> {
        self.last.as_ref().map(|(_, _, p)| p)
    }
}
