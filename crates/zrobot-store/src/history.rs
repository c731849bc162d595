//! Where finished tasks go, and the background work that keeps them in shape.
//!
//! A finished task is appended once to `done_tasks`, in finishing order (its
//! `id`), and never moved: a commit only touches the table's last pages. The
//! per-service index `done_by_service` is filled later, in batches, from
//! [`Unindexed`], an in-memory index of the tasks not yet in it that readers
//! consult too. Batches touch each service's part of the index once for many
//! tasks. Retention deletes what it drops in the same background slices,
//! sized to the load so that they keep up without stalling anyone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;
use zrobot_core::store::Retention;

/// A slice indexes or trims at least this many tasks, and more under load.
const SLICE_ROWS: usize = 1024;
/// A slice sweeps this many services, and trims at least as many.
const SLICE_SERVICES: usize = 64;
/// An indexing round starts at this many unindexed tasks: enough that a
/// service gets several tasks indexed at once, few enough that readers and
/// a restart scan little.
const INDEX_AT: usize = 16_384;
/// Unindexed tasks are indexed anyway once the writer is this long idle.
const INDEX_WHEN_IDLE: Duration = Duration::from_secs(2);
/// How often every service's history is checked against retention, to catch
/// what the per-service counts miss (age, and services quiet since opening).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How long background work rests after it failed.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The finished tasks that `done_by_service` does not list yet, by service
/// and by guid. The writer adds to it once a commit is durable and removes
/// from it once the index entries are; a reader locks it *before* its read
/// transaction starts, so that a task missing here is in the index of any
/// snapshot it takes afterwards.
#[derive(Debug, Default)]
pub(crate) struct Unindexed {
    /// Each service's tasks, by increasing id.
    by_service: HashMap<Uuid, Vec<(i64, Uuid)>>,
    /// A task's newest id (a task finished again gets another).
    by_guid: HashMap<Uuid, i64>,
    len: usize,
}

pub(crate) type SharedUnindexed = Arc<Mutex<Unindexed>>;

pub(crate) fn lock(index: &SharedUnindexed) -> MutexGuard<'_, Unindexed> {
    index.lock().unwrap_or_else(|e| e.into_inner())
}

