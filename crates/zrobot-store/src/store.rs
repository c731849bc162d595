//! [`SqliteStore`]: the robot's [`Store`] on SQLite, and the robot-wide
//! tables (webhooks, template repositories) beside it.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;
use uuid::Uuid;
use zrobot_core::engine::BoxFuture;
use zrobot_core::store::{CommitDone, Loaded, Retention, Store, StoreError, StoreOp};
use zrobot_core::task::TaskRecord;

use crate::checkpoint::Checkpointer;
use crate::codec::Op;
use crate::error::{stopped, store_error, Failure};
use crate::history::{History, SharedUnindexed};
use crate::read::{self, ReaderPool};
use crate::schema;
use crate::writer::{Completion, Reply, Request, Writer, WriterCounts};

/// A webhook the robot calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub kind: String,
    pub url: String,
}

/// A template repository the robot follows.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRepo {
    pub url: String,
    pub branch: String,
    /// When it was added, in unix seconds.
    pub added: f64,
}

/// The robot's state in one SQLite database.
///
/// One writer thread owns the write connection and commits in groups; reads
/// run on a small pool of other connections. Dropping the store lets the
/// writer finish what was already handed to it, then joins it.
pub struct SqliteStore {
    /// The database file, as error messages name it.
    db: Arc<str>,
    /// `None` once dropping: closing the channel is what stops the writer.
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    reads: Reads,
    healthy: Arc<AtomicBool>,
    retention: Retention,
    /// Finished tasks the per-service index does not list yet.
    unindexed: SharedUnindexed,
    /// `None` for an in-memory database.
    checkpointer: Option<Checkpointer>,
    counts: Arc<WriterCounts>,
}

/// What the writer has done since the store opened: how well commits group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions of commits (groups), background work not included.
    pub transactions: u64,
    /// Commits handed to the store and applied.
    pub commits: u64,
    /// Changes in those commits.
    pub ops: u64,
}

