//! Deadlock detection for actions that wait on other tasks.
//!
//! A task that waits is blocked by the task it waits on; a waiting (`new`)
//! task is itself blocked by the running task of its service, since a service
//! runs one task at a time. Following those edges from the task waited on,
//! reaching the waiter again means the wait could never end. Cycles can only
//! appear when a wait begins, so each new wait checks, under one lock that
//! only waits take (never the task hot path).

use std::sync::{Arc, Mutex};

use crate::task::{RemoteTaskRef, Task, TaskState, WaitTarget};

#[derive(Default)]
pub(crate) struct WaitGraph {
    lock: Mutex<()>,
}

/// Clears the waiter's edge when the wait ends, however it ends.
pub struct WaitEdge {
    waiter: Arc<Task>,
}

impl Drop for WaitEdge {
    fn drop(&mut self) {
        *self
            .waiter
            .waiting_on
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// `` `action` of service `name` ``.
pub(crate) fn describe(t: &Task) -> String {
    let r = t.lock();
    format!("`{}` of service `{}`", r.action_name, r.service_name)
}

/// What blocks `task` now: for a waiting task, the running task of its
/// service (a service runs one task at a time); for a running one, what its
/// action waits on; nothing for a task done, or running free.
pub(crate) fn blocker(task: &Task) -> Option<WaitTarget> {
    match task.state() {
        TaskState::Ok | TaskState::Error => None,
        TaskState::New => task
            .service
            .upgrade()
            .and_then(|s| s.running_task())
            .map(WaitTarget::Local),
        TaskState::Running => task.waiting_on(),
    }
}

impl WaitGraph {
    /// Records that `waiter` waits on `target`, or returns the cycle this wait
    /// would close, described from the waiter round to itself.
    pub fn begin(&self, waiter: &Arc<Task>, target: &Arc<Task>) -> Result<WaitEdge, String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut chain = vec![describe(waiter)];
        let mut current = target.clone();
        // Bounded: a chain is no longer than the tasks that exist, but a bound
        // keeps a bug from turning into a hang.
        for _ in 0..100_000 {
            if Arc::ptr_eq(&current, waiter) {
                chain.push(describe(waiter));
                return Err(chain.join(" -> "));
            }
            chain.push(match current.state() {
                TaskState::New => format!("{} (queued)", describe(&current)),
                _ => describe(&current),
            });
            match blocker(&current) {
                Some(WaitTarget::Local(next)) => current = next,
                // Another robot: this one cannot see past it.
                Some(WaitTarget::Remote(_)) | None => break,
            }
        }
        *waiter.waiting_on.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(WaitTarget::Local(target.clone()));
        Ok(WaitEdge {
            waiter: waiter.clone(),
        })
    }

    /// Records that `waiter` waits on a task of another robot, until the
    /// edge is dropped.
    pub fn begin_remote(&self, waiter: &Arc<Task>, target: RemoteTaskRef) -> WaitEdge {
        *waiter.waiting_on.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(WaitTarget::Remote(Arc::new(target)));
        WaitEdge {
            waiter: waiter.clone(),
        }
    }
}
