//! Scheduling tasks, and reading, cancelling and waiting on them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::{Robot, WaitError};
use crate::error::CoreError;
use crate::events::{TaskInfo, What};
use crate::service::{Service, ServiceStatus};
use crate::store::StoreOp;
use crate::task::RemoteTaskRef;
use crate::task::{Eco, Priority, Task, TaskRecord, TaskState};
use crate::template::Template;
use crate::waitgraph::WaitEdge;

impl Robot {
    /// Queues `action` on `svc` with normal priority; returns once the task is durable.
    pub async fn schedule(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
    ) -> Result<Arc<Task>, CoreError> {
        self.schedule_with(svc, action, args, Priority::Normal)
            .await
    }

    /// Queues `action` on `svc`; returns once the task is durable. Unknown
    /// actions and arguments that fail the action's schema are refused here,
    /// not when the task runs.
    pub async fn schedule_with(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
        priority: Priority,
    ) -> Result<Arc<Task>, CoreError> {
        self.schedule_traced(svc, action, args, priority, None)
            .await
    }

    /// Like [`Robot::schedule_with`], recording who asked for the task.
    pub async fn schedule_traced(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
        priority: Priority,
        trace: Option<crate::task::TaskTrace>,
    ) -> Result<Arc<Task>, CoreError> {
        self.schedule_record(svc, action, args, priority, trace, None)
            .await
    }

    /// Queues a task made of these, with the idempotency `key` it came with.
    pub(super) async fn schedule_record(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
        priority: Priority,
        trace: Option<crate::task::TaskTrace>,
        key: Option<String>,
    ) -> Result<Arc<Task>, CoreError> {
        let template = svc.template();
        let args = match template.prepare_args(action, args)? {
            Value::Null => Value::Object(Default::default()),
            a => a,
        };
        let creating = match svc.status() {
            ServiceStatus::Deleting => return Err(CoreError::ServiceDeleting(svc.name.clone())),
            ServiceStatus::Creating => true,
            _ => false,
        };
        let record = TaskRecord {
            trace,
            key,
            ..self.new_record(svc, &template, action, args, priority)
        };
        let task = Task::new(record.clone(), Arc::downgrade(svc));
        if !creating {
            self.0.store.commit(vec![StoreOp::PutTask(record)]).await?;
        }
        self.enqueue(svc, &task, priority).await?;
        Ok(task)
    }

    /// A new task of `svc` for `action`, next in the robot's queue order.
    pub(super) fn new_record(
        &self,
        svc: &Service,
        template: &Template,
        action: &str,
        args: Value,
        priority: Priority,
    ) -> TaskRecord {
        TaskRecord {
            guid: Uuid::new_v4(),
            service_guid: svc.guid,
            service_name: svc.name.clone(),
            template_uid: template.uid_text.clone(),
            action_name: action.to_owned(),
            args,
            priority,
            seq: self.0.seq.fetch_add(1, Ordering::Relaxed),
            state: TaskState::New,
            attempt: 0,
            created: crate::time::now(),
            started: None,
            duration: None,
            result: None,
            eco: None,
            trace: None,
            key: None,
        }
    }

    /// Puts a stored `task` in the queue of `svc` and has it drained: by
    /// the loop already draining it, or by a new one. A restored service
    /// not validated yet is validated first.
    async fn enqueue(
        &self,
        svc: &Arc<Service>,
        task: &Arc<Task>,
        priority: Priority,
    ) -> Result<(), CoreError> {
        let mut validate = false;
        let info = TaskInfo::of(&task.lock());
        let spawn = {
            let mut inner = svc.lock();
            if inner.status == ServiceStatus::Deleting {
                None
            } else {
                // Told before the task is in the queue: a drive loop under
                // way may start it at once, and it must not be told started
                // before scheduled.
                self.0.events.publish(svc, What::TaskScheduled(info));
                inner.queue.push(priority, task.clone());
                let spawn = !inner.driving && inner.status == ServiceStatus::Ok;
                if spawn {
                    inner.driving = true;
                }
                // Restored and not validated yet: now, not in its turn of
                // the start's pass over every service.
                validate = std::mem::take(&mut inner.unvalidated);
                Some(spawn)
            }
        };
        if validate {
            let (robot, svc) = (self.clone(), svc.clone());
            self.spawn_owned(async move { robot.validate_restored(svc).await });
        }
        let Some(spawn) = spawn else {
            // Deleted while the task was being stored: it must not come back.
            let _ = self
                .0
                .store
                .commit(vec![StoreOp::RemoveTask {
                    guid: task.guid,
                    seq: task.seq,
                }])
                .await;
            return Err(CoreError::ServiceDeleting(svc.name.clone()));
        };
        if spawn {
            self.spawn_drive(svc.clone());
        }
        Ok(())
    }

