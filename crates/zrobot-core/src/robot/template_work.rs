//! Where template code runs, and how a shutdown ends it.
//!
//! Template code may spin until its budget stops it, so it never runs on the
//! threads that serve the API: the robot is given a runtime for template work
//! (the server makes one with its own threads) and runs every drive loop and
//! every hook there. The robot's own loops, the API and the store stay on
//! the runtime the robot was made in.
//!
//! A shutdown first drains (no drive loop takes another task), lets the
//! template work under way end within a grace, then interrupts what is left:
//! an interrupted task's outcome is never stored, so it runs again after the
//! restart, like a task cut by a crash.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Robot;
use crate::service::Service;

/// Builds the runtime for template work a server hands to
/// [`Robot::with_template_runtime`]: one worker thread per core (at least
/// two), named `zrobot-template`, with timers and I/O for the robot API's
/// sleeps, processes and remote calls.
pub fn template_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("zrobot-template")
        .enable_all()
        .build()
}

/// The template work was cut by a shutdown: its outcome must not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interrupted;

/// What a shutdown found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Pieces of template work (a service's running task, a hook) still under
    /// way when the grace ended, interrupted: their tasks run again at the
    /// next start.
    pub interrupted: usize,
    /// Whether the store confirmed, within its bound, that every change handed
    /// to it before the shutdown is written.
    pub store_flushed: bool,
    /// Tasks of the robot (template work, its own loops) still alive when
    /// the shutdown returned: only code stuck where it cannot be interrupted.
    pub left_running: usize,
}

/// How long interrupted template work and the robot's own tasks may take to
/// end once told to: they stop at their next await.
const WIND_DOWN: Duration = Duration::from_secs(1);

/// The robot's own tasks (restore passes, `validate` retries, the timer
/// loop of recurring actions): each is spawned through
/// [`Robot::spawn_owned`], so a shutdown cancels them and waits for them.
pub(crate) struct Background {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Background {
    pub(crate) fn new() -> Background {
        Background {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Spawns `fut` on the current runtime, owned: it ends at its next
    /// await once the robot shuts down.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        drop(self.tracker.spawn(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        }));
    }
}

/// The template runtime, the drive loops and hooks under way, and the
/// shutdown switches. Atomics and `Notify`, not a lock: the drive loop reads
/// the switch before every task.
pub(crate) struct TemplateWork {
    runtime: Handle,
    /// Set when a shutdown begins: no drive loop takes another task.
    draining: AtomicBool,
    /// Set when the grace is over: the work still under way is interrupted.
    stopped: AtomicBool,
    stop: Notify,
    /// Drive loops and hook calls under way.
    under_way: AtomicUsize,
    /// Told when `under_way` drops to zero.
    idle: Notify,
}

impl TemplateWork {
    pub(crate) fn new(runtime: Handle) -> TemplateWork {
        TemplateWork {
            runtime,
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            under_way: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Counts one piece of template work for as long as it lives.
pub(crate) struct WorkGuard(Robot);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let work = &self.0 .0.work;
        if work.under_way.fetch_sub(1, Ordering::AcqRel) == 1 {
            work.idle.notify_waiters();
        }
    }
}

/// Aborts the spawned work when its caller stops waiting for it (a timeout,
/// a deletion, a shutdown): nobody is left to want its outcome.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Robot {
    /// The runtime template code runs on.
    pub fn template_runtime(&self) -> &Handle {
        &self.0.work.runtime
    }

    /// Spawns a task of the robot or of its host, owned (see
    /// [`Background`]): a shutdown cancels it at its next await and waits
    /// for it.
    pub fn spawn_owned(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.0.background.spawn(fut);
    }

    /// The robot's tasks alive now: its own loops, drive loops and hooks.
    pub fn tasks_alive(&self) -> usize {
        self.0.background.tracker.len() + self.0.work.under_way.load(Ordering::Acquire)
    }

    pub(crate) fn work_started(&self) -> WorkGuard {
        self.0.work.under_way.fetch_add(1, Ordering::AcqRel);
        WorkGuard(self.clone())
    }

    /// Resolves once the shutdown's grace is over.
    pub(crate) async fn stopped(&self) {
        let work = &self.0.work;
        let notified = work.stop.notified();
        if work.stopped.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// Starts the single consumer of `svc`'s queue on the template runtime
    /// (its actions then run inline, with no hop per task).
    pub(crate) fn spawn_drive(&self, svc: Arc<Service>) {
        let guard = self.work_started();
        let robot = self.clone();
        // The handle is dropped: the loop is owned by the service (its
        // `driving` flag) and counted by the guard, which a shutdown waits on.
        drop(self.0.work.runtime.spawn(async move {
            let _guard = guard;
            robot.drive(svc).await;
        }));
    }

    /// Runs `fut` (template work) on the template runtime and waits for it.
    /// Dropping the returned future aborts the work. `Err` when the work
    /// panicked or was cancelled by the runtime's shutdown.
    pub(crate) async fn on_template_runtime<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, JoinError> {
        let guard = self.work_started();
        let mut handle = AbortOnDrop(self.0.work.runtime.spawn(async move {
            let _guard = guard;
            fut.await
        }));
        (&mut handle.0).await
    }

    /// Stops the robot: no drive loop takes another task; the template work
    /// under way gets `grace` to end, then is interrupted (its tasks run
    /// again at the next start); the robot's own tasks are cancelled; then
    /// waits (within `flush_bound`) for the store to write every change
    /// handed to it. Call it once the API takes no more requests. Never
    /// waits longer than the two bounds and [`WIND_DOWN`], whatever template
    /// code does; what is still alive then is counted in the report.
    pub async fn shutdown(&self, grace: Duration, flush_bound: Duration) -> ShutdownReport {
        let work = &self.0.work;
        work.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        loop {
            let idle = work.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if work.under_way.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let interrupted = work.under_way.load(Ordering::Acquire);
        work.stopped.store(true, Ordering::Release);
        work.stop.notify_waiters();
        let background = &self.0.background;
        background.cancel.cancel();
        background.tracker.close();
        let wound_down = Instant::now() + WIND_DOWN;
        let _ = tokio::time::timeout_at(wound_down, background.tracker.wait()).await;
        loop {
            let idle = work.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if work.under_way.load(Ordering::Acquire) == 0
                || tokio::time::timeout_at(wound_down, idle).await.is_err()
            {
                break;
            }
        }
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "template work still running after the {}s grace was interrupted; its tasks run again at the next start",
                grace.as_secs_f64()
            );
        }
        // Commits are applied in order: once this empty one resolves, every
        // change handed over before it is written.
        let store_flushed = matches!(
            tokio::time::timeout(flush_bound, self.0.store.commit(Vec::new())).await,
            Ok(Ok(()))
        );
        ShutdownReport {
            interrupted,
            store_flushed,
            left_running: self.tasks_alive(),
        }
    }
}
