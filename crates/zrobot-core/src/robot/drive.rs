//! The drive loop: the one consumer of a service's queue, running its tasks
//! one at a time and making each outcome durable; hooks and calls run here too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::policy::{Runs, Started};
use super::{Interrupted, Observers, Robot};
use crate::engine::{category, ActionCall, ActionError, ActionOutcome, Callable, Hook};
use crate::events::{Events, TaskInfo, What};
use crate::service::{Service, ServiceStatus};
use crate::store::StoreOp;
use crate::task::{Eco, Task, TaskRecord, TaskState};
use crate::template::Template;

/// A task's outcome, to be stored before its waiters are told.
struct Ended {
    record: TaskRecord,
    ops: Vec<StoreOp>,
    /// The data the action left, when it changed them.
    new_data: Option<Arc<Value>>,
}

/// Ends `task` with `record` once its commit gave `result`: a failed commit
/// turns it into a `storage` error (and the state is saved again later);
/// the observers, then the waiters, are told.
fn settle(
    observers: &Observers,
    events: &Events,
    svc: &Arc<Service>,
    task: &Arc<Task>,
    mut record: TaskRecord,
    result: Result<(), crate::store::StoreError>,
) {
    if let Err(e) = result {
        svc.lock().state_dirty = true;
        let now = crate::time::now();
        record.state = TaskState::Error;
        record.result = None;
        record.eco = Some(Eco {
            category: category::STORAGE.to_owned(),
            message: format!("the outcome of the task could not be stored: {e}"),
            trace: String::new(),
            count: 1,
            time_first: now,
            time_last: now,
        });
    }
    // Observers first, so that the record moves into the task uncopied.
    for o in observers.iter() {
        o.task_finished(svc, &record);
    }
    let info = TaskInfo::of(&record);
    task.finish_then(record, || events.publish(svc, What::TaskFinished(info)));
}

impl Robot {
    pub(super) fn start_recurring(&self, svc: &Arc<Service>) {
        let template = svc.template();
        for (action, policy) in &template.manifest.actions {
            if let Some(period) = policy.recurring {
                self.0.recurring.add(svc, action, period);
            }
        }
    }

    /// Runs a hook outside any task (the caller guarantees no task of the
    /// service runs meanwhile). Data the hook changed is kept in memory.
    pub(super) async fn run_hook(
        &self,
        svc: &Arc<Service>,
        hook: Hook,
        arg: Value,
    ) -> Result<(), String> {
        let template = svc.template();
        let data = self.run_hook_on(&template, svc, hook, arg).await?;
        if let Some(data) = data {
            svc.lock().data = Arc::new(data);
        }
        Ok(())
    }

    /// Runs a hook of `template` (which may not be the service's yet) and
    /// returns the data it left, checked against that template's schema.
    pub(super) async fn run_hook_on(
        &self,
        template: &Arc<Template>,
        svc: &Arc<Service>,
        hook: Hook,
        arg: Value,
    ) -> Result<Option<Value>, String> {
        let timeout = self.0.config.hook_timeout;
        let call = ActionCall {
            robot: self.clone(),
            service: svc.clone(),
            task: None,
            callable: Callable::Hook(hook),
            args: arg,
            data: svc.data(),
            deadline: Some(std::time::Instant::now() + timeout),
        };
        let (robot, on, of) = (self.clone(), template.clone(), svc.clone());
        let outcome = self
            .on_template_runtime(async move { robot.run_call(&on, &of, call, timeout).await })
            .await;
        let outcome = match outcome {
            Ok(Ok(o)) => o,
            Ok(Err(Interrupted)) => {
                return Err(format!(
                    "`{}` was interrupted: the robot is stopping",
                    hook.name()
                ))
            }
            Err(e) => return Err(format!("`{}` did not finish: {e}", hook.name())),
        };
        outcome.result.map_err(|e| e.message)?;
        match outcome.data {
            None => Ok(None),
            // The move checks it, once the new version's defaults are in.
            Some(data) if hook == Hook::Migrate => Ok(Some(data)),
            Some(mut data) => {
                template.check_data(&mut data).map_err(|e| {
                    format!(
                        "{} left data that does not match the schema: {e}",
                        hook.name()
                    )
                })?;
                Ok(Some(data))
            }
        }
    }

    /// Runs one call of a template's code under its time bound, stopping it
    /// early if the service is being deleted; `Err` if a shutdown cut it.
    /// Call it on the template runtime: the code runs inline.
    pub(super) async fn run_call(
        &self,
        template: &Template,
        svc: &Service,
        call: ActionCall,
        timeout: Duration,
    ) -> Result<ActionOutcome, Interrupted> {
        let name = call.callable.name().to_owned();
        let fut = template.code.run(call);
        Ok(tokio::select! {
            // The action first: one that ends at its first poll (most do)
            // never registers with the deletion or shutdown signals, and the
            // shutdown one is shared by every task of the robot.
            biased;
            out = tokio::time::timeout(timeout, fut) => match out {
                Ok(o) => o,
                Err(_) => ActionOutcome {
                    result: Err(ActionError::new(
                        category::TIMEOUT,
                        format!("`{name}` ran past its timeout of {}s and was stopped", timeout.as_secs_f64()),
                    )),
                    data: None,
                },
            },
            _ = svc.stop_running.notified() => ActionOutcome {
                result: Err(ActionError::new("action.stopped", format!("`{name}` was stopped: the service is being deleted"))),
                data: None,
            },
            _ = self.stopped() => return Err(Interrupted),
        })
    }