impl Unindexed {
    /// The ids of `service`'s unindexed tasks, oldest first.
    pub fn ids_of(&self, service: Uuid) -> Vec<i64> {
        self.by_service
            .get(&service)
            .map(|tasks| tasks.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    /// The newest id of task `guid`, if it is unindexed.
    pub fn id_of(&self, guid: Uuid) -> Option<i64> {
        self.by_guid.get(&guid).copied()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn add(&mut self, service: Uuid, guid: Uuid, id: i64) {
        self.by_service.entry(service).or_default().push((id, guid));
        let newest = self.by_guid.entry(guid).or_insert(id);
        *newest = (*newest).max(id);
        self.len += 1;
    }

    /// Forgets `service`'s tasks up to id `upto`, or all of them.
    fn remove(&mut self, service: Uuid, upto: Option<i64>) {
        let Some(tasks) = self.by_service.get_mut(&service) else {
            return;
        };
        let cut = upto.map_or(tasks.len(), |upto| {
            tasks.partition_point(|(id, _)| *id <= upto)
        });
        for (id, guid) in tasks.drain(..cut) {
            if self.by_guid.get(&guid) == Some(&id) {
                self.by_guid.remove(&guid);
            }
        }
        self.len -= cut;
        if tasks.is_empty() {
            self.by_service.remove(&service);
        }
    }

    fn services(&self) -> Vec<Uuid> {
        self.by_service.keys().copied().collect()
    }
}

/// What a transaction does to [`Unindexed`] once it is committed.
#[derive(Debug)]
enum Effect {
    Added { service: Uuid, guid: Uuid, id: i64 },
    Indexed { service: Uuid, upto: i64 },
    ServiceDeleted(Uuid),
}

/// What the history's background work has reached: it rolls back with a
/// failed transaction, so it is kept apart from what may safely run ahead.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    round: Option<Round>,
    sweep: Sweep,
    /// Old tasks may be left to delete.
    aging: bool,
}

/// An indexing round: every task up to `upto` gets indexed, a service at a
/// time; `services[next..]` are still to do.
#[derive(Debug, Clone)]
struct Round {
    upto: i64,
    services: Arc<[Uuid]>,
    next: usize,
}

#[derive(Debug, Clone)]
enum Sweep {
    Resting {
        next: Instant,
    },
    /// Running: services after this one are still to be visited.
    After(Vec<u8>),
    /// Retention keeps everything.
    Off,
}

pub(crate) struct History {
    pub progress: Progress,
    unindexed: SharedUnindexed,
    /// How many tasks `unindexed` holds, kept here so that deciding what to
    /// do next takes no lock (only the writer changes it).
    unindexed_len: usize,
    /// What the open transaction will do to `unindexed` once committed.
    effects: Vec<Effect>,
    /// The id of the next finished task: ids give the finishing order.
    next_id: i64,
    index_at: usize,
    /// Tasks finished since the last slice, which sizes the next one.
    since_slice: usize,
    /// When the writer last had a commit to make.
    last_commit: Instant,
    /// `None` when no service ever has too many.
    max_tasks: Option<i64>,
    /// `None` when no task is ever too old.
    max_age_secs: Option<f64>,
    /// How many tasks indexed for a service make it due for a trim.
    step: usize,
    /// Tasks indexed for each service since it was last trimmed.
    indexed: HashMap<Uuid, usize>,
    due: VecDeque<Uuid>,
    paused_until: Option<Instant>,
}

impl History {
    /// Picks up where the last process left off: the tasks finished after the
    /// last complete indexing round are read back into [`Unindexed`].
    pub fn open(
        conn: &Connection,
        retention: Retention,
        now: Instant,
    ) -> rusqlite::Result<History> {
        let indexed_id: i64 = conn
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'indexed_id'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut unindexed = Unindexed::default();
        let mut max_id = indexed_id;
        {
            let mut st = conn.prepare(
                "SELECT id, service_guid, guid FROM done_tasks WHERE id > ?1 ORDER BY id",
            )?;
            let mut rows = st.query([indexed_id])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let service = Uuid::from_bytes(row.get(1)?);
                unindexed.add(service, Uuid::from_bytes(row.get(2)?), id);
                max_id = max_id.max(id);
            }
        }
        let max_tasks = i64::try_from(retention.max_tasks).ok();
        let max_age_secs = Some(retention.max_age_secs).filter(|a| a.is_finite());
        let sweep = if max_tasks.is_some() || max_age_secs.is_some() {
            // Everything is checked once soon after opening: retention may
            // have been lowered since the database was last used.
            Sweep::Resting { next: now }
        } else {
            Sweep::Off
        };
        Ok(History {
            progress: Progress {
                round: None,
                sweep,
                aging: false,
            },
            unindexed_len: unindexed.len(),
            unindexed: Arc::new(Mutex::new(unindexed)),
            effects: Vec::new(),
            next_id: max_id + 1,
            index_at: INDEX_AT,
            since_slice: 0,
            last_commit: now,
            max_tasks,
            max_age_secs,
            step: (retention.max_tasks / 8).clamp(1, 256),
            indexed: HashMap::new(),
            due: VecDeque::new(),
            paused_until: None,
        })
    }

    /// Starts indexing rounds at fewer tasks (tests use it to reach them
    /// without writing thousands of tasks).
    #[cfg(test)]
    pub fn set_index_at(&mut self, tasks: usize) {
        self.index_at = tasks;
    }

    /// The index readers share.
    pub fn unindexed(&self) -> SharedUnindexed {
        self.unindexed.clone()
    }

    /// The id of a task of `service` being finished in the open transaction.
    pub fn append(&mut self, service: Uuid, guid: Uuid) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.since_slice += 1;
        self.effects.push(Effect::Added { service, guid, id });
        id
    }

    /// The ids of `service`'s unindexed tasks, the open transaction's too.
    pub fn unindexed_ids(&self, service: Uuid) -> Vec<i64> {
        let mut ids = lock(&self.unindexed).ids_of(service);
        ids.extend(self.effects.iter().filter_map(|e| match e {
            Effect::Added { service: s, id, .. } if *s == service => Some(*id),
            _ => None,
        }));
        ids
    }

    pub fn service_deleted(&mut self, service: Uuid) {
        self.indexed.remove(&service);
        self.effects.push(Effect::ServiceDeleted(service));
    }

    /// A commit of someone's went through: readers may now see what it did.
    pub fn committed(&mut self, now: Instant) {
        self.last_commit = now;
        self.publish();
    }

    /// The open transaction committed: readers may now see what it did.
    /// (Background work calls this alone: the writer is no less idle for it.)
    pub fn publish(&mut self) {
        if self.effects.is_empty() {
            return;
        }
        let mut index = lock(&self.unindexed);
        for effect in self.effects.drain(..) {
            match effect {
                Effect::Added { service, guid, id } => index.add(service, guid, id),
                Effect::Indexed { service, upto } => index.remove(service, Some(upto)),
                Effect::ServiceDeleted(service) => index.remove(service, None),
            }
        }
        self.unindexed_len = index.len();
    }

    /// The open transaction rolled back.
    pub fn rolled_back(&mut self) {
        self.effects.clear();
    }

