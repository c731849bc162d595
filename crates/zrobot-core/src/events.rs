//! The robot's event stream: what happens to services and tasks, in order,
//! each event with an id one above the last. A bounded window of recent
//! events is kept so that a subscriber that lost its connection resumes
//! where it was (`Last-Event-ID`); one that asks for events older than the
//! window, or falls behind the live stream, is told how many it missed (a
//! gap) and goes on. Publishing never waits on a subscriber.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::service::{LogLine, Service, TagState};
use crate::task::{TaskRecord, TaskState};

/// Events kept for subscribers that resume.
pub const WINDOW: usize = 8192;
/// Events a live subscriber may fall behind by before it is told of a gap.
pub const LAG: usize = 4096;
/// The same for a subscriber to one service's events.
pub const SERVICE_LAG: usize = 1024;

/// What happened.
#[derive(Debug, Clone)]
pub enum What {
    ServiceCreated,
    ServiceDeleted,
    /// Moved to another template version.
    ServiceUpgraded {
        from: String,
        to: String,
    },
    TaskScheduled(TaskInfo),
    TaskStarted(TaskInfo),
    /// Ended `ok` or `error`, its outcome durable.
    TaskFinished(TaskInfo),
    /// A tag set (`state`) or removed (`None`); a whole category removed
    /// when `tag` is `None`.
    StateChanged {
        category: String,
        tag: Option<String>,
        state: Option<TagState>,
    },
    Log(LogLine),
}

impl What {
    /// The event's kind as the stream names it.
    pub fn kind(&self) -> &'static str {
        match self {
            What::ServiceCreated => "service.created",
            What::ServiceDeleted => "service.deleted",
            What::ServiceUpgraded { .. } => "service.upgraded",
            What::TaskScheduled(_) => "task.scheduled",
            What::TaskStarted(_) => "task.started",
            What::TaskFinished(_) => "task.finished",
            What::StateChanged { .. } => "state.changed",
            What::Log(_) => "log",
        }
    }
}

/// A task as an event tells it: enough to follow it, not its arguments or
/// result (the task itself has them), so that the window holds no task
/// alive.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub guid: Uuid,
    pub action: String,
    pub state: TaskState,
    pub attempt: u32,
    pub created: f64,
    pub started: Option<f64>,
    pub duration: Option<f64>,
    /// Why it failed: the eco's category and message.
    pub eco: Option<(String, String)>,
}

impl TaskInfo {
    pub fn of(r: &TaskRecord) -> TaskInfo {
        TaskInfo {
            guid: r.guid,
            action: r.action_name.clone(),
            state: r.state,
            attempt: r.attempt,
            created: r.created,
            started: r.started,
            duration: r.duration,
            eco: r
                .eco
                .as_ref()
                .map(|e| (e.category.clone(), e.message.clone())),
        }
    }
}

/// Every kind of event, for help texts and filters.
pub const KINDS: &[&str] = &[
    "service.created",
    "service.deleted",
    "service.upgraded",
    "task.scheduled",
    "task.started",
    "task.finished",
    "state.changed",
    "log",
];

/// One event of a service.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: u64,
    pub time: f64,
    pub service: Arc<Service>,
    pub what: What,
    /// The event as the API sends it, made by the first subscriber that
    /// sends it and reused by the others: every subscriber sends the same
    /// bytes (what a caller may see decides whether, not how).
    pub encoded: OnceLock<Arc<str>>,
}

/// The robot's events: the window and the live streams. Publishing costs a
/// lock and a slot of the window's ring, nothing more, until someone
/// subscribes: only then is an event shared with live subscribers. A
/// subscriber to one service has a channel of that service's events only,
/// so that many of them cost the publisher one map lookup, not a wake-up
/// each per event.
pub struct Events {
    window: Mutex<Window>,
    live: broadcast::Sender<Arc<Event>>,
    by_service: Mutex<HashMap<Uuid, broadcast::Sender<Arc<Event>>>>,
    /// Subscriptions alive: while none is, events only go to the window.
    subscribers: Arc<AtomicUsize>,
}

struct Window {
    /// The id of this run's first event.
    first: u64,
    /// The id of the next event.
    next: u64,
    /// The last [`WINDOW`] events; event `id` in slot `id % WINDOW`
    /// (allocated with the first event).
    ring: Vec<Option<Event>>,
}

impl Window {
    /// The id of the oldest event kept.
    fn first_kept(&self) -> u64 {
        self.next.saturating_sub(WINDOW as u64).max(self.first)
    }

