//! Where finished tasks go, and the background work that keeps the history in
//! shape: moving a recent table into it a range of services at a time, and
//! trimming what retention drops. The writer runs this work in slices between commits,
//! sized to the load so that it keeps up without stalling anyone.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;
use zrobot_core::store::Retention;

/// One of the two recent tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recent {
    A,
    B,
}

impl Recent {
    pub fn table(self) -> &'static str {
        match self {
            Recent::A => "recent_tasks_a",
            Recent::B => "recent_tasks_b",
        }
    }

    fn other(self) -> Recent {
        match self {
            Recent::A => Recent::B,
            Recent::B => Recent::A,
        }
    }
}

/// A slice moves or trims at least this many tasks, and more under load.
const SLICE_ROWS: usize = 1024;
/// A slice sweeps this many services, and trims at least as many.
const SLICE_SERVICES: usize = 64;
/// The active recent table is handed over to be moved at this many tasks:
/// small enough that its index stays a few hundred pages, big enough that a
/// service gets several tasks moved at once.
const SWITCH_AT: usize = 16_384;
/// How often every service's history is checked against retention, to catch
/// what the per-service counts miss (age, and services quiet since opening).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How long background work rests after it failed.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// What the history's background work has reached: it rolls back with a
/// failed transaction, so it is kept apart from what may safely run ahead.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Where finished tasks are appended.
    active: Recent,
    /// The recent table being moved, and the last service moved from it
    /// (services move in the order of their guids).
    moving: Option<(Recent, Vec<u8>)>,
    sweep: Sweep,
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
    /// The id of the next finished task: ids give the finishing order.
    next_id: i64,
    /// Tasks appended to the active table since it became active.
    active_rows: usize,
    switch_at: usize,
    /// Tasks finished since the last slice, which sizes the next one.
    since_slice: usize,
    /// `None` when no service ever has too many.
    max_tasks: Option<i64>,
    /// `None` when no task is ever too old.
    max_age_secs: Option<f64>,
    /// How many tasks moved into a service's history make it due for a trim.
    step: usize,
    /// Tasks moved into each service's history since it was last trimmed.
    moved: HashMap<Uuid, usize>,
    due: VecDeque<Uuid>,
    paused_until: Option<Instant>,
}