    pub fn pause(&mut self, now: Instant) {
        self.paused_until = Some(now + PAUSE_AFTER_FAILURE);
    }

    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// Whether work is waiting that should not wait for a timer.
    fn busy(&self) -> bool {
        self.progress.round.is_some()
            || self.progress.aging
            || self.unindexed_len >= self.index_at
            || !self.due.is_empty()
            || matches!(self.progress.sweep, Sweep::After(_))
    }

    /// When idle work (indexing what little there is, the next sweep) is due.
    fn idle_work_at(&self) -> Option<Instant> {
        let index = (self.unindexed_len > 0).then(|| self.last_commit + INDEX_WHEN_IDLE);
        let sweep = match self.progress.sweep {
            Sweep::Resting { next } => Some(next),
            _ => None,
        };
        index.into_iter().chain(sweep).min()
    }

    /// Whether a slice has something to do now.
    pub fn due(&self, now: Instant) -> bool {
        !self.paused(now) && (self.busy() || self.idle_work_at().is_some_and(|at| now >= at))
    }

    /// How long the writer may wait for a commit before it runs a slice alone.
    pub fn wait(&self, now: Instant) -> Duration {
        let next = match self.paused_until {
            Some(until) if now < until => until,
            _ if self.busy() => return Duration::ZERO,
            _ => match self.idle_work_at() {
                Some(at) => at,
                None => return Duration::from_secs(3600),
            },
        };
        next.saturating_duration_since(now)
    }

    /// One slice of background work.
    pub fn slice(&mut self, conn: &Connection, now: Instant) -> rusqlite::Result<()> {
        if self.paused(now) {
            return Ok(());
        }
        self.paused_until = None;
        // Twice the pace tasks arrive at, so that the work catches up.
        let budget = SLICE_ROWS.max(2 * std::mem::take(&mut self.since_slice));
        let idle = now >= self.last_commit + INDEX_WHEN_IDLE;
        let pending = self.unindexed_len;
        if self.progress.round.is_none() && (pending >= self.index_at || (idle && pending > 0)) {
            self.start_round();
        }
        self.index_some(conn, budget)?;
        self.trim_some(conn, budget, now)?;
        Ok(())
    }

    /// Starts indexing every task finished so far.
    fn start_round(&mut self) {
        let mut services = lock(&self.unindexed).services();
        services.sort_unstable();
        self.progress.round = Some(Round {
            upto: self.next_id - 1,
            services: services.into(),
            next: 0,
        });
    }

    /// Indexes the tasks of the round's next few services; ends the round
    /// once every service is done.
    fn index_some(&mut self, conn: &Connection, budget: usize) -> rusqlite::Result<()> {
        let Some(mut round) = self.progress.round.clone() else {
            return Ok(());
        };
        let mut insert = conn.prepare_cached(
            // IGNORE: a task indexed before a crash, in a round that did not end.
            "INSERT OR IGNORE INTO done_by_service (service_guid, id) VALUES (?1, ?2)",
        )?;
        let mut done = 0;
        while done < budget && round.next < round.services.len() {
            let service = round.services[round.next];
            round.next += 1;
            let ids: Vec<i64> = {
                let index = lock(&self.unindexed);
                let mut ids = index.ids_of(service);
                ids.retain(|id| *id <= round.upto);
                ids
            };
            for id in &ids {
                insert.execute(params![service.as_bytes(), id])?;
            }
            done += ids.len().max(1);
            self.effects.push(Effect::Indexed {
                service,
                upto: round.upto,
            });
            self.note_indexed(service, ids.len());
        }
        if round.next < round.services.len() {
            self.progress.round = Some(round);
            return Ok(());
        }
        // After a restart, only tasks after this one are read back.
        conn.prepare_cached(
            "INSERT INTO store_meta (key, value) VALUES ('indexed_id', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute([round.upto])?;
        self.progress.round = None;
        Ok(())
    }

    fn note_indexed(&mut self, service: Uuid, tasks: usize) {
        if self.max_tasks.is_none() || tasks == 0 {
            return;
        }
        let indexed = self.indexed.entry(service).or_insert(0);
        let before = *indexed;
        *indexed += tasks;
        if before < self.step && *indexed >= self.step {
            self.due.push_back(service);
        }
    }

    /// Trims the services that are due, and goes on with the sweep.
    fn trim_some(
        &mut self,
        conn: &Connection,
        budget: usize,
        now: Instant,
    ) -> rusqlite::Result<()> {
        if let Sweep::Resting { next } = self.progress.sweep {
            if now >= next {
                self.progress.sweep = Sweep::After(Vec::new());
                self.progress.aging = true;
            }
        }
        let mut deleted = 0;
        if self.progress.aging {
            let (old, more) = self.trim_old(conn, budget)?;
            deleted += old;
            self.progress.aging = more;
        }
        if let Sweep::After(after) = &self.progress.sweep {
            // Index entries of tasks that age took are dropped on the way.
            let oldest: i64 = conn
                .query_row("SELECT min(id) FROM done_tasks", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })?
                .unwrap_or(self.next_id);
            let mut next = conn.prepare_cached(
                "SELECT service_guid FROM done_by_service WHERE service_guid > ?1 ORDER BY service_guid LIMIT 1",
            )?;
            let mut dangling = conn.prepare_cached(
                "DELETE FROM done_by_service WHERE service_guid = ?1 AND id < ?2",
            )?;
            let mut after = after.clone();
            let mut rest = true;
            for _ in 0..SLICE_SERVICES {
                match next
                    .query_row([&after], |r| r.get::<_, [u8; 16]>(0))
                    .optional()?
                {
                    Some(service) => {
                        deleted += dangling.execute(params![service, oldest])?;
                        self.due.push_back(Uuid::from_bytes(service));
                        after = service.to_vec();
                    }
                    None => {
                        rest = false;
                        break;
                    }
                }
            }
            self.progress.sweep = if rest {
                Sweep::After(after)
            } else {
                Sweep::Resting {
                    next: now + SWEEP_EVERY,
                }
            };
        }
        // Services become due about once per `step` tasks indexed: trim twice as fast.
        let visits = SLICE_SERVICES.max(budget.saturating_mul(2) / self.step);
        for _ in 0..visits {
            if deleted >= budget {
                break;
            }
            let Some(service) = self.due.pop_front() else {
                break;
            };
            self.indexed.remove(&service);
            deleted += self.trim_service(conn, service)?;
        }
        Ok(())
    }

