//! The scheduler's decisions for one run, as a pure function of the DAG and the current task
//! states: which tasks to queue, which will never run, and whether the run is over.

use std::collections::HashMap;

use crate::dag::{Dag, TriggerRule};
use crate::domain::{RunState, TaskState};

/// What a task's upstream states allow, under its trigger rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not yet decidable: some upstreams are still to finish.
    Wait,
    Run,
    UpstreamFailed,
    Skip,
}

/// Tallies of a task's upstream states.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpstreamCounts {
    pub total: usize,
    pub success: usize,
    pub failed: usize,
    pub upstream_failed: usize,
    pub skipped: usize,
    /// Upstreams in a finished state (any of the above).
    pub done: usize,
}

impl UpstreamCounts {
    pub fn add(&mut self, state: TaskState) {
        self.total += 1;
        match state {
            TaskState::Success => self.success += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::UpstreamFailed => self.upstream_failed += 1,
            TaskState::Skipped => self.skipped += 1,
            _ => return,
        }
        self.done += 1;
    }
}

/// Airflow's trigger rules, including how `skipped` and `upstream_failed` propagate.
pub fn decide(rule: TriggerRule, c: UpstreamCounts) -> Decision {
    use Decision::*;
    let all_done = c.done == c.total;
    let any_failed = c.failed + c.upstream_failed > 0;
    match rule {
        TriggerRule::Always => Run,
        TriggerRule::AllSuccess if any_failed => UpstreamFailed,
        TriggerRule::AllSuccess if c.skipped > 0 => Skip,
        TriggerRule::AllSuccess if c.success == c.total => Run,
        TriggerRule::AllFailed if c.success + c.skipped > 0 => Skip,
        TriggerRule::AllFailed if c.failed + c.upstream_failed == c.total => Run,
        TriggerRule::AllDone if all_done => Run,
        TriggerRule::OneSuccess if c.success > 0 => Run,
        TriggerRule::OneSuccess if all_done && c.skipped == c.total => Skip,
        TriggerRule::OneSuccess if all_done => UpstreamFailed,
        TriggerRule::OneFailed if any_failed => Run,
        TriggerRule::OneFailed if all_done => Skip,
        TriggerRule::NoneFailed | TriggerRule::NoneFailedMinOneSuccess if any_failed => {
            UpstreamFailed
        }
        TriggerRule::NoneFailed if all_done => Run,
        TriggerRule::NoneFailedMinOneSuccess if all_done && c.success > 0 => Run,
        TriggerRule::NoneFailedMinOneSuccess if all_done => Skip,
        TriggerRule::NoneSkipped if c.skipped > 0 => Skip,
        TriggerRule::NoneSkipped if all_done => Run,
        _ => Wait,
    }
}

/// The changes one scheduler pass makes to a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunPlan {
    pub queue: Vec<String>,
    pub upstream_failed: Vec<String>,
    pub skipped: Vec<String>,
    /// Set when every task is finished: the run's final state.
    pub finished: Option<RunState>,
}

