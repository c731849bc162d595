//! Recurring actions: one timer loop for the whole robot, not one per service.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::robot::{Background, Robot, RobotInner};
use crate::service::{Service, ServiceStatus, TagState};
use crate::task::{Priority, TaskRecord, TaskState};

pub(crate) struct Entry {
    pub due: Instant,
    pub service: Weak<Service>,
    pub action: String,
    pub period: Duration,
}

struct Queued(Entry, u64);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: the heap's top is the earliest due.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.0.due, other.1).cmp(&(self.0.due, self.1))
    }
}

/// Hands entries to the timer loop.
pub(crate) struct Recurring {
    /// `None` when the robot queues no recurring action on its own.
    tx: Option<mpsc::UnboundedSender<Entry>>,
}

impl Recurring {
    /// Starts the timer loop, owned by the robot's `background`; it ends
    /// when the robot shuts down or is dropped. Not `enabled`: no loop, and
    /// [`Recurring::add`] does nothing.
    pub fn start(robot: Weak<RobotInner>, background: &Background, enabled: bool) -> Recurring {
        if !enabled {
            return Recurring { tx: None };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        background.spawn(run(robot, rx));
        Recurring { tx: Some(tx) }
    }

    /// Schedules `action` of `service` now and then every `period`.
    pub fn add(&self, service: &Arc<Service>, action: &str, period: Duration) {
        let Some(tx) = &self.tx else { return };
        let _ = tx.send(Entry {
            due: Instant::now(),
            service: Arc::downgrade(service),
            action: action.to_owned(),
            period,
        });
    }
}

async fn run(robot: Weak<RobotInner>, mut rx: mpsc::UnboundedReceiver<Entry>) {
    let mut heap: BinaryHeap<Queued> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = heap.peek().map(|q| q.0.due);
        tokio::select! {
            entry = rx.recv() => match entry {
                Some(e) => { seq += 1; heap.push(Queued(e, seq)); }
                None => return,
            },
            _ = async { match next { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                let Some(inner) = robot.upgrade() else { return };
                let robot = Robot::from_inner(inner);
                let now = Instant::now();
                while heap.peek().is_some_and(|q| q.0.due <= now) {
                    let Queued(mut e, _) = heap.pop().expect("peeked");
                    let Some(svc) = e.service.upgrade() else { continue };
                    let status = svc.status();
                    if status == ServiceStatus::Deleting || robot.service(svc.guid).is_none() {
                        continue;
                    }
                    // Still listed in the manifest of the service's current template?
                    if svc.template().policy(&e.action).recurring.is_none() {
                        continue;
                    }
                    if status == ServiceStatus::Ok && !already_pending(&svc, &e.action) {
                        let robot = robot.clone();
                        let action = e.action.clone();
                        let scheduler = robot.clone();
                        scheduler.spawn_owned(async move {
                            match robot
                                .schedule_with(&svc, &action, serde_json::Value::Null, Priority::Normal)
                                .await
                            {
                                Ok(task) => {
                                    tell(&svc, &action, &task.done().await);
                                    if let Err(e) = robot.save_state(&svc).await {
                                        tracing::warn!(service = %svc.name, %action, "the state of a recurring run is not stored: {e}");
                                    }
                                }
                                Err(err) => {
                                    tracing::debug!(service = %svc.name, %action, "recurring action not scheduled: {err}");
                                }
                            }
                        });
                    }
                    e.due += e.period;
                    if e.due <= now {
                        e.due = now + e.period;
                    }
                    seq += 1;
                    heap.push(Queued(e, seq));
                }
            }
        }
    }
}

/// A recurring run that failed says so in the state table
/// (`recurring/<action>=error`), so that the service's state shows it; the
/// next run that works sets it back to `ok`. A healthy recurring action
/// adds nothing to the table.
fn tell(svc: &Arc<Service>, action: &str, ended: &TaskRecord) {
    match ended.state {
        TaskState::Error => svc.state_set(CATEGORY, action, TagState::Error),
        TaskState::Ok if svc.state_get(CATEGORY, Some(action)).contains_key(action) => {
            svc.state_set(CATEGORY, action, TagState::Ok)
        }
        _ => {}
    }
}

/// The state-table category of failed recurring runs.
const CATEGORY: &str = "recurring";

/// Whether `action` already waits in the queue (never twice in the queue).
fn already_pending(svc: &Service, action: &str) -> bool {
    let inner = svc.lock();
    let pending = inner.queue.iter().any(|t| t.lock().action_name == action);
    pending
}