    /// A task of `svc`, waiting, running or finished.
    pub async fn task(&self, svc: &Service, guid: Uuid) -> Result<TaskRecord, CoreError> {
        if let Some(t) = self.live_task(svc, guid) {
            return Ok(t.record());
        }
        match self.0.store.task(svc.guid, guid).await {
            Ok(Some(t)) if t.service_guid == svc.guid => Ok(t),
            Ok(_) => Err(CoreError::TaskNotFound(guid.to_string())),
            Err(e) => Err(CoreError::Storage(e)),
        }
    }

    /// A waiting or running task of `svc`, as a handle one can wait on.
    pub fn live_task(&self, svc: &Service, guid: Uuid) -> Option<Arc<Task>> {
        let inner = svc.lock();
        let found = inner
            .finishing
            .iter()
            .chain(inner.current.iter())
            .chain(inner.queue.iter())
            .find(|t| t.guid == guid)
            .cloned();
        found
    }

    /// The tasks of `svc`: the running one and the waiting ones in the order
    /// they will run; with `all`, the kept finished ones before them.
    pub async fn tasks(&self, svc: &Service, all: bool) -> Result<Vec<TaskRecord>, CoreError> {
        let mut out = Vec::new();
        if all {
            out = self.0.store.finished_tasks(svc.guid, usize::MAX).await?;
        }
        let inner = svc.lock();
        // A task that just ended (finishing, or current until its drive loop
        // moves on) may be in the store's answer already: once.
        out.retain(|r| {
            !inner
                .finishing
                .iter()
                .chain(inner.current.iter())
                .any(|t| t.guid == r.guid)
        });
        out.extend(
            inner
                .finishing
                .iter()
                .chain(inner.current.iter())
                .chain(inner.queue.iter())
                .map(|t| t.record()),
        );
        Ok(out)
    }

    /// Cancels a waiting task; it ends in `error` with a `task.cancelled` eco.
    pub async fn cancel_task(&self, svc: &Arc<Service>, guid: Uuid) -> Result<(), CoreError> {
        let removed = svc.lock().queue.remove(guid);
        let Some(task) = removed else {
            let record = self.task(svc, guid).await?;
            return Err(CoreError::TaskNotCancellable {
                guid: guid.to_string(),
                state: record.state.to_string(),
            });
        };
        let now = crate::time::now();
        let mut record = task.record();
        record.state = TaskState::Error;
        record.duration = Some(0.0);
        record.eco = Some(Eco {
            category: "task.cancelled".to_owned(),
            message: "the task was cancelled before it ran".to_owned(),
            trace: String::new(),
            count: 1,
            time_first: now,
            time_last: now,
        });
        self.0
            .store
            .commit(vec![StoreOp::PutTask(record.clone())])
            .await?;
        let info = TaskInfo::of(&record);
        task.finish_then(record, || {
            self.0.events.publish(svc, What::TaskFinished(info))
        });
        Ok(())
    }

    /// Tells the robot that `waiter`'s action waits on a task of another
    /// robot, for as long as the returned edge lives: the graph of pending
    /// work shows it.
    pub fn waiting_remote(&self, waiter: &Arc<Task>, target: RemoteTaskRef) -> WaitEdge {
        self.0.waits.begin_remote(waiter, target)
    }

    /// Waits until `target` is done. When the wait comes from an action (its
    /// task is `waiter`), a wait that could never end fails at once.
    pub async fn wait_task(
        &self,
        waiter: Option<&Arc<Task>>,
        target: &Arc<Task>,
        timeout: Option<Duration>,
    ) -> Result<TaskRecord, WaitError> {
        let _edge = match waiter {
            Some(w) => Some(self.0.waits.begin(w, target).map_err(WaitError::Deadlock)?),
            None => None,
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, target.done())
                .await
                .map_err(|_| WaitError::Timeout(t)),
            None => Ok(target.done().await),
        }
    }
}