/// Plans a run: walks the tasks upstream-first so a decision made in this pass (say, a task
/// becoming `upstream_failed`) is seen by its downstreams in the same pass. `states` holds each
/// task's instances: one, or one per item of a mapped task. A task is decided while any of its
/// instances is `scheduled`, and the decision applies to those; a mapped task counts as an
/// upstream through every instance (trigger rules apply to the set).
pub fn plan_run(dag: &Dag, states: &HashMap<&str, Vec<TaskState>>) -> RunPlan {
    let mut current: HashMap<&str, Vec<TaskState>> = states.clone();
    let mut plan = RunPlan::default();
    for task_id in &dag.topo_order {
        let task = &dag.tasks[task_id];
        let waiting =
            current.get(task_id.as_str()).is_some_and(|s| s.contains(&TaskState::Scheduled));
        if !waiting {
            continue;
        }
        let mut counts = UpstreamCounts::default();
        for up in &task.depends_on {
            match current.get(up.as_str()) {
                Some(instances) => instances.iter().for_each(|s| counts.add(*s)),
                None => counts.add(TaskState::Scheduled),
            }
        }
        let (list, state) = match decide(task.trigger_rule, counts) {
            Decision::Wait => continue,
            Decision::Run => (&mut plan.queue, TaskState::Queued),
            Decision::UpstreamFailed => (&mut plan.upstream_failed, TaskState::UpstreamFailed),
            Decision::Skip => (&mut plan.skipped, TaskState::Skipped),
        };
        list.push(task_id.clone());
        if let Some(instances) = current.get_mut(task_id.as_str()) {
            instances.iter_mut().filter(|s| **s == TaskState::Scheduled).for_each(|s| *s = state);
        }
    }
    if current.values().flatten().all(|s| s.is_finished()) {
        // Like Airflow: the run fails if any leaf task failed or could not run because of a failure.
        let leaf_failed =
            dag.tasks.keys().filter(|id| dag.downstream_of(id).next().is_none()).any(|id| {
                current
                    .get(id.as_str())
                    .into_iter()
                    .flatten()
                    .any(|s| matches!(s, TaskState::Failed | TaskState::UpstreamFailed))
            });
        plan.finished = Some(if leaf_failed { RunState::Failed } else { RunState::Success });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    fn counts(states: &[TaskState]) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        states.iter().for_each(|s| c.add(*s));
        c
    }

    /// (rule, upstream states, expected decision)
    #[test]
    fn trigger_rules_table() {
        use Decision as D;
        use TriggerRule as R;
        let cases: &[(R, &[TaskState], D)] = &[
            (R::AllSuccess, &[Success, Success], D::Run),
            (R::AllSuccess, &[Success, Running], D::Wait),
            (R::AllSuccess, &[Success, Failed], D::UpstreamFailed),
            (R::AllSuccess, &[Running, UpstreamFailed], D::UpstreamFailed),
            (R::AllSuccess, &[Success, Skipped], D::Skip),
            (R::AllSuccess, &[], D::Run),
            (R::AllFailed, &[Failed, UpstreamFailed], D::Run),
            (R::AllFailed, &[Failed, Running], D::Wait),
            (R::AllFailed, &[Failed, Success], D::Skip),
            (R::AllDone, &[Failed, Success, Skipped], D::Run),
            (R::AllDone, &[Failed, UpForRetry], D::Wait),
            (R::OneSuccess, &[Success, Running], D::Run),
            (R::OneSuccess, &[Failed, Skipped], D::UpstreamFailed),
            (R::OneSuccess, &[Skipped, Skipped], D::Skip),
            (R::OneSuccess, &[Failed, Queued], D::Wait),
            (R::OneFailed, &[Failed, Running], D::Run),
            (R::OneFailed, &[Success, Success], D::Skip),
            (R::OneFailed, &[Success, Running], D::Wait),
            (R::NoneFailed, &[Success, Skipped], D::Run),
            (R::NoneFailed, &[Success, UpstreamFailed], D::UpstreamFailed),
            (R::NoneFailed, &[Success, Running], D::Wait),
            (R::NoneFailedMinOneSuccess, &[Success, Skipped], D::Run),
            (R::NoneFailedMinOneSuccess, &[Skipped, Skipped], D::Skip),
            (R::NoneFailedMinOneSuccess, &[Failed, Skipped], D::UpstreamFailed),
            (R::NoneSkipped, &[Success, Failed], D::Run),
            (R::NoneSkipped, &[Success, Skipped], D::Skip),
            (R::NoneSkipped, &[Success, Running], D::Wait),
            (R::Always, &[Running, Scheduled], D::Run),
        ];
        for (rule, ups, expected) in cases {
            assert_eq!(decide(*rule, counts(ups)), *expected, "{rule:?} with {ups:?}");
        }
    }

    /// A mapped task counts through every instance: its downstream waits for all, a rule
    /// applies to the set, and the run ends only when every instance has.
    #[test]
    fn mapped_instances_count_one_by_one() {
        let dag = crate::dag::compile(
            "t.toml",
            "[tasks.m]\nkind = \"noop\"\nfor_each = [1, 2, 3]\n\
             [tasks.all]\nkind = \"noop\"\ndepends_on = [\"m\"]\n\
             [tasks.any_failed]\nkind = \"noop\"\ndepends_on = [\"m\"]\ntrigger_rule = \"one_failed\"\n",
            "t",
            &crate::jobs::Registry::builtin(),
        )
        .unwrap();
        let plan_with = |mapped: &[TaskState]| {
            let states: HashMap<&str, Vec<TaskState>> = HashMap::from([
                ("m", mapped.to_vec()),
                ("all", vec![Scheduled]),
                ("any_failed", vec![Scheduled]),
            ]);
            plan_run(&dag, &states)
        };
        let waiting = plan_with(&[Success, Running, Success]);
        assert!(waiting.queue.is_empty() && waiting.finished.is_none(), "{waiting:?}");
        let one_failed = plan_with(&[Success, Failed, Running]);
        assert_eq!(one_failed.queue, ["any_failed"]);
        let done = plan_with(&[Success, Failed, Success]);
        assert_eq!(
            (done.upstream_failed.clone(), done.queue.clone()),
            (vec!["all".to_string()], vec!["any_failed".to_string()])
        );
        let all_good = plan_with(&[Success, Success, Success]);
        assert_eq!(all_good.queue, ["all"]);
        assert_eq!(all_good.skipped, ["any_failed"]);
        // Instances still waiting for a slot are decided again (the decision stands).
        let states = HashMap::from([("m", vec![Queued, Scheduled])]);
        let only_m = crate::dag::compile(
            "t.toml",
            "[tasks.m]\nkind = \"noop\"\nfor_each = [1, 2]\n",
            "t",
            &crate::jobs::Registry::builtin(),
        )
        .unwrap();
        assert_eq!(plan_run(&only_m, &states).queue, ["m"]);
    }
}
