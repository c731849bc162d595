//! The one thread that writes. Commits queue on a channel in the order they
//! were made; the writer takes everything waiting, applies it in one
//! transaction (group commit) and answers every caller. After a group, and
//! when no commit comes, it runs a slice of the history's background work
//! (see `history`) in a transaction of its own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, CachedStatement, Connection};
use tokio::sync::oneshot;
use uuid::Uuid;
use zrobot_core::store::{CommitDone, StoreError};

use crate::codec::{task_columns, Op, TaskRow};
use crate::error::store_error;
use crate::history::History;

/// Who is told a commit's outcome: a waiting future, or a call the writer
/// makes itself (see [`zrobot_core::store::Store::commit_then`]).
pub(crate) enum Reply {
    Wake(oneshot::Sender<Result<(), StoreError>>),
    Call(Completion),
}

impl Reply {
    fn send(self, result: Result<(), StoreError>) {
        match self {
            Reply::Wake(sender) => {
                let _ = sender.send(result);
            }
            Reply::Call(mut completion) => completion.call(result),
        }
    }
}

/// A commit's completion, called exactly once: with the outcome, or, when the
/// writer is gone before it (a request dropped unanswered), with the error
/// saying so, as a dropped [`Reply::Wake`] tells its future.
pub(crate) struct Completion {
    done: Option<CommitDone>,
    db: Arc<str>,
}

impl Completion {
    pub(crate) fn new(done: CommitDone, db: Arc<str>) -> Completion {
        Completion {
            done: Some(done),
            db,
        }
    }

    fn call(&mut self, result: Result<(), StoreError>) {
        let Some(done) = self.done.take() else { return };
        // A panicking completion must not take the writer, and every later
        // commit, down with it.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(result))).is_err() {
            tracing::error!(db = %self.db, "a commit's completion panicked");
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.done.is_some() {
            let stopped = crate::error::stopped(&self.db);
            self.call(Err(stopped));
        }
    }
}

pub(crate) enum Request {
    Commit {
        ops: Vec<Op>,
        reply: Reply,
    },
    /// Other work on the write connection, kept in order with the commits:
    /// the extra tables, and every read of an in-memory database (which has
    /// no other connection). It answers its caller itself.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Do all background work now, and say when it is done.
    Compact(oneshot::Sender<Result<(), StoreError>>),
}

/// A group stops growing at this many ops, so that its first callers are not
/// kept waiting behind an endless stream.
const MAX_GROUP_OPS: usize = 20_000;

pub(crate) struct Writer {
    conn: Connection,
    db: Arc<str>,
    healthy: Arc<AtomicBool>,
    history: History,
    counts: Arc<WriterCounts>,
}

/// What the writer has done since the store opened, counted as it goes.
#[derive(Debug, Default)]
pub(crate) struct WriterCounts {
    pub transactions: AtomicU64,
    pub commits: AtomicU64,
    pub ops: AtomicU64,
}

impl Writer {
    pub fn new(
        conn: Connection,
        db: Arc<str>,
        healthy: Arc<AtomicBool>,
        history: History,
        counts: Arc<WriterCounts>,
    ) -> Writer {
        Writer {
            conn,
            db,
            healthy,
            history,
            counts,
        }
    }

    /// Serves `requests` until every sender is gone and the queue is empty.
    pub fn run(mut self, requests: Receiver<Request>) {
        loop {
            let first = match requests.recv_timeout(self.history.wait(Instant::now())) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) => {
                    self.background_alone();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Vec::new();
            let mut size = 0;
            let mut next = Some(first);
            while let Some(request) = next {
                match request {
                    Request::Commit { ops, reply } => {
                        size += ops.len();
                        group.push((ops, reply));
                    }
                    Request::Run(work) => {
                        self.flush(&mut group);
                        size = 0;
                        work(&mut self.conn);
                    }
                    Request::Compact(reply) => {
                        self.flush(&mut group);
                        size = 0;
                        let _ = reply.send(self.compact());
                    }
                }
                if size >= MAX_GROUP_OPS {
                    break;
                }
                next = requests.try_recv().ok();
            }
            self.flush(&mut group);
            // After the callers are answered, so that they never wait for it.
            if self.history.due(Instant::now()) {
                self.background_alone();
            }
        }
    }