impl History {
    /// Picks up where the last process left off.
    pub fn open(
        conn: &Connection,
        retention: Retention,
        now: Instant,
    ) -> rusqlite::Result<History> {
        let max_id = |recent: Recent| -> rusqlite::Result<Option<i64>> {
            conn.query_row(
                &format!("SELECT max(id) FROM {}", recent.table()),
                [],
                |r| r.get(0),
            )
        };
        let (a, b) = (max_id(Recent::A)?, max_id(Recent::B)?);
        let floor: i64 = conn
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'finished_id'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        // Both full means a move was under way: the older one is moved again
        // from the start (moving is idempotent), the newer one stays active.
        let (active, moving) = match (a, b) {
            (Some(a), Some(b)) if a < b => (Recent::B, Some((Recent::A, Vec::new()))),
            (Some(_), Some(_)) => (Recent::A, Some((Recent::B, Vec::new()))),
            (None, Some(_)) => (Recent::B, None),
            _ => (Recent::A, None),
        };
        let active_rows: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {}", active.table()),
            [],
            |r| r.get(0),
        )?;
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
                active,
                moving,
                sweep,
            },
            next_id: a.into_iter().chain(b).fold(floor, i64::max) + 1,
            active_rows: usize::try_from(active_rows).unwrap_or(0),
            switch_at: SWITCH_AT,
            since_slice: 0,
            max_tasks,
            max_age_secs,
            step: (retention.max_tasks / 8).clamp(1, 256),
            moved: HashMap::new(),
            due: VecDeque::new(),
            paused_until: None,
        })
    }

    /// Hands over the active table after fewer tasks (tests use it to reach
    /// the moves without writing thousands of tasks).
    #[cfg(test)]
    pub fn set_switch_at(&mut self, tasks: usize) {
        self.switch_at = tasks;
    }

    /// The table a finished task goes to, and its id.
    pub fn append(&mut self) -> (Recent, i64) {
        let id = self.next_id;
        self.next_id += 1;
        self.active_rows += 1;
        self.since_slice += 1;
        (self.progress.active, id)
    }

    pub fn service_deleted(&mut self, service: Uuid) {
        self.moved.remove(&service);
    }

    pub fn pause(&mut self, now: Instant) {
        self.paused_until = Some(now + PAUSE_AFTER_FAILURE);
    }

    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// Whether work is waiting that should not wait for a timer.
    fn busy(&self) -> bool {
        self.progress.moving.is_some()
            || self.active_rows >= self.switch_at
            || !self.due.is_empty()
            || matches!(self.progress.sweep, Sweep::After(_))
    }

    /// Whether a slice has something to do now.
    pub fn due(&self, now: Instant) -> bool {
        !self.paused(now)
            && (self.busy()
                || matches!(self.progress.sweep, Sweep::Resting { next } if now >= next))
    }

    /// How long the writer may wait for a commit before it runs a slice alone.
    pub fn wait(&self, now: Instant) -> Duration {
        let next = match self.paused_until {
            Some(until) if now < until => until,
            _ if self.busy() => return Duration::ZERO,
            _ => match self.progress.sweep {
                Sweep::Resting { next } => next,
                _ => return Duration::from_secs(3600),
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
        if self.progress.moving.is_none() && self.active_rows >= self.switch_at {
            self.switch();
        }
        self.move_some(conn, budget)?;
        self.trim_some(conn, budget, now)?;
        Ok(())
    }

    /// Hands the active table over to be moved; the other one is empty, since
    /// its own move ended by emptying it.
    fn switch(&mut self) {
        let full = self.progress.active;
        self.progress.moving = Some((full, Vec::new()));
        self.progress.active = full.other();
        self.active_rows = 0;
    }

    /// Moves the tasks of the next few services from the table being moved
    /// into the history; empties the table once every service is done.
    fn move_some(&mut self, conn: &Connection, budget: usize) -> rusqlite::Result<()> {
        let Some((recent, after)) = self.progress.moving.clone() else {
            return Ok(());
        };
        let table = recent.table();
        // The services of the next `budget` tasks, the last one whole: one
        // statement moves them all, in the history's order.
        let last: Option<[u8; 16]> = conn
            .prepare_cached(&format!(
                "SELECT service_guid FROM {table} WHERE service_guid > ?1 \
                 ORDER BY service_guid LIMIT 1 OFFSET ?2"
            ))?
            .query_row(
                params![after, i64::try_from(budget - 1).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()?;
        let upto = last.map_or_else(|| vec![0xff; 17], |l| l.to_vec());
        let range = params![after, upto];
        let moved: Vec<([u8; 16], usize)> = conn
            .prepare_cached(&format!(
                "SELECT service_guid, count(*) FROM {table} \
                 WHERE service_guid > ?1 AND service_guid <= ?2 GROUP BY service_guid"
            ))?
            .query_map(range, |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?
            .collect::<rusqlite::Result<_>>()?;
        conn.prepare_cached(&format!(
            // IGNORE: a task already there was moved before a crash, and is the same.
            "INSERT OR IGNORE INTO finished_tasks ({HISTORY_COLUMNS}) \
             SELECT {HISTORY_COLUMNS} FROM {table} WHERE service_guid > ?1 AND service_guid <= ?2 \
             ORDER BY service_guid, id"
        ))?
        .execute(range)?;
        for (service, tasks) in moved {
            self.note_moved(Uuid::from_bytes(service), tasks);
        }
        if last.is_some() {
            self.progress.moving = Some((recent, upto));
            return Ok(());
        }
        // Ids must keep growing once both recent tables are empty.
        conn.execute(
            &format!(
                "INSERT INTO store_meta (key, value) SELECT 'finished_id', max(id) FROM {table} WHERE true \
                 HAVING max(id) IS NOT NULL ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)"
            ),
            [],
        )?;
        conn.execute(&format!("DELETE FROM {table}"), [])?;
        self.progress.moving = None;
        Ok(())
    }

    fn note_moved(&mut self, service: Uuid, tasks: usize) {
        if self.max_tasks.is_none() || tasks == 0 {
            return;
        }
        let moved = self.moved.entry(service).or_insert(0);
        let before = *moved;
        *moved += tasks;
        if before < self.step && *moved >= self.step {
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
            }
        }
        if let Sweep::After(after) = &self.progress.sweep {
            let mut next = conn.prepare_cached(
                "SELECT service_guid FROM finished_tasks WHERE service_guid > ?1 ORDER BY service_guid LIMIT 1",
            )?;
            let mut after = after.clone();
            let mut rest = true;
            for _ in 0..SLICE_SERVICES {
                match next
                    .query_row([&after], |r| r.get::<_, [u8; 16]>(0))
                    .optional()?
                {
                    Some(service) => {
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
        // Services become due about once per `step` tasks moved: trim twice as fast.
        let visits = SLICE_SERVICES.max(budget.saturating_mul(2) / self.step);
        let mut deleted = 0;
        for _ in 0..visits {
            if deleted >= budget {
                break;
            }
            let Some(service) = self.due.pop_front() else {
                break;
            };
            self.moved.remove(&service);
            deleted += self.trim_service(conn, service)?;
        }
        Ok(())
    }

    /// Deletes what retention drops from one service's history: all but the
    /// newest `max_tasks`, and the old tasks at its start (up to the first
    /// young one: tasks finish in about the order they were created, and one
    /// that lingers behind a young one goes once that one does).
    fn trim_service(&self, conn: &Connection, service: Uuid) -> rusqlite::Result<usize> {
        let mut deleted = 0;
        if let Some(max_tasks) = self.max_tasks {
            deleted += conn
                .prepare_cached(
                    "DELETE FROM finished_tasks WHERE service_guid = ?1 AND id <= \
                     (SELECT id FROM finished_tasks WHERE service_guid = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(params![service.as_bytes(), max_tasks])?;
        }
        if let Some(max_age) = self.max_age_secs {
            let cutoff = zrobot_core::time::now() - max_age;
            deleted += conn
                .prepare_cached(
                    "DELETE FROM finished_tasks WHERE service_guid = ?1 AND id < coalesce( \
                     (SELECT id FROM finished_tasks WHERE service_guid = ?1 AND created >= ?2 ORDER BY id LIMIT 1), \
                     9223372036854775807)",
                )?
                .execute(params![service.as_bytes(), cutoff])?;
        }
        Ok(deleted)
    }

    /// Hands the active table over if it holds anything, so that a full
    /// compaction empties both; says whether there was anything.
    pub fn switch_if_any(&mut self, conn: &Connection) -> rusqlite::Result<bool> {
        if self.progress.moving.is_some() {
            return Ok(true);
        }
        let table = self.progress.active.table();
        let any: bool =
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                r.get(0)
            })?;
        if any {
            self.switch();
        }
        Ok(any)
    }

    /// One step of moving, however big.
    pub fn move_step(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.move_some(conn, usize::MAX)
    }

    /// Starts a sweep of every service now.
    pub fn start_sweep(&mut self) {
        self.paused_until = None;
        if !matches!(self.progress.sweep, Sweep::Off) {
            self.progress.sweep = Sweep::After(Vec::new());
        }
    }

    /// Whether trimming has work left.
    pub fn trimming(&self) -> bool {
        !self.due.is_empty() || matches!(self.progress.sweep, Sweep::After(_))
    }

    /// One step of trimming, however big.
    pub fn trim_step(&mut self, conn: &Connection, now: Instant) -> rusqlite::Result<()> {
        self.trim_some(conn, usize::MAX, now)
    }
}

/// The columns of `finished_tasks`, which the recent tables have too.
pub(crate) const HISTORY_COLUMNS: &str =
    "service_guid, id, guid, created, service_name, template_uid, action_name, \
     args, priority, seq, state, attempt, started, duration, result, eco, trace";
