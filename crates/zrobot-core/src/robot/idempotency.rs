//! Idempotency keys: a request retried with the key of its first try gets
//! the task that try scheduled, whether the first try is still being
//! scheduled, finished long ago, or came before a restart.
//!
//! A key is reserved before its task is scheduled, so that concurrent
//! duplicates wait for the first and get its task. The key is a column of
//! the task in the store (no second write); at start the robot reads back
//! the keys of the last [`KEY_LIFETIME_SECS`].

use std::collections::{HashMap, VecDeque};

use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use super::Robot;
use crate::error::CoreError;
use crate::service::Service;
use crate::store::{KeyedTask, KEYS_KEPT, KEY_LIFETIME_SECS};
use crate::task::{Priority, TaskRecord, TaskTrace};

/// A key is scoped to its service: the same key on two services names two
/// requests.
type KeyId = (Uuid, String);

/// The keys of recent requests, oldest first; bounded in count and age.
#[derive(Default)]
pub(super) struct Keys {
    entries: HashMap<KeyId, Entry>,
    /// Settled keys in the order they were settled, with when their task was created.
    order: VecDeque<(KeyId, f64)>,
}

enum Entry {
    /// The first request with the key is scheduling; its sender drops when
    /// it is done, which wakes the duplicates.
    Pending(watch::Receiver<()>),
    Done {
        task: Uuid,
        created: f64,
    },
}

/// What a request with a key finds.
enum Claim {
    /// A task was scheduled with this key.
    Done(Uuid),
    /// Another request with this key is scheduling: wait, then look again.
    Wait(watch::Receiver<()>),
    /// The key is new: schedule, then settle it.
    Mine(watch::Sender<()>),
}

impl Keys {
    fn claim(&mut self, id: &KeyId, now: f64) -> Claim {
        match self.entries.get(id) {
            Some(Entry::Done { task, created }) if *created >= now - KEY_LIFETIME_SECS => {
                return Claim::Done(*task)
            }
            Some(Entry::Pending(rx)) => return Claim::Wait(rx.clone()),
            // Too old: a new request.
            Some(Entry::Done { .. }) | None => {}
        }
        let (tx, rx) = watch::channel(());
        self.entries.insert(id.clone(), Entry::Pending(rx));
        Claim::Mine(tx)
    }

    /// Remembers that `id` scheduled `task`, forgetting the oldest keys past
    /// the bounds.
    fn remember(&mut self, id: KeyId, task: Uuid, created: f64) {
        self.entries
            .insert(id.clone(), Entry::Done { task, created });
        self.order.push_back((id, created));
        let since = crate::time::now() - KEY_LIFETIME_SECS;
        while let Some((old, at)) = self.order.front() {
            if self.order.len() <= KEYS_KEPT && *at >= since {
                break;
            }
            // A key settled again later (after expiring) is listed twice:
            // only its newest listing removes it.
            if let Some(Entry::Done { created, .. }) = self.entries.get(old) {
                if *created == *at {
                    self.entries.remove(old);
                }
            }
            self.order.pop_front();
        }
    }

    /// Forgets the reservation of a request that scheduled nothing.
    fn release(&mut self, id: &KeyId) {
        if matches!(self.entries.get(id), Some(Entry::Pending(_))) {
            self.entries.remove(id);
        }
    }
}

/// A reserved key; released if its request ends without a task (an error,
/// or the request was dropped), which wakes the duplicates to try again.
struct Reservation<'r> {
    robot: &'r Robot,
    id: Option<KeyId>,
    _wake: watch::Sender<()>,
}

impl Reservation<'_> {
    fn settle(mut self, task: &TaskRecord) {
        if let Some(id) = self.id.take() {
            self.robot.keys().remember(id, task.guid, task.created);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.robot.keys().release(&id);
        }
    }
}