    /// Commits a group and answers its callers. When the group fails, each
    /// caller's ops are tried again on their own, so that one bad commit fails
    /// only its own caller.
    fn flush(&mut self, group: &mut Vec<(Vec<Op>, Reply)>) {
        if group.is_empty() {
            return;
        }
        let all: Vec<&Op> = group.iter().flat_map(|(ops, _)| ops).collect();
        let result = self.transaction(&all);
        self.counts.transactions.fetch_add(1, Ordering::Relaxed);
        self.counts
            .commits
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.counts
            .ops
            .fetch_add(all.len() as u64, Ordering::Relaxed);
        drop(all);
        match result {
            Ok(()) => {
                self.healthy.store(true, Ordering::Relaxed);
                for (_, reply) in group.drain(..) {
                    reply.send(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::warn!("{e}");
                for (_, reply) in group.drain(..) {
                    reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(
                    commits = group.len(),
                    "{e}; trying each commit of the group on its own"
                );
                let mut results = Vec::with_capacity(group.len());
                for (ops, reply) in group.drain(..) {
                    let ops: Vec<&Op> = ops.iter().collect();
                    let result = self.transaction(&ops);
                    if let Err(e) = &result {
                        tracing::warn!("{e}");
                    }
                    results.push((reply, result));
                }
                // Health first: a caller told of the outcome must see it.
                let all_ok = results.iter().all(|(_, r)| r.is_ok());
                self.healthy.store(all_ok, Ordering::Relaxed);
                for (reply, result) in results {
                    reply.send(result);
                }
            }
        }
    }

    /// Applies `ops` in one transaction.
    fn transaction(&mut self, ops: &[&Op]) -> Result<(), StoreError> {
        let needs = needs(ops);
        let history = &mut self.history;
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            {
                let mut st = Statements::new(&tx);
                for (op, needed) in ops.iter().zip(needs) {
                    if needed {
                        st.apply(op, history)?;
                    }
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.history.committed(Instant::now());
                Ok(())
            }
            Err(e) => {
                self.history.rolled_back();
                Err(store_error(
                    &self.db,
                    &format!("committing {} changes", ops.len()),
                    e,
                ))
            }
        }
    }

    /// Runs `step` in a transaction of its own; what it moved on rolls back with it.
    fn background_step(
        &mut self,
        step: impl FnOnce(&mut History, &Connection) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let saved = self.history.progress.clone();
        let history = &mut self.history;
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            step(history, &tx)?;
            tx.commit()
        })();
        if result.is_ok() {
            self.history.publish();
        } else {
            self.history.rolled_back();
            self.history.progress = saved;
        }
        result.map_err(|e| store_error(&self.db, "indexing or trimming finished tasks", e))
    }

    /// A slice of background work, in a transaction of its own.
    fn background_alone(&mut self) {
        if let Err(e) = self.background_step(|history, tx| history.slice(tx, Instant::now())) {
            tracing::warn!("{e}");
            self.history.pause(Instant::now());
        }
    }

    /// Indexes every finished task and trims every service.
    fn compact(&mut self) -> Result<(), StoreError> {
        while self.history.index_all() {
            self.background_step(|history, tx| history.index_step(tx))?;
        }
        self.history.start_sweep();
        while self.history.trimming() {
            self.background_step(|history, tx| history.trim_step(tx, Instant::now()))?;
        }
        Ok(())
    }
}

/// Which ops of a batch still matter: a later write of the same task, or a
/// later save of the same service's data, state or template, makes an earlier
/// one pointless. Skipping those leaves the same end state and spares the
/// writer work: under load a task's start and finish often share a group.
fn needs(ops: &[&Op]) -> Vec<bool> {
    let mut needs = vec![true; ops.len()];
    if ops.len() < 2 {
        return needs;
    }
    #[derive(PartialEq, Eq, Hash)]
    enum Later {
        PutTask,
        Started,
        Data,
        State,
        Template,
    }
    let mut later: HashSet<(Later, Uuid)> = HashSet::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate().rev() {
        needs[i] = match op {
            Op::PutTask(t) => later.insert((Later::PutTask, t.guid)),
            Op::TaskStarted { guid, .. } => {
                !later.contains(&(Later::PutTask, *guid)) && later.insert((Later::Started, *guid))
            }
            Op::SaveData { service, .. } => later.insert((Later::Data, *service)),
            Op::SaveState { service, .. } => later.insert((Later::State, *service)),
            Op::SaveTemplate { service, .. } => later.insert((Later::Template, *service)),
            Op::PutService(_)
            | Op::DeleteService(_)
            | Op::RemoveTask { .. }
            | Op::PutSetting { .. } => true,
        };
    }
    needs
}

/// The statements ops use, each checked out of the connection's cache once
/// per transaction rather than once per op.
#[derive(Clone, Copy)]
enum Sql {
    PutService,
    DeleteService,
    DeleteServiceWaiting,
    DeleteServiceDone,
    DeleteServiceIndex,
    DeleteDone,
    PutWaiting,
    PutDone,
    Unqueue,
    TaskStarted,
    SaveData,
    SaveState,
    SaveTemplate,
    PutSetting,
    RemoveSetting,
}

const SQL_COUNT: usize = 15;

impl Sql {
    fn text(self) -> &'static str {
        match self {
            Sql::PutService => {
                "INSERT INTO services (guid, name, template_uid, public, secrets, data, state, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (guid) DO UPDATE SET name = excluded.name, template_uid = excluded.template_uid, \
                 public = excluded.public, secrets = excluded.secrets, data = excluded.data, \
                 state = excluded.state, created = excluded.created"
            }
            Sql::DeleteService => "DELETE FROM services WHERE guid = ?1",
            Sql::DeleteServiceWaiting => "DELETE FROM waiting_tasks WHERE service_guid = ?1",
            Sql::DeleteServiceDone => {
                "DELETE FROM done_tasks WHERE id IN (SELECT id FROM done_by_service WHERE service_guid = ?1)"
            }
            Sql::DeleteServiceIndex => "DELETE FROM done_by_service WHERE service_guid = ?1",
            Sql::DeleteDone => "DELETE FROM done_tasks WHERE id = ?1",
            Sql::PutWaiting => concat!(
                "INSERT INTO waiting_tasks (",
                task_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                 ON CONFLICT (seq, guid) DO UPDATE SET service_guid = excluded.service_guid, \
                 service_name = excluded.service_name, template_uid = excluded.template_uid, \
                 action_name = excluded.action_name, args = excluded.args, priority = excluded.priority, \
                 seq = excluded.seq, state = excluded.state, attempt = excluded.attempt, \
                 created = excluded.created, started = excluded.started, duration = excluded.duration, \
                 result = excluded.result, eco = excluded.eco, trace = excluded.trace, idem_key = excluded.idem_key"
            ),
            Sql::PutDone => concat!(
                "INSERT INTO done_tasks (",
                task_columns!(),
                ", id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
            ),
            Sql::Unqueue => "DELETE FROM waiting_tasks WHERE seq = ?1 AND guid = ?2",
            Sql::TaskStarted => {
                "UPDATE waiting_tasks SET attempt = ?3, started = ?4, state = 'running' WHERE seq = ?1 AND guid = ?2"
            }
            Sql::SaveData => "UPDATE services SET data = ?2 WHERE guid = ?1",
            Sql::SaveState => "UPDATE services SET state = ?2 WHERE guid = ?1",
            Sql::SaveTemplate => "UPDATE services SET template_uid = ?2 WHERE guid = ?1",
            Sql::PutSetting => "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
            Sql::RemoveSetting => "DELETE FROM settings WHERE key = ?1",
        }
    }
}