    fn get(&self, id: u64) -> Option<&Event> {
        self.ring
            .get((id % WINDOW as u64) as usize)
            .and_then(Option::as_ref)
            .filter(|e| e.id == id)
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// Ids start at the robot's start time in microseconds, so that they
    /// keep growing across restarts and an id of an earlier run is never
    /// taken for one of this run.
    pub fn new() -> Events {
        let first = ((crate::time::now() * 1e6) as u64).max(1);
        Events {
            window: Mutex::new(Window {
                first,
                next: first,
                ring: Vec::new(),
            }),
            live: broadcast::channel(LAG).0,
            by_service: Mutex::default(),
            subscribers: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event of `service` and hands it to the live subscribers.
    /// Never waits: a subscriber behind by [`LAG`] loses the oldest ones.
    pub(crate) fn publish(&self, service: &Arc<Service>, what: What) {
        let mut event = Event {
            id: 0,
            time: crate::time::now(),
            service: service.clone(),
            what,
            encoded: OnceLock::new(),
        };
        let mut w = self.lock();
        event.id = w.next;
        w.next += 1;
        let shared =
            (self.subscribers.load(Ordering::Acquire) > 0).then(|| Arc::new(event.clone()));
        if w.ring.is_empty() {
            w.ring.resize_with(WINDOW, || None);
        }
        let slot = (event.id % WINDOW as u64) as usize;
        // The event it replaces is dropped after the lock.
        let old = w.ring[slot].replace(event);
        // Sent under the window's lock: the live streams have the ids'
        // order, and a subscriber never misses one between its replay and
        // its first live event. No receiver is not an error.
        if let Some(event) = shared {
            let mut by = self.by_service.lock().unwrap_or_else(|e| e.into_inner());
            let guid = event.service.guid;
            if let Some(tx) = by.get(&guid) {
                if tx.send(event.clone()).is_err() {
                    // Its last subscriber is gone.
                    by.remove(&guid);
                }
            }
            drop(by);
            let _ = self.live.send(event);
        }
        drop(w);
        drop(old);
    }

    /// The id the next event will have.
    pub fn next_id(&self) -> u64 {
        self.lock().next
    }

    /// Subscribes: the kept events after `after` (all kept ones without it),
    /// then the live ones. If events after `after` are no longer kept, the
    /// subscription starts with a gap.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let w = self.lock();
        let live = self.live.subscribe();
        self.replayed(&w, after, None, live)
    }

    /// [`Events::subscribe`] to the events of service `guid` only.
    pub fn subscribe_to(&self, guid: Uuid, after: Option<u64>) -> Subscription {
        let w = self.lock();
        let live = self
            .by_service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(guid)
            .or_insert_with(|| broadcast::channel(SERVICE_LAG).0)
            .subscribe();
        self.replayed(&w, after, Some(guid), live)
    }

    /// A subscription to `live` that first replays the kept events after
    /// `after` (of service `only`, if given). Made under the window's lock.
    fn replayed(
        &self,
        w: &Window,
        after: Option<u64>,
        only: Option<Uuid>,
        live: broadcast::Receiver<Arc<Event>>,
    ) -> Subscription {
        let first_kept = w.first_kept();
        let (from, gap) = match after {
            None => (first_kept, None),
            // An id this run has not given: an earlier run's, or made up.
            Some(a) if a >= w.next || a + 1 < w.first => (first_kept, Some(Gap::Unknown)),
            Some(a) if a + 1 < first_kept => (first_kept, Some(Gap::Missed(first_kept - a - 1))),
            Some(a) => (a + 1, None),
        };
        let replay = (from..w.next)
            .filter_map(|id| w.get(id))
            .filter(|e| only.is_none_or(|g| e.service.guid == g))
            .map(|e| Arc::new(e.clone()))
            .collect();
        self.subscribers.fetch_add(1, Ordering::AcqRel);
        Subscription {
            gap,
            replay,
            live,
            _counted: Counted(self.subscribers.clone()),
        }
    }
}

/// Counts a subscription for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Events a subscriber did not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// This many events of the robot were skipped (for a subscriber to one
    /// service, not all of them need be of that service).
    Missed(u64),
    /// Some, how many is not known (the id asked for is not of this run).
    Unknown,
}

/// What a subscription gives next.
#[derive(Debug)]
pub enum Next {
    Event(Arc<Event>),
    Gap(Gap),
}

/// One subscriber's events: a gap if there is one, the replay, then the
/// live stream.
pub struct Subscription {
    gap: Option<Gap>,
    replay: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    _counted: Counted,
}

impl Subscription {
    /// The next event, or the gap before it; `None` once the robot is gone.
    pub async fn next(&mut self) -> Option<Next> {
        if let Some(gap) = self.gap.take() {
            return Some(Next::Gap(gap));
        }
        if let Some(e) = self.replay.pop_front() {
            return Some(Next::Event(e));
        }
        match self.live.recv().await {
            Ok(e) => Some(Next::Event(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Next::Gap(Gap::Missed(n))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is there now, without waiting; `None` when
    /// none is (or the robot is gone).
    pub fn try_next(&mut self) -> Option<Next> {
        if let Some(gap) = self.gap.take() {
            return Some(Next::Gap(gap));
        }
        if let Some(e) = self.replay.pop_front() {
            return Some(Next::Event(e));
        }
        match self.live.try_recv() {
            Ok(e) => Some(Next::Event(e)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Next::Gap(Gap::Missed(n))),
            Err(_) => None,
        }
    }

    /// The replayed events not yet taken (and a gap before them): none left
    /// means what follows is live.
    pub fn replaying(&self) -> bool {
        self.gap.is_some() || !self.replay.is_empty()
    }
}
