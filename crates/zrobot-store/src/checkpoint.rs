//! Checkpoints and fsyncs off the writer thread. A checkpoint copies the WAL
//! into the database file between two fsyncs; run by the writer (SQLite's
//! automatic checkpoints) it held every commit behind it while the disk
//! caught up with tens of megabytes. Here a thread of its own flushes the WAL
//! often and checkpoints (`PASSIVE`, never blocking the writer) now and then;
//! the writer checkpoints only once the WAL has grown past a bound, when little
//! is left to copy or flush, so that the WAL can start over (SQLite restarts
//! it only once every frame is copied, which a checkpoint running beside
//! steady commits never sees).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;
use zrobot_core::store::StoreError;

use crate::error::store_error;

/// How often the WAL written so far is flushed to disk.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// At this many frames (64 MiB with 4 KiB pages) the writer checkpoints itself.
const WRITER_AT: i32 = 16_384;

/// The background thread; it stops when dropped.
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts flushing and checkpointing the database at `path` in the
    /// background, and hooks the writer's connection `writer` to bound the WAL.
    pub fn start(
        path: &Path,
        writer: &mut Connection,
        db: &str,
    ) -> Result<Checkpointer, StoreError> {
        let fail = |e: &dyn std::fmt::Display| {
            store_error(db, "starting the checkpoint thread", e.to_string())
        };
        let conn = Connection::open(path).map_err(|e| fail(&e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(&e))?;
        // Reading the mode opens the file and its WAL: until then a
        // checkpoint finds no WAL and does nothing.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| fail(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(&format!("the database is in {mode} mode, not WAL")));
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zrobot-store-checkpoint".to_owned())
            .spawn(move || run(conn, PathBuf::from(wal), stopped))
            .map_err(|e| fail(&e))?;
        // Replaces SQLite's automatic checkpoints, which use the same hook.
        writer
            .wal_hook(Some(|wal: &mut rusqlite::hooks::Wal, frames: i32| {
                if frames >= WRITER_AT {
                    // Busy while the background one runs: the next commit tries again.
                    let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
                }
                Ok(())
            }))
            .map_err(|e| fail(&e))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, wal: PathBuf, stop: Arc<AtomicBool>) {
    let mut file: Option<File> = None;
    let mut last_checkpoint = Instant::now();
    loop {
        std::thread::park_timeout(FLUSH_EVERY);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            last_checkpoint = Instant::now();
            if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                // The writer's own checkpoints still bound the WAL.
                tracing::debug!("background checkpoint: {e}");
            }
            continue;
        }
        // What the writer's checkpoint would otherwise wait for.
        if file.is_none() {
            file = File::open(&wal).ok();
        }
        if let Some(f) = &file {
            if f.sync_data().is_err() {
                file = None;
            }
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and closes its connection, so that the writer's,
    /// closed last, checkpoints what is left and removes the WAL.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;
    use zrobot_core::store::{Retention, ServiceRecord, Store, StoreOp};

    use crate::SqliteStore;

    #[tokio::test]
    async fn the_wal_is_copied_in_the_background_and_gone_once_closed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("robot.db");
        let wal = dir.path().join("robot.db-wal");
        let store = SqliteStore::open(&path, Retention::default()).expect("open");
        let before = std::fs::metadata(&path).expect("the database").len();
        let ops = (0..2_000)
            .map(|i| {
                StoreOp::PutService(ServiceRecord {
                    guid: Uuid::new_v4(),
                    name: format!("s{i}"),
                    template_uid: "github.com/zrobot/templates/node/0.0.1".to_owned(),
                    public: false,
                    data: json!({ "padding": "x".repeat(200) }),
                    state: Default::default(),
                    secrets: Vec::new(),
                    created: 0.0,
                })
            })
            .collect();
        store.commit(ops).await.expect("services");
        assert!(wal.exists());
        // Nothing but the background thread copies into the database file
        // (the writer only past a bound this commit is far below).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&path).expect("the database").len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(store);
        assert!(
            !wal.exists(),
            "the last connection to close removes the WAL"
        );
        let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
        assert_eq!(store.load().await.expect("loaded").services.len(), 2_000);
    }
}