    /// Starts draining the queue of `svc` if it has work and nobody drains it.
    pub(super) fn kick(&self, svc: &Arc<Service>) {
        let spawn = {
            let mut inner = svc.lock();
            let spawn =
                !inner.driving && inner.status == ServiceStatus::Ok && !inner.queue.is_empty();
            if spawn {
                inner.driving = true;
            }
            spawn
        };
        if spawn {
            self.spawn_drive(svc.clone());
        }
    }

    /// The single consumer of a service's queue: runs its tasks one at a time
    /// until the queue is empty, the service may not run tasks, or the robot
    /// shuts down (the waiting tasks are durable: they run at the next start).
    /// Runs on the template runtime ([`Robot::spawn_drive`]).
    pub(super) async fn drive(self, svc: Arc<Service>) {
        loop {
            let task = {
                let mut inner = svc.lock();
                let next = if inner.status == ServiceStatus::Ok && !self.0.work.draining() {
                    inner.queue.pop()
                } else {
                    None
                };
                match next {
                    Some(t) => {
                        inner.current = Some(t.clone());
                        t
                    }
                    None => {
                        inner.driving = false;
                        inner.queue.shrink_if_idle();
                        drop(inner);
                        svc.idle.notify_waiters();
                        return;
                    }
                }
            };
            match self.run_task(&svc, &task).await {
                // The next task reads nothing this outcome changed: it starts
                // now, and the outcome's commit tells the task's waiters.
                Some(ended) if ended.new_data.is_none() => {
                    self.store_outcome_later(&svc, task, ended)
                }
                Some(ended) => {
                    self.store_outcome(&svc, &task, ended).await;
                    svc.lock().current = None;
                }
                None => svc.lock().current = None,
            }
        }
    }

    /// Runs `task` and stores its outcome; the task is done when it returns,
    /// but for an interrupted one. Call it on the template runtime.
    pub(super) async fn run_task_to_end(&self, svc: &Arc<Service>, task: &Arc<Task>) {
        if let Some(ended) = self.run_task(svc, task).await {
            self.store_outcome(svc, task, ended).await;
        }
    }

    /// Runs one task to its end, its tries and its timeout, and returns its
    /// outcome to be stored (by [`Robot::store_outcome`] or
    /// [`Robot::store_outcome_later`]), before which nobody waiting on it is
    /// told. A task a shutdown interrupts is left as it is (`None`):
    /// unfinished, so it runs again at the next start. Call it on the
    /// template runtime.
    async fn run_task(&self, svc: &Arc<Service>, task: &Arc<Task>) -> Option<Ended> {
        let template = svc.template();
        let (action, args, attempt, started) = {
            let mut r = task.lock();
            r.state = TaskState::Running;
            r.attempt += 1;
            let started = crate::time::now();
            r.started = Some(started);
            (r.action_name.clone(), r.args.clone(), r.attempt, started)
        };
        let info = TaskInfo::of(&task.lock());
        self.0.events.publish(svc, What::TaskStarted(info));
        let runs = self
            .run_under_policy(
                &template,
                svc,
                task,
                Started {
                    action,
                    args,
                    attempt,
                    at: started,
                },
            )
            .await?;
        Some(self.ended(svc, task, started, runs))
    }

    /// The record of a task whose runs ended, and what commits it.
    fn ended(&self, svc: &Service, task: &Task, started: f64, runs: Runs) -> Ended {
        let mut record = task.record();
        record.duration = Some((crate::time::now() - started).max(0.0));
        match runs.result {
            Ok(v) => {
                record.state = TaskState::Ok;
                record.result = Some(v);
            }
            Err(_) => {
                record.state = TaskState::Error;
                record.result = None;
            }
        }
        record.eco = runs.eco;
        let mut ops = vec![StoreOp::PutTask(record.clone())];
        let new_data = runs.new_data.map(Arc::new);
        if let Some(d) = &new_data {
            ops.push(StoreOp::SaveData {
                service: svc.guid,
                data: self.stored_data(&svc.template(), d),
            });
        }
        if let Some(state) = svc.take_dirty_state() {
            ops.push(StoreOp::SaveState {
                service: svc.guid,
                state,
            });
        }
        Ended {
            record,
            ops,
            new_data,
        }
    }

    /// Makes a task's outcome durable, then tells who waits on it.
    async fn store_outcome(&self, svc: &Arc<Service>, task: &Arc<Task>, ended: Ended) {
        let Ended {
            record,
            ops,
            new_data,
        } = ended;
        let result = self.0.store.commit(ops).await;
        if let (Ok(()), Some(d)) = (&result, new_data) {
            svc.lock().data = d;
        }
        settle(&self.observers(), &self.0.events, svc, task, record, result);
    }

    /// Hands a task's outcome, which left the data as it was, to the store
    /// and returns at once: the commit's completion tells who waits on the
    /// task (on the store's thread). Until then the task is `finishing`:
    /// still found, still running to readers, and the service not idle.
    fn store_outcome_later(&self, svc: &Arc<Service>, task: Arc<Task>, ended: Ended) {
        {
            let mut inner = svc.lock();
            inner.current = None;
            inner.finishing.push(task.clone());
        }
        // No robot in the completion: it may run on the store's thread,
        // which must never drop the store's last handle.
        let observers = self.observers();
        let events = self.0.events.clone();
        let svc = svc.clone();
        let Ended { record, ops, .. } = ended;
        self.0.store.commit_then(
            ops,
            Box::new(move |result| {
                settle(&observers, &events, &svc, &task, record, result);
                let idle = {
                    let mut inner = svc.lock();
                    inner.finishing.retain(|t| !Arc::ptr_eq(t, &task));
                    inner.finishing.is_empty() && !inner.driving
                };
                if idle {
                    svc.idle.notify_waiters();
                }
            }),
        );
    }
}
