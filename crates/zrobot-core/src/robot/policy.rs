//! Task policies: each run of an action bounded by its timeout, failed runs
//! retried with the backoff its template gives, and the eco that sums up the
//! failures. (Recurring actions have their own timer loop: `recurring.rs`.)

use std::sync::Arc;

use serde_json::Value;

use super::Robot;
use crate::engine::{category, ActionCall, ActionError, ActionOutcome, Callable};
use crate::service::{LogLevel, Service, ServiceStatus};
use crate::store::StoreOp;
use crate::task::{Eco, Task};
use crate::template::Template;

/// What the first run of a task starts with.
pub(super) struct Started {
    pub action: String,
    pub args: Value,
    pub attempt: u32,
    /// When it started (unix seconds).
    pub at: f64,
}

/// How the runs of a task ended.
pub(super) struct Runs {
    pub result: Result<Value, ActionError>,
    /// The data the last run left, when it ended `ok` and changed them.
    pub new_data: Option<Value>,
    /// Every failed run counted, the last one's reason kept.
    pub eco: Option<Eco>,
}

impl Runs {
    fn failed(err: ActionError, eco: Option<Eco>) -> Runs {
        Runs {
            result: Err(err),
            new_data: None,
            eco,
        }
    }
}

impl Robot {
    /// Runs `task` until a run succeeds, the policy's tries are spent, or
    /// the service is being deleted; `None` if the robot shut down meanwhile
    /// (the task stays durable and runs again at the next start). One loop
    /// over the runs, kept whole (about 90 lines) so that when a run is
    /// retried, given up or cut reads in one place.
    pub(super) async fn run_under_policy(
        &self,
        template: &Arc<Template>,
        svc: &Arc<Service>,
        task: &Arc<Task>,
        first: Started,
    ) -> Option<Runs> {
        let Started {
            action,
            args,
            mut attempt,
            at,
        } = first;
        let policy = template.policy(&action);
        let tries = policy.retry.map(|r| r.tries).unwrap_or(1);
        let timeout = policy
            .timeout
            .unwrap_or(self.0.config.default_action_timeout);
        let mut eco: Option<Eco> = None;
        let mut run = 1;
        loop {
            let call = ActionCall {
                robot: self.clone(),
                service: svc.clone(),
                task: Some(task.clone()),
                callable: Callable::Action(action.clone()),
                args: args.clone(),
                data: svc.data(),
                deadline: Some(std::time::Instant::now() + timeout),
            };
            let run_call = self.run_call(template, svc, call, timeout);
            tokio::pin!(run_call);
            // The start is recorded (so that a crash shows in the attempt
            // count) only for a run that does not end at its first poll: most
            // actions run to their end without waiting, and their outcome is
            // the only write they need. It is handed over at once and applied
            // before the outcome, so nothing waits on it.
            let outcome = tokio::select! {
                biased;
                out = &mut run_call => out,
                _ = std::future::ready(()) => {
                    drop(self.0.store.commit(vec![StoreOp::TaskStarted {
                        guid: task.guid,
                        seq: task.seq,
                        attempt,
                        started: at,
                    }]));
                    run_call.await
                }
            };
            let err = match checked(template, &action, outcome.ok()?) {
                Ok((v, new_data)) => {
                    return Some(Runs {
                        result: Ok(v),
                        new_data,
                        eco,
                    })
                }
                Err(e) => e,
            };
            count_failure(&mut eco, &err);
            svc.log(
                LogLevel::Error,
                format!(
                    "task {} `{action}` failed (run {run} of {tries}): [{}] {}",
                    task.guid, err.category, err.message
                ),
            );
            let stopped =
                err.category == "action.stopped" || svc.status() == ServiceStatus::Deleting;
            if run >= tries || stopped {
                return Some(Runs::failed(err, eco));
            }
            run += 1;
            let delay = policy
                .retry
                .map(|r| r.delay_before(run))
                .unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = svc.stop_running.notified() => return Some(Runs::failed(err, eco)),
                _ = self.stopped() => return None,
            }
            attempt += 1;
            task.lock().attempt = attempt;
        }
    }
}

/// An action's outcome with the data it left checked against the
/// template's schema: data that fail it fail the run, and are not kept.
fn checked(
    template: &Template,
    action: &str,
    outcome: ActionOutcome,
) -> Result<(Value, Option<Value>), ActionError> {
    match outcome {
        ActionOutcome {
            result: Ok(v),
            data: Some(mut d),
        } => match template.check_data(&mut d) {
            Ok(()) => Ok((v, Some(d))),
            Err(e) => Err(ActionError::new(
                category::INVALID_DATA,
                format!("`{action}` left data that does not match the template's schema, so it was not saved: {e}"),
            )),
        },
        ActionOutcome { result, .. } => result.map(|v| (v, None)),
    }
}

/// Adds a failed run to the task's eco: counted, its reason the latest.
fn count_failure(eco: &mut Option<Eco>, err: &ActionError) {
    let now = crate::time::now();
    let e = eco.get_or_insert_with(|| Eco {
        category: String::new(),
        message: String::new(),
        trace: String::new(),
        count: 0,
        time_first: now,
        time_last: now,
    });
    e.category = err.category.clone();
    e.message = err.message.clone();
    e.trace = err.trace.clone();
    e.count += 1;
    e.time_last = now;
}