    /// Deletes the oldest tasks up to the first young one, looking at ids
    /// within `budget` of the oldest (tasks finish in about the order they
    /// were created, and one that lingers behind a young one goes once that
    /// one does). Their index entries go as the sweep passes their services.
    /// Says how many went, and whether older ones may remain.
    fn trim_old(&self, conn: &Connection, budget: usize) -> rusqlite::Result<(usize, bool)> {
        let Some(max_age) = self.max_age_secs else {
            return Ok((0, false));
        };
        let cutoff = zrobot_core::time::now() - max_age;
        let first: Option<i64> =
            conn.query_row("SELECT min(id) FROM done_tasks", [], |r| r.get(0))?;
        let Some(first) = first else {
            return Ok((0, false));
        };
        let end = first.saturating_add(i64::try_from(budget).unwrap_or(i64::MAX));
        let young: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM done_tasks WHERE id >= ?1 AND id < ?2 AND created >= ?3 ORDER BY id LIMIT 1",
            )?
            .query_row(params![first, end, cutoff], |r| r.get(0))
            .optional()?;
        let deleted = conn
            .prepare_cached("DELETE FROM done_tasks WHERE id < ?1")?
            .execute([young.unwrap_or(end)])?;
        Ok((deleted, young.is_none() && deleted > 0))
    }

    /// Deletes all but the newest `max_tasks` of one service's indexed tasks.
    fn trim_service(&self, conn: &Connection, service: Uuid) -> rusqlite::Result<usize> {
        let Some(max_tasks) = self.max_tasks else {
            return Ok(0);
        };
        let key = service.as_bytes();
        let last: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM done_by_service WHERE service_guid = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
            )?
            .query_row(params![key, max_tasks], |r| r.get(0))
            .optional()?;
        let Some(last) = last else {
            return Ok(0);
        };
        conn.prepare_cached(
            "DELETE FROM done_tasks WHERE id IN \
             (SELECT id FROM done_by_service WHERE service_guid = ?1 AND id <= ?2)",
        )?
        .execute(params![key, last])?;
        conn.prepare_cached("DELETE FROM done_by_service WHERE service_guid = ?1 AND id <= ?2")?
            .execute(params![key, last])
    }

    /// Starts a round that indexes everything finished so far, if there is
    /// anything and no round runs; says whether a round is under way.
    pub fn index_all(&mut self) -> bool {
        if self.progress.round.is_none() && self.unindexed_len > 0 {
            self.start_round();
        }
        self.progress.round.is_some()
    }

    /// One step of indexing, however big.
    pub fn index_step(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.index_some(conn, usize::MAX)
    }

    /// Starts a sweep of every service now.
    pub fn start_sweep(&mut self) {
        self.paused_until = None;
        if !matches!(self.progress.sweep, Sweep::Off) {
            self.progress.sweep = Sweep::After(Vec::new());
            self.progress.aging = true;
        }
    }

    /// Whether trimming has work left.
    pub fn trimming(&self) -> bool {
        self.progress.aging
            || !self.due.is_empty()
            || matches!(self.progress.sweep, Sweep::After(_))
    }

    /// One step of trimming, however big.
    pub fn trim_step(&mut self, conn: &Connection, now: Instant) -> rusqlite::Result<()> {
        self.trim_some(conn, usize::MAX, now)
    }
}