struct Statements<'c> {
    conn: &'c Connection,
    cached: [Option<CachedStatement<'c>>; SQL_COUNT],
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection) -> Statements<'c> {
        Statements {
            conn,
            cached: Default::default(),
        }
    }

    fn get(&mut self, sql: Sql) -> rusqlite::Result<&mut CachedStatement<'c>> {
        let slot = &mut self.cached[sql as usize];
        match slot {
            Some(statement) => Ok(statement),
            None => Ok(slot.insert(self.conn.prepare_cached(sql.text())?)),
        }
    }

    fn run(&mut self, sql: Sql, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.get(sql)?.execute(params)
    }

    fn put_task(&mut self, sql: Sql, t: &TaskRow, id: Option<i64>) -> rusqlite::Result<usize> {
        let statement = self.get(sql)?;
        let fields: [&dyn rusqlite::ToSql; 17] = [
            t.guid.as_bytes(),
            t.service_guid.as_bytes(),
            &t.service_name(),
            &t.template_uid(),
            &t.action_name(),
            &t.args(),
            &t.priority,
            &t.seq,
            &t.state.as_str(),
            &t.attempt,
            &t.created,
            &t.started,
            &t.duration,
            &t.result(),
            &t.eco(),
            &t.trace(),
            &t.key(),
        ];
        for (i, field) in fields.iter().enumerate() {
            statement.raw_bind_parameter(i + 1, field)?;
        }
        if let Some(id) = id {
            statement.raw_bind_parameter(18, id)?;
        }
        statement.raw_execute()
    }

    fn apply(&mut self, op: &Op, history: &mut History) -> rusqlite::Result<()> {
        match op {
            Op::PutService(s) => {
                self.run(
                    Sql::PutService,
                    params![
                        s.guid.as_bytes(),
                        s.name,
                        s.template_uid,
                        s.public,
                        s.secrets,
                        s.data,
                        s.state,
                        s.created
                    ],
                )?;
            }
            Op::DeleteService(guid) => {
                let key = guid.as_bytes();
                for sql in [
                    Sql::DeleteService,
                    Sql::DeleteServiceWaiting,
                    Sql::DeleteServiceDone,
                    Sql::DeleteServiceIndex,
                ] {
                    self.run(sql, [key])?;
                }
                for id in history.unindexed_ids(*guid) {
                    self.run(Sql::DeleteDone, [id])?;
                }
                history.service_deleted(*guid);
            }
            Op::PutTask(t) if t.state.is_done() => {
                self.run(Sql::Unqueue, params![t.seq, t.guid.as_bytes()])?;
                // A task finished again gets a second row; reads show the newest.
                let id = history.append(t.service_guid, t.guid);
                self.put_task(Sql::PutDone, t, Some(id))?;
            }
            Op::PutTask(t) => {
                self.put_task(Sql::PutWaiting, t, None)?;
            }
            Op::TaskStarted {
                guid,
                seq,
                attempt,
                started,
            } => {
                self.run(
                    Sql::TaskStarted,
                    params![seq, guid.as_bytes(), attempt, started],
                )?;
            }
            Op::RemoveTask { guid, seq } => {
                self.run(Sql::Unqueue, params![seq, guid.as_bytes()])?;
            }
            Op::SaveData { service, data } => {
                self.run(Sql::SaveData, params![service.as_bytes(), data])?;
            }
            Op::SaveState { service, state } => {
                self.run(Sql::SaveState, params![service.as_bytes(), state])?;
            }
            Op::SaveTemplate {
                service,
                template_uid,
            } => {
                self.run(Sql::SaveTemplate, params![service.as_bytes(), template_uid])?;
            }
            Op::PutSetting {
                key,
                value: Some(value),
            } => {
                self.run(Sql::PutSetting, params![key, value])?;
            }
            Op::PutSetting { key, value: None } => {
                self.run(Sql::RemoveSetting, params![key])?;
            }
        }
        Ok(())
    }
}
