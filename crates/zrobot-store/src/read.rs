//! The read queries, and the pool of read connections they run on. Reads are
//! blocking calls: the store runs them on tokio's blocking threads (or, for an
//! in-memory database, on the writer thread), never on an async thread.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;
use zrobot_core::store::{KeyedTask, Loaded, Retention, KEYS_KEPT, KEY_LIFETIME_SECS};
use zrobot_core::task::TaskRecord;

use crate::codec::{service_from_row, task_from_row, uuid_at, SERVICE_COLUMNS, TASK_COLUMNS};
use crate::error::Failure;
use crate::history::{self, SharedUnindexed};

/// Every service, the waiting and running tasks in queue order, and the settings.
pub(crate) fn load(conn: &mut Connection) -> Result<Loaded, Failure> {
    // One read transaction, so that services and tasks are of the same moment.
    let tx = conn.transaction()?;
    let services = {
        let mut st = tx.prepare_cached(&format!("SELECT {SERVICE_COLUMNS} FROM services"))?;
        let mut rows = st.query([])?;
        let mut services = Vec::new();
        while let Some(row) = rows.next()? {
            services.push(service_from_row(row)?);
        }
        services
    };
    let mut waiting = {
        let mut st = tx.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM waiting_tasks"))?;
        let mut rows = st.query([])?;
        let mut waiting = Vec::new();
        while let Some(row) = rows.next()? {
            waiting.push(task_from_row(row, 0)?);
        }
        waiting
    };
    let settings = {
        let mut st = tx.prepare_cached("SELECT key, value FROM settings")?;
        let mut rows = st.query([])?;
        let mut settings = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let value =
                serde_json::from_str(row.get_ref(1)?.as_str()?).map_err(|e| Failure::Corrupt {
                    what: "the value",
                    owner: format!("setting `{key}`"),
                    detail: e.to_string(),
                })?;
            settings.insert(key, value);
        }
        settings
    };
    let keys = keys(&tx)?;
    tx.finish()?;
    // The queue table is in `seq` order already; kept stable whatever its key.
    waiting.sort_by_key(|t| t.seq);
    Ok(Loaded {
        services,
        waiting,
        settings,
        keys,
    })
}

/// The newest keyed finished tasks of the last [`KEY_LIFETIME_SECS`], oldest
/// first: a walk back along the index of keyed tasks, which stops at the
/// first one that finished before then (they are in finishing order).
fn keys(conn: &Connection) -> Result<Vec<KeyedTask>, Failure> {
    let since = zrobot_core::time::now() - KEY_LIFETIME_SECS;
    let mut st = conn.prepare_cached(
        "SELECT idem_key, service_guid, guid, created, coalesce(started + duration, created) \
         FROM done_tasks INDEXED BY done_tasks_keyed WHERE idem_key IS NOT NULL ORDER BY id DESC",
    )?;
    let mut rows = st.query([])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let (created, finished): (f64, f64) = (row.get(3)?, row.get(4)?);
        if finished < since || keys.len() == KEYS_KEPT {
            break;
        }
        if created < since {
            continue;
        }
        let task = uuid_at(row, 2, "task guid", "a keyed task")?;
        keys.push(KeyedTask {
            key: row.get(0)?,
            service: uuid_at(row, 1, "service guid", &format!("task {task}"))?,
            task,
            created,
        });
    }
    keys.reverse();
    Ok(keys)
}

/// A finished task by its id; `None` when retention took it.
fn done_task(conn: &Connection, id: i64) -> Result<Option<TaskRecord>, Failure> {
    conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM done_tasks WHERE id = ?1"
    ))?
    .query_row([id], |row| Ok(task_from_row(row, 0)))
    .optional()?
    .transpose()
}

/// One task of `service`, wherever it is.
pub(crate) fn task(
    conn: &mut Connection,
    unindexed: &SharedUnindexed,
    service: Uuid,
    guid: Uuid,
) -> Result<Option<TaskRecord>, Failure> {
    // Before the snapshot: a task no longer here is in the index by then.
    let id = history::lock(unindexed).id_of(guid);
    let tx = conn.transaction()?;
    if let Some(id) = id {
        // The newest run of the task, since indexed ones are older.
        if let Some(task) = done_task(&tx, id)? {
            if task.service_guid == service {
                return Ok(Some(task));
            }
        }
    }
    let key = params![service.as_bytes(), guid.as_bytes()];
    let indexed = tx
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM done_tasks WHERE id IN \
             (SELECT id FROM done_by_service WHERE service_guid = ?1) AND guid = ?2 ORDER BY id DESC LIMIT 1",
        ))?
        .query_row(key, |row| Ok(task_from_row(row, 0)))
        .optional()?;
    if let Some(task) = indexed {
        return task.map(Some);
    }
    let waiting = tx
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM waiting_tasks WHERE guid = ?2 AND service_guid = ?1"
        ))?
        .query_row(key, |row| Ok(task_from_row(row, 0)))
        .optional()?;
    waiting.transpose()
}

/// The newest `limit` finished tasks of `service` that retention keeps,
/// oldest first. Retention is applied here, so that what is shown never
/// depends on how far the background work has got.
pub(crate) fn finished_tasks(
    conn: &mut Connection,
    unindexed: &SharedUnindexed,
    service: Uuid,
    limit: usize,
    retention: Retention,
) -> Result<Vec<TaskRecord>, Failure> {
    let kept = retention.max_tasks.min(limit);
    if kept == 0 {
        return Ok(Vec::new());
    }
    let cutoff = zrobot_core::time::now() - retention.max_age_secs;
    // SQLite would bind NaN as NULL, and hide everything.
    let cutoff = if cutoff.is_nan() { f64::MIN } else { cutoff };
    // Before the snapshot: a task no longer here is in the index by then.
    let recent = history::lock(unindexed).ids_of(service);
    let tx = conn.transaction()?;
    let mut found: Vec<(i64, TaskRecord)> = Vec::new();
    // The unindexed ones are the newest; the index gives the rest.
    for id in recent.into_iter().rev() {
        if found.len() >= kept {
            break;
        }
        if let Some(task) = done_task(&tx, id)? {
            if task.created >= cutoff {
                found.push((id, task));
            }
        }
    }
    {
        let mut st = tx.prepare_cached(&format!(
            "SELECT id, {TASK_COLUMNS} FROM done_tasks WHERE id IN \
             (SELECT id FROM done_by_service WHERE service_guid = ?1) AND created >= ?2 ORDER BY id DESC LIMIT ?3"
        ))?;
        let mut rows = st.query(params![
            service.as_bytes(),
            cutoff,
            i64::try_from(kept).unwrap_or(i64::MAX)
        ])?;
        while let Some(row) = rows.next()? {
            found.push((row.get(0)?, task_from_row(row, 1)?));
        }
    }
    // A task indexed twice over a restart, or finished twice, shows once.
    found.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    found.dedup_by_key(|(id, _)| *id);
    let mut seen = HashSet::with_capacity(found.len());
    found.retain(|(_, t)| seen.insert(t.guid));
    found.truncate(kept);
    Ok(found.into_iter().rev().map(|(_, t)| t).collect())
}

/// Idle read connections beyond this many are closed.
const MAX_IDLE_READERS: usize = 4;

/// Read connections to a database file, opened as needed and reused.
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    pub fn new(path: PathBuf) -> ReaderPool {
        ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an idle connection, or a new one.
    pub fn run<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = f(&mut conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    fn connect(&self) -> Result<Connection, Failure> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // A reader can never write by mistake.
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(conn)
    }
}