impl Robot {
    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.0.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Like [`Robot::schedule_traced`], but a repeated `key` (a client
    /// retrying a request whose answer it lost) returns the task the first
    /// request scheduled instead of scheduling again, for
    /// [`KEY_LIFETIME_SECS`] and across restarts. A duplicate that arrives
    /// while the first is being scheduled waits for it. The same key for
    /// another action is refused: it is a client's mistake.
    pub async fn schedule_idempotent(
        &self,
        svc: &std::sync::Arc<Service>,
        action: &str,
        args: Value,
        key: &str,
        trace: Option<TaskTrace>,
    ) -> Result<TaskRecord, CoreError> {
        let id: KeyId = (svc.guid, key.to_owned());
        let reservation = loop {
            let claim = self.keys().claim(&id, crate::time::now());
            match claim {
                Claim::Done(task) => {
                    let record = self.task(svc, task).await?;
                    if record.action_name != action {
                        return Err(CoreError::KeyReused {
                            key: key.to_owned(),
                            action: record.action_name,
                        });
                    }
                    return Ok(record);
                }
                // Ends when the first request settles or gives up its key.
                Claim::Wait(mut rx) => while rx.changed().await.is_ok() {},
                Claim::Mine(wake) => {
                    break Reservation {
                        robot: self,
                        id: Some(id),
                        _wake: wake,
                    }
                }
            }
        };
        let task = self
            .schedule_record(
                svc,
                action,
                args,
                Priority::Normal,
                trace,
                Some(key.to_owned()),
            )
            .await?;
        let record = task.record();
        reservation.settle(&record);
        Ok(record)
    }

    /// Remembers the keys of the tasks found in the store at start.
    pub(super) fn restore_keys<'t>(
        &self,
        finished: Vec<KeyedTask>,
        waiting: impl Iterator<Item = &'t TaskRecord>,
    ) {
        let mut all = finished;
        all.extend(waiting.filter_map(KeyedTask::of));
        all.sort_by(|a, b| a.created.total_cmp(&b.created));
        let mut keys = self.keys();
        for k in all {
            keys.remember((k.service, k.key), k.task, k.created);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> KeyId {
        (Uuid::from_bytes([n; 16]), format!("key-{n}"))
    }

    #[test]
    fn a_key_is_claimed_once_and_then_names_its_task() {
        let mut keys = Keys::default();
        let now = crate::time::now();
        let Claim::Mine(_tx) = keys.claim(&id(1), now) else {
            panic!("a new key is the caller's");
        };
        assert!(matches!(keys.claim(&id(1), now), Claim::Wait(_)));
        let task = Uuid::new_v4();
        keys.remember(id(1), task, now);
        assert!(matches!(keys.claim(&id(1), now), Claim::Done(t) if t == task));
        // The same key on another service is another request.
        let other = (Uuid::from_bytes([9; 16]), "key-1".to_owned());
        assert!(matches!(keys.claim(&other, now), Claim::Mine(_)));
    }

    #[test]
    fn a_released_key_is_free_again() {
        let mut keys = Keys::default();
        let now = crate::time::now();
        let Claim::Mine(tx) = keys.claim(&id(1), now) else {
            panic!("a new key is the caller's");
        };
        let Claim::Wait(rx) = keys.claim(&id(1), now) else {
            panic!("a pending key makes others wait");
        };
        keys.release(&id(1));
        drop(tx);
        assert!(rx.has_changed().is_err(), "the waiter is woken");
        assert!(matches!(keys.claim(&id(1), now), Claim::Mine(_)));
    }

    #[test]
    fn keys_expire_by_age_and_by_count() {
        let mut keys = Keys::default();
        let now = crate::time::now();
        let old = now - KEY_LIFETIME_SECS - 1.0;
        keys.remember(id(1), Uuid::new_v4(), old);
        assert!(
            matches!(keys.claim(&id(1), now), Claim::Mine(_)),
            "a key older than its lifetime names no task"
        );
        for n in 0..=KEYS_KEPT {
            keys.remember((Uuid::nil(), n.to_string()), Uuid::new_v4(), now);
        }
        assert_eq!(keys.order.len(), KEYS_KEPT);
        assert!(
            matches!(
                keys.claim(&(Uuid::nil(), "0".to_owned()), now),
                Claim::Mine(_)
            ),
            "the oldest key past the count is forgotten"
        );
        assert!(matches!(
            keys.claim(&(Uuid::nil(), KEYS_KEPT.to_string()), now),
            Claim::Done(_)
        ));
    }
}