/// Where reads run.
enum Reads {
    /// A database file: on connections of their own, beside the writer (WAL).
    Pool(Arc<ReaderPool>),
    /// An in-memory database exists only in the writer's connection.
    Writer,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, bringing its schema up to
    /// date; a database written by a newer zrobot is refused.
    pub fn open(path: &Path, retention: Retention) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_file(path, retention, |_| {})
    }

    /// [`SqliteStore::open`], with the history's settings adjusted by `tune`.
    fn open_file(
        path: &Path,
        retention: Retention,
        tune: impl FnOnce(&mut History),
    ) -> Result<SqliteStore, StoreError> {
        let db: Arc<str> = path.display().to_string().into();
        let mut conn = Connection::open(path).map_err(|e| store_error(&db, "opening", e))?;
        configure_writer(&conn, true)
            .map_err(|e| store_error(&db, "configuring the connection", e))?;
        schema::migrate(&mut conn, &db)?;
        let checkpointer = Checkpointer::start(path, &mut conn, &db)?;
        tracing::debug!(db = %db, "database open");
        let mut store = SqliteStore::start(
            conn,
            db,
            retention,
            Reads::Pool(Arc::new(ReaderPool::new(path.to_owned()))),
            tune,
        )?;
        store.checkpointer = Some(checkpointer);
        Ok(store)
    }

    /// A database in memory only: for tests, and robots that need no durability.
    pub fn open_in_memory(retention: Retention) -> Result<SqliteStore, StoreError> {
        let db: Arc<str> = ":memory:".into();
        let mut conn = Connection::open_in_memory().map_err(|e| store_error(&db, "opening", e))?;
        configure_writer(&conn, false)
            .map_err(|e| store_error(&db, "configuring the connection", e))?;
        schema::migrate(&mut conn, &db)?;
        SqliteStore::start(conn, db, retention, Reads::Writer, |_| {})
    }

    fn start(
        conn: Connection,
        db: Arc<str>,
        retention: Retention,
        reads: Reads,
        tune: impl FnOnce(&mut History),
    ) -> Result<SqliteStore, StoreError> {
        let healthy = Arc::new(AtomicBool::new(true));
        let (requests, queue) = mpsc::channel();
        let mut history = History::open(&conn, retention, Instant::now())
            .map_err(|e| store_error(&db, "reading where the history stands", e))?;
        tune(&mut history);
        let unindexed = history.unindexed();
        let counts = Arc::new(WriterCounts::default());
        let writer = Writer::new(conn, db.clone(), healthy.clone(), history, counts.clone());
        let writer = std::thread::Builder::new()
            .name("zrobot-store-writer".to_owned())
            .spawn(move || writer.run(queue))
            .map_err(|e| store_error(&db, "starting the writer thread", e))?;
        Ok(SqliteStore {
            db,
            requests: Some(requests),
            writer: Some(writer),
            reads,
            healthy,
            retention,
            unindexed,
            checkpointer: None,
            counts,
        })
    }

    /// How many transactions, commits and changes the writer has applied.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.counts.transactions.load(Ordering::Relaxed),
            commits: self.counts.commits.load(Ordering::Relaxed),
            ops: self.counts.ops.load(Ordering::Relaxed),
        }
    }

    /// The schema version this code writes (a database's `user_version`).
    pub const SCHEMA_VERSION: i64 = schema::VERSION;

    /// The database file, or `:memory:`.
    pub fn name(&self) -> &str {
        &self.db
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Does now the background work the writer otherwise spreads out: moves
    /// every recently finished task into the history and deletes what
    /// retention drops; resolves when done. Reads never need it (they apply
    /// retention themselves): it is for tests, and for reclaiming space at once.
    pub fn compact(&self) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Request::Compact(reply));
        let db = self.db.clone();
        async move {
            sent?;
            answer.await.unwrap_or_else(|_| Err(stopped(&db)))
        }
    }

    /// Every webhook, by id.
    pub fn webhooks(
        &self,
    ) -> impl Future<Output = Result<Vec<Webhook>, StoreError>> + Send + 'static {
        self.read("reading webhooks".to_owned(), |conn| {
            let mut st = conn.prepare_cached("SELECT id, kind, url FROM webhooks ORDER BY id")?;
            let hooks = st
                .query_map([], |r| {
                    Ok(Webhook {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        url: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(hooks)
        })
    }

    /// Adds a webhook, or replaces the one with its id.
    pub fn put_webhook(
        &self,
        hook: Webhook,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.write(format!("saving webhook {}", hook.id), move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO webhooks (id, kind, url) VALUES (?1, ?2, ?3)",
            )?
            .execute([&hook.id, &hook.kind, &hook.url])?;
            Ok(())
        })
    }

    /// Deletes a webhook; says whether it was there.
    pub fn delete_webhook(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'static {
        let id = id.to_owned();
        self.write(format!("deleting webhook {id}"), move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
                .execute([&id])?
                > 0)
        })
    }

    /// Every template repository, in the order they were added.
    pub fn template_repos(
        &self,
    ) -> impl Future<Output = Result<Vec<TemplateRepo>, StoreError>> + Send + 'static {
        self.read("reading template repositories".to_owned(), |conn| {
            let mut st = conn.prepare_cached(
                "SELECT url, branch, added FROM template_repos ORDER BY added, url",
            )?;
            let repos = st
                .query_map([], |r| {
                    Ok(TemplateRepo {
                        url: r.get(0)?,
                        branch: r.get(1)?,
                        added: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(repos)
        })
    }

    /// Adds a template repository, or replaces the one with its URL.
    pub fn put_template_repo(
        &self,
        repo: TemplateRepo,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.write(format!("saving template repository {}", repo.url), move |conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO template_repos (url, branch, added) VALUES (?1, ?2, ?3)")?
                .execute(params![repo.url, repo.branch, repo.added])?;
            Ok(())
        })
    }

    /// Deletes a template repository; says whether it was there.
    pub fn delete_template_repo(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'static {
        let url = url.to_owned();
        self.write(format!("deleting template repository {url}"), move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM template_repos WHERE url = ?1")?
                .execute([&url])?
                > 0)
        })
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        let requests = self.requests.as_ref().ok_or_else(|| stopped(&self.db))?;
        requests.send(request).map_err(|_| {
            self.healthy.store(false, Ordering::Relaxed);
            stopped(&self.db)
        })
    }

    /// Runs `f` where reads run, off the async threads.
    fn read<T: Send + 'static>(
        &self,
        doing: String,
        f: impl FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let db = self.db.clone();
        match &self.reads {
            Reads::Pool(pool) => {
                let pool = pool.clone();
                Box::pin(async move {
                    match tokio::task::spawn_blocking(move || pool.run(f)).await {
                        Ok(result) => result.map_err(|e| store_error(&db, &doing, e)),
                        Err(e) => Err(store_error(&db, &doing, e)),
                    }
                })
            }
            Reads::Writer => self.on_writer(doing, f, None),
        }
    }

    /// Runs `f` on the writer thread, in order with the commits.
    fn write<T: Send + 'static>(
        &self,
        doing: String,
        f: impl FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        self.on_writer(doing, f, Some(self.healthy.clone()))
    }

    /// Hands `f` to the writer now; with `healthy`, its outcome counts as a commit's.
    fn on_writer<T: Send + 'static>(
        &self,
        doing: String,
        f: impl FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
        healthy: Option<Arc<AtomicBool>>,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Request::Run(Box::new(move |conn| {
            let result = f(conn);
            if let Some(healthy) = healthy {
                healthy.store(result.is_ok(), Ordering::Relaxed);
            }
            let _ = reply.send(result);
        })));
        let db = self.db.clone();
        Box::pin(async move {
            sent?;
            match answer.await {
                Ok(result) => result.map_err(|e| store_error(&db, &doing, e)),
                Err(_) => Err(stopped(&db)),
            }
        })
    }
}

impl SqliteStore {
    fn encode(&self, ops: Vec<StoreOp>) -> Result<Vec<Op>, StoreError> {
        ops.into_iter()
            .map(Op::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| store_error(&self.db, "encoding changes as JSON", e))
    }
}

impl Store for SqliteStore {
    fn commit_then(&self, ops: Vec<StoreOp>, done: CommitDone) {
        let ops = match self.encode(ops) {
            Ok(ops) => ops,
            Err(e) => return done(Err(e)),
        };
        let reply = Reply::Call(Completion::new(done, self.db.clone()));
        // Unsent, the request is dropped here, and its completion with it
        // tells `done` that the writer is gone.
        let _ = self.send(Request::Commit { ops, reply });
    }

    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>> {
        let ops = match self.encode(ops) {
            Ok(ops) => ops,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        // Handed over now, not when first polled: callers that drop the
        // future rely on the op being applied in the order of the calls.
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Request::Commit {
            ops,
            reply: Reply::Wake(reply),
        });
        let db = self.db.clone();
        let healthy = self.healthy.clone();
        Box::pin(async move {
            sent?;
            answer.await.unwrap_or_else(|_| {
                healthy.store(false, Ordering::Relaxed);
                Err(stopped(&db))
            })
        })
    }

    fn load(&self) -> BoxFuture<'static, Result<Loaded, StoreError>> {
        self.read("loading services and waiting tasks".to_owned(), read::load)
    }

    fn task(
        &self,
        service: Uuid,
        guid: Uuid,
    ) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        let unindexed = self.unindexed.clone();
        self.read(
            format!("reading task {guid} of service {service}"),
            move |conn| read::task(conn, &unindexed, service, guid),
        )
    }

    fn finished_tasks(
        &self,
        service: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        let (retention, unindexed) = (self.retention, self.unindexed.clone());
        self.read(
            format!("reading finished tasks of service {service}"),
            move |conn| read::finished_tasks(conn, &unindexed, service, limit, retention),
        )
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // First, so that the writer's connection is the last one to close.
        self.checkpointer = None;
        // The writer drains what was handed to it, then sees the channel closed.
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(db = %self.db, "the database writer thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("db", &self.db).finish()
    }
}

/// Settings of the write connection.
fn configure_writer(conn: &Connection, file: bool) -> rusqlite::Result<()> {
    // Another process holding the database gets a few seconds before we fail.
    conn.busy_timeout(Duration::from_secs(5))?;
    if file {
        // Readers never block the writer; and with WAL, NORMAL survives a
        // killed process (only a power loss may lose the last commits).
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                mode,
                "the database could not switch to WAL mode; reads will wait for writes"
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The WAL file shrinks back to this once a checkpoint caught up.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        // Checkpoints run on a thread of their own (see `checkpoint`).
    }
    // 4 MiB: the ends of the tables a commit touches and their indexes stay
    // in memory; the rest is in the OS's page cache anyway. Not more: at the
    // end of a transaction after a B-tree split SQLite scans its whole page
    // cache (a page was renumbered to the pending-byte page, far past the
    // end), so every cached page cost every such commit time; with 64 MiB
    // that scan took 7% of the robot's CPU under load, and the cache a
    // fifth of the memory of a robot of 100,000 idle services.
    conn.pragma_update(None, "cache_size", -4_096)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod history_tests;
